#include "xpra_command.h"

#include <fcntl.h>
#include <glob.h>
#include <poll.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <chrono>
#include <cstdlib>
#include <fstream>
#include <sstream>

#include "session_command.h"

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
    if (arg == "--sessions-dir" || starts_with(arg, "--sessions-dir=")) shape.has_sessions_dir = true;
    if (arg == "--use-display" || starts_with(arg, "--use-display=")) shape.has_use_display = true;
    if (arg == "--systemd-run" || starts_with(arg, "--systemd-run=")) shape.has_systemd_run = true;
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
                                               std::uint32_t display, const std::string& runtime_dir,
                                               int xpra_major) {
  std::vector<std::string> out;
  out.reserve(command.size() + 6);
  for (std::size_t i = 0; i < command.size(); ++i) {
    out.push_back(substitute_placeholders(command[i], display, runtime_dir));
    if (i != shape.subcommand) continue;
    if (!shape.has_display) out.push_back(":" + std::to_string(display));
    if (!shape.has_socket_dir) out.push_back("--socket-dir=" + runtime_dir);
    if (!shape.has_no_daemon) out.push_back("--daemon=no");
    if (xpra_major >= 5) {
      if (!shape.has_sessions_dir) out.push_back("--sessions-dir=" + runtime_dir);
      if (!shape.has_use_display) out.push_back("--use-display=no");
      if (!shape.has_systemd_run) out.push_back("--systemd-run=no");
    }
  }
  return out;
}

int xpra_major_of(const std::string& text) {
  // The first digit run after `__version__` or after "xpra v".
  std::size_t at = text.find("__version__");
  if (at == std::string::npos) at = text.find("xpra v");
  if (at == std::string::npos) return 0;
  at = text.find_first_of("0123456789", at);
  if (at == std::string::npos) return 0;
  const std::size_t end = text.find_first_not_of("0123456789", at);
  const std::string digits = text.substr(at, end == std::string::npos ? std::string::npos : end - at);
  return digits.size() <= 3 ? std::atoi(digits.c_str()) : 0;
}

namespace {

bool is_file(const std::string& path) {
  struct stat st {};
  return ::stat(path.c_str(), &st) == 0 && S_ISREG(st.st_mode);
}

std::string find_in_path(const std::string& program) {
  if (program.find('/') != std::string::npos) return program;
  const char* path = std::getenv("PATH");
  std::stringstream dirs(path ? path : "/usr/local/bin:/usr/bin:/bin");
  std::string dir;
  while (std::getline(dirs, dir, ':')) {
    const std::string candidate = (dir.empty() ? "." : dir) + "/" + program;
    if (is_file(candidate) && ::access(candidate.c_str(), X_OK) == 0) return candidate;
  }
  return {};
}

// The `__version__` line of `<dir>/xpra/__init__.py`; 0 when there is none.
int version_in_module_dir(const std::string& dir) {
  std::ifstream init(dir + "/xpra/__init__.py");
  std::string line;
  while (init && std::getline(init, line))
    if (starts_with(line, "__version__")) return xpra_major_of(line);
  return 0;
}

// Where Python would import xpra from, for the layouts whose search order
// is known: PYTHONPATH first, then, for Debian's /usr/bin/python3, its
// /usr/local and /usr dist-packages. 0 for any other layout.
int version_from_module(const std::string& script) {
  if (const char* pythonpath = std::getenv("PYTHONPATH")) {
    std::stringstream dirs(pythonpath);
    std::string dir;
    while (std::getline(dirs, dir, ':'))
      if (!dir.empty())
        if (const int major = version_in_module_dir(dir)) return major;
  }
  std::ifstream in(script);
  std::string shebang;
  std::getline(in, shebang);
  if (shebang != "#!/usr/bin/python3" && shebang != "#! /usr/bin/python3") return 0;
  glob_t found{};
  int major = 0;
  if (::glob("/usr/local/lib/python3*/dist-packages", 0, nullptr, &found) == 0)
    for (std::size_t i = 0; i < found.gl_pathc && !major; ++i) major = version_in_module_dir(found.gl_pathv[i]);
  ::globfree(&found);
  return major ? major : version_in_module_dir("/usr/lib/python3/dist-packages");
}

// `program --version`, bounded: a hung interpreter must not hang the start.
int version_from_running(const std::string& program) {
  int out[2];
  if (::pipe2(out, O_CLOEXEC) != 0) return 0;
  const pid_t pid = ::fork();
  if (pid < 0) {
    ::close(out[0]);
    ::close(out[1]);
    return 0;
  }
  if (pid == 0) {
    ::dup2(out[1], STDOUT_FILENO);
    const int devnull = ::open("/dev/null", O_WRONLY | O_CLOEXEC);
    if (devnull >= 0) ::dup2(devnull, STDERR_FILENO);
    const char* argv[] = {program.c_str(), "--version", nullptr};
    ::execvp(argv[0], const_cast<char* const*>(argv));
    ::_exit(127);
  }
  ::close(out[1]);
  std::string text;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  char buf[256];
  for (;;) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
    pollfd p{out[0], POLLIN, 0};
    if (left.count() <= 0 || ::poll(&p, 1, static_cast<int>(left.count())) <= 0) {
      ::kill(pid, SIGKILL);
      break;
    }
    const ssize_t n = ::read(out[0], buf, sizeof buf);
    if (n <= 0) break;
    if (text.size() < 4096) text.append(buf, static_cast<std::size_t>(n));
  }
  ::close(out[0]);
  ::waitpid(pid, nullptr, 0);
  return xpra_major_of(text);
}

}  // namespace

int xpra_version(const std::string& program) {
  const std::string script = find_in_path(program);
  if (script.empty()) return 0;  // not found: exec reports that, as without --xpra
  if (const int major = version_from_module(script)) return major;
  return version_from_running(script);
}

}  // namespace xpra_broker::client
