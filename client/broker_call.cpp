#include "broker_call.h"

#include <unistd.h>

#include <cstring>
#include <iostream>

#include "exit_codes.h"
#include "untrusted_text.h"

namespace xpra_broker::client {

void report_error(const std::string& message, const std::string& hint) {
  std::cerr << "xpra-request-display: " << message << "\n";
  if (!hint.empty()) std::cerr << "hint: " << hint << "\n";
}

namespace {

// What to do next when the broker said no (a refusal for now has its own
// hint: when to retry).
const char* hint_for(v1::Status status) {
  switch (status) {
    case v1::DENIED: return "ask the administrator (allowed-groups, admin-groups in /etc/xpra/broker.conf)";
    case v1::NOT_FOUND: return "'xpra-request-display list' shows your leases";
    case v1::EXHAUSTED:
    case v1::RATE_LIMITED:
    case v1::UNAVAILABLE: return "try again later; 'xpra-request-display status' shows the broker's state";
    case v1::INVALID: return "this client and the broker may be of different versions ('xpra-request-display --version')";
    default: return "the broker's log says why ('journalctl -u xpra-brokerd')";
  }
}

}  // namespace

BrokerConnection connect_or_report(const GlobalOptions& options) {
  auto conn = BrokerConnection::connect(options.socket, options.timeout);
  if (!conn.connected())
    report_error("cannot reach the broker at " + options.socket + ": " + std::strerror(conn.errno_value()),
                 "is xpra-brokerd running ('systemctl status xpra-brokerd')? Use --socket PATH or "
                 "XPRA_BROKER_SOCKET to point at another broker.");
  return conn;
}

int call_or_report(BrokerConnection& conn, const GlobalOptions& options, const v1::Request& request,
                   v1::Response& response) {
  const auto err = conn.call(request, response);
  if (err != BrokerConnection::Error::none) {
    report_error(std::string(describe(err)) + " (" + options.socket + ")",
                 "the broker may be overloaded or restarting; try again, and check its log "
                 "('journalctl -u xpra-brokerd').");
    return kExitUnavailable;
  }
  if (response.status() == v1::OK) return kExitOk;
  report_error(v1::Status_Name(response.status()) + ": " + escape_untrusted(response.message(), 1024),
               response.retry_after_ms() > 0
                   ? "try again in " + std::to_string((response.retry_after_ms() + 999) / 1000) + " s"
                   : std::string(hint_for(response.status())));
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
  report_error("the broker is still cleaning up lease " + lease_id + "; not waiting any longer",
               "'xpra-request-display list' shows it until its processes are gone");
}

}  // namespace xpra_broker::client
