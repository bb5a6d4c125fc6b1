#include "session_command.h"

#include <unistd.h>

#include <cstdlib>

#include "untrusted_text.h"
#include "xpra_command.h"

namespace xpra_broker::client {

std::string substitute_placeholders(const std::string& arg, std::uint32_t display, const std::string& runtime_dir) {
  std::string out;
  out.reserve(arg.size());
  for (std::size_t i = 0; i < arg.size();) {
    if (arg.compare(i, 9, "{display}") == 0) {
      out += std::to_string(display);
      i += 9;
    } else if (arg.compare(i, 13, "{runtime_dir}") == 0) {
      out += runtime_dir;
      i += 13;
    } else {
      out += arg[i++];
    }
  }
  return out;
}

std::optional<std::string> acquire_purpose(const std::string& requested, const std::string& program) {
  if (!is_printable_text(requested)) return std::nullopt;
  std::string purpose = requested;
  if (purpose.empty()) {
    purpose = program;
    if (auto slash = purpose.rfind('/'); slash != std::string::npos) purpose = purpose.substr(slash + 1);
    purpose = escape_untrusted(purpose, 100);
  }
  if (purpose.size() > 128) {
    std::size_t cut = 128;
    while (cut > 0 && (static_cast<unsigned char>(purpose[cut]) & 0xC0) == 0x80) --cut;
    purpose.resize(cut);
  }
  return purpose;
}

std::vector<EnvSetting> lease_environment(const v1::Lease& lease, bool xpra, int xpra_major) {
  std::vector<EnvSetting> env{{"DISPLAY", ":" + std::to_string(lease.display())},
                              {"XPRA_BROKER_DISPLAY", std::to_string(lease.display())},
                              {"XPRA_BROKER_RUNTIME_DIR", lease.runtime_dir()},
                              {"XPRA_BROKER_LEASE", lease.id()}};
  // Unless the user chose: Xpra 6's shared @xpra/N is the one socket
  // --socket-dir and --sessions-dir cannot move into the lease's dir.
  if (xpra) env.push_back({kXpraNoAbstractSocketEnv, "0", false});
  // A dead socket of the user's on N is removed at once, not after 6 s.
  if (xpra) env.push_back({kXpraWaitProbeTimeoutEnv, "0", false});
  // Xpra 5+ without XDG_RUNTIME_DIR and /run/user/UID sets it to /tmp
  // (xpra/scripts/main.py) and keeps per-user state in /tmp/xpra, a path
  // another user can take first. The lease's runtime dir is the user's
  // own; a real runtime dir (a user manager's) is left as it is.
  if (xpra && xpra_major >= 5 && !std::getenv("XDG_RUNTIME_DIR") &&
      ::access(("/run/user/" + std::to_string(::getuid())).c_str(), F_OK) != 0)
    env.push_back({"XDG_RUNTIME_DIR", lease.runtime_dir()});
  return env;
}

SessionCommand session_command(const std::vector<std::string>& command, bool xpra, const v1::Lease& lease) {
  if (xpra) {
    const int xpra_major = xpra_version(command.front());
    return {complete_xpra_command(command, check_xpra_command(command).shape, lease.display(), lease.runtime_dir(),
                                  xpra_major),
            lease_environment(lease, true, xpra_major)};
  }
  SessionCommand out;
  for (const auto& a : command) out.args.push_back(substitute_placeholders(a, lease.display(), lease.runtime_dir()));
  out.env = lease_environment(lease, false, 0);
  return out;
}

}  // namespace xpra_broker::client
