// xpra-request-display: what users and tools run to get a display from
// xpra-brokerd. Argument parsing only; each command lives in its own file.
#include <charconv>
#include <chrono>
#include <iostream>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>

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
    "       (the options --socket and --timeout may also follow COMMAND)\n"
    "\n"
    "Get an X display number and a private socket directory from xpra-brokerd.\n"
    "\n"
    "Commands:\n"
    "  exec [--xvfb] [--xvfb-command CMDLINE] [--purpose TEXT] [--grace SECONDS]\n"
    "       [--attempts N] [--end-with-parent] [--] CMD [ARG...]\n"
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
    "        (--attempts, default 3). --end-with-parent ends CMD and releases the\n"
    "        lease when the process that started this program dies, even by SIGKILL\n"
    "        (for supervisors such as jupyter-server-proxy).\n"
    "        --xpra: CMD is 'xpra start' or 'xpra start-desktop' (the first word\n"
    "        'xpra' or a path ending in /xpra), completed by this program: ':N'\n"
    "        right after the subcommand unless CMD names ':{display}', then\n"
    "        '--socket-dir=DIR' unless CMD has --socket-dir, and '--daemon=no'\n"
    "        unless CMD has --daemon=no or --no-daemon. --daemon / --daemon=yes\n"
    "        are refused (a daemonizing xpra escapes the lease). Xpra 5 and later\n"
    "        also get --sessions-dir=DIR, --use-display=no and --systemd-run=no\n"
    "        (unless CMD has them); see docs/xpra-versions.md. No placeholder is\n"
    "        needed. Xpra's 'An xpra server is already running at ...' counts as\n"
    "        a display conflict: retried on another display. Signals go to xpra\n"
    "        alone (it then removes its own sockets), the rest of its group is\n"
    "        ended after it. A start the broker refuses for now (exit 124) waits\n"
    "        out the broker's retry time first (at most 60 s; a signal ends the\n"
    "        wait), so a supervisor that restarts it at once does not spin.\n"
    "        Examples: xpra-request-display exec --xpra -- xpra start --html=on\n"
    "                  xpra-request-display exec -- xpra start :{display} --daemon=no \\\n"
    "                  --socket-dir={runtime_dir}\n"
    "  list [--all] [--json|-o json] [--no-legend]\n"
    "                            your leases (root and admin-groups: --all for everyone's);\n"
    "                            --no-legend prints the rows only, for scripts\n"
    "  release LEASE_ID|:N       end one of your leases\n"
    "  release --user NAME       end every lease of user NAME (root and admin-groups)\n"
    "  status [--json|-o json]   the broker's state: range, free displays, skipped displays\n"
    "  help [COMMAND]            this help, or COMMAND's options\n"
    "  metrics [--output FILE]   the broker's Prometheus metrics (root and admin-groups); FILE\n"
    "                            is replaced atomically, mode 0644, for node-exporter's textfile\n"
    "                            collector (e.g. /var/lib/prometheus/node-exporter/xpra_broker.prom)\n"
    "\n"
    "Options:\n"
    "  --socket PATH     broker socket (default $XPRA_BROKER_SOCKET, else /run/xpra/broker.sock)\n"
    "  --timeout SECONDS how long to wait for the broker (default 10)\n"
    "  -h, --help        show this help\n"
    "  -V, --version     show the version\n"
    "\n"
    "Exit codes: 0 success, 1 no such lease, 64 bad usage, 65 request rejected\n"
    "as malformed, 69 broker unreachable, 70 broker error, 74 metrics --output\n"
    "FILE cannot be written, 75 refused for now (quota, no free display, rate\n"
    "limit; retry later), 77 permission denied.\n"
    "exec exits with CMD's status (128+N if it died of signal N); its own\n"
    "failures have codes of their own, so that they never read as CMD's:\n"
    "118 bad usage, 119 rejected as malformed, 120 broker unreachable, 121\n"
    "broker error, 122 cannot start CMD (fork/pipe), 123 the X server did not\n"
    "start (--xvfb), 124 refused for now, 125 permission denied, 126 CMD not\n"
    "executable, 127 CMD not found.\n";

int usage_error(const std::string& message, const std::string& hint = "see 'xpra-request-display --help'") {
  std::cerr << "xpra-request-display: " << message << "\n"
            << "hint: " << hint << "\n";
  return kExitUsage;
}

// Seconds as a CLI11 transform: a number from 0 to 1e6, fractions allowed.
// No description: CLI11 would print it after the type name in --help
// ("SECONDS:SECONDS").
CLI::Validator seconds_validator() {
  return CLI::Validator(
      [](std::string& text) -> std::string {
        try {
          std::size_t used = 0;
          const double value = std::stod(text, &used);
          if (used == text.size() && value >= 0 && value < 1e6) return {};
        } catch (...) {
        }
        return "takes a number of seconds";
      },
      "");
}

std::chrono::milliseconds to_ms(double seconds) { return std::chrono::milliseconds(static_cast<long>(seconds * 1000)); }

}  // namespace

// CLI11 parses; the top-level help is kUsage (what every command does and
// every exit code), each subcommand's --help is CLI11's list of its own
// options. No help ever contacts the broker.
int main(int argc, char** argv) {
  // exec's own failures have codes of their own (exit_codes.h), bad usage
  // included, so that they never read as CMD's status.
  bool is_exec = false;
  const auto usage = [&](const std::string& message, const std::string& hint = "see 'xpra-request-display --help'") {
    const int code = usage_error(message, hint);
    return is_exec ? exec_own_failure(code) : code;
  };
  CLI::App app{"xpra-request-display", "xpra-request-display"};
  GlobalOptions options;
  std::string socket_flag;
  double timeout = 10;
  app.add_option("--socket", socket_flag, "broker socket (default $XPRA_BROKER_SOCKET, else /run/xpra/broker.sock)")
      ->type_name("PATH");
  app.add_option("--timeout", timeout, "how long to wait for the broker (default 10)")
      ->type_name("SECONDS")
      ->check(seconds_validator());
  bool version = false;
  app.add_flag("-V,--version", version, "show the version");
  // --socket and --timeout anywhere: an option a command does not know goes
  // up to the top level (set before the commands, which inherit it).
  app.fallthrough();

  ExecOptions exec;
  double grace = 5;
  auto* exec_cmd = app.add_subcommand("exec", "lease a display, run CMD on it, hold the lease while CMD runs "
                                              "(see xpra-request-display --help and xpra-request-display(1))");
  exec_cmd->add_flag("--xvfb", exec.start_x_server, "start an X server on the display before CMD");
  exec_cmd->add_option("--xvfb-command", exec.x_server_command,
                       "the X server command line (implies --xvfb; ':N -displayfd FD' is appended)")
      ->type_name("CMDLINE");
  exec_cmd->add_flag("--xpra", exec.xpra, "CMD is 'xpra start|start-desktop ...': add :N, --socket-dir, --daemon=no");
  exec_cmd->add_option("--purpose", exec.purpose, "a note for 'list' (printable text, at most 128 bytes)")
      ->type_name("TEXT");
  exec_cmd->add_option("--grace", grace, "seconds between SIGTERM and SIGKILL for what CMD leaves (default 5)")
      ->type_name("SECONDS")
      ->check(seconds_validator());
  exec_cmd->add_option("--attempts", exec.max_attempts, "starts on other displays after a display conflict (default 3)")
      ->type_name("N")
      ->check(CLI::Validator(
          [](std::string& text) -> std::string {
            int n = 0;
            const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), n);
            if (ec == std::errc{} && end == text.data() + text.size() && n >= 1 && n <= 20) return {};
            return "takes a whole number from 1 to 20";
          },
          ""));
  exec_cmd->add_flag("--end-with-parent", exec.end_with_parent,
                     "end CMD and release the lease when the process that started this one dies");
  // Everything from the first word that is not an exec option on (or after
  // `--`) is CMD and its arguments, options included.
  exec_cmd->prefix_command();
  exec_cmd->footer("CMD [ARG...] follows the options, after -- when it starts with a dash. Exit codes: xpra-request-display --help");

  bool json = false;
  std::string format;  // -o json|text, as systemctl and kubectl spell it
  const auto add_output_format = [&](CLI::App* cmd) {
    cmd->add_flag("--json", json, "machine-readable output (as -o json)");
    cmd->add_option("-o,--output", format, "json or text (default text)")
        ->type_name("FORMAT")
        ->check(CLI::IsMember({"json", "text"}).description(""));
  };
  ListOptions list;
  bool no_legend = false;
  auto* list_cmd = app.add_subcommand("list", "your leases (root and admin-groups: --all for everyone's)");
  list_cmd->add_flag("--all", list.all, "every user's leases (root and admin-groups)");
  add_output_format(list_cmd);
  list_cmd->add_flag("--no-legend", no_legend, "rows only: no header, no 'no leases' line");

  std::string target, release_user;
  auto* release_cmd = app.add_subcommand("release", "end one of your leases, or every lease of a user");
  auto* target_opt = release_cmd->add_option("target", target, "LEASE_ID or :N")->type_name("LEASE_ID|:N");
  release_cmd->add_option("--user", release_user, "every lease of this user (name or uid; root and admin-groups)")
      ->type_name("NAME")
      ->excludes(target_opt);

  auto* status_cmd = app.add_subcommand("status", "the broker's state: range, free displays, skipped displays");
  add_output_format(status_cmd);

  std::string help_topic;
  auto* help_cmd = app.add_subcommand("help", "this help, or a command's options");
  help_cmd->add_option("command", help_topic, "exec, list, release, status or metrics")->type_name("COMMAND");

  std::string output;
  auto* metrics_cmd = app.add_subcommand("metrics", "the broker's Prometheus metrics (root and admin-groups)");
  metrics_cmd->add_option("--output", output,
                          "replace FILE atomically (mode 0644), e.g. for node-exporter's textfile collector")
      ->type_name("FILE")
      ->check([](const std::string& v) { return v.empty() ? std::string("needs a file name") : std::string(); });

  // The top level's help is the whole usage text; the subcommands keep the
  // help flag they were created with (CLI11's, per subcommand).
  app.set_help_flag();
  bool help = false;
  app.add_flag("-h,--help", help, "show this help");
  app.require_subcommand(0, 1);
  app.allow_extras();  // an unknown command gets its own message below

  // exec's CMD after `--` is not for CLI11 at all (it would read a --help or
  // an unknown option in it): cut it off first. Without `--`, CMD starts at
  // the first word that is not an exec option (prefix_command above).
  std::vector<std::string> after_dashes;
  bool had_dashes = false;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    if (arg == "--socket" || arg == "--timeout") {
      ++i;
      continue;
    }
    if (!arg.empty() && arg[0] == '-') continue;
    if (arg != "exec") break;
    is_exec = true;
    for (int j = i + 1; j < argc; ++j)
      if (std::string(argv[j]) == "--") {
        after_dashes.assign(argv + j + 1, argv + argc);
        had_dashes = true;
        argc = j;
        break;
      }
    break;
  }
  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);  // a subcommand's --help: its options, exit 0
  } catch (const CLI::ParseError& e) {
    return usage(e.what());
  }
  if (help) return std::cout << kUsage, kExitOk;
  if (help_cmd->parsed()) {
    if (help_topic.empty()) return std::cout << kUsage, kExitOk;
    for (auto* sub : {exec_cmd, list_cmd, release_cmd, status_cmd, metrics_cmd})
      if (sub->get_name() == help_topic) return std::cout << sub->help("xpra-request-display"), kExitOk;
    return usage("no command '" + help_topic + "' (exec, list, release, status or metrics)");
  }
  if (version) return std::cout << "xpra-request-display " XPRA_BROKER_VERSION "\n", kExitOk;
  if (!app.remaining().empty()) {
    const std::string word = app.remaining().front();  // remaining() returns a copy
    if (!word.empty() && word[0] == '-') return usage("unknown option '" + word + "'");
    return usage("unknown command '" + word + "' (exec, list, release, status or metrics)");
  }
  if (app.get_subcommands().empty()) return usage("no command given (exec, list, release, status or metrics)");
  options.socket = resolve_socket_path(socket_flag);
  options.timeout = to_ms(timeout);

  if (exec_cmd->parsed()) {
    exec.command = had_dashes ? after_dashes : exec_cmd->remaining();
    if (!had_dashes && !exec.command.empty() && exec.command.front().rfind("-", 0) == 0)
      return usage("unknown exec option '" + exec.command.front() + "' (put CMD after --)");
    if (had_dashes && !exec_cmd->remaining().empty())
      return usage("unexpected '" + exec_cmd->remaining().front() + "' before -- (exec options only)");
    if (exec.command.empty()) return usage("exec needs a command to run, e.g. exec -- Xvfb :{display}");
    if (!exec.x_server_command.empty()) exec.start_x_server = true;
    exec.grace = to_ms(grace);
    if (exec.xpra) {
      // Xpra starts its own X server on the display.
      if (exec.start_x_server)
        return usage("--xpra and --xvfb exclude each other: xpra starts its own X server on the display");
      if (const auto check = check_xpra_command(exec.command); !check.error.empty())
        return usage(check.error, check.hint);
    }
    return run_exec(options, exec);
  }
  json = json || format == "json";
  if (list_cmd->parsed()) {
    list.json = json;
    list.legend = !no_legend;
    return run_list(options, list);
  }
  if (release_cmd->parsed()) {
    if (target.empty() && release_user.empty())
      return usage("release needs LEASE_ID, :N or --user NAME", "see 'xpra-request-display help release'");
    return run_release(options, target, release_user);
  }
  if (status_cmd->parsed()) return run_status(options, json);
  return run_metrics(options, output);
}
