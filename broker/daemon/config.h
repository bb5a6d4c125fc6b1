// Broker configuration: defaults, the config file and `--key=value` options.
//
// One table of keys (config.cpp) serves the file and the command line, so a
// key documented in one place works in both. Parsing is pure: it returns
// errors with file, line and reason and never exits or logs.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "core/lease_core.h"  // CoreSettings

namespace xpra_broker {

struct BrokerConfig {
  std::string socket = "/run/xpra/broker.sock";
  std::string runtime_dir = "/run/xpra";
  // The keys the core uses default to the core's settings (one place:
  // CoreSettings in core/lease_core.h).
  std::uint32_t display_first = kCoreDefaults.display_first;
  std::uint32_t display_last = kCoreDefaults.display_last;
  // Who may ask for a display. Empty: every local user. Root is always allowed.
  std::vector<std::string> allowed_groups;
  // Who may list and release everyone's leases, besides root.
  std::vector<std::string> admin_groups;
  std::uint32_t max_leases_per_user = kCoreDefaults.max_leases_per_user;
  std::uint32_t max_leases = kCoreDefaults.max_leases;
  std::uint32_t max_connections_per_user = 64;
  // A connection that holds no lease and sends no request for this long is
  // closed (every user could otherwise park connections forever).
  std::uint32_t idle_timeout_seconds = 30;
  // status and list per user: answers a second, and how many at once; over
  // that they are answered late (0: no pacing).
  std::uint32_t reads_per_second = 10;
  std::uint32_t read_burst = 20;
  // Seconds a display found in use by something outside the broker is
  // skipped before it is probed again.
  std::uint32_t recheck_seconds = kCoreDefaults.recheck_seconds;
  // Lifecycle: reaping, quarantine, restart-loop defence, leak watchdog.
  std::uint32_t reap_grace_ms = 3000;
  std::uint32_t quarantine_seconds = kCoreDefaults.quarantine_seconds;
  // Quarantines one user's confirmed conflict reports may hold at once.
  std::uint32_t max_quarantines_per_user = kCoreDefaults.max_quarantines_per_user;
  std::uint32_t acquire_burst = kCoreDefaults.restart_guard.acquire_burst;
  std::uint32_t acquires_per_minute = kCoreDefaults.restart_guard.acquires_per_minute;
  std::uint32_t failures_before_backoff = kCoreDefaults.restart_guard.failures_before_backoff;
  std::uint32_t backoff_base_ms = static_cast<std::uint32_t>(kCoreDefaults.restart_guard.backoff_base.count());
  std::uint32_t backoff_max_seconds = static_cast<std::uint32_t>(
      std::chrono::duration_cast<std::chrono::seconds>(kCoreDefaults.restart_guard.backoff_max).count());
  std::uint32_t healthy_after_seconds = static_cast<std::uint32_t>(
      std::chrono::duration_cast<std::chrono::seconds>(kCoreDefaults.restart_guard.healthy_after).count());
  // Warn when one user runs more X servers than this (0: max-leases-per-user + 1).
  std::uint32_t xserver_warn_per_user = kCoreDefaults.xserver_warn_per_user;
  bool clean_stale = kCoreDefaults.clean_stale;
  // Durable leases.
  bool journal = true;
  // Refuse to start without CAP_CHOWN, CAP_FOWNER and CAP_KILL instead of
  // running with the features that need them degraded.
  bool require_capabilities = false;
  std::uint32_t reattach_grace_seconds = 60;
  // When started as root: the user and group to switch to. Empty: the
  // packaged xpra-broker and xpra (start-up refuses if they are missing);
  // "root" keeps root, and only then does the broker stay root.
  std::string user;
  std::string group;
  std::string log_level = "info";
  // Where log lines go: "journal" (journald, with priorities and fields),
  // "stderr" (plain lines), or "auto": the journal when stderr is connected
  // to it (started by systemd), stderr otherwise.
  std::string log_target = "auto";
  // How often the leak watchdog counts each user's X servers.
  std::uint32_t leak_check_seconds = 30;
  // Xpra's system config dirs, read in this order for its socket-dirs and
  // socket-dir the way Xpra 3.1 reads them (xpra_config.h); empty: Xpra's
  // config is not read. The shared ones of those dirs, plus
  // xpra_socket_dirs, are checked for "<host>-<N>" like the runtime dir.
  std::vector<std::string> xpra_config_dirs = {"/etc/xpra", "/usr/local/etc/xpra", "/etc/xdg/xpra"};
  std::vector<std::string> xpra_socket_dirs;
  // Directory holding X's lock files and the X11-unix socket directory.
  // Only tests point this elsewhere; X servers always use /tmp.
  std::string x11_tmp_dir = "/tmp";

  // Where each key that is not at its default was set: "FILE:LINE" or
  // "command line (--KEY)", so a problem found later (an unknown group, an
  // unsafe directory) points at the line to fix.
  std::map<std::string, std::string> origin;
};

// "FILE:LINE: text" (or "command line (--KEY): text") where `key` was set,
// plain `text` for a default.
std::string located(const BrokerConfig& config, const std::string& key, const std::string& text);

struct ConfigError {
  std::string source;  // file name, or "command line"
  int line = 0;        // 0 when not from a file
  std::string message;
  std::string to_string() const;
};

// Applies one `key = value` setting. Returns an error message, or nullopt.
std::optional<std::string> apply_config_setting(BrokerConfig& config, const std::string& key, const std::string& value);

// Parses config file text ("key = value" lines, '#' comments, blank lines).
std::vector<ConfigError> parse_config_text(BrokerConfig& config, const std::string& text, const std::string& source);

// Checks the settings that depend on each other (max-leases-per-user against
// max-leases, socket against runtime-dir); single values are checked by the
// setters.
std::vector<ConfigError> validate_config(const BrokerConfig& config);

// Every key with its one-line help, for --help and the docs test.
struct ConfigKeyInfo {
  const char* key;
  const char* help;
};
const std::vector<ConfigKeyInfo>& config_keys();

// Every key with its value in `config`, in the order of config_keys(), as
// a config file would spell it (what --check-config prints).
std::vector<std::pair<std::string, std::string>> effective_config(const BrokerConfig& config);

// The part of the configuration the lease core decides by.
CoreSettings core_settings(const BrokerConfig& config);

}  // namespace xpra_broker
