// `xpra-request-display exec`: take a lease, run a command on it, hold the
// lease for the command's lifetime, and leave nothing of it running.
#pragma once

#include <string>
#include <vector>

#include "broker_call.h"

namespace xpra_broker::client {

struct ExecOptions {
  std::vector<std::string> command;
  std::string purpose;
  // How long what is left of the command's process group gets between
  // SIGTERM and SIGKILL.
  std::chrono::milliseconds grace{5000};
  // --xvfb: start an X server on the display before CMD.
  bool start_x_server = false;
  std::string x_server_command;  // empty: kDefaultXServerCommand
  // --xpra: CMD is `xpra start|start-desktop ...`, completed with the
  // display, --socket-dir and --daemon=no (xpra_command.h).
  bool xpra = false;
  // Starts that failed with a display conflict are retried on another
  // display, at most this many attempts in all.
  int max_attempts = 3;
  // --end-with-parent: when the process that started this client dies (a
  // supervisor killed with SIGKILL), end CMD and release the lease as on
  // SIGTERM, instead of holding the display for nobody.
  bool end_with_parent = false;
};

int run_exec(const GlobalOptions& options, const ExecOptions& exec);

}  // namespace xpra_broker::client
