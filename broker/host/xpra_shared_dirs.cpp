#include "host/xpra_shared_dirs.h"

#include <sys/stat.h>

#include <cerrno>
#include <spdlog/spdlog.h>

#include "host/host_display.h"

namespace xpra_broker {

XpraSharedDirs::XpraSharedDirs(std::vector<Spec> dirs, uid_t broker_uid) : broker_uid_(broker_uid) {
  for (auto& spec : dirs) {
    Dir dir;
    dir.spec = std::move(spec);
    open(dir);
    dirs_.push_back(std::move(dir));
  }
}

void XpraSharedDirs::open(Dir& dir) {
  std::string why;
  dir.fd = open_dir_without_user_links(dir.spec.path, why);
  const int error = errno;
  dir.next_open = std::chrono::steady_clock::now() + std::chrono::seconds(1);
  if (dir.fd) {
    ++dir.generation;
    dir.problem.clear();
    return;
  }
  // Absent is ordinary (no Xpra session made it yet); anything else the
  // admin should hear about, once.
  dir.problem = error == ENOENT ? "absent" : "not used: " + why;
  if (error != ENOENT && dir.logged != dir.problem) {
    spdlog::warn("xpra socket dir {} ({}) {}: numbers with a socket there are not seen; fix the directory",
                 dir.spec.path, dir.spec.source, dir.problem);
    dir.logged = dir.problem;
  }
}

int XpraSharedDirs::fd(std::size_t i) {
  Dir& dir = dirs_[i];
  const auto now = std::chrono::steady_clock::now();
  if (now < dir.next_open) return dir.fd ? dir.fd.get() : -1;
  // Once a second: the open fd holds back inotify's IN_DELETE_SELF of a
  // removed directory, so removal is seen here (no links left).
  struct stat st {};
  if (dir.fd && (::fstat(dir.fd.get(), &st) != 0 || st.st_nlink == 0)) dir.fd.reset();
  if (dir.fd)
    dir.next_open = now + std::chrono::seconds(1);
  else
    open(dir);
  return dir.fd ? dir.fd.get() : -1;
}

void XpraSharedDirs::lost(std::size_t i) {
  dirs_[i].fd.reset();
  dirs_[i].next_open = {};
}

bool XpraSharedDirs::allows_removal(std::size_t i) {
  Dir& dir = dirs_[i];
  struct stat st {};
  if (!dir.fd || ::fstat(dir.fd.get(), &st) != 0) return false;
  const auto refusal = shared_dir_refuses_removal(st.st_uid, st.st_mode, broker_uid_);
  if (refusal && dir.logged != *refusal) {
    spdlog::warn("xpra socket dir {} ({}) is {}: nothing is removed there; numbers with a stale socket there are "
                 "skipped",
                 dir.spec.path, dir.spec.source, *refusal);
    dir.logged = *refusal;
  }
  return !refusal;
}

std::vector<XpraSharedDirs::Report> XpraSharedDirs::report() const {
  std::vector<Report> out;
  for (const auto& dir : dirs_) {
    std::string state = dir.problem;
    struct stat st {};
    if (dir.fd && ::fstat(dir.fd.get(), &st) == 0) {
      const auto refusal = shared_dir_refuses_removal(st.st_uid, st.st_mode, broker_uid_);
      state = refusal ? "checked; nothing removed: " + *refusal : "checked; stale sockets removed";
    }
    out.push_back({dir.spec.path, dir.spec.source, state});
  }
  return out;
}

}  // namespace xpra_broker
