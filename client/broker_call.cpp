#include "broker_call.h"

#include <cstring>
#include <iostream>

#include "exit_codes.h"

namespace xpra_broker::client {

BrokerConnection connect_or_report(const GlobalOptions& options) {
  auto conn = BrokerConnection::connect(options.socket, options.timeout);
  if (!conn.connected()) {
    std::cerr << "xpra-request-display: cannot reach the broker at " << options.socket << ": "
              << std::strerror(conn.errno_value()) << "\n"
              << "hint: is xpra-brokerd running ('systemctl status xpra-brokerd')? Use --socket PATH or "
                 "XPRA_BROKER_SOCKET to point at another broker.\n";
  }
  return conn;
}

int call_or_report(BrokerConnection& conn, const GlobalOptions& options, const v1::Request& request,
                   v1::Response& response) {
  const auto err = conn.call(request, response);
  if (err != BrokerConnection::Error::none) {
    std::cerr << "xpra-request-display: " << describe(err) << " (" << options.socket << ")\n"
              << "hint: the broker may be overloaded or restarting; try again, and check its log "
                 "('journalctl -u xpra-brokerd').\n";
    return kExitUnavailable;
  }
  if (response.status() == v1::OK) return kExitOk;
  std::cerr << "xpra-request-display: " << v1::Status_Name(response.status()) << ": " << response.message() << "\n";
  if (response.retry_after_ms() > 0)
    std::cerr << "hint: try again in " << (response.retry_after_ms() + 999) / 1000 << " s\n";
  return exit_code_for(response.status());
}

}  // namespace xpra_broker::client
