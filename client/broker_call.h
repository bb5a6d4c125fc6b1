// One request to the broker with the client's error reporting: every failure
// is printed on stderr with what to do next, and mapped to an exit code.
#pragma once

#include <chrono>
#include <string>

#include "broker_connection.h"

namespace xpra_broker::client {

struct GlobalOptions {
  std::string socket;  // resolved (flag, $XPRA_BROKER_SOCKET, default)
  std::chrono::milliseconds timeout{10000};
};

// Connects; on failure prints why and returns an unconnected connection.
BrokerConnection connect_or_report(const GlobalOptions& options);

// Sends `request` on `conn`. Returns 0 when the broker said OK; otherwise
// prints the broker's message (or the transport error) and returns the exit
// code to use.
int call_or_report(BrokerConnection& conn, const GlobalOptions& options, const v1::Request& request,
                   v1::Response& response);

}  // namespace xpra_broker::client
