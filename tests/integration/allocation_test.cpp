// Central allocation under load, and leases that end however their holder
// goes away.
#include <signal.h>
#include <sys/stat.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>

#include "integration_fixture.h"

namespace xpra_broker::integration {
namespace {

namespace fs = std::filesystem;

class AllocationTest : public BrokerTest {};

// 60 exec clients of two users hold their displays at the same time (each
// waits for a "go" file the test creates only once the broker lists all 60
// leases), so any display handed out twice would be held twice at once.
// Each command also claims its display with an O_EXCL marker file, which
// catches a double hand-out independently of what the broker reports.
TEST_F(AllocationTest, ConcurrentClientsOfTwoUsersNeverShareADisplay) {
  constexpr int kPerUser = 30;
  constexpr int kClients = 2 * kPerUser;
  constexpr std::uint32_t kFirst = 200, kLast = 279;
  // 30 acquires of one user at once is a burst the restart-loop defence
  // would rate-limit; this test is about allocation, so lift those limits.
  start_broker({"--displays=200-279", "--max-leases-per-user=64", "--max-leases=128", "--acquire-burst=100",
                "--acquires-per-minute=6000"});
  for (const char* dir : {"held", "conflict", "rec"}) make_directory(scratch(dir), 0777);

  // $1: a tag unique to this client, $2: the scratch dir.
  const std::string script = R"sh(set -C; d=$XPRA_BROKER_DISPLAY; s=$2
if ! (echo "$XPRA_BROKER_LEASE" > "$s/held/$d") 2>/dev/null; then
  echo "$d $XPRA_BROKER_LEASE" > "$s/conflict/$1"
fi
echo "$d $XPRA_BROKER_LEASE $PPID" > "$s/rec/$1"
n=0; while [ ! -e "$s/go" ] && [ $n -lt 600 ]; do sleep 0.1; n=$((n+1)); done
rm -f "$s/held/$d"
[ -e "$s/go" ]
)sh";

  std::vector<ChildProcess> clients;
  std::map<pid_t, std::string> user_of_pid;
  for (int i = 0; i < kPerUser; ++i)
    for (const char* user : {kAlice, kBob}) {
      const std::string tag = std::string(user) + "-" + std::to_string(i);
      clients.push_back(broker_->spawn_client_as(user, exec_shell(script, {tag, broker_->scratch_dir()})));
      user_of_pid[clients.back().pid()] = user;
    }

  // While they come up, every snapshot of the lease table must be clean.
  // No client may end before the go file exists; one that does failed.
  nlohmann::json snapshot;
  int snapshots = 0;
  bool client_ended = false;
  const bool came_up = wait_until(
      [&] {
        for (auto& client : clients) client_ended = client_ended || !client.running();
        if (client_ended) return true;
        snapshot = list_all();
        ++snapshots;
        std::set<std::uint32_t> displays;
        for (const auto& lease : snapshot) {
          EXPECT_TRUE(displays.insert(lease["display"].get<std::uint32_t>()).second)
              << "display held twice in one snapshot: " << snapshot.dump();
        }
        return snapshot.size() == static_cast<std::size_t>(kClients) &&
               std::distance(fs::directory_iterator(scratch("rec")), fs::directory_iterator()) == kClients;
      },
      60s, 50ms);
  const bool all_held = came_up && !client_ended;

  if (all_held) {
    std::set<std::uint32_t> displays;
    std::set<std::string> ids;
    std::map<uid_t, int> per_uid;
    std::set<pid_t> holder_pids;
    for (const auto& lease : snapshot) {
      const auto display = lease["display"].get<std::uint32_t>();
      EXPECT_GE(display, kFirst);
      EXPECT_LE(display, kLast);
      displays.insert(display);
      ids.insert(lease["lease"].get<std::string>());
      per_uid[lease["uid"].get<uid_t>()]++;
      holder_pids.insert(lease["pid"].get<pid_t>());
    }
    EXPECT_EQ(displays.size(), static_cast<std::size_t>(kClients)) << snapshot.dump(1);
    EXPECT_EQ(ids.size(), static_cast<std::size_t>(kClients));
    EXPECT_EQ(per_uid[uid_of(kAlice)], kPerUser);
    EXPECT_EQ(per_uid[uid_of(kBob)], kPerUser);
    // The broker's holder pid is the client process (SO_PEERCRED).
    for (const auto& [pid, user] : user_of_pid) EXPECT_TRUE(holder_pids.count(pid)) << "no lease held by pid " << pid;
  } else {
    ADD_FAILURE() << "the 60 clients did not all hold a lease at once" << (client_ended ? " (one ended early)" : "")
                  << "; last snapshot (" << snapshots << " taken): " << snapshot.dump(1);
  }
  std::ofstream(scratch("go")) << "go\n";

  for (auto& client : clients) {
    const auto r = client.wait(90s);
    EXPECT_EQ(r.exit_code, 0) << "client of " << user_of_pid[client.pid()] << ": " << r.describe();
  }
  for (const auto& entry : fs::directory_iterator(scratch("conflict")))
    ADD_FAILURE() << "display claimed while another client held it: " << entry.path().filename() << " "
                  << read_file(entry.path());

  // What the commands saw agrees with what the broker listed.
  std::map<std::string, std::uint32_t> display_of_lease;
  for (const auto& lease : snapshot)
    display_of_lease[lease["lease"].get<std::string>()] = lease["display"].get<std::uint32_t>();
  std::set<std::uint32_t> seen;
  for (const auto& entry : fs::directory_iterator(scratch("rec"))) {
    std::istringstream fields(read_file(entry.path()));
    std::uint32_t display = 0;
    std::string lease;
    fields >> display >> lease;
    EXPECT_TRUE(seen.insert(display).second) << "display :" << display << " given to two clients";
    if (all_held) {
      EXPECT_EQ(display_of_lease[lease], display) << "lease " << lease;
    }
  }
  EXPECT_EQ(seen.size(), static_cast<std::size_t>(kClients));

  EXPECT_TRUE(wait_until([&] { return lease_count() == 0; }))
      << "leases left after every client ended: " << list_all().dump(1);
}

// kill -9 gives the client no chance to release: the broker must notice the
// closed connection. With a one-display range the number is provably
// unavailable while held and available again afterwards.
TEST_F(AllocationTest, KillNineOfTheClientFreesItsDisplay) {
  start_broker({"--displays=320-320"});
  const std::string pid_file = scratch("cmd.pid"), display_file = scratch("display");

  // The command outlives the killed client; make sure it does not outlive the test.
  struct OrphanReaper {
    std::string pid_file;
    ~OrphanReaper() {
      const pid_t pgid = std::atoi(read_file(pid_file).c_str());
      if (pgid > 1) ::kill(-pgid, SIGKILL);
    }
  } reaper{pid_file};

  auto holder = broker_->spawn_client_as(kAlice, exec_shell("echo $$ > " + pid_file + "; echo $XPRA_BROKER_DISPLAY > " +
                                                            display_file + "; exec sleep 120"));
  ASSERT_EQ(wait_for_file(display_file), "320") << broker_->log();
  ASSERT_FALSE(wait_for_file(pid_file).empty());

  const auto refused = broker_->client_as(kBob, {"exec", "--", "true"});
  EXPECT_EQ(refused.exit_code, 124) << "the only display is leased: " << refused.describe();

  holder.send_signal(SIGKILL);
  EXPECT_EQ(holder.wait(30s).exit_code, 128 + SIGKILL);

  EXPECT_TRUE(wait_until([&] { return lease_count() == 0; }, 30s))
      << "lease of the killed client survives: " << list_all().dump(1);

  const auto again = broker_->client_as(kBob, exec_shell("echo $XPRA_BROKER_DISPLAY"));
  EXPECT_EQ(again.exit_code, 0) << again.describe();
  EXPECT_EQ(again.out, "320\n");
  EXPECT_TRUE(broker_->alive());
}

// PROBLEM.md: when a lease ends, however its holder goes, the broker ends
// what was started under it. The client reports its command to the broker;
// kill -9 of the client orphans the command, and the broker must end it.
TEST_F(AllocationTest, KillNineOfTheClientEndsTheCommandItRan) {
  start_broker({"--displays=321-321", "--reap-grace-ms=500"});
  const std::string pid_file = scratch("cmd.pid");
  struct OrphanReaper {
    std::string pid_file;
    ~OrphanReaper() {
      const pid_t pgid = std::atoi(read_file(pid_file).c_str());
      if (pgid > 1) ::kill(-pgid, SIGKILL);
    }
  } reaper{pid_file};

  auto holder = broker_->spawn_client_as(kAlice, exec_shell("echo $$ > " + pid_file + "; exec sleep 120"));
  const pid_t command = std::atoi(wait_for_file(pid_file).c_str());
  ASSERT_GT(command, 1) << holder.terminate().describe();

  // The client reports the command right after starting it; wait for that.
  v1::Request list_all_request;
  list_all_request.mutable_list()->set_all(true);
  const bool tracked = wait_until([&] {
    const v1::Response listed = broker_->call(list_all_request);
    for (const auto& lease : listed.list().leases())
      for (const auto pid : lease.process_pids())
        if (pid == command) return true;
    return false;
  });
  ASSERT_TRUE(tracked) << "the broker never tracked the command's pid " << command << ": "
                       << broker_->call(list_all_request).DebugString();

  holder.send_signal(SIGKILL);
  EXPECT_EQ(holder.wait(30s).exit_code, 128 + SIGKILL);
  EXPECT_TRUE(wait_until([&] { return !process_running(command); }, 30s))
      << "the command of the killed client's lease still runs (pid " << command << ")";
  EXPECT_TRUE(wait_until([&] { return lease_count() == 0; }, 30s)) << list_all().dump(1);
}

}  // namespace
}  // namespace xpra_broker::integration
