// Display N on this host: the names X and Xpra give its files and sockets,
// what an X lock file claims and whether the host backs that claim, whether
// anybody listens on a socket, and the one rule for what is stale. The probe (is N free?), the stale-file cleaner
// (may this file go?) and the reaper (which X server belongs to this lease?)
// all ask here, so they cannot disagree.
//
// Trust: /tmp and /tmp/.X11-unix are writable by every user, so everything
// found there is a claim. A lock file's pid is believed only when the host
// backs it (see judge_lock() and lock_names_lease_x_server()). The shared
// socket dirs of the host's Xpra config (xpra_config.h) are the same kind
// of place, and the directory itself may be hostile too (see
// shared_dir_refuses_removal()); see docs/security.md for the whole model.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <optional>
#include <string>

#include "unique_fd.h"

namespace xpra_broker {

struct DisplayNames {
  DisplayNames(std::uint32_t display, const std::string& x11_tmp_dir, const std::string& hostname);
  std::string lock;              // in the X tmp dir: ".X<N>-lock"
  std::string x11_dir;           // in the X tmp dir: ".X11-unix"
  std::string x11_socket;        // in .X11-unix: "X<N>"
  std::string x11_abstract;      // abstract name "<x11 tmp dir>/.X11-unix/X<N>"
  std::string xpra_abstract;     // abstract name "xpra/<N>"
  std::string xpra_socket;       // in Xpra's socket dirs: "<hostname>-<N>"
  std::string display_argument;  // ":<N>", as an X server's command line names its display
};

enum class FileKind { absent, socket, regular, other };

// What lstat()/fstat() says an entry is.
FileKind file_kind(mode_t mode);

struct SocketFileFacts {
  FileKind kind = FileKind::absent;
  uid_t owner = 0;
  bool listening = false;  // something accepted a connect()
};

// What an X lock file says, and what the host says about the process it
// names. Gathered by read_lock_at(); judged by the pure functions below.
struct LockFacts {
  FileKind kind = FileKind::absent;
  uid_t owner = 0;
  std::uint64_t links = 0;
  std::uint64_t device = 0, inode = 0;  // which file was read (the cleaner removes only that one)
  std::int64_t age_seconds = 0;         // since its last change
  pid_t pid = 0;                 // 0: empty, unreadable or not a number
  bool pid_alive = false;
  bool pid_known = false;  // /proc answered for it (not so under hidepid)
  uid_t pid_uid = 0;       // real and effective uid, when known
  uid_t pid_euid = 0;
  bool pid_is_x_server = false;     // its command name is an X server's
  bool pid_serves_display = false;  // its command line holds ":<N>"
};

// An X server writes its lock in a temporary file and link()s it into place:
// for that moment the lock has two links, and a lock being written may still
// be empty. Younger than this, such a lock is not yet judged stale.
inline constexpr std::int64_t kLockSettleSeconds = 10;

enum class LockState {
  absent,
  live,   // an X server of the file's owner runs under that pid
  stale,  // anything else: dead pid, garbled, not a regular file, or a
          // forgery (a pid that is no X server, or not the file owner's)
};

// The one rule for lock files.
LockState judge_lock(const LockFacts& lock);
// Why, in words, for logs and for admins.
std::string describe_lock(const LockFacts& lock);

// May the reaper signal the lock's pid as the X server of a lease of
// `lease_uid`? Only when nobody else could have forged the evidence: a
// regular file with one link, owned by the lease's user (no other user can
// create such a file in /tmp), naming a live process of that user that is an
// X server with ":<N>" on its command line.
bool lock_names_lease_x_server(const LockFacts& lock, uid_t lease_uid);

// The rule for socket files: one nobody listens on is stale, and so is
// anything that is not a socket where X or Xpra put theirs (a planted file or
// link); a directory is left alone.
bool socket_file_is_stale(const SocketFileFacts& facts);

// ---- shared Xpra socket dirs -------------------------------------------------
//
// Xpra refuses to start display N while any entry "<host>-<N>" is in one of
// its socket dirs that it cannot remove: a live socket ("You already have
// ..."), another user's socket ("An xpra server is already running at
// ..."), or anything else its bind() then collides with.

enum class SharedXpraEntry {
  absent,
  live,     // a socket with a listener: N is taken
  stale,    // a socket nobody listens on: removed where the dir allows it
  planted,  // not a socket (file, link, FIFO, directory): N is skipped, the
            // entry never removed (it is no leftover of Xpra's)
};

// The one rule for "<host>-<N>" in a shared Xpra socket dir.
SharedXpraEntry judge_shared_xpra_entry(const SocketFileFacts& entry);

// May the broker remove a stale socket from a shared dir owned by `owner`
// with `mode`? Only where nobody but an entry's own owner can rename or
// replace entries between the broker's check and its unlinkat(): a dir owned
// by root (or the broker itself) that is sticky or writable by its owner
// alone. Nullopt: allowed; else why not, for the log and `status`.
std::optional<std::string> shared_dir_refuses_removal(uid_t owner, mode_t mode, uid_t broker_uid);

// Opens the absolute `path` as an O_PATH directory fd without following a
// link any user could have planted: component by component with O_NOFOLLOW;
// a symlink is followed only when root owns it and the directory holding it
// is root's and writable by root alone (as /var/run -> /run). On failure
// returns an empty fd, with `why` set and errno that of the failing step
// (ENOENT: the directory does not exist).
UniqueFd open_dir_without_user_links(const std::string& path, std::string& why);

// Reads the lock `name` in `dir_fd` without following a link, and asks /proc
// about the pid it names. `display` is what the pid's command line should
// name.
LockFacts read_lock_at(int dir_fd, const std::string& name, std::uint32_t display);

// Reads the pid from an X lock file's content ("      1234\n").
pid_t parse_lock_pid(const char* text, std::size_t size);
// The pid exists (kill(pid, 0) succeeds or says EPERM).
bool pid_alive(pid_t pid);

// Does `uid` run an X server with ":<display>" on its command line? (A scan of
// that user's processes in /proc.)
bool user_runs_x_server_for(uid_t uid, std::uint32_t display);

// ---- sockets: is anybody listening? -------------------------------------------

// Is something listening on an abstract Unix socket name? connect() on one
// reused, unconnected socket: a refused connect leaves the socket reusable,
// so the common "nobody there" answer costs one syscall, where a bind probe
// costs three (socket, bind, close). A name bound by a process that has not
// yet called listen() reads as free: it is no server yet. A listener sees a
// connection that closes at once, as with the socket-file probe; the number
// is then skipped for recheck-seconds, so that happens rarely.
class AbstractListenerProbe {
 public:
  bool in_use(const std::string& name);

 private:
  UniqueFd socket_;
};

// When connect() is not permitted (EACCES), /proc/net/unix says whether a
// listener is bound, by the path it was bound with. In a directory only the
// broker names (its runtime dir, /tmp/.X11-unix) that is the broker's own
// path; a shared Xpra dir may be reached through other spellings (a link, a
// config written "/srv//x"), so there any listener bound to a file of that
// name counts: it errs towards "listening", never removing a live socket.
enum class BoundPathMatch { exact_path, name_in_any_dir };

// A socket file's kind, owner and whether anybody listens on it, never
// through a link.
SocketFileFacts probe_socket_file(const std::string& path);
// The same for `name` in an open directory; `path` is for messages and the
// /proc/net/unix fallback.
SocketFileFacts probe_socket_file_at(int dir_fd, const std::string& name, const std::string& path,
                                     BoundPathMatch match = BoundPathMatch::exact_path);
// Is the abstract name bound at all (listening or not)? A bind probe.
bool abstract_socket_in_use(const std::string& name);
// Does something listen on the socket inode behind an O_PATH fd? `path` is
// only used for the /proc/net/unix fallback when connect() is not permitted.
bool socket_fd_has_listener(int path_fd, const std::string& path,
                            BoundPathMatch match = BoundPathMatch::exact_path);
// No entry `name` in `dir_fd` (fstatat without following a link): the cheap
// common answer, before any careful fd-based look.
bool name_absent(int dir_fd, const char* name);

}  // namespace xpra_broker
