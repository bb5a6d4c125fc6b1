#include "daemon/config.h"

#include <algorithm>
#include <charconv>
#include <functional>
#include <map>
#include <sstream>
#include <type_traits>

namespace xpra_broker {

namespace {

std::string trim(const std::string& s) {
  const auto begin = s.find_first_not_of(" \t\r");
  if (begin == std::string::npos) return {};
  const auto end = s.find_last_not_of(" \t\r");
  return s.substr(begin, end - begin + 1);
}

std::optional<std::uint32_t> parse_uint(const std::string& text, std::uint32_t max) {
  std::uint32_t value = 0;
  const char* end = text.data() + text.size();
  auto [ptr, ec] = std::from_chars(text.data(), end, value);
  if (ec != std::errc{} || ptr != end || text.empty() || value > max) return std::nullopt;
  return value;
}

std::vector<std::string> split_list(const std::string& text) {
  std::vector<std::string> out;
  std::string item;
  std::istringstream in(text);
  while (std::getline(in, item, ',')) {
    item = trim(item);
    if (!item.empty()) out.push_back(item);
  }
  return out;
}

bool valid_name(const std::string& name) {
  // POSIX portable user/group names, plus the '-' and '.' Debian allows.
  if (name.empty() || name.size() > 32 || name[0] == '-') return false;
  return std::all_of(name.begin(), name.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' || c == '-' ||
           c == '.';
  });
}

using Setter = std::function<std::optional<std::string>(BrokerConfig&, const std::string&)>;
using Getter = std::function<std::string(const BrokerConfig&)>;

// How one key is read from text and written back as text (for
// --check-config, which prints the whole effective configuration).
struct Accessor {
  Setter set;
  Getter get;
};

struct KeyEntry {
  ConfigKeyInfo info;
  Accessor access;
};

template <typename T>
Getter field_text(T BrokerConfig::*field) {
  return [field](const BrokerConfig& c) {
    if constexpr (std::is_same_v<T, bool>)
      return std::string(c.*field ? "yes" : "no");
    else if constexpr (std::is_same_v<T, std::string>)
      return c.*field;
    else if constexpr (std::is_same_v<T, std::vector<std::string>>) {
      std::string out;
      for (const auto& item : c.*field) out += (out.empty() ? "" : ",") + item;
      return out;
    } else
      return std::to_string(c.*field);
  };
}

Accessor absolute_path(std::string BrokerConfig::*field) {
  return {[field](BrokerConfig& c, const std::string& v) -> std::optional<std::string> {
            if (v.empty() || v[0] != '/') return "must be an absolute path";
            if (v.size() > 107) return "path too long (at most 107 bytes for a Unix socket path)";
            c.*field = v;
            return std::nullopt;
          },
          field_text(field)};
}

Accessor bounded_uint(std::uint32_t BrokerConfig::*field, std::uint32_t min, std::uint32_t max) {
  return {[=](BrokerConfig& c, const std::string& v) -> std::optional<std::string> {
            auto n = parse_uint(v, max);
            if (!n || *n < min)
              return "must be a whole number from " + std::to_string(min) + " to " + std::to_string(max);
            c.*field = *n;
            return std::nullopt;
          },
          field_text(field)};
}

Accessor yes_no(bool BrokerConfig::*field) {
  return {[field](BrokerConfig& c, const std::string& v) -> std::optional<std::string> {
            if (v == "yes" || v == "true" || v == "1")
              c.*field = true;
            else if (v == "no" || v == "false" || v == "0")
              c.*field = false;
            else
              return "must be yes or no";
            return std::nullopt;
          },
          field_text(field)};
}

Accessor name_list(std::vector<std::string> BrokerConfig::*field) {
  return {[field](BrokerConfig& c, const std::string& v) -> std::optional<std::string> {
            auto names = split_list(v);
            for (const auto& n : names)
              if (!valid_name(n)) return "'" + n + "' is not a valid group name";
            c.*field = std::move(names);
            return std::nullopt;
          },
          field_text(field)};
}

Accessor single_name(std::string BrokerConfig::*field) {
  return {[field](BrokerConfig& c, const std::string& v) -> std::optional<std::string> {
            if (!v.empty() && !valid_name(v)) return "'" + v + "' is not a valid name";
            c.*field = v;
            return std::nullopt;
          },
          field_text(field)};
}

// Comma-separated absolute directories; `fixed` refuses what Xpra would
// expand per user ($UID, ~): the broker checks one directory for everyone.
Accessor dir_list(std::vector<std::string> BrokerConfig::*field, bool fixed) {
  return {[=](BrokerConfig& c, const std::string& v) -> std::optional<std::string> {
            auto dirs = split_list(v);
            for (const auto& d : dirs) {
              if (d[0] != '/') return "'" + d + "' is not an absolute path";
              if (fixed && d.find('$') != std::string::npos)
                return "'" + d + "' depends on the user ($...): a per-user directory is the user's own business";
            }
            c.*field = std::move(dirs);
            return std::nullopt;
          },
          field_text(field)};
}

// Display numbers above 65535 are not usable by X (TCP port 6000+N).
constexpr std::uint32_t kMaxDisplay = 59535;

const std::vector<KeyEntry>& key_table() {
  static const std::vector<KeyEntry> table = {
      {{"socket", "Unix socket the broker listens on (default /run/xpra/broker.sock)"},
       absolute_path(&BrokerConfig::socket)},
      {{"runtime-dir", "directory the broker owns; per-user directories are created in it (default /run/xpra)"},
       absolute_path(&BrokerConfig::runtime_dir)},
      {{"displays", "range of display numbers to hand out, FIRST-LAST (default 100-999)"},
       {[](BrokerConfig& c, const std::string& v) -> std::optional<std::string> {
         const auto dash = v.find('-');
         if (dash == std::string::npos) return "must be a range FIRST-LAST, e.g. 100-999";
         auto first = parse_uint(trim(v.substr(0, dash)), kMaxDisplay);
         auto last = parse_uint(trim(v.substr(dash + 1)), kMaxDisplay);
         if (!first || !last) return "display numbers must be whole numbers from 0 to " + std::to_string(kMaxDisplay);
         if (*first > *last) return "the first display is above the last";
         c.display_first = *first;
         c.display_last = *last;
         return std::nullopt;
       },
        [](const BrokerConfig& c) { return std::to_string(c.display_first) + "-" + std::to_string(c.display_last); }}},
      {{"allowed-groups", "comma-separated groups whose members may take displays; empty: every user (root always)"},
       name_list(&BrokerConfig::allowed_groups)},
      {{"admin-groups", "comma-separated groups whose members may list and release every lease (root always)"},
       name_list(&BrokerConfig::admin_groups)},
      {{"max-leases-per-user", "displays one user may hold at once (default 8)"},
       bounded_uint(&BrokerConfig::max_leases_per_user, 1, 100000)},
      {{"max-leases", "displays held at once by everyone together (default 512)"},
       bounded_uint(&BrokerConfig::max_leases, 1, 100000)},
      {{"max-connections-per-user", "open connections one user may hold (default 64)"},
       bounded_uint(&BrokerConfig::max_connections_per_user, 1, 100000)},
      {{"idle-timeout-seconds", "close a connection that holds no lease and sends nothing for this long (default 30)"},
       bounded_uint(&BrokerConfig::idle_timeout_seconds, 1, 86400)},
      {{"reads-per-second", "status and list answers per user and second; more are answered late, 0: no limit (default 10)"},
       bounded_uint(&BrokerConfig::reads_per_second, 0, 1000000)},
      {{"read-burst", "status and list answers one user gets at once before reads-per-second applies (default 20)"},
       bounded_uint(&BrokerConfig::read_burst, 1, 1000000)},
      {{"recheck-seconds", "how long a display used outside the broker is skipped before it is probed again (default 30)"},
       bounded_uint(&BrokerConfig::recheck_seconds, 1, 86400)},
      {{"reap-grace-ms", "time a lease's processes get between SIGTERM and SIGKILL when it ends (default 3000)"},
       bounded_uint(&BrokerConfig::reap_grace_ms, 0, 600000)},
      {{"quarantine-seconds", "how long a display is skipped after a start on it failed with a display conflict (default 300)"},
       bounded_uint(&BrokerConfig::quarantine_seconds, 0, 86400)},
      {{"max-quarantines-per-user", "displays one user's confirmed conflict reports may keep quarantined at once (default 3)"},
       bounded_uint(&BrokerConfig::max_quarantines_per_user, 0, 100000)},
      {{"acquire-burst", "acquires one user may make at once before the rate limit applies (default 10)"},
       bounded_uint(&BrokerConfig::acquire_burst, 1, 100000)},
      {{"acquires-per-minute", "sustained acquires per user and minute (default 60)"},
       bounded_uint(&BrokerConfig::acquires_per_minute, 1, 1000000)},
      {{"failures-before-backoff", "consecutive failed sessions of a user before back-off starts (default 3)"},
       bounded_uint(&BrokerConfig::failures_before_backoff, 1, 1000)},
      {{"backoff-base-ms", "first back-off delay; it doubles with each further failure (default 1000)"},
       bounded_uint(&BrokerConfig::backoff_base_ms, 1, 3600000)},
      {{"backoff-max-seconds", "longest back-off delay (default 300)"},
       bounded_uint(&BrokerConfig::backoff_max_seconds, 1, 86400)},
      {{"healthy-after-seconds", "a session that ran this long is not a failure, whatever its exit status (default 10)"},
       bounded_uint(&BrokerConfig::healthy_after_seconds, 0, 86400)},
      {{"xserver-warn-per-user", "warn when a user runs more X servers than this; 0: max-leases-per-user + 1 (default 0)"},
       bounded_uint(&BrokerConfig::xserver_warn_per_user, 0, 100000)},
      {{"clean-stale", "remove stale X lock and socket files in the range (yes or no, default yes)"},
       yes_no(&BrokerConfig::clean_stale)},
      {{"journal", "keep leases in <runtime-dir>/leases.journal so a restarted broker keeps them (yes or no, default yes)"},
       yes_no(&BrokerConfig::journal)},
      {{"require-capabilities", "refuse to start without cap_chown, cap_fowner and cap_kill instead of degrading (yes or no, default no)"},
       yes_no(&BrokerConfig::require_capabilities)},
      {{"reattach-grace-seconds", "after a restart, how long a recovered lease waits for its holder to reattach (default 60)"},
       bounded_uint(&BrokerConfig::reattach_grace_seconds, 1, 86400)},
      {{"user", "when started as root, the user to run as (default xpra-broker; root: stay root, not advised)"},
       single_name(&BrokerConfig::user)},
      {{"group", "when started as root, the group to run as (default: xpra, or the user's group when user= is set)"},
       single_name(&BrokerConfig::group)},
      {{"log-level", "trace, debug, info, warn, error or critical (default info)"},
       {[](BrokerConfig& c, const std::string& v) -> std::optional<std::string> {
         static const char* levels[] = {"trace", "debug", "info", "warn", "error", "critical"};
         if (std::find(std::begin(levels), std::end(levels), v) == std::end(levels))
           return "must be one of trace, debug, info, warn, error, critical";
         c.log_level = v;
         return std::nullopt;
       },
        field_text(&BrokerConfig::log_level)}},
      {{"log-target", "auto, journal or stderr: journald with priorities and fields, or plain lines (default auto: the "
                      "journal when stderr is connected to it)"},
       {[](BrokerConfig& c, const std::string& v) -> std::optional<std::string> {
          if (v != "auto" && v != "journal" && v != "stderr") return "must be auto, journal or stderr";
          c.log_target = v;
          return std::nullopt;
        },
        field_text(&BrokerConfig::log_target)}},
      {{"leak-check-seconds", "how often the leak watchdog counts each user's X servers (default 30)"},
       bounded_uint(&BrokerConfig::leak_check_seconds, 1, 86400)},
      {{"xpra-config-dirs", "Xpra's system config dirs, read in Xpra's order for its socket-dirs (default /etc/xpra, "
                            "/usr/local/etc/xpra, /etc/xdg/xpra; empty: do not read Xpra's config)"},
       dir_list(&BrokerConfig::xpra_config_dirs, false)},
      {{"xpra-socket-dirs", "shared Xpra socket dirs to check and clean besides those of Xpra's config (comma-separated; "
                            "with xpra-config-dirs empty, the only ones)"},
       dir_list(&BrokerConfig::xpra_socket_dirs, true)},
      {{"x11-tmp-dir", "where X keeps .X<N>-lock and .X11-unix (default /tmp; change only for tests)"},
       absolute_path(&BrokerConfig::x11_tmp_dir)},
  };
  return table;
}

}  // namespace

std::string ConfigError::to_string() const {
  if (line > 0) return source + ":" + std::to_string(line) + ": " + message;
  return source + ": " + message;
}

std::optional<std::string> apply_config_setting(BrokerConfig& config, const std::string& key, const std::string& value) {
  for (const auto& entry : key_table())
    if (key == entry.info.key) {
      if (auto err = entry.access.set(config, value)) return "bad value for '" + key + "': " + *err;
      return std::nullopt;
    }
  return "unknown key '" + key + "' (see xpra-brokerd --help for the list)";
}

std::vector<ConfigError> parse_config_text(BrokerConfig& config, const std::string& text, const std::string& source) {
  std::vector<ConfigError> errors;
  std::istringstream in(text);
  std::string raw;
  int line_no = 0;
  // A key given twice is refused: which line wins is not obvious, and an
  // edit to the first would silently change nothing.
  std::map<std::string, int> first_line;
  while (std::getline(in, raw)) {
    ++line_no;
    const std::string line = trim(raw);
    if (line.empty() || line[0] == '#') continue;
    const auto eq = line.find('=');
    if (eq == std::string::npos) {
      errors.push_back({source, line_no, "expected 'key = value', got '" + line + "'"});
      continue;
    }
    const std::string key = trim(line.substr(0, eq));
    const std::string value = trim(line.substr(eq + 1));
    if (const auto [first, fresh] = first_line.try_emplace(key, line_no); !fresh) {
      errors.push_back({source, line_no,
                        "'" + key + "' is given twice (first on line " + std::to_string(first->second) +
                            "); keep one of them"});
      continue;
    }
    if (auto err = apply_config_setting(config, key, value)) errors.push_back({source, line_no, *err});
    else config.origin[key] = source + ":" + std::to_string(line_no);
  }
  return errors;
}

std::string located(const BrokerConfig& config, const std::string& key, const std::string& text) {
  const auto where = config.origin.find(key);
  return where == config.origin.end() ? text : where->second + ": " + text;
}

std::vector<ConfigError> validate_config(const BrokerConfig& config) {
  std::vector<ConfigError> errors;
  if (config.max_leases_per_user > config.max_leases)
    errors.push_back({"configuration", 0, "max-leases-per-user is above max-leases"});
  if (config.socket == config.runtime_dir)
    errors.push_back({"configuration", 0, "socket and runtime-dir are the same path"});
  return errors;
}

std::vector<std::pair<std::string, std::string>> effective_config(const BrokerConfig& config) {
  std::vector<std::pair<std::string, std::string>> out;
  for (const auto& entry : key_table()) out.emplace_back(entry.info.key, entry.access.get(config));
  return out;
}

const std::vector<ConfigKeyInfo>& config_keys() {
  static const std::vector<ConfigKeyInfo> keys = [] {
    std::vector<ConfigKeyInfo> out;
    for (const auto& entry : key_table()) out.push_back(entry.info);
    return out;
  }();
  return keys;
}

CoreSettings core_settings(const BrokerConfig& c) {
  CoreSettings s;
  s.display_first = c.display_first;
  s.display_last = c.display_last;
  s.max_leases = c.max_leases;
  s.max_leases_per_user = c.max_leases_per_user;
  s.recheck_seconds = c.recheck_seconds;
  s.clean_stale = c.clean_stale;
  s.quarantine_seconds = c.quarantine_seconds;
  s.max_quarantines_per_user = c.max_quarantines_per_user;
  s.xserver_warn_per_user = c.xserver_warn_per_user;
  s.restart_guard = RestartGuardSettings{c.acquire_burst,
                                         c.acquires_per_minute,
                                         c.failures_before_backoff,
                                         std::chrono::milliseconds(c.backoff_base_ms),
                                         std::chrono::seconds(c.backoff_max_seconds),
                                         std::chrono::seconds(c.healthy_after_seconds)};
  return s;
}

}  // namespace xpra_broker
