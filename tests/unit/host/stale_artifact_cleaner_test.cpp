// stale_artifact_cleaner.h on a temporary x11_tmp_dir (with its .X11-unix),
// a temporary runtime dir and a user dir in it: dead leftovers go, live ones
// and directories stay, planted symlinks are removed without following them.
//
// Runs as root (like CI) so artifacts can be handed to other uids.
#include "host/stale_artifact_cleaner.h"
#include "host/process_inspector.h"
#include "host/xpra_session_dirs.h"

#include <sys/capability.h>

#include <fcntl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <cstdio>
#include <ctime>
#include <fstream>
#include <functional>
#include <map>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "test_processes.h"
#include "test_support.h"
#include "unique_fd.h"

namespace xpra_broker {
namespace {

using testing::TempDir;

constexpr std::uint32_t kDisplay = 7;
const std::string kHost = "unit-test-host";

class StaleArtifactCleanerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_EQ(::geteuid(), 0u) << "these tests hand artifacts to other uids: run them as root, as CI does";
    ASSERT_TRUE(testing::restore_effective_capabilities());
    x11_dir_ = tmp_.path() + "/tmp";
    runtime_dir_ = tmp_.path() + "/run";
    user_dir_ = runtime_dir_ + "/4001";
    elsewhere_ = tmp_.path() + "/elsewhere";
    for (const auto& d : {x11_dir_, x11_dir_ + "/.X11-unix", runtime_dir_, user_dir_, elsewhere_})
      ASSERT_EQ(::mkdir(d.c_str(), 0755), 0) << d;
    // Sticky and world-writable, like the real ones.
    ASSERT_EQ(::chmod(x11_dir_.c_str(), 01777), 0);
    ASSERT_EQ(::chmod((x11_dir_ + "/.X11-unix").c_str(), 01777), 0);
  }

  std::vector<RemovedArtifact> clean(std::uint32_t display = kDisplay, const std::string& user_dir = "") {
    StaleArtifactCleaner cleaner(x11_dir_, runtime_dir_, kHost);
    return cleaner.clean_display(display, user_dir.empty() ? user_dir_ : user_dir);
  }
  std::vector<RemovedArtifact> clean_without_user_dir(std::uint32_t display = kDisplay) {
    StaleArtifactCleaner cleaner(x11_dir_, runtime_dir_, kHost);
    return cleaner.clean_display(display, "");
  }

  std::string lock_path(std::uint32_t display = kDisplay) const {
    return x11_dir_ + "/.X" + std::to_string(display) + "-lock";
  }
  std::string x11_socket_path(std::uint32_t display = kDisplay) const {
    return x11_dir_ + "/.X11-unix/X" + std::to_string(display);
  }
  std::string shared_xpra_path(std::uint32_t display = kDisplay) const {
    return runtime_dir_ + "/" + kHost + "-" + std::to_string(display);
  }
  std::string user_xpra_path(std::uint32_t display = kDisplay) const {
    return user_dir_ + "/" + kHost + "-" + std::to_string(display);
  }

  // An X lock file as X writes it: the pid in 10 columns and a newline.
  static void write_lock(const std::string& path, pid_t pid, uid_t owner = 0) {
    char text[16];
    std::snprintf(text, sizeof(text), "%10d\n", pid);
    write_file(path, text, owner);
  }
  static void write_file(const std::string& path, const std::string& content, uid_t owner = 0) {
    std::ofstream(path) << content;
    ASSERT_EQ(::lchown(path.c_str(), owner, owner), 0) << path;
  }
  static std::string read_file(const std::string& path) {
    std::ifstream in(path);
    std::stringstream s;
    s << in.rdbuf();
    return s.str();
  }
  // A socket file at `path`: with `listening`, the returned fd listens on
  // it; without, the socket is closed at once and only the file is left.
  static UniqueFd make_socket(const std::string& path, bool listening, uid_t owner = 0) {
    UniqueFd s(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    std::snprintf(addr.sun_path, sizeof(addr.sun_path), "%s", path.c_str());
    EXPECT_EQ(::bind(s.get(), reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0) << path;
    EXPECT_EQ(::lchown(path.c_str(), owner, owner), 0) << path;
    if (!listening) return {};
    EXPECT_EQ(::listen(s.get(), 4), 0);
    return s;
  }
  static bool exists(const std::string& path) {
    struct stat st {};
    return ::lstat(path.c_str(), &st) == 0;
  }
  static void make_old(const std::string& path, long seconds) {
    const timespec t[2] = {{std::time(nullptr) - seconds, 0}, {std::time(nullptr) - seconds, 0}};
    ASSERT_EQ(::utimensat(AT_FDCWD, path.c_str(), t, AT_SYMLINK_NOFOLLOW), 0) << path;
  }
  static bool connectable(const std::string& path) {
    UniqueFd s(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    std::snprintf(addr.sun_path, sizeof(addr.sun_path), "%s", path.c_str());
    return ::connect(s.get(), reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0;
  }
  static std::set<std::string> paths(const std::vector<RemovedArtifact>& removed) {
    std::set<std::string> out;
    for (const auto& r : removed) out.insert(r.path);
    return out;
  }

  // A stand-in server of root's: a script named `name` (its comm), run with
  // `args`, waited for until /proc shows it by that name.
  testing::ScopedChild spawn_stand_in(const std::string& name, const std::string& args) {
    const std::string program = tmp_.path() + "/" + name;
    write_file(program, "#!/bin/sh\nwhile :; do sleep 1; done\n");
    EXPECT_EQ(::chmod(program.c_str(), 0755), 0);
    testing::ScopedChild server = testing::spawn_shell_group("exec " + program + " " + args);
    EXPECT_TRUE(server);
    EXPECT_TRUE(testing::eventually([&] {
      ProcessInfo info;
      return read_process(server.pid(), info) && info.comm == name;
    }));
    return server;
  }

  TempDir tmp_;
  std::string x11_dir_, runtime_dir_, user_dir_, elsewhere_;
};

// ---- X lock file -----------------------------------------------------------

TEST_F(StaleArtifactCleanerTest, RemovesALockFileWhosePidIsDead) {
  write_lock(lock_path(), testing::dead_pid(), 4321);
  const auto removed = clean();
  ASSERT_EQ(removed.size(), 1u);
  EXPECT_EQ(removed[0].path, lock_path());
  EXPECT_EQ(removed[0].owner, 4321u);
  EXPECT_EQ(removed[0].what, "stale X lock file");
  EXPECT_FALSE(exists(lock_path()));
}

TEST_F(StaleArtifactCleanerTest, KeepsTheLockOfALiveXServerOfItsOwner) {
  // A stand-in X server: a script named Xvfb, so its command name is Xvfb.
  testing::ScopedChild server = spawn_stand_in("Xvfb", ":7");
  ASSERT_FALSE(HasFailure());
  write_lock(lock_path(), server.pid(), ::getuid());
  EXPECT_TRUE(clean().empty());
  EXPECT_TRUE(exists(lock_path()));
}

TEST_F(StaleArtifactCleanerTest, RemovesAForgedLockNamingALiveProcessThatIsNoXServerOfTheFileOwner) {
  // Planted by uid 4321, naming this (root's) test process: alive, but no
  // X server and not 4321's. Kept, it would make the number look taken.
  write_lock(lock_path(), ::getpid(), 4321);
  EXPECT_EQ(paths(clean()), std::set<std::string>{lock_path()});
  EXPECT_FALSE(exists(lock_path()));
  // Naming a live process of another uid than the file's owner.
  testing::ScopedChild other = testing::spawn_sleeper(testing::SleeperOptions().as_uid(4321));
  ASSERT_TRUE(other);
  write_lock(lock_path(), other.pid(), 4322);
  EXPECT_EQ(paths(clean()), std::set<std::string>{lock_path()});
  EXPECT_FALSE(exists(lock_path()));
}

TEST_F(StaleArtifactCleanerTest, EmptyOrGarbledLockIsRemovedOnlyOnceItIsOld) {
  for (const std::string content : {"", "   \n", "garbage", "-5\n", "0000000000\n"}) {
    SCOPED_TRACE("'" + content + "'");
    write_file(lock_path(), content);
    EXPECT_TRUE(clean().empty()) << "an X server may be writing it right now";
    EXPECT_TRUE(exists(lock_path()));
    make_old(lock_path(), 60);
    EXPECT_EQ(paths(clean()), std::set<std::string>{lock_path()});
    EXPECT_FALSE(exists(lock_path()));
  }
}

TEST_F(StaleArtifactCleanerTest, OnlyTheGivenDisplaysArtifactsAreTouched) {
  const pid_t dead = testing::dead_pid();
  for (std::uint32_t d : {6u, 8u, 70u}) {
    write_lock(lock_path(d), dead);
    make_socket(x11_socket_path(d), false);
    make_socket(shared_xpra_path(d), false);
  }
  write_lock(lock_path(), dead);
  make_socket(shared_xpra_path(), false);
  // Another host's xpra socket for the same number.
  make_socket(runtime_dir_ + "/otherhost-7", false);
  EXPECT_EQ(paths(clean()), (std::set<std::string>{lock_path(), shared_xpra_path()}));
  for (std::uint32_t d : {6u, 8u, 70u}) {
    EXPECT_TRUE(exists(lock_path(d))) << d;
    EXPECT_TRUE(exists(x11_socket_path(d))) << d;
    EXPECT_TRUE(exists(shared_xpra_path(d))) << d;
  }
  EXPECT_TRUE(exists(runtime_dir_ + "/otherhost-7"));
}

// ---- sockets ---------------------------------------------------------------

TEST_F(StaleArtifactCleanerTest, RemovesAnX11SocketNobodyListensOn) {
  make_socket(x11_socket_path(), false, 4322);
  const auto removed = clean();
  ASSERT_EQ(removed.size(), 1u);
  EXPECT_EQ(removed[0].path, x11_socket_path());
  EXPECT_EQ(removed[0].owner, 4322u);
  EXPECT_EQ(removed[0].what, "stale X11 socket");
  EXPECT_FALSE(exists(x11_socket_path()));
}

TEST_F(StaleArtifactCleanerTest, KeepsAnX11SocketWithALiveListener) {
  UniqueFd listener = make_socket(x11_socket_path(), true, 4322);
  ASSERT_TRUE(listener);
  EXPECT_TRUE(clean().empty());
  EXPECT_TRUE(exists(x11_socket_path()));
  EXPECT_TRUE(connectable(x11_socket_path()));
}

TEST_F(StaleArtifactCleanerTest, RemovesStaleXpraSocketsInTheSharedAndTheUserDir) {
  make_socket(shared_xpra_path(), false, 4323);
  make_socket(user_xpra_path(), false, 4001);
  const auto removed = clean();
  ASSERT_EQ(removed.size(), 2u);
  std::map<std::string, uid_t> owners;
  for (const auto& r : removed) {
    owners[r.path] = r.owner;
    EXPECT_EQ(r.what, "stale xpra socket");
  }
  EXPECT_EQ(owners, (std::map<std::string, uid_t>{{shared_xpra_path(), 4323}, {user_xpra_path(), 4001}}));
  EXPECT_FALSE(exists(shared_xpra_path()));
  EXPECT_FALSE(exists(user_xpra_path()));
}

TEST_F(StaleArtifactCleanerTest, KeepsLiveXpraSockets) {
  UniqueFd shared = make_socket(shared_xpra_path(), true, 4323);
  UniqueFd own = make_socket(user_xpra_path(), true, 4001);
  EXPECT_TRUE(clean().empty());
  EXPECT_TRUE(connectable(shared_xpra_path()));
  EXPECT_TRUE(connectable(user_xpra_path()));
}

TEST_F(StaleArtifactCleanerTest, WithoutAUserDirOnlyTheSharedDirIsCleaned) {
  make_socket(shared_xpra_path(), false);
  make_socket(user_xpra_path(), false);
  EXPECT_EQ(paths(clean_without_user_dir()), std::set<std::string>{shared_xpra_path()});
  EXPECT_TRUE(exists(user_xpra_path()));
}

TEST_F(StaleArtifactCleanerTest, EverythingStaleAtOnceIsReportedWithOwnerPathAndAge) {
  write_lock(lock_path(), testing::dead_pid(), 5001);
  make_socket(x11_socket_path(), false, 5002);
  make_socket(shared_xpra_path(), false, 5003);
  make_socket(user_xpra_path(), false, 5004);
  for (const auto& p : {lock_path(), x11_socket_path(), shared_xpra_path(), user_xpra_path()}) make_old(p, 500);
  const auto removed = clean();
  std::map<std::string, RemovedArtifact> by_path;
  for (const auto& r : removed) by_path[r.path] = r;
  ASSERT_EQ(by_path.size(), 4u);
  EXPECT_EQ(by_path[lock_path()].owner, 5001u);
  EXPECT_EQ(by_path[x11_socket_path()].owner, 5002u);
  EXPECT_EQ(by_path[shared_xpra_path()].owner, 5003u);
  EXPECT_EQ(by_path[user_xpra_path()].owner, 5004u);
  for (const auto& [path, r] : by_path) {
    EXPECT_GE(r.age_seconds, 500) << path;
    EXPECT_FALSE(r.what.empty()) << path;
    EXPECT_FALSE(exists(path)) << path;
  }
  // Everything is gone: a second pass finds nothing.
  EXPECT_TRUE(clean().empty());
}

// ---- what must never be removed or followed -------------------------------

TEST_F(StaleArtifactCleanerTest, PlantedSymlinksAreRemovedWithoutTouchingTheirTargets) {
  // Targets an attacker would like removed or rewritten: a precious file, a
  // live socket, a directory.
  const std::string precious = elsewhere_ + "/precious";
  write_file(precious, "do not touch\n", 4001);
  ASSERT_EQ(::chmod(precious.c_str(), 0640), 0);
  struct stat before {};
  ASSERT_EQ(::lstat(precious.c_str(), &before), 0);
  const std::string live = elsewhere_ + "/live-socket";
  UniqueFd listener = make_socket(live, true);
  ASSERT_TRUE(listener);
  // A lock with a live pid: following the link would make the lock look live.
  const std::string live_lock = elsewhere_ + "/live-lock";
  write_lock(live_lock, ::getpid());

  ASSERT_EQ(::symlink(precious.c_str(), lock_path().c_str()), 0);
  ASSERT_EQ(::symlink(live.c_str(), x11_socket_path().c_str()), 0);
  ASSERT_EQ(::symlink(precious.c_str(), shared_xpra_path().c_str()), 0);
  ASSERT_EQ(::symlink(elsewhere_.c_str(), user_xpra_path().c_str()), 0);
  ASSERT_EQ(::lchown(lock_path().c_str(), 4321, 4321), 0);

  const auto removed = clean();
  EXPECT_EQ(paths(removed),
            (std::set<std::string>{lock_path(), x11_socket_path(), shared_xpra_path(), user_xpra_path()}));
  for (const auto& r : removed) {
    if (r.path == lock_path()) {
      EXPECT_EQ(r.owner, 4321u) << "the link's owner, not the target's";
    }
  }
  for (const auto& p : {lock_path(), x11_socket_path(), shared_xpra_path(), user_xpra_path()})
    EXPECT_FALSE(exists(p)) << p;

  struct stat after {};
  ASSERT_EQ(::lstat(precious.c_str(), &after), 0) << "the target itself was removed";
  EXPECT_EQ(after.st_ino, before.st_ino);
  EXPECT_EQ(after.st_mode, before.st_mode);
  EXPECT_EQ(after.st_uid, before.st_uid);
  EXPECT_EQ(after.st_size, before.st_size);
  EXPECT_EQ(read_file(precious), "do not touch\n");
  EXPECT_TRUE(connectable(live)) << "the live socket behind a link must survive";
  struct stat dir {};
  ASSERT_EQ(::lstat(elsewhere_.c_str(), &dir), 0);
  EXPECT_TRUE(S_ISDIR(dir.st_mode));

  // A link to a live lock at the lock path: the link goes, the lock stays.
  ASSERT_EQ(::symlink(live_lock.c_str(), lock_path().c_str()), 0);
  EXPECT_EQ(paths(clean()), std::set<std::string>{lock_path()});
  EXPECT_TRUE(exists(live_lock));
}

TEST_F(StaleArtifactCleanerTest, DanglingSymlinksAreRemoved) {
  const std::string nowhere = elsewhere_ + "/does-not-exist";
  for (const auto& p : {lock_path(), x11_socket_path(), shared_xpra_path(), user_xpra_path()})
    ASSERT_EQ(::symlink(nowhere.c_str(), p.c_str()), 0) << p;
  EXPECT_EQ(paths(clean()).size(), 4u);
  EXPECT_FALSE(exists(nowhere)) << "nothing may be created through a link";
}

TEST_F(StaleArtifactCleanerTest, PlantedFilesAndFifosWhereSocketsGoAreRemoved) {
  write_file(x11_socket_path(), "not a socket");
  ASSERT_EQ(::mkfifo(shared_xpra_path().c_str(), 0600), 0);
  ASSERT_EQ(::mkfifo(lock_path().c_str(), 0600), 0);  // opening it would block a naive reader
  EXPECT_EQ(paths(clean()), (std::set<std::string>{x11_socket_path(), shared_xpra_path(), lock_path()}));
}

TEST_F(StaleArtifactCleanerTest, NeverRemovesADirectory) {
  const std::vector<std::string> dirs = {lock_path(), x11_socket_path(), shared_xpra_path(), user_xpra_path()};
  for (const auto& d : dirs) {
    ASSERT_EQ(::mkdir(d.c_str(), 0755), 0) << d;
    write_file(d + "/inside", "content");  // non-empty, and also empty below
  }
  EXPECT_TRUE(clean().empty());
  for (const auto& d : dirs) {
    EXPECT_TRUE(exists(d)) << d;
    EXPECT_TRUE(exists(d + "/inside")) << d;
    ASSERT_EQ(::unlink((d + "/inside").c_str()), 0);
    make_old(d, 3600);
  }
  EXPECT_TRUE(clean().empty()) << "empty and old directories are not artifacts either";
  for (const auto& d : dirs) EXPECT_TRUE(exists(d)) << d;
}

TEST_F(StaleArtifactCleanerTest, MissingDirectoriesAreNotAnError) {
  StaleArtifactCleaner cleaner(tmp_.path() + "/no-such-tmp", tmp_.path() + "/no-such-run", kHost);
  EXPECT_TRUE(cleaner.clean_display(kDisplay, tmp_.path() + "/no-such-user").empty());
  // A symlink where the user dir should be is not followed either.
  const std::string linked_dir = tmp_.path() + "/linked-user-dir";
  ASSERT_EQ(::symlink(elsewhere_.c_str(), linked_dir.c_str()), 0);
  make_socket(elsewhere_ + "/" + kHost + "-7", false);
  EXPECT_TRUE(clean(kDisplay, linked_dir).empty());
  EXPECT_TRUE(exists(elsewhere_ + "/" + kHost + "-7")) << "cleaning went through a symlinked directory";
}

TEST_F(StaleArtifactCleanerTest, DisplayNumbersAtTheEdges) {
  const pid_t dead = testing::dead_pid();
  for (std::uint32_t d : {0u, 1u, 65535u, 4294967295u}) {
    SCOPED_TRACE(d);
    write_lock(lock_path(d), dead);
    make_socket(x11_socket_path(d), false);
    EXPECT_EQ(paths(clean(d)), (std::set<std::string>{lock_path(d), x11_socket_path(d)}));
  }
}

// ---- the shared socket dirs of the host's Xpra config -------------------------

class SharedXpraDirCleanerTest : public StaleArtifactCleanerTest {
 protected:
  void SetUp() override {
    StaleArtifactCleanerTest::SetUp();
    xpra_dir_ = tmp_.path() + "/xpra-shared";
    ASSERT_EQ(::mkdir(xpra_dir_.c_str(), 0755), 0);
    ASSERT_EQ(::chmod(xpra_dir_.c_str(), 01777), 0);  // like /tmp
  }
  std::vector<RemovedArtifact> clean_xpra(const std::string& dir, std::uint32_t display = kDisplay) {
    auto dirs = std::make_shared<XpraSharedDirs>(std::vector<XpraSharedDirs::Spec>{{dir, "test config"}}, ::geteuid());
    StaleArtifactCleaner cleaner(x11_dir_, runtime_dir_, kHost, dirs);
    return cleaner.clean_display(display, "");
  }
  std::vector<RemovedArtifact> clean_xpra() { return clean_xpra(xpra_dir_); }
  std::string xpra_path(std::uint32_t display = kDisplay) const {
    return xpra_dir_ + "/" + kHost + "-" + std::to_string(display);
  }
  std::string xpra_dir_;
};

TEST_F(SharedXpraDirCleanerTest, RemovesAnotherUsersDeadSocketAndSaysWhoseAndHowOld) {
  make_socket(xpra_path(), false, 4321);
  ASSERT_EQ(::chmod(xpra_path().c_str(), 0755), 0);  // as bob's in the incident: inaccessible to others
  make_old(xpra_path(), 3600);
  const auto removed = clean_xpra();
  ASSERT_EQ(removed.size(), 1u);
  EXPECT_EQ(removed[0].path, xpra_path());
  EXPECT_EQ(removed[0].owner, 4321u);
  EXPECT_GE(removed[0].age_seconds, 3600);
  EXPECT_EQ(removed[0].what, "stale xpra socket");
  EXPECT_FALSE(exists(xpra_path()));
}

TEST_F(SharedXpraDirCleanerTest, KeepsLiveSocketsAndOtherDisplays) {
  UniqueFd live = make_socket(xpra_path(), true, 4321);
  make_socket(xpra_path(8), false, 4321);
  make_socket(xpra_dir_ + "/otherhost-7", false, 4321);
  EXPECT_TRUE(clean_xpra().empty());
  EXPECT_TRUE(connectable(xpra_path()));
  EXPECT_TRUE(exists(xpra_path(8)));
  EXPECT_TRUE(exists(xpra_dir_ + "/otherhost-7"));
}

TEST_F(SharedXpraDirCleanerTest, NeverRemovesWhatIsNotASocket) {
  // Planted by a user: not a leftover of Xpra's. The number is skipped
  // instead (display_verdict), the entry and its target stay.
  UniqueFd target = make_socket(elsewhere_ + "/target", true);
  auto kinds = std::vector<std::function<void()>>{
      [&] { write_file(xpra_path(), "planted", 4321); },
      [&] { ASSERT_EQ(::symlink((elsewhere_ + "/target").c_str(), xpra_path().c_str()), 0); },
      [&] { ASSERT_EQ(::symlink("/nonexistent", xpra_path().c_str()), 0); },
      [&] { ASSERT_EQ(::mkfifo(xpra_path().c_str(), 0644), 0); },
      [&] { ASSERT_EQ(::mkdir(xpra_path().c_str(), 0755), 0); },
  };
  for (std::size_t i = 0; i < kinds.size(); ++i) {
    SCOPED_TRACE("kind " + std::to_string(i));
    kinds[i]();
    EXPECT_TRUE(clean_xpra().empty());
    EXPECT_TRUE(exists(xpra_path()));
    ASSERT_EQ(::remove(xpra_path().c_str()), 0);
  }
  EXPECT_TRUE(connectable(elsewhere_ + "/target"));
}

TEST_F(SharedXpraDirCleanerTest, NothingIsRemovedFromADirectoryOthersCouldSwapEntriesIn) {
  struct Case {
    uid_t owner;
    mode_t mode;
  };
  for (const Case c : {Case{4321, 01777}, Case{4321, 0755}, Case{0, 0777}, Case{0, 0775}}) {
    SCOPED_TRACE("owner " + std::to_string(c.owner) + " mode " + std::to_string(c.mode));
    ASSERT_EQ(::chown(xpra_dir_.c_str(), c.owner, c.owner), 0);
    ASSERT_EQ(::chmod(xpra_dir_.c_str(), c.mode), 0);
    make_socket(xpra_path(), false, 4322);
    EXPECT_TRUE(clean_xpra().empty());
    EXPECT_TRUE(exists(xpra_path()));
    ASSERT_EQ(::unlink(xpra_path().c_str()), 0);
  }
  // Root's again, and writable by root alone: cleaned.
  ASSERT_EQ(::chown(xpra_dir_.c_str(), 0, 0), 0);
  ASSERT_EQ(::chmod(xpra_dir_.c_str(), 0755), 0);
  make_socket(xpra_path(), false, 4322);
  EXPECT_EQ(paths(clean_xpra()), std::set<std::string>{xpra_path()});
}

TEST_F(SharedXpraDirCleanerTest, ADirectoryNamedThroughAUsersLinkIsNotEntered) {
  // The configured name is a link a user made (say the first to claim the
  // name in /tmp): the broker neither reads nor cleans behind it.
  make_socket(xpra_path(), false, 4321);
  const std::string link = tmp_.path() + "/configured-name";
  ASSERT_EQ(::symlink(xpra_dir_.c_str(), link.c_str()), 0);
  ASSERT_EQ(::lchown(link.c_str(), 4321, 4321), 0);
  EXPECT_TRUE(clean_xpra(link).empty());
  EXPECT_TRUE(exists(xpra_path()));
  // Root's own link in root's directory is followed (as /var/run -> /run).
  ASSERT_EQ(::lchown(link.c_str(), 0, 0), 0);
  EXPECT_EQ(clean_xpra(link).size(), 1u);
  EXPECT_FALSE(exists(xpra_path()));
}

TEST_F(SharedXpraDirCleanerTest, AMissingDirectoryIsNotAnError) {
  EXPECT_TRUE(clean_xpra(tmp_.path() + "/not-there").empty());
}


// ---- Xpra 5.x/6.x session dirs in the X tmp dir ("<tmp>/N", "<tmp>/xpra/N") ----

class XpraSessionDirCleanerTest : public StaleArtifactCleanerTest {
 protected:
  std::string session_dir(std::uint32_t display = kDisplay) const { return x11_dir_ + "/" + std::to_string(display); }
  std::string xpra_session_dir(std::uint32_t display = kDisplay) const {
    return x11_dir_ + "/xpra/" + std::to_string(display);
  }
  // What a SIGKILLed 5.x/6.x session leaves: its files, a socket, its ssh/
  // subdir, all its owner's and closed to others (0750, as Xpra makes it).
  static void make_session_dir(const std::string& path, uid_t owner) {
    ASSERT_EQ(::mkdir(path.c_str(), 0750), 0) << path;
    ASSERT_EQ(::chown(path.c_str(), owner, owner), 0);
    for (const char* f : {"server.pid", "xvfb.pid", "dbus.pid", "xauthority", "server.log", "cmdline"})
      write_file(path + "/" + f, "1\n", owner);
    make_socket(path + "/socket", false, owner);
    ASSERT_EQ(::mkdir((path + "/ssh").c_str(), 0700), 0);
    ASSERT_EQ(::chown((path + "/ssh").c_str(), owner, owner), 0);
    write_file(path + "/ssh/agent.default", "", owner);
  }
  // The broker runs without CAP_DAC_OVERRIDE / CAP_DAC_READ_SEARCH (only
  // CAP_CHOWN, CAP_FOWNER, CAP_KILL): so does the cleaner here.
  std::vector<RemovedArtifact> clean_as_broker(std::uint32_t display = kDisplay, bool with_user_dir = false) {
    cap_t caps = cap_get_proc();
    const cap_value_t dac[] = {CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH};
    cap_set_flag(caps, CAP_EFFECTIVE, 2, dac, CAP_CLEAR);
    EXPECT_EQ(cap_set_proc(caps), 0);
    cap_free(caps);
    auto removed = with_user_dir ? clean(display) : clean_without_user_dir(display);
    EXPECT_TRUE(testing::restore_effective_capabilities());
    return removed;
  }
  // The user's own dir as the broker makes it: hers, group-writable for
  // the broker's group (here: root's), closed to others.
  void make_user_dir_hers(uid_t owner) {
    ASSERT_EQ(::chown(user_dir_.c_str(), owner, 0), 0);
    ASSERT_EQ(::chmod(user_dir_.c_str(), 0770), 0);
  }
  std::string own_session_dir(std::uint32_t display = kDisplay) const {
    return user_dir_ + "/" + std::to_string(display);
  }
};

TEST_F(XpraSessionDirCleanerTest, RemovesAnotherUsersLeftoverInTmpAndTmpXpraWithEverythingInIt) {
  make_session_dir(session_dir(), 4321);
  // "<tmp>/xpra" root's and sticky (as an admin would make it shared).
  ASSERT_EQ(::mkdir((x11_dir_ + "/xpra").c_str(), 01777), 0);
  ASSERT_EQ(::chmod((x11_dir_ + "/xpra").c_str(), 01777), 0);
  make_session_dir(xpra_session_dir(), 4322);
  make_old(session_dir(), 600);
  const auto removed = clean_as_broker();
  EXPECT_EQ(paths(removed), (std::set<std::string>{session_dir(), xpra_session_dir()}));
  for (const auto& r : removed) {
    EXPECT_EQ(r.what, "stale xpra session dir");
    EXPECT_EQ(r.owner, r.path == session_dir() ? 4321u : 4322u);
  }
  EXPECT_FALSE(exists(session_dir()));
  EXPECT_FALSE(exists(xpra_session_dir()));
  EXPECT_TRUE(exists(x11_dir_ + "/xpra"));
}

TEST_F(XpraSessionDirCleanerTest, OnlyTheGivenDisplaysDirIsTouched) {
  make_session_dir(session_dir(8), 4321);
  make_session_dir(session_dir(), 4321);
  EXPECT_EQ(paths(clean_as_broker()), std::set<std::string>{session_dir()});
  EXPECT_TRUE(exists(session_dir(8) + "/server.pid"));
}

TEST_F(XpraSessionDirCleanerTest, KeepsTheDirOfAnOwnerWhoRunsAnXServerForTheDisplay) {
  // Root's dir, and a stand-in X server of root's for :7 (a script named Xvfb).
  make_session_dir(session_dir(), 0);
  testing::ScopedChild server = spawn_stand_in("Xvfb", ":7");
  ASSERT_FALSE(HasFailure());
  EXPECT_TRUE(clean_as_broker().empty());
  EXPECT_TRUE(exists(session_dir() + "/server.pid"));
  // The same server serves :7 only: another number's dir is stale.
  make_session_dir(session_dir(8), 0);
  EXPECT_EQ(paths(clean_as_broker(8)), std::set<std::string>{session_dir(8)});
}

TEST_F(XpraSessionDirCleanerTest, KeepsTheDirOfAnOwnerWhoRunsAnXpraForTheDisplay) {
  make_session_dir(session_dir(), 0);
  testing::ScopedChild server = spawn_stand_in("xpra", "start :7 --daemon=no");
  ASSERT_FALSE(HasFailure());
  EXPECT_TRUE(clean_as_broker().empty());
  EXPECT_TRUE(exists(session_dir() + "/server.pid"));
}

// exec --xpra gives 5.x/6.x --sessions-dir=<the user's dir>: a killed
// session leaves "<user dir>/N" there, whose dead socket each later `xpra
// list` of hers re-probed for 10 s.
TEST_F(XpraSessionDirCleanerTest, AKilledSessionsDirInTheUsersOwnDirIsRemoved) {
  make_user_dir_hers(4001);
  make_session_dir(own_session_dir(), 4001);
  make_session_dir(own_session_dir(8), 4001);
  const auto removed = clean_as_broker(kDisplay, true);
  ASSERT_EQ(paths(removed), std::set<std::string>{own_session_dir()});
  EXPECT_EQ(removed[0].what, "stale xpra session dir");
  EXPECT_EQ(removed[0].owner, 4001u);
  EXPECT_FALSE(exists(own_session_dir()));
  EXPECT_TRUE(exists(own_session_dir(8) + "/server.pid")) << "another display's dir";
  EXPECT_TRUE(exists(user_dir_));
}

TEST_F(XpraSessionDirCleanerTest, TheUsersOwnSessionDirIsKeptWhileHerXpraServesTheDisplay) {
  // Root stands in for the user: the stand-in xpra runs as root.
  make_user_dir_hers(0);
  make_session_dir(own_session_dir(), 0);
  testing::ScopedChild server = spawn_stand_in("xpra", "start :7 --daemon=no");
  ASSERT_FALSE(HasFailure());
  EXPECT_TRUE(clean_as_broker(kDisplay, true).empty());
  EXPECT_TRUE(exists(own_session_dir() + "/socket"));
}

TEST_F(XpraSessionDirCleanerTest, WhatTheUserKeepsInHerOwnSessionDirIsGivenBackUnchanged) {
  make_user_dir_hers(4001);
  make_session_dir(own_session_dir(), 4001);
  write_file(own_session_dir() + "/notes.txt", "hers", 4001);
  EXPECT_TRUE(clean_as_broker(kDisplay, true).empty());
  struct stat st {};
  ASSERT_EQ(::lstat(own_session_dir().c_str(), &st), 0);
  EXPECT_EQ(st.st_uid, 4001u);
  EXPECT_EQ(st.st_mode & 07777, 0750u);
  EXPECT_EQ(read_file(own_session_dir() + "/notes.txt"), "hers");
}

TEST_F(XpraSessionDirCleanerTest, ADirHoldingWhatXpraDoesNotLeaveIsGivenBackUnchanged) {
  make_session_dir(session_dir(), 4321);
  write_file(session_dir() + "/thesis.tex", "years of work", 4321);
  ASSERT_EQ(::chmod(session_dir().c_str(), 0710), 0);
  EXPECT_TRUE(clean_as_broker().empty());
  struct stat st {};
  ASSERT_EQ(::lstat(session_dir().c_str(), &st), 0);
  EXPECT_EQ(st.st_uid, 4321u);
  EXPECT_EQ(st.st_gid, 4321u);
  EXPECT_EQ(st.st_mode & 07777, 0710u);
  EXPECT_EQ(read_file(session_dir() + "/thesis.tex"), "years of work");
  EXPECT_TRUE(exists(session_dir() + "/server.pid"));
}

TEST_F(XpraSessionDirCleanerTest, APlantedLinkOrFileUnderTheNameIsLeftAloneWithItsTarget) {
  make_session_dir(elsewhere_ + "/target", 4321);
  auto kinds = std::vector<std::function<void()>>{
      [&] { ASSERT_EQ(::symlink((elsewhere_ + "/target").c_str(), session_dir().c_str()), 0); },
      [&] { write_file(session_dir(), "planted", 4321); },
  };
  for (std::size_t i = 0; i < kinds.size(); ++i) {
    SCOPED_TRACE("kind " + std::to_string(i));
    kinds[i]();
    EXPECT_TRUE(clean_as_broker().empty());
    EXPECT_TRUE(exists(session_dir()));
    ASSERT_EQ(::unlink(session_dir().c_str()), 0);
  }
  EXPECT_TRUE(exists(elsewhere_ + "/target/server.pid"));
  // A link planted as "<tmp>/xpra" is not entered either.
  ASSERT_EQ(::symlink(elsewhere_.c_str(), (x11_dir_ + "/xpra").c_str()), 0);
  ASSERT_EQ(::rename((elsewhere_ + "/target").c_str(), (elsewhere_ + "/7").c_str()), 0);
  EXPECT_TRUE(clean_as_broker().empty());
  EXPECT_TRUE(exists(elsewhere_ + "/7/server.pid"));
}

TEST_F(XpraSessionDirCleanerTest, NothingIsRemovedInATmpXpraItsOwnerCouldSwapEntriesIn) {
  // A user's own "<tmp>/xpra" that others may write in: judged (the number
  // is skipped) but nothing removed, since its owner could rename entries.
  ASSERT_EQ(::mkdir((x11_dir_ + "/xpra").c_str(), 0777), 0);
  ASSERT_EQ(::chmod((x11_dir_ + "/xpra").c_str(), 0777), 0);
  ASSERT_EQ(::chown((x11_dir_ + "/xpra").c_str(), 4321, 4321), 0);
  make_session_dir(xpra_session_dir(), 4322);
  const int tmp = ::open(x11_dir_.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC);
  ASSERT_GE(tmp, 0);
  const auto judged = probe_xpra_session_dirs(tmp, x11_dir_, kDisplay);
  ::close(tmp);
  ASSERT_EQ(judged.size(), 1u);
  EXPECT_EQ(judge_xpra_session_dir(judged[0]), XpraSessionDirState::stale);
  EXPECT_TRUE(clean_as_broker().empty());
  EXPECT_TRUE(exists(xpra_session_dir() + "/server.pid"));
}

TEST_F(XpraSessionDirCleanerTest, AUsersPrivateTmpXpraIsNotLookedInto) {
  // As 5.x/6.x make it with XDG_RUNTIME_DIR=/tmp: only its owner's sessions
  // can use it, so what is in it fails nobody else's start.
  ASSERT_EQ(::mkdir((x11_dir_ + "/xpra").c_str(), 0700), 0);
  ASSERT_EQ(::chown((x11_dir_ + "/xpra").c_str(), 4321, 4321), 0);
  ASSERT_EQ(::mkdir(xpra_session_dir().c_str(), 0700), 0);
  ASSERT_EQ(::chown(xpra_session_dir().c_str(), 4321, 4321), 0);
  const int tmp = ::open(x11_dir_.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC);
  ASSERT_GE(tmp, 0);
  EXPECT_TRUE(probe_xpra_session_dirs(tmp, x11_dir_, kDisplay).empty());
  ::close(tmp);
  EXPECT_TRUE(clean_as_broker().empty());
  EXPECT_TRUE(exists(xpra_session_dir()));
}

TEST_F(XpraSessionDirCleanerTest, AnotherUsersDirectoryMovedInsideIsNotEmptied) {
  // The owner moved a directory of uid 4322's (from a world-writable dir on
  // the same filesystem) into its session dir's ssh/: not taken over.
  make_session_dir(session_dir(), 4321);
  const std::string victims = session_dir() + "/ssh/data";
  ASSERT_EQ(::mkdir(victims.c_str(), 0700), 0);
  ASSERT_EQ(::chown(victims.c_str(), 4322, 4322), 0);
  write_file(victims + "/work", "not the broker's to remove", 4322);
  EXPECT_TRUE(clean_as_broker().empty());
  struct stat st {};
  ASSERT_EQ(::lstat(victims.c_str(), &st), 0);
  EXPECT_EQ(st.st_uid, 4322u);
  EXPECT_EQ(read_file(victims + "/work"), "not the broker's to remove");
}

TEST_F(XpraSessionDirCleanerTest, WhatXpraLeavesIsKnownByName) {
  for (const char* f : {"socket", "server.pid", "xvfb.pid", "xauthority", "dbus.env", "server.log", "Xorg.log"})
    EXPECT_TRUE(is_xpra_session_entry(f, false)) << f;
  for (const char* d : {"ssh", "pulse", "tmp"}) EXPECT_TRUE(is_xpra_session_entry(d, true)) << d;
  EXPECT_FALSE(is_xpra_session_entry("ssh", false));
  EXPECT_FALSE(is_xpra_session_entry("socket", true));
  EXPECT_FALSE(is_xpra_session_entry("notes.txt", false));
  EXPECT_FALSE(is_xpra_session_entry("", false));
}

// ---- Session bus sockets in the tmp dir ("<tmp>/dbus-XXXXXXXXXX") ----------

class SessionBusSocketCleanerTest : public StaleArtifactCleanerTest {
 protected:
  std::string bus(const std::string& random) const { return x11_dir_ + "/dbus-" + random; }
  // As the broker runs: without CAP_DAC_OVERRIDE / CAP_DAC_READ_SEARCH.
  std::vector<RemovedArtifact> clean_buses(uid_t uid, std::time_t since) {
    cap_t caps = cap_get_proc();
    const cap_value_t dac[] = {CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH};
    cap_set_flag(caps, CAP_EFFECTIVE, 2, dac, CAP_CLEAR);
    EXPECT_EQ(cap_set_proc(caps), 0);
    cap_free(caps);
    StaleArtifactCleaner cleaner(x11_dir_, runtime_dir_, kHost);
    auto removed = cleaner.clean_session_bus_sockets(uid, since);
    EXPECT_TRUE(testing::restore_effective_capabilities());
    return removed;
  }
  const std::time_t lease_began_ = std::time(nullptr) - 60;
};

TEST_F(SessionBusSocketCleanerTest, RemovesTheUsersDeadBusSocketsBoundDuringHerLease) {
  make_socket(bus("KuSojvOt5B"), false, 4001);
  make_socket(bus("0123456789"), false, 4001);
  make_old(bus("0123456789"), 30);  // still inside the lease
  const auto removed = clean_buses(4001, lease_began_);
  EXPECT_EQ(paths(removed), (std::set<std::string>{bus("KuSojvOt5B"), bus("0123456789")}));
  for (const auto& r : removed) {
    EXPECT_EQ(r.owner, 4001u);
    EXPECT_EQ(r.what, "dead session bus socket");
  }
  EXPECT_FALSE(exists(bus("KuSojvOt5B")));
  EXPECT_FALSE(exists(bus("0123456789")));
}

TEST_F(SessionBusSocketCleanerTest, LiveBusesOlderOnesOtherUsersAndOtherFilesStay) {
  UniqueFd live = make_socket(bus("LiveBus001"), true, 4001);
  ASSERT_TRUE(live);
  make_socket(bus("BeforeLeas"), false, 4001);
  make_old(bus("BeforeLeas"), 3600);  // bound before her lease began
  make_socket(bus("BobsDeadB1"), false, 4002);
  make_socket(x11_dir_ + "/dbus-short", false, 4001);
  make_socket(x11_dir_ + "/dbus-ElevenChars", false, 4001);
  make_socket(x11_dir_ + "/dbus-bad_char_", false, 4001);
  make_socket(x11_dir_ + "/notdbus-0123456789", false, 4001);
  write_file(bus("PlainFile1"), "not a socket\n", 4001);
  ASSERT_EQ(::mkdir(bus("ADirectory").c_str(), 0700), 0);
  ASSERT_EQ(::chown(bus("ADirectory").c_str(), 4001, 4001), 0);
  // Her link to Bob's dead socket: neither the link nor its target goes.
  ASSERT_EQ(::symlink(bus("BobsDeadB1").c_str(), bus("LinkToBobs").c_str()), 0);
  ASSERT_EQ(::lchown(bus("LinkToBobs").c_str(), 4001, 4001), 0);

  EXPECT_TRUE(clean_buses(4001, lease_began_).empty());
  for (const auto& p : {bus("LiveBus001"), bus("BeforeLeas"), bus("BobsDeadB1"), x11_dir_ + "/dbus-short",
                        x11_dir_ + "/dbus-ElevenChars", x11_dir_ + "/dbus-bad_char_",
                        x11_dir_ + "/notdbus-0123456789", bus("PlainFile1"), bus("ADirectory"), bus("LinkToBobs")})
    EXPECT_TRUE(exists(p)) << p;
  EXPECT_TRUE(connectable(bus("LiveBus001")));
  // Bob's own lease end takes his.
  EXPECT_EQ(paths(clean_buses(4002, lease_began_)), std::set<std::string>{bus("BobsDeadB1")});
}

TEST_F(SessionBusSocketCleanerTest, AMissingTmpDirIsNotAnError) {
  StaleArtifactCleaner cleaner(tmp_.path() + "/not-there", runtime_dir_, kHost);
  EXPECT_TRUE(cleaner.clean_session_bus_sockets(4001, lease_began_).empty());
}

}  // namespace
}  // namespace xpra_broker
