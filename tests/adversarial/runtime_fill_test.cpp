// Issue 21, attack 2: the runtime dir shares its filesystem with every
// allowed user's own directory (<runtime-dir>/<uid>). Alice fills hers to
// the last byte and keeps the file open but deleted (so `du` does not show
// it). Bob's acquires and releases must keep working: the journal appends
// into the space reserve it allocated at start-up (lease_journal.h).
//
// Then the admin must find her: root's `status` names alice with the bytes in
// her directory and the deleted file she keeps open (found through
// /proc/<pid>/fd by the client run as root); bob's status shows bob's usage
// only, alice's hers.
//
// The runtime dir is a 32 MiB tmpfs mounted for the test (as /run is on a
// real host); a private --x11-tmp-dir, displays 52720-52729.
#include <fcntl.h>
#include <sys/mount.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <tuple>

#include "adversarial_support.h"

namespace xpra_broker::adversarial {
namespace {

constexpr int kCycles = 75;

class RuntimeFillTest : public AdversarialTest {
 protected:
  void TearDown() override {
    if (!tmpfs_.empty()) {
      if (broker_) broker_->stop();
      ::umount2(tmpfs_.c_str(), MNT_DETACH);
    }
    AdversarialTest::TearDown();
  }
  // A broker whose runtime dir is a fresh 32 MiB tmpfs.
  void start_on_tmpfs(const std::string& displays) {
    broker_ = std::make_unique<integration::BrokerProcess>(std::vector<std::string>{
        "--displays=" + displays, "--x11-tmp-dir=" + private_x11_dir(), "--acquire-burst=100000",
        "--acquires-per-minute=1000000", "--allowed-groups=" + std::string(kAllowedGroup)});
    run_ = broker_->runtime_dir();
    integration::make_directory(run_, 0755);
    ASSERT_EQ(::mount("tmpfs", run_.c_str(), "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, "size=32m,mode=0755"), 0)
        << std::strerror(errno);
    tmpfs_ = run_;
    broker_->start(60s);
  }
  // Alice fills the filesystem from her directory: 4 MiB in a file du (and
  // the broker) can see, the rest in a file she deleted and keeps open until
  // counter 7 is set. Counters: 0 = bytes written, 1 = errno that stopped
  // her (ENOSPC), 2 = full.
  std::unique_ptr<BackgroundAs> fill_as_alice() {
    const std::string alice_dir = run_ + "/" + std::to_string(integration::uid_of(kAlice));
    const std::string filler = alice_dir + "/filler", visible = alice_dir + "/visible";
    auto filling = std::make_unique<BackgroundAs>(kAlice, [filler, visible](BackgroundAs::Counters& c) {
      const int shown = ::open(visible.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
      if (shown < 0) return 1;
      const std::string mib(1 << 20, 'v');
      for (int i = 0; i < 4; ++i)
        if (::write(shown, mib.data(), mib.size()) != static_cast<ssize_t>(mib.size())) return 1;
      ::close(shown);
      const int fd = ::open(filler.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
      if (fd < 0) return 1;
      ::unlink(filler.c_str());  // hidden from du, still holding the space
      const std::string block(65536, 'x');
      for (;;) {
        const ssize_t n = ::write(fd, block.data(), block.size());
        if (n > 0) c[0] += static_cast<std::uint64_t>(n);
        if (n < 0 && errno != EINTR) {
          c[1] = static_cast<std::uint64_t>(errno);
          break;
        }
      }
      c[2] = 1;
      while (c[7] == 0) ::usleep(100000);
      ::close(fd);
      return 0;
    });
    EXPECT_TRUE(integration::wait_until([&] { return filling->counter(2) == 1 || filling->wait_for(0ms); }, 60s));
    EXPECT_EQ(filling->counter(1), static_cast<std::uint64_t>(ENOSPC)) << "alice could not fill the filesystem";
    return filling;
  }
  // Acquire+release pairs of `agent`'s, up to `cycles`; the number that
  // worked, and in `refusal` the first refusal.
  static int pairs(UserAgent& agent, int cycles, std::string& refusal, bool stop_at_refusal = false) {
    int ok = 0;
    for (int i = 0; i < cycles; ++i) {
      const auto a = agent.call(acquire_request("while-alice-fills-the-disk"));
      if (a.status_name() != "OK") {
        if (refusal.empty()) refusal = a.status_name() + ": " + a.response.message();
        if (stop_at_refusal) break;
        continue;
      }
      const auto r = agent.call(release_request(a.response.acquire().lease().id()));
      if (r.status_name() == "OK") ++ok;
      else if (refusal.empty()) refusal = "release " + r.status_name() + ": " + r.response.message();
    }
    return ok;
  }
  // Both users have their directories (made at their first acquire).
  static void first_pairs(UserAgent& alice, UserAgent& bob) {
    for (auto* agent : {&alice, &bob}) {
      const auto a = agent->call(acquire_request("first"));
      ASSERT_EQ(a.status_name(), "OK") << a.response.message();
      ASSERT_EQ(agent->call(release_request(a.response.acquire().lease().id())).status_name(), "OK");
    }
  }
  std::string run_;
  std::string tmpfs_;
};

TEST_F(RuntimeFillTest, AUserFillingHerRuntimeDirDoesNotStopOtherUsersLeases) {
  ASSERT_NO_FATAL_FAILURE(start_on_tmpfs("52720-52729"));
  const std::string run = run_;
  const std::string socket = broker_->socket_path();
  UserAgent alice(kAlice, socket), bob(kBob, socket);
  ASSERT_NO_FATAL_FAILURE(first_pairs(alice, bob));
  const uid_t alice_uid = integration::uid_of(kAlice), bob_uid = integration::uid_of(kBob);
  auto filling_ptr = fill_as_alice();
  ASSERT_FALSE(HasFailure());
  BackgroundAs& filling = *filling_ptr;

  std::string first_refusal;
  const int ok = pairs(bob, kCycles, first_refusal);
  lifecycle::report("alice filled the runtime dir's filesystem with " + std::to_string(filling.counter(0) >> 20) +
                    " MiB (deleted, kept open); bob: " + std::to_string(ok) + " of " + std::to_string(kCycles) +
                    " acquire+release pairs OK");
  EXPECT_EQ(ok, kCycles) << "first refusal: " << first_refusal;

  // Who uses the space. The broker's survey (root's raw status): alice's
  // directory with its visible 4 MiB, the deleted file among the
  // unattributed bytes.
  const v1::Response root_raw = broker_->call(status_request());
  const auto& space = root_raw.status_reply().runtime_space();
  EXPECT_TRUE(space.running_low()) << space.free_bytes() << " bytes free of " << space.size_bytes();
  const auto usage_of = [](const v1::RuntimeSpace& sp, uid_t uid) -> const v1::RuntimeDirUsage* {
    for (const auto& u : sp.users())
      if (u.uid() == uid) return &u;
    return nullptr;
  };
  const auto* alice_usage = usage_of(space, alice_uid);
  ASSERT_NE(alice_usage, nullptr) << "root's status does not name alice: " << root_raw.ShortDebugString();
  EXPECT_GE(alice_usage->bytes(), 4u << 20);
  EXPECT_LT(alice_usage->bytes(), 8u << 20) << "the deleted file is in no directory; the broker cannot see it";
  EXPECT_GE(space.unattributed_bytes(), filling.counter(0) / 2);
  // The client run as root adds the deleted, kept-open file and its holder.
  const auto root_json = lifecycle::LifecycleTest::parse_json(broker_->client_as("root", {"status", "--json"}));
  std::uint64_t alice_deleted = 0;
  for (const auto& u : root_json["runtime_space"]["users"])
    if (u["uid"].get<uid_t>() == alice_uid) alice_deleted = u["deleted_open_bytes"].get<std::uint64_t>();
  lifecycle::report("root's status: alice uses " + std::to_string(alice_usage->bytes() >> 10) +
                    " KiB in her directory and " + std::to_string(alice_deleted >> 10) +
                    " KiB deleted but kept open; " + std::to_string(space.free_bytes() >> 10) + " KiB free of " +
                    std::to_string(space.size_bytes() >> 10));
  EXPECT_GE(alice_deleted + (1u << 20), filling.counter(0)) << root_json["runtime_space"].dump();
  // Users see their own directory only.
  for (auto [agent, self, other] : {std::tuple{&bob, bob_uid, alice_uid}, std::tuple{&alice, alice_uid, bob_uid}}) {
    const auto own = agent->call(status_request());
    ASSERT_EQ(own.status_name(), "OK");
    const auto& own_space = own.response.status_reply().runtime_space();
    EXPECT_NE(usage_of(own_space, self), nullptr)
        << "uid " << self << " does not see her own usage: " << own_space.ShortDebugString();
    EXPECT_EQ(usage_of(own_space, other), nullptr) << "uid " << self << " sees uid " << other << "'s usage";
    EXPECT_EQ(own_space.unattributed_bytes(), 0u);
  }
  filling.set_counter(7, 1);
}

// Round two, the reserve itself: having filled the filesystem, alice goes on
// acquiring and releasing as fast as the broker lets her, to use up the
// journal's 1 MiB reserve (some 3,500 pairs) and so stop everyone again.
// While the journal lives on its reserve, each user's new leases may take
// only her share of it (durable/reserve_shares.h): alice is refused after
// some 200 pairs, bob's pairs keep working, a PAM login (root's open_login)
// is recorded, and nothing acknowledged is lost: bob's lease taken on the
// full disk is there after the broker restarts.
//
// Displays 52760-52769.
TEST_F(RuntimeFillTest, AUserWhoFilledTheDiskCannotUseUpTheJournalReserveForEveryone) {
  ASSERT_NO_FATAL_FAILURE(start_on_tmpfs("52760-52769"));
  const std::string socket = broker_->socket_path();
  auto alice = std::make_unique<UserAgent>(kAlice, socket);
  auto bob = std::make_unique<UserAgent>(kBob, socket);
  ASSERT_NO_FATAL_FAILURE(first_pairs(*alice, *bob));
  auto filling = fill_as_alice();
  ASSERT_FALSE(HasFailure());

  constexpr int kAlicePairs = 5000;  // more than the whole reserve holds
  std::string alice_refusal, bob_refusal;
  const int alice_ok = pairs(*alice, kAlicePairs, alice_refusal, true);
  const int bob_ok = pairs(*bob, kCycles, bob_refusal);
  const auto held = bob->call(acquire_request("taken-on-a-full-disk"));
  v1::Request login;
  login.mutable_open_login()->set_uid(integration::uid_of(kAlice));
  const v1::Response login_reply = broker_->call(login);
  const v1::Response status = broker_->call(status_request());
  lifecycle::report("on a full disk alice made " + std::to_string(alice_ok) + " acquire+release pairs before " +
                    (alice_refusal.empty() ? std::string("none was refused") : "a refusal") + "; then bob " +
                    std::to_string(bob_ok) + " of " + std::to_string(kCycles) + "; root's open_login " +
                    v1::Status_Name(login_reply.status()) + "; journal: " +
                    (status.status_reply().journal_problem().empty() ? std::string("ok")
                                                                     : status.status_reply().journal_problem()));
  EXPECT_LT(alice_ok, 1000) << "alice used far more than her share of the journal's reserve";
  EXPECT_FALSE(alice_refusal.empty());
  EXPECT_EQ(bob_ok, kCycles) << "first refusal: " << bob_refusal;
  ASSERT_EQ(held.status_name(), "OK") << held.response.message();
  EXPECT_EQ(login_reply.status(), v1::OK) << login_reply.message();

  // Nothing acknowledged was lost: alice frees the space, the broker
  // restarts from its journal, bob's lease is back (waiting for him).
  const std::string lease_id = held.response.acquire().lease().id();
  // (Bob's connection stays: a lease whose holder hangs up ends; one whose
  // broker stops waits for its holder after the restart.)
  alice.reset();
  filling->set_counter(7, 1);
  ASSERT_TRUE(filling->wait_for(30s).has_value());
  broker_->stop();
  broker_->start(60s);
  bool found = false;
  const v1::Response listed = broker_->call(list_request(true));
  for (const auto& l : listed.list().leases()) found = found || l.id() == lease_id;
  EXPECT_TRUE(found) << "bob's lease " << lease_id << ", acknowledged on the full disk, is gone after a restart";
}

}  // namespace
}  // namespace xpra_broker::adversarial
