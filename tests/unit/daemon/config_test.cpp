// config.h: every key accepts its good values and refuses bad ones with a
// reason; the file parser reports file:line; validate_config checks the
// settings together.
#include "daemon/config.h"

#include <gtest/gtest.h>

#include <functional>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "test_support.h"

namespace xpra_broker {
namespace {

using testing::Contains;

// Every whole-number key: its field and its documented bounds.
struct NumberKey {
  const char* key;
  std::uint32_t BrokerConfig::*field;
  std::uint32_t min;
  std::uint32_t max;
};
const std::vector<NumberKey>& number_keys() {
  static const std::vector<NumberKey> keys = {
      {"max-leases-per-user", &BrokerConfig::max_leases_per_user, 1, 100000},
      {"max-leases", &BrokerConfig::max_leases, 1, 100000},
      {"max-connections-per-user", &BrokerConfig::max_connections_per_user, 1, 100000},
      {"recheck-seconds", &BrokerConfig::recheck_seconds, 1, 86400},
      {"reap-grace-ms", &BrokerConfig::reap_grace_ms, 0, 600000},
      {"quarantine-seconds", &BrokerConfig::quarantine_seconds, 0, 86400},
      {"acquire-burst", &BrokerConfig::acquire_burst, 1, 100000},
      {"acquires-per-minute", &BrokerConfig::acquires_per_minute, 1, 1000000},
      {"failures-before-backoff", &BrokerConfig::failures_before_backoff, 1, 1000},
      {"backoff-base-ms", &BrokerConfig::backoff_base_ms, 1, 3600000},
      {"backoff-max-seconds", &BrokerConfig::backoff_max_seconds, 1, 86400},
      {"healthy-after-seconds", &BrokerConfig::healthy_after_seconds, 0, 86400},
      {"xserver-warn-per-user", &BrokerConfig::xserver_warn_per_user, 0, 100000},
      {"reattach-grace-seconds", &BrokerConfig::reattach_grace_seconds, 1, 86400},
      {"idle-timeout-seconds", &BrokerConfig::idle_timeout_seconds, 1, 86400},
      {"reads-per-second", &BrokerConfig::reads_per_second, 0, 1000000},
      {"read-burst", &BrokerConfig::read_burst, 1, 1000000},
      {"max-quarantines-per-user", &BrokerConfig::max_quarantines_per_user, 0, 100000},
  };
  return keys;
}

// The yes/no keys and the field each sets.
std::vector<std::pair<std::string, bool BrokerConfig::*>> yes_no_keys() {
  return {{"clean-stale", &BrokerConfig::clean_stale},
          {"journal", &BrokerConfig::journal},
          {"require-capabilities", &BrokerConfig::require_capabilities}};
}

// A value that must be accepted, and what the config must look like then.
struct GoodValue {
  std::string key;
  std::string value;
  std::function<bool(const BrokerConfig&)> applied;
};

std::string repeat(char c, std::size_t n) { return std::string(n, c); }

// 107 bytes: the longest path a Unix socket address holds.
const std::string kPath107 = "/" + repeat('p', 106);
const std::string kPath108 = "/" + repeat('p', 107);

std::vector<GoodValue> good_values() {
  std::vector<GoodValue> out = {
      {"socket", "/run/test/broker.sock", [](const BrokerConfig& c) { return c.socket == "/run/test/broker.sock"; }},
      {"socket", kPath107, [](const BrokerConfig& c) { return c.socket == kPath107; }},
      {"runtime-dir", "/srv/xpra", [](const BrokerConfig& c) { return c.runtime_dir == "/srv/xpra"; }},
      {"runtime-dir", "/", [](const BrokerConfig& c) { return c.runtime_dir == "/"; }},
      {"x11-tmp-dir", "/var/tmp/x", [](const BrokerConfig& c) { return c.x11_tmp_dir == "/var/tmp/x"; }},
      {"log-target", "journal", [](const BrokerConfig& c) { return c.log_target == "journal"; }},
      {"log-target", "stderr", [](const BrokerConfig& c) { return c.log_target == "stderr"; }},
      {"leak-check-seconds", "5", [](const BrokerConfig& c) { return c.leak_check_seconds == 5; }},
      {"xpra-config-dirs", "/etc/xpra, /opt/xpra/etc/xpra",
       [](const BrokerConfig& c) {
         return c.xpra_config_dirs == std::vector<std::string>{"/etc/xpra", "/opt/xpra/etc/xpra"};
       }},
      {"xpra-config-dirs", "", [](const BrokerConfig& c) { return c.xpra_config_dirs.empty(); }},
      {"xpra-socket-dirs", "/tmp,/srv/xpra-shared",
       [](const BrokerConfig& c) {
         return c.xpra_socket_dirs == std::vector<std::string>{"/tmp", "/srv/xpra-shared"};
       }},
      {"xpra-socket-dirs", "", [](const BrokerConfig& c) { return c.xpra_socket_dirs.empty(); }},
      {"displays", "200-299",
       [](const BrokerConfig& c) { return c.display_first == 200 && c.display_last == 299; }},
      {"displays", "0-0", [](const BrokerConfig& c) { return c.display_first == 0 && c.display_last == 0; }},
      {"displays", "7-7", [](const BrokerConfig& c) { return c.display_first == 7 && c.display_last == 7; }},
      {"displays", "0-59535",
       [](const BrokerConfig& c) { return c.display_first == 0 && c.display_last == 59535; }},
      {"displays", " 10 - 20 ",
       [](const BrokerConfig& c) { return c.display_first == 10 && c.display_last == 20; }},
      {"allowed-groups", "xpra", [](const BrokerConfig& c) { return c.allowed_groups == std::vector<std::string>{"xpra"}; }},
      {"allowed-groups", " xpra , users,lab-1.x ,_svc",
       [](const BrokerConfig& c) {
         return c.allowed_groups == std::vector<std::string>{"xpra", "users", "lab-1.x", "_svc"};
       }},
      {"allowed-groups", "", [](const BrokerConfig& c) { return c.allowed_groups.empty(); }},
      {"allowed-groups", " , ,", [](const BrokerConfig& c) { return c.allowed_groups.empty(); }},
      {"allowed-groups", repeat('g', 32),
       [](const BrokerConfig& c) { return c.allowed_groups == std::vector<std::string>{repeat('g', 32)}; }},
      {"admin-groups", "wheel,sudo",
       [](const BrokerConfig& c) { return c.admin_groups == std::vector<std::string>{"wheel", "sudo"}; }},
      {"admin-groups", "", [](const BrokerConfig& c) { return c.admin_groups.empty(); }},
      {"user", "xpra-broker", [](const BrokerConfig& c) { return c.user == "xpra-broker"; }},
      {"user", "", [](const BrokerConfig& c) { return c.user.empty(); }},
      {"group", "xpra", [](const BrokerConfig& c) { return c.group == "xpra"; }},
      {"group", "", [](const BrokerConfig& c) { return c.group.empty(); }},
      {"log-level", "trace", [](const BrokerConfig& c) { return c.log_level == "trace"; }},
      {"log-level", "debug", [](const BrokerConfig& c) { return c.log_level == "debug"; }},
      {"log-level", "info", [](const BrokerConfig& c) { return c.log_level == "info"; }},
      {"log-level", "warn", [](const BrokerConfig& c) { return c.log_level == "warn"; }},
      {"log-level", "error", [](const BrokerConfig& c) { return c.log_level == "error"; }},
      {"log-level", "critical", [](const BrokerConfig& c) { return c.log_level == "critical"; }},
  };
  for (const auto& [key, field] : yes_no_keys()) {
    for (const std::string v : {"yes", "true", "1"})
      out.push_back({key, v, [field = field](const BrokerConfig& c) { return c.*field; }});
    for (const std::string v : {"no", "false", "0"})
      out.push_back({key, v, [field = field](const BrokerConfig& c) { return !(c.*field); }});
  }
  // Each number key at both bounds and in between.
  for (const auto& nk : number_keys()) {
    for (std::uint32_t v : {nk.min, nk.max, (nk.min + nk.max) / 2}) {
      const auto field = nk.field;
      out.push_back({nk.key, std::to_string(v), [field, v](const BrokerConfig& c) { return c.*field == v; }});
    }
  }
  return out;
}

// A value that must be refused, and a word the reason must contain.
struct BadValue {
  std::string key;
  std::string value;
  std::string reason_contains;
};

std::vector<BadValue> bad_values() {
  std::vector<BadValue> out = {
      {"socket", "run/broker.sock", "absolute path"},
      {"socket", "", "absolute path"},
      {"socket", "~/broker.sock", "absolute path"},
      {"socket", kPath108, "too long"},
      {"runtime-dir", "xpra", "absolute path"},
      {"runtime-dir", "", "absolute path"},
      {"runtime-dir", kPath108, "too long"},
      {"x11-tmp-dir", "tmp", "absolute path"},
      {"log-target", "syslog", "auto, journal or stderr"},
      {"leak-check-seconds", "0", "whole number"},
      {"x11-tmp-dir", "", "absolute path"},
      {"xpra-config-dirs", "etc/xpra", "absolute path"},
      {"xpra-config-dirs", "/etc/xpra,~/.xpra", "absolute path"},
      {"xpra-socket-dirs", "tmp", "absolute path"},
      {"xpra-socket-dirs", "/run/user/$UID/xpra", "per-user"},
      {"xpra-socket-dirs", "~/.xpra", "absolute path"},
      {"displays", "999-100", "first display is above the last"},
      {"displays", "101-100", "first display is above the last"},
      {"displays", "100", "FIRST-LAST"},
      {"displays", "", "FIRST-LAST"},
      {"displays", "abc-def", "whole numbers"},
      {"displays", "100-abc", "whole numbers"},
      {"displays", "x100-200", "whole numbers"},
      {"displays", "100-", "whole numbers"},
      {"displays", "-100", "whole numbers"},
      {"displays", "-5-10", "whole numbers"},
      {"displays", "1-2-3", "whole numbers"},
      {"displays", "1.5-9", "whole numbers"},
      {"displays", "0-59536", "whole numbers"},
      {"displays", "59536-59537", "whole numbers"},
      {"displays", "100-4294967296", "whole numbers"},
      {"displays", "100-99999999999999999999", "whole numbers"},
      {"allowed-groups", "-xpra", "not a valid group name"},
      {"allowed-groups", "xpra,b@d", "'b@d'"},
      {"allowed-groups", "two words", "not a valid group name"},
      {"allowed-groups", "a/b", "not a valid group name"},
      {"allowed-groups", repeat('g', 33), "not a valid group name"},
      {"admin-groups", "wheel,;rm", "not a valid group name"},
      {"user", "-root", "not a valid name"},
      {"user", "a b", "not a valid name"},
      {"user", repeat('u', 33), "not a valid name"},
      {"group", "x:y", "not a valid name"},
      {"group", "-g", "not a valid name"},
      {"log-level", "INFO", "must be one of"},
      {"log-level", "verbose", "must be one of"},
      {"log-level", "", "must be one of"},
      {"log-level", "info ", "must be one of"},
  };
  for (const auto& [key, field] : yes_no_keys())
    for (const std::string v : {"maybe", "", "YES", "2"}) out.push_back({key, v, "yes or no"});
  // Every number key refuses values just outside its bounds and the same
  // kinds of garbage.
  for (const auto& nk : number_keys()) {
    std::vector<std::string> values = {std::to_string(std::uint64_t{nk.max} + 1), "-1", "abc", "", " 5", "5 ",
                                       "5x", "+5", "0x10", "1e3", "4294967296", "99999999999999999999"};
    if (nk.min > 0) values.push_back(std::to_string(nk.min - 1));
    for (const auto& v : values) out.push_back({nk.key, v, "whole number"});
  }
  return out;
}

TEST(ConfigTest, DefaultsAreTheDocumentedOnes) {
  const BrokerConfig c;
  EXPECT_EQ(c.socket, "/run/xpra/broker.sock");
  EXPECT_EQ(c.runtime_dir, "/run/xpra");
  EXPECT_EQ(c.display_first, 100u);
  EXPECT_EQ(c.display_last, 999u);
  EXPECT_TRUE(c.allowed_groups.empty());
  EXPECT_TRUE(c.admin_groups.empty());
  EXPECT_EQ(c.max_leases_per_user, 8u);
  EXPECT_EQ(c.max_leases, 512u);
  EXPECT_EQ(c.max_connections_per_user, 64u);
  EXPECT_EQ(c.recheck_seconds, 30u);
  EXPECT_TRUE(c.clean_stale);
  for (const auto& nk : number_keys()) {
    EXPECT_GE(c.*nk.field, nk.min) << nk.key << " default below its own minimum";
    EXPECT_LE(c.*nk.field, nk.max) << nk.key << " default above its own maximum";
  }
  EXPECT_EQ(c.log_level, "info");
  EXPECT_EQ(c.x11_tmp_dir, "/tmp");
  EXPECT_EQ(c.xpra_config_dirs, (std::vector<std::string>{"/etc/xpra", "/usr/local/etc/xpra", "/etc/xdg/xpra"}));
  EXPECT_TRUE(c.xpra_socket_dirs.empty());
  EXPECT_TRUE(validate_config(c).empty());
}

// One set of defaults: the settings the core gets from a config without a
// file are the core's own defaults, which its tests (tests/core) run on.
TEST(ConfigTest, TheCoresDefaultsAreTheConfigurationsDefaults) {
  const CoreSettings from_config = core_settings(BrokerConfig{});
  const CoreSettings core;
  EXPECT_EQ(from_config.display_first, core.display_first);
  EXPECT_EQ(from_config.display_last, core.display_last);
  EXPECT_EQ(from_config.max_leases, core.max_leases);
  EXPECT_EQ(from_config.max_leases_per_user, core.max_leases_per_user);
  EXPECT_EQ(from_config.recheck_seconds, core.recheck_seconds);
  EXPECT_EQ(from_config.clean_stale, core.clean_stale);
  EXPECT_EQ(from_config.quarantine_seconds, core.quarantine_seconds);
  EXPECT_EQ(from_config.max_quarantines_per_user, core.max_quarantines_per_user);
  EXPECT_EQ(from_config.xserver_warn_per_user, core.xserver_warn_per_user);
  EXPECT_EQ(from_config.restart_guard.acquire_burst, core.restart_guard.acquire_burst);
  EXPECT_EQ(from_config.restart_guard.acquires_per_minute, core.restart_guard.acquires_per_minute);
  EXPECT_EQ(from_config.restart_guard.failures_before_backoff, core.restart_guard.failures_before_backoff);
  EXPECT_EQ(from_config.restart_guard.backoff_base, core.restart_guard.backoff_base);
  EXPECT_EQ(from_config.restart_guard.backoff_max, core.restart_guard.backoff_max);
  EXPECT_EQ(from_config.restart_guard.healthy_after, core.restart_guard.healthy_after);
  // The values a deployment without a config file runs on (README, man page).
  EXPECT_EQ(core.display_last, 999u);
  EXPECT_EQ(core.max_leases_per_user, 8u);
  EXPECT_EQ(core.max_quarantines_per_user, 3u);
  EXPECT_EQ(core.quarantine_seconds, 300u);
}

TEST(ConfigTest, EveryKeyAcceptsItsGoodValues) {
  for (const auto& good : good_values()) {
    SCOPED_TRACE(good.key + " = '" + good.value + "'");
    BrokerConfig c;
    const auto err = apply_config_setting(c, good.key, good.value);
    EXPECT_FALSE(err.has_value()) << *err;
    EXPECT_TRUE(good.applied(c));
  }
}

TEST(ConfigTest, EveryKeyRefusesBadValuesWithAReasonAndKeepsTheOldValue) {
  for (const auto& bad : bad_values()) {
    SCOPED_TRACE(bad.key + " = '" + bad.value + "'");
    BrokerConfig c;
    const BrokerConfig before = c;
    const auto err = apply_config_setting(c, bad.key, bad.value);
    ASSERT_TRUE(err.has_value());
    EXPECT_TRUE(Contains(*err, "bad value for '" + bad.key + "'"));
    EXPECT_TRUE(Contains(*err, bad.reason_contains));
    // A refused value changes nothing.
    EXPECT_EQ(c.socket, before.socket);
    EXPECT_EQ(c.runtime_dir, before.runtime_dir);
    EXPECT_EQ(c.xpra_config_dirs, before.xpra_config_dirs);
    EXPECT_EQ(c.xpra_socket_dirs, before.xpra_socket_dirs);
    EXPECT_EQ(c.x11_tmp_dir, before.x11_tmp_dir);
    EXPECT_EQ(c.display_first, before.display_first);
    EXPECT_EQ(c.display_last, before.display_last);
    EXPECT_EQ(c.allowed_groups, before.allowed_groups);
    EXPECT_EQ(c.admin_groups, before.admin_groups);
    for (const auto& nk : number_keys()) EXPECT_EQ(c.*nk.field, before.*nk.field) << nk.key;
    EXPECT_EQ(c.clean_stale, before.clean_stale);
    EXPECT_EQ(c.user, before.user);
    EXPECT_EQ(c.group, before.group);
    EXPECT_EQ(c.log_level, before.log_level);
  }
}

// Every documented key is covered above by at least one good and one bad
// value, and every key tested here is documented: a key added without tests
// (or tests for a key that went away) fails here.
TEST(ConfigTest, EveryDocumentedKeyIsCoveredByGoodAndBadValues) {
  std::set<std::string> documented;
  for (const auto& info : config_keys()) {
    ASSERT_NE(info.key, nullptr);
    ASSERT_NE(info.help, nullptr);
    EXPECT_GT(std::string(info.help).size(), 10u) << info.key << " has no real help text";
    EXPECT_TRUE(documented.insert(info.key).second) << "duplicate key " << info.key;
  }
  std::set<std::string> with_good, with_bad;
  for (const auto& g : good_values()) with_good.insert(g.key);
  for (const auto& b : bad_values()) with_bad.insert(b.key);
  for (const auto& key : documented) {
    EXPECT_TRUE(with_good.count(key)) << "no good value tested for key " << key;
    EXPECT_TRUE(with_bad.count(key)) << "no bad value tested for key " << key;
  }
  for (const auto& key : with_good) EXPECT_TRUE(documented.count(key)) << key << " is not in config_keys()";
}

TEST(ConfigTest, TheEffectiveConfigurationNamesEveryKeyAndReadsBackToTheSameSettings) {
  // What --check-config prints is a config file that means the same.
  BrokerConfig original;
  for (const auto& g : good_values()) ASSERT_FALSE(apply_config_setting(original, g.key, g.value)) << g.key;
  const auto printed = effective_config(original);
  ASSERT_EQ(printed.size(), config_keys().size());
  for (std::size_t i = 0; i < printed.size(); ++i) EXPECT_EQ(printed[i].first, config_keys()[i].key);
  BrokerConfig again;
  for (const auto& [key, value] : printed) EXPECT_FALSE(apply_config_setting(again, key, value)) << key << " = " << value;
  EXPECT_EQ(effective_config(again), printed);
}

TEST(ConfigTest, UnknownKeysAreRefused) {
  for (const std::string key : {"sockets", "Socket", "display", "max_leases", "", " socket", "--socket", "#socket"}) {
    SCOPED_TRACE("key '" + key + "'");
    BrokerConfig c;
    const auto err = apply_config_setting(c, key, "/x");
    ASSERT_TRUE(err.has_value());
    EXPECT_TRUE(Contains(*err, "unknown key '" + key + "'"));
    EXPECT_EQ(c.socket, BrokerConfig{}.socket);
  }
}

TEST(ConfigTest, FileWithCommentsBlankLinesAndSpacesParses) {
  BrokerConfig c;
  const std::string text =
      "# xpra-brokerd.conf\n"
      "\n"
      "   \n"
      "\t# indented comment\n"
      "socket=/run/t/broker.sock\n"
      "  displays   =   300 - 310  \n"
      "allowed-groups = xpra, users\r\n"  // CRLF line ending
      "max-leases-per-user = 2\n"
      "log-level = debug";  // no newline at the end
  const auto errors = parse_config_text(c, text, "/etc/xpra/broker.conf");
  for (const auto& e : errors) ADD_FAILURE() << e.to_string();
  EXPECT_EQ(c.socket, "/run/t/broker.sock");
  EXPECT_EQ(c.display_first, 300u);
  EXPECT_EQ(c.display_last, 310u);
  EXPECT_EQ(c.allowed_groups, (std::vector<std::string>{"xpra", "users"}));
  EXPECT_EQ(c.max_leases_per_user, 2u);
  EXPECT_EQ(c.log_level, "debug");
}

TEST(ConfigTest, EmptyTextChangesNothing) {
  BrokerConfig c;
  EXPECT_TRUE(parse_config_text(c, "", "f").empty());
  EXPECT_TRUE(parse_config_text(c, "\n\n# only comments\n", "f").empty());
  EXPECT_EQ(c.socket, BrokerConfig{}.socket);
  EXPECT_EQ(c.display_first, 100u);
}

TEST(ConfigTest, ValueMayContainEqualsSign) {
  BrokerConfig c;
  EXPECT_TRUE(parse_config_text(c, "socket = /run/a=b/broker.sock\n", "f").empty());
  EXPECT_EQ(c.socket, "/run/a=b/broker.sock");
}

// Which of two lines would win is not obvious, and an edit of the first
// would silently change nothing: a key given twice is refused.
TEST(ConfigTest, AKeyGivenTwiceIsRefusedNamingBothLines) {
  BrokerConfig c;
  const auto errors = parse_config_text(c, "max-leases = 10\n# x\nmax-leases = 20\n", "f");
  ASSERT_EQ(errors.size(), 1u);
  EXPECT_EQ(errors[0].to_string(), "f:3: 'max-leases' is given twice (first on line 1); keep one of them");
  EXPECT_EQ(c.max_leases, 10u);
  EXPECT_EQ(c.origin.at("max-leases"), "f:1");
}

TEST(ConfigTest, ErrorsCarryFileLineAndReasonAndParsingContinues) {
  BrokerConfig c;
  const std::string text =
      "# comment\n"                   // 1
      "max-leases = 5\n"              // 2
      "no equals sign here\n"         // 3
      "\n"                            // 4
      "colour = blue\n"               // 5
      "displays = 10-1\n"             // 6
      "max-leases-per-user = zero\n"  // 7
      "= 3\n"                         // 8
      "recheck-seconds = 45\n";       // 9
  const auto errors = parse_config_text(c, text, "/etc/xpra/broker.conf");
  ASSERT_EQ(errors.size(), 5u);
  EXPECT_EQ(errors[0].line, 3);
  EXPECT_TRUE(Contains(errors[0].message, "expected 'key = value'"));
  EXPECT_TRUE(Contains(errors[0].message, "no equals sign here"));
  EXPECT_EQ(errors[1].line, 5);
  EXPECT_TRUE(Contains(errors[1].message, "unknown key 'colour'"));
  EXPECT_EQ(errors[2].line, 6);
  EXPECT_TRUE(Contains(errors[2].message, "'displays'"));
  EXPECT_TRUE(Contains(errors[2].message, "above the last"));
  EXPECT_EQ(errors[3].line, 7);
  EXPECT_TRUE(Contains(errors[3].message, "'max-leases-per-user'"));
  EXPECT_EQ(errors[4].line, 8);
  EXPECT_TRUE(Contains(errors[4].message, "unknown key ''"));
  for (const auto& e : errors) {
    EXPECT_EQ(e.source, "/etc/xpra/broker.conf");
    EXPECT_EQ(e.to_string().rfind("/etc/xpra/broker.conf:" + std::to_string(e.line) + ": ", 0), 0u)
        << e.to_string();
  }
  // Good lines around the bad ones still apply; bad ones change nothing.
  EXPECT_EQ(c.max_leases, 5u);
  EXPECT_EQ(c.recheck_seconds, 45u);
  EXPECT_EQ(c.display_first, 100u);
  EXPECT_EQ(c.display_last, 999u);
  EXPECT_EQ(c.max_leases_per_user, 8u);
}

TEST(ConfigTest, InlineCommentAfterANumberIsAnErrorNotSilentlyIgnored) {
  BrokerConfig c;
  const auto errors = parse_config_text(c, "max-leases = 5 # five\n", "f");
  ASSERT_EQ(errors.size(), 1u);
  EXPECT_EQ(errors[0].line, 1);
  EXPECT_EQ(c.max_leases, 512u);
}

TEST(ConfigTest, ErrorWithoutLineNamesOnlyTheSource) {
  const ConfigError e{"command line", 0, "--max-leases: bad"};
  EXPECT_EQ(e.to_string(), "command line: --max-leases: bad");
  const ConfigError f{"broker.conf", 12, "oops"};
  EXPECT_EQ(f.to_string(), "broker.conf:12: oops");
}

TEST(ConfigTest, ValidateRefusesPerUserQuotaAboveGlobalQuota) {
  BrokerConfig c;
  c.max_leases = 4;
  c.max_leases_per_user = 5;
  const auto errors = validate_config(c);
  ASSERT_EQ(errors.size(), 1u);
  EXPECT_TRUE(Contains(errors[0].message, "max-leases-per-user is above max-leases"));
  EXPECT_EQ(errors[0].line, 0);

  c.max_leases_per_user = 4;  // equal is fine
  EXPECT_TRUE(validate_config(c).empty());
}

TEST(ConfigTest, ValidateRefusesSocketEqualToRuntimeDir) {
  BrokerConfig c;
  c.socket = "/run/xpra";
  c.runtime_dir = "/run/xpra";
  const auto errors = validate_config(c);
  ASSERT_EQ(errors.size(), 1u);
  EXPECT_TRUE(Contains(errors[0].message, "same path"));
}

TEST(ConfigTest, ValidateReportsEveryProblemAtOnce) {
  BrokerConfig c;
  c.socket = c.runtime_dir = "/run/x";
  c.max_leases = 1;
  c.max_leases_per_user = 2;
  EXPECT_EQ(validate_config(c).size(), 2u);
}

TEST(ConfigTest, ParsedConfigFromTheFileValidates) {
  BrokerConfig c;
  ASSERT_TRUE(parse_config_text(c, "max-leases = 3\nmax-leases-per-user = 3\n", "f").empty());
  EXPECT_TRUE(validate_config(c).empty());
  ASSERT_TRUE(parse_config_text(c, "max-leases-per-user = 4\n", "f").empty());
  EXPECT_EQ(validate_config(c).size(), 1u);
}

}  // namespace
}  // namespace xpra_broker
