#include "stale_artifact_cleaner.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <ctime>

#include "display_probe.h"
#include "privileged_ops.h"
#include "unique_fd.h"

namespace xpra_broker {

namespace {

bool same_inode(const struct stat& a, const struct stat& b) { return a.st_dev == b.st_dev && a.st_ino == b.st_ino; }

// Checks the entry `name` in `dir` with `is_stale` and removes exactly that
// inode if it is stale.
template <typename IsStale>
void remove_if_stale(int dir, const std::string& dir_path, const std::string& name, const char* what,
                     IsStale is_stale, std::vector<RemovedArtifact>& removed) {
  UniqueFd entry(::openat(dir, name.c_str(), O_PATH | O_NOFOLLOW | O_CLOEXEC));
  if (!entry) return;
  struct stat st {};
  if (::fstat(entry.get(), &st) != 0) return;
  const std::string path = dir_path + "/" + name;
  if (!is_stale(entry.get(), st, path)) return;
  struct stat now {};
  if (::fstatat(dir, name.c_str(), &now, AT_SYMLINK_NOFOLLOW) != 0 || !same_inode(st, now)) return;
  if (privileged_unlinkat(dir, name.c_str()) != 0) return;
  removed.push_back({path, st.st_uid, static_cast<long>(std::time(nullptr) - st.st_mtime), what});
}

bool lock_is_stale(int dir, const std::string& name, const struct stat& st) {
  if (!S_ISREG(st.st_mode)) return true;  // a symlink or FIFO where X wants its lock
  UniqueFd lock(::openat(dir, name.c_str(), O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC | O_NOCTTY));
  if (!lock) return false;  // cannot read it: cannot prove it stale
  struct stat opened {};
  if (::fstat(lock.get(), &opened) != 0 || !same_inode(st, opened)) return false;
  char buf[32] = {};
  const ssize_t got = ::read(lock.get(), buf, sizeof(buf) - 1);
  if (got < 0) return false;
  const pid_t pid = parse_lock_pid(buf, static_cast<std::size_t>(got));
  // An empty or garbled lock is stale only once it is old enough that an X
  // server cannot be in the middle of writing it.
  if (pid <= 0) return std::time(nullptr) - st.st_mtime > 10;
  return !pid_alive(pid);
}

auto socket_is_stale = [](int fd, const struct stat& st, const std::string& path) {
  if (!S_ISSOCK(st.st_mode)) return !S_ISDIR(st.st_mode);  // a planted file or link
  return !socket_fd_has_listener(fd, path);
};

UniqueFd open_dir(const std::string& path) {
  return UniqueFd(::open(path.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
}

}  // namespace

StaleArtifactCleaner::StaleArtifactCleaner(std::string x11_tmp_dir, std::string runtime_dir, std::string hostname)
    : x11_tmp_dir_(std::move(x11_tmp_dir)), runtime_dir_(std::move(runtime_dir)), hostname_(std::move(hostname)) {}

std::vector<RemovedArtifact> StaleArtifactCleaner::clean_display(std::uint32_t display, const std::string& user_dir) {
  std::vector<RemovedArtifact> removed;
  const std::string n = std::to_string(display);

  // The socket first: X checks the lock, then the socket; with a dead lock
  // removed but a stale socket left, the number would still fail.
  const std::string x11_dir_path = x11_tmp_dir_ + "/.X11-unix";
  if (UniqueFd x11 = open_dir(x11_dir_path))
    remove_if_stale(x11.get(), x11_dir_path, "X" + n, "stale X11 socket", socket_is_stale, removed);

  if (UniqueFd tmp = open_dir(x11_tmp_dir_)) {
    const std::string lock = ".X" + n + "-lock";
    const int dir = tmp.get();
    remove_if_stale(
        dir, x11_tmp_dir_, lock, "stale X lock file",
        [&](int, const struct stat& st, const std::string&) { return lock_is_stale(dir, lock, st); }, removed);
  }

  const std::string xpra_name = hostname_ + "-" + n;
  if (UniqueFd shared = open_dir(runtime_dir_))
    remove_if_stale(shared.get(), runtime_dir_, xpra_name, "stale xpra socket", socket_is_stale, removed);
  if (!user_dir.empty())
    if (UniqueFd own = open_dir(user_dir))
      remove_if_stale(own.get(), user_dir, xpra_name, "stale xpra socket", socket_is_stale, removed);
  return removed;
}

}  // namespace xpra_broker
