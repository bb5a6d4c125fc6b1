// exec_wait_loop.h: the loop while the command runs, with a real command
// under its keeper, a real signalfd and a real xpra-brokerd.
#include "exec_wait_loop.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <memory>
#include <string>
#include <thread>

#include "broker_harness.h"

namespace xpra_broker::client {
namespace {

using integration::BrokerProcess;
using integration::wait_until;
using namespace std::chrono_literals;

// SIGTERM, SIGINT, SIGHUP and SIGCHLD blocked and read from a signalfd, as
// run_exec() sets it up; the old mask back (and nothing left pending) after.
class ExecWaitLoopTest : public ::testing::Test {
 protected:
  void SetUp() override {
    sigemptyset(&handled_);
    for (int s : {SIGTERM, SIGINT, SIGHUP, SIGCHLD}) sigaddset(&handled_, s);
    ::sigprocmask(SIG_BLOCK, &handled_, &old_mask_);
    signals_.reset(::signalfd(-1, &handled_, SFD_CLOEXEC | SFD_NONBLOCK));
    ASSERT_TRUE(signals_);
  }
  void TearDown() override {
    signalfd_siginfo info{};
    while (::read(signals_.get(), &info, sizeof(info)) == sizeof(info)) {
    }
    ::sigprocmask(SIG_SETMASK, &old_mask_, nullptr);
    if (broker_ && HasFailure()) std::cout << "---- xpra-brokerd log ----\n" << broker_->log() << "---- end ----\n";
  }

  LeaseConversation start_broker_and_acquire(const std::string& displays) {
    broker_ = std::make_unique<BrokerProcess>(std::vector<std::string>{displays, "--reattach-grace-seconds=60"});
    broker_->start();
    conn_ = broker_->connect();
    v1::Request request;
    request.mutable_acquire()->set_purpose("exec wait loop test");
    v1::Response response;
    EXPECT_EQ(conn_.call(request, response), BrokerConnection::Error::none);
    EXPECT_EQ(response.status(), v1::OK) << response.DebugString();
    return LeaseConversation(conn_, broker_->socket_path(), response.acquire().lease(),
                             response.acquire().reattach_token());
  }

  std::optional<CommandProcess> run_shell(const std::string& script) {
    auto command = CommandProcess::start({"sh", "-c", script}, {}, {2000ms, false}, old_mask_);
    if (command) {
      command->let_run();
      command->wait_for_exec();
    }
    return command;
  }

  sigset_t handled_, old_mask_;
  UniqueFd signals_;
  std::unique_ptr<BrokerProcess> broker_;
  BrokerConnection conn_;
};

TEST_F(ExecWaitLoopTest, AStopSignalGoesToTheCommandsGroupAndTheLoopEndsWithItsStatus) {
  LeaseConversation lease = start_broker_and_acquire("--displays=1210-1211");
  auto command = run_shell("sleep 300; exit 0");
  ASSERT_TRUE(command);
  ASSERT_TRUE(lease.report_process(command->keeper_pid(), v1::KEEPER));
  ::kill(::getpid(), SIGTERM);  // blocked here: read from the signalfd by the loop
  UniqueFd no_x_server;
  const CommandWait wait = wait_for_command(signals_.get(), *command, lease, no_x_server, false);
  command->reap_keeper();
  EXPECT_TRUE(wait.stop_requested);
  ASSERT_TRUE(wait.status) << "the keeper reported";
  EXPECT_EQ(exit_status_of(*wait.status), 128 + SIGTERM) << "sh was signalled with its sleep, not after it";
  EXPECT_EQ(lease.link(), LeaseConversation::Link::connected);
  lease.release(std::nullopt, 20s);
}

TEST_F(ExecWaitLoopTest, TheCommandKeepsRunningWhileTheBrokerIsAwayAndBothStderrsAreRelayed) {
  LeaseConversation lease = start_broker_and_acquire("--displays=1212-1213");
  int x_pipe[2];
  ASSERT_EQ(::pipe2(x_pipe, O_CLOEXEC), 0);
  UniqueFd x_stderr(x_pipe[0]);
  ASSERT_EQ(::write(x_pipe[1], "x server said\n", 14), 14);
  ::close(x_pipe[1]);
  // The command ends once the client has said that the broker is lost; the
  // client's stderr goes to a pipe a thread of the test reads.
  int err_pipe[2];
  ASSERT_EQ(::pipe2(err_pipe, O_CLOEXEC), 0);
  const int saved_stderr = ::dup(STDERR_FILENO);
  auto command = run_shell("echo command said >&2; exec sleep 300");
  ASSERT_TRUE(command);
  ::dup2(err_pipe[1], STDERR_FILENO);
  ::close(err_pipe[1]);
  ASSERT_EQ(::kill(broker_->pid(), SIGKILL), 0);
  std::string said;
  const pid_t command_pid = command->pid();
  std::thread reader([&] {
    char buf[512];
    for (ssize_t got; (got = ::read(err_pipe[0], buf, sizeof(buf))) > 0;) {
      said.append(buf, static_cast<std::size_t>(got));
      if (said.find("lost the connection") != std::string::npos && said.find("x server said") != std::string::npos &&
          said.find("command said") != std::string::npos)
        ::kill(command_pid, SIGKILL);
    }
  });
  const CommandWait wait = wait_for_command(signals_.get(), *command, lease, x_stderr, false);
  ::dup2(saved_stderr, STDERR_FILENO);  // the reader sees EOF
  ::close(saved_stderr);
  reader.join();
  ::close(err_pipe[0]);
  command->reap_keeper();
  EXPECT_FALSE(wait.stop_requested);
  ASSERT_TRUE(wait.status) << said;
  EXPECT_EQ(exit_status_of(*wait.status), 128 + SIGKILL) << said;
  EXPECT_EQ(lease.link(), LeaseConversation::Link::reattaching) << said;
  EXPECT_FALSE(x_stderr) << "the X server's stderr is let go once it closed";
  EXPECT_TRUE(wait_until([&] { return !broker_->alive(); }));
}

}  // namespace
}  // namespace xpra_broker::client
