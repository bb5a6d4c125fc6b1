#include "xpra_command.h"

#include <algorithm>
#include <cctype>

#include "exec_command.h"

namespace xpra_broker::client {

namespace {

bool starts_with(const std::string& s, const char* prefix) { return s.rfind(prefix, 0) == 0; }

// Xpra's FALSE_OPTIONS (xpra/scripts/config.py); anything else, "auto"
// included, may daemonize.
bool is_false_word(std::string value) {
  std::transform(value.begin(), value.end(), value.begin(), [](unsigned char c) { return std::tolower(c); });
  return value == "no" || value == "false" || value == "0" || value == "off";
}

// ":7", ":7.0": a display Xpra would take (normalize_local_display_name).
bool is_literal_display(const std::string& arg) {
  return arg.size() > 1 && arg[0] == ':' && std::isdigit(static_cast<unsigned char>(arg[1])) &&
         std::all_of(arg.begin() + 1, arg.end(), [](char c) { return std::isdigit(static_cast<unsigned char>(c)) || c == '.'; });
}

bool is_display_placeholder(const std::string& arg) { return arg == ":{display}" || arg == "{display}"; }

std::string base_name(const std::string& path) {
  const auto slash = path.rfind('/');
  return slash == std::string::npos ? path : path.substr(slash + 1);
}

XpraCommandCheck refuse(std::string error, std::string hint) {
  XpraCommandCheck check;
  check.error = std::move(error);
  check.hint = std::move(hint);
  return check;
}

}  // namespace

XpraCommandCheck check_xpra_command(const std::vector<std::string>& command) {
  if (command.empty() || base_name(command[0]) != "xpra")
    return refuse("--xpra runs xpra itself, but the command starts with '" +
                      (command.empty() ? std::string() : command[0]) + "'",
                  "exec --xpra -- xpra start [XPRA ARGS...] (or a path ending in /xpra)");
  XpraCommandCheck check;
  auto& shape = check.shape;
  // Xpra's mode is its first word that is not an option.
  for (std::size_t i = 1; i < command.size(); ++i)
    if (command[i].empty() || command[i][0] != '-') {
      shape.subcommand = i;
      break;
    }
  if (shape.subcommand == 0 || (command[shape.subcommand] != "start" && command[shape.subcommand] != "start-desktop"))
    return refuse("--xpra supports 'xpra start' and 'xpra start-desktop'" +
                      (shape.subcommand ? ", not 'xpra " + command[shape.subcommand] + "'" : std::string()),
                  "exec --xpra -- xpra start [XPRA ARGS...]; without --xpra any command runs as given");
  for (std::size_t i = 1; i < command.size(); ++i) {
    const std::string& arg = command[i];
    if (arg == "--daemon" || (starts_with(arg, "--daemon=") && !is_false_word(arg.substr(9))))
      return refuse("'" + arg + "': a daemonizing xpra leaves the process the lease follows, so its session would "
                    "outlive the lease",
                    "drop it: --xpra adds --daemon=no and holds the lease while xpra runs");
    if (arg == "--no-daemon" || starts_with(arg, "--daemon=")) shape.has_no_daemon = true;
    if (arg == "--socket-dir" || starts_with(arg, "--socket-dir=")) shape.has_socket_dir = true;
    if (i <= shape.subcommand) continue;
    if (is_display_placeholder(arg)) {
      shape.has_display = true;
    } else if (is_literal_display(arg)) {
      return refuse("'" + arg + "': with --xpra the broker picks the display",
                    "drop '" + arg + "' (the leased display is added), or write ':{display}'; an option's value "
                    "that starts with ':' goes after '=' (--bind-tcp=:14500)");
    }
  }
  return check;
}

std::vector<std::string> complete_xpra_command(const std::vector<std::string>& command, const XpraCommandShape& shape,
                                               std::uint32_t display, const std::string& runtime_dir) {
  std::vector<std::string> out;
  out.reserve(command.size() + 3);
  for (std::size_t i = 0; i < command.size(); ++i) {
    out.push_back(substitute_placeholders(command[i], display, runtime_dir));
    if (i != shape.subcommand) continue;
    if (!shape.has_display) out.push_back(":" + std::to_string(display));
    if (!shape.has_socket_dir) out.push_back("--socket-dir=" + runtime_dir);
    if (!shape.has_no_daemon) out.push_back("--daemon=no");
  }
  return out;
}

}  // namespace xpra_broker::client
