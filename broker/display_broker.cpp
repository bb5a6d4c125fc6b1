#include "display_broker.h"

#include "log_sink.h"

#include <pwd.h>
#include <signal.h>
#include <sys/random.h>

#include <algorithm>
#include <cstring>
#include <spdlog/spdlog.h>

#include "host_display.h"
#include "process_inspector.h"
#include "untrusted_text.h"
#include "version.h"

namespace xpra_broker {

namespace {

v1::Response reply(v1::Status status, std::string message, std::uint32_t retry_after_ms = 0) {
  v1::Response r;
  r.set_status(status);
  r.set_message(std::move(message));
  if (retry_after_ms) r.set_retry_after_ms(retry_after_ms);
  return r;
}

constexpr std::size_t kMaxPurpose = 128;

std::string describe_caller(const Caller& c, const std::string& name) {
  return "uid=" + std::to_string(c.uid) + "(" + name + ") pid=" + std::to_string(c.pid);
}

}  // namespace

std::string new_lease_id() {
  // Ids are drawn from a buffer refilled 32 ids at a time: one getrandom()
  // call per 32 acquires instead of one each. Single-threaded use only.
  static std::uint8_t pool[256];
  static std::size_t used = sizeof(pool);
  if (used + 8 > sizeof(pool)) {
    if (::getrandom(pool, sizeof(pool), 0) != static_cast<ssize_t>(sizeof(pool)))
      throw std::runtime_error("getrandom failed");  // cannot happen once the pool is seeded
    used = 0;
  }
  const std::uint8_t* bytes = pool + used;
  used += 8;
  static const char hex[] = "0123456789abcdef";
  std::string id;
  for (int i = 0; i < 8; ++i) {
    const std::uint8_t b = bytes[i];
    id.push_back(hex[b >> 4]);
    id.push_back(hex[b & 15]);
  }
  return id;
}

DisplayBroker::DisplayBroker(const BrokerConfig& config, AccessPolicy policy, std::unique_ptr<DisplayProbe> probe,
                             std::unique_ptr<UserDirectories> user_dirs, SteadyClock clock)
    : config_(config), policy_(std::move(policy)), probe_(std::move(probe)), user_dirs_(std::move(user_dirs)),
      clock_(std::move(clock)), started_(clock_()), allocator_(config.display_first, config.display_last),
      guard_(RestartGuardSettings{config.acquire_burst, config.acquires_per_minute, config.failures_before_backoff,
                                  std::chrono::milliseconds(config.backoff_base_ms),
                                  std::chrono::seconds(config.backoff_max_seconds),
                                  std::chrono::seconds(config.healthy_after_seconds)}) {}

const std::unordered_map<int, DisplayBroker::Handler>& DisplayBroker::handlers() {
  using V = v1::Request;
  static const std::unordered_map<int, Handler> table = {
      {V::kAcquire, &DisplayBroker::acquire},       {V::kRelease, &DisplayBroker::release},
      {V::kList, &DisplayBroker::list},             {V::kStatus, &DisplayBroker::status},
      {V::kOpenLogin, &DisplayBroker::open_login}, {V::kCloseLogin, &DisplayBroker::close_login},
      {V::kReportProcess, &DisplayBroker::report_process},
      {V::kReportStartFailure, &DisplayBroker::report_start_failure},
      {V::kReattach, &DisplayBroker::reattach},
  };
  return table;
}

v1::Response DisplayBroker::handle(const Caller& caller, ConnectionId connection, const v1::Request& request) {
  const auto decision = check_verb_access(policy_, caller, request.verb_case());
  if (!decision.allowed) {
    if (decision.status == v1::DENIED)
      log_refusal(caller.uid, find_verb_rule(request.verb_case())->name, "denied {} for {}",
                  find_verb_rule(request.verb_case())->name, describe_caller(caller, user_name(caller.uid)));
    return reply(decision.status, decision.message);
  }
  const auto it = handlers().find(request.verb_case());
  if (it == handlers().end()) return reply(v1::INVALID, "unknown request verb");
  // Records made while handling wait for commit_journal(); records made by
  // timers and the reaper are written at once (after these, in order). The
  // probe's name watch is drained once for the whole request.
  struct RequestScope {
    LeaseJournal* journal;
    const DisplayProbe& probe;
    RequestScope(LeaseJournal* j, const DisplayProbe& p) : journal(j), probe(p) {
      if (journal) journal->set_batching(true);
      probe.begin_request();
    }
    ~RequestScope() {
      if (journal) journal->set_batching(false);
      probe.end_request();
    }
  } scope(group_commit_ ? journal_ : nullptr, *probe_);
  return (this->*(it->second))(caller, connection, request);
}

template <typename... Args>
void DisplayBroker::log_refusal(uid_t uid, const char* reason, const char* format, Args&&... args) {
  const auto d = refusal_log_.admit(uid, reason, clock_());
  if (!d.log) return;
  spdlog::warn("{}{}", fmt::format(fmt::runtime(format), std::forward<Args>(args)...), refusal_log_.suffix(d));
}

bool DisplayBroker::connection_holds_leases(ConnectionId connection) const {
  return !leases_.ids_for_connection(connection).empty();
}

std::shared_ptr<const XServerSnapshot> DisplayBroker::x_servers_now() {
  if (census_) return census_->latest();
  return std::make_shared<const XServerSnapshot>(count_x_servers());
}

void DisplayBroker::block_display(std::uint32_t display, SteadyTime until, const DisplayVerdict& finding,
                                  std::string public_reason) {
  allocator_.block(display, until, finding.reason);
  host_findings_[display] = finding;
  public_reasons_[display] = std::move(public_reason);
}

std::size_t DisplayBroker::quarantines_of(uid_t uid) {
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

DisplayBroker::CommitOutcome DisplayBroker::commit_journal() {
  CommitOutcome outcome;
  if (!journal_) return outcome;
  const auto result = journal_->commit();
  outcome.ok = result.ok;
  auto uncommitted = std::move(uncommitted_);
  uncommitted_.clear();
  if (!result.ok) {
    // The requests have not been answered yet: roll back what they changed,
    // newest first. A record an earlier write outside this batch carried is
    // in the file: its change stays, and is ended the normal way.
    for (auto it = uncommitted.rbegin(); it != uncommitted.rend(); ++it) {
      const bool written = std::find(result.dropped.begin(), result.dropped.end(), it->seq) == result.dropped.end();
      if (!it->lease_id.empty() && !written) outcome.withdrawn.push_back(it->lease_id);
      it->undo(written);
    }
  }
  settle_journal();
  return outcome;
}

v1::Response DisplayBroker::reply_after_failed_commit(v1::Response response, const CommitOutcome& outcome) const {
  if (response.status() != v1::OK) return response;
  if (response.has_acquire() && std::find(outcome.withdrawn.begin(), outcome.withdrawn.end(),
                                          response.acquire().lease().id()) != outcome.withdrawn.end())
    return journal_refused("lease");
  // Every other announcing reply of the batch had its record in the failed
  // write (a reply waits for the commit after its own request).
  if (response.has_report_process()) return journal_refused("process");
  if (response.has_reattach()) return journal_refused("reattach");
  if (response.has_open_login()) return journal_refused("login session");
  // Ends are never undone, but not acknowledged either until recorded: a
  // restart before that brings the lease back (and reaps it then).
  if (response.has_release() || response.has_report_start_failure() || response.has_close_login())
    return end_not_recorded();
  return response;
}

v1::Response DisplayBroker::end_not_recorded() {
  return reply(v1::INTERNAL,
               "the lease is ending (what ran under it is being stopped), but the broker cannot record that in its "
               "lease journal yet (disk full?); its display stays reserved until it can. Ask the administrator to "
               "free space in the broker's runtime dir");
}

v1::Response DisplayBroker::journal_refused(const char* what) {
  return reply(v1::INTERNAL, std::string("the broker cannot record the ") + what +
                                 " (its lease journal cannot be written: disk full?); nothing was changed. Ask the "
                                 "administrator to free space in the broker's runtime dir");
}

bool DisplayBroker::journaled_or_undone(bool appended, std::string lease_id, std::function<void(bool written)> undo) {
  if (!appended) {
    undo(false);
    settle_journal();
    return false;
  }
  if (!journal_->is_written(journal_->last_seq()))
    uncommitted_.push_back({journal_->last_seq(), std::move(lease_id), std::move(undo)});
  return true;
}

void DisplayBroker::give_back_when_recorded(std::uint32_t display, std::string lease_id) {
  if (journal_ && !journal_->is_written(journal_->last_seq())) {
    // Its end is not in the journal yet: a restart now would bring the
    // lease back, so the number must not go to anyone else meanwhile.
    held_for_journal_.push_back({journal_->last_seq(), display, std::move(lease_id)});
    return;
  }
  give_back_if_unused(display);
}

void DisplayBroker::give_back_if_unused(std::uint32_t display) {
  if (leases_.find_by_display(display) || orphan_reaps_.count(display)) return;
  allocator_.give_back(display);
}

void DisplayBroker::retry_journal() {
  if (!journal_) return;
  journal_->retry();
  if (journal_->compaction_failed()) journal_->compact(journal_snapshot());
  settle_journal();
}

LeaseJournal::Snapshot DisplayBroker::journal_snapshot() const {
  LeaseJournal::Snapshot snapshot;
  for (const Lease* l : leases_.all()) snapshot.leases.push_back(to_journaled(*l));
  for (const auto& [uid, sessions] : login_sessions_) snapshot.login_sessions[uid] = sessions;
  return snapshot;
}

void DisplayBroker::settle_journal() {
  if (!journal_) return;
  std::size_t released = 0;
  std::erase_if(held_for_journal_, [&](const HeldForJournal& held) {
    if (!journal_->is_written(held.seq)) return false;
    give_back_if_unused(held.display);
    ++released;
    return true;
  });
  const bool degraded = journal_->degraded();
  ScopedLogEvent event(LogEvent::journal_degraded);
  if (degraded && !journal_degraded_)
    spdlog::error("lease journal: cannot be written ({}): running degraded. New leases, process reports, reattaches "
                  "and logins are refused (INTERNAL) until space is freed; running sessions keep running; ended "
                  "leases keep their displays out of circulation until their end is recorded",
                  std::strerror(journal_->last_error()));
  else if (!degraded && journal_degraded_)
    spdlog::info("lease journal: writable again; {} display(s) back in circulation", released);
  if (journal_->compaction_failed() && !compaction_failure_logged_)
    spdlog::error("lease journal: compaction failed ({}); retried every second", std::strerror(journal_->last_error()));
  compaction_failure_logged_ = journal_->compaction_failed();
  journal_degraded_ = degraded;
}

std::optional<std::uint32_t> DisplayBroker::pick_free_display(const std::string& user_dir) {
  const SteadyTime now = clock_();
  allocator_.expire_blocks(now);
  // Each probe either takes the number or blocks it, so this loop probes every
  // number at most once.
  while (auto candidate = allocator_.next_candidate()) {
    DisplayVerdict verdict = classify_display(probe_->probe(*candidate, user_dir));
    if (verdict.use == DisplayUse::stale && cleaner_ && config_.clean_stale) {
      // Leftovers of someone else (a crashed session, a stale socket in the
      // sticky /tmp/.X11-unix): remove them and look again.
      for (const auto& removed : cleaner_->clean_display(*candidate, user_dir)) {
        ++stale_removed_;
        spdlog::info("display=:{} removed {} {} (owner uid={}, {} s old)", *candidate, removed.what, removed.path,
                     removed.owner, removed.age_seconds);
      }
      verdict = classify_display(probe_->probe(*candidate, user_dir));
    }
    if (verdict.use == DisplayUse::free) {
      host_findings_.erase(*candidate);
      public_reasons_.erase(*candidate);
      return candidate;
    }
    spdlog::info("display=:{} skipped: {} (owner uid={}{})", *candidate, verdict.reason, verdict.owner,
                 verdict.pid ? ", pid=" + std::to_string(verdict.pid) : "");
    block_display(*candidate, now + std::chrono::seconds(config_.recheck_seconds), verdict,
                  verdict.use == DisplayUse::stale ? "leftover files on the host" : "in use on the host");
  }
  return std::nullopt;
}

v1::Response DisplayBroker::acquire(const Caller& caller, ConnectionId connection, const v1::Request& request) {
  const auto& req = request.acquire();
  const std::string name = user_name(caller.uid);
  if (req.purpose().size() > kMaxPurpose) return reply(v1::INVALID, "purpose is longer than 128 bytes");
  // Others read the purpose (admins in list --all, the log): printable text only.
  if (!is_printable_text(req.purpose()))
    return reply(v1::INVALID, "purpose must be printable text (UTF-8, no control characters)");

  const std::size_t held = leases_.count_for_uid(caller.uid);
  if (held >= config_.max_leases_per_user) {
    log_refusal(caller.uid, "quota", "refused acquire for {}: holds {} of max-leases-per-user={}",
                describe_caller(caller, name), held, config_.max_leases_per_user);
    return reply(v1::EXHAUSTED,
                 "you already hold " + std::to_string(held) + " displays (max-leases-per-user=" +
                     std::to_string(config_.max_leases_per_user) +
                     "); release one with 'xpra-request-display release :N' or end a session");
  }
  if (leases_.size() >= config_.max_leases) {
    log_refusal(caller.uid, "max-leases", "refused acquire for {}: host-wide max-leases={} reached",
                describe_caller(caller, name), config_.max_leases);
    return reply(v1::EXHAUSTED, "the host's limit of " + std::to_string(config_.max_leases) +
                                    " displays (max-leases) is reached; try again later or ask the administrator");
  }

  const auto guard = guard_.check_acquire(caller.uid, clock_());
  if (guard.refusal != RestartGuard::Refusal::none) {
    const auto wait_ms = static_cast<std::uint32_t>(guard.retry_after.count());
    const bool backoff = guard.refusal == RestartGuard::Refusal::backing_off;
    ScopedLogEvent event(backoff ? LogEvent::backoff : LogEvent::none);
    log_refusal(caller.uid, backoff ? "backoff" : "rate", "refused acquire for {}: {} (retry in {} ms)",
                describe_caller(caller, name),
                backoff ? "back-off after " + std::to_string(guard.consecutive_failures) + " failed sessions"
                        : std::string("acquire rate limit"),
                wait_ms);
    return reply(v1::RATE_LIMITED,
                 backoff ? "your last " + std::to_string(guard.consecutive_failures) +
                               " sessions failed soon after start; backing off before the next one. Check the "
                               "session's own error output"
                         : "too many display requests in a short time (acquire-burst=" +
                               std::to_string(config_.acquire_burst) +
                               ", acquires-per-minute=" + std::to_string(config_.acquires_per_minute) + ")",
                 wait_ms);
  }

  // The directory is checked (and repaired) unless the probe's watch has
  // seen nothing change on it since the last check.
  UserDirectories::Result dir;
  dir.path = user_dirs_->path_for(caller.uid);
  dir.ok = probe_->user_dir_intact(dir.path);
  if (!dir.ok) {
    dir = user_dirs_->ensure(caller.uid);
    if (dir.ok) probe_->user_dir_verified(dir.path);
  }
  if (!dir.ok) {
    spdlog::error("acquire for {} failed: {}", describe_caller(caller, name), dir.error);
    return reply(v1::INTERNAL, "the broker could not prepare your directory: " + dir.error);
  }

  const auto display = pick_free_display(dir.path);
  if (!display) {
    log_refusal(caller.uid, "no-display", "refused acquire for {}: no free display in {}-{}",
                describe_caller(caller, name), config_.display_first, config_.display_last);
    return reply(v1::EXHAUSTED,
                 "no free display in " + std::to_string(config_.display_first) + "-" +
                     std::to_string(config_.display_last) +
                     " (all leased or in use on the host); see 'xpra-request-display status'",
                 config_.recheck_seconds * 1000);
  }

  Lease lease;
  lease.id = new_lease_id();
  lease.display = *display;
  lease.uid = caller.uid;
  lease.gid = caller.gid;
  lease.holder_pid = caller.pid;
  lease.user = name;
  lease.runtime_dir = dir.path;
  lease.purpose = req.purpose();
  lease.connection = connection;
  lease.acquired_at = std::chrono::system_clock::now();
  lease.acquired_steady = clock_();
  lease.reattach_token = new_lease_id() + new_lease_id();
  v1::Response r = reply(v1::OK, "display :" + std::to_string(*display));
  fill_lease(lease, r.mutable_acquire()->mutable_lease());
  r.mutable_acquire()->set_reattach_token(lease.reattach_token);
  const std::string id = lease.id;
  const std::string purpose = lease.purpose;
  allocator_.take(*display);
  leases_.add(std::move(lease));
  if (journal_ && !journaled_or_undone(journal_->lease_added(to_journaled(*leases_.find(id))), id,
                                       [this, id](bool written) { withdraw_lease(id, written); }))
    return journal_refused("lease");
  spdlog::info("lease={} {} display=:{} acquired{}", id, describe_caller(caller, name), *display,
               purpose.empty() ? "" : " purpose=\"" + escape_untrusted(purpose) + "\"");
  return r;
}

void DisplayBroker::withdraw_lease(const std::string& id, bool written) {
  const Lease* lease = leases_.find(id);
  if (!lease || lease->ending) return;
  if (written) {
    // An earlier write carried its record: it exists for a restart, so it
    // ends like any lease (its end is journaled, or owed).
    end_lease(id, "the lease journal could not confirm its acquire", SessionEnd::neutral);
    return;
  }
  spdlog::error("lease={} uid={}({}) display=:{} withdrawn: the lease journal cannot be written ({})", lease->id,
                lease->uid, lease->user, lease->display, std::strerror(journal_->last_error()));
  const auto removed = leases_.remove(id);
  give_back_if_unused(removed->display);
}

v1::Response DisplayBroker::release(const Caller& caller, ConnectionId, const v1::Request& request) {
  const auto& req = request.release();
  const Lease* lease = nullptr;
  std::string what;
  switch (req.target_case()) {
    case v1::ReleaseRequest::kLeaseId:
      lease = leases_.find(req.lease_id());
      what = "lease " + escape_untrusted(req.lease_id(), 64);
      break;
    case v1::ReleaseRequest::kDisplay:
      lease = leases_.find_by_display(req.display());
      what = "display :" + std::to_string(req.display());
      break;
    default: return reply(v1::INVALID, "release needs a lease id or a display");
  }
  // Another user's lease is reported exactly like a missing one: users never
  // learn about each other's leases.
  if (!lease || !policy_.may_manage_lease(caller, lease->uid))
    return reply(v1::NOT_FOUND, "you hold no " + what + "; 'xpra-request-display list' shows your leases");

  v1::Response r = reply(v1::OK, "released display :" + std::to_string(lease->display));
  fill_lease(*lease, r.mutable_release()->mutable_lease());
  r.mutable_release()->mutable_lease()->set_state(v1::ENDING);
  if (lease->ending) return r;
  SessionEnd how = SessionEnd::neutral;
  if (req.has_exit_status() && caller.uid == lease->uid)
    how = req.exit_status() == 0 ? SessionEnd::clean_exit : SessionEnd::failed;
  std::string why = "released by " + describe_caller(caller, user_name(caller.uid));
  if (req.has_exit_status()) why += ", session exit status " + std::to_string(req.exit_status());
  end_lease(lease->id, why, how);
  // Without group commit the end was written (or refused) at once.
  if (journal_ && !group_commit_ && journal_->owed_records() > 0) return end_not_recorded();
  return r;
}

v1::Response DisplayBroker::list(const Caller& caller, ConnectionId, const v1::Request& request) {
  v1::Response r = reply(v1::OK, "");
  auto* out = r.mutable_list();
  if (request.list().all() && !policy_.is_admin(caller))
    return reply(v1::DENIED, "only root and members of admin-groups may list every user's leases");
  const auto leases = request.list().all() ? leases_.all() : leases_.for_uid(caller.uid);
  // Capped so the reply fits one frame; the total says what was left out.
  for (std::size_t i = 0; i < leases.size() && i < kMaxListedLeases; ++i) fill_lease(*leases[i], out->add_leases());
  out->set_leases_total(static_cast<std::uint32_t>(leases.size()));
  return r;
}

v1::Response DisplayBroker::status(const Caller& caller, ConnectionId, const v1::Request&) {
  allocator_.expire_blocks(clock_());
  v1::Response r = reply(v1::OK, "");
  auto* s = r.mutable_status_reply();
  s->set_version(XPRA_BROKER_VERSION);
  s->set_range_first(config_.display_first);
  s->set_range_last(config_.display_last);
  s->set_leases(static_cast<std::uint32_t>(leases_.size()));
  s->set_max_leases(config_.max_leases);
  s->set_max_leases_per_user(config_.max_leases_per_user);
  s->set_free_displays(static_cast<std::uint32_t>(allocator_.free_count()));
  s->set_connections(static_cast<std::uint32_t>(connections_));
  s->set_uptime_ms(std::chrono::duration_cast<std::chrono::milliseconds>(clock_() - started_).count());
  s->set_stale_removed(stale_removed_);
  s->set_watched_directories(static_cast<std::uint32_t>(probe_->watched_directories()));
  s->set_watch_rescans(static_cast<std::uint32_t>(probe_->watch_rescans()));
  const bool admin = policy_.is_admin(caller);
  // Start-up findings are the admin's business (they may name users).
  if (admin)
    for (const auto& w : warnings_) s->add_warnings(w);
  // Counted off the event loop (x_server_census.h): reading it costs nothing.
  const auto census = x_servers_now();
  s->set_x_servers_age_ms(
      census ? std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() -
                                                                     census->taken_at)
                   .count()
             : -1);
  std::uint32_t x_users = 0;
  if (census)
    for (const auto& [uid, pids] : census->by_uid) {
      // Users see their own; root and admins see everyone's.
      if (!admin && uid != caller.uid) continue;
      if (++x_users > kMaxListedXServerUsers) continue;
      auto* x = s->add_x_servers();
      x->set_uid(uid);
      x->set_user(user_name(uid));
      for (std::size_t i = 0; i < pids.size() && i < kMaxListedPidsPerUser; ++i) x->add_pids(pids[i]);
      x->set_count(static_cast<std::uint32_t>(pids.size()));
      x->set_leases(static_cast<std::uint32_t>(leases_.count_for_uid(uid)));
    }
  s->set_x_server_users_total(x_users);
  // Admins see what the broker found (owner, pid, its words); users only
  // that a number is blocked and a generic reason: never another user's
  // uid or text.
  for (const auto& [display, block] : allocator_.blocked()) {
    if (static_cast<std::size_t>(s->blocked_size()) >= kMaxListedBlocked) break;
    auto* b = s->add_blocked();
    b->set_display(display);
    const auto f = host_findings_.find(display);
    if (f != host_findings_.end()) b->set_stale(f->second.use == DisplayUse::stale);
    if (admin) {
      b->set_reason(block.reason);
      if (f != host_findings_.end()) {
        b->set_owner_uid(f->second.owner);
        b->set_pid(f->second.pid);
      }
    } else {
      const auto p = public_reasons_.find(display);
      b->set_reason(p != public_reasons_.end() ? p->second : "not available");
    }
  }
  s->set_blocked_total(static_cast<std::uint32_t>(allocator_.blocked().size()));
  if (journal_ && journal_->degraded())
    s->set_journal_problem(std::string(journal_->compaction_failed() && !journal_->owed_records()
                                           ? "compaction failed: "
                                           : "cannot be written: ") +
                           std::strerror(journal_->last_error()) +
                           "; new leases are refused until space is freed in the runtime dir, running sessions "
                           "keep running");
  if (journal_) s->set_journal_owed_records(static_cast<std::uint32_t>(journal_->owed_records()));
  for (const auto& held : held_for_journal_)
    if (static_cast<std::size_t>(s->displays_awaiting_journal_size()) < kMaxListedBlocked)
      s->add_displays_awaiting_journal(held.display);
  return r;
}

v1::Response DisplayBroker::open_login(const Caller& caller, ConnectionId, const v1::Request& request) {
  const uid_t uid = request.open_login().uid();
  const auto dir = user_dirs_->ensure(uid);
  if (!dir.ok) {
    spdlog::error("open_login uid={}({}) failed: {}", uid, user_name(uid), dir.error);
    return reply(v1::INTERNAL, "the broker could not prepare the directory: " + dir.error);
  }
  const std::uint32_t sessions = ++login_sessions_[uid];
  if (journal_ && !journaled_or_undone(journal_->login_sessions(uid, sessions, LeaseJournal::Kind::withdrawable), {},
                                       [this, uid](bool written) {
                                         if (written) return;  // the file counts it: so does memory
                                         if (auto it = login_sessions_.find(uid); it != login_sessions_.end())
                                           if (--it->second == 0) login_sessions_.erase(it);
                                       }))
    return journal_refused("login session");
  spdlog::info("login uid={}({}) opened, {} login session(s), dir={}", uid, user_name(uid), sessions, dir.path);
  v1::Response r = reply(v1::OK, "");
  r.mutable_open_login()->set_runtime_dir(dir.path);
  r.mutable_open_login()->set_login_sessions(sessions);
  return r;
}

v1::Response DisplayBroker::close_login(const Caller& caller, ConnectionId, const v1::Request& request) {
  const uid_t uid = request.close_login().uid();
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
    spdlog::warn("close_login for uid={}({}) with no login session counted; leases kept", uid, user_name(uid));
  }
  // A logout is never refused: its record is owed if the disk is full.
  if (counted && journal_) journal_->login_sessions(uid, left, LeaseJournal::Kind::owed);
  std::uint32_t ended = 0;
  if (counted && left == 0 && request.close_login().reap_leases()) {
    std::vector<std::string> ids;
    for (const Lease* lease : leases_.for_uid(uid)) ids.push_back(lease->id);
    for (const auto& id : ids) end_lease(id, "last login session of the user ended", SessionEnd::neutral);
    ended = static_cast<std::uint32_t>(ids.size());
  }
  spdlog::info("login uid={}({}) closed, {} login session(s) left, {} lease(s) ended", uid, user_name(uid), left,
               ended);
  v1::Response r = reply(v1::OK, "");
  r.mutable_close_login()->set_login_sessions(left);
  r.mutable_close_login()->set_leases_ended(ended);
  r.mutable_close_login()->set_counted(counted);
  return r;
}

void DisplayBroker::connection_closed(ConnectionId connection) {
  // A holder that vanishes without releasing (crash, kill -9) is a failed
  // session as far as the restart-loop defence is concerned.
  for (const auto& id : leases_.ids_for_connection(connection))
    end_lease(id, "holder disconnected without releasing", SessionEnd::failed);
}

void DisplayBroker::end_lease(std::string id, const std::string& why, SessionEnd how) {
  Lease* lease = leases_.find_mutable(id);
  if (!lease || lease->ending) return;
  lease->ending = true;
  const auto ran = std::chrono::duration_cast<std::chrono::milliseconds>(clock_() - lease->acquired_steady);
  if (how != SessionEnd::neutral) guard_.record_session_end(lease->uid, how == SessionEnd::failed, ran, clock_());
  spdlog::info("lease={} uid={}({}) pid={} display=:{} ending after {} s: {}", lease->id, lease->uid, lease->user,
               lease->holder_pid, lease->display, ran.count() / 1000, why);
  ReapJob job{lease->id, lease->uid, lease->display, lease->runtime_dir, lease->processes};
  // A lease under which nothing ran (no process reported, no X lock on its
  // display) ends at once: one journal record, no reaper round trip.
  if (!reaper_ || reaper_->nothing_to_reap(job)) return finish_lease(id, {});
  // Recorded, so that a broker restarted mid-reap finishes the reaping
  // instead of handing the lease back to a holder that gave it up.
  if (journal_) journal_->lease_ending(lease->id);  // owed if the disk is full
  reaper_->reap(std::move(job), [this, id](ReapOutcome outcome) { finish_lease(id, outcome); });
}

void DisplayBroker::finish_lease(const std::string& id, const ReapOutcome& outcome) {
  auto lease = leases_.remove(id);
  if (!lease) return;
  if (journal_) {
    // Only now, with nothing of it running, is the lease forgotten: a crash
    // while reaping finds it again and finishes the job. If the disk is
    // full the record is owed, and the number waits for it.
    if (!journal_->lease_removed(lease->id))
      spdlog::error("lease={} uid={}({}) display=:{} cannot write its end to the journal ({}); the display stays out "
                    "of circulation until it is recorded",
                    lease->id, lease->uid, lease->user, lease->display, std::strerror(journal_->last_error()));
    journal_->compact_if_needed(leases_.size(), [this] { return journal_snapshot(); });
  }
  for (const auto& removed : outcome.removed) {
    ++stale_removed_;
    spdlog::info("lease={} display=:{} removed {} {} (owner uid={})", lease->id, lease->display, removed.what,
                 removed.path, removed.owner);
  }
  give_back_when_recorded(lease->display, lease->id);
  settle_journal();
  if (outcome.unkillable > 0) {
    // Something of it survived SIGKILL: keep the number out of the pool.
    ScopedLogEvent event(LogEvent::reaped_with_survivors);
    spdlog::error("lease={} uid={}({}) display=:{} reaped with {} process(es) surviving SIGKILL; the display is "
                  "quarantined for {} s",
                  lease->id, lease->uid, lease->user, lease->display, outcome.unkillable, config_.quarantine_seconds);
    block_display(lease->display, clock_() + std::chrono::seconds(config_.quarantine_seconds),
                  DisplayVerdict{DisplayUse::live, "processes of the last lease survived SIGKILL", lease->uid, 0},
                  "processes of the last session survived SIGKILL");
  }
  spdlog::info("lease={} uid={}({}) display=:{} ended: {} process(es) terminated, {} killed, {} unkillable, "
               "reaped in {} ms",
               lease->id, lease->uid, lease->user, lease->display, outcome.terminated, outcome.killed,
               outcome.unkillable, outcome.took.count());
}

Lease* DisplayBroker::own_active_lease(const Caller& caller, const std::string& id) {
  Lease* lease = leases_.find_mutable(id);
  if (!lease || lease->uid != caller.uid || lease->ending) return nullptr;
  return lease;
}

v1::Response DisplayBroker::report_process(const Caller& caller, ConnectionId, const v1::Request& request) {
  const auto& req = request.report_process();
  Lease* lease = own_active_lease(caller, req.lease_id());
  if (!lease) return reply(v1::NOT_FOUND, "you hold no active lease " + escape_untrusted(req.lease_id(), 64));
  constexpr std::size_t kMaxProcessesPerLease = 16;
  if (lease->processes.size() >= kMaxProcessesPerLease)
    return reply(v1::EXHAUSTED, "a lease tracks at most 16 reported processes");
  ProcessInfo info;
  UniqueFd pidfd = open_verified_pidfd(req.pid(), info);
  // A process that is not the lease owner's is refused exactly like a missing
  // one: the broker never acts on, nor reveals, another user's processes.
  if (!pidfd || info.uid != lease->uid) {
    log_refusal(caller.uid, "report-process", "lease={} {} reported pid {} that is not its own; refused", lease->id,
                describe_caller(caller, lease->user), req.pid());
    return reply(v1::DENIED, "pid " + std::to_string(req.pid()) + " is not a running process of yours");
  }
  TrackedProcess tracked;
  tracked.pid = req.pid();
  tracked.role = req.role();
  tracked.pidfd = std::make_shared<UniqueFd>(std::move(pidfd));
  if (info.pgid == info.pid) tracked.group_leader = info.pgid;
  if (info.sid == info.pid) tracked.session_leader = info.sid;
  tracked.start_time = info.start_time;
  journal::JournaledProcess jp;
  jp.set_pid(tracked.pid);
  jp.set_role(tracked.role);
  jp.set_group_leader(tracked.group_leader);
  jp.set_session_leader(tracked.session_leader);
  jp.set_start_time(tracked.start_time);
  lease->processes.push_back(std::move(tracked));
  const pid_t pid = req.pid();
  if (journal_ && !journaled_or_undone(journal_->process_added(lease->id, jp), {},
                                       [this, id = lease->id, pid](bool written) { untrack_process(id, pid, written); }))
    return journal_refused("process");
  spdlog::info("lease={} uid={}({}) display=:{} tracks pid {} ({}, {})", lease->id, lease->uid, lease->user,
               lease->display, req.pid(), info.comm, v1::ProcessRole_Name(req.role()));
  v1::Response r = reply(v1::OK, "");
  r.mutable_report_process();
  return r;
}

void DisplayBroker::untrack_process(const std::string& lease_id, pid_t pid, bool written) {
  Lease* lease = leases_.find_mutable(lease_id);
  if (written || !lease) return;  // in the file: tracked, and reaped with its lease
  std::erase_if(lease->processes, [pid](const TrackedProcess& p) { return p.pid == pid; });
  spdlog::error("lease={} uid={}({}) display=:{} does not track pid {}: the lease journal cannot be written ({}); "
                "the client was told so",
                lease->id, lease->uid, lease->user, lease->display, pid, std::strerror(journal_->last_error()));
}

v1::Response DisplayBroker::report_start_failure(const Caller& caller, ConnectionId, const v1::Request& request) {
  const auto& req = request.report_start_failure();
  Lease* lease = own_active_lease(caller, req.lease_id());
  if (!lease)
    return reply(v1::NOT_FOUND, "you hold no active lease " + escape_untrusted(req.lease_id(), 64));
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
  if (req.failure() == v1::DISPLAY_CONFLICT) {
    evidence = conflict_with_another_owner(probe_->probe(display, lease->runtime_dir), lease->uid);
    if (evidence && evidence->owner_unknown && user_runs_x_server_for(lease->uid, display))
      evidence.reset();  // the abstract socket is the reporter's own X server's
  }
  if (!evidence) {
    guard_.record_start_failure(lease->uid, clock_());
    spdlog::warn("lease={} uid={}({}) display=:{} start failed ({}){}: \"{}\"", lease->id, lease->uid, lease->user,
                 display, v1::StartFailure_Name(req.failure()),
                 req.failure() == v1::DISPLAY_CONFLICT ? ", but the broker finds no conflict on the host; counted "
                                                         "as a failed start"
                                                       : "",
                 detail);
  } else {
    out->set_conflict_confirmed(true);
    // Bounded per reporter: beyond that the number is not blocked at all;
    // the next probe judges it like any other (a live server skipped, a
    // leftover cleaned).
    const std::size_t held = quarantines_of(lease->uid);
    if (held < config_.max_quarantines_per_user) {
      block_display(display, clock_() + std::chrono::seconds(config_.quarantine_seconds),
                    DisplayVerdict{DisplayUse::live, "quarantined after a display conflict: " + evidence->what, lease->uid, 0},
                    "quarantined after a display conflict");
      quarantined_by_[display] = lease->uid;
      out->set_quarantined_display(display);
    }
    ScopedLogEvent event(held < config_.max_quarantines_per_user ? LogEvent::quarantine : LogEvent::none);
    spdlog::warn("lease={} uid={}({}) display=:{} start failed with a display conflict ({}); {}: \"{}\"", lease->id,
                 lease->uid, lease->user, display, evidence->what,
                 held < config_.max_quarantines_per_user
                     ? "quarantined for " + std::to_string(config_.quarantine_seconds) + " s"
                     : "not quarantined: the user's reports already hold " + std::to_string(held) +
                           " (max-quarantines-per-user)",
                 detail);
  }
  end_lease(lease->id, "start failed", SessionEnd::neutral);
  return r;
}

std::uint32_t DisplayBroker::xserver_warn_threshold() const {
  return config_.xserver_warn_per_user ? config_.xserver_warn_per_user : config_.max_leases_per_user + 1;
}

void DisplayBroker::check_for_leaked_x_servers() {
  guard_.forget_idle(clock_());
  const auto census = x_servers_now();
  if (!census) return;
  for (const auto& [uid, pids] : census->by_uid) {
    if (pids.size() <= xserver_warn_threshold()) continue;
    std::string list;
    for (std::size_t i = 0; i < pids.size() && i < 64; ++i) list += (list.empty() ? "" : ",") + std::to_string(pids[i]);
    if (pids.size() > 64) list += ",...";
    ScopedLogEvent event(LogEvent::leak_watchdog);
    spdlog::warn("uid={}({}) runs {} X servers (threshold {}), {} under broker leases: pids {}", uid, user_name(uid),
                 pids.size(), xserver_warn_threshold(), leases_.count_for_uid(uid), list);
  }
}

std::string DisplayBroker::user_name(uid_t uid) {
  if (auto it = user_names_.find(uid); it != user_names_.end()) return it->second;
  std::string name = std::to_string(uid);
  passwd pw{};
  passwd* found = nullptr;
  char buf[4096];
  if (::getpwuid_r(uid, &pw, buf, sizeof(buf), &found) == 0 && found) name = found->pw_name;
  // Bounded: one entry per uid that ever connected.
  if (user_names_.size() < 65536) user_names_.emplace(uid, name);
  return name;
}

void DisplayBroker::fill_lease(const Lease& lease, v1::Lease* out) const {
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
  out->set_acquired_unix_ms(
      std::chrono::duration_cast<std::chrono::milliseconds>(lease.acquired_at.time_since_epoch()).count());
}

}  // namespace xpra_broker

namespace xpra_broker {

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
  for (const auto& p : lease.processes) {
    auto* jp = j.add_processes();
    jp->set_pid(p.pid);
    jp->set_role(p.role);
    jp->set_group_leader(p.group_leader);
    jp->set_session_leader(p.session_leader);
    jp->set_start_time(p.start_time);
  }
  return j;
}

namespace {

// Constant-time comparison, so the token cannot be guessed byte by byte.
bool same_secret(const std::string& a, const std::string& b) {
  if (a.size() != b.size() || a.empty()) return false;
  unsigned char diff = 0;
  for (std::size_t i = 0; i < a.size(); ++i) diff |= static_cast<unsigned char>(a[i] ^ b[i]);
  return diff == 0;
}

}  // namespace

std::vector<TrackedProcess> DisplayBroker::verified_processes(const journal::JournaledLease& j) {
  std::vector<TrackedProcess> processes;
  for (const auto& jp : j.processes()) {
    ProcessInfo info;
    UniqueFd fd = open_verified_pidfd(jp.pid(), info);
    // Same pid, same uid, same start time: the very process reported then.
    if (!fd || info.uid != j.uid() || info.start_time != jp.start_time()) continue;
    // A leader pulls its group or session into the reap: believed only for
    // a process that leads it now, as when it was reported.
    const pid_t group_leader = jp.group_leader() == jp.pid() && info.pgid == info.pid ? info.pid : 0;
    const pid_t session_leader = jp.session_leader() == jp.pid() && info.sid == info.pid ? info.pid : 0;
    processes.push_back({jp.pid(), jp.role(), std::make_shared<UniqueFd>(std::move(fd)), group_leader,
                         session_leader, jp.start_time()});
  }
  return processes;
}

void DisplayBroker::reap_orphan(const journal::JournaledLease& j, const char* why) {
  ReapJob job{j.id(), static_cast<uid_t>(j.uid()), j.display(), j.runtime_dir(), verified_processes(j)};
  job.processes_only = true;
  spdlog::warn("lease={} uid={}({}) display=:{} from the journal {}; {} of its process(es) still run{}", j.id(), j.uid(),
               j.user(), j.display(), why, job.processes.size(), job.processes.empty() ? "" : ": reaping them");
  if (job.processes.empty() || !reaper_) {
    if (journal_) journal_->lease_removed(j.id());
    return;
  }
  // The number stays out of circulation while a process of it may live.
  const bool holds_number = allocator_.in_range(j.display());
  if (holds_number) ++orphan_reaps_[j.display()];
  reaper_->reap(std::move(job), [this, id = j.id(), display = j.display(), holds_number](ReapOutcome outcome) {
    spdlog::info("lease={} display=:{} (superseded) reaped: {} terminated, {} killed, {} unkillable", id, display,
                 outcome.terminated, outcome.killed, outcome.unkillable);
    if (journal_) journal_->lease_removed(id);
    if (holds_number && --orphan_reaps_[display] == 0) {
      orphan_reaps_.erase(display);
      give_back_when_recorded(display, id);
    }
    settle_journal();
  });
}

DisplayBroker::RestoreSummary DisplayBroker::restore(const std::vector<journal::JournaledLease>& leases,
                                                     std::chrono::seconds grace) {
  RestoreSummary summary;
  const SteadyTime now = clock_();
  // A number held by two leases (a journal written before lease ends held
  // their number until recorded) goes to the one recorded last: the older
  // one had ended, since the broker handed its number out again.
  std::map<std::uint32_t, std::size_t> last_on_display;
  for (std::size_t i = 0; i < leases.size(); ++i) last_on_display[leases[i].display()] = i;
  std::vector<std::string> to_reap;
  for (std::size_t i = 0; i < leases.size(); ++i) {
    const auto& j = leases[i];
    if (!allocator_.in_range(j.display())) {
      reap_orphan(j, "is outside the display range (was the range changed?)");
      ++summary.dropped;
      continue;
    }
    if (last_on_display[j.display()] != i) {
      reap_orphan(j, "was superseded by a later lease on the same display");
      ++summary.dropped;
      continue;
    }
    Lease lease;
    lease.id = j.id();
    lease.display = j.display();
    lease.uid = j.uid();
    lease.gid = j.gid();
    lease.holder_pid = j.holder_pid();
    lease.user = j.user();
    lease.runtime_dir = j.runtime_dir();
    lease.purpose = j.purpose();
    lease.acquired_at = std::chrono::system_clock::time_point(std::chrono::milliseconds(j.acquired_unix_ms()));
    lease.acquired_steady = now;
    lease.reattach_token = j.reattach_token();
    lease.connection = 0;
    lease.processes = verified_processes(j);
    const bool holder_alive = !j.ending() && pid_alive(lease.holder_pid);
    lease.detached = true;
    lease.reattach_deadline = now + grace;
    allocator_.take(lease.display);
    if (!holder_alive) to_reap.push_back(lease.id);
    spdlog::info("lease={} uid={}({}) display=:{} recovered from the journal, {} tracked process(es); {}", lease.id,
                 lease.uid, lease.user, lease.display, lease.processes.size(),
                 holder_alive ? "waiting " + std::to_string(grace.count()) + " s for its holder (pid " +
                                    std::to_string(lease.holder_pid) + ") to reattach"
                              : std::string(j.ending() ? "it had ended: reaping" : "its holder is gone: reaping"));
    leases_.add(std::move(lease));
    ++(holder_alive ? summary.waiting : summary.reaping);
  }
  for (const auto& id : to_reap) end_lease(id, "holder gone while the broker was down", SessionEnd::neutral);
  return summary;
}

void DisplayBroker::restore_logins(const std::map<std::uint32_t, std::uint32_t>& login_sessions) {
  for (const auto& [uid, sessions] : login_sessions) login_sessions_[uid] = sessions;
}

void DisplayBroker::expire_detached() {
  const SteadyTime now = clock_();
  std::vector<std::string> expired;
  for (const Lease* lease : leases_.all())
    if (lease->detached && !lease->ending && now >= lease->reattach_deadline) expired.push_back(lease->id);
  for (const auto& id : expired)
    end_lease(id, "its holder did not reattach after the broker restarted", SessionEnd::neutral);
}

v1::Response DisplayBroker::reattach(const Caller& caller, ConnectionId connection, const v1::Request& request) {
  const auto& req = request.reattach();
  Lease* lease = leases_.find_mutable(req.lease_id());
  // Wrong uid, wrong token and no such lease all look the same to the caller.
  if (!lease || lease->uid != caller.uid || lease->ending || !same_secret(lease->reattach_token, req.reattach_token())) {
    log_refusal(caller.uid, "reattach", "refused reattach by {}: lease \"{}\"",
                describe_caller(caller, user_name(caller.uid)), escape_untrusted(req.lease_id(), 64));
    return reply(v1::NOT_FOUND, "no lease " + escape_untrusted(req.lease_id(), 64) +
                                    " of yours to reattach (it ended, or the token does not match)");
  }
  const ConnectionId old_connection = lease->connection;
  const pid_t old_holder = lease->holder_pid;
  const bool was_detached = lease->detached;
  leases_.move_to_connection(lease->id, connection);
  lease->detached = false;
  lease->holder_pid = caller.pid;
  if (journal_ && !journaled_or_undone(journal_->lease_reattached(lease->id, caller.pid), {},
                                       [=, this, id = lease->id](bool written) {
                                         Lease* l = leases_.find_mutable(id);
                                         if (written || !l || l->ending || l->connection != connection) return;
                                         leases_.move_to_connection(id, old_connection);
                                         l->detached = was_detached;
                                         l->holder_pid = old_holder;
                                       }))
    return journal_refused("reattach");
  spdlog::info("lease={} {} display=:{} reattached", lease->id, describe_caller(caller, lease->user), lease->display);
  v1::Response r = reply(v1::OK, "reattached to display :" + std::to_string(lease->display));
  fill_lease(*lease, r.mutable_reattach()->mutable_lease());
  return r;
}

}  // namespace xpra_broker
