// session_keeper.h and process_tree.h against real process trees: helpers
// that double-fork and call setsid (as dbus-launch's dbus-daemon does) are
// ended with the tree on every way the keeper learns of an end: the command
// exits, the client is killed (alone or with its whole group), the keeper is
// signalled. Each tree's processes carry a unique `sleep` argument, so the
// test finds them on the host whoever their parent is now.
#include "process_tree.h"
#include "session_keeper.h"

#include <dirent.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <fstream>
#include <string>
#include <vector>

#include "test_processes.h"

namespace xpra_broker::client {
namespace {

using std::chrono::milliseconds;
using xpra_broker::testing::eventually;

// A `sleep` duration no other process on the host has: "1000.<pid><n>".
std::string token(int n) { return "1000." + std::to_string(::getpid()) + std::to_string(n); }

struct Found {
  pid_t pid = 0;
  pid_t ppid = 0;
};

// Live (not zombie) processes whose command line holds `argument`.
std::vector<Found> processes_with_argument(const std::string& argument) {
  std::vector<Found> out;
  DIR* dir = ::opendir("/proc");
  while (const dirent* e = dir ? ::readdir(dir) : nullptr) {
    const pid_t pid = static_cast<pid_t>(std::atoi(e->d_name));
    if (pid <= 0) continue;
    ProcessInfo info;
    if (!read_process(pid, info) || info.state == 'Z') continue;
    if (process_has_argument(pid, argument)) out.push_back({pid, info.ppid});
  }
  if (dir) ::closedir(dir);
  return out;
}

bool gone(const std::string& argument) {
  return eventually([&] { return processes_with_argument(argument).empty(); });
}

// A shell that starts a helper which leaves its group and session and is
// orphaned (setsid, its parent exits at once), then runs `last`.
std::vector<std::string> daemonizing_command(const std::string& helper_token, const std::string& last) {
  return {"/bin/sh", "-c", "setsid sh -c 'sleep " + helper_token + " &' ; " + last};
}

[[noreturn]] void exec_or_die(std::vector<std::string> argv) {
  std::vector<char*> c;
  for (auto& a : argv) c.push_back(a.data());
  c.push_back(nullptr);
  ::execv(c[0], c.data());
  ::_exit(127);
}

TEST(EndProcessTreeTest, EndsDescendantsThatLeftTheirGroupAndSession) {
  const std::string helper = token(1), main = token(2);
  // In a child of ours that becomes the subreaper, so the test process
  // itself stays an ordinary one.
  const pid_t tree_root = ::fork();
  ASSERT_GE(tree_root, 0);
  if (tree_root == 0) {
    ::prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0);
    const pid_t shell = ::fork();
    if (shell == 0) exec_or_die(daemonizing_command(helper, "exec sleep " + main));
    // Both sleeps below us: the helper was reparented to us, not init.
    const bool up = eventually([&] {
      const auto h = processes_with_argument(helper);
      return h.size() == 1 && h[0].ppid == ::getpid() && processes_with_argument(main).size() == 1;
    });
    if (!up) ::_exit(2);
    const TreeStop stop = end_process_tree(milliseconds(2000));
    ::_exit(stop.end == TreeEnd::ended_on_term && stop.signalled == 2 && list_own_descendants().empty() ? 0 : 1);
  }
  int status = 0;
  ASSERT_EQ(::waitpid(tree_root, &status, 0), tree_root);
  EXPECT_TRUE(WIFEXITED(status)) << status;
  EXPECT_EQ(WEXITSTATUS(status), 0) << "2: the tree did not come up as expected; 1: it was not ended as expected";
  EXPECT_TRUE(gone(helper));
  EXPECT_TRUE(gone(main));
}

TEST(EndProcessTreeTest, WhatIgnoresTermIsKilledAfterTheGrace) {
  const std::string stubborn = token(3);
  const pid_t tree_root = ::fork();
  ASSERT_GE(tree_root, 0);
  if (tree_root == 0) {
    ::prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0);
    const pid_t shell = ::fork();
    if (shell == 0) exec_or_die({"/bin/sh", "-c", "trap '' TERM; setsid sh -c \"trap '' TERM; sleep " + stubborn +
                                                      "\" & wait"});
    if (!eventually([&] { return processes_with_argument(stubborn).size() == 1; })) ::_exit(2);
    const TreeStop stop = end_process_tree(milliseconds(100));
    ::_exit(stop.end == TreeEnd::killed && list_own_descendants().empty() ? 0 : 1);
  }
  int status = 0;
  ASSERT_EQ(::waitpid(tree_root, &status, 0), tree_root);
  EXPECT_EQ(WEXITSTATUS(status), 0);
  EXPECT_TRUE(gone(stubborn));
}

TEST(SessionKeeperTest, ReportsTheCommandsStatusOnceItsTreeIsGone) {
  const std::string helper = token(4);
  std::optional<Keeper> keeper =
      start_keeper({milliseconds(2000), false}, [&] { exec_or_die(daemonizing_command(helper, "exit 7")); });
  ASSERT_TRUE(keeper);
  EXPECT_GT(keeper->command, 0);
  const std::optional<int> status = read_keeper_report(*keeper);
  ASSERT_TRUE(status);
  EXPECT_TRUE(WIFEXITED(*status) && WEXITSTATUS(*status) == 7) << *status;
  // The report comes only after the tree is gone: no wait needed.
  EXPECT_TRUE(processes_with_argument(helper).empty()) << "the setsid'd helper outlived its command";
  int keeper_status = 0;
  EXPECT_EQ(::waitpid(keeper->pid, &keeper_status, 0), keeper->pid);
}

TEST(SessionKeeperTest, EndsTheTreeWhenSignalled) {
  const std::string helper = token(5), main = token(6);
  std::optional<Keeper> keeper = start_keeper(
      {milliseconds(5000), false}, [&] { exec_or_die(daemonizing_command(helper, "exec sleep " + main)); });
  ASSERT_TRUE(keeper);
  ASSERT_TRUE(eventually([&] {
    const auto h = processes_with_argument(helper);
    return h.size() == 1 && h[0].ppid == keeper->pid;
  })) << "the helper was not reparented to the keeper";
  ASSERT_EQ(::kill(keeper->pid, SIGTERM), 0);  // as the broker's reaper does
  const std::optional<int> status = read_keeper_report(*keeper);
  ASSERT_TRUE(status);
  EXPECT_TRUE(WIFSIGNALED(*status) && WTERMSIG(*status) == SIGTERM) << *status;
  EXPECT_TRUE(processes_with_argument(helper).empty());
  EXPECT_TRUE(processes_with_argument(main).empty());
  ::waitpid(keeper->pid, nullptr, 0);
}

// The client is killed (SIGKILL: it can do nothing), alone or with its whole
// process group, as a supervisor does on a start timeout. The keeper sees
// its lifeline close and ends the tree itself.
class KeeperOutlivesTheClientTest : public ::testing::TestWithParam<bool> {};

TEST_P(KeeperOutlivesTheClientTest, AndEndsTheTree) {
  const bool whole_group = GetParam();
  const std::string helper = token(whole_group ? 7 : 8), main = token(whole_group ? 9 : 10);
  int pids[2];
  ASSERT_EQ(::pipe(pids), 0);
  const pid_t client = ::fork();
  ASSERT_GE(client, 0);
  if (client == 0) {
    ::setpgid(0, 0);
    ::close(pids[0]);
    ::prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0);  // as the real client is
    std::optional<Keeper> keeper = start_keeper(
        {milliseconds(5000), false}, [&] { exec_or_die(daemonizing_command(helper, "exec sleep " + main)); });
    if (!keeper) ::_exit(1);
    const pid_t both[2] = {keeper->pid, keeper->command};
    (void)!::write(pids[1], both, sizeof(both));
    for (;;) ::pause();
  }
  ::close(pids[1]);
  pid_t both[2] = {0, 0};
  ASSERT_EQ(::read(pids[0], both, sizeof(both)), static_cast<ssize_t>(sizeof(both)));
  ::close(pids[0]);
  const pid_t keeper = both[0];
  ProcessInfo info;
  ASSERT_TRUE(read_process(keeper, info));
  EXPECT_NE(info.pgid, client) << "the keeper must not be in the client's process group";
  ASSERT_TRUE(eventually([&] {
    const auto h = processes_with_argument(helper);
    return h.size() == 1 && h[0].ppid == keeper && processes_with_argument(main).size() == 1;
  }));
  ASSERT_EQ(::kill(whole_group ? -client : client, SIGKILL), 0);
  ::waitpid(client, nullptr, 0);
  EXPECT_TRUE(gone(helper)) << "the daemonized helper outlived the client";
  EXPECT_TRUE(gone(main)) << "the command outlived the client";
  EXPECT_TRUE(eventually([&] {
    ProcessInfo k;
    return !read_process(keeper, k) || k.state == 'Z';
  })) << "the keeper did not exit";
}

INSTANTIATE_TEST_SUITE_P(AloneOrWithItsGroup, KeeperOutlivesTheClientTest, ::testing::Values(false, true),
                         [](const auto& info) { return info.param ? "ClientsWholeGroupKilled" : "ClientKilled"; });

}  // namespace
}  // namespace xpra_broker::client
