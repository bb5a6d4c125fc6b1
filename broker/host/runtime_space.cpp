#include "host/runtime_space.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <algorithm>
#include <charconv>
#include <cstring>

#include "unique_fd.h"

namespace xpra_broker {

namespace {

std::optional<uid_t> uid_of_dir_name(const char* name) {
  const char* end = name + std::strlen(name);
  uid_t uid = 0;
  auto [at, ec] = std::from_chars(name, end, uid);
  if (ec != std::errc{} || at != end || at == name) return std::nullopt;
  return uid;
}

// A stream of its own: a dup() would share the directory offset with
// `dir_fd`, and the next survey would start where this one ended.
DIR* open_stream(int dir_fd) {
  UniqueFd own(::openat(dir_fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  DIR* stream = own ? ::fdopendir(own.get()) : nullptr;
  if (stream) own.release();
  return stream;
}

void add_allocated(int dir_fd, int depth, std::size_t& entries, std::size_t max_entries, int max_depth,
                   std::uint64_t& bytes, bool& incomplete) {
  DIR* stream = open_stream(dir_fd);
  if (!stream) {
    incomplete = true;
    return;
  }
  while (const dirent* entry = ::readdir(stream)) {
    if (std::strcmp(entry->d_name, ".") == 0 || std::strcmp(entry->d_name, "..") == 0) continue;
    if (++entries > max_entries) {
      incomplete = true;
      break;
    }
    struct stat st {};
    if (::fstatat(::dirfd(stream), entry->d_name, &st, AT_SYMLINK_NOFOLLOW) != 0) continue;  // gone meanwhile
    bytes += static_cast<std::uint64_t>(st.st_blocks) * 512;
    if (!S_ISDIR(st.st_mode)) continue;
    if (depth >= max_depth) {
      incomplete = true;
      continue;
    }
    UniqueFd sub(::openat(::dirfd(stream), entry->d_name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
    if (!sub) {
      incomplete = true;  // closed to the broker
      continue;
    }
    add_allocated(sub.get(), depth + 1, entries, max_entries, max_depth, bytes, incomplete);
  }
  ::closedir(stream);
}

}  // namespace

std::uint64_t allocated_bytes_under(int dir_fd, bool& incomplete, std::size_t max_entries, int max_depth) {
  std::uint64_t bytes = 0;
  std::size_t entries = 0;
  add_allocated(dir_fd, 0, entries, max_entries, max_depth, bytes, incomplete);
  return bytes;
}

RuntimeSpace survey_runtime_space(int runtime_dir_fd, std::optional<uid_t> only_uid, bool always) {
  RuntimeSpace space;
  struct statvfs vfs {};
  if (runtime_dir_fd < 0 || ::fstatvfs(runtime_dir_fd, &vfs) != 0) return space;
  space.size_bytes = static_cast<std::uint64_t>(vfs.f_blocks) * vfs.f_frsize;
  space.free_bytes = static_cast<std::uint64_t>(vfs.f_bavail) * vfs.f_frsize;
  space.running_low = space.free_bytes * 100 < space.size_bytes * kRuntimeLowPercent;
  if (!space.running_low && !always) return space;

  const std::uint64_t used = space.size_bytes - static_cast<std::uint64_t>(vfs.f_bfree) * vfs.f_frsize;
  std::uint64_t attributed = 0;
  DIR* stream = open_stream(runtime_dir_fd);
  if (!stream) return space;
  while (const dirent* entry = ::readdir(stream)) {
    const auto uid = uid_of_dir_name(entry->d_name);
    if (!uid) continue;
    UniqueFd dir(::openat(::dirfd(stream), entry->d_name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
    struct stat st {};
    // Only a directory of that uid's is that user's usage (a name a user
    // could not have made otherwise: the runtime dir is the broker's).
    if (!dir || ::fstat(dir.get(), &st) != 0 || st.st_uid != *uid) continue;
    RuntimeDirUser user{*uid, static_cast<std::uint64_t>(st.st_blocks) * 512, false};
    user.bytes += allocated_bytes_under(dir.get(), user.incomplete);
    attributed += user.bytes;
    if (!only_uid || *only_uid == *uid) space.users.push_back(user);
  }
  ::closedir(stream);
  std::sort(space.users.begin(), space.users.end(),
            [](const RuntimeDirUser& a, const RuntimeDirUser& b) { return a.bytes > b.bytes; });
  // A user's own view does not learn about the others' from this figure.
  if (!only_uid) space.unattributed_bytes = used > attributed ? used - attributed : 0;
  return space;
}

}  // namespace xpra_broker
