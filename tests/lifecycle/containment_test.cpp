// Containment: nothing started under a lease outlives it, on every end path,
// with Xpra run as a real host runs it: Debian's default Xpra config, where
// `dbus-launch` (dbus-x11) starts a dbus-daemon that calls setsid and is
// reparented away from xpra, and `start = /etc/X11/Xsession true` runs the
// Xsession scripts (ssh-agent among them). After each end, every process of
// the user that started since the session began must be gone, not only X
// servers: the check reads all of the user's processes from /proc.
//
// Each session must first show its dbus-daemon, so the tests cannot pass for
// want of the helpers they are about. Files count too: the socket each
// dbus-daemon binds in /tmp (Xpra stops the bus with SIGINT, which leaves it)
// must be gone after every end as well.
//
// Display slice 560-579 (lifecycle_support.h).
#include <signal.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <ctime>
#include <fstream>

#include "lifecycle_support.h"

namespace xpra_broker::lifecycle {
namespace {

using Clock = std::chrono::steady_clock;

std::size_t count_named(const std::vector<UserProcess>& processes, const std::string& comm) {
  std::size_t n = 0;
  for (const auto& p : processes) n += p.comm == comm;
  return n;
}

class ContainmentTest : public LifecycleTest {
 protected:
  void SetUp() override {
    struct stat st {};
    ASSERT_EQ(::stat("/usr/bin/dbus-launch", &st), 0)
        << "dbus-x11 is not installed (scripts/install-deps.sh): these tests are about the dbus-daemon it starts";
    for (std::uint32_t d = 560; d <= 579; ++d)
      ASSERT_FALSE(path_exists(x_lock_path(d)) || path_exists(x_socket_path(d))) << ":" << d << " in use before";
    start_broker({"--displays=560-579", "--failures-before-backoff=1000", "--acquire-burst=1000",
                  "--acquires-per-minute=1000", "--reattach-grace-seconds=3"});
    alice_ = integration::uid_of(kAlice);
    since_ = boot_ticks_now();
    began_ = std::time(nullptr);
    ASSERT_TRUE(processes_of_since(alice_, since_).empty());
  }

  struct Session {
    ChildProcess client;
    v1::Lease lease;
  };

  // `exec --xpra -- xpra start` as alice with Debian's Xpra config as it is
  // (dbus-launch and the Xsession start command on); only features that
  // reach outside the host or need hardware are off. Waits until xpra is
  // LIVE and its dbus-daemon runs.
  Session start_session(bool own_process_group = false) {
    const auto started = Clock::now();
    Session s;
    std::vector<std::string> args = {"exec", "--xpra", "--purpose", "containment", "--", "xpra", "start"};
    for (const auto& o : host_default_xpra_options()) args.push_back(o);
    s.client = spawn_client(kAlice, args, {}, own_process_group);
    const auto lease = lease_held_by(s.client);
    if (!lease) {
      ADD_FAILURE() << "no lease: " << s.client.terminate().describe();
      return s;
    }
    s.lease = *lease;
    ProcessResult listed;
    const bool up = wait_for_xpra_live(kAlice, s.lease, s.client, {}, listed, [&] {
      return count_named(processes_of_since(alice_, since_), "dbus-daemon") > 0;
    });
    if (!up) {
      ADD_FAILURE() << "xpra did not come up LIVE with its dbus-daemon on :" << lease->display()
                    << "\nxpra list: " << listed.describe() << "\nprocesses:" << describe(processes_of_since(alice_, since_))
                    << "\nholder: " << s.client.terminate().describe();
      return s;
    }
    report("xpra LIVE with its dbus-daemon after " +
           std::to_string(std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - started).count()) +
           " ms; processes of the user:" + describe(processes_of_since(alice_, since_)));
    return s;
  }

  // Every process of alice that started since the test began is gone, and
  // no lease is left; `except` (a client the test still holds) aside.
  void expect_nothing_left(const std::string& how, pid_t except = 0) {
    const auto ended = Clock::now();
    std::vector<UserProcess> left;
    std::vector<std::string> sockets;
    const bool clean = integration::wait_until(
        [&] {
          left = processes_of_since(alice_, since_);
          std::erase_if(left, [&](const UserProcess& p) { return p.pid == except; });
          sockets = bus_sockets_of_since(alice_, began_);
          return left.empty() && sockets.empty() && leases().empty();
        },
        45s, 50ms);
    report(how + ": " +
           (clean ? "nothing of the user left"
                  : std::to_string(left.size()) + " process(es) and " + std::to_string(sockets.size()) +
                        " session bus socket(s) left") +
           " after " +
           std::to_string(std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - ended).count()) + " ms");
    EXPECT_TRUE(clean) << how << ": left running:" << describe(left) << "\nsession bus sockets left:" << describe(sockets)
                       << (leases().empty() ? "" : "\nand a lease");
  }

  uid_t alice_ = 0;
  std::uint64_t since_ = 0;
  std::time_t began_ = 0;
};

TEST_F(ContainmentTest, CommandExitingLeavesNothing) {
  Session s = start_session();
  ASSERT_FALSE(HasFailure());
  const std::string dir = s.lease.runtime_dir();
  const auto stopped = integration::run_as(
      kAlice, {"xpra", "stop", ":" + std::to_string(s.lease.display()), "--socket-dir=" + dir, "--socket-dirs=" + dir},
      {{}, "/"}, 60s);
  EXPECT_EQ(stopped.exit_code, 0) << stopped.describe();
  const auto r = s.client.wait(90s);
  EXPECT_FALSE(r.timed_out) << r.describe();
  expect_nothing_left("xpra exited (xpra stop)");
}

TEST_F(ContainmentTest, StopSignalsToTheClientLeaveNothing) {
  for (int signo : {SIGTERM, SIGINT, SIGHUP}) {
    SCOPED_TRACE(strsignal(signo));
    Session s = start_session();
    ASSERT_FALSE(HasFailure());
    s.client.send_signal(signo);
    const auto r = s.client.wait(90s);
    EXPECT_FALSE(r.timed_out) << r.describe();
    expect_nothing_left(std::string(strsignal(signo)) + " to the client");
  }
}

TEST_F(ContainmentTest, KillNineOfTheClientAloneLeavesNothing) {
  Session s = start_session();
  ASSERT_FALSE(HasFailure());
  s.client.send_signal(SIGKILL);
  s.client.wait(30s);
  expect_nothing_left("SIGKILL of the client alone");
}

TEST_F(ContainmentTest, KillNineOfTheClientsProcessGroupLeavesNothing) {
  // As a supervisor that kills its child's whole group on a start timeout.
  Session s = start_session(/*own_process_group=*/true);
  ASSERT_FALSE(HasFailure());
  ASSERT_EQ(::kill(-s.client.pid(), SIGKILL), 0);
  s.client.wait(30s);
  expect_nothing_left("SIGKILL of the client's process group");
}

TEST_F(ContainmentTest, ReleaseByTheOwnerOrAnAdminLeavesNothing) {
  for (const bool by_root : {false, true}) {
    const std::string who = by_root ? "root" : "the owner";
    SCOPED_TRACE("release by " + who);
    Session s = start_session();
    ASSERT_FALSE(HasFailure());
    const auto released =
        by_root ? broker().client_as("root", {"release", s.lease.id()})
                : run_client(kAlice, {"release", ":" + std::to_string(s.lease.display())});
    EXPECT_EQ(released.exit_code, 0) << released.describe();
    s.client.wait(60s);
    expect_nothing_left("release by " + who);
  }
}

TEST_F(ContainmentTest, PamLogoutWithReapLeavesNothing) {
  Session s = start_session();
  ASSERT_FALSE(HasFailure());
  // A PAM service with only the broker's module, as docs/pam.md sets it up.
  const std::string service = "xpra-broker-containment-" + std::to_string(::getpid());
  const std::string service_file = "/etc/pam.d/" + service;
  {
    std::ofstream f(service_file);
    f << "session required " << XPRA_PAM_MODULE_PATH << " socket=" << broker().socket_path()
      << " reap=yes timeout=5000\n";
  }
  remove_at_end(service_file);
  const auto login = integration::run_as("root", {"pamtester", "-v", service, kAlice, "open_session", "close_session"},
                                         {}, 60s);
  EXPECT_EQ(login.exit_code, 0) << login.describe();
  s.client.wait(60s);
  expect_nothing_left("the last PAM logout with reap=yes");
}

TEST_F(ContainmentTest, HolderGoneDuringABrokerRestartLeavesNothing) {
  Session s = start_session();
  ASSERT_FALSE(HasFailure());
  broker().stop();
  s.client.send_signal(SIGKILL);
  s.client.wait(30s);
  broker().start(60s);
  expect_nothing_left("the holder killed while the broker was down");
}

TEST_F(ContainmentTest, ReattachGraceRunningOutLeavesNothing) {
  Session s = start_session();
  ASSERT_FALSE(HasFailure());
  broker().stop();
  // The holder cannot reattach: stopped until the restarted broker's grace
  // (3 s) has run out and it has reaped the lease itself.
  s.client.send_signal(SIGSTOP);
  broker().start(60s);
  expect_nothing_left("the reattach grace ran out (holder stopped)", s.client.pid());
  s.client.send_signal(SIGCONT);
  const auto r = s.client.wait(60s);
  EXPECT_FALSE(r.timed_out) << r.describe();
  expect_nothing_left("the stopped holder resumed after its lease was reaped");
}

// The keeper is the user's own process: killed together with the client and
// xpra (by the user's `kill -9`, or an OOM kill of all three), what it held is
// reparented to init and escapes every reaper. The census then counts it as
// an orphan of the ended lease: status, metrics and the log name it.
TEST_F(ContainmentTest, OrphansOfAKilledKeeperAreCountedByTheCensus) {
  Session s = start_session();
  ASSERT_FALSE(HasFailure());
  pid_t keeper = 0;
  for (const auto& p : processes_of_since(alice_, since_))
    if (p.comm == "xpra-rd-keeper" && p.ppid == s.client.pid()) keeper = p.pid;
  ASSERT_GT(keeper, 0) << "no keeper under the client:" << describe(processes_of_since(alice_, since_));
  pid_t xpra = 0;
  for (const auto& p : processes_of_since(alice_, since_))
    if (p.comm == "xpra" && p.ppid == keeper) xpra = p.pid;
  ASSERT_GT(xpra, 0) << "no xpra under the keeper:" << describe(processes_of_since(alice_, since_));
  // All three at once, so that none can end the dbus-daemon first, which
  // each would: the client stopped, so that it cannot see its keeper die and
  // end the orphans itself (end_orphans_of_a_lost_keeper); xpra killed, so
  // that the reaper's SIGTERM cannot make it SIGINT its dbus-daemon on the
  // way out (Xpra's stop_dbus_server). Either made this test a race.
  // And the client's SIGKILL only once the other two have died: a SIGKILLed
  // process lives on until it is scheduled to exit, and a broker that looks
  // while the keeper is still dying finds the dbus-daemon below it (and
  // rightly ends it). Dead, the keeper has handed its orphans to the
  // stopped client, the next subreaper up, and the client hands them to
  // init.
  s.client.send_signal(SIGSTOP);
  ASSERT_EQ(::kill(keeper, SIGKILL), 0);
  ASSERT_EQ(::kill(xpra, SIGKILL), 0);
  ASSERT_TRUE(integration::wait_until(
      [&] {
        bool bus_under_client = false;
        for (const auto& p : processes_of_since(alice_, since_)) {  // zombies are not listed
          if (p.pid == keeper || p.pid == xpra) return false;
          bus_under_client = bus_under_client || (p.comm == "dbus-daemon" && p.ppid == s.client.pid());
        }
        return bus_under_client;
      },
      30s))
      << "the keeper and xpra did not die, or the dbus-daemon is not the stopped client's:"
      << describe(processes_of_since(alice_, since_));
  s.client.send_signal(SIGKILL);
  s.client.wait(30s);
  ASSERT_TRUE(integration::wait_until([&] { return leases().empty(); }, 30s));

  // What escaped: the session's processes reparented to init.
  std::vector<UserProcess> orphans;
  ASSERT_TRUE(integration::wait_until(
      [&] {
        orphans = processes_of_since(alice_, since_);
        std::erase_if(orphans, [](const UserProcess& p) { return p.ppid != 1; });
        return count_named(orphans, "dbus-daemon") > 0;
      },
      30s))
      << "expected the dbus-daemon to escape to init:" << describe(processes_of_since(alice_, since_));

  // The census runs every 5 s and reports an orphan found twice in a row.
  nlohmann::json alice_row;
  ProcessResult status;
  const bool counted = integration::wait_until(
      [&] {
        status = broker().client_as("root", {"status", "--json"});
        if (status.exit_code != 0) return false;
        const nlohmann::json reply = nlohmann::json::parse(status.out);
        for (const auto& row : reply["x_servers"])
          if (row["user"] == kAlice) alice_row = row;
        return alice_row.is_object() && alice_row["orphans"].get<std::size_t>() >= 1;
      },
      40s, 500ms);
  EXPECT_TRUE(counted) << status.describe();
  bool named = false;
  for (const auto& o : alice_row["orphan_processes"])
    named = named || (o["comm"] == "dbus-daemon" && o["lease"] == s.lease.id() && o["display"] == s.lease.display());
  EXPECT_TRUE(named) << alice_row.dump();
  const auto metrics = broker().client_as("root", {"metrics"});
  EXPECT_NE(metrics.out.find("xpra_broker_user_orphan_processes{user=\"xpb-alice\""), std::string::npos)
      << metrics.out;
  EXPECT_TRUE(integration::wait_until(
      [&] { return broker().log().find("outlived the lease they started under") != std::string::npos; }, 40s))
      << broker().log();
  report("census counted " + alice_row["orphans"].dump() + " orphan(s) of the ended lease:" + describe(orphans));

  // SIGTERM, on which dbus-daemon removes its socket; SIGKILL if need be.
  const auto none_left = [&] {
    return std::none_of(orphans.begin(), orphans.end(),
                        [](const UserProcess& p) { return integration::process_running(p.pid); });
  };
  for (const auto& p : orphans) ::kill(p.pid, SIGTERM);
  if (!integration::wait_until(none_left, 5s))
    for (const auto& p : orphans) ::kill(p.pid, SIGKILL);
  EXPECT_TRUE(integration::wait_until(none_left, 10s));
  EXPECT_TRUE(bus_sockets_of_since(alice_, began_).empty());
}

}  // namespace
}  // namespace xpra_broker::lifecycle
