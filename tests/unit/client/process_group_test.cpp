// process_group.h: stop_process_group() against real process groups the test
// starts: one that ends on SIGTERM, one that ignores it, a stopped one, a
// group that is gone already, and what each reap mode leaves to the caller.
// A generous grace stands for "never waited"; nothing is timed.
#include "process_group.h"

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <optional>
#include <ostream>
#include <string>

#include "test_processes.h"

namespace xpra_broker::client {

// For the test names ctest lists (gtest finds it next to Reap).
void PrintTo(Reap reap, std::ostream* out) { *out << (reap == Reap::leader_only ? "leader_only" : "every_child"); }

namespace {

using std::chrono::milliseconds;
using testing::eventually;
using testing::running_members_of_group;
using testing::ScopedChild;
using testing::SleeperOptions;

constexpr milliseconds kNeverWaited{60000};
constexpr milliseconds kShortGrace{100};

std::size_t sleeps_in_group(pid_t pgid) {
  const auto members = running_members_of_group(pgid);
  return std::count_if(members.begin(), members.end(), [](const auto& p) { return p.comm == "sleep"; });
}

bool killed_by(const std::optional<int>& status, int signal) {
  return status && WIFSIGNALED(*status) && WTERMSIG(*status) == signal;
}

// The stop reaped it: its owner must not signal the pid, which is free again.
void note_reaped(ScopedChild& child) { child.reap(); }

bool reaches_state(pid_t pid, char state) {
  return eventually([&] {
    ProcessInfo info;
    return read_process(pid, info) && info.state == state;
  });
}

// What holds in either reap mode.
class StopProcessGroupTest : public ::testing::TestWithParam<Reap> {
 protected:
  // Stops the group of `leader`, which must end as `end` says, the leader
  // reaped by the stop after `signal` ended it.
  void expect_stopped(ScopedChild& leader, milliseconds grace, GroupEnd end, int signal) {
    const GroupStop stop = stop_process_group(leader.pid(), grace, GetParam());
    EXPECT_EQ(stop.end, end);
    EXPECT_TRUE(killed_by(stop.leader_status, signal)) << stop.leader_status.value_or(-1);
    EXPECT_TRUE(running_members_of_group(leader.pid()).empty());
    if (stop.leader_status) note_reaped(leader);
  }
};

// Groups of one process here: the orphans of a bigger group are reaped by
// init, and when is up to init (ReapModeTest has members that are ours).
TEST_P(StopProcessGroupTest, GroupThatEndsOnTermIsNotKilled) {
  ScopedChild leader = testing::spawn_sleeper(SleeperOptions().leading_own_group());
  ASSERT_TRUE(leader);
  expect_stopped(leader, kNeverWaited, GroupEnd::ended_on_term, SIGTERM);
}

TEST_P(StopProcessGroupTest, GroupThatIgnoresTermIsKilledAfterTheGrace) {
  ScopedChild leader = testing::spawn_shell_group("trap '' TERM; exec sleep 1000");
  ASSERT_TRUE(leader);
  // It is sleep now: the trap is in place (it ran before the exec).
  ASSERT_TRUE(eventually([&] { return sleeps_in_group(leader.pid()) == 1; }));
  expect_stopped(leader, kShortGrace, GroupEnd::killed, SIGKILL);
}

TEST_P(StopProcessGroupTest, StoppedGroupIsContinuedSoItCanActOnTerm) {
  ScopedChild leader = testing::spawn_sleeper(SleeperOptions().leading_own_group());
  ASSERT_TRUE(leader);
  ASSERT_EQ(::kill(leader.pid(), SIGSTOP), 0);
  ASSERT_TRUE(reaches_state(leader.pid(), 'T'));
  expect_stopped(leader, kNeverWaited, GroupEnd::ended_on_term, SIGTERM);
}

TEST_P(StopProcessGroupTest, LeaderThatExitedIsReapedAndNothingIsSent) {
  ScopedChild leader = testing::spawn_shell_group("exit 3");
  ASSERT_TRUE(leader);
  ASSERT_TRUE(reaches_state(leader.pid(), 'Z'));

  const GroupStop stop = stop_process_group(leader.pid(), kNeverWaited, GetParam());
  EXPECT_EQ(stop.end, GroupEnd::already_gone) << "its zombie must not count as a live member";
  ASSERT_TRUE(stop.leader_status);
  EXPECT_TRUE(WIFEXITED(*stop.leader_status) && WEXITSTATUS(*stop.leader_status) == 3) << *stop.leader_status;
  note_reaped(leader);
}

TEST_P(StopProcessGroupTest, DeadGroupIsANoOp) {
  const GroupStop stop = stop_process_group(testing::dead_pid(), kNeverWaited, GetParam());
  EXPECT_EQ(stop.end, GroupEnd::already_gone);
  EXPECT_FALSE(stop.leader_status);
}

TEST_P(StopProcessGroupTest, NoPgidNeverMeansOurOwnGroup) {
  // kill(-0, ...) would signal this test's own group and kill(1, ...) init.
  for (pid_t pgid : {pid_t{0}, pid_t{-1}}) {
    const GroupStop stop = stop_process_group(pgid, kShortGrace, GetParam());
    EXPECT_EQ(stop.end, GroupEnd::already_gone) << pgid;
  }
}

INSTANTIATE_TEST_SUITE_P(BothReapModes, StopProcessGroupTest, ::testing::Values(Reap::leader_only, Reap::every_child),
                         [](const auto& info) {
                           return info.param == Reap::leader_only ? "LeaderOnly" : "EveryChild";
                         });

// A member of the group that is our child but not its leader: what the
// command's orphans are to a subreaper.
class ReapModeTest : public ::testing::Test {
 protected:
  void SetUp() override {
    leader_ = testing::spawn_sleeper(SleeperOptions().leading_own_group());
    ASSERT_TRUE(leader_);
    member_ = testing::spawn_sleeper(SleeperOptions().in_group(leader_.pid()));
    ASSERT_TRUE(member_);
  }

  ScopedChild leader_, member_;
};

TEST_F(ReapModeTest, LeaderOnlyLeavesOtherChildrenToTheCaller) {
  const GroupStop stop = stop_process_group(leader_.pid(), kShortGrace, Reap::leader_only);
  ASSERT_TRUE(stop.leader_status);
  note_reaped(leader_);
  int status = 0;
  EXPECT_EQ(::waitpid(member_.pid(), &status, 0), member_.pid()) << "the stop took the member's exit status";
  EXPECT_TRUE(WIFSIGNALED(status)) << status;
  note_reaped(member_);
}

TEST_F(ReapModeTest, EveryChildReapsTheWholeGroupSoItEndsOnTerm) {
  const GroupStop stop = stop_process_group(leader_.pid(), kNeverWaited, Reap::every_child);
  EXPECT_EQ(stop.end, GroupEnd::ended_on_term) << "an unreaped member would have counted as alive";
  EXPECT_TRUE(killed_by(stop.leader_status, SIGTERM)) << stop.leader_status.value_or(-1);
  int status = 0;
  const pid_t left = ::waitpid(member_.pid(), &status, WNOHANG);
  EXPECT_EQ(left, -1) << "the member was left unreaped";
  if (stop.leader_status) note_reaped(leader_);
  if (left != 0) note_reaped(member_);
}

}  // namespace
}  // namespace xpra_broker::client
