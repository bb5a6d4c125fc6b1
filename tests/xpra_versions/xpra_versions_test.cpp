// The Xpra that users run, under the real broker: Debian 12's 3.1.3, the
// incident's 5.0.8 and current 6.5.3 (built from ../shared/xpra-src by
// scripts/build-xpra-versions.sh, the ctest fixture xpra_versions_build).
// For each version:
// - `exec --xpra -- xpra start` reaches LIVE (the time is printed), and every
//   end path (SIGTERM and SIGKILL of the client, release, the last PAM logout
//   with reap=yes, the holder killed while the broker restarts) leaves no
//   process of the user;
// - the incident's trigger: another user's dead sockets in a shared socket
//   dir of the host's Xpra config;
// - another user's session dirs in /tmp ("/tmp/N" with what a SIGKILLed
//   5.x/6.x session leaves, a private "/tmp/xpra"): a stale one is removed
//   by the broker, one whose owner still runs an X server on N keeps N from
//   being handed out, and for 6.x a squatted abstract socket @xpra/N does
//   too; neither makes the start fail.
//
// Without the sources (a user's fresh clone) the 5.x/6.x tests are SKIPPED
// with that reason, never passed; with the sources but no build, they fail.
//
// Display range 1160-1199: per version 13 displays, the first 4 for the end
// paths, the next 5 for the leftovers, the last 4 for the incident's
// trigger (so the tests may run in parallel). Users xpb-xver-a and
// xpb-xver-b are this suite's own: the checks read all processes of the
// user, which no other suite's session may add to.
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <regex>
#include <sstream>

#include "lifecycle_support.h"

namespace xpra_broker::lifecycle {
namespace {

using Clock = std::chrono::steady_clock;

constexpr const char* kUser = "xpb-xver-a";
constexpr const char* kOther = "xpb-xver-b";

struct Version {
  std::string name;
  std::uint32_t first = 0;  // the version's 13 displays
};

void PrintTo(const Version& v, std::ostream* os) { *os << "Xpra " << v.name; }

const Version kVersions[] = {{"3.1.3", 1160}, {"5.0.8", 1173}, {"6.5.3", 1186}};

// The manifest the fixture wrote: "<version> <prefix>" lines, or one
// "absent <reason>" line when ../shared/xpra-src is not there.
struct Manifest {
  std::map<std::string, std::string> prefixes;
  std::string absent_reason;
  std::string error;  // unreadable: the fixture did not run
};

Manifest read_manifest() {
  Manifest m;
  std::ifstream in(XPRA_VERSIONS_MANIFEST);
  if (!in) {
    m.error = std::string("no ") + XPRA_VERSIONS_MANIFEST +
              ": run the fixture (ctest -L xpra-versions, or scripts/build-xpra-versions.sh --manifest FILE)";
    return m;
  }
  std::string line;
  while (std::getline(in, line)) {
    const auto space = line.find(' ');
    if (space == std::string::npos) continue;
    if (line.substr(0, space) == "absent")
      m.absent_reason = line.substr(space + 1);
    else
      m.prefixes[line.substr(0, space)] = line.substr(space + 1);
  }
  return m;
}

class XpraVersionsTest : public LifecycleTest, public ::testing::WithParamInterface<Version> {
 protected:
  void SetUp() override {
    const Version& v = GetParam();
    if (v.name != "3.1.3") {
      const Manifest m = read_manifest();
      if (!m.absent_reason.empty()) GTEST_SKIP() << "Xpra " << v.name << " not tested: " << m.absent_reason;
      ASSERT_EQ(m.error, "");
      ASSERT_TRUE(m.prefixes.count(v.name)) << "the manifest names no build of Xpra " << v.name;
      const std::string prefix = m.prefixes.at(v.name);
      ASSERT_TRUE(path_exists(prefix + "/bin/xpra")) << prefix;
      // How a private build runs (../shared/xpra-src/README.md): its own
      // modules and config, not Debian 3.1.3's /etc/xpra.
      env_ = {{"PATH", prefix + "/bin:/usr/local/bin:/usr/bin:/bin"},
              {"PYTHONPATH", prefix + "/lib/python3/dist-packages"},
              {"XPRA_SYSTEM_CONF_DIRS", prefix + "/etc/xpra"}};
    }
    uid_ = integration::uid_of(kUser);
    since_ = boot_ticks_now();
    began_ = std::time(nullptr);
    ASSERT_TRUE(processes_of_since(uid_, since_).empty());
  }

  void start_broker_on(std::uint32_t first, std::uint32_t last) {
    for (std::uint32_t d = first; d <= last; ++d)
      ASSERT_FALSE(path_exists(x_lock_path(d)) || path_exists(x_socket_path(d))) << ":" << d << " in use before";
    std::vector<std::string> options = {"--displays=" + std::to_string(first) + "-" + std::to_string(last),
                                        "--failures-before-backoff=1000", "--acquire-burst=1000",
                                        "--acquires-per-minute=1000", "--reattach-grace-seconds=3"};
    options.insert(options.end(), extra_options_.begin(), extra_options_.end());
    start_broker(options);
  }
  bool is_6x() const { return GetParam().name.rfind("6.", 0) == 0; }

  struct Session {
    ChildProcess client;
    v1::Lease lease;
  };

  // `exec --xpra -- xpra start` with Debian's default config options, as
  // the containment tests run it; waits until `xpra list` says LIVE.
  Session start_session(const std::vector<std::string>& xpra_options = {}) {
    const auto started = Clock::now();
    Session s;
    std::vector<std::string> args = {"exec", "--xpra", "--purpose", "xpra-versions", "--", "xpra", "start"};
    for (const auto& o : host_default_xpra_options()) args.push_back(o);
    for (const auto& o : xpra_options) args.push_back(o);
    s.client = spawn_client(kUser, args, env_);
    const auto lease = lease_held_by(s.client);
    if (!lease) {
      ADD_FAILURE() << "no lease: " << s.client.terminate().describe();
      return s;
    }
    s.lease = *lease;
    ProcessResult listed;
    const bool up = wait_for_xpra_live(kUser, s.lease, s.client, env_, listed);
    if (!up) {
      ADD_FAILURE() << "Xpra " << GetParam().name << " did not come up LIVE on :" << lease->display()
                    << "\nxpra list: " << listed.describe() << "\nprocesses:" << describe(processes_of_since(uid_, since_))
                    << "\nholder: " << s.client.terminate().describe();
      return s;
    }
    report("Xpra " + GetParam().name + ": start to LIVE under the broker " +
           std::to_string(std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - started).count()) +
           " ms on :" + std::to_string(lease->display()));
    return s;
  }

  // No process of the user since the test began, no lease, and no session
  // bus socket of hers left in /tmp.
  void expect_nothing_left(const std::string& how) {
    std::vector<UserProcess> left;
    std::vector<std::string> sockets;
    const bool clean = integration::wait_until(
        [&] {
          left = processes_of_since(uid_, since_);
          sockets = bus_sockets_of_since(uid_, began_);
          return left.empty() && sockets.empty() && leases().empty();
        },
        45s, 50ms);
    EXPECT_TRUE(clean) << "Xpra " << GetParam().name << ", " << how << ": left running:" << describe(left)
                       << "\nsession bus sockets left:" << describe(sockets) << (leases().empty() ? "" : "\nand a lease");
  }

  void expect_not_the_users(const std::string& path) {
    struct stat st {};
    if (::lstat(path.c_str(), &st) == 0) {
      EXPECT_NE(st.st_uid, uid_) << path << " belongs to the sessions' user: shared /tmp state";
    }
  }

  // A killed 5.x/6.x session leaves its whole session dir; the broker
  // removes it with the lease (a dead socket in it made each later `xpra
  // list` of the user wait 10 s).
  void expect_no_session_dir_left(const Session& s, const std::string& how) {
    if (GetParam().name == "3.1.3") return;
    const std::string dir = s.lease.runtime_dir() + "/" + std::to_string(s.lease.display());
    EXPECT_TRUE(integration::wait_until([&] { return !path_exists(dir); }, 10s, 50ms))
        << "Xpra " << GetParam().name << ", " << how << ": the session dir " << dir << " stays";
  }

  // Nothing of the session under shared /tmp: its session dir (5.x/6.x)
  // is in the lease's runtime dir.
  void expect_session_dir_in_runtime_dir(const Session& s) {
    const std::string n = std::to_string(s.lease.display());
    if (GetParam().name == "3.1.3") return;  // 3.1 keeps no session dir
    EXPECT_TRUE(path_exists(s.lease.runtime_dir() + "/" + n)) << "no session dir in " << s.lease.runtime_dir();
    for (const std::string& shared : {"/tmp/" + n, "/tmp/xpra/" + n}) {
      expect_not_the_users(shared);
    }
  }

  // The broker knows an X server by its executable's name (/proc comm:
  // "Xvfb") and its ":N" argument, not by argv[0], which each version sets
  // its own way: "Xvfb-for-Xpra-:N" (3.1), "Xvfb-for-Xpra-N" (5.x/6.x).
  void expect_x_server_recognised(const Session& s) {
    const std::uint32_t n = s.lease.display();
    const auto servers = x_servers_of(uid_, n, n);
    ASSERT_EQ(servers.size(), 1u) << "the session's X server on :" << n << " is not found by comm and :N";
    std::string argv0;
    for (const auto& p : host_processes())
      if (p.pid == servers[0].pid && !p.argv.empty()) argv0 = p.argv[0];
    const std::string expected = GetParam().name == "3.1.3" ? "Xvfb-for-Xpra-:" + std::to_string(n)
                                                             : "Xvfb-for-Xpra-" + std::to_string(n);
    EXPECT_EQ(argv0, expected) << "argv[0] of Xpra " << GetParam().name << "'s X server";
  }

  // What the other user's SIGKILLed 5.x/6.x session leaves in /tmp/N (as
  // make_session_dir() falls back to it): its files, a dead socket, 0750.
  void plant_session_dir(const std::string& path) {
    std::ostringstream script;
    script << "set -e; mkdir -m 0750 " << path << "; cd " << path
           << "; for f in server.pid xvfb.pid dbus.pid xauthority server.log cmdline; do echo 1 > $f; done"
           << "; mkdir -m 0700 ssh; /usr/bin/python3 -c 'import socket; socket.socket(socket.AF_UNIX).bind(\"socket\")'";
    planted_dirs_.push_back(path);  // before it exists: a half-made one goes too
    const auto made = integration::run_as(kOther, {"/bin/sh", "-c", script.str()}, {}, 30s);
    ASSERT_EQ(made.exit_code, 0) << made.describe();
  }

  // The session dirs planted, removed with everything in them whatever the
  // test's outcome (the fixture's remove_at_end() unlinks files only).
  void TearDown() override {
    for (const auto& dir : planted_dirs_) {
      std::error_code ec;
      std::filesystem::remove_all(dir, ec);
    }
    LifecycleTest::TearDown();
  }
  std::vector<std::string> planted_dirs_;

  std::map<std::string, std::string> env_;
  std::vector<std::string> extra_options_;
  uid_t uid_ = 0;
  std::uint64_t since_ = 0;
  std::time_t began_ = 0;
};

TEST_P(XpraVersionsTest, StartsLiveAndEveryEndPathLeavesNothing) {
  const std::uint32_t first = GetParam().first;
  start_broker_on(first, first + 3);
  {
    Session s = start_session();
    ASSERT_FALSE(HasFailure());
    expect_session_dir_in_runtime_dir(s);
    expect_x_server_recognised(s);
    s.client.send_signal(SIGTERM);
    const auto r = s.client.wait(90s);
    EXPECT_FALSE(r.timed_out) << r.describe();
    expect_nothing_left("SIGTERM to the client");
  }
  {
    Session s = start_session();
    ASSERT_FALSE(HasFailure());
    s.client.send_signal(SIGKILL);
    s.client.wait(30s);
    expect_nothing_left("SIGKILL of the client");
    expect_no_session_dir_left(s, "SIGKILL of the client");
  }
  {
    Session s = start_session();
    ASSERT_FALSE(HasFailure());
    const auto released = run_client(kUser, {"release", ":" + std::to_string(s.lease.display())});
    EXPECT_EQ(released.exit_code, 0) << released.describe();
    s.client.wait(60s);
    expect_nothing_left("release by the owner");
  }
  {
    Session s = start_session();
    ASSERT_FALSE(HasFailure());
    // A PAM service with only the broker's module, as docs/pam.md sets it up.
    const std::string service = "xpra-broker-xver-" + std::to_string(::getpid());
    const std::string service_file = "/etc/pam.d/" + service;
    std::ofstream(service_file) << "session required " << XPRA_PAM_MODULE_PATH
                                << " socket=" << broker().socket_path() << " reap=yes timeout=5000\n";
    remove_at_end(service_file);
    const auto login =
        integration::run_as("root", {"pamtester", "-v", service, kUser, "open_session", "close_session"}, {}, 60s);
    EXPECT_EQ(login.exit_code, 0) << login.describe();
    s.client.wait(60s);
    expect_nothing_left("the last PAM logout with reap=yes");
  }
  {
    Session s = start_session();
    ASSERT_FALSE(HasFailure());
    broker().stop();
    s.client.send_signal(SIGKILL);
    s.client.wait(30s);
    broker().start(60s);
    expect_nothing_left("the holder killed while the broker was down");
    expect_no_session_dir_left(s, "the holder killed while the broker was down");
  }
  // Nothing of the user's sessions in shared /tmp either: 5.x/6.x keep
  // state in $XDG_RUNTIME_DIR/xpra, and without one in /tmp/xpra.
  for (std::uint32_t d = first; d <= first + 3; ++d) expect_not_the_users("/tmp/" + std::to_string(d));
  expect_not_the_users("/tmp/xpra");
}

// A session of another user that crashed (or squats on purpose) left its
// session dirs in shared /tmp, where 5.x/6.x fall back without a runtime
// dir, and 6.x's abstract sockets @xpra/N; none of it may fail the start.
// (Without --sessions-dir, a 5.0.8 start with the other user's /tmp/xpra/N
// fails with "Permission denied: '/tmp/N/server.env'" and leaves its Xvfb
// and dbus-daemon running: tried by hand.) The broker judges the other
// user's "/tmp/N" as it judges X lock files: taken while its owner runs an
// X server on N, else stale and removed (docs/xpra-versions.md).
TEST_P(XpraVersionsTest, AnotherUsersLeftoversDoNotFailTheStart) {
  const std::uint32_t first = GetParam().first + 4, last = GetParam().first + 8;
  const uid_t other = integration::uid_of(kOther);
  // Something of someone else's already there: not ours to plant over.
  for (std::uint32_t d = first; d <= last; ++d)
    for (const std::string& p : {"/tmp/" + std::to_string(d), "/tmp/xpra/" + std::to_string(d)})
      ASSERT_FALSE(path_exists(p)) << p << " exists before the test";
  // The other user's private /tmp/xpra (as 5.x/6.x make it with
  // XDG_RUNTIME_DIR=/tmp), with a session dir in it: only its owner's
  // sessions look there, so it is left alone.
  const bool own_tmp_xpra = !path_exists("/tmp/xpra");
  if (own_tmp_xpra) {
    planted_dirs_.push_back("/tmp/xpra");
    const auto made = integration::run_as(kOther, {"mkdir", "-m", "0700", "/tmp/xpra", "/tmp/xpra/" + std::to_string(first)}, {}, 30s);
    ASSERT_EQ(made.exit_code, 0) << made.describe();
  }
  for (std::uint32_t d = first; d <= last; ++d) plant_session_dir("/tmp/" + std::to_string(d));
  // `first`: the other user's session still runs (a stand-in X server of
  // theirs on :first, named Xvfb): its /tmp/N stays and N is not handed out.
  integration::TempDir bin{"xpb-xver-bin", 0755};
  const std::string xvfb = bin.path() + "/Xvfb";
  std::ofstream(xvfb) << "#!/bin/sh\nwhile :; do sleep 1; done\n";
  ASSERT_EQ(::chmod(xvfb.c_str(), 0755), 0);
  ChildProcess others_x_server = spawn_marked(kOther, {xvfb, ":" + std::to_string(first)});
  ChildProcess squatter;
  if (is_6x()) {
    // @xpra/N of every number between the running session's and the last,
    // held by a live process of the other user: the broker hands out none of
    // those (it checks @xpra/N).
    std::ostringstream script;
    script << "import socket, sys, time\nheld = []\nfor n in range(" << first + 1 << ", " << last << "):\n"
           << "    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)\n    s.bind('\\0xpra/%d' % n)\n"
           << "    s.listen(1)\n    held.append(s)\nprint('bound', flush=True)\ntime.sleep(3600)\n";
    squatter = spawn_marked(kOther, {"/usr/bin/python3", "-c", script.str()});
    ASSERT_TRUE(integration::wait_until(
        [&] {
          std::ifstream unix_sockets("/proc/net/unix");
          const std::string all((std::istreambuf_iterator<char>(unix_sockets)), std::istreambuf_iterator<char>());
          return all.find("@xpra/" + std::to_string(last - 1)) != std::string::npos;
        },
        30s))
        << "the squatter did not bind @xpra/N";
  }
  start_broker_on(first, last);
  // 6.x: every number but the last is taken by the squatter or the running
  // session; else the first stale "/tmp/N" is cleaned and handed out.
  const std::uint32_t expected = is_6x() ? last : first + 1;
  {
    Session s = start_session();
    if (!HasFailure()) {
      expect_session_dir_in_runtime_dir(s);
      EXPECT_EQ(s.lease.display(), expected);
      const std::string n = std::to_string(s.lease.display());
      EXPECT_FALSE(path_exists("/tmp/" + n)) << "the other user's stale session dir of the display handed out";
      const std::string log = broker().log();
      EXPECT_NE(log.find("removed stale xpra session dir /tmp/" + n + " (owner uid=" + std::to_string(other)),
                std::string::npos)
          << log;
      // (Skips are logged once per owner and kind a while: the first one.)
      EXPECT_TRUE(std::regex_search(log, std::regex("skipped: xpra session dir /tmp/" + std::to_string(first) +
                                                    " of a running session.*owner uid=" + std::to_string(other))))
          << "the running session's number is not skipped and blamed on its owner:\n" << log;
      if (is_6x()) {
        // Nor does the session itself bind into the shared abstract
        // namespace (XPRA_AUTO_ABSTRACT_SOCKET=0 from --xpra).
        std::ifstream unix_sockets("/proc/net/unix");
        const std::string all((std::istreambuf_iterator<char>(unix_sockets)), std::istreambuf_iterator<char>());
        EXPECT_EQ(all.find("@xpra/" + n), std::string::npos) << "Xpra " << GetParam().name << " bound @xpra/" << n;
      }
      s.client.send_signal(SIGTERM);
      s.client.wait(90s);
      expect_nothing_left("SIGTERM to the client, with another user's leftovers");
    }
  }
  if (squatter.pid() > 0) squatter.terminate();
  others_x_server.terminate();
  // The rest of the other user's state is as it was: the running session's
  // dir, the numbers never probed, the private /tmp/xpra.
  for (std::uint32_t d = first; d <= last; ++d) {
    if (d == expected) continue;
    struct stat st {};
    const std::string p = "/tmp/" + std::to_string(d);
    EXPECT_TRUE(::lstat(p.c_str(), &st) == 0 && st.st_uid == other) << p << ": the other user's dir was changed";
  }
  if (own_tmp_xpra) {
    struct stat st {};
    EXPECT_TRUE(::lstat(("/tmp/xpra/" + std::to_string(first)).c_str(), &st) == 0 && st.st_uid == other)
        << "the other user's private /tmp/xpra was entered";
  }
}

// The incident's trigger (issue 15) with each version: the host's Xpra
// config lists a shared socket dir (sticky, like /tmp) where another user's
// crashed sessions left dead, inaccessible "<host>-N" sockets on every
// number of the range. Each start must reach LIVE, on a number whose dead
// socket the broker removed.
TEST_P(XpraVersionsTest, AnotherUsersDeadSocketsInASharedSocketDirDoNotFailTheStart) {
  const std::uint32_t first = GetParam().first + 9, last = GetParam().first + 12;
  integration::TempDir dir{"xpb-xver-shared", 0755};
  const std::string conf_dir = dir.path() + "/xdg/xpra";
  integration::make_directory(dir.path() + "/xdg", 0755);
  integration::make_directory(conf_dir, 0755);
  const std::string shared = dir.path() + "/shared";
  integration::make_directory(shared, 01777);
  // The broker reads the shared dir from an Xpra config dir; each xpra is
  // given it on its command line (--socket-dirs), as the config would: a
  // private 6.5.3 build was seen to ignore an added config file, and what
  // matters here is that the version binds and checks sockets there.
  std::ofstream(conf_dir + "/xpra.conf") << "socket-dirs = " << shared << "\n";
  ASSERT_EQ(::chmod((conf_dir + "/xpra.conf").c_str(), 0644), 0);
  const auto socket_of = [&](std::uint32_t d) { return shared + "/" + host_name() + "-" + std::to_string(d); };
  for (std::uint32_t d = first; d <= last; ++d) {
    plant_dead_socket(kOther, socket_of(d), std::chrono::hours(1));
    ASSERT_EQ(::chmod(socket_of(d).c_str(), 0755), 0);  // as in the incident: others' connect() is refused
  }
  extra_options_ = {"--xpra-config-dirs=" + conf_dir};
  start_broker_on(first, last);
  for (int round = 0; round < 2; ++round) {
    Session s = start_session({"--socket-dirs=" + shared});
    ASSERT_FALSE(HasFailure()) << "start " << round + 1;
    // The session's own socket is there now: this version reads the shared
    // dir from the config, so the other user's dead socket would have
    // failed its start (the incident) had the broker handed the number out
    // as it was.
    struct stat st {};
    const bool sessions_own = ::lstat(socket_of(s.lease.display()).c_str(), &st) == 0 && S_ISSOCK(st.st_mode) &&
                              st.st_uid == uid_;
    EXPECT_TRUE(sessions_own)
        << socket_of(s.lease.display()) << " is not the session's socket: the other user's is still there, or Xpra "
        << GetParam().name << " did not use --socket-dirs=" << shared;
    s.client.send_signal(SIGTERM);
    s.client.wait(90s);
    expect_nothing_left("SIGTERM to the client, start " + std::to_string(round + 1) + " in the incident's setting");
  }
  const std::string log = broker().log();
  EXPECT_NE(log.find("removed stale xpra socket " + shared + "/"), std::string::npos) << log;
}

INSTANTIATE_TEST_SUITE_P(Xpra, XpraVersionsTest, ::testing::ValuesIn(kVersions),
                         [](const ::testing::TestParamInfo<Version>& info) {
                           std::string name = "v" + info.param.name;
                           for (char& c : name)
                             if (c == '.') c = '_';
                           return name;
                         });

}  // namespace
}  // namespace xpra_broker::lifecycle
