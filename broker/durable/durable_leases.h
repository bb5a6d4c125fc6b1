// Durable leases as one unit: the lease core's records (core/lease_records.h)
// kept in the lease journal (lease_journal.h). It owns the mapping of leases
// to journal records and back, what the journal held at start-up, and the
// group commit: the server makes one call per turn of its event loop,
// commit_turn(), before it sends the replies of that turn, and hands what
// it says to the core (LeaseCore::turn_committed).
//
// It sees of the core only the records' interface, and never calls it: each
// change comes in as a call, and each answer says how far the journal is
// written.
#pragma once

#include <map>
#include <vector>

#include "core/lease_records.h"
#include "durable/lease_journal.h"
#include "durable/reserve_shares.h"

namespace xpra_broker {

class DurableLeases final : public LeaseRecords {
 public:
  explicit DurableLeases(LeaseJournal& journal) : journal_(journal) {}

  // At start-up: what the journal held, for LeaseCore::restore (logs what
  // was cut off and a missing space reserve).
  struct Recovered {
    std::vector<RecoveredLease> leases;
    std::map<std::uint32_t, std::uint32_t> login_sessions;
    std::size_t records = 0;
  };
  Recovered recovered() const;

  // Group commit (the server turns it on): records made while a request is
  // answered wait for commit_turn(). Off (unit tests), every record is
  // written before the handler returns. Records made by timers and the
  // reaper are always written at once.
  void set_group_commit(bool on) { group_commit_ = on; }
  bool has_uncommitted() const { return journal_.has_uncommitted(); }
  // Writes the turn's records with one write().
  Commit commit_turn();

  // LeaseRecords
  Receipt lease_added(const Lease& lease) override;
  Receipt process_added(const Lease& lease, const TrackedProcess& process) override;
  Receipt lease_reattached(const Lease& lease) override;
  Receipt login_opened(uid_t uid, std::uint32_t sessions) override;
  Receipt login_closed(uid_t uid, std::uint32_t sessions) override;
  Receipt lease_ending(const Lease& lease, When when) override;
  Receipt lease_removed(const std::string& lease_id, std::size_t live_leases, When when) override;
  Progress compact(const Snapshot& snapshot) override;
  Progress retry() override;
  Health health() const override;

 private:
  // Appends one record through `append` (a LeaseJournal call), batched
  // for the turn's commit when the group commit is on and `when` allows.
  template <typename Append>
  Receipt record(When when, Append&& append);
  Progress progress() const;
  // A user's withdrawable record, through her share of the space reserve
  // while the filesystem is full (durable/reserve_shares.h).
  template <typename Append>
  Receipt record_for_user(uid_t uid, Append&& append);

  LeaseJournal& journal_;
  bool group_commit_ = false;
  ReserveShares reserve_shares_;
  bool living_on_reserve_ = false;
  bool reserve_checked_this_turn_ = false;
};

// The journal's record of a lease, and the lease a record describes.
journal::JournaledLease to_journaled(const Lease& lease);
RecoveredLease from_journaled(const journal::JournaledLease& j);
std::vector<RecoveredLease> from_journaled(const std::vector<journal::JournaledLease>& leases);

}  // namespace xpra_broker
