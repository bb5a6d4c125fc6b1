// Which display numbers have a file on the host: an X lock (.X<N>-lock in
// /tmp), an X11 socket (/tmp/.X11-unix/X<N>) or an Xpra socket
// (<hostname>-<N> in the shared runtime dir, a user's dir or a shared socket
// dir of the host's Xpra config, which may be /tmp itself). Kept current by
// inotify, so the probe of a display that has none of them skips four file
// lookups: the usual case, and the one that made each acquire cost a stat per
// file.
//
// The watch only ever answers "certainly absent". Anything it has seen, or
// cannot vouch for (a directory it could not watch, a queue overflow not yet
// rescanned, inotify unavailable), sends the probe to the filesystem as
// before. Freshness equals a stat's: inotify queues an event inside the
// syscall that creates or removes a name, and drain() reads the queue before
// each answer, so nothing created before the probe asks is missed.
//
// Symlinks: a directory is opened with O_NOFOLLOW relative to its parent's fd
// and watched through /proc/self/fd/N, so the watch is on the inode that was
// opened; a .X11-unix that is a symlink is not watched (the probe then looks
// at the filesystem, which does not follow it either).
//
// Not seen by inotify, and so not supported for these directories: network
// filesystems (changes made on another host) and a mount placed over a
// watched directory after the broker started.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <unordered_map>
#include <vector>

#include "unique_fd.h"

namespace xpra_broker {

class DisplayNameWatch {
 public:
  // tmp_dir_fd / shared_dir_fd: the probe's directories (any open fd; they
  // are reopened for reading, and must outlive the watch). A watch that
  // cannot start vouches for nothing.
  DisplayNameWatch(int tmp_dir_fd, int shared_dir_fd, std::string hostname);

  // Applies every queued event (one read() when there are none); rescans
  // after an overflow. Called before each answer, and by the event loop when
  // the fd is readable so a busy /tmp never overflows the queue.
  void drain();
  int fd() const { return inotify_.get(); }

  // After drain(): true only if the name certainly does not exist now.
  bool lock_absent(std::uint32_t display) const;
  bool x11_socket_absent(std::uint32_t display) const;
  bool shared_socket_absent(std::uint32_t display) const;
  // Xpra 5.x/6.x session dirs under the X tmp dir: true only if neither
  // "<tmp>/N" nor "<tmp>/xpra" (and so no "<tmp>/xpra/N") exists.
  bool session_dirs_absent(std::uint32_t display) const;
  // Starts watching user_dir the first time it is asked about.
  bool user_socket_absent(const std::string& user_dir, std::uint32_t display);

  // Shared Xpra socket dirs, by the caller's index: watches the directory
  // behind `dir_fd` (which must outlive the watch, or be replaced by calling
  // this again), replacing what index was watching before.
  void watch_xpra_dir(std::size_t index, int dir_fd);
  bool xpra_socket_absent(std::size_t index, std::uint32_t display) const;
  // The directory was removed or moved (or its watch dropped): true once,
  // then the caller opens it again and calls watch_xpra_dir().
  bool take_xpra_dir_lost(std::size_t index);
  // The user dir's own mode and owner: intact from user_dir_verified() until
  // an IN_ATTRIB on the directory itself (or its removal). A dir not yet
  // watched is never intact.
  bool user_dir_intact(const std::string& user_dir);
  void user_dir_verified(const std::string& user_dir);

  std::size_t watched_directories() const { return dirs_.size(); }
  std::size_t rescans() const { return rescans_; }
  // What the queue brought (issue 21, attack 7: any user's churn in /tmp
  // arrives here): every event read, and those that named a display's file
  // ("<prefix><N><suffix>" of its directory) and so could change an answer.
  // The rest cost a read and, at most, a name parse.
  struct Activity {
    std::uint64_t events = 0;
    std::uint64_t display_name_events = 0;
  };
  const Activity& activity() const { return activity_; }

  // Parses "<prefix><N><suffix>" with N a display number as the probe writes
  // it (decimal, no sign, no leading zero). Exposed for tests.
  static std::optional<std::uint32_t> display_in_name(const char* name, const std::string& prefix,
                                                      const std::string& suffix);

 private:
  enum class Kind { tmp, x11, shared, user, xpra };
  struct Dir {
    Kind kind;
    int parent_fd;     // with `name`: where to reopen it for a rescan
    std::string name;
    dev_t dev;         // the inode the watch is on
    ino_t ino;
    std::string user_dir;  // Kind::user only
    bool intact = false;   // Kind::user: no IN_ATTRIB since verified
    std::set<std::uint32_t> present;
    // Also a shared Xpra socket dir (Kind::xpra, or a directory watched for
    // its own kind that the Xpra config names too, such as /tmp): the
    // displays with a "<hostname>-<N>" in it.
    bool xpra_names = false;
    std::set<std::uint32_t> xpra_present;
    // Kind::tmp only: the Xpra session dirs "<N>" in it, and "xpra".
    std::set<std::uint32_t> session_present;
    bool xpra_dir_present = false;
  };
  struct XpraWatch {
    int wd = -1;
    bool lost = false;
  };

  // Opens `name` in `parent_fd` (no symlink followed), watches and scans it.
  // Returns the watch descriptor, or -1.
  int watch_dir(int parent_fd, const char* name, Kind kind, const std::string& user_dir);
  void forget(int wd);
  void scan(Dir& dir, UniqueFd dir_fd);
  // Scans again if `name` still is the watched directory.
  bool rescan(Dir& dir);
  void rescan_all();
  void apply(int wd, std::uint32_t mask, const char* name);
  // The first byte of every name the watch tracks: ".X<N>-lock",
  // ".X11-unix", "X<N>", "<hostname>-<N>", and in the X tmp dir "<N>" and
  // "xpra".
  bool could_be_display_name(const char* name) const;
  std::optional<std::uint32_t> display_of(Kind kind, const char* name) const;
  // (Re)evaluates /tmp/.X11-unix after it appeared, vanished or overflowed.
  void reopen_x11_dir();
  void disable();
  // The watched directory for user_dir, or nullptr.
  Dir* watched_user_dir(const std::string& user_dir);

  UniqueFd inotify_;
  std::string hostname_prefix_;  // "<hostname>-"
  std::unordered_map<int, Dir> dirs_;
  int tmp_wd_ = -1;
  int shared_wd_ = -1;
  int x11_wd_ = -1;
  bool x11_missing_ = false;  // /tmp is watched and has no .X11-unix
  std::map<std::string, int> user_wds_;  // -1: cannot be watched
  std::vector<XpraWatch> xpra_watches_;  // by the caller's index
  std::size_t rescans_ = 0;
  Activity activity_;
};

}  // namespace xpra_broker
