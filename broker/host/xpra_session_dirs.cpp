#include "host/xpra_session_dirs.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <ctime>

#include "host/host_display.h"
#include "host/privileged_ops.h"
#include "host/process_inspector.h"
#include "unique_fd.h"

namespace xpra_broker {

namespace {

// Xpra's own subdirectories nest little (pulse/, ssh/agent, tmp/...); a
// deeper tree is no leftover of Xpra's.
constexpr int kMaxDepth = 6;

std::string errno_text() { return std::strerror(errno); }

// The entries of an open directory, each with its lstat(); false if it
// cannot be read.
struct Child {
  std::string name;
  struct stat st {};
};
bool list_children(int dir_fd, std::vector<Child>& out) {
  const int copy = ::fcntl(dir_fd, F_DUPFD_CLOEXEC, 0);
  if (copy < 0) return false;
  DIR* dir = ::fdopendir(copy);
  if (!dir) {
    ::close(copy);
    return false;
  }
  ::rewinddir(dir);
  bool ok = true;
  while (const dirent* e = ::readdir(dir)) {
    const std::string name = e->d_name;
    if (name == "." || name == "..") continue;
    Child c{name, {}};
    if (::fstatat(dir_fd, name.c_str(), &c.st, AT_SYMLINK_NOFOLLOW) != 0) {
      if (errno == ENOENT) continue;
      ok = false;
      break;
    }
    out.push_back(std::move(c));
  }
  ::closedir(dir);
  return ok;
}

// The directory behind the O_PATH fd `path_fd`, made the broker's and
// opened for reading: its owner's mode may let nobody else list it. The fd
// names the inode, so nothing swapped in under its name is touched.
UniqueFd take_over(int path_fd, std::string& why) {
  if (privileged_fchown(path_fd, ::geteuid(), static_cast<gid_t>(-1)) != 0) {
    why = "cannot take it over to empty it (" + errno_text() + "; the broker needs CAP_CHOWN)";
    return {};
  }
  if (privileged_fchmod(path_fd, 0700) != 0) {
    why = "cannot open it up to empty it (" + errno_text() + ")";
    return {};
  }
  const std::string by_fd = "/proc/self/fd/" + std::to_string(path_fd);
  UniqueFd readable(::open(by_fd.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!readable) why = "cannot read it (" + errno_text() + ")";
  return readable;
}

// Empties and removes the directory `name` of `parent` (inode `expected`),
// everything in it included; no link is followed (unlinkat removes a link
// itself). Only directories of the session dir's `owner` (or the broker's,
// after an earlier try) are taken over: a directory of someone else's that
// the owner moved in (from a world-writable dir on the same filesystem)
// would otherwise be emptied for them.
bool remove_tree(int parent, const std::string& name, const struct stat& expected, uid_t owner, int depth,
                 std::string& why) {
  UniqueFd path_fd(::openat(parent, name.c_str(), O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
  struct stat st {};
  if (!path_fd || ::fstat(path_fd.get(), &st) != 0 || st.st_dev != expected.st_dev || st.st_ino != expected.st_ino) {
    why = name + " changed while it was being removed";
    return false;
  }
  if (st.st_uid != owner && st.st_uid != ::geteuid()) {
    why = name + " belongs to uid " + std::to_string(st.st_uid) + ", not to the session dir's owner";
    return false;
  }
  UniqueFd dir = take_over(path_fd.get(), why);
  if (!dir) return false;
  std::vector<Child> children;
  if (!list_children(dir.get(), children)) {
    why = "cannot list " + name + " (" + errno_text() + ")";
    return false;
  }
  for (const auto& c : children) {
    if (S_ISDIR(c.st.st_mode)) {
      if (depth >= kMaxDepth) {
        why = name + " nests deeper than Xpra's session dirs do";
        return false;
      }
      if (!remove_tree(dir.get(), c.name, c.st, owner, depth + 1, why)) return false;
    } else if (::unlinkat(dir.get(), c.name.c_str(), 0) != 0 && errno != ENOENT) {
      why = "cannot remove " + name + "/" + c.name + " (" + errno_text() + ")";
      return false;
    }
  }
  if (::unlinkat(parent, name.c_str(), AT_REMOVEDIR) != 0) {
    why = "cannot remove " + name + " (" + errno_text() + ")";
    return false;
  }
  return true;
}

void probe_one(int dir_fd, const std::string& dir_path, const std::string& name, bool under_xpra_dir,
               std::vector<XpraSessionDirFacts>& out) {
  struct stat st {};
  if (::fstatat(dir_fd, name.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) return;
  XpraSessionDirFacts f;
  f.path = dir_path + "/" + name;
  f.under_xpra_dir = under_xpra_dir;
  f.directory = S_ISDIR(st.st_mode);
  f.owner = st.st_uid;
  f.device = st.st_dev;
  f.inode = st.st_ino;
  f.age_seconds = static_cast<std::int64_t>(std::time(nullptr) - st.st_mtime);
  out.push_back(std::move(f));
}

}  // namespace

XpraSessionDirState judge_xpra_session_dir(const XpraSessionDirFacts& f) {
  if (!f.directory) return XpraSessionDirState::planted;
  return f.owner_serves_display ? XpraSessionDirState::live : XpraSessionDirState::stale;
}

bool is_xpra_session_entry(std::string_view name, bool directory) {
  // Xpra 6.5.3, xpra/scripts/session.py, clean_session_dir(): the files and
  // dirs it removes itself (5.0.8 writes a subset of them).
  static constexpr std::string_view kFiles[] = {"cmdline",   "config",     "dbus.env",       "dbus.pid",
                                                "server.env", "server.pid", "server.log",     "socket",
                                                "xauthority", "Xorg.log",   "xvfb.pid",       "pulseaudio.pid",
                                                "ibus-daemon.pid", "background.png", "background.jpg"};
  static constexpr std::string_view kDirs[] = {"pulse", "ssh", "tmp"};
  if (directory) return std::find(std::begin(kDirs), std::end(kDirs), name) != std::end(kDirs);
  return std::find(std::begin(kFiles), std::end(kFiles), name) != std::end(kFiles);
}

bool user_runs_xpra_for(uid_t uid, std::uint32_t display) {
  for (const auto& p : list_processes(uid)) {
    // Xpra runs as a script: comm is "xpra" (from the script's name), or the
    // interpreter's when started as "python3 .../xpra".
    const bool xpra_like = p.comm == "xpra" || p.comm.rfind("python", 0) == 0;
    if (p.uid == uid && xpra_like && process_serves_display(p.pid, display)) return true;
  }
  return false;
}

std::vector<XpraSessionDirFacts> probe_xpra_session_dirs(int tmp_fd, const std::string& tmp_path,
                                                         std::uint32_t display) {
  std::vector<XpraSessionDirFacts> out;
  const std::string name = std::to_string(display);
  probe_one(tmp_fd, tmp_path, name, false, out);
  // "xpra" opened without following a link: a planted link to elsewhere is
  // not Xpra's dir to judge. Only a "<tmp>/xpra" others may write in is
  // shared: in a user's private one (as 5.x/6.x make it) only that user's
  // own sessions ever look, and another user's Xpra falls back to "<tmp>/N".
  struct stat xpra_st {};
  if (UniqueFd xpra_dir{::openat(tmp_fd, kXpraDirName, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)};
      xpra_dir && ::fstat(xpra_dir.get(), &xpra_st) == 0 && (xpra_st.st_mode & (S_IWGRP | S_IWOTH)) != 0)
    probe_one(xpra_dir.get(), tmp_path + "/" + kXpraDirName, name, true, out);
  // One process scan per owner, and only for what is there (rare).
  for (auto& f : out) {
    if (!f.directory) continue;
    f.owner_serves_display = user_runs_x_server_for(f.owner, display) || user_runs_xpra_for(f.owner, display);
  }
  return out;
}

std::optional<RemovedArtifact> remove_stale_xpra_session_dir(int tmp_fd, const XpraSessionDirFacts& f,
                                                             std::uint32_t display, std::string& why) {
  if (judge_xpra_session_dir(f) != XpraSessionDirState::stale) {
    why = "not stale";
    return std::nullopt;
  }
  UniqueFd xpra_dir;
  int parent = tmp_fd;
  if (f.under_xpra_dir) {
    // Inside "<tmp>/xpra" the dir's owner could rename entries between the
    // check and the removal, as in the shared socket dirs: same rule.
    xpra_dir = UniqueFd(::openat(tmp_fd, kXpraDirName, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
    struct stat st {};
    if (!xpra_dir || ::fstat(xpra_dir.get(), &st) != 0) {
      why = "its parent cannot be opened (" + errno_text() + ")";
      return std::nullopt;
    }
    if (auto refusal = shared_dir_refuses_removal(st.st_uid, st.st_mode, ::geteuid())) {
      why = "its parent is " + *refusal;
      return std::nullopt;
    }
    parent = xpra_dir.get();
  }
  const std::string name = std::to_string(display);
  UniqueFd path_fd(::openat(parent, name.c_str(), O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
  struct stat st {};
  if (!path_fd || ::fstat(path_fd.get(), &st) != 0 || st.st_dev != f.device || st.st_ino != f.inode ||
      st.st_uid != f.owner) {
    why = "it changed since it was judged";
    return std::nullopt;
  }
  UniqueFd dir = take_over(path_fd.get(), why);
  std::vector<Child> children;
  std::string unknown;
  if (dir && !list_children(dir.get(), children)) why = "cannot list it (" + errno_text() + ")";
  for (const auto& c : children)
    if (unknown.empty() && !is_xpra_session_entry(c.name, S_ISDIR(c.st.st_mode)))
      unknown = c.name + (S_ISDIR(c.st.st_mode) ? "/" : "");
  if (!dir || !unknown.empty() || !why.empty()) {
    if (!unknown.empty()) why = "it holds '" + unknown + "', which Xpra does not leave in a session dir";
    // Given back as it was: nothing of it is the broker's to decide.
    privileged_fchmod(path_fd.get(), st.st_mode & 07777);
    privileged_fchown(path_fd.get(), st.st_uid, st.st_gid);
    return std::nullopt;
  }
  for (const auto& c : children) {
    const bool ok = S_ISDIR(c.st.st_mode) ? remove_tree(dir.get(), c.name, c.st, f.owner, 1, why)
                                          : (::unlinkat(dir.get(), c.name.c_str(), 0) == 0 || errno == ENOENT);
    if (!ok) {
      if (why.empty()) why = "cannot remove " + c.name + " (" + errno_text() + ")";
      return std::nullopt;  // left the broker's: the next clean finds it stale again and goes on
    }
  }
  if (::unlinkat(parent, name.c_str(), AT_REMOVEDIR) != 0) {
    why = "cannot remove it (" + errno_text() + ")";
    return std::nullopt;
  }
  return RemovedArtifact{f.path, f.owner, static_cast<long>(f.age_seconds), "stale xpra session dir"};
}

}  // namespace xpra_broker
