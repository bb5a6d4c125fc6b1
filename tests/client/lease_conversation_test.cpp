// lease_conversation.h: what the client tells a real xpra-brokerd about one
// lease, and its link to the broker across a kill -9 and restart. The client
// side runs in this (root) process; the broker is the integration harness's.
#include "lease_conversation.h"

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <cerrno>
#include <memory>
#include <string>

#include "broker_harness.h"

namespace xpra_broker::client {
namespace {

using integration::BrokerProcess;
using integration::wait_until;
using namespace std::chrono_literals;

struct Acquired {
  v1::Lease lease;
  std::string token;
};

class LeaseConversationTest : public ::testing::Test {
 protected:
  void start(std::vector<std::string> options) {
    broker_ = std::make_unique<BrokerProcess>(std::move(options));
    broker_->start();
    conn_ = broker_->connect();
  }

  Acquired acquire() {
    v1::Request request;
    request.mutable_acquire()->set_purpose("lease conversation test");
    v1::Response response;
    EXPECT_EQ(conn_.call(request, response), BrokerConnection::Error::none);
    EXPECT_EQ(response.status(), v1::OK) << response.DebugString();
    return {response.acquire().lease(), response.acquire().reattach_token()};
  }

  bool listed(const std::string& lease_id) {
    v1::Request request;
    request.mutable_list()->set_all(true);
    for (const auto& l : broker_->call(request).list().leases())
      if (l.id() == lease_id) return true;
    return false;
  }

  // A child of ours that waits to be ended, in a process group of its own.
  static pid_t start_sleeper() {
    const pid_t pid = ::fork();
    if (pid == 0) {
      ::setpgid(0, 0);
      ::execlp("sleep", "sleep", "300", static_cast<char*>(nullptr));
      ::_exit(127);
    }
    return pid;
  }

  void TearDown() override {
    if (broker_ && HasFailure()) std::cout << "---- xpra-brokerd log ----\n" << broker_->log() << "---- end ----\n";
  }

  std::unique_ptr<BrokerProcess> broker_;
  BrokerConnection conn_;
};

TEST_F(LeaseConversationTest, TheBrokerTakesOurProcessesAndEndsThemOnRelease) {
  start({"--displays=1200-1201"});
  const Acquired acquired = acquire();
  LeaseConversation lease(conn_, broker_->socket_path(), acquired.lease, acquired.token);
  const pid_t sleeper = start_sleeper();
  ASSERT_GT(sleeper, 0);
  EXPECT_TRUE(lease.report_process(sleeper, v1::SESSION));

  // A pid that is gone: the broker cannot track it, and the client says so.
  const pid_t gone = ::fork();
  if (gone == 0) ::_exit(0);
  ::waitpid(gone, nullptr, 0);
  ::testing::internal::CaptureStderr();
  EXPECT_FALSE(lease.report_process(gone, v1::SESSION));
  const std::string said = ::testing::internal::GetCapturedStderr();
  EXPECT_NE(said.find("the broker did not take pid " + std::to_string(gone)), std::string::npos) << said;

  lease.release(0, 20s);
  EXPECT_FALSE(listed(acquired.lease.id())) << "release returns once the broker has reaped the lease";
  int status = 0;
  const bool ended = wait_until([&] {
    const pid_t r = ::waitpid(sleeper, &status, WNOHANG);
    return r == sleeper || (r < 0 && errno == ECHILD);
  });
  if (!ended) ::kill(sleeper, SIGKILL), ::waitpid(sleeper, nullptr, 0);
  EXPECT_TRUE(ended) << "the broker's reaper ends the reported process";
}

TEST_F(LeaseConversationTest, ADisplayConflictNobodyConfirmsIsCountedAsTheUsersOwn) {
  start({"--displays=1202-1203"});
  const Acquired acquired = acquire();
  LeaseConversation lease(conn_, broker_->socket_path(), acquired.lease, acquired.token);
  ::testing::internal::CaptureStderr();
  lease.report_start_failure(v1::DISPLAY_CONFLICT, "(EE) Server is already active for display\n");
  const std::string said = ::testing::internal::GetCapturedStderr();
  EXPECT_NE(said.find("found nothing of another user on :" + std::to_string(acquired.lease.display())),
            std::string::npos)
      << said;
  lease.release(std::nullopt, 20s);
  EXPECT_FALSE(listed(acquired.lease.id()));
}

TEST_F(LeaseConversationTest, AfterABrokerRestartTheLinkComesBackWithTheTokenAndOnlyWithIt) {
  start({"--displays=1204-1205", "--reattach-grace-seconds=60"});
  const Acquired acquired = acquire();
  BrokerConnection other = broker_->connect();
  LeaseConversation ours(conn_, broker_->socket_path(), acquired.lease, acquired.token);
  LeaseConversation forged(other, broker_->socket_path(), acquired.lease, "not-the-token");
  EXPECT_EQ(ours.link(), LeaseConversation::Link::connected);
  EXPECT_EQ(ours.broker_fd(), conn_.fd());
  EXPECT_EQ(ours.poll_timeout_ms(), -1) << "connected: nothing to wake up for";

  ASSERT_EQ(::kill(broker_->pid(), SIGKILL), 0);
  ASSERT_TRUE(wait_until([&] { return !broker_->alive(); }));
  ::testing::internal::CaptureStderr();
  ours.check_connection();
  forged.check_connection();
  const std::string said = ::testing::internal::GetCapturedStderr();
  EXPECT_NE(said.find("lost the connection to the broker"), std::string::npos) << said;
  EXPECT_EQ(ours.link(), LeaseConversation::Link::reattaching);
  EXPECT_EQ(ours.broker_fd(), -1) << "a lost connection is not watched";
  EXPECT_GE(ours.poll_timeout_ms(), 0);
  EXPECT_LE(ours.poll_timeout_ms(), 100) << "the first attempt comes after 100 ms";

  // No broker: attempts fail and the back-off grows, the link stays down.
  ASSERT_TRUE(wait_until([&] {
    ours.reattach_if_due();
    return ours.poll_timeout_ms() > 100;
  }));
  EXPECT_EQ(ours.link(), LeaseConversation::Link::reattaching);

  broker_->start();
  ::testing::internal::CaptureStderr();
  ASSERT_TRUE(wait_until([&] {
    forged.reattach_if_due();
    return forged.link() != LeaseConversation::Link::reattaching;
  }));
  ASSERT_TRUE(wait_until([&] {
    ours.reattach_if_due();
    return ours.link() != LeaseConversation::Link::reattaching;
  }));
  const std::string back = ::testing::internal::GetCapturedStderr();
  EXPECT_EQ(forged.link(), LeaseConversation::Link::lease_gone) << back;
  EXPECT_EQ(ours.link(), LeaseConversation::Link::connected) << back;
  EXPECT_NE(back.find("reattached to lease " + acquired.lease.id()), std::string::npos) << back;
  EXPECT_EQ(forged.broker_fd(), -1);
  EXPECT_EQ(forged.poll_timeout_ms(), -1) << "the lease is gone: nothing more to try";

  ours.release(std::nullopt, 20s);
  EXPECT_FALSE(listed(acquired.lease.id()));
}

}  // namespace
}  // namespace xpra_broker::client
