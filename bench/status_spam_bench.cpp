// xpra-broker-status-spam-bench: does one user's `status` spam stall another
// user's acquire+release? (issue 10, "No request stalls the loop")
//
// One run, three phases against one real xpra-brokerd (started here as root
// with --user=xpra-broker --group=xpra on a private runtime dir and socket):
//   A  baseline: a quiet host;
//   B  the host with N extra processes (default 10,000, children that pause(),
//      run as another user);
//   C  the same host while xpb-bob sends `status` as fast as the broker
//      answers, on 64 connections (one epoll loop).
// In each phase xpb-alice (a thread with her uid, gid and groups, set on that
// thread only) does acquire then release on one connection, back to back,
// and the latency of each pair is recorded. The table shows p50/p99/max per
// phase, p99 of C against B and A (the goal: C within 2x of B), the
// spammer's answered status requests per second and the broker's CPU time
// (/proc/<pid>/stat utime + stime) in each phase.
//
// A program, not a test: it prints figures and exits 0 whenever it could
// measure, whether or not the goal is met. Every process it starts (broker,
// process farm) is killed and reaped when it ends, also on SIGINT/SIGTERM.
#include <fcntl.h>
#include <grp.h>
#include <poll.h>
#include <pwd.h>
#include <signal.h>
#include <sched.h>
#include <sys/epoll.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
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
#include "framing.h"
#include "latency_stats.h"

using namespace xpra_broker;
using namespace xpra_broker::bench;
using Clock = std::chrono::steady_clock;
using nlohmann::json;

namespace {

// The goal, printed next to the figures (never asserted).
constexpr double kGoalP99RatioMax = 2.0;

std::atomic<bool> g_interrupted{false};

struct Options {
  double seconds = 10.0;
  double warmup_seconds = 1.0;
  std::uint64_t pairs = 0;  // 0: no limit, the phase lasts `seconds`
  double call_timeout_seconds = 120;
  bool reconnect = false;        // a new connection per pair, as xpra-request-display makes
  double ramp_timeout_seconds = 900;
  long processes = 10000;
  int spam_connections = 64;
  std::string victim = "xpb-alice";
  std::string spammer = "xpb-bob";
  std::string farm_user = "xpb-mallory";
  std::string broker = XPRA_BROKERD_PATH;
  std::vector<std::string> broker_args;
  bool json = false;
};

void print_help() {
  std::cout << "Usage: xpra-broker-status-spam-bench [OPTIONS]   (run as root)\n"
               "\n"
               "Starts xpra-brokerd as root (--user=xpra-broker --group=xpra) on a temporary\n"
               "runtime dir and socket and measures a well-behaved user's acquire+release\n"
               "latency in three phases: A a quiet host; B the host with N extra processes;\n"
               "C the same while another user spams `status` on 64 connections.\n"
               "The users come from tests/support/create-test-users.sh.\n"
               "\n"
               "Options:\n"
               "  --seconds N          measuring time per phase (default 10)\n"
               "  --pairs N            end a phase after N recorded pairs, if that comes first\n"
               "                       (default 0: no limit)\n"
               "  --warmup N           unrecorded seconds at the start of each phase (default 1)\n"
               "  --call-timeout N     seconds the victim waits for one reply (default 120); a pair\n"
               "                       that times out counts with the time waited\n"
               "  --reconnect          the victim opens a new connection for every pair (as\n"
               "                       xpra-request-display does); the connect is in the latency\n"
               "  --ramp-timeout N     C starts once every spam connection has had a reply, or\n"
               "                       after N seconds (default 900)\n"
               "  --processes N        extra processes on the host in B and C (default 10000)\n"
               "  --spam-connections N connections the spammer uses (default 64)\n"
               "  --victim USER        the well-behaved user (default xpb-alice)\n"
               "  --spammer USER       the user spamming status (default xpb-bob)\n"
               "  --farm-user USER     the user the extra processes run as (default xpb-mallory)\n"
               "  --broker PATH        xpra-brokerd to run (default " XPRA_BROKERD_PATH ")\n"
               "  --broker-arg ARG     one more argument for xpra-brokerd (repeatable)\n"
               "  --json               machine-readable output on stdout\n"
               "  -h, --help           show this help and exit\n"
               "\n"
               "Goal (issue 10): acquire+release p99 in C within 2x of B. Exit status: 0\n"
               "measured (goal met or not), 1 could not measure, 64 bad usage.\n";
}

// Returns an exit code to stop with, or -1 to go on.
int parse_args(int argc, char** argv, Options& options) {
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    std::string value;
    bool has_value = false;
    const auto eq = arg.find('=');
    if (arg.rfind("--", 0) == 0 && eq != std::string::npos) {
      value = arg.substr(eq + 1);
      arg = arg.substr(0, eq);
      has_value = true;
    }
    auto need_value = [&]() -> bool {
      if (has_value) return true;
      if (i + 1 >= argc) return false;
      value = argv[++i];
      return true;
    };
    auto usage_error = [&](const std::string& why) {
      std::cerr << "xpra-broker-status-spam-bench: " << why << "; see --help\n";
      return 64;
    };
    auto whole = [&](long min, long max) -> std::optional<long> {
      const auto n = parse_number(value);
      if (!n || *n < min || *n > max || *n != static_cast<double>(static_cast<long>(*n))) return std::nullopt;
      return static_cast<long>(*n);
    };
    if (arg == "-h" || arg == "--help") return print_help(), 0;
    if (arg == "--json") {
      options.json = true;
    } else if (arg == "--reconnect") {
      options.reconnect = true;
    } else if (arg == "--ramp-timeout") {
      if (!need_value()) return usage_error("--ramp-timeout needs a number");
      const auto n = parse_number(value);
      if (!n || *n < 1 || *n > 36000) return usage_error("--ramp-timeout must be 1-36000 seconds");
      options.ramp_timeout_seconds = *n;
    } else if (arg == "--call-timeout") {
      if (!need_value()) return usage_error("--call-timeout needs a number");
      const auto n = parse_number(value);
      if (!n || *n < 0.1 || *n > 3600) return usage_error("--call-timeout must be 0.1-3600 seconds");
      options.call_timeout_seconds = *n;
    } else if (arg == "--seconds" || arg == "--warmup") {
      if (!need_value()) return usage_error(arg + " needs a number");
      const auto n = parse_number(value);
      if (!n || *n < 0 || *n > 3600 || (arg == "--seconds" && *n <= 0))
        return usage_error(arg + " must be a number of seconds (0-3600)");
      (arg == "--seconds" ? options.seconds : options.warmup_seconds) = *n;
    } else if (arg == "--pairs") {
      if (!need_value()) return usage_error("--pairs needs a number");
      const auto n = whole(0, 100000000);
      if (!n) return usage_error("--pairs takes a whole number (0: no limit)");
      options.pairs = static_cast<std::uint64_t>(*n);
    } else if (arg == "--processes") {
      if (!need_value()) return usage_error("--processes needs a number");
      const auto n = whole(0, 1000000);
      if (!n) return usage_error("--processes takes a whole number from 0 to 1000000");
      options.processes = *n;
    } else if (arg == "--spam-connections") {
      if (!need_value()) return usage_error("--spam-connections needs a number");
      const auto n = whole(1, 10000);
      if (!n) return usage_error("--spam-connections takes a whole number from 1 to 10000");
      options.spam_connections = static_cast<int>(*n);
    } else if (arg == "--victim" || arg == "--spammer" || arg == "--farm-user") {
      if (!need_value() || value.empty()) return usage_error(arg + " needs a user name");
      (arg == "--victim" ? options.victim : arg == "--spammer" ? options.spammer : options.farm_user) = value;
    } else if (arg == "--broker") {
      if (!need_value()) return usage_error("--broker needs a path");
      options.broker = value;
    } else if (arg == "--broker-arg") {
      if (!need_value()) return usage_error("--broker-arg needs an argument");
      options.broker_args.push_back(value);
    } else {
      return usage_error("unexpected argument '" + std::string(argv[i]) + "'");
    }
  }
  return -1;
}

double seconds_between(Clock::time_point a, Clock::time_point b) {
  return std::chrono::duration<double>(b - a).count();
}

Clock::duration as_duration(double seconds) {
  return std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(seconds));
}

// Sleeps until `until` in short steps; false if interrupted first.
bool sleep_until(Clock::time_point until) {
  while (Clock::now() < until) {
    if (g_interrupted.load()) return false;
    std::this_thread::sleep_for(std::min<Clock::duration>(until - Clock::now(), std::chrono::milliseconds(50)));
  }
  return !g_interrupted.load();
}

// ---- identities ---------------------------------------------------------------

struct Account {
  std::string name;
  uid_t uid = 0;
  gid_t gid = 0;
  std::vector<gid_t> groups;  // supplementary, as at login
};

Account look_up_account(const std::string& name) {
  const passwd* pw = ::getpwnam(name.c_str());
  if (!pw)
    throw std::runtime_error("no user " + name + " (run tests/support/create-test-users.sh as root first)");
  Account account{name, pw->pw_uid, pw->pw_gid, {}};
  int count = 64;
  account.groups.resize(static_cast<std::size_t>(count));
  while (::getgrouplist(name.c_str(), pw->pw_gid, account.groups.data(), &count) < 0)
    account.groups.resize(static_cast<std::size_t>(count));
  account.groups.resize(static_cast<std::size_t>(count));
  return account;
}

// Takes `account`'s identity for the calling thread only. The raw syscalls
// are on purpose: glibc's wrappers change every thread of the process.
bool become_on_this_thread(const Account& account) {
  return ::syscall(SYS_setgroups, account.groups.size(), account.groups.data()) == 0 &&
         ::syscall(SYS_setresgid, account.gid, account.gid, account.gid) == 0 &&
         ::syscall(SYS_setresuid, account.uid, account.uid, account.uid) == 0;
}

// ---- the broker -----------------------------------------------------------------

// The broker as our child; SIGTERM, then SIGKILL after 5 s, and reaped when
// it goes. In a process group of its own: a ^C on the terminal reaches the
// benchmark, which then stops the broker itself, after the clients.
class BrokerProcess {
 public:
  BrokerProcess(const std::string& path, const std::vector<std::string>& args, const std::string& log_path)
      : log_path_(log_path),
        process_(spawn_logged(path, args, log_path, {.own_process_group = true}), std::chrono::seconds(5)) {}

  pid_t pid() const { return process_.pid(); }
  bool exited() { return process_.exited(); }
  void stop() { process_.stop(); }
  std::string log() const { return read_file(log_path_); }

  // utime + stime of every thread, in seconds (/proc/<pid>/stat).
  double cpu_seconds() const {
    if (pid() <= 0) return 0;
    const std::string stat = read_file("/proc/" + std::to_string(pid()) + "/stat");
    const auto paren = stat.rfind(')');  // comm may hold spaces
    if (paren == std::string::npos) return 0;
    std::istringstream in(stat.substr(paren + 2));
    std::string field;
    unsigned long long utime = 0, stime = 0;
    // Fields 3..13 (state .. cmajflt), then 14 utime and 15 stime.
    for (int i = 3; i <= 13 && in >> field; ++i) {
    }
    in >> utime >> stime;
    return static_cast<double>(utime + stime) / static_cast<double>(::sysconf(_SC_CLK_TCK));
  }

  // Waits until a status request (as root: never paced) is answered.
  void wait_until_serving(const std::string& socket, std::chrono::seconds timeout) {
    const auto give_up = Clock::now() + timeout;
    while (Clock::now() < give_up && !g_interrupted.load()) {
      if (exited()) throw std::runtime_error("xpra-brokerd exited; its log:\n" + log());
      if (status_reply(socket, std::chrono::seconds(60))) return;
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    if (g_interrupted.load()) throw std::runtime_error("interrupted");
    throw std::runtime_error("xpra-brokerd did not answer in time; its log:\n" + log());
  }

 private:
  std::string log_path_;
  ChildProcess process_;
};

// ---- the process farm ------------------------------------------------------------

// Kernel limits on the number of tasks. If the farm would not fit under
// them, they are raised for the run and put back afterwards.
class TaskLimits {
 public:
  explicit TaskLimits(long extra) {
    long tasks = 0;  // scheduling entities now: 4th field of loadavg, "running/total"
    {
      std::istringstream in(read_file("/proc/loadavg"));
      std::string a, b, c, running_total;
      in >> a >> b >> c >> running_total;
      const auto slash = running_total.find('/');
      if (slash != std::string::npos) tasks = std::strtol(running_total.c_str() + slash + 1, nullptr, 10);
    }
    const long needed = tasks + extra + 2000;  // the margin: the host keeps working
    for (const char* key : {"/proc/sys/kernel/pid_max", "/proc/sys/kernel/threads-max"}) {
      const long now = std::strtol(read_file(key).c_str(), nullptr, 10);
      if (now >= needed) continue;
      if (!write_value(key, needed))
        throw std::runtime_error(std::string(key) + " is " + std::to_string(now) + ", " + std::to_string(needed) +
                                 " are needed for --processes=" + std::to_string(extra) +
                                 " and it could not be raised: raise it or use fewer --processes");
      raised_.emplace_back(key, now);
      notes_.push_back(std::string(key) + " raised from " + std::to_string(now) + " to " +
                       std::to_string(needed) + " for the run");
    }
  }
  ~TaskLimits() {
    for (const auto& [key, value] : raised_) write_value(key, value);
  }
  TaskLimits(const TaskLimits&) = delete;
  TaskLimits& operator=(const TaskLimits&) = delete;
  const std::vector<std::string>& notes() const { return notes_; }

 private:
  static bool write_value(const std::string& key, long value) {
    std::ofstream out(key);
    out << value << "\n";
    out.flush();
    return static_cast<bool>(out);
  }
  std::vector<std::pair<std::string, long>> raised_;
  std::vector<std::string> notes_;
};

// N idle processes of another user, in a process group of their own: a
// leader forked at start-up (while this process has no threads) creates them
// on request. They die with their leader (PR_SET_PDEATHSIG), the leader dies
// with us; stop() kills the whole group and reaps every one of them (this
// process is a child subreaper, so orphans come back to it).
//
// The children are created with clone(CLONE_VM): processes of their own
// (own pid, own /proc entry, what the broker's /proc walk sees) that share
// the leader's memory, so no page tables are copied. On the development VM
// a fork took 2.7 ms and 10,000 of them most of a minute; clone(CLONE_VM)
// takes a seventh of that.
class ProcessFarm {
 public:
  explicit ProcessFarm(const Account& owner) {
    int command[2], report[2];
    if (::pipe2(command, O_CLOEXEC) != 0 || ::pipe2(report, O_CLOEXEC) != 0)
      throw std::runtime_error(std::string("pipe: ") + std::strerror(errno));
    const pid_t parent = ::getpid();
    const pid_t pid = ::fork();
    if (pid < 0) throw std::runtime_error(std::string("fork: ") + std::strerror(errno));
    if (pid == 0) {
      ::close(command[1]);
      ::close(report[0]);
      leader_main(owner, parent, command[0], report[1]);  // never returns
    }
    ::close(command[0]);
    ::close(report[1]);
    ::setpgid(pid, pid);  // also done by the child: whichever runs first
    leader_ = pid;
    command_fd_ = command[1];
    report_fd_ = report[0];
  }
  ~ProcessFarm() { stop(); }
  ProcessFarm(const ProcessFarm&) = delete;
  ProcessFarm& operator=(const ProcessFarm&) = delete;

  // Forks `count` idle processes; returns how many run. Throws if the leader
  // reports none or the run is interrupted.
  long spawn(long count) {
    if (::write(command_fd_, &count, sizeof(count)) != sizeof(count))
      throw std::runtime_error("the process farm's leader is gone");
    long reply[2] = {0, 0};  // spawned, errno of the first failed fork
    std::size_t got = 0;
    while (got < sizeof(reply)) {
      if (g_interrupted.load()) throw std::runtime_error("interrupted while forking the extra processes");
      pollfd p{report_fd_, POLLIN, 0};
      if (::poll(&p, 1, 100) <= 0) continue;
      const ssize_t n = ::read(report_fd_, reinterpret_cast<char*>(reply) + got, sizeof(reply) - got);
      if (n <= 0) throw std::runtime_error("the process farm's leader died");
      got += static_cast<std::size_t>(n);
    }
    if (reply[0] < count && reply[1] != 0)
      first_error_ = std::string("fork: ") + std::strerror(static_cast<int>(reply[1]));
    running_ = reply[0];
    return running_;
  }
  const std::string& first_error() const { return first_error_; }
  pid_t group() const { return leader_; }

  // Kills the group, reaps all of it; returns how many processes of the
  // group are still found in /proc afterwards (0 unless something is wrong).
  long stop() {
    if (leader_ <= 0) return 0;
    const pid_t group = leader_;
    ::close(command_fd_);
    ::close(report_fd_);
    ::kill(-group, SIGKILL);
    // Everything in the group is our child by now or becomes one when its
    // parent (the leader, also our child) is reaped: wait until none is left.
    for (;;) {
      const pid_t pid = ::waitpid(-group, nullptr, __WALL);
      if (pid > 0) continue;
      if (errno == EINTR) continue;
      break;  // ECHILD
    }
    leader_ = -1;
    return processes_in_group(group);
  }

  static long processes_in_group(pid_t group) {
    long found = 0;
    std::error_code ec;
    for (const auto& entry : std::filesystem::directory_iterator("/proc", ec)) {
      const std::string name = entry.path().filename().string();
      if (name.empty() || name.find_first_not_of("0123456789") != std::string::npos) continue;
      const std::string stat = read_file("/proc/" + name + "/stat");
      const auto paren = stat.rfind(')');
      if (paren == std::string::npos) continue;
      std::istringstream in(stat.substr(paren + 2));
      std::string state;
      long ppid = 0, pgrp = 0;
      if (in >> state >> ppid >> pgrp && pgrp == group) ++found;
    }
    return found;
  }

 private:
  // The leader, forked while the benchmark had no threads: it becomes the
  // farm's user, then forks idle children on request and reports how many.
  [[noreturn]] static void leader_main(const Account& owner, pid_t parent, int command_fd, int report_fd) {
    ::setpgid(0, 0);
    for (int sig : {SIGINT, SIGTERM, SIGHUP}) ::signal(sig, SIG_DFL);  // not the benchmark's handler
    const int null = ::open("/dev/null", O_RDWR | O_CLOEXEC);
    if (null >= 0)
      for (int fd : {STDIN_FILENO, STDOUT_FILENO, STDERR_FILENO}) ::dup2(null, fd);
    // Root may lift the per-user process limit before it becomes that user.
    const rlimit unlimited{RLIM_INFINITY, RLIM_INFINITY};
    ::setrlimit(RLIMIT_NPROC, &unlimited);
    if (::setgroups(0, nullptr) != 0 || ::setresgid(owner.gid, owner.gid, owner.gid) != 0 ||
        ::setresuid(owner.uid, owner.uid, owner.uid) != 0)
      ::_exit(126);
    // After the uid change: changing credentials clears the death signal.
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (::getppid() != parent) ::_exit(0);
    ::prctl(PR_SET_NAME, "xpb-bench-farm");
    // Children that die before the leader are reaped by the kernel; the
    // others come back to the benchmark (a subreaper) when the leader dies.
    ::signal(SIGCHLD, SIG_IGN);
    long count = 0;
    while (::read(command_fd, &count, sizeof(count)) == sizeof(count)) {
      long spawned = 0, first_errno = 0;
      // One small stack per child, never freed: the children use them until
      // they are killed. Only the pages they touch are ever allocated.
      constexpr std::size_t kStack = 32 * 1024;
      void* stacks = ::mmap(nullptr, static_cast<std::size_t>(count) * kStack, PROT_READ | PROT_WRITE,
                            MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
      if (stacks == MAP_FAILED) first_errno = errno;
      for (long i = 0; stacks != MAP_FAILED && i < count; ++i) {
        char* top = static_cast<char*>(stacks) + static_cast<std::size_t>(i + 1) * kStack;
        if (::clone(idle_child, top, CLONE_VM | SIGCHLD, nullptr) < 0) {
          first_errno = errno;
          break;
        }
        ++spawned;
      }
      const long reply[2] = {spawned, first_errno};
      if (::write(report_fd, reply, sizeof(reply)) != sizeof(reply)) break;
    }
    // Our parent closed the pipe or is gone: the group is killed from outside.
    for (;;) ::pause();
  }

  // An extra process: nothing but a pid and a /proc entry until it is killed.
  static int idle_child(void*) {
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);
    ::prctl(PR_SET_NAME, "xpb-bench-idle");
    for (;;) ::pause();
  }

  pid_t leader_ = -1;
  int command_fd_ = -1;
  int report_fd_ = -1;
  long running_ = 0;
  std::string first_error_;
};

long processes_on_host() {
  long count = 0;
  std::error_code ec;
  for (const auto& entry : std::filesystem::directory_iterator("/proc", ec)) {
    const std::string name = entry.path().filename().string();
    if (!name.empty() && name.find_first_not_of("0123456789") == std::string::npos) ++count;
  }
  return count;
}

// ---- the well-behaved user ----------------------------------------------------------

struct VictimResult {
  std::vector<std::uint64_t> pair_ns;  // recorded pairs only, timed-out ones included
  std::uint64_t timeouts = 0;          // recorded pairs the broker did not answer in time
  std::uint64_t errors = 0;            // timeouts included
  std::string first_error;
  Clock::time_point record_from;
  Clock::time_point finished;
  std::atomic<bool> done{false};
};

// Acquire, then release that lease, back to back on one connection, until
// the window ends or `max_pairs` pairs are recorded. A pair is recorded if it
// overlaps the window: it ends after the warm-up and starts before the end.
// Under a stalled broker one pair can outlast the warm-up or the window, and
// it is exactly the pair to count.
void run_victim(const std::string& socket, const Account& victim, Clock::time_point record_from,
                Clock::time_point stop_at, std::uint64_t max_pairs, std::chrono::milliseconds call_timeout,
                bool reconnect, VictimResult& out) {
  out.record_from = record_from;
  auto fail = [&](const std::string& what) {
    if (out.errors++ == 0) out.first_error = what;
  };
  auto finish = [&] {
    out.finished = Clock::now();
    out.done.store(true);
  };
  if (!become_on_this_thread(victim)) {
    fail("cannot take the identity of " + victim.name + ": " + std::strerror(errno));
    return finish();
  }
  auto connect = [&] {
    auto conn = BrokerConnection::connect(socket, std::chrono::seconds(10));
    conn.set_timeout(call_timeout);
    return conn;
  };
  // A pair the broker did not answer in time counts with the time waited
  // (a lower bound): dropping it would flatter a stalled broker.
  auto record = [&](Clock::time_point t0, Clock::time_point t1) {
    if (t1 > record_from)
      out.pair_ns.push_back(
          static_cast<std::uint64_t>(std::chrono::duration_cast<std::chrono::nanoseconds>(t1 - t0).count()));
  };
  auto timed_out = [&](Clock::time_point t0) {
    const auto now = Clock::now();
    if (now > record_from) ++out.timeouts;
    record(t0, now);
  };
  BrokerConnection conn = reconnect ? BrokerConnection() : connect();
  v1::Request acquire;
  acquire.mutable_acquire()->set_purpose("xpra-broker-status-spam-bench");
  v1::Request release;
  v1::Response response;
  while (!g_interrupted.load(std::memory_order_relaxed)) {
    const auto t0 = Clock::now();
    if (t0 >= stop_at || (max_pairs && out.pair_ns.size() >= max_pairs)) break;
    if (reconnect) conn = connect();
    if (!conn.connected()) {
      fail(std::string("connect: ") + describe(conn.error()) + ": " + std::strerror(conn.errno_value()));
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
      conn = connect();
      continue;
    }
    if (auto e = conn.call(acquire, response); e != BrokerConnection::Error::none) {
      fail(std::string("acquire: ") + describe(e));
      if (e == BrokerConnection::Error::timeout) timed_out(t0);
      conn = connect();  // the old connection is unusable
      continue;
    }
    if (response.status() != v1::OK || !response.has_acquire()) {
      fail("acquire: " + v1::Status_Name(response.status()) + ": " + response.message());
      std::this_thread::sleep_for(std::chrono::milliseconds(std::max<std::uint32_t>(response.retry_after_ms(), 10)));
      continue;
    }
    release.mutable_release()->set_lease_id(response.acquire().lease().id());
    if (auto e = conn.call(release, response); e != BrokerConnection::Error::none) {
      fail(std::string("release: ") + describe(e));
      if (e == BrokerConnection::Error::timeout) timed_out(t0);
      conn = connect();  // the lease ends with the connection
      continue;
    }
    const auto t1 = Clock::now();
    if (response.status() != v1::OK) {
      fail("release: " + v1::Status_Name(response.status()) + ": " + response.message());
      continue;
    }
    record(t0, t1);
    if (reconnect) conn = BrokerConnection();
  }
  finish();
}

// ---- the spammer --------------------------------------------------------------------

struct SpamCounters {
  std::atomic<std::uint64_t> answered{0};  // replies with status OK
  std::atomic<std::uint64_t> refused{0};   // replies with another status
  std::atomic<std::uint64_t> dropped{0};   // connections the broker closed or that failed
  std::atomic<int> connected{0};
  std::atomic<int> answered_once{0};       // connections that have had a reply
  std::string setup_error;  // written before `ready`
  std::atomic<bool> ready{false};
  std::atomic<bool> stop{false};
};

// One epoll loop as `spammer`: `connections` connections, each with one
// status request in flight at all times (the next goes out as soon as the
// reply is in). A connection the broker closes is opened again.
void run_spammer(const std::string& socket, const Account& spammer, int connections, SpamCounters& counters) {
  if (!become_on_this_thread(spammer)) {
    counters.setup_error = "cannot take the identity of " + spammer.name + ": " + std::strerror(errno);
    counters.ready.store(true);
    return;
  }
  v1::Request status;
  status.mutable_status();
  const std::string frame = *wire::encode_frame(status);

  struct Conn {
    BrokerConnection conn;
    std::string in;
    bool answered = false;
  };
  std::vector<Conn> conns(static_cast<std::size_t>(connections));
  UniqueFd epoll(::epoll_create1(EPOLL_CLOEXEC));

  auto send_request = [&](Conn& c) {
    const ssize_t n = ::send(c.conn.fd(), frame.data(), frame.size(), MSG_NOSIGNAL);
    return n == static_cast<ssize_t>(frame.size());  // a tiny frame into an empty buffer
  };
  auto open_conn = [&](std::size_t i) {
    Conn& c = conns[i];
    c.conn = BrokerConnection::connect(socket, std::chrono::seconds(5));
    c.in.clear();
    if (!c.conn.connected()) return false;
    epoll_event ev{};
    ev.events = EPOLLIN | EPOLLRDHUP;
    ev.data.u64 = i;
    if (::epoll_ctl(epoll.get(), EPOLL_CTL_ADD, c.conn.fd(), &ev) != 0 || !send_request(c)) {
      c.conn = BrokerConnection();
      return false;
    }
    return true;
  };
  auto close_conn = [&](std::size_t i) {
    if (conns[i].conn.connected()) ::epoll_ctl(epoll.get(), EPOLL_CTL_DEL, conns[i].conn.fd(), nullptr);
    conns[i].conn = BrokerConnection();
    if (conns[i].answered) counters.answered_once.fetch_sub(1);
    conns[i].answered = false;
    counters.dropped.fetch_add(1);
    counters.connected.fetch_sub(1);
  };

  for (std::size_t i = 0; i < conns.size(); ++i)
    if (open_conn(i)) counters.connected.fetch_add(1);
  if (counters.connected.load() == 0) counters.setup_error = "no spammer connection could be opened";
  counters.ready.store(true);

  v1::Response response;
  std::vector<epoll_event> events(static_cast<std::size_t>(connections));
  char buf[65536];
  auto last_reopen = Clock::now();
  while (!counters.stop.load() && !g_interrupted.load()) {
    const int n = ::epoll_wait(epoll.get(), events.data(), static_cast<int>(events.size()), 100);
    for (int k = 0; k < n; ++k) {
      const std::size_t i = events[static_cast<std::size_t>(k)].data.u64;
      Conn& c = conns[i];
      if (!c.conn.connected()) continue;
      bool closed = false;
      for (;;) {
        const ssize_t got = ::recv(c.conn.fd(), buf, sizeof(buf), 0);
        if (got > 0) {
          c.in.append(buf, static_cast<std::size_t>(got));
          continue;
        }
        if (got < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) break;
        if (got < 0 && errno == EINTR) continue;
        closed = true;
        break;
      }
      while (c.in.size() >= wire::kHeaderSize) {
        std::uint8_t header[wire::kHeaderSize];
        std::memcpy(header, c.in.data(), wire::kHeaderSize);
        const auto h = wire::decode_header(std::span<const std::uint8_t, wire::kHeaderSize>(header));
        if (h.error != wire::HeaderError::none) {
          closed = true;
          break;
        }
        if (c.in.size() < wire::kHeaderSize + h.body_size) break;
        const bool ok = response.ParseFromArray(c.in.data() + wire::kHeaderSize, static_cast<int>(h.body_size)) &&
                        response.status() == v1::OK;
        (ok ? counters.answered : counters.refused).fetch_add(1);
        if (!c.answered) {
          c.answered = true;
          counters.answered_once.fetch_add(1);
        }
        c.in.erase(0, wire::kHeaderSize + h.body_size);
        if (!send_request(c)) {
          closed = true;
          break;
        }
      }
      if (closed) close_conn(i);
    }
    // Connections the broker dropped come back, at most every 100 ms.
    if (counters.connected.load() < connections && Clock::now() - last_reopen > std::chrono::milliseconds(100)) {
      last_reopen = Clock::now();
      for (std::size_t i = 0; i < conns.size(); ++i)
        if (!conns[i].conn.connected() && open_conn(i)) counters.connected.fetch_add(1);
    }
  }
}

// ---- phases ----------------------------------------------------------------------------

struct PhaseResult {
  std::string name;
  std::string description;
  long host_processes = 0;
  LatencySummary pair;
  std::uint64_t timeouts = 0;
  std::uint64_t errors = 0;
  std::string first_error;
  double seconds = 0;              // recorded window, to the end of the last pair
  double broker_cpu_seconds = 0;   // in that window
  bool spam = false;
  double spam_answered_per_second = 0;
  double spam_refused_per_second = 0;
  std::uint64_t spam_dropped = 0;
  int spam_connections = 0;
};

PhaseResult run_phase(const std::string& name, const std::string& description, const Options& options,
                      BrokerProcess& broker, const std::string& socket, const Account& victim,
                      const SpamCounters* spam) {
  PhaseResult phase;
  phase.name = name;
  phase.description = description;
  phase.spam = spam != nullptr;
  phase.host_processes = processes_on_host();
  VictimResult result;
  const auto record_from = Clock::now() + as_duration(options.warmup_seconds);
  const auto stop_at = record_from + as_duration(options.seconds);
  const auto call_timeout = std::chrono::milliseconds(static_cast<long>(options.call_timeout_seconds * 1000));
  std::thread victim_thread(run_victim, std::cref(socket), std::cref(victim), record_from, stop_at, options.pairs,
                            call_timeout, options.reconnect, std::ref(result));
  sleep_until(record_from);
  const double cpu_before = broker.cpu_seconds();
  const std::uint64_t answered_before = spam ? spam->answered.load() : 0;
  const std::uint64_t refused_before = spam ? spam->refused.load() : 0;
  const std::uint64_t dropped_before = spam ? spam->dropped.load() : 0;
  const auto measured_from = Clock::now();
  // On an interrupt, stopping the broker ends a call that waits for it.
  double cpu_after = 0;
  while (!result.done.load()) {
    if (g_interrupted.load()) {
      cpu_after = broker.cpu_seconds();
      broker.stop();
      break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  victim_thread.join();
  const auto measured_to = Clock::now();
  const double wall = seconds_between(measured_from, measured_to);
  if (!g_interrupted.load()) cpu_after = broker.cpu_seconds();
  phase.broker_cpu_seconds = std::max(0.0, cpu_after - cpu_before);
  if (spam && wall > 0) {
    phase.spam_answered_per_second = static_cast<double>(spam->answered.load() - answered_before) / wall;
    phase.spam_refused_per_second = static_cast<double>(spam->refused.load() - refused_before) / wall;
    phase.spam_dropped = spam->dropped.load() - dropped_before;
    phase.spam_connections = spam->connected.load();
  }
  phase.seconds = seconds_between(record_from, result.finished);
  phase.pair = summarize(result.pair_ns);
  phase.timeouts = result.timeouts;
  phase.errors = result.errors;
  phase.first_error = result.first_error;
  return phase;
}

// ---- output -------------------------------------------------------------------------------

json to_json(const PhaseResult& p) {
  json j = {{"phase", p.name},
            {"description", p.description},
            {"host_processes", p.host_processes},
            {"pairs", p.pair.count},
            {"seconds", p.seconds},
            {"pair_ms", {{"mean", p.pair.mean_us / 1000}, {"p50", p.pair.p50_us / 1000},
                         {"p90", p.pair.p90_us / 1000}, {"p99", p.pair.p99_us / 1000},
                         {"max", p.pair.max_us / 1000}}},
            {"timeouts", p.timeouts},
            {"errors", p.errors},
            {"broker_cpu_seconds", p.broker_cpu_seconds}};
  if (!p.first_error.empty()) j["first_error"] = p.first_error;
  if (p.spam)
    j["spammer"] = {{"connections_open_at_end", p.spam_connections},
                    {"status_answered_per_second", p.spam_answered_per_second},
                    {"status_refused_per_second", p.spam_refused_per_second},
                    {"connections_dropped", p.spam_dropped}};
  return j;
}

void print_header() {
  std::printf("%-5s %-24s %7s %7s %10s %10s %10s %7s %9s %6s %10s\n", "phase", "host", "procs", "pairs", "p50 ms",
              "p99 ms", "max ms", "errors", "brk cpu s", "cpu %", "status/s");
}

void print_row(const PhaseResult& p) {
  const double share = p.seconds > 0 ? 100.0 * p.broker_cpu_seconds / p.seconds : 0;
  char spam[32] = "-";
  if (p.spam) std::snprintf(spam, sizeof(spam), "%.0f", p.spam_answered_per_second);
  std::printf("%-5s %-24s %7ld %7zu %10.3f %10.3f %10.3f %7llu %9.2f %5.0f%% %10s\n", p.name.c_str(),
              p.description.c_str(), p.host_processes, p.pair.count, p.pair.p50_us / 1000, p.pair.p99_us / 1000,
              p.pair.max_us / 1000, static_cast<unsigned long long>(p.errors), p.broker_cpu_seconds, share, spam);
  if (p.timeouts)
    std::printf("      %llu pair(s) timed out (--call-timeout): counted with the time waited, a lower bound\n",
                static_cast<unsigned long long>(p.timeouts));
  if (!p.first_error.empty()) std::printf("      first error: %s\n", p.first_error.c_str());
  if (p.spam && (p.spam_refused_per_second > 0 || p.spam_dropped > 0))
    std::printf("      spammer: %.0f refused replies/s, %llu connections dropped by the broker\n",
                p.spam_refused_per_second, static_cast<unsigned long long>(p.spam_dropped));
  std::fflush(stdout);
}

void on_signal(int) { g_interrupted.store(true); }

int run(const Options& options) {
  if (::geteuid() != 0) {
    std::cerr << "xpra-broker-status-spam-bench: run as root (it starts the broker as root and clients as "
                 "other users)\n";
    return 1;
  }
  struct sigaction sa {};
  sa.sa_handler = on_signal;
  for (int sig : {SIGINT, SIGTERM, SIGHUP}) ::sigaction(sig, &sa, nullptr);
  // Orphaned farm processes come back to us, so that we reap every one.
  ::prctl(PR_SET_CHILD_SUBREAPER, 1);

  const Account victim = look_up_account(options.victim);
  const Account spammer = look_up_account(options.spammer);
  const Account farm_owner = look_up_account(options.farm_user);
  if (!::getpwnam("xpra-broker") || !::getgrnam("xpra"))
    throw std::runtime_error("no user xpra-broker or group xpra (run tests/support/create-test-users.sh first)");
  std::optional<TaskLimits> limits;
  if (options.processes > 0) limits.emplace(options.processes);

  TempDir temp("xpra-broker-status-spam-bench", 0755);  // 0755: clients run as other uids
  const std::string run_dir = temp.path() + "/run";
  const std::string x11_dir = temp.path() + "/x11";
  const std::string socket = run_dir + "/broker.sock";
  const std::string config_path = temp.path() + "/broker.conf";
  const std::string log_path = temp.path() + "/broker.log";
  std::filesystem::create_directories(x11_dir + "/.X11-unix");
  ::chmod((x11_dir + "/.X11-unix").c_str(), 01777);
  std::ofstream(config_path) << "# empty: every setting is on the command line\n";

  // Forks first, while this process has no threads. The farm's leader
  // forks the extra processes only when asked, before phase B.
  ProcessFarm farm(farm_owner);
  std::vector<std::string> broker_args = {
      "--config=" + config_path, "--socket=" + socket, "--runtime-dir=" + run_dir, "--x11-tmp-dir=" + x11_dir,
      "--user=xpra-broker", "--group=xpra", "--displays=1000-1999", "--log-level=warn",
      // The victim must measure the broker, not its own acquire rate limit.
      "--max-leases=100000", "--max-leases-per-user=100000", "--acquire-burst=100000",
      "--acquires-per-minute=1000000"};
  broker_args.insert(broker_args.end(), options.broker_args.begin(), options.broker_args.end());
  BrokerProcess broker(options.broker, broker_args, log_path);
  broker.wait_until_serving(socket, std::chrono::seconds(120));

  if (!options.json) {
    std::printf("xpra-broker-status-spam-bench: %.1f s per phase (+%.1f s warm-up)%s; %s acquire+release back to "
                "back, %s\n",
                options.seconds, options.warmup_seconds,
                options.pairs ? (" or " + std::to_string(options.pairs) + " pairs").c_str() : "",
                victim.name.c_str(), options.reconnect ? "a new connection per pair" : "on one connection");
    std::printf("broker: %s (pid %d); victim call timeout %.0f s\n", options.broker.c_str(), broker.pid(),
                options.call_timeout_seconds);
    std::printf("broker args:%s\n", shown_broker_args(broker_args).c_str());
    std::printf("host: %u CPUs, load average %s", std::thread::hardware_concurrency(),
                read_file("/proc/loadavg").c_str());
    if (limits)
      for (const auto& note : limits->notes()) std::printf("%s\n", note.c_str());
    std::printf("\n");
    print_header();
    std::fflush(stdout);
  }

  std::vector<PhaseResult> phases;
  const std::string farm_text = "+" + std::to_string(options.processes) + " procs";
  phases.push_back(run_phase("A", "quiet", options, broker, socket, victim, nullptr));
  if (!options.json) print_row(phases.back());

  long farm_running = 0;
  double farm_spawn_seconds = 0;
  if (!g_interrupted.load() && options.processes > 0) {
    const auto t0 = Clock::now();
    farm_running = farm.spawn(options.processes);
    farm_spawn_seconds = seconds_between(t0, Clock::now());
    if (farm_running < options.processes)
      throw std::runtime_error("only " + std::to_string(farm_running) + " of " + std::to_string(options.processes) +
                               " extra processes could be forked (" + farm.first_error() + ")");
  }
  if (!g_interrupted.load()) {
    phases.push_back(run_phase("B", farm_text, options, broker, socket, victim, nullptr));
    if (!options.json) print_row(phases.back());
  }

  double spam_ramp_seconds = 0;
  int spam_ramp_answered = 0;
  if (!g_interrupted.load()) {
    SpamCounters counters;
    std::thread spam_thread(run_spammer, std::cref(socket), std::cref(spammer), options.spam_connections,
                            std::ref(counters));
    // Stops and joins the spammer however this block is left.
    struct StopSpammer {
      SpamCounters& counters;
      std::thread& thread;
      ~StopSpammer() {
        counters.stop.store(true);
        thread.join();
      }
    } stop_spammer{counters, spam_thread};
    while (!counters.ready.load()) std::this_thread::sleep_for(std::chrono::milliseconds(10));
    if (!counters.setup_error.empty()) throw std::runtime_error("spammer: " + counters.setup_error);
    // Steady state first: C measures a broker serving all 64 spam
    // connections, not one still accepting them (see the ramp figure).
    const auto ramp_start = Clock::now();
    const auto ramp_give_up = ramp_start + as_duration(options.ramp_timeout_seconds);
    while (counters.answered_once.load() < counters.connected.load() && Clock::now() < ramp_give_up &&
           !g_interrupted.load())
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    spam_ramp_seconds = seconds_between(ramp_start, Clock::now());
    spam_ramp_answered = counters.answered_once.load();
    if (!options.json)
      std::printf("      (spammer: %d of %d connections answered at least once after %.1f s; C starts now)\n",
                  spam_ramp_answered, counters.connected.load(), spam_ramp_seconds);
    if (!g_interrupted.load())
      phases.push_back(run_phase("C", farm_text + ", status x" + std::to_string(options.spam_connections),
                               options, broker, socket, victim, &counters));
    if (!options.json && phases.back().name == "C") print_row(phases.back());
  }

  const bool broker_survived = !broker.exited();
  std::string broker_log = broker.log();
  broker.stop();
  const long farm_left = farm.stop();

  // p99 of a phase in us; 0 when it has no pairs. Ratios are 0 when unknown.
  auto p99_of = [&](const std::string& name) {
    for (const auto& p : phases)
      if (p.name == name && p.pair.count > 0) return p.pair.p99_us;
    return 0.0;
  };
  const double a = p99_of("A"), b = p99_of("B"), c = p99_of("C");
  const double c_over_b = b > 0 && c > 0 ? c / b : 0;
  const double c_over_a = a > 0 && c > 0 ? c / a : 0;
  auto ratio_json = [](double r) { return r > 0 ? json(r) : json(nullptr); };
  auto ratio_text = [](double r) {
    char text[32] = "n/a";
    if (r > 0) std::snprintf(text, sizeof(text), "%.2fx", r);
    return std::string(text);
  };
  // The broker's warnings and errors during the run: counted, first lines shown.
  std::vector<std::string> log_lines;
  {
    std::istringstream in(broker_log);
    for (std::string line; std::getline(in, line);) log_lines.push_back(line);
  }

  if (options.json) {
    json out = {{"seconds", options.seconds},
                {"warmup_seconds", options.warmup_seconds},
                {"max_pairs", options.pairs},
                {"processes", options.processes},
                {"farm_spawn_seconds", farm_spawn_seconds},
                {"farm_processes_left_after_cleanup", farm_left},
                {"spam_connections", options.spam_connections},
                {"spam_ramp_seconds", spam_ramp_seconds},
                {"spam_ramp_connections_answered", spam_ramp_answered},
                {"victim_reconnects_per_pair", options.reconnect},
                {"cpus", std::thread::hardware_concurrency()},
                {"broker", {{"path", options.broker}, {"args", broker_args}, {"survived", broker_survived},
                            {"log_lines", log_lines.size()}}},
                {"phases", json::array()},
                {"p99_ratio_c_over_b", ratio_json(c_over_b)},
                {"p99_ratio_c_over_a", ratio_json(c_over_a)},
                {"goal", {{"p99_ratio_c_over_b_max", kGoalP99RatioMax},
                          {"met", c_over_b > 0 ? json(c_over_b <= kGoalP99RatioMax) : json(nullptr)}}},
                {"interrupted", g_interrupted.load()}};
    for (const auto& p : phases) out["phases"].push_back(to_json(p));
    std::cout << out.dump(2) << "\n";
    return 0;
  }

  std::printf("\nB and C: %ld extra idle processes of %s; C: %s sends status on %d connections,\n"
              "one request in flight on each.\n", options.processes, farm_owner.name.c_str(), spammer.name.c_str(),
              options.spam_connections);
  std::printf("procs: processes on the host at the start of the phase. pairs: acquire+release pairs\n"
              "recorded (latency from sending the acquire to the release's reply). brk cpu s / cpu %%: the\n"
              "broker's CPU time (utime+stime) in the recorded window, and its share of one CPU. status/s:\n"
              "status replies the spammer got per second in that window.\n");
  if (options.processes > 0)
    std::printf("extra processes: %ld forked in %.1f s; %ld left after clean-up\n", farm_running, farm_spawn_seconds,
                farm_left);
  std::printf("\np99 ratio C/B: %s   C/A: %s\n", ratio_text(c_over_b).c_str(), ratio_text(c_over_a).c_str());
  if (c_over_b > 0)
    std::printf("goal (issue 10): C p99 within %.0fx of B: %s\n", kGoalP99RatioMax,
                c_over_b <= kGoalP99RatioMax ? "MET" : "MISSED");
  std::printf("broker: %s, %zu log lines (log-level warn)\n",
              broker_survived          ? "still running at the end"
              : g_interrupted.load()   ? "stopped after the interrupt"
                                       : "DIED during the run",
              log_lines.size());
  for (std::size_t i = 0; i < log_lines.size() && i < 5; ++i) std::printf("  %s\n", log_lines[i].c_str());
  if (g_interrupted.load()) std::printf("\ninterrupted: the figures above are incomplete\n");
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  // Output into a closed pipe (| head) must not kill the bench before it
  // has stopped its broker and reaped its processes.
  ::signal(SIGPIPE, SIG_IGN);
  Options options;
  if (int rc = parse_args(argc, argv, options); rc >= 0) return rc;
  try {
    return run(options);
  } catch (const std::exception& e) {
    std::cerr << "xpra-broker-status-spam-bench: " << e.what() << "\n";
    return 1;
  }
}
