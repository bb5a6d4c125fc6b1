#include "host/display_name_watch.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <charconv>
#include <cstring>
#include <vector>
#include <spdlog/spdlog.h>

#include "host/xpra_session_dirs.h"

namespace xpra_broker {

namespace {

// Names appear and vanish (create, bind, link, rename, unlink); the
// directory itself may be removed or renamed away.
constexpr std::uint32_t kDirEvents =
    IN_CREATE | IN_DELETE | IN_MOVED_FROM | IN_MOVED_TO | IN_DELETE_SELF | IN_MOVE_SELF | IN_ONLYDIR;
constexpr const char* kX11Dir = ".X11-unix";
// Events that are about the watched directory or the queue, whatever name
// they carry.
constexpr std::uint32_t kNotAboutAName =
    IN_Q_OVERFLOW | IN_DELETE_SELF | IN_MOVE_SELF | IN_IGNORED | IN_UNMOUNT | IN_ATTRIB;

}  // namespace

std::optional<std::uint32_t> DisplayNameWatch::display_in_name(const char* name, const std::string& prefix,
                                                                const std::string& suffix) {
  const std::size_t len = std::strlen(name);
  if (len <= prefix.size() + suffix.size() || std::memcmp(name, prefix.data(), prefix.size()) != 0 ||
      std::memcmp(name + len - suffix.size(), suffix.data(), suffix.size()) != 0)
    return std::nullopt;
  const char* first = name + prefix.size();
  const char* last = name + len - suffix.size();
  if (*first < '0' || *first > '9' || (*first == '0' && last - first > 1)) return std::nullopt;
  std::uint32_t display = 0;
  auto [end, ec] = std::from_chars(first, last, display);
  if (ec != std::errc{} || end != last) return std::nullopt;
  return display;
}

DisplayNameWatch::DisplayNameWatch(int tmp_dir_fd, int shared_dir_fd, std::string hostname)
    : inotify_(::inotify_init1(IN_NONBLOCK | IN_CLOEXEC)), hostname_prefix_(std::move(hostname) + "-") {
  if (!inotify_) {
    spdlog::warn("inotify unavailable ({}): every display probe looks at the filesystem", std::strerror(errno));
    return;
  }
  if (tmp_dir_fd >= 0) tmp_wd_ = watch_dir(tmp_dir_fd, ".", Kind::tmp, {});
  if (shared_dir_fd >= 0) shared_wd_ = watch_dir(shared_dir_fd, ".", Kind::shared, {});
  if (tmp_wd_ >= 0) reopen_x11_dir();
}

int DisplayNameWatch::watch_dir(int parent_fd, const char* name, Kind kind, const std::string& user_dir) {
  UniqueFd dir_fd(::openat(parent_fd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
  struct stat st {};
  if (!dir_fd || ::fstat(dir_fd.get(), &st) != 0) return -1;
  // Through the fd: the inode opened above, whatever the path names now.
  const std::string by_fd = "/proc/self/fd/" + std::to_string(dir_fd.get());
  // A user's dir also reports changes of its own mode and owner.
  const int wd = ::inotify_add_watch(inotify_.get(), by_fd.c_str(), kDirEvents | (kind == Kind::user ? IN_ATTRIB : 0));
  if (wd < 0) {
    if (errno == ENOSPC)
      spdlog::warn("inotify watch limit reached (fs.inotify.max_user_watches); probes look at the filesystem");
    return -1;
  }
  Dir& dir = dirs_[wd];
  dir.kind = kind;
  dir.xpra_names = kind == Kind::xpra;
  dir.parent_fd = parent_fd;
  dir.name = name;
  dir.dev = st.st_dev;
  dir.ino = st.st_ino;
  dir.user_dir = user_dir;
  // Watch first, then scan: a name created in between is in both, and the
  // queued events replayed after the scan leave each name as its last event
  // says. The fd is not kept: an open directory would hold back the
  // IN_DELETE_SELF of its removal.
  scan(dir, std::move(dir_fd));
  return wd;
}

void DisplayNameWatch::scan(Dir& dir, UniqueFd dir_fd) {
  dir.present.clear();
  dir.xpra_present.clear();
  dir.session_present.clear();
  dir.xpra_dir_present = false;
  DIR* stream = ::fdopendir(dir_fd.get());
  if (!stream) return;
  dir_fd.release();
  while (const dirent* entry = ::readdir(stream)) {
    if (auto display = display_of(dir.kind, entry->d_name)) dir.present.insert(*display);
    if (dir.xpra_names)
      if (auto display = display_in_name(entry->d_name, hostname_prefix_, {})) dir.xpra_present.insert(*display);
    if (dir.kind == Kind::tmp) {
      if (auto display = display_in_name(entry->d_name, {}, {})) dir.session_present.insert(*display);
      if (std::strcmp(entry->d_name, kXpraDirName) == 0) dir.xpra_dir_present = true;
    }
  }
  ::closedir(stream);
}

bool DisplayNameWatch::rescan(Dir& dir) {
  UniqueFd dir_fd(::openat(dir.parent_fd, dir.name.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
  struct stat st {};
  if (!dir_fd || ::fstat(dir_fd.get(), &st) != 0 || st.st_dev != dir.dev || st.st_ino != dir.ino)
    return false;  // gone or replaced: not the directory the watch is on
  scan(dir, std::move(dir_fd));
  return true;
}

std::optional<std::uint32_t> DisplayNameWatch::display_of(Kind kind, const char* name) const {
  static const std::string lock_prefix = ".X", lock_suffix = "-lock", x11_prefix = "X", none;
  switch (kind) {
    case Kind::tmp: return display_in_name(name, lock_prefix, lock_suffix);
    case Kind::x11: return display_in_name(name, x11_prefix, none);
    case Kind::shared:
    case Kind::user: return display_in_name(name, hostname_prefix_, none);
    case Kind::xpra: return std::nullopt;  // its names are xpra_present's
  }
  return std::nullopt;
}

void DisplayNameWatch::forget(int wd) {
  auto it = dirs_.find(wd);
  if (it == dirs_.end()) return;
  ::inotify_rm_watch(inotify_.get(), wd);  // fails harmlessly if the kernel dropped it already
  if (it->second.kind == Kind::user) user_wds_.erase(it->second.user_dir);  // watched again when next asked about
  for (auto& xpra : xpra_watches_)
    if (xpra.wd == wd) xpra = {-1, true};  // opened and watched again by the probe
  dirs_.erase(it);
  if (wd == x11_wd_) x11_wd_ = -1;
}

void DisplayNameWatch::reopen_x11_dir() {
  if (x11_wd_ >= 0) forget(x11_wd_);
  x11_missing_ = false;
  const auto tmp = dirs_.find(tmp_wd_);
  if (tmp == dirs_.end()) return;
  x11_wd_ = watch_dir(tmp->second.parent_fd, kX11Dir, Kind::x11, {});
  if (x11_wd_ >= 0) return;
  // Absent is something the /tmp watch vouches for from now on (its creation
  // is an event); a symlink, a file or an unreadable directory is not.
  struct stat st {};
  x11_missing_ = ::fstatat(tmp->second.parent_fd, kX11Dir, &st, AT_SYMLINK_NOFOLLOW) != 0 && errno == ENOENT;
}

void DisplayNameWatch::disable() {
  for (auto& [wd, dir] : dirs_) ::inotify_rm_watch(inotify_.get(), wd);
  dirs_.clear();
  user_wds_.clear();
  xpra_watches_.clear();
  tmp_wd_ = shared_wd_ = x11_wd_ = -1;
  x11_missing_ = false;
  inotify_.reset();
}

void DisplayNameWatch::rescan_all() {
  ++rescans_;
  std::vector<int> lost;
  for (auto& [wd, dir] : dirs_)
    if (!rescan(dir)) lost.push_back(wd);
  for (int wd : lost) {
    const auto it = dirs_.find(wd);
    if (it == dirs_.end()) continue;
    if (it->second.kind == Kind::tmp || it->second.kind == Kind::shared) return disable();
    forget(wd);
  }
  // .X11-unix is rescanned above when it is watched; when it is not (or it
  // was replaced), it may have appeared during the overflow.
  if (tmp_wd_ >= 0 && x11_wd_ < 0) reopen_x11_dir();
}

void DisplayNameWatch::apply(int wd, std::uint32_t mask, const char* name) {
  if (mask & IN_Q_OVERFLOW) {
    spdlog::info("inotify queue overflowed; rescanning the display directories");
    return rescan_all();
  }
  auto it = dirs_.find(wd);
  if (it == dirs_.end()) return;  // a watch we already forgot
  Dir& dir = it->second;
  if (mask & (IN_DELETE_SELF | IN_MOVE_SELF | IN_IGNORED | IN_UNMOUNT)) {
    if (dir.kind == Kind::tmp || dir.kind == Kind::shared) {
      spdlog::warn("a watched display directory was removed or moved; probes look at the filesystem from now on");
      return disable();
    }
    if (dir.kind == Kind::x11) return reopen_x11_dir();
    return forget(wd);
  }
  if (mask & IN_ATTRIB) {
    if (*name == '\0') dir.intact = false;  // the directory itself, not a name in it
    return;
  }
  if (dir.kind == Kind::tmp && std::strcmp(name, kX11Dir) == 0) return reopen_x11_dir();
  auto note = [mask](std::set<std::uint32_t>& present, std::optional<std::uint32_t> display) {
    if (!display) return false;
    if (mask & (IN_CREATE | IN_MOVED_TO)) present.insert(*display);
    if (mask & (IN_DELETE | IN_MOVED_FROM)) present.erase(*display);
    return true;
  };
  const bool own_kind = note(dir.present, display_of(dir.kind, name));
  const bool xpra = dir.xpra_names && note(dir.xpra_present, display_in_name(name, hostname_prefix_, {}));
  bool session = false;
  if (dir.kind == Kind::tmp) {
    session = note(dir.session_present, display_in_name(name, {}, {}));
    if (std::strcmp(name, kXpraDirName) == 0) {
      if (mask & (IN_CREATE | IN_MOVED_TO)) dir.xpra_dir_present = true;
      if (mask & (IN_DELETE | IN_MOVED_FROM)) dir.xpra_dir_present = false;
      session = true;
    }
  }
  if (own_kind || xpra || session) ++activity_.display_name_events;
}

bool DisplayNameWatch::could_be_display_name(const char* name) const {
  return name[0] == '.' || name[0] == 'X' || (name[0] >= '1' && name[0] <= '9') || name[0] == kXpraDirName[0] ||
         (!hostname_prefix_.empty() && name[0] == hostname_prefix_[0]);
}

void DisplayNameWatch::drain() {
  if (!inotify_) return;
  alignas(inotify_event) char buf[16384];
  for (;;) {
    const ssize_t got = ::read(inotify_.get(), buf, sizeof(buf));
    if (got <= 0) {
      if (got < 0 && errno == EINTR) continue;
      return;  // EAGAIN: the queue is empty
    }
    for (ssize_t at = 0; at < got && inotify_;) {
      const auto* event = reinterpret_cast<const inotify_event*>(buf + at);
      at += static_cast<ssize_t>(sizeof(inotify_event) + event->len);
      ++activity_.events;
      // Any user's churn in /tmp arrives here (issue 21): a name that
      // cannot be one of ours (".X<N>-lock", ".X11-unix", "X<N>",
      // "<hostname>-<N>") is dropped on its first byte, before any lookup.
      if (event->len && !(event->mask & kNotAboutAName) && !could_be_display_name(event->name)) continue;
      apply(event->wd, event->mask, event->len ? event->name : "");
    }
    if (!inotify_) return;  // disabled while applying
  }
}

bool DisplayNameWatch::session_dirs_absent(std::uint32_t display) const {
  const auto tmp = dirs_.find(tmp_wd_);
  return tmp != dirs_.end() && !tmp->second.xpra_dir_present && !tmp->second.session_present.count(display);
}

bool DisplayNameWatch::lock_absent(std::uint32_t display) const {
  const auto tmp = dirs_.find(tmp_wd_);
  return tmp != dirs_.end() && !tmp->second.present.count(display);
}

bool DisplayNameWatch::x11_socket_absent(std::uint32_t display) const {
  if (x11_missing_) return true;
  const auto x11 = dirs_.find(x11_wd_);
  return x11 != dirs_.end() && !x11->second.present.count(display);
}

bool DisplayNameWatch::shared_socket_absent(std::uint32_t display) const {
  const auto shared = dirs_.find(shared_wd_);
  return shared != dirs_.end() && !shared->second.present.count(display);
}

bool DisplayNameWatch::user_socket_absent(const std::string& user_dir, std::uint32_t display) {
  if (!inotify_) return false;
  // Bounded: one watch per user directory the broker hands out; one that
  // cannot be watched (-1) is not tried again.
  if (auto [it, inserted] = user_wds_.try_emplace(user_dir, -1); inserted)
    it->second = watch_dir(AT_FDCWD, user_dir.c_str(), Kind::user, user_dir);
  const Dir* dir = watched_user_dir(user_dir);
  return dir && !dir->present.count(display);
}

void DisplayNameWatch::watch_xpra_dir(std::size_t index, int dir_fd) {
  if (!inotify_) return;
  if (xpra_watches_.size() <= index) xpra_watches_.resize(index + 1);
  XpraWatch& watch = xpra_watches_[index];
  if (watch.wd >= 0) {
    const auto old = dirs_.find(watch.wd);
    if (old != dirs_.end() && old->second.kind == Kind::xpra) forget(watch.wd);
  }
  watch = {};
  struct stat st {};
  if (dir_fd < 0 || ::fstat(dir_fd, &st) != 0) return;
  // inotify keeps one watch per inode: a directory already watched (the
  // Xpra config may name /tmp or the runtime dir) gets the Xpra names
  // tracked on its existing watch rather than a second one.
  for (auto& [wd, dir] : dirs_)
    if (dir.dev == st.st_dev && dir.ino == st.st_ino) {
      if (!dir.xpra_names) {
        dir.xpra_names = true;
        if (!rescan(dir)) return;
      }
      watch.wd = wd;
      return;
    }
  watch.wd = watch_dir(dir_fd, ".", Kind::xpra, {});
}

bool DisplayNameWatch::xpra_socket_absent(std::size_t index, std::uint32_t display) const {
  if (index >= xpra_watches_.size()) return false;
  const auto dir = dirs_.find(xpra_watches_[index].wd);
  return dir != dirs_.end() && dir->second.xpra_names && !dir->second.xpra_present.count(display);
}

bool DisplayNameWatch::take_xpra_dir_lost(std::size_t index) {
  if (index >= xpra_watches_.size() || !xpra_watches_[index].lost) return false;
  xpra_watches_[index].lost = false;
  return true;
}

DisplayNameWatch::Dir* DisplayNameWatch::watched_user_dir(const std::string& user_dir) {
  const auto wd = user_wds_.find(user_dir);
  if (wd == user_wds_.end()) return nullptr;
  const auto dir = dirs_.find(wd->second);
  return dir == dirs_.end() ? nullptr : &dir->second;
}

bool DisplayNameWatch::user_dir_intact(const std::string& user_dir) {
  const Dir* dir = watched_user_dir(user_dir);
  return dir && dir->intact;
}

void DisplayNameWatch::user_dir_verified(const std::string& user_dir) {
  if (Dir* dir = watched_user_dir(user_dir)) dir->intact = true;
}

}  // namespace xpra_broker
