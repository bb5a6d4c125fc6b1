// The metrics path end to end, as an admin wires it (docs/monitoring.md):
// the real xpra-brokerd with real users' leases (and real Xvfb servers for
// the X-server census), `xpra-request-display metrics --output FILE` as
// root, and Debian's real prometheus-node-exporter reading FILE with its
// textfile collector on a free localhost port, scraped with a plain HTTP
// GET. Also: who may ask, and that asking is paced.
//
// Display range 1100-1149 (tests/CMakeLists.txt); each test its own slice.
// X-server counts are host-wide and other suites run X servers as the same
// test users, so those checks are "at least ours"; lease counts are this
// broker's own, so those are exact.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <fstream>
#include <iostream>
#include <optional>
#include <map>
#include <regex>
#include <sstream>

#include "integration_fixture.h"

namespace xpra_broker::integration {
namespace {

constexpr const char* kNodeExporter = "/usr/bin/prometheus-node-exporter";

struct Series {
  std::string name;
  std::map<std::string, std::string> labels;
  double value = 0;
};

// Sample lines of an exposition (node-exporter's output or ours), labels in
// any order. Values our test users' names need no unescaping.
std::vector<Series> parse_samples(const std::string& text) {
  static const std::regex sample_re("([a-zA-Z_:][a-zA-Z0-9_:]*)(\\{(.*)\\})? ([^ ]+)");
  static const std::regex label_re("([a-zA-Z_][a-zA-Z0-9_]*)=\"((?:[^\"\\\\]|\\\\.)*)\"");
  std::vector<Series> out;
  std::istringstream in(text);
  std::string line;
  while (std::getline(in, line)) {
    std::smatch m;
    if (line.empty() || line[0] == '#' || !std::regex_match(line, m, sample_re)) continue;
    Series s;
    s.name = m[1];
    s.value = std::strtod(m[4].str().c_str(), nullptr);
    const std::string labels = m[3];
    for (std::sregex_iterator it(labels.begin(), labels.end(), label_re), end; it != end; ++it)
      s.labels[(*it)[1]] = (*it)[2];
    out.push_back(std::move(s));
  }
  return out;
}

std::optional<double> value_of(const std::vector<Series>& series, const std::string& name,
                               const std::map<std::string, std::string>& labels = {}) {
  for (const auto& s : series)
    if (s.name == name && s.labels == labels) return s.value;
  return std::nullopt;
}

// A port nobody listens on right now (bind to 0, read it, close): the
// exporter binds it a moment later.
int free_localhost_port() {
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof(addr);
  if (fd < 0 || ::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0 ||
      ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) != 0)
    throw std::runtime_error("cannot find a free localhost port");
  ::close(fd);
  return ntohs(addr.sin_port);
}

// GET http://127.0.0.1:port/path with HTTP/1.0 (the server closes when
// done); the body, or nullopt if nobody answered 200.
std::optional<std::string> http_get(int port, const std::string& path) {
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return std::nullopt;
  timeval tv{10, 0};
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<std::uint16_t>(port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  std::string response;
  if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0) {
    const std::string request = "GET " + path + " HTTP/1.0\r\nHost: 127.0.0.1\r\nAccept: text/plain\r\n\r\n";
    if (::write(fd, request.data(), request.size()) == static_cast<ssize_t>(request.size())) {
      char buf[65536];
      for (ssize_t n; (n = ::read(fd, buf, sizeof(buf))) > 0;) response.append(buf, static_cast<std::size_t>(n));
    }
  }
  ::close(fd);
  const auto body = response.find("\r\n\r\n");
  if (response.rfind("HTTP/1.0 200", 0) != 0 && response.rfind("HTTP/1.1 200", 0) != 0) return std::nullopt;
  if (body == std::string::npos) return std::nullopt;
  return response.substr(body + 4);
}

class MetricsTest : public BrokerTest {
 protected:
  // Holds a lease until the test ends: `exec [--xvfb] -- sleep 300`.
  void hold_lease(const std::string& user, bool x_server) {
    std::vector<std::string> args = {"exec"};
    if (x_server) args.push_back("--xvfb");
    args.insert(args.end(), {"--purpose", "metrics-test", "--", "sleep", "300"});
    holders_.push_back(broker_->spawn_client_as(user, args));
  }

  std::vector<ChildProcess> holders_;
};

TEST_F(MetricsTest, NodeExporterScrapesTheBrokersSeriesFromTheTextfile) {
  ASSERT_EQ(::access(kNodeExporter, X_OK), 0) << kNodeExporter << " is missing: run scripts/install-deps.sh";
  start_broker({"--displays=1100-1109", "--allowed-groups=xpb-users", "--max-leases-per-user=2"});
  const uid_t alice = uid_of(kAlice), bob = uid_of(kBob);

  // Alice: two leases, each with a real X server; bob: one lease without.
  hold_lease(kAlice, true);
  hold_lease(kAlice, true);
  hold_lease(kBob, false);
  ASSERT_TRUE(wait_until([&] { return lease_count() == 3; }, 30s)) << list_all().dump();
  // Alice's third is refused for her quota (EXHAUSTED, exec's exit 124); bob's
  // short session acquires and releases.
  const auto refused = broker_->client_as(kAlice, {"exec", "--", "true"});
  EXPECT_EQ(refused.exit_code, 124) << refused.describe();
  const auto short_session = broker_->client_as(kBob, {"exec", "--", "true"});
  EXPECT_EQ(short_session.exit_code, 0) << short_session.describe();
  ASSERT_TRUE(wait_until([&] { return lease_count() == 3; }, 30s));
  // The census (every 5 s) has seen alice's two X servers.
  ASSERT_TRUE(wait_until(
      [&] {
        const auto status = status_json();  // kept alive for the loop
        for (const auto& x : status["x_servers"])
          if (x["uid"] == alice && x["count"].get<int>() >= 2) return true;
        return false;
      },
      30s));

  // What the systemd timer runs, into a directory only root may write.
  TempDir textfiles("xpb-metrics-textfile", 0755);
  const std::string prom = textfiles.path() + "/xpra_broker.prom";
  const auto written = broker_->client_as("root", {"metrics", "--output", prom});
  ASSERT_EQ(written.exit_code, 0) << written.describe();
  EXPECT_EQ(written.out, "");
  struct stat st {};
  ASSERT_EQ(::stat(prom.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 07777, 0644u);

  // node-exporter as an unprivileged user (Debian runs it as `prometheus`):
  // the file must be readable by others.
  const int port = free_localhost_port();
  auto exporter = spawn_as(kMallory, {kNodeExporter, "--web.listen-address=127.0.0.1:" + std::to_string(port),
                                      "--collector.disable-defaults", "--collector.textfile",
                                      "--collector.textfile.directory=" + textfiles.path()});
  std::optional<std::string> scrape;
  ASSERT_TRUE(wait_until([&] { return (scrape = http_get(port, "/metrics")).has_value(); }, 20s, 100ms))
      << "node-exporter did not answer on 127.0.0.1:" << port << "\n"
      << exporter.terminate().describe();
  const auto series = parse_samples(*scrape);

  // Shown in the test's output: what an admin's Prometheus would store.
  std::cout << "---- node-exporter scrape (broker series and the textfile collector's own) ----\n";
  std::istringstream lines(*scrape);
  for (std::string line; std::getline(lines, line);)
    if (line.find("xpra_broker_") != std::string::npos || line.find("node_textfile") != std::string::npos)
      std::cout << line << "\n";
  std::cout << "---- end of scrape ----\n";

  EXPECT_EQ(value_of(series, "node_textfile_scrape_error"), 0.0) << "node-exporter could not parse the file";
  EXPECT_TRUE(value_of(series, "node_textfile_mtime_seconds", {{"file", prom}}).has_value());
  EXPECT_EQ(value_of(series, "xpra_broker_leases", {{"state", "active"}}), 3.0);
  EXPECT_EQ(value_of(series, "xpra_broker_leases", {{"state", "ending"}}), 0.0);
  EXPECT_EQ(value_of(series, "xpra_broker_user_leases", {{"user", kAlice}, {"uid", std::to_string(alice)}}), 2.0);
  EXPECT_EQ(value_of(series, "xpra_broker_user_leases", {{"user", kBob}, {"uid", std::to_string(bob)}}), 1.0);
  EXPECT_GE(value_of(series, "xpra_broker_user_x_servers", {{"user", kAlice}, {"uid", std::to_string(alice)}})
                .value_or(0),
            2.0);
  EXPECT_EQ(value_of(series, "xpra_broker_requests_total", {{"verb", "acquire"}, {"status", "EXHAUSTED"}}), 1.0);
  EXPECT_EQ(value_of(series, "xpra_broker_acquire_refusals_total", {{"reason", "user_quota"}}), 1.0);
  EXPECT_EQ(value_of(series, "xpra_broker_requests_total", {{"verb", "acquire"}, {"status", "OK"}}), 4.0);
  EXPECT_EQ(value_of(series, "xpra_broker_requests_total", {{"verb", "release"}, {"status", "OK"}}), 1.0);
  EXPECT_EQ(value_of(series, "xpra_broker_leases_ended_total"), 1.0);
  EXPECT_EQ(value_of(series, "xpra_broker_displays"), 10.0);
  EXPECT_EQ(value_of(series, "xpra_broker_max_leases_per_user"), 2.0);
  EXPECT_EQ(value_of(series, "xpra_broker_x_server_warn_threshold"), 3.0);
  EXPECT_LE(value_of(series, "xpra_broker_free_displays").value_or(99), 7.0);
  EXPECT_EQ(value_of(series, "xpra_broker_journal_degraded"), 0.0);
  EXPECT_GT(value_of(series, "xpra_broker_journal_bytes").value_or(0), 0.0);
  EXPECT_GE(value_of(series, "xpra_broker_journal_commit_duration_seconds_count").value_or(0), 5.0);
  EXPECT_EQ(value_of(series, "xpra_broker_journal_commit_duration_seconds_bucket", {{"le", "+Inf"}}),
            value_of(series, "xpra_broker_journal_commit_duration_seconds_count"));
  EXPECT_EQ(value_of(series, "xpra_broker_user_series_truncated"), 0.0);
  EXPECT_GT(value_of(series, "xpra_broker_uptime_seconds").value_or(0), 0.0);
  bool build_info = false;
  for (const auto& s : series) build_info |= s.name == "xpra_broker_build_info" && s.labels.count("version");
  EXPECT_TRUE(build_info);

  // Promtool's linter agrees with the format, where it is installed.
  if (::access("/usr/bin/promtool", X_OK) == 0) {
    const auto lint = run_as("root", {"sh", "-c", "promtool check metrics < \"$1\"", "sh", prom});
    EXPECT_EQ(lint.exit_code, 0) << lint.describe();
  }
}

TEST_F(MetricsTest, OnlyRootAndAdminGroupsMayAskWithoutOutputItIsStdout) {
  // Bob's own group is the admin group here; alice is an allowed user,
  // mallory not even that.
  start_broker({"--displays=1110-1111", "--allowed-groups=xpb-users", "--admin-groups=xpb-bob"});
  for (const char* user : {kAlice, kMallory}) {
    const auto r = broker_->client_as(user, {"metrics"});
    EXPECT_EQ(r.exit_code, 77) << user << ": " << r.describe();
    EXPECT_EQ(r.out, "");
    EXPECT_NE(r.err.find("admin-groups"), std::string::npos) << r.err;
    // Nor may they have it written anywhere.
    const auto w = broker_->client_as(user, {"metrics", "--output", scratch(std::string(user) + ".prom")});
    EXPECT_EQ(w.exit_code, 77) << w.describe();
    EXPECT_FALSE(std::ifstream(scratch(std::string(user) + ".prom")).good());
  }
  const auto admin = broker_->client_as(kBob, {"metrics"});
  EXPECT_EQ(admin.exit_code, 0) << admin.describe();
  EXPECT_NE(admin.out.find("# TYPE xpra_broker_leases gauge\n"), std::string::npos) << admin.out;
  EXPECT_NE(admin.out.find("xpra_broker_requests_total{verb=\"metrics\",status=\"DENIED\"} 4\n"), std::string::npos)
      << admin.out;
  // Bad usage never reaches the broker.
  EXPECT_EQ(broker_->client_as("root", {"metrics", "--bogus"}).exit_code, 64);
  EXPECT_EQ(broker_->client_as("root", {"metrics", "--output"}).exit_code, 64);
  // A file that cannot be written: exit 74, nothing left behind.
  const auto unwritable = broker_->client_as("root", {"metrics", "--output", "/nonexistent-dir/x.prom"});
  EXPECT_EQ(unwritable.exit_code, 74) << unwritable.describe();
}

// Like status and list: a user looping `metrics` (allowed or not) is
// answered late, at reads-per-second after the burst; root is not paced.
TEST_F(MetricsTest, MetricsAreReadPacedPerUserLikeStatus) {
  start_broker({"--displays=1112-1113", "--allowed-groups=xpb-users", "--admin-groups=xpb-bob", "--read-burst=2",
                "--reads-per-second=2"});
  const std::string loop = "i=0; while [ $i -lt 10 ]; do \"$1\" --socket \"$2\" metrics >/dev/null 2>&1; "
                           "[ $? -eq \"$3\" ] || exit 1; i=$((i+1)); done";
  const auto timed = [&](const std::string& user, int expected_exit) {
    const auto start = std::chrono::steady_clock::now();
    const auto r = run_as(user, {"sh", "-c", loop, "sh", request_display_path(), broker_->socket_path(),
                                 std::to_string(expected_exit)});
    EXPECT_EQ(r.exit_code, 0) << user << " got another exit code than " << expected_exit << ": " << r.describe();
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  };
  // 10 requests, a burst of 2, then 2 a second: at least 8/2 = 4 s when
  // paced. Root's bound is loose (10 client runs take ~0.1 s), so a loaded
  // host does not fail it.
  const double denied = timed(kAlice, 77);
  const double admin = timed(kBob, 0);
  const double root = timed("root", 0);
  std::cout << "10 metrics requests: alice (denied) " << denied << " s, bob (admin) " << admin << " s, root " << root
            << " s\n";
  EXPECT_GE(denied, 3.8);
  EXPECT_GE(admin, 3.8);
  EXPECT_LT(root, 3.0);
}

// The alerts an admin fears most, on what the real broker wrote: alice's
// sessions fail at once and her supervisor keeps asking (back-off refuses
// her), bob is refused only for his quota (the control: not a loop), and
// three X servers of bob's run on numbers of the range without a lease (the
// range eaten from outside). Each round is one scrape; promtool replays the
// scrapes a minute apart against the shipped rules and must see
// XpraBrokerRestartLoop for alice alone and XpraBrokerRangeEatenFromOutside.
TEST_F(MetricsTest, AlertsFireOnTheBrokersOwnSeries) {
  if (::access("/usr/bin/promtool", X_OK) != 0) GTEST_SKIP() << "promtool (Debian package prometheus) is missing";
  start_broker({"--displays=1120-1129", "--allowed-groups=xpb-users", "--max-leases-per-user=1",
                "--failures-before-backoff=3", "--backoff-base-ms=600000", "--acquire-burst=1000",
                "--acquires-per-minute=1000"});
  // Bob's X servers on :1120-:1122, started outside the broker.
  std::vector<ChildProcess> foreign;
  for (const int display : {1120, 1121, 1122})
    foreign.push_back(spawn_as(kBob, {"Xvfb", ":" + std::to_string(display), "-nolisten", "tcp", "-noreset"}));
  ASSERT_TRUE(wait_until(
      [&] {
        for (const int display : {1120, 1121, 1122})
          if (::access(("/tmp/.X11-unix/X" + std::to_string(display)).c_str(), F_OK) != 0) return false;
        return true;
      },
      30s));
  // Before any acquire has probed them, free_displays already leaves them out.
  const auto scrape = [&] {
    const auto r = broker_->client_as("root", {"metrics"});
    EXPECT_EQ(r.exit_code, 0) << r.describe();
    return r.out;
  };
  std::string first;
  ASSERT_TRUE(wait_until([&] {
    first = scrape();
    return value_of(parse_samples(first), "xpra_broker_blocked_displays", {{"reason", "in_use"}}) == 3.0;
  }, 10s)) << first;
  EXPECT_EQ(value_of(parse_samples(first), "xpra_broker_free_displays"), 7.0) << first;

  hold_lease(kBob, false);
  ASSERT_TRUE(wait_until([&] { return lease_count() == 1; }, 30s));
  // Alice's three failed sessions start her back-off (10 minutes here).
  for (int i = 0; i < 3; ++i) EXPECT_EQ(broker_->client_as(kAlice, {"exec", "--", "false"}).exit_code, 1);
  constexpr int kRounds = 25;
  std::vector<std::vector<Series>> scrapes;
  for (int round = 0; round < kRounds; ++round) {
    EXPECT_EQ(broker_->client_as(kAlice, {"exec", "--", "false"}).exit_code, 124);  // backing off
    EXPECT_EQ(broker_->client_as(kBob, {"exec", "--", "true"}).exit_code, 124);    // his quota
    scrapes.push_back(parse_samples(scrape()));
  }
  const std::string alice_uid = std::to_string(uid_of(kAlice)), bob_uid = std::to_string(uid_of(kBob));
  EXPECT_EQ(value_of(scrapes.back(), "xpra_broker_user_acquire_refusals_total",
                     {{"user", kAlice}, {"uid", alice_uid}, {"reason", "backoff"}}),
            double{kRounds});
  EXPECT_EQ(value_of(scrapes.back(), "xpra_broker_user_acquire_refusals_total",
                     {{"user", kBob}, {"uid", bob_uid}, {"reason", "user_quota"}}),
            double{kRounds});

  // Shown in the test's output: the real series the alerts are tested on.
  std::cout << "---- the broker's last scrape (per-user refusals, free and in-use displays) ----\n";
  for (const auto& series : scrapes.back())
    if (series.name == "xpra_broker_user_acquire_refusals_total" || series.name == "xpra_broker_free_displays" ||
        (series.name == "xpra_broker_blocked_displays" && series.labels.count("reason") &&
         series.labels.at("reason") == "in_use")) {
      std::cout << series.name;
      for (const auto& [k, v] : series.labels) std::cout << " " << k << "=" << v;
      std::cout << " " << series.value << "\n";
    }
  // Every xpra_broker_ series of every scrape, as node-exporter would label
  // them; a series missing from a scrape is '_'.
  std::map<std::string, std::vector<std::string>> series;
  for (std::size_t i = 0; i < scrapes.size(); ++i)
    for (const auto& s : scrapes[i]) {
      if (s.name.rfind("xpra_broker_", 0) != 0) continue;
      std::string key = s.name + "{instance=\"h1:9100\",job=\"node\"";
      for (const auto& [k, v] : s.labels) key += "," + k + "=\"" + v + "\"";
      key += "}";
      auto& values = series[key];
      values.resize(scrapes.size(), "_");
      std::ostringstream value;
      value << s.value;
      values[i] = value.str();
    }
  TempDir dir("xpb-metrics-alerts", 0755);
  std::ofstream yml(dir.path() + "/test.yml");
  yml << "rule_files:\n  - " << XPB_ALERT_RULES << "\nevaluation_interval: 1m\ntests:\n  - interval: 1m\n"
      << "    input_series:\n";
  for (const auto& [name, values] : series) {
    yml << "      - series: '" << name << "'\n        values: '";
    for (std::size_t i = 0; i < values.size(); ++i) yml << (i ? " " : "") << values[i];
    yml << "'\n";
  }
  const std::string instance = "              instance: h1:9100\n              job: node\n";
  yml << "    alert_rule_test:\n"
      << "      - eval_time: 10m\n        alertname: XpraBrokerRestartLoop\n        exp_alerts: []  # pending\n"
      << "      - eval_time: 24m\n        alertname: XpraBrokerRestartLoop\n        exp_alerts:\n"
      << "          - exp_labels:\n              severity: warning\n" << instance
      << "              user: " << kAlice << "\n              uid: \"" << alice_uid << "\"\n"
      << "            exp_annotations:\n"
      << "              summary: \"" << kAlice << "'s X sessions are in a restart loop on h1:9100\"\n"
      << "              description: \"Acquires of this user are refused again and again for back-off or rate: "
         "the user's sessions fail soon after they start and something restarts them. `journalctl -u "
         "xpra-brokerd` shows the user's failed sessions; the session's own error output says why they fail.\"\n"
      << "      - eval_time: 24m\n        alertname: XpraBrokerRangeEatenFromOutside\n        exp_alerts:\n"
      << "          - exp_labels:\n              severity: warning\n" << instance
      << "            exp_annotations:\n"
      << "              summary: \"3 display numbers of the broker's range are taken outside the broker on "
         "h1:9100\"\n"
      << "              description: \"X servers or Xpra sessions that hold no broker lease run on numbers of the "
         "broker's range. `xpra-request-display status` (as root) lists the skipped numbers and their owners; "
         "start them through the broker, or move the range (displays=).\"\n"
      << "      - eval_time: 24m\n        alertname: XpraBrokerNoFreeDisplays\n        exp_alerts: []\n";
  yml.close();
  const auto promtool = run_as("root", {"promtool", "test", "rules", dir.path() + "/test.yml"});
  EXPECT_EQ(promtool.exit_code, 0) << promtool.describe() << "\n---- test.yml ----\n" << read_file(dir.path() + "/test.yml");
  std::cout << promtool.out;
}

}  // namespace
}  // namespace xpra_broker::integration
