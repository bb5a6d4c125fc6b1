// Per-user socket directories: <runtime-dir>/<uid>, owned by the user, group
// = the broker's group, mode 0770, so only that user and the broker get in.
//
// Every step works on file descriptors relative to the runtime dir opened once
// at start-up (mkdirat, openat with O_NOFOLLOW|O_DIRECTORY, fstat, fchown,
// fchmod): a symlink planted anywhere is never followed.
#pragma once

#include <sys/types.h>

#include <string>

#include "unique_fd.h"

namespace xpra_broker {

class UserDirectories {
 public:
  // runtime_dir_fd: the runtime dir, opened O_DIRECTORY|O_NOFOLLOW.
  UserDirectories(UniqueFd runtime_dir_fd, std::string runtime_dir_path, gid_t broker_gid);
  virtual ~UserDirectories() = default;

  struct Result {
    bool ok = false;
    std::string path;
    std::string error;  // what failed and why, for the log and the reply
  };
  // Creates the directory if missing and repairs owner and mode if they
  // drifted. Idempotent.
  virtual Result ensure(uid_t uid);

  std::string path_for(uid_t uid) const { return runtime_dir_path_ + "/" + std::to_string(uid); }
  int runtime_dir_fd() const { return runtime_dir_fd_.get(); }
  const std::string& runtime_dir_path() const { return runtime_dir_path_; }

  static constexpr mode_t kMode = 0770;

 private:
  UniqueFd runtime_dir_fd_;
  std::string runtime_dir_path_;
  gid_t broker_gid_;
};

}  // namespace xpra_broker
