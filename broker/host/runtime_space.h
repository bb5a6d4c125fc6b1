// Who uses the runtime dir's space (issue 21, attack 2): the runtime dir
// shares its filesystem with every allowed user's own directory
// (<runtime-dir>/<uid>), so when it runs short the admin needs a name, not
// only a `df` figure. Approximate by nature:
//   - a user's bytes are the allocated blocks (st_blocks) of what the broker
//     can see under <runtime-dir>/<uid> (the directory is the user's, group
//     the broker's, mode 0770; a subdirectory the user closed to the broker
//     is skipped and the user's figure marked incomplete);
//   - a file deleted but kept open is in no directory: only /proc/<pid>/fd
//     finds it, and reading another user's fds takes ptrace rights, which
//     the broker does not have (on purpose). It shows up here as
//     "unattributed" (used space that no user directory accounts for, with
//     the broker's own files and anything else on a shared /run), and
//     root's `xpra-request-display status` names its holders
//     (client/deleted_open_files.h).
// Never follows a symlink (openat O_NOFOLLOW, fstatat AT_SYMLINK_NOFOLLOW).
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "core/broker_host.h"

namespace xpra_broker {

// Below this share free, the filesystem is "running low" and users' usage is
// surveyed (a status far from full costs one statvfs).
inline constexpr std::uint64_t kRuntimeLowPercent = 10;

// statvfs of the runtime dir, and when it runs low (or `always`), the usage
// of each <uid> directory in it (only `only_uid`'s if given).
RuntimeSpace survey_runtime_space(int runtime_dir_fd, std::optional<uid_t> only_uid, bool always = false);

// Allocated bytes of what is under `dir_fd` (not following links, at most
// `max_entries` entries, `max_depth` levels); `incomplete` when something
// could not be read or a limit was hit.
std::uint64_t allocated_bytes_under(int dir_fd, bool& incomplete, std::size_t max_entries = 100000,
                                    int max_depth = 16);

}  // namespace xpra_broker
