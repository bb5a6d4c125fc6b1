#include "host/user_directories.h"

#include <fcntl.h>
#include <sys/stat.h>

#include <cerrno>
#include <cstring>

#include "host/privileged_ops.h"

namespace xpra_broker {

UserDirectories::UserDirectories(UniqueFd runtime_dir_fd, std::string runtime_dir_path, gid_t broker_gid)
    : runtime_dir_fd_(std::move(runtime_dir_fd)), runtime_dir_path_(std::move(runtime_dir_path)),
      broker_gid_(broker_gid) {}

UserDirectories::Result UserDirectories::ensure(uid_t uid) {
  const std::string name = std::to_string(uid);
  Result result;
  result.path = path_for(uid);
  auto failed = [&](const char* step) {
    result.error = std::string(step) + " " + result.path + ": " + std::strerror(errno);
    return result;
  };

  // Fast path, one syscall: already there and right.
  struct stat existing {};
  if (::fstatat(runtime_dir_fd_.get(), name.c_str(), &existing, AT_SYMLINK_NOFOLLOW) == 0 &&
      S_ISDIR(existing.st_mode) && existing.st_uid == uid && existing.st_gid == broker_gid_ &&
      (existing.st_mode & 07777) == kMode) {
    result.ok = true;
    return result;
  }

  // Created 0700 first, so nobody else can get in before owner and mode are set.
  if (::mkdirat(runtime_dir_fd_.get(), name.c_str(), 0700) != 0 && errno != EEXIST) return failed("mkdir");
  // O_PATH: needs no permission on the directory itself, so one its owner
  // made 0700 can still be repaired.
  UniqueFd dir(::openat(runtime_dir_fd_.get(), name.c_str(), O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
  if (!dir) {
    if (errno == ELOOP || errno == ENOTDIR) errno = ENOTDIR;
    return failed("open (a non-directory or symlink is in the way of)");
  }
  struct stat st {};
  if (::fstat(dir.get(), &st) != 0) return failed("fstat");
  // Mode first, while a new directory is still ours; then hand it over.
  if ((st.st_mode & 07777) != kMode && privileged_fchmod(dir.get(), kMode) != 0) return failed("chmod");
  if (st.st_uid != uid || st.st_gid != broker_gid_) {
    if (privileged_fchown(dir.get(), uid, broker_gid_) != 0) {
      if (errno == EPERM) {
        result.error = "cannot hand " + result.path + " to uid " + name +
                       ": the broker lacks CAP_CHOWN (run it as the systemd unit does, or as root)";
        return result;
      }
      return failed("chown");
    }
  }
  result.ok = true;
  return result;
}

}  // namespace xpra_broker
