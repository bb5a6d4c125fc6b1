// xpra-brokerd: start-up only. Reads the configuration, settles privileges,
// opens the runtime dir and socket, then hands over to the Asio loop.
#include <fcntl.h>
#include <sys/resource.h>
#include <systemd/sd-daemon.h>
#include <unistd.h>

#include <utility>  // Boost 1.74 asio/awaitable.hpp uses std::exchange without it
#include <boost/asio.hpp>
#include <cstdio>
#include <cstring>
#include <iostream>
#include <fstream>
#include <set>
#include <sstream>
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>
#include <google/protobuf/stubs/logging.h>
#include <CLI/CLI.hpp>

#include "daemon/assembly.h"
#include "server/broker_server.h"
#include "core/lease_core.h"
#include "durable/lease_journal.h"
#include "host/linux_host.h"
#include "host/log_sink.h"
#include "core/log_throttle.h"
#include "host/privileged_ops.h"
#include "daemon/startup.h"
#include "untrusted_text.h"
#include "host/x_server_census.h"
#include "version.h"

using namespace xpra_broker;

namespace {

// Exit codes (sysexits.h), documented in the README.
constexpr int kExitUsage = 64;
constexpr int kExitConfig = 78;
constexpr int kExitOsError = 71;

void print_help() {
  std::cout << "Usage: xpra-brokerd [--config FILE] [--KEY=VALUE ...]\n"
               "\n"
               "Hands out X display numbers and per-user socket directories to the users of\n"
               "this host over a Unix socket, and ends a display's lease when its holder goes.\n"
               "\n"
               "Options:\n"
               "  -c, --config FILE   config file (default /etc/xpra/broker.conf; may be missing)\n"
               "      --check-config  check the configuration, print it and exit\n"
               "      --reload PID    make the broker PID read its configuration again (SIGHUP), wait\n"
               "                      for its answer and say what it applied; exit 78 if that failed\n"
               "  -h, --help          show this help and exit\n"
               "  -V, --version       show the version and exit\n"
               "\n"
               "Every config key can also be given as --KEY=VALUE (overrides the file):\n";
  for (const auto& key : config_keys()) std::printf("  %-26s %s\n", key.key, key.help);
  std::cout << "\nExit codes: 0 clean shutdown (or --check-config found no problem), 64 bad usage,\n"
               "71 operating-system error (a transient one: another broker holds the runtime dir,\n"
               "a failed system call), 78 a configuration problem a restart cannot fix (unknown\n"
               "user or group, unsafe runtime dir or journal, a non-socket at the socket path,\n"
               "capabilities require-capabilities=yes demands); --check-config finds the same.\n";
}

// --check-config: where Xpra looks for display sockets and what the broker
// does about each directory.
void print_xpra_socket_dirs(const XpraSocketDirPlan& plan, const std::vector<XpraSharedDirs::Report>& shared,
                            const std::string& hostname) {
  // As comments: stdout stays a config file that means the same.
  std::cout << "# xpra socket dirs (Xpra names display N's socket " << hostname << "-N):\n";
  auto print = [](const XpraSharedDirs::Report& d) {
    std::cout << "#   " << d.path << "\n#       " << d.state << " (from " << d.source << ")\n";
  };
  for (const auto& d : shared) print(d);
  for (const auto& d : plan.notes) print(d);
}

struct ParsedArgs {
  CommandLine cmd;
  bool check_only = false;
  pid_t reload_pid = 0;  // --reload=PID
};

// Returns an exit code to stop with, or -1 to go on. CLI11 parses; the help
// text is our own (print_help), because it lists every config key with its
// meaning the way the example config and the man page do.
int parse_args(int argc, char** argv, ParsedArgs& out) {
  CLI::App app{"xpra-brokerd"};
  app.set_help_flag();
  bool help = false, version = false;
  app.add_flag("-h,--help", help);
  app.add_flag("-V,--version", version);
  app.add_flag("--check-config", out.check_only);
  app.add_option("--reload", out.reload_pid)->check(CLI::PositiveNumber);
  out.cmd.config_path = "/etc/xpra/broker.conf";
  auto* config = app.add_option("-c,--config", out.cmd.config_path);
  // Every config key as --KEY=VALUE (or --KEY VALUE); the last one wins.
  std::vector<std::pair<std::string, std::string>> values;
  values.reserve(config_keys().size());
  for (const auto& key : config_keys()) {
    values.emplace_back(key.key, std::string());
    app.add_option(std::string("--") + key.key, values.back().second)
        ->multi_option_policy(CLI::MultiOptionPolicy::TakeLast);
  }
  // "--KEY=" sets KEY to empty (e.g. xpra-config-dirs=): CLI11 reads an empty
  // "=value" as a missing one, so each --KEY=VALUE goes in as two words.
  std::vector<std::string> words;
  for (int i = argc - 1; i >= 1; --i) {
    const std::string arg = argv[i];
    const auto eq = arg.find('=');
    if (arg.rfind("--", 0) == 0 && eq != std::string::npos) {
      words.push_back(arg.substr(eq + 1));
      words.push_back(arg.substr(0, eq));
    } else {
      words.push_back(arg);
    }
  }
  try {
    app.parse(words);  // CLI11 takes them in reverse order
  } catch (const CLI::ParseError& e) {
    std::cerr << "xpra-brokerd: " << e.what() << "\nhint: see 'xpra-brokerd --help'\n";
    return kExitUsage;
  }
  if (help) return print_help(), 0;
  if (version) return std::cout << "xpra-brokerd " XPRA_BROKER_VERSION "\n", 0;
  out.cmd.config_explicit = config->count() > 0;
  for (std::size_t i = 0; i < values.size(); ++i)
    if (app.get_option(std::string("--") + values[i].first)->count() > 0) out.cmd.overrides.push_back(values[i]);
  return -1;
}

// libprotobuf logs a request it cannot parse (a string that is not UTF-8)
// on stderr by itself; route that through the broker's logger, escaped and
// throttled like every other line a client can cause.
void log_from_protobuf(google::protobuf::LogLevel level, const char* file, int line, const std::string& message) {
  static LogThrottle throttle;
  const auto d = throttle.admit(0, std::string(file ? file : "") + ":" + std::to_string(line),
                                std::chrono::steady_clock::now());
  if (!d.log) return;
  const auto spd_level = level >= google::protobuf::LOGLEVEL_ERROR     ? spdlog::level::warn
                         : level == google::protobuf::LOGLEVEL_WARNING ? spdlog::level::info
                                                                       : spdlog::level::debug;
  spdlog::log(spd_level, "libprotobuf: \"{}\"{}", escape_untrusted(message, 512), throttle.suffix(d));
}

void setup_logging(const std::string& level, const std::string& target) {
  std::shared_ptr<spdlog::logger> logger;
  if (target == "journal" || (target == "auto" && stderr_is_journal())) {
    // Priorities and fields (log_sink.h); journald adds time and pid.
    logger = std::make_shared<spdlog::logger>("xpra-brokerd", make_journal_sink());
    logger->set_pattern("%v");
  } else {
    logger = spdlog::stderr_color_mt("xpra-brokerd");
    logger->set_pattern(std::getenv("JOURNAL_STREAM") ? "%l: %v" : "%Y-%m-%d %H:%M:%S.%e %l: %v");
  }
  logger->set_level(spdlog::level::from_str(level));
  spdlog::set_default_logger(logger);
  google::protobuf::SetLogHandler(&log_from_protobuf);
}

void raise_fd_limit() {
  rlimit lim{};
  if (::getrlimit(RLIMIT_NOFILE, &lim) == 0 && lim.rlim_cur < lim.rlim_max) {
    lim.rlim_cur = std::min<rlim_t>(lim.rlim_max, 65536);
    ::setrlimit(RLIMIT_NOFILE, &lim);
  }
}

// --- The steps of main() ---------------------------------------------------

// Loads the configuration and checks it the one way --check-config and the
// start share. Returns an exit code to stop with, or -1 to go on.
int load_configuration(const ParsedArgs& args, BrokerConfig& config, std::vector<std::string>& warnings,
                       XpraSocketDirPlan& xpra_plan) {
  // One channel for every problem, whatever found it: stderr, one line
  // each, with the file and line (or the option) that set the key.
  const auto report_problems = [](const std::vector<std::string>& problems) {
    for (const auto& p : problems) std::cerr << "xpra-brokerd: problem: " << p << "\n";
  };
  const auto verdict = [&](bool ok) {
    std::cerr << "xpra-brokerd: configuration " << (ok ? "OK" : "NOT OK") << " (" << args.cmd.config_path
              << (args.cmd.config_explicit ? "" : ", the default") << ", and the command line)\n";
  };
  try {
    config = load_config(args.cmd);
    choose_service_identity(config, warnings);
  } catch (const std::exception& e) {
    std::vector<std::string> problems;
    std::istringstream lines(e.what());
    for (std::string line; std::getline(lines, line);) problems.push_back(line);
    report_problems(problems);
    if (args.check_only) verdict(false);
    return kExitConfig;
  }
  // Where Xpra looks for display sockets: read now, as root may still be
  // needed to read Xpra's config.
  xpra_plan = plan_xpra_socket_dirs(config);
  for (const auto& p : xpra_plan.problems) warnings.push_back("xpra config: " + p);
  // What the start would refuse for good (exit 78: RestartPreventExitStatus=
  // in the unit).
  const auto problems = configuration_problems(config);
  if (args.check_only) {
    // stdout: the effective configuration, a config file that means the
    // same; stderr: the problems, the warnings and the verdict.
    std::cout << "# effective configuration:\n";
    for (const auto& [key, value] : effective_config(config)) std::cout << key << " = " << value << "\n";
    print_xpra_socket_dirs(xpra_plan, XpraSharedDirs(xpra_plan.shared, ::geteuid()).report(), local_hostname());
    report_problems(problems);
    for (const auto& w : warnings) std::cerr << "xpra-brokerd: warning: " << w << "\n";
    verdict(problems.empty());
    return problems.empty() ? 0 : kExitConfig;
  }
  if (!problems.empty()) {
    report_problems(problems);
    std::cerr << "hint: xpra-brokerd --check-config shows the whole configuration\n";
    return kExitConfig;
  }
  return -1;
}

// What start-up opens with the privileges it still has, before the loop.
struct OpenedResources {
  AccessPolicy policy;
  UniqueFd runtime_dir, instance_lock, listener;
  std::unique_ptr<LeaseJournal> journal;
  bool socket_from_systemd = false;
};

std::string joined(const std::vector<std::string>& items) {
  std::string out;
  for (const auto& item : items) out += (out.empty() ? "" : ",") + item;
  return out;
}

// Resolves the groups, settles the process's privileges (user, group,
// capabilities), and opens the runtime dir, its lock, the journal and the
// socket. Throws ConfigurationError (exit 78) or another exception (71).
OpenedResources settle_privileges_and_open(const BrokerConfig& config, std::vector<std::string>& warnings) {
  OpenedResources r;
  r.policy.allowed_gids = resolve_groups(config.allowed_groups, "allowed-groups");
  r.policy.admin_gids = resolve_groups(config.admin_groups, "admin-groups");
  prepare_runtime_dir_as_root(config);
  const PrivilegeSetup privileges = setup_process_privileges(config.user, config.group);
  if (!privileges.switched_to.empty()) spdlog::info("running as {}", privileges.switched_to);
  spdlog::info("capabilities kept (permitted, raised only per call): {}",
               privileges.kept.empty() ? "none" : joined(privileges.kept));
  if (config.require_capabilities && !privileges.missing.empty())
    throw ConfigurationError("missing capabilities " + joined(privileges.missing) +
                             " and require-capabilities=yes; start it as root with user=/group=, or with "
                             "AmbientCapabilities=CAP_CHOWN CAP_FOWNER CAP_KILL (see the systemd unit)");
  for (const auto& m : privileges.missing)
    warnings.push_back("capability " + m + " is not available: " +
                       (m == "cap_chown"    ? "per-user directories can be made only for the broker's own uid"
                        : m == "cap_fowner" ? "other users' stale X lock and socket files cannot be removed"
                                            : "processes of other users' leases cannot be ended"));
  raise_fd_limit();
  r.runtime_dir = open_runtime_dir(config.runtime_dir);
  r.instance_lock = acquire_instance_lock(r.runtime_dir.get(), config.runtime_dir);
  if (config.journal) {
    check_journal_file(r.runtime_dir.get(), config.runtime_dir);
    r.journal = std::make_unique<LeaseJournal>(r.runtime_dir.get(), config.runtime_dir);
  }
  r.listener = open_listening_socket(config.socket, r.socket_from_systemd);
  const auto members = ordinary_members_of_group(::getegid(), ::geteuid());
  if (!members.empty())
    warnings.push_back("users " + joined(members) +
                       " are members of the broker's group; with the broker they need not be, and as members "
                       "they can enter every user's directory. Remove them from the group");
  return r;
}

// The broker's parts on the real machine (probe, cleaner, reaper, census),
// and the rooms built over them (daemon/assembly.h).
struct Broker {
  std::shared_ptr<XpraSharedDirs> xpra_dirs;
  StaleArtifactCleaner cleaner;
  // The time windows of reaped leases, for counting what outlived them.
  OrphanWatch orphans;
  // X servers and orphans of ended leases per user, counted on a thread of
  // its own (status, watchdog, metrics).
  BackgroundXServerCensus census{std::chrono::seconds(5), &orphans};
  // Built before the host that owns it, so the reaper can be handed it.
  std::unique_ptr<DisplayProbe> probe;
  AsioLeaseReaper reaper;
  BrokerAssembly rooms;

  Broker(boost::asio::io_context& io, const BrokerConfig& config, OpenedResources& opened,
         const XpraSocketDirPlan& xpra_plan, const std::string& hostname, std::vector<std::string> warnings)
      // Opened as the broker's own user, with its capabilities settled: the
      // probe and the cleaner share these fds.
      : xpra_dirs(std::make_shared<XpraSharedDirs>(xpra_plan.shared, ::geteuid())),
        cleaner(config.x11_tmp_dir, config.runtime_dir, hostname, xpra_dirs),
        probe(std::make_unique<DisplayProbe>(config.x11_tmp_dir, config.runtime_dir, hostname, xpra_dirs)),
        reaper(io, cleaner, config.x11_tmp_dir, std::chrono::milliseconds(config.reap_grace_ms), probe.get(),
               &orphans),
        rooms(config, opened.policy,
              AssemblyParts{{std::move(probe),
                             std::make_unique<UserDirectories>(std::move(opened.runtime_dir), config.runtime_dir,
                                                               ::getegid()),
                             std::chrono::steady_clock::now, &reaper, &cleaner, &census, xpra_plan.notes},
                            opened.journal.get(),
                            /*group_commit=*/true,
                            std::move(warnings)}) {
    for (const auto& d : xpra_dirs->report())
      spdlog::info("xpra socket dir {} (from {}): {}", d.path, d.source, d.state);
    rooms.restore(std::chrono::seconds(config.reattach_grace_seconds));
  }
};

// Runs a duty now and then every `interval` on the event loop, until
// cancelled.
class PeriodicDuty {
 public:
  PeriodicDuty(boost::asio::io_context& io, std::chrono::milliseconds interval, std::function<void()> duty)
      : timer_(io), interval_(interval), duty_(std::move(duty)) {}
  void start() {
    duty_();
    timer_.expires_after(interval_);
    timer_.async_wait([this](boost::system::error_code ec) {
      if (!ec) start();
    });
  }
  void cancel() { timer_.cancel(); }

 private:
  boost::asio::steady_timer timer_;
  std::chrono::milliseconds interval_;
  std::function<void()> duty_;
};

// Under systemd: the watchdog is fed from the event loop (a hung loop stops
// feeding it) and STATUS= says what the broker holds.
class ServiceNotifier {
 public:
  ServiceNotifier() : watchdog_(sd_watchdog_enabled(0, nullptr) > 0) {}
  void tell(const Broker& broker) {
    const bool degraded = broker.rooms.durable() && broker.rooms.durable()->health().degraded;
    std::string status = "serving: " + std::to_string(broker.rooms.core().leases().size()) + " lease(s), " +
                         std::to_string(broker.rooms.core().allocator().free_count()) + " free display(s)" +
                         (degraded ? "; lease journal DEGRADED (disk full?)" : "");
    if (status == last_ && !watchdog_) return;
    sd_notify(0, ((watchdog_ ? "WATCHDOG=1\n" : "") + std::string("STATUS=") + status).c_str());
    last_ = std::move(status);
  }

 private:
  bool watchdog_;
  std::string last_;
};

// The display name watch's events are applied as they come (not only at
// the next acquire), so a busy /tmp cannot overflow its queue.
// The watch's queue is drained before every probe anyway; the event loop
// drains it only so that it never overflows. Any user's file churn in /tmp
// queues events, and each one wakes an epoll set the inotify fd is in
// (issue 21: 7,000 creates and deletes a second cost an idle broker 6.7 % of
// a core). So after each drain the fd leaves the event loop's epoll set for
// kNameWatchPause: at most 20 wake-ups a second, each draining a batch, well
// inside the kernel's queue (16,384 events by default).
class NameWatchFollower {
 public:
  static constexpr auto kNameWatchPause = std::chrono::milliseconds(50);
  NameWatchFollower(boost::asio::io_context& io, const DisplayProbe& probe) : events_(io), pause_(io), probe_(probe) {}
  void start() {
    if (probe_.watch_fd() >= 0) wait_for_events();
  }
  void stop() {
    stopped_ = true;
    boost::system::error_code ignored;
    events_.close(ignored);
    pause_.cancel();
  }

 private:
  void wait_for_events() {
    const int fd = ::fcntl(probe_.watch_fd(), F_DUPFD_CLOEXEC, 0);
    if (fd < 0) return spdlog::warn("cannot follow the display name watch ({}); probes drain it", std::strerror(errno));
    events_.assign(fd);
    events_.async_wait(boost::asio::posix::stream_descriptor::wait_read, [this](boost::system::error_code ec) {
      if (ec || stopped_) return;
      boost::system::error_code ignored;
      events_.close(ignored);  // out of the epoll set until the pause ends
      probe_.drain_watch();
      pause_.expires_after(kNameWatchPause);
      pause_.async_wait([this](boost::system::error_code wait_ec) {
        if (!wait_ec && !stopped_) wait_for_events();
      });
    });
  }

  boost::asio::posix::stream_descriptor events_;
  boost::asio::steady_timer pause_;
  const DisplayProbe& probe_;
  bool stopped_ = false;
};

// The keys a reload applies while the broker runs. The others are read once
// at start-up (where to listen and keep files, whom to run as, Xpra's
// directories, the reaper's and watchdog's timers) and need a restart,
// which leases survive through the journal.
bool applies_on_reload(const std::string& key) {
  static const std::set<std::string> live = {
      "displays",          "allowed-groups",           "admin-groups",          "max-leases-per-user",
      "max-leases",        "max-connections-per-user", "idle-timeout-seconds",  "reads-per-second",
      "read-burst",        "recheck-seconds",          "quarantine-seconds",    "max-quarantines-per-user",
      "acquire-burst",     "acquires-per-minute",      "failures-before-backoff", "backoff-base-ms",
      "backoff-max-seconds", "healthy-after-seconds",  "xserver-warn-per-user", "clean-stale",
      "log-level",         "log-target"};
  return live.count(key) != 0;
}

ServerLimits server_limits(const BrokerConfig& config) {
  return ServerLimits{config.max_connections_per_user, std::chrono::seconds(config.idle_timeout_seconds),
                      config.reads_per_second, config.read_burst};
}

// The outcome of each reload, for `xpra-brokerd --reload` (the unit's
// ExecReload=), which waits for it: "<generation> ok|failed <text>" in
// <runtime-dir>/broker.reload, replaced whole (rename) so it is read whole.
constexpr const char* kReloadResultFile = "broker.reload";

void write_reload_result(const std::string& runtime_dir, std::uint64_t generation, bool ok, const std::string& text) {
  const std::string path = runtime_dir + "/" + kReloadResultFile, temp = path + ".new";
  UniqueFd fd(::open(temp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0644));
  std::string line = std::to_string(generation) + (ok ? " ok " : " failed ") + text + "\n";
  if (!fd || ::write(fd.get(), line.data(), line.size()) != static_cast<ssize_t>(line.size()) ||
      ::rename(temp.c_str(), path.c_str()) != 0)
    spdlog::warn("reload: cannot write {}: {}", path, std::strerror(errno));
}

// SIGHUP re-reads the configuration and applies what can change while
// leases are held (applies_on_reload); the log and the result file say what
// was applied and what waits for a restart. A configuration that does not
// load changes nothing, and `status` shows admins why until a reload works.
class Reloader {
 public:
  Reloader(boost::asio::io_context& io, const ParsedArgs& args, BrokerConfig& running, LeaseCore& core,
           BrokerServer& server)
      : hangup_(io, SIGHUP), args_(args), running_(running), core_(core), server_(server) {}
  void start() { wait(); }
  void cancel() { hangup_.cancel(); }

 private:
  void wait() {
    hangup_.async_wait([this](boost::system::error_code ec, int) {
      if (ec) return;
      reload();
      wait();
    });
  }

  void reload() {
    // Unique across restarts too, so --reload never takes an older
    // broker's answer for this one's.
    generation_ = static_cast<std::uint64_t>(
        std::chrono::duration_cast<std::chrono::microseconds>(std::chrono::system_clock::now().time_since_epoch())
            .count());
    // Type=notify-reload's protocol (systemd 253); older systemd ignores it.
    sd_notifyf(0, "RELOADING=1\nMONOTONIC_USEC=%llu",
               static_cast<unsigned long long>(std::chrono::duration_cast<std::chrono::microseconds>(
                                                   std::chrono::steady_clock::now().time_since_epoch())
                                                   .count()));
    BrokerConfig fresh;
    AccessPolicy policy;
    try {
      fresh = load_config(args_.cmd);
      // The identity is the running one's: user= and group= need a restart.
      fresh.user = running_.user;
      fresh.group = running_.group;
      policy.allowed_gids = resolve_groups(fresh.allowed_groups, "allowed-groups");
      policy.admin_gids = resolve_groups(fresh.admin_groups, "admin-groups");
    } catch (const std::exception& e) {
      std::string problem = e.what();
      while (!problem.empty() && problem.back() == '\n') problem.pop_back();
      spdlog::error("reload: the configuration does not load; the running one is kept: {}", problem);
      core_.set_reload_problem(problem);
      write_reload_result(running_.runtime_dir, generation_, false, escape_untrusted(problem, 2048));
      sd_notify(0, "READY=1");
      return;
    }
    std::vector<std::string> applied, waiting;
    const auto now = effective_config(fresh), before = effective_config(running_);
    for (std::size_t i = 0; i < now.size() && i < before.size(); ++i) {
      if (now[i].second == before[i].second) continue;
      (applies_on_reload(now[i].first) ? applied : waiting).push_back(now[i].first + "=" + now[i].second);
    }
    core_.reconfigure(core_settings(fresh), std::move(policy));
    server_.set_limits(server_limits(fresh));
    if (fresh.log_target != running_.log_target) {
      spdlog::drop("xpra-brokerd");
      setup_logging(fresh.log_level, fresh.log_target);
    }
    spdlog::set_level(spdlog::level::from_str(fresh.log_level));
    // What a restart would still take from the file stays as it runs now,
    // so the next reload reports it again.
    for (const auto& [key, value] : now)
      if (applies_on_reload(key)) apply_config_setting(running_, key, value);
    const auto listed = [](const std::vector<std::string>& items) {
      std::string out;
      for (const auto& item : items) out += (out.empty() ? "" : ", ") + item;
      return out;
    };
    const std::string text = "applied: " + (applied.empty() ? std::string("nothing changed") : listed(applied)) +
                             (waiting.empty() ? "" : "; not applied, needs a restart: " + listed(waiting));
    spdlog::info("reload: configuration re-read; {}", text);
    core_.set_reload_problem("");
    write_reload_result(running_.runtime_dir, generation_, true, text);
    sd_notify(0, "READY=1");
  }

  boost::asio::signal_set hangup_;
  const ParsedArgs& args_;
  BrokerConfig& running_;
  LeaseCore& core_;
  BrokerServer& server_;
  std::uint64_t generation_ = 0;
};

// `xpra-brokerd --reload=PID` (the unit's ExecReload=): SIGHUP to the broker,
// then wait for its answer, so `systemctl reload` fails when the reload did.
int reload_and_wait(const ParsedArgs& args, pid_t pid) {
  // Where the broker answers: its runtime dir, read leniently (the lines
  // that parse), since a file that does not load is what the broker must
  // still be asked about: it reports the problem and keeps running.
  BrokerConfig lenient;
  if (std::ifstream in(args.cmd.config_path); in) {
    std::stringstream text;
    text << in.rdbuf();
    parse_config_text(lenient, text.str(), args.cmd.config_path);
  }
  for (const auto& [key, value] : args.cmd.overrides) apply_config_setting(lenient, key, value);
  const std::string runtime_dir = lenient.runtime_dir;
  const std::string path = runtime_dir + "/" + kReloadResultFile;
  const auto read_result = [&] {
    std::string line;
    if (std::FILE* f = std::fopen(path.c_str(), "re")) {
      char buf[4096];
      if (std::fgets(buf, sizeof(buf), f)) line = buf;
      std::fclose(f);
    }
    while (!line.empty() && line.back() == '\n') line.pop_back();
    return line;
  };
  const std::string before = read_result();
  if (::kill(pid, SIGHUP) != 0) {
    std::cerr << "xpra-brokerd: cannot signal the broker (pid " << pid << "): " << std::strerror(errno)
              << "\nhint: is it running? systemctl status xpra-brokerd\n";
    return kExitOsError;
  }
  for (int i = 0; i < 200; ++i) {  // 20 s: a reload takes milliseconds
    const std::string now = read_result();
    if (!now.empty() && now != before) {
      const auto space = now.find(' ');
      const std::string rest = space == std::string::npos ? "" : now.substr(space + 1);
      if (rest.rfind("ok ", 0) == 0) {
        std::cout << "xpra-brokerd: reloaded; " << rest.substr(3) << "\n";
        return 0;
      }
      std::cerr << "xpra-brokerd: the reload failed, the broker runs with the configuration it had: "
                << (rest.rfind("failed ", 0) == 0 ? rest.substr(7) : rest)
                << "\nhint: xpra-brokerd --check-config shows every problem; fix them and reload again\n";
      return kExitConfig;
    }
    ::usleep(100 * 1000);
  }
  std::cerr << "xpra-brokerd: the broker (pid " << pid << ") did not answer the reload in 20 s (" << path
            << ")\nhint: journalctl -u xpra-brokerd\n";
  return kExitOsError;
}

}  // namespace

int main(int argc, char** argv) {
  ParsedArgs args;
  if (int rc = parse_args(argc, argv, args); rc >= 0) return rc;
  if (args.reload_pid > 0) return reload_and_wait(args, args.reload_pid);
  BrokerConfig config;
  std::vector<std::string> warnings;
  XpraSocketDirPlan xpra_plan;
  if (int rc = load_configuration(args, config, warnings, xpra_plan); rc >= 0) return rc;
  setup_logging(config.log_level, config.log_target);

  const auto start_time = std::chrono::steady_clock::now();
  OpenedResources opened;
  try {
    opened = settle_privileges_and_open(config, warnings);
  } catch (const ConfigurationError& e) {
    spdlog::critical("cannot start: {}", e.what());
    return kExitConfig;
  } catch (const std::exception& e) {
    spdlog::critical("cannot start: {}", e.what());
    return kExitOsError;
  }
  for (const auto& w : warnings) spdlog::warn("{}", w);

  boost::asio::io_context io(1);
  Broker broker(io, config, opened, xpra_plan, local_hostname(), warnings);
  LeaseCore& core = broker.rooms.core();

  // Every second: recovered leases whose holder did not come back are
  // reaped, owed journal records are written, systemd hears how it goes.
  ServiceNotifier notifier;
  PeriodicDuty every_second(io, std::chrono::seconds(1), [&] {
    core.expire_detached();
    core.retry_records();
    notifier.tell(broker);
  });
  every_second.start();
  // Leak watchdog: X servers per user on the host.
  PeriodicDuty leak_check(io, std::chrono::seconds(config.leak_check_seconds),
                          [&] { core.check_for_leaked_x_servers(); });
  leak_check.start();
  NameWatchFollower name_events(io, broker.rooms.host().probe());
  name_events.start();

  BrokerServer server(io, core, broker.rooms.durable(), opened.listener.release(), server_limits(config));
  server.start();
  Reloader reloader(io, args, config, core, server);
  reloader.start();
  boost::asio::signal_set signals(io, SIGINT, SIGTERM);
  signals.async_wait([&](boost::system::error_code ec, int signo) {
    if (ec) return;
    spdlog::info("received {}, shutting down", ::strsignal(signo));
    sd_notify(0, "STOPPING=1");
    server.stop();
    leak_check.cancel();
    every_second.cancel();
    reloader.cancel();
    name_events.stop();
    io.stop();
  });

  spdlog::info("xpra-brokerd {} serving {} (displays {}-{}, runtime dir {}{}), ready {} ms after start",
               XPRA_BROKER_VERSION, config.socket, config.display_first, config.display_last, config.runtime_dir,
               opened.socket_from_systemd ? ", socket from systemd" : "",
               std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - start_time)
                   .count());
  sd_notify(0, "READY=1\nSTATUS=serving");
  io.run();
  if (!opened.socket_from_systemd) ::unlink(config.socket.c_str());
  return 0;
}
