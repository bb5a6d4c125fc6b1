#include "broker_connection.h"

#include <fcntl.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>

#include "framing.h"

namespace xpra_broker {

std::string resolve_socket_path(const std::string& explicit_path) {
  if (!explicit_path.empty()) return explicit_path;
  if (const char* env = std::getenv("XPRA_BROKER_SOCKET"); env && *env) return env;
  return kDefaultSocketPath;
}

namespace {

using Clock = std::chrono::steady_clock;

// Waits until fd is ready for `events` or the deadline passes.
bool wait_ready(int fd, short events, Clock::time_point deadline) {
  for (;;) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
    if (left <= 0) return false;
    pollfd p{fd, events, 0};
    const int n = ::poll(&p, 1, static_cast<int>(left));
    if (n > 0) return true;
    if (n < 0 && errno != EINTR) return false;
  }
}

}  // namespace

BrokerConnection BrokerConnection::connect(const std::string& socket_path, std::chrono::milliseconds timeout) {
  BrokerConnection conn;
  conn.timeout_ = timeout;
  sockaddr_un addr{};
  auto failed = [&conn](Error e, int err) {
    conn.error_ = e;
    conn.errno_ = err;
    return std::move(conn);
  };
  if (socket_path.size() >= sizeof(addr.sun_path)) return failed(Error::connect_failed, ENAMETOOLONG);
  // A blocking connect bounded by SO_SNDTIMEO: on a Unix socket whose listen
  // backlog is full, a non-blocking connect fails at once with EAGAIN instead
  // of waiting, while a blocking one waits for room up to the timeout.
  UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!fd) return failed(Error::connect_failed, errno);
  const auto ms = std::max<std::int64_t>(1, timeout.count());
  timeval tv{static_cast<time_t>(ms / 1000), static_cast<suseconds_t>((ms % 1000) * 1000)};
  ::setsockopt(fd.get(), SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
  addr.sun_family = AF_UNIX;
  std::memcpy(addr.sun_path, socket_path.c_str(), socket_path.size() + 1);
  int rc;
  do {
    rc = ::connect(fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof(addr));
  } while (rc != 0 && errno == EINTR);
  if (rc != 0) {
    if (errno == EAGAIN || errno == EINPROGRESS) return failed(Error::timeout, ETIMEDOUT);
    return failed(Error::connect_failed, errno);
  }
  // From here on every call is bounded by poll() deadlines instead.
  ::fcntl(fd.get(), F_SETFL, ::fcntl(fd.get(), F_GETFL) | O_NONBLOCK);
  conn.fd_ = std::move(fd);
  return conn;
}

BrokerConnection::Error BrokerConnection::write_all(const char* data, std::size_t size, Clock::time_point deadline) {
  while (size > 0) {
    const ssize_t n = ::send(fd_.get(), data, size, MSG_NOSIGNAL);
    if (n > 0) {
      data += n;
      size -= static_cast<std::size_t>(n);
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && errno == EAGAIN) {
      if (!wait_ready(fd_.get(), POLLOUT, deadline)) return error_ = Error::timeout;
      continue;
    }
    errno_ = errno;
    return error_ = Error::closed;
  }
  return Error::none;
}

BrokerConnection::Error BrokerConnection::send_raw(const std::string& bytes) {
  if (!fd_) return error_;
  return write_all(bytes.data(), bytes.size(), Clock::now() + timeout_);
}

BrokerConnection::Error BrokerConnection::receive(v1::Response& response) {
  return receive_until(response, Clock::now() + timeout_);
}

BrokerConnection::Error BrokerConnection::receive_until(v1::Response& response, Clock::time_point deadline) {
  if (!fd_) return error_;
  for (;;) {
    if (in_.size() >= wire::kHeaderSize) {
      const auto decoded = wire::decode_header(
          std::span<const std::uint8_t, wire::kHeaderSize>(reinterpret_cast<const std::uint8_t*>(in_.data()),
                                                           wire::kHeaderSize));
      if (decoded.error != wire::HeaderError::none) return error_ = Error::protocol;
      const std::size_t frame_size = wire::kHeaderSize + decoded.body_size;
      if (in_.size() >= frame_size) {
        const bool parsed =
            response.ParseFromArray(in_.data() + wire::kHeaderSize, static_cast<int>(decoded.body_size));
        in_.erase(0, frame_size);
        return parsed ? Error::none : (error_ = Error::protocol);
      }
    }
    // A reply is never there the moment the request has gone out, so wait
    // first: poll + one recv that usually takes the whole frame.
    if (!wait_ready(fd_.get(), POLLIN, deadline)) return error_ = Error::timeout;
    char buf[4096];
    const ssize_t n = ::recv(fd_.get(), buf, sizeof(buf), 0);
    if (n > 0) {
      in_.append(buf, static_cast<std::size_t>(n));
      continue;
    }
    if (n == 0) return error_ = Error::closed;
    if (errno == EINTR || errno == EAGAIN) continue;
    errno_ = errno;
    return error_ = Error::closed;
  }
}

BrokerConnection::Error BrokerConnection::call(const v1::Request& request, v1::Response& response) {
  if (!fd_) return error_;
  const auto frame = wire::encode_frame(request);
  if (!frame) return error_ = Error::too_large;
  // One deadline for the whole exchange: a broker that answers slowly, or
  // half a reply, cannot stretch a call beyond the timeout.
  const auto deadline = Clock::now() + timeout_;
  if (auto e = write_all(frame->data(), frame->size(), deadline); e != Error::none) return e;
  return receive_until(response, deadline);
}

const char* describe(BrokerConnection::Error error) {
  switch (error) {
    case BrokerConnection::Error::none: return "ok";
    case BrokerConnection::Error::connect_failed: return "cannot connect to the broker";
    case BrokerConnection::Error::timeout: return "the broker did not answer in time";
    case BrokerConnection::Error::closed: return "the broker closed the connection";
    case BrokerConnection::Error::protocol: return "the broker sent a malformed reply";
    case BrokerConnection::Error::too_large: return "request too large";
  }
  return "unknown error";
}

}  // namespace xpra_broker
