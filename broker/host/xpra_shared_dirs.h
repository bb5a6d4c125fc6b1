// The shared socket dirs of the host's Xpra config (xpra_config.h), each
// opened once as an O_PATH directory fd without following a user's link
// (open_dir_without_user_links()). The probe looks for "<host>-<N>" there
// and the cleaner removes stale sockets there, both through these fds, so a
// directory swapped or linked in after the broker opened it is never used.
//
// A directory that is absent, was moved away (the probe's name watch says
// so) or was removed (no links left) is opened again at the next use; both
// are looked at no more than once a second. Whether stale
// entries may be removed is judged on the open directory each time the
// cleaner asks (shared_dir_refuses_removal()); a refusal is logged once per
// directory and reason.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <string>
#include <vector>

#include "core/broker_host.h"
#include "unique_fd.h"

namespace xpra_broker {

class XpraSharedDirs {
 public:
  struct Spec {
    std::string path;
    std::string source;  // where the path came from, for status and logs
  };
  XpraSharedDirs(std::vector<Spec> dirs, uid_t broker_uid);

  std::size_t size() const { return dirs_.size(); }
  const std::string& path(std::size_t i) const { return dirs_[i].spec.path; }

  // The directory's fd, or -1 while it is absent or refused.
  int fd(std::size_t i);
  // Bumped each time directory i is opened anew (the watch follows the fd).
  std::uint64_t generation(std::size_t i) const { return dirs_[i].generation; }
  // The directory was removed or moved away: open it again at the next fd().
  void lost(std::size_t i);

  // May stale sockets be removed from directory i right now?
  bool allows_removal(std::size_t i);

  // One line per directory, for `status` and --check-config.
  using Report = XpraDirReport;
  std::vector<Report> report() const;

 private:
  struct Dir {
    Spec spec;
    UniqueFd fd;
    std::uint64_t generation = 0;
    std::string problem;  // why it is not open, when it is not
    std::chrono::steady_clock::time_point next_open{};  // when to look at it again
    std::string logged;  // the last refusal logged, so each is logged once
  };
  void open(Dir& dir);
  std::vector<Dir> dirs_;
  uid_t broker_uid_;
};

}  // namespace xpra_broker
