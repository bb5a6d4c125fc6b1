// Xpra 5.x/6.x session dirs left in the X tmp dir by other users.
//
// 5.x and 6.x keep a session dir per display (socket, server.pid, xvfb.pid,
// xauthority, ...). Without a runtime dir they put it in /tmp: "/tmp/xpra/N"
// (XDG_RUNTIME_DIR set to /tmp) or "/tmp/N" (make_session_dir()'s fallback
// when "/tmp/xpra" is not theirs). "/tmp/xpra/N" is looked at only when
// "/tmp/xpra" is writable by others (shared); a user's private one holds
// nothing another user's Xpra would trip on.
// Another user's leftover there makes an `xpra start :N` fail after its X
// server started, and a SIGKILLed session leaves its whole dir. So these
// names are judged like X lock files (docs/xpra-versions.md):
//
// - Who: the owner is what lstat() says of the entry, never what is in it
//   (server.pid and friends are the owner's to write, so they are claims).
// - Live: the owner runs an X server serving :N, or an xpra naming :N (the
//   process table, read from /proc): the number is taken.
// - Stale: anything else that is a directory; removed if everything in it is
//   a file Xpra itself would remove (clean_session_dir()'s known names),
//   else left alone and the number skipped with the reason.
// - Not a directory (a file, a symlink, a FIFO under that name): no leftover
//   of Xpra's, left alone, the number skipped.
//
// Every step goes through directory fds opened with O_NOFOLLOW; the removal
// takes the judged inode over (CAP_CHOWN, as the broker's own) so it can list
// and empty it without reading anything as another user, and gives it back
// to its owner unchanged when it holds anything Xpra would not have left.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/broker_host.h"

namespace xpra_broker {

// "<tmp>/xpra": where 5.x/6.x put "<tmp>/xpra/N" (also what the name
// watch follows, so the probe asks the filesystem only when it exists).
inline constexpr const char* kXpraDirName = "xpra";

struct XpraSessionDirFacts {
  std::string path;       // for logs and `status`
  bool under_xpra_dir = false;  // "<tmp>/xpra/N" (else "<tmp>/N")
  bool directory = false;       // false: something else under that name
  uid_t owner = 0;
  std::uint64_t device = 0, inode = 0;  // which entry was judged
  std::int64_t age_seconds = 0;
  bool owner_serves_display = false;  // the owner runs an X server or an xpra for :N
};

enum class XpraSessionDirState {
  live,     // its owner runs a session on :N
  stale,    // a directory nobody runs a session from: removed if it holds only Xpra's files
  planted,  // not a directory: left alone, the number skipped
};

// The one rule for "<tmp>/N" and "<tmp>/xpra/N".
XpraSessionDirState judge_xpra_session_dir(const XpraSessionDirFacts& facts);

// Is `name` an entry Xpra leaves in a session dir (a file, or one of its
// subdirectories, `directory`)? From Xpra 6.5's clean_session_dir().
bool is_xpra_session_entry(std::string_view name, bool directory);

// Does `uid` run an xpra (a process called xpra or python*) whose arguments
// name :<display>?
bool user_runs_xpra_for(uid_t uid, std::uint32_t display);

// The session dirs Xpra 5.x/6.x would use for `display` under `tmp_fd` (the
// X tmp dir, path `tmp_path`) that exist, as the rules above see them.
std::vector<XpraSessionDirFacts> probe_xpra_session_dirs(int tmp_fd, const std::string& tmp_path,
                                                         std::uint32_t display);

// Removes the session dir `facts` describes if it is still the judged inode
// and holds only Xpra's files. Nullopt when it was not removed, with `why`.
std::optional<RemovedArtifact> remove_stale_xpra_session_dir(int tmp_fd, const XpraSessionDirFacts& facts,
                                                             std::uint32_t display, std::string& why);

}  // namespace xpra_broker
