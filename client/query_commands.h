// The short request/response commands: list, release, status.
#pragma once

#include "broker_call.h"

namespace xpra_broker::client {

int run_list(const GlobalOptions& options, bool all, bool json);
int run_release(const GlobalOptions& options, const std::string& target);
int run_status(const GlobalOptions& options, bool json);

}  // namespace xpra_broker::client
