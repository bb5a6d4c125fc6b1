// The broker's socket side (after Asio's local/stream_server and chat
// examples): owns the acceptor, one ClientSession per connection, reads
// frames (a 4-byte length, then a body of at most 64 KiB) into a per-session
// buffer, answers each, and reads the next.
//
// Each session strictly alternates read -> handle -> write, so at most one
// write is ever outstanding and no reply queue can grow without bound when a
// client stops reading.
//
// What one user can cost everyone else is bounded here: connections per user,
// a deadline per frame, an idle timeout for connections that hold no lease,
// read verbs paced per user (read_pacer.h), and refusals logged once per
// interval (log_throttle.h).
#pragma once

#include <utility>  // Boost 1.74 asio/awaitable.hpp uses std::exchange without it
#include <boost/asio.hpp>
#include <memory>
#include <unordered_map>
#include <vector>

#include "durable/durable_leases.h"
#include "core/lease_core.h"
#include "core/log_throttle.h"
#include "server/read_pacer.h"

namespace xpra_broker {

class ClientSession;

struct ServerLimits {
  std::uint32_t max_connections_per_user = 64;
  std::chrono::seconds idle_timeout{30};
  std::uint32_t reads_per_second = 10;
  std::uint32_t read_burst = 20;
};

class BrokerServer {
 public:
  // Takes over an already bound and listening socket (ours or systemd's).
  // `durable` is null when leases are not journaled (journal=no); with one,
  // it runs the group commit (daemon/assembly.h turns it on).
  BrokerServer(boost::asio::io_context& io, LeaseCore& core, DurableLeases* durable, int listening_fd,
               ServerLimits limits);

  void start();
  void stop();

  // Called by sessions.
  void session_closed(ConnectionId id, uid_t uid);
  // Answers one request: the core decides; a reply that announces a change
  // goes out only once the change is recorded (one journal write for every
  // request answered in this turn).
  void answer(const std::shared_ptr<ClientSession>& session, const Caller& caller, ConnectionId id,
              const v1::Request& request);
  bool connection_holds_leases(ConnectionId id) const { return core_.connection_holds_leases(id); }
  // A session's line about its caller, through the core's log (an event
  // with the caller's uid, user and pid; host/log_sink.h).
  void log_about_caller(LogLevel level, const Caller& caller, std::string text) {
    core_.log_about_caller(level, caller, std::move(text));
  }
  const ServerLimits& limits() const { return limits_; }
  // A reload's new limits: apply to new connections and the next read; the
  // read pacer starts afresh.
  void set_limits(const ServerLimits& limits) {
    limits_ = limits;
    read_pacer_ = ReadPacer(limits.reads_per_second, limits.read_burst);
  }
  // How long to hold a read verb of `uid` before answering it.
  std::chrono::milliseconds pace_read(uid_t uid);
  // Logs a refusal at most once per uid and reason per interval.
  bool admit_log(uid_t uid, const char* reason, std::string& suffix);

  std::size_t connection_count() const { return sessions_.size(); }

 private:
  void accept_next();
  void commit_and_reply();
  // Closes one connection holding no lease of the uid (other than root and
  // `newcomer`) that holds the most; false if there is none.
  bool close_idle_connection_of_biggest_holder(uid_t newcomer);

  boost::asio::io_context& io_;
  LeaseCore& core_;
  DurableLeases* durable_;
  boost::asio::local::stream_protocol::acceptor acceptor_;
  boost::asio::steady_timer accept_pause_;
  ServerLimits limits_;
  ReadPacer read_pacer_;
  LogThrottle refusal_log_;
  ConnectionId next_id_ = 1;
  std::unordered_map<ConnectionId, std::weak_ptr<ClientSession>> sessions_;
  std::unordered_map<uid_t, std::uint32_t> connections_per_uid_;
  std::vector<std::pair<std::shared_ptr<ClientSession>, v1::Response>> awaiting_commit_;
};

// Reads identity from the kernel: SO_PEERCRED and SO_PEERGROUPS.
bool read_peer_identity(int fd, Caller& caller);

}  // namespace xpra_broker
