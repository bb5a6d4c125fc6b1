#include "host/host_display.h"

#include <fcntl.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstddef>
#include <cstdio>
#include <cstring>
#include <charconv>
#include <ctime>

#include "host/process_inspector.h"
#include "unique_fd.h"

namespace xpra_broker {

DisplayNames::DisplayNames(std::uint32_t display, const std::string& x11_tmp_dir, const std::string& hostname) {
  const std::string n = std::to_string(display);
  lock = ".X" + n + "-lock";
  x11_dir = ".X11-unix";
  x11_socket = "X" + n;
  x11_abstract = x11_tmp_dir + "/.X11-unix/X" + n;
  xpra_abstract = "xpra/" + n;
  xpra_socket = hostname + "-" + n;
  display_argument = ":" + n;
}

namespace {

bool owned_by_process(const LockFacts& l) { return l.owner == l.pid_uid || l.owner == l.pid_euid; }

// A young lock may be one an X server is still putting in place.
bool settling(const LockFacts& l) { return l.age_seconds <= kLockSettleSeconds; }

}  // namespace

FileKind file_kind(mode_t mode) {
  if (S_ISSOCK(mode)) return FileKind::socket;
  if (S_ISREG(mode)) return FileKind::regular;
  return FileKind::other;
}

LockState judge_lock(const LockFacts& l) {
  if (l.kind == FileKind::absent) return LockState::absent;
  if (l.kind != FileKind::regular) return LockState::stale;  // a link or FIFO where X wants its lock
  if (l.pid <= 0) return settling(l) ? LockState::live : LockState::stale;
  if (!l.pid_alive) return LockState::stale;
  // Alive but /proc will not say whose (hidepid): it cannot be proved a
  // forgery, so it is not removed.
  if (!l.pid_known) return LockState::live;
  const bool links_ok = l.links == 1 || (l.links == 2 && settling(l));
  // An X server of the file's owner, and of this display: a process proves
  // at most the one number it serves, whatever it is called.
  if (l.pid_is_x_server && l.pid_serves_display && owned_by_process(l) && links_ok) return LockState::live;
  return LockState::stale;
}

std::string describe_lock(const LockFacts& l) {
  const std::string pid = std::to_string(l.pid);
  switch (judge_lock(l)) {
    case LockState::absent: return "no lock file";
    case LockState::live:
      if (l.pid <= 0) return "lock file being written";
      return l.pid_known ? "X server running (lock pid " + pid + ")"
                         : "lock pid " + pid + " is alive (its owner cannot be read from /proc)";
    case LockState::stale: break;
  }
  if (l.kind != FileKind::regular) return "lock path is not a regular file";
  if (l.pid <= 0) return "unreadable lock file";
  if (!l.pid_alive) return "stale lock file (pid " + pid + " is dead)";
  if (!l.pid_is_x_server) return "forged lock file (pid " + pid + " is not an X server)";
  if (!l.pid_serves_display) return "forged lock file (pid " + pid + " is an X server of another display)";
  if (!owned_by_process(l)) return "forged lock file (pid " + pid + " belongs to another user than the file)";
  return "forged lock file (" + std::to_string(l.links) + " links)";
}

bool lock_names_lease_x_server(const LockFacts& l, uid_t lease_uid) {
  return l.kind == FileKind::regular && l.links == 1 && l.owner == lease_uid && l.pid > 1 && l.pid_alive &&
         l.pid_known && l.pid_uid == lease_uid && l.pid_is_x_server && l.pid_serves_display;
}

bool socket_file_is_stale(const SocketFileFacts& s) {
  if (s.kind == FileKind::absent) return false;
  if (s.kind == FileKind::socket) return !s.listening;
  return true;
}

SharedXpraEntry judge_shared_xpra_entry(const SocketFileFacts& entry) {
  switch (entry.kind) {
    case FileKind::absent: return SharedXpraEntry::absent;
    case FileKind::socket: return entry.listening ? SharedXpraEntry::live : SharedXpraEntry::stale;
    default: return SharedXpraEntry::planted;
  }
}

std::optional<std::string> shared_dir_refuses_removal(uid_t owner, mode_t mode, uid_t broker_uid) {
  if (!S_ISDIR(mode)) return "not a directory";
  // Its owner may rename any entry, sticky or not.
  if (owner != 0 && owner != broker_uid)
    return "owned by uid " + std::to_string(owner) + ", who could swap entries under the broker";
  // Without the sticky bit, everyone who may write it may rename anyone's
  // entry, a live socket onto the name just judged stale included.
  if (!(mode & S_ISVTX) && (mode & (S_IWGRP | S_IWOTH))) {
    char octal[8];
    std::snprintf(octal, sizeof(octal), "%04o", static_cast<unsigned>(mode & 07777));
    return std::string("writable by others without the sticky bit (mode ") + octal + ")";
  }
  return std::nullopt;
}

UniqueFd open_dir_without_user_links(const std::string& path, std::string& why) {
  if (path.empty() || path[0] != '/') {
    why = "not an absolute path";
    errno = EINVAL;
    return {};
  }
  // Components still to walk, front first; a followed link puts its
  // target's components in front.
  std::vector<std::string> todo;
  auto push_front = [&todo](const std::string& p) {
    std::vector<std::string> parts;
    std::size_t at = 0;
    while (at <= p.size()) {
      const std::size_t slash = std::min(p.find('/', at), p.size());
      if (slash > at) parts.push_back(p.substr(at, slash - at));
      at = slash + 1;
    }
    todo.insert(todo.end(), parts.rbegin(), parts.rend());  // `todo` is a stack: back is next
  };
  push_front(path);
  UniqueFd dir(::open("/", O_PATH | O_DIRECTORY | O_CLOEXEC));
  std::string walked;  // for messages
  int links = 0;
  while (dir && !todo.empty()) {
    const std::string part = todo.back();
    todo.pop_back();
    if (part == ".") continue;
    UniqueFd next(::openat(dir.get(), part.c_str(), O_PATH | O_NOFOLLOW | O_CLOEXEC));
    struct stat st {}, parent {};
    if (!next || ::fstat(next.get(), &st) != 0) {
      const int error = errno;
      why = walked + "/" + part + ": " + std::strerror(error);
      errno = error;
      return {};
    }
    if (S_ISLNK(st.st_mode)) {
      // Believed only when no user could have planted or changed it.
      const bool roots = ::fstat(dir.get(), &parent) == 0 && st.st_uid == 0 && parent.st_uid == 0 &&
                         !(parent.st_mode & (S_IWGRP | S_IWOTH));
      char target[4096];
      const ssize_t len = roots ? ::readlinkat(next.get(), "", target, sizeof(target) - 1) : -1;
      if (!roots || len <= 0 || ++links > 16) {
        why = walked + "/" + part + (roots ? ": too many or unreadable symbolic links"
                                           : " is a symbolic link another user could have planted; not followed");
        errno = ELOOP;
        return {};
      }
      target[len] = '\0';
      if (target[0] == '/') {
        dir = UniqueFd(::open("/", O_PATH | O_DIRECTORY | O_CLOEXEC));
        walked.clear();
      }
      push_front(target);
      continue;
    }
    if (!S_ISDIR(st.st_mode)) {
      why = walked + "/" + part + " is not a directory";
      errno = ENOTDIR;
      return {};
    }
    walked += part == ".." ? "/.." : "/" + part;
    dir = std::move(next);
  }
  if (!dir) why = std::string("cannot open /: ") + std::strerror(errno);
  return dir;
}

pid_t parse_lock_pid(const char* text, std::size_t size) {
  const char* p = text;
  const char* end = text + size;
  while (p < end && *p == ' ') ++p;
  pid_t pid = 0;
  auto [ptr, ec] = std::from_chars(p, end, pid);
  if (ec != std::errc{} || pid <= 0) return 0;
  return pid;
}

bool pid_alive(pid_t pid) {
  if (pid <= 0) return false;
  if (::kill(pid, 0) == 0) return true;
  return errno == EPERM;  // exists, belongs to someone else
}

LockFacts read_lock_at(int dir_fd, const std::string& name, std::uint32_t display) {
  LockFacts l;
  UniqueFd fd(::openat(dir_fd, name.c_str(), O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC | O_NOCTTY));
  struct stat st {};
  if (!fd) {
    // A symlink (ELOOP), or a file we may not read: describe the entry itself.
    if (errno == ENOENT || ::fstatat(dir_fd, name.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) return l;
  } else if (::fstat(fd.get(), &st) != 0) {
    return l;
  }
  l.kind = file_kind(st.st_mode);
  l.owner = st.st_uid;
  l.links = st.st_nlink;
  l.device = st.st_dev;
  l.inode = st.st_ino;
  l.age_seconds = static_cast<std::int64_t>(std::time(nullptr) - st.st_mtime);
  if (!fd || l.kind != FileKind::regular) return l;
  char buf[32] = {};
  const ssize_t got = ::read(fd.get(), buf, sizeof(buf) - 1);
  if (got > 0) l.pid = parse_lock_pid(buf, static_cast<std::size_t>(got));
  if (l.pid <= 0) return l;
  l.pid_alive = pid_alive(l.pid);
  ProcessInfo info;
  if (!l.pid_alive || !read_process(l.pid, info) || info.state == 'Z') return l;
  l.pid_known = true;
  l.pid_uid = info.uid;
  l.pid_euid = info.euid;
  l.pid_is_x_server = is_x_server_command(info.comm);
  if (l.pid_is_x_server) l.pid_serves_display = process_serves_display(l.pid, display);
  return l;
}

bool user_runs_x_server_for(uid_t uid, std::uint32_t display) {
  for (const auto& p : list_processes(uid))
    if (p.uid == uid && is_x_server_command(p.comm) && process_serves_display(p.pid, display)) return true;
  return false;
}

// ---- sockets: is anybody listening? -------------------------------------------

namespace {


// Slow path (reads /proc/net/unix, O(sockets on the host)): is a listening
// socket bound to `path` (or, name_in_any_dir, to a file of its name)? Only
// used when connect() is not permitted.
bool listener_bound_to(const std::string& path, BoundPathMatch match) {
  const bool any_dir = match == BoundPathMatch::name_in_any_dir;
  const std::string wanted = any_dir ? path.substr(path.rfind('/') + 1) : path;
  UniqueFd fd(::open("/proc/net/unix", O_RDONLY | O_CLOEXEC));
  if (!fd) return true;  // cannot tell: assume live, the safe side
  std::string table;
  char buf[65536];
  for (ssize_t n; (n = ::read(fd.get(), buf, sizeof(buf))) > 0;) table.append(buf, static_cast<std::size_t>(n));
  // Columns: Num RefCount Protocol Flags Type St Inode Path; Flags 00010000
  // is __SO_ACCEPTCON, i.e. listen() was called.
  std::size_t pos = 0;
  while (pos < table.size()) {
    std::size_t end = table.find('\n', pos);
    if (end == std::string::npos) end = table.size();
    const std::string_view line(table.data() + pos, end - pos);
    pos = end + 1;
    if (line.size() <= wanted.size() || line.substr(line.size() - wanted.size()) != wanted) continue;
    const char before = line[line.size() - wanted.size() - 1];
    if ((before == ' ' || (any_dir && before == '/')) && line.find(" 00010000 ") != std::string_view::npos)
      return true;
  }
  return false;
}

}  // namespace

// connect() to the socket inode behind an O_PATH fd: the kernel resolves
// /proc/self/fd/N to that inode, so a symlink swapped in after lstat() is
// never followed.
bool socket_fd_has_listener(int path_fd, const std::string& path, BoundPathMatch match) {
  UniqueFd s(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
  if (!s) return false;
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::snprintf(addr.sun_path, sizeof(addr.sun_path), "/proc/self/fd/%d", path_fd);
  if (::connect(s.get(), reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0) return true;
  // EAGAIN: the listener's backlog is full, so there is a listener.
  if (errno == EAGAIN || errno == EINPROGRESS) return true;
  // EACCES: a socket we may not connect to (Xpra's are 0600); ask the kernel's
  // socket table instead.
  if (errno == EACCES) return listener_bound_to(path, match);
  return false;
}

// The common answer of every probe is "nothing there". fstatat() says so
// without allocating a struct file (a failing openat() allocates one before
// it looks the name up), so it goes first and the careful, fd-based look is
// kept for names that exist.
bool name_absent(int dir_fd, const char* name) {
  struct stat st {};
  return ::fstatat(dir_fd, name, &st, AT_SYMLINK_NOFOLLOW) != 0 && (errno == ENOENT || errno == ENOTDIR);
}

SocketFileFacts probe_socket_file_at(int dir_fd, const std::string& name, const std::string& path,
                                     BoundPathMatch match) {
  SocketFileFacts facts;
  if (name_absent(dir_fd, name.c_str())) return facts;
  // O_PATH|O_NOFOLLOW opens even a symlink itself, so failing means absent
  // (ENOENT) or a directory we cannot search; only the latter needs a stat.
  UniqueFd fd(::openat(dir_fd, name.c_str(), O_PATH | O_NOFOLLOW | O_CLOEXEC));
  struct stat st {};
  if (!fd) {
    if (errno != ENOENT && ::fstatat(dir_fd, name.c_str(), &st, AT_SYMLINK_NOFOLLOW) == 0) {
      facts.kind = file_kind(st.st_mode);
      facts.owner = st.st_uid;
    }
    return facts;
  }
  if (::fstat(fd.get(), &st) != 0) return facts;
  facts.kind = file_kind(st.st_mode);
  facts.owner = st.st_uid;
  if (facts.kind == FileKind::socket) facts.listening = socket_fd_has_listener(fd.get(), path, match);
  return facts;
}

SocketFileFacts probe_socket_file(const std::string& path) {
  return probe_socket_file_at(AT_FDCWD, path, path);
}

namespace {

socklen_t abstract_address(const std::string& name, sockaddr_un& addr) {
  addr = sockaddr_un{};
  addr.sun_family = AF_UNIX;
  const std::size_t len = std::min(name.size(), sizeof(addr.sun_path) - 1);
  std::memcpy(addr.sun_path + 1, name.data(), len);
  return static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + 1 + len);
}

}  // namespace

bool abstract_socket_in_use(const std::string& name) {
  // Binding the name ourselves is the one atomic, O(1) test: if the bind
  // works nobody holds it (and closing releases it at once).
  UniqueFd s(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!s) return false;
  sockaddr_un addr;
  const socklen_t addr_len = abstract_address(name, addr);
  if (::bind(s.get(), reinterpret_cast<sockaddr*>(&addr), addr_len) == 0) return false;
  return errno == EADDRINUSE;
}

bool AbstractListenerProbe::in_use(const std::string& name) {
  sockaddr_un addr;
  const socklen_t addr_len = abstract_address(name, addr);
  if (!socket_) socket_ = UniqueFd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
  if (!socket_) return abstract_socket_in_use(name);
  if (::connect(socket_.get(), reinterpret_cast<sockaddr*>(&addr), addr_len) == 0) {
    socket_.reset();  // connected to the listener: this socket is spent
    return true;
  }
  switch (errno) {
    case ECONNREFUSED: return false;  // no listener; the socket stays unconnected and reusable
    case EAGAIN:                      // a listener whose backlog is full
    case EINPROGRESS: socket_.reset(); return true;
    default: socket_.reset(); return abstract_socket_in_use(name);  // cannot tell: ask with bind
  }
}

}  // namespace xpra_broker
