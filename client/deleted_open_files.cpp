#include "deleted_open_files.h"

#include <dirent.h>
#include <sys/stat.h>
#include <unistd.h>

#include <charconv>
#include <cstring>
#include <set>
#include <utility>

namespace xpra_broker {

namespace {

bool all_digits(const char* s) {
  if (!*s) return false;
  for (; *s; ++s)
    if (*s < '0' || *s > '9') return false;
  return true;
}

long long user_dir_uid(const std::string& path, const std::string& dir) {
  const std::size_t start = dir.size() + 1;
  const std::size_t end = path.find('/', start);
  if (end == std::string::npos) return -1;  // a file directly in `dir`
  uid_t uid = 0;
  auto [at, ec] = std::from_chars(path.data() + start, path.data() + end, uid);
  if (ec != std::errc{} || at != path.data() + end || end == start) return -1;
  return uid;
}

}  // namespace

std::vector<DeletedOpenFile> deleted_open_files_under(const std::string& dir) {
  static const std::string kDeleted = " (deleted)";
  std::vector<DeletedOpenFile> found;
  std::set<std::pair<dev_t, ino_t>> seen;
  const std::string prefix = dir + "/";
  DIR* proc = ::opendir("/proc");
  if (!proc) return found;
  while (const dirent* p = ::readdir(proc)) {
    if (!all_digits(p->d_name)) continue;
    const std::string fd_dir = std::string("/proc/") + p->d_name + "/fd";
    struct stat owner {};
    if (::stat((std::string("/proc/") + p->d_name).c_str(), &owner) != 0) continue;
    DIR* fds = ::opendir(fd_dir.c_str());
    if (!fds) continue;  // gone, or not ours to read
    while (const dirent* f = ::readdir(fds)) {
      if (!all_digits(f->d_name)) continue;
      const std::string link = fd_dir + "/" + f->d_name;
      char target[4096];
      const ssize_t n = ::readlink(link.c_str(), target, sizeof(target) - 1);
      if (n <= 0) continue;
      std::string path(target, static_cast<std::size_t>(n));
      if (path.compare(0, prefix.size(), prefix) != 0 || path.size() <= kDeleted.size() ||
          path.compare(path.size() - kDeleted.size(), kDeleted.size(), kDeleted) != 0)
        continue;
      struct stat st {};
      // The kernel's link to the open file itself, not a path anyone can plant.
      if (::stat(link.c_str(), &st) != 0 || !S_ISREG(st.st_mode) || !seen.insert({st.st_dev, st.st_ino}).second)
        continue;
      path.resize(path.size() - kDeleted.size());
      DeletedOpenFile file;
      file.pid = static_cast<pid_t>(std::strtol(p->d_name, nullptr, 10));
      file.holder_uid = owner.st_uid;
      file.bytes = static_cast<std::uint64_t>(st.st_blocks) * 512;
      file.dir_uid = user_dir_uid(path, dir);
      file.path = std::move(path);
      found.push_back(std::move(file));
    }
    ::closedir(fds);
  }
  ::closedir(proc);
  return found;
}

}  // namespace xpra_broker
