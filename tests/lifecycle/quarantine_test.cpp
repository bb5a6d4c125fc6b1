// Quarantine: a start that fails because the display was taken after all (a
// race with an X server started outside the broker after its probe) makes
// the client report DISPLAY_CONFLICT and retry on another display, bounded
// by --attempts. The report is a claim: the broker keeps the number out of
// the pool for quarantine-seconds only when it finds something of another
// user there, and shows it in `status`; a conflict it cannot see quarantines
// nothing.
#include <regex>
#include <set>

#include "lifecycle_support.h"

namespace xpra_broker::lifecycle {
namespace {

constexpr const char* kConflictLine = "_XSERVTransSocketUNIXCreateListener: ...SocketCreateListener() failed";

std::vector<std::uint32_t> all_matches(const std::string& text, const std::string& pattern) {
  std::vector<std::uint32_t> out;
  const std::regex re(pattern);
  for (auto it = std::sregex_iterator(text.begin(), text.end(), re); it != std::sregex_iterator(); ++it)
    out.push_back(static_cast<std::uint32_t>(std::stoul((*it)[1])));
  return out;
}

std::size_t count_of(const std::string& text, const std::string& needle) {
  std::size_t n = 0;
  for (auto at = text.find(needle); at != std::string::npos; at = text.find(needle, at + 1)) ++n;
  return n;
}

class QuarantineTest : public LifecycleTest {};

TEST_F(QuarantineTest, DisplayConflictQuarantinesTheNumberAndTheClientRetriesElsewhere) {
  const uid_t alice = integration::uid_of(kAlice);
  for (std::uint32_t d = 645; d <= 654; ++d)
    ASSERT_FALSE(path_exists(x_lock_path(d)) || path_exists(x_socket_path(d))) << ":" << d << " in use before";
  // Back-off is not under test here: start failures count towards it.
  start_broker({"--displays=645-654", "--quarantine-seconds=300", "--max-leases-per-user=20", "--acquire-burst=1000",
                "--failures-before-backoff=1000"});
  std::set<std::uint32_t> quarantined;

  // 1. A real race with another user: bob's X server comes up on the
  //    display between the broker's probe and the start, and the command
  //    fails with X's conflict message. One retry, on another display, which
  //    works; the broker confirms bob's server and quarantines the number.
  {
    ChildProcess bobs_xvfb;
    const auto r = run_client_racing(kAlice, {"--purpose", "q-once"}, [&](std::uint32_t display) {
      bobs_xvfb = start_xvfb_outside(kBob, display);
    });
    EXPECT_EQ(r.exit_code, 0) << r.describe();
    const auto taken = all_matches(r.err, "display :([0-9]+) turned out to be taken");
    ASSERT_EQ(taken.size(), 1u) << r.describe();
    EXPECT_EQ(count_of(r.err, "retrying on another display"), 1u) << r.describe();
    EXPECT_EQ(count_of(r.err, "found nothing of another user"), 0u) << r.describe();
    const auto ran = all_matches(r.out, "ran on :([0-9]+)");
    ASSERT_EQ(ran.size(), 1u) << r.describe();
    EXPECT_NE(ran[0], taken[0]);
    quarantined.insert(taken[0]);
    bobs_xvfb.terminate();  // gone again: the quarantine, not bob, keeps the number out
  }
  // 2. A command that always claims a conflict, with nothing of anyone else
  //    on its displays: --attempts 2 bounds it (exit status of the last
  //    try); the claims quarantine nothing and count as failed starts.
  std::vector<std::uint32_t> claimed;
  {
    const auto r = run_client(kAlice, {"exec", "--attempts", "2", "--purpose", "q-always", "--", "sh", "-c",
                                       std::string("echo '") + kConflictLine + "' >&2; exit 1"});
    EXPECT_EQ(r.exit_code, 1) << r.describe();
    claimed = all_matches(r.err, "display :([0-9]+) turned out to be taken");
    EXPECT_EQ(claimed.size(), 2u) << r.describe();
    EXPECT_EQ(count_of(r.err, "retrying on another display"), 1u) << r.describe();
    EXPECT_EQ(count_of(r.err, "found nothing of another user"), 2u) << r.describe();
    for (auto d : claimed) EXPECT_FALSE(quarantined.count(d)) << ":" << d << " handed out while quarantined";
  }
  // 3. A real race with an X server of alice's own (the X server command
  //    starts another Xvfb on the display first): the client kills both and
  //    retries elsewhere; alice's own server is no evidence against anyone,
  //    so nothing is quarantined.
  {
    const std::string xvfb_command =
        "sh -c 'if mkdir \"$XPB_FLAG\" 2>/dev/null; then Xvfb \"$1\" -nolisten tcp -noreset & "
        "while [ ! -S /tmp/.X11-unix/X${1#:} ]; do sleep 0.05; done; fi; exec Xvfb -nolisten tcp -noreset \"$@\"' sh";
    const auto r = run_client(kAlice,
                              {"exec", "--xvfb-command", xvfb_command, "--purpose", "q-race", "--", "sh", "-c",
                               "echo \"ran on $DISPLAY\""},
                              120s, {{"XPB_FLAG", scratch("race-once")}, {"XPRA_DISPLAY_FD_TIMEOUT", "60"}});
    EXPECT_EQ(r.exit_code, 0) << r.describe();
    const auto failed = all_matches(r.err, "the X server on :([0-9]+) exited during start-up");
    ASSERT_EQ(failed.size(), 1u) << r.describe();
    EXPECT_TRUE(r.err.find("already") != std::string::npos) << "X's own conflict message is not passed on:\n"
                                                            << r.describe();
    EXPECT_EQ(count_of(r.err, "retrying on another display"), 1u) << r.describe();
    const auto ran = all_matches(r.out, "ran on :([0-9]+)");
    ASSERT_EQ(ran.size(), 1u) << r.describe();
    EXPECT_NE(ran[0], failed[0]);
    EXPECT_FALSE(quarantined.count(failed[0]));
  }
  ASSERT_EQ(quarantined.size(), 1u);

  // Nothing of the attempts runs any more, both Xvfbs of the race included.
  EXPECT_TRUE(integration::wait_until(
      [&] { return x_servers_of(alice, 645, 654).empty() && marked_processes(mark()).empty() && leases().empty(); },
      30s));

  // The broker shows each quarantined number, and says so in its log.
  std::set<std::uint32_t> blocked;
  const auto status = raw_status();
  for (const auto& b : status.blocked())
    if (b.reason().find("quarantined") != std::string::npos) blocked.insert(b.display());
  EXPECT_EQ(blocked, quarantined);
  const auto json = parse_json(broker().client_as("root", {"status", "--json"}));
  std::set<std::uint32_t> json_blocked;
  if (json.contains("blocked"))
    for (const auto& b : json["blocked"]) json_blocked.insert(b["display"].get<std::uint32_t>());
  EXPECT_EQ(json_blocked, quarantined) << json.dump(2);
  const std::string log = broker().log();
  for (auto d : quarantined)
    EXPECT_TRUE(std::regex_search(log, std::regex("display=:" + std::to_string(d) +
                                                  " start failed with a display conflict \\((X lock file|X11 socket) of uid " +
                                                  std::to_string(integration::uid_of(kBob)) +
                                                  ".*\\); quarantined for 300 s")))
        << ":" << d << "\n" << log;
  for (auto d : claimed)
    EXPECT_TRUE(std::regex_search(log, std::regex("display=:" + std::to_string(d) +
                                                  " start failed \\(DISPLAY_CONFLICT\\), but the broker finds no "
                                                  "conflict on the host")))
        << ":" << d;

  // Take every display there is: none of the quarantined ones comes out.
  auto conn = broker().connect(10s);
  ASSERT_TRUE(conn.connected());
  std::vector<std::uint32_t> handed_out;
  v1::Response response;
  for (int i = 0; i < 20; ++i) {
    v1::Request acquire;
    acquire.mutable_acquire()->set_purpose("fill");
    ASSERT_EQ(conn.call(acquire, response), BrokerConnection::Error::none);
    if (response.status() != v1::OK) break;
    handed_out.push_back(response.acquire().lease().display());
  }
  EXPECT_EQ(response.status(), v1::EXHAUSTED) << response.message();
  EXPECT_EQ(handed_out.size(), 10u - quarantined.size());
  for (auto d : handed_out) EXPECT_FALSE(quarantined.count(d)) << ":" << d << " handed out while quarantined";
}

}  // namespace
}  // namespace xpra_broker::lifecycle
