// The broker's decisions, and nothing else: quotas, allocation, lease state,
// and what each verb does. A request from a caller (identity from the
// kernel) goes in, a reply comes out.
//
// The core touches no file, socket, process or clock of its own: it asks the
// host (broker_host.h) and records through LeaseRecords (lease_records.h).
// It links the standard library and protobuf only (the build checks), and
// its tests run as an ordinary user against an in-memory host
// (tests/core/). Single-threaded: the server calls it from its event loop.
#pragma once

#include <chrono>
#include <functional>
#include <map>
#include <string>
#include <unordered_map>
#include <vector>

#include "core/broker_host.h"
#include "core/broker_metrics.h"
#include "core/display_allocator.h"
#include "core/lease_records.h"
#include "core/lease_table.h"
#include "core/log_throttle.h"
#include "core/policy.h"
#include "protocol.h"
#include "core/restart_guard.h"
#include "core/verb_table.h"

namespace xpra_broker {

// What the core needs of the configuration (config.h maps the file onto it).
// These defaults are the configuration's, written once: BrokerConfig takes
// its defaults for these keys from here (kCoreDefaults), so the core's
// tests run on the values a deployment without a config file has.
struct CoreSettings {
  std::uint32_t display_first = 100;
  std::uint32_t display_last = 999;
  std::uint32_t max_leases = 512;
  std::uint32_t max_leases_per_user = 8;
  // Seconds a display found in use outside the broker is skipped.
  std::uint32_t recheck_seconds = 30;
  bool clean_stale = true;
  std::uint32_t quarantine_seconds = 300;
  std::uint32_t max_quarantines_per_user = 3;
  std::uint32_t xserver_warn_per_user = 0;  // 0: max_leases_per_user + 1
  RestartGuardSettings restart_guard;
};
inline const CoreSettings kCoreDefaults{};

// One request, as a handler sees it after the verb table admitted it.
struct Call {
  const Caller& caller;
  ConnectionId connection;
  const v1::Request& request;
  Lease* lease;  // the lease the request names (lease audiences), else null
};

class LeaseCore {
 public:
  // `records`: where changes are recorded (durable/durable_leases.h);
  // null: journal=no, every change stands at once.
  LeaseCore(const CoreSettings& settings, AccessPolicy policy, BrokerHost& host, LeaseRecords* records = nullptr);

  // Handles one request: the verb table's check, then its handler. Never
  // throws for anything a client can send.
  v1::Response handle(const Caller& caller, ConnectionId connection, const v1::Request& request);

  // The connection is gone (exit, crash, kill -9): its leases end.
  void connection_closed(ConnectionId connection);
  // Does this connection hold a lease (an exec holder waiting on it)?
  bool connection_holds_leases(ConnectionId connection) const;
  // A line of the server's about a caller (a refused or closed connection):
  // named and handed to the host like the core's own lines, so it carries
  // the caller's uid, user and pid as fields. The server throttles it.
  void log_about_caller(LogLevel level, const Caller& caller, std::string text) {
    log(level, subject_of(caller), [&] { return std::move(text); });
  }

  // The turn's group commit is done (the server commits the records and
  // hands over what they said): changes it could not carry are taken back,
  // numbers whose end it wrote go back to the pool, and if it failed each
  // announcing reply in `replies` becomes the error its client must see.
  struct CommitOutcome {
    bool ok = true;
    std::vector<std::string> withdrawn;  // leases taken back: their acquire is answered INTERNAL
  };
  CommitOutcome turn_committed(const LeaseRecords::Commit& commit, const std::vector<v1::Response*>& replies);
  // The reply a client gets when the commit its request waited for failed;
  // the verb table says how each verb journals.
  v1::Response reply_after_failed_commit(v1::Response response, const std::vector<std::string>& withdrawn);
  // The records write what they owe and retry a failed compaction (a full
  // disk may have room again); run periodically by the daemon. How many
  // numbers went back to the pool.
  std::size_t retry_records();

  struct RestoreSummary {
    std::size_t waiting = 0, reaping = 0, dropped = 0;
  };
  // At start-up, what the records held: leases whose holder is gone are
  // reaped, the others wait `grace` for their holder to reattach.
  RestoreSummary restore(const std::vector<RecoveredLease>& leases, std::chrono::seconds grace);
  void restore_logins(const std::map<std::uint32_t, std::uint32_t>& login_sessions);

  // Periodic duties (the daemon's timers).
  void expire_detached();              // recovered leases whose holder did not come back
  void check_for_leaked_x_servers();  // users who run more X servers than the threshold, and orphans
  void report_orphans(const XServerSnapshot& census);

  // Shown to admins in `status`: start-up findings.
  void set_warnings(std::vector<std::string> warnings) { warnings_ = std::move(warnings); }

  // A reload (SIGHUP) of what can change while leases are held: range,
  // quotas, rates and back-off, quarantine, groups. Leases are kept, also
  // on numbers outside a new range (which leave the pool when they end).
  void reconfigure(const CoreSettings& settings, AccessPolicy policy);
  // Why the last reload failed (shown to admins in `status` until a reload
  // succeeds); empty: it did not.
  void set_reload_problem(std::string problem) { reload_problem_ = std::move(problem); }
  const CoreSettings& settings() const { return settings_; }
  // Open connections, for `status` and the metrics (the server's count).
  void set_connection_count(std::size_t count) { connections_ = count; }

  BrokerCounters& counters() { return counters_; }
  const BrokerCounters& counters() const { return counters_; }
  MetricsSnapshot metrics_snapshot();

  const LeaseTable& leases() const { return leases_; }
  const DisplayAllocator& allocator() const { return allocator_; }
  const std::unordered_map<uid_t, std::uint32_t>& login_sessions() const { return login_sessions_; }

  // The replies for a change the records could not take (lease_records.h).
  static v1::Response refused_unrecorded(const char* what);
  static v1::Response end_not_recorded();

  // Verb handlers: reached only through the verb table (verb_table.cpp),
  // after its access check.
  v1::Response acquire(const Call&);
  v1::Response release(const Call&);
  v1::Response list(const Call&);
  v1::Response status(const Call&);
  v1::Response metrics(const Call&);
  v1::Response report_process(const Call&);
  v1::Response report_start_failure(const Call&);
  v1::Response reattach(const Call&);
  v1::Response open_login(const Call&);
  v1::Response close_login(const Call&);

 private:
  // The lease part of the verb table's check: the lease the request names,
  // if the caller may act on it.
  struct Authorized {
    bool allowed = false;
    v1::Response refusal;
    Lease* lease = nullptr;
  };
  Authorized authorize(const VerbRule& rule, const Caller& caller, const v1::Request& request);

  // Picks a display that is free in the table and on the host, or nullopt.
  std::optional<std::uint32_t> pick_free_display(const std::string& user_dir);
  // Blocks a probed number that is not free (logs why at `level`).
  void skip_display(std::uint32_t display, const DisplayVerdict& verdict, SteadyTime now);
  // Probes the numbers that look free, so free and blocked counts include
  // what runs in the range outside the broker (status, metrics).
  void survey_free_displays(SteadyTime now);
  // How a session ended, for the restart-loop defence.
  enum class SessionEnd { neutral, clean_exit, failed };
  // Ends a lease: reaps what ran under it, then (finish_lease) gives its
  // display back. The one way a lease ends.
  void end_lease(std::string id, const std::string& why, SessionEnd how);
  void finish_lease(const std::string& id, const ReapOutcome& outcome);
  void count_reap(const ReapOutcome& outcome);
  // Undo of a recorded acquire / process report whose record failed.
  void withdraw_lease(const std::string& id, bool written);
  void untrack_process(const std::string& lease_id, pid_t pid, bool written);
  // A number whose lease ended goes back once `end_record` is written (at
  // once without records).
  void give_back_when_recorded(std::uint32_t display, std::string lease_id,
                               std::optional<LeaseRecords::Seq> end_record);
  void give_back_if_unused(std::uint32_t display);

  // The records' side of a change (lease_records.h). `undo(written)` takes
  // a withdrawable change back: now if its record was refused (false is
  // returned), or when the turn's commit fails.
  using Undo = std::function<void(bool written)>;
  bool kept_by_records(const LeaseRecords::Receipt& receipt, std::string lease_id, Undo undo);
  // Whatever the records said of how far they are written: numbers whose
  // end is written go back, a requested snapshot is handed over, a change
  // of health is logged. How many numbers went back.
  std::size_t take_progress(LeaseRecords::Progress progress);
  std::size_t release_recorded_numbers();
  LeaseRecords::Snapshot records_snapshot() const;
  void note_records_health(const LeaseRecords::Progress& progress, std::size_t released);
  // Records made while a request is answered wait for the turn's commit.
  LeaseRecords::When record_when() const {
    return in_request_ ? LeaseRecords::When::with_the_turn : LeaseRecords::When::at_once;
  }
  // Restart: the recorded processes that are still the same processes.
  std::vector<TrackedProcess> verified_processes(const RecoveredLease& recovered);
  // Reaps the processes of a recorded lease that is not restored.
  void reap_orphan(const RecoveredLease& recovered, const char* why);
  std::string new_lease_id() { return host_.random_id(); }
  std::uint32_t xserver_warn_threshold() const;
  std::string user_name(uid_t uid) { return host_.user_name(uid); }
  void fill_lease(const Lease& lease, v1::Lease* out) const;
  // Blocks a display, remembering what admins are told (the finding) and
  // why in the fixed set of reasons users and the metrics see.
  void block_display(std::uint32_t display, SteadyTime until, const DisplayVerdict& finding, BlockReason reason);
  // Quarantines the reports of `uid` hold right now.
  std::size_t quarantines_of(uid_t uid);

  // The log, through the host. The text is made only when the host
  // writes lines of this level (most acquires log at info, which a busy
  // host may turn off). log_refusal() writes at most one line per uid and
  // reason per interval (what a client can cause in a loop).
  template <typename MakeText>
  void log(LogLevel level, const LogSubject& subject, MakeText&& text, LogEvent event = LogEvent::none) {
    if (host_.wants_log(level)) host_.log(LogLine{level, event, subject, text()});
  }
  template <typename MakeText>
  void log(LogLevel level, const Lease& lease, MakeText&& text, LogEvent event = LogEvent::none) {
    if (host_.wants_log(level)) host_.log(LogLine{level, event, LogSubject::of(lease), text()});
  }
  void log_refusal(const Caller& caller, const char* reason, std::string text, LogEvent event = LogEvent::none);
  LogSubject subject_of(const Caller& caller);
  // The owner of what a probe found, for log lines: "uid=1003 (alice)",
  // or "unknown" when the kernel did not say.
  std::string owner_text(const DisplayVerdict& verdict);
  // Blocked numbers by the owner of what holds them (known owners only).
  std::map<uid_t, std::uint32_t> blocked_by_owner() const;
  void add_runtime_space(v1::RuntimeSpace& out, const Caller& caller, bool admin);

  CoreSettings settings_;
  AccessPolicy policy_;
  BrokerHost& host_;
  LeaseRecords* records_ = nullptr;
  bool in_request_ = false;
  // What the records last said (Progress).
  LeaseRecords::Seq written_through_ = 0;
  bool records_owed_ = false;
  bool degraded_logged_ = false;
  bool compaction_failure_logged_ = false;
  // Withdrawable changes waiting for the turn's commit, with their undo.
  struct Uncommitted {
    LeaseRecords::Seq seq;
    std::string lease_id;  // an acquire's lease, else empty
    Undo undo;
  };
  std::vector<Uncommitted> uncommitted_;
  SteadyTime started_;
  std::optional<SteadyTime> surveyed_at_;
  std::string reload_problem_;
  WallTime started_wall_;
  DisplayAllocator allocator_;
  LeaseTable leases_;
  RestartGuard guard_;
  // Numbers of ended leases whose end is not recorded yet.
  struct HeldForRecord {
    LeaseRecords::Seq seq;
    std::uint32_t display;
    std::string lease_id;
  };
  std::vector<HeldForRecord> held_for_record_;
  // Numbers on which processes of a lease not restored are being reaped.
  std::map<std::uint32_t, std::size_t> orphan_reaps_;
  // What the last probe found on each blocked display, for admins in
  // `status`, and the generic reason users (and the metrics) see instead.
  std::map<std::uint32_t, DisplayVerdict> host_findings_;
  std::map<std::uint32_t, BlockReason> block_reasons_;
  // Displays quarantined on a user's confirmed report, by reporter.
  std::map<std::uint32_t, uid_t> quarantined_by_;
  // Orphans of ended leases per user at the last watchdog round (said again only when it grows).
  std::map<uid_t, std::size_t> orphans_reported_;
  LogThrottle refusal_log_;
  // "display=:N skipped" lines, per owner of what was found and kind (in
  // use, leftovers): whoever squats a whole range adds one line per
  // interval, not one per number per recheck (issue 21).
  LogThrottle skip_log_{std::chrono::seconds(30)};
  std::unordered_map<uid_t, std::uint32_t> login_sessions_;
  std::size_t connections_ = 0;
  std::vector<std::string> warnings_;
  BrokerCounters counters_;
};

// Caps that keep every reply inside one frame (64 KiB), whatever the counts.
inline constexpr std::size_t kMaxListedLeases = 256;
inline constexpr std::size_t kMaxListedBlocked = 64;
inline constexpr std::size_t kMaxListedXServerUsers = 64;
inline constexpr std::size_t kMaxListedPidsPerUser = 32;
inline constexpr std::size_t kMaxListedXpraSocketDirs = 32;

}  // namespace xpra_broker
