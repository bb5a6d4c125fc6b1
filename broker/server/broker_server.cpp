#include "server/broker_server.h"
#include "server/connection_admission.h"

#include <sys/socket.h>

#include <cstring>
#include <vector>
#include <spdlog/fmt/fmt.h>
#include <spdlog/spdlog.h>

#include "framing.h"

namespace xpra_broker {

namespace asio = boost::asio;
using asio::local::stream_protocol;

bool read_peer_identity(int fd, Caller& caller) {
  ucred cred{};
  socklen_t len = sizeof(cred);
  if (::getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0) return false;
  caller.uid = cred.uid;
  caller.gid = cred.gid;
  caller.pid = cred.pid;
  caller.groups.assign(64, 0);
  len = static_cast<socklen_t>(caller.groups.size() * sizeof(gid_t));
  if (::getsockopt(fd, SOL_SOCKET, SO_PEERGROUPS, caller.groups.data(), &len) != 0) {
    if (errno != ERANGE) return false;
    caller.groups.assign(len / sizeof(gid_t), 0);
    if (::getsockopt(fd, SOL_SOCKET, SO_PEERGROUPS, caller.groups.data(), &len) != 0) return false;
  }
  caller.groups.resize(len / sizeof(gid_t));
  return true;
}

class ClientSession : public std::enable_shared_from_this<ClientSession> {
 public:
  ClientSession(BrokerServer& server, stream_protocol::socket socket, ConnectionId id, Caller caller)
      : server_(server), socket_(std::move(socket)), deadline_(socket_.get_executor()),
        pace_(socket_.get_executor()), id_(id), caller_(std::move(caller)) {}

  void start() { next_frame(); }
  uid_t uid() const { return caller_.uid; }
  bool closing() const { return closing_; }
  void close() {
    closing_ = true;
    boost::system::error_code ignored;
    socket_.close(ignored);
    deadline_.cancel();
    pace_.cancel();
  }
  // Refuses the connection with one reply, then closes it.
  void refuse(v1::Status status, const std::string& message) { send_and_close(status, message); }
  // Sends a reply the server held back until its journal records were
  // written (see BrokerServer::reply_after_commit), then reads on.
  void send(const v1::Response& response) { write(response, /*then_close=*/false); }

 private:
  // A client that starts a frame must finish it in this time. Between
  // frames, a connection that holds a lease (an exec client waiting on its
  // command) has no deadline; one that holds none is closed after the idle
  // timeout, so nobody can park connections forever.
  static constexpr auto kFrameDeadline = std::chrono::seconds(10);
  enum class Deadline { none, idle, frame };
  // Requests are tens of bytes: one read of this size takes a whole frame
  // (header and body, one recv), and the buffer grows only for a larger one.
  static constexpr std::size_t kSmallBuffer = 512;

  // Answers the next complete frame in the buffer, or reads until there is
  // one. Called again after each reply is written, never while one is
  // outstanding, so frames a client sends ahead wait in the buffer.
  void next_frame() {
    if (in_used_ >= wire::kHeaderSize) {
      const auto decoded = wire::decode_header(std::span<const std::uint8_t, wire::kHeaderSize>(
          in_.data(), wire::kHeaderSize));
      if (decoded.error != wire::HeaderError::none)
        return protocol_violation(std::string("bad frame: ") + wire::describe(decoded.error));
      const std::size_t frame_size = wire::kHeaderSize + decoded.body_size;
      if (in_used_ >= frame_size) {
        disarm_deadline();
        return handle_frame(decoded.body_size);
      }
      if (in_.size() < frame_size) in_.resize(frame_size);  // at most header + 64 KiB
    }
    if (in_used_ > 0)
      arm_deadline(Deadline::frame);
    else if (!server_.connection_holds_leases(id_))
      arm_deadline(Deadline::idle);
    else
      disarm_deadline();
    read_more();
  }

  void read_more() {
    auto self = shared_from_this();
    socket_.async_read_some(asio::buffer(in_.data() + in_used_, in_.size() - in_used_),
                            [this, self](boost::system::error_code ec, std::size_t got) {
                              if (ec) return finish();
                              in_used_ += got;
                              next_frame();
                            });
  }

  void handle_frame(std::size_t body_size) {
    v1::Request request;
    const bool parsed = request.ParseFromArray(in_.data() + wire::kHeaderSize, static_cast<int>(body_size));
    consume(wire::kHeaderSize + body_size);
    if (!parsed) return protocol_violation("frame is not a valid request");
    if (request.verb_case() == v1::Request::VERB_NOT_SET)
      return protocol_violation("unknown or missing request verb (is the client newer than the broker?)");
    // Reads are paced per user: over the rate, the answer comes late, and
    // this connection reads nothing more meanwhile.
    if (const VerbRule* rule = find_verb_rule(request.verb_case()); rule && rule->paced) {
      const auto wait = server_.pace_read(caller_.uid);
      if (wait.count() > 0) {
        auto self = shared_from_this();
        pace_.expires_after(wait);
        pace_.async_wait([this, self, request = std::move(request)](boost::system::error_code ec) {
          if (!ec && !finished_) answer(request);
        });
        return;
      }
    }
    answer(request);
  }

  void answer(const v1::Request& request) { server_.answer(shared_from_this(), caller_, id_, request); }

  void consume(std::size_t frame_size) {
    in_used_ -= frame_size;
    if (in_used_ > 0) std::memmove(in_.data(), in_.data() + frame_size, in_used_);
    // A large frame's buffer is not kept for an idle connection.
    if (in_.size() > kSmallBuffer && in_used_ <= kSmallBuffer) {
      in_.resize(kSmallBuffer);
      in_.shrink_to_fit();
    }
  }

  void disarm_deadline() {
    if (armed_ == Deadline::none) return;
    armed_ = Deadline::none;
    deadline_.cancel();
  }

  void arm_deadline(Deadline kind) {
    if (armed_ == kind) return;  // a frame's deadline runs from its first byte
    armed_ = kind;
    auto self = shared_from_this();
    deadline_.expires_after(kind == Deadline::frame ? std::chrono::seconds(kFrameDeadline)
                                                    : server_.limits().idle_timeout);
    deadline_.async_wait([this, self, kind](boost::system::error_code ec) {
      // Cancelled, or re-armed after this wait completed (the check of Asio's
      // chat example).
      if (ec || armed_ != kind || deadline_.expiry() > asio::steady_timer::clock_type::now()) return;
      std::string suffix;
      if (kind == Deadline::frame) {
        if (server_.admit_log(caller_.uid, "frame-deadline", suffix))
          server_.log_about_caller(
              LogLevel::warn, caller_,
              fmt::format("frame not completed within {}s, closing{}", kFrameDeadline.count(), suffix));
      } else if (server_.admit_log(caller_.uid, "idle", suffix)) {
        server_.log_about_caller(LogLevel::info, caller_,
                                 fmt::format("connection idle for {}s without a lease, closing{}",
                                             server_.limits().idle_timeout.count(), suffix));
      }
      close();
    });
  }

  void protocol_violation(const std::string& why) {
    std::string suffix;
    if (server_.admit_log(caller_.uid, "protocol", suffix))
      server_.log_about_caller(LogLevel::warn, caller_,
                               fmt::format("protocol violation: {}; closing the connection{}", why, suffix));
    send_and_close(v1::INVALID, why);
  }

  void send_and_close(v1::Status status, const std::string& message) {
    v1::Response r;
    r.set_status(status);
    r.set_message(message);
    write(r, /*then_close=*/true);
  }

  void write(const v1::Response& response, bool then_close) {
    auto frame = wire::encode_frame(response);
    if (!frame) {
      v1::Response too_big;
      too_big.set_status(v1::INTERNAL);
      too_big.set_message("reply too large for one frame; use a narrower request");
      frame = wire::encode_frame(too_big);
    }
    out_ = std::move(*frame);
    auto self = shared_from_this();
    asio::async_write(socket_, asio::buffer(out_), [this, self, then_close](boost::system::error_code ec, std::size_t) {
      if (ec || then_close) {
        // Half-close so the peer reads the reply before seeing EOF.
        boost::system::error_code ignored;
        socket_.shutdown(stream_protocol::socket::shutdown_send, ignored);
        return finish();
      }
      next_frame();
    });
  }

  void finish() {
    if (finished_) return;
    finished_ = true;
    close();
    server_.session_closed(id_, caller_.uid);
  }

  BrokerServer& server_;
  stream_protocol::socket socket_;
  asio::steady_timer deadline_;
  asio::steady_timer pace_;  // a paced read waits here
  ConnectionId id_;
  Caller caller_;
  bool closing_ = false;  // close() was called: no longer counts as an idle connection to close
  std::vector<std::uint8_t> in_ = std::vector<std::uint8_t>(kSmallBuffer);
  std::size_t in_used_ = 0;
  Deadline armed_ = Deadline::none;
  std::string out_;
  bool finished_ = false;
};

BrokerServer::BrokerServer(asio::io_context& io, LeaseCore& core, DurableLeases* durable, int listening_fd,
                           ServerLimits limits)
    : io_(io), core_(core), durable_(durable), acceptor_(io, stream_protocol(), listening_fd), accept_pause_(io),
      limits_(limits), read_pacer_(limits.reads_per_second, limits.read_burst) {}

void BrokerServer::answer(const std::shared_ptr<ClientSession>& session, const Caller& caller, ConnectionId id,
                          const v1::Request& request) {
  v1::Response response = core_.handle(caller, id, request);
  if (!durable_ || !durable_->has_uncommitted()) return session->send(response);
  // Posted: it runs after every handler that is ready in this turn, so the
  // requests answered in one turn share one journal write.
  if (awaiting_commit_.empty()) asio::post(io_, [this] { commit_and_reply(); });
  awaiting_commit_.emplace_back(session, std::move(response));
}

std::chrono::milliseconds BrokerServer::pace_read(uid_t uid) {
  if (uid == 0) return std::chrono::milliseconds(0);  // root: the admin's own tools
  return read_pacer_.charge(uid, std::chrono::steady_clock::now());
}

bool BrokerServer::admit_log(uid_t uid, const char* reason, std::string& suffix) {
  const auto d = refusal_log_.admit(uid, reason, std::chrono::steady_clock::now());
  suffix = refusal_log_.suffix(d);
  return d.log;
}

void BrokerServer::start() { accept_next(); }

void BrokerServer::stop() {
  boost::system::error_code ignored;
  acceptor_.close(ignored);
  accept_pause_.cancel();
  for (auto& [id, weak] : sessions_)
    if (auto s = weak.lock()) s->close();
}

void BrokerServer::accept_next() {
  acceptor_.async_accept([this](boost::system::error_code ec, stream_protocol::socket socket) {
    if (ec == asio::error::operation_aborted) return;
    if (ec) {
      // EMFILE and friends: retrying at once would spin; pause, keep serving
      // the connections we have, and try again.
      std::string suffix;
      if (admit_log(0, "accept", suffix)) spdlog::error("accept failed: {}; retrying in 100 ms{}", ec.message(), suffix);
      accept_pause_.expires_after(std::chrono::milliseconds(100));
      accept_pause_.async_wait([this](boost::system::error_code wait_ec) {
        if (!wait_ec) accept_next();
      });
      return;
    }
    Caller caller;
    if (!read_peer_identity(socket.native_handle(), caller)) {
      spdlog::error("cannot read peer credentials: {}", std::strerror(errno));
      return accept_next();
    }
    const ConnectionId id = next_id_++;
    auto session = std::make_shared<ClientSession>(*this, std::move(socket), id, caller);
    sessions_.emplace(id, session);
    core_.set_connection_count(sessions_.size());  // told when it changes, not per request
    ConnectionCounts counts;
    counts.total = sessions_.size() - 1;  // before this one
    counts.root = connections_per_uid_.count(0) ? connections_per_uid_[0] : 0;
    counts.of_caller = connections_per_uid_.count(caller.uid) ? connections_per_uid_[caller.uid] : 0;
    counts.users_holding = connections_per_uid_.size() - (counts.root > 0) + (counts.of_caller == 0);
    counts.max_per_user = limits_.max_connections_per_user;
    ++connections_per_uid_[caller.uid];
    auto& counters = core_.counters();
    Admission admission = admit_connection(caller.uid, counts);
    if (admission == Admission::admit_evicting_idle && !close_idle_connection_of_biggest_holder(caller.uid))
      admission = Admission::refuse_full;
    if (admission == Admission::refuse_full) {
      ++counters.connections_refused;
      std::string suffix;
      if (admit_log(caller.uid, "broker-full", suffix))
        core_.log_about_caller(LogLevel::warn, caller,
                               fmt::format("the broker holds {} connections ({} reserved for root), refusing{}",
                                           counts.total, kRootReserve, suffix));
      session->refuse(v1::EXHAUSTED, "the broker has too many open connections; try again later");
    } else if (admission == Admission::refuse_per_user) {
      ++counters.connections_refused;
      std::string suffix;
      if (admit_log(caller.uid, "connections", suffix))
        core_.log_about_caller(LogLevel::warn, caller,
                               fmt::format("more than max-connections-per-user={} connections, refusing{}",
                                           limits_.max_connections_per_user, suffix));
      session->refuse(v1::EXHAUSTED, "you have too many connections open to the broker (max-connections-per-user=" +
                                         std::to_string(limits_.max_connections_per_user) + ")");
    } else {
      ++counters.connections_accepted;
      session->start();
    }
    accept_next();
  });
}

bool BrokerServer::close_idle_connection_of_biggest_holder(uid_t newcomer) {
  // Rare (only when the users' pool is full), so a walk over the sessions
  // is fine.
  uid_t biggest = 0;
  std::uint32_t most = 0;
  for (const auto& [uid, count] : connections_per_uid_)
    if (uid != 0 && uid != newcomer && count > most) biggest = uid, most = count;
  if (most == 0) return false;
  for (const auto& [id, weak] : sessions_) {
    auto s = weak.lock();
    if (!s || s->uid() != biggest || core_.connection_holds_leases(id) || s->closing()) continue;
    std::string suffix;
    if (admit_log(biggest, "evicted", suffix))
      core_.log_about_caller(LogLevel::warn, Caller{biggest, 0, 0, {}},
                             fmt::format("holds {} of the broker's connections, more than a fair share ({}): closing "
                                         "an idle one for uid={}{}",
                                         most, fair_share(connections_per_uid_.size()), newcomer, suffix));
    s->close();
    return true;
  }
  return false;
}

void BrokerServer::commit_and_reply() {
  auto waiting = std::move(awaiting_commit_);
  awaiting_commit_.clear();
  std::vector<v1::Response*> replies;
  replies.reserve(waiting.size());
  for (auto& [session, response] : waiting) replies.push_back(&response);
  // Durable writes, the core decides what that means for the replies.
  core_.turn_committed(durable_->commit_turn(), replies);
  for (auto& [session, response] : waiting) session->send(response);
}

void BrokerServer::session_closed(ConnectionId id, uid_t uid) {
  sessions_.erase(id);
  if (auto it = connections_per_uid_.find(uid); it != connections_per_uid_.end() && --it->second == 0)
    connections_per_uid_.erase(it);
  core_.connection_closed(id);
  core_.set_connection_count(sessions_.size());
}

}  // namespace xpra_broker
