// The seed's own trigger (issue 15), exactly, with real users and real Xpra.
//
// The host's Xpra config lists a shared socket dir (sticky, mode 1777, like
// /tmp). bob leaves inaccessible "<host>-N" sockets there (mode 0755, bound
// by a process that exited: nobody listens) on every number of the broker's
// range. Xpra 3.1 checks every socket dir before it starts display N and
// refuses with "An xpra server is already running at <dir>/<host>-N"; the
// broker must not hand such numbers out, or clean them first. alice's
// supervisor then restarts `xpra-request-display exec --xpra -- xpra start`
// 20 times, with Debian's default Xpra config (dbus-launch, Xsession): every
// start must reach LIVE (`xpra version` against its socket answers), bob's
// stale socket of that number must be gone, bob's live Xpra server and bob's
// bare live listener in the shared dir keep their numbers, and no process of
// alice's (X server, dbus-daemon, ssh-agent, anything) is left after each
// session ends.
//
// Xpra's config without touching /etc/xpra (the host is shared): Xpra 3.1
// reads $XDG_CONFIG_DIRS/xpra/conf.d/*.conf after /etc/xpra
// (xpra/platform/xposix/paths.py do_get_system_conf_dirs()), and a later
// file's socket-dirs replaces the earlier ones. Every xpra here runs with
// XDG_CONFIG_DIRS=<test dir>/xdg; the broker reads the same dirs in the same
// order (--xpra-config-dirs).
//
// A second test plants what a hostile user may write into such a directory
// (files, links, FIFOs, directories, a live socket bound through another
// spelling of the path, a dead socket in a directory others may rename
// entries in): the broker skips those numbers and removes none of them.
//
// Displays 950-959 and 960-969 (the suite's range is 950-999).
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <fstream>
#include <map>
#include <set>
#include <sstream>

#include "lifecycle_support.h"

namespace xpra_broker::lifecycle {
namespace {

using Clock = std::chrono::steady_clock;

constexpr std::uint32_t kFirst = 950, kLast = 959;
constexpr std::uint32_t kBobsXpra = 950;      // a real xpra server of bob's
constexpr std::uint32_t kBobsListener = 951;  // a bare listening socket of bob's
constexpr int kRestarts = 20;
constexpr std::uint32_t kHostileFirst = 960, kHostileLast = 969;

struct Entry {
  bool exists = false;
  uid_t owner = 0;
  mode_t mode = 0;
};
Entry entry_at(const std::string& path) {
  struct stat st {};
  if (::lstat(path.c_str(), &st) != 0) return {};
  return {true, st.st_uid, st.st_mode};
}

class XpraSharedSocketDirTest : public LifecycleTest {
 protected:
  void SetUp() override {
    for (std::uint32_t d = kFirst; d <= kHostileLast; ++d)
      ASSERT_FALSE(path_exists(x_lock_path(d)) || path_exists(x_socket_path(d))) << ":" << d << " in use before";
    conf_dir_ = dir_.path() + "/xdg/xpra";
    integration::make_directory(dir_.path() + "/xdg", 0755);
    integration::make_directory(conf_dir_, 0755);
    integration::make_directory(conf_dir_ + "/conf.d", 0755);
    shared_ = dir_.path() + "/shared";
    integration::make_directory(shared_, 01777);
    // As a site writes it, minus ~/.xpra: that one is each user's own, and
    // a leftover of an earlier run there would cost each start xpra's own
    // 6 s probe (XPRA_WAIT_PROBE_TIMEOUT).
    conf_file_ = conf_dir_ + "/conf.d/zz-xpra-broker-test.conf";
    std::ofstream(conf_file_) << "# installed by tests/xpra: a shared socket dir, like socket-dirs = /tmp\n"
                              << "socket-dirs = " << shared_ << "\n";
    ASSERT_EQ(::chmod(conf_file_.c_str(), 0644), 0);
  }

  std::string xpra_socket(std::uint32_t display) const {
    return shared_ + "/" + host_name() + "-" + std::to_string(display);
  }
  std::map<std::string, std::string> xpra_env() const { return {{"XDG_CONFIG_DIRS", dir_.path() + "/xdg"}}; }
  integration::SpawnOptions marked_xpra_env() const {
    integration::SpawnOptions options;
    options.env = xpra_env();
    options.env[kMarkVariable] = mark();
    return options;
  }

  // bob's socket of `display` in the shared dir as a crashed session of his
  // leaves it, and inaccessible to alice: 0755 (connect() needs write).
  void plant_bobs_dead_socket(std::uint32_t display) {
    plant_dead_socket(kBob, xpra_socket(display), std::chrono::hours(1));
    ASSERT_EQ(::chmod(xpra_socket(display).c_str(), 0755), 0);
    remove_at_end(xpra_socket(display));
  }

  // A bare listener of `user`'s on the socket file `path`, mode 0600 as
  // Xpra's (others' connect() is refused: the broker must ask
  // /proc/net/unix).
  ChildProcess spawn_listener(const std::string& user, const std::string& path) const {
    return integration::spawn_as(user,
                                 {"/usr/bin/python3", "-c",
                                  "import os, socket, sys, time\n"
                                  "s = socket.socket(socket.AF_UNIX)\n"
                                  "s.bind(sys.argv[1])\n"
                                  "os.chmod(sys.argv[1], 0o600)\n"
                                  "s.listen(4)\n"
                                  "time.sleep(3600)\n",
                                  path},
                                 marked_xpra_env());
  }

  // Does `xpra version` against the socket answer (as `user`)? Asked only
  // once the socket file is there: each `xpra version` is a Python start,
  // dear on a loaded machine. (A bare connect() probe instead would hold up
  // xpra's accept loop, which waits for each peer to speak first.)
  bool xpra_answers(const std::string& user, const std::string& socket, const std::function<bool()>& still_running) {
    const bool bound = integration::wait_until([&] { return entry_at(socket).exists || !still_running(); }, 90s, 50ms);
    if (!bound || !still_running()) return false;
    return integration::wait_until(
               [&] {
                 return integration::run_as(user, {"xpra", "version", "socket://" + socket}, {}, 30s).exit_code == 0 ||
                        !still_running();
               },
               90s, 250ms) &&
           still_running();
  }

  // Ends every marked process of `uid` (TERM, then KILL) and waits.
  void end_marked_processes_of(uid_t uid) {
    auto of_uid = [&] {
      std::vector<HostProcess> out;
      for (const auto& p : marked_processes(mark()))
        if (p.uid == uid) out.push_back(p);
      return out;
    };
    for (const auto& p : of_uid()) ::kill(p.pid, SIGTERM);
    if (!integration::wait_until([&] { return of_uid().empty(); }, 10s))
      for (const auto& p : of_uid()) ::kill(p.pid, SIGKILL);
    integration::wait_until([&] { return of_uid().empty(); }, 10s);
  }

  integration::TempDir dir_{"xpb-xpra", 0755};
  std::string conf_dir_, conf_file_, shared_;
};

TEST_F(XpraSharedSocketDirTest, BobsStaleSocketsInASharedXpraSocketDirDoNotStopAlicesRestarts) {
  const uid_t alice = integration::uid_of(kAlice);
  const uid_t bob = integration::uid_of(kBob);

  // 0. The trigger is real on this host: xpra itself, outside the broker,
  // refuses a number where bob's dead socket is in the shared dir.
  plant_bobs_dead_socket(kLast);
  {
    std::vector<std::string> argv = {"xpra", "start", ":" + std::to_string(kLast), "--daemon=no"};
    for (const auto& o : quick_xpra_options()) argv.push_back(o);
    auto xpra = integration::spawn_as(kAlice, argv, marked_xpra_env());
    const auto r = xpra.wait(60s);
    EXPECT_NE(r.exit_code, 0) << r.describe();
    EXPECT_NE(r.err.find("An xpra server is already running at " + xpra_socket(kLast)), std::string::npos)
        << "xpra no longer refuses another user's dead socket as in the incident:\n"
        << r.describe();
    // Xpra 3.1 leaves the X server it started behind (upstream issue 4250).
    end_marked_processes_of(alice);
    ASSERT_TRUE(integration::wait_until([&] { return !path_exists(x_lock_path(kLast)); }, 10s));
  }

  // 1. bob: a live xpra server, a bare live listener, and dead 0755 sockets
  // on every other number of the range.
  std::vector<std::string> bobs_argv = {"xpra", "start", ":" + std::to_string(kBobsXpra), "--daemon=no",
                                        "--socket-dir=" + shared_};
  for (const auto& o : quick_xpra_options()) bobs_argv.push_back(o);
  auto bobs_xpra = integration::spawn_as(kBob, bobs_argv, marked_xpra_env());
  auto bobs_listener = spawn_listener(kBob, xpra_socket(kBobsListener));
  remove_at_end(xpra_socket(kBobsListener));
  for (std::uint32_t d = kFirst; d <= kLast; ++d)
    if (d != kBobsXpra && d != kBobsListener && d != kLast) plant_bobs_dead_socket(d);
  ASSERT_TRUE(integration::wait_until([&] { return entry_at(xpra_socket(kBobsListener)).exists; }, 30s));
  ASSERT_TRUE(xpra_answers(kBob, xpra_socket(kBobsXpra), [&] { return bobs_xpra.running(); }))
      << "bob's xpra did not come up: " << bobs_xpra.terminate().describe();
  ASSERT_TRUE(bobs_xpra.running());
  for (std::uint32_t d = kFirst; d <= kLast; ++d) {
    const Entry e = entry_at(xpra_socket(d));
    ASSERT_TRUE(e.exists && S_ISSOCK(e.mode) && e.owner == bob) << xpra_socket(d);
  }

  // 2. The broker reads the same Xpra config dirs as the users' xpra.
  start_broker({"--displays=" + std::to_string(kFirst) + "-" + std::to_string(kLast),
                "--xpra-config-dirs=/etc/xpra,/usr/local/etc/xpra," + conf_dir_, "--failures-before-backoff=1000",
                "--acquire-burst=1000"});
  bool listed = false;
  const v1::StatusReply reply = raw_status();
  for (const auto& d : reply.xpra_socket_dirs())
    if (d.path() == shared_) {
      listed = true;
      EXPECT_TRUE(d.shared());
      EXPECT_EQ(d.source(), conf_file_);
      EXPECT_EQ(d.state(), "checked; stale sockets removed");
    }
  EXPECT_TRUE(listed) << "status does not list the shared dir";
  const auto status = run_client(kAlice, {"status"});
  EXPECT_NE(status.out.find(shared_ + " "), std::string::npos) << status.describe();
  report("status as alice:\n" + status.out);

  // 3. alice's supervisor: 20 restarts.
  TimingSamples live_after{"exec --xpra start to LIVE", {}}, gone_after{"SIGTERM to everything gone", {}};
  std::set<std::uint32_t> used;
  const std::string alice_dir = broker().runtime_dir() + "/" + std::to_string(alice);
  for (int round = 1; round <= kRestarts; ++round) {
    SCOPED_TRACE("restart " + std::to_string(round));
    const auto started = Clock::now();
    const std::uint64_t round_began = boot_ticks_now();
    // As the host runs Xpra: dbus-launch and the Xsession start command on.
    std::vector<std::string> args = {"exec", "--xpra", "--purpose", "xpra start", "--", "xpra", "start"};
    for (const auto& o : host_default_xpra_options()) args.push_back(o);
    auto env = xpra_env();
    env["XDG_RUNTIME_DIR"] = alice_dir;
    auto client = spawn_client(kAlice, args, env);
    const std::optional<v1::Lease> lease = lease_held_by(client);
    ASSERT_TRUE(lease) << client.terminate().describe();
    const std::uint32_t display = lease->display();
    used.insert(display);
    EXPECT_NE(display, kBobsXpra) << "bob's live xpra server's number was handed out";
    EXPECT_NE(display, kBobsListener) << "the number of bob's live listener was handed out";
    const std::string own_socket = lease->runtime_dir() + "/" + host_name() + "-" + std::to_string(display);
    const bool up = xpra_answers(kAlice, own_socket, [&] { return client.running(); });
    ASSERT_TRUE(up && client.running()) << "xpra did not come up LIVE on :" << display
                                        << "\nholder: " << client.terminate().describe();
    live_after.add(Clock::now() - started);
    // bob's dead socket of that number is gone; what is there now is
    // alice's own (xpra binds one in every socket dir).
    const Entry there = entry_at(xpra_socket(display));
    EXPECT_TRUE(!there.exists || there.owner == alice) << xpra_socket(display) << " still bob's";

    const auto ending = Clock::now();
    client.send_signal(SIGTERM);
    const auto r = client.wait(60s);
    EXPECT_FALSE(r.timed_out) << r.describe();
    EXPECT_EQ(r.err.find("turned out to be taken"), std::string::npos) << "a start hit a conflict:\n" << r.describe();
    // Every process of alice's since the round began, not only X servers:
    // the session's dbus-daemon and ssh-agent left its group and session.
    std::vector<UserProcess> left;
    bool clean = integration::wait_until(
        [&] {
          left = processes_of_since(alice, round_began);
          return leases().empty() && left.empty();
        },
        30s, 20ms);
    gone_after.add(Clock::now() - ending);
    EXPECT_TRUE(clean) << "lease or processes of alice's left after the session ended:" << describe(left);
    for (const auto& x : x_servers_of(alice, kFirst, kLast))
      ADD_FAILURE() << "alice's X server pid " << x.pid << " on :" << x.display << " left running";
    if (HasFailure()) {
      std::cout << "---- holder output ----\n" << r.describe() << "\n";
      break;
    }
  }
  report(live_after.summary());
  report(gone_after.summary());

  // 4. bob's live ones kept their numbers and their sockets, untouched.
  EXPECT_TRUE(bobs_xpra.running());
  EXPECT_TRUE(bobs_listener.running());
  EXPECT_TRUE(xpra_answers(kBob, xpra_socket(kBobsXpra), [&] { return bobs_xpra.running(); }));
  const Entry listener = entry_at(xpra_socket(kBobsListener));
  EXPECT_TRUE(listener.exists && listener.owner == bob);
  EXPECT_FALSE(used.count(kBobsXpra) || used.count(kBobsListener));
  // Round robin took the restarts through every other number: bob's dead
  // sockets are gone from all of them.
  for (std::uint32_t d = kFirst; d <= kLast; ++d) {
    if (d == kBobsXpra || d == kBobsListener) continue;
    EXPECT_TRUE(used.count(d)) << ":" << d << " never handed out";
    const Entry e = entry_at(xpra_socket(d));
    EXPECT_TRUE(!e.exists || e.owner != bob) << xpra_socket(d) << " is still bob's";
  }
  // Exactly bob's: alice's xpra, told alone of the SIGTERM, removed its
  // own sockets (signalled with its X server, it leaves them to the broker).
  // Besides them, the broker counts the session bus socket each of alice's
  // dbus-daemons left in /tmp (Xpra stops it with SIGINT), at most one per
  // session, and logs each.
  const std::string log = broker().log();
  std::size_t bus_sockets = 0;
  for (auto at = log.find("removed dead session bus socket /tmp/dbus-"); at != std::string::npos;
       at = log.find("removed dead session bus socket /tmp/dbus-", at + 1))
    ++bus_sockets;
  EXPECT_LE(bus_sockets, static_cast<std::size_t>(kRestarts));
  EXPECT_EQ(raw_status().stale_removed(), used.size() + bus_sockets);
  EXPECT_NE(broker().log().find("removed stale xpra socket " + xpra_socket(*used.begin()) + " (owner uid=" +
                                std::to_string(bob)),
            std::string::npos)
      << "the removal is logged with its owner";
  bobs_xpra.terminate(10s);
  bobs_listener.terminate();
}

TEST_F(XpraSharedSocketDirTest, WhatAHostileUserPutsInTheSharedDirIsSkippedAndNeverRemoved) {
  const uid_t bob = integration::uid_of(kBob);
  const uid_t mallory = integration::uid_of("xpb-mallory");
  // A second shared dir others may rename entries in: 0777 without the
  // sticky bit. Nothing may be removed there.
  const std::string loose = dir_.path() + "/loose";
  integration::make_directory(loose, 0777);
  std::ofstream(conf_file_) << "socket-dirs = " << shared_ << ":" << loose << "\n";
  auto name = [](std::uint32_t d) { return host_name() + "-" + std::to_string(d); };
  auto as = [](const char* user, const std::string& script, const std::vector<std::string>& args) {
    std::vector<std::string> argv = {"/bin/sh", "-c", script, "sh"};
    argv.insert(argv.end(), args.begin(), args.end());
    const auto r = integration::run_as(user, argv);
    if (r.exit_code != 0) ADD_FAILURE() << script << ": " << r.describe();
  };

  // mallory: a file, a link to a live socket of bob's, a FIFO, a directory.
  const std::string bobs_dir = dir_.path() + "/bobs";
  integration::make_directory(bobs_dir, 0755);
  ASSERT_EQ(::chown(bobs_dir.c_str(), bob, bob), 0);
  auto bobs_elsewhere = spawn_listener(kBob, bobs_dir + "/live");
  as("xpb-mallory", "echo planted > \"$1/$2\"", {shared_, name(960)});
  as("xpb-mallory", "ln -s \"$3\" \"$1/$2\"", {shared_, name(961), bobs_dir + "/live"});
  as("xpb-mallory", "mkfifo \"$1/$2\"", {shared_, name(962)});
  as("xpb-mallory", "mkdir \"$1/$2\"", {shared_, name(963)});
  // bob: a live 0600 listener bound through another spelling of the shared
  // dir (a link to it), so /proc/net/unix names it by that path.
  const std::string alias = dir_.path() + "/alias";
  ASSERT_EQ(::symlink(shared_.c_str(), alias.c_str()), 0);
  auto bobs_aliased = spawn_listener(kBob, alias + "/" + name(964));
  // bob's dead sockets: one in the loose dir, one in the shared dir.
  plant_dead_socket(kBob, loose + "/" + name(965), std::chrono::hours(1));
  plant_dead_socket(kBob, shared_ + "/" + name(966), std::chrono::hours(1));
  ASSERT_TRUE(integration::wait_until(
      [&] { return entry_at(bobs_dir + "/live").exists && entry_at(shared_ + "/" + name(964)).exists; }, 30s));
  const std::map<std::string, Entry> before = [&] {
    std::map<std::string, Entry> m;
    for (std::uint32_t d = 960; d <= 964; ++d) m[shared_ + "/" + name(d)] = entry_at(shared_ + "/" + name(d));
    m[loose + "/" + name(965)] = entry_at(loose + "/" + name(965));
    m[bobs_dir + "/live"] = entry_at(bobs_dir + "/live");
    return m;
  }();
  for (const auto& [path, e] : before) ASSERT_TRUE(e.exists) << path;

  start_broker({"--displays=" + std::to_string(kHostileFirst) + "-" + std::to_string(kHostileLast),
                "--xpra-config-dirs=" + conf_dir_, "--recheck-seconds=2", "--failures-before-backoff=1000",
                "--acquire-burst=1000"});
  // Numbers are handed out round robin: 966 (the first nothing live or
  // planted holds), 967, 968, 969, then around again, where every plant is
  // judged a second time (their recheck ran out meanwhile).
  for (const std::uint32_t expected : {966u, 967u, 968u, 969u, 966u}) {
    ::usleep(2100 * 1000);
    const auto r = run_client(kAlice, {"exec", "--", "sh", "-c", "echo ran on $DISPLAY"});
    ASSERT_EQ(r.exit_code, 0) << r.describe();
    EXPECT_NE(r.out.find("ran on :" + std::to_string(expected)), std::string::npos) << r.describe();
  }
  ASSERT_TRUE(broker().alive());
  for (const auto& [path, e] : before) {
    const Entry now = entry_at(path);
    EXPECT_TRUE(now.exists && now.owner == e.owner && (now.mode & S_IFMT) == (e.mode & S_IFMT)) << path << " changed";
  }
  EXPECT_EQ(entry_at(shared_ + "/" + name(960)).owner, mallory);
  EXPECT_FALSE(entry_at(shared_ + "/" + name(966)).exists) << "bob's dead socket in the sticky dir is removed";
  const v1::StatusReply status = raw_status();
  std::set<std::uint32_t> skipped;
  for (const auto& b : status.blocked()) skipped.insert(b.display());
  EXPECT_EQ(skipped, (std::set<std::uint32_t>{960, 961, 962, 963, 964, 965}));
  for (const auto& d : status.xpra_socket_dirs()) {
    if (d.path() != loose) continue;
    EXPECT_NE(d.state().find("nothing removed"), std::string::npos) << d.state();
  }
  // The refusal for the loose dir is logged once, not per probe.
  std::istringstream log(broker().log());
  int refusals = 0;
  for (std::string line; std::getline(log, line);)
    refusals += line.find("xpra socket dir " + loose) != std::string::npos &&
                line.find("nothing is removed there") != std::string::npos;
  EXPECT_EQ(refusals, 1) << broker().log();
  bobs_elsewhere.terminate();
  bobs_aliased.terminate();
}

}  // namespace
}  // namespace xpra_broker::lifecycle
