// The journal on a full disk (docs/durability.md, "The rule"): the two
// sequences that lost an acknowledged lease or left a session untracked,
// replayed with real users, real Xvfb, the real client, kill -9 and restart,
// and the journal on a 1 MiB tmpfs the test fills to the brim.
//
// 1. A lease ends while nothing can be written; space comes back; the same
//    user gets the same number again. Before: the journal held two leases on
//    that number, a restart dropped the acknowledged one, and its X server
//    and session leaked when its client died.
// 2. A session's process report meets the full disk. Before: the client was
//    told the broker did not take the pid, ran the command anyway, and the
//    broker tracked in memory what its journal did not hold.
#include <signal.h>
#include <sys/stat.h>

#include <filesystem>
#include <fstream>

#include "durable_support.h"

namespace xpra_broker::durable {
namespace {

using integration::read_file;
using integration::wait_until;

v1::StatusReply status_of(BrokerProcess& broker) {
  v1::Request request;
  request.mutable_status();
  return broker.call(request).status_reply();
}

// Processes of `uid` whose command line is exactly `argv` (not zombies).
std::vector<pid_t> processes_running(uid_t uid, const std::string& argv_nul) {
  std::vector<pid_t> out;
  for (const auto& entry : std::filesystem::directory_iterator("/proc")) {
    const std::string name = entry.path().filename();
    if (name.find_first_not_of("0123456789") != std::string::npos) continue;
    struct stat st {};
    if (::stat(entry.path().c_str(), &st) != 0 || st.st_uid != uid) continue;
    const pid_t pid = std::stoi(name);
    if (read_file(entry.path().string() + "/cmdline") == argv_nul && integration::process_running(pid))
      out.push_back(pid);
  }
  return out;
}

// Room left in the journal's last page: a full tmpfs still takes appends
// that fit in a page the file already has.
std::size_t journal_page_room(const BrokerProcess& broker) {
  struct stat st {};
  if (::stat((broker.runtime_dir() + "/leases.journal").c_str(), &st) != 0) return 0;
  const auto used = static_cast<std::size_t>(st.st_size) % 4096;
  return used == 0 ? 0 : 4096 - used;
}

v1::Request report_request(const std::string& lease_id, pid_t pid) {
  v1::Request r;
  r.mutable_report_process()->set_lease_id(lease_id);
  r.mutable_report_process()->set_pid(pid);
  r.mutable_report_process()->set_role(v1::SESSION);
  return r;
}

// After fill_runtime_dir(): uses up that room with records every version of
// the broker writes (so the test replays the same sequence on older code):
// bob's acquire+release pairs on the range's spare number while a pair
// surely fits, then reports of alice's `pid` under her lease until one is
// refused. Then no process report, lease end or bigger record fits.
void use_up_journal_page(const BrokerProcess& broker, const std::string& lease_id, pid_t pid) {
  auto bob = connect_as(kBob, broker.socket_path());
  ASSERT_TRUE(bob.connected());
  while (journal_page_room(broker) >= 400) {
    const auto acquired = call_or_fail(bob, acquire_request("padding"));
    if (acquired.status() != v1::OK) break;
    ASSERT_EQ(call_or_fail(bob, release_request(acquired.acquire().lease().id())).status(), v1::OK);
  }
  auto alice = connect_as(kAlice, broker.socket_path());
  ASSERT_TRUE(alice.connected());
  for (int i = 0;; ++i) {
    ASSERT_LT(i, 13) << "the page did not fill up: " << journal_page_room(broker) << " bytes left";
    const auto r = call_or_fail(alice, report_request(lease_id, pid));
    if (r.status() == v1::INTERNAL) return;
    ASSERT_EQ(r.status(), v1::OK) << r.message();
  }
}

class FullDiskTest : public DurableTest {};

TEST_F(FullDiskTest, ALeaseEndedOnAFullDiskDoesNotCostTheNextLeaseOnItsNumberItsRestart) {
  constexpr std::uint32_t kDisplay = 790;
  start_broker_on_small_tmpfs({"--displays=790-791", "--reap-grace-ms=500", "--reattach-grace-seconds=60",
                               "--failures-before-backoff=1000", "--acquire-burst=100000", "--acquires-per-minute=1000000"},
                              1 << 20);
  log_filter_ = {":790"};
  const uid_t alice = integration::uid_of(kAlice);
  const std::string sleeper = std::string("sleep") + '\0' + "1001" + '\0';

  auto first = broker().spawn_client_as(kAlice, {"exec", "--xvfb", "--purpose", "first", "--", "sleep", "1001"});
  ASSERT_TRUE(wait_until([&] {
    const auto leases = list_all();
    return leases.size() == 1 && leases[0].process_pids_size() == 3;  // X server, keeper, command
  }, 30s)) << "the first session did not start";
  const std::string first_id = list_all()[0].id();
  ASSERT_EQ(list_all()[0].display(), kDisplay);
  const pid_t first_sleep = list_all()[0].process_pids(2);

  fill_runtime_dir();
  use_up_journal_page(broker(), first_id, first_sleep);
  if (HasFatalFailure()) return;
  // Her session ends while nothing can be written: it is reaped, but the
  // number waits for the end to be recorded.
  first.terminate();
  ASSERT_TRUE(wait_until([&] { return list_all().empty(); }, 30s));
  EXPECT_TRUE(wait_until([&] { return !x_server_on(kDisplay) && processes_running(alice, sleeper).empty(); }, 10s));
  auto status = status_of(broker());
  EXPECT_FALSE(status.journal_problem().empty()) << "status must say the broker runs degraded";
  EXPECT_EQ(std::vector<std::uint32_t>(status.displays_awaiting_journal().begin(),
                                       status.displays_awaiting_journal().end()),
            std::vector<std::uint32_t>{kDisplay});
  EXPECT_NE(broker().log().find("cannot write its end to the journal"), std::string::npos);
  const auto refused = broker().client_as(kAlice, {"exec", "--", "true"});
  EXPECT_NE(refused.exit_code, 0) << "no lease may be made meanwhile\n" << refused.describe();

  // Space comes back: within the retry interval the end is recorded and
  // the number returns.
  free_runtime_dir();
  ASSERT_TRUE(wait_until([&] {
    const auto s = status_of(broker());
    return s.journal_problem().empty() && s.displays_awaiting_journal_size() == 0 && s.free_displays() == 2;
  }, 10s)) << "the owed end was not written after space was freed";

  // Bob takes the other number, so alice's next session gets :790 again,
  // as in the incident (a range of one free number).
  auto bob = connect_as(kBob, broker().socket_path());
  auto spare = call_or_fail(bob, acquire_request("spare"));
  ASSERT_EQ(spare.status(), v1::OK) << spare.message();
  if (spare.acquire().lease().display() == kDisplay) {
    const auto other = call_or_fail(bob, acquire_request("spare"));
    ASSERT_EQ(other.status(), v1::OK) << other.message();
    ASSERT_EQ(call_or_fail(bob, release_request(spare.acquire().lease().id())).status(), v1::OK);
    spare = other;
  }
  ASSERT_NE(spare.acquire().lease().display(), kDisplay);
  auto second = broker().spawn_client_as(kAlice, {"exec", "--xvfb", "--purpose", "second", "--", "sleep", "1001"});
  ASSERT_TRUE(wait_until([&] {
    for (const auto& l : list_all())
      if (l.uid() == alice && l.process_pids_size() == 3) return true;
    return false;
  }, 30s)) << "the second session did not start";
  std::string second_id;
  for (const auto& l : list_all())
    if (l.uid() == alice) {
      second_id = l.id();
      ASSERT_EQ(l.display(), kDisplay);
    }
  const auto x = x_server_on(kDisplay);
  ASSERT_TRUE(x);
  kill_at_teardown({x->pid});

  kill_broker();
  restart_broker();
  EXPECT_EQ(broker().log().find("duplicate"), std::string::npos) << broker().log();
  // The acknowledged lease is back, and its client takes it back.
  EXPECT_TRUE(wait_until([&] {
    const auto l = find_lease(second_id);
    return l && l->state() == v1::ACTIVE;
  }, 20s)) << "the acknowledged lease did not come back to its client";
  EXPECT_FALSE(find_lease(first_id));
  ASSERT_TRUE(second.running()) << "the client gave up its lease";

  // Its holder dies: nothing of the session is left.
  second.send_signal(SIGKILL);
  second.wait();
  EXPECT_TRUE(wait_until([&] { return !find_lease(second_id); }, 30s)) << "the lease was not reaped";
  EXPECT_TRUE(wait_until([&] { return !x_server_on(kDisplay) && processes_running(alice, sleeper).empty(); }, 10s))
      << "the session's X server or command outlived its client";
}

TEST_F(FullDiskTest, AProcessTheJournalCannotRecordIsNeverRunAndNothingOutlivesTheClient) {
  constexpr std::uint32_t kDisplay = 792;
  start_broker_on_small_tmpfs({"--displays=792-793", "--reap-grace-ms=500", "--reattach-grace-seconds=60",
                               "--failures-before-backoff=1000", "--acquire-burst=100000", "--acquires-per-minute=1000000"},
                              1 << 20);
  log_filter_ = {":792"};
  const uid_t alice = integration::uid_of(kAlice);
  // An X server that waits for the test's word before it starts: the test
  // fills the disk between the X server's report and the command's.
  const std::string go = broker().scratch_dir() + "/go";
  const std::string marker = broker().scratch_dir() + "/command-ran";
  const std::string wrapper = broker().scratch_dir() + "/slow-xvfb";
  std::ofstream(wrapper) << "#!/bin/sh\nwhile [ ! -e " << go
                         << " ]; do sleep 0.05; done\nexec Xvfb -nolisten tcp -noreset \"$@\"\n";
  ASSERT_EQ(::chmod(wrapper.c_str(), 0755), 0);
  const std::string sleeper = std::string("sleep") + '\0' + "1002" + '\0';

  auto client = broker().spawn_client_as(
      kAlice, {"exec", "--xvfb", "--xvfb-command", wrapper, "--", "sh", "-c", "touch " + marker + "; exec sleep 1002"});
  ASSERT_TRUE(wait_until([&] {
    const auto leases = list_all();
    return leases.size() == 1 && leases[0].process_pids_size() == 1;
  }, 30s)) << "the X server was not reported";
  const auto lease = list_all()[0];
  ASSERT_EQ(lease.display(), kDisplay);
  fill_runtime_dir();
  // Padded with reports of the X server's pid: the same size of record as
  // the command's report that follows.
  use_up_journal_page(broker(), lease.id(), lease.process_pids(0));
  if (HasFatalFailure()) return;
  std::ofstream(go) << "go\n";

  const auto result = client.wait(60s);
  EXPECT_EQ(result.exit_code, 121) << "the client must not run what the broker cannot track\n" << result.describe();
  EXPECT_NE(result.err.find("could not track"), std::string::npos) << result.describe();
  struct stat st {};
  EXPECT_NE(::stat(marker.c_str(), &st), 0) << "the command ran although the broker did not take it";
  EXPECT_TRUE(wait_until([&] { return list_all().empty(); }, 30s));
  EXPECT_TRUE(wait_until([&] { return !x_server_on(kDisplay) && processes_running(alice, sleeper).empty(); }, 10s));
  EXPECT_NE(broker().log().find("does not track pid"), std::string::npos) << "the broker says what it refused";

  // And a restart (the space freed) finds nothing to bring back or leak.
  free_runtime_dir();
  kill_broker();
  restart_broker();
  EXPECT_TRUE(wait_until([&] { return list_all().empty(); }, 30s));
  EXPECT_FALSE(x_server_on(kDisplay));
  EXPECT_TRUE(processes_running(alice, sleeper).empty());
}

}  // namespace
}  // namespace xpra_broker::durable
