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
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>
#include <google/protobuf/stubs/logging.h>
#include <CLI/CLI.hpp>

#include "broker_server.h"
#include "durable_leases.h"
#include "lease_core.h"
#include "lease_journal.h"
#include "linux_host.h"
#include "log_sink.h"
#include "log_throttle.h"
#include "privileged_ops.h"
#include "startup.h"
#include "untrusted_text.h"
#include "x_server_census.h"
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
  std::cout << "xpra socket dirs (Xpra names display N's socket " << hostname << "-N):\n";
  auto print = [](const XpraSharedDirs::Report& d) {
    std::cout << "  " << d.path << "\n      " << d.state << " (from " << d.source << ")\n";
  };
  for (const auto& d : shared) print(d);
  for (const auto& d : plan.notes) print(d);
}

struct ParsedArgs {
  CommandLine cmd;
  bool check_only = false;
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
  try {
    config = load_config(args.cmd);
    choose_service_identity(config, warnings);
  } catch (const std::exception& e) {
    std::cerr << "xpra-brokerd: configuration error:\n" << e.what() << "\n";
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
    for (const auto& p : problems) std::cout << "problem: " << p << "\n";
    std::cout << (problems.empty() ? "configuration OK" : "configuration NOT OK") << " (" << args.cmd.config_path
              << (args.cmd.config_explicit ? "" : ", the default") << ", and the command line)\n"
              << "# effective configuration:\n";
    for (const auto& [key, value] : effective_config(config)) std::cout << key << " = " << value << "\n";
    print_xpra_socket_dirs(xpra_plan, XpraSharedDirs(xpra_plan.shared, ::geteuid()).report(), local_hostname());
    for (const auto& w : warnings) std::cout << "warning: " << w << "\n";
    return problems.empty() ? 0 : kExitConfig;
  }
  if (!problems.empty()) {
    std::cerr << "xpra-brokerd: configuration error:\n";
    for (const auto& p : problems) std::cerr << p << "\n";
    std::cerr << "(xpra-brokerd --check-config shows the whole configuration)\n";
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

// The broker's parts, wired: the host (probe, directories, cleaner, reaper,
// census), the core that decides, and the journal that makes it durable.
struct Broker {
  std::shared_ptr<XpraSharedDirs> xpra_dirs;
  StaleArtifactCleaner cleaner;
  AsioLeaseReaper reaper;
  // The time windows of reaped leases, for counting what outlived them.
  OrphanWatch orphans;
  // X servers and orphans of ended leases per user, counted on a thread of
  // its own (status, watchdog, metrics).
  BackgroundXServerCensus census{std::chrono::seconds(5), &orphans};
  LinuxHost host;
  LeaseCore core;
  std::unique_ptr<DurableLeases> durable;

  Broker(boost::asio::io_context& io, const BrokerConfig& config, OpenedResources& opened,
         const XpraSocketDirPlan& xpra_plan, const std::string& hostname)
      // Opened as the broker's own user, with its capabilities settled: the
      // probe and the cleaner share these fds.
      : xpra_dirs(std::make_shared<XpraSharedDirs>(xpra_plan.shared, ::geteuid())),
        cleaner(config.x11_tmp_dir, config.runtime_dir, hostname, xpra_dirs),
        reaper(io, cleaner, config.x11_tmp_dir, std::chrono::milliseconds(config.reap_grace_ms)),
        host(std::make_unique<DisplayProbe>(config.x11_tmp_dir, config.runtime_dir, hostname, xpra_dirs),
             std::make_unique<UserDirectories>(std::move(opened.runtime_dir), config.runtime_dir, ::getegid())),
        core(core_settings(config), opened.policy, host) {
    for (const auto& d : xpra_dirs->report())
      spdlog::info("xpra socket dir {} (from {}): {}", d.path, d.source, d.state);
    reaper.use_probe(&host.probe());
    reaper.record_ended_leases_in(&orphans);
    host.set_lifecycle(&reaper, &cleaner);
    host.set_x_server_census(&census);
    host.set_xpra_socket_dir_notes(xpra_plan.notes);
    if (opened.journal) {
      durable = std::make_unique<DurableLeases>(*opened.journal, core);
      durable->restore(std::chrono::seconds(config.reattach_grace_seconds));
    }
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
    const bool degraded = broker.durable && broker.durable->health().degraded;
    std::string status = "serving: " + std::to_string(broker.core.leases().size()) + " lease(s), " +
                         std::to_string(broker.core.allocator().free_count()) + " free display(s)" +
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

// SIGHUP re-reads the configuration: log-level applies at once; every other
// key needs a restart (leases survive it through the journal), and the log
// says which changed. A file that does not parse changes nothing.
void reload_on_sighup(boost::asio::signal_set& hangup, const ParsedArgs& args, const BrokerConfig& running) {
  hangup.async_wait([&](boost::system::error_code ec, int) {
    if (ec) return;
    try {
      const BrokerConfig fresh = load_config(args.cmd);
      spdlog::set_level(spdlog::level::from_str(fresh.log_level));
      std::string pending;
      const auto now = effective_config(fresh), before = effective_config(running);
      for (std::size_t i = 0; i < now.size() && i < before.size(); ++i)
        if (now[i].second != before[i].second && now[i].first != "log-level")
          pending += (pending.empty() ? "" : ", ") + now[i].first;
      spdlog::info("SIGHUP: configuration re-read; log-level={} applied{}", fresh.log_level,
                   pending.empty() ? "" : "; changed but applied only by a restart: " + pending);
    } catch (const std::exception& e) {
      spdlog::error("SIGHUP: the configuration does not load; the running one is kept: {}", e.what());
    }
    reload_on_sighup(hangup, args, running);
  });
}

}  // namespace

int main(int argc, char** argv) {
  ParsedArgs args;
  if (int rc = parse_args(argc, argv, args); rc >= 0) return rc;
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
  Broker broker(io, config, opened, xpra_plan, local_hostname());
  broker.core.set_warnings(warnings);

  // Every second: recovered leases whose holder did not come back are
  // reaped, owed journal records are written, systemd hears how it goes.
  ServiceNotifier notifier;
  PeriodicDuty every_second(io, std::chrono::seconds(1), [&] {
    broker.core.expire_detached();
    if (broker.durable) broker.durable->retry();
    notifier.tell(broker);
  });
  every_second.start();
  // Leak watchdog: X servers per user on the host.
  PeriodicDuty leak_check(io, std::chrono::seconds(config.leak_check_seconds),
                          [&] { broker.core.check_for_leaked_x_servers(); });
  leak_check.start();
  NameWatchFollower name_events(io, broker.host.probe());
  name_events.start();

  BrokerServer server(io, broker.core, broker.durable.get(), opened.listener.release(),
                      ServerLimits{config.max_connections_per_user, std::chrono::seconds(config.idle_timeout_seconds),
                                   config.reads_per_second, config.read_burst});
  server.start();
  boost::asio::signal_set hangup(io, SIGHUP);
  reload_on_sighup(hangup, args, config);
  boost::asio::signal_set signals(io, SIGINT, SIGTERM);
  signals.async_wait([&](boost::system::error_code ec, int signo) {
    if (ec) return;
    spdlog::info("received {}, shutting down", ::strsignal(signo));
    sd_notify(0, "STOPPING=1");
    server.stop();
    leak_check.cancel();
    every_second.cancel();
    hangup.cancel();
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
