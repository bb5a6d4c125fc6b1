#include "display_probe.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstddef>
#include <charconv>
#include <cstring>

#include "unique_fd.h"

namespace xpra_broker {

namespace {

FileKind kind_of(const struct stat& st) {
  if (S_ISSOCK(st.st_mode)) return FileKind::socket;
  if (S_ISREG(st.st_mode)) return FileKind::regular;
  return FileKind::other;
}

// Slow path (reads /proc/net/unix, O(sockets on the host)): is a listening
// socket bound to `path`? Only used when connect() is not permitted.
bool listener_bound_to(const std::string& path) {
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
    if (line.size() > path.size() && line.substr(line.size() - path.size()) == path &&
        line[line.size() - path.size() - 1] == ' ' && line.find(" 00010000 ") != std::string_view::npos)
      return true;
  }
  return false;
}

}  // namespace

// connect() to the socket inode behind an O_PATH fd: the kernel resolves
// /proc/self/fd/N to that inode, so a symlink swapped in after lstat() is
// never followed.
bool socket_fd_has_listener(int path_fd, const std::string& path) {
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
  if (errno == EACCES) return listener_bound_to(path);
  return false;
}

namespace {

// The common answer of every probe is "nothing there". fstatat() says so
// without allocating a struct file (a failing openat() allocates one before
// it looks the name up), so it goes first and the careful, fd-based look is
// kept for names that exist.
bool name_absent(int dir_fd, const char* name) {
  struct stat st {};
  return ::fstatat(dir_fd, name, &st, AT_SYMLINK_NOFOLLOW) != 0 && (errno == ENOENT || errno == ENOTDIR);
}

}  // namespace

SocketFileFacts probe_socket_file_at(int dir_fd, const std::string& name, const std::string& path) {
  SocketFileFacts facts;
  if (name_absent(dir_fd, name.c_str())) return facts;
  // O_PATH|O_NOFOLLOW opens even a symlink itself, so failing means absent
  // (ENOENT) or a directory we cannot search; only the latter needs a stat.
  UniqueFd fd(::openat(dir_fd, name.c_str(), O_PATH | O_NOFOLLOW | O_CLOEXEC));
  struct stat st {};
  if (!fd) {
    if (errno != ENOENT && ::fstatat(dir_fd, name.c_str(), &st, AT_SYMLINK_NOFOLLOW) == 0) {
      facts.kind = kind_of(st);
      facts.owner = st.st_uid;
    }
    return facts;
  }
  if (::fstat(fd.get(), &st) != 0) return facts;
  facts.kind = kind_of(st);
  facts.owner = st.st_uid;
  if (facts.kind == FileKind::socket) facts.listening = socket_fd_has_listener(fd.get(), path);
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

std::string local_hostname() {
  char buf[256] = {};
  if (::gethostname(buf, sizeof(buf) - 1) != 0) return "localhost";
  return buf;
}

DisplayProbe::DisplayProbe(std::string x11_tmp_dir, std::string xpra_shared_dir, std::string hostname)
    : x11_tmp_dir_(std::move(x11_tmp_dir)), xpra_shared_dir_(std::move(xpra_shared_dir)),
      hostname_(std::move(hostname)),
      // Opened once: every probe works relative to these, which saves a path
      // walk per file and never follows a link in the last component.
      tmp_dir_fd_(::open(x11_tmp_dir_.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC)),
      shared_dir_fd_(::open(xpra_shared_dir_.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC)),
      watch_(tmp_dir_fd_.get(), shared_dir_fd_.get(), hostname_) {}

void DisplayProbe::refresh() const {
  if (freshness_ == Freshness::drained) return;
  watch_.drain();
  if (freshness_ == Freshness::in_request) freshness_ = Freshness::drained;
}

bool DisplayProbe::user_dir_intact(const std::string& user_dir) const {
  refresh();
  return watch_.user_dir_intact(user_dir);
}

void DisplayProbe::user_dir_verified(const std::string& user_dir) const { watch_.user_dir_verified(user_dir); }

bool DisplayProbe::x_lock_absent(std::uint32_t display) const {
  refresh();
  if (watch_.lock_absent(display)) return true;
  const std::string lock_name = (tmp_dir_fd_ ? "" : x11_tmp_dir_ + "/") + DisplayNames(display, x11_tmp_dir_, "").lock;
  return name_absent(tmp_dir_fd_ ? tmp_dir_fd_.get() : AT_FDCWD, lock_name.c_str());
}

DisplayFacts DisplayProbe::probe(std::uint32_t display, const std::string& user_dir) const {
  DisplayFacts f;
  f.display = display;
  const DisplayNames names(display, x11_tmp_dir_, hostname_);
  const int tmp = tmp_dir_fd_ ? tmp_dir_fd_.get() : AT_FDCWD;
  const std::string tmp_prefix = tmp_dir_fd_ ? "" : x11_tmp_dir_ + "/";
  // The watch answers "absent" for the files it has seen no name of; the
  // filesystem is asked about the rest.
  refresh();

  if (!watch_.lock_absent(display)) f.lock = read_lock_at(tmp, tmp_prefix + names.lock, display);

  // .X11-unix is looked up per probe: it may be created (or recreated) by the
  // first X server after the broker started. The stat through it may follow
  // a planted .X11-unix symlink, but it only ever answers "absent"; anything
  // found is looked at again through the directory opened with O_NOFOLLOW.
  const std::string x11_in_tmp = tmp_prefix + names.x11_dir;
  if (!watch_.x11_socket_absent(display) && !name_absent(tmp, (x11_in_tmp + "/" + names.x11_socket).c_str())) {
    UniqueFd x11_dir(::openat(tmp, x11_in_tmp.c_str(), O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
    if (x11_dir) f.x11_socket = probe_socket_file_at(x11_dir.get(), names.x11_socket, names.x11_abstract);
  }
  f.x11_abstract_in_use = abstract_probe_.in_use(names.x11_abstract);
  f.xpra_abstract_in_use = abstract_probe_.in_use(names.xpra_abstract);
  const std::string shared_path = xpra_shared_dir_ + "/" + names.xpra_socket;
  if (!watch_.shared_socket_absent(display))
    f.xpra_shared_socket = shared_dir_fd_ ? probe_socket_file_at(shared_dir_fd_.get(), names.xpra_socket, shared_path)
                                          : probe_socket_file(shared_path);
  if (!user_dir.empty() && !watch_.user_socket_absent(user_dir, display))
    f.xpra_user_socket = probe_socket_file(user_dir + "/" + names.xpra_socket);
  return f;
}

}  // namespace xpra_broker
