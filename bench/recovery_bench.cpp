// xpra-broker-recovery-bench: what durable leases cost and how fast a broker
// is back after a crash.
//
// (i) Throughput of acquire+release pairs with --journal=yes and with
//     --journal=no, in the same run, alternating so that other load on the
//     host hits both alike: N client threads (as root, each a user of its own,
//     uid 2000000+i, set on that thread only), one persistent connection
//     each, a fixed number of pairs per client.
// (ii) Recovery time: one root connection takes L leases (default 5000),
//     the broker is killed with SIGKILL and started again on the same runtime
//     dir and socket; measured from the exec of the new broker to its first
//     successful status reply (which must count all L leases), next to what
//     the broker itself logs ("ready N ms after start"). Repeated R times.
//
// Each broker runs on a private temporary runtime dir, socket and X11 dir,
// so nothing on the host is touched. A program, not a test: it prints figures
// and exits 0 whenever it could measure (1 if it could not, 64 bad usage).
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/syscall.h>
#include <linux/magic.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <charconv>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <latch>
#include <optional>
#include <regex>
#include <sstream>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "bench_support.h"
#include "bench_temp_dir.h"
#include "broker_connection.h"
#include "latency_stats.h"

using namespace xpra_broker;
using namespace xpra_broker::bench;
using Clock = std::chrono::steady_clock;

namespace {

constexpr double kGoalRecoveryMs = 300.0;
constexpr uid_t kFirstClientUid = 2000000;

struct Options {
  int clients = 16;
  int pairs = 2000;  // per client and run
  int throughput_runs = 3;
  int leases = 5000;
  int restarts = 5;
  std::string recovery_log_level = "info";
  std::string broker = XPRA_BROKERD_PATH;
};

void print_help() {
  std::cout << "Usage: xpra-broker-recovery-bench [OPTIONS]\n"
               "\n"
               "(i) acquire+release throughput with --journal=yes against --journal=no;\n"
               "(ii) time from the exec of a restarted broker (after kill -9) until it serves\n"
               "again, with many leases to recover from its journal.\n"
               "\n"
               "Options:\n"
               "  --clients N     client threads for (i) (default 16)\n"
               "  --pairs N       acquire+release pairs per client and run (default 2000)\n"
               "  --runs N        runs per journal setting for (i), alternating (default 3)\n"
               "  --leases N      leases held when the broker is killed, (ii) (default 5000)\n"
               "  --restarts N    kill -9 and restart cycles for (ii) (default 5)\n"
               "  --recovery-log-level L  the broker's log-level in (ii) (default info, as\n"
               "                  deployed; below info the 'ready' line is not logged)\n"
               "  --broker PATH   xpra-brokerd to run (default " XPRA_BROKERD_PATH ")\n"
               "  -h, --help      show this help and exit\n"
               "\n"
               "Goal: serving again within 300 ms of the restart with 5000 leases.\n";
}

std::optional<long> parse_whole(const std::string& text, long min, long max) {
  long value = 0;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (ec != std::errc{} || end != text.data() + text.size() || value < min || value > max) return std::nullopt;
  return value;
}

int parse_args(int argc, char** argv, Options& options) {
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i], value;
    if (const auto eq = arg.find('='); arg.rfind("--", 0) == 0 && eq != std::string::npos) {
      value = arg.substr(eq + 1);
      arg = arg.substr(0, eq);
    } else if (arg != "-h" && arg != "--help" && i + 1 < argc) {
      value = argv[++i];
    }
    auto usage = [&](const std::string& why) {
      std::cerr << "xpra-broker-recovery-bench: " << why << "; see --help\n";
      return 64;
    };
    auto whole = [&](int& out, long min, long max) {
      const auto n = parse_whole(value, min, max);
      if (!n) return false;
      out = static_cast<int>(*n);
      return true;
    };
    if (arg == "-h" || arg == "--help") return print_help(), 0;
    if (arg == "--clients") {
      if (!whole(options.clients, 1, 900)) return usage("--clients takes 1-900");
    } else if (arg == "--pairs") {
      if (!whole(options.pairs, 1, 10000000)) return usage("--pairs takes a positive number");
    } else if (arg == "--runs") {
      if (!whole(options.throughput_runs, 1, 100)) return usage("--runs takes 1-100");
    } else if (arg == "--leases") {
      if (!whole(options.leases, 1, 9000)) return usage("--leases takes 1-9000 (displays 1000-9999)");
    } else if (arg == "--restarts") {
      if (!whole(options.restarts, 1, 100)) return usage("--restarts takes 1-100");
    } else if (arg == "--recovery-log-level") {
      if (value.empty()) return usage("--recovery-log-level needs a level");
      options.recovery_log_level = value;
    } else if (arg == "--broker") {
      if (value.empty()) return usage("--broker needs a path");
      options.broker = value;
    } else {
      return usage("unexpected argument '" + std::string(argv[i]) + "'");
    }
  }
  return -1;
}

// One broker on a private runtime dir that can be killed and started again
// on the same dir and socket. Never leaves a broker running behind it.
class Broker {
 public:
  Broker(const std::string& program, std::vector<std::string> extra_args) : program_(program) {
    run_dir_ = dir_.path() + "/run";
    socket_ = run_dir_ + "/broker.sock";
    log_path_ = dir_.path() + "/broker.log";
    const std::string x11 = dir_.path() + "/x11";
    std::filesystem::create_directories(x11 + "/.X11-unix");
    std::ofstream(dir_.path() + "/broker.conf") << "# empty: every setting is on the command line\n";
    args_ = {"--config=" + dir_.path() + "/broker.conf",
             "--socket=" + socket_,
             "--runtime-dir=" + run_dir_,
             "--x11-tmp-dir=" + x11,
             "--displays=1000-9999",
             "--max-leases=100000",
             "--max-leases-per-user=100000",
             "--max-connections-per-user=1000",
             "--acquire-burst=100000",
             "--acquires-per-minute=1000000",
             "--failures-before-backoff=1000",
             "--reattach-grace-seconds=3600"};
    args_.insert(args_.end(), extra_args.begin(), extra_args.end());
  }
  Broker(const Broker&) = delete;
  Broker& operator=(const Broker&) = delete;

  // Forks and execs the broker (call only while this process has no other
  // threads); returns the moment just before the fork.
  Clock::time_point spawn() {
    const auto t0 = Clock::now();
    process_ = ChildProcess(spawn_logged(program_, args_, log_path_));
    return t0;
  }

  // Polls until a status request is answered; the moment of that reply and
  // the lease count it reports. Throws with the log if the broker exits or
  // takes longer than two minutes.
  std::pair<Clock::time_point, std::uint32_t> wait_until_serving() {
    const auto give_up = Clock::now() + std::chrono::seconds(120);
    while (Clock::now() < give_up) {
      if (process_.exited()) throw std::runtime_error("xpra-brokerd exited during start-up; its log:\n" + log());
      if (const auto response = status_reply(socket_, std::chrono::seconds(60)))
        return {Clock::now(), response->status_reply().leases()};
      std::this_thread::sleep_for(std::chrono::microseconds(500));
    }
    throw std::runtime_error("xpra-brokerd did not answer within 120 s; its log:\n" + log());
  }

  void kill9() { process_.kill_now(); }
  void stop() { process_.stop(); }

  // CPU time the broker has run, and has waited runnable for a CPU, summed
  // over its threads, in milliseconds: on a busy host the wall time to
  // serving is mostly the second.
  std::pair<double, double> sched_ms() const {
    if (process_.pid() <= 0) return {0, 0};
    const SchedTime t = sched_time_of(process_.pid());
    return {static_cast<double>(t.run_ns) / 1e6, static_cast<double>(t.wait_ns) / 1e6};
  }

  const std::string& socket() const { return socket_; }
  std::string log() const { return read_file(log_path_); }
  std::uintmax_t journal_bytes() const {
    std::error_code ec;
    const auto size = std::filesystem::file_size(run_dir_ + "/leases.journal", ec);
    return ec ? 0 : size;
  }
  // The broker's own figure from its "ready N ms after start" line.
  std::optional<long> logged_ready_ms() const {
    static const std::regex ready("ready ([0-9]+) ms after start");
    std::smatch m;
    const std::string text = log();
    if (std::regex_search(text, m, ready)) return std::stol(m[1]);
    return std::nullopt;
  }

 private:
  TempDir dir_{"xpra-broker-recovery-bench", 0755};  // 0755: client threads run as other uids
  std::string program_;
  std::string run_dir_, socket_, log_path_;
  std::vector<std::string> args_;
  ChildProcess process_;  // after dir_: stopped before the dir is removed
};

// Takes another identity for the calling thread only (raw syscalls: glibc's
// wrappers would change every thread of the process).
bool become_user_on_this_thread(uid_t uid) {
  return ::syscall(SYS_setgroups, 0, nullptr) == 0 && ::syscall(SYS_setresgid, uid, uid, uid) == 0 &&
         ::syscall(SYS_setresuid, uid, uid, uid) == 0;
}

struct ThroughputRun {
  bool journal = false;
  std::uint64_t pairs = 0;
  std::uint64_t errors = 0;
  std::string first_error;
  double seconds = 0;
  double pairs_per_second = 0;
  LatencySummary pair;
  std::uintmax_t journal_bytes_after = 0;
};

ThroughputRun measure_throughput(const Options& options, bool journal) {
  Broker broker(options.broker, {journal ? "--journal=yes" : "--journal=no", "--log-level=warn"});
  broker.spawn();
  broker.wait_until_serving();

  struct PerClient {
    std::vector<std::uint32_t> pair_ns;
    std::uint64_t errors = 0;
    std::string first_error;
  };
  const bool distinct_users = ::geteuid() == 0;
  std::vector<PerClient> results(static_cast<std::size_t>(options.clients));
  std::latch connected(options.clients), go(1);
  std::vector<std::thread> threads;
  for (int i = 0; i < options.clients; ++i) {
    threads.emplace_back([&, i] {
      PerClient& out = results[static_cast<std::size_t>(i)];
      const bool identity = !distinct_users || become_user_on_this_thread(kFirstClientUid + static_cast<uid_t>(i));
      auto conn = identity ? BrokerConnection::connect(broker.socket(), std::chrono::seconds(5)) : BrokerConnection();
      connected.count_down();
      go.wait();
      if (!conn.connected()) {
        out.errors = 1;
        out.first_error = identity ? "connect failed" : "cannot take a uid of its own";
        return;
      }
      out.pair_ns.reserve(static_cast<std::size_t>(options.pairs));
      v1::Request acquire, release;
      acquire.mutable_acquire()->set_purpose("recovery-bench");
      v1::Response response;
      for (int n = 0; n < options.pairs; ++n) {
        const auto t0 = Clock::now();
        if (conn.call(acquire, response) != BrokerConnection::Error::none || response.status() != v1::OK) {
          if (out.errors++ == 0) out.first_error = "acquire: " + response.message();
          if (!conn.connected() || out.errors > 100) return;
          continue;
        }
        release.mutable_release()->set_lease_id(response.acquire().lease().id());
        if (conn.call(release, response) != BrokerConnection::Error::none || response.status() != v1::OK) {
          if (out.errors++ == 0) out.first_error = "release: " + response.message();
          if (out.errors > 100) return;
          continue;
        }
        out.pair_ns.push_back(static_cast<std::uint32_t>(
            std::min<std::int64_t>(std::chrono::duration_cast<std::chrono::nanoseconds>(Clock::now() - t0).count(),
                                   UINT32_MAX)));
      }
    });
  }
  connected.wait();
  const auto start = Clock::now();
  go.count_down();
  for (auto& t : threads) t.join();
  const auto took = Clock::now() - start;

  ThroughputRun run;
  run.journal = journal;
  std::vector<std::uint32_t> all;
  for (auto& r : results) {
    all.insert(all.end(), r.pair_ns.begin(), r.pair_ns.end());
    run.errors += r.errors;
    if (run.first_error.empty()) run.first_error = r.first_error;
  }
  run.pairs = all.size();
  run.seconds = std::chrono::duration<double>(took).count();
  run.pairs_per_second = run.seconds > 0 ? static_cast<double>(run.pairs) / run.seconds : 0;
  run.pair = summarize(all);
  run.journal_bytes_after = broker.journal_bytes();
  return run;
}

double median(std::vector<double> v) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  const std::size_t n = v.size();
  return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

double ms(Clock::duration d) { return std::chrono::duration<double, std::milli>(d).count(); }

int run(const Options& options) {
  std::printf("xpra-broker-recovery-bench: broker %s\n", options.broker.c_str());
  std::printf("load average at start: %s", read_file("/proc/loadavg").c_str());
  {
    // The journal is meant for a tmpfs (/run); on a disk file system each
    // append costs more. Where the runtime dirs go says which was measured.
    const char* base = std::getenv("TMPDIR");
    const std::string where = base && *base ? base : "/tmp";
    struct statfs fs {};
    const bool tmpfs = ::statfs(where.c_str(), &fs) == 0 && fs.f_type == TMPFS_MAGIC;
    std::printf("runtime dirs (and journals) under %s: %s\n", where.c_str(),
                tmpfs ? "tmpfs, as /run is when deployed"
                      : "not a tmpfs (deployed, /run is one; TMPDIR=/dev/shm measures on a tmpfs)");
  }

  // ---- (i) throughput, journal on and off, alternating.
  std::printf("\n(i) acquire+release throughput, %d clients (%s), %d pairs each per run, %d runs per setting\n",
              options.clients, ::geteuid() == 0 ? "each a uid of its own" : "all this process's uid",
              options.pairs, options.throughput_runs);
  std::vector<double> with_journal, without_journal;
  std::vector<double> p50_with, p50_without, p99_with, p99_without;
  for (int r = 0; r < options.throughput_runs; ++r) {
    for (bool journal : {true, false}) {
      const auto run = measure_throughput(options, journal);
      std::printf("  run %d journal=%-3s %8llu pairs in %6.2f s: %8.0f pairs/s  p50 %7.1f us  p99 %8.1f us%s%s\n",
                  r + 1, journal ? "yes" : "no", static_cast<unsigned long long>(run.pairs), run.seconds,
                  run.pairs_per_second, run.pair.p50_us, run.pair.p99_us,
                  journal ? ("  (journal " + std::to_string(run.journal_bytes_after) + " bytes after)").c_str() : "",
                  run.errors ? ("  ERRORS " + std::to_string(run.errors) + ": " + run.first_error).c_str() : "");
      (journal ? with_journal : without_journal).push_back(run.pairs_per_second);
      (journal ? p50_with : p50_without).push_back(run.pair.p50_us);
      (journal ? p99_with : p99_without).push_back(run.pair.p99_us);
    }
  }
  const double yes = median(with_journal), no = median(without_journal);
  std::printf("  median: journal=yes %.0f pairs/s (p50 %.1f us, p99 %.1f us); journal=no %.0f pairs/s (p50 %.1f us, "
              "p99 %.1f us); journal costs %.1f%% of throughput\n",
              yes, median(p50_with), median(p99_with), no, median(p50_without), median(p99_without),
              no > 0 ? 100.0 * (no - yes) / no : 0.0);

  // ---- (ii) recovery time with many leases.
  std::printf("\n(ii) recovery: %d leases held by one root connection, kill -9, restart on the same runtime dir; "
              "%d times; broker log-level %s\n",
              options.leases, options.restarts, options.recovery_log_level.c_str());
  Broker broker(options.broker, {"--journal=yes", "--log-level=" + options.recovery_log_level});
  broker.spawn();
  broker.wait_until_serving();
  {
    auto conn = BrokerConnection::connect(broker.socket(), std::chrono::seconds(5));
    conn.set_timeout(std::chrono::seconds(60));
    v1::Request acquire;
    acquire.mutable_acquire()->set_purpose("recovery-bench");
    v1::Response response;
    const auto t0 = Clock::now();
    for (int i = 0; i < options.leases; ++i)
      if (conn.call(acquire, response) != BrokerConnection::Error::none || response.status() != v1::OK)
        throw std::runtime_error("acquire #" + std::to_string(i + 1) + " failed: " + response.message());
    std::printf("  %d leases acquired in %.0f ms; journal %ju bytes\n", options.leases, ms(Clock::now() - t0),
                broker.journal_bytes());
    // The connection ends with the broker's death, not before: the leases
    // must be held (not released) when it is killed.
    broker.kill9();
  }
  std::vector<double> to_serving, logged, cpu;
  for (int r = 0; r < options.restarts; ++r) {
    if (r > 0) broker.kill9();
    const auto exec_at = broker.spawn();
    const auto [served_at, leases] = broker.wait_until_serving();
    const double took = ms(served_at - exec_at);
    const auto [ran_ms, waited_ms] = broker.sched_ms();
    const auto ready = broker.logged_ready_ms();
    to_serving.push_back(took);
    cpu.push_back(ran_ms);
    if (ready) logged.push_back(static_cast<double>(*ready));
    std::printf("  restart %d: first status reply %.1f ms after exec, %u leases recovered; broker log: ready %s ms "
                "after start; broker ran %.1f ms on a CPU, waited %.1f ms for one\n",
                r + 1, took, leases, ready ? std::to_string(*ready).c_str() : "?", ran_ms, waited_ms);
    if (leases != static_cast<std::uint32_t>(options.leases))
      std::printf("  WARNING: expected %d leases after the restart, the broker has %u\n", options.leases, leases);
  }
  broker.stop();
  const double med = median(to_serving), worst = *std::max_element(to_serving.begin(), to_serving.end());
  std::printf("  exec to first status reply: median %.1f ms, max %.1f ms", med, worst);
  if (!logged.empty())
    std::printf("; broker's own 'ready' figure: median %.0f ms, max %.0f ms", median(logged),
                *std::max_element(logged.begin(), logged.end()));
  std::printf("; CPU time of the broker until then: median %.1f ms, max %.1f ms", median(cpu),
              *std::max_element(cpu.begin(), cpu.end()));
  std::printf("\n\ngoal: serving again within %.0f ms with %d leases: %s (median %.1f ms, max %.1f ms)\n",
              kGoalRecoveryMs, options.leases, worst <= kGoalRecoveryMs ? "MET" : med <= kGoalRecoveryMs ? "MET at the median, MISSED at the max" : "MISSED", med, worst);
  std::printf("load average at end: %s", read_file("/proc/loadavg").c_str());
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  Options options;
  if (int rc = parse_args(argc, argv, options); rc >= 0) return rc;
  try {
    return run(options);
  } catch (const std::exception& e) {
    std::cerr << "xpra-broker-recovery-bench: " << e.what() << "\n";
    return 1;
  }
}
