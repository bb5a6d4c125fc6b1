// xpra-broker-probe-bench: where the broker's time goes inside one
// acquire+release, without sockets or the event loop. Each step is timed on
// its own (per call, p50 and mean), in a private temporary runtime dir and X11
// dir where no display is in use, so every probe takes the common "free" path:
//
//   DisplayProbe::probe          the whole host probe of one display number
//     name watch drain           one read() of the inotify fd (EAGAIN)
//     abstract listener probe    one connect() (ECONNREFUSED), two per probe
//     fallback: probe_socket_file  one fstatat() (ENOENT), what each of the
//                                four files costs when the watch cannot vouch
//   UserDirectories::ensure      one fstatat() when the directory is right
//     user_dir_intact            the watch's answer instead (no syscall)
//   new_lease_id                 getrandom
//   list_processes               the /proc scan the lease reaper does per
//                                release (when the broker has a reaper)
//   LeaseCore::handle           acquire+release pair, real probe and dirs,
//                                and the lease reaper and stale-artifact
//                                cleaner wired as main.cpp does
//   LeaseCore::handle           the same with both stubbed out (bookkeeping,
//                                policy, protobuf replies, log arguments)
//   frame codec                  what the server does per pair besides
//                                handle(): parse two requests, encode two
//                                reply frames
#include <sys/stat.h>
#include <unistd.h>

#include <charconv>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fcntl.h>
#include <functional>
#include <iostream>
#include <spdlog/spdlog.h>
#include <stdexcept>
#include <string>
#include <vector>

#include "bench_temp_dir.h"
#include "daemon/assembly.h"
// The broker's lifecycle parts (lease reaper, /proc census) are measured when
// this tree has them.
#if __has_include("lease_reaper.h") && __has_include("process_inspector.h")
#define BENCH_HAS_LIFECYCLE 1
#include <boost/asio/io_context.hpp>
#include "host/lease_reaper.h"
#include "host/process_inspector.h"
#include "host/stale_artifact_cleaner.h"
#endif
#include "host/display_probe.h"
#include "framing.h"
#include "latency_stats.h"
#include "host/user_directories.h"

using namespace xpra_broker;
using namespace xpra_broker::bench;
using Clock = std::chrono::steady_clock;

namespace {


// Stubs that take the host out of the handler, to see what is left.
class FreeHostProbe : public DisplayProbe {
 public:
  FreeHostProbe() : DisplayProbe("/nonexistent", "/nonexistent", "bench") {}
  DisplayFacts probe(std::uint32_t display, const std::string&) const override {
    DisplayFacts f;
    f.display = display;
    return f;
  }
};

class ReadyUserDirectories : public UserDirectories {
 public:
  explicit ReadyUserDirectories(std::string runtime_dir) : UserDirectories(UniqueFd(), runtime_dir, 0) {}
  Result ensure(uid_t uid) override {
    Result r;
    r.ok = true;
    r.path = path_for(uid);
    return r;
  }
};

struct Measured {
  std::string name;
  LatencySummary summary;
  int per_pair = 0;  // how many times one acquire+release does this
};

// Times `op(i)` for `iterations` calls, one sample per call.
Measured time_each(const std::string& name, int per_pair, int iterations, const std::function<void(int)>& op) {
  for (int i = 0; i < iterations / 10; ++i) op(i);  // warm caches and dentries
  std::vector<std::uint32_t> samples;
  samples.reserve(static_cast<std::size_t>(iterations));
  for (int i = 0; i < iterations; ++i) {
    const auto t0 = Clock::now();
    op(i);
    const auto t1 = Clock::now();
    samples.push_back(static_cast<std::uint32_t>(std::chrono::duration_cast<std::chrono::nanoseconds>(t1 - t0).count()));
  }
  return {name, summarize(samples), per_pair};
}

// The per-user acquire rate limit would stop the loop after a burst; raise it
// to the maximum where the configuration has it.
template <typename Config>
void relax_rate_limits(Config& c) {
  if constexpr (requires { c.acquire_burst; }) c.acquire_burst = 100000;
  if constexpr (requires { c.acquires_per_minute; }) c.acquires_per_minute = 1000000;
}

// Built as main.cpp builds it (daemon/assembly.h), without a journal.
BrokerAssembly make_broker(const BrokerConfig& config, std::unique_ptr<DisplayProbe> probe,
                           std::unique_ptr<UserDirectories> dirs, LeaseReaper* reaper = nullptr,
                           StaleArtifactCleaner* cleaner = nullptr) {
  AssemblyParts parts;
  parts.host.probe = std::move(probe);
  parts.host.user_dirs = std::move(dirs);
  parts.host.reaper = reaper;
  parts.host.cleaner = cleaner;
  return BrokerAssembly(config, AccessPolicy{}, std::move(parts));
}

// One acquire then release of that lease, through handle(); throws on failure
// so a misconfigured run cannot print figures for the error path.
void acquire_release(BrokerAssembly& broker, const Caller& caller, ConnectionId connection) {
  static v1::Request acquire = [] {
    v1::Request r;
    r.mutable_acquire()->set_purpose("xpra-broker-bench");
    return r;
  }();
  const v1::Response acquired = broker.core().handle(caller, connection, acquire);
  if (acquired.status() != v1::OK) throw std::runtime_error("acquire failed: " + acquired.message());
  v1::Request release;
  release.mutable_release()->set_lease_id(acquired.acquire().lease().id());
  const v1::Response released = broker.core().handle(caller, connection, release);
  if (released.status() != v1::OK) throw std::runtime_error("release failed: " + released.message());
}

int run(int iterations) {
  spdlog::set_level(spdlog::level::warn);  // as the benchmark runs the broker
  TempDir temp("xpra-broker-probe-bench");
  const std::string x11 = temp.path() + "/x11";
  const std::string run_dir = temp.path() + "/run";
  std::filesystem::create_directories(x11 + "/.X11-unix");
  std::filesystem::create_directories(run_dir);
  const std::string host = local_hostname();

  BrokerConfig config;
  config.runtime_dir = run_dir;
  config.x11_tmp_dir = x11;
  config.display_first = 1000;
  config.display_last = 9999;
  config.max_leases = 100000;
  config.max_leases_per_user = 100000;
  relax_rate_limits(config);

  Caller caller;
  caller.uid = ::geteuid();
  caller.gid = ::getegid();
  caller.pid = ::getpid();

  auto open_dir = [&] { return UniqueFd(::open(run_dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC)); };
  UserDirectories dirs(open_dir(), run_dir, ::getegid());
  const std::string user_dir = dirs.ensure(caller.uid).path;
  DisplayProbe probe(x11, run_dir, host);
  auto display = [](int i) { return static_cast<std::uint32_t>(1000 + i % 9000); };

  std::vector<Measured> rows;
  rows.push_back(time_each("DisplayProbe::probe", 1, iterations, [&](int i) {
    volatile auto facts = probe.probe(display(i), user_dir).lock.kind;
    (void)facts;
  }));
  rows.push_back(time_each("  name watch drain (no events)", 1, iterations, [&](int) { probe.drain_watch(); }));
  AbstractListenerProbe abstract_probe;
  rows.push_back(time_each("  abstract listener probe", 2, iterations, [&](int i) {
    if (abstract_probe.in_use("xpra/" + std::to_string(display(i)))) throw std::runtime_error("display in use");
  }));
  rows.push_back(time_each("  fallback: probe_socket_file", 4, iterations, [&](int i) {
    probe_socket_file(run_dir + "/" + host + "-" + std::to_string(display(i)));
  }));
  rows.push_back(time_each("UserDirectories::ensure", 1, iterations, [&](int) { dirs.ensure(caller.uid); }));
  probe.user_dir_verified(user_dir);
  rows.push_back(time_each("  user_dir_intact (watch)", 1, iterations, [&](int) {
    if (!probe.user_dir_intact(user_dir)) throw std::runtime_error("the watch does not vouch for the user dir");
  }));
  LinuxHost id_source({});  // random_id() only
  rows.push_back(time_each("new_lease_id", 1, iterations, [&](int) { id_source.random_id(); }));

#ifdef BENCH_HAS_LIFECYCLE
  rows.push_back(time_each("list_processes", 1, iterations, [&](int) { list_processes(); }));
#endif
  auto real_probe = std::make_unique<DisplayProbe>(x11, run_dir, host);
#ifdef BENCH_HAS_LIFECYCLE
  // As main.cpp wires it: a release ends the lease through the reaper, which
  // completes on the io_context.
  boost::asio::io_context io(1);
  StaleArtifactCleaner cleaner(x11, run_dir, host);
  AsioLeaseReaper reaper(io, cleaner, x11, std::chrono::milliseconds(3000), real_probe.get());
  BrokerAssembly real = make_broker(config, std::move(real_probe),
                                    std::make_unique<UserDirectories>(open_dir(), run_dir, ::getegid()), &reaper,
                                    &cleaner);
  const char* real_name = "handle() pair, real host+reaper";
#else
  BrokerAssembly real = make_broker(config, std::move(real_probe),
                                    std::make_unique<UserDirectories>(open_dir(), run_dir, ::getegid()));
  const char* real_name = "handle() pair, real host";
#endif
  rows.push_back(time_each(real_name, 1, iterations, [&](int) {
    acquire_release(real, caller, 1);
#ifdef BENCH_HAS_LIFECYCLE
    io.poll();
    io.restart();
#endif
  }));
  BrokerAssembly stubbed =
      make_broker(config, std::make_unique<FreeHostProbe>(), std::make_unique<ReadyUserDirectories>(run_dir));
  rows.push_back(
      time_each("handle() pair, host stubbed", 1, iterations, [&](int) { acquire_release(stubbed, caller, 1); }));

  // The server's codec work per pair: parse two request bodies, encode two
  // reply frames (the shapes of a real acquire and release).
  v1::Request acquire;
  acquire.mutable_acquire()->set_purpose("xpra-broker-bench");
  const std::string acquire_body = acquire.SerializeAsString();
  const v1::Response acquired = stubbed.core().handle(caller, 2, acquire);
  v1::Request release;
  release.mutable_release()->set_lease_id(acquired.acquire().lease().id());
  const std::string release_body = release.SerializeAsString();
  const v1::Response released = stubbed.core().handle(caller, 2, release);
  rows.push_back(time_each("frame codec, server side", 1, iterations, [&](int) {
    v1::Request a, r;
    a.ParseFromString(acquire_body);
    r.ParseFromString(release_body);
    volatile auto n = wire::encode_frame(acquired)->size() + wire::encode_frame(released)->size();
    (void)n;
  }));

  std::printf("xpra-broker-probe-bench: %d calls each, uid %u, temporary dirs under %s\n\n", iterations,
              static_cast<unsigned>(caller.uid), temp.path().c_str());
  std::printf("%-30s %9s %9s %9s %8s %12s\n", "step", "p50 us", "mean us", "p99 us", "x/pair", "us/pair(p50)");
  for (const auto& m : rows)
    std::printf("%-30s %9.2f %9.2f %9.2f %8d %12.2f\n", m.name.c_str(), m.summary.p50_us, m.summary.mean_us,
                m.summary.p99_us, m.per_pair, m.summary.p50_us * m.per_pair);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  int iterations = 20000;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    if (arg == "-h" || arg == "--help") {
      std::cout << "Usage: xpra-broker-probe-bench [--iterations N]\n"
                   "Times the steps of one acquire+release inside the broker, without sockets.\n";
      return 0;
    }
    if (arg == "--iterations" && i + 1 < argc) {
      const std::string v = argv[++i];
      auto [end, ec] = std::from_chars(v.data(), v.data() + v.size(), iterations);
      if (ec != std::errc{} || end != v.data() + v.size() || iterations < 10) {
        std::cerr << "xpra-broker-probe-bench: --iterations takes a whole number >= 10\n";
        return 64;
      }
      continue;
    }
    std::cerr << "xpra-broker-probe-bench: unexpected argument '" << arg << "'; see --help\n";
    return 64;
  }
  try {
    return run(iterations);
  } catch (const std::exception& e) {
    std::cerr << "xpra-broker-probe-bench: " << e.what() << "\n";
    return 1;
  }
}
