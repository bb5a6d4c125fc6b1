// x_server_launcher.h: the conflict patterns (the exact lines Xvfb prints in
// PROBLEM.md), XPRA_DISPLAY_FD_TIMEOUT, and start_x_server() against fake X
// servers: shell commands that answer on fd 3, hang, close it, or fail.
#include "x_server_launcher.h"

#include <signal.h>
#include <stdlib.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <fstream>
#include <optional>
#include <string>

#include "process_group.h"
#include "test_processes.h"
#include "test_support.h"

namespace xpra_broker::client {
namespace {

using std::chrono::milliseconds;
using xpra_broker::testing::Contains;
using xpra_broker::testing::eventually;
using xpra_broker::testing::running_members_of_group;
using xpra_broker::testing::TempDir;

// ---- is_display_conflict ---------------------------------------------------

TEST(IsDisplayConflictTest, TheLinesXvfbPrintsWhenTheNumberIsTaken) {
  for (const char* line : {
           "_XSERVTransSocketUNIXCreateListener: ...SocketCreateListener() failed",
           "_XSERVTransMakeAllCOTSServerListeners: server already running",
           "Could not create server lock file: /tmp/.X8-lock",
           // As Xvfb 21 prints them, with the (EE) prefix and the newline.
           "(EE) Could not create server lock file: /tmp/.X8-lock\n",
           "_XSERVTransSocketUNIXCreateListener: ...SocketCreateListener() failed\n"
           "_XSERVTransMakeAllCOTSServerListeners: server already running\n"
           "(EE) \nFatal server error:\n(EE) Cannot establish any listening sockets - Make sure an X server isn't "
           "already running(EE) \n",
           "Fatal server error:\nServer is already active for display 7\n",
       }) {
    EXPECT_TRUE(is_display_conflict(line)) << line;
  }
}

TEST(IsDisplayConflictTest, XprasOwnWordsWhenItsSocketDirsHoldTheDisplay) {
  for (const char* text : {
           // Another user's socket (INACCESSIBLE), as `xpra start` prints it.
           "xpra initialization error:\n An xpra server is already running at /tmp/xpra-shared/host-930\n",
           // A live one of the user's own.
           "xpra initialization error:\n You already have an xpra server running at /run/xpra/1000/host-931\n"
           "  (did you want 'xpra upgrade'?)\n",
           // xpra's X server check (x11/vfb_util.py, the same words in 3.1, 5.0, 6.5).
           "There is an X11 server already running on display :932:\n",
           // 5.x/6.x quote the path; 6.x also for another user's abstract socket.
           "xpra initialization error:\n An xpra server is already running at '/tmp/xpra-shared/host-933'\n",
           "xpra initialization error:\n You already have an xpra server running at '@xpra/1190'\n",
       }) {
    EXPECT_TRUE(is_display_conflict(text)) << text;
  }
}

TEST(IsDisplayConflictTest, OtherFailuresAreNotConflicts) {
  for (const char* line : {
           "",
           "\n",
           "(EE) Fatal server error:\n(EE) no screens found(EE)\n",
           "xkbcomp: cannot open display\n",
           "Xvfb: error while loading shared libraries: libGL.so.1",
           "sh: 1: exec: Xvfb: not found",
           "The XKEYBOARD keymap compiler (xkbcomp) reports:\n> Warning: Could not resolve keysym XF86Foo\n",
           "_XSERVTrans",
           "server already runnin",
           "Could not create server lock",
           "xpra initialization error:\n failed to setup vsock socket\n",
           "An xpra server is",
       }) {
    EXPECT_FALSE(is_display_conflict(line)) << line;
  }
}

// ---- display_fd_timeout ----------------------------------------------------

// Sets XPRA_DISPLAY_FD_TIMEOUT for one test and restores it after.
class DisplayFdTimeoutTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (const char* v = std::getenv("XPRA_DISPLAY_FD_TIMEOUT")) saved_ = v;
  }
  void TearDown() override {
    if (saved_)
      ::setenv("XPRA_DISPLAY_FD_TIMEOUT", saved_->c_str(), 1);
    else
      ::unsetenv("XPRA_DISPLAY_FD_TIMEOUT");
  }
  milliseconds with(const char* value) {
    ::setenv("XPRA_DISPLAY_FD_TIMEOUT", value, 1);
    return display_fd_timeout();
  }
  std::optional<std::string> saved_;
};

TEST_F(DisplayFdTimeoutTest, UnsetIsTwentySeconds) {
  ::unsetenv("XPRA_DISPLAY_FD_TIMEOUT");
  EXPECT_EQ(display_fd_timeout(), milliseconds(20000));
  EXPECT_EQ(with(""), milliseconds(20000)) << "set but empty";
}

TEST_F(DisplayFdTimeoutTest, SecondsWithFractionsAreParsed) {
  EXPECT_EQ(with("2.5"), milliseconds(2500));
  EXPECT_EQ(with("1"), milliseconds(1000));
  EXPECT_EQ(with("60"), milliseconds(60000));
  EXPECT_EQ(with("0.1"), milliseconds(100));
  EXPECT_EQ(with("300"), milliseconds(300000));
}

TEST_F(DisplayFdTimeoutTest, JunkFallsBackToTwentySeconds) {
  for (const char* junk : {"junk", "2.5s", "10 ", " x", "0", "-1", "-2.5", "nan", "inf", "1e9", "86400", "0x",
                           "2,5"}) {
    EXPECT_EQ(with(junk), milliseconds(20000)) << "'" << junk << "'";
  }
}

// ---- start_x_server --------------------------------------------------------

class StartXServerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (::geteuid() == 0) {
      ASSERT_TRUE(xpra_broker::testing::restore_effective_capabilities());
    }
    pid_file_ = tmp_.path() + "/pid";
  }

  // The pid the fake X server wrote (its process group: start_x_server makes
  // it a group leader and `exec`s the command), or 0.
  pid_t written_pid() {
    std::ifstream in(pid_file_);
    pid_t pid = 0;
    in >> pid;
    return pid;
  }
  // A fake X server: `sh -c BODY :N -displayfd 3`, so $0 is ":N". It
  // records its pid first.
  std::string fake(const std::string& body) {
    return "sh -c 'echo $$ > " + pid_file_ + "; " + body + "'";
  }
  // True once nothing of the group runs any more. SIGKILL is final but not
  // instantaneous, so this waits for it to take effect.
  static bool group_gone(pid_t pgid) {
    return eventually([&] { return running_members_of_group(pgid).empty(); });
  }

  TempDir tmp_;
  std::string pid_file_;
};

TEST_F(StartXServerTest, ServerThatWritesItsDisplayNumberIsReady) {
  const auto r = start_x_server(fake("echo \"${0#:}\" >&3; exec sleep 1000"), 4242, milliseconds(20000));
  ASSERT_EQ(r.outcome, XStart::ready) << r.error_lines;
  EXPECT_GT(r.pid, 0);
  EXPECT_EQ(r.pid, written_pid()) << "the shell execs the command: the pid is the X server's";
  EXPECT_FALSE(r.display_conflict);
  EXPECT_TRUE(r.stderr_fd) << "the caller keeps draining the server's stderr";
  // It leads its own group and keeps running after start_x_server returns.
  ProcessInfo info;
  ASSERT_TRUE(read_process(r.pid, info));
  EXPECT_EQ(info.pgid, r.pid);
  EXPECT_FALSE(running_members_of_group(r.pid).empty());

  stop_process_group(r.pid, milliseconds(5000), Reap::leader_only);
  EXPECT_TRUE(group_gone(r.pid));
}

TEST_F(StartXServerTest, ReadyNeedsAWholeLine) {
  // The number without its newline, then silence: not ready.
  const auto r = start_x_server(fake("printf 12 >&3; exec sleep 1000"), 12, milliseconds(3000));
  EXPECT_EQ(r.outcome, XStart::timeout);
  EXPECT_EQ(r.pid, 0);
  const pid_t pgid = written_pid();
  ASSERT_GT(pgid, 0);
  EXPECT_TRUE(group_gone(pgid));
}

TEST_F(StartXServerTest, ServerThatNeverAnswersTimesOutAndItsGroupIsKilled) {
  // Ignores SIGTERM and leaves a child behind: only SIGKILL to the whole
  // group ends it.
  const auto r = start_x_server(fake("trap \"\" TERM; sleep 1000 & sleep 1000"), 4243, milliseconds(3000));
  EXPECT_EQ(r.outcome, XStart::timeout);
  EXPECT_EQ(r.pid, 0) << "nothing is left for the caller to manage";
  EXPECT_FALSE(r.display_conflict);
  EXPECT_FALSE(r.stderr_fd);
  const pid_t pgid = written_pid();
  ASSERT_GT(pgid, 0) << "the fake server did not even start";
  EXPECT_TRUE(group_gone(pgid)) << "the X server or its child was left running";
}

TEST_F(StartXServerTest, ServerThatPrintsAConflictAndExitsIsAConflict) {
  const auto r = start_x_server(
      fake("echo \"_XSERVTransSocketUNIXCreateListener: ...SocketCreateListener() failed\" >&2; "
           "echo \"_XSERVTransMakeAllCOTSServerListeners: server already running\" >&2; exit 1"),
      7, milliseconds(20000));
  EXPECT_EQ(r.outcome, XStart::exited);
  EXPECT_TRUE(r.display_conflict) << r.error_lines;
  EXPECT_TRUE(Contains(r.error_lines, "server already running"));
  EXPECT_EQ(r.pid, 0);
  EXPECT_FALSE(r.stderr_fd);
}

TEST_F(StartXServerTest, LockFileConflictIsAConflict) {
  const auto r = start_x_server(
      fake("echo \"(EE) Could not create server lock file: /tmp/.X8-lock\" >&2; exit 1"), 8, milliseconds(20000));
  EXPECT_EQ(r.outcome, XStart::exited);
  EXPECT_TRUE(r.display_conflict) << r.error_lines;
}

TEST_F(StartXServerTest, ServerThatFailsOtherwiseIsNotAConflict) {
  const auto r = start_x_server(fake("echo \"(EE) Fatal server error: no screens found\" >&2; exit 1"), 9,
                                milliseconds(20000));
  EXPECT_EQ(r.outcome, XStart::exited);
  EXPECT_FALSE(r.display_conflict);
  EXPECT_TRUE(Contains(r.error_lines, "no screens found"));
}

TEST_F(StartXServerTest, ServerThatClosesTheDisplayFdHasExitedAndItsGroupIsKilled) {
  // Closes fd 3 without a number but keeps running (and keeps a child).
  const auto r = start_x_server(fake("exec 3>&-; sleep 1000 & exec sleep 1000"), 10, milliseconds(20000));
  EXPECT_EQ(r.outcome, XStart::exited);
  EXPECT_EQ(r.pid, 0);
  const pid_t pgid = written_pid();
  ASSERT_GT(pgid, 0);
  EXPECT_TRUE(group_gone(pgid));
}

TEST_F(StartXServerTest, MissingProgramIsNotReady) {
  const auto r = start_x_server("/nonexistent/Xvfb-for-unit-tests", 11, milliseconds(20000));
  EXPECT_EQ(r.outcome, XStart::exited);
  EXPECT_FALSE(r.display_conflict);
  EXPECT_FALSE(r.error_lines.empty()) << "the shell says why";
}

TEST_F(StartXServerTest, DisplayAndDisplayFdArgumentsArePassed) {
  const std::string args = tmp_.path() + "/args";
  const auto r = start_x_server(
      "sh -c 'echo \"$0 $1 $2\" > " + args + "; echo \"${0#:}\" >&3; exec sleep 1000'", 321, milliseconds(20000));
  ASSERT_EQ(r.outcome, XStart::ready) << r.error_lines;
  std::ifstream in(args);
  std::string line;
  std::getline(in, line);
  EXPECT_EQ(line, ":321 -displayfd 3");
  stop_process_group(r.pid, milliseconds(5000), Reap::leader_only);
  EXPECT_TRUE(group_gone(r.pid));
}

}  // namespace
}  // namespace xpra_broker::client
