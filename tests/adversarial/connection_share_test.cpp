// Issue 21, attack 4: the broker's connection count is shared by everyone.
// Mallory alone (with a high max-connections-per-user, standing in for 64
// users x 64 connections) opens more connections than the broker's cap of
// 4096 and keeps them idle. Root (the admin's `status`, and the PAM module,
// whose sessions are root's) must still get in, and so must alice, who
// holds none: the cap keeps a reserve for root, and a user below her fair
// share of a full pool gets an idle connection of the biggest holder.
//
// A private --x11-tmp-dir, displays 52710-52719.
#include <poll.h>
#include <sys/resource.h>

#include "adversarial_support.h"

namespace xpra_broker::adversarial {
namespace {

constexpr int kMalloryConnections = 4200;

class ConnectionShareTest : public AdversarialTest {};

TEST_F(ConnectionShareTest, OneUsersIdleConnectionsCannotLockOutRootOrAnotherUser) {
  start_broker({"--displays=52710-52719", "--x11-tmp-dir=" + private_x11_dir(), "--max-connections-per-user=10000",
                "--idle-timeout-seconds=600", "--allowed-groups=" + std::string(kAllowedGroup)});
  const std::string socket = broker().socket_path();
  // Counters: 0 = connected, 1 = refused (a reply and EOF at once),
  // 2 = settled, 3 = closed later (by the broker, for somebody else), 7 = stop.
  BackgroundAs mallory(kMallory, [socket](BackgroundAs::Counters& c) {
    rlimit files{8192, 8192};
    if (::setrlimit(RLIMIT_NOFILE, &files) != 0) return 2;
    std::vector<BrokerConnection> conns;
    for (int i = 0; i < kMalloryConnections; ++i) {
      conns.push_back(BrokerConnection::connect(socket, 10s));
      if (conns.back().connected()) ++c[0];
    }
    // A refused connection gets its reply and EOF at once; wait until none
    // has for a second.
    std::vector<bool> seen(conns.size());
    const auto count_closed = [&](int timeout_ms) {
      std::vector<pollfd> fds;
      std::vector<std::size_t> which;
      for (std::size_t i = 0; i < conns.size(); ++i)
        if (!seen[i] && conns[i].connected()) fds.push_back({conns[i].fd(), POLLIN, 0}), which.push_back(i);
      int n = 0;
      if (::poll(fds.data(), fds.size(), timeout_ms) > 0)
        for (std::size_t k = 0; k < fds.size(); ++k)
          if (fds[k].revents) seen[which[k]] = true, ++n;
      return n;
    };
    for (int n; (n = count_closed(1000)) > 0;) c[1] += static_cast<std::uint64_t>(n);
    c[2] = 1;
    while (c[7] == 0) c[3] += static_cast<std::uint64_t>(count_closed(100));
    return 0;
  });
  ASSERT_TRUE(integration::wait_until([&] { return mallory.counter(2) == 1 || mallory.wait_for(0ms); }, 120s));
  ASSERT_EQ(mallory.counter(2), 1u) << "mallory's flood did not run";
  const auto held = mallory.counter(0) - mallory.counter(1);

  const v1::Response root_status = broker().call(status_request());
  UserAgent alice(kAlice, socket);
  const auto a = alice.call(acquire_request("while-mallory-holds-the-pool"));
  lifecycle::report("mallory holds " + std::to_string(held) + " idle connections (" +
                    std::to_string(mallory.counter(1)) + " refused); root's status: " +
                    v1::Status_Name(root_status.status()) + "; alice's acquire: " + a.status_name());
  EXPECT_EQ(v1::Status_Name(root_status.status()), "OK") << root_status.message();
  EXPECT_EQ(a.status_name(), "OK") << a.response.message();
  EXPECT_LT(held, 4096u) << "mallory took the whole cap, root's reserve included";
  mallory.set_counter(7, 1);
}

}  // namespace
}  // namespace xpra_broker::adversarial
