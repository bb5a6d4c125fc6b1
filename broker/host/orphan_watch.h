// Processes that outlived their lease: the census's second count.
//
// When a lease has been reaped, every process started under it should be
// gone. What a reaper could not see (a helper that double-forked and called
// setsid while no keeper held the tree: an old client, or a keeper someone
// killed) is left reparented to init, with nothing tying it to the lease.
// This watch remembers, per user, the time window each ended lease ran in
// (from its oldest reported process's start to the end of its reap) and
// counts the user's processes that started inside such a window and have
// been reparented to init (ppid 1) for two counts in a row: orphans of ended
// leases.
//
// It is a heuristic an admin can read: a process the user started by hand
// during a lease and left to init on purpose (nohup, a tmux server) counts
// too. The incident's pattern (one dbus-daemon per failed session, every few
// seconds) shows as a count that grows, which is what the alert rule fires on
// (packaging/prometheus). Nothing here is ever signalled: it only counts.
//
// Thread-safe: the reaper adds windows on the event loop, the census thread
// counts.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <deque>
#include <map>
#include <mutex>
#include <set>
#include <string>
#include <utility>

#include "core/broker_host.h"

namespace xpra_broker {

// Boot-time clock ticks, the clock of /proc/<pid>/stat's starttime.
std::uint64_t boot_time_ticks_now();

class OrphanWatch {
 public:
  // Windows kept per user (the oldest go first): a bound on what one user's
  // lease churn can make the broker hold.
  static constexpr std::size_t kMaxWindowsPerUser = 64;

  // A lease of `uid` was reaped; it ran from `from` to `to` (boot ticks).
  void lease_ended(const std::string& lease_id, uid_t uid, std::uint32_t display, std::uint64_t from,
                   std::uint64_t to);

  // Walks /proc once for the users with windows. Orphans per uid (pid,
  // command name, the lease and display whose window it started in), and
  // how many distinct orphans were ever seen. A window that no live process
  // of its user started in is forgotten: nothing can start in the past.
  struct Count {
    std::map<uid_t, std::vector<OrphanProcess>> by_uid;
    std::uint64_t seen_total = 0;
  };
  Count count();

 private:
  struct Window {
    std::string lease_id;
    std::uint32_t display = 0;
    std::uint64_t from = 0, to = 0;
  };
  std::mutex mutex_;
  std::map<uid_t, std::deque<Window>> windows_;
  // (pid, start time) of every orphan counted once; bounded like the windows.
  std::set<std::pair<pid_t, std::uint64_t>> seen_;
  // (pid, start time) of the orphans the last count found: one is reported
  // only once it is found again (it outlived its lease by a census interval).
  std::set<std::pair<pid_t, std::uint64_t>> candidates_;
  std::uint64_t seen_total_ = 0;
};

}  // namespace xpra_broker
