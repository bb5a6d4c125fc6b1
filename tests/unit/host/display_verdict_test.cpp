// display_verdict.h: classify_display() for each artifact on its own, then
// for every combination of them against a simple oracle.
#include "host/display_verdict.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "test_support.h"

namespace xpra_broker {
namespace {

using testing::Contains;

constexpr uid_t kBob = 1002;

SocketFileFacts socket_file(FileKind kind, bool listening, uid_t owner = kBob) {
  SocketFileFacts s;
  s.kind = kind;
  s.listening = listening;
  s.owner = owner;
  return s;
}

DisplayFacts nothing(std::uint32_t display = 7) {
  DisplayFacts f;
  f.display = display;
  f.lock.age_seconds = 3600;  // not one an X server is still writing
  f.lock.links = 1;
  return f;
}

// What read_lock_at() says of a real X server of `owner` behind the lock.
void backed_by_x_server(LockFacts& l, uid_t owner) {
  l.pid_alive = true;
  l.pid_known = true;
  l.pid_uid = l.pid_euid = owner;
  l.pid_is_x_server = true;
  l.pid_serves_display = true;
}

TEST(DisplayVerdictTest, NothingOnTheHostIsFree) {
  const auto v = classify_display(nothing());
  EXPECT_EQ(v.use, DisplayUse::free);
  EXPECT_TRUE(v.reason.empty());
  EXPECT_EQ(v.owner, 0u);
  EXPECT_EQ(v.pid, 0);
}

TEST(DisplayVerdictTest, LockWithLivePidIsLive) {
  auto f = nothing();
  f.lock.kind = FileKind::regular;
  f.lock.owner = kBob;
  f.lock.pid = 4321;
  backed_by_x_server(f.lock, kBob);
  const auto v = classify_display(f);
  EXPECT_EQ(v.use, DisplayUse::live);
  EXPECT_TRUE(Contains(v.reason, "X server running"));
  EXPECT_TRUE(Contains(v.reason, "4321"));
  EXPECT_EQ(v.owner, kBob);
  EXPECT_EQ(v.pid, 4321);
}

TEST(DisplayVerdictTest, LockWithDeadPidIsStale) {
  auto f = nothing();
  f.lock.kind = FileKind::regular;
  f.lock.owner = kBob;
  f.lock.pid = 4321;
  f.lock.pid_alive = false;
  const auto v = classify_display(f);
  EXPECT_EQ(v.use, DisplayUse::stale);
  EXPECT_TRUE(Contains(v.reason, "stale lock file"));
  EXPECT_TRUE(Contains(v.reason, "4321"));
  EXPECT_TRUE(Contains(v.reason, "dead"));
  EXPECT_EQ(v.owner, kBob);
  EXPECT_EQ(v.pid, 4321);
}

TEST(DisplayVerdictTest, UnreadableLockIsStaleNeverLive) {
  for (bool alive : {false, true}) {
    SCOPED_TRACE(alive ? "alive flag set" : "alive flag clear");
    auto f = nothing();
    f.lock.kind = FileKind::regular;
    f.lock.owner = kBob;
    f.lock.pid = 0;  // unreadable or not a number
    f.lock.pid_alive = alive;
    const auto v = classify_display(f);
    EXPECT_EQ(v.use, DisplayUse::stale);
    EXPECT_TRUE(Contains(v.reason, "unreadable lock file"));
    EXPECT_EQ(v.owner, kBob);
    EXPECT_EQ(v.pid, 0);
  }
}

TEST(DisplayVerdictTest, LockNamingALiveProcessThatIsNoXServerOfItsOwnerIsAForgery) {
  for (int how = 0; how < 2; ++how) {
    auto f = nothing();
    f.lock.kind = FileKind::regular;
    f.lock.owner = kBob;
    f.lock.pid = 1;
    backed_by_x_server(f.lock, kBob);
    if (how == 0) f.lock.pid_is_x_server = false;  // e.g. pid 1, a shell
    if (how == 1) f.lock.pid_uid = f.lock.pid_euid = 0;  // somebody else's X server
    const auto v = classify_display(f);
    EXPECT_EQ(v.use, DisplayUse::stale) << how;
    EXPECT_TRUE(Contains(v.reason, "forged lock file")) << v.reason;
  }
}

TEST(DisplayVerdictTest, YoungUnreadableLockIsBeingWritten) {
  auto f = nothing();
  f.lock.kind = FileKind::regular;
  f.lock.age_seconds = 2;
  EXPECT_EQ(classify_display(f).use, DisplayUse::live) << "an X server may be writing it; skip, do not remove";
}

TEST(DisplayVerdictTest, NegativeLockPidIsNotLive) {
  auto f = nothing();
  f.lock.kind = FileKind::regular;
  f.lock.pid = -1;
  f.lock.pid_alive = true;
  EXPECT_NE(classify_display(f).use, DisplayUse::live);
}

TEST(DisplayVerdictTest, LockPathThatIsNotARegularFileIsStale) {
  // A symlink (CVE-2011-4029 style), a directory, a socket where the lock goes.
  for (FileKind kind : {FileKind::other, FileKind::socket}) {
    auto f = nothing();
    f.lock.kind = kind;
    f.lock.owner = kBob;
    // Whatever pid was "read" through it must not make it live.
    f.lock.pid = 4321;
    f.lock.pid_alive = true;
    const auto v = classify_display(f);
    EXPECT_EQ(v.use, DisplayUse::stale);
    EXPECT_TRUE(Contains(v.reason, "not a regular file"));
    EXPECT_EQ(v.owner, kBob);
    EXPECT_EQ(v.pid, 0);
  }
}

TEST(DisplayVerdictTest, ListeningX11SocketIsLive) {
  auto f = nothing();
  f.x11_socket = socket_file(FileKind::socket, true);
  const auto v = classify_display(f);
  EXPECT_EQ(v.use, DisplayUse::live);
  EXPECT_TRUE(Contains(v.reason, "X11 socket has a listener"));
  EXPECT_EQ(v.owner, kBob);
}

TEST(DisplayVerdictTest, X11SocketWithoutListenerIsStale) {
  auto f = nothing();
  f.x11_socket = socket_file(FileKind::socket, false);
  const auto v = classify_display(f);
  EXPECT_EQ(v.use, DisplayUse::stale);
  EXPECT_TRUE(Contains(v.reason, "stale X11 socket"));
  EXPECT_EQ(v.owner, kBob);
}

TEST(DisplayVerdictTest, NonSocketAtTheX11SocketPathIsStale) {
  for (FileKind kind : {FileKind::regular, FileKind::other}) {
    for (bool listening : {false, true}) {
      auto f = nothing();
      f.x11_socket = socket_file(kind, listening);
      const auto v = classify_display(f);
      EXPECT_EQ(v.use, DisplayUse::stale);
      EXPECT_TRUE(Contains(v.reason, "not a socket"));
      EXPECT_EQ(v.owner, kBob);
    }
  }
}

TEST(DisplayVerdictTest, AbstractX11SocketInUseIsLive) {
  auto f = nothing();
  f.x11_abstract_in_use = true;
  const auto v = classify_display(f);
  EXPECT_EQ(v.use, DisplayUse::live);
  EXPECT_TRUE(Contains(v.reason, "abstract X11"));
}

TEST(DisplayVerdictTest, AnAbstractSocketsOwnerIsTheListenerTheKernelNames) {
  auto f = nothing();
  f.x11_abstract_in_use = true;
  EXPECT_FALSE(classify_display(f).owner_known) << "no sock_diag answer: unknown, not root";
  f.x11_abstract_owner = kBob;
  const auto v = classify_display(f);
  EXPECT_TRUE(v.owner_known);
  EXPECT_EQ(v.owner, kBob);
  auto x = nothing();
  x.xpra_abstract_in_use = true;
  x.xpra_abstract_owner = kBob;
  EXPECT_EQ(classify_display(x).owner, kBob);
}

TEST(ConflictEvidenceTest, AnAbstractListenerConfirmsAConflictOnlyWhenItIsAnotherUsers) {
  auto f = nothing();
  f.x11_abstract_in_use = true;
  const auto unknown = conflict_with_another_owner(f, 4001);
  ASSERT_TRUE(unknown);
  EXPECT_TRUE(unknown->owner_unknown) << "the caller then rules out the reporter's own X server";
  f.x11_abstract_owner = 4001;
  EXPECT_FALSE(conflict_with_another_owner(f, 4001)) << "the reporter's own listener";
  f.x11_abstract_owner = kBob;
  const auto other = conflict_with_another_owner(f, 4001);
  ASSERT_TRUE(other);
  EXPECT_FALSE(other->owner_unknown);
  EXPECT_TRUE(Contains(other->what, "uid " + std::to_string(kBob))) << other->what;
}

TEST(DisplayVerdictTest, AbstractXpraSocketInUseIsLive) {
  auto f = nothing();
  f.xpra_abstract_in_use = true;
  const auto v = classify_display(f);
  EXPECT_EQ(v.use, DisplayUse::live);
  EXPECT_TRUE(Contains(v.reason, "abstract xpra"));
}

TEST(DisplayVerdictTest, ListeningXpraSharedSocketIsLive) {
  auto f = nothing();
  f.xpra_shared_socket = socket_file(FileKind::socket, true);
  const auto v = classify_display(f);
  EXPECT_EQ(v.use, DisplayUse::live);
  EXPECT_TRUE(Contains(v.reason, "xpra socket has a listener"));
  EXPECT_EQ(v.owner, kBob);
}

TEST(DisplayVerdictTest, StaleXpraSharedSocketIsStale) {
  for (FileKind kind : {FileKind::socket, FileKind::regular, FileKind::other}) {
    auto f = nothing();
    f.xpra_shared_socket = socket_file(kind, false);
    const auto v = classify_display(f);
    EXPECT_EQ(v.use, DisplayUse::stale);
    EXPECT_TRUE(Contains(v.reason, "shared socket dir"));
    EXPECT_EQ(v.owner, kBob);
  }
}

TEST(DisplayVerdictTest, ListeningXpraSocketInTheCallersDirIsLive) {
  auto f = nothing();
  f.xpra_user_socket = socket_file(FileKind::socket, true, 1001);
  const auto v = classify_display(f);
  EXPECT_EQ(v.use, DisplayUse::live);
  EXPECT_EQ(v.owner, 1001u);
}

TEST(DisplayVerdictTest, StaleXpraSocketInTheCallersDirIsFree) {
  // Xpra finds its own dead socket and removes it: not a reason to skip.
  for (FileKind kind : {FileKind::socket, FileKind::regular, FileKind::other}) {
    auto f = nothing();
    f.xpra_user_socket = socket_file(kind, false, 1001);
    const auto v = classify_display(f);
    EXPECT_EQ(v.use, DisplayUse::free);
    EXPECT_TRUE(v.reason.empty());
  }
}

TEST(DisplayVerdictTest, LiveEvidenceWinsOverLeftovers) {
  // A dead lock, a stale socket and a stale shared xpra socket, but the X
  // server listens on the abstract socket: it is live.
  auto f = nothing();
  f.lock.kind = FileKind::regular;
  f.lock.pid = 99;
  f.lock.pid_alive = false;
  f.x11_socket = socket_file(FileKind::socket, false);
  f.xpra_shared_socket = socket_file(FileKind::socket, false);
  f.x11_abstract_in_use = true;
  const auto v = classify_display(f);
  EXPECT_EQ(v.use, DisplayUse::live);
  EXPECT_TRUE(Contains(v.reason, "abstract X11"));
}

TEST(DisplayVerdictTest, LiveLockIsReportedWithItsPidBeforeOtherEvidence) {
  auto f = nothing();
  f.lock.kind = FileKind::regular;
  f.lock.owner = kBob;
  f.lock.pid = 555;
  f.lock.pid_alive = true;
  f.x11_socket = socket_file(FileKind::socket, true, 1001);
  f.x11_abstract_in_use = true;
  const auto v = classify_display(f);
  EXPECT_EQ(v.use, DisplayUse::live);
  EXPECT_EQ(v.pid, 555);
  EXPECT_EQ(v.owner, kBob);
}

// ---- the shared socket dirs of the host's Xpra config ---------------------------

DisplayFacts with_xpra_dir_entry(FileKind kind, bool listening, uid_t owner = kBob) {
  DisplayFacts f = nothing();
  f.xpra_dir_entries.push_back({"/srv/xpra-shared", socket_file(kind, listening, owner)});
  return f;
}

TEST(DisplayVerdictTest, ListeningSocketInAnXpraConfigDirIsLive) {
  const auto v = classify_display(with_xpra_dir_entry(FileKind::socket, true));
  EXPECT_EQ(v.use, DisplayUse::live);
  EXPECT_TRUE(Contains(v.reason, "/srv/xpra-shared"));
  EXPECT_EQ(v.owner, kBob);
}

TEST(DisplayVerdictTest, DeadSocketInAnXpraConfigDirIsStaleEvenTheCallersOwn) {
  // Unlike the caller's own dir, Xpra refuses the number while it is there.
  for (uid_t owner : {kBob, uid_t{4001}}) {
    const auto v = classify_display(with_xpra_dir_entry(FileKind::socket, false, owner));
    EXPECT_EQ(v.use, DisplayUse::stale);
    EXPECT_TRUE(Contains(v.reason, "stale xpra socket in /srv/xpra-shared"));
    EXPECT_EQ(v.owner, owner);
  }
}

TEST(DisplayVerdictTest, NonSocketInAnXpraConfigDirIsStaleAndSaysItIsLeftAlone) {
  for (FileKind kind : {FileKind::regular, FileKind::other}) {
    const auto v = classify_display(with_xpra_dir_entry(kind, false));
    EXPECT_EQ(v.use, DisplayUse::stale);
    EXPECT_TRUE(Contains(v.reason, "left alone"));
  }
}

TEST(DisplayVerdictTest, AnyLiveEntryAmongSeveralXpraConfigDirsWins) {
  DisplayFacts f = with_xpra_dir_entry(FileKind::regular, false);
  f.xpra_dir_entries.push_back({"/tmp", socket_file(FileKind::socket, false)});
  f.xpra_dir_entries.push_back({"/run/shared", socket_file(FileKind::socket, true, 2002)});
  const auto v = classify_display(f);
  EXPECT_EQ(v.use, DisplayUse::live);
  EXPECT_TRUE(Contains(v.reason, "/run/shared"));
  EXPECT_EQ(v.owner, 2002u);
}

TEST(ConflictEvidenceTest, AnotherUsersEntryInAnXpraConfigDirConfirmsAConflict) {
  for (bool listening : {false, true}) {
    const auto e = conflict_with_another_owner(with_xpra_dir_entry(FileKind::socket, listening), 4001);
    ASSERT_TRUE(e);
    EXPECT_FALSE(e->owner_unknown);
    EXPECT_TRUE(Contains(e->what, "xpra socket of uid 1002 in xpra socket dir /srv/xpra-shared"));
  }
  const auto planted = conflict_with_another_owner(with_xpra_dir_entry(FileKind::regular, false), 4001);
  ASSERT_TRUE(planted);
  EXPECT_TRUE(Contains(planted->what, "non-socket of uid 1002"));
}

TEST(ConflictEvidenceTest, TheReportersOwnEntryConfirmsNothing) {
  EXPECT_FALSE(conflict_with_another_owner(with_xpra_dir_entry(FileKind::socket, true, 4001), 4001));
  EXPECT_FALSE(conflict_with_another_owner(nothing(), 4001));
}

// ---- Xpra 5.x/6.x session dirs ("<tmp>/N", "<tmp>/xpra/N") ----

XpraSessionDirFacts session_dir_facts(bool directory, bool owner_serves_display, uid_t owner = kBob,
                                      const std::string& path = "/tmp/7") {
  XpraSessionDirFacts d;
  d.path = path;
  d.directory = directory;
  d.owner_serves_display = owner_serves_display;
  d.owner = owner;
  return d;
}

DisplayFacts with_session_dir(XpraSessionDirFacts d) {
  DisplayFacts f = nothing();
  f.xpra_session_dirs.push_back(std::move(d));
  return f;
}

TEST(DisplayVerdictTest, ASessionDirWhoseOwnerRunsASessionOnTheNumberIsLive) {
  const auto v = classify_display(with_session_dir(session_dir_facts(true, true)));
  EXPECT_EQ(v.use, DisplayUse::live);
  EXPECT_EQ(v.owner, kBob);
  EXPECT_TRUE(Contains(v.reason, "xpra session dir /tmp/7 of a running session"));
}

TEST(DisplayVerdictTest, ASessionDirNobodyRunsASessionFromIsStaleAndNamesItsOwner) {
  const auto v = classify_display(with_session_dir(session_dir_facts(true, false, kBob, "/tmp/xpra/7")));
  EXPECT_EQ(v.use, DisplayUse::stale);
  EXPECT_EQ(v.owner, kBob);
  EXPECT_TRUE(Contains(v.reason, "stale xpra session dir /tmp/xpra/7"));
}

TEST(DisplayVerdictTest, SomethingElseUnderASessionDirsNameIsStaleAndLeftAlone) {
  // Only what the entry is counts: a file or link is never Xpra's, whoever
  // runs what.
  for (bool serves : {false, true}) {
    const auto v = classify_display(with_session_dir(session_dir_facts(false, serves)));
    EXPECT_EQ(v.use, DisplayUse::stale);
    EXPECT_TRUE(Contains(v.reason, "not a directory where xpra 5/6 put the display's session dir: /tmp/7"));
  }
}

TEST(ConflictEvidenceTest, AnotherUsersSessionDirConfirmsAConflictTheReportersOwnDoesNot) {
  const auto e = conflict_with_another_owner(with_session_dir(session_dir_facts(true, false)), 4001);
  ASSERT_TRUE(e);
  EXPECT_TRUE(Contains(e->what, "xpra session dir /tmp/7 of uid 1002"));
  EXPECT_FALSE(conflict_with_another_owner(with_session_dir(session_dir_facts(true, true, 4001)), 4001));
}

// Every combination of every artifact against the rule the header states:
// live if anything is in use; else stale if any leftover except one in the
// caller's own dir; else free.
TEST(DisplayVerdictTest, EveryCombinationMatchesTheRule) {
  enum class Lock { absent, live, dead, unreadable, odd };
  enum class Sock { absent, listening, stale, not_socket };
  const Lock locks[] = {Lock::absent, Lock::live, Lock::dead, Lock::unreadable, Lock::odd};
  const Sock socks[] = {Sock::absent, Sock::listening, Sock::stale, Sock::not_socket};
  auto apply = [](Sock s, uid_t owner) {
    switch (s) {
      case Sock::absent: return SocketFileFacts{};
      case Sock::listening: return socket_file(FileKind::socket, true, owner);
      case Sock::stale: return socket_file(FileKind::socket, false, owner);
      case Sock::not_socket: return socket_file(FileKind::regular, false, owner);
    }
    return SocketFileFacts{};
  };
  int combinations = 0;
  for (Lock lock : locks)
    for (Sock x11 : socks)
      for (bool x11_abstract : {false, true})
        for (bool xpra_abstract : {false, true})
          for (Sock shared : socks)
            for (Sock user : socks)
              for (Sock xpra_dir : socks)
              for (Sock session_dir : socks) {
              ++combinations;
              DisplayFacts f = nothing();
              f.lock.owner = 2001;
              switch (lock) {
                case Lock::absent: break;
                case Lock::live:
                  f.lock.kind = FileKind::regular, f.lock.pid = 10;
                  backed_by_x_server(f.lock, 2001);
                  break;
                case Lock::dead: f.lock.kind = FileKind::regular, f.lock.pid = 10; break;
                case Lock::unreadable: f.lock.kind = FileKind::regular; break;
                case Lock::odd: f.lock.kind = FileKind::other; break;
              }
              f.x11_socket = apply(x11, 2002);
              f.x11_abstract_in_use = x11_abstract;
              f.xpra_abstract_in_use = xpra_abstract;
              f.xpra_shared_socket = apply(shared, 2003);
              f.xpra_user_socket = apply(user, 2004);
              if (xpra_dir != Sock::absent) f.xpra_dir_entries.push_back({"/srv/shared", apply(xpra_dir, 2005)});
              // The session dir's states: listening = its owner runs a
              // session on N, stale = nobody does, not_socket = not a dir.
              if (session_dir != Sock::absent)
                f.xpra_session_dirs.push_back(session_dir_facts(session_dir != Sock::not_socket,
                                                                session_dir == Sock::listening, 2006));

              const bool live = lock == Lock::live || x11 == Sock::listening || x11_abstract || xpra_abstract ||
                                shared == Sock::listening || user == Sock::listening || xpra_dir == Sock::listening ||
                                session_dir == Sock::listening;
              const bool leftovers = lock != Lock::absent || x11 != Sock::absent || shared != Sock::absent ||
                                     xpra_dir != Sock::absent || session_dir != Sock::absent;
              const DisplayUse expected = live ? DisplayUse::live : leftovers ? DisplayUse::stale : DisplayUse::free;

              const auto v = classify_display(f);
              ASSERT_EQ(v.use, expected) << "lock=" << int(lock) << " x11=" << int(x11)
                                         << " x11_abstract=" << x11_abstract << " xpra_abstract=" << xpra_abstract
                                         << " shared=" << int(shared) << " user=" << int(user)
                                         << " xpra_dir=" << int(xpra_dir) << " session_dir=" << int(session_dir);
              ASSERT_EQ(v.reason.empty(), expected == DisplayUse::free) << v.reason;
              if (expected == DisplayUse::stale) {
                ASSERT_NE(v.owner, 0u) << "a leftover names who left it";
              }
              if (lock == Lock::live) {
                ASSERT_EQ(v.pid, 10);
              }
            }
  EXPECT_EQ(combinations, 5 * 4 * 2 * 2 * 4 * 4 * 4 * 4);
}

}  // namespace
}  // namespace xpra_broker
