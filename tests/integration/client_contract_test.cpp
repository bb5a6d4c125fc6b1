// What scripts and supervisors rely on from xpra-request-display: exit
// codes, placeholders, environment, signal forwarding, cleanup of the
// command's process group, the per-user directory, and the JSON output.
#include <signal.h>
#include <sys/stat.h>

#include <algorithm>
#include <iterator>
#include <regex>
#include <cstdlib>
#include <sstream>

#include "integration_fixture.h"

namespace xpra_broker::integration {
namespace {

std::vector<std::string> split(const std::string& text, char separator) {
  std::vector<std::string> out;
  std::istringstream in(text);
  for (std::string item; std::getline(in, item, separator);) out.push_back(item);
  return out;
}

std::string join_command(const std::vector<std::string>& argv) {
  std::string out;
  for (const auto& a : argv) out += (out.empty() ? "" : " ") + a;
  return out;
}

class ClientContractTest : public BrokerTest {};

TEST_F(ClientContractTest, ExitStatusIsTheCommandsStatus) {
  // Three quick failures in a row would start the restart-loop back-off.
  start_broker({"--displays=360-361", "--failures-before-backoff=100"});
  EXPECT_EQ(broker_->client_as(kAlice, {"exec", "--", "true"}).exit_code, 0);
  const auto three = broker_->client_as(kAlice, exec_shell("exit 3"));
  EXPECT_EQ(three.exit_code, 3) << three.describe();
  const auto killed = broker_->client_as(kAlice, exec_shell("kill -TERM $$"));
  EXPECT_EQ(killed.exit_code, 128 + SIGTERM) << killed.describe();
  const auto missing = broker_->client_as(kAlice, {"exec", "--", "/nonexistent/xpb-no-such-command"});
  EXPECT_EQ(missing.exit_code, 127) << missing.describe();
  EXPECT_EQ(lease_count(), 0u) << list_all().dump(1);
}

// A command's own 64-77 (sysexits codes many programs use) pass through as
// they are, and exec's own failures keep codes of their own (118-125), so a
// supervisor or the hub can tell "Xpra said 75" from "the broker refused".
TEST_F(ClientContractTest, ExecsOwnFailuresNeverReadAsTheCommandsStatus) {
  start_broker({"--displays=388-388", "--failures-before-backoff=100", "--allowed-groups=xpb-users"});
  for (const int code : {64, 65, 69, 70, 71, 73, 75, 77}) {
    const auto r = broker_->client_as(kAlice, exec_shell("exit " + std::to_string(code)));
    EXPECT_EQ(r.exit_code, code) << r.describe();
    EXPECT_EQ(r.err, "") << "the command's status is not the client's failure: " << r.describe();
  }
  // The only display held: the next exec is refused for now (124), not 75.
  auto holder = broker_->spawn_client_as(kAlice, {"exec", "--", "sleep", "300"});
  ASSERT_TRUE(wait_until([&] { return lease_count() == 1; }));
  const auto refused = broker_->client_as(kBob, {"exec", "--", "true"});
  EXPECT_EQ(refused.exit_code, 124) << refused.describe();
  EXPECT_NE(refused.err.find("no free display"), std::string::npos) << refused.describe();
  // Denied (mallory is not in xpb-users): 125, not 77; bad usage: 118.
  EXPECT_EQ(broker_->client_as(kMallory, {"exec", "--", "true"}).exit_code, 125);
  EXPECT_EQ(broker_->client_as(kAlice, {"exec", "--attempts", "0", "--", "true"}).exit_code, 118);
  // The other commands keep the sysexits codes.
  EXPECT_EQ(broker_->client_as(kMallory, {"list", "--all"}).exit_code, 77);
  EXPECT_EQ(broker_->client_as(kAlice, {"list", "--bogus"}).exit_code, 64);
}

// The habits of systemctl and loginctl: global options after the command,
// `help`, `-o json`, rows without a legend for scripts, a time that is one
// word, one error style (a line, then a hint), and an admin's bulk release.
TEST_F(ClientContractTest, CommandLineHabitsOfAnAdminsTools) {
  start_broker({"--displays=390-392", "--admin-groups=xpb-bob"});
  const std::string client = request_display_path(), sock = broker_->socket_path();
  auto one = broker_->spawn_client_as(kAlice, {"exec", "--purpose", "first", "--", "sleep", "300"});
  auto two = broker_->spawn_client_as(kAlice, {"exec", "--purpose", "second", "--", "sleep", "300"});
  ASSERT_TRUE(wait_until([&] { return lease_count() == 2; }));

  // --socket after the command.
  const auto after = run_as(kAlice, {client, "list", "--socket", sock, "--json"});
  EXPECT_EQ(after.exit_code, 0) << after.describe();
  EXPECT_EQ(nlohmann::json::parse(after.out).size(), 2u) << after.out;
  const auto o_json = run_as(kAlice, {client, "status", "-o", "json", "--socket", sock});
  EXPECT_EQ(o_json.exit_code, 0) << o_json.describe();
  EXPECT_TRUE(nlohmann::json::parse(o_json.out).contains("range")) << o_json.out;
  // Rows only, each with the same fields: the display second, SINCE one word.
  const auto rows = run_as(kAlice, {client, "--socket", sock, "list", "--no-legend"});
  EXPECT_EQ(rows.exit_code, 0) << rows.describe();
  std::istringstream lines(rows.out);
  int n = 0;
  for (std::string line; std::getline(lines, line); ++n) {
    std::istringstream words(line);
    std::vector<std::string> w{std::istream_iterator<std::string>(words), {}};
    ASSERT_GE(w.size(), 8u) << line;
    EXPECT_EQ(w[1].rfind(":39", 0), 0u) << line;
    EXPECT_TRUE(std::regex_match(w[5], std::regex("[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9:]{8}[+-][0-9]{4}"))) << line;
  }
  EXPECT_EQ(n, 2) << rows.out;
  // help, and help COMMAND.
  const auto help = run_as(kAlice, {client, "help"});
  EXPECT_EQ(help.exit_code, 0);
  EXPECT_NE(help.out.find("release --user NAME"), std::string::npos) << help.out;
  const auto help_list = run_as(kAlice, {client, "help", "list"});
  EXPECT_EQ(help_list.exit_code, 0);
  EXPECT_NE(help_list.out.find("Usage: xpra-request-display list"), std::string::npos) << help_list.out;
  EXPECT_NE(help_list.out.find("--no-legend"), std::string::npos) << help_list.out;
  // exec --help shows the types, not the parser's validators.
  const auto exec_help = run_as(kAlice, {client, "exec", "--help"});
  EXPECT_EQ(exec_help.out.find("SECONDS:"), std::string::npos) << exec_help.out;
  EXPECT_EQ(exec_help.out.find("INT in"), std::string::npos) << exec_help.out;
  // One error style: a line naming the program, then a hint.
  for (const std::vector<std::string>& args :
       {std::vector<std::string>{"release", ":x"}, {"release", "nosuchlease"}, {"list", "--all"}, {"frobnicate"}}) {
    std::vector<std::string> argv = {client, "--socket", sock};
    argv.insert(argv.end(), args.begin(), args.end());
    const auto r = run_as(kAlice, argv);
    EXPECT_NE(r.exit_code, 0) << r.describe();
    EXPECT_TRUE(std::regex_search(r.err, std::regex("^xpra-request-display: .+\nhint: .+\n$"))) << r.describe();
  }
  // release --user: not for alice; bob (admin-groups) ends both of hers.
  const auto not_admin = run_as(kAlice, {client, "--socket", sock, "release", "--user", kBob});
  EXPECT_EQ(not_admin.exit_code, 77) << not_admin.describe();
  const auto bulk = run_as(kBob, {client, "--socket", sock, "release", "--user", kAlice});
  EXPECT_EQ(bulk.exit_code, 0) << bulk.describe();
  EXPECT_EQ(lease_count(), 0u) << list_all().dump(1);
  const auto none_left = run_as(kBob, {client, "--socket", sock, "release", "--user", kAlice});
  EXPECT_EQ(none_left.exit_code, 1) << none_left.describe();
}

TEST_F(ClientContractTest, CommandGetsDisplayDirectoryAndLeaseInArgumentsAndEnvironment) {
  start_broker({"--displays=362-363"});
  const std::string list_own = join_command(broker_->client_command({"list", "--json"}));
  // Prints its arguments and environment, its parent (the client's keeper)
  // and the keeper's parent and name, then lists its own lease.
  const std::string script =
      "echo \"$1|$2|$3|$DISPLAY|$XPRA_BROKER_DISPLAY|$XPRA_BROKER_RUNTIME_DIR|$XPRA_BROKER_LEASE|$PPID|"
      "$(cut -d' ' -f4 /proc/$PPID/stat)|$(cat /proc/$PPID/comm)\"; " +
      list_own;
  auto client = broker_->spawn_client_as(
      kAlice, exec_shell(script, {"{display}", "{runtime_dir}", "--bind={runtime_dir}/s,display=:{display}"}));
  const pid_t client_pid = client.pid();
  const auto r = client.wait();
  ASSERT_EQ(r.exit_code, 0) << r.describe();

  const auto newline = r.out.find('\n');
  const auto fields = split(r.out.substr(0, newline), '|');
  ASSERT_EQ(fields.size(), 10u) << r.describe();
  const std::string display = fields[0], dir = fields[1];
  EXPECT_TRUE(display == "362" || display == "363") << r.describe();
  EXPECT_EQ(dir, broker_->runtime_dir() + "/" + std::to_string(uid_of(kAlice)));
  EXPECT_EQ(fields[2], "--bind=" + dir + "/s,display=:" + display);
  EXPECT_EQ(fields[3], ":" + display);
  EXPECT_EQ(fields[4], display);
  EXPECT_EQ(fields[5], dir);
  const std::string lease = fields[6];
  EXPECT_EQ(lease.size(), 16u) << lease;
  // client -> keeper -> CMD (session_keeper.h).
  EXPECT_EQ(fields[8], std::to_string(client_pid)) << "CMD's parent is not a child of the client";
  EXPECT_EQ(fields[9], "xpra-rd-keeper") << "CMD's parent is not the client's keeper";

  // `list --json` from inside the command: the lease as the broker holds it.
  nlohmann::json listed;
  try {
    listed = nlohmann::json::parse(r.out.substr(newline + 1));
  } catch (const std::exception& e) {
    FAIL() << "list --json is not JSON: " << e.what() << "\n" << r.describe();
  }
  ASSERT_TRUE(listed.is_array() && listed.size() == 1) << listed.dump(1);
  const auto& entry = listed[0];
  for (const char* key : {"lease", "display", "uid", "pid", "runtime_dir", "state"})
    EXPECT_TRUE(entry.contains(key)) << "list --json lacks '" << key << "': " << entry.dump();
  EXPECT_EQ(entry.value("lease", ""), lease);
  EXPECT_EQ(std::to_string(entry.value("display", 0u)), display);
  EXPECT_EQ(entry.value("uid", 0u), uid_of(kAlice));
  EXPECT_EQ(entry.value("pid", 0), client_pid);
  EXPECT_EQ(entry.value("runtime_dir", ""), dir);
  EXPECT_EQ(entry.value("state", ""), "active");

  // The directory: the user's, shared only with the broker's group.
  struct stat st {};
  ASSERT_EQ(::lstat(dir.c_str(), &st), 0) << dir;
  EXPECT_TRUE(S_ISDIR(st.st_mode));
  EXPECT_EQ(st.st_uid, uid_of(kAlice));
  EXPECT_EQ(st.st_gid, broker_->effective_gid());
  EXPECT_EQ(st.st_mode & 07777, 0770u) << std::oct << (st.st_mode & 07777);
  EXPECT_EQ(lease_count(), 0u);
}

TEST_F(ClientContractTest, SigtermToTheClientIsForwardedToTheCommand) {
  start_broker({"--displays=364-365"});
  const std::string ready = scratch("ready"), got = scratch("got-term");
  auto client =
      broker_->spawn_client_as(kAlice, exec_shell("trap 'echo term > " + got + "; exit 7' TERM; echo ready > " + ready +
                                                  "; while :; do sleep 0.1; done"));
  ASSERT_EQ(wait_for_file(ready), "ready") << client.terminate().describe();
  client.send_signal(SIGTERM);
  const auto r = client.wait(30s);
  EXPECT_EQ(r.exit_code, 7) << "the client's status is not the command's: " << r.describe();
  EXPECT_EQ(read_file(got), "term\n") << "the command never saw SIGTERM";
  EXPECT_TRUE(wait_until([&] { return lease_count() == 0; })) << list_all().dump(1);
}

// A supervisor (jupyter-server-proxy in a notebook server) starts the client
// and is killed with SIGKILL: with --end-with-parent the session ends and the
// lease is released; without it both outlive the supervisor (the control).
TEST_F(ClientContractTest, EndWithParentEndsTheSessionWhenItsSupervisorIsKilled) {
  start_broker({"--displays=368-369"});
  // Whatever a failed expectation leaves running is ended (SIGTERM: the
  // client stops its command and releases).
  struct EndClients {
    std::vector<pid_t> pids;
    ~EndClients() {
      for (pid_t p : pids)
        if (process_running(p)) ::kill(p, SIGTERM);
    }
  } leftovers;
  for (const bool end_with_parent : {true, false}) {
    SCOPED_TRACE(end_with_parent ? "--end-with-parent" : "without --end-with-parent");
    const std::string tag = end_with_parent ? "with" : "without";
    const std::string ready = scratch("ready-" + tag), got = scratch("got-term-" + tag), pid = scratch("pid-" + tag);
    std::vector<std::string> exec = {"exec"};
    if (end_with_parent) exec.push_back("--end-with-parent");
    for (const std::string& word :
         {std::string("--"), std::string("sh"), std::string("-c"),
          "trap 'echo term > " + got + "; exit 0' TERM; echo ready > " + ready + "; while :; do sleep 0.1; done"})
      exec.push_back(word);
    std::vector<std::string> supervisor = {"sh", "-c", "\"$@\" & echo $! > " + pid + "; wait", "sh"};
    for (const auto& word : broker_->client_command(exec)) supervisor.push_back(word);
    auto parent = spawn_as(kAlice, supervisor);
    ASSERT_EQ(wait_for_file(ready), "ready") << parent.terminate().describe();
    const pid_t client = std::stoi(wait_for_file(pid));
    leftovers.pids.push_back(client);
    ASSERT_EQ(lease_count(), 1u);
    parent.send_signal(SIGKILL);
    parent.wait(10s);
    if (end_with_parent) {
      EXPECT_EQ(wait_for_file(got), "term") << "the command never saw SIGTERM";
      EXPECT_TRUE(wait_until([&] { return lease_count() == 0; })) << list_all().dump(1);
      EXPECT_TRUE(wait_until([&] { return !process_running(client); })) << "the client outlived its parent";
    } else {
      // Without the flag the session is held for nobody: what the flag is for.
      EXPECT_TRUE(process_running(client));
      EXPECT_EQ(lease_count(), 1u);
      ::kill(client, SIGTERM);
      EXPECT_TRUE(wait_until([&] { return lease_count() == 0; })) << list_all().dump(1);
    }
  }
}

// Under --xpra a refused start waits out the broker's retry time before it
// exits 75 (a supervisor restarts it at once); a signal ends the wait. The
// control: without --xpra the refusal exits at once.
TEST_F(ClientContractTest, XpraModeWaitsOutARefusalBeforeExiting) {
  start_broker({"--displays=386-387", "--acquire-burst=1", "--acquires-per-minute=1"});
  const std::string ready = scratch("ready");
  auto holder = broker_->spawn_client_as(kAlice, exec_shell("echo ready > " + ready + "; sleep 300"));
  ASSERT_EQ(wait_for_file(ready), "ready") << holder.terminate().describe();

  const auto plain = broker_->client_as(kAlice, {"exec", "--", "true"});
  EXPECT_EQ(plain.exit_code, 124) << plain.describe();

  auto refused = broker_->spawn_client_as(kAlice, {"exec", "--xpra", "--", "xpra", "start"});
  ASSERT_TRUE(wait_until([&] { return broker_->log().find("refused acquire: acquire rate limit") != std::string::npos; }))
      << broker_->log();
  // Still there after the refusal: waiting out the retry time (about 60 s).
  const auto early = refused.wait_for(2s);
  EXPECT_FALSE(early.has_value()) << "the refused --xpra client exited at once: " << early->describe();
  refused.send_signal(SIGTERM);
  const auto r = refused.wait(10s);
  EXPECT_EQ(r.exit_code, 124) << r.describe();
  EXPECT_NE(r.err.find("RATE_LIMITED"), std::string::npos) << r.describe();
  EXPECT_NE(r.err.find("waiting"), std::string::npos) << r.describe();
  holder.send_signal(SIGTERM);
}

TEST_F(ClientContractTest, NothingOfTheCommandsProcessGroupOutlivesIt) {
  start_broker({"--displays=366-367"});
  const std::string pids = scratch("pids");
  // One grandchild that dies of SIGTERM and one that ignores it (SIGKILL
  // after the grace period); the command itself exits at once.
  const auto r = broker_->client_as(
      kAlice, {"exec", "--grace", "0.5", "--", "sh", "-c",
               "sleep 300 & a=$!; (trap '' TERM; exec sleep 301) & echo \"$a $!\" > " + pids + "; exit 0"});
  EXPECT_EQ(r.exit_code, 0) << r.describe();
  std::istringstream fields(read_file(pids));
  pid_t polite = 0, stubborn = 0;
  fields >> polite >> stubborn;
  ASSERT_GT(polite, 0) << r.describe();
  ASSERT_GT(stubborn, 0) << r.describe();
  EXPECT_TRUE(wait_until([&] { return !process_running(polite); }, 10s)) << "background sleep " << polite << " leaked";
  EXPECT_TRUE(wait_until([&] { return !process_running(stubborn); }, 10s))
      << "background sleep " << stubborn << " (ignoring SIGTERM) leaked";
  // Don't leave them behind if the client failed to.
  for (pid_t pid : {polite, stubborn})
    if (process_running(pid)) ::kill(pid, SIGKILL);
}

TEST_F(ClientContractTest, UnreachableBrokerAndBadUsageHaveTheirExitCodes) {
  TempDir empty("xpb-nobroker", 0755);
  const std::string absent = empty.path() + "/broker.sock";
  const std::string client = request_display_path();

  for (const auto& args : std::vector<std::vector<std::string>>{
           {"list"}, {"status", "--json"}, {"release", ":5"}, {"exec", "--", "true"}}) {
    std::vector<std::string> argv = {client, "--socket", absent};
    argv.insert(argv.end(), args.begin(), args.end());
    const auto r = run_as(kAlice, argv);
    // exec keeps its own failures apart from CMD's status (exit_codes.h).
    EXPECT_EQ(r.exit_code, args[0] == "exec" ? 120 : 69) << join_command(argv) << ": " << r.describe();
    EXPECT_NE(r.err.find("cannot reach the broker"), std::string::npos) << r.describe();
  }

  for (const auto& args : std::vector<std::vector<std::string>>{{},
                                                                {"frobnicate"},
                                                                {"--bogus", "list"},
                                                                {"--timeout", "soon", "list"},
                                                                {"--socket"},
                                                                {"exec"},
                                                                {"exec", "--"},
                                                                {"exec", "--bogus", "true"},
                                                                {"exec", "--grace", "x", "--", "true"},
                                                                {"list", "--bogus"},
                                                                {"status", "--all"},
                                                                {"release"},
                                                                {"release", "a", "b"},
                                                                {"release", ":abc"},
                                                                {"release", ":"}}) {
    std::vector<std::string> argv = {client, "--socket", absent};
    if (!args.empty() && args[0] == "--socket") argv = {client};
    argv.insert(argv.end(), args.begin(), args.end());
    const auto r = run_as(kAlice, argv);
    const bool exec = std::find(args.begin(), args.end(), "exec") != args.end();
    EXPECT_EQ(r.exit_code, exec ? 118 : 64) << join_command(argv) << ": " << r.describe();
    EXPECT_FALSE(r.err.empty()) << join_command(argv) << ": a usage error must say what is wrong";
  }
}

TEST_F(ClientContractTest, EverySubcommandAnswersHelpWithoutContactingTheBroker) {
  const std::string client = request_display_path();
  const std::string absent = "/nonexistent/xpb/broker.sock";  // nothing to contact
  for (const std::string sub : {"exec", "list", "release", "status", "metrics"}) {
    for (const std::string flag : {"--help", "-h"}) {
      const std::vector<std::string> argv = {client, "--socket", absent, sub, flag};
      const auto r = run_as(kAlice, argv);
      EXPECT_EQ(r.exit_code, 0) << join_command(argv) << ": " << r.describe();
      EXPECT_NE(r.out.find("Usage: xpra-request-display " + sub), std::string::npos) << r.describe();
      EXPECT_EQ(r.err.find("cannot reach the broker"), std::string::npos) << r.describe();
    }
  }
  // After `--`, --help belongs to CMD (it is never this program's).
  const std::vector<std::string> argv = {client, "--socket", absent, "exec", "--", "true", "--help"};
  const auto r = run_as(kAlice, argv);
  EXPECT_EQ(r.exit_code, 120) << "exec must try to reach the broker for CMD: " << r.describe();
}

TEST_F(ClientContractTest, SocketComesFromTheEnvironmentUnlessGivenAsAnOption) {
  start_broker({"--displays=370-371"});
  const std::string client = request_display_path();
  const std::vector<std::string> show = {client, "exec", "--", "sh", "-c", "echo $XPRA_BROKER_DISPLAY"};

  SpawnOptions via_env;
  via_env.env["XPRA_BROKER_SOCKET"] = broker_->socket_path();
  const auto r = run_as(kAlice, show, via_env);
  EXPECT_EQ(r.exit_code, 0) << r.describe();
  EXPECT_EQ(r.out, "370\n") << r.describe();

  SpawnOptions wrong_env;
  wrong_env.env["XPRA_BROKER_SOCKET"] = broker_->scratch_dir() + "/no-broker-here.sock";
  const auto unreachable = run_as(kAlice, {client, "list"}, wrong_env);
  EXPECT_EQ(unreachable.exit_code, 69) << "XPRA_BROKER_SOCKET was not used: " << unreachable.describe();
  EXPECT_NE(unreachable.err.find("no-broker-here.sock"), std::string::npos) << unreachable.describe();

  const auto flag_wins = run_as(kAlice, {client, "--socket", broker_->socket_path(), "list", "--json"}, wrong_env);
  EXPECT_EQ(flag_wins.exit_code, 0) << flag_wins.describe();
}

// `list --json` names every lease state of the protocol. A lease released
// while its command ignores SIGTERM stays ENDING for the reap grace period
// (60 s here; the test ends the command itself long before that).
TEST_F(ClientContractTest, ListJsonNamesTheStateOfALeaseBeingEnded) {
  start_broker({"--displays=372-373", "--reap-grace-ms=60000"});
  const std::string pid_file = scratch("cmd.pid");
  struct CommandKiller {
    std::string pid_file;
    ~CommandKiller() {
      const pid_t pgid = std::atoi(read_file(pid_file).c_str());
      if (pgid > 1) ::kill(-pgid, SIGKILL);
    }
  } killer{pid_file};
  auto holder = broker_->spawn_client_as(kAlice, exec_shell("trap '' TERM; echo $$ > " + pid_file + "; sleep 120"));
  ASSERT_FALSE(wait_for_file(pid_file).empty()) << holder.terminate().describe();
  const auto before = list_all();
  ASSERT_EQ(before.size(), 1u) << before.dump(1);
  EXPECT_EQ(before[0].value("state", ""), "active");

  const auto released = broker_->client_as("root", {"release", before[0]["lease"].get<std::string>()});
  EXPECT_EQ(released.exit_code, 0) << released.describe();
  const auto during = list_all();
  if (during.size() == 1) {
    EXPECT_EQ(during[0].value("state", ""), "ending")
        << "a lease whose processes are being ended (LeaseState ENDING) is listed as: " << during[0].dump();
  } else {
    EXPECT_TRUE(during.empty()) << during.dump(1);
    ADD_FAILURE() << "the lease ended at once although its command ignores SIGTERM and reap-grace-ms=60000";
  }

  const pid_t pgid = std::atoi(read_file(pid_file).c_str());
  ASSERT_GT(pgid, 1);
  ::kill(-pgid, SIGKILL);
  EXPECT_TRUE(wait_until([&] { return lease_count() == 0; }, 30s)) << list_all().dump(1);
  holder.wait(30s);
}

}  // namespace
}  // namespace xpra_broker::integration
