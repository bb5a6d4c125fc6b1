// xpra-broker-metrics-bench: what the `metrics` verb costs (docs/monitoring.md).
//
// (i) Round trips against the real xpra-brokerd (started here on a private
//     runtime dir, socket and X11 dir), as root on one reused connection
//     (root is not paced): `status` (the baseline, measured in the same run)
//     and `metrics`, in alternating blocks so that other load on the host
//     hits both alike, with 0 leases and then with N leases (default 200,
//     held by one connection). Latency percentiles and reply sizes.
// (ii) The renderer alone, in process: render_metrics() for a snapshot with
//     256 users (the cap), i.e. the most per-user series a reply can carry.
//
// A program, not a test: it prints figures and exits 0 whenever it could
// measure. The broker it starts is stopped and reaped when it ends.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <stdexcept>
#include <string>
#include <vector>

#include "bench_support.h"
#include "bench_temp_dir.h"
#include "broker_connection.h"
#include "core/broker_metrics.h"
#include "latency_stats.h"

using namespace xpra_broker;
using namespace xpra_broker::bench;
using Clock = std::chrono::steady_clock;

namespace {

struct Options {
  int calls = 2000;  // per verb and lease count
  int leases = 200;
  std::string broker = XPRA_BROKERD_PATH;
};

int parse_args(int argc, char** argv, Options& o) {
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    auto next_number = [&](int min, int max) -> std::optional<int> {
      if (i + 1 >= argc) return std::nullopt;
      const auto n = parse_number(argv[++i]);
      if (!n || *n < min || *n > max) return std::nullopt;
      return static_cast<int>(*n);
    };
    if (arg == "-h" || arg == "--help") {
      std::cout << "Usage: xpra-broker-metrics-bench [--calls N] [--leases N] [--broker PATH]   (run as root)\n"
                   "  --calls N   round trips per verb and lease count (default 2000)\n"
                   "  --leases N  leases held in the second round (default 200)\n"
                   "Prints status vs metrics round-trip latency with 0 and N leases, and the\n"
                   "in-process cost of rendering the exposition for 256 users.\n";
      return 0;
    }
    if (arg == "--calls") {
      const auto n = next_number(10, 10000000);
      if (!n) return std::cerr << "--calls takes 10-10000000\n", 64;
      o.calls = *n;
    } else if (arg == "--leases") {
      const auto n = next_number(1, 5000);
      if (!n) return std::cerr << "--leases takes 1-5000\n", 64;
      o.leases = *n;
    } else if (arg == "--broker" && i + 1 < argc) {
      o.broker = argv[++i];
    } else {
      std::cerr << "xpra-broker-metrics-bench: unexpected argument '" << arg << "'; see --help\n";
      return 64;
    }
  }
  return -1;
}

class Broker {
 public:
  explicit Broker(const std::string& program) {
    const std::string run = dir_.path() + "/run", x11 = dir_.path() + "/x11";
    socket_ = run + "/broker.sock";
    log_ = dir_.path() + "/broker.log";
    std::filesystem::create_directories(x11 + "/.X11-unix");
    std::ofstream(dir_.path() + "/broker.conf") << "# empty: every setting is on the command line\n";
    process_ = ChildProcess(spawn_logged(
        program,
        {"--config=" + dir_.path() + "/broker.conf", "--socket=" + socket_, "--runtime-dir=" + run,
         "--x11-tmp-dir=" + x11, "--displays=1000-9999", "--max-leases=100000", "--max-leases-per-user=100000",
         "--acquire-burst=100000", "--acquires-per-minute=1000000", "--log-level=warn"},
        log_));
    const auto give_up = Clock::now() + std::chrono::seconds(60);
    while (!status_reply(socket_, std::chrono::seconds(5))) {
      if (Clock::now() > give_up) throw std::runtime_error("xpra-brokerd did not start; its log:\n" + read_file(log_));
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
  }
  const std::string& socket() const { return socket_; }

 private:
  TempDir dir_{"xpb-metrics-bench", 0755};
  std::string socket_, log_;
  ChildProcess process_;
};

struct Figures {
  LatencySummary latency;
  std::size_t reply_bytes = 0;
};

// Alternating blocks of `block` calls of each verb on one connection.
std::pair<Figures, Figures> measure(BrokerConnection& conn, int calls) {
  v1::Request status, metrics;
  status.mutable_status();
  metrics.mutable_metrics();
  std::vector<std::uint32_t> status_ns, metrics_ns;
  Figures s, m;
  constexpr int kBlock = 100;
  const auto call = [&](const v1::Request& r, std::vector<std::uint32_t>& out, std::size_t& bytes) {
    v1::Response response;
    const auto t0 = Clock::now();
    if (conn.call(r, response) != BrokerConnection::Error::none || response.status() != v1::OK)
      throw std::runtime_error("a request failed: " + response.message());
    out.push_back(static_cast<std::uint32_t>(std::chrono::duration_cast<std::chrono::nanoseconds>(Clock::now() - t0).count()));
    bytes = response.ByteSizeLong();
  };
  for (int i = 0; i < 50; ++i) {  // warm-up, not recorded
    std::vector<std::uint32_t> ignored;
    call(status, ignored, s.reply_bytes);
    call(metrics, ignored, m.reply_bytes);
  }
  for (int done = 0; done < calls; done += kBlock) {
    for (int i = 0; i < kBlock && done + i < calls; ++i) call(status, status_ns, s.reply_bytes);
    for (int i = 0; i < kBlock && done + i < calls; ++i) call(metrics, metrics_ns, m.reply_bytes);
  }
  s.latency = summarize(status_ns);
  m.latency = summarize(metrics_ns);
  return {s, m};
}

void print_row(const char* verb, int leases, const Figures& f) {
  std::printf("| %-7s | %5d | %8.1f | %8.1f | %8.1f | %8zu |\n", verb, leases, f.latency.p50_us, f.latency.p99_us,
              f.latency.mean_us, f.reply_bytes);
}

}  // namespace

int main(int argc, char** argv) {
  Options options;
  if (int rc = parse_args(argc, argv, options); rc >= 0) return rc;
  try {
    Broker broker(options.broker);
    auto conn = BrokerConnection::connect(broker.socket(), std::chrono::seconds(5));
    if (!conn.connected()) throw std::runtime_error("cannot connect to the broker");
    conn.set_timeout(std::chrono::seconds(30));
    std::printf("(i) round trips as root on one connection, %d per verb and row, alternating blocks of 100\n\n",
                options.calls);
    std::printf("| verb    | leases | p50 us   | p99 us   | mean us  | reply B  |\n");
    std::printf("|---------|--------|----------|----------|----------|----------|\n");
    const auto [status0, metrics0] = measure(conn, options.calls);
    print_row("status", 0, status0);
    print_row("metrics", 0, metrics0);
    // The leases live as long as the connection that took them.
    auto holder = BrokerConnection::connect(broker.socket(), std::chrono::seconds(5));
    for (int i = 0; i < options.leases; ++i) {
      v1::Request acquire;
      acquire.mutable_acquire()->set_purpose("metrics-bench");
      v1::Response response;
      if (holder.call(acquire, response) != BrokerConnection::Error::none || response.status() != v1::OK)
        throw std::runtime_error("acquire " + std::to_string(i) + " failed: " + response.message());
    }
    const auto [status_n, metrics_n] = measure(conn, options.calls);
    print_row("status", options.leases, status_n);
    print_row("metrics", options.leases, metrics_n);
    std::printf("\nmetrics/status p50: %.2fx with 0 leases, %.2fx with %d\n",
                metrics0.latency.p50_us / status0.latency.p50_us, metrics_n.latency.p50_us / status_n.latency.p50_us,
                options.leases);
  } catch (const std::exception& e) {
    std::cerr << "xpra-broker-metrics-bench: " << e.what() << "\n";
    return 1;
  }

  // (ii) The renderer alone, at the per-user cap, with every counter busy.
  BrokerCounters counters;
  for (int v = 10; v < 20; ++v)
    for (int s = 1; s < 8; ++s) counters.count_request(static_cast<v1::Request::VerbCase>(v), static_cast<v1::Status>(s));
  for (int i = 0; i < 1000; ++i) counters.reap_duration.observe(i * 0.01);
  MetricsSnapshot snapshot;
  snapshot.version = "bench";
  snapshot.journal = JournalMetrics{1 << 20, 5000, false, 0};
  snapshot.x_server_census_age_seconds = 1;
  for (uid_t uid = 0; uid < kMaxMetricsUsers; ++uid)
    snapshot.users.push_back({100000 + uid, "user" + std::to_string(100000 + uid), 2, 3});
  constexpr int kRenders = 2000;
  std::size_t bytes = 0;
  const auto t0 = Clock::now();
  for (int i = 0; i < kRenders; ++i) bytes = render_metrics(counters, snapshot).size();
  const double us = std::chrono::duration<double, std::micro>(Clock::now() - t0).count() / kRenders;
  std::printf("\n(ii) render_metrics() in process, %zu users, 70 request series: %.1f us per render, %zu bytes\n",
              kMaxMetricsUsers, us, bytes);
  return 0;
}
