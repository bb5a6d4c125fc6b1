// lease_reaper.h: select_lease_processes() over made-up /proc snapshots, and
// AsioLeaseReaper against real process trees the test starts (its own uid,
// plus a child switched to an unused uid to prove that one is left alone).
// The reaper's x11_tmp_dir and runtime dir are temporary directories.
#include "host/lease_reaper.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <algorithm>
#include <boost/asio/io_context.hpp>
#include <cstdio>
#include <ctime>
#include <fstream>
#include <map>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "test_processes.h"
#include "test_support.h"

namespace xpra_broker {
namespace {

using testing::eventually;
using testing::running_members_of_group;
using testing::ScopedChild;
using testing::SleeperOptions;
using testing::spawn_sleeper;
using testing::TempDir;

constexpr uid_t kUser = 1000;
constexpr uid_t kOther = 1001;

ProcessInfo proc(pid_t pid, pid_t ppid, pid_t pgid, pid_t sid, uid_t uid) {
  ProcessInfo p;
  p.pid = pid;
  p.ppid = ppid;
  p.pgid = pgid;
  p.sid = sid;
  p.uid = uid;
  p.comm = "p" + std::to_string(pid);
  p.state = 'S';
  return p;
}

TrackedProcess tracked(pid_t pid, pid_t group_leader = 0, pid_t session_leader = 0) {
  TrackedProcess t;
  t.pid = pid;
  t.group_leader = group_leader;
  t.session_leader = session_leader;
  return t;
}

std::vector<pid_t> select(const std::vector<ProcessInfo>& snapshot, uid_t uid, const std::vector<TrackedProcess>& t) {
  return select_lease_processes(snapshot, uid, t);
}

using Pids = std::vector<pid_t>;

// ---- select_lease_processes ------------------------------------------------

TEST(SelectLeaseProcessesTest, NothingTrackedAndNoLockSelectsNothing) {
  const std::vector<ProcessInfo> snapshot = {proc(10, 1, 10, 10, kUser), proc(11, 10, 10, 10, kUser)};
  EXPECT_TRUE(select(snapshot, kUser, {}).empty());
  EXPECT_TRUE(select({}, kUser, {tracked(10, 10, 10)}).empty()) << "an empty snapshot";
}

TEST(SelectLeaseProcessesTest, SelectsTrackedPids) {
  const std::vector<ProcessInfo> snapshot = {proc(10, 1, 10, 10, kUser), proc(20, 1, 20, 20, kUser),
                                             proc(30, 1, 30, 30, kUser), proc(40, 1, 40, 40, kUser)};
  EXPECT_EQ(select(snapshot, kUser, {tracked(10)}), (Pids{10}));
  EXPECT_EQ(select(snapshot, kUser, {tracked(30), tracked(10)}), (Pids{10, 30})) << "sorted";
  EXPECT_EQ(select(snapshot, kUser, {tracked(20), tracked(20)}), (Pids{20})) << "no duplicates";
  EXPECT_TRUE(select(snapshot, kUser, {tracked(99)}).empty()) << "a tracked pid that is gone";
}

TEST(SelectLeaseProcessesTest, NeverSelectsAnotherUidsProcess) {
  // 50 is kOther's in every way the lease could reach it.
  const std::vector<ProcessInfo> snapshot = {
      proc(10, 1, 10, 10, kUser),    // tracked, group and session leader
      proc(11, 10, 10, 10, kUser),   // its child, same group and session
      proc(50, 10, 10, 10, kOther),  // child of a tracked pid, in its group and session
      proc(60, 1, 60, 60, kOther),   // leads its own group and session
      proc(61, 60, 60, 60, kUser),   // kUser's process in kOther's group
  };
  const struct {
    const char* how;
    std::vector<TrackedProcess> t;
  } cases[] = {
      {"member of a tracked group, session, child of a tracked pid", {tracked(10, 10, 10)}},
      {"tracked itself", {tracked(50), tracked(60, 60, 60)}},
      {"everything at once", {tracked(10, 10, 10), tracked(50, 10, 10), tracked(60, 60, 60)}},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.how);
    const auto chosen = select(snapshot, kUser, c.t);
    EXPECT_EQ(std::count(chosen.begin(), chosen.end(), 50), 0);
    EXPECT_EQ(std::count(chosen.begin(), chosen.end(), 60), 0);
    EXPECT_EQ(std::count(chosen.begin(), chosen.end(), 1), 0);
  }
  // And the other way round: kOther's lease never reaches kUser's processes.
  const auto theirs = select(snapshot, kOther, {tracked(10, 10, 10), tracked(60, 60, 60)});
  EXPECT_EQ(theirs, (Pids{50, 60}));
}

TEST(SelectLeaseProcessesTest, TrackedGroupLeaderPullsInItsGroup) {
  const std::vector<ProcessInfo> snapshot = {
      proc(100, 1, 100, 5, kUser),    // the group leader (e.g. the X server's sh)
      proc(101, 1, 100, 5, kUser),    // reparented to init, still in the group
      proc(102, 77, 100, 5, kUser),   // parent is someone unrelated
      proc(103, 1, 103, 5, kUser),    // same session, other group
      proc(104, 1, 100, 5, kOther),   // in the group, other uid
  };
  EXPECT_EQ(select(snapshot, kUser, {tracked(100, 100)}), (Pids{100, 101, 102}));
}

TEST(SelectLeaseProcessesTest, TrackedProcessThatDoesNotLeadItsGroupDoesNotPullItIn) {
  // 201 is in the user's login shell's group 200 without leading it: ending
  // the lease must not take the login shell (200) and its other jobs (202).
  const std::vector<ProcessInfo> snapshot = {
      proc(200, 1, 200, 200, kUser),
      proc(201, 200, 200, 200, kUser),
      proc(202, 200, 200, 200, kUser),
      proc(203, 201, 200, 200, kUser),
  };
  EXPECT_EQ(select(snapshot, kUser, {tracked(201)}), (Pids{201, 203})) << "itself and its descendants only";
  EXPECT_EQ(select(snapshot, kUser, {tracked(201, 0, 0)}), (Pids{201, 203}));
}

TEST(SelectLeaseProcessesTest, TrackedSessionLeaderPullsInItsSession) {
  const std::vector<ProcessInfo> snapshot = {
      proc(300, 1, 300, 300, kUser),  // session leader (setsid'd xpra)
      proc(310, 1, 310, 300, kUser),  // another group of that session, reparented
      proc(311, 310, 310, 300, kUser),
      proc(320, 1, 320, 320, kUser),  // another session
      proc(321, 1, 321, 300, kOther),
  };
  EXPECT_EQ(select(snapshot, kUser, {tracked(300, 300, 300)}), (Pids{300, 310, 311}));
  EXPECT_EQ(select(snapshot, kUser, {tracked(300, 300, 0)}), (Pids{300})) << "not a session leader: no session";
}

TEST(SelectLeaseProcessesTest, AllDescendantsOfSelectedProcessesAreSelected) {
  std::vector<ProcessInfo> snapshot = {proc(1, 0, 1, 1, 0)};
  // A deep chain (double-forks, daemons starting daemons) under 1000, each
  // in its own group and session so only the parent links tie them.
  const pid_t depth = 50000;
  for (pid_t i = 0; i < depth; ++i) {
    const pid_t pid = 1000 + i;
    snapshot.push_back(proc(pid, i == 0 ? 1 : pid - 1, pid, pid, kUser));
  }
  // A wide fan under one of them.
  for (pid_t i = 0; i < 500; ++i) snapshot.push_back(proc(200000 + i, 1000 + depth / 2, 200000 + i, 1, kUser));
  // Unrelated processes of the same user.
  for (pid_t i = 0; i < 100; ++i) snapshot.push_back(proc(300000 + i, 1, 300000 + i, 300000 + i, kUser));
  std::shuffle(snapshot.begin(), snapshot.end(), std::mt19937(7));

  auto chosen = select(snapshot, kUser, {tracked(1000)});
  EXPECT_EQ(chosen.size(), static_cast<std::size_t>(depth + 500));
  EXPECT_TRUE(std::is_sorted(chosen.begin(), chosen.end()));
  EXPECT_EQ(chosen.front(), 1000);
  EXPECT_EQ(std::count_if(chosen.begin(), chosen.end(), [](pid_t p) { return p >= 300000; }), 0);

  // Tracking the middle of the chain takes the lower half and the fan.
  chosen = select(snapshot, kUser, {tracked(1000 + depth / 2)});
  EXPECT_EQ(chosen.size(), static_cast<std::size_t>(depth - depth / 2 + 500));
}

TEST(SelectLeaseProcessesTest, DescendantsOfAnotherUidsChildAreNotReachedThroughIt) {
  // kUser -> kOther (e.g. a setuid helper) -> kUser: the chain is cut at the
  // other user's process; the selection only follows the lease owner's own.
  const std::vector<ProcessInfo> snapshot = {
      proc(10, 1, 10, 10, kUser),
      proc(11, 10, 11, 11, kOther),
      proc(12, 11, 12, 12, kUser),
      proc(13, 10, 13, 13, kUser),
  };
  const auto chosen = select(snapshot, kUser, {tracked(10)});
  EXPECT_EQ(std::count(chosen.begin(), chosen.end(), 11), 0);
  EXPECT_EQ(std::count(chosen.begin(), chosen.end(), 13), 1);
}

TEST(SelectLeaseProcessesTest, CyclesInParentLinksTerminate) {
  // /proc is read one process at a time, so a snapshot can hold links that
  // were never true at once, even cycles.
  const std::vector<ProcessInfo> snapshot = {
      proc(10, 12, 10, 10, kUser),  // 10 -> 11 -> 12 -> 10
      proc(11, 10, 11, 11, kUser),
      proc(12, 11, 12, 12, kUser),
      proc(20, 20, 20, 20, kUser),  // its own parent
      proc(21, 20, 21, 21, kUser),
      proc(30, 31, 30, 30, kUser),  // a cycle not reached from anything tracked
      proc(31, 30, 31, 31, kUser),
      proc(40, 0, 40, 40, kUser),   // a parent of 0 (a process of another pid namespace)
  };
  EXPECT_EQ(select(snapshot, kUser, {tracked(11)}), (Pids{10, 11, 12}));
  EXPECT_EQ(select(snapshot, kUser, {tracked(20)}), (Pids{20, 21}));
  EXPECT_EQ(select(snapshot, kUser, {tracked(21)}), (Pids{21}));
  EXPECT_EQ(select(snapshot, kUser, {tracked(11), tracked(20)}), (Pids{10, 11, 12, 20, 21}));
  EXPECT_EQ(select(snapshot, kUser, {tracked(40)}), (Pids{40}));
  EXPECT_EQ(select(snapshot, kUser, {tracked(30)}), (Pids{30, 31}));
}

// The plain definition: a process of the uid is selected when it is tracked,
// in a tracked leader's group or session, or its parent is selected.
// Computed as a naive fixed point.
std::set<pid_t> model_select(const std::vector<ProcessInfo>& snapshot, uid_t uid,
                             const std::vector<TrackedProcess>& tracked) {
  auto direct = [&](const ProcessInfo& p) {
    for (const auto& t : tracked) {
      if (t.pid == p.pid) return true;
      if (t.group_leader > 0 && t.group_leader == p.pgid) return true;
      if (t.session_leader > 0 && t.session_leader == p.sid) return true;
    }
    return false;
  };
  std::set<pid_t> selected;
  for (bool changed = true; changed;) {
    changed = false;
    for (const auto& p : snapshot) {
      if (p.uid != uid || selected.count(p.pid)) continue;
      if (direct(p) || selected.count(p.ppid)) {
        selected.insert(p.pid);
        changed = true;
      }
    }
  }
  return selected;
}

TEST(SelectLeaseProcessesTest, RandomSnapshotsMatchThePlainDefinition) {
  std::mt19937 rng(1234);
  for (int round = 0; round < 400; ++round) {
    SCOPED_TRACE(round);
    const int n = 1 + rng() % 120;
    std::vector<pid_t> pids;
    std::set<pid_t> used;
    while (static_cast<int>(pids.size()) < n) {
      const pid_t pid = 2 + rng() % 400;
      if (used.insert(pid).second) pids.push_back(pid);
    }
    auto any_pid = [&]() -> pid_t {
      switch (rng() % 6) {
        case 0: return 1;
        case 1: return 2 + rng() % 400;  // maybe not in the snapshot
        default: return pids[rng() % pids.size()];
      }
    };
    const uid_t uids[] = {kUser, kUser, kOther, 0};
    std::vector<ProcessInfo> snapshot;
    for (pid_t pid : pids) {
      const pid_t pgid = rng() % 3 == 0 ? pid : any_pid();
      const pid_t sid = rng() % 3 == 0 ? pid : any_pid();
      snapshot.push_back(proc(pid, any_pid(), pgid, sid, uids[rng() % 4]));
    }
    std::vector<TrackedProcess> t;
    for (int i = 0, k = rng() % 4; i < k; ++i) {
      const pid_t pid = any_pid();
      const int kind = rng() % 3;
      t.push_back(tracked(pid, kind >= 1 ? pid : 0, kind == 2 ? pid : 0));
    }
    for (uid_t uid : {kUser, kOther}) {
      const auto got = select(snapshot, uid, t);
      const auto want = model_select(snapshot, uid, t);
      ASSERT_EQ(std::set<pid_t>(got.begin(), got.end()), want) << "uid " << uid;
      ASSERT_EQ(got.size(), want.size()) << "duplicates in the result";
      for (pid_t pid : got) {
        const auto it = std::find_if(snapshot.begin(), snapshot.end(), [&](const auto& p) { return p.pid == pid; });
        ASSERT_NE(it, snapshot.end());
        ASSERT_EQ(it->uid, uid) << "pid " << pid << " is another uid's";
      }
    }
  }
}

// ---- AsioLeaseReaper on real processes -------------------------------------

constexpr std::uint32_t kDisplay = 77;  // only ever looked up in the temporary x11 dir

class AsioLeaseReaperTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (::geteuid() == 0) {
      ASSERT_TRUE(testing::restore_effective_capabilities());
    }
    x11_dir_ = tmp_.path() + "/tmp";
    runtime_dir_ = tmp_.path() + "/run";
    user_dir_ = runtime_dir_ + "/" + std::to_string(::getuid());
    for (const auto& d : {x11_dir_, x11_dir_ + "/.X11-unix", runtime_dir_, user_dir_})
      ASSERT_EQ(::mkdir(d.c_str(), 0755), 0) << d;
  }

  struct Run {
    int calls = 0;
    int calls_inside_reap = 0;
    int calls_before_io_ran = 0;
    ReapOutcome outcome;
  };

  Run reap(ReapJob job, std::chrono::milliseconds grace) {
    boost::asio::io_context io;
    StaleArtifactCleaner cleaner(x11_dir_, runtime_dir_, "unit-test-host");
    AsioLeaseReaper reaper(io, cleaner, x11_dir_, grace);
    Run run;
    bool inside = true;
    reaper.reap(std::move(job), [&](ReapOutcome outcome) {
      ++run.calls;
      if (inside) ++run.calls_inside_reap;
      run.outcome = std::move(outcome);
    });
    inside = false;
    run.calls_before_io_ran = run.calls;
    io.run();
    return run;
  }

  ReapJob job_for(std::vector<TrackedProcess> processes) {
    ReapJob job;
    job.lease_id = "0123456789abcdef";
    job.uid = ::getuid();
    job.display = kDisplay;
    job.user_dir = user_dir_;
    job.processes = std::move(processes);
    return job;
  }

  // What report_process records for a pid.
  static TrackedProcess track(pid_t pid) {
    TrackedProcess t;
    ProcessInfo info;
    UniqueFd fd = open_verified_pidfd(pid, info);
    EXPECT_TRUE(fd) << "pid " << pid;
    t.pid = pid;
    t.handle = std::make_shared<ProcessHandle>(ProcessHandle{std::move(fd)});
    if (info.pgid == info.pid) t.group_leader = info.pgid;
    if (info.sid == info.pid) t.session_leader = info.sid;
    return t;
  }

  // pidfds of the group's running members, to see them die.
  static std::vector<std::pair<pid_t, UniqueFd>> watch_group(pid_t pgid) {
    std::vector<std::pair<pid_t, UniqueFd>> out;
    for (const auto& p : running_members_of_group(pgid)) {
      ProcessInfo info;
      UniqueFd fd = open_verified_pidfd(p.pid, info);
      if (fd) out.emplace_back(p.pid, std::move(fd));
    }
    return out;
  }

  static std::size_t sleeps_in_group(pid_t pgid) {
    const auto members = running_members_of_group(pgid);
    return std::count_if(members.begin(), members.end(), [](const auto& p) { return p.comm == "sleep"; });
  }

  void write_file(const std::string& path, const std::string& content) {
    std::ofstream(path) << content;
  }

  TempDir tmp_;
  std::string x11_dir_, runtime_dir_, user_dir_;
};

TEST_F(AsioLeaseReaperTest, TreeThatIgnoresTermIsKilledAndDoneRunsOnceAfterReap) {
  ScopedChild leader = testing::spawn_shell_group("trap '' TERM; sleep 1000 & sleep 1000");
  ASSERT_TRUE(leader);
  // Both sleeps started: the trap is in place (it ran before them).
  ASSERT_TRUE(eventually([&] { return sleeps_in_group(leader.pid()) == 2; }));
  const auto watched = watch_group(leader.pid());
  ASSERT_GE(watched.size(), 2u);

  const TrackedProcess t = track(leader.pid());
  ASSERT_EQ(t.group_leader, leader.pid());
  const Run run = reap(job_for({t}), std::chrono::milliseconds(100));

  EXPECT_EQ(run.calls_inside_reap, 0) << "done must never run from inside reap()";
  EXPECT_EQ(run.calls_before_io_ran, 0);
  EXPECT_EQ(run.calls, 1) << "done exactly once";
  EXPECT_EQ(run.outcome.killed, watched.size()) << "every one of them ignored SIGTERM";
  EXPECT_EQ(run.outcome.terminated, 0u);
  EXPECT_EQ(run.outcome.unkillable, 0u);
  for (const auto& [pid, fd] : watched) EXPECT_FALSE(pidfd_alive(fd.get())) << "pid " << pid << " survived";
  const int status = leader.reap();
  EXPECT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL) << status;
}

TEST_F(AsioLeaseReaperTest, TreeThatHonoursTermIsTerminated) {
  ScopedChild leader = testing::spawn_shell_group("sleep 1000 & sleep 1000 & wait");
  ASSERT_TRUE(leader);
  ASSERT_TRUE(eventually([&] { return sleeps_in_group(leader.pid()) == 2; }));
  const auto watched = watch_group(leader.pid());
  ASSERT_EQ(watched.size(), 3u);

  // A generous grace: SIGTERM ends them at once, the grace is never waited.
  const Run run = reap(job_for({track(leader.pid())}), std::chrono::seconds(60));
  EXPECT_EQ(run.calls, 1);
  EXPECT_EQ(run.calls_inside_reap, 0);
  EXPECT_EQ(run.outcome.terminated, 3u);
  EXPECT_EQ(run.outcome.killed, 0u);
  for (const auto& [pid, fd] : watched) EXPECT_FALSE(pidfd_alive(fd.get())) << "pid " << pid << " survived";
}

TEST_F(AsioLeaseReaperTest, TheLeasesXServerNamedByItsLockIsReapedButNothingItStarted) {
  // A stand-in X server: a script named Xvfb (its command name is then
  // "Xvfb") with ":77" on its command line, and a child of its own.
  const std::string xvfb = tmp_.path() + "/Xvfb";
  write_file(xvfb, "#!/bin/sh\nsleep 1000 &\necho $! > " + tmp_.path() + "/child.pid\nwait\n");
  ASSERT_EQ(::chmod(xvfb.c_str(), 0755), 0);
  ScopedChild server = testing::spawn_shell_group("exec " + xvfb + " :" + std::to_string(kDisplay));
  ASSERT_TRUE(server);
  pid_t child = 0;
  ASSERT_TRUE(eventually([&] {
    std::ifstream in(tmp_.path() + "/child.pid");
    return static_cast<bool>(in >> child) && child > 0;
  }));
  ProcessInfo info;
  UniqueFd server_fd = open_verified_pidfd(server.pid(), info);
  ASSERT_EQ(info.comm, "Xvfb");
  UniqueFd child_fd = open_verified_pidfd(child, info);
  ASSERT_TRUE(server_fd && child_fd);
  char lock[16];
  std::snprintf(lock, sizeof(lock), "%10d\n", server.pid());
  write_file(x11_dir_ + "/.X" + std::to_string(kDisplay) + "-lock", lock);

  // Nothing reported: the X server is found through the display's lock, a
  // file of the lease's user naming that user's X server of this display.
  const Run run = reap(job_for({}), std::chrono::seconds(60));
  EXPECT_EQ(run.calls, 1);
  EXPECT_EQ(run.outcome.terminated + run.outcome.killed, 1u);
  EXPECT_TRUE(eventually([&] { return !pidfd_alive(server_fd.get()); })) << "the X server survived";
  EXPECT_TRUE(pidfd_alive(child_fd.get())) << "a lock's pid must never grow a set of processes to signal";
  ::kill(child, SIGKILL);
}

TEST_F(AsioLeaseReaperTest, ALockThatIsNoEvidenceGivesNothingToSignal) {
  // The same user's processes, named by a lock, each failing one check.
  const std::string lock_path = x11_dir_ + "/.X" + std::to_string(kDisplay) + "-lock";
  const std::string xvfb = tmp_.path() + "/Xvfb";
  write_file(xvfb, "#!/bin/sh\nexec sleep 1000\n");
  write_file(tmp_.path() + "/Xvfb-wait", "#!/bin/sh\nsleep 1000 & wait\n");
  ASSERT_EQ(::chmod((tmp_.path() + "/Xvfb-wait").c_str(), 0755), 0);
  struct Case {
    const char* why;
    std::string command;
    int links;  // extra hard links to the lock
  } cases[] = {
      {"not an X server (a plain sleep)", "exec sleep 1000", 0},
      {"an X server of another display", "exec " + tmp_.path() + "/Xvfb-wait :78", 0},
      {"a lock with two links", "exec " + tmp_.path() + "/Xvfb-wait :77", 1},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.why);
    ScopedChild victim = testing::spawn_shell_group(c.command);
    ASSERT_TRUE(victim);
    ASSERT_TRUE(eventually([&] {
      ProcessInfo i;
      return read_process(victim.pid(), i) && i.comm != "sh";
    }));
    ProcessInfo info;
    UniqueFd fd = open_verified_pidfd(victim.pid(), info);
    ASSERT_TRUE(fd);
    char lock[16];
    std::snprintf(lock, sizeof(lock), "%10d\n", victim.pid());
    ::unlink(lock_path.c_str());
    write_file(lock_path, lock);
    const std::string extra = tmp_.path() + "/extra-link";
    ::unlink(extra.c_str());
    if (c.links) {
      ASSERT_EQ(::link(lock_path.c_str(), extra.c_str()), 0);
    }
    const Run run = reap(job_for({}), std::chrono::seconds(60));
    EXPECT_EQ(run.calls, 1);
    EXPECT_EQ(run.outcome.terminated + run.outcome.killed, 0u);
    EXPECT_TRUE(pidfd_alive(fd.get())) << "signalled on a lock that proves nothing";
    ::unlink(extra.c_str());
  }
}

TEST_F(AsioLeaseReaperTest, AnotherUidsProcessesInTheGroupOrLockSurvive) {
  ASSERT_EQ(::geteuid(), 0u) << "switching a child to another uid needs root, as CI runs it";
  ScopedChild leader = spawn_sleeper(SleeperOptions().leading_own_group());
  ASSERT_TRUE(leader);
  ScopedChild same_uid = spawn_sleeper(SleeperOptions().in_group(leader.pid()));
  ASSERT_TRUE(same_uid);
  ScopedChild stranger = spawn_sleeper(SleeperOptions().as_uid(4321).in_group(leader.pid()));
  ASSERT_TRUE(stranger);
  ScopedChild stranger_server = spawn_sleeper(SleeperOptions().leading_own_group().as_uid(4321));
  ASSERT_TRUE(stranger_server);
  ProcessInfo info;
  ASSERT_TRUE(read_process(stranger.pid(), info));
  ASSERT_EQ(info.uid, 4321u);
  ASSERT_EQ(info.pgid, leader.pid());
  UniqueFd stranger_fd = open_verified_pidfd(stranger.pid(), info);
  UniqueFd stranger_server_fd = open_verified_pidfd(stranger_server.pid(), info);
  UniqueFd same_uid_fd = open_verified_pidfd(same_uid.pid(), info);
  ASSERT_TRUE(stranger_fd && stranger_server_fd && same_uid_fd);
  // The display's lock names the stranger's X server.
  char lock[16];
  std::snprintf(lock, sizeof(lock), "%10d\n", stranger_server.pid());
  write_file(x11_dir_ + "/.X" + std::to_string(kDisplay) + "-lock", lock);

  // Even a tracked entry naming the stranger (a report that raced with a
  // uid change) does not reach it: the pidfd is re-verified at reap time.
  const Run run = reap(job_for({track(leader.pid()), tracked(stranger.pid())}), std::chrono::seconds(60));
  EXPECT_EQ(run.calls, 1);
  EXPECT_EQ(run.outcome.terminated, 2u) << "the leader and the same-uid member";
  EXPECT_EQ(run.outcome.killed, 0u);
  EXPECT_FALSE(pidfd_alive(same_uid_fd.get()));
  EXPECT_TRUE(pidfd_alive(stranger_fd.get())) << "another uid's process in the group was signalled";
  EXPECT_TRUE(pidfd_alive(stranger_server_fd.get())) << "another uid's process named by the lock was signalled";
}

TEST_F(AsioLeaseReaperTest, NothingToReapStillCallsDoneOnceAndCleansTheDisplay) {
  // A stale X11 socket (nobody listens) and an old unreadable-pid lock.
  const std::string socket_path = x11_dir_ + "/.X11-unix/X" + std::to_string(kDisplay);
  {
    UniqueFd s(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    std::snprintf(addr.sun_path, sizeof(addr.sun_path), "%s", socket_path.c_str());
    ASSERT_EQ(::bind(s.get(), reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
  }
  const std::string lock_path = x11_dir_ + "/.X" + std::to_string(kDisplay) + "-lock";
  write_file(lock_path, "");
  const timespec old[2] = {{std::time(nullptr) - 3600, 0}, {std::time(nullptr) - 3600, 0}};
  ASSERT_EQ(::utimensat(AT_FDCWD, lock_path.c_str(), old, AT_SYMLINK_NOFOLLOW), 0);

  const Run run = reap(job_for({}), std::chrono::milliseconds(100));
  EXPECT_EQ(run.calls, 1);
  EXPECT_EQ(run.calls_inside_reap, 0);
  EXPECT_EQ(run.outcome.terminated, 0u);
  EXPECT_EQ(run.outcome.killed, 0u);
  EXPECT_EQ(run.outcome.unkillable, 0u);
  std::set<std::string> removed;
  for (const auto& r : run.outcome.removed) removed.insert(r.path);
  EXPECT_EQ(removed, (std::set<std::string>{socket_path, lock_path}));
  struct stat st {};
  EXPECT_NE(::lstat(socket_path.c_str(), &st), 0);
  EXPECT_NE(::lstat(lock_path.c_str(), &st), 0);
}

TEST_F(AsioLeaseReaperTest, ProcessesThatAlreadyExitedAreNotCounted) {
  ScopedChild gone = spawn_sleeper(SleeperOptions().leading_own_group());
  ASSERT_TRUE(gone);
  const TrackedProcess t = track(gone.pid());
  ::kill(gone.pid(), SIGKILL);
  gone.reap();
  const Run run = reap(job_for({t}), std::chrono::milliseconds(100));
  EXPECT_EQ(run.calls, 1);
  EXPECT_EQ(run.outcome.terminated + run.outcome.killed + run.outcome.unkillable, 0u);
}

TEST_F(AsioLeaseReaperTest, SeveralReapsOnOneIoContextEachCallDoneOnce) {
  std::vector<ScopedChild> leaders;
  for (int i = 0; i < 3; ++i) {
    leaders.push_back(spawn_sleeper(SleeperOptions().leading_own_group()));
    ASSERT_TRUE(leaders.back());
  }
  boost::asio::io_context io;
  StaleArtifactCleaner cleaner(x11_dir_, runtime_dir_, "unit-test-host");
  AsioLeaseReaper reaper(io, cleaner, x11_dir_, std::chrono::seconds(60));
  std::map<std::string, int> calls;
  for (int i = 0; i < 3; ++i) {
    ReapJob job = job_for({track(leaders[i].pid())});
    job.lease_id = "lease" + std::to_string(i);
    job.display = kDisplay + i;
    reaper.reap(std::move(job), [&calls, i](ReapOutcome o) {
      ++calls["lease" + std::to_string(i)];
      EXPECT_EQ(o.terminated, 1u) << i;
    });
  }
  EXPECT_TRUE(calls.empty());
  io.run();
  EXPECT_EQ(calls, (std::map<std::string, int>{{"lease0", 1}, {"lease1", 1}, {"lease2", 1}}));
}

}  // namespace
}  // namespace xpra_broker
