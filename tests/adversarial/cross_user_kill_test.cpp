// Attack 1, cross-user kill: a lock file is a claim of whoever wrote it.
// `exec --xvfb` starts Xvfb with -displayfd, which writes no /tmp/.X<N>-lock,
// so while bob's lease runs the path is free; mallory (not even allowed to
// take displays) writes it, naming another process of bob's (or of root's,
// for a lease of root's). When the lease ends the broker must not signal
// that process: a lock owned by somebody else never gives a pid to signal.
//
// What must keep working is covered elsewhere, not repeated here: the X
// server that `xpra start` leaves behind when its holder goes (parent gone,
// a session of its own, found through its own lock file) is still reaped
// (lifecycle.XpraSessionTest.XpraStartEndedBySigtermOrKillNineLeavesNothing),
// and a lease's reported processes and X server end with it
// (tests/lifecycle/reaping_test.cpp).
#include <signal.h>
#include <sys/stat.h>

#include "adversarial_support.h"

namespace xpra_broker::adversarial {
namespace {

using integration::process_running;
using integration::wait_until;
using lifecycle::path_exists;
using lifecycle::x_lock_path;

class CrossUserKillTest : public AdversarialTest {
 protected:
  // Waits until lease `id` is gone from `list --all`: an ended lease stays
  // there (ENDING) until its reaping is done, so any wrong signal has been
  // sent by then.
  bool wait_lease_gone(const std::string& id) {
    return wait_until(
        [&] {
          for (const auto& l : leases())
            if (l.id() == id) return false;
          return true;
        },
        60s, 50ms);
  }

  // One round of bob's `exec --xvfb -- sleep 300`: `plant` runs while the
  // lease is active (it gets the display), then the lease ends.
  // Returns the display.
  std::uint32_t bob_session_round(const std::function<void(std::uint32_t)>& plant) {
    const uid_t bob = integration::uid_of(kBob);
    auto client = spawn_client(kBob, {"exec", "--xvfb", "--purpose", "bob-session", "--", "sleep", "300"});
    std::optional<v1::Lease> lease;
    const bool up = wait_until(
        [&] {
          for (const auto& l : leases())
            if (l.uid() == bob && l.process_pids_size() == 3) lease = l;
          return lease.has_value() || !client.running();
        },
        120s, 50ms);
    if (!up || !lease) {
      ADD_FAILURE() << "bob's exec --xvfb session did not start: " << client.terminate().describe();
      return 0;
    }
    plant(lease->display());
    client.send_signal(SIGTERM);
    const auto r = client.wait(60s);
    EXPECT_EQ(r.exit_code, 128 + SIGTERM) << r.describe();
    EXPECT_TRUE(wait_lease_gone(lease->id())) << "lease " << lease->id() << " did not end";
    return lease->display();
  }
};

TEST_F(CrossUserKillTest, ALockPlantedByMalloryDoesNotMakeTheBrokerKillBobsOtherProcess) {
  for (std::uint32_t d = 800; d <= 809; ++d)
    ASSERT_FALSE(path_exists(x_lock_path(d)) || path_exists(lifecycle::x_socket_path(d))) << ":" << d << " in use before";
  start_broker({"--displays=800-809", "--acquire-burst=1000", "--failures-before-backoff=1000"});
  const uid_t bob = integration::uid_of(kBob);

  // Control round: no planted file; bob's other process is not touched.
  auto bob_other = spawn_marked(kBob, {"sleep", "1000"});
  const std::uint32_t control_display = bob_session_round([&](std::uint32_t display) {
    // Xvfb -displayfd writes no lock file; if this one did, it is bob's own
    // (and names his X server), and mallory cannot replace it.
    struct stat st {};
    if (::lstat(x_lock_path(display).c_str(), &st) == 0) {
      EXPECT_EQ(st.st_uid, bob) << x_lock_path(display) << " exists and is not bob's";
    }
  });
  ASSERT_NE(control_display, 0u);
  ASSERT_FALSE(wait_until([&] { return !process_running(bob_other.pid()); }, 2s, 50ms))
      << "control round: bob's other process died without any planted file";

  // Attack round: mallory writes the lock while bob's lease runs.
  bool planted = false;
  std::uint32_t attacked_display = 0;
  bob_session_round([&](std::uint32_t display) {
    attacked_display = display;
    if (path_exists(x_lock_path(display))) {
      ADD_FAILURE() << "Xvfb -displayfd wrote " << x_lock_path(display)
                    << ": the lock is bob's own and mallory cannot plant one";
      return;
    }
    remove_at_end(x_lock_path(display));
    lifecycle::plant_lock_file(kMallory, x_lock_path(display), bob_other.pid(), 0s);
    planted = true;
  });
  ASSERT_TRUE(planted);
  // Its reaping is done; give a wrong SIGTERM (or the SIGKILL
  // after reap-grace-ms) its chance to land before looking.
  const bool died = wait_until([&] { return !process_running(bob_other.pid()); }, 4s, 50ms);
  EXPECT_FALSE(died) << "bob's process " << bob_other.pid() << " was killed when his lease on :" << attacked_display
                     << " ended, on the word of a lock file written by " << kMallory;
  // The forged lock is a leftover: removed when the number is next looked at,
  // or at the latest by the test.
}

TEST_F(CrossUserKillTest, ALockPlantedByMalloryOnARootLeaseDoesNotMakeTheBrokerKillARootProcess) {
  for (std::uint32_t d = 810; d <= 814; ++d)
    ASSERT_FALSE(path_exists(x_lock_path(d)) || path_exists(lifecycle::x_socket_path(d))) << ":" << d << " in use before";
  start_broker({"--displays=810-814"});
  // A process of root's that has nothing to do with any lease.
  auto root_other = spawn_marked("root", {"sleep", "1000"});

  std::uint32_t display = 0;
  std::string lease_id;
  {
    auto conn = broker().connect(10s);
    ASSERT_TRUE(conn.connected());
    v1::Response acquired;
    ASSERT_EQ(conn.call(acquire_request("root-lease"), acquired), BrokerConnection::Error::none);
    ASSERT_EQ(acquired.status(), v1::OK) << acquired.message();
    display = acquired.acquire().lease().display();
    lease_id = acquired.acquire().lease().id();
    ASSERT_FALSE(path_exists(x_lock_path(display)));
    remove_at_end(x_lock_path(display));
    lifecycle::plant_lock_file(kMallory, x_lock_path(display), root_other.pid(), 0s);
  }  // the connection closes: root's lease ends
  EXPECT_TRUE(wait_lease_gone(lease_id)) << "root's lease did not end";
  const bool died = wait_until([&] { return !process_running(root_other.pid()); }, 4s, 50ms);
  EXPECT_FALSE(died) << "root's process " << root_other.pid() << " was killed when root's lease on :" << display
                     << " ended, on the word of a lock file written by " << kMallory;
}

}  // namespace
}  // namespace xpra_broker::adversarial
