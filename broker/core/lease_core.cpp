#include "core/lease_core.h"

#include <algorithm>

#include "core/core_detail.h"
#include "untrusted_text.h"

namespace xpra_broker {

using namespace core_detail;

namespace {

constexpr std::size_t kMaxPurpose = 128;
constexpr std::size_t kMaxProcessesPerLease = 16;

}  // namespace

std::string format_log_line(const LogLine& line) {
  const LogSubject& s = line.subject;
  std::string out;
  if (!s.lease.empty()) out += "lease=" + s.lease + " ";
  if (s.uid) out += "uid=" + str(*s.uid) + (s.user.empty() ? " " : "(" + s.user + ") ");
  if (s.pid) out += "pid=" + str(s.pid) + " ";
  if (s.display) out += "display=:" + str(s.display) + " ";
  return out + line.text;
}

LeaseCore::LeaseCore(const CoreSettings& settings, AccessPolicy policy, BrokerHost& host, LeaseRecords* records)
    : settings_(settings),
      policy_(std::move(policy)),
      host_(host),
      records_(records),
      started_(host.now()),
      started_wall_(host.wall_now()),
      allocator_(settings.display_first, settings.display_last),
      guard_(settings.restart_guard) {}

void LeaseCore::reconfigure(const CoreSettings& settings, AccessPolicy policy) {
  if (settings.display_first != settings_.display_first || settings.display_last != settings_.display_last) {
    allocator_.resize(settings.display_first, settings.display_last);
    surveyed_at_.reset();  // the new numbers are probed at the next status
  }
  guard_.set_settings(settings.restart_guard);
  settings_ = settings;
  policy_ = std::move(policy);
}

// --- The central check and dispatch ------------------------------------------

v1::Response LeaseCore::handle(const Caller& caller, ConnectionId connection, const v1::Request& request) {
  const VerbRule* rule = find_verb_rule(request.verb_case());
  const auto decision = check_verb_access(policy_, caller, rule, request);
  if (!decision.allowed) {
    if (decision.status == v1::DENIED) log_refusal(caller, rule->name, std::string("denied ") + rule->name);
    counters_.count_request(request.verb_case(), decision.status);
    return reply(decision.status, decision.message);
  }
  // The host reads the display names once for the whole request, and what
  // the request records waits for the turn's commit.
  struct RequestScope {
    BrokerHost& host;
    bool& in_request;
    RequestScope(BrokerHost& h, bool& in) : host(h), in_request(in) {
      host.request_started();
      in_request = true;
    }
    ~RequestScope() {
      in_request = false;
      host.request_finished();
    }
  } scope(host_, in_request_);
  const Authorized authorized = authorize(*rule, caller, request);
  if (!authorized.allowed) {
    counters_.count_request(request.verb_case(), authorized.refusal.status());
    return authorized.refusal;
  }
  v1::Response response = (this->*rule->handler)(Call{caller, connection, request, authorized.lease});
  counters_.count_request(request.verb_case(), response.status());
  return response;
}

LeaseCore::Authorized LeaseCore::authorize(const VerbRule& rule, const Caller& caller, const v1::Request& request) {
  if (rule.audience != VerbAudience::lease_owner && rule.audience != VerbAudience::lease_owner_or_admin)
    return {true, {}, nullptr};
  const LeaseTarget target = rule.target(request);
  if (!target.valid) return {false, reply(v1::INVALID, std::string(rule.name) + " needs a lease id or a display")};
  Lease* lease =
      target.display ? leases_.find_mutable_by_display(*target.display) : leases_.find_mutable(target.lease_id);
  const bool allowed =
      lease && (rule.audience == VerbAudience::lease_owner ? lease->uid == caller.uid && !lease->ending
                                                           : policy_.may_manage_lease(caller, lease->uid));
  // Another user's lease is refused exactly like a missing one: users never
  // learn about each other's leases.
  if (!allowed) {
    log_refusal(caller, rule.name, std::string("refused ") + rule.name + ": no " + target.what + " of theirs");
    return {false, reply(v1::NOT_FOUND, rule.not_found(target))};
  }
  return {true, {}, lease};
}

// --- The log -----------------------------------------------------------------

void LeaseCore::log_refusal(const Caller& caller, const char* reason, std::string text, LogEvent event) {
  const auto d = refusal_log_.admit(caller.uid, reason, host_.now());
  if (!d.log) return;
  log(
      LogLevel::warn, subject_of(caller), [&] { return std::move(text) + refusal_log_.suffix(d); }, event);
}

std::string LeaseCore::owner_text(const DisplayVerdict& verdict) {
  if (!verdict.owner_known) return "unknown";
  const std::string name = user_name(verdict.owner);
  return "uid=" + str(verdict.owner) + (name.empty() ? "" : " (" + name + ")");
}

std::map<uid_t, std::uint32_t> LeaseCore::blocked_by_owner() const {
  std::map<uid_t, std::uint32_t> out;
  for (const auto& [display, finding] : host_findings_) {
    // What the probe found on the host: not quarantines or reaps, whose
    // "owner" is the broker's own lease.
    const auto reason = block_reasons_.find(display);
    const bool found_on_host = reason != block_reasons_.end() &&
                               (reason->second == BlockReason::in_use || reason->second == BlockReason::leftovers);
    if (found_on_host && finding.owner_known && allocator_.blocked().count(display)) ++out[finding.owner];
  }
  return out;
}

LogSubject LeaseCore::subject_of(const Caller& caller) {
  return {{}, caller.uid, user_name(caller.uid), caller.pid, 0};
}

// --- Connections and records -------------------------------------------------

bool LeaseCore::connection_holds_leases(ConnectionId connection) const {
  return !leases_.ids_for_connection(connection).empty();
}

void LeaseCore::connection_closed(ConnectionId connection) {
  // A holder that vanishes without releasing (crash, kill -9) is a failed
  // session as far as the restart-loop defence is concerned.
  for (const auto& id : leases_.ids_for_connection(connection))
    end_lease(id, "holder disconnected without releasing", SessionEnd::failed);
}

v1::Response LeaseCore::end_not_recorded() {
  return reply(v1::INTERNAL,
               "the lease is ending (what ran under it is being stopped), but the broker cannot record that in its "
               "lease journal yet (disk full?); its display stays reserved until it can. Ask the administrator to "
               "free space in the broker's runtime dir");
}

v1::Response LeaseCore::refused_unrecorded(const char* what) {
  return reply(v1::INTERNAL, std::string("the broker cannot record the ") + what +
                                 " (its lease journal cannot be written: disk full?); nothing was changed. Ask the "
                                 "administrator to free space in the broker's runtime dir");
}

void LeaseCore::give_back_when_recorded(std::uint32_t display, std::string lease_id,
                                        std::optional<LeaseRecords::Seq> end_record) {
  if (end_record && *end_record > written_through_) {
    // Its end is not recorded yet: a restart now would bring the lease
    // back, so the number must not go to anyone else meanwhile.
    held_for_record_.push_back({*end_record, display, std::move(lease_id)});
    return;
  }
  give_back_if_unused(display);
}

void LeaseCore::give_back_if_unused(std::uint32_t display) {
  if (leases_.find_by_display(display) || orphan_reaps_.count(display)) return;
  allocator_.give_back(display);
}

std::size_t LeaseCore::release_recorded_numbers() {
  return std::erase_if(held_for_record_, [&](const HeldForRecord& held) {
    if (held.seq > written_through_) return false;
    give_back_if_unused(held.display);
    return true;
  });
}

// --- What the records say --------------------------------------------------------

bool LeaseCore::kept_by_records(const LeaseRecords::Receipt& receipt, std::string lease_id, Undo undo) {
  if (receipt.refused) {
    undo(false);
    take_progress(receipt.progress);
    return false;
  }
  if (receipt.seq > receipt.progress.written_through)
    uncommitted_.push_back({receipt.seq, std::move(lease_id), std::move(undo)});
  take_progress(receipt.progress);
  return true;
}

std::size_t LeaseCore::take_progress(LeaseRecords::Progress progress) {
  // The snapshot is what memory holds now, between two changes.
  if (progress.wants_snapshot) progress = records_->compact(records_snapshot());
  written_through_ = std::max(written_through_, progress.written_through);
  records_owed_ = progress.owes_records;
  const std::size_t released = release_recorded_numbers();
  note_records_health(progress, released);
  return released;
}

LeaseRecords::Snapshot LeaseCore::records_snapshot() const {
  LeaseRecords::Snapshot snapshot;
  snapshot.leases = leases_.all();
  for (const auto& [uid, sessions] : login_sessions_) snapshot.login_sessions[uid] = sessions;
  return snapshot;
}

std::size_t LeaseCore::retry_records() { return records_ ? take_progress(records_->retry()) : 0; }

LeaseCore::CommitOutcome LeaseCore::turn_committed(const LeaseRecords::Commit& commit,
                                                   const std::vector<v1::Response*>& replies) {
  auto uncommitted = std::move(uncommitted_);
  uncommitted_.clear();
  std::vector<std::string> withdrawn;
  if (!commit.ok) {
    // The requests have not been answered yet: roll back what they changed,
    // newest first. A record an earlier write outside this batch carried is
    // in the file: its change stays, and is ended the normal way.
    for (auto it = uncommitted.rbegin(); it != uncommitted.rend(); ++it) {
      const bool written = std::find(commit.dropped.begin(), commit.dropped.end(), it->seq) == commit.dropped.end();
      if (!it->lease_id.empty() && !written) withdrawn.push_back(it->lease_id);
      it->undo(written);
    }
  }
  take_progress(commit.progress);
  counters_.journal_commit_duration.observe(commit.seconds);
  if (!commit.ok)
    for (v1::Response* reply : replies) *reply = reply_after_failed_commit(std::move(*reply), withdrawn);
  return {commit.ok, std::move(withdrawn)};
}

v1::Response LeaseCore::reply_after_failed_commit(v1::Response response, const std::vector<std::string>& withdrawn) {
  if (response.status() != v1::OK) return response;
  // A reply's result has the field number of its request's verb.
  const auto verb = static_cast<v1::Request::VerbCase>(response.result_case());
  const VerbRule* rule = find_verb_rule(verb);
  if (!rule || rule->journals == Journaling::none) return response;
  v1::Response changed;
  if (rule->journals == Journaling::owed) {
    // Ends are never undone, but not acknowledged either until recorded: a
    // restart before that brings the lease back (and reaps it then).
    changed = end_not_recorded();
  } else if (response.has_acquire()) {
    // An acquire whose record an earlier write carried keeps its lease (it
    // is ended the normal way, by its undo).
    const auto& id = response.acquire().lease().id();
    if (std::find(withdrawn.begin(), withdrawn.end(), id) == withdrawn.end()) return response;
    counters_.count_refusal(response.acquire().lease().uid(), AcquireRefusal::journal);
    changed = refused_unrecorded(rule->recorded_as);
  } else {
    // Every other announcing reply of the batch had its record in the
    // failed write (a reply waits for the commit after its own request).
    changed = refused_unrecorded(rule->recorded_as);
  }
  // The request was counted OK when it was handled; it is answered INTERNAL.
  if (auto& ok = counters_.requests_by_verb[static_cast<std::size_t>(verb)][v1::OK]; ok > 0) --ok;
  counters_.count_request(verb, changed.status());
  return changed;
}

void LeaseCore::note_records_health(const LeaseRecords::Progress& progress, std::size_t released) {
  // Refusing records; compaction failing alone (the space reserve takes the
  // appends meanwhile) refuses nothing. (Owed records queued in a batch are
  // not a failure: the commit writes them.)
  const bool degraded = progress.write_failing;
  const LogSubject none;
  if (degraded && !degraded_logged_)
    log(
        LogLevel::error, none,
        [&] {
          return "lease journal: cannot be written (" + records_->health().error +
                 "): running degraded. New leases, process reports, reattaches and logins are refused (INTERNAL) "
                 "until space is freed; running sessions keep running; ended leases keep their displays out of "
                 "circulation until their end is recorded";
        },
        LogEvent::journal_degraded);
  else if (!degraded && degraded_logged_)
    log(
        LogLevel::info, none,
        [&] { return "lease journal: writable again; " + str(released) + " display(s) back in circulation"; },
        LogEvent::journal_degraded);
  if (progress.compaction_failed && !compaction_failure_logged_) {
    const auto health = records_->health();
    log(
        LogLevel::error, none,
        [&] {
          return "lease journal: compaction failed (" + health.error + "); retried every second; " +
                 str(health.reserve_left_kib) + " KiB of the journal's space reserve left";
        },
        LogEvent::journal_degraded);
  }
  compaction_failure_logged_ = progress.compaction_failed;
  degraded_logged_ = degraded;
}

// --- acquire ------------------------------------------------------------------

std::optional<std::uint32_t> LeaseCore::pick_free_display(const std::string& user_dir) {
  const SteadyTime now = host_.now();
  allocator_.expire_blocks(now);
  // Each probe either takes the number or blocks it, so this loop probes every
  // number at most once.
  while (auto candidate = allocator_.next_candidate()) {
    DisplayVerdict verdict = host_.examine_display(*candidate, user_dir);
    if (verdict.use == DisplayUse::stale && settings_.clean_stale) {
      // Leftovers of someone else (a crashed session, a stale socket in the
      // sticky /tmp/.X11-unix): remove them and look again.
      for (const auto& removed : host_.clean_display(*candidate, user_dir)) {
        ++counters_.stale_files_removed;
        log(LogLevel::info, LogSubject{{}, {}, {}, 0, *candidate}, [&] {
          return "removed " + removed.what + " " + removed.path + " (owner uid=" + str(removed.owner) + ", " +
                 std::to_string(removed.age_seconds) + " s old)";
        });
      }
      verdict = host_.examine_display(*candidate, user_dir);
    }
    if (verdict.use == DisplayUse::free) {
      host_findings_.erase(*candidate);
      block_reasons_.erase(*candidate);
      return candidate;
    }
    skip_display(*candidate, verdict, now);
  }
  return std::nullopt;
}

void LeaseCore::skip_display(std::uint32_t display, const DisplayVerdict& verdict, SteadyTime now) {
  // Throttled per owner and kind: one user's squatted range is one line per
  // interval, not one per number.
  const auto d = skip_log_.admit(verdict.owner_known ? verdict.owner : static_cast<uid_t>(-1),
                                 verdict.use == DisplayUse::stale ? "skipped-stale" : "skipped-live", now);
  if (d.log)
    log(LogLevel::info, LogSubject{{}, {}, {}, 0, display}, [&] {
      return "skipped: " + verdict.reason + " (owner " + owner_text(verdict) +
             (verdict.pid ? ", pid=" + str(verdict.pid) : "") + ")" + skip_log_.suffix(d);
    });
  block_display(display, now + std::chrono::seconds(settings_.recheck_seconds), verdict,
                verdict.use == DisplayUse::stale ? BlockReason::leftovers : BlockReason::in_use);
}

void LeaseCore::survey_free_displays(SteadyTime now) {
  // Acquires find a number taken on the host only when they happen to probe
  // it, so ten X servers started outside the broker would count as free
  // until then and the "no free display" alerts would undercount exactly the
  // range eaten from outside. Status and metrics probe the numbers that look
  // free (at most once a second; a number found taken is skipped for
  // recheck-seconds, as after an acquire's probe). Stale leftovers are left
  // to the acquire that cleans them: they do not keep a number from use.
  if (surveyed_at_ && now - *surveyed_at_ < std::chrono::seconds(1)) return;
  surveyed_at_ = now;
  const std::vector<std::uint32_t> looks_free(allocator_.free_numbers().begin(), allocator_.free_numbers().end());
  for (const std::uint32_t display : looks_free) {
    const DisplayVerdict verdict = host_.examine_display(display, "");
    // Logged like an acquire's skip: throttled per owner and kind, so status
    // and metrics add at most one line per interval and owner.
    if (verdict.use == DisplayUse::live) skip_display(display, verdict, now);
  }
}

v1::Response LeaseCore::acquire(const Call& call) {
  const Caller& caller = call.caller;
  const auto& req = call.request.acquire();
  if (req.purpose().size() > kMaxPurpose) return reply(v1::INVALID, "purpose is longer than 128 bytes");
  // Others read the purpose (admins in list --all, the log): printable text only.
  if (!is_printable_text(req.purpose()))
    return reply(v1::INVALID, "purpose must be printable text (UTF-8, no control, format or bidi characters such as U+202E)");

  const std::size_t held = leases_.count_for_uid(caller.uid);
  if (held >= settings_.max_leases_per_user) {
    counters_.count_refusal(caller.uid, AcquireRefusal::user_quota);
    log_refusal(
        caller, "quota",
        "refused acquire: holds " + str(held) + " of max-leases-per-user=" + str(settings_.max_leases_per_user));
    return reply(v1::EXHAUSTED, "you already hold " + str(held) +
                                    " displays (max-leases-per-user=" + str(settings_.max_leases_per_user) +
                                    "); release one with 'xpra-request-display release :N' or end a session");
  }
  if (leases_.size() >= settings_.max_leases) {
    counters_.count_refusal(caller.uid, AcquireRefusal::host_limit);
    log_refusal(caller, "max-leases",
                "refused acquire: host-wide max-leases=" + str(settings_.max_leases) + " reached");
    return reply(v1::EXHAUSTED, "the host's limit of " + str(settings_.max_leases) +
                                    " displays (max-leases) is reached; try again later or ask the administrator");
  }

  const auto guard = guard_.check_acquire(caller.uid, host_.now());
  if (guard.refusal != RestartGuard::Refusal::none) {
    const auto wait_ms = static_cast<std::uint32_t>(guard.retry_after.count());
    const bool backoff = guard.refusal == RestartGuard::Refusal::backing_off;
    counters_.count_refusal(caller.uid, backoff ? AcquireRefusal::backoff : AcquireRefusal::rate_limit);
    log_refusal(caller, backoff ? "backoff" : "rate",
                "refused acquire: " +
                    (backoff ? "back-off after " + str(guard.consecutive_failures) + " failed sessions"
                             : std::string("acquire rate limit")) +
                    " (retry in " + str(wait_ms) + " ms)",
                backoff ? LogEvent::backoff : LogEvent::none);
    return reply(v1::RATE_LIMITED,
                 backoff ? "your last " + str(guard.consecutive_failures) +
                               " sessions failed soon after start; backing off before the next one. Check the "
                               "session's own error output"
                         : "too many display requests in a short time (acquire-burst=" +
                               str(settings_.restart_guard.acquire_burst) +
                               ", acquires-per-minute=" + str(settings_.restart_guard.acquires_per_minute) + ")",
                 wait_ms);
  }

  const BrokerHost::UserDir dir = host_.prepare_user_dir(caller.uid);
  if (!dir.ok) {
    log(LogLevel::error, subject_of(caller), [&] { return "acquire failed: " + dir.error; });
    return reply(v1::INTERNAL, "the broker could not prepare your directory: " + dir.error);
  }

  const auto display = pick_free_display(dir.path);
  if (!display) {
    counters_.count_refusal(caller.uid, AcquireRefusal::no_free_display);
    const std::string range = str(settings_.display_first) + "-" + str(settings_.display_last);
    log_refusal(caller, "no-display", "refused acquire: no free display in " + range);
    return reply(
        v1::EXHAUSTED,
        "no free display in " + range + " (all leased or in use on the host); see 'xpra-request-display status'",
        settings_.recheck_seconds * 1000);
  }

  Lease lease;
  lease.id = new_lease_id();
  lease.display = *display;
  lease.uid = caller.uid;
  lease.gid = caller.gid;
  lease.holder_pid = caller.pid;
  lease.user = user_name(caller.uid);
  lease.runtime_dir = dir.path;
  lease.purpose = req.purpose();
  lease.connection = call.connection;
  lease.acquired_at = host_.wall_now();
  lease.acquired_steady = host_.now();
  lease.reattach_token = new_lease_id() + new_lease_id();
  v1::Response r = reply(v1::OK, "display :" + str(*display));
  fill_lease(lease, r.mutable_acquire()->mutable_lease());
  r.mutable_acquire()->set_reattach_token(lease.reattach_token);
  const std::string id = lease.id;
  allocator_.take(*display);
  leases_.add(std::move(lease));
  const Lease& added = *leases_.find(id);
  if (records_ && !kept_by_records(records_->lease_added(added), id,
                                   [this, id](bool written) { withdraw_lease(id, written); })) {
    counters_.count_refusal(caller.uid, AcquireRefusal::journal);
    return refused_unrecorded("lease");
  }
  log(LogLevel::info, added, [&] {
    return added.purpose.empty() ? "acquired" : "acquired purpose=\"" + escape_untrusted(added.purpose) + "\"";
  });
  return r;
}

void LeaseCore::withdraw_lease(const std::string& id, bool written) {
  const Lease* lease = leases_.find(id);
  if (!lease || lease->ending) return;
  if (written) {
    // An earlier write carried its record: it exists for a restart, so it
    // ends like any lease (its end is recorded, or owed).
    end_lease(id, "the lease journal could not confirm its acquire", SessionEnd::neutral);
    return;
  }
  // Per uid and reason: one user's acquires on a full disk add a line per
  // interval, not one each (issue 21).
  if (const auto d = refusal_log_.admit(lease->uid, "journal-withdrawn", host_.now()); d.log)
    log(LogLevel::error, *lease, [&] {
      return "withdrawn: the lease journal cannot be written (" + records_->health().error + ")" +
             refusal_log_.suffix(d);
    });
  const auto removed = leases_.remove(id);
  give_back_if_unused(removed->display);
}

// --- release, list ------------------------------------------------------------

v1::Response LeaseCore::release(const Call& call) {
  const Caller& caller = call.caller;
  const auto& req = call.request.release();
  const Lease* lease = call.lease;
  v1::Response r = reply(v1::OK, "released display :" + str(lease->display));
  fill_lease(*lease, r.mutable_release()->mutable_lease());
  r.mutable_release()->mutable_lease()->set_state(v1::ENDING);
  if (lease->ending) return r;
  SessionEnd how = SessionEnd::neutral;
  if (req.has_exit_status() && caller.uid == lease->uid)
    how = req.exit_status() == 0 ? SessionEnd::clean_exit : SessionEnd::failed;
  std::string why = "released by uid=" + str(caller.uid) + "(" + user_name(caller.uid) + ") pid=" + str(caller.pid);
  if (req.has_exit_status()) why += ", session exit status " + std::to_string(req.exit_status());
  end_lease(lease->id, why, how);
  if (records_owed_) return end_not_recorded();
  return r;
}

v1::Response LeaseCore::list(const Call& call) {
  v1::Response r = reply(v1::OK, "");
  auto* out = r.mutable_list();
  const auto leases = call.request.list().all() ? leases_.all() : leases_.for_uid(call.caller.uid);
  // Capped so the reply fits one frame; the total says what was left out.
  for (std::size_t i = 0; i < leases.size() && i < kMaxListedLeases; ++i) fill_lease(*leases[i], out->add_leases());
  out->set_leases_total(static_cast<std::uint32_t>(leases.size()));
  return r;
}

// --- Logins (the PAM module) --------------------------------------------------

v1::Response LeaseCore::open_login(const Call& call) {
  const uid_t uid = call.request.open_login().uid();
  const LogSubject subject{{}, uid, user_name(uid), 0, 0};
  const auto dir = host_.prepare_user_dir(uid);
  if (!dir.ok) {
    log(LogLevel::error, subject, [&] { return "login: open failed: " + dir.error; });
    return reply(v1::INTERNAL, "the broker could not prepare the directory: " + dir.error);
  }
  const std::uint32_t sessions = ++login_sessions_[uid];
  if (records_ && !kept_by_records(records_->login_opened(uid, sessions), {}, [this, uid](bool written) {
        if (written) return;  // the file counts it: so does memory
        if (auto it = login_sessions_.find(uid); it != login_sessions_.end())
          if (--it->second == 0) login_sessions_.erase(it);
      }))
    return refused_unrecorded("login session");
  log(LogLevel::info, subject, [&] { return "login opened, " + str(sessions) + " login session(s), dir=" + dir.path; });
  v1::Response r = reply(v1::OK, "");
  r.mutable_open_login()->set_runtime_dir(dir.path);
  r.mutable_open_login()->set_login_sessions(sessions);
  return r;
}

v1::Response LeaseCore::close_login(const Call& call) {
  const uid_t uid = call.request.close_login().uid();
  const LogSubject subject{{}, uid, user_name(uid), 0, 0};
  std::uint32_t left = 0;
  const auto it = login_sessions_.find(uid);
  const bool counted = it != login_sessions_.end();
  if (counted) {
    left = it->second > 0 ? it->second - 1 : 0;
    if (left == 0)
      login_sessions_.erase(it);
    else
      it->second = left;
  } else {
    // Not knowing of any login, the broker cannot tell that this was the
    // last one: keep the leases rather than end a session still in use.
    log(LogLevel::warn, subject, [&] { return "close_login with no login session counted; leases kept"; });
  }
  // A logout is never refused: its record is owed if the disk is full.
  if (counted && records_) take_progress(records_->login_closed(uid, left).progress);
  std::uint32_t ended = 0;
  if (counted && left == 0 && call.request.close_login().reap_leases()) {
    std::vector<std::string> ids;
    for (const Lease* lease : leases_.for_uid(uid)) ids.push_back(lease->id);
    for (const auto& id : ids) end_lease(id, "last login session of the user ended", SessionEnd::neutral);
    ended = static_cast<std::uint32_t>(ids.size());
  }
  log(LogLevel::info, subject,
      [&] { return "login closed, " + str(left) + " login session(s) left, " + str(ended) + " lease(s) ended"; });
  v1::Response r = reply(v1::OK, "");
  r.mutable_close_login()->set_login_sessions(left);
  r.mutable_close_login()->set_leases_ended(ended);
  r.mutable_close_login()->set_counted(counted);
  return r;
}

// --- The end of a lease -------------------------------------------------------

void LeaseCore::end_lease(std::string id, const std::string& why, SessionEnd how) {
  Lease* lease = leases_.find_mutable(id);
  if (!lease || lease->ending) return;
  lease->ending = true;
  const SteadyTime now = host_.now();
  const auto ran = std::chrono::duration_cast<std::chrono::milliseconds>(now - lease->acquired_steady);
  if (how != SessionEnd::neutral) guard_.record_session_end(lease->uid, how == SessionEnd::failed, ran, now);
  log(LogLevel::info, *lease, [&] { return "ending after " + str(ran.count() / 1000) + " s: " + why; });
  ReapJob job{lease->id, lease->uid, lease->display, lease->runtime_dir, lease->processes};
  // A lease under which nothing ran (no process reported, no X lock on its
  // display) ends at once: one record, no reaper round trip.
  if (host_.nothing_to_reap(job)) return finish_lease(id, {});
  // Recorded, so that a broker restarted mid-reap finishes the reaping
  // instead of handing the lease back to a holder that gave it up.
  if (records_) take_progress(records_->lease_ending(*lease, record_when()).progress);  // owed if the disk is full
  host_.reap(std::move(job), [this, id](ReapOutcome outcome) {
    count_reap(outcome);
    finish_lease(id, outcome);
  });
}

void LeaseCore::count_reap(const ReapOutcome& outcome) {
  counters_.processes_terminated += outcome.terminated;
  counters_.processes_killed += outcome.killed;
  counters_.processes_unkillable += outcome.unkillable;
  counters_.reap_duration.observe(std::chrono::duration<double>(outcome.took).count());
}

void LeaseCore::finish_lease(const std::string& id, const ReapOutcome& outcome) {
  auto lease = leases_.remove(id);
  if (!lease) return;
  ++counters_.leases_ended;
  const LogSubject subject = LogSubject::of(*lease);
  // Only now, with nothing of it running, is the lease forgotten: a crash
  // while reaping finds it again and finishes the job. If the disk is full
  // the record is owed, and the number waits for it.
  std::optional<LeaseRecords::Seq> end_record;
  bool end_refused = false;
  if (records_) {
    const auto receipt = records_->lease_removed(lease->id, leases_.size(), record_when());
    end_record = receipt.seq;
    end_refused = receipt.refused;
    take_progress(receipt.progress);
  }
  if (end_refused)
    if (const auto d = refusal_log_.admit(lease->uid, "journal-end", host_.now()); d.log)
      log(LogLevel::error, subject, [&] {
        return "cannot write its end to the journal (" + records_->health().error +
               "); the display stays out of circulation until it is recorded" + refusal_log_.suffix(d);
      });
  for (const auto& removed : outcome.removed) {
    ++counters_.stale_files_removed;
    log(LogLevel::info, subject, [&] {
      return "removed " + removed.what + " " + removed.path + " (owner uid=" + str(removed.owner) + ", " +
             std::to_string(removed.age_seconds) + " s old)";
    });
  }
  give_back_when_recorded(lease->display, lease->id, end_record);
  if (outcome.unkillable > 0) {
    // Something of it survived SIGKILL: keep the number out of the pool.
    log(
        LogLevel::error, subject,
        [&] {
          return "reaped with " + str(outcome.unkillable) +
                 " process(es) surviving SIGKILL; the display is quarantined for " + str(settings_.quarantine_seconds) +
                 " s";
        },
        LogEvent::reaped_with_survivors);
    block_display(lease->display, host_.now() + std::chrono::seconds(settings_.quarantine_seconds),
                  DisplayVerdict{DisplayUse::live, "processes of the last lease survived SIGKILL", lease->uid, 0},
                  BlockReason::reap_survivors);
  }
  log(LogLevel::info, subject, [&] {
    return "ended: " + str(outcome.terminated) + " process(es) terminated, " + str(outcome.killed) + " killed, " +
           str(outcome.unkillable) + " unkillable, reaped in " + str(outcome.took.count()) + " ms";
  });
}

// --- Processes under a lease ------------------------------------------------------

v1::Response LeaseCore::report_process(const Call& call) {
  const auto& req = call.request.report_process();
  Lease* lease = call.lease;
  if (lease->processes.size() >= kMaxProcessesPerLease)
    return reply(v1::EXHAUSTED, "a lease tracks at most 16 reported processes");
  const auto process = host_.open_process(req.pid());
  // A process that is not the lease owner's is refused exactly like a missing
  // one: the broker never acts on, nor reveals, another user's processes.
  if (!process || process->uid != lease->uid) {
    log_refusal(call.caller, "report-process",
                "lease=" + lease->id + " reported pid " + str(req.pid()) + " that is not its own; refused");
    return reply(v1::DENIED, "pid " + str(req.pid()) + " is not a running process of yours");
  }
  TrackedProcess tracked;
  tracked.pid = req.pid();
  tracked.role = req.role();
  tracked.handle = process->handle;
  if (process->pgid == process->pid) tracked.group_leader = process->pgid;
  if (process->sid == process->pid) tracked.session_leader = process->sid;
  tracked.start_time = process->start_time;
  lease->processes.push_back(std::move(tracked));
  const pid_t pid = req.pid();
  if (records_ && !kept_by_records(records_->process_added(*lease, lease->processes.back()), {},
                                   [this, id = lease->id, pid](bool written) { untrack_process(id, pid, written); }))
    return refused_unrecorded("process");
  log(LogLevel::info, *lease,
      [&] { return "tracks pid " + str(pid) + " (" + process->comm + ", " + v1::ProcessRole_Name(req.role()) + ")"; });
  v1::Response r = reply(v1::OK, "");
  r.mutable_report_process();
  return r;
}

void LeaseCore::untrack_process(const std::string& lease_id, pid_t pid, bool written) {
  Lease* lease = leases_.find_mutable(lease_id);
  if (written || !lease) return;  // recorded: tracked, and reaped with its lease
  std::erase_if(lease->processes, [pid](const TrackedProcess& p) { return p.pid == pid; });
  if (const auto d = refusal_log_.admit(lease->uid, "journal-untracked", host_.now()); d.log)
    log(LogLevel::error, *lease, [&] {
      return "does not track pid " + str(pid) + ": the lease journal cannot be written (" +
             records_->health().error + "); the client was told so" + refusal_log_.suffix(d);
    });
}

std::uint32_t LeaseCore::xserver_warn_threshold() const {
  return settings_.xserver_warn_per_user ? settings_.xserver_warn_per_user : settings_.max_leases_per_user + 1;
}

void LeaseCore::check_for_leaked_x_servers() {
  guard_.forget_idle(host_.now());
  const auto census = host_.x_servers();
  if (!census) return;
  for (const auto& entry : census->by_uid) {
    // Named copies: clang does not let a lambda capture a structured binding.
    const uid_t uid = entry.first;
    const auto& pids = entry.second;
    if (pids.size() <= xserver_warn_threshold()) continue;
    std::string list;
    for (std::size_t i = 0; i < pids.size() && i < 64; ++i) list += (list.empty() ? "" : ",") + str(pids[i]);
    if (pids.size() > 64) list += ",...";
    log(
        LogLevel::warn, LogSubject{{}, uid, user_name(uid), 0, 0},
        [&] {
          return "runs " + str(pids.size()) + " X servers (threshold " + str(xserver_warn_threshold()) + "), " +
                 str(leases_.count_for_uid(uid)) + " under broker leases: pids " + list;
        },
        LogEvent::leak_watchdog);
  }
  // Numbers held outside the broker, by whoever holds them (a live lock's
  // X server, a socket listener the kernel names): one line per user and
  // interval, however many numbers (issue 21).
  for (const auto& held : blocked_by_owner()) {
    // Named copies: clang does not let a lambda capture a structured binding.
    const uid_t owner = held.first;
    const auto count = held.second;
    if (owner == 0 || count <= xserver_warn_threshold()) continue;
    log(
        LogLevel::warn, LogSubject{{}, owner, user_name(owner), 0, 0},
        [&] {
          return "holds " + str(count) + " display numbers of the range outside broker leases (threshold " +
                 str(xserver_warn_threshold()) + "): an X server or socket listener on each; see `status` as root";
        },
        LogEvent::leak_watchdog);
  }
  report_orphans(*census);
}

void LeaseCore::report_orphans(const XServerSnapshot& census) {
  // Said when a user's count grows, not every round: a user's own tmux
  // server left to init during a lease would otherwise repeat forever.
  std::map<uid_t, std::size_t> now;
  for (const auto& entry : census.orphans_by_uid) {
    const uid_t uid = entry.first;
    const auto& orphans = entry.second;
    now[uid] = orphans.size();
    const auto before = orphans_reported_.find(uid);
    if (before != orphans_reported_.end() && before->second >= orphans.size()) continue;
    std::string list;
    for (std::size_t i = 0; i < orphans.size() && i < 16; ++i)
      list += (list.empty() ? "" : ", ") + str(orphans[i].pid) + " (" + escape_untrusted(orphans[i].comm, 32) +
              ", lease " + orphans[i].lease + " :" + str(orphans[i].display) + ")";
    if (orphans.size() > 16) list += ", ...";
    log(
        LogLevel::warn, LogSubject{{}, uid, user_name(uid), 0, 0},
        [&] {
          return "has " + str(orphans.size()) +
                 " process(es) that outlived the lease they started under (reparented to init): " + list;
        },
        LogEvent::orphans_outlived_lease);
  }
  orphans_reported_ = std::move(now);
}

// --- Display conflicts ------------------------------------------------------------

void LeaseCore::block_display(std::uint32_t display, SteadyTime until, const DisplayVerdict& finding,
                              BlockReason reason) {
  allocator_.block(display, until, finding.reason);
  host_findings_[display] = finding;
  block_reasons_[display] = reason;
}

std::size_t LeaseCore::quarantines_of(uid_t uid) {
  std::size_t n = 0;
  for (auto it = quarantined_by_.begin(); it != quarantined_by_.end();) {
    if (!allocator_.blocked().count(it->first)) {
      it = quarantined_by_.erase(it);  // the quarantine ran out
      continue;
    }
    n += it->second == uid;
    ++it;
  }
  return n;
}

v1::Response LeaseCore::report_start_failure(const Call& call) {
  const auto& req = call.request.report_start_failure();
  Lease* lease = call.lease;
  const std::uint32_t display = lease->display;
  const std::string detail = escape_untrusted(req.detail(), 512);
  v1::Response r = reply(v1::OK, "");
  auto* out = r.mutable_report_start_failure();
  // A conflict is a claim about the host: believed only when the broker
  // itself finds something of another owner on the display. A believed one
  // is the host's doing (an X server outside the broker), not a failing
  // session, and must not hold the retry back; one the broker cannot confirm
  // counts against the reporter like any failed start, so reporting
  // conflicts cannot take numbers away from other users.
  std::optional<ConflictEvidence> evidence;
  if (req.failure() == v1::DISPLAY_CONFLICT) evidence = host_.confirm_conflict(display, lease->runtime_dir, lease->uid);
  const LogSubject subject = LogSubject::of(*lease);
  if (!evidence) {
    guard_.record_start_failure(lease->uid, host_.now());
    log(LogLevel::warn, subject, [&] {
      return "start failed (" + v1::StartFailure_Name(req.failure()) + ")" +
             (req.failure() == v1::DISPLAY_CONFLICT ? ", but the broker finds no conflict on the host; counted as a "
                                                      "failed start"
                                                    : "") +
             ": \"" + detail + "\"";
    });
  } else {
    out->set_conflict_confirmed(true);
    // Bounded per reporter: beyond that the number is not blocked at all;
    // the next probe judges it like any other (a live server skipped, a
    // leftover cleaned).
    const std::size_t held = quarantines_of(lease->uid);
    const bool quarantine = held < settings_.max_quarantines_per_user;
    if (quarantine) {
      block_display(
          display, host_.now() + std::chrono::seconds(settings_.quarantine_seconds),
          DisplayVerdict{DisplayUse::live, "quarantined after a display conflict: " + evidence->what, lease->uid, 0},
          BlockReason::quarantined);
      quarantined_by_[display] = lease->uid;
      ++counters_.quarantines;
      out->set_quarantined_display(display);
    }
    log(
        LogLevel::warn, subject,
        [&] {
          return "start failed with a display conflict (" + evidence->what + "); " +
                 (quarantine ? "quarantined for " + str(settings_.quarantine_seconds) + " s"
                             : "not quarantined: the user's reports already hold " + str(held) +
                                   " (max-quarantines-per-user)") +
                 ": \"" + detail + "\"";
        },
        quarantine ? LogEvent::quarantine : LogEvent::none);
  }
  end_lease(lease->id, "start failed", SessionEnd::neutral);
  return r;
}

// --- Replies --------------------------------------------------------------------

void LeaseCore::fill_lease(const Lease& lease, v1::Lease* out) const {
  out->set_id(lease.id);
  out->set_display(lease.display);
  out->set_uid(lease.uid);
  out->set_gid(lease.gid);
  out->set_pid(lease.holder_pid);
  out->set_user(lease.user);
  out->set_runtime_dir(lease.runtime_dir);
  out->set_purpose(lease.purpose);
  out->set_state(lease.ending ? v1::ENDING : lease.detached ? v1::DETACHED : v1::ACTIVE);
  for (const auto& p : lease.processes) out->add_process_pids(p.pid);
  out->set_acquired_unix_ms(ms(lease.acquired_at.time_since_epoch()));
}

}  // namespace xpra_broker
