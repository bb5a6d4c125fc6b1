// The lease core's decisions, against an in-memory host (fake_host.h). These
// run as an ordinary user (ctest runs them as nobody when started as root)
// and touch nothing on the machine.
#include <unistd.h>

#include <gtest/gtest.h>

#include "fake_host.h"
#include "core/lease_core.h"

namespace xpra_broker {
namespace {

using testing::FakeHost;
using testing::FakeRecords;
using namespace std::chrono_literals;

Caller user(uid_t uid, pid_t pid = 0) { return Caller{uid, uid, pid ? pid : static_cast<pid_t>(uid + 10000), {}}; }
const Caller kAlice = user(1001);
const Caller kBob = user(1002);
const Caller kAdmin = Caller{1003, 1003, 13003, {50}};
const Caller kRoot = Caller{0, 0, 1, {}};

class LeaseCoreTest : public ::testing::Test {
 protected:
  LeaseCoreTest() { settings_.display_first = 100, settings_.display_last = 103; }

  LeaseCore& core() {
    if (!core_) {
      AccessPolicy policy;
      policy.admin_gids = {50};
      core_ = std::make_unique<LeaseCore>(settings_, policy, host_, records_.get());
    }
    return *core_;
  }
  v1::Response call(const Caller& c, const v1::Request& r, ConnectionId conn = 1) { return core().handle(c, conn, r); }
  v1::Response acquire(const Caller& c, ConnectionId conn = 1) {
    v1::Request r;
    r.mutable_acquire()->set_purpose("test");
    return call(c, r, conn);
  }
  v1::Response release(const Caller& c, const std::string& id) {
    v1::Request r;
    r.mutable_release()->set_lease_id(id);
    return call(c, r);
  }
  v1::Response release_display(const Caller& c, std::uint32_t display) {
    v1::Request r;
    r.mutable_release()->set_display(display);
    return call(c, r);
  }
  v1::Response report_process(const Caller& c, const std::string& id, pid_t pid) {
    v1::Request r;
    r.mutable_report_process()->set_lease_id(id);
    r.mutable_report_process()->set_pid(pid);
    return call(c, r);
  }
  v1::Response list(const Caller& c, bool all = false) {
    v1::Request r;
    r.mutable_list()->set_all(all);
    return call(c, r);
  }
  v1::Response status(const Caller& c) {
    v1::Request r;
    r.mutable_status();
    return call(c, r);
  }

  CoreSettings settings_;
  FakeHost host_;
  std::unique_ptr<FakeRecords> records_;
  std::unique_ptr<LeaseCore> core_;
};

TEST_F(LeaseCoreTest, TheseTestsRunAsAnOrdinaryUser) {
  // ctest starts this binary through setpriv when it runs as root: the core
  // needs no privilege to be tested.
  EXPECT_NE(::geteuid(), 0u) << "run tests/core as an ordinary user (ctest does)";
}

TEST_F(LeaseCoreTest, AcquireSkipsANumberTheHostShowsInUse) {
  host_.displays[100] = {DisplayUse::live, "X server of uid 0", 0, 77};
  const auto r = acquire(kAlice);
  ASSERT_EQ(r.status(), v1::OK) << r.message();
  EXPECT_EQ(r.acquire().lease().display(), 101u);
  EXPECT_EQ(r.acquire().lease().runtime_dir(), "/run/xpra/1001");
  EXPECT_EQ(r.acquire().reattach_token().size(), 32u);
  EXPECT_TRUE(core().allocator().blocked().count(100)) << "a live number is skipped until the recheck";
  // The block runs out, and then the number is free for the next acquire.
  host_.displays.erase(100);
  host_.advance(std::chrono::seconds(settings_.recheck_seconds + 1));
  EXPECT_EQ(acquire(kBob).status(), v1::OK);
  EXPECT_FALSE(core().allocator().blocked().count(100));
  EXPECT_EQ(core().allocator().free_count(), 2u);
}

TEST_F(LeaseCoreTest, LeftoversAreCleanedAndTheNumberUsed) {
  host_.displays[100] = {DisplayUse::stale, "stale X lock of uid 4242", 4242, 0};
  host_.cleanable.insert(100);
  EXPECT_EQ(acquire(kAlice).acquire().lease().display(), 100u);
  EXPECT_EQ(core().counters().stale_files_removed, 1u);
  EXPECT_NE(host_.log_text().find("display=:100 removed stale X lock /tmp/.X100-lock"), std::string::npos)
      << host_.log_text();
}

TEST_F(LeaseCoreTest, LeftoversAreLeftAloneWhenCleaningIsOff) {
  settings_.clean_stale = false;
  host_.displays[100] = {DisplayUse::stale, "stale X lock of uid 4242", 4242, 0};
  host_.cleanable.insert(100);
  EXPECT_EQ(acquire(kAlice).acquire().lease().display(), 101u);
  EXPECT_EQ(host_.cleanable.count(100), 1u);
}

TEST_F(LeaseCoreTest, QuotasPerUserAndPerHost) {
  settings_.max_leases_per_user = 2;
  settings_.max_leases = 3;
  EXPECT_EQ(acquire(kAlice).status(), v1::OK);
  EXPECT_EQ(acquire(kAlice).status(), v1::OK);
  const auto third = acquire(kAlice);
  EXPECT_EQ(third.status(), v1::EXHAUSTED);
  EXPECT_NE(third.message().find("max-leases-per-user=2"), std::string::npos);
  EXPECT_EQ(acquire(kBob).status(), v1::OK);
  const auto host_full = acquire(user(1005));
  EXPECT_EQ(host_full.status(), v1::EXHAUSTED);
  EXPECT_NE(host_full.message().find("max-leases"), std::string::npos);
  EXPECT_EQ(core().counters().acquire_refusals[static_cast<std::size_t>(AcquireRefusal::user_quota)], 1u);
  EXPECT_EQ(core().counters().acquire_refusals[static_cast<std::size_t>(AcquireRefusal::host_limit)], 1u);
}

// X servers started outside the broker on numbers of the range count as
// blocked (in_use) in status and metrics before any acquire has probed them.
TEST_F(LeaseCoreTest, StatusAndMetricsCountNumbersTakenOutsideTheBroker) {
  host_.displays[101] = {DisplayUse::live, "X server running (lock pid 77)", 1002, 77};
  host_.displays[102] = {DisplayUse::live, "X server running (lock pid 78)", 1002, 78};
  EXPECT_EQ(status(kRoot).status_reply().free_displays(), 2u);
  const MetricsSnapshot m = core().metrics_snapshot();
  EXPECT_EQ(m.free_displays, 2u);
  EXPECT_EQ(m.blocked[static_cast<std::size_t>(BlockReason::in_use)], 2u);
  // A stale leftover is the acquire's to clean: still free.
  host_.displays[103] = {DisplayUse::stale, "stale X lock of uid 4242", 4242, 0};
  host_.advance(std::chrono::seconds(2));
  EXPECT_EQ(core().metrics_snapshot().free_displays, 2u);
}

// Refusals are counted per user too, so the restart-loop alert can name who.
TEST_F(LeaseCoreTest, RefusalsAreCountedPerUser) {
  settings_.max_leases_per_user = 1;
  EXPECT_EQ(acquire(kAlice).status(), v1::OK);
  EXPECT_EQ(acquire(kAlice).status(), v1::EXHAUSTED);
  EXPECT_EQ(acquire(kAlice).status(), v1::EXHAUSTED);
  const auto& per_user = core().counters().user_acquire_refusals;
  ASSERT_EQ(per_user.count(kAlice.uid), 1u);
  EXPECT_EQ(per_user.at(kAlice.uid)[static_cast<std::size_t>(AcquireRefusal::user_quota)], 2u);
  EXPECT_EQ(per_user.count(kBob.uid), 0u);
  const std::string text = render_metrics(core().counters(), core().metrics_snapshot());
  EXPECT_NE(text.find("xpra_broker_user_acquire_refusals_total{user=\"user1001\",uid=\"1001\",reason=\"user_quota\"} 2\n"),
            std::string::npos)
      << text;
}

// A reload's new range and quota apply at once; a lease outside the new
// range keeps its number until it ends, and the number then leaves the pool.
TEST_F(LeaseCoreTest, ReconfigureAppliesRangeAndQuotaWithLeasesHeld) {
  settings_.max_leases_per_user = 1;
  const auto first = acquire(kAlice);
  ASSERT_EQ(first.acquire().lease().display(), 100u);
  CoreSettings wider = settings_;
  wider.display_first = 102;
  wider.display_last = 105;
  wider.max_leases_per_user = 2;
  core().reconfigure(wider, AccessPolicy{});
  EXPECT_EQ(core().allocator().free_count(), 4u);
  const auto second = acquire(kAlice);
  ASSERT_EQ(second.status(), v1::OK) << second.message();
  EXPECT_GE(second.acquire().lease().display(), 102u);
  release(kAlice, first.acquire().lease().id());
  EXPECT_FALSE(core().allocator().in_range(100));
  EXPECT_EQ(core().allocator().free_count(), 3u);
}

TEST_F(LeaseCoreTest, NoFreeDisplayTellsWhenToRetry) {
  for (std::uint32_t d = 100; d <= 103; ++d) host_.displays[d] = {DisplayUse::live, "busy", 0, 0};
  const auto r = acquire(kAlice);
  EXPECT_EQ(r.status(), v1::EXHAUSTED);
  EXPECT_EQ(r.retry_after_ms(), settings_.recheck_seconds * 1000);
}

TEST_F(LeaseCoreTest, ADirectoryTheHostCannotPrepareIsAnErrorWithNoLease) {
  host_.dir_errors[1001] = "mkdir: permission denied";
  const auto r = acquire(kAlice);
  EXPECT_EQ(r.status(), v1::INTERNAL);
  EXPECT_NE(r.message().find("permission denied"), std::string::npos);
  EXPECT_EQ(core().leases().size(), 0u);
  EXPECT_EQ(core().allocator().free_count(), 4u);
}

TEST_F(LeaseCoreTest, AnotherUsersLeaseReadsExactlyLikeAMissingOne) {
  const auto mine = acquire(kAlice).acquire().lease();
  const auto by_bob = release(kBob, mine.id());
  const auto missing = release(kBob, "ffffffffffffffff");
  EXPECT_EQ(by_bob.status(), v1::NOT_FOUND);
  EXPECT_EQ(missing.status(), v1::NOT_FOUND);
  EXPECT_EQ(by_bob.message(), "you hold no lease " + mine.id() + "; 'xpra-request-display list' shows your leases");
  EXPECT_EQ(release_display(kBob, mine.display()).status(), v1::NOT_FOUND);
  EXPECT_EQ(report_process(kBob, mine.id(), 1).status(), v1::NOT_FOUND);
  EXPECT_EQ(list(kBob).list().leases_size(), 0);
  EXPECT_EQ(core().leases().size(), 1u) << "nothing bob sent touched alice's lease";
}

TEST_F(LeaseCoreTest, AnAdminMayReleaseAnyLeaseAndListEveryone) {
  const auto alices = acquire(kAlice).acquire().lease();
  acquire(kBob);
  EXPECT_EQ(list(kBob, /*all=*/true).status(), v1::DENIED);
  const auto all = list(kAdmin, /*all=*/true);
  ASSERT_EQ(all.status(), v1::OK);
  EXPECT_EQ(all.list().leases_size(), 2);
  EXPECT_EQ(release_display(kAdmin, alices.display()).status(), v1::OK);
  EXPECT_EQ(core().leases().size(), 1u);
  EXPECT_NE(host_.log_text().find("released by uid=1003(user1003)"), std::string::npos);
}

TEST_F(LeaseCoreTest, ReleaseNeedsATarget) {
  v1::Request r;
  r.mutable_release();
  EXPECT_EQ(call(kAlice, r).status(), v1::INVALID);
}

TEST_F(LeaseCoreTest, RootOnlyAndAdminVerbsAreRefusedCentrally) {
  v1::Request open;
  open.mutable_open_login()->set_uid(1001);
  EXPECT_EQ(call(kAlice, open).status(), v1::DENIED);
  EXPECT_EQ(call(kRoot, open).status(), v1::OK);
  v1::Request metrics;
  metrics.mutable_metrics();
  EXPECT_EQ(call(kAlice, metrics).status(), v1::DENIED);
  EXPECT_EQ(call(kAdmin, metrics).status(), v1::OK);
  EXPECT_EQ(host_.requests, 2u) << "a refused request never reaches a handler or the host";
}

TEST_F(LeaseCoreTest, AProcessOfAnotherUserIsNotTracked) {
  const auto lease = acquire(kAlice).acquire().lease();
  host_.add_process(500, kBob.uid);
  host_.add_process(501, kAlice.uid);
  EXPECT_EQ(report_process(kAlice, lease.id(), 500).status(), v1::DENIED);
  EXPECT_EQ(report_process(kAlice, lease.id(), 502).status(), v1::DENIED) << "no such process";
  EXPECT_EQ(report_process(kAlice, lease.id(), 501).status(), v1::OK);
  const Lease* held = core().leases().find(lease.id());
  ASSERT_EQ(held->processes.size(), 1u);
  EXPECT_EQ(held->processes[0].pid, 501);
}

TEST_F(LeaseCoreTest, ALeaseWithProcessesEndsOnlyWhenTheyAreReaped) {
  const auto lease = acquire(kAlice).acquire().lease();
  host_.add_process(501, kAlice.uid);
  report_process(kAlice, lease.id(), 501);
  EXPECT_EQ(release(kAlice, lease.id()).status(), v1::OK);
  ASSERT_EQ(host_.reaps.size(), 1u);
  EXPECT_EQ(host_.reaps[0].job.processes.size(), 1u);
  EXPECT_EQ(core().leases().find(lease.id())->ending, true);
  EXPECT_EQ(core().allocator().free_count(), 3u) << "the number stays out while its processes may run";
  EXPECT_EQ(release(kAlice, lease.id()).status(), v1::OK) << "a second release of an ending lease is harmless";
  EXPECT_EQ(host_.reaps.size(), 1u);
  host_.finish_reap({1, 0, 0, {}, 5ms});
  EXPECT_EQ(core().leases().size(), 0u);
  EXPECT_EQ(core().allocator().free_count(), 4u);
  EXPECT_EQ(core().counters().processes_terminated, 1u);
}

TEST_F(LeaseCoreTest, SurvivorsOfSigkillQuarantineTheNumber) {
  host_.reap_everything = true;
  const auto lease = acquire(kAlice).acquire().lease();
  release(kAlice, lease.id());
  host_.finish_reap({0, 0, 1, {}, 5ms});
  EXPECT_TRUE(core().allocator().blocked().count(lease.display()));
  ASSERT_FALSE(host_.lines.empty());
  bool event_seen = false;
  for (const auto& l : host_.lines) event_seen |= l.event == LogEvent::reaped_with_survivors;
  EXPECT_TRUE(event_seen);
}

TEST_F(LeaseCoreTest, HoldersThatKeepFailingAreBackedOff) {
  settings_.restart_guard.failures_before_backoff = 2;
  for (int i = 0; i < 2; ++i) {
    ASSERT_EQ(acquire(kAlice, /*conn=*/10 + i).status(), v1::OK);
    core().connection_closed(10 + i);  // the holder died at once
  }
  const auto r = acquire(kAlice, 20);
  EXPECT_EQ(r.status(), v1::RATE_LIMITED);
  EXPECT_GT(r.retry_after_ms(), 0u);
  EXPECT_EQ(acquire(kBob, 21).status(), v1::OK) << "one user's back-off is not another's";
}

TEST_F(LeaseCoreTest, AConflictTheHostConfirmsQuarantinesOnlyUpToTheLimit) {
  settings_.max_quarantines_per_user = 1;
  for (std::uint32_t d = 100; d <= 103; ++d) host_.conflicts[d] = {"X lock of uid 0", false};
  auto report_conflict = [&](const std::string& id) {
    v1::Request r;
    r.mutable_report_start_failure()->set_lease_id(id);
    r.mutable_report_start_failure()->set_failure(v1::DISPLAY_CONFLICT);
    return call(kAlice, r);
  };
  const auto first = report_conflict(acquire(kAlice).acquire().lease().id());
  EXPECT_TRUE(first.report_start_failure().conflict_confirmed());
  EXPECT_EQ(first.report_start_failure().quarantined_display(), 100u);
  const auto second = report_conflict(acquire(kAlice).acquire().lease().id());
  EXPECT_TRUE(second.report_start_failure().conflict_confirmed());
  EXPECT_EQ(second.report_start_failure().quarantined_display(), 0u) << "alice's reports already hold one";
  EXPECT_EQ(core().counters().quarantines, 1u);
}

TEST_F(LeaseCoreTest, AnUnconfirmedConflictCountsAsAFailedStart) {
  const auto lease = acquire(kAlice).acquire().lease();
  v1::Request r;
  r.mutable_report_start_failure()->set_lease_id(lease.id());
  r.mutable_report_start_failure()->set_failure(v1::DISPLAY_CONFLICT);
  const auto reply = call(kAlice, r);
  EXPECT_FALSE(reply.report_start_failure().conflict_confirmed());
  EXPECT_TRUE(core().allocator().blocked().empty()) << "a claim the host does not back blocks nothing";
}

TEST_F(LeaseCoreTest, LogLinesNameLeaseUidPidAndDisplayInOneOrder) {
  const auto lease = acquire(kAlice).acquire().lease();
  const std::string expected = "lease=" + lease.id() +
                               " uid=1001(user1001) pid=11001 display=:" + std::to_string(lease.display()) +
                               " acquired purpose=\"test\"";
  EXPECT_NE(host_.log_text().find(expected), std::string::npos) << host_.log_text();
}

TEST_F(LeaseCoreTest, StatusShowsUsersOnlyTheirOwnAndAdminsTheFindings) {
  host_.displays[100] = {DisplayUse::live, "X server of uid 1002", 1002, 4711};
  host_.census = std::make_shared<XServerSnapshot>();
  host_.census->by_uid = {{1001, {10}}, {1002, {4711}}};
  host_.census->taken_at = host_.clock;
  acquire(kAlice);
  const auto mine = status(kAlice).status_reply();
  ASSERT_EQ(mine.blocked_size(), 1);
  EXPECT_EQ(mine.blocked(0).owner_uid(), 0u) << "users never see another user's uid";
  EXPECT_EQ(mine.x_servers_size(), 1);
  const auto admins = status(kAdmin).status_reply();
  EXPECT_EQ(admins.blocked(0).owner_uid(), 1002u);
  EXPECT_EQ(admins.x_servers_size(), 2);
  EXPECT_EQ(admins.xpra_socket_hostname(), "testhost");
}

TEST_F(LeaseCoreTest, OrphansOfEndedLeasesAreShownToTheirUserAndAdminsAndLoggedWhenTheyGrow) {
  host_.census = std::make_shared<XServerSnapshot>();
  host_.census->orphans_by_uid = {{1001, {{501, "dbus-daemon", "aaaa", 100}, {502, "ssh-agent", "aaaa", 100}}},
                                  {1002, {{601, "dbus-daemon", "bbbb", 101}}}};
  host_.census->orphans_seen_total = 3;
  host_.census->taken_at = host_.clock;
  const auto mine = status(kAlice).status_reply();
  ASSERT_EQ(mine.x_servers_size(), 1) << "a user with orphans but no X server is listed, and only her own";
  EXPECT_EQ(mine.x_servers(0).uid(), 1001u);
  EXPECT_EQ(mine.x_servers(0).orphans(), 2u);
  ASSERT_EQ(mine.x_servers(0).orphan_processes_size(), 2);
  EXPECT_EQ(mine.x_servers(0).orphan_processes(0).comm(), "dbus-daemon");
  EXPECT_EQ(mine.x_servers(0).orphan_processes(0).lease(), "aaaa");
  EXPECT_EQ(mine.orphans_seen_total(), 0u) << "the host-wide count is the admins'";
  const auto admins = status(kAdmin).status_reply();
  EXPECT_EQ(admins.x_servers_size(), 2);
  EXPECT_EQ(admins.orphans_seen_total(), 3u);

  auto orphan_lines = [&] {
    std::size_t n = 0;
    for (const auto& l : host_.lines) n += l.event == LogEvent::orphans_outlived_lease;
    return n;
  };
  core().check_for_leaked_x_servers();
  EXPECT_EQ(orphan_lines(), 2u) << host_.log_text();
  EXPECT_NE(host_.log_text().find("uid=1001(user1001) has 2 process(es) that outlived the lease they started under "
                                  "(reparented to init): 501 (dbus-daemon, lease aaaa :100), 502 (ssh-agent, lease "
                                  "aaaa :100)"),
            std::string::npos)
      << host_.log_text();
  core().check_for_leaked_x_servers();
  EXPECT_EQ(orphan_lines(), 2u) << "the same count is not said again every round";
  host_.census->orphans_by_uid[1002].push_back({602, "dbus-daemon", "cccc", 102});
  core().check_for_leaked_x_servers();
  EXPECT_EQ(orphan_lines(), 3u) << "a growing count is said again";
}

// --- The rule of durable leases, with records in memory ----------------------

TEST_F(LeaseCoreTest, ALeaseTheRecordsRefuseIsNotGiven) {
  records_ = std::make_unique<FakeRecords>();
  records_->refuse = true;
  const auto r = acquire(kAlice);
  EXPECT_EQ(r.status(), v1::INTERNAL);
  EXPECT_EQ(core().leases().size(), 0u) << "memory holds nothing the record refused";
  EXPECT_EQ(core().allocator().free_count(), 4u);
  records_->refuse = false;
  EXPECT_EQ(acquire(kAlice).status(), v1::OK);
  EXPECT_EQ(records_->journal.size(), 1u);
}

TEST_F(LeaseCoreTest, AnEndedLeasesNumberWaitsForItsEndToBeRecorded) {
  records_ = std::make_unique<FakeRecords>();
  const auto lease = acquire(kAlice).acquire().lease();
  records_->hold_owed = true;
  const auto released = release(kAlice, lease.id());
  EXPECT_EQ(released.status(), v1::INTERNAL) << "an end not recorded is not acknowledged";
  EXPECT_EQ(core().leases().size(), 0u);
  EXPECT_EQ(core().allocator().free_count(), 3u) << "a restart now would bring the lease back";
  const auto s = status(kRoot).status_reply();
  ASSERT_EQ(s.displays_awaiting_journal_size(), 1);
  EXPECT_EQ(s.displays_awaiting_journal(0), lease.display());
  records_->write_owed();
  EXPECT_EQ(core().retry_records(), 1u);
  EXPECT_EQ(core().allocator().free_count(), 4u);
}

TEST_F(LeaseCoreTest, ARefusedProcessReportLeavesNothingTracked) {
  records_ = std::make_unique<FakeRecords>();
  const auto lease = acquire(kAlice).acquire().lease();
  host_.add_process(501, kAlice.uid);
  records_->refuse = true;
  EXPECT_EQ(report_process(kAlice, lease.id(), 501).status(), v1::INTERNAL);
  EXPECT_TRUE(core().leases().find(lease.id())->processes.empty());
}

// --- Restart ----------------------------------------------------------------------

RecoveredLease recovered(const std::string& id, std::uint32_t display, uid_t uid, pid_t holder) {
  RecoveredLease r;
  r.lease.id = id;
  r.lease.display = display;
  r.lease.uid = uid;
  r.lease.user = "user" + std::to_string(uid);
  r.lease.holder_pid = holder;
  r.lease.reattach_token = std::string(32, 'a');
  return r;
}

TEST_F(LeaseCoreTest, RestoreWaitsForLiveHoldersAndReapsTheRest) {
  host_.add_process(7001, kAlice.uid);  // alice's holder still runs
  const auto summary =
      core().restore({recovered("alive", 100, kAlice.uid, 7001), recovered("gone", 101, kBob.uid, 7002)}, 30s);
  EXPECT_EQ(summary.waiting, 1u);
  EXPECT_EQ(summary.reaping, 1u);
  EXPECT_TRUE(core().leases().find("alive")->detached);
  EXPECT_EQ(core().leases().find("gone"), nullptr) << "nothing ran under it: it ends at once";
  // The holder does not come back in time.
  host_.advance(31s);
  core().expire_detached();
  EXPECT_EQ(core().leases().size(), 0u);
  EXPECT_EQ(core().allocator().free_count(), 4u);
}

TEST_F(LeaseCoreTest, OfTwoRecoveredLeasesOnOneNumberTheLaterWins) {
  host_.add_process(7001, kAlice.uid);
  host_.add_process(7002, kBob.uid);
  auto older = recovered("older", 100, kAlice.uid, 7001);
  older.processes.push_back({7001, 0, 0, 0, 1000u + 7001});
  const auto summary = core().restore({older, recovered("newer", 100, kBob.uid, 7002)}, 30s);
  EXPECT_EQ(summary.dropped, 1u);
  EXPECT_EQ(core().leases().find_by_display(100)->id, "newer");
  ASSERT_EQ(host_.reaps.size(), 1u) << "the older lease's process is still reaped";
  EXPECT_TRUE(host_.reaps[0].job.processes_only);
}

TEST_F(LeaseCoreTest, ReattachNeedsTheTokenAndTheOwner) {
  host_.add_process(7001, kAlice.uid);
  core().restore({recovered("alive", 100, kAlice.uid, 7001)}, 30s);
  auto reattach = [&](const Caller& c, const std::string& token) {
    v1::Request r;
    r.mutable_reattach()->set_lease_id("alive");
    r.mutable_reattach()->set_reattach_token(token);
    return call(c, r, 42);
  };
  EXPECT_EQ(reattach(kAlice, std::string(32, 'b')).status(), v1::NOT_FOUND);
  EXPECT_EQ(reattach(kBob, std::string(32, 'a')).status(), v1::NOT_FOUND);
  const auto ok = reattach(kAlice, std::string(32, 'a'));
  EXPECT_EQ(ok.status(), v1::OK);
  EXPECT_FALSE(core().leases().find("alive")->detached);
  EXPECT_TRUE(core().connection_holds_leases(42));
}

TEST_F(LeaseCoreTest, LoginsCountAndTheLastOneEndsTheUsersLeases) {
  auto login = [&](bool open) {
    v1::Request r;
    if (open)
      r.mutable_open_login()->set_uid(kAlice.uid);
    else {
      r.mutable_close_login()->set_uid(kAlice.uid);
      r.mutable_close_login()->set_reap_leases(true);
    }
    return call(kRoot, r);
  };
  EXPECT_EQ(login(true).open_login().login_sessions(), 1u);
  EXPECT_EQ(login(true).open_login().login_sessions(), 2u);
  acquire(kAlice);
  EXPECT_EQ(login(false).close_login().leases_ended(), 0u);
  EXPECT_EQ(login(false).close_login().leases_ended(), 1u);
  EXPECT_EQ(core().leases().size(), 0u);
  EXPECT_FALSE(login(false).close_login().counted()) << "a logout nobody counted keeps the leases";
}

}  // namespace
}  // namespace xpra_broker

// --- After a failed group commit: the verb table's `journals` column ----------

namespace xpra_broker {
namespace {

// An OK reply of `verb` (a reply's result has the field number of its verb).
v1::Response ok_reply_of(v1::Request::VerbCase verb, const std::string& lease_id = "") {
  v1::Response r;
  r.set_status(v1::OK);
  const auto* field = v1::Response::descriptor()->FindFieldByNumber(static_cast<int>(verb));
  r.GetReflection()->MutableMessage(&r, field);
  if (verb == v1::Request::kAcquire) r.mutable_acquire()->mutable_lease()->set_id(lease_id);
  return r;
}

TEST_F(LeaseCoreTest, AfterAFailedCommitEachVerbsReplyFollowsItsJournalsColumn) {
  for (const VerbRule& rule : verb_rules()) {
    const v1::Response after = core().reply_after_failed_commit(ok_reply_of(rule.verb, "l1"), {"l1"});
    switch (rule.journals) {
      case Journaling::none: EXPECT_EQ(after.status(), v1::OK) << rule.name; break;
      case Journaling::owed:
        EXPECT_EQ(after.status(), v1::INTERNAL) << rule.name;
        EXPECT_NE(after.message().find("the lease is ending"), std::string::npos) << rule.name;
        break;
      case Journaling::withdrawable:
        ASSERT_NE(rule.recorded_as, nullptr) << rule.name;
        EXPECT_EQ(after.status(), v1::INTERNAL) << rule.name;
        EXPECT_NE(after.message().find(std::string("cannot record the ") + rule.recorded_as), std::string::npos)
            << rule.name << ": " << after.message();
        break;
    }
  }
  // An acquire whose record an earlier write carried keeps its reply (its
  // lease is ended the normal way by its undo); only a withdrawn one fails.
  EXPECT_EQ(core().reply_after_failed_commit(ok_reply_of(v1::Request::kAcquire, "kept"), {"l1"}).status(), v1::OK);
  // A refusal stays what it was.
  v1::Response refused;
  refused.set_status(v1::EXHAUSTED);
  EXPECT_EQ(core().reply_after_failed_commit(refused, {}).status(), v1::EXHAUSTED);
}

TEST_F(LeaseCoreTest, EveryVerbThatChangesLeasesOrLoginsJournals) {
  for (const VerbRule& rule : verb_rules()) {
    const bool changes = rule.verb == v1::Request::kAcquire || rule.verb == v1::Request::kRelease ||
                         rule.verb == v1::Request::kReportProcess || rule.verb == v1::Request::kReportStartFailure ||
                         rule.verb == v1::Request::kReattach || rule.verb == v1::Request::kOpenLogin ||
                         rule.verb == v1::Request::kCloseLogin;
    EXPECT_EQ(rule.journals != Journaling::none, changes) << rule.name;
  }
}

}  // namespace
}  // namespace xpra_broker
