#include "broker_call.h"

#include <unistd.h>

#include <cstring>
#include <iostream>

#include "exit_codes.h"
#include "untrusted_text.h"

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
  std::cerr << "xpra-request-display: " << v1::Status_Name(response.status()) << ": " << escape_untrusted(response.message(), 1024) << "\n";
  if (response.retry_after_ms() > 0)
    std::cerr << "hint: try again in " << (response.retry_after_ms() + 999) / 1000 << " s\n";
  return exit_code_for(response.status());
}

void wait_until_lease_gone(BrokerConnection& conn, const std::string& lease_id, bool all,
                           std::chrono::milliseconds limit, const std::function<void()>& each_poll) {
  using Clock = std::chrono::steady_clock;
  const auto deadline = Clock::now() + limit;
  while (Clock::now() < deadline) {
    v1::Request request;
    request.mutable_list()->set_all(all);
    v1::Response response;
    if (conn.call(request, response) != BrokerConnection::Error::none || response.status() != v1::OK) return;
    bool present = false;
    for (const auto& lease : response.list().leases()) present = present || lease.id() == lease_id;
    if (each_poll) each_poll();
    if (!present) return;
    ::usleep(20000);
  }
  std::cerr << "xpra-request-display: the broker is still cleaning up lease " << lease_id
            << "; not waiting any longer\n";
}

}  // namespace xpra_broker::client
