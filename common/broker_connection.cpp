#include "broker_connection.h"

#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>

#include "framing.h"

namespace xpra_broker {

using Clock = std::chrono::steady_clock;

std::string resolve_socket_path(const std::string& explicit_path) {
  if (!explicit_path.empty()) return explicit_path;
  if (const char* env = std::getenv("XPRA_BROKER_SOCKET"); env && *env) return env;
  return kDefaultSocketPath;
}

namespace {

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
  if (socket_path.size() >= sizeof(addr.sun_path)) {
    conn.error_ = Error::connect_failed;
    conn.errno_ = ENAMETOOLONG;
    return conn;
  }
  UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
  if (!fd) {
    conn.error_ = Error::connect_failed;
    conn.errno_ = errno;
    return conn;
  }
  addr.sun_family = AF_UNIX;
  std::memcpy(addr.sun_path, socket_path.c_str(), socket_path.size() + 1);
  if (::connect(fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
    if (errno != EINPROGRESS && errno != EAGAIN) {
      conn.error_ = Error::connect_failed;
      conn.errno_ = errno;
      return conn;
    }
    // A full listen backlog: wait for the broker to accept within the timeout.
    if (!wait_ready(fd.get(), POLLOUT, Clock::now() + timeout)) {
      conn.error_ = Error::timeout;
      conn.errno_ = ETIMEDOUT;
      return conn;
    }
    int so_error = 0;
    socklen_t len = sizeof(so_error);
    ::getsockopt(fd.get(), SOL_SOCKET, SO_ERROR, &so_error, &len);
    if (so_error != 0) {
      conn.error_ = Error::connect_failed;
      conn.errno_ = so_error;
      return conn;
    }
  }
  conn.fd_ = std::move(fd);
  return conn;
}

BrokerConnection::Error BrokerConnection::write_all(const char* data, std::size_t size) {
  const auto deadline = Clock::now() + timeout_;
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

BrokerConnection::Error BrokerConnection::read_exact(char* data, std::size_t size) {
  const auto deadline = Clock::now() + timeout_;
  while (size > 0) {
    const ssize_t n = ::recv(fd_.get(), data, size, 0);
    if (n > 0) {
      data += n;
      size -= static_cast<std::size_t>(n);
      continue;
    }
    if (n == 0) return error_ = Error::closed;
    if (errno == EINTR) continue;
    if (errno == EAGAIN) {
      if (!wait_ready(fd_.get(), POLLIN, deadline)) return error_ = Error::timeout;
      continue;
    }
    errno_ = errno;
    return error_ = Error::closed;
  }
  return Error::none;
}

BrokerConnection::Error BrokerConnection::send_raw(const std::string& bytes) {
  if (!fd_) return error_;
  return write_all(bytes.data(), bytes.size());
}

BrokerConnection::Error BrokerConnection::receive(v1::Response& response) {
  if (!fd_) return error_;
  std::uint8_t header[wire::kHeaderSize];
  if (auto e = read_exact(reinterpret_cast<char*>(header), sizeof(header)); e != Error::none) return e;
  const auto decoded = wire::decode_header(std::span<const std::uint8_t, wire::kHeaderSize>(header));
  if (decoded.error != wire::HeaderError::none) return error_ = Error::protocol;
  std::string body(decoded.body_size, '\0');
  if (auto e = read_exact(body.data(), body.size()); e != Error::none) return e;
  if (!response.ParseFromString(body)) return error_ = Error::protocol;
  return Error::none;
}

BrokerConnection::Error BrokerConnection::call(const v1::Request& request, v1::Response& response) {
  if (!fd_) return error_;
  const auto frame = wire::encode_frame(request);
  if (!frame) return error_ = Error::too_large;
  if (auto e = write_all(frame->data(), frame->size()); e != Error::none) return e;
  return receive(response);
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
