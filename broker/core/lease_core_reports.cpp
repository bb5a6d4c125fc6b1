// LeaseCore: what `status` and `metrics` report. Callers see their own;
// admins see everyone's (lease_core.h).
#include <set>

#include "core/core_detail.h"
#include "core/lease_core.h"
#include "untrusted_text.h"
#include "version.h"

namespace xpra_broker {

using namespace core_detail;

// --- status, metrics ----------------------------------------------------------

// Who uses the runtime dir when it runs low (issue 21, attack 2): the admin
// sees every user's directory and what none accounts for; a user, her own.
void LeaseCore::add_runtime_space(v1::RuntimeSpace& out, const Caller& caller, bool admin) {
  const RuntimeSpace space = host_.runtime_space(admin ? std::nullopt : std::optional<uid_t>(caller.uid));
  out.set_path(space.path);
  out.set_size_bytes(space.size_bytes);
  out.set_free_bytes(space.free_bytes);
  out.set_running_low(space.running_low);
  out.set_unattributed_bytes(space.unattributed_bytes);
  for (std::size_t i = 0; i < space.users.size() && i < kMaxListedXServerUsers; ++i) {
    auto* u = out.add_users();
    u->set_uid(space.users[i].uid);
    u->set_user(user_name(space.users[i].uid));
    u->set_bytes(space.users[i].bytes);
    u->set_incomplete(space.users[i].incomplete);
  }
}

v1::Response LeaseCore::status(const Call& call) {
  const Caller& caller = call.caller;
  const SteadyTime now = host_.now();
  allocator_.expire_blocks(now);
  survey_free_displays(now);
  v1::Response r = reply(v1::OK, "");
  auto* s = r.mutable_status_reply();
  const HostReport host = host_.report();
  s->set_version(XPRA_BROKER_VERSION);
  s->set_range_first(settings_.display_first);
  s->set_range_last(settings_.display_last);
  s->set_leases(static_cast<std::uint32_t>(leases_.size()));
  s->set_max_leases(settings_.max_leases);
  s->set_max_leases_per_user(settings_.max_leases_per_user);
  s->set_free_displays(static_cast<std::uint32_t>(allocator_.free_count()));
  s->set_connections(static_cast<std::uint32_t>(connections_));
  s->set_uptime_ms(ms(now - started_));
  s->set_stale_removed(static_cast<std::uint32_t>(counters_.stale_files_removed));
  s->set_watched_directories(static_cast<std::uint32_t>(host.watched_directories));
  s->set_watch_rescans(static_cast<std::uint32_t>(host.watch_rescans));
  s->set_watch_wakeups(host.watch_wakeups);
  s->set_watch_events(host.watch_events);
  s->set_watch_display_name_events(host.watch_display_name_events);
  const bool admin = policy_.is_admin(caller);
  add_runtime_space(*s->mutable_runtime_space(), caller, admin);
  // Start-up findings are the admin's business (they may name users).
  if (admin) {
    for (const auto& w : warnings_) s->add_warnings(w);
    if (!reload_problem_.empty())
      s->add_warnings("the last configuration reload failed, the broker runs with the configuration it had: " +
                      reload_problem_);
  }
  // Counted off the event loop: reading it costs nothing.
  const auto census = host_.x_servers();
  s->set_x_servers_age_ms(census ? ms(now - census->taken_at) : -1);
  std::uint32_t x_users = 0;
  if (census) {
    // A user with X servers, orphans of ended leases, or both.
    std::set<uid_t> uids;
    for (const auto& entry : census->by_uid) uids.insert(entry.first);
    for (const auto& entry : census->orphans_by_uid) uids.insert(entry.first);
    for (const uid_t uid : uids) {
      // Users see their own; root and admins see everyone's.
      if (!admin && uid != caller.uid) continue;
      if (++x_users > kMaxListedXServerUsers) continue;
      auto* x = s->add_x_servers();
      x->set_uid(uid);
      x->set_user(user_name(uid));
      if (const auto it = census->by_uid.find(uid); it != census->by_uid.end()) {
        const auto& pids = it->second;
        for (std::size_t i = 0; i < pids.size() && i < kMaxListedPidsPerUser; ++i) x->add_pids(pids[i]);
        x->set_count(static_cast<std::uint32_t>(pids.size()));
      }
      if (const auto it = census->orphans_by_uid.find(uid); it != census->orphans_by_uid.end()) {
        const auto& orphans = it->second;
        x->set_orphans(static_cast<std::uint32_t>(orphans.size()));
        for (std::size_t i = 0; i < orphans.size() && i < kMaxListedPidsPerUser; ++i) {
          auto* o = x->add_orphan_processes();
          o->set_pid(orphans[i].pid);
          o->set_comm(orphans[i].comm);
          o->set_lease(orphans[i].lease);
          o->set_display(orphans[i].display);
        }
      }
      x->set_leases(static_cast<std::uint32_t>(leases_.count_for_uid(uid)));
    }
    if (admin) s->set_orphans_seen_total(census->orphans_seen_total);
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
        b->set_owner_unknown(!f->second.owner_known);
        b->set_pid(f->second.pid);
      }
    } else {
      const auto p = block_reasons_.find(display);
      b->set_reason(p != block_reasons_.end() ? block_reason_text(p->second) : "not available");
    }
  }
  s->set_blocked_total(static_cast<std::uint32_t>(allocator_.blocked().size()));
  if (admin)
    for (const auto& [uid, count] : blocked_by_owner()) {
      if (static_cast<std::size_t>(s->display_holders_size()) >= kMaxListedXServerUsers) break;
      auto* h = s->add_display_holders();
      h->set_uid(uid);
      h->set_user(user_name(uid));
      h->set_displays(count);
    }
  // Where Xpra looks: system configuration, the same for every caller.
  s->set_xpra_socket_hostname(host.hostname);
  for (std::size_t i = 0; i < host.xpra_socket_dirs.size() && i < kMaxListedXpraSocketDirs; ++i) {
    const auto& dir = host.xpra_socket_dirs[i];
    auto* d = s->add_xpra_socket_dirs();
    // Root's config, but a protobuf string must be UTF-8 whatever it holds.
    d->set_path(escape_untrusted(dir.path, 512));
    d->set_source(escape_untrusted(dir.source, 512));
    d->set_shared(dir.shared);
    d->set_state(escape_untrusted(dir.state, 512));
  }
  if (records_) {
    const auto health = records_->health();
    if (health.degraded)
      s->set_journal_problem(health.problem +
                             "; new leases are refused until space is freed in the runtime dir, running sessions "
                             "keep running");
    s->set_journal_owed_records(static_cast<std::uint32_t>(health.owed_records));
  }
  for (const auto& held : held_for_record_)
    if (static_cast<std::size_t>(s->displays_awaiting_journal_size()) < kMaxListedBlocked)
      s->add_displays_awaiting_journal(held.display);
  return r;
}

MetricsSnapshot LeaseCore::metrics_snapshot() {
  const SteadyTime now = host_.now();
  allocator_.expire_blocks(now);
  survey_free_displays(now);
  MetricsSnapshot m;
  m.version = XPRA_BROKER_VERSION;
  m.start_time_unix_seconds = std::chrono::duration<double>(started_wall_.time_since_epoch()).count();
  m.uptime_seconds = std::chrono::duration<double>(now - started_).count();
  std::map<uid_t, UserMetrics> users;
  for (const Lease* lease : leases_.all()) {
    ++(lease->ending ? m.leases_ending : lease->detached ? m.leases_detached : m.leases_active);
    ++users[lease->uid].leases;
  }
  m.max_leases = settings_.max_leases;
  m.max_leases_per_user = settings_.max_leases_per_user;
  m.x_server_warn_threshold = xserver_warn_threshold();
  m.range_size = settings_.display_last - settings_.display_first + 1;
  m.free_displays = static_cast<std::uint32_t>(allocator_.free_count());
  for (const auto& [display, block] : allocator_.blocked()) {
    const auto r = block_reasons_.find(display);
    ++m.blocked[static_cast<std::size_t>(r != block_reasons_.end() ? r->second : BlockReason::in_use)];
  }
  // Leased in the allocator without a lease: held for the records, or for
  // an orphan's reap (a number can wait for both; counted once, as the
  // journal's).
  std::set<std::uint32_t> awaiting;
  for (const auto& held : held_for_record_)
    if (!allocator_.blocked().count(held.display)) awaiting.insert(held.display);
  for (const auto& [owner, count] : blocked_by_owner()) users[owner].blocked_displays = count;
  m.blocked[static_cast<std::size_t>(BlockReason::awaiting_journal)] = static_cast<std::uint32_t>(awaiting.size());
  for (const auto& [display, reaps] : orphan_reaps_)
    if (!awaiting.count(display) && !allocator_.blocked().count(display))
      ++m.blocked[static_cast<std::size_t>(BlockReason::orphan_reap)];
  m.connections = static_cast<std::uint32_t>(connections_);
  if (const auto census = host_.x_servers()) {
    m.x_server_census_age_seconds = std::chrono::duration<double>(now - census->taken_at).count();
    for (const auto& [uid, pids] : census->by_uid) users[uid].x_servers = static_cast<std::uint32_t>(pids.size());
    for (const auto& [uid, orphans] : census->orphans_by_uid)
      users[uid].orphans = static_cast<std::uint32_t>(orphans.size());
    m.orphans_seen_total = census->orphans_seen_total;
  }
  for (const auto& [uid, refusals] : counters_.user_acquire_refusals) users[uid].acquire_refusals = refusals;
  m.user_refusals_uncounted = counters_.user_refusals_uncounted;
  m.users.reserve(users.size());
  for (auto& [uid, row] : users) {
    row.uid = uid;
    row.name = user_name(uid);
    m.users.push_back(std::move(row));
  }
  if (records_) {
    const auto health = records_->health();
    m.journal = JournalMetrics{health.bytes, health.records, health.degraded, health.owed_records};
  }
  return m;
}

v1::Response LeaseCore::metrics(const Call&) {
  v1::Response r = reply(v1::OK, "");
  r.mutable_metrics()->set_exposition(render_metrics(counters_, metrics_snapshot()));
  return r;
}

}  // namespace xpra_broker
