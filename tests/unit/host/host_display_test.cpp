// host_display.h: the one rule for X lock files (judge_lock), the reaper's
// rule (lock_names_lease_x_server) for every combination of facts, and
// read_lock_at() on real files naming real processes; the rules for shared
// Xpra socket dirs (entries, when removal is allowed, opening the dir
// without a user's link) on every mode and on real links.
#include "host/host_display.h"
#include "host/process_inspector.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/capability.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <fstream>
#include <string>

#include "test_processes.h"
#include "test_support.h"
#include "unique_fd.h"

namespace xpra_broker {
namespace {

constexpr uid_t kBob = 1002;
constexpr uid_t kEve = 1003;

// A lock of bob's naming bob's running X server of the display: the real thing.
LockFacts real_lock() {
  LockFacts l;
  l.kind = FileKind::regular;
  l.owner = kBob;
  l.links = 1;
  l.age_seconds = 3600;
  l.pid = 4321;
  l.pid_alive = true;
  l.pid_known = true;
  l.pid_uid = kBob;
  l.pid_euid = kBob;
  l.pid_is_x_server = true;
  l.pid_serves_display = true;
  return l;
}

TEST(JudgeLockTest, TheRealThingIsLiveAndNamesTheLeasesXServer) {
  EXPECT_EQ(judge_lock(real_lock()), LockState::live);
  EXPECT_TRUE(lock_names_lease_x_server(real_lock(), kBob));
  EXPECT_FALSE(lock_names_lease_x_server(real_lock(), kEve)) << "never for another user's lease";
  EXPECT_EQ(judge_lock(LockFacts{}), LockState::absent);
}

TEST(JudgeLockTest, ForgeriesAreStaleAndNameNobody) {
  struct Case {
    const char* what;
    void (*change)(LockFacts&);
  } cases[] = {
      {"names pid 1 (init, root's)", [](LockFacts& l) { l.pid = 1, l.pid_uid = l.pid_euid = 0, l.pid_is_x_server = false; }},
      {"names a process of bob's that is no X server", [](LockFacts& l) { l.pid_is_x_server = false; }},
      // One process named like an X server, named by a lock for every
      // number: it serves at most one of them (issue 21).
      {"names bob's X server of another display", [](LockFacts& l) { l.pid_serves_display = false; }},
      {"eve's file naming bob's X server", [](LockFacts& l) { l.owner = kEve; }},
      {"a hard link (three names)", [](LockFacts& l) { l.links = 3; }},
      {"two links, long after an X server would have unlinked its temporary", [](LockFacts& l) { l.links = 2; }},
      {"the pid is dead", [](LockFacts& l) { l.pid_alive = false; }},
      {"a symlink", [](LockFacts& l) { l.kind = FileKind::other; }},
      {"garbage, old", [](LockFacts& l) { l.pid = 0; }},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.what);
    LockFacts l = real_lock();
    c.change(l);
    EXPECT_EQ(judge_lock(l), LockState::stale) << describe_lock(l);
    EXPECT_FALSE(lock_names_lease_x_server(l, kBob));
    EXPECT_FALSE(lock_names_lease_x_server(l, kEve));
  }
}

TEST(JudgeLockTest, WhatAnXServerLeavesWhileStartingIsNotJudgedStale) {
  LockFacts linking = real_lock();
  linking.links = 2;  // link() done, temporary not yet unlinked
  linking.age_seconds = 0;
  EXPECT_EQ(judge_lock(linking), LockState::live);
  EXPECT_FALSE(lock_names_lease_x_server(linking, kBob)) << "the reaper wants one link, always";
  LockFacts empty = real_lock();
  empty.pid = 0;
  empty.age_seconds = 1;
  EXPECT_EQ(judge_lock(empty), LockState::live) << "being written";
}

TEST(JudgeLockTest, ASetuidXServerOwnsItsLockThroughItsEffectiveUid) {
  LockFacts l = real_lock();
  l.owner = 0;  // Xorg.wrap: created as root, runs for bob
  l.pid_euid = 0;
  EXPECT_EQ(judge_lock(l), LockState::live);
  EXPECT_FALSE(lock_names_lease_x_server(l, kBob)) << "a root-owned lock is no evidence for bob's lease";
}

TEST(JudgeLockTest, ALivePidProcCannotDescribeIsNeitherRemovedNorSignalled) {
  LockFacts l = real_lock();
  l.pid_known = false;  // hidepid
  l.pid_is_x_server = false;
  l.pid_serves_display = false;
  EXPECT_EQ(judge_lock(l), LockState::live);
  EXPECT_FALSE(lock_names_lease_x_server(l, kBob));
}

TEST(JudgeLockTest, TheReaperWantsEveryPieceOfEvidence) {
  // Each field on its own breaks the evidence.
  for (int field = 0; field < 9; ++field) {
    LockFacts l = real_lock();
    switch (field) {
      case 0: l.kind = FileKind::other; break;
      case 1: l.links = 2; break;
      case 2: l.owner = kEve; break;
      case 3: l.pid = 1; break;
      case 4: l.pid_alive = false; break;
      case 5: l.pid_known = false; break;
      case 6: l.pid_uid = kEve; break;
      case 7: l.pid_is_x_server = false; break;
      case 8: l.pid_serves_display = false; break;
    }
    EXPECT_FALSE(lock_names_lease_x_server(l, kBob)) << "field " << field;
  }
}

TEST(SocketFileRuleTest, OnlyASocketSomebodyListensOnIsNotStale) {
  SocketFileFacts s;
  EXPECT_FALSE(socket_file_is_stale(s)) << "absent";
  s.kind = FileKind::socket;
  EXPECT_TRUE(socket_file_is_stale(s));
  s.listening = true;
  EXPECT_FALSE(socket_file_is_stale(s));
  s.kind = FileKind::regular;
  EXPECT_TRUE(socket_file_is_stale(s)) << "a planted file where a socket belongs";
}

TEST(DisplayNamesTest, NamesAsXAndXpraWriteThem) {
  const DisplayNames n(105, "/tmp", "host.example");
  EXPECT_EQ(n.lock, ".X105-lock");
  EXPECT_EQ(n.x11_dir, ".X11-unix");
  EXPECT_EQ(n.x11_socket, "X105");
  EXPECT_EQ(n.x11_abstract, "/tmp/.X11-unix/X105");
  EXPECT_EQ(n.xpra_abstract, "xpra/105");
  EXPECT_EQ(n.xpra_socket, "host.example-105");
  EXPECT_EQ(n.display_argument, ":105");
}

// ---- shared Xpra socket dirs --------------------------------------------------

TEST(SharedXpraEntryTest, OnlyAStaleSocketIsALeftoverAndOnlyAListenerIsLive) {
  SocketFileFacts e;
  EXPECT_EQ(judge_shared_xpra_entry(e), SharedXpraEntry::absent);
  e.kind = FileKind::socket;
  EXPECT_EQ(judge_shared_xpra_entry(e), SharedXpraEntry::stale);
  e.listening = true;
  EXPECT_EQ(judge_shared_xpra_entry(e), SharedXpraEntry::live);
  for (FileKind planted : {FileKind::regular, FileKind::other}) {
    e.kind = planted;
    e.listening = false;
    EXPECT_EQ(judge_shared_xpra_entry(e), SharedXpraEntry::planted) << "never removed, unlike in the broker's own dirs";
  }
}

constexpr uid_t kBroker = 998;

TEST(SharedDirTrustTest, EveryModeOfARootDirectory) {
  // Allowed exactly when nobody but root may write it, or it is sticky.
  for (mode_t bits = 0; bits <= 07777; ++bits) {
    const bool allowed = (bits & S_ISVTX) || !(bits & (S_IWGRP | S_IWOTH));
    EXPECT_EQ(!shared_dir_refuses_removal(0, S_IFDIR | bits, kBroker), allowed) << std::oct << bits;
    EXPECT_EQ(!shared_dir_refuses_removal(kBroker, S_IFDIR | bits, kBroker), allowed) << "the broker's own, "
                                                                                        << std::oct << bits;
  }
}

TEST(SharedDirTrustTest, AnotherOwnerCanSwapEntriesWhateverTheMode) {
  for (mode_t bits : {01777, 01775, 0755, 0700, 01700})
    for (uid_t owner : {kBob, kEve, kBroker + 1}) {
      const auto why = shared_dir_refuses_removal(owner, S_IFDIR | bits, kBroker);
      ASSERT_TRUE(why) << owner << " " << std::oct << bits;
      EXPECT_TRUE(testing::Contains(*why, "owned by uid " + std::to_string(owner)));
    }
}

TEST(SharedDirTrustTest, WhatIsRefusedSaysWhy) {
  const auto group_writable = shared_dir_refuses_removal(0, S_IFDIR | 0775, kBroker);
  ASSERT_TRUE(group_writable);
  EXPECT_TRUE(testing::Contains(*group_writable, "0775"));
  EXPECT_TRUE(testing::Contains(*group_writable, "sticky"));
  for (mode_t type : {S_IFREG, S_IFLNK, S_IFSOCK, S_IFIFO}) EXPECT_TRUE(shared_dir_refuses_removal(0, type | 01777, 0));
}

class OpenDirWithoutUserLinksTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_EQ(::geteuid(), 0u) << "links are handed to other uids: run as root, as CI does";
    ASSERT_TRUE(testing::restore_effective_capabilities());
    root_ = tmp_.path();  // root's, 0700: a link of root's here no user could have made
    mkdir(root_ + "/real", 0755);
    mkdir(root_ + "/real/inner", 0755);
    mkdir(root_ + "/sticky", 01777);
  }
  static void mkdir(const std::string& path, mode_t mode) {
    ASSERT_EQ(::mkdir(path.c_str(), mode), 0) << path;
    ASSERT_EQ(::chmod(path.c_str(), mode), 0) << path;
  }
  static void symlink(const std::string& target, const std::string& at, uid_t owner = 0) {
    ASSERT_EQ(::symlink(target.c_str(), at.c_str()), 0) << at;
    ASSERT_EQ(::lchown(at.c_str(), owner, owner), 0) << at;
  }
  // Opens `path`; on success checks it is the very directory `expect`.
  ::testing::AssertionResult opens_as(const std::string& path, const std::string& expect) {
    std::string why;
    UniqueFd fd = open_dir_without_user_links(path, why);
    if (!fd) return ::testing::AssertionFailure() << path << " refused: " << why;
    struct stat got {}, want {};
    if (::fstat(fd.get(), &got) != 0 || ::stat(expect.c_str(), &want) != 0 || got.st_ino != want.st_ino ||
        got.st_dev != want.st_dev)
      return ::testing::AssertionFailure() << path << " opened another directory than " << expect;
    return ::testing::AssertionSuccess();
  }
  std::string refusal(const std::string& path, int expected_errno) {
    std::string why;
    errno = 0;
    UniqueFd fd = open_dir_without_user_links(path, why);
    EXPECT_FALSE(fd) << path;
    EXPECT_EQ(errno, expected_errno) << path << ": " << why;
    EXPECT_FALSE(why.empty());
    return why;
  }
  testing::TempDir tmp_;
  std::string root_;
};

TEST_F(OpenDirWithoutUserLinksTest, PlainDirectories) {
  EXPECT_TRUE(opens_as(root_ + "/real", root_ + "/real"));
  EXPECT_TRUE(opens_as(root_ + "//real/./inner/", root_ + "/real/inner"));
  EXPECT_TRUE(opens_as(root_ + "/real/inner/..", root_ + "/real"));
  EXPECT_TRUE(opens_as("/", "/"));
}

TEST_F(OpenDirWithoutUserLinksTest, MissingRelativeAndNonDirectories) {
  refusal(root_ + "/absent", ENOENT);
  refusal(root_ + "/absent/deeper", ENOENT);
  refusal("real", EINVAL);
  std::ofstream(root_ + "/file") << "x";
  refusal(root_ + "/file", ENOTDIR);
  refusal(root_ + "/file/x", ENOTDIR);
}

TEST_F(OpenDirWithoutUserLinksTest, ALinkOfRootsInADirectoryOnlyRootWritesIsFollowed) {
  // As /var/run -> /run: root's link in root's 0755 /var.
  symlink(root_ + "/real", root_ + "/absolute-link");
  symlink("real/inner", root_ + "/relative-link");
  EXPECT_TRUE(opens_as(root_ + "/absolute-link", root_ + "/real"));
  EXPECT_TRUE(opens_as(root_ + "/absolute-link/inner", root_ + "/real/inner"));
  EXPECT_TRUE(opens_as(root_ + "/relative-link", root_ + "/real/inner"));
  EXPECT_TRUE(opens_as(root_ + "/relative-link/..", root_ + "/real")) << "'..' of the link's target, as the kernel";
  EXPECT_TRUE(opens_as("/var/run", "/run")) << "the real one";
}

TEST_F(OpenDirWithoutUserLinksTest, ALinkAUserCouldHavePlantedIsNotFollowed) {
  // A user's own link (e.g. the shared dir's name in /tmp taken first).
  symlink(root_ + "/real", root_ + "/users-link", kBob);
  EXPECT_TRUE(testing::Contains(refusal(root_ + "/users-link", ELOOP), "another user could have planted"));
  refusal(root_ + "/users-link/inner", ELOOP);
  // Root's link, but in a directory everybody writes: it may have been
  // swapped in by renaming.
  symlink(root_ + "/real", root_ + "/sticky/roots-link");
  refusal(root_ + "/sticky/roots-link", ELOOP);
  // Root's link in a group-writable directory.
  mkdir(root_ + "/group", 0775);
  symlink(root_ + "/real", root_ + "/group/roots-link");
  refusal(root_ + "/group/roots-link", ELOOP);
  // Dangling and looping links of root's.
  symlink(root_ + "/absent", root_ + "/dangling");
  refusal(root_ + "/dangling", ENOENT);
  symlink(root_ + "/loop-b", root_ + "/loop-a");
  symlink(root_ + "/loop-a", root_ + "/loop-b");
  refusal(root_ + "/loop-a", ELOOP);
}

// When connect() is refused (EACCES: another user's 0600 socket, as the
// broker, without CAP_DAC_OVERRIDE, meets Xpra's), /proc/net/unix decides by
// the path the listener bound. In a shared Xpra dir that path may be spelled
// another way than the broker's (a link, "//"): by name, it still counts.
TEST(ListenerFallbackTest, AListenerBoundThroughAnotherSpellingOfASharedDirStillCounts) {
  ASSERT_EQ(::geteuid(), 0u) << "the socket is handed to another uid: run as root, as CI does";
  ASSERT_TRUE(testing::restore_effective_capabilities());
  testing::TempDir tmp;
  const std::string real = tmp.path() + "/real", link = tmp.path() + "/link";
  ASSERT_EQ(::mkdir(real.c_str(), 0755), 0);
  ASSERT_EQ(::symlink(real.c_str(), link.c_str()), 0);
  const std::string name = "fallback-host-77";
  UniqueFd listener(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::snprintf(addr.sun_path, sizeof(addr.sun_path), "%s", (link + "/" + name).c_str());
  ASSERT_EQ(::bind(listener.get(), reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
  ASSERT_EQ(::listen(listener.get(), 4), 0);
  ASSERT_EQ(::chown((real + "/" + name).c_str(), 4321, 4321), 0);
  ASSERT_EQ(::chmod((real + "/" + name).c_str(), 0600), 0);
  UniqueFd entry(::open((real + "/" + name).c_str(), O_PATH | O_NOFOLLOW | O_CLOEXEC));
  ASSERT_TRUE(entry);

  cap_t caps = cap_get_proc();
  ASSERT_NE(caps, nullptr);
  const cap_value_t dac[] = {CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH};
  ASSERT_EQ(cap_set_flag(caps, CAP_EFFECTIVE, 2, dac, CAP_CLEAR), 0);
  ASSERT_EQ(cap_set_proc(caps), 0);
  cap_free(caps);
  const bool by_path = socket_fd_has_listener(entry.get(), real + "/" + name, BoundPathMatch::exact_path);
  const bool by_name = socket_fd_has_listener(entry.get(), real + "/" + name, BoundPathMatch::name_in_any_dir);
  listener.reset();
  const bool after_close = socket_fd_has_listener(entry.get(), real + "/" + name, BoundPathMatch::name_in_any_dir);
  ASSERT_TRUE(testing::restore_effective_capabilities());
  EXPECT_FALSE(by_path) << "the broker's own spelling is not the one bound";
  EXPECT_TRUE(by_name);
  EXPECT_FALSE(after_close) << "no listener once it closed";
}

// ---- read_lock_at on real files and processes -------------------------------

class ReadLockTest : public ::testing::Test {
 protected:
  void SetUp() override { dir_ = UniqueFd(::open(tmp_.path().c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC)); }
  void write_lock(pid_t pid) {
    char text[16];
    std::snprintf(text, sizeof(text), "%10d\n", pid);
    std::ofstream(tmp_.path() + "/.X77-lock") << text;
  }
  testing::TempDir tmp_;
  UniqueFd dir_;
};

TEST_F(ReadLockTest, AStandInXServerOfTheDisplayIsBackedByTheHost) {
  // "Xvfb :77": a script named Xvfb has the command name Xvfb.
  const std::string xvfb = tmp_.path() + "/Xvfb";
  std::ofstream(xvfb) << "#!/bin/sh\nwhile :; do sleep 1; done\n";
  ASSERT_EQ(::chmod(xvfb.c_str(), 0755), 0);
  testing::ScopedChild server = testing::spawn_shell_group("exec " + xvfb + " :77");
  ASSERT_TRUE(server);
  ASSERT_TRUE(testing::eventually([&] {
    write_lock(server.pid());
    return read_lock_at(dir_.get(), ".X77-lock", 77).pid_is_x_server;
  }));
  const LockFacts l = read_lock_at(dir_.get(), ".X77-lock", 77);
  EXPECT_EQ(l.kind, FileKind::regular);
  EXPECT_EQ(l.links, 1u);
  EXPECT_EQ(l.owner, ::geteuid());
  EXPECT_EQ(l.pid, server.pid());
  EXPECT_TRUE(l.pid_alive && l.pid_known);
  EXPECT_EQ(l.pid_uid, ::getuid());
  EXPECT_TRUE(l.pid_serves_display);
  EXPECT_EQ(judge_lock(l), LockState::live);
  EXPECT_TRUE(lock_names_lease_x_server(l, ::getuid()));
  EXPECT_FALSE(read_lock_at(dir_.get(), ".X77-lock", 78).pid_serves_display) << "another display's number";
}

TEST(DisplayOfArgumentsTest, TheLastDisplayArgumentAfterTheProgramIsTheOneServed) {
  using Args = std::vector<std::string>;
  EXPECT_EQ(display_of_arguments(Args{"Xvfb", ":77", "-screen", "0", "1024x768x24"}), 77u);
  EXPECT_EQ(display_of_arguments(Args{"Xvfb", "+extension", "GLX", "-auth", "/x", ":0"}), 0u);
  // X takes the last one: a process listing a whole range serves one number.
  EXPECT_EQ(display_of_arguments(Args{"Xvfb", ":800", ":801", ":802"}), 802u);
  EXPECT_EQ(display_of_arguments(Args{":5"}), std::nullopt) << "argv[0] is the program";
  for (const char* not_a_display : {":", ":7a", "7", ":-1", ":99999999999", "unix/:7100", ":1.0"})
    EXPECT_EQ(display_of_arguments(Args{"Xvfb", not_a_display}), std::nullopt) << not_a_display;
  EXPECT_EQ(display_of_arguments(Args{}), std::nullopt);
}

TEST_F(ReadLockTest, ALockNamingThisTestProcessIsAForgery) {
  write_lock(::getpid());  // alive, ours, but no X server
  const LockFacts l = read_lock_at(dir_.get(), ".X77-lock", 77);
  EXPECT_TRUE(l.pid_alive && l.pid_known);
  EXPECT_FALSE(l.pid_is_x_server);
  EXPECT_EQ(judge_lock(l), LockState::stale);
  EXPECT_TRUE(testing::Contains(describe_lock(l), "not an X server"));
}

TEST_F(ReadLockTest, ASymlinkIsNotFollowed) {
  ASSERT_EQ(::symlink("/etc/passwd", (tmp_.path() + "/.X77-lock").c_str()), 0);
  const LockFacts l = read_lock_at(dir_.get(), ".X77-lock", 77);
  EXPECT_EQ(l.kind, FileKind::other);
  EXPECT_EQ(l.pid, 0);
  EXPECT_EQ(judge_lock(l), LockState::stale);
}

TEST_F(ReadLockTest, AHardLinkIsCounted) {
  write_lock(::getpid());
  ASSERT_EQ(::link((tmp_.path() + "/.X77-lock").c_str(), (tmp_.path() + "/other").c_str()), 0);
  EXPECT_EQ(read_lock_at(dir_.get(), ".X77-lock", 77).links, 2u);
}

}  // namespace
}  // namespace xpra_broker
