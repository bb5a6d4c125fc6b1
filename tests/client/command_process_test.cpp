// command_process.h: the command forked under its keeper, held before exec
// until it may run, its stderr relayed and its end turned into exit codes.
// Real processes; each test reaps all it started (reap_keeper).
#include "command_process.h"

#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <cerrno>
#include <string>

#include "broker_harness.h"

namespace xpra_broker::client {
namespace {

using integration::read_file;
using integration::TempDir;

sigset_t no_signals_blocked() {
  sigset_t mask;
  sigemptyset(&mask);
  return mask;
}

std::optional<CommandProcess> start_shell(const std::string& script, std::vector<EnvSetting> env = {}) {
  return CommandProcess::start({"sh", "-c", script}, env, {std::chrono::milliseconds(2000), false},
                               no_signals_blocked());
}

bool exists(const std::string& path) {
  struct stat st {};
  return ::stat(path.c_str(), &st) == 0;
}

TEST(CommandProcessTest, ACommandNeverLetRunNeverRuns) {
  TempDir dir("xpb-client");
  const std::string witness = dir.path() + "/ran";
  auto command = start_shell("touch " + witness);
  ASSERT_TRUE(command);
  EXPECT_GT(command->pid(), 0);
  EXPECT_NE(command->pid(), command->keeper_pid());
  command->never_run();  // returns once the keeper, and so the command, is gone
  EXPECT_FALSE(exists(witness)) << "the command ran although it was never let run";
  EXPECT_EQ(::kill(command->keeper_pid(), 0), -1) << "the keeper was reaped";
}

TEST(CommandProcessTest, LetRunItExecsWithTheEnvironmentAndItsStatusComesFromTheKeeper) {
  TempDir dir("xpb-client");
  const std::string out = dir.path() + "/env";
  ::setenv("XPB_CLIENT_TEST_KEPT", "user's", 1);
  auto command = start_shell("echo \"$DISPLAY $XPB_CLIENT_TEST_KEPT $XPB_CLIENT_TEST_SET\" > " + out + "; exit 3",
                             {{"DISPLAY", ":1203"},
                              {"XPB_CLIENT_TEST_KEPT", "ours", false},
                              {"XPB_CLIENT_TEST_SET", "set"}});
  ::unsetenv("XPB_CLIENT_TEST_KEPT");
  ASSERT_TRUE(command);
  command->let_run();
  EXPECT_EQ(command->wait_for_exec(), 0);
  const std::optional<int> status = command->read_keeper_report();
  command->reap_keeper();
  ASSERT_TRUE(status) << "the keeper reports the command's wait status";
  EXPECT_EQ(exit_status_of(*status), 3);
  EXPECT_EQ(read_file(out), ":1203 user's set\n");
}

TEST(CommandProcessTest, AProgramThatIsNotThereIsReportedAsAShellWould) {
  auto command = CommandProcess::start({"/nonexistent/xpb-no-such-command"}, {},
                                       {std::chrono::milliseconds(2000), false}, no_signals_blocked());
  ASSERT_TRUE(command);
  EXPECT_EQ(command->program(), "/nonexistent/xpb-no-such-command");
  command->let_run();
  const int err = command->wait_for_exec();
  EXPECT_EQ(err, ENOENT);
  EXPECT_EQ(exit_code_for_exec_error(err), 127);
  EXPECT_EQ(exit_code_for_exec_error(EACCES), 126);
  const auto status = command->read_keeper_report();
  command->reap_keeper();
  ASSERT_TRUE(status);
  EXPECT_EQ(exit_status_of(*status), 127);
}

TEST(CommandProcessTest, TheCommandGetsTheSignalMaskItIsGivenNotOurs) {
  TempDir dir("xpb-client");
  const std::string out = dir.path() + "/mask";
  sigset_t ours, old;
  sigemptyset(&ours);
  sigaddset(&ours, SIGTERM);
  ::sigprocmask(SIG_BLOCK, &ours, &old);
  auto command = start_shell("exec grep SigBlk /proc/self/status > " + out);
  ::sigprocmask(SIG_SETMASK, &old, nullptr);
  ASSERT_TRUE(command);
  command->let_run();
  command->wait_for_exec();
  command->read_keeper_report();
  command->reap_keeper();
  EXPECT_EQ(read_file(out), "SigBlk:\t0000000000000000\n") << "SIGTERM was blocked in the client only";
}

TEST(CommandProcessTest, ItsStderrIsRelayedAndItsLast16KiBKept) {
  auto command = start_shell("head -c 20000 /dev/zero | tr '\\0' a >&2; echo taken >&2");
  ASSERT_TRUE(command);
  const int fd = command->stderr_fd();
  EXPECT_GE(fd, 0);
  command->let_run();
  command->wait_for_exec();
  ASSERT_TRUE(command->read_keeper_report());
  ::testing::internal::CaptureStderr();
  command->relay_last_stderr();
  const std::string relayed = ::testing::internal::GetCapturedStderr();
  command->reap_keeper();
  EXPECT_EQ(relayed.size(), 20006u) << "everything it wrote reaches our stderr";
  EXPECT_EQ(command->stderr_tail().size(), 16384u);
  EXPECT_EQ(command->stderr_tail().substr(16384 - 6), "taken\n");
}

TEST(ExitStatusTest, AsAShellReportsIt) {
  EXPECT_EQ(exit_status_of(0), 0);
  EXPECT_EQ(exit_status_of(5 << 8), 5);
  EXPECT_EQ(exit_status_of(SIGKILL), 128 + SIGKILL);
}

}  // namespace
}  // namespace xpra_broker::client
