#include "stale_artifact_cleaner.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <ctime>

#include "host_display.h"
#include "privileged_ops.h"
#include "unique_fd.h"

namespace xpra_broker {

namespace {

// Removes the entry `name` of `dir` if it is still the very inode that was
// judged stale (dev/ino), so nothing swapped in meanwhile is removed.
void remove_judged(int dir, const std::string& dir_path, const std::string& name, std::uint64_t device,
                   std::uint64_t inode, uid_t owner, std::int64_t age, const char* what,
                   std::vector<RemovedArtifact>& removed) {
  struct stat now {};
  if (::fstatat(dir, name.c_str(), &now, AT_SYMLINK_NOFOLLOW) != 0 || now.st_dev != device || now.st_ino != inode)
    return;
  if (privileged_unlinkat(dir, name.c_str()) != 0) return;
  removed.push_back({dir_path + "/" + name, owner, static_cast<long>(age), what});
}

void remove_socket_if_stale(int dir, const std::string& dir_path, const std::string& name, const char* what,
                            std::vector<RemovedArtifact>& removed) {
  UniqueFd entry(::openat(dir, name.c_str(), O_PATH | O_NOFOLLOW | O_CLOEXEC));
  if (!entry) return;
  struct stat st {};
  if (::fstat(entry.get(), &st) != 0) return;
  SocketFileFacts facts;
  facts.owner = st.st_uid;
  facts.kind = file_kind(st.st_mode);
  if (S_ISDIR(st.st_mode)) return;  // never a directory
  const std::string path = dir_path + "/" + name;
  if (facts.kind == FileKind::socket) facts.listening = socket_fd_has_listener(entry.get(), path);
  if (!socket_file_is_stale(facts)) return;
  remove_judged(dir, dir_path, name, st.st_dev, st.st_ino, st.st_uid, std::time(nullptr) - st.st_mtime, what,
                removed);
}

UniqueFd open_dir(const std::string& path) {
  return UniqueFd(::open(path.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
}

}  // namespace

StaleArtifactCleaner::StaleArtifactCleaner(std::string x11_tmp_dir, std::string runtime_dir, std::string hostname)
    : x11_tmp_dir_(std::move(x11_tmp_dir)), runtime_dir_(std::move(runtime_dir)), hostname_(std::move(hostname)) {}

std::vector<RemovedArtifact> StaleArtifactCleaner::clean_display(std::uint32_t display, const std::string& user_dir) {
  std::vector<RemovedArtifact> removed;
  const DisplayNames names(display, x11_tmp_dir_, hostname_);

  // The socket first: X checks the lock, then the socket; with a dead lock
  // removed but a stale socket left, the number would still fail.
  const std::string x11_dir_path = x11_tmp_dir_ + "/" + names.x11_dir;
  if (UniqueFd x11 = open_dir(x11_dir_path))
    remove_socket_if_stale(x11.get(), x11_dir_path, names.x11_socket, "stale X11 socket", removed);

  if (UniqueFd tmp = open_dir(x11_tmp_dir_)) {
    const LockFacts lock = read_lock_at(tmp.get(), names.lock, display);
    if (judge_lock(lock) == LockState::stale)
      remove_judged(tmp.get(), x11_tmp_dir_, names.lock, lock.device, lock.inode, lock.owner, lock.age_seconds,
                    "stale X lock file", removed);
  }

  if (UniqueFd shared = open_dir(runtime_dir_))
    remove_socket_if_stale(shared.get(), runtime_dir_, names.xpra_socket, "stale xpra socket", removed);
  if (!user_dir.empty())
    if (UniqueFd own = open_dir(user_dir))
      remove_socket_if_stale(own.get(), user_dir, names.xpra_socket, "stale xpra socket", removed);
  return removed;
}

}  // namespace xpra_broker
