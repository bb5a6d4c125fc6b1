#include "host/process_inspector.h"

#include <dirent.h>
#include <fcntl.h>
#include <poll.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>

namespace xpra_broker {

namespace {

std::string read_small_file(const std::string& path) {
  std::string out;
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return out;
  char buf[4096];
  for (ssize_t n; (n = ::read(fd, buf, sizeof(buf))) > 0;) out.append(buf, static_cast<std::size_t>(n));
  ::close(fd);
  return out;
}

}  // namespace

bool read_process(pid_t pid, ProcessInfo& out) {
  const std::string base = "/proc/" + std::to_string(pid);
  const std::string stat = read_small_file(base + "/stat");
  if (stat.empty()) return false;
  // comm is in parentheses and may itself contain ')' or spaces: parse from
  // the last ')'.
  const auto open = stat.find('(');
  const auto close = stat.rfind(')');
  if (open == std::string::npos || close == std::string::npos || close < open) return false;
  out.pid = pid;
  out.comm = stat.substr(open + 1, close - open - 1);
  int ppid = 0, pgid = 0, sid = 0;
  char state = '?';
  unsigned long long start_time = 0;
  // Fields after comm: 3 state, 4 ppid, 5 pgrp, 6 session, ..., 22 starttime.
  if (std::sscanf(stat.c_str() + close + 1,
                  " %c %d %d %d %*d %*d %*u %*u %*u %*u %*u %*u %*u %*d %*d %*d %*d %*d %*d %llu", &state, &ppid,
                  &pgid, &sid, &start_time) != 5)
    return false;
  out.start_time = start_time;
  out.state = state;
  out.ppid = ppid;
  out.pgid = pgid;
  out.sid = sid;
  const std::string status = read_small_file(base + "/status");
  const auto uid_line = status.find("\nUid:");
  if (uid_line == std::string::npos) return false;
  unsigned real_uid = 0, effective_uid = 0, saved_uid = 0;
  if (std::sscanf(status.c_str() + uid_line + 5, "%u %u %u", &real_uid, &effective_uid, &saved_uid) != 3)
    return false;
  out.uid = real_uid;
  out.euid = effective_uid;
  out.suid = saved_uid;
  return true;
}

std::vector<ProcessInfo> list_processes(std::optional<uid_t> only_uid) {
  std::vector<ProcessInfo> out;
  DIR* dir = ::opendir("/proc");
  if (!dir) return out;
  while (const dirent* e = ::readdir(dir)) {
    char* end = nullptr;
    const long pid = std::strtol(e->d_name, &end, 10);
    if (*end != '\0' || pid <= 0) continue;
    if (only_uid) {
      struct stat st {};
      if (::fstatat(::dirfd(dir), e->d_name, &st, 0) != 0 || st.st_uid != *only_uid) continue;
    }
    ProcessInfo info;
    if (read_process(static_cast<pid_t>(pid), info)) out.push_back(std::move(info));
  }
  ::closedir(dir);
  return out;
}

namespace {

// /proc/<pid>/cmdline (first 64 KiB): the arguments, each ended by a NUL.
std::vector<std::string> read_arguments(pid_t pid) {
  std::vector<std::string> out;
  const UniqueFd fd(::open(("/proc/" + std::to_string(pid) + "/cmdline").c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd) return out;
  std::string args;
  char buf[4096];
  for (ssize_t n; args.size() < 65536 && (n = ::read(fd.get(), buf, sizeof(buf))) > 0;)
    args.append(buf, static_cast<std::size_t>(n));
  for (std::size_t pos = 0; pos < args.size();) {
    const std::size_t end = std::min(args.find('\0', pos), args.size());
    out.push_back(args.substr(pos, end - pos));
    pos = end + 1;
  }
  return out;
}

}  // namespace

bool process_has_argument(pid_t pid, const std::string& argument) {
  for (const auto& a : read_arguments(pid))
    if (a == argument) return true;
  return false;
}

std::optional<std::uint32_t> display_of_arguments(const std::vector<std::string>& arguments) {
  std::optional<std::uint32_t> display;
  // argv[0] is the program, never the display.
  for (std::size_t i = 1; i < arguments.size(); ++i) {
    const std::string& a = arguments[i];
    if (a.size() < 2 || a.size() > 11 || a[0] != ':') continue;
    std::uint64_t n = 0;
    bool digits = true;
    for (std::size_t k = 1; k < a.size() && digits; ++k) {
      digits = a[k] >= '0' && a[k] <= '9';
      n = n * 10 + static_cast<std::uint64_t>(a[k] - '0');
    }
    if (digits && n <= UINT32_MAX) display = static_cast<std::uint32_t>(n);  // the last one wins, as in X
  }
  return display;
}

bool process_serves_display(pid_t pid, std::uint32_t display) {
  return display_of_arguments(read_arguments(pid)) == display;
}

std::vector<ProcessInfo> list_x_servers() {
  std::vector<ProcessInfo> out;
  DIR* dir = ::opendir("/proc");
  if (!dir) return out;
  while (const dirent* e = ::readdir(dir)) {
    char* end = nullptr;
    const long pid = std::strtol(e->d_name, &end, 10);
    if (*end != '\0' || pid <= 0) continue;
    std::string comm = read_small_file(std::string("/proc/") + e->d_name + "/comm");
    while (!comm.empty() && comm.back() == '\n') comm.pop_back();
    if (!is_x_server_command(comm)) continue;
    ProcessInfo info;
    if (read_process(static_cast<pid_t>(pid), info)) out.push_back(std::move(info));
  }
  ::closedir(dir);
  return out;
}

UniqueFd open_verified_pidfd(pid_t pid, ProcessInfo& info) {
  if (pid <= 0) return {};
  UniqueFd fd(static_cast<int>(::syscall(SYS_pidfd_open, pid, 0)));
  if (!fd) return {};
  // Read /proc after the pidfd exists: if the pid had been reused before
  // pidfd_open, the pidfd names the new process and so does /proc.
  if (!read_process(pid, info) || info.state == 'Z') return {};
  if (!pidfd_alive(fd.get())) return {};
  return fd;
}

bool pidfd_alive(int pidfd) {
  pollfd p{pidfd, POLLIN, 0};
  // A pidfd becomes readable when its process exits.
  return ::poll(&p, 1, 0) == 0;
}

bool process_still_owned_by(pid_t pid, int pidfd, uid_t uid) {
  ProcessInfo now;
  if (!read_process(pid, now)) return false;
  // Read before the liveness check: if the pid had been reused meanwhile,
  // the pidfd's process is gone and the answer is no.
  return pidfd_alive(pidfd) && now.uid == uid && now.euid == uid && now.suid == uid;
}

bool is_x_server_command(const std::string& comm) {
  static const char* names[] = {"Xvfb", "Xorg", "Xvnc", "Xdummy", "Xephyr", "Xwayland", "Xvfb-for-Xpra", "X"};
  for (const char* n : names)
    if (comm == n) return true;
  return comm.rfind("Xvfb", 0) == 0 || comm.rfind("Xorg", 0) == 0;
}

}  // namespace xpra_broker
