// The lease core on the real host (LinuxHost, built by daemon/assembly.h),
// driven through handle(): a scripted DisplayProbe says what the host has on
// each number, a real UserDirectories works in a temporary directory, and the
// clock is a variable the test moves (the pure decisions: tests/core/).
//
// Runs as root (like CI) so the per-user directories can be handed to the
// made-up test uids below.
#include "daemon/assembly.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <google/protobuf/stubs/logging.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <fstream>
#include <map>
#include <memory>
#include <random>
#include <set>
#include <string>
#include <vector>

#include <google/protobuf/descriptor.h>

#include "framing.h"
#include "test_support.h"

namespace xpra_broker {
namespace {

using testing::Contains;
using testing::TempDir;
using std::chrono::seconds;

constexpr gid_t kUsersGroup = 5000;  // allowed-groups
constexpr gid_t kAdminGroup = 5001;  // admin-groups

Caller make_caller(uid_t uid, gid_t gid, std::vector<gid_t> groups = {}) {
  Caller c;
  c.uid = uid;
  c.gid = gid;
  c.pid = 20000 + static_cast<pid_t>(uid % 10000);
  c.groups = std::move(groups);
  return c;
}

const Caller kAlice = make_caller(4001, kUsersGroup);
const Caller kBob = make_caller(4002, 4002, {kUsersGroup});  // allowed through a supplementary group
const Caller kCarol = make_caller(4003, 4003);               // outside allowed-groups
const Caller kAdmin = make_caller(4004, 4004, {kAdminGroup});
const Caller kRoot = make_caller(0, 0);

// What the fake probe reports, and what it was asked.
struct ProbeScript {
  std::map<std::uint32_t, DisplayFacts> facts;  // missing: nothing on the host
  std::vector<std::pair<std::uint32_t, std::string>> calls;
  std::size_t calls_for(std::uint32_t display) const {
    return std::count_if(calls.begin(), calls.end(), [&](const auto& c) { return c.first == display; });
  }
};

class FakeProbe : public DisplayProbe {
 public:
  explicit FakeProbe(ProbeScript& script)
      : DisplayProbe("/nonexistent/x11", "/nonexistent/xpra", "unit-test-host"), script_(script) {}
  DisplayFacts probe(std::uint32_t display, const std::string& user_dir) const override {
    script_.calls.emplace_back(display, user_dir);
    if (auto it = script_.facts.find(display); it != script_.facts.end()) return it->second;
    DisplayFacts f;
    f.display = display;
    return f;
  }

 private:
  ProbeScript& script_;
};

DisplayFacts live_x_server(std::uint32_t display, pid_t pid, uid_t owner) {
  DisplayFacts f;
  f.display = display;
  f.lock.kind = FileKind::regular;
  f.lock.links = 1;
  f.lock.age_seconds = 3600;
  f.lock.pid = pid;
  f.lock.pid_alive = true;
  f.lock.pid_known = true;
  f.lock.pid_uid = f.lock.pid_euid = owner;
  f.lock.pid_is_x_server = true;
  f.lock.pid_serves_display = true;
  f.lock.owner = owner;
  return f;
}

DisplayFacts dead_lock(std::uint32_t display, pid_t pid, uid_t owner) {
  DisplayFacts f = live_x_server(display, pid, owner);
  f.lock.pid_alive = false;
  return f;
}

DisplayFacts stale_x11_socket(std::uint32_t display, uid_t owner) {
  DisplayFacts f;
  f.display = display;
  f.x11_socket.kind = FileKind::socket;
  f.x11_socket.owner = owner;
  return f;
}

class LeaseCoreOnLinuxHostTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_EQ(::geteuid(), 0u) << "these tests hand per-user directories to test uids: run them as root, as CI does";
    ASSERT_TRUE(testing::restore_effective_capabilities());
    runtime_dir_ = tmp_.path() + "/run";
    ASSERT_EQ(::mkdir(runtime_dir_.c_str(), 0755), 0);
    config_.runtime_dir = runtime_dir_;
    config_.display_first = 100;
    config_.display_last = 104;
    config_.max_leases_per_user = 3;
    config_.max_leases = 4;
    config_.recheck_seconds = 30;
    // The restart-loop defence is not what these tests are about.
    config_.acquire_burst = 100000;
    config_.acquires_per_minute = 1000000;
    config_.failures_before_backoff = 1000;
    policy_.allowed_gids = {kUsersGroup};
    policy_.admin_gids = {kAdminGroup};
  }

  // Built on first use, so a test can change config_ first.
  BrokerAssembly& broker() {
    if (!broker_) {
      UniqueFd dir(::open(runtime_dir_.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
      EXPECT_TRUE(dir);
      AssemblyParts parts;
      parts.host.probe = std::make_unique<FakeProbe>(probe_);
      parts.host.user_dirs = std::make_unique<UserDirectories>(std::move(dir), runtime_dir_, ::getegid());
      parts.host.clock = [this] { return now_; };
      broker_ = std::make_unique<BrokerAssembly>(config_, policy_, std::move(parts));
    }
    return *broker_;
  }

  v1::Response acquire(const Caller& c, ConnectionId conn = 1, const std::string& purpose = "test") {
    v1::Request r;
    r.mutable_acquire()->set_purpose(purpose);
    return broker().core().handle(c, conn, r);
  }
  // Acquires and insists it worked; the display.
  std::uint32_t must_acquire(const Caller& c, ConnectionId conn = 1) {
    const auto r = acquire(c, conn);
    EXPECT_EQ(r.status(), v1::OK) << r.message();
    return r.acquire().lease().display();
  }
  std::string must_acquire_id(const Caller& c, ConnectionId conn = 1) {
    const auto r = acquire(c, conn);
    EXPECT_EQ(r.status(), v1::OK) << r.message();
    return r.acquire().lease().id();
  }
  v1::Response release_id(const Caller& c, const std::string& id) {
    v1::Request r;
    r.mutable_release()->set_lease_id(id);
    return broker().core().handle(c, 1, r);
  }
  v1::Response release_display(const Caller& c, std::uint32_t display) {
    v1::Request r;
    r.mutable_release()->set_display(display);
    return broker().core().handle(c, 1, r);
  }
  v1::Response list(const Caller& c, bool all = false) {
    v1::Request r;
    r.mutable_list()->set_all(all);
    return broker().core().handle(c, 1, r);
  }
  v1::Response status(const Caller& c = kAlice) {
    v1::Request r;
    r.mutable_status();
    return broker().core().handle(c, 1, r);
  }
  v1::Response open_login(uid_t uid, const Caller& c = kRoot) {
    v1::Request r;
    r.mutable_open_login()->set_uid(uid);
    return broker().core().handle(c, 99, r);
  }
  v1::Response close_login(uid_t uid, bool reap, const Caller& c = kRoot) {
    v1::Request r;
    r.mutable_close_login()->set_uid(uid);
    r.mutable_close_login()->set_reap_leases(reap);
    return broker().core().handle(c, 99, r);
  }
  std::vector<std::uint32_t> listed_displays(const v1::Response& r) {
    std::vector<std::uint32_t> out;
    for (const auto& l : r.list().leases()) out.push_back(l.display());
    return out;
  }
  const v1::BlockedDisplay* find_blocked(const v1::Response& status_reply, std::uint32_t display) {
    for (const auto& b : status_reply.status_reply().blocked())
      if (b.display() == display) return &b;
    return nullptr;
  }
  // The table and the allocator agree about what is leased.
  void expect_consistent() {
    EXPECT_EQ(broker().core().leases().size(), broker().core().allocator().leased_count());
    for (const Lease* l : broker().core().leases().all()) EXPECT_TRUE(broker().core().allocator().is_leased(l->display)) << l->display;
  }

  TempDir tmp_;
  std::string runtime_dir_;
  BrokerConfig config_;
  AccessPolicy policy_;
  ProbeScript probe_;
  SteadyTime now_ = SteadyTime{} + std::chrono::hours(1000);
  std::unique_ptr<BrokerAssembly> broker_;
};

TEST_F(LeaseCoreOnLinuxHostTest, AcquireReturnsDistinctDisplaysInTheRange) {
  std::set<std::uint32_t> displays;
  std::set<std::string> ids;
  for (const Caller& c : {kAlice, kAlice, kBob}) {
    const auto r = acquire(c, 1, "xpra start");
    ASSERT_EQ(r.status(), v1::OK) << r.message();
    ASSERT_TRUE(r.has_acquire());
    const auto& lease = r.acquire().lease();
    EXPECT_GE(lease.display(), 100u);
    EXPECT_LE(lease.display(), 104u);
    EXPECT_TRUE(displays.insert(lease.display()).second) << "display " << lease.display() << " handed out twice";
    EXPECT_TRUE(ids.insert(lease.id()).second);
    EXPECT_EQ(lease.id().size(), 16u);
    EXPECT_EQ(lease.id().find_first_not_of("0123456789abcdef"), std::string::npos) << lease.id();
    EXPECT_EQ(lease.uid(), c.uid);
    EXPECT_EQ(lease.gid(), c.gid);
    EXPECT_EQ(lease.pid(), c.pid);
    EXPECT_EQ(lease.state(), v1::ACTIVE);
    EXPECT_EQ(lease.purpose(), "xpra start");
    EXPECT_EQ(lease.runtime_dir(), runtime_dir_ + "/" + std::to_string(c.uid));
    EXPECT_GT(lease.acquired_unix_ms(), 0);
    EXPECT_TRUE(Contains(r.message(), ":" + std::to_string(lease.display())));
  }
  EXPECT_EQ(broker().core().leases().size(), 3u);
  expect_consistent();
}

TEST_F(LeaseCoreOnLinuxHostTest, AcquirePreparesTheCallersDirectoryAndProbesWithIt) {
  const auto r = acquire(kAlice);
  ASSERT_EQ(r.status(), v1::OK) << r.message();
  const std::string dir = runtime_dir_ + "/4001";
  struct stat st {};
  ASSERT_EQ(::lstat(dir.c_str(), &st), 0);
  EXPECT_TRUE(S_ISDIR(st.st_mode));
  EXPECT_EQ(st.st_uid, 4001u);
  EXPECT_EQ(st.st_mode & 07777, 0770u);
  ASSERT_FALSE(probe_.calls.empty());
  EXPECT_EQ(probe_.calls.back().first, r.acquire().lease().display());
  EXPECT_EQ(probe_.calls.back().second, dir) << "the probe must look in the caller's own socket dir";
}

TEST_F(LeaseCoreOnLinuxHostTest, RootMayAcquireWithItsOwnUid) {
  const Caller self = make_caller(::getuid(), ::getgid());
  const auto r = acquire(self);
  ASSERT_EQ(r.status(), v1::OK) << r.message();
  EXPECT_EQ(r.acquire().lease().uid(), ::getuid());
}

TEST_F(LeaseCoreOnLinuxHostTest, PerUserQuotaGivesExhaustedWithAHelpfulMessage) {
  for (int i = 0; i < 3; ++i) must_acquire(kAlice);
  const auto r = acquire(kAlice);
  EXPECT_EQ(r.status(), v1::EXHAUSTED);
  EXPECT_FALSE(r.has_acquire());
  EXPECT_TRUE(Contains(r.message(), "3"));
  EXPECT_TRUE(Contains(r.message(), "max-leases-per-user=3"));
  EXPECT_TRUE(Contains(r.message(), "release"));
  EXPECT_EQ(broker().core().leases().count_for_uid(4001), 3u);
  // Another user is not affected.
  must_acquire(kBob);
  // After a release the user may acquire again.
  ASSERT_EQ(release_display(kAlice, broker().core().leases().for_uid(4001).front()->display).status(), v1::OK);
  must_acquire(kAlice);
  expect_consistent();
}

TEST_F(LeaseCoreOnLinuxHostTest, GlobalQuotaGivesExhaustedWithAHelpfulMessage) {
  config_.max_leases_per_user = 3;
  config_.max_leases = 4;
  for (int i = 0; i < 3; ++i) must_acquire(kAlice);
  must_acquire(kBob);
  const auto r = acquire(kBob);
  EXPECT_EQ(r.status(), v1::EXHAUSTED);
  EXPECT_TRUE(Contains(r.message(), "max-leases"));
  EXPECT_TRUE(Contains(r.message(), "4"));
  EXPECT_EQ(broker().core().leases().size(), 4u);
  // Root is held to the host-wide limit as well: it protects the host.
  EXPECT_EQ(acquire(kRoot).status(), v1::EXHAUSTED);
  // One display of the range is still free: the limit, not the range, refused.
  EXPECT_EQ(broker().core().allocator().free_count(), 1u);
}

TEST_F(LeaseCoreOnLinuxHostTest, RangeExhaustedGivesExhaustedWithRetryAfter) {
  config_.max_leases_per_user = 10;
  config_.max_leases = 10;
  for (int i = 0; i < 5; ++i) must_acquire(kAlice);
  const auto r = acquire(kAlice);
  EXPECT_EQ(r.status(), v1::EXHAUSTED);
  EXPECT_TRUE(Contains(r.message(), "no free display in 100-104"));
  EXPECT_TRUE(Contains(r.message(), "status"));
  EXPECT_EQ(r.retry_after_ms(), 30000u);
}

TEST_F(LeaseCoreOnLinuxHostTest, LiveAndStaleNumbersAreSkippedAndShownInStatus) {
  probe_.facts[100] = live_x_server(100, 1234, 777);
  probe_.facts[101] = dead_lock(101, 4321, 778);
  probe_.facts[102] = stale_x11_socket(102, 779);
  EXPECT_EQ(must_acquire(kAlice), 103u);

  // A user sees that the numbers are blocked, not whose or the broker's findings.
  const auto u = status(kAlice);
  ASSERT_EQ(u.status(), v1::OK);
  EXPECT_EQ(u.status_reply().blocked_size(), 3);
  EXPECT_EQ(u.status_reply().blocked_total(), 3u);
  for (const auto& b : u.status_reply().blocked()) {
    EXPECT_EQ(b.owner_uid(), 0u);
    EXPECT_EQ(b.pid(), 0);
    EXPECT_TRUE(b.reason() == "in use on the host" || b.reason() == "leftover files on the host") << b.reason();
  }

  const auto s = status(kAdmin);
  ASSERT_EQ(s.status(), v1::OK);
  EXPECT_EQ(s.status_reply().blocked_size(), 3);
  const auto* live = find_blocked(s, 100);
  ASSERT_NE(live, nullptr);
  EXPECT_FALSE(live->stale());
  EXPECT_EQ(live->owner_uid(), 777u);
  EXPECT_EQ(live->pid(), 1234);
  EXPECT_TRUE(Contains(live->reason(), "X server running"));
  const auto* dead = find_blocked(s, 101);
  ASSERT_NE(dead, nullptr);
  EXPECT_TRUE(dead->stale());
  EXPECT_EQ(dead->owner_uid(), 778u);
  EXPECT_EQ(dead->pid(), 4321);
  EXPECT_TRUE(Contains(dead->reason(), "stale lock file"));
  const auto* sock = find_blocked(s, 102);
  ASSERT_NE(sock, nullptr);
  EXPECT_TRUE(sock->stale());
  EXPECT_EQ(sock->owner_uid(), 779u);
  EXPECT_EQ(find_blocked(s, 103), nullptr) << "a leased number is not 'blocked'";
  // Range 5 - 1 leased - 3 blocked.
  EXPECT_EQ(s.status_reply().free_displays(), 1u);
  EXPECT_EQ(s.status_reply().leases(), 1u);
}

TEST_F(LeaseCoreOnLinuxHostTest, BlockedNumbersAreNotProbedAgainUntilRecheckAndThenReturn) {
  config_.max_leases_per_user = 10;
  config_.max_leases = 10;
  probe_.facts[100] = live_x_server(100, 1234, 777);
  EXPECT_EQ(must_acquire(kAlice), 101u);
  EXPECT_EQ(probe_.calls_for(100), 1u);
  EXPECT_EQ(must_acquire(kAlice), 102u);
  EXPECT_EQ(must_acquire(kAlice), 103u);
  EXPECT_EQ(must_acquire(kAlice), 104u);
  // Only 100 is left and it is blocked: exhausted, without probing it again.
  EXPECT_EQ(acquire(kAlice).status(), v1::EXHAUSTED);
  EXPECT_EQ(probe_.calls_for(100), 1u);

  // 29 s later still blocked; at 30 s it is probed again. Still in use:
  // blocked again for another period.
  now_ += seconds(29);
  EXPECT_EQ(acquire(kAlice).status(), v1::EXHAUSTED);
  EXPECT_EQ(probe_.calls_for(100), 1u);
  now_ += seconds(1);
  EXPECT_EQ(acquire(kAlice).status(), v1::EXHAUSTED);
  EXPECT_EQ(probe_.calls_for(100), 2u);
  EXPECT_NE(find_blocked(status(), 100), nullptr);

  // The X server went away: after the next period 100 is handed out and no
  // longer reported.
  probe_.facts.erase(100);
  now_ += seconds(30);
  EXPECT_EQ(find_blocked(status(), 100), nullptr) << "status expires blocks too";
  EXPECT_EQ(must_acquire(kAlice), 100u);
  // One probe by status (it probes the numbers that look free, so numbers
  // taken outside the broker are counted), one by the acquire.
  EXPECT_EQ(probe_.calls_for(100), 4u);
  expect_consistent();
}

TEST_F(LeaseCoreOnLinuxHostTest, EveryNumberInUseOnTheHostGivesExhausted) {
  for (std::uint32_t d = 100; d <= 104; ++d) probe_.facts[d] = live_x_server(d, 100 + d, 777);
  const auto r = acquire(kAlice);
  EXPECT_EQ(r.status(), v1::EXHAUSTED);
  EXPECT_EQ(broker().core().leases().size(), 0u);
  EXPECT_EQ(probe_.calls.size(), 5u) << "each number is probed once per acquire";
  EXPECT_EQ(status().status_reply().blocked_size(), 5);
  EXPECT_EQ(status().status_reply().free_displays(), 0u);
}

TEST_F(LeaseCoreOnLinuxHostTest, ReleaseByIdAndByDisplay) {
  const auto a = acquire(kAlice);
  const auto b = acquire(kAlice);
  ASSERT_EQ(a.status(), v1::OK);
  ASSERT_EQ(b.status(), v1::OK);

  const auto r1 = release_id(kAlice, a.acquire().lease().id());
  ASSERT_EQ(r1.status(), v1::OK) << r1.message();
  EXPECT_EQ(r1.release().lease().id(), a.acquire().lease().id());
  EXPECT_EQ(r1.release().lease().display(), a.acquire().lease().display());
  EXPECT_NE(r1.release().lease().state(), v1::ACTIVE);
  EXPECT_EQ(broker().core().leases().find(a.acquire().lease().id()), nullptr);

  const auto r2 = release_display(kAlice, b.acquire().lease().display());
  ASSERT_EQ(r2.status(), v1::OK) << r2.message();
  EXPECT_EQ(r2.release().lease().id(), b.acquire().lease().id());
  EXPECT_TRUE(Contains(r2.message(), ":" + std::to_string(b.acquire().lease().display())));
  EXPECT_EQ(broker().core().leases().size(), 0u);
  EXPECT_EQ(broker().core().allocator().free_count(), 5u);
  expect_consistent();

  // Twice: gone.
  EXPECT_EQ(release_id(kAlice, a.acquire().lease().id()).status(), v1::NOT_FOUND);
  EXPECT_EQ(release_display(kAlice, b.acquire().lease().display()).status(), v1::NOT_FOUND);
}

TEST_F(LeaseCoreOnLinuxHostTest, ReleaseWithoutATargetIsInvalid) {
  v1::Request r;
  r.mutable_release();
  const auto resp = broker().core().handle(kAlice, 1, r);
  EXPECT_EQ(resp.status(), v1::INVALID);
  EXPECT_FALSE(resp.message().empty());
}

TEST_F(LeaseCoreOnLinuxHostTest, ReleaseOfAnotherUsersLeaseLooksExactlyLikeAMissingOne) {
  const auto a = acquire(kAlice);
  ASSERT_EQ(a.status(), v1::OK);
  const std::string id = a.acquire().lease().id();
  const std::uint32_t display = a.acquire().lease().display();

  const auto by_id_held = release_id(kBob, id);
  const auto by_display_held = release_display(kBob, display);
  EXPECT_EQ(by_id_held.status(), v1::NOT_FOUND);
  EXPECT_EQ(by_display_held.status(), v1::NOT_FOUND);
  EXPECT_FALSE(by_id_held.has_release());
  EXPECT_FALSE(by_display_held.has_release());
  // Nothing of alice's lease leaks into the reply.
  EXPECT_FALSE(Contains(by_id_held.message(), "4001"));
  EXPECT_FALSE(Contains(by_id_held.message(), a.acquire().lease().runtime_dir()));
  ASSERT_NE(broker().core().leases().find(id), nullptr) << "bob's attempt must not end alice's lease";

  // The same requests once the lease is gone give byte-identical replies.
  ASSERT_EQ(release_id(kAlice, id).status(), v1::OK);
  const auto by_id_missing = release_id(kBob, id);
  const auto by_display_missing = release_display(kBob, display);
  EXPECT_EQ(by_id_held.SerializeAsString(), by_id_missing.SerializeAsString())
      << "'" << by_id_held.message() << "' vs '" << by_id_missing.message() << "'";
  EXPECT_EQ(by_display_held.SerializeAsString(), by_display_missing.SerializeAsString())
      << "'" << by_display_held.message() << "' vs '" << by_display_missing.message() << "'";
  EXPECT_TRUE(Contains(by_id_missing.message(), "list"));
}

TEST_F(LeaseCoreOnLinuxHostTest, ReleaseMessageDoesNotEchoALongIdInFull) {
  const std::string long_id(5000, 'x');
  const auto r = release_id(kAlice, long_id);
  EXPECT_EQ(r.status(), v1::NOT_FOUND);
  EXPECT_LT(r.message().size(), 300u);
}

TEST_F(LeaseCoreOnLinuxHostTest, RootAndAdminsMayReleaseAnyLease) {
  const std::string a = must_acquire_id(kAlice);
  const std::string b = must_acquire_id(kBob);
  EXPECT_EQ(release_id(kAdmin, a).status(), v1::OK);
  EXPECT_EQ(release_id(kRoot, b).status(), v1::OK);
  EXPECT_EQ(broker().core().leases().size(), 0u);
}

TEST_F(LeaseCoreOnLinuxHostTest, ListShowsOnlyTheCallersOwnLeases) {
  const std::uint32_t a1 = must_acquire(kAlice);
  const std::uint32_t b1 = must_acquire(kBob);
  const std::uint32_t a2 = must_acquire(kAlice);
  const auto la = list(kAlice);
  ASSERT_EQ(la.status(), v1::OK);
  EXPECT_EQ(listed_displays(la), (std::vector<std::uint32_t>{std::min(a1, a2), std::max(a1, a2)}));
  for (const auto& l : la.list().leases()) {
    EXPECT_EQ(l.uid(), 4001u);
    EXPECT_EQ(l.state(), v1::ACTIVE);
  }
  EXPECT_EQ(listed_displays(list(kBob)), std::vector<std::uint32_t>{b1});
  EXPECT_TRUE(list(kCarol).list().leases().empty()) << "a user with no leases sees none";
  EXPECT_EQ(list(kCarol).status(), v1::OK) << "list is open to every user";
}

TEST_F(LeaseCoreOnLinuxHostTest, ListAllIsForRootAndAdminGroupsOnly) {
  must_acquire(kAlice);
  must_acquire(kBob);
  must_acquire(kAlice);
  for (const Caller& c : {kAlice, kBob, kCarol}) {
    const auto r = list(c, true);
    EXPECT_EQ(r.status(), v1::DENIED) << c.uid;
    EXPECT_EQ(r.list().leases_size(), 0);
    EXPECT_TRUE(Contains(r.message(), "admin-groups"));
  }
  for (const Caller& c : {kRoot, kAdmin}) {
    const auto r = list(c, true);
    ASSERT_EQ(r.status(), v1::OK) << c.uid;
    const auto displays = listed_displays(r);
    EXPECT_EQ(displays.size(), 3u);
    EXPECT_TRUE(std::is_sorted(displays.begin(), displays.end()));
  }
}

TEST_F(LeaseCoreOnLinuxHostTest, ConnectionClosedEndsThatConnectionsLeasesOnly) {
  config_.max_leases = 10;
  config_.max_leases_per_user = 10;
  const std::string a1 = must_acquire_id(kAlice, 1);
  const std::string a2 = must_acquire_id(kAlice, 1);
  const std::string a3 = must_acquire_id(kAlice, 2);
  const std::string b1 = must_acquire_id(kBob, 3);
  ASSERT_EQ(broker().core().allocator().free_count(), 1u);

  broker().core().connection_closed(1);
  EXPECT_EQ(broker().core().leases().find(a1), nullptr);
  EXPECT_EQ(broker().core().leases().find(a2), nullptr);
  EXPECT_NE(broker().core().leases().find(a3), nullptr);
  EXPECT_NE(broker().core().leases().find(b1), nullptr);
  EXPECT_EQ(broker().core().leases().size(), 2u);
  EXPECT_EQ(broker().core().allocator().free_count(), 3u) << "the ended leases' displays are free again";
  expect_consistent();

  broker().core().connection_closed(1);   // again: nothing left of it
  broker().core().connection_closed(42);  // never existed
  EXPECT_EQ(broker().core().leases().size(), 2u);
  broker().core().connection_closed(3);
  EXPECT_EQ(broker().core().leases().find(b1), nullptr);
  EXPECT_NE(broker().core().leases().find(a3), nullptr);
}

TEST_F(LeaseCoreOnLinuxHostTest, OpenLoginPreparesTheDirectoryAndCountsSessions) {
  const auto r1 = open_login(4001);
  ASSERT_EQ(r1.status(), v1::OK) << r1.message();
  EXPECT_EQ(r1.open_login().login_sessions(), 1u);
  EXPECT_EQ(r1.open_login().runtime_dir(), runtime_dir_ + "/4001");
  struct stat st {};
  ASSERT_EQ(::lstat((runtime_dir_ + "/4001").c_str(), &st), 0);
  EXPECT_EQ(st.st_uid, 4001u);
  EXPECT_EQ(open_login(4001).open_login().login_sessions(), 2u);
  EXPECT_EQ(open_login(4002).open_login().login_sessions(), 1u) << "counted per uid";
}

TEST_F(LeaseCoreOnLinuxHostTest, LoginVerbsAreRootOnly) {
  for (const Caller& c : {kAlice, kAdmin, kCarol}) {
    EXPECT_EQ(open_login(c.uid, c).status(), v1::DENIED) << c.uid;
    EXPECT_EQ(close_login(c.uid, true, c).status(), v1::DENIED) << c.uid;
  }
  struct stat st {};
  EXPECT_NE(::lstat((runtime_dir_ + "/4001").c_str(), &st), 0) << "a denied open_login must not create anything";
}

TEST_F(LeaseCoreOnLinuxHostTest, CloseLoginWithReapEndsLeasesOnlyWhenTheLastLoginSessionEnds) {
  ASSERT_EQ(open_login(4001).status(), v1::OK);
  ASSERT_EQ(open_login(4001).status(), v1::OK);
  must_acquire(kAlice);
  must_acquire(kAlice);
  const std::string bob = must_acquire_id(kBob);

  const auto first = close_login(4001, true);
  ASSERT_EQ(first.status(), v1::OK);
  EXPECT_EQ(first.close_login().login_sessions(), 1u);
  EXPECT_EQ(first.close_login().leases_ended(), 0u);
  EXPECT_EQ(broker().core().leases().count_for_uid(4001), 2u) << "another login session of alice is still open";

  const auto last = close_login(4001, true);
  ASSERT_EQ(last.status(), v1::OK);
  EXPECT_EQ(last.close_login().login_sessions(), 0u);
  EXPECT_EQ(last.close_login().leases_ended(), 2u);
  EXPECT_EQ(broker().core().leases().count_for_uid(4001), 0u);
  EXPECT_NE(broker().core().leases().find(bob), nullptr) << "other users' leases are untouched";
  expect_consistent();
}

TEST_F(LeaseCoreOnLinuxHostTest, CloseLoginWithoutReapKeepsLeases) {
  ASSERT_EQ(open_login(4001).status(), v1::OK);
  must_acquire(kAlice);
  const auto r = close_login(4001, false);
  ASSERT_EQ(r.status(), v1::OK);
  EXPECT_EQ(r.close_login().login_sessions(), 0u);
  EXPECT_EQ(r.close_login().leases_ended(), 0u);
  EXPECT_EQ(broker().core().leases().count_for_uid(4001), 1u);
}

TEST_F(LeaseCoreOnLinuxHostTest, LoginSessionCountNeverGoesBelowZero) {
  ASSERT_EQ(open_login(4001).status(), v1::OK);
  EXPECT_EQ(close_login(4001, false).close_login().login_sessions(), 0u);
  EXPECT_EQ(close_login(4001, false).close_login().login_sessions(), 0u);
  EXPECT_EQ(open_login(4001).open_login().login_sessions(), 1u);
}

TEST_F(LeaseCoreOnLinuxHostTest, MissingVerbIsInvalid) {
  const v1::Request empty;
  for (const Caller& c : {kRoot, kAlice, kCarol}) {
    const auto r = broker().core().handle(c, 1, empty);
    EXPECT_EQ(r.status(), v1::INVALID);
    EXPECT_FALSE(r.message().empty());
  }
}

// Every verb the protocol defines: a verb in the policy table reaches a
// handler; one that is not in the table is INVALID before any handler runs.
TEST_F(LeaseCoreOnLinuxHostTest, EveryProtocolVerbIsEitherHandledOrInvalid) {
  const auto* oneof = v1::Request::descriptor()->FindOneofByName("verb");
  ASSERT_NE(oneof, nullptr);
  for (int i = 0; i < oneof->field_count(); ++i) {
    const auto* field = oneof->field(i);
    SCOPED_TRACE(field->name());
    v1::Request r;
    r.GetReflection()->MutableMessage(&r, field);
    ASSERT_EQ(static_cast<int>(r.verb_case()), field->number());
    const auto resp = broker().core().handle(kRoot, 1, r);
    EXPECT_NE(resp.status(), v1::STATUS_UNSPECIFIED);
    if (find_verb_rule(r.verb_case()) == nullptr) {
      EXPECT_EQ(resp.status(), v1::INVALID);
    } else {
      EXPECT_FALSE(Contains(resp.message(), "unknown request verb")) << "verb in the policy table has no handler";
    }
  }
}

// The metrics verb: admins get the exposition; what it counts follows what
// the handlers did (the renderer's format is broker_metrics_test's).
TEST_F(LeaseCoreOnLinuxHostTest, MetricsAreForRootAndAdminsAndCountWhatHappened) {
  v1::Request m;
  m.mutable_metrics();
  const auto denied = broker().core().handle(kAlice, 1, m);
  EXPECT_EQ(denied.status(), v1::DENIED);
  EXPECT_FALSE(denied.has_metrics());
  EXPECT_TRUE(Contains(denied.message(), "admin-groups"));

  must_acquire(kAlice);
  must_acquire(kAlice);
  const std::string bobs = must_acquire_id(kBob);
  for (int i = 0; i < 1; ++i) must_acquire(kAlice);
  EXPECT_EQ(acquire(kAlice).status(), v1::EXHAUSTED);  // her quota of 3
  ASSERT_EQ(release_id(kBob, bobs).status(), v1::OK);

  for (const Caller& admin : {kRoot, kAdmin}) {
    const auto r = broker().core().handle(admin, 1, m);
    ASSERT_EQ(r.status(), v1::OK) << r.message();
    const std::string& text = r.metrics().exposition();
    EXPECT_TRUE(Contains(text, "xpra_broker_leases{state=\"active\"} 3\n"));
    EXPECT_TRUE(Contains(text, "xpra_broker_user_leases{user=\"4001\",uid=\"4001\"} 3\n"))
        << "uids without a passwd entry are named by number";
    EXPECT_TRUE(Contains(text, "xpra_broker_requests_total{verb=\"acquire\",status=\"OK\"} 4\n"));
    EXPECT_TRUE(Contains(text, "xpra_broker_requests_total{verb=\"acquire\",status=\"EXHAUSTED\"} 1\n"));
    EXPECT_TRUE(Contains(text, "xpra_broker_requests_total{verb=\"release\",status=\"OK\"} 1\n"));
    EXPECT_TRUE(Contains(text, "xpra_broker_requests_total{verb=\"metrics\",status=\"DENIED\"} 1\n"));
    EXPECT_TRUE(Contains(text, "xpra_broker_acquire_refusals_total{reason=\"user_quota\"} 1\n"));
    EXPECT_TRUE(Contains(text, "xpra_broker_leases_ended_total 1\n"));
    EXPECT_TRUE(Contains(text, "xpra_broker_free_displays 2\n"));
    EXPECT_TRUE(Contains(text, "xpra_broker_displays 5\n"));
    EXPECT_TRUE(Contains(text, "xpra_broker_x_server_warn_threshold 4\n"));
  }
  EXPECT_EQ(broker().core().counters().requests(v1::Request::kMetrics, v1::OK), 2u);
}

TEST_F(LeaseCoreOnLinuxHostTest, MetricsCountBlockedDisplaysByReason) {
  probe_.facts[100] = live_x_server(100, 1234, 777);
  probe_.facts[101] = dead_lock(101, 4321, 778);  // stale, but no cleaner here: a leftover
  EXPECT_EQ(must_acquire(kAlice), 102u);
  const auto snapshot = broker().core().metrics_snapshot();
  EXPECT_EQ(snapshot.blocked[static_cast<std::size_t>(BlockReason::in_use)], 1u);
  EXPECT_EQ(snapshot.blocked[static_cast<std::size_t>(BlockReason::leftovers)], 1u);
  EXPECT_EQ(snapshot.free_displays, 2u);
  EXPECT_EQ(snapshot.leases_active, 1u);
  // The reason users read in status is the same fact.
  const auto user_status = status(kAlice);
  const auto* live = find_blocked(user_status, 100);
  ASSERT_NE(live, nullptr);
  EXPECT_EQ(live->reason(), block_reason_text(BlockReason::in_use));
}

TEST_F(LeaseCoreOnLinuxHostTest, PurposeOfAtMost128BytesIsAccepted) {
  const auto ok = acquire(kAlice, 1, std::string(128, 'p'));
  ASSERT_EQ(ok.status(), v1::OK) << ok.message();
  EXPECT_EQ(ok.acquire().lease().purpose(), std::string(128, 'p'));
  const auto empty = acquire(kAlice, 1, "");
  EXPECT_EQ(empty.status(), v1::OK);
}

TEST_F(LeaseCoreOnLinuxHostTest, PurposeLongerThan128BytesIsInvalid) {
  for (std::size_t n : {129u, 1000u, 60000u}) {
    const auto r = acquire(kAlice, 1, std::string(n, 'p'));
    EXPECT_EQ(r.status(), v1::INVALID) << n;
    EXPECT_TRUE(Contains(r.message(), "128"));
  }
  EXPECT_EQ(broker().core().leases().size(), 0u);
  EXPECT_TRUE(probe_.calls.empty()) << "an invalid request must not reach the host";
}

TEST_F(LeaseCoreOnLinuxHostTest, CallerOutsideAllowedGroupsIsDeniedAcquire) {
  const auto r = acquire(kCarol);
  EXPECT_EQ(r.status(), v1::DENIED);
  EXPECT_TRUE(Contains(r.message(), "allowed-groups"));
  EXPECT_EQ(broker().core().leases().size(), 0u);
  EXPECT_TRUE(probe_.calls.empty());
  struct stat st {};
  EXPECT_NE(::lstat((runtime_dir_ + "/4003").c_str(), &st), 0) << "no directory for a denied caller";
  // Status and list stay open to her.
  EXPECT_EQ(status(kCarol).status(), v1::OK);
  EXPECT_EQ(list(kCarol).status(), v1::OK);
}

TEST_F(LeaseCoreOnLinuxHostTest, SupplementaryGroupAndAdminGroupMayAcquire) {
  EXPECT_EQ(acquire(kBob).status(), v1::OK);
  EXPECT_EQ(acquire(kAdmin).status(), v1::OK);
}

TEST_F(LeaseCoreOnLinuxHostTest, StatusReportsRangeQuotasCountsWarningsAndUptime) {
  broker().core().set_warnings({"runtime dir is writable by others"});
  broker().core().set_connection_count(7);
  must_acquire(kAlice);
  now_ += seconds(5);
  const auto r = status(kCarol);
  ASSERT_EQ(r.status(), v1::OK);
  const auto& s = r.status_reply();
  EXPECT_FALSE(s.version().empty());
  EXPECT_EQ(s.range_first(), 100u);
  EXPECT_EQ(s.range_last(), 104u);
  EXPECT_EQ(s.leases(), 1u);
  EXPECT_EQ(s.max_leases(), 4u);
  EXPECT_EQ(s.max_leases_per_user(), 3u);
  EXPECT_EQ(s.free_displays(), 4u);
  EXPECT_EQ(s.connections(), 7u);
  EXPECT_EQ(s.uptime_ms(), 5000);
  EXPECT_EQ(s.warnings_size(), 0) << "start-up findings are for admins";
  const auto a = status(kAdmin).status_reply();
  ASSERT_EQ(a.warnings_size(), 1);
  EXPECT_EQ(a.warnings(0), "runtime dir is writable by others");
}

TEST_F(LeaseCoreOnLinuxHostTest, RepliesStayWithinOneFrameWhateverTheCounts) {
  // Every number of a large range blocked, and many leases: status and
  // list --all are capped with totals, so each reply fits the frame limit.
  config_.display_first = 1000;
  config_.display_last = 2999;
  config_.max_leases = 1000;
  config_.max_leases_per_user = 1000;
  for (std::uint32_t d = 1000; d < 2500; ++d) probe_.facts[d] = live_x_server(d, 100000 + d, 4000 + d);
  for (int i = 0; i < 400; ++i) {
    const std::string purpose(128, 'p');
    ASSERT_EQ(acquire(kAlice, 1, purpose).status(), v1::OK) << i;
  }
  const auto s = status(kAdmin);
  EXPECT_EQ(s.status_reply().blocked_total(), 1500u);
  EXPECT_EQ(s.status_reply().blocked_size(), static_cast<int>(kMaxListedBlocked));
  EXPECT_LE(s.ByteSizeLong(), wire::kMaxFrameSize);
  v1::Request r;
  r.mutable_list()->set_all(true);
  const auto l = broker().core().handle(kRoot, 1, r);
  EXPECT_EQ(l.list().leases_total(), 400u);
  EXPECT_EQ(l.list().leases_size(), static_cast<int>(kMaxListedLeases));
  EXPECT_LE(l.ByteSizeLong(), wire::kMaxFrameSize);
}

TEST_F(LeaseCoreOnLinuxHostTest, PurposeWithControlCharactersIsRefused) {
  for (const std::string& purpose : std::vector<std::string>{"a\nlease=forged", "\x1b[2J", std::string("nul\0", 4), "\xff"}) {
    const auto r = acquire(kAlice, 1, purpose);
    EXPECT_EQ(r.status(), v1::INVALID);
    EXPECT_TRUE(Contains(r.message(), "printable")) << r.message();
  }
  EXPECT_EQ(broker().core().leases().size(), 0u);
  EXPECT_EQ(acquire(kAlice, 1, "Grüße: xpra desktop").status(), v1::OK);
}

TEST_F(LeaseCoreOnLinuxHostTest, DirectoryFailureGivesInternalAndTakesNoDisplay) {
  // A regular file where alice's directory goes.
  const std::string in_the_way = runtime_dir_ + "/4001";
  std::ofstream(in_the_way) << "not a directory";
  const auto r = acquire(kAlice);
  EXPECT_EQ(r.status(), v1::INTERNAL);
  EXPECT_TRUE(Contains(r.message(), in_the_way));
  EXPECT_EQ(broker().core().leases().size(), 0u);
  EXPECT_EQ(broker().core().allocator().free_count(), 5u);
  // Bob is not affected.
  EXPECT_EQ(acquire(kBob).status(), v1::OK);
}

TEST_F(LeaseCoreOnLinuxHostTest, AcquireIsRateLimitedPerUser) {
  config_.acquire_burst = 2;
  config_.acquires_per_minute = 1;
  config_.max_leases_per_user = 10;
  config_.max_leases = 10;
  EXPECT_EQ(acquire(kAlice).status(), v1::OK);
  EXPECT_EQ(acquire(kAlice).status(), v1::OK);
  const auto r = acquire(kAlice);
  EXPECT_EQ(r.status(), v1::RATE_LIMITED);
  EXPECT_GT(r.retry_after_ms(), 0u);
  EXPECT_TRUE(Contains(r.message(), "acquire-burst=2"));
  EXPECT_EQ(acquire(kBob).status(), v1::OK) << "the limit is per user";
  now_ += seconds(60);
  EXPECT_EQ(acquire(kAlice).status(), v1::OK) << "the bucket refills with time";
}

TEST_F(LeaseCoreOnLinuxHostTest, ReleasedDisplayIsReusedOnlyAfterTheRestOfTheRange) {
  config_.max_leases_per_user = 10;
  config_.max_leases = 10;
  const auto first = acquire(kAlice);
  ASSERT_EQ(first.status(), v1::OK);
  ASSERT_EQ(release_id(kAlice, first.acquire().lease().id()).status(), v1::OK);
  std::vector<std::uint32_t> order;
  for (int i = 0; i < 5; ++i) order.push_back(must_acquire(kAlice));
  EXPECT_EQ(order.back(), first.acquire().lease().display());
  EXPECT_EQ(std::set<std::uint32_t>(order.begin(), order.end()).size(), 5u);
}

// Random and mutated requests from ordinary users: every one gets a reply
// with a status, and the table and allocator stay in step.
TEST_F(LeaseCoreOnLinuxHostTest, RandomRequestsNeverBreakTheBroker) {
  // Invalid UTF-8 in string fields is expected here; protobuf would log each.
  google::protobuf::LogSilencer quiet_protobuf;
  config_.max_leases_per_user = 3;
  config_.max_leases = 4;
  std::vector<std::string> seeds;
  {
    v1::Request r;
    r.mutable_acquire()->set_purpose("xpra start");
    seeds.push_back(r.SerializeAsString());
    r.mutable_release()->set_display(101);
    seeds.push_back(r.SerializeAsString());
    r.mutable_release()->set_lease_id("0123456789abcdef");
    seeds.push_back(r.SerializeAsString());
    r.mutable_list()->set_all(true);
    seeds.push_back(r.SerializeAsString());
    r.mutable_status();
    seeds.push_back(r.SerializeAsString());
    r.mutable_close_login()->set_uid(4001);
    r.mutable_close_login()->set_reap_leases(true);
    seeds.push_back(r.SerializeAsString());
  }
  const Caller callers[] = {kAlice, kBob, kCarol, kAdmin};
  std::mt19937 rng(2718);
  int handled = 0;
  for (int i = 0; i < 3000; ++i) {
    std::string bytes = seeds[rng() % seeds.size()];
    for (int e = 0, n = rng() % 3; e < n && !bytes.empty(); ++e) bytes[rng() % bytes.size()] ^= char(1 << (rng() % 8));
    v1::Request req;
    if (!req.ParseFromString(bytes)) continue;
    const Caller& c = callers[rng() % 4];
    const ConnectionId conn = 1 + rng() % 3;
    const auto resp = broker().core().handle(c, conn, req);
    ++handled;
    ASSERT_NE(resp.status(), v1::STATUS_UNSPECIFIED) << "request " << i;
    if (resp.status() != v1::OK) {
      ASSERT_FALSE(resp.message().empty()) << "request " << i;
    }
    ASSERT_LE(broker().core().leases().size(), 4u);
    for (const Caller& u : callers) ASSERT_LE(broker().core().leases().count_for_uid(u.uid), 3u);
    ASSERT_EQ(broker().core().leases().count_for_uid(kCarol.uid), 0u) << "carol may never hold a display";
    if (rng() % 50 == 0) broker().core().connection_closed(1 + rng() % 3);
    if (rng() % 20 == 0) now_ += seconds(rng() % 40);
    ASSERT_NO_FATAL_FAILURE(expect_consistent());
  }
  EXPECT_GT(handled, 1000);
}

}  // namespace
}  // namespace xpra_broker
