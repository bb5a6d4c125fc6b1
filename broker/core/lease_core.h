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
#include <map>
#include <string>
#include <unordered_map>
#include <vector>

#include "broker_host.h"
#include "broker_metrics.h"
#include "display_allocator.h"
#include "lease_records.h"
#include "lease_table.h"
#include "log_throttle.h"
#include "policy.h"
#include "protocol.h"
#include "restart_guard.h"
#include "verb_table.h"

namespace xpra_broker {

// What the core needs of the configuration (config.h maps the file onto it).
struct CoreSettings {
  std::uint32_t display_first = 100;
  std::uint32_t display_last = 199;
  std::uint32_t max_leases = 100;
  std::uint32_t max_leases_per_user = 4;
  std::uint32_t recheck_seconds = 10;
  bool clean_stale = true;
  std::uint32_t quarantine_seconds = 60;
  std::uint32_t max_quarantines_per_user = 4;
  std::uint32_t xserver_warn_per_user = 0;  // 0: max_leases_per_user + 1
  RestartGuardSettings restart_guard;
};

// One request, as a handler sees it after the verb table admitted it.
struct Call {
  const Caller& caller;
  ConnectionId connection;
  const v1::Request& request;
  Lease* lease;  // the lease the request names (lease audiences), else null
};

// A lease found in the lease records at start-up.
struct RecoveredLease {
  Lease lease;  // its processes are not in here: see `processes`; ending: it had ended
  struct Process {
    pid_t pid = 0;
    int role = 0;
    pid_t group_leader = 0;
    pid_t session_leader = 0;
    std::uint64_t start_time = 0;
  };
  std::vector<Process> processes;
};

class LeaseCore {
 public:
  LeaseCore(const CoreSettings& settings, AccessPolicy policy, BrokerHost& host);

  // Handles one request: the verb table's check, then its handler. Never
  // throws for anything a client can send.
  v1::Response handle(const Caller& caller, ConnectionId connection, const v1::Request& request);

  // The connection is gone (exit, crash, kill -9): its leases end.
  void connection_closed(ConnectionId connection);
  // Does this connection hold a lease (an exec holder waiting on it)?
  bool connection_holds_leases(ConnectionId connection) const;

  // Where changes are recorded (durable/durable_leases.h); none: journal=no.
  void set_records(LeaseRecords* records) { records_ = records; }
  // Numbers of ended leases go back to the pool once their end is recorded.
  // Called after each write of the records; how many went back.
  std::size_t release_recorded_numbers();

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
  // A number whose lease ended goes back once the end is recorded.
  void give_back_when_recorded(std::uint32_t display, std::string lease_id);
  void give_back_if_unused(std::uint32_t display);
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
