// broker_metrics.h: the renderer's output checked against the text
// exposition format (version 0.0.4) by a strict little parser here, and the
// caps that keep it inside one frame. The integration suite
// (tests/metrics) has real node-exporter parse it.
#include "core/broker_metrics.h"

#include <gtest/gtest.h>

#include <map>
#include <regex>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "framing.h"
#include "text_assertions.h"

namespace xpra_broker {
namespace {

using testing::Contains;

struct Sample {
  std::string name;
  std::map<std::string, std::string> labels;  // unescaped
  std::string value;
};

struct Parsed {
  std::map<std::string, std::string> types;  // family -> type
  std::map<std::string, std::string> helps;
  std::vector<std::string> family_order;
  std::vector<Sample> samples;
  std::vector<std::string> errors;
};

// The family a sample belongs to, given the declared types.
std::string family_of(const std::string& name, const std::map<std::string, std::string>& types) {
  for (const char* suffix : {"_bucket", "_sum", "_count"}) {
    const std::string s(suffix);
    if (name.size() > s.size() && name.compare(name.size() - s.size(), s.size(), s) == 0) {
      const std::string base = name.substr(0, name.size() - s.size());
      if (auto it = types.find(base); it != types.end() && it->second == "histogram") return base;
    }
  }
  return name;
}

// Parses the label set between the braces; false on anything the format
// does not allow (unknown escapes, missing quotes, a duplicate name).
bool parse_labels(const std::string& text, std::map<std::string, std::string>& out) {
  std::size_t i = 0;
  static const std::regex name_re("[a-zA-Z_][a-zA-Z0-9_]*");
  while (i < text.size()) {
    const auto eq = text.find('=', i);
    if (eq == std::string::npos) return false;
    const std::string name = text.substr(i, eq - i);
    if (!std::regex_match(name, name_re)) return false;
    if (eq + 1 >= text.size() || text[eq + 1] != '"') return false;
    std::string value;
    std::size_t j = eq + 2;
    for (;; ++j) {
      if (j >= text.size()) return false;
      if (text[j] == '"') break;
      if (text[j] == '\n') return false;
      if (text[j] == '\\') {
        if (++j >= text.size()) return false;
        if (text[j] == '\\') value += '\\';
        else if (text[j] == '"') value += '"';
        else if (text[j] == 'n') value += '\n';
        else return false;
        continue;
      }
      value += text[j];
    }
    if (!out.emplace(name, value).second) return false;
    i = j + 1;
    if (i < text.size()) {
      if (text[i] != ',') return false;
      ++i;
    }
  }
  return true;
}

Parsed parse_exposition(const std::string& text) {
  Parsed p;
  static const std::regex help_re("# HELP ([a-zA-Z_:][a-zA-Z0-9_:]*) (.*)");
  static const std::regex type_re("# TYPE ([a-zA-Z_:][a-zA-Z0-9_:]*) (counter|gauge|histogram|summary|untyped)");
  static const std::regex sample_re("([a-zA-Z_:][a-zA-Z0-9_:]*)(\\{(.*)\\})? ([^ ]+)");
  static const std::regex value_re("[+-]?(Inf|NaN|[0-9]+(\\.[0-9]*)?([eE][+-]?[0-9]+)?|\\.[0-9]+([eE][+-]?[0-9]+)?)");
  if (text.empty() || text.back() != '\n') p.errors.push_back("does not end with a line feed");
  std::istringstream in(text);
  std::string line, current;
  std::set<std::string> closed;  // families whose samples are over
  while (std::getline(in, line)) {
    std::smatch m;
    if (line.rfind("# HELP ", 0) == 0) {
      if (!std::regex_match(line, m, help_re)) p.errors.push_back("bad HELP: " + line);
      else if (!p.helps.emplace(m[1], m[2]).second) p.errors.push_back("second HELP for " + m[1].str());
      continue;
    }
    if (line.rfind("# TYPE ", 0) == 0) {
      if (!std::regex_match(line, m, type_re)) {
        p.errors.push_back("bad TYPE: " + line);
        continue;
      }
      if (!p.types.emplace(m[1], m[2]).second) p.errors.push_back("second TYPE for " + m[1].str());
      if (!current.empty()) closed.insert(current);
      current = m[1];
      p.family_order.push_back(current);
      continue;
    }
    if (line.empty() || line[0] == '#') {
      p.errors.push_back("unexpected line: '" + line + "'");
      continue;
    }
    if (!std::regex_match(line, m, sample_re)) {
      p.errors.push_back("bad sample: " + line);
      continue;
    }
    Sample s;
    s.name = m[1];
    s.value = m[4];
    if (m[2].matched && !parse_labels(m[3], s.labels)) p.errors.push_back("bad labels: " + line);
    if (!std::regex_match(s.value, value_re)) p.errors.push_back("bad value: " + line);
    const std::string family = family_of(s.name, p.types);
    if (family != current) p.errors.push_back("sample outside its family's block (no TYPE before it): " + line);
    if (closed.count(family)) p.errors.push_back("family split in two: " + line);
    p.samples.push_back(std::move(s));
  }
  for (const auto& [family, type] : p.types) {
    if (!p.helps.count(family)) p.errors.push_back("no HELP for " + family);
    if (type == "counter" && family.size() > 6 && family.compare(family.size() - 6, 6, "_total") != 0)
      p.errors.push_back("counter without _total: " + family);
  }
  return p;
}

std::vector<const Sample*> samples_named(const Parsed& p, const std::string& name) {
  std::vector<const Sample*> out;
  for (const auto& s : p.samples)
    if (s.name == name) out.push_back(&s);
  return out;
}

const Sample* find_sample(const Parsed& p, const std::string& name, const std::map<std::string, std::string>& labels) {
  for (const auto& s : p.samples)
    if (s.name == name && s.labels == labels) return &s;
  return nullptr;
}

std::string value_of(const Parsed& p, const std::string& name, const std::map<std::string, std::string>& labels = {}) {
  const Sample* s = find_sample(p, name, labels);
  return s ? s->value : "(missing)";
}

MetricsSnapshot typical_snapshot() {
  MetricsSnapshot s;
  s.version = "1.2.3";
  s.start_time_unix_seconds = 1700000000.5;
  s.uptime_seconds = 42.25;
  s.leases_active = 3;
  s.leases_detached = 1;
  s.leases_ending = 0;
  s.max_leases = 400;
  s.max_leases_per_user = 2;
  s.x_server_warn_threshold = 3;
  s.range_size = 100;
  s.free_displays = 90;
  s.blocked[static_cast<std::size_t>(BlockReason::in_use)] = 4;
  s.blocked[static_cast<std::size_t>(BlockReason::quarantined)] = 1;
  s.connections = 7;
  s.users = {{1001, "xpb-alice", 2, 2}, {1002, "xpb-bob", 1, 5}, {1003, "xpb-carol", 0, 1}};
  s.x_server_census_age_seconds = 1.5;
  s.journal = JournalMetrics{4096, 12, false, 0};
  return s;
}

TEST(BrokerMetricsTest, TypicalOutputIsValidExpositionWithHelpAndTypeOncePerFamily) {
  BrokerCounters c;
  c.count_request(v1::Request::kAcquire, v1::OK);
  c.count_request(v1::Request::kAcquire, v1::EXHAUSTED);
  c.count_request(v1::Request::kRelease, v1::OK);
  c.reap_duration.observe(0.005);
  c.journal_commit_duration.observe(0.00002);
  const std::string text = render_metrics(c, typical_snapshot());
  const Parsed p = parse_exposition(text);
  EXPECT_TRUE(p.errors.empty()) << ::testing::PrintToString(p.errors) << "\n" << text;
  for (const auto& family : p.family_order) EXPECT_EQ(family.rfind("xpra_broker_", 0), 0u) << family;
  // Units in names (Prometheus conventions): seconds, bytes, _total.
  EXPECT_EQ(p.types.at("xpra_broker_reap_duration_seconds"), "histogram");
  EXPECT_EQ(p.types.at("xpra_broker_journal_commit_duration_seconds"), "histogram");
  EXPECT_EQ(p.types.at("xpra_broker_journal_bytes"), "gauge");
  EXPECT_EQ(p.types.at("xpra_broker_requests_total"), "counter");
  EXPECT_EQ(p.types.at("xpra_broker_start_time_seconds"), "gauge");
}

TEST(BrokerMetricsTest, GaugesCarryTheSnapshotsValues) {
  const Parsed p = parse_exposition(render_metrics(BrokerCounters{}, typical_snapshot()));
  EXPECT_EQ(value_of(p, "xpra_broker_build_info", {{"version", "1.2.3"}}), "1");
  EXPECT_EQ(value_of(p, "xpra_broker_start_time_seconds"), "1700000000.5");
  EXPECT_EQ(value_of(p, "xpra_broker_uptime_seconds"), "42.25");
  EXPECT_EQ(value_of(p, "xpra_broker_leases", {{"state", "active"}}), "3");
  EXPECT_EQ(value_of(p, "xpra_broker_leases", {{"state", "detached"}}), "1");
  EXPECT_EQ(value_of(p, "xpra_broker_leases", {{"state", "ending"}}), "0");
  EXPECT_EQ(value_of(p, "xpra_broker_free_displays"), "90");
  EXPECT_EQ(value_of(p, "xpra_broker_displays"), "100");
  EXPECT_EQ(value_of(p, "xpra_broker_x_server_warn_threshold"), "3");
  EXPECT_EQ(value_of(p, "xpra_broker_connections"), "7");
  EXPECT_EQ(value_of(p, "xpra_broker_journal_bytes"), "4096");
  EXPECT_EQ(value_of(p, "xpra_broker_journal_records"), "12");
  EXPECT_EQ(value_of(p, "xpra_broker_journal_degraded"), "0");
  EXPECT_EQ(value_of(p, "xpra_broker_x_server_census_age_seconds"), "1.5");
  EXPECT_EQ(value_of(p, "xpra_broker_user_leases", {{"user", "xpb-alice"}, {"uid", "1001"}}), "2");
  EXPECT_EQ(value_of(p, "xpra_broker_user_x_servers", {{"user", "xpb-bob"}, {"uid", "1002"}}), "5");
  EXPECT_EQ(value_of(p, "xpra_broker_user_leases", {{"user", "xpb-carol"}, {"uid", "1003"}}), "0");
  EXPECT_EQ(value_of(p, "xpra_broker_users"), "3");
  EXPECT_EQ(value_of(p, "xpra_broker_user_series_truncated"), "0");
}

// The alert rules compare against these: every reason is there, zero or not.
TEST(BrokerMetricsTest, EveryBlockReasonAndAcquireRefusalIsAlwaysPresent) {
  const Parsed p = parse_exposition(render_metrics(BrokerCounters{}, typical_snapshot()));
  std::set<std::string> reasons;
  for (const Sample* s : samples_named(p, "xpra_broker_blocked_displays")) reasons.insert(s->labels.at("reason"));
  EXPECT_EQ(reasons, (std::set<std::string>{"in_use", "leftovers", "quarantined", "reap_survivors",
                                            "awaiting_journal", "orphan_reap"}));
  EXPECT_EQ(value_of(p, "xpra_broker_blocked_displays", {{"reason", "in_use"}}), "4");
  EXPECT_EQ(value_of(p, "xpra_broker_blocked_displays", {{"reason", "quarantined"}}), "1");
  EXPECT_EQ(value_of(p, "xpra_broker_blocked_displays", {{"reason", "leftovers"}}), "0");
  EXPECT_EQ(samples_named(p, "xpra_broker_acquire_refusals_total").size(), kAcquireRefusals);
  EXPECT_EQ(samples_named(p, "xpra_broker_reaped_processes_total").size(), 3u);
}

TEST(BrokerMetricsTest, RequestsAreCountedByVerbAndStatusName) {
  BrokerCounters c;
  for (int i = 0; i < 3; ++i) c.count_request(v1::Request::kAcquire, v1::OK);
  c.count_request(v1::Request::kAcquire, v1::EXHAUSTED);
  c.count_request(v1::Request::kMetrics, v1::DENIED);
  c.count_request(v1::Request::kRelease, v1::OK);
  c.count_request(v1::Request::VERB_NOT_SET, v1::INVALID);
  const Parsed p = parse_exposition(render_metrics(c, typical_snapshot()));
  EXPECT_EQ(value_of(p, "xpra_broker_requests_total", {{"verb", "acquire"}, {"status", "OK"}}), "3");
  EXPECT_EQ(value_of(p, "xpra_broker_requests_total", {{"verb", "acquire"}, {"status", "EXHAUSTED"}}), "1");
  EXPECT_EQ(value_of(p, "xpra_broker_requests_total", {{"verb", "metrics"}, {"status", "DENIED"}}), "1");
  EXPECT_EQ(value_of(p, "xpra_broker_requests_total", {{"verb", "release"}, {"status", "OK"}}), "1");
  // A labelled counter appears once it has counted something.
  EXPECT_EQ(find_sample(p, "xpra_broker_requests_total", {{"verb", "status"}, {"status", "OK"}}), nullptr);
  EXPECT_EQ(c.requests(v1::Request::kAcquire, v1::OK), 3u);
}

TEST(BrokerMetricsTest, HistogramBucketsAreCumulativeAndEndWithInfEqualToCount) {
  BrokerCounters c;
  for (double v : {0.001, 0.01, 0.02, 0.3, 2.0, 2.0, 45.0}) c.reap_duration.observe(v);
  const Parsed p = parse_exposition(render_metrics(c, typical_snapshot()));
  const auto buckets = samples_named(p, "xpra_broker_reap_duration_seconds_bucket");
  ASSERT_EQ(buckets.size(), reap_duration_buckets().size() + 1);
  EXPECT_EQ(buckets.front()->labels.at("le"), "0.01");  // ~10 ms ..
  EXPECT_EQ(buckets[buckets.size() - 2]->labels.at("le"), "30");  // .. ~30 s
  EXPECT_EQ(buckets.back()->labels.at("le"), "+Inf");
  double last = -1;
  for (const Sample* b : buckets) {
    EXPECT_GE(std::stod(b->value), last) << b->labels.at("le");
    last = std::stod(b->value);
  }
  // le is inclusive: 0.001 and 0.01 are both in the 0.01 bucket.
  EXPECT_EQ(value_of(p, "xpra_broker_reap_duration_seconds_bucket", {{"le", "0.01"}}), "2");
  EXPECT_EQ(value_of(p, "xpra_broker_reap_duration_seconds_bucket", {{"le", "2.5"}}), "6");
  EXPECT_EQ(value_of(p, "xpra_broker_reap_duration_seconds_bucket", {{"le", "30"}}), "6");
  EXPECT_EQ(value_of(p, "xpra_broker_reap_duration_seconds_bucket", {{"le", "+Inf"}}), "7");
  EXPECT_EQ(value_of(p, "xpra_broker_reap_duration_seconds_count"), "7");
  EXPECT_NEAR(std::stod(value_of(p, "xpra_broker_reap_duration_seconds_sum")), 49.331, 1e-9);
  // An empty histogram is complete too.
  EXPECT_EQ(value_of(p, "xpra_broker_journal_commit_duration_seconds_bucket", {{"le", "+Inf"}}), "0");
  EXPECT_EQ(value_of(p, "xpra_broker_journal_commit_duration_seconds_count"), "0");
  EXPECT_EQ(value_of(p, "xpra_broker_journal_commit_duration_seconds_sum"), "0");
}

TEST(BrokerMetricsTest, LabelValuesAreEscapedAsTheFormatRequires) {
  EXPECT_EQ(escape_label_value("plain-name_1"), "plain-name_1");
  EXPECT_EQ(escape_label_value("a\\b"), "a\\\\b");
  EXPECT_EQ(escape_label_value("say \"hi\""), "say \\\"hi\\\"");
  EXPECT_EQ(escape_label_value("two\nlines"), "two\\nlines");
  EXPECT_EQ(escape_label_value("caf\xC3\xA9"), "caf\xC3\xA9");          // UTF-8 passes
  EXPECT_EQ(escape_label_value("\xF0\x9F\x90\xA7"), "\xF0\x9F\x90\xA7");  // 4 bytes too
  EXPECT_EQ(escape_label_value("bad\xFFz"), "bad\xEF\xBF\xBDz");          // not UTF-8
  EXPECT_EQ(escape_label_value("\xC0\xAF"), "\xEF\xBF\xBD\xEF\xBF\xBD");  // overlong '/'
  EXPECT_EQ(escape_label_value("\xED\xA0\x80"), "\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD");  // a surrogate
  EXPECT_EQ(escape_label_value("cut\xE2\x82"), "cut\xEF\xBF\xBD\xEF\xBF\xBD");            // truncated
  EXPECT_EQ(escape_label_value("esc\x1B[31m"), "esc\xEF\xBF\xBD[31m");  // no terminal control
  EXPECT_EQ(escape_label_value("csi\xC2\x9B"), "csi\xEF\xBF\xBD\xEF\xBF\xBD");  // C1 as well
}

TEST(BrokerMetricsTest, AHostileUserNameStaysInsideItsLabel) {
  MetricsSnapshot s = typical_snapshot();
  s.users = {{2001, "evil\"} 1\nxpra_broker_free_displays 999\n#", 1, 1}, {2002, "back\\slash\xFF", 1, 0}};
  const std::string text = render_metrics(BrokerCounters{}, s);
  const Parsed p = parse_exposition(text);
  EXPECT_TRUE(p.errors.empty()) << ::testing::PrintToString(p.errors) << "\n" << text;
  EXPECT_EQ(samples_named(p, "xpra_broker_free_displays").size(), 1u);
  EXPECT_EQ(value_of(p, "xpra_broker_free_displays"), "90");
  EXPECT_EQ(value_of(p, "xpra_broker_user_leases",
                     {{"user", "evil\"} 1\nxpra_broker_free_displays 999\n#"}, {"uid", "2001"}}),
            "1");
  EXPECT_EQ(value_of(p, "xpra_broker_user_leases", {{"user", "back\\slash\xEF\xBF\xBD"}, {"uid", "2002"}}), "1");
}

TEST(BrokerMetricsTest, PerUserSeriesAreCappedKeepingTheUsersWithTheMostXServers) {
  MetricsSnapshot s = typical_snapshot();
  s.users.clear();
  for (uid_t uid = 10000; uid < 10300; ++uid)
    s.users.push_back({uid, "user" + std::to_string(uid), 1, uid == 10299 ? 50u : 1u});
  const Parsed p = parse_exposition(render_metrics(BrokerCounters{}, s));
  EXPECT_TRUE(p.errors.empty()) << ::testing::PrintToString(p.errors);
  EXPECT_EQ(samples_named(p, "xpra_broker_user_leases").size(), kMaxMetricsUsers);
  EXPECT_EQ(samples_named(p, "xpra_broker_user_x_servers").size(), kMaxMetricsUsers);
  EXPECT_EQ(value_of(p, "xpra_broker_user_series_truncated"), "1");
  EXPECT_EQ(value_of(p, "xpra_broker_users"), "300");
  // The leaking user, last by uid, is the first one kept.
  EXPECT_EQ(value_of(p, "xpra_broker_user_x_servers", {{"user", "user10299"}, {"uid", "10299"}}), "50");
}

TEST(BrokerMetricsTest, OrphansHaveASeriesOnlyForUsersWithSomeAndRankTheUserFirst) {
  MetricsSnapshot s = typical_snapshot();
  s.users.clear();
  for (uid_t uid = 10000; uid < 10300; ++uid)
    s.users.push_back({uid, "user" + std::to_string(uid), 1, 1, uid == 10299 ? 60u : 0u});
  s.orphans_seen_total = 75;
  const Parsed p = parse_exposition(render_metrics(BrokerCounters{}, s));
  EXPECT_TRUE(p.errors.empty()) << ::testing::PrintToString(p.errors);
  // Cut at the cap, the user whose sessions leave processes behind is kept.
  EXPECT_EQ(samples_named(p, "xpra_broker_user_orphan_processes").size(), 1u);
  EXPECT_EQ(value_of(p, "xpra_broker_user_orphan_processes", {{"user", "user10299"}, {"uid", "10299"}}), "60");
  EXPECT_EQ(value_of(p, "xpra_broker_orphans_seen_total"), "75");
  EXPECT_EQ(p.types.at("xpra_broker_user_orphan_processes"), "gauge");
  EXPECT_EQ(p.types.at("xpra_broker_orphans_seen_total"), "counter");
}

TEST(BrokerMetricsTest, ASquatterBlockingNumbersIsAPerUserSeriesAndKeptFirstWhenCapped) {
  MetricsSnapshot s = typical_snapshot();
  s.users.clear();
  for (uid_t uid = 10000; uid < 10300; ++uid)
    s.users.push_back({uid, "user" + std::to_string(uid), 1, 2});
  s.users.push_back({20000, "squatter", 0, 0, 0, 200});  // no lease, no X server by name: 200 numbers held
  const Parsed p = parse_exposition(render_metrics(BrokerCounters{}, s));
  EXPECT_TRUE(p.errors.empty()) << ::testing::PrintToString(p.errors);
  EXPECT_EQ(value_of(p, "xpra_broker_user_blocked_displays", {{"user", "squatter"}, {"uid", "20000"}}), "200");
  EXPECT_EQ(samples_named(p, "xpra_broker_user_blocked_displays").size(), 1u) << "only users who block numbers";
  EXPECT_EQ(samples_named(p, "xpra_broker_user_leases").size(), kMaxMetricsUsers);
  EXPECT_EQ(value_of(p, "xpra_broker_user_series_truncated"), "1");
}

TEST(BrokerMetricsTest, LongNamesAndEveryCounterAtItsMaximumStillFitOneFrame) {
  BrokerCounters c;
  for (auto& verb : c.requests_by_verb) verb.fill(~std::uint64_t{0} >> 1);
  MetricsSnapshot s = typical_snapshot();
  s.users.clear();
  for (uid_t uid = 0; uid < 1000; ++uid)
    s.users.push_back(
        {4000000000u + uid, std::string(200, '"') + std::to_string(uid), 4000000000u, 4000000000u, 4000000000u});
  const std::string text = render_metrics(c, s);
  EXPECT_LE(text.size(), kMaxExpositionBytes);
  const Parsed p = parse_exposition(text);
  EXPECT_TRUE(p.errors.empty()) << ::testing::PrintToString(p.errors);
  EXPECT_EQ(value_of(p, "xpra_broker_user_series_truncated"), "1");
  EXPECT_GT(samples_named(p, "xpra_broker_user_leases").size(), 0u);
  v1::Response r;
  r.set_status(v1::OK);
  r.mutable_metrics()->set_exposition(text);
  EXPECT_TRUE(wire::encode_frame(r).has_value()) << "reply of " << r.ByteSizeLong() << " bytes";
}

TEST(BrokerMetricsTest, WithoutAJournalItsGaugesAreLeftOutButTheHistogramStays) {
  MetricsSnapshot s = typical_snapshot();
  s.journal.reset();
  s.x_server_census_age_seconds.reset();
  const Parsed p = parse_exposition(render_metrics(BrokerCounters{}, s));
  EXPECT_TRUE(p.errors.empty());
  EXPECT_FALSE(p.types.count("xpra_broker_journal_bytes"));
  EXPECT_FALSE(p.types.count("xpra_broker_journal_degraded"));
  EXPECT_FALSE(p.types.count("xpra_broker_x_server_census_age_seconds"));
  EXPECT_TRUE(p.types.count("xpra_broker_journal_commit_duration_seconds"));
}

TEST(BrokerMetricsTest, DegradedJournalIsOne) {
  MetricsSnapshot s = typical_snapshot();
  s.journal = JournalMetrics{100, 3, true, 2};
  const Parsed p = parse_exposition(render_metrics(BrokerCounters{}, s));
  EXPECT_EQ(value_of(p, "xpra_broker_journal_degraded"), "1");
  EXPECT_EQ(value_of(p, "xpra_broker_journal_owed_records"), "2");
}

// The test's own parser must refuse what node-exporter would.
TEST(BrokerMetricsTest, TheTestParserRejectsBrokenExposition) {
  EXPECT_FALSE(parse_exposition("# TYPE a gauge\n# HELP a x\na{l=\"v} 1\n").errors.empty());
  EXPECT_FALSE(parse_exposition("# TYPE a gauge\n# HELP a x\na{l=\"\\t\"} 1\n").errors.empty());
  EXPECT_FALSE(parse_exposition("# TYPE a gauge\n# HELP a x\na 1\n# TYPE a gauge\n").errors.empty());
  EXPECT_FALSE(parse_exposition("b 1\n").errors.empty());
  EXPECT_FALSE(parse_exposition("# TYPE a_total counter\n# HELP a_total x\na_total one\n").errors.empty());
  EXPECT_TRUE(parse_exposition("# HELP a_total x\n# TYPE a_total counter\na_total{l=\"\\\"\"} 1\n").errors.empty());
}

}  // namespace
}  // namespace xpra_broker
