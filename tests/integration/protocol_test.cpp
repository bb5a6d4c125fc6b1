// Malformed frames on the real socket: each gets an INVALID reply where the
// broker can give one, the connection is closed, and nobody else notices.
#include <sys/socket.h>

#include "integration_fixture.h"

namespace xpra_broker::integration {
namespace {

std::string frame_header(std::uint32_t body_size) {
  return {static_cast<char>(body_size >> 24), static_cast<char>(body_size >> 16), static_cast<char>(body_size >> 8),
          static_cast<char>(body_size)};
}

class ProtocolTest : public BrokerTest {
 protected:
  BrokerConnection connect_raw() {
    auto conn = broker_->connect(5s);
    EXPECT_TRUE(conn.connected()) << "errno " << conn.errno_value();
    return conn;
  }

  // Sends `bytes` on a fresh connection and expects an INVALID reply, then
  // the connection closed by the broker.
  void expect_refused(const std::string& what, const std::string& bytes) {
    SCOPED_TRACE(what);
    auto conn = connect_raw();
    ASSERT_EQ(conn.send_raw(bytes), BrokerConnection::Error::none);
    v1::Response reply;
    ASSERT_EQ(conn.receive(reply), BrokerConnection::Error::none) << "no reply to " << what;
    EXPECT_EQ(reply.status(), v1::INVALID) << reply.DebugString();
    EXPECT_FALSE(reply.message().empty());
    v1::Response more;
    EXPECT_EQ(conn.receive(more), BrokerConnection::Error::closed) << "connection left open after " << what;
    EXPECT_TRUE(broker_->alive()) << "the broker died of " << what;
  }

  // A full acquire/release round trip on a fresh connection.
  void expect_acquire_works() {
    auto conn = connect_raw();
    v1::Request acquire;
    acquire.mutable_acquire()->set_purpose("protocol test");
    v1::Response reply;
    ASSERT_EQ(conn.call(acquire, reply), BrokerConnection::Error::none);
    ASSERT_EQ(reply.status(), v1::OK) << reply.DebugString();
    EXPECT_GE(reply.acquire().lease().display(), 350u);
    EXPECT_LE(reply.acquire().lease().display(), 354u);
    v1::Request release;
    release.mutable_release()->set_lease_id(reply.acquire().lease().id());
    ASSERT_EQ(conn.call(release, reply), BrokerConnection::Error::none);
    EXPECT_EQ(reply.status(), v1::OK) << reply.DebugString();
  }
};

TEST_F(ProtocolTest, MalformedFramesAreRefusedAndTheBrokerKeepsServing) {
  start_broker({"--displays=350-354"});

  // A client that starts a frame and stalls; the broker must go on serving
  // everyone else meanwhile and drop it after its frame deadline.
  auto stalled = connect_raw();
  ASSERT_EQ(stalled.send_raw(frame_header(100) + std::string(10, 'x')), BrokerConnection::Error::none);

  expect_refused("a length prefix of 64 KiB + 1", frame_header(64 * 1024 + 1));
  expect_refused("a length prefix of 2 GiB", frame_header(0x7fffffff));
  expect_refused("a zero length prefix", frame_header(0));
  expect_refused("a body that is not protobuf", frame_header(16) + std::string(16, '\xff'));
  // Field 99 (varint 1): what a newer client's unknown verb looks like.
  expect_refused("a valid protobuf without a verb", frame_header(3) + std::string{'\x98', '\x06', '\x01'});
  // A length-delimited field claiming more bytes than the frame holds.
  expect_refused("a truncated field inside the body", frame_header(5) + std::string{'\x52', '\x10', 'a', 'b', 'c'});

  {
    SCOPED_TRACE("a frame cut short by the client closing");
    auto conn = connect_raw();
    ASSERT_EQ(conn.send_raw(frame_header(100) + std::string(10, 'y')), BrokerConnection::Error::none);
    ASSERT_EQ(::shutdown(conn.fd(), SHUT_WR), 0);
    v1::Response reply;
    EXPECT_EQ(conn.receive(reply), BrokerConnection::Error::closed);
    EXPECT_TRUE(broker_->alive());
  }

  // The stalled connection is still open, and others are served.
  expect_acquire_works();
  const auto alice = broker_->client_as(kAlice, exec_shell("echo $XPRA_BROKER_DISPLAY"));
  EXPECT_EQ(alice.exit_code, 0) << alice.describe();

  // The stalled client gets nothing but the closed connection (the broker's
  // frame deadline is 10 s; wait much longer before calling it a hang).
  stalled.set_timeout(60s);
  v1::Response reply;
  EXPECT_EQ(stalled.receive(reply), BrokerConnection::Error::closed) << "the stalled connection was never dropped";

  EXPECT_TRUE(broker_->alive());
  expect_acquire_works();
  // Every refused connection is gone from the broker's books: only the
  // status request's own connection is left.
  std::uint32_t connections = 0;
  const bool settled = wait_until([&] {
    connections = status_json()["connections"].get<std::uint32_t>();
    return connections == 1;
  });
  EXPECT_TRUE(settled) << connections << " connections still counted";
}

}  // namespace
}  // namespace xpra_broker::integration
