// What the lease core asks of durable storage. durable/durable_leases.h
// implements it over the lease journal; without one (journal=no) nothing is
// recorded and every change stands at once.
//
// The rule (docs/durability.md): a reply announces only what is recorded,
// and memory holds nothing the record refused. So each change comes in one
// of two kinds:
// - withdrawable (a new lease, a process, a reattach, a login): if it cannot
//   be recorded the core takes it back: `undo(false)` runs before the call
//   returns false, or, when the record was batched for the turn's group
//   commit, when that commit fails (`written` says an earlier write carried
//   the record after all);
// - owed (an end, a logout): never refused; its record is written when the
//   disk allows, and the ended lease's number stays out of circulation until
//   then (unwritten_tail / is_written).
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <functional>
#include <optional>
#include <string>

#include "core/lease_table.h"

namespace xpra_broker {

class LeaseRecords {
 public:
  using Seq = std::uint64_t;
  using Undo = std::function<void(bool written)>;
  virtual ~LeaseRecords() = default;

  // Withdrawable: false if refused now (and `undo(false)` has run).
  virtual bool lease_added(const Lease& lease, Undo undo) = 0;
  virtual bool process_added(const Lease& lease, const TrackedProcess& process, Undo undo) = 0;
  virtual bool lease_reattached(const Lease& lease, Undo undo) = 0;
  virtual bool login_opened(uid_t uid, std::uint32_t sessions, Undo undo) = 0;

  // Owed: never refused.
  virtual void login_closed(uid_t uid, std::uint32_t sessions) = 0;
  // The lease is being reaped: a restart finishes the reaping.
  virtual void lease_ending(const Lease& lease) = 0;
  // Nothing of the lease runs any more. False: not written yet (owed).
  virtual bool lease_removed(const std::string& lease_id) = 0;

  // The newest record, if it is not on disk yet.
  virtual std::optional<Seq> unwritten_tail() const = 0;
  virtual bool is_written(Seq seq) const = 0;
  // Records are written before the handler returns (no group commit), and
  // some are owed: an end just made is not on disk.
  virtual bool owes_records_now() const = 0;

  struct Health {
    bool degraded = false;
    std::string problem;  // for `status`; empty when healthy
    std::string error;    // the last write error (strerror), for the log
    std::size_t owed_records = 0;
    std::uint64_t bytes = 0;
    std::uint64_t records = 0;
  };
  virtual Health health() const = 0;
};

}  // namespace xpra_broker
