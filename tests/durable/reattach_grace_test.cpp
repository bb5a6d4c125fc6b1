// A recovered lease whose holder does not come back within
// reattach-grace-seconds is reaped, processes and all, even though the holder
// is still alive (here: stopped with SIGSTOP, so it cannot reattach).
#include <signal.h>

#include "durable_support.h"

namespace xpra_broker::durable {
namespace {

class ReattachGraceTest : public DurableTest {};

TEST_F(ReattachGraceTest, ALeaseWhoseHolderDoesNotComeBackWithinTheGraceIsReaped) {
  start_broker({"--displays=775-779", "--reattach-grace-seconds=2", "--reap-grace-ms=1000"});
  auto client = broker().spawn_client_as(kAlice, {"exec", "--xvfb", "--", "sleep", "60"});
  std::optional<v1::Lease> lease;
  ASSERT_TRUE(integration::wait_until(
      [&] {
        const auto leases = list_all();
        if (leases.size() != 1 || leases[0].process_pids_size() != 3 || !x_server_on(leases[0].display()))
          return false;
        lease = leases[0];
        return true;
      },
      40s, 50ms))
      << "the exec client did not get its session running";
  const pid_t x = x_server_on(lease->display())->pid;
  const std::vector<pid_t> tracked(lease->process_pids().begin(), lease->process_pids().end());
  kill_at_teardown(tracked);
  kill_at_teardown({x});

  kill_broker();
  ASSERT_FALSE(HasFatalFailure());
  // Alive but unable to reattach.
  client.send_signal(SIGSTOP);
  restart_broker();

  // Recovered and waiting for its (live) holder, then given up on.
  EXPECT_TRUE(integration::wait_until(
      [&] { return broker().log().find("did not reattach after the broker restarted") != std::string::npos; }, 20s))
      << "the lease was not ended after the grace period";
  const std::string log = broker().log();
  EXPECT_NE(log.find("lease=" + lease->id()), std::string::npos);
  EXPECT_NE(log.find("waiting 2 s for its holder"), std::string::npos)
      << "the stopped holder is alive: the lease must wait for it first";
  EXPECT_TRUE(integration::wait_until([&] { return !find_lease(lease->id()); }, 20s)) << "the lease still exists";
  EXPECT_TRUE(integration::wait_until([&] { return !integration::process_running(x); }, 20s))
      << "its X server still runs";
  for (pid_t pid : tracked)
    EXPECT_TRUE(integration::wait_until([&] { return !integration::process_running(pid); }, 20s)) << pid;

  // The holder, woken up, finds its session gone and ends by itself.
  client.send_signal(SIGCONT);
  const auto result = client.wait(30s);
  EXPECT_FALSE(result.timed_out) << "the exec client did not end after its lease was reaped\n" << result.describe();
}

}  // namespace
}  // namespace xpra_broker::durable
