#include "durable_leases.h"

#include <algorithm>
#include <cstring>
#include <spdlog/spdlog.h>

#include "log_sink.h"

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
  lease.acquired_at = WallTime(std::chrono::milliseconds(j.acquired_unix_ms()));
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

DurableLeases::DurableLeases(LeaseJournal& journal, LeaseCore& core) : journal_(journal), core_(core) {
  core_.set_records(this);
}

LeaseCore::RestoreSummary DurableLeases::restore(std::chrono::seconds grace) {
  const auto& loaded = journal_.loaded();
  if (loaded.dropped_bytes > 0)
    spdlog::warn("lease journal: dropped {} bytes at its end: {}", loaded.dropped_bytes, loaded.problem);
  if (!journal_.reserve_problem().empty())
    spdlog::warn("lease journal: no space reserve ({}): a user who fills the runtime dir's filesystem can stop "
                 "all new leases (docs/durability.md)", journal_.reserve_problem());
  core_.restore_logins(loaded.login_sessions);
  const auto summary = core_.restore(from_journaled(loaded.leases), grace);
  if (!loaded.leases.empty())
    spdlog::info("lease journal: {} record(s), {} lease(s): {} waiting for their holder, {} being reaped, {} dropped",
                 loaded.records, loaded.leases.size(), summary.waiting, summary.reaping, summary.dropped);
  return summary;
}

// --- The rule -----------------------------------------------------------------

bool DurableLeases::recorded_or_undone(bool appended, std::string lease_id, Undo undo) {
  if (!appended) {
    undo(false);
    note_health(core_.release_recorded_numbers());
    return false;
  }
  if (!journal_.is_written(journal_.last_seq()))
    uncommitted_.push_back({journal_.last_seq(), std::move(lease_id), std::move(undo)});
  return true;
}

bool DurableLeases::recorded_for_user(uid_t uid, const std::function<bool()>& append, std::string lease_id,
                                      Undo undo) {
  if (!journal_.living_on_reserve()) {
    reserve_shares_.reset();
    return recorded_or_undone(append(), std::move(lease_id), std::move(undo));
  }
  const std::uint64_t committed = journal_.queued_bytes();
  const std::uint64_t left = journal_.reserve_left() > committed ? journal_.reserve_left() - committed : 0;
  if (!reserve_shares_.may_write(uid, 0, left)) return recorded_or_undone(false, {}, std::move(undo));
  const bool appended = append();
  if (appended) reserve_shares_.charge(uid, journal_.last_append_bytes());
  return recorded_or_undone(appended, std::move(lease_id), std::move(undo));
}

bool DurableLeases::lease_added(const Lease& lease, Undo undo) {
  return recorded_for_user(
      lease.uid, [&] { return journal_.lease_added(to_journaled(lease)); }, lease.id, std::move(undo));
}

bool DurableLeases::process_added(const Lease& lease, const TrackedProcess& p, Undo undo) {
  return recorded_for_user(
      lease.uid, [&] { return journal_.process_added(lease.id, to_journaled(p)); }, {}, std::move(undo));
}

bool DurableLeases::lease_reattached(const Lease& lease, Undo undo) {
  return recorded_for_user(
      lease.uid, [&] { return journal_.lease_reattached(lease.id, lease.holder_pid); }, {}, std::move(undo));
}

bool DurableLeases::login_opened(uid_t uid, std::uint32_t sessions, Undo undo) {
  return recorded_or_undone(journal_.login_sessions(uid, sessions, LeaseJournal::Kind::withdrawable), {},
                            std::move(undo));
}

void DurableLeases::login_closed(uid_t uid, std::uint32_t sessions) {
  journal_.login_sessions(uid, sessions, LeaseJournal::Kind::owed);
}

void DurableLeases::lease_ending(const Lease& lease) { journal_.lease_ending(lease.id); }

bool DurableLeases::lease_removed(const std::string& lease_id) {
  const bool written = journal_.lease_removed(lease_id);
  journal_.compact_if_needed(core_.leases().size(), [this] { return snapshot(); });
  note_health(0);
  return written;
}

std::optional<LeaseRecords::Seq> DurableLeases::unwritten_tail() const {
  if (journal_.is_written(journal_.last_seq())) return std::nullopt;
  return journal_.last_seq();
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
  return h;
}

// --- Group commit ------------------------------------------------------------

DurableLeases::CommitOutcome DurableLeases::commit_turn(const std::vector<v1::Response*>& replies) {
  const auto started = std::chrono::steady_clock::now();
  const auto result = journal_.commit();
  auto uncommitted = std::move(uncommitted_);
  uncommitted_.clear();
  std::vector<std::string> withdrawn;
  if (!result.ok) {
    // The requests have not been answered yet: roll back what they changed,
    // newest first. A record an earlier write outside this batch carried is
    // in the file: its change stays, and is ended the normal way.
    for (auto it = uncommitted.rbegin(); it != uncommitted.rend(); ++it) {
      const bool written = std::find(result.dropped.begin(), result.dropped.end(), it->seq) == result.dropped.end();
      if (!it->lease_id.empty() && !written) withdrawn.push_back(it->lease_id);
      it->undo(written);
    }
  }
  note_health(core_.release_recorded_numbers());
  core_.counters().journal_commit_duration.observe(
      std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count());
  if (!result.ok)
    for (v1::Response* reply : replies) *reply = reply_after_failed_commit(std::move(*reply), withdrawn);
  return {result.ok, std::move(withdrawn)};
}

v1::Response DurableLeases::reply_after_failed_commit(v1::Response response,
                                                      const std::vector<std::string>& withdrawn) {
  if (response.status() != v1::OK) return response;
  auto& counters = core_.counters();
  // The request was counted OK when it was handled; it is answered INTERNAL.
  // (A reply's result has the field number of its request's verb.)
  const auto recount = [&](v1::Response changed) {
    const auto verb = static_cast<v1::Request::VerbCase>(response.result_case());
    if (auto& ok = counters.requests_by_verb[static_cast<std::size_t>(verb)][v1::OK]; ok > 0) --ok;
    counters.count_request(verb, changed.status());
    return changed;
  };
  if (response.has_acquire() &&
      std::find(withdrawn.begin(), withdrawn.end(), response.acquire().lease().id()) != withdrawn.end()) {
    counters.count_refusal(response.acquire().lease().uid(), AcquireRefusal::journal);
    return recount(LeaseCore::refused_unrecorded("lease"));
  }
  // Every other announcing reply of the batch had its record in the failed
  // write (a reply waits for the commit after its own request).
  if (response.has_report_process()) return recount(LeaseCore::refused_unrecorded("process"));
  if (response.has_reattach()) return recount(LeaseCore::refused_unrecorded("reattach"));
  if (response.has_open_login()) return recount(LeaseCore::refused_unrecorded("login session"));
  // Ends are never undone, but not acknowledged either until recorded: a
  // restart before that brings the lease back (and reaps it then).
  if (response.has_release() || response.has_report_start_failure() || response.has_close_login())
    return recount(LeaseCore::end_not_recorded());
  return response;
}

void DurableLeases::retry() {
  journal_.retry();
  if (journal_.compaction_failed()) journal_.compact(snapshot());
  note_health(core_.release_recorded_numbers());
}

LeaseJournal::Snapshot DurableLeases::snapshot() const {
  LeaseJournal::Snapshot snapshot;
  for (const Lease* l : core_.leases().all()) snapshot.leases.push_back(to_journaled(*l));
  for (const auto& [uid, sessions] : core_.login_sessions()) snapshot.login_sessions[uid] = sessions;
  return snapshot;
}

void DurableLeases::note_health(std::size_t released) {
  // Refusing records; compaction failing alone (the space reserve takes the
  // appends meanwhile) refuses nothing. (Owed records queued in a batch are
  // not a failure: the commit writes them.)
  const bool degraded = journal_.write_failing();
  ScopedLogEvent event(LogEvent::journal_degraded);
  if (degraded && !degraded_logged_)
    spdlog::error(
        "lease journal: cannot be written ({}): running degraded. New leases, process reports, reattaches "
        "and logins are refused (INTERNAL) until space is freed; running sessions keep running; ended "
        "leases keep their displays out of circulation until their end is recorded",
        std::strerror(journal_.last_error()));
  else if (!degraded && degraded_logged_)
    spdlog::info("lease journal: writable again; {} display(s) back in circulation", released);
  if (journal_.compaction_failed() && !compaction_failure_logged_)
    spdlog::error("lease journal: compaction failed ({}); retried every second; {} KiB of the journal's space "
                  "reserve left", std::strerror(journal_.last_error()), journal_.reserve_left() / 1024);
  compaction_failure_logged_ = journal_.compaction_failed();
  degraded_logged_ = degraded;
}

}  // namespace xpra_broker
