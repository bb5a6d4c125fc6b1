#include "broker_harness.h"

#include <fcntl.h>
#include <grp.h>
#include <pwd.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <thread>

extern char** environ;

namespace xpra_broker::integration {

namespace {

using Clock = std::chrono::steady_clock;

[[noreturn]] void fail(const std::string& what) { throw std::runtime_error(what + ": " + std::strerror(errno)); }

int exit_code_of(int wait_status) {
  if (WIFEXITED(wait_status)) return WEXITSTATUS(wait_status);
  if (WIFSIGNALED(wait_status)) return 128 + WTERMSIG(wait_status);
  return -1;
}

std::string read_whole_fd(int fd) {
  std::string out;
  char buf[8192];
  off_t offset = 0;
  for (ssize_t n; (n = ::pread(fd, buf, sizeof(buf), offset)) > 0; offset += n)
    out.append(buf, static_cast<std::size_t>(n));
  return out;
}

// Resolved before fork(): the child must not allocate.
std::string find_executable(const std::string& name) {
  if (name.find('/') != std::string::npos) return name;
  const char* path = std::getenv("PATH");
  std::istringstream dirs(path && *path ? path : "/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin");
  for (std::string dir; std::getline(dirs, dir, ':');) {
    const std::string candidate = (dir.empty() ? "." : dir) + "/" + name;
    struct stat st {};
    if (::stat(candidate.c_str(), &st) == 0 && S_ISREG(st.st_mode) && (st.st_mode & 0111)) return candidate;
  }
  throw std::runtime_error("command not found on PATH: " + name);
}

// The inherited environment minus what would change the programs under test
// behind the test's back, plus `extra`.
std::vector<std::string> child_environment(const std::map<std::string, std::string>& extra) {
  static const char* dropped_prefixes[] = {"XPRA_BROKER_", "LISTEN_", "NOTIFY_SOCKET=", "JOURNAL_STREAM="};
  std::vector<std::string> env;
  for (char** e = environ; e && *e; ++e) {
    const std::string entry = *e;
    bool drop = false;
    for (const char* prefix : dropped_prefixes) drop = drop || entry.rfind(prefix, 0) == 0;
    const auto eq = entry.find('=');
    if (eq != std::string::npos && extra.count(entry.substr(0, eq))) drop = true;
    if (!drop) env.push_back(entry);
  }
  for (const auto& [key, value] : extra) env.push_back(key + "=" + value);
  return env;
}

std::vector<char*> as_argv(std::vector<std::string>& strings) {
  std::vector<char*> out;
  for (auto& s : strings) out.push_back(s.data());
  out.push_back(nullptr);
  return out;
}

// In the child after fork(): become `account` for good. Async-signal-safe.
void become_user_or_die(const UserAccount& account) {
  if (::setgroups(account.groups.size(), account.groups.data()) != 0 ||
      ::setresgid(account.gid, account.gid, account.gid) != 0 ||
      ::setresuid(account.uid, account.uid, account.uid) != 0) {
    static const char msg[] = "harness: cannot switch to the test user\n";
    (void)!::write(STDERR_FILENO, msg, sizeof(msg) - 1);
    ::_exit(120);
  }
}

void reset_signals_in_child() {
  sigset_t none;
  sigemptyset(&none);
  ::sigprocmask(SIG_SETMASK, &none, nullptr);
  for (int s : {SIGPIPE, SIGTERM, SIGINT, SIGHUP, SIGCHLD}) ::signal(s, SIG_DFL);
}

void close_fds_from(int first) { ::syscall(SYS_close_range, first, ~0U, 0); }

// Waits for `pid` up to `timeout`; the wait status, or nullopt if it still runs.
std::optional<int> wait_pid_for(pid_t pid, std::chrono::milliseconds timeout) {
  const auto deadline = Clock::now() + timeout;
  for (;;) {
    int status = 0;
    const pid_t r = ::waitpid(pid, &status, WNOHANG);
    if (r == pid) return status;
    if (r < 0 && errno != EINTR) return -1;
    if (Clock::now() >= deadline) return std::nullopt;
    std::this_thread::sleep_for(5ms);
  }
}

}  // namespace

const std::string& brokerd_path() {
  // XPRA_BROKER_TEST_BROKERD runs the suites against another build of the
  // daemon, e.g. the one before a fix, to see a new test fail there.
  static const std::string path = [] {
    const char* other = std::getenv("XPRA_BROKER_TEST_BROKERD");
    return std::string(other && *other ? other : XPRA_BROKERD_PATH);
  }();
  return path;
}

const std::string& request_display_path() {
  static const std::string path = XPRA_REQUEST_DISPLAY_PATH;
  return path;
}

// ---------------------------------------------------------------- TempDir

TempDir::TempDir(const std::string& prefix, mode_t mode) {
  std::string templ = "/tmp/" + prefix + "-XXXXXX";
  if (!::mkdtemp(templ.data())) fail("mkdtemp " + templ);
  path_ = templ;
  if (::chmod(path_.c_str(), mode) != 0) fail("chmod " + path_);
}

TempDir::~TempDir() {
  std::error_code ignored;
  std::filesystem::remove_all(path_, ignored);
}

void make_directory(const std::string& path, mode_t mode) {
  if (::mkdir(path.c_str(), mode) != 0 && errno != EEXIST) fail("mkdir " + path);
  if (::chmod(path.c_str(), mode) != 0) fail("chmod " + path);
}

// ---------------------------------------------------------------- users

UserAccount user_account(const std::string& name) {
  passwd pw{};
  passwd* found = nullptr;
  char buf[16384];
  if (::getpwnam_r(name.c_str(), &pw, buf, sizeof(buf), &found) != 0 || !found)
    throw std::runtime_error("no such user '" + name + "' (does the test_users fixture run first?)");
  UserAccount account;
  account.name = name;
  account.uid = pw.pw_uid;
  account.gid = pw.pw_gid;
  account.home = pw.pw_dir;
  int count = 64;
  std::vector<gid_t> groups(static_cast<std::size_t>(count));
  while (::getgrouplist(name.c_str(), pw.pw_gid, groups.data(), &count) < 0)
    groups.resize(static_cast<std::size_t>(count));
  groups.resize(static_cast<std::size_t>(count));
  account.groups = std::move(groups);
  return account;
}

uid_t uid_of(const std::string& name) { return user_account(name).uid; }

gid_t gid_of_group(const std::string& name) {
  group gr{};
  group* found = nullptr;
  char buf[16384];
  if (::getgrnam_r(name.c_str(), &gr, buf, sizeof(buf), &found) != 0 || !found)
    throw std::runtime_error("no such group '" + name + "'");
  return gr.gr_gid;
}

// ---------------------------------------------------------------- processes

std::string ProcessResult::describe() const {
  auto text = [](const std::string& s) { return s.empty() ? std::string("(empty)\n") : s; };
  std::ostringstream message;
  message << "exit code " << exit_code << (timed_out ? " (killed: timed out)" : "") << "\n--- stdout ---\n"
          << text(out) << "--- stderr ---\n"
          << text(err);
  return message.str();
}

ChildProcess::ChildProcess(ChildProcess&& other) noexcept { *this = std::move(other); }

ChildProcess& ChildProcess::operator=(ChildProcess&& other) noexcept {
  if (this != &other) {
    if (pid_ > 0 && !result_) terminate();
    close_fds();
    pid_ = std::exchange(other.pid_, -1);
    out_fd_ = std::exchange(other.out_fd_, -1);
    err_fd_ = std::exchange(other.err_fd_, -1);
    result_ = std::move(other.result_);
    other.result_.reset();
  }
  return *this;
}

ChildProcess::~ChildProcess() {
  if (pid_ > 0 && !result_) terminate();
  close_fds();
}

void ChildProcess::close_fds() {
  for (int* fd : {&out_fd_, &err_fd_})
    if (*fd >= 0) ::close(std::exchange(*fd, -1));
}

ProcessResult ChildProcess::collect(int wait_status, bool timed_out) {
  ProcessResult r;
  r.exit_code = exit_code_of(wait_status);
  r.timed_out = timed_out;
  r.out = read_whole_fd(out_fd_);
  r.err = read_whole_fd(err_fd_);
  result_ = r;
  return r;
}

bool ChildProcess::running() {
  if (pid_ <= 0 || result_) return false;
  return !wait_for(0ms).has_value();
}

void ChildProcess::send_signal(int signo) const {
  if (pid_ > 0 && !result_) ::kill(pid_, signo);
}

std::optional<ProcessResult> ChildProcess::wait_for(std::chrono::milliseconds timeout) {
  if (result_) return result_;
  if (pid_ <= 0) return std::nullopt;
  const auto status = wait_pid_for(pid_, timeout);
  if (!status) return std::nullopt;
  return collect(*status, false);
}

ProcessResult ChildProcess::wait(std::chrono::milliseconds timeout) {
  if (auto r = wait_for(timeout)) return *r;
  ::kill(pid_, SIGKILL);
  const auto status = wait_pid_for(pid_, 30s);
  return collect(status.value_or(-1), true);
}

ProcessResult ChildProcess::terminate(std::chrono::milliseconds grace) {
  if (result_) return *result_;
  ::kill(pid_, SIGTERM);
  return wait(grace);
}

ChildProcess spawn_as(const std::string& user, const std::vector<std::string>& argv, const SpawnOptions& options) {
  if (argv.empty()) throw std::invalid_argument("spawn_as: empty argv");
  const UserAccount account = user_account(user);
  std::map<std::string, std::string> env = {{"HOME", account.home}, {"USER", account.name}, {"LOGNAME", account.name}};
  for (const auto& [k, v] : options.env) env[k] = v;
  std::vector<std::string> env_strings = child_environment(env);
  std::vector<std::string> arg_strings = argv;
  const std::string executable = find_executable(argv.front());
  std::vector<char*> c_argv = as_argv(arg_strings);
  std::vector<char*> c_env = as_argv(env_strings);

  const int out_fd = ::memfd_create("child-stdout", MFD_CLOEXEC);
  const int err_fd = ::memfd_create("child-stderr", MFD_CLOEXEC);
  const int null_fd = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
  if (out_fd < 0 || err_fd < 0 || null_fd < 0) fail("memfd_create / open /dev/null");

  const pid_t pid = ::fork();
  if (pid < 0) fail("fork");
  if (pid == 0) {
    reset_signals_in_child();
    if (options.own_process_group) ::setpgid(0, 0);
    ::dup2(null_fd, STDIN_FILENO);
    ::dup2(out_fd, STDOUT_FILENO);
    ::dup2(err_fd, STDERR_FILENO);
    close_fds_from(3);
    become_user_or_die(account);
    if (::chdir(options.cwd.c_str()) != 0) ::_exit(121);
    ::execve(executable.c_str(), c_argv.data(), c_env.data());
    static const char msg[] = "harness: execve failed\n";
    (void)!::write(STDERR_FILENO, msg, sizeof(msg) - 1);
    ::_exit(127);
  }
  ::close(null_fd);
  return ChildProcess(pid, out_fd, err_fd);
}

ProcessResult run_as(const std::string& user, const std::vector<std::string>& argv, const SpawnOptions& options,
                     std::chrono::milliseconds timeout) {
  return spawn_as(user, argv, options).wait(timeout);
}

int run_function_as(const std::string& user, const std::function<int()>& body) {
  const UserAccount account = user_account(user);
  const pid_t pid = ::fork();
  if (pid < 0) fail("fork");
  if (pid == 0) {
    reset_signals_in_child();
    become_user_or_die(account);
    ::_exit(body());
  }
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  return exit_code_of(status);
}

bool process_running(pid_t pid) {
  if (pid <= 0) return false;
  const std::string stat = read_file("/proc/" + std::to_string(pid) + "/stat");
  // "pid (comm) S ...": the state follows the last ')', comm may hold any byte.
  const auto paren = stat.rfind(')');
  if (paren == std::string::npos || paren + 2 >= stat.size()) return false;
  const char state = stat[paren + 2];
  return state != 'Z' && state != 'X';
}

bool wait_until(const std::function<bool()>& condition, std::chrono::milliseconds timeout,
                std::chrono::milliseconds interval) {
  const auto deadline = Clock::now() + timeout;
  for (;;) {
    if (condition()) return true;
    if (Clock::now() >= deadline) return false;
    std::this_thread::sleep_for(interval);
  }
}

std::string read_file(const std::string& path) {
  std::ifstream in(path);
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

// ---------------------------------------------------------------- broker

BrokerProcess::BrokerProcess(std::vector<std::string> options)
    : options_(std::move(options)), dir_("xpb-broker", 0755) {
  runtime_dir_ = dir_.path() + "/run";
  socket_path_ = runtime_dir_ + "/broker.sock";
  scratch_dir_ = dir_.path() + "/scratch";
  config_path_ = dir_.path() + "/broker.conf";
  log_path_ = dir_.path() + "/broker.log";
  make_directory(scratch_dir_, 0777);
  // An explicit empty config, so a /etc/xpra/broker.conf on the host does
  // not change the broker under test.
  std::ofstream(config_path_) << "# empty: every setting comes from the command line\n";
}

BrokerProcess::~BrokerProcess() { stop(); }

void BrokerProcess::start(std::chrono::milliseconds timeout) {
  if (pid_ > 0) throw std::logic_error("broker already started");
  // Defaults first: a later --KEY=VALUE overrides an earlier one.
  std::vector<std::string> args = {brokerd_path(), "--config=" + config_path_};
  args.push_back("--user=xpra-broker");
  args.push_back("--group=xpra");
  args.push_back("--runtime-dir=" + runtime_dir_);
  args.push_back("--socket=" + socket_path_);
  // Not the host's Xpra config (its socket-dirs name the host's /run/xpra,
  // whatever is in it): tests that want Xpra's dirs name their own.
  args.push_back("--xpra-config-dirs=");
  args.insert(args.end(), options_.begin(), options_.end());
  std::vector<char*> c_argv = as_argv(args);
  std::vector<std::string> env_strings = child_environment({});
  std::vector<char*> c_env = as_argv(env_strings);

  const int log_fd = ::open(log_path_.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  const int null_fd = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
  if (log_fd < 0 || null_fd < 0) fail("open " + log_path_);
  const pid_t pid = ::fork();
  if (pid < 0) fail("fork");
  if (pid == 0) {
    reset_signals_in_child();
    ::dup2(null_fd, STDIN_FILENO);
    ::dup2(log_fd, STDOUT_FILENO);
    ::dup2(log_fd, STDERR_FILENO);
    close_fds_from(3);
    ::execve(c_argv[0], c_argv.data(), c_env.data());
    ::_exit(127);
  }
  ::close(log_fd);
  ::close(null_fd);
  pid_ = pid;

  const auto deadline = Clock::now() + timeout;
  while (Clock::now() < deadline) {
    if (const auto status = wait_pid_for(pid_, 0ms)) {
      pid_ = -1;
      throw std::runtime_error("xpra-brokerd exited with code " + std::to_string(exit_code_of(*status)) +
                               " before serving; its log:\n" + log());
    }
    auto conn = BrokerConnection::connect(socket_path_, 1s);
    if (conn.connected()) {
      v1::Request request;
      request.mutable_status();
      v1::Response response;
      if (conn.call(request, response) == BrokerConnection::Error::none && response.status() == v1::OK) return;
    }
    std::this_thread::sleep_for(20ms);
  }
  const std::string log_text = log();
  stop();
  throw std::runtime_error("xpra-brokerd did not answer on " + socket_path_ + " in time; its log:\n" + log_text);
}

int BrokerProcess::stop(std::chrono::milliseconds grace) {
  if (pid_ <= 0) return -1;
  ::kill(pid_, SIGTERM);
  auto status = wait_pid_for(pid_, grace);
  if (!status) {
    ::kill(pid_, SIGKILL);
    status = wait_pid_for(pid_, 30s);
  }
  pid_ = -1;
  return status ? exit_code_of(*status) : -1;
}

bool BrokerProcess::alive() {
  if (pid_ <= 0) return false;
  if (const auto status = wait_pid_for(pid_, 0ms)) {
    pid_ = -1;
    return false;
  }
  return true;
}

std::string BrokerProcess::log() const { return read_file(log_path_); }

gid_t BrokerProcess::effective_gid() const {
  std::ifstream status("/proc/" + std::to_string(pid_) + "/status");
  for (std::string line; std::getline(status, line);) {
    if (line.rfind("Gid:", 0) != 0) continue;
    std::istringstream fields(line.substr(4));
    gid_t real = 0, effective = 0;
    fields >> real >> effective;
    return effective;
  }
  throw std::runtime_error("cannot read the broker's gid from /proc");
}

std::vector<std::string> BrokerProcess::client_command(const std::vector<std::string>& args) const {
  std::vector<std::string> argv = {request_display_path(), "--socket", socket_path_};
  argv.insert(argv.end(), args.begin(), args.end());
  return argv;
}

ProcessResult BrokerProcess::client_as(const std::string& user, const std::vector<std::string>& args,
                                       std::chrono::milliseconds timeout) const {
  return run_as(user, client_command(args), {}, timeout);
}

ChildProcess BrokerProcess::spawn_client_as(const std::string& user, const std::vector<std::string>& args,
                                            const SpawnOptions& options) const {
  return spawn_as(user, client_command(args), options);
}

BrokerConnection BrokerProcess::connect(std::chrono::milliseconds timeout) const {
  return BrokerConnection::connect(socket_path_, timeout);
}

v1::Response BrokerProcess::call(const v1::Request& request) const {
  auto conn = connect();
  v1::Response response;
  if (!conn.connected()) throw std::runtime_error("cannot connect to " + socket_path_);
  if (const auto err = conn.call(request, response); err != BrokerConnection::Error::none)
    throw std::runtime_error(std::string("broker call failed: ") + describe(err));
  return response;
}

}  // namespace xpra_broker::integration
