// Validation against the real host: every display the broker hands out must
// work for a real Xvfb, also when the range holds the leftovers and foreign
// servers of PROBLEM.md (another user's stale socket and lock file, an X
// server started outside the broker, one listening only on the abstract
// socket).
#include <fcntl.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <sstream>
#include <thread>

#include "integration_fixture.h"

namespace xpra_broker::integration {
namespace {

namespace fs = std::filesystem;

const std::string kX11Dir = "/tmp/.X11-unix";

std::string x11_socket_path(std::uint32_t display) { return kX11Dir + "/X" + std::to_string(display); }
std::string x11_lock_path(std::uint32_t display) { return "/tmp/.X" + std::to_string(display) + "-lock"; }

bool path_exists(const std::string& path) {
  struct stat st {};
  return ::lstat(path.c_str(), &st) == 0;
}

// X servers need the sticky, world-writable socket directory.
void ensure_x11_socket_dir() {
  if (::mkdir(kX11Dir.c_str(), 01777) != 0 && errno != EEXIST)
    throw std::runtime_error("mkdir " + kX11Dir + ": " + std::strerror(errno));
  struct stat st {};
  if (::lstat(kX11Dir.c_str(), &st) != 0 || !S_ISDIR(st.st_mode))
    throw std::runtime_error(kX11Dir + " is not a directory");
  if ((st.st_mode & 07777) != 01777) ::chmod(kX11Dir.c_str(), 01777);
}

// The leftover of a crashed X server of `user`: a socket file bound to the
// path, with nobody listening (the binding process has exited).
void plant_stale_socket(const std::string& user, const std::string& path) {
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::strncpy(addr.sun_path, path.c_str(), sizeof(addr.sun_path) - 1);
  const int rc = run_function_as(user, [&addr] {
    const int fd = ::socket(AF_UNIX, SOCK_STREAM, 0);
    if (fd < 0) return 1;
    return ::bind(fd, reinterpret_cast<const sockaddr*>(&addr), sizeof(addr)) == 0 ? 0 : 2;
  });
  if (rc != 0) throw std::runtime_error("cannot plant a stale socket at " + path + " as " + user);
}

// A pid that certainly belonged to a process that has ended.
pid_t pid_of_ended_process() {
  const pid_t pid = ::fork();
  if (pid == 0) ::_exit(0);
  int status = 0;
  ::waitpid(pid, &status, 0);
  return pid;
}

// An X lock file of `user` naming `pid`, in X's format ("%10d\n").
void plant_lock_file(const std::string& user, const std::string& path, pid_t pid) {
  char content[16];
  const int len = std::snprintf(content, sizeof(content), "%10d\n", pid);
  const int rc = run_function_as(user, [&] {
    const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW, 0444);
    if (fd < 0) return 1;
    return ::write(fd, content, static_cast<std::size_t>(len)) == len ? 0 : 2;
  });
  if (rc != 0) throw std::runtime_error("cannot plant a lock file at " + path + " as " + user);
}

bool x_server_answers(std::uint32_t display) {
  return run_as("root", {"xdpyinfo", "-display", ":" + std::to_string(display)}, {}, 10s).exit_code == 0;
}

// Everything the test put on the host outside the broker, undone however
// the test ends: servers first (they remove their own files), then files.
struct ForeignHostState {
  std::vector<ChildProcess> servers;
  std::vector<std::string> files;
  ~ForeignHostState() {
    for (auto& server : servers) server.terminate();
    for (const auto& file : files) ::unlink(file.c_str());
  }
};

// What a test planted in its range of ten displays, relative to its first
// number: leftovers of xpb-bob (a socket without listener, a lock naming a
// dead pid), an Xvfb of xpb-bob, and a root Xvfb with only the abstract socket.
struct PlantedDisplays {
  std::uint32_t stale_socket, stale_lock, foreign_server, abstract_only;
  pid_t foreign_server_pid = 0;
  std::set<std::uint32_t> leftovers() const { return {stale_socket, stale_lock}; }
  std::set<std::uint32_t> live() const { return {foreign_server, abstract_only}; }
  std::set<std::uint32_t> all() const { return {stale_socket, stale_lock, foreign_server, abstract_only}; }
};

// One exec client's view of its display: did its own Xvfb run there?
struct XvfbRun {
  std::uint32_t display = 0;
  bool worked = false;
};

class HostDisplayTest : public BrokerTest {
 protected:
  void SetUp() override { ensure_x11_socket_dir(); }

  // Plants the four cases at first+0, +3, +5 and +8; undone by host_'s destructor.
  PlantedDisplays plant(std::uint32_t first, std::uint32_t last) {
    PlantedDisplays p{first, first + 3, first + 5, first + 8};
    const uid_t bob = uid_of(kBob);
    // The range is reserved for this test; a leftover of an earlier, killed
    // run (files of xpb-bob on a planted number) is removed.
    for (std::uint32_t d = first; d <= last; ++d)
      for (const auto& path : {x11_socket_path(d), x11_lock_path(d)}) {
        struct stat st {};
        if (::lstat(path.c_str(), &st) != 0) continue;
        if (p.all().count(d) && st.st_uid == bob) {
          ::unlink(path.c_str());
          continue;
        }
        throw std::runtime_error(path + " exists: display :" + std::to_string(d) +
                                 " is in use on this host, but this test's range must be free");
      }

    plant_stale_socket(kBob, x11_socket_path(p.stale_socket));
    host_.files.push_back(x11_socket_path(p.stale_socket));
    plant_lock_file(kBob, x11_lock_path(p.stale_lock), pid_of_ended_process());
    host_.files.push_back(x11_lock_path(p.stale_lock));

    host_.servers.push_back(spawn_as(kBob, {"Xvfb", ":" + std::to_string(p.foreign_server), "-nolisten", "tcp"}));
    p.foreign_server_pid = host_.servers.back().pid();
    // Root may skip the lock file: with -nolisten unix only @/tmp/.X11-unix/X<N> is left.
    host_.servers.push_back(spawn_as(
        "root", {"Xvfb", ":" + std::to_string(p.abstract_only), "-nolisten", "tcp", "-nolisten", "unix", "-nolock"}));
    for (std::uint32_t d : p.live())
      if (!wait_until([&] { return x_server_answers(d); }, 30s, 100ms))
        throw std::runtime_error("the Xvfb planted on :" + std::to_string(d) + " never answered");
    if (path_exists(x11_lock_path(p.abstract_only)) || path_exists(x11_socket_path(p.abstract_only)))
      throw std::runtime_error("Xvfb -nolock -nolisten unix left a lock or socket file");
    return p;
  }

  // Starts `count` exec clients (alice and bob in turn). Each starts Xvfb on
  // its display and checks that the server answering there is its own (the
  // lock file names its pid), then holds everything until release_xvfb_clients(),
  // so all the displays are in use at once. Returns once all have checked.
  void start_xvfb_clients(std::size_t count) {
    make_directory(scratch("rec"), 0777);
    // $1: a tag unique to this client, $2: the scratch dir.
    const std::string script = R"sh(s=$2; d=$XPRA_BROKER_DISPLAY
Xvfb ":$d" -nolisten tcp > "$s/xvfb-$d.log" 2>&1 &
x=$!; ok=no; n=0
while [ $n -lt 200 ]; do
  if xdpyinfo -display ":$d" > /dev/null 2>&1; then ok=yes; break; fi
  kill -0 $x 2>/dev/null || break
  sleep 0.1; n=$((n+1))
done
kill -0 $x 2>/dev/null || ok=no
[ "$(tr -d ' \n' < /tmp/.X$d-lock 2>/dev/null)" = "$x" ] || ok=no
echo "$d $ok" > "$s/rec/$1"
n=0; while [ ! -e "$s/go" ] && [ $n -lt 600 ]; do sleep 0.1; n=$((n+1)); done
kill $x; wait $x
[ $ok = yes ]
)sh";
    for (std::size_t i = 0; i < count; ++i)
      clients_.push_back(broker_->spawn_client_as(i % 2 ? kBob : kAlice,
                                                  exec_shell(script, {std::to_string(i), broker_->scratch_dir()})));
    bool client_ended = false;
    const bool all_up = wait_until(
        [&] {
          for (auto& client : clients_) client_ended = client_ended || !client.running();
          return client_ended || static_cast<std::size_t>(std::distance(fs::directory_iterator(scratch("rec")),
                                                                        fs::directory_iterator())) == count;
        },
        60s, 100ms);
    EXPECT_TRUE(all_up && !client_ended) << "not every client got a display and ran Xvfb on it";
  }

  // Lets the clients end; every one must exit 0. Returns what each saw.
  std::vector<XvfbRun> release_xvfb_clients() {
    std::ofstream(scratch("go")) << "go\n";
    for (auto& client : clients_) {
      const auto r = client.wait(60s);
      EXPECT_EQ(r.exit_code, 0) << r.describe();
    }
    std::vector<XvfbRun> runs;
    for (const auto& entry : fs::directory_iterator(scratch("rec"))) {
      std::istringstream fields(read_file(entry.path()));
      XvfbRun run;
      std::string ok;
      fields >> run.display >> ok;
      run.worked = ok == "yes";
      EXPECT_TRUE(run.worked) << "Xvfb could not run on :" << run.display << "; its log:\n"
                              << read_file(scratch("xvfb-" + std::to_string(run.display) + ".log"));
      runs.push_back(run);
    }
    return runs;
  }

  // `status --json` blocked entries by display.
  std::map<std::uint32_t, nlohmann::json> blocked_displays() {
    std::map<std::uint32_t, nlohmann::json> blocked;
    const auto status = status_json();
    for (const auto& b : status["blocked"]) blocked[b["display"].get<std::uint32_t>()] = b;
    return blocked;
  }

  void expect_live_servers_reported(const PlantedDisplays& p, std::map<std::uint32_t, nlohmann::json> blocked) {
    for (std::uint32_t d : p.live()) {
      ASSERT_TRUE(blocked.count(d)) << ":" << d << " (a running X server) missing from status blocked";
      EXPECT_FALSE(blocked[d]["stale"].get<bool>()) << blocked[d].dump();
      EXPECT_FALSE(blocked[d]["reason"].get<std::string>().empty());
    }
    EXPECT_EQ(blocked[p.foreign_server]["owner_uid"].get<uid_t>(), uid_of(kBob)) << blocked[p.foreign_server].dump();
    EXPECT_EQ(blocked[p.foreign_server]["pid"].get<pid_t>(), p.foreign_server_pid) << blocked[p.foreign_server].dump();
  }

  // The foreign servers were left alone by the broker and the clients.
  void expect_foreign_servers_untouched() {
    for (auto& server : host_.servers) EXPECT_TRUE(server.running()) << "a server started outside the broker died";
  }

  ForeignHostState host_;
  std::vector<ChildProcess> clients_;
};

// With cleaning off, leftovers poison their numbers just as live servers do:
// the broker must skip all four and say why.
TEST_F(HostDisplayTest, WithoutCleaningNoLeftoverOrServerNumberIsHandedOut) {
  const PlantedDisplays planted = plant(300, 309);
  start_broker({"--displays=300-309", "--clean-stale=no", "--max-leases-per-user=10", "--recheck-seconds=3600"});
  const std::size_t usable = 10 - planted.all().size();
  start_xvfb_clients(usable);

  // Every usable number is taken now; the planted ones must still be refused.
  const auto refused = broker_->client_as(kAlice, {"exec", "--", "true"});
  EXPECT_EQ(refused.exit_code, 124) << refused.describe();
  EXPECT_NE(refused.err.find("no free display"), std::string::npos) << refused.describe();

  auto blocked = blocked_displays();
  EXPECT_EQ(blocked.size(), planted.all().size()) << "only the planted displays are blocked";
  for (std::uint32_t d : planted.leftovers()) {
    ASSERT_TRUE(blocked.count(d)) << ":" << d << " (a leftover) missing from status blocked";
    EXPECT_TRUE(blocked[d]["stale"].get<bool>()) << blocked[d].dump();
    EXPECT_EQ(blocked[d]["owner_uid"].get<uid_t>(), uid_of(kBob)) << blocked[d].dump();
  }
  expect_live_servers_reported(planted, blocked);

  std::set<std::uint32_t> handed_out;
  for (const auto& run : release_xvfb_clients()) {
    EXPECT_TRUE(handed_out.insert(run.display).second) << ":" << run.display << " handed out twice";
    EXPECT_FALSE(planted.all().count(run.display)) << "the broker handed out :" << run.display;
  }
  EXPECT_EQ(handed_out.size(), usable);
  EXPECT_TRUE(path_exists(x11_socket_path(planted.stale_socket))) << "clean-stale=no removed a leftover";
  EXPECT_TRUE(path_exists(x11_lock_path(planted.stale_lock))) << "clean-stale=no removed a leftover";
  EXPECT_TRUE(wait_until([&] { return lease_count() == 0; })) << list_all().dump(1);
  expect_foreign_servers_untouched();
}

// With cleaning on (the default), the broker removes other users' leftovers
// (which users cannot do themselves in the sticky /tmp dirs), so those
// numbers work again; running servers are still never handed out.
TEST_F(HostDisplayTest, LeftoversAreRemovedAndTheirNumbersWorkButServersAreSkipped) {
  const PlantedDisplays planted = plant(310, 319);
  start_broker({"--displays=310-319", "--max-leases-per-user=10", "--recheck-seconds=3600"});
  const std::size_t usable = 10 - planted.live().size();
  start_xvfb_clients(usable);

  const auto refused = broker_->client_as(kAlice, {"exec", "--", "true"});
  EXPECT_EQ(refused.exit_code, 124) << refused.describe();

  auto blocked = blocked_displays();
  EXPECT_EQ(blocked.size(), planted.live().size()) << "only the running servers are blocked";
  expect_live_servers_reported(planted, blocked);

  std::set<std::uint32_t> handed_out;
  for (const auto& run : release_xvfb_clients()) {
    EXPECT_TRUE(handed_out.insert(run.display).second) << ":" << run.display << " handed out twice";
    EXPECT_FALSE(planted.live().count(run.display)) << "the broker handed out :" << run.display;
  }
  EXPECT_EQ(handed_out.size(), usable);
  for (std::uint32_t d : planted.leftovers()) EXPECT_TRUE(handed_out.count(d)) << ":" << d << " was not reused";
  EXPECT_TRUE(wait_until([&] { return lease_count() == 0; })) << list_all().dump(1);
  expect_foreign_servers_untouched();
}

// The broker answers "free" from its inotify watch of /tmp and
// /tmp/.X11-unix. Leftovers and servers that appear after it started, while
// /tmp churns with thousands of unrelated files a second, must be seen all
// the same.
TEST_F(HostDisplayTest, WhatAppearsAfterTheBrokerStartedIsSeenDuringAnEventStormInTmp) {
  // Without the host's Xpra config: its shared socket dirs (Debian's lists
  // /run/xpra) would add watches of their own.
  start_broker({"--displays=374-383", "--clean-stale=no", "--max-leases-per-user=10", "--recheck-seconds=3600",
                "--xpra-config-dirs="});
  const auto first = broker_->client_as(kAlice, {"exec", "--", "true"});
  ASSERT_EQ(first.exit_code, 0) << first.describe();  // the watch is up and has scanned
  // /tmp, /tmp/.X11-unix, the runtime dir and alice's dir.
  const auto status = status_json();
  EXPECT_EQ(status["watched_directories"].get<unsigned>(), 4u) << status.dump(1);
  const auto text = broker_->client_as("root", {"status"});
  EXPECT_NE(text.out.find("name watch    4 directories (inotify)"), std::string::npos) << text.describe();

  struct Churn {
    std::atomic<bool> stop{false};
    std::atomic<std::uint64_t> files{0};
    std::thread thread;
    Churn()
        : thread([this] {
            for (unsigned i = 0; !stop; ++i) {
              const std::string path = "/tmp/xpb-churn-" + std::to_string(i % 64);
              const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0600);
              if (fd >= 0) ::close(fd);
              ::unlink(path.c_str());
              ++files;
            }
          }) {}
    ~Churn() {
      stop = true;
      thread.join();
    }
  };
  {
    Churn churn;
    // The storm is under way (and stays so) before anything is planted. A
    // count, not a rate: how fast the churn runs depends on the machine.
    ASSERT_TRUE(wait_until([&] { return churn.files >= 10000; }, 60s)) << "the /tmp churn did not get going";
    const PlantedDisplays planted = plant(374, 383);
    const std::size_t usable = 10 - planted.all().size();
    start_xvfb_clients(usable);
    const auto refused = broker_->client_as(kAlice, {"exec", "--", "true"});
    EXPECT_EQ(refused.exit_code, 124) << refused.describe();
    auto blocked = blocked_displays();
    EXPECT_EQ(blocked.size(), planted.all().size()) << "only the planted displays are blocked";
    std::set<std::uint32_t> handed_out;
    for (const auto& run : release_xvfb_clients()) {
      EXPECT_TRUE(handed_out.insert(run.display).second) << ":" << run.display << " handed out twice";
      EXPECT_FALSE(planted.all().count(run.display)) << "the broker handed out :" << run.display;
    }
    EXPECT_EQ(handed_out.size(), usable);
  }
  EXPECT_TRUE(wait_until([&] { return lease_count() == 0; })) << list_all().dump(1);
  expect_foreign_servers_untouched();
}

}  // namespace
}  // namespace xpra_broker::integration
