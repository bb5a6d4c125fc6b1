// Attack 3, forged live locks: /tmp is writable by everyone, so a lock file
// is only a claim. Mallory writes /tmp/.X<N>-lock for every number of the
// range, naming pid 1 (root's init), a process of bob's, or a plain process
// of her own: none of them is an X server of the lock's owner, so none of
// them makes a number "in use". Other users must still get displays, and
// real Xvfb must start on them (X itself refuses to start while a lock names
// a live pid, so the broker has to clear the forged ones).
#include <signal.h>

#include <set>

#include "adversarial_support.h"

namespace xpra_broker::adversarial {
namespace {

using integration::process_running;
using integration::wait_until;
using lifecycle::path_exists;
using lifecycle::x_lock_path;

class ForgedLockTest : public AdversarialTest {};

TEST_F(ForgedLockTest, LocksNamingLiveProcessesThatAreNoXServerOfTheirOwnerDoNotBlockTheRange) {
  constexpr std::uint32_t kFirst = 820, kLast = 829;
  for (std::uint32_t d = kFirst; d <= kLast; ++d)
    ASSERT_FALSE(path_exists(x_lock_path(d)) || path_exists(lifecycle::x_socket_path(d))) << ":" << d << " in use before";
  auto bob_process = spawn_marked(kBob, {"sleep", "1000"});
  auto mallory_process = spawn_marked(kMallory, {"sleep", "1000"});
  for (std::uint32_t d = kFirst; d <= kLast; ++d) {
    // 820-823 name pid 1, 824-826 bob's process, 827-829 mallory's own.
    const pid_t named = d <= 823 ? 1 : d <= 826 ? bob_process.pid() : mallory_process.pid();
    remove_at_end(x_lock_path(d));
    lifecycle::plant_lock_file(kMallory, x_lock_path(d), named, 0s);
  }
  start_broker({"--displays=820-829", "--allowed-groups=" + std::string(kAllowedGroup)});

  // Three sessions of alice's at once, each with a real Xvfb.
  const uid_t alice = integration::uid_of(kAlice);
  std::vector<ChildProcess> clients;
  for (int i = 0; i < 3; ++i)
    clients.push_back(spawn_client(kAlice, {"exec", "--xvfb", "--purpose", "past-forged-locks", "--", "sleep", "300"}));
  std::set<std::uint32_t> displays;
  const bool all_up = wait_until(
      [&] {
        displays.clear();
        for (const auto& l : leases())
          if (l.uid() == alice && l.process_pids_size() == 3) displays.insert(l.display());
        bool any_ended = false;
        for (auto& c : clients) any_ended = any_ended || !c.running();
        return displays.size() == 3 || any_ended;
      },
      120s, 50ms);
  for (auto& c : clients) {
    if (!c.running()) ADD_FAILURE() << "alice's exec --xvfb ended: " << c.wait(1s).describe();
  }
  ASSERT_TRUE(all_up && displays.size() == 3) << "alice got " << displays.size()
                                              << " running sessions of 3 on a range full of forged locks";
  const auto servers = lifecycle::x_servers_of(alice, kFirst, kLast);
  EXPECT_EQ(servers.size(), 3u) << "alice's Xvfb servers on 820-829";
  for (auto d : displays) EXPECT_TRUE(lifecycle::x_socket_listening(d)) << ":" << d;

  // Nobody was signalled on the word of those files.
  EXPECT_TRUE(process_running(1));
  EXPECT_TRUE(process_running(bob_process.pid())) << "bob's process named by a forged lock was killed";
  EXPECT_TRUE(process_running(mallory_process.pid())) << "mallory's process named by her own lock was killed";

  for (auto& c : clients) {
    c.send_signal(SIGTERM);
    c.wait(60s);
  }
  EXPECT_TRUE(wait_until([&] { return lifecycle::x_servers_of(alice, kFirst, kLast).empty(); }, 30s));
}

}  // namespace
}  // namespace xpra_broker::adversarial
