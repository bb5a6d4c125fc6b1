// The broker's decisions and state, without any networking: a request from a
// caller (identity from the kernel) goes in, a response comes out. The server
// (broker_server.h) owns sockets and calls in here; tests drive it directly.
//
// One handler per protocol verb, dispatched from one table after the central
// access check in policy.h.
#pragma once

#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <unordered_map>

#include "config.h"
#include "display_allocator.h"
#include "display_probe.h"
#include "lease_journal.h"
#include "lease_reaper.h"
#include "lease_table.h"
#include "log_throttle.h"
#include "policy.h"
#include "restart_guard.h"
#include "stale_artifact_cleaner.h"
#include "user_directories.h"
#include "x_server_census.h"
#include "protocol.h"

namespace xpra_broker {

class DisplayBroker {
 public:
  using SteadyClock = std::function<SteadyTime()>;

  DisplayBroker(const BrokerConfig& config, AccessPolicy policy, std::unique_ptr<DisplayProbe> probe,
                std::unique_ptr<UserDirectories> user_dirs, SteadyClock clock = std::chrono::steady_clock::now);

  // Handles one request. Never throws for anything a client can send.
  v1::Response handle(const Caller& caller, ConnectionId connection, const v1::Request& request);

  // The connection is gone (exit, crash, kill -9): its leases end.
  void connection_closed(ConnectionId connection);

  // Lifecycle: who reaps a lease's processes and cleans stale artifacts.
  // Without a reaper a lease ends at once (unit tests of the pure logic).
  void set_lifecycle(LeaseReaper* reaper, StaleArtifactCleaner* cleaner) {
    reaper_ = reaper;
    cleaner_ = cleaner;
  }

  // Durable leases (docs/durability.md): a reply announces only what the
  // journal holds, and memory holds nothing the journal refused (it is
  // rolled back). Ends are never refused: their record is owed while the
  // disk is full, and the lease's number stays out of circulation until it
  // is written. Call restore() once at start-up with what the journal held:
  // leases whose holder is gone are reaped, the others wait `grace` for
  // their holder to reattach.
  void set_journal(LeaseJournal* journal) { journal_ = journal; }
  // Group commit (the server turns it on): the records a request makes are
  // collected and written by commit_journal(), which the server calls once
  // per turn of its event loop, before it sends the replies that announce
  // them. Off (unit tests), every record is written before handle() returns.
  void set_group_commit(bool on) { group_commit_ = on; }
  bool journal_uncommitted() const { return journal_ && journal_->has_uncommitted(); }
  struct CommitOutcome {
    bool ok = true;
    std::vector<std::string> withdrawn;  // leases taken back: their acquire is answered INTERNAL
  };
  CommitOutcome commit_journal();
  // What to answer instead of `response` when the commit it waited for failed.
  v1::Response reply_after_failed_commit(v1::Response response, const CommitOutcome& outcome) const;
  struct RestoreSummary {
    std::size_t waiting = 0, reaping = 0, dropped = 0;
  };
  RestoreSummary restore(const std::vector<journal::JournaledLease>& leases, std::chrono::seconds grace);
  void restore_logins(const std::map<std::uint32_t, std::uint32_t>& login_sessions);
  // Writes owed records and retries a failed compaction (a full disk may
  // have room again). Run periodically by main().
  void retry_journal();
  // Ends recovered leases whose holder did not come back in time. Run
  // periodically by main().
  void expire_detached();

  // Warns about users who run more X servers than the threshold. Run
  // periodically by main().
  void check_for_leaked_x_servers();

  // Where X-server counts come from: a census taken off the event loop.
  // Without one (unit tests) /proc is walked on the spot.
  void set_x_server_census(const XServerCensus* census) { census_ = census; }

  // Does this connection hold a lease (an exec holder waiting on it)? A
  // connection that holds none may be closed when idle.
  bool connection_holds_leases(ConnectionId connection) const;

  // Start-up findings the admin should see in `status` too.
  void set_warnings(std::vector<std::string> warnings) { warnings_ = std::move(warnings); }

  // Numbers of connections the server has open, for `status`.
  void set_connection_count(std::size_t count) { connections_ = count; }

  const LeaseTable& leases() const { return leases_; }
  const DisplayAllocator& allocator() const { return allocator_; }

 private:
  v1::Response acquire(const Caller&, ConnectionId, const v1::Request&);
  v1::Response release(const Caller&, ConnectionId, const v1::Request&);
  v1::Response list(const Caller&, ConnectionId, const v1::Request&);
  v1::Response status(const Caller&, ConnectionId, const v1::Request&);
  v1::Response report_process(const Caller&, ConnectionId, const v1::Request&);
  v1::Response report_start_failure(const Caller&, ConnectionId, const v1::Request&);
  v1::Response reattach(const Caller&, ConnectionId, const v1::Request&);
  v1::Response open_login(const Caller&, ConnectionId, const v1::Request&);
  v1::Response close_login(const Caller&, ConnectionId, const v1::Request&);

  using Handler = v1::Response (DisplayBroker::*)(const Caller&, ConnectionId, const v1::Request&);
  static const std::unordered_map<int, Handler>& handlers();

  // Picks a display that is free in the table and on the host, or nullopt.
  std::optional<std::uint32_t> pick_free_display(const std::string& user_dir);
  // How a session ended, for the restart-loop defence.
  enum class SessionEnd { neutral, clean_exit, failed };
  // Ends a lease: reaps what ran under it, then (finish_lease) gives its
  // display back. The one way a lease ends.
  void end_lease(std::string id, const std::string& why, SessionEnd how);
  void finish_lease(const std::string& id, const ReapOutcome& outcome);
  // The one place the rule is applied: `appended` is what the journal's
  // append said. Refused at once: `undo(false)` runs now and the caller
  // answers journal_refused(). Batched: `undo(written)` runs if the commit
  // fails (written: an earlier write outside the batch carried the record).
  bool journaled_or_undone(bool appended, std::string lease_id, std::function<void(bool written)> undo);
  static v1::Response journal_refused(const char* what);
  static v1::Response end_not_recorded();
  void withdraw_lease(const std::string& id, bool written);
  void untrack_process(const std::string& lease_id, pid_t pid, bool written);
  // A number whose lease ended goes back once the end is in the journal.
  void give_back_when_recorded(std::uint32_t display, std::string lease_id);
  void give_back_if_unused(std::uint32_t display);
  // Releases numbers whose end is now recorded; logs journal health changes.
  void settle_journal();
  LeaseJournal::Snapshot journal_snapshot() const;
  // Restart: the journaled processes that are still the same processes.
  std::vector<TrackedProcess> verified_processes(const journal::JournaledLease& j);
  // Reaps the processes of a journaled lease that is not restored.
  void reap_orphan(const journal::JournaledLease& j, const char* why);
  // The caller's own active lease with this id, or nullptr.
  Lease* own_active_lease(const Caller& caller, const std::string& id);
  std::uint32_t xserver_warn_threshold() const;
  std::string user_name(uid_t uid);
  void fill_lease(const Lease& lease, v1::Lease* out) const;
  // Blocks a display, remembering what admins and what users are told.
  void block_display(std::uint32_t display, SteadyTime until, const DisplayVerdict& finding,
                     std::string public_reason);
  // Logs a refusal at most once per uid and reason per interval.
  template <typename... Args>
  void log_refusal(uid_t uid, const char* reason, const char* format, Args&&... args);
  std::shared_ptr<const XServerSnapshot> x_servers_now();
  // Quarantines the reports of `uid` hold right now.
  std::size_t quarantines_of(uid_t uid);

  BrokerConfig config_;
  AccessPolicy policy_;
  bool group_commit_ = false;
  // Changes made since the last commit_journal(), with their roll-back.
  struct Uncommitted {
    LeaseJournal::Seq seq;
    std::string lease_id;  // an acquire's lease, else empty
    std::function<void(bool written)> undo;
  };
  std::vector<Uncommitted> uncommitted_;
  // Numbers of ended leases whose end is not in the journal yet.
  struct HeldForJournal {
    LeaseJournal::Seq seq;
    std::uint32_t display;
    std::string lease_id;
  };
  std::vector<HeldForJournal> held_for_journal_;
  // Numbers on which processes of a lease not restored are being reaped.
  std::map<std::uint32_t, std::size_t> orphan_reaps_;
  bool journal_degraded_ = false;
  bool compaction_failure_logged_ = false;
  std::unique_ptr<DisplayProbe> probe_;
  std::unique_ptr<UserDirectories> user_dirs_;
  SteadyClock clock_;
  SteadyTime started_;
  DisplayAllocator allocator_;
  LeaseTable leases_;
  // What the last probe found on each blocked display, for admins in
  // `status`, and the generic reason users see instead.
  std::map<std::uint32_t, DisplayVerdict> host_findings_;
  std::map<std::uint32_t, std::string> public_reasons_;
  // Displays quarantined on a user's confirmed report, by reporter.
  std::map<std::uint32_t, uid_t> quarantined_by_;
  LogThrottle refusal_log_;
  const XServerCensus* census_ = nullptr;
  std::unordered_map<uid_t, std::uint32_t> login_sessions_;
  std::unordered_map<uid_t, std::string> user_names_;
  std::size_t connections_ = 0;
  std::vector<std::string> warnings_;
  LeaseReaper* reaper_ = nullptr;
  StaleArtifactCleaner* cleaner_ = nullptr;
  RestartGuard guard_;
  std::uint32_t stale_removed_ = 0;
  LeaseJournal* journal_ = nullptr;
};

journal::JournaledLease to_journaled(const Lease& lease);

std::string new_lease_id();

// Caps that keep every reply inside one frame (64 KiB), whatever the counts.
inline constexpr std::size_t kMaxListedLeases = 256;
inline constexpr std::size_t kMaxListedBlocked = 64;
inline constexpr std::size_t kMaxListedXServerUsers = 64;
inline constexpr std::size_t kMaxListedPidsPerUser = 32;

}  // namespace xpra_broker
