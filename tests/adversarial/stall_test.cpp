// Attack 4, requests that stall the broker: the broker has one event loop.
// If a read verb does expensive work on it (walking all of /proc for
// `status`), one user asking on all of her 64 connections at once, on a host
// with thousands of processes, holds everybody else's requests up. Alice,
// who only acquires and releases, must keep getting every answer within a
// generous bound while bob spams `status`.
//
// A private --x11-tmp-dir, displays 52300-52309.
#include <signal.h>

#include <algorithm>

#include "adversarial_support.h"
#include "framing.h"

namespace xpra_broker::adversarial {
namespace {

using Clock = std::chrono::steady_clock;

// Generous: an acquire+release on an idle broker takes about a millisecond.
constexpr auto kBound = 5s;
constexpr int kRounds = 100;
constexpr int kExtraProcesses = 3000;
constexpr int kSpamConnections = 64;  // max-connections-per-user

class StallTest : public AdversarialTest {};

TEST_F(StallTest, ReadSpamOnSixtyFourConnectionsDoesNotHoldUpAnotherUsersAcquireAndRelease) {
  // Extra processes on the host, bob's, so that /proc is big.
  IdleProcesses extra(kBob, kExtraProcesses);
  ASSERT_TRUE(integration::wait_until([&] { return extra.started() == kExtraProcesses || extra.failed(); }, 120s));
  ASSERT_EQ(extra.started(), kExtraProcesses) << "could not start the extra processes";

  start_broker({"--displays=52300-52309", "--x11-tmp-dir=" + private_x11_dir(),
                "--allowed-groups=" + std::string(kAllowedGroup), "--acquire-burst=100000",
                "--acquires-per-minute=1000000"});
  UserAgent alice(kAlice, broker().socket_path());
  // Warm up alice's side (and check it works at all) before the spam starts.
  {
    const auto a = alice.call(acquire_request("warm-up"));
    ASSERT_EQ(a.status_name(), "OK") << a.response.message();
    ASSERT_EQ(alice.call(release_request(a.response.acquire().lease().id())).status_name(), "OK");
  }

  // Bob: `status` on all his connections, each sent again as soon as its
  // answer is in, until he is stopped.
  const std::string socket = broker().socket_path();
  BackgroundAs spammer(kBob, [socket](BackgroundAs::Counters& c) {
    std::vector<BrokerConnection> conns;
    for (int i = 0; i < kSpamConnections; ++i) {
      conns.push_back(BrokerConnection::connect(socket, 10s));
      conns.back().set_timeout(120s);
    }
    const auto frame = *wire::encode_frame(status_request());
    c[0] = 1;
    for (;;) {
      for (auto& conn : conns)
        if (conn.connected()) conn.send_raw(frame);
      for (auto& conn : conns) {
        v1::Response r;
        if (conn.connected() && conn.receive(r) == BrokerConnection::Error::none) ++c[1];
        else ++c[2];
      }
    }
    return 0;
  });
  ASSERT_TRUE(integration::wait_until([&] { return spammer.counter(1) >= kSpamConnections; }, 60s))
      << "bob's status spam does not get answers";

  std::vector<double> ms;
  std::string failures;
  int over_bound = 0;
  // Stop early once the outcome is clear (on a broker that stalls, 100
  // rounds would take minutes).
  const auto give_up = Clock::now() + 60s;
  for (int i = 0; i < kRounds && over_bound < 3 && Clock::now() < give_up; ++i) {
    const auto start = Clock::now();
    const auto a = alice.call(acquire_request("victim"), 0, 60s);
    std::string id = a.transport_ok && a.response.status() == v1::OK ? a.response.acquire().lease().id() : "";
    const auto r = id.empty() ? a : alice.call(release_request(id), 0, 60s);
    const auto took = Clock::now() - start;
    ms.push_back(std::chrono::duration<double, std::milli>(took).count());
    if (id.empty() || r.status_name() != "OK") failures += " round " + std::to_string(i) + ": " + r.status_name();
    if (took > kBound) ++over_bound;
  }
  const std::uint64_t statuses = spammer.counter(1);
  spammer.stop();
  const std::string summary = "alice's acquire+release under bob's status spam (" + std::to_string(kExtraProcesses) +
                              " extra processes, " + std::to_string(statuses) + " statuses answered to bob): " +
                              latency_summary(ms);
  lifecycle::report(summary);
  EXPECT_TRUE(failures.empty()) << failures;
  EXPECT_EQ(ms.size(), static_cast<std::size_t>(kRounds)) << "alice got through only " << ms.size() << " rounds";
  EXPECT_EQ(over_bound, 0) << over_bound << " of " << ms.size() << " rounds took longer than "
                           << std::chrono::duration_cast<std::chrono::seconds>(kBound).count() << " s; " << summary;
}

}  // namespace
}  // namespace xpra_broker::adversarial
