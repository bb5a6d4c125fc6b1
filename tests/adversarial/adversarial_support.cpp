#include "adversarial_support.h"

#include <dirent.h>
#include <fcntl.h>
#include <grp.h>
#include <poll.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <iostream>
#include <sstream>
#include <stdexcept>
#include <thread>

#include "framing.h"

namespace xpra_broker::adversarial {

namespace {

using Clock = std::chrono::steady_clock;

[[noreturn]] void fail(const std::string& what) { throw std::runtime_error(what + ": " + std::strerror(errno)); }

void require_single_threaded(const char* who) {
  DIR* tasks = ::opendir("/proc/self/task");
  int entries = 0;
  while (tasks && ::readdir(tasks)) ++entries;
  if (tasks) ::closedir(tasks);
  if (entries - 2 != 1) throw std::logic_error(std::string(who) + " needs a single-threaded test process");
}

// After fork(): become `account` for good.
void become_or_die(const integration::UserAccount& account) {
  if (::setgroups(account.groups.size(), account.groups.data()) != 0 ||
      ::setresgid(account.gid, account.gid, account.gid) != 0 ||
      ::setresuid(account.uid, account.uid, account.uid) != 0)
    ::_exit(120);
}

bool write_all(int fd, const void* data, std::size_t size) {
  const char* p = static_cast<const char*>(data);
  while (size > 0) {
    const ssize_t n = ::write(fd, p, size);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    p += n;
    size -= static_cast<std::size_t>(n);
  }
  return true;
}

// Reads exactly `size` bytes, waiting at most until `deadline`.
bool read_exact(int fd, void* data, std::size_t size, Clock::time_point deadline) {
  char* p = static_cast<char*>(data);
  while (size > 0) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
    if (left <= 0) return false;
    pollfd pfd{fd, POLLIN, 0};
    const int r = ::poll(&pfd, 1, static_cast<int>(left));
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) return false;
    const ssize_t n = ::read(fd, p, size);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    p += n;
    size -= static_cast<std::size_t>(n);
  }
  return true;
}

// Agent wire, test -> child: op(1) connection(4) timeout_ms(4) length(4) body.
// Child -> test: ok(1) length(4) body (a serialized Response, or an error text).
constexpr char kOpCall = 'c';
constexpr char kOpReconnect = 'r';

[[noreturn]] void agent_main(int in, int out, const std::string& socket_path, int connections) {
  std::vector<BrokerConnection> conns;
  for (int i = 0; i < connections; ++i) conns.push_back(BrokerConnection::connect(socket_path, 10s));
  auto answer = [out](bool ok, const std::string& body) {
    const char flag = ok ? 1 : 0;
    const std::uint32_t len = static_cast<std::uint32_t>(body.size());
    if (!write_all(out, &flag, 1) || !write_all(out, &len, 4) || !write_all(out, body.data(), body.size()))
      ::_exit(0);
  };
  for (;;) {
    char op = 0;
    std::uint32_t index = 0, timeout_ms = 0, len = 0;
    const auto forever = Clock::now() + std::chrono::hours(24);
    if (!read_exact(in, &op, 1, forever) || !read_exact(in, &index, 4, forever) ||
        !read_exact(in, &timeout_ms, 4, forever) || !read_exact(in, &len, 4, forever))
      ::_exit(0);  // the test closed the pipe: done
    std::string body(len, '\0');
    if (len && !read_exact(in, body.data(), len, forever)) ::_exit(0);
    if (index >= conns.size()) {
      answer(false, "no such connection");
      continue;
    }
    BrokerConnection& conn = conns[index];
    if (op == kOpReconnect) {
      conn = BrokerConnection::connect(socket_path, std::chrono::milliseconds(timeout_ms));
      answer(conn.connected(), conn.connected() ? "" : describe(conn.error()));
      continue;
    }
    if (!conn.connected()) {
      answer(false, std::string("not connected: ") + describe(conn.error()));
      continue;
    }
    conn.set_timeout(std::chrono::milliseconds(timeout_ms));
    v1::Response response;
    auto err = conn.send_raw(frame_of(body));
    if (err == BrokerConnection::Error::none) err = conn.receive(response);
    if (err != BrokerConnection::Error::none) {
      answer(false, describe(err));
      continue;
    }
    answer(true, response.SerializeAsString());
  }
}

}  // namespace

// ---------------------------------------------------------------- UserAgent

std::string frame_of(const std::string& body) {
  std::string frame(wire::kHeaderSize, '\0');
  wire::encode_header(static_cast<std::uint32_t>(body.size()),
                      std::span<std::uint8_t, wire::kHeaderSize>(reinterpret_cast<std::uint8_t*>(frame.data()),
                                                                 wire::kHeaderSize));
  return frame + body;
}


std::string UserAgent::Result::status_name() const {
  if (!transport_ok) return "TRANSPORT(" + error + ")";
  return v1::Status_Name(response.status());
}

UserAgent::UserAgent(const std::string& user, const std::string& socket_path, int connections) {
  require_single_threaded("UserAgent");
  const auto account = integration::user_account(user);
  int down[2], up[2];
  if (::pipe2(down, O_CLOEXEC) != 0 || ::pipe2(up, O_CLOEXEC) != 0) fail("pipe2");
  std::cout.flush();
  pid_ = ::fork();
  if (pid_ < 0) fail("fork");
  if (pid_ == 0) {
    // Keep only its own pipe ends (at 1000, 1001): another agent's pipe
    // held open here would keep that agent from seeing the test close it.
    ::dup3(down[0], 1000, O_CLOEXEC);
    ::dup3(up[1], 1001, O_CLOEXEC);
    ::syscall(SYS_close_range, 3, 999, 0);
    ::syscall(SYS_close_range, 1002, ~0U, 0);
    ::signal(SIGPIPE, SIG_IGN);
    become_or_die(account);
    agent_main(1000, 1001, socket_path, connections);
  }
  ::close(down[0]);
  ::close(up[1]);
  to_child_ = down[1];
  from_child_ = up[0];
}

UserAgent::~UserAgent() {
  if (to_child_ >= 0) ::close(to_child_);
  if (from_child_ >= 0) ::close(from_child_);
  if (pid_ > 0) {
    // The agent exits when its pipe closes; a stuck one is killed.
    for (int i = 0; i < 200; ++i) {
      if (::waitpid(pid_, nullptr, WNOHANG) == pid_) return;
      std::this_thread::sleep_for(10ms);
    }
    ::kill(pid_, SIGKILL);
    ::waitpid(pid_, nullptr, 0);
  }
}

UserAgent::Result UserAgent::exchange(char op, int connection, const std::string& body,
                                      std::chrono::milliseconds timeout) {
  Result result;
  const std::uint32_t index = static_cast<std::uint32_t>(connection);
  const std::uint32_t timeout_ms = static_cast<std::uint32_t>(timeout.count());
  const std::uint32_t len = static_cast<std::uint32_t>(body.size());
  if (!write_all(to_child_, &op, 1) || !write_all(to_child_, &index, 4) || !write_all(to_child_, &timeout_ms, 4) ||
      !write_all(to_child_, &len, 4) || !write_all(to_child_, body.data(), body.size())) {
    result.error = "agent gone";
    return result;
  }
  // The child's own call is bounded by `timeout`; allow for scheduling.
  const auto deadline = Clock::now() + timeout + 30s;
  char flag = 0;
  std::uint32_t reply_len = 0;
  if (!read_exact(from_child_, &flag, 1, deadline) || !read_exact(from_child_, &reply_len, 4, deadline)) {
    result.error = "agent did not answer";
    return result;
  }
  std::string reply(reply_len, '\0');
  if (reply_len && !read_exact(from_child_, reply.data(), reply_len, deadline)) {
    result.error = "agent answer cut short";
    return result;
  }
  if (!flag) {
    result.error = reply;
    return result;
  }
  if (op == kOpReconnect) {
    result.transport_ok = true;
    return result;
  }
  result.transport_ok = result.response.ParseFromString(reply);
  if (!result.transport_ok) result.error = "unparsable response";
  return result;
}

UserAgent::Result UserAgent::call(const v1::Request& request, int connection, std::chrono::milliseconds timeout) {
  return exchange(kOpCall, connection, request.SerializeAsString(), timeout);
}

UserAgent::Result UserAgent::call_raw(const std::string& body, int connection, std::chrono::milliseconds timeout) {
  return exchange(kOpCall, connection, body, timeout);
}

bool UserAgent::reconnect(int connection) { return exchange(kOpReconnect, connection, "", 10s).transport_ok; }

v1::Request acquire_request(const std::string& purpose) {
  v1::Request r;
  r.mutable_acquire()->set_purpose(purpose);
  return r;
}

v1::Request release_request(const std::string& lease_id) {
  v1::Request r;
  r.mutable_release()->set_lease_id(lease_id);
  return r;
}

v1::Request status_request() {
  v1::Request r;
  r.mutable_status();
  return r;
}

v1::Request list_request(bool all) {
  v1::Request r;
  r.mutable_list()->set_all(all);
  return r;
}

v1::Request start_failure_request(const std::string& lease_id, v1::StartFailure failure, const std::string& detail) {
  v1::Request r;
  auto* f = r.mutable_report_start_failure();
  f->set_lease_id(lease_id);
  f->set_failure(failure);
  f->set_detail(detail);
  return r;
}

v1::Request reattach_request(const std::string& lease_id, const std::string& token) {
  v1::Request r;
  r.mutable_reattach()->set_lease_id(lease_id);
  r.mutable_reattach()->set_reattach_token(token);
  return r;
}

std::string serialized_with_bytes(const v1::Request& request, const std::string& placeholder, const std::string& bytes) {
  if (placeholder.size() != bytes.size()) throw std::invalid_argument("serialized_with_bytes: lengths differ");
  std::string body = request.SerializeAsString();
  const auto at = body.find(placeholder);
  if (at == std::string::npos) throw std::invalid_argument("serialized_with_bytes: placeholder not in the request");
  body.replace(at, placeholder.size(), bytes);
  return body;
}

// ---------------------------------------------------------------- BackgroundAs

BackgroundAs::BackgroundAs(const std::string& user, const std::function<int(Counters&)>& body) {
  require_single_threaded("BackgroundAs");
  const auto account = integration::user_account(user);
  void* shared = ::mmap(nullptr, sizeof(Counters), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  if (shared == MAP_FAILED) fail("mmap");
  for (int i = 0; i < kCounters; ++i) new (static_cast<std::atomic<std::uint64_t>*>(shared) + i) std::atomic<std::uint64_t>(0);
  counters_ = static_cast<Counters*>(shared);
  std::cout.flush();
  pid_ = ::fork();
  if (pid_ < 0) fail("fork");
  if (pid_ == 0) {
    ::setsid();
    ::syscall(SYS_close_range, 3, ~0U, 0);
    sigset_t none;
    sigemptyset(&none);
    ::sigprocmask(SIG_SETMASK, &none, nullptr);
    for (int s : {SIGTERM, SIGINT, SIGHUP, SIGCHLD}) ::signal(s, SIG_DFL);
    ::signal(SIGPIPE, SIG_IGN);
    become_or_die(account);
    int rc = 1;
    try {
      rc = body(*counters_);
    } catch (...) {
      rc = 2;
    }
    ::_exit(rc);
  }
}

BackgroundAs::~BackgroundAs() {
  stop(2s);
  ::munmap(counters_, sizeof(Counters));
}

std::optional<int> BackgroundAs::wait_for(std::chrono::milliseconds timeout) {
  if (reaped_) return 0;
  const auto deadline = Clock::now() + timeout;
  for (;;) {
    int status = 0;
    const pid_t r = ::waitpid(pid_, &status, WNOHANG);
    if (r == pid_) {
      reaped_ = true;
      return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    }
    if (r < 0 && errno != EINTR) {
      reaped_ = true;
      return -1;
    }
    if (Clock::now() >= deadline) return std::nullopt;
    std::this_thread::sleep_for(5ms);
  }
}

void BackgroundAs::stop(std::chrono::milliseconds grace) {
  if (reaped_ || pid_ <= 0) return;
  ::kill(pid_, SIGTERM);
  const bool ended = wait_for(grace).has_value();
  // Whatever it forked and left behind dies with it: an orphan would keep
  // the test's stdout open and ctest waiting until its timeout.
  ::kill(-pid_, SIGKILL);
  if (ended) return;
  ::kill(pid_, SIGKILL);
  wait_for(60s);
}

// ---------------------------------------------------------------- IdleProcesses

namespace {
volatile sig_atomic_t g_idle_stop = 0;
void on_idle_stop(int) { g_idle_stop = 1; }
}  // namespace

IdleProcesses::IdleProcesses(const std::string& user, int count) {
  runner_ = std::make_unique<BackgroundAs>(user, [count](BackgroundAs::Counters& c) {
    // SIGTERM ends the waiting children first, then this parent after it
    // has reaped every one of them.
    struct sigaction sa {};
    sa.sa_handler = on_idle_stop;
    ::sigaction(SIGTERM, &sa, nullptr);
    std::vector<pid_t> children;
    children.reserve(static_cast<std::size_t>(count));
    for (int i = 0; i < count && !g_idle_stop; ++i) {
      const pid_t pid = ::fork();
      if (pid == 0) {
        ::signal(SIGTERM, SIG_DFL);
        for (;;) ::pause();
      }
      if (pid < 0) {
        c[1] = 1;
        break;
      }
      children.push_back(pid);
      c[0] = children.size();
    }
    while (!g_idle_stop) ::pause();
    for (pid_t pid : children) ::kill(pid, SIGKILL);
    for (pid_t pid : children)
      while (::waitpid(pid, nullptr, 0) < 0 && errno == EINTR) {
      }
    return 0;
  });
}

// ---------------------------------------------------------------- files and logs

void plant_dead_socket_owned_by(const std::string& user, const std::string& path) {
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (path.size() >= sizeof(addr.sun_path)) throw std::invalid_argument("socket path too long: " + path);
  std::memcpy(addr.sun_path, path.c_str(), path.size() + 1);
  const int s = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (s < 0) fail("socket");
  const bool ok = ::bind(s, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0;
  const int saved = errno;
  ::close(s);
  errno = saved;
  if (!ok) fail("bind " + path);
  const auto account = integration::user_account(user);
  if (::lchown(path.c_str(), account.uid, account.gid) != 0) fail("lchown " + path);
}

std::vector<std::string> log_lines_from(const std::string& log, std::size_t from) {
  std::vector<std::string> out;
  if (from >= log.size()) return out;
  std::istringstream in(log.substr(from));
  for (std::string line; std::getline(in, line);) out.push_back(line);
  return out;
}

std::size_t count_containing(const std::vector<std::string>& lines, const std::string& needle) {
  return static_cast<std::size_t>(
      std::count_if(lines.begin(), lines.end(), [&](const std::string& l) { return l.find(needle) != std::string::npos; }));
}

std::string unclean_text(const std::string& bytes, const std::string& marker) {
  std::size_t line = 1;
  auto where = [&](std::size_t at, const std::string& what) {
    std::ostringstream o;
    o << what << " at byte " << at << " (line " << line << "): \"";
    const std::size_t from = at > 60 ? at - 60 : 0;
    for (std::size_t i = from; i < std::min(bytes.size(), at + 40); ++i) {
      const unsigned char c = static_cast<unsigned char>(bytes[i]);
      if (c >= 0x20 && c < 0x7f) o << bytes[i];
      else {
        char hex[8];
        std::snprintf(hex, sizeof(hex), "<%02x>", c);
        o << hex;
      }
    }
    o << "\"";
    return o.str();
  };
  for (std::size_t i = 0; i < bytes.size();) {
    const unsigned char c = static_cast<unsigned char>(bytes[i]);
    if (c == '\n') {
      ++line;
      if (!marker.empty() && bytes.compare(i + 1, marker.size(), marker) == 0)
        return where(i + 1, "a line of its own starting with the injected text '" + marker + "'");
      ++i;
      continue;
    }
    if (c == '\t') {
      ++i;
      continue;
    }
    if (c < 0x20 || c == 0x7f) {
      char what[48];
      std::snprintf(what, sizeof(what), "raw control byte 0x%02x", c);
      return where(i, what);
    }
    if (c < 0x80) {
      ++i;
      continue;
    }
    // UTF-8: lead byte, then 1-3 continuation bytes; no overlongs, no surrogates.
    std::size_t n = 0;
    unsigned cp = 0;
    if (c >= 0xc2 && c <= 0xdf) n = 1, cp = c & 0x1f;
    else if (c >= 0xe0 && c <= 0xef) n = 2, cp = c & 0x0f;
    else if (c >= 0xf0 && c <= 0xf4) n = 3, cp = c & 0x07;
    else return where(i, "byte that is not UTF-8");
    if (i + n >= bytes.size()) return where(i, "truncated UTF-8 sequence");
    for (std::size_t k = 1; k <= n; ++k) {
      const unsigned char cc = static_cast<unsigned char>(bytes[i + k]);
      if ((cc & 0xc0) != 0x80) return where(i, "byte that is not UTF-8");
      cp = (cp << 6) | (cc & 0x3f);
    }
    if ((n == 2 && (cp < 0x800 || (cp >= 0xd800 && cp <= 0xdfff))) || (n == 3 && (cp < 0x10000 || cp > 0x10ffff)))
      return where(i, "byte that is not UTF-8");
    if (cp >= 0x80 && cp <= 0x9f) return where(i, "C1 control character");
    // The format characters an attacker uses to reorder or hide text (issue 21).
    if (cp == 0x061c || (cp >= 0x200b && cp <= 0x200f) || (cp >= 0x2028 && cp <= 0x202e) ||
        (cp >= 0x2066 && cp <= 0x2069) || cp == 0xfeff)
      return where(i, "raw Unicode format (bidi/zero-width) character");
    i += n + 1;
  }
  if (!marker.empty() && bytes.compare(0, marker.size(), marker) == 0)
    return where(0, "a line of its own starting with the injected text '" + marker + "'");
  return "";
}

// ---------------------------------------------------------------- brokerd by hand

std::string BrokerdRun::describe() const {
  std::ostringstream o;
  if (served) o << "it served (pid " << pid << ", " << uid_line << ", " << gid_line << ")";
  else if (exit_code >= 0) o << "it exited with code " << exit_code;
  else o << "it neither served nor exited in time";
  o << "\n--- its output ---\n" << (output.empty() ? "(empty)\n" : output);
  return o.str();
}

BrokerdRun run_brokerd(const std::vector<std::string>& args, const std::string& socket,
                       std::chrono::milliseconds timeout) {
  integration::TempDir conf_dir("xpb-adv-conf", 0755);
  const std::string conf = conf_dir.path() + "/broker.conf";
  std::ofstream(conf) << "# empty: every setting comes from the command line\n";
  std::vector<std::string> argv = {integration::brokerd_path(), "--config=" + conf};
  argv.insert(argv.end(), args.begin(), args.end());
  ChildProcess broker = integration::spawn_as("root", argv);
  BrokerdRun run;
  run.pid = broker.pid();
  const auto deadline = Clock::now() + timeout;
  while (Clock::now() < deadline) {
    if (auto r = broker.wait_for(0ms)) {
      run.exit_code = r->exit_code;
      run.output = r->out + r->err;
      return run;
    }
    auto conn = BrokerConnection::connect(socket, 1s);
    if (conn.connected()) {
      v1::Response response;
      if (conn.call(status_request(), response) == BrokerConnection::Error::none && response.status() == v1::OK) {
        run.served = true;
        run.status = response.status_reply();
        std::ifstream status("/proc/" + std::to_string(run.pid) + "/status");
        for (std::string line; std::getline(status, line);) {
          if (line.rfind("Uid:", 0) == 0) run.uid_line = line;
          if (line.rfind("Gid:", 0) == 0) run.gid_line = line;
        }
        break;
      }
    }
    std::this_thread::sleep_for(20ms);
  }
  const auto r = broker.terminate(10s);
  if (!run.served && r.exit_code >= 0 && !r.timed_out && r.exit_code != 128 + SIGTERM) run.exit_code = r.exit_code;
  run.output = r.out + r.err;
  return run;
}

// ---------------------------------------------------------------- fixture

std::string AdversarialTest::private_x11_dir() {
  if (!x11_dir_) {
    x11_dir_ = std::make_unique<integration::TempDir>("xpb-adv-x11", 0755);
    integration::make_directory(x11_dir_->path() + "/.X11-unix", 01777);
  }
  return x11_dir_->path();
}

void AdversarialTest::TearDown() {
  if (broker_ && HasFailure())
    std::cout << "---- xpra-brokerd log (" << broker_->log_path() << "), head and tail ----\n"
              << head_and_tail(broker_->log(), 60) << "---- end of log ----\n";
  // The base class prints the whole log when it has a broker; it gets none,
  // and the broker stops when the fixture goes, as before.
  finished_broker_ = std::move(broker_);
  LifecycleTest::TearDown();
}

std::string head_and_tail(const std::string& text, std::size_t n) {
  const auto lines = log_lines_from(text, 0);
  auto cut = [](const std::string& l) { return l.size() > 300 ? l.substr(0, 300) + "..." : l; };
  std::string out;
  for (std::size_t i = 0; i < lines.size(); ++i) {
    if (i == n && lines.size() > 2 * n)
      out += "[... " + std::to_string(lines.size() - 2 * n) + " lines left out ...]\n";
    if (i < n || i + n >= lines.size()) out += cut(lines[i]) + "\n";
  }
  return out;
}

std::string latency_summary(std::vector<double> ms) {
  if (ms.empty()) return "n=0";
  std::sort(ms.begin(), ms.end());
  auto at = [&](double q) { return ms[std::min(ms.size() - 1, static_cast<std::size_t>(q * (ms.size() - 1) + 0.5))]; };
  char buf[160];
  std::snprintf(buf, sizeof(buf), "n=%zu p50 %.1f ms p99 %.1f ms max %.1f ms", ms.size(), at(0.5), at(0.99),
                ms.back());
  return buf;
}

}  // namespace xpra_broker::adversarial
