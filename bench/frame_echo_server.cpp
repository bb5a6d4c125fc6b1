#include "frame_echo_server.h"

#include <signal.h>
#include <sys/epoll.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <utility>  // Boost 1.74 asio/awaitable.hpp uses std::exchange without it
#include <array>
#include <boost/asio.hpp>
#include <cerrno>
#include <cstring>
#include <memory>
#include <stdexcept>
#include <unordered_map>
#include <vector>

#include "framing.h"

namespace xpra_broker::bench {

namespace asio = boost::asio;
using asio::local::stream_protocol;

const char* name_of(EchoLoop loop) {
  switch (loop) {
    case EchoLoop::epoll: return "echo-epoll";
    case EchoLoop::asio: return "echo-asio";
    case EchoLoop::asio_no_timer: return "echo-asio-no-timer";
  }
  return "echo";
}

std::optional<EchoLoop> parse_echo_loop(std::string_view name) {
  if (name == "epoll") return EchoLoop::epoll;
  if (name == "asio") return EchoLoop::asio;
  if (name == "asio-no-timer") return EchoLoop::asio_no_timer;
  return std::nullopt;
}

UniqueFd listen_unix(const std::string& path) {
  sockaddr_un addr{};
  if (path.size() >= sizeof(addr.sun_path)) throw std::runtime_error("socket path too long: " + path);
  UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
  if (!fd) throw std::runtime_error(std::string("socket: ") + std::strerror(errno));
  addr.sun_family = AF_UNIX;
  std::memcpy(addr.sun_path, path.c_str(), path.size() + 1);
  if (::bind(fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0)
    throw std::runtime_error("bind " + path + ": " + std::strerror(errno));
  if (::listen(fd.get(), SOMAXCONN) != 0) throw std::runtime_error("listen " + path + ": " + std::strerror(errno));
  return fd;
}

namespace {

// ---- raw epoll ------------------------------------------------------------

struct EpollConnection {
  UniqueFd fd;
  std::vector<char> in = std::vector<char>(wire::kHeaderSize + wire::kMaxFrameSize);
  std::size_t in_used = 0;
  std::string out;
  std::size_t out_sent = 0;
  bool want_out = false;
};

class EpollEchoLoop {
 public:
  EpollEchoLoop(int listener, const std::string& reply) : listener_(listener), reply_(reply) {}

  [[noreturn]] void run() {
    epoll_ = UniqueFd(::epoll_create1(EPOLL_CLOEXEC));
    epoll_event ev{};
    ev.events = EPOLLIN;
    ev.data.ptr = nullptr;  // the listener
    ::epoll_ctl(epoll_.get(), EPOLL_CTL_ADD, listener_, &ev);
    std::array<epoll_event, 64> events;
    for (;;) {
      const int n = ::epoll_wait(epoll_.get(), events.data(), static_cast<int>(events.size()), -1);
      for (int i = 0; i < n; ++i) {
        auto* conn = static_cast<EpollConnection*>(events[i].data.ptr);
        if (!conn) {
          accept_all();
          continue;
        }
        bool open = true;
        if (events[i].events & (EPOLLIN | EPOLLHUP | EPOLLERR)) open = on_readable(*conn);
        if (open && (events[i].events & EPOLLOUT)) open = flush(*conn);
        if (!open) connections_.erase(conn);
      }
    }
  }

 private:
  void accept_all() {
    for (;;) {
      const int fd = ::accept4(listener_, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
      if (fd < 0) return;
      auto conn = std::make_unique<EpollConnection>();
      conn->fd = UniqueFd(fd);
      epoll_event ev{};
      ev.events = EPOLLIN;
      ev.data.ptr = conn.get();
      ::epoll_ctl(epoll_.get(), EPOLL_CTL_ADD, fd, &ev);
      connections_.emplace(conn.get(), std::move(conn));
    }
  }

  // One recv, then answer every complete frame in the buffer.
  bool on_readable(EpollConnection& c) {
    const ssize_t n = ::recv(c.fd.get(), c.in.data() + c.in_used, c.in.size() - c.in_used, 0);
    if (n == 0) return false;
    if (n < 0) return errno == EAGAIN || errno == EINTR;
    c.in_used += static_cast<std::size_t>(n);
    std::size_t consumed = 0;
    while (c.in_used - consumed >= wire::kHeaderSize) {
      const auto header = wire::decode_header(std::span<const std::uint8_t, wire::kHeaderSize>(
          reinterpret_cast<const std::uint8_t*>(c.in.data() + consumed), wire::kHeaderSize));
      if (header.error != wire::HeaderError::none) return false;
      const std::size_t frame = wire::kHeaderSize + header.body_size;
      if (c.in_used - consumed < frame) break;
      consumed += frame;
      c.out += reply_;
    }
    if (consumed) {
      std::memmove(c.in.data(), c.in.data() + consumed, c.in_used - consumed);
      c.in_used -= consumed;
    }
    return flush(c);
  }

  bool flush(EpollConnection& c) {
    while (c.out_sent < c.out.size()) {
      const ssize_t n = ::send(c.fd.get(), c.out.data() + c.out_sent, c.out.size() - c.out_sent, MSG_NOSIGNAL);
      if (n > 0) {
        c.out_sent += static_cast<std::size_t>(n);
        continue;
      }
      if (n < 0 && errno == EINTR) continue;
      if (n < 0 && errno == EAGAIN) return watch_output(c, true);
      return false;
    }
    c.out.clear();
    c.out_sent = 0;
    return watch_output(c, false);
  }

  bool watch_output(EpollConnection& c, bool want) {
    if (c.want_out == want) return true;
    c.want_out = want;
    epoll_event ev{};
    ev.events = EPOLLIN | (want ? EPOLLOUT : 0u);
    ev.data.ptr = &c;
    return ::epoll_ctl(epoll_.get(), EPOLL_CTL_MOD, c.fd.get(), &ev) == 0;
  }

  int listener_;
  const std::string& reply_;
  UniqueFd epoll_;
  std::unordered_map<EpollConnection*, std::unique_ptr<EpollConnection>> connections_;
};

// ---- Boost.Asio, shaped like broker_server.cpp -----------------------------

class AsioEchoSession : public std::enable_shared_from_this<AsioEchoSession> {
 public:
  AsioEchoSession(stream_protocol::socket socket, const std::string& reply, bool use_timer)
      : socket_(std::move(socket)), deadline_(socket_.get_executor()), reply_(reply), use_timer_(use_timer) {}

  void read_header() {
    auto self = shared_from_this();
    asio::async_read(socket_, asio::buffer(header_), [this, self](boost::system::error_code ec, std::size_t) {
      if (ec) return;
      const auto decoded = wire::decode_header(std::span<const std::uint8_t, wire::kHeaderSize>(header_));
      if (decoded.error != wire::HeaderError::none) return;
      body_.resize(decoded.body_size);
      if (use_timer_) arm_deadline();
      read_body();
    });
  }

 private:
  void arm_deadline() {
    auto self = shared_from_this();
    deadline_.expires_after(std::chrono::seconds(10));
    deadline_.async_wait([this, self](boost::system::error_code ec) {
      if (!ec) socket_.close(ec);
    });
  }

  void read_body() {
    auto self = shared_from_this();
    asio::async_read(socket_, asio::buffer(body_), [this, self](boost::system::error_code ec, std::size_t) {
      if (use_timer_) deadline_.cancel();
      if (ec) return;
      out_ = reply_;
      asio::async_write(socket_, asio::buffer(out_), [this, self](boost::system::error_code wec, std::size_t) {
        if (!wec) read_header();
      });
    });
  }

  stream_protocol::socket socket_;
  asio::steady_timer deadline_;
  const std::string& reply_;
  bool use_timer_;
  std::array<std::uint8_t, wire::kHeaderSize> header_{};
  std::string body_;
  std::string out_;
};

[[noreturn]] void run_asio(int listener, const std::string& reply, bool use_timer) {
  asio::io_context io(1);
  stream_protocol::acceptor acceptor(io, stream_protocol(), listener);
  std::function<void()> accept_next = [&] {
    acceptor.async_accept([&](boost::system::error_code ec, stream_protocol::socket socket) {
      if (!ec) std::make_shared<AsioEchoSession>(std::move(socket), reply, use_timer)->read_header();
      accept_next();
    });
  };
  accept_next();
  io.run();
  ::_exit(0);
}

}  // namespace

pid_t fork_echo_server(EchoLoop loop, int listener, const std::string& reply_frame) {
  const pid_t parent = ::getpid();
  const pid_t pid = ::fork();
  if (pid < 0) throw std::runtime_error(std::string("fork: ") + std::strerror(errno));
  if (pid > 0) return pid;
  // The parent's SIGTERM handler must not outlive the fork: stop() relies on it.
  ::signal(SIGTERM, SIG_DFL);
  ::signal(SIGINT, SIG_DFL);
  ::prctl(PR_SET_PDEATHSIG, SIGKILL);
  if (::getppid() != parent) ::_exit(0);
  try {
    if (loop == EchoLoop::epoll) EpollEchoLoop(listener, reply_frame).run();
    run_asio(listener, reply_frame, loop == EchoLoop::asio);
  } catch (...) {
  }
  ::_exit(1);
}

}  // namespace xpra_broker::bench
