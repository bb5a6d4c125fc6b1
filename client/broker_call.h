// One request to the broker with the client's error reporting: every failure
// is printed on stderr with what to do next, and mapped to an exit code.
#pragma once

#include <chrono>
#include <functional>
#include <string>

#include "broker_connection.h"

namespace xpra_broker::client {

struct GlobalOptions {
  std::string socket;  // resolved (flag, $XPRA_BROKER_SOCKET, default)
  std::chrono::milliseconds timeout{10000};
};

// The client's one error style, for every failure of every command: what
// happened, then what to do next.
//   xpra-request-display: MESSAGE
//   hint: HINT
void report_error(const std::string& message, const std::string& hint);

// Connects; on failure prints why and returns an unconnected connection.
BrokerConnection connect_or_report(const GlobalOptions& options);

// Sends `request` on `conn`. Returns 0 when the broker said OK; otherwise
// prints the broker's message (or the transport error) and returns the exit
// code to use.
int call_or_report(BrokerConnection& conn, const GlobalOptions& options, const v1::Request& request,
                   v1::Response& response);

// The broker reaps a released lease asynchronously (TERM, grace, KILL, then
// socket clean-up). Waits until `lease_id` is no longer listed (`all`: in
// everyone's leases, for an admin who released another user's lease), so
// that when a command returns nothing of the session runs any more and the
// display is free. `each_poll` runs between polls.
void wait_until_lease_gone(BrokerConnection& conn, const std::string& lease_id, bool all,
                           std::chrono::milliseconds limit, const std::function<void()>& each_poll = {});

}  // namespace xpra_broker::client
