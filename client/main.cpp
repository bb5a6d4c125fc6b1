// xpra-request-display: what users and tools run to get a display from
// xpra-brokerd. Argument parsing only; each command lives in its own file.
#include <charconv>
#include <cstring>
#include <iostream>

#include "exec_command.h"
#include "exit_codes.h"
#include "query_commands.h"
#include "xpra_command.h"
#include "version.h"

using namespace xpra_broker;
using namespace xpra_broker::client;

namespace {

const char* kUsage =
    "Usage: xpra-request-display [--socket PATH] [--timeout SECONDS] COMMAND ...\n"
    "\n"
    "Get an X display number and a private socket directory from xpra-brokerd.\n"
    "\n"
    "Commands:\n"
    "  exec [--xvfb] [--xvfb-command CMDLINE] [--purpose TEXT] [--grace SECONDS]\n"
    "       [--attempts N] [--] CMD [ARG...]\n"
    "  exec --xpra [OPTIONS] -- xpra start|start-desktop [XPRA ARGS...]\n"
    "        Lease a display, run CMD on it and hold the lease while CMD runs.\n"
    "        In CMD's arguments {display} becomes the number (e.g. 100) and\n"
    "        {runtime_dir} your directory. CMD gets DISPLAY=:N, XPRA_BROKER_DISPLAY,\n"
    "        XPRA_BROKER_RUNTIME_DIR and XPRA_BROKER_LEASE, runs in its own process\n"
    "        group, and receives SIGTERM, SIGINT and SIGHUP sent to this program.\n"
    "        When CMD ends, what is left of its process group gets SIGTERM, then\n"
    "        SIGKILL after the grace period (default 5 s), and the lease is released.\n"
    "        Exits with CMD's status (128+N if it died of signal N).\n"
    "        --xvfb starts an X server on the display first (CMDLINE, default\n"
    "        'Xvfb -nolisten tcp -noreset', with ':N -displayfd FD' appended) and\n"
    "        waits for it to be ready (XPRA_DISPLAY_FD_TIMEOUT seconds, default 20);\n"
    "        one that is not ready in time is killed. A start that fails because\n"
    "        the display was taken after all is retried on another display\n"
    "        (--attempts, default 3).\n"
    "        --xpra: CMD is 'xpra start' or 'xpra start-desktop' (the first word\n"
    "        'xpra' or a path ending in /xpra), completed by this program: ':N'\n"
    "        right after the subcommand unless CMD names ':{display}', then\n"
    "        '--socket-dir=DIR' unless CMD has --socket-dir, and '--daemon=no'\n"
    "        unless CMD has --daemon=no or --no-daemon. --daemon / --daemon=yes\n"
    "        are refused (a daemonizing xpra escapes the lease). No placeholder is\n"
    "        needed. Xpra's 'An xpra server is already running at ...' counts as\n"
    "        a display conflict: retried on another display.\n"
    "        Examples: xpra-request-display exec --xpra -- xpra start --html=on\n"
    "                  xpra-request-display exec -- xpra start :{display} --daemon=no \\\n"
    "                  --socket-dir={runtime_dir}\n"
    "  list [--all] [--json]     your leases (root and admin-groups: --all for everyone's)\n"
    "  release LEASE_ID|:N       end one of your leases\n"
    "  status [--json]           the broker's state: range, free displays, skipped displays\n"
    "\n"
    "Options:\n"
    "  --socket PATH     broker socket (default $XPRA_BROKER_SOCKET, else /run/xpra/broker.sock)\n"
    "  --timeout SECONDS how long to wait for the broker (default 10)\n"
    "  -h, --help        show this help\n"
    "  -V, --version     show the version\n"
    "\n"
    "Exit codes: 0 success (exec: CMD's status), 1 no such lease, 64 bad usage,\n"
    "65 request rejected as malformed, 69 broker unreachable, 70 broker error,\n"
    "71 cannot start CMD (fork/pipe), 73 the X server did not start (--xvfb),\n"
    "75 refused for now (quota, no free display,\n"
    "rate limit; retry later), 77 permission denied, 126 CMD not executable,\n"
    "127 CMD not found.\n";

int usage_error(const std::string& message, const std::string& hint = "see 'xpra-request-display --help'") {
  std::cerr << "xpra-request-display: " << message << "\n"
            << "hint: " << hint << "\n";
  return kExitUsage;
}

bool parse_seconds(const std::string& text, double& out) {
  try {
    std::size_t used = 0;
    out = std::stod(text, &used);
    return used == text.size() && out >= 0 && out < 1e6;
  } catch (...) {
    return false;
  }
}

}  // namespace

int main(int argc, char** argv) {
  GlobalOptions options;
  std::string socket_flag;
  int i = 1;
  for (; i < argc; ++i) {
    const std::string arg = argv[i];
    if (arg == "-h" || arg == "--help") return std::cout << kUsage, kExitOk;
    if (arg == "-V" || arg == "--version") return std::cout << "xpra-request-display " XPRA_BROKER_VERSION "\n", 0;
    if (arg == "--socket" || arg == "--timeout") {
      if (i + 1 >= argc) return usage_error(arg + " needs a value");
      const std::string value = argv[++i];
      if (arg == "--socket") {
        socket_flag = value;
      } else {
        double s = 0;
        if (!parse_seconds(value, s)) return usage_error("--timeout takes a number of seconds");
        options.timeout = std::chrono::milliseconds(static_cast<long>(s * 1000));
      }
      continue;
    }
    if (arg.rfind("--socket=", 0) == 0) {
      socket_flag = arg.substr(9);
      continue;
    }
    if (!arg.empty() && arg[0] == '-') return usage_error("unknown option '" + arg + "'");
    break;
  }
  options.socket = resolve_socket_path(socket_flag);
  if (i >= argc) return usage_error("no command given (exec, list, release or status)");
  const std::string command = argv[i++];

  if (command == "exec") {
    ExecOptions exec;
    for (; i < argc; ++i) {
      const std::string arg = argv[i];
      if (arg == "--") {
        ++i;
        break;
      }
      if (arg == "--xvfb") {
        exec.start_x_server = true;
        continue;
      }
      if (arg == "--xpra") {
        exec.xpra = true;
        continue;
      }
      if (arg == "--purpose" || arg == "--grace" || arg == "--xvfb-command" || arg == "--attempts") {
        if (i + 1 >= argc) return usage_error(arg + " needs a value");
        const std::string value = argv[++i];
        if (arg == "--purpose") {
          exec.purpose = value;
        } else if (arg == "--xvfb-command") {
          exec.start_x_server = true;
          exec.x_server_command = value;
        } else if (arg == "--attempts") {
          int n = 0;
          auto [ptr, ec] = std::from_chars(value.data(), value.data() + value.size(), n);
          if (ec != std::errc{} || ptr != value.data() + value.size() || n < 1 || n > 20)
            return usage_error("--attempts takes a whole number from 1 to 20");
          exec.max_attempts = n;
        } else {
          double s = 0;
          if (!parse_seconds(value, s)) return usage_error("--grace takes a number of seconds");
          exec.grace = std::chrono::milliseconds(static_cast<long>(s * 1000));
        }
        continue;
      }
      if (!arg.empty() && arg[0] == '-') return usage_error("unknown exec option '" + arg + "' (put CMD after --)");
      break;
    }
    for (; i < argc; ++i) exec.command.emplace_back(argv[i]);
    if (exec.command.empty()) return usage_error("exec needs a command to run, e.g. exec -- Xvfb :{display}");
    if (exec.xpra) {
      // Xpra starts its own X server on the display.
      if (exec.start_x_server)
        return usage_error("--xpra and --xvfb exclude each other: xpra starts its own X server on the display");
      if (const auto check = check_xpra_command(exec.command); !check.error.empty())
        return usage_error(check.error, check.hint);
    }
    return run_exec(options, exec);
  }
  if (command == "list") {
    bool all = false, json = false;
    for (; i < argc; ++i) {
      const std::string arg = argv[i];
      if (arg == "--all") all = true;
      else if (arg == "--json") json = true;
      else return usage_error("unknown list option '" + arg + "'");
    }
    return run_list(options, all, json);
  }
  if (command == "release") {
    if (i + 1 != argc) return usage_error("release takes exactly one LEASE_ID or :N");
    return run_release(options, argv[i]);
  }
  if (command == "status") {
    bool json = false;
    for (; i < argc; ++i) {
      if (std::strcmp(argv[i], "--json") == 0) json = true;
      else return usage_error(std::string("unknown status option '") + argv[i] + "'");
    }
    return run_status(options, json);
  }
  return usage_error("unknown command '" + command + "' (exec, list, release or status)");
}
