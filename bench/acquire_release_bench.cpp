// xpra-broker-bench: acquire+release round trips against the real
// xpra-brokerd, next to a bare framed-echo server (the floor), with the same
// client code (common/broker_connection.h) and the same concurrency levels.
//
// Each client is a thread with one persistent BrokerConnection doing
// acquire, then release of that lease, for a fixed time; the latency of each
// pair is recorded. The broker runs on a private temporary runtime dir,
// socket and X11 dir, so nothing on the host is touched.
//
// Run as root, each client thread is a user of its own (uids 2000000 and up,
// set on that thread only, before it connects), as on a multi-user host: the
// broker's per-user quotas and rate limits then see 64 users, not one. The
// per-user acquire rate limit is raised for the benchmark all the same.
//
// A program, not a test: it prints figures and exits 0 whenever it could
// measure, whether or not the goals are met (the JSON says which).
#include <signal.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <latch>
#include <nlohmann/json.hpp>
#include <optional>
#include <sstream>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "bench_support.h"
#include "bench_temp_dir.h"
#include "broker_connection.h"
#include "frame_echo_server.h"
#include "framing.h"
#include "latency_stats.h"

using namespace xpra_broker;
using namespace xpra_broker::bench;
using Clock = std::chrono::steady_clock;
using nlohmann::json;

namespace {

// The goals this benchmark reports against.
constexpr double kGoalP50RatioMax = 3.0;
constexpr double kGoalPairsPerSecondMin = 20000.0;
constexpr int kGoalThroughputClients = 64;

std::atomic<bool> g_interrupted{false};

struct Options {
  double seconds = 3.0;
  double warmup_seconds = 0.3;
  std::vector<int> clients{1, 16, 64};
  std::vector<EchoLoop> floors{EchoLoop::epoll, EchoLoop::asio};
  std::string broker = XPRA_BROKERD_PATH;
  std::string baseline_broker;  // another build, measured in the same run ("baseline" rows)
  std::vector<std::string> broker_args;
  bool same_user = false;
  bool json = false;
};

// The first uid a client thread takes when run as root.
constexpr uid_t kFirstClientUid = 2000000;

void print_help() {
  std::cout << "Usage: xpra-broker-bench [OPTIONS]\n"
               "\n"
               "Starts xpra-brokerd on a temporary socket and measures acquire+release pairs\n"
               "(one persistent connection per client thread), next to a bare framed-echo\n"
               "server that shows the floor of the same client code and transport.\n"
               "\n"
               "Options:\n"
               "  --seconds N      measuring time per server and concurrency level (default 3)\n"
               "  --warmup N       unrecorded seconds before each measurement (default 0.3)\n"
               "  --clients LIST   concurrency levels, comma-separated (default 1,16,64)\n"
               "  --floors LIST    floor servers: epoll, asio, asio-no-timer, or none\n"
               "                   (default epoll,asio; epoll is the floor the goal uses)\n"
               "  --broker PATH    xpra-brokerd to run (default " XPRA_BROKERD_PATH ")\n"
               "  --baseline-broker PATH  another xpra-brokerd (e.g. the build before a change),\n"
               "                   measured at each level right before the broker, in the same run\n"
               "  --broker-arg ARG one more argument for xpra-brokerd (repeatable)\n"
               "  --same-user      every client connects as the caller's own uid (run as\n"
               "                   root, each client is by default a user of its own)\n"
               "  --json           machine-readable output on stdout\n"
               "  -h, --help       show this help and exit\n"
               "\n"
               "Goals: broker p50 within 3x of the epoll floor's p50; at least 20000\n"
               "pairs/s with 64 clients. Exit status: 0 measured, 1 could not measure,\n"
               "64 bad usage.\n";
}

std::vector<std::string> split_commas(const std::string& text) {
  std::vector<std::string> parts;
  std::stringstream in(text);
  for (std::string part; std::getline(in, part, ',');)
    if (!part.empty()) parts.push_back(part);
  return parts;
}

// Returns an exit code to stop with, or -1 to go on.
int parse_args(int argc, char** argv, Options& options) {
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    std::string value;
    const auto eq = arg.find('=');
    if (arg.rfind("--", 0) == 0 && eq != std::string::npos) {
      value = arg.substr(eq + 1);
      arg = arg.substr(0, eq);
    }
    auto need_value = [&]() -> bool {
      if (!value.empty()) return true;
      if (i + 1 >= argc) return false;
      value = argv[++i];
      return true;
    };
    auto usage_error = [&](const std::string& why) {
      std::cerr << "xpra-broker-bench: " << why << "; see --help\n";
      return 64;
    };
    if (arg == "-h" || arg == "--help") return print_help(), 0;
    if (arg == "--json") {
      options.json = true;
    } else if (arg == "--same-user") {
      options.same_user = true;
    } else if (arg == "--broker-arg") {
      if (!need_value()) return usage_error("--broker-arg needs an argument");
      options.broker_args.push_back(value);
    } else if (arg == "--seconds" || arg == "--warmup") {
      if (!need_value()) return usage_error(arg + " needs a number");
      const auto n = parse_number(value);
      if (!n || *n < 0 || *n > 3600 || (arg == "--seconds" && *n <= 0))
        return usage_error(arg + " must be a number of seconds (0-3600)");
      (arg == "--seconds" ? options.seconds : options.warmup_seconds) = *n;
    } else if (arg == "--clients") {
      if (!need_value()) return usage_error("--clients needs a list, e.g. 1,16,64");
      options.clients.clear();
      for (const auto& part : split_commas(value)) {
        const auto n = parse_number(part);
        if (!n || *n < 1 || *n > 900 || *n != static_cast<int>(*n))
          return usage_error("--clients takes whole numbers from 1 to 900");
        options.clients.push_back(static_cast<int>(*n));
      }
      if (options.clients.empty()) return usage_error("--clients needs at least one level");
    } else if (arg == "--floors") {
      if (!need_value()) return usage_error("--floors needs a list, e.g. epoll,asio");
      options.floors.clear();
      if (value != "none")
        for (const auto& part : split_commas(value)) {
          const auto loop = parse_echo_loop(part);
          if (!loop) return usage_error("unknown floor '" + part + "' (epoll, asio, asio-no-timer, none)");
          options.floors.push_back(*loop);
        }
    } else if (arg == "--baseline-broker") {
      if (!need_value()) return usage_error("--baseline-broker needs a path");
      options.baseline_broker = value;
    } else if (arg == "--broker") {
      if (!need_value()) return usage_error("--broker needs a path");
      options.broker = value;
    } else {
      return usage_error("unexpected argument '" + std::string(argv[i]) + "'");
    }
  }
  return -1;
}

// ---- /proc figures ------------------------------------------------------------

// VmRSS and VmHWM in kB from /proc/<pid>/status; -1 when unreadable.
struct MemoryUse {
  long rss_kb = -1;
  long hwm_kb = -1;
};
MemoryUse memory_of(pid_t pid) {
  MemoryUse use;
  std::istringstream in(read_file("/proc/" + std::to_string(pid) + "/status"));
  for (std::string line; std::getline(in, line);) {
    if (line.rfind("VmRSS:", 0) == 0) use.rss_kb = std::strtol(line.c_str() + 6, nullptr, 10);
    if (line.rfind("VmHWM:", 0) == 0) use.hwm_kb = std::strtol(line.c_str() + 6, nullptr, 10);
  }
  return use;
}

// The 1-minute load average: other work on the host skews every figure.
double load_average() {
  double one = -1;
  std::istringstream(read_file("/proc/loadavg")) >> one;
  return one;
}

// CPU time of this process (every client thread, finished ones included).
std::uint64_t own_cpu_ns() {
  rusage use{};
  ::getrusage(RUSAGE_SELF, &use);
  auto ns = [](const timeval& t) { return std::uint64_t(t.tv_sec) * 1000000000u + std::uint64_t(t.tv_usec) * 1000u; };
  return ns(use.ru_utime) + ns(use.ru_stime);
}

// Waits until the broker answers a status request. Throws with its log if
// it exits or does not answer in time.
void wait_for_broker(ChildProcess& broker, const std::string& socket, const std::string& log_path) {
  // Generous: under valgrind the broker starts ~50x slower.
  const auto give_up = Clock::now() + std::chrono::seconds(120);
  while (Clock::now() < give_up) {
    if (broker.exited())
      throw std::runtime_error("xpra-brokerd exited during start-up; its log:\n" + read_file(log_path));
    if (status_reply(socket, std::chrono::seconds(30))) return;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  throw std::runtime_error("xpra-brokerd did not answer within 120 s; its log:\n" + read_file(log_path));
}

// Config keys this broker knows, from its --help (the table of keys).
bool broker_knows_key(const std::string& broker, const std::string& key) {
  const std::string command = "'" + broker + "' --help 2>/dev/null";
  FILE* help = ::popen(command.c_str(), "r");
  if (!help) return false;
  std::string text;
  char buf[4096];
  for (std::size_t n; (n = std::fread(buf, 1, sizeof(buf), help)) > 0;) text.append(buf, n);
  ::pclose(help);
  return text.find("  " + key + " ") != std::string::npos;
}

// ---- the client workload ----------------------------------------------------

// Takes another identity for the calling thread only. The raw syscalls are on
// purpose: glibc's wrappers change every thread of the process.
bool become_user_on_this_thread(uid_t uid, gid_t gid) {
  return ::syscall(SYS_setgroups, 0, nullptr) == 0 && ::syscall(SYS_setresgid, gid, gid, gid) == 0 &&
         ::syscall(SYS_setresuid, uid, uid, uid) == 0;
}

struct ClientResult {
  std::vector<std::uint32_t> pair_ns;
  std::vector<std::uint32_t> acquire_ns;
  std::vector<std::uint32_t> release_ns;
  std::uint64_t errors = 0;
  std::string first_error;
  Clock::time_point finished;
  std::uint64_t all_pairs = 0;  // warm-up included
};

std::uint32_t nanoseconds(Clock::duration d) {
  const auto ns = std::chrono::duration_cast<std::chrono::nanoseconds>(d).count();
  return static_cast<std::uint32_t>(std::clamp<std::int64_t>(ns, 0, UINT32_MAX));
}

struct RunWindow {
  Clock::time_point record_from;
  Clock::time_point stop_at;
};

// One client: connect, wait for the start, then acquire+release until stop_at.
// `uid` < 0: keep the process's identity.
void run_client(const std::string& socket, long uid, std::latch& connected, std::latch& go, const RunWindow& window,
                ClientResult& out) {
  const bool identity_ok =
      uid < 0 || become_user_on_this_thread(static_cast<uid_t>(uid), static_cast<gid_t>(uid));
  const int identity_errno = errno;
  auto conn = identity_ok ? BrokerConnection::connect(socket, std::chrono::seconds(5)) : BrokerConnection();
  connected.count_down();
  go.wait();
  if (!identity_ok) {
    out.errors = 1;
    out.first_error = std::string("cannot take uid ") + std::to_string(uid) + ": " + std::strerror(identity_errno);
    out.finished = Clock::now();
    return;
  }
  if (!conn.connected()) {
    out.errors = 1;
    out.first_error = std::string("connect: ") + describe(conn.error()) + ": " + std::strerror(conn.errno_value());
    out.finished = Clock::now();
    return;
  }
  const std::size_t expected = 1 << 13;
  out.pair_ns.reserve(expected);
  out.acquire_ns.reserve(expected);
  out.release_ns.reserve(expected);

  v1::Request acquire;
  acquire.mutable_acquire()->set_purpose("xpra-broker-bench");
  v1::Request release;
  v1::Response response;
  auto fail = [&](const std::string& what) {
    if (out.errors++ == 0) out.first_error = what;
  };

  while (!g_interrupted.load(std::memory_order_relaxed)) {
    const auto t0 = Clock::now();
    if (t0 >= window.stop_at) break;
    if (auto e = conn.call(acquire, response); e != BrokerConnection::Error::none) {
      fail(std::string("acquire: ") + describe(e));
      break;  // the connection is unusable
    }
    if (response.status() != v1::OK || !response.has_acquire()) {
      fail("acquire: status " + v1::Status_Name(response.status()) + ": " + response.message());
      if (out.errors > 1000) break;
      continue;
    }
    release.mutable_release()->set_lease_id(response.acquire().lease().id());
    const auto t1 = Clock::now();
    if (auto e = conn.call(release, response); e != BrokerConnection::Error::none) {
      fail(std::string("release: ") + describe(e));
      break;
    }
    const auto t2 = Clock::now();
    if (response.status() != v1::OK) {
      fail("release: status " + v1::Status_Name(response.status()) + ": " + response.message());
      if (out.errors > 1000) break;
      continue;
    }
    ++out.all_pairs;
    if (t0 >= window.record_from) {
      out.pair_ns.push_back(nanoseconds(t2 - t0));
      out.acquire_ns.push_back(nanoseconds(t1 - t0));
      out.release_ns.push_back(nanoseconds(t2 - t1));
    }
  }
  out.finished = Clock::now();
}

struct RunResult {
  std::string server;
  int clients = 0;
  std::uint64_t pairs = 0;
  double seconds = 0;
  double pairs_per_second = 0;
  std::uint64_t errors = 0;
  std::string first_error;
  LatencySummary pair, acquire, release;
  // The server process over the whole run (warm-up included): CPU per pair,
  // share of one CPU it ran, and share it waited runnable for a CPU.
  double server_cpu_us_per_pair = 0;
  double server_busy = 0;
  double server_wait = 0;
  double client_cpu_us_per_pair = 0;
};

RunResult measure(const std::string& server, pid_t server_pid, const std::string& socket, int clients,
                  const Options& options) {
  std::vector<ClientResult> results(static_cast<std::size_t>(clients));
  std::latch connected(clients);
  std::latch go(1);
  RunWindow window;
  std::vector<std::thread> threads;
  threads.reserve(results.size());
  const bool distinct_users = ::geteuid() == 0 && !options.same_user;
  for (std::size_t i = 0; i < results.size(); ++i) {
    const long uid = distinct_users ? static_cast<long>(kFirstClientUid + i) : -1;
    threads.emplace_back(run_client, std::cref(socket), uid, std::ref(connected), std::ref(go), std::cref(window),
                         std::ref(results[i]));
  }
  connected.wait();
  const SchedTime server_before = sched_time_of(server_pid);
  const std::uint64_t clients_before = own_cpu_ns();
  const auto start = Clock::now();
  window.record_from = start + std::chrono::duration_cast<Clock::duration>(
                                   std::chrono::duration<double>(options.warmup_seconds));
  window.stop_at =
      window.record_from + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(options.seconds));
  go.count_down();
  for (auto& t : threads) t.join();
  const double wall_ns = std::chrono::duration<double, std::nano>(Clock::now() - start).count();
  const SchedTime server_after = sched_time_of(server_pid);
  const std::uint64_t clients_after = own_cpu_ns();

  RunResult run;
  run.server = server;
  run.clients = clients;
  std::vector<std::uint32_t> pair, acquire, release;
  Clock::time_point last = window.record_from;
  for (auto& r : results) {
    pair.insert(pair.end(), r.pair_ns.begin(), r.pair_ns.end());
    acquire.insert(acquire.end(), r.acquire_ns.begin(), r.acquire_ns.end());
    release.insert(release.end(), r.release_ns.begin(), r.release_ns.end());
    run.errors += r.errors;
    if (run.first_error.empty()) run.first_error = r.first_error;
    last = std::max(last, r.finished);
  }
  run.pairs = pair.size();
  run.seconds = std::chrono::duration<double>(last - window.record_from).count();
  run.pairs_per_second = run.seconds > 0 ? static_cast<double>(run.pairs) / run.seconds : 0;
  run.pair = summarize(pair);
  run.acquire = summarize(acquire);
  run.release = summarize(release);
  std::uint64_t all_pairs = 0;  // warm-up included, as the CPU times are
  for (auto& r : results) all_pairs += r.all_pairs;
  if (all_pairs) {
    run.server_cpu_us_per_pair = double(server_after.run_ns - server_before.run_ns) / 1000.0 / double(all_pairs);
    run.client_cpu_us_per_pair = double(clients_after - clients_before) / 1000.0 / double(all_pairs);
  }
  run.server_busy = double(server_after.run_ns - server_before.run_ns) / wall_ns;
  run.server_wait = double(server_after.wait_ns - server_before.wait_ns) / wall_ns;
  return run;
}

// ---- output -----------------------------------------------------------------

json to_json(const LatencySummary& s) {
  return {{"count", s.count}, {"mean", s.mean_us}, {"p50", s.p50_us},
          {"p90", s.p90_us},  {"p99", s.p99_us},   {"max", s.max_us}};
}

json to_json(const RunResult& r) {
  json j = {{"server", r.server},
            {"clients", r.clients},
            {"pairs", r.pairs},
            {"seconds", r.seconds},
            {"pairs_per_second", r.pairs_per_second},
            {"errors", r.errors},
            {"pair_us", to_json(r.pair)},
            {"acquire_us", to_json(r.acquire)},
            {"release_us", to_json(r.release)},
            {"server_cpu_us_per_pair", r.server_cpu_us_per_pair},
            {"server_busy", r.server_busy},
            {"server_runnable_waiting", r.server_wait},
            {"client_cpu_us_per_pair", r.client_cpu_us_per_pair}};
  if (!r.first_error.empty()) j["first_error"] = r.first_error;
  return j;
}

void print_header() {
  std::printf("%-19s %7s %8s %9s %9s %9s %9s %8s %8s %8s %6s %6s %8s %6s\n", "server", "clients", "pairs",
              "pairs/s", "p50 us", "p90 us", "p99 us", "acq p50", "rel p50", "srv cpu", "busy", "wait", "cli cpu",
              "errors");
}

void print_row(const RunResult& r) {
  std::printf("%-19s %7d %8llu %9.0f %9.1f %9.1f %9.1f %8.1f %8.1f %8.1f %5.0f%% %5.0f%% %8.1f %6llu\n",
              r.server.c_str(), r.clients, static_cast<unsigned long long>(r.pairs), r.pairs_per_second, r.pair.p50_us,
              r.pair.p90_us, r.pair.p99_us, r.acquire.p50_us, r.release.p50_us, r.server_cpu_us_per_pair,
              100 * r.server_busy, 100 * r.server_wait, r.client_cpu_us_per_pair,
              static_cast<unsigned long long>(r.errors));
  if (!r.first_error.empty()) std::printf("    first error: %s\n", r.first_error.c_str());
  std::fflush(stdout);
}

void on_signal(int) { g_interrupted.store(true); }

int run(const Options& options) {
  struct sigaction sa {};
  sa.sa_handler = on_signal;
  ::sigaction(SIGINT, &sa, nullptr);
  ::sigaction(SIGTERM, &sa, nullptr);

  TempDir temp("xpra-broker-bench");
  const std::string config_path = temp.path() + "/broker.conf";
  // Client threads may run as other uids: they must reach the sockets.
  ::chmod(temp.path().c_str(), 0755);
  std::ofstream(config_path) << "# empty: every setting is on the command line\n";

  // A broker on its own runtime and X11 dirs under `temp`.
  struct RunningBroker {
    std::string path, socket, log;
    std::vector<std::string> args;
    ChildProcess process;
  };
  const auto start_broker = [&](const std::string& path, const std::string& tag) {
    RunningBroker b;
    b.path = path;
    const std::string run_dir = temp.path() + "/run" + tag;
    const std::string x11_dir = temp.path() + "/x11" + tag;
    b.socket = run_dir + "/broker.sock";
    b.log = temp.path() + "/broker" + tag + ".log";
    std::filesystem::create_directories(x11_dir + "/.X11-unix");
    b.args = {"--config=" + config_path,       "--socket=" + b.socket,           "--runtime-dir=" + run_dir,
              "--x11-tmp-dir=" + x11_dir,      "--displays=1000-9999",           "--max-leases=100000",
              "--max-leases-per-user=100000",  "--max-connections-per-user=1000", "--log-level=warn"};
    // The per-user acquire rate limit (restart-loop defence) would measure
    // the limit, not the broker: raise it to its maximum where the broker
    // has it.
    for (const auto& [key, value] : {std::pair<const char*, const char*>{"acquire-burst", "100000"},
                                     {"acquires-per-minute", "1000000"}})
      if (broker_knows_key(path, key)) b.args.push_back(std::string("--") + key + "=" + value);
    b.args.insert(b.args.end(), options.broker_args.begin(), options.broker_args.end());
    // Dies with SIGTERM if this process dies; says in its log if it cannot run.
    b.process = ChildProcess(spawn_logged(path, b.args, b.log, {.death_signal = SIGTERM, .log_exec_failure = true}));
    wait_for_broker(b.process, b.socket, b.log);
    return b;
  };
  // The brokers first, while this process has no threads (fork).
  RunningBroker main_broker = start_broker(options.broker, "");
  std::optional<RunningBroker> baseline;
  if (!options.baseline_broker.empty()) baseline = start_broker(options.baseline_broker, "-baseline");
  ChildProcess& broker = main_broker.process;
  const std::string& broker_socket = main_broker.socket;
  const std::string& log_path = main_broker.log;
  const std::vector<std::string>& broker_args = main_broker.args;
  const MemoryUse before = memory_of(broker.pid());
  const double load_before = load_average();

  // One real pair: its reply is what the echo servers send back, so the floor
  // moves the same bytes as the broker.
  std::string reply_frame;
  std::size_t acquire_request_bytes = 0, release_request_bytes = 0;
  {
    auto conn = BrokerConnection::connect(broker_socket, std::chrono::seconds(5));
    conn.set_timeout(std::chrono::seconds(30));
    v1::Request acquire;
    acquire.mutable_acquire()->set_purpose("xpra-broker-bench");
    v1::Response response;
    if (conn.call(acquire, response) != BrokerConnection::Error::none || response.status() != v1::OK)
      throw std::runtime_error("the first acquire failed: " + response.message());
    reply_frame = *wire::encode_frame(response);
    acquire_request_bytes = wire::encode_frame(acquire)->size();
    v1::Request release;
    release.mutable_release()->set_lease_id(response.acquire().lease().id());
    release_request_bytes = wire::encode_frame(release)->size();
    if (conn.call(release, response) != BrokerConnection::Error::none || response.status() != v1::OK)
      throw std::runtime_error("the first release failed: " + response.message());
  }

  struct Floor {
    EchoLoop loop;
    std::string socket;
    ChildProcess process;
  };
  std::vector<Floor> floors;
  for (EchoLoop loop : options.floors) {
    Floor floor{loop, temp.path() + "/" + name_of(loop) + ".sock", {}};
    UniqueFd listener = listen_unix(floor.socket);
    ::chmod(floor.socket.c_str(), 0666);
    floor.process = ChildProcess(fork_echo_server(loop, listener.get(), reply_frame));
    floors.push_back(std::move(floor));
  }

  if (!options.json) {
    std::printf("xpra-broker-bench: %.1f s per run (+%.1f s warm-up), clients %s\n", options.seconds,
                options.warmup_seconds, [&] {
                  std::string list;
                  for (int c : options.clients) list += (list.empty() ? "" : ",") + std::to_string(c);
                  return list;
                }().c_str());
    std::printf("broker: %s (pid %d)\n", options.broker.c_str(), broker.pid());
    if (baseline) std::printf("baseline: %s (pid %d)\n", baseline->path.c_str(), baseline->process.pid());
    std::printf("broker args:%s\n", shown_broker_args(broker_args).c_str());
    std::printf("clients: %s\n", ::geteuid() == 0 && !options.same_user
                                      ? "each thread a user of its own (uid 2000000+i), one connection each"
                                      : "all as this process's uid, one connection each");
    std::printf("frames: acquire request %zu B, release request %zu B, reply %zu B (echo servers send the same)\n",
                acquire_request_bytes, release_request_bytes, reply_frame.size());
    std::printf("host: %u CPUs, load average %.2f before the runs\n", std::thread::hardware_concurrency(), load_before);
    std::printf("columns: latency of one acquire+release pair (p50/p90/p99, and p50 of each call) in us;\n"
                "  srv cpu / cli cpu: CPU us per pair of the server process / of all client threads;\n"
                "  busy / wait: share of one CPU the server ran / waited runnable for a CPU\n\n");
    print_header();
    std::fflush(stdout);
  }

  std::vector<RunResult> runs;
  std::vector<std::pair<int, long>> rss_after_level;
  for (int clients : options.clients) {
    for (auto& floor : floors) {
      if (g_interrupted) break;
      runs.push_back(measure(name_of(floor.loop), floor.process.pid(), floor.socket, clients, options));
      if (!options.json) print_row(runs.back());
    }
    if (g_interrupted) break;
    if (baseline) {
      runs.push_back(measure("baseline", baseline->process.pid(), baseline->socket, clients, options));
      if (!options.json) print_row(runs.back());
    }
    runs.push_back(measure("broker", broker.pid(), broker_socket, clients, options));
    if (!options.json) print_row(runs.back());
    rss_after_level.emplace_back(clients, memory_of(broker.pid()).rss_kb);
    if (broker.exited()) throw std::runtime_error("xpra-brokerd died during the run; its log:\n" + read_file(log_path));
  }
  const MemoryUse after = memory_of(broker.pid());
  const double load_after = load_average();

  // Goals: p50 against the epoll floor at each level, throughput at 64.
  auto find_run = [&](const std::string& server, int clients) -> const RunResult* {
    for (const auto& r : runs)
      if (r.server == server && r.clients == clients) return &r;
    return nullptr;
  };
  json ratios = json::array();
  bool ratio_met = true;
  for (int clients : options.clients) {
    const RunResult* b = find_run("broker", clients);
    if (!b) continue;
    if (b->pairs == 0) {
      ratios.push_back({{"clients", clients}, {"goal_met", false}});
      ratio_met = false;
      continue;
    }
    json entry = {{"clients", clients}};
    for (const auto& floor : floors) {
      const RunResult* e = find_run(name_of(floor.loop), clients);
      if (!e || e->pair.p50_us <= 0) continue;
      entry[std::string("p50_vs_") + name_of(floor.loop)] = b->pair.p50_us / e->pair.p50_us;
      entry[std::string("pairs_per_second_vs_") + name_of(floor.loop)] = b->pairs_per_second / e->pairs_per_second;
    }
    if (entry.contains("p50_vs_echo-epoll")) {
      entry["goal_met"] = entry["p50_vs_echo-epoll"].get<double>() <= kGoalP50RatioMax;
      ratio_met = ratio_met && entry["goal_met"].get<bool>();
    }
    ratios.push_back(entry);
  }
  const RunResult* at64 = find_run("broker", kGoalThroughputClients);
  const bool throughput_met = at64 && at64->pairs_per_second >= kGoalPairsPerSecondMin;
  const bool have_floor = std::find(options.floors.begin(), options.floors.end(), EchoLoop::epoll) != options.floors.end();

  if (options.json) {
    json out = {{"seconds", options.seconds},
                {"warmup_seconds", options.warmup_seconds},
                {"clients", options.clients},
                {"cpus", std::thread::hardware_concurrency()},
                {"frames", {{"acquire_request_bytes", acquire_request_bytes},
                            {"release_request_bytes", release_request_bytes},
                            {"reply_bytes", reply_frame.size()}}},
                {"distinct_users", ::geteuid() == 0 && !options.same_user},
                {"load_average_before", load_before},
                {"load_average_after", load_after},
                {"broker", {{"path", options.broker},
                            {"args", broker_args},
                            {"pid", broker.pid()},
                            {"rss_kb_before", before.rss_kb},
                            {"rss_kb_after", after.rss_kb},
                            {"hwm_kb_after", after.hwm_kb},
                            {"rss_kb_after_level", json::array()}}},
                {"runs", json::array()},
                {"ratios", ratios},
                {"goals", {{"p50_ratio_max", kGoalP50RatioMax},
                           {"p50_ratio_met", have_floor ? json(ratio_met) : json(nullptr)},
                           {"pairs_per_second_min", kGoalPairsPerSecondMin},
                           {"throughput_clients", kGoalThroughputClients},
                           {"pairs_per_second", at64 ? json(at64->pairs_per_second) : json(nullptr)},
                           {"throughput_met", at64 ? json(throughput_met) : json(nullptr)}}},
                {"interrupted", g_interrupted.load()}};
    for (const auto& r : runs) out["runs"].push_back(to_json(r));
    for (const auto& [clients, rss] : rss_after_level)
      out["broker"]["rss_kb_after_level"].push_back({{"clients", clients}, {"rss_kb", rss}});
    std::cout << out.dump(2) << "\n";
    return 0;
  }

  std::printf("\nbroker RSS (VmRSS): %ld kB before, %ld kB after (VmHWM %ld kB); after each level:", before.rss_kb,
              after.rss_kb, after.hwm_kb);
  for (const auto& [clients, rss] : rss_after_level) std::printf(" %d clients %ld kB;", clients, rss);
  std::printf("\nload average after the runs: %.2f\n", load_after);
  std::printf("\nbroker against the floor (ratio of p50 latency; of throughput):\n");
  for (const auto& entry : ratios) {
    if (floors.empty()) break;
    std::printf("  %3d clients:", entry["clients"].get<int>());
    for (const auto& floor : floors) {
      const std::string key = std::string("p50_vs_") + name_of(floor.loop);
      if (!entry.contains(key)) {
        std::printf("  no successful broker pairs;");
        break;
      }
      std::printf("  p50 %.2fx, pairs/s %.2fx of %s;", entry[key].get<double>(),
                  entry[std::string("pairs_per_second_vs_") + name_of(floor.loop)].get<double>(), name_of(floor.loop));
    }
    std::printf("\n");
  }
  std::printf("\ngoals:\n");
  if (have_floor)
    std::printf("  broker p50 <= %.0fx echo-epoll p50 at every level: %s\n", kGoalP50RatioMax,
                ratio_met ? "MET" : "MISSED");
  else
    std::printf("  broker p50 <= %.0fx echo-epoll p50: not measured (--floors has no epoll)\n", kGoalP50RatioMax);
  if (at64)
    std::printf("  >= %.0f pairs/s with %d clients: %.0f pairs/s, %s\n", kGoalPairsPerSecondMin,
                kGoalThroughputClients, at64->pairs_per_second, throughput_met ? "MET" : "MISSED");
  else
    std::printf("  >= %.0f pairs/s with %d clients: not measured (--clients has no %d)\n", kGoalPairsPerSecondMin,
                kGoalThroughputClients, kGoalThroughputClients);
  if (g_interrupted) std::printf("\ninterrupted: the figures above are incomplete\n");
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  Options options;
  if (int rc = parse_args(argc, argv, options); rc >= 0) return rc;
  try {
    return run(options);
  } catch (const std::exception& e) {
    std::cerr << "xpra-broker-bench: " << e.what() << "\n";
    return 1;
  }
}
