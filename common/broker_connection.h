// Blocking client side of the broker protocol, shared by xpra-request-display,
// the tests and the benchmark (the PAM module has its C counterpart,
// pam/broker_exchange.c, with the same bounds and error wording). Every call
// is bounded by a timeout so that a broker that accepts but never answers
// cannot hang a login.
#pragma once

#include <chrono>
#include <string>

#include "unique_fd.h"
#include "protocol.h"

namespace xpra_broker {

inline constexpr const char* kDefaultSocketPath = "/run/xpra/broker.sock";

// Socket path precedence: explicit argument, $XPRA_BROKER_SOCKET, default.
std::string resolve_socket_path(const std::string& explicit_path);

class BrokerConnection {
 public:
  enum class Error { none, connect_failed, timeout, closed, protocol, too_large };

  // Connects to the broker; on failure error() says why and errno_value() holds
  // the errno of the failing call.
  static BrokerConnection connect(const std::string& socket_path, std::chrono::milliseconds timeout);

  // Sends one request and waits for its response.
  Error call(const v1::Request& request, v1::Response& response);

  Error error() const { return error_; }
  int errno_value() const { return errno_; }
  int fd() const { return fd_.get(); }
  bool connected() const { return static_cast<bool>(fd_); }
  void set_timeout(std::chrono::milliseconds timeout) { timeout_ = timeout; }

  // Writes raw bytes; the tests use this to send malformed frames.
  Error send_raw(const std::string& bytes);
  Error receive(v1::Response& response);

 private:
  using Clock = std::chrono::steady_clock;
  Error write_all(const char* data, std::size_t size, Clock::time_point deadline);
  Error receive_until(v1::Response& response, Clock::time_point deadline);

  UniqueFd fd_;
  std::string in_;  // received bytes not yet returned as a reply
  Error error_ = Error::none;
  int errno_ = 0;
  std::chrono::milliseconds timeout_{5000};
};

const char* describe(BrokerConnection::Error error);

}  // namespace xpra_broker
