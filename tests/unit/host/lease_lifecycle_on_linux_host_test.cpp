// The lease core on the real host, the lifecycle verbs and paths: report_process,
// report_start_failure (quarantine, back-off), how a lease ends (end_lease /
// finish_lease through a LeaseReaper), close_login. Driven through handle()
// like lease_core_on_linux_host_test.cpp, with a clock the test moves and a reaper that
// holds on to each job until the test says it is done.
//
// Runs as root (like CI): per-user directories are handed to made-up uids,
// and report_process is given real processes of the test's own uid and of
// children switched to other uids.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <algorithm>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "daemon/assembly.h"
#include "test_processes.h"
#include "test_support.h"

namespace xpra_broker {
namespace {

using std::chrono::seconds;
using testing::Contains;
using testing::ScopedChild;
using testing::SleeperOptions;
using testing::spawn_sleeper;
using testing::TempDir;

constexpr gid_t kUsersGroup = 5000;

Caller make_caller(uid_t uid, gid_t gid, std::vector<gid_t> groups = {}) {
  Caller c;
  c.uid = uid;
  c.gid = gid;
  c.pid = 20000 + static_cast<pid_t>(uid % 10000);
  c.groups = std::move(groups);
  return c;
}

const Caller kAlice = make_caller(4001, kUsersGroup);
const Caller kBob = make_caller(4002, 4002, {kUsersGroup});
const Caller kRoot = make_caller(0, 0);

// Nothing runs on the host's displays, unless a test puts something there
// (after an acquire: an X server of someone else that raced the lease's own).
class FreeProbe : public DisplayProbe {
 public:
  explicit FreeProbe(const std::map<std::uint32_t, DisplayFacts>& host)
      : DisplayProbe("/nonexistent/x11", "/nonexistent/xpra", "unit-test-host"), host_(host) {}
  DisplayFacts probe(std::uint32_t display, const std::string&) const override {
    if (auto it = host_.find(display); it != host_.end()) return it->second;
    DisplayFacts f;
    f.display = display;
    return f;
  }

 private:
  const std::map<std::uint32_t, DisplayFacts>& host_;
};

// Keeps every job and its `done` until the test finishes it.
class HeldReaper : public LeaseReaper {
 public:
  struct Job {
    ReapJob job;
    std::function<void(ReapOutcome)> done;
  };
  void reap(ReapJob job, std::function<void(ReapOutcome)> done) override {
    jobs.push_back({std::move(job), std::move(done)});
  }
  // Finishes the job of lease `id`.
  void finish(const std::string& id, ReapOutcome outcome = {}) {
    for (auto& j : jobs)
      if (j.job.lease_id == id) {
        j.done(std::move(outcome));
        return;
      }
    ADD_FAILURE() << "no reap job for lease " << id;
  }
  std::size_t jobs_for(const std::string& id) const {
    return std::count_if(jobs.begin(), jobs.end(), [&](const Job& j) { return j.job.lease_id == id; });
  }
  std::vector<Job> jobs;
};

class LeaseLifecycleOnLinuxHostTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_EQ(::geteuid(), 0u) << "these tests hand directories and processes to test uids: run them as root";
    ASSERT_TRUE(testing::restore_effective_capabilities());
    runtime_dir_ = tmp_.path() + "/run";
    ASSERT_EQ(::mkdir(runtime_dir_.c_str(), 0755), 0);
    config_.runtime_dir = runtime_dir_;
    config_.display_first = 100;
    config_.display_last = 104;
    config_.max_leases_per_user = 10;
    config_.max_leases = 10;
    config_.recheck_seconds = 30;
    config_.quarantine_seconds = 120;
    // The restart-loop defence is off unless a test turns it on.
    config_.acquire_burst = 100000;
    config_.acquires_per_minute = 1000000;
    config_.failures_before_backoff = 1000;
    config_.backoff_base_ms = 1000;
    config_.backoff_max_seconds = 300;
    config_.healthy_after_seconds = 10;
    policy_.allowed_gids = {kUsersGroup};
    self_ = make_caller(::getuid(), ::getgid());
  }

  // Built on first use, so a test can change config_ first.
  BrokerAssembly& broker() {
    if (!broker_) {
      UniqueFd dir(::open(runtime_dir_.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
      EXPECT_TRUE(dir);
      AssemblyParts parts;
      parts.host.probe = std::make_unique<FreeProbe>(host_);
      parts.host.user_dirs = std::make_unique<UserDirectories>(std::move(dir), runtime_dir_, ::getegid());
      parts.host.clock = [this] { return now_; };
      if (with_reaper_) parts.host.reaper = &reaper_;
      parts.host.xpra_dir_notes = xpra_dir_notes_;
      broker_ = std::make_unique<BrokerAssembly>(config_, policy_, std::move(parts));
    }
    return *broker_;
  }
  // Built with reaper_ as its reaper (before its first use).
  BrokerAssembly& broker_with_reaper() {
    EXPECT_FALSE(broker_) << "the reaper is a part of the broker: ask for it first";
    with_reaper_ = true;
    return broker();
  }

  v1::Response acquire(const Caller& c, ConnectionId conn = 1) {
    v1::Request r;
    r.mutable_acquire()->set_purpose("lifecycle test");
    return broker().core().handle(c, conn, r);
  }
  v1::Lease must_acquire(const Caller& c, ConnectionId conn = 1) {
    const auto r = acquire(c, conn);
    EXPECT_EQ(r.status(), v1::OK) << r.message();
    return r.acquire().lease();
  }
  v1::Response release(const Caller& c, const std::string& id, std::optional<int> exit_status = std::nullopt) {
    v1::Request r;
    r.mutable_release()->set_lease_id(id);
    if (exit_status) r.mutable_release()->set_exit_status(*exit_status);
    return broker().core().handle(c, 1, r);
  }
  v1::Response release_display(const Caller& c, std::uint32_t display) {
    v1::Request r;
    r.mutable_release()->set_display(display);
    return broker().core().handle(c, 1, r);
  }
  v1::Response report(const Caller& c, const std::string& id, pid_t pid, v1::ProcessRole role = v1::SESSION) {
    v1::Request r;
    r.mutable_report_process()->set_lease_id(id);
    r.mutable_report_process()->set_pid(pid);
    r.mutable_report_process()->set_role(role);
    return broker().core().handle(c, 1, r);
  }
  v1::Response start_failed(const Caller& c, const std::string& id, v1::StartFailure failure,
                            const std::string& detail = "") {
    v1::Request r;
    r.mutable_report_start_failure()->set_lease_id(id);
    r.mutable_report_start_failure()->set_failure(failure);
    r.mutable_report_start_failure()->set_detail(detail);
    return broker().core().handle(c, 1, r);
  }
  v1::Response list(const Caller& c) {
    v1::Request r;
    r.mutable_list();
    return broker().core().handle(c, 1, r);
  }
  v1::Response status() {
    v1::Request r;
    r.mutable_status();
    return broker().core().handle(kRoot, 1, r);
  }
  v1::Response open_login(uid_t uid) {
    v1::Request r;
    r.mutable_open_login()->set_uid(uid);
    return broker().core().handle(kRoot, 99, r);
  }
  v1::Response close_login(uid_t uid, bool reap) {
    v1::Request r;
    r.mutable_close_login()->set_uid(uid);
    r.mutable_close_login()->set_reap_leases(reap);
    return broker().core().handle(kRoot, 99, r);
  }
  const v1::BlockedDisplay* find_blocked(const v1::Response& s, std::uint32_t display) {
    for (const auto& b : s.status_reply().blocked())
      if (b.display() == display) return &b;
    return nullptr;
  }
  const v1::Lease* listed(const v1::Response& l, const std::string& id) {
    for (const auto& lease : l.list().leases())
      if (lease.id() == id) return &lease;
    return nullptr;
  }
  std::vector<int> process_pids(const Caller& c, const std::string& id) {
    const auto l = list(c);
    const v1::Lease* lease = listed(l, id);
    if (!lease) return {};
    return {lease->process_pids().begin(), lease->process_pids().end()};
  }
  // Something of another user appears on the display: what makes a start
  // there fail with a display conflict the broker can confirm.
  void plant_foreign_x11_socket(std::uint32_t display, uid_t owner = 4999) {
    DisplayFacts f;
    f.display = display;
    f.x11_socket.kind = FileKind::socket;
    f.x11_socket.owner = owner;
    f.x11_socket.listening = true;
    host_[display] = f;
  }
  void expect_consistent() {
    EXPECT_EQ(broker().core().leases().size(), broker().core().allocator().leased_count());
    for (const Lease* l : broker().core().leases().all())
      EXPECT_TRUE(broker().core().allocator().is_leased(l->display)) << l->display;
  }

  TempDir tmp_;
  std::string runtime_dir_;
  BrokerConfig config_;
  AccessPolicy policy_;
  Caller self_;
  HeldReaper reaper_;
  bool with_reaper_ = false;
  std::vector<XpraDirReport> xpra_dir_notes_;
  std::map<std::uint32_t, DisplayFacts> host_;
  SteadyTime now_ = SteadyTime{} + std::chrono::hours(1000);
  std::unique_ptr<BrokerAssembly> broker_;
};

// ---- report_process ----------------------------------------------------------

TEST_F(LeaseLifecycleOnLinuxHostTest, ReportProcessOfAnotherUsersPidIsDeniedAndNotTracked) {
  const auto lease = must_acquire(self_);
  ScopedChild stranger = spawn_sleeper(SleeperOptions().as_uid(4321));
  ASSERT_TRUE(stranger);
  ProcessInfo info;
  ASSERT_TRUE(read_process(stranger.pid(), info));
  ASSERT_EQ(info.uid, 4321u) << "/proc must show the child under the other uid";

  const auto r = report(self_, lease.id(), stranger.pid(), v1::X_SERVER);
  EXPECT_EQ(r.status(), v1::DENIED);
  EXPECT_TRUE(Contains(r.message(), "not a running process of yours"));
  EXPECT_TRUE(process_pids(self_, lease.id()).empty());
  EXPECT_TRUE(broker().core().leases().find(lease.id())->processes.empty());

  // Alice may not report root's processes (this test's own pid) either.
  const auto alices = must_acquire(kAlice);
  EXPECT_EQ(report(kAlice, alices.id(), ::getpid()).status(), v1::DENIED);
  EXPECT_TRUE(broker().core().leases().find(alices.id())->processes.empty());
}

TEST_F(LeaseLifecycleOnLinuxHostTest, ReportProcessOfAPidThatDoesNotRunIsDenied) {
  const auto lease = must_acquire(self_);
  for (pid_t pid : {testing::dead_pid(), pid_t{0}, pid_t{-1}, pid_t{-12345}, pid_t{2147483647}}) {
    SCOPED_TRACE(pid);
    const auto r = report(self_, lease.id(), pid);
    EXPECT_EQ(r.status(), v1::DENIED);
    EXPECT_FALSE(r.message().empty());
  }
  EXPECT_TRUE(broker().core().leases().find(lease.id())->processes.empty());
}

TEST_F(LeaseLifecycleOnLinuxHostTest, ReportProcessOfOwnLivePidIsTrackedAndListed) {
  const auto lease = must_acquire(self_);
  ScopedChild leader = spawn_sleeper(SleeperOptions().leading_own_group());
  ScopedChild member = spawn_sleeper();  // in the test's own group, leading nothing
  ASSERT_TRUE(leader && member);

  const auto r1 = report(self_, lease.id(), leader.pid(), v1::X_SERVER);
  ASSERT_EQ(r1.status(), v1::OK) << r1.message();
  EXPECT_TRUE(r1.has_report_process());
  const auto r2 = report(self_, lease.id(), member.pid(), v1::SESSION);
  ASSERT_EQ(r2.status(), v1::OK) << r2.message();

  EXPECT_EQ(process_pids(self_, lease.id()), (std::vector<int>{leader.pid(), member.pid()}));
  const Lease* l = broker().core().leases().find(lease.id());
  ASSERT_NE(l, nullptr);
  ASSERT_EQ(l->processes.size(), 2u);
  EXPECT_EQ(l->processes[0].pid, leader.pid());
  EXPECT_EQ(l->processes[0].role, v1::X_SERVER);
  EXPECT_EQ(l->processes[0].group_leader, leader.pid()) << "it leads its own group";
  ASSERT_TRUE(l->processes[0].handle && l->processes[0].handle->pidfd);
  EXPECT_TRUE(pidfd_alive(l->processes[0].handle->pidfd.get()));
  EXPECT_EQ(l->processes[1].pid, member.pid());
  EXPECT_EQ(l->processes[1].group_leader, 0) << "a group it does not lead must not be tracked";
  EXPECT_EQ(l->processes[1].session_leader, 0);
}

TEST_F(LeaseLifecycleOnLinuxHostTest, ReportProcessOfAUsersOwnChildIsTracked) {
  const auto lease = must_acquire(kAlice);
  ScopedChild alices = spawn_sleeper(SleeperOptions().leading_own_group().as_uid(kAlice.uid));
  ASSERT_TRUE(alices);
  const auto r = report(kAlice, lease.id(), alices.pid(), v1::X_SERVER);
  ASSERT_EQ(r.status(), v1::OK) << r.message();
  EXPECT_EQ(process_pids(kAlice, lease.id()), std::vector<int>{alices.pid()});
  // Bob's process is not Alice's.
  ScopedChild bobs = spawn_sleeper(SleeperOptions().as_uid(kBob.uid));
  ASSERT_TRUE(bobs);
  EXPECT_EQ(report(kAlice, lease.id(), bobs.pid()).status(), v1::DENIED);
  EXPECT_EQ(process_pids(kAlice, lease.id()), std::vector<int>{alices.pid()});
}

TEST_F(LeaseLifecycleOnLinuxHostTest, ReportProcessForAnotherUsersLeaseIsNotFound) {
  const auto alices = must_acquire(kAlice);
  ScopedChild bobs = spawn_sleeper(SleeperOptions().as_uid(kBob.uid));
  ASSERT_TRUE(bobs);
  const auto held = report(kBob, alices.id(), bobs.pid());
  EXPECT_EQ(held.status(), v1::NOT_FOUND);
  EXPECT_FALSE(Contains(held.message(), "4001"));
  EXPECT_TRUE(broker().core().leases().find(alices.id())->processes.empty());
  EXPECT_EQ(report(kBob, "0123456789abcdef", bobs.pid()).status(), v1::NOT_FOUND);
  EXPECT_EQ(report(kBob, "", bobs.pid()).status(), v1::NOT_FOUND);
  // Root holds no lease of its own here: not even root reports into Alice's.
  EXPECT_EQ(report(kRoot, alices.id(), ::getpid()).status(), v1::NOT_FOUND);

  // Once the lease is gone the same request gets the very same reply.
  ASSERT_EQ(release(kAlice, alices.id()).status(), v1::OK);
  const auto missing = report(kBob, alices.id(), bobs.pid());
  EXPECT_EQ(held.SerializeAsString(), missing.SerializeAsString())
      << "'" << held.message() << "' vs '" << missing.message() << "'";
}

TEST_F(LeaseLifecycleOnLinuxHostTest, ReportProcessTracksAtMost16ProcessesPerLease) {
  const auto lease = must_acquire(self_);
  std::vector<ScopedChild> children;
  for (int i = 0; i < 17; ++i) {
    children.push_back(spawn_sleeper());
    ASSERT_TRUE(children.back());
  }
  for (int i = 0; i < 16; ++i) ASSERT_EQ(report(self_, lease.id(), children[i].pid()).status(), v1::OK) << i;
  const auto r = report(self_, lease.id(), children[16].pid());
  EXPECT_EQ(r.status(), v1::EXHAUSTED);
  EXPECT_TRUE(Contains(r.message(), "16"));
  EXPECT_EQ(process_pids(self_, lease.id()).size(), 16u);
  // Another lease has its own 16.
  const auto other = must_acquire(self_);
  EXPECT_EQ(report(self_, other.id(), children[16].pid()).status(), v1::OK);
}

TEST_F(LeaseLifecycleOnLinuxHostTest, ReportOnAnEndingLeaseIsNotFound) {
  broker_with_reaper();
  const auto lease = must_acquire(self_);
  ScopedChild child = spawn_sleeper();
  ASSERT_TRUE(child);
  ASSERT_EQ(release(self_, lease.id()).status(), v1::OK);
  ASSERT_NE(broker().core().leases().find(lease.id()), nullptr) << "still ending";
  EXPECT_EQ(report(self_, lease.id(), child.pid()).status(), v1::NOT_FOUND);
  EXPECT_EQ(start_failed(self_, lease.id(), v1::DISPLAY_CONFLICT).status(), v1::NOT_FOUND);
  EXPECT_TRUE(broker().core().leases().find(lease.id())->processes.empty());
  EXPECT_EQ(find_blocked(status(), lease.display()), nullptr) << "a report on an ending lease must not quarantine";
}

TEST_F(LeaseLifecycleOnLinuxHostTest, ReapJobCarriesTheLeaseAndItsReportedProcesses) {
  broker_with_reaper();
  const auto lease = must_acquire(self_);
  ScopedChild leader = spawn_sleeper(SleeperOptions().leading_own_group());
  ASSERT_TRUE(leader);
  ASSERT_EQ(report(self_, lease.id(), leader.pid(), v1::X_SERVER).status(), v1::OK);
  ASSERT_EQ(release(self_, lease.id()).status(), v1::OK);
  ASSERT_EQ(reaper_.jobs.size(), 1u);
  const ReapJob& job = reaper_.jobs[0].job;
  EXPECT_EQ(job.lease_id, lease.id());
  EXPECT_EQ(job.uid, self_.uid);
  EXPECT_EQ(job.display, lease.display());
  EXPECT_EQ(job.user_dir, lease.runtime_dir());
  ASSERT_EQ(job.processes.size(), 1u);
  EXPECT_EQ(job.processes[0].pid, leader.pid());
  EXPECT_EQ(job.processes[0].group_leader, leader.pid());
  ASSERT_TRUE(job.processes[0].handle && job.processes[0].handle->pidfd);
  EXPECT_TRUE(pidfd_alive(job.processes[0].handle->pidfd.get()));
}

// ---- report_start_failure: quarantine and back-off ------------------------------

TEST_F(LeaseLifecycleOnLinuxHostTest, DisplayConflictQuarantinesTheDisplay) {
  const auto lease = must_acquire(kAlice);
  ASSERT_EQ(lease.display(), 100u);
  plant_foreign_x11_socket(100);
  const auto r = start_failed(kAlice, lease.id(), v1::DISPLAY_CONFLICT,
                              "_XSERVTransSocketUNIXCreateListener: ...SocketCreateListener() failed\n"
                              "_XSERVTransMakeAllCOTSServerListeners: server already running\n");
  ASSERT_EQ(r.status(), v1::OK) << r.message();
  EXPECT_EQ(r.report_start_failure().quarantined_display(), 100u);
  EXPECT_TRUE(r.report_start_failure().conflict_confirmed());
  EXPECT_EQ(broker().core().leases().find(lease.id()), nullptr) << "the failed start ends the lease";
  host_.erase(100);  // the other X server is gone again; the quarantine stays

  const auto s = status();
  const auto* blocked = find_blocked(s, 100);
  ASSERT_NE(blocked, nullptr) << "status must list the quarantined display";
  EXPECT_TRUE(Contains(blocked->reason(), "quarantined"));
  EXPECT_TRUE(Contains(blocked->reason(), "uid 4999")) << "root sees the evidence: " << blocked->reason();
  EXPECT_EQ(blocked->reason().find('\n'), std::string::npos);
  EXPECT_EQ(blocked->owner_uid(), kAlice.uid);
  EXPECT_EQ(s.status_reply().free_displays(), 4u);

  // Every other number is handed out; 100 is not.
  std::set<std::uint32_t> got;
  for (int i = 0; i < 4; ++i) got.insert(must_acquire(kAlice).display());
  EXPECT_EQ(got, (std::set<std::uint32_t>{101, 102, 103, 104}));
  EXPECT_EQ(acquire(kAlice).status(), v1::EXHAUSTED);
  now_ += seconds(119);
  EXPECT_EQ(acquire(kAlice).status(), v1::EXHAUSTED) << "quarantine-seconds=120 has not passed";
  EXPECT_NE(find_blocked(status(), 100), nullptr);
  now_ += seconds(1);
  EXPECT_EQ(must_acquire(kAlice).display(), 100u) << "back in the pool after the quarantine";
  expect_consistent();
}

TEST_F(LeaseLifecycleOnLinuxHostTest, XprasAlreadyRunningIsConfirmedByAnotherUsersSocketInAnXpraConfigDir) {
  // bob's socket appeared in a shared socket dir of the host's Xpra config
  // after the probe handed the number out.
  const auto lease = must_acquire(kAlice);
  DisplayFacts f;
  f.display = lease.display();
  f.xpra_dir_entries.push_back({"/srv/xpra-shared", {FileKind::socket, kBob.uid, false}});
  host_[lease.display()] = f;
  const auto r = start_failed(kAlice, lease.id(), v1::DISPLAY_CONFLICT,
                              "xpra initialization error:\n An xpra server is already running at "
                              "/srv/xpra-shared/unit-test-host-100\n");
  ASSERT_EQ(r.status(), v1::OK) << r.message();
  EXPECT_TRUE(r.report_start_failure().conflict_confirmed());
  EXPECT_EQ(r.report_start_failure().quarantined_display(), lease.display());
  const auto s = status();
  const auto* blocked = find_blocked(s, lease.display());
  ASSERT_NE(blocked, nullptr);
  EXPECT_TRUE(Contains(blocked->reason(), "uid 4002 in xpra socket dir /srv/xpra-shared")) << blocked->reason();
}

TEST_F(LeaseLifecycleOnLinuxHostTest, StatusSaysWhereXpraLooksToEveryCaller) {
  xpra_dir_notes_ = {{"/run/xpra", "/etc/xpra/conf.d/10_network.conf", "checked: runtime dir", true},
                    {"~/.xpra", "/etc/xpra/conf.d/10_network.conf", "not checked: per-user", false}};
  for (const Caller& caller : {kAlice, kRoot}) {
    v1::Request request;
    request.mutable_status();
    const auto s = broker().core().handle(caller, 1, request).status_reply();
    EXPECT_EQ(s.xpra_socket_hostname(), "unit-test-host");
    ASSERT_EQ(s.xpra_socket_dirs_size(), 2);
    EXPECT_EQ(s.xpra_socket_dirs(0).path(), "/run/xpra");
    EXPECT_TRUE(s.xpra_socket_dirs(0).shared());
    EXPECT_EQ(s.xpra_socket_dirs(1).path(), "~/.xpra");
    EXPECT_FALSE(s.xpra_socket_dirs(1).shared());
    EXPECT_EQ(s.xpra_socket_dirs(1).source(), "/etc/xpra/conf.d/10_network.conf");
  }
}

TEST_F(LeaseLifecycleOnLinuxHostTest, OtherStartFailuresDoNotQuarantine) {
  for (v1::StartFailure failure : {v1::TIMEOUT, v1::EXITED, v1::START_FAILURE_UNSPECIFIED}) {
    SCOPED_TRACE(v1::StartFailure_Name(failure));
    const auto lease = must_acquire(kAlice);
    const auto r = start_failed(kAlice, lease.id(), failure, "(EE) no screens found");
    ASSERT_EQ(r.status(), v1::OK) << r.message();
    EXPECT_EQ(r.report_start_failure().quarantined_display(), 0u);
    EXPECT_EQ(broker().core().leases().find(lease.id()), nullptr) << "the lease ends";
    EXPECT_EQ(find_blocked(status(), lease.display()), nullptr);
  }
  EXPECT_EQ(broker().core().allocator().free_count(), 5u);
}

TEST_F(LeaseLifecycleOnLinuxHostTest, StartFailureOfAnotherUsersLeaseIsNotFound) {
  const auto lease = must_acquire(kAlice);
  EXPECT_EQ(start_failed(kBob, lease.id(), v1::DISPLAY_CONFLICT).status(), v1::NOT_FOUND);
  EXPECT_NE(broker().core().leases().find(lease.id()), nullptr);
  EXPECT_EQ(find_blocked(status(), lease.display()), nullptr) << "bob must not be able to quarantine alice's display";
}

TEST_F(LeaseLifecycleOnLinuxHostTest, DisplayConflictQuarantineOutlastsTheReap) {
  broker_with_reaper();
  const auto lease = must_acquire(kAlice);
  plant_foreign_x11_socket(100);
  ASSERT_EQ(start_failed(kAlice, lease.id(), v1::DISPLAY_CONFLICT, "server already running").status(), v1::OK);
  ASSERT_EQ(reaper_.jobs_for(lease.id()), 1u);
  reaper_.finish(lease.id());
  host_.erase(100);
  EXPECT_EQ(broker().core().leases().find(lease.id()), nullptr);
  EXPECT_FALSE(broker().core().allocator().is_leased(100));
  EXPECT_NE(find_blocked(status(), 100), nullptr) << "the reap must not end the quarantine";
  for (int i = 0; i < 4; ++i) EXPECT_NE(must_acquire(kBob).display(), 100u);
  EXPECT_EQ(acquire(kBob).status(), v1::EXHAUSTED);
  now_ += seconds(120);
  EXPECT_EQ(must_acquire(kBob).display(), 100u);
}

TEST_F(LeaseLifecycleOnLinuxHostTest, QuarantineThatEndsWhileTheLeaseIsReapingDoesNotFreeALeasedDisplay) {
  config_.display_last = 100;
  broker_with_reaper();
  const auto lease = must_acquire(kAlice);
  plant_foreign_x11_socket(100);
  ASSERT_EQ(start_failed(kAlice, lease.id(), v1::DISPLAY_CONFLICT, "x").status(), v1::OK);
  host_.erase(100);
  now_ += seconds(500);  // the quarantine ends while the reap still runs
  EXPECT_EQ(acquire(kBob).status(), v1::EXHAUSTED) << "the display is still held by the ending lease";
  expect_consistent();
  reaper_.finish(lease.id());
  EXPECT_EQ(must_acquire(kBob).display(), 100u);
  expect_consistent();
}

TEST_F(LeaseLifecycleOnLinuxHostTest, AConflictTheBrokerCannotSeeIsNotBelievedAndCountsAgainstTheReporter) {
  config_.failures_before_backoff = 2;
  // Nothing of anyone else on the display, or only the reporter's own files.
  for (int i = 0; i < 2; ++i) {
    const auto lease = must_acquire(kAlice);
    if (i == 1) plant_foreign_x11_socket(lease.display(), kAlice.uid);
    const auto r = start_failed(kAlice, lease.id(), v1::DISPLAY_CONFLICT, "server already running");
    host_.erase(lease.display());
    ASSERT_EQ(r.status(), v1::OK) << r.message();
    EXPECT_EQ(r.report_start_failure().quarantined_display(), 0u) << "round " << i;
    EXPECT_FALSE(r.report_start_failure().conflict_confirmed());
    EXPECT_EQ(find_blocked(status(), lease.display()), nullptr) << "a claim alone must not block a number";
  }
  const auto r = acquire(kAlice);
  EXPECT_EQ(r.status(), v1::RATE_LIMITED) << "two unconfirmed conflicts are two failed starts: back-off";
  EXPECT_EQ(acquire(kBob).status(), v1::OK) << "and only the reporter pays for them";
}

TEST_F(LeaseLifecycleOnLinuxHostTest, OneUsersConfirmedQuarantinesAreBounded) {
  config_.max_quarantines_per_user = 2;
  std::vector<std::uint32_t> quarantined, not_quarantined;
  for (int i = 0; i < 4; ++i) {
    const auto lease = must_acquire(kAlice);
    plant_foreign_x11_socket(lease.display());
    const auto r = start_failed(kAlice, lease.id(), v1::DISPLAY_CONFLICT, "server already running");
    host_.erase(lease.display());
    ASSERT_EQ(r.status(), v1::OK);
    EXPECT_TRUE(r.report_start_failure().conflict_confirmed());
    (r.report_start_failure().quarantined_display() ? quarantined : not_quarantined).push_back(lease.display());
  }
  ASSERT_EQ(quarantined.size(), 2u) << "max-quarantines-per-user=2";
  ASSERT_EQ(not_quarantined.size(), 2u);
  // Beyond the bound nothing is blocked: the next probe judges the number.
  for (auto d : not_quarantined) EXPECT_EQ(find_blocked(status(), d), nullptr) << d;
  for (auto d : quarantined) EXPECT_NE(find_blocked(status(), d), nullptr) << d;
  EXPECT_EQ(broker().core().allocator().free_count(), 3u);
  // Once one runs out, the user may hold another.
  now_ += seconds(config_.quarantine_seconds);
  const auto lease = must_acquire(kAlice);
  plant_foreign_x11_socket(lease.display());
  EXPECT_EQ(start_failed(kAlice, lease.id(), v1::DISPLAY_CONFLICT, "x").report_start_failure().quarantined_display(),
            lease.display());
}

TEST_F(LeaseLifecycleOnLinuxHostTest, UsersSeeThatANumberIsBlockedButNotWhoseOrWhy) {
  const auto lease = must_acquire(kAlice);
  plant_foreign_x11_socket(lease.display());
  ASSERT_EQ(start_failed(kAlice, lease.id(), v1::DISPLAY_CONFLICT, "\x1b[31mforged\nline").status(), v1::OK);
  v1::Request r;
  r.mutable_status();
  const auto as_bob = broker().core().handle(kBob, 7, r);
  const auto* b = find_blocked(as_bob, lease.display());
  ASSERT_NE(b, nullptr);
  EXPECT_EQ(b->reason(), "quarantined after a display conflict");
  EXPECT_EQ(b->owner_uid(), 0u);
  EXPECT_EQ(b->pid(), 0);
  const auto root_status = status();
  const auto* as_root = find_blocked(root_status, lease.display());
  ASSERT_NE(as_root, nullptr);
  EXPECT_EQ(as_root->owner_uid(), kAlice.uid);
}

TEST_F(LeaseLifecycleOnLinuxHostTest, StartFailuresFeedTheBackOff) {
  config_.failures_before_backoff = 2;
  for (int i = 0; i < 2; ++i) {
    const auto lease = must_acquire(kAlice);
    ASSERT_EQ(start_failed(kAlice, lease.id(), v1::TIMEOUT).status(), v1::OK);
  }
  const auto r = acquire(kAlice);
  EXPECT_EQ(r.status(), v1::RATE_LIMITED);
  EXPECT_GE(r.retry_after_ms(), 1000u);
  EXPECT_LE(r.retry_after_ms(), 1001u);
  EXPECT_TRUE(Contains(r.message(), "backing off"));
  EXPECT_TRUE(Contains(r.message(), "2"));
  EXPECT_EQ(acquire(kBob).status(), v1::OK) << "back-off is per user";
  now_ += std::chrono::milliseconds(r.retry_after_ms());
  const auto lease = must_acquire(kAlice);
  // A confirmed display conflict is the host's doing, not the session's: it
  // does not count, so the client's retry on another display is not held back.
  plant_foreign_x11_socket(lease.display());
  ASSERT_EQ(start_failed(kAlice, lease.id(), v1::DISPLAY_CONFLICT).status(), v1::OK);
  host_.erase(lease.display());
  const auto retry = must_acquire(kAlice);
  // The third real failure doubles the wait.
  ASSERT_EQ(start_failed(kAlice, retry.id(), v1::EXITED).status(), v1::OK);
  const auto r2 = acquire(kAlice);
  EXPECT_EQ(r2.status(), v1::RATE_LIMITED);
  EXPECT_GE(r2.retry_after_ms(), 2000u);
  EXPECT_LE(r2.retry_after_ms(), 2001u);
}

TEST_F(LeaseLifecycleOnLinuxHostTest, ShortLivedConnectionCloseCountsAsAFailure) {
  config_.failures_before_backoff = 1;
  must_acquire(kAlice, 5);
  now_ += seconds(2);
  broker().core().connection_closed(5);
  const auto r = acquire(kAlice, 6);
  EXPECT_EQ(r.status(), v1::RATE_LIMITED) << r.message();
  EXPECT_GT(r.retry_after_ms(), 0u);

  // A lease that ran healthy-after-seconds=10 is not a failure.
  must_acquire(kBob, 7);
  now_ += seconds(10);
  broker().core().connection_closed(7);
  EXPECT_EQ(acquire(kBob, 8).status(), v1::OK);
}

TEST_F(LeaseLifecycleOnLinuxHostTest, ExitStatusOfTheOwnersReleaseFeedsTheBackOff) {
  config_.failures_before_backoff = 2;
  auto run_session = [&](const Caller& releaser, std::optional<int> exit_status) {
    const auto lease = must_acquire(kAlice);
    now_ += seconds(1);
    ASSERT_EQ(release(releaser, lease.id(), exit_status).status(), v1::OK);
  };
  run_session(kAlice, 1);             // failure 1
  run_session(kAlice, 0);             // clean exit: count reset
  run_session(kAlice, 1);             // failure 1
  run_session(kAlice, std::nullopt);  // unknown: neutral
  run_session(kRoot, 1);              // somebody else's release: neutral
  EXPECT_EQ(acquire(kAlice).status(), v1::OK) << "only one failure since the clean exit";
  run_session(kAlice, 2);  // failure 2
  EXPECT_EQ(acquire(kAlice).status(), v1::RATE_LIMITED);
}

// ---- how a lease ends -------------------------------------------------------

TEST_F(LeaseLifecycleOnLinuxHostTest, EndingLeaseCountsAgainstTheQuotaUntilItIsFinished) {
  config_.max_leases_per_user = 2;
  broker_with_reaper();
  const auto a = must_acquire(kAlice, 1);
  const auto b = must_acquire(kAlice, 2);

  const auto r = release(kAlice, a.id());
  ASSERT_EQ(r.status(), v1::OK) << r.message();
  EXPECT_EQ(r.release().lease().state(), v1::ENDING);
  ASSERT_EQ(reaper_.jobs.size(), 1u);
  const auto l = list(kAlice);
  ASSERT_NE(listed(l, a.id()), nullptr) << "an ending lease is still listed";
  EXPECT_EQ(listed(l, a.id())->state(), v1::ENDING);
  EXPECT_EQ(listed(l, b.id())->state(), v1::ACTIVE);

  const auto refused = acquire(kAlice, 3);
  EXPECT_EQ(refused.status(), v1::EXHAUSTED) << "the ending lease still counts";
  EXPECT_TRUE(Contains(refused.message(), "max-leases-per-user=2"));

  // Releasing it again, by id or by display, is OK and starts nothing new.
  for (int i = 0; i < 3; ++i) {
    const auto again = release(kAlice, a.id());
    EXPECT_EQ(again.status(), v1::OK) << again.message();
    EXPECT_EQ(again.release().lease().state(), v1::ENDING);
    EXPECT_EQ(release_display(kAlice, a.display()).status(), v1::OK);
  }
  broker().core().connection_closed(1);
  EXPECT_EQ(reaper_.jobs.size(), 1u) << "an ending lease is reaped once";

  reaper_.finish(a.id());
  EXPECT_EQ(broker().core().leases().find(a.id()), nullptr);
  EXPECT_EQ(release(kAlice, a.id()).status(), v1::NOT_FOUND) << "finished: gone";
  EXPECT_EQ(acquire(kAlice, 3).status(), v1::OK);
  expect_consistent();
}

TEST_F(LeaseLifecycleOnLinuxHostTest, EndingLeaseCountsAgainstTheHostWideLimit) {
  config_.max_leases = 2;
  broker_with_reaper();
  const auto a = must_acquire(kAlice);
  must_acquire(kBob);
  ASSERT_EQ(release(kAlice, a.id()).status(), v1::OK);
  EXPECT_EQ(acquire(kBob).status(), v1::EXHAUSTED);
  reaper_.finish(a.id());
  EXPECT_EQ(acquire(kBob).status(), v1::OK);
}

TEST_F(LeaseLifecycleOnLinuxHostTest, DisplayReturnsToThePoolOnlyWhenDoneIsCalled) {
  config_.display_last = 101;
  broker_with_reaper();
  const auto a = must_acquire(kAlice);
  const auto b = must_acquire(kBob);
  ASSERT_EQ(a.display(), 100u);
  ASSERT_EQ(b.display(), 101u);
  ASSERT_EQ(release(kAlice, a.id()).status(), v1::OK);
  EXPECT_TRUE(broker().core().allocator().is_leased(100));
  EXPECT_EQ(broker().core().allocator().free_count(), 0u);
  const auto r = acquire(kBob);
  EXPECT_EQ(r.status(), v1::EXHAUSTED) << "display 100 is still being reaped";
  EXPECT_TRUE(Contains(r.message(), "no free display"));
  now_ += seconds(3600);  // time alone does not bring it back
  EXPECT_EQ(acquire(kBob).status(), v1::EXHAUSTED);

  reaper_.finish(a.id());
  EXPECT_FALSE(broker().core().allocator().is_leased(100));
  EXPECT_EQ(broker().core().allocator().free_count(), 1u);
  const auto c = must_acquire(kBob);
  EXPECT_EQ(c.display(), 100u);
  expect_consistent();

  // A reaper that calls done twice must not end the display's new lease.
  reaper_.finish(a.id());
  EXPECT_NE(broker().core().leases().find(c.id()), nullptr);
  EXPECT_TRUE(broker().core().allocator().is_leased(100));
  expect_consistent();
}

TEST_F(LeaseLifecycleOnLinuxHostTest, UnkillableProcessesKeepTheDisplayBlocked) {
  config_.display_last = 100;
  broker_with_reaper();
  const auto a = must_acquire(kAlice);
  ASSERT_EQ(release(kAlice, a.id()).status(), v1::OK);
  ReapOutcome outcome;
  outcome.killed = 2;
  outcome.unkillable = 1;
  reaper_.finish(a.id(), outcome);
  EXPECT_EQ(broker().core().leases().find(a.id()), nullptr) << "the lease itself is over";
  const auto s = status();
  const auto* blocked = find_blocked(s, 100);
  ASSERT_NE(blocked, nullptr);
  EXPECT_TRUE(Contains(blocked->reason(), "SIGKILL"));
  EXPECT_EQ(s.status_reply().free_displays(), 0u);
  EXPECT_EQ(acquire(kBob).status(), v1::EXHAUSTED);
  now_ += seconds(119);
  EXPECT_EQ(acquire(kBob).status(), v1::EXHAUSTED);
  now_ += seconds(1);
  EXPECT_EQ(must_acquire(kBob).display(), 100u) << "back after quarantine-seconds";
}

TEST_F(LeaseLifecycleOnLinuxHostTest, OutcomeWithEverythingEndedFreesTheDisplayAtOnce) {
  config_.display_last = 100;
  broker_with_reaper();
  const auto a = must_acquire(kAlice);
  ASSERT_EQ(release(kAlice, a.id()).status(), v1::OK);
  ReapOutcome outcome;
  outcome.terminated = 3;
  outcome.killed = 1;
  outcome.removed.push_back({"/tmp/.X100-lock", 4001, 5, "stale X lock file"});
  outcome.removed.push_back({"/tmp/.X11-unix/X100", 4001, 5, "stale X11 socket"});
  reaper_.finish(a.id(), outcome);
  EXPECT_EQ(find_blocked(status(), 100), nullptr);
  EXPECT_EQ(status().status_reply().stale_removed(), 2u);
  EXPECT_EQ(must_acquire(kBob).display(), 100u);
}

TEST_F(LeaseLifecycleOnLinuxHostTest, WithoutAReaperALeaseEndsAtOnce) {
  const auto a = must_acquire(kAlice);
  const auto r = release(kAlice, a.id());
  ASSERT_EQ(r.status(), v1::OK);
  EXPECT_EQ(broker().core().leases().find(a.id()), nullptr);
  EXPECT_FALSE(broker().core().allocator().is_leased(a.display()));
}

// ---- close_login --------------------------------------------------------------

TEST_F(LeaseLifecycleOnLinuxHostTest, CloseLoginOfAUidThatNeverOpenedOneReapsNothing) {
  broker_with_reaper();
  const auto a1 = must_acquire(kAlice);
  const auto a2 = must_acquire(kAlice);
  const auto r = close_login(kAlice.uid, /*reap=*/true);
  ASSERT_EQ(r.status(), v1::OK) << r.message();
  EXPECT_FALSE(r.close_login().counted());
  EXPECT_EQ(r.close_login().leases_ended(), 0u);
  EXPECT_EQ(r.close_login().login_sessions(), 0u);
  EXPECT_TRUE(reaper_.jobs.empty());
  EXPECT_EQ(broker().core().leases().count_for_uid(kAlice.uid), 2u);
  EXPECT_EQ(listed(list(kAlice), a1.id())->state(), v1::ACTIVE);

  // Counted from here on: the last close ends both leases through the reaper.
  ASSERT_EQ(open_login(kAlice.uid).status(), v1::OK);
  const auto last = close_login(kAlice.uid, true);
  ASSERT_EQ(last.status(), v1::OK);
  EXPECT_TRUE(last.close_login().counted());
  EXPECT_EQ(last.close_login().leases_ended(), 2u);
  EXPECT_EQ(reaper_.jobs.size(), 2u);
  EXPECT_EQ(broker().core().leases().count_for_uid(kAlice.uid), 2u) << "still ending until reaped";
  reaper_.finish(a1.id());
  reaper_.finish(a2.id());
  EXPECT_EQ(broker().core().leases().count_for_uid(kAlice.uid), 0u);
  expect_consistent();

  // And once counted down to zero, another close is uncounted again.
  const auto extra = close_login(kAlice.uid, true);
  EXPECT_FALSE(extra.close_login().counted());
}

TEST_F(LeaseLifecycleOnLinuxHostTest, CloseLoginDoesNotEndTheLeaseOfADifferentUser) {
  broker_with_reaper();
  const auto bobs = must_acquire(kBob);
  ASSERT_EQ(open_login(kAlice.uid).status(), v1::OK);
  const auto r = close_login(kAlice.uid, true);
  EXPECT_TRUE(r.close_login().counted());
  EXPECT_EQ(r.close_login().leases_ended(), 0u);
  EXPECT_TRUE(reaper_.jobs.empty());
  EXPECT_NE(broker().core().leases().find(bobs.id()), nullptr);
}

}  // namespace
}  // namespace xpra_broker
