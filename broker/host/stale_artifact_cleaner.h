// Removes the leftovers that make a free display look taken: X lock files
// whose pid is dead, X11 and Xpra socket files nobody listens on, whoever
// left them. Another user's file in the sticky /tmp dirs (and in the shared
// socket dirs of the host's Xpra config) needs CAP_FOWNER
// (privileged_ops.h). In those Xpra dirs only sockets are removed, and only
// where the directory allows it (XpraSharedDirs::allows_removal()).
//
// Each removal re-checks the entry right before unlinkat(), through
// directory fds and O_NOFOLLOW, and only removes the very inode it checked:
// a live server is never removed, and no planted symlink is followed.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <ctime>
#include <memory>
#include <string>
#include <vector>

#include "core/broker_host.h"
#include "host/xpra_shared_dirs.h"

namespace xpra_broker {

class StaleArtifactCleaner {
 public:
  // xpra_dirs: the shared socket dirs of the host's Xpra config (the
  // probe's), or null.
  StaleArtifactCleaner(std::string x11_tmp_dir, std::string runtime_dir, std::string hostname,
                       std::shared_ptr<XpraSharedDirs> xpra_dirs = nullptr);
  virtual ~StaleArtifactCleaner() = default;

  // Removes every stale artifact of `display`; user_dir (may be empty) is the
  // lease's own socket dir. Live ones are left alone.
  virtual std::vector<RemovedArtifact> clean_display(std::uint32_t display, const std::string& user_dir);

  // Removes the session bus sockets a lease of `uid` left in the tmp dir:
  // entries named like dbus-daemon's (`dbus-` and 10 letters or digits,
  // from session.conf's `unix:tmpdir=/tmp`) that are sockets of `uid`,
  // bound at or after `since` (wall clock) and listened on by nobody.
  // Xpra stops the dbus-daemon it started with SIGINT, on which dbus-daemon
  // exits without removing its socket: without this, every Xpra session of
  // the host leaves one file in /tmp. Only the user's own dead sockets go:
  // a live bus, a link, another user's file or anything else stays.
  virtual std::vector<RemovedArtifact> clean_session_bus_sockets(uid_t uid, std::time_t since);
  // A bound on the tmp dir entries one call reads: a user who fills /tmp
  // with names costs each lease end at most this many (about 25 ms of the
  // event loop; docs/performance.md).
  static constexpr std::size_t kMaxTmpEntriesRead = 1 << 16;
  // And on the names that look like a bus socket (an fstatat each).
  static constexpr std::size_t kMaxBusSocketsLookedAt = 4096;

 private:
  std::string x11_tmp_dir_;
  std::string runtime_dir_;
  std::string hostname_;
  std::shared_ptr<XpraSharedDirs> xpra_dirs_;
};

}  // namespace xpra_broker
