// Files deleted but still held open under a directory, found through
// /proc/<pid>/fd (issue 21, attack 2: a file a user fills the runtime dir
// with and then unlinks is in no directory, so `du` and the broker's own
// survey miss it; only its holder's fd table shows it). Reading another
// user's fd table needs ptrace rights: run as root, this sees every
// process; as anyone else, only their own.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <string>
#include <vector>

namespace xpra_broker {

struct DeletedOpenFile {
  pid_t pid = 0;
  uid_t holder_uid = 0;       // the process's owner
  std::string path;           // as the kernel names it, " (deleted)" cut off
  std::uint64_t bytes = 0;    // allocated blocks
  // The <uid> of "<dir>/<uid>/...", the user directory it was in; -1 if it
  // was not in one.
  long long dir_uid = -1;
};

// Each open deleted file under `dir` once (a file open in several processes
// or fds is listed for the first holder found).
std::vector<DeletedOpenFile> deleted_open_files_under(const std::string& dir);

}  // namespace xpra_broker
