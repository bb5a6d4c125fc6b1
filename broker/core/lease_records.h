// What the lease core asks of durable storage, and all of the core that
// durable storage sees (with lease.h). durable/durable_leases.h implements
// it over the lease journal; without one (journal=no) nothing is recorded
// and every change stands at once.
//
// One direction: the core tells the records what changed, and each call
// says how far the records are written (Progress). The records never call
// the core and never read a reply: the core alone gives numbers back,
// takes changes back and builds every reply, also after a failed group
// commit (LeaseCore::turn_committed).
//
// The rule (docs/durability.md): a reply announces only what is recorded,
// and memory holds nothing the record refused. So each change comes in one
// of two kinds (the verb table's `journals` column says which a verb makes):
// - withdrawable (a new lease, a process, a reattach, a login): if its
//   record is refused at once the core takes the change back before it
//   replies; if it waits for the turn's group commit and that commit fails,
//   the core takes it back then (unless an earlier write carried it);
// - owed (an end, a logout): never refused; its record is written when the
//   disk allows, and the ended lease's number stays out of circulation until
//   `written_through` passes the record.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "core/lease.h"

namespace xpra_broker {

// A lease found in the lease records at start-up.
struct RecoveredLease {
  Lease lease;  // its processes are not in here: see `processes`; ending: it had ended
  struct Process {
    pid_t pid = 0;
    int role = 0;
    pid_t group_leader = 0;
    pid_t session_leader = 0;
    std::uint64_t start_time = 0;
  };
  std::vector<Process> processes;
};

class LeaseRecords {
 public:
  // Every record gets a number, in the order it was made.
  using Seq = std::uint64_t;

  // How far the records are written: said by every call that may write.
  struct Progress {
    // Every record numbered up to here is on disk (or was dropped as
    // refused); the ones after it wait for a commit or, owed, for the disk.
    Seq written_through = 0;
    // The last write failed: withdrawable changes are being refused.
    bool write_failing = false;
    bool compaction_failed = false;
    // Outside a group commit, owed records are still not written: an end
    // just made is not on disk (its reply must not say it is).
    bool owes_records = false;
    // The records have grown: hand them what the core holds (compact()).
    bool wants_snapshot = false;
  };
  // The answer to one change.
  struct Receipt {
    Seq seq = 0;
    // Its write failed at once. Withdrawable: nothing of it was kept, the
    // core takes the change back now. Owed: it stays queued.
    bool refused = false;
    Progress progress;
  };
  // Records made while the core answers a request wait for the turn's group
  // commit (when the server runs one); the others are written at once.
  enum class When { with_the_turn, at_once };

  virtual ~LeaseRecords() = default;

  // Withdrawable (made only while a request is answered).
  virtual Receipt lease_added(const Lease& lease) = 0;
  virtual Receipt process_added(const Lease& lease, const TrackedProcess& process) = 0;
  virtual Receipt lease_reattached(const Lease& lease) = 0;
  virtual Receipt login_opened(uid_t uid, std::uint32_t sessions) = 0;

  // Owed: never refused.
  virtual Receipt login_closed(uid_t uid, std::uint32_t sessions) = 0;
  // The lease is being reaped: a restart finishes the reaping.
  virtual Receipt lease_ending(const Lease& lease, When when) = 0;
  // Nothing of the lease runs any more; `live_leases` are left.
  virtual Receipt lease_removed(const std::string& lease_id, std::size_t live_leases, When when) = 0;

  // What the core holds, handed over when the records asked for it
  // (wants_snapshot): they are rewritten from it.
  struct Snapshot {
    std::vector<const Lease*> leases;
    std::map<std::uint32_t, std::uint32_t> login_sessions;
  };
  virtual Progress compact(const Snapshot& snapshot) = 0;
  // Writes owed records (run periodically: a full disk may have room again).
  virtual Progress retry() = 0;

  // How one group commit went (the server commits, the core is told).
  struct Commit {
    bool ok = true;
    std::vector<Seq> dropped;  // withdrawable records that were not written
    Progress progress;
    double seconds = 0;  // how long the write took
  };

  struct Health {
    bool degraded = false;
    std::string problem;  // for `status`; empty when healthy
    std::string error;    // the last write error (strerror), for the log
    std::size_t owed_records = 0;
    std::uint64_t bytes = 0;
    std::uint64_t records = 0;
    std::uint64_t reserve_left_kib = 0;  // of the space reserve
  };
  virtual Health health() const = 0;
};

}  // namespace xpra_broker
