#include "lifecycle_support.h"

#include <fstream>
#include <sstream>

#include <dirent.h>
#include <fcntl.h>
#include <grp.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <iostream>
#include <stdexcept>
#include <thread>

namespace xpra_broker::lifecycle {

namespace {

std::string read_proc_file(const std::string& path) {
  std::string out;
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return out;
  char buf[8192];
  for (ssize_t n; (n = ::read(fd, buf, sizeof(buf))) > 0;) out.append(buf, static_cast<std::size_t>(n));
  ::close(fd);
  return out;
}

std::vector<std::string> split_nul(const std::string& text) {
  std::vector<std::string> out;
  std::size_t start = 0;
  while (start < text.size()) {
    const std::size_t end = text.find('\0', start);
    out.push_back(text.substr(start, end == std::string::npos ? std::string::npos : end - start));
    if (end == std::string::npos) break;
    start = end + 1;
  }
  return out;
}

// Fills everything but argv; false if the process is gone or a zombie.
bool read_host_process(pid_t pid, HostProcess& out) {
  const std::string base = "/proc/" + std::to_string(pid);
  const std::string stat = read_proc_file(base + "/stat");
  const auto open = stat.find('(');
  const auto close = stat.rfind(')');
  if (open == std::string::npos || close == std::string::npos || close < open) return false;
  char state = '?';
  int ppid = 0, pgid = 0;
  if (std::sscanf(stat.c_str() + close + 1, " %c %d %d", &state, &ppid, &pgid) != 3) return false;
  if (state == 'Z' || state == 'X') return false;
  const std::string status = read_proc_file(base + "/status");
  const auto uid_line = status.find("\nUid:");
  unsigned uid = 0;
  if (uid_line == std::string::npos || std::sscanf(status.c_str() + uid_line + 5, "%u", &uid) != 1) return false;
  out.pid = pid;
  out.ppid = ppid;
  out.pgid = pgid;
  out.uid = uid;
  out.comm = stat.substr(open + 1, close - open - 1);
  return true;
}

template <typename Visit>
void for_each_pid(Visit visit) {
  DIR* dir = ::opendir("/proc");
  if (!dir) return;
  while (const dirent* e = ::readdir(dir)) {
    char* end = nullptr;
    const long pid = std::strtol(e->d_name, &end, 10);
    if (*end != '\0' || pid <= 0) continue;
    visit(static_cast<pid_t>(pid));
  }
  ::closedir(dir);
}

struct TargetUser {
  uid_t uid;
  gid_t gid;
  std::vector<gid_t> groups;
};

TargetUser target_user(const std::string& name) {
  const auto account = integration::user_account(name);
  return {account.uid, account.gid, account.groups};
}

// After fork(): become the user for good. Async-signal-safe.
void become(const TargetUser& u) {
  if (::setgroups(u.groups.size(), u.groups.data()) != 0 || ::setresgid(u.gid, u.gid, u.gid) != 0 ||
      ::setresuid(u.uid, u.uid, u.uid) != 0)
    ::_exit(120);
}

void age_file(const std::string& path, std::chrono::seconds age) {
  const timespec then = {::time(nullptr) - static_cast<time_t>(age.count()), 0};
  const timespec times[2] = {then, then};
  if (::utimensat(AT_FDCWD, path.c_str(), times, AT_SYMLINK_NOFOLLOW) != 0)
    throw std::runtime_error("utimensat " + path + ": " + std::strerror(errno));
}

void check_owner(const std::string& path, const std::string& user) {
  struct stat st {};
  if (::lstat(path.c_str(), &st) != 0 || st.st_uid != integration::uid_of(user))
    throw std::runtime_error("planting " + path + " as " + user + " did not work");
}

}  // namespace

std::vector<HostProcess> host_processes() {
  std::vector<HostProcess> out;
  for_each_pid([&](pid_t pid) {
    HostProcess p;
    if (!read_host_process(pid, p)) return;
    p.argv = split_nul(read_proc_file("/proc/" + std::to_string(pid) + "/cmdline"));
    out.push_back(std::move(p));
  });
  return out;
}

std::optional<std::uint32_t> display_argument(const std::vector<std::string>& argv) {
  for (std::size_t i = 1; i < argv.size(); ++i) {
    const std::string& a = argv[i];
    if (a.size() < 2 || a[0] != ':') continue;
    if (!std::all_of(a.begin() + 1, a.end(), [](char c) { return c >= '0' && c <= '9'; })) continue;
    return static_cast<std::uint32_t>(std::stoul(a.substr(1)));
  }
  return std::nullopt;
}

std::vector<XServer> x_servers_of(uid_t uid, std::uint32_t first, std::uint32_t last) {
  std::vector<XServer> out;
  for_each_pid([&](pid_t pid) {
    // comm first: it is short, and most processes are not X servers.
    std::string comm = read_proc_file("/proc/" + std::to_string(pid) + "/comm");
    if (comm.rfind("Xvfb", 0) != 0) return;
    HostProcess p;
    if (!read_host_process(pid, p) || p.uid != uid) return;
    const auto display = display_argument(split_nul(read_proc_file("/proc/" + std::to_string(pid) + "/cmdline")));
    if (display && *display >= first && *display <= last) out.push_back({pid, *display});
  });
  return out;
}

std::vector<pid_t> pids_of(const std::vector<XServer>& servers) {
  std::vector<pid_t> out;
  for (const auto& s : servers) out.push_back(s.pid);
  return out;
}

std::vector<HostProcess> marked_processes(const std::string& mark) {
  std::vector<HostProcess> out;
  std::string needle = std::string(kMarkVariable) + "=" + mark;
  needle.push_back('\0');
  for_each_pid([&](pid_t pid) {
    const std::string environ = read_proc_file("/proc/" + std::to_string(pid) + "/environ");
    // Either the first entry or one after a NUL.
    const auto at = environ.find(needle);
    if (at == std::string::npos || (at != 0 && environ[at - 1] != '\0')) return;
    HostProcess p;
    if (!read_host_process(pid, p)) return;
    p.argv = split_nul(read_proc_file("/proc/" + std::to_string(pid) + "/cmdline"));
    out.push_back(std::move(p));
  });
  return out;
}

bool path_exists(const std::string& path) {
  struct stat st {};
  return ::lstat(path.c_str(), &st) == 0;
}

std::string x_lock_path(std::uint32_t display) { return "/tmp/.X" + std::to_string(display) + "-lock"; }
std::string x_socket_path(std::uint32_t display) { return "/tmp/.X11-unix/X" + std::to_string(display); }

bool x_socket_listening(std::uint32_t display) {
  const int s = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (s < 0) return false;
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::snprintf(addr.sun_path, sizeof(addr.sun_path), "%s", x_socket_path(display).c_str());
  const bool ok = ::connect(s, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0;
  ::close(s);
  return ok;
}

std::string host_name() {
  char buf[256] = {};
  ::gethostname(buf, sizeof(buf) - 1);
  return buf;
}

std::vector<std::string> quick_xpra_options() {
  return {"--start=",         "--mdns=no",         "--pulseaudio=no", "--notifications=no", "--webcam=no",
          "--speaker=off",    "--microphone=off",  "--systemd-run=no", "--dbus-launch=",    "--dbus-proxy=no",
          "--dbus-control=no", "--html=off",       "--opengl=no",      "--printing=no",     "--file-transfer=no",
          "--bell=no",        "--system-tray=no",  "--tray=no"};
}

std::vector<std::string> host_default_xpra_options() {
  return {"--mdns=no", "--html=off", "--printing=no", "--webcam=no", "--pulseaudio=no"};
}

bool wait_for_xpra_live(const std::string& user, const v1::Lease& lease, ChildProcess& holder,
                        const std::map<std::string, std::string>& env, ProcessResult& listed,
                        const std::function<bool()>& ready_first, std::chrono::milliseconds timeout) {
  const std::string dir = lease.runtime_dir();
  const std::string live = "LIVE session at :" + std::to_string(lease.display());
  const bool up = integration::wait_until(
      [&] {
        if (!holder.running()) return true;
        if (ready_first && !ready_first()) return false;
        listed = integration::run_as(user, {"xpra", "list", "--socket-dir=" + dir, "--socket-dirs=" + dir},
                                     {env, "/"}, std::chrono::seconds(60));
        return listed.out.find(live) != std::string::npos;
      },
      timeout, std::chrono::milliseconds(250));
  return up && holder.running();
}

std::uint64_t boot_ticks_now() {
  timespec ts{};
  ::clock_gettime(CLOCK_BOOTTIME, &ts);
  const auto hz = static_cast<std::uint64_t>(::sysconf(_SC_CLK_TCK));
  return static_cast<std::uint64_t>(ts.tv_sec) * hz + static_cast<std::uint64_t>(ts.tv_nsec) / (1000000000ull / hz);
}

// Every live (not zombie) process of `uid` that started at or after `since`
// (boot clock ticks, /proc/<pid>/stat's starttime).
std::vector<UserProcess> processes_of_since(uid_t uid, std::uint64_t since) {
  std::vector<UserProcess> out;
  for (const HostProcess& p : host_processes()) {
    if (p.uid != uid) continue;
    std::ifstream stat_file("/proc/" + std::to_string(p.pid) + "/stat");
    std::string stat((std::istreambuf_iterator<char>(stat_file)), std::istreambuf_iterator<char>());
    const auto paren = stat.rfind(')');
    if (paren == std::string::npos) continue;
    std::istringstream fields(stat.substr(paren + 2));
    std::string field;
    std::vector<std::string> f;
    while (fields >> field) f.push_back(field);
    // After comm: [0] state ... [19] starttime.
    if (f.size() < 20 || f[0] == "Z") continue;
    if (std::stoull(f[19]) < since) continue;
    out.push_back({p.pid, p.ppid, p.comm});
  }
  return out;
}

std::string describe(const std::vector<UserProcess>& processes) {
  std::string out;
  for (const auto& p : processes)
    out += "\n  pid " + std::to_string(p.pid) + " ppid " + std::to_string(p.ppid) + " " + p.comm;
  return out;
}

std::vector<std::string> bus_sockets_of_since(uid_t uid, std::time_t since) {
  std::vector<std::string> found;
  DIR* tmp = ::opendir("/tmp");
  if (!tmp) return found;
  while (const dirent* e = ::readdir(tmp)) {
    if (std::string(e->d_name).rfind("dbus-", 0) != 0) continue;
    const std::string path = std::string("/tmp/") + e->d_name;
    struct stat st {};
    if (::lstat(path.c_str(), &st) == 0 && S_ISSOCK(st.st_mode) && st.st_uid == uid && st.st_mtime >= since)
      found.push_back(path);
  }
  ::closedir(tmp);
  return found;
}

std::string describe(const std::vector<std::string>& paths) {
  std::string out;
  for (const auto& p : paths) out += "\n  " + p;
  return out;
}

pid_t unused_pid() {
  const std::string text = read_proc_file("/proc/sys/kernel/pid_max");
  const long pid_max = text.empty() ? 32768 : std::stol(text);
  for (pid_t pid = static_cast<pid_t>(pid_max - 1); pid > 1000; --pid)
    if (::kill(pid, 0) != 0 && errno == ESRCH) return pid;
  throw std::runtime_error("no unused pid found");
}

void plant_dead_socket(const std::string& user, const std::string& path, std::chrono::seconds age) {
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::snprintf(addr.sun_path, sizeof(addr.sun_path), "%s", path.c_str());
  // bind() creates the socket file; closing without listen() leaves it with
  // no listener, as a crashed X server leaves its socket.
  const int rc = integration::run_function_as(user, [&addr] {
    const int s = ::socket(AF_UNIX, SOCK_STREAM, 0);
    if (s < 0) return 1;
    if (::bind(s, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) return 2;
    ::close(s);
    return 0;
  });
  if (rc != 0) throw std::runtime_error("cannot plant socket " + path + " as " + user + " (" + std::to_string(rc) + ")");
  check_owner(path, user);
  age_file(path, age);
}

void plant_lock_file(const std::string& user, const std::string& path, pid_t pid, std::chrono::seconds age) {
  char content[16];
  // X's own format: the pid right-aligned in 10 characters, then a newline.
  const int len = std::snprintf(content, sizeof(content), "%10d\n", static_cast<int>(pid));
  const int rc = integration::run_function_as(user, [&] {
    const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0444);
    if (fd < 0) return 1;
    if (::write(fd, content, static_cast<std::size_t>(len)) != len) return 2;
    ::close(fd);
    return 0;
  });
  if (rc != 0) throw std::runtime_error("cannot plant lock " + path + " as " + user + " (" + std::to_string(rc) + ")");
  check_owner(path, user);
  age_file(path, age);
}

std::string run_in_child_as(const std::string& user, const std::function<std::string()>& body) {
  DIR* tasks = ::opendir("/proc/self/task");
  int threads = 0;
  while (tasks && ::readdir(tasks)) ++threads;
  if (tasks) ::closedir(tasks);
  if (threads - 2 != 1) throw std::logic_error("run_in_child_as needs a single-threaded test process");
  const TargetUser target = target_user(user);
  int pipe_fds[2];
  if (::pipe2(pipe_fds, O_CLOEXEC) != 0) throw std::runtime_error("pipe2 failed");
  std::cout.flush();
  const pid_t pid = ::fork();
  if (pid < 0) throw std::runtime_error("fork failed");
  if (pid == 0) {
    ::close(pipe_fds[0]);
    become(target);
    std::string out;
    try {
      out = body();
    } catch (const std::exception& e) {
      out = std::string("exception: ") + e.what();
    }
    (void)!::write(pipe_fds[1], out.data(), out.size());
    ::_exit(0);
  }
  ::close(pipe_fds[1]);
  std::string out;
  char buf[4096];
  for (ssize_t n; (n = ::read(pipe_fds[0], buf, sizeof(buf))) != 0;) {
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) break;
    out.append(buf, static_cast<std::size_t>(n));
  }
  ::close(pipe_fds[0]);
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
    throw std::runtime_error("child as " + user + " failed (wait status " + std::to_string(status) + "): " + out);
  return out;
}

// ---------------------------------------------------------------- timings

void TimingSamples::add(std::chrono::steady_clock::duration d) {
  ms.push_back(std::chrono::duration<double, std::milli>(d).count());
}

double TimingSamples::median() const {
  if (ms.empty()) return 0;
  std::vector<double> sorted = ms;
  std::sort(sorted.begin(), sorted.end());
  const std::size_t n = sorted.size();
  return n % 2 ? sorted[n / 2] : (sorted[n / 2 - 1] + sorted[n / 2]) / 2;
}

double TimingSamples::max() const { return ms.empty() ? 0 : *std::max_element(ms.begin(), ms.end()); }

std::string TimingSamples::summary() const {
  char buf[256];
  std::snprintf(buf, sizeof(buf), "%s: n=%zu median %.1f ms max %.1f ms", name.c_str(), ms.size(), median(), max());
  return buf;
}

void report(const std::string& line) {
  std::cout << "[ MEASURED ] " << line << std::endl;
  ::testing::Test::RecordProperty("measured", line);
}

// ---------------------------------------------------------------- fixture

LifecycleTest::LifecycleTest() {
  const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
  mark_ = "xpb-life-" + std::to_string(::getpid()) + "-" + (info ? std::string(info->name()) : std::string("x"));
}

BrokerProcess& LifecycleTest::start_broker(std::vector<std::string> options) {
  broker_ = std::make_unique<BrokerProcess>(std::move(options));
  // The machine is shared with other suites and often loaded: be patient.
  broker_->start(60s);
  return *broker_;
}

ChildProcess LifecycleTest::spawn_client(const std::string& user, const std::vector<std::string>& args,
                                         std::map<std::string, std::string> env, bool own_process_group) {
  env[kMarkVariable] = mark_;
  SpawnOptions options;
  options.env = std::move(env);
  options.own_process_group = own_process_group;
  return broker_->spawn_client_as(user, args, options);
}

ProcessResult LifecycleTest::run_client(const std::string& user, const std::vector<std::string>& args,
                                        std::chrono::milliseconds timeout, std::map<std::string, std::string> env) {
  return spawn_client(user, args, std::move(env)).wait(timeout);
}

ProcessResult LifecycleTest::run_client_racing(const std::string& user, const std::vector<std::string>& exec_options,
                                               const std::function<void(std::uint32_t display)>& race,
                                               std::chrono::milliseconds timeout) {
  static int round = 0;
  const std::string flag = scratch("race-" + std::to_string(++round));
  std::vector<std::string> args = {"exec"};
  args.insert(args.end(), exec_options.begin(), exec_options.end());
  args.insert(args.end(),
              {"--", "sh", "-c",
               "if mkdir \"$0\" 2>/dev/null; then echo \"${DISPLAY#:}\" > \"$0/display.tmp\"; "
               "mv \"$0/display.tmp\" \"$0/display\"; while [ ! -e \"$0/go\" ]; do sleep 0.05; done; "
               "echo '_XSERVTransSocketUNIXCreateListener: ...SocketCreateListener() failed' >&2; exit 1; fi; "
               "echo \"ran on $DISPLAY\"",
               flag});
  ChildProcess client = spawn_client(user, args);
  std::string display;
  if (integration::wait_until(
          [&] {
            display = integration::read_file(flag + "/display");
            return !display.empty();
          },
          30s)) {
    race(static_cast<std::uint32_t>(std::stoul(display)));
  } else {
    ADD_FAILURE() << "the command never reported its display";
  }
  std::ofstream(flag + "/go") << "go\n";
  return client.wait(timeout);
}

ChildProcess LifecycleTest::spawn_marked(const std::string& user, const std::vector<std::string>& argv) {
  SpawnOptions options;
  options.env[kMarkVariable] = mark_;
  return integration::spawn_as(user, argv, options);
}

ChildProcess LifecycleTest::start_xvfb_outside(const std::string& user, std::uint32_t display) {
  auto xvfb = spawn_marked(user, {"Xvfb", ":" + std::to_string(display), "-nolisten", "tcp", "-noreset"});
  const bool up = integration::wait_until([&] { return x_socket_listening(display) || !xvfb.running(); }, 60s, 20ms);
  if (!up || !xvfb.running()) {
    const auto r = xvfb.terminate();
    throw std::runtime_error("Xvfb :" + std::to_string(display) + " as " + user + " did not come up: " + r.describe());
  }
  return xvfb;
}

std::vector<v1::Lease> LifecycleTest::leases() {
  v1::Request request;
  request.mutable_list()->set_all(true);
  const v1::Response response = broker_->call(request);
  if (response.status() != v1::OK) throw std::runtime_error("list --all failed: " + response.message());
  return {response.list().leases().begin(), response.list().leases().end()};
}

std::optional<v1::Lease> LifecycleTest::lease_held_by(ChildProcess& holder, std::chrono::milliseconds timeout) {
  std::optional<v1::Lease> lease;
  integration::wait_until(
      [&] {
        for (const auto& l : leases())
          if (l.pid() == holder.pid()) lease = l;
        return lease.has_value() || !holder.running();
      },
      timeout);
  return lease;
}

v1::StatusReply LifecycleTest::raw_status() {
  v1::Request request;
  request.mutable_status();
  const v1::Response response = broker_->call(request);
  if (response.status() != v1::OK) throw std::runtime_error("status failed: " + response.message());
  return response.status_reply();
}

nlohmann::json LifecycleTest::parse_json(const ProcessResult& r) {
  EXPECT_EQ(r.exit_code, 0) << r.describe();
  try {
    return nlohmann::json::parse(r.out);
  } catch (const std::exception& e) {
    ADD_FAILURE() << "not JSON: " << e.what() << "\n" << r.describe();
    return nlohmann::json();
  }
}

void LifecycleTest::TearDown() {
  if (broker_ && HasFailure())
    std::cout << "---- xpra-brokerd log (" << broker_->log_path() << ") ----\n"
              << broker_->log() << "---- end of log ----\n";
  // Whatever this test started and left behind (only processes carrying this
  // test's mark): the host is shared with other suites.
  // TERM first, so X servers remove their own lock and socket files.
  auto left = marked_processes(mark_);
  for (const auto& p : left) ::kill(p.pid, SIGTERM);
  if (!left.empty() && !integration::wait_until([&] { return marked_processes(mark_).empty(); }, 5s)) {
    for (const auto& p : marked_processes(mark_)) ::kill(p.pid, SIGKILL);
    integration::wait_until([&] { return marked_processes(mark_).empty(); }, 10s);
  }
  for (const auto& path : planted_) ::unlink(path.c_str());
}

}  // namespace xpra_broker::lifecycle
