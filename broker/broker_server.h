// The broker's socket side (after Asio's local/stream_server and chat
// examples): owns the acceptor, one ClientSession per connection, reads
// frames (a 4-byte length, then a body of at most 64 KiB) into a per-session
// buffer, answers each, and reads the next.
//
// Each session strictly alternates read -> handle -> write, so at most one
// write is ever outstanding and no reply queue can grow without bound when a
// client stops reading.
#pragma once

#include <utility>  // Boost 1.74 asio/awaitable.hpp uses std::exchange without it
#include <boost/asio.hpp>
#include <memory>
#include <unordered_map>
#include <vector>

#include "display_broker.h"

namespace xpra_broker {

class ClientSession;

class BrokerServer {
 public:
  // Takes over an already bound and listening socket (ours or systemd's).
  BrokerServer(boost::asio::io_context& io, DisplayBroker& broker, int listening_fd,
               std::uint32_t max_connections_per_user);

  void start();
  void stop();

  // Called by sessions.
  void session_closed(ConnectionId id, uid_t uid);
  // Sends `response` once the journal records of this turn are written.
  void reply_after_commit(std::shared_ptr<ClientSession> session, v1::Response response);
  DisplayBroker& broker() { return broker_; }

  std::size_t connection_count() const { return sessions_.size(); }

  static constexpr std::size_t kMaxConnections = 4096;

 private:
  void accept_next();
  void commit_and_reply();

  boost::asio::io_context& io_;
  DisplayBroker& broker_;
  boost::asio::local::stream_protocol::acceptor acceptor_;
  boost::asio::steady_timer accept_pause_;
  std::uint32_t max_connections_per_user_;
  ConnectionId next_id_ = 1;
  std::unordered_map<ConnectionId, std::weak_ptr<ClientSession>> sessions_;
  std::unordered_map<uid_t, std::uint32_t> connections_per_uid_;
  std::vector<std::pair<std::shared_ptr<ClientSession>, v1::Response>> awaiting_commit_;
};

// Reads identity from the kernel: SO_PEERCRED and SO_PEERGROUPS.
bool read_peer_identity(int fd, Caller& caller);

}  // namespace xpra_broker
