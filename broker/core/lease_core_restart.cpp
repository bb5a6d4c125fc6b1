// LeaseCore after a restart of the broker: the leases the records held come
// back detached, their holders reattach with their secret token or the lease
// is reaped when its grace runs out (docs/durability.md).
#include "core/core_detail.h"
#include "core/lease_core.h"
#include "untrusted_text.h"

namespace xpra_broker {

using namespace core_detail;

namespace {

// Constant-time comparison, so the token cannot be guessed byte by byte.
bool same_secret(const std::string& a, const std::string& b) {
  if (a.size() != b.size() || a.empty()) return false;
  unsigned char diff = 0;
  for (std::size_t i = 0; i < a.size(); ++i) diff |= static_cast<unsigned char>(a[i] ^ b[i]);
  return diff == 0;
}

}  // namespace

// --- Restart: recovered leases ----------------------------------------------------

std::vector<TrackedProcess> LeaseCore::verified_processes(const RecoveredLease& recovered) {
  std::vector<TrackedProcess> processes;
  for (const auto& p : recovered.processes) {
    const auto now = host_.open_process(p.pid);
    // Same pid, same uid, same start time: the very process reported then.
    if (!now || now->uid != recovered.lease.uid || now->start_time != p.start_time) continue;
    // A leader pulls its group or session into the reap: believed only for
    // a process that leads it now, as when it was reported.
    const pid_t group_leader = p.group_leader == p.pid && now->pgid == now->pid ? now->pid : 0;
    const pid_t session_leader = p.session_leader == p.pid && now->sid == now->pid ? now->pid : 0;
    processes.push_back({p.pid, p.role, now->handle, group_leader, session_leader, p.start_time});
  }
  return processes;
}

void LeaseCore::reap_orphan(const RecoveredLease& recovered, const char* why) {
  const Lease& j = recovered.lease;
  ReapJob job{j.id, j.uid, j.display, j.runtime_dir, verified_processes(recovered)};
  job.processes_only = true;
  log(LogLevel::warn, LogSubject{j.id, j.uid, j.user, 0, j.display}, [&] {
    return std::string("from the journal ") + why + "; " + str(job.processes.size()) + " of its process(es) still run" +
           (job.processes.empty() ? "" : ": reaping them");
  });
  if (job.processes.empty() || host_.nothing_to_reap(job)) {
    if (records_) take_progress(records_->lease_removed(j.id, leases_.size(), record_when()).progress);
    return;
  }
  // The number stays out of circulation while a process of it may live.
  const bool holds_number = allocator_.in_range(j.display);
  if (holds_number) ++orphan_reaps_[j.display];
  host_.reap(std::move(job), [this, id = j.id, display = j.display, holds_number](ReapOutcome outcome) {
    count_reap(outcome);
    log(LogLevel::info, LogSubject{id, {}, {}, 0, display}, [&] {
      return "(superseded) reaped: " + str(outcome.terminated) + " terminated, " + str(outcome.killed) + " killed, " +
             str(outcome.unkillable) + " unkillable";
    });
    std::optional<LeaseRecords::Seq> end_record;
    if (records_) {
      const auto receipt = records_->lease_removed(id, leases_.size(), record_when());
      end_record = receipt.seq;
      take_progress(receipt.progress);
    }
    if (holds_number && --orphan_reaps_[display] == 0) {
      orphan_reaps_.erase(display);
      give_back_when_recorded(display, id, end_record);
    }
  });
}

LeaseCore::RestoreSummary LeaseCore::restore(const std::vector<RecoveredLease>& leases, std::chrono::seconds grace) {
  RestoreSummary summary;
  const SteadyTime now = host_.now();
  // A number held by two leases (a journal written before lease ends held
  // their number until recorded) goes to the one recorded last: the older
  // one had ended, since the broker handed its number out again.
  std::map<std::uint32_t, std::size_t> last_on_display;
  for (std::size_t i = 0; i < leases.size(); ++i) last_on_display[leases[i].lease.display] = i;
  std::vector<std::string> to_reap;
  for (std::size_t i = 0; i < leases.size(); ++i) {
    const auto& recovered = leases[i];
    if (!allocator_.in_range(recovered.lease.display)) {
      reap_orphan(recovered, "is outside the display range (was the range changed?)");
      ++summary.dropped;
      continue;
    }
    if (last_on_display[recovered.lease.display] != i) {
      reap_orphan(recovered, "was superseded by a later lease on the same display");
      ++summary.dropped;
      continue;
    }
    Lease lease = recovered.lease;
    lease.acquired_steady = now;
    lease.connection = 0;
    lease.processes = verified_processes(recovered);
    const bool had_ended = lease.ending;
    const bool holder_alive = !had_ended && host_.process_alive(lease.holder_pid);
    lease.ending = false;  // it ends again below, through end_lease
    lease.detached = true;
    lease.reattach_deadline = now + grace;
    allocator_.take(lease.display);
    if (!holder_alive) to_reap.push_back(lease.id);
    log(LogLevel::info, LogSubject{lease.id, lease.uid, lease.user, 0, lease.display}, [&] {
      return "recovered from the journal, " + str(lease.processes.size()) + " tracked process(es); " +
             (holder_alive ? "waiting " + str(grace.count()) + " s for its holder (pid " + str(lease.holder_pid) +
                                 ") to reattach"
                           : std::string(had_ended ? "it had ended: reaping" : "its holder is gone: reaping"));
    });
    leases_.add(std::move(lease));
    ++(holder_alive ? summary.waiting : summary.reaping);
  }
  for (const auto& id : to_reap) end_lease(id, "holder gone while the broker was down", SessionEnd::neutral);
  return summary;
}

void LeaseCore::restore_logins(const std::map<std::uint32_t, std::uint32_t>& login_sessions) {
  for (const auto& [uid, sessions] : login_sessions) login_sessions_[uid] = sessions;
}

void LeaseCore::expire_detached() {
  const SteadyTime now = host_.now();
  std::vector<std::string> expired;
  for (const Lease* lease : leases_.all())
    if (lease->detached && !lease->ending && now >= lease->reattach_deadline) expired.push_back(lease->id);
  for (const auto& id : expired)
    end_lease(id, "its holder did not reattach after the broker restarted", SessionEnd::neutral);
}

v1::Response LeaseCore::reattach(const Call& call) {
  const Caller& caller = call.caller;
  const auto& req = call.request.reattach();
  Lease* lease = call.lease;
  // A wrong token reads like no lease at all (the verb table answers the
  // same for a missing lease or another user's).
  if (!same_secret(lease->reattach_token, req.reattach_token())) {
    log_refusal(caller, "reattach", "refused reattach: lease \"" + escape_untrusted(req.lease_id(), 64) + "\"");
    return reply(v1::NOT_FOUND, "no lease " + escape_untrusted(req.lease_id(), 64) +
                                    " of yours to reattach (it ended, or the token does not match)");
  }
  const ConnectionId connection = call.connection;
  const ConnectionId old_connection = lease->connection;
  const pid_t old_holder = lease->holder_pid;
  const bool was_detached = lease->detached;
  leases_.move_to_connection(lease->id, connection);
  lease->detached = false;
  lease->holder_pid = caller.pid;
  if (records_ && !kept_by_records(records_->lease_reattached(*lease), {}, [=, this, id = lease->id](bool written) {
        Lease* l = leases_.find_mutable(id);
        if (written || !l || l->ending || l->connection != connection) return;
        leases_.move_to_connection(id, old_connection);
        l->detached = was_detached;
        l->holder_pid = old_holder;
      }))
    return refused_unrecorded("reattach");
  log(LogLevel::info, *lease, [&] { return "reattached"; });
  v1::Response r = reply(v1::OK, "reattached to display :" + str(lease->display));
  fill_lease(*lease, r.mutable_reattach()->mutable_lease());
  return r;
}

}  // namespace xpra_broker
