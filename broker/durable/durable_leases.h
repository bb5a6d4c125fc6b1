// Durable leases as one unit: the lease core's records (core/lease_records.h)
// kept in the lease journal (lease_journal.h). It owns the mapping of leases
// to journal records and back, the restore at start-up, and the group
// commit: the server brackets each request with begin_request() and
// end_request(), and makes one call per turn of its event loop,
// commit_turn(), before it sends the replies of that turn.
#pragma once

#include <chrono>
#include <string>
#include <vector>

#include "lease_core.h"
#include "lease_journal.h"
#include "lease_records.h"
#include "reserve_shares.h"

namespace xpra_broker {

class DurableLeases final : public LeaseRecords {
 public:
  // Registers itself as the core's records.
  DurableLeases(LeaseJournal& journal, LeaseCore& core);

  // At start-up: gives the core what the journal held. Leases whose holder
  // is gone are reaped; the others wait `grace` for their holder.
  LeaseCore::RestoreSummary restore(std::chrono::seconds grace);

  // Group commit (the server turns it on): records made while a request is
  // handled wait for commit_turn(). Off (unit tests), every record is
  // written before the handler returns. Records made by timers and the
  // reaper are always written at once.
  void set_group_commit(bool on) { group_commit_ = on; }
  void begin_request() { journal_.set_batching(group_commit_); }
  void end_request() { journal_.set_batching(false); }
  bool has_uncommitted() const { return journal_.has_uncommitted(); }
  // Writes the turn's records with one write(). If that fails, what the
  // turn's requests changed is rolled back and each announcing reply in
  // `replies` is replaced by the error its client must see.
  struct CommitOutcome {
    bool ok = true;
    std::vector<std::string> withdrawn;  // leases taken back: their acquire is answered INTERNAL
  };
  CommitOutcome commit_turn(const std::vector<v1::Response*>& replies);
  // The reply a client gets when the commit its request waited for failed.
  v1::Response reply_after_failed_commit(v1::Response response, const std::vector<std::string>& withdrawn);

  // Writes owed records and retries a failed compaction (a full disk may
  // have room again). Run periodically by the daemon.
  void retry();

  // LeaseRecords
  bool lease_added(const Lease& lease, Undo undo) override;
  bool process_added(const Lease& lease, const TrackedProcess& process, Undo undo) override;
  bool lease_reattached(const Lease& lease, Undo undo) override;
  bool login_opened(uid_t uid, std::uint32_t sessions, Undo undo) override;
  void login_closed(uid_t uid, std::uint32_t sessions) override;
  void lease_ending(const Lease& lease) override;
  bool lease_removed(const std::string& lease_id) override;
  std::optional<Seq> unwritten_tail() const override;
  bool is_written(Seq seq) const override { return journal_.is_written(seq); }
  bool owes_records_now() const override { return !group_commit_ && journal_.owed_records() > 0; }
  Health health() const override;

 private:
  // The one place the rule is applied: `appended` is what the journal's
  // append said. Refused at once: `undo(false)` runs now. Batched:
  // `undo(written)` runs if the commit fails.
  bool recorded_or_undone(bool appended, std::string lease_id, Undo undo);
  // A user's withdrawable record, through her share of the space reserve
  // while the filesystem is full (reserve_shares.h).
  bool recorded_for_user(uid_t uid, const std::function<bool()>& append, std::string lease_id, Undo undo);
  // Logs when the journal turns degraded or healthy again (`released`:
  // numbers that just went back to the pool).
  void note_health(std::size_t released);
  LeaseJournal::Snapshot snapshot() const;

  LeaseJournal& journal_;
  LeaseCore& core_;
  bool group_commit_ = false;
  // Changes made since the last commit, with their roll-back.
  struct Uncommitted {
    Seq seq;
    std::string lease_id;  // an acquire's lease, else empty
    Undo undo;
  };
  std::vector<Uncommitted> uncommitted_;
  bool degraded_logged_ = false;
  bool compaction_failure_logged_ = false;
  ReserveShares reserve_shares_;
};

// The journal's record of a lease, and the lease a record describes.
journal::JournaledLease to_journaled(const Lease& lease);
RecoveredLease from_journaled(const journal::JournaledLease& j);
std::vector<RecoveredLease> from_journaled(const std::vector<journal::JournaledLease>& leases);

}  // namespace xpra_broker
