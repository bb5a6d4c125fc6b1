// What the lease core asks of the machine it runs on, and nothing more.
//
// The core (lease_core.h) decides: quotas, which number, who may do what,
// when a lease ends. Everything it needs to know about the host, and the few
// things it has done there, go through this one interface: the clock, the id
// source, user names, whether a display number is really free, processes,
// the per-user directory, reaping, and the log. host/linux_host.h implements
// it on the real machine; tests/core/fake_host.h implements it in memory, so
// the core's tests need neither root nor the host.
//
// Everything here is plain data: no file descriptor, no system call, no
// logging library (after ChromiumOS permission_broker's rules, which see the
// device only through what the broker hands them).
#pragma once

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "core/display_allocator.h"
#include "core/lease_table.h"

namespace xpra_broker {

using WallTime = std::chrono::system_clock::time_point;

// --- Displays ---------------------------------------------------------------

enum class DisplayUse {
  free,   // nothing of it on the host
  live,   // something runs on it: skip until recheck
  stale,  // leftovers only: skip, report, clean (lifecycle)
};

struct DisplayVerdict {
  DisplayUse use = DisplayUse::free;
  std::string reason;  // for logs and `status`; empty when free
  uid_t owner = 0;     // who left or runs it, when known
  pid_t pid = 0;
  bool owner_known = true;  // false: an abstract socket whose listener the kernel did not name
};

// What the host shows of someone other than the reporter on a display whose
// start failed with a conflict. Believed only when the broker finds it itself.
struct ConflictEvidence {
  std::string what;
  bool owner_unknown = false;
};

// A leftover file the host removed from a display.
struct RemovedArtifact {
  std::string path;
  uid_t owner = 0;
  long age_seconds = 0;
  std::string what;
};

// --- Processes --------------------------------------------------------------

// A process as the kernel describes it, held by a handle that stays valid
// (and names this very process) after its pid is reused.
struct ProcessFacts {
  pid_t pid = 0;
  uid_t uid = 0;
  pid_t pgid = 0;
  pid_t sid = 0;
  std::uint64_t start_time = 0;
  std::string comm;
  std::shared_ptr<ProcessHandle> handle;
};

// A process that outlived its lease (host/orphan_watch.h): it started while
// a lease of its user ran, that lease has ended, and it was reparented to
// init.
struct OrphanProcess {
  pid_t pid = 0;
  std::string comm;
  std::string lease;          // the ended lease it started under
  std::uint32_t display = 0;  // that lease's display
};

// X servers per uid on the host, and orphans of ended leases, counted off the
// event loop.
struct XServerSnapshot {
  std::map<uid_t, std::vector<pid_t>> by_uid;
  std::map<uid_t, std::vector<OrphanProcess>> orphans_by_uid;
  std::uint64_t orphans_seen_total = 0;  // distinct orphans counted since start
  std::chrono::steady_clock::time_point taken_at;
  std::chrono::milliseconds took{0};
};

// --- Reaping ----------------------------------------------------------------

struct ReapJob {
  std::string lease_id;
  uid_t uid = 0;
  std::uint32_t display = 0;
  std::string user_dir;
  std::vector<TrackedProcess> processes;
  // Only the reported processes: nothing through the display's X lock and
  // no cleaning of its sockets, because the number is another lease's now
  // (an older lease on it found in the journal at restart).
  bool processes_only = false;
};

struct ReapOutcome {
  std::size_t terminated = 0;  // ended after SIGTERM
  std::size_t killed = 0;      // needed SIGKILL
  std::size_t unkillable = 0;  // still there after SIGKILL (D state)
  std::vector<RemovedArtifact> removed;
  std::chrono::milliseconds took{0};
};

// --- What `status` shows of the host -----------------------------------------

// A directory Xpra looks in for display sockets, and the broker's view of it.
struct XpraDirReport {
  std::string path;
  std::string source;  // which config file or default named it
  std::string state;
  bool shared = true;  // false: a per-user dir, not the broker's to check
};

struct HostReport {
  std::string hostname;
  std::size_t watched_directories = 0;
  std::size_t watch_rescans = 0;
  std::vector<XpraDirReport> xpra_socket_dirs;
  // The display name watch's cost (issue 21, attack 7): times it woke the
  // event loop, events it read, and those about a display's name.
  std::uint64_t watch_wakeups = 0;
  std::uint64_t watch_events = 0;
  std::uint64_t watch_display_name_events = 0;
};

// The runtime dir's filesystem, and who uses it when it runs low
// (host/runtime_space.h says how, and how approximate it is).
struct RuntimeDirUser {
  uid_t uid = 0;
  std::uint64_t bytes = 0;
  bool incomplete = false;  // some of it could not be read
};

struct RuntimeSpace {
  std::string path;
  std::uint64_t size_bytes = 0;  // 0: unknown
  std::uint64_t free_bytes = 0;  // for unprivileged users (f_bavail)
  bool running_low = false;
  std::vector<RuntimeDirUser> users;  // largest first
  // Used space no user directory accounts for: files deleted but kept open,
  // the broker's own files, anything else on a shared filesystem.
  std::uint64_t unattributed_bytes = 0;
};

// --- The log ----------------------------------------------------------------

enum class LogLevel { debug, info, warn, error };

// Events an admin filters on (journald MESSAGE_ID); most lines are none.
enum class LogEvent {
  none,
  leak_watchdog,
  quarantine,
  backoff,
  reaped_with_survivors,
  journal_degraded,
  orphans_outlived_lease
};

// Who and which display a log line is about. Every line the core writes
// names what it knows of these, in one fixed order (format_log_line), so an
// admin can grep for a lease, a uid or a display and journald gets them as
// fields (log_sink.h).
struct LogSubject {
  std::string lease;            // empty: no lease
  std::optional<uid_t> uid;
  std::string user;
  pid_t pid = 0;                // 0: not known
  std::uint32_t display = 0;    // 0: no display (display :0 is never brokered)

  static LogSubject of(const Lease& lease) {
    return {lease.id, lease.uid, lease.user, lease.holder_pid, lease.display};
  }
};

// One log event, handed to the host as data (BrokerHost::log): by the core,
// and by the reaper, durable and the server for their lines about a lease
// or a user.
struct LogLine {
  LogLevel level = LogLevel::info;
  LogEvent event = LogEvent::none;
  LogSubject subject;
  std::string text;
};

// "lease=<id> uid=<uid>(<user>) pid=<pid> display=:<n> <text>", each part
// only when known ("uid=<uid>" without a name). The one place a log line's
// subject is written as text; a journal sink writes it as fields instead
// (host/log_sink.h), and no sink reads it back out of the text.
std::string format_log_line(const LogLine& line);

// --- The interface ------------------------------------------------------------

class BrokerHost {
 public:
  virtual ~BrokerHost() = default;

  // Time and randomness.
  virtual SteadyTime now() = 0;
  virtual WallTime wall_now() = 0;
  // 16 hex digits from the kernel's random source.
  virtual std::string random_id() = 0;

  // The login name of a uid, or its number.
  virtual std::string user_name(uid_t uid) = 0;

  // The user's socket directory, created or repaired. Error: what failed.
  struct UserDir {
    bool ok = false;
    std::string path;
    std::string error;
  };
  virtual UserDir prepare_user_dir(uid_t uid) = 0;

  // A request starts and ends: the host may take fresh readings once per
  // request rather than once per question.
  virtual void request_started() = 0;
  virtual void request_finished() = 0;

  // Is anything of anyone on this display number on the host?
  virtual DisplayVerdict examine_display(std::uint32_t display, const std::string& user_dir) = 0;
  // Removes the leftovers that made it stale; what was removed.
  virtual std::vector<RemovedArtifact> clean_display(std::uint32_t display, const std::string& user_dir) = 0;
  // Evidence of another owner than `reporter` on the display, if any.
  virtual std::optional<ConflictEvidence> confirm_conflict(std::uint32_t display, const std::string& user_dir,
                                                           uid_t reporter) = 0;

  // The running process `pid`, held; nullopt if there is none.
  virtual std::optional<ProcessFacts> open_process(pid_t pid) = 0;
  virtual bool process_alive(pid_t pid) = 0;
  // X servers per uid; null before the first count.
  virtual std::shared_ptr<const XServerSnapshot> x_servers() = 0;

  // Ends what ran under a lease; `done` runs later, never from inside reap().
  virtual void reap(ReapJob job, std::function<void(ReapOutcome)> done) = 0;
  // Would reap() find nothing to end and nothing to clean?
  virtual bool nothing_to_reap(const ReapJob& job) = 0;

  virtual HostReport report() = 0;
  // The runtime dir's space; users' usage when it runs low, only_uid's
  // alone if given.
  virtual RuntimeSpace runtime_space(std::optional<uid_t> only_uid) {
    (void)only_uid;
    return {};
  }

  // Would a line of this level be written? (The core skips making it if not.)
  virtual bool wants_log(LogLevel level) = 0;
  virtual void log(const LogLine& line) = 0;
};

}  // namespace xpra_broker
