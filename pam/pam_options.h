// Options of pam_xpra_broker.so, as written after the module's name in a
// /etc/pam.d service file. Parsing is pure (no I/O, no environment) so every
// accepted and refused spelling is unit-tested; the module logs the errors.
#pragma once

#include <chrono>
#include <span>
#include <string>
#include <vector>

namespace xpra_broker::pam {

// What to do when the broker cannot be asked (down, too slow, refusing).
enum class FailMode {
  open,    // log a warning and let the login through (default)
  closed,  // refuse the session
};

struct ModuleOptions {
  // Never taken from $XPRA_BROKER_SOCKET: under su or sudo the PAM stack runs
  // with the invoking user's environment, who could point it at a fake broker.
  std::string socket = "/run/xpra/broker.sock";
  // Bounds the connect and the reply: a login never waits longer than this
  // for the broker (see docs/pam.md for the exact bound).
  std::chrono::milliseconds timeout{2000};
  FailMode fail = FailMode::open;
  // At the user's last logout: end the user's leases (reap=yes) or keep them
  // (reap=no, the default, like logind's KillUserProcesses=no).
  bool reap_leases = false;
  bool debug = false;
};

inline constexpr std::chrono::milliseconds kMinTimeout{1};
inline constexpr std::chrono::milliseconds kMaxTimeout{60000};

struct ParsedOptions {
  ModuleOptions options;
  // One message per bad argument, naming it and what is accepted. Non-empty
  // means the service file is wrong and the module must not act on it.
  std::vector<std::string> errors;

  bool ok() const { return errors.empty(); }
};

// Parses the module arguments (argc/argv of pam_sm_*). A later occurrence of
// an option overrides an earlier one, as with other PAM modules.
ParsedOptions parse_module_options(std::span<const char* const> args);

const char* to_string(FailMode mode);

}  // namespace xpra_broker::pam
