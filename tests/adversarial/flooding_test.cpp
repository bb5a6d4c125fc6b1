// Attack 6, log and connection flooding: refusals cost the attacker nothing,
// so each one must not cost the host a log line. Mallory (not in
// allowed-groups) holds 64 connections, asks for displays on them, and
// reconnects in a loop from another process for 10 s: the broker's log
// grows by a bounded number of lines, with nothing from libprotobuf, and
// the broker keeps serving others. A connection that never sends a byte is
// closed after idle-timeout-seconds (default 30); one that holds a lease is
// not.
//
// A private --x11-tmp-dir, displays 52200-52209 and 52400-52409.
#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "adversarial_support.h"
#include "framing.h"

namespace xpra_broker::adversarial {
namespace {

using Clock = std::chrono::steady_clock;

constexpr int kHeld = 64;  // max-connections-per-user
constexpr auto kFloodTime = 10s;
constexpr std::size_t kMaxNewLines = 100;

class FloodingTest : public AdversarialTest {};

TEST_F(FloodingTest, RefusalsAndBadFramesFromOneUserAddABoundedNumberOfLogLines) {
  start_broker({"--displays=52200-52209", "--x11-tmp-dir=" + private_x11_dir(),
                "--allowed-groups=" + std::string(kAllowedGroup)});
  const std::string socket = broker().socket_path();
  const std::size_t log_before = broker().log().size();
  const std::string acquire_frame = *wire::encode_frame(acquire_request("mallory"));
  const std::string status_frame = *wire::encode_frame(status_request());
  // A request whose purpose is not UTF-8 (libprotobuf complains on parsing).
  std::string bad_utf8_frame;
  {
    const std::string placeholder = "PLACEHOLDER";
    std::string bytes = "\xff\xfe\xc0\x80";
    bytes.resize(placeholder.size(), 'x');
    bad_utf8_frame = frame_of(serialized_with_bytes(acquire_request(placeholder), placeholder, bytes));
  }

  // Counters: holder 0 = connections answered, 1 = acquires refused, 7 =
  // set by the test: stop; reconnector 1 = connections made, 2 = refused.
  BackgroundAs holder(kMallory, [&](BackgroundAs::Counters& c) {
    std::vector<BrokerConnection> conns;
    for (int i = 0; i < kHeld; ++i) {
      conns.push_back(BrokerConnection::connect(socket, 10s));
      v1::Response r;
      if (conns.back().send_raw(status_frame) == BrokerConnection::Error::none &&
          conns.back().receive(r) == BrokerConnection::Error::none && r.status() == v1::OK)
        ++c[0];
    }
    while (c[7] == 0) {
      for (auto& conn : conns) {
        v1::Response r;
        if (conn.send_raw(acquire_frame) == BrokerConnection::Error::none &&
            conn.receive(r) == BrokerConnection::Error::none && r.status() != v1::OK)
          ++c[1];
      }
    }
    // And once on each: a request that is not even valid.
    for (auto& conn : conns) {
      v1::Response r;
      if (conn.send_raw(bad_utf8_frame) == BrokerConnection::Error::none) conn.receive(r);
    }
    return 0;
  });
  ASSERT_TRUE(integration::wait_until([&] { return holder.counter(0) == kHeld; }, 30s))
      << "mallory's " << kHeld << " connections were not all served (" << holder.counter(0) << ")";
  BackgroundAs reconnector(kMallory, [&](BackgroundAs::Counters& c) {
    const auto deadline = Clock::now() + kFloodTime;
    while (Clock::now() < deadline) {
      auto conn = BrokerConnection::connect(socket, 2s);
      ++c[1];
      v1::Response r;
      if (conn.send_raw(acquire_frame) == BrokerConnection::Error::none &&
          conn.receive(r) == BrokerConnection::Error::none && r.status() != v1::OK)
        ++c[2];
    }
    return 0;
  });
  EXPECT_TRUE(reconnector.wait_for(kFloodTime + 30s).has_value());
  holder.set_counter(7, 1);
  EXPECT_TRUE(holder.wait_for(30s).has_value());

  // The broker still serves others.
  UserAgent alice(kAlice, socket);
  const auto a = alice.call(acquire_request("after-the-flood"));
  EXPECT_EQ(a.status_name(), "OK") << a.response.message();

  const std::string log = broker().log();
  const auto lines = log_lines_from(log, log_before);
  std::ostringstream summary;
  summary << "mallory: " << holder.counter(1) << " acquires refused on " << kHeld << " held connections, "
          << reconnector.counter(1) << " reconnects (" << reconnector.counter(2) << " refused), " << kHeld
          << " invalid frames; the broker log grew by " << lines.size() << " lines ("
          << count_containing(lines, "max-connections-per-user") << " about max-connections-per-user, "
          << count_containing(lines, "denied") << " about denied verbs, " << count_containing(lines, "protocol violation")
          << " about protocol violations, " << count_containing(lines, "[libprotobuf") << " from libprotobuf), "
          << (log.size() - log_before) << " bytes";
  lifecycle::report(summary.str());
  EXPECT_GT(reconnector.counter(1), 100u) << "the flood did not happen: " << summary.str();
  EXPECT_LT(lines.size(), kMaxNewLines) << summary.str();
  EXPECT_EQ(count_containing(lines, "[libprotobuf"), 0u) << "libprotobuf printed past the broker's logger";
}

// Waits for EOF (or a reset) on a connection that never sent anything;
// returns the milliseconds it took, or -1 if it stayed open for `limit`.
long wait_for_close(int fd, std::chrono::milliseconds limit) {
  const auto start = Clock::now();
  const auto deadline = start + limit;
  for (;;) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
    if (left <= 0) return -1;
    pollfd p{fd, POLLIN, 0};
    if (::poll(&p, 1, static_cast<int>(left)) <= 0) continue;
    char buf[256];
    const ssize_t n = ::recv(fd, buf, sizeof(buf), MSG_DONTWAIT);
    if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR))
      return std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - start).count();
  }
}

TEST_F(FloodingTest, AConnectionThatNeverSendsAByteIsClosedButALeaseHolderIsNot) {
  // No idle-timeout-seconds given: the default (30 s) applies.
  start_broker({"--displays=52400-52409", "--x11-tmp-dir=" + private_x11_dir(),
                "--allowed-groups=" + std::string(kAllowedGroup)});
  const std::string socket = broker().socket_path();
  // Counters: 0 = connected, 1 = ms until EOF (+1, so 0 means "not yet"),
  // 2 = stayed open past the limit.
  BackgroundAs silent(kMallory, [socket](BackgroundAs::Counters& c) {
    auto conn = BrokerConnection::connect(socket, 10s);
    if (!conn.connected()) return 1;
    c[0] = 1;
    const long ms = wait_for_close(conn.fd(), 50s);
    if (ms < 0) c[2] = 1;
    else c[1] = static_cast<std::uint64_t>(ms) + 1;
    return 0;
  });
  ASSERT_TRUE(integration::wait_until([&] { return silent.counter(0) == 1 || silent.wait_for(0ms); }, 20s));
  ASSERT_EQ(silent.counter(0), 1u) << "mallory could not connect";
  // Alice holds a lease and then says nothing, as `exec` does for hours.
  UserAgent alice(kAlice, socket);
  const auto a = alice.call(acquire_request("long-session"));
  ASSERT_EQ(a.status_name(), "OK") << a.response.message();
  const std::string lease_id = a.response.acquire().lease().id();

  ASSERT_TRUE(silent.wait_for(70s).has_value());
  EXPECT_EQ(silent.counter(2), 0u) << "a connection that never sent a byte was still open after 50 s";
  if (silent.counter(1) > 0) {
    const auto ms = silent.counter(1) - 1;
    lifecycle::report("idle connection closed after " + std::to_string(ms) + " ms");
    EXPECT_LE(ms, 45000u) << "closed, but later than idle-timeout-seconds (30) + 15 s";
    EXPECT_GE(ms, 5000u) << "closed far too early for an idle timeout of 30 s";
  }
  // Give the idle timeout a few more seconds on alice's connection, then
  // her lease and connection must both be there.
  const auto root_list = [&] {
    for (const auto& l : leases())
      if (l.id() == lease_id) return l.state() == v1::ACTIVE;
    return false;
  };
  EXPECT_FALSE(integration::wait_until([&] { return !root_list(); }, 5s, 100ms))
      << "alice's lease ended while she held it and stayed silent";
  const auto s = alice.call(status_request());
  EXPECT_EQ(s.status_name(), "OK") << "alice's lease-holding connection was closed";
}

}  // namespace
}  // namespace xpra_broker::adversarial
