#include "durable/durable_leases.h"

#include <spdlog/spdlog.h>

#include <chrono>
#include <cstring>

namespace xpra_broker {

namespace {

journal::JournaledProcess to_journaled(const TrackedProcess& p) {
  journal::JournaledProcess jp;
  jp.set_pid(p.pid);
  jp.set_role(p.role);
  jp.set_group_leader(p.group_leader);
  jp.set_session_leader(p.session_leader);
  jp.set_start_time(p.start_time);
  return jp;
}

}  // namespace

journal::JournaledLease to_journaled(const Lease& lease) {
  journal::JournaledLease j;
  j.set_id(lease.id);
  j.set_display(lease.display);
  j.set_uid(lease.uid);
  j.set_gid(lease.gid);
  j.set_holder_pid(lease.holder_pid);
  j.set_user(lease.user);
  j.set_runtime_dir(lease.runtime_dir);
  j.set_purpose(lease.purpose);
  j.set_acquired_unix_ms(
      std::chrono::duration_cast<std::chrono::milliseconds>(lease.acquired_at.time_since_epoch()).count());
  j.set_reattach_token(lease.reattach_token);
  j.set_ending(lease.ending);
  for (const auto& p : lease.processes) *j.add_processes() = to_journaled(p);
  return j;
}

RecoveredLease from_journaled(const journal::JournaledLease& j) {
  RecoveredLease r;
  Lease& lease = r.lease;
  lease.id = j.id();
  lease.display = j.display();
  lease.uid = j.uid();
  lease.gid = j.gid();
  lease.holder_pid = j.holder_pid();
  lease.user = j.user();
  lease.runtime_dir = j.runtime_dir();
  lease.purpose = j.purpose();
  lease.acquired_at = std::chrono::system_clock::time_point(std::chrono::milliseconds(j.acquired_unix_ms()));
  lease.reattach_token = j.reattach_token();
  lease.ending = j.ending();
  for (const auto& jp : j.processes())
    r.processes.push_back({jp.pid(), jp.role(), jp.group_leader(), jp.session_leader(), jp.start_time()});
  return r;
}

std::vector<RecoveredLease> from_journaled(const std::vector<journal::JournaledLease>& leases) {
  std::vector<RecoveredLease> out;
  out.reserve(leases.size());
  for (const auto& j : leases) out.push_back(from_journaled(j));
  return out;
}

DurableLeases::Recovered DurableLeases::recovered() const {
  const auto& loaded = journal_.loaded();
  if (loaded.dropped_bytes > 0)
    spdlog::warn("lease journal: dropped {} bytes at its end: {}", loaded.dropped_bytes, loaded.problem);
  if (!journal_.reserve_problem().empty())
    spdlog::warn("lease journal: no space reserve ({}): a user who fills the runtime dir's filesystem can stop "
                 "all new leases (docs/durability.md)", journal_.reserve_problem());
  return {from_journaled(loaded.leases), loaded.login_sessions, loaded.records};
}

// --- Changes -------------------------------------------------------------------

LeaseRecords::Progress DurableLeases::progress() const {
  Progress p;
  p.written_through = journal_.written_through();
  p.write_failing = journal_.write_failing();
  p.compaction_failed = journal_.compaction_failed();
  p.owes_records = !group_commit_ && journal_.owed_records() > 0;
  return p;
}

template <typename Append>
LeaseRecords::Receipt DurableLeases::record(When when, Append&& append) {
  journal_.set_batching(group_commit_ && when == When::with_the_turn);
  const bool appended = append();
  journal_.set_batching(false);
  return {journal_.last_seq(), !appended, progress()};
}

template <typename Append>
LeaseRecords::Receipt DurableLeases::record_for_user(uid_t uid, Append&& append) {
  // Asked once per turn of the group commit (an fstatvfs per record cost
  // the 16-client benchmark a tenth of its throughput); a user filling the
  // disk meanwhile gets at most the rest of one turn's records past her
  // share. Without the group commit, each record asks.
  if (!group_commit_ || !reserve_checked_this_turn_) {
    living_on_reserve_ = journal_.living_on_reserve();
    reserve_checked_this_turn_ = true;
  }
  if (!living_on_reserve_) {
    reserve_shares_.reset();
    return record(When::with_the_turn, append);
  }
  const std::uint64_t queued = journal_.queued_bytes();
  const std::uint64_t left = journal_.reserve_left() > queued ? journal_.reserve_left() - queued : 0;
  if (!reserve_shares_.may_write(uid, 0, left)) {
    // Asked afresh next time: a refusal writes nothing, so no commit would
    // end the turn's answer, and space that came back must be seen.
    reserve_checked_this_turn_ = false;
    return {journal_.last_seq(), true, progress()};
  }
  Receipt receipt = record(When::with_the_turn, append);
  if (!receipt.refused) reserve_shares_.charge(uid, journal_.last_append_bytes());
  return receipt;
}

LeaseRecords::Receipt DurableLeases::lease_added(const Lease& lease) {
  return record_for_user(lease.uid, [&] { return journal_.lease_added(to_journaled(lease)); });
}

LeaseRecords::Receipt DurableLeases::process_added(const Lease& lease, const TrackedProcess& p) {
  return record_for_user(lease.uid, [&] { return journal_.process_added(lease.id, to_journaled(p)); });
}

LeaseRecords::Receipt DurableLeases::lease_reattached(const Lease& lease) {
  return record_for_user(lease.uid, [&] { return journal_.lease_reattached(lease.id, lease.holder_pid); });
}

LeaseRecords::Receipt DurableLeases::login_opened(uid_t uid, std::uint32_t sessions) {
  return record(When::with_the_turn,
                [&] { return journal_.login_sessions(uid, sessions, LeaseJournal::Kind::withdrawable); });
}

LeaseRecords::Receipt DurableLeases::login_closed(uid_t uid, std::uint32_t sessions) {
  return record(When::with_the_turn, [&] { return journal_.login_sessions(uid, sessions, LeaseJournal::Kind::owed); });
}

LeaseRecords::Receipt DurableLeases::lease_ending(const Lease& lease, When when) {
  return record(when, [&] { return journal_.lease_ending(lease.id); });
}

LeaseRecords::Receipt DurableLeases::lease_removed(const std::string& lease_id, std::size_t live_leases, When when) {
  Receipt receipt = record(when, [&] { return journal_.lease_removed(lease_id); });
  receipt.progress.wants_snapshot = journal_.compaction_due(live_leases);
  return receipt;
}

LeaseRecords::Progress DurableLeases::compact(const Snapshot& snapshot) {
  LeaseJournal::Snapshot journaled;
  for (const Lease* l : snapshot.leases) journaled.leases.push_back(to_journaled(*l));
  journaled.login_sessions = snapshot.login_sessions;
  journal_.compact(journaled);
  return progress();
}

LeaseRecords::Progress DurableLeases::retry() {
  journal_.retry();
  Progress p = progress();
  // A failed compaction is tried again with every retry.
  p.wants_snapshot = journal_.compaction_failed();
  return p;
}

LeaseRecords::Health DurableLeases::health() const {
  Health h;
  h.degraded = journal_.degraded();
  h.error = std::strerror(journal_.last_error());
  if (h.degraded)
    h.problem = std::string(journal_.compaction_failed() && !journal_.owed_records() ? "compaction failed: "
                                                                                     : "cannot be written: ") +
                h.error;
  if (h.degraded && !journal_.write_failing() && journal_.reserve_left() > 0)
    h.problem += "; the runtime dir's filesystem is short of space: appending into the journal's space reserve (" +
                 std::to_string(journal_.reserve_left() / 1024) + " KiB left)";
  h.owed_records = journal_.owed_records();
  h.bytes = journal_.bytes();
  h.records = journal_.records();
  h.reserve_left_kib = journal_.reserve_left() / 1024;
  return h;
}

// --- Group commit ------------------------------------------------------------

LeaseRecords::Commit DurableLeases::commit_turn() {
  reserve_checked_this_turn_ = false;
  const auto started = std::chrono::steady_clock::now();
  auto result = journal_.commit();
  Commit commit;
  commit.ok = result.ok;
  commit.dropped = std::move(result.dropped);
  commit.progress = progress();
  commit.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
  return commit;
}

}  // namespace xpra_broker
