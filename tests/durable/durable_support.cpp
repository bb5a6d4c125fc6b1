#include "durable_support.h"

#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <iostream>
#include <sstream>
#include <stdexcept>
#include <thread>

namespace xpra_broker::durable {

namespace {

std::vector<std::string> split_nul(const std::string& text) {
  std::vector<std::string> out;
  std::size_t start = 0;
  while (start < text.size()) {
    const auto end = text.find('\0', start);
    out.push_back(text.substr(start, end == std::string::npos ? std::string::npos : end - start));
    if (end == std::string::npos) break;
    start = end + 1;
  }
  return out;
}

}  // namespace

bool become_user_on_this_thread(const std::string& user) {
  const auto account = integration::user_account(user);
  return ::syscall(SYS_setgroups, account.groups.size(), account.groups.data()) == 0 &&
         ::syscall(SYS_setresgid, account.gid, account.gid, account.gid) == 0 &&
         ::syscall(SYS_setresuid, account.uid, account.uid, account.uid) == 0;
}

BrokerConnection connect_as(const std::string& user, const std::string& socket, std::chrono::milliseconds timeout) {
  BrokerConnection conn;
  std::string error;
  std::thread([&] {
    if (!become_user_on_this_thread(user)) {
      error = "cannot become " + user + " on a thread: " + std::strerror(errno);
      return;
    }
    conn = BrokerConnection::connect(socket, timeout);
  }).join();
  if (!error.empty()) throw std::runtime_error(error);
  return conn;
}

v1::Response call_or_fail(BrokerConnection& conn, const v1::Request& request) {
  v1::Response response;
  const auto err = conn.call(request, response);
  if (err != BrokerConnection::Error::none) ADD_FAILURE() << "broker call failed: " << describe(err);
  return response;
}

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

v1::Request reattach_request(const std::string& lease_id, const std::string& token) {
  v1::Request r;
  r.mutable_reattach()->set_lease_id(lease_id);
  r.mutable_reattach()->set_reattach_token(token);
  return r;
}

v1::Request list_all_request() {
  v1::Request r;
  r.mutable_list()->set_all(true);
  return r;
}

std::vector<XServer> x_servers_on(std::uint32_t first, std::uint32_t last) {
  std::vector<XServer> out;
  DIR* proc = ::opendir("/proc");
  if (!proc) return out;
  while (const dirent* e = ::readdir(proc)) {
    char* end = nullptr;
    const long pid = std::strtol(e->d_name, &end, 10);
    if (pid <= 0 || *end) continue;
    const std::string base = "/proc/" + std::string(e->d_name);
    if (integration::read_file(base + "/comm").rfind("Xvfb", 0) != 0) continue;
    if (!integration::process_running(static_cast<pid_t>(pid))) continue;
    struct stat st {};
    if (::stat(base.c_str(), &st) != 0) continue;
    const auto argv = split_nul(integration::read_file(base + "/cmdline"));
    for (std::size_t i = 1; i < argv.size(); ++i) {
      const std::string& a = argv[i];
      if (a.size() < 2 || a[0] != ':' || a.find_first_not_of("0123456789", 1) != std::string::npos) continue;
      const auto display = static_cast<std::uint32_t>(std::stoul(a.substr(1)));
      if (display >= first && display <= last) out.push_back({static_cast<pid_t>(pid), st.st_uid, display});
      break;
    }
  }
  ::closedir(proc);
  return out;
}

std::optional<XServer> x_server_on(std::uint32_t display) {
  const auto servers = x_servers_on(display, display);
  if (servers.empty()) return std::nullopt;
  return servers.front();
}

BrokerProcess& DurableTest::start_broker(std::vector<std::string> options) {
  broker_ = std::make_unique<BrokerProcess>(std::move(options));
  broker_->start();
  return *broker_;
}

BrokerProcess& DurableTest::start_broker_on_small_tmpfs(std::vector<std::string> options, std::size_t size) {
  broker_ = std::make_unique<BrokerProcess>(std::move(options));
  const std::string dir = broker_->runtime_dir();
  integration::make_directory(dir, 0755);
  const std::string data = "size=" + std::to_string(size) + ",mode=0755";
  if (::mount("tmpfs", dir.c_str(), "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, data.c_str()) != 0)
    throw std::runtime_error("cannot mount a tmpfs at " + dir + ": " + std::strerror(errno));
  tmpfs_ = dir;
  broker_->start();
  return *broker_;
}

void DurableTest::fill_runtime_dir() {
  ASSERT_FALSE(tmpfs_.empty()) << "fill_runtime_dir needs start_broker_on_small_tmpfs";
  // The tiny records used below are login counts of xpb-bob: his directory
  // is made now, while there is room for it.
  v1::Request login;
  login.mutable_open_login()->set_uid(integration::uid_of(kBob));
  ASSERT_EQ(broker_->call(login).status(), v1::OK);
  const std::string path = tmpfs_ + "/filler";
  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
  ASSERT_GE(fd, 0) << path << ": " << std::strerror(errno);
  const std::string block(4096, '\0');
  int err = 0;
  for (;;) {
    const ssize_t n = ::write(fd, block.data(), block.size());
    if (n < 0 && errno == EINTR) continue;
    if (n < static_cast<ssize_t>(block.size())) {
      err = n < 0 ? errno : ENOSPC;
      if (n > 0) continue;  // the last partial page: try once more
      break;
    }
  }
  ::close(fd);
  ASSERT_EQ(err, ENOSPC) << "filling " << path << ": " << std::strerror(err);
  // The disk is full, but the journal's last page may still have room for
  // a few records (a tmpfs allocates whole pages). Fill it with the
  // smallest record there is, until the broker says it cannot record one:
  // then no record of any kind fits.
  for (int i = 0; i < 4096; ++i) {
    const auto r = broker_->call(login);
    if (r.status() == v1::INTERNAL) return;
    ASSERT_EQ(r.status(), v1::OK) << r.message();
  }
  ADD_FAILURE() << "the journal never filled up";
}

void DurableTest::free_runtime_dir() {
  ASSERT_FALSE(tmpfs_.empty());
  const std::string path = tmpfs_ + "/filler";
  ASSERT_TRUE(::unlink(path.c_str()) == 0 || errno == ENOENT) << path << ": " << std::strerror(errno);
}

void DurableTest::kill_broker() {
  ASSERT_TRUE(broker_ && broker_->alive()) << "the broker is not running";
  ASSERT_EQ(::kill(broker_->pid(), SIGKILL), 0);
  // alive() reaps it once it has died.
  ASSERT_TRUE(integration::wait_until([&] { return !broker_->alive(); }, 20s)) << "kill -9 did not end the broker";
}

void DurableTest::restart_broker() {
  earlier_logs_ += broker_->log() + "---- (broker restarted) ----\n";
  broker_->start();
}

std::vector<v1::Lease> DurableTest::list_all() {
  const auto r = broker_->call(list_all_request());
  EXPECT_EQ(r.status(), v1::OK) << r.message();
  return {r.list().leases().begin(), r.list().leases().end()};
}

std::optional<v1::Lease> DurableTest::find_lease(const std::string& id) {
  for (auto& l : list_all())
    if (l.id() == id) return l;
  return std::nullopt;
}

nlohmann::json DurableTest::list_all_json() {
  const auto r = broker_->client_as("root", {"list", "--all", "--json"});
  EXPECT_EQ(r.exit_code, 0) << r.describe();
  try {
    return nlohmann::json::parse(r.out);
  } catch (const std::exception& e) {
    ADD_FAILURE() << "not JSON: " << e.what() << "\n" << r.describe();
    return nlohmann::json::array();
  }
}

std::string DurableTest::private_x11_dir() {
  if (!x11_dir_) {
    x11_dir_ = std::make_unique<integration::TempDir>("xpb-durable-x11", 0755);
    integration::make_directory(x11_dir_->path() + "/.X11-unix", 01777);
  }
  return x11_dir_->path();
}

void DurableTest::TearDown() {
  for (pid_t pid : orphans_)
    if (integration::process_running(pid)) ::kill(pid, SIGKILL);
  if (!tmpfs_.empty()) {
    // The broker first (its log is kept), then the mount, before the
    // harness removes the directory it was mounted on.
    if (broker_) broker_->stop();
    ::umount2(tmpfs_.c_str(), MNT_DETACH);
  }
  if (!broker_ || !HasFailure()) return;
  std::string log = earlier_logs_ + broker_->log();
  if (!log_filter_.empty()) {
    std::istringstream lines(log);
    log.clear();
    for (std::string line; std::getline(lines, line);) {
      bool keep = line.find(" warn: ") != std::string::npos || line.find(" error: ") != std::string::npos ||
                  line.find(" critical: ") != std::string::npos || line.find("(broker restarted)") != std::string::npos;
      for (const auto& f : log_filter_) keep = keep || line.find(f) != std::string::npos;
      if (keep) log += line + "\n";
    }
  }
  std::cout << "---- xpra-brokerd log (" << broker_->log_path() << ", every start"
            << (log_filter_.empty() ? "" : ", only the lines about the failure") << ") ----\n"
            << log << "---- end of log ----\n";
}

}  // namespace xpra_broker::durable
