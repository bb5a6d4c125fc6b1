// DisplayProbe::probe() against real files and sockets in a private temporary
// directory: x11_tmp_dir plays /tmp (.X<N>-lock, .X11-unix/X<N>), a second dir
// the shared Xpra socket dir, a third the caller's own socket dir.
//
// Every test builds the probe first, probes once while nothing is there, and
// only then creates what it looks for, probes again, removes it and probes a
// third time: a probe that caches what it saw (or watches the directories)
// must notice changes made after it was built and after it answered.
//
// Display numbers: each test has its own block of ten in 61000-61999, because
// abstract socket names (@xpra/<N>) are host-wide and ctest runs each test in
// its own process, possibly in parallel.
#include "host/display_probe.h"

#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <cerrno>
#include <cstddef>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "unique_fd.h"

namespace xpra_broker {
namespace {

constexpr const char* kHost = "probe-host";

// One block per test (see the header comment).
constexpr std::uint32_t kNothingDisplay = 61000;
constexpr std::uint32_t kLockDisplay = 61010;
constexpr std::uint32_t kLockLinkDisplay = 61020;
constexpr std::uint32_t kX11SocketDisplay = 61030;
constexpr std::uint32_t kX11DirLaterDisplay = 61040;
constexpr std::uint32_t kX11DirSymlinkDisplay = 61050;
constexpr std::uint32_t kAbstractDisplay = 61060;
constexpr std::uint32_t kBacklogDisplay = 61070;
constexpr std::uint32_t kXpraDisplay = 61080;
constexpr std::uint32_t kUserDirDisplay = 61090;
constexpr std::uint32_t kChurnDisplay = 61100;
constexpr std::uint32_t kFdLeakDisplay = 61110;
constexpr std::uint32_t kRenameDisplay = 61120;
constexpr std::uint32_t kDirsLaterDisplay = 61130;
constexpr std::uint32_t kRequestDisplay = 61140;
constexpr std::uint32_t kXpraConfigDirDisplay = 61150;
constexpr std::uint32_t kXpraTmpDirDisplay = 61160;
constexpr std::uint32_t kXpraDirLaterDisplay = 61170;

const char* kind_name(FileKind kind) {
  switch (kind) {
    case FileKind::absent: return "absent";
    case FileKind::socket: return "socket";
    case FileKind::regular: return "regular";
    case FileKind::other: return "other";
  }
  return "?";
}

// FileKind has no printer; compare by name so a failure says which kinds.
#define EXPECT_KIND(actual, expected) EXPECT_STREQ(kind_name(actual), kind_name(expected)) << #actual

std::string errno_text() { return std::strerror(errno); }

socklen_t path_address(const std::string& path, sockaddr_un& addr) {
  addr = sockaddr_un{};
  addr.sun_family = AF_UNIX;
  EXPECT_LT(path.size(), sizeof(addr.sun_path)) << path;
  std::strncpy(addr.sun_path, path.c_str(), sizeof(addr.sun_path) - 1);
  return static_cast<socklen_t>(sizeof(addr));
}

// "\0" + name, the length counting exactly the name (no trailing zeros).
socklen_t abstract_address(const std::string& name, sockaddr_un& addr) {
  addr = sockaddr_un{};
  addr.sun_family = AF_UNIX;
  EXPECT_LT(name.size(), sizeof(addr.sun_path)) << name;
  std::memcpy(addr.sun_path + 1, name.data(), name.size());
  return static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + 1 + name.size());
}

UniqueFd bound_socket(const sockaddr_un& addr, socklen_t len, const std::string& what) {
  UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!fd) {
    ADD_FAILURE() << "socket: " << errno_text();
    return fd;
  }
  if (::bind(fd.get(), reinterpret_cast<const sockaddr*>(&addr), len) != 0) {
    ADD_FAILURE() << "bind " << what << ": " << errno_text();
    return UniqueFd();
  }
  return fd;
}

UniqueFd listen_or_fail(UniqueFd fd, int backlog, const std::string& what) {
  if (fd && ::listen(fd.get(), backlog) != 0) {
    ADD_FAILURE() << "listen " << what << ": " << errno_text();
    return UniqueFd();
  }
  return fd;
}

// A listening socket file at `path`.
UniqueFd listen_at(const std::string& path, int backlog = 16) {
  sockaddr_un addr;
  const socklen_t len = path_address(path, addr);
  return listen_or_fail(bound_socket(addr, len, path), backlog, path);
}

// A listener on the abstract name "\0" + name.
UniqueFd listen_abstract(const std::string& name, int backlog = 16) {
  sockaddr_un addr;
  const socklen_t len = abstract_address(name, addr);
  return listen_or_fail(bound_socket(addr, len, "@" + name), backlog, "@" + name);
}

// A socket file nobody listens on: bound, then closed without unlink, as a
// crashed server leaves it.
void make_stale_socket(const std::string& path) {
  sockaddr_un addr;
  const socklen_t len = path_address(path, addr);
  UniqueFd fd = bound_socket(addr, len, path);
  EXPECT_TRUE(fd);
}

// Connects non-blocking clients (never accepted) until the listener's backlog
// is full; true once a connect() said EAGAIN.
bool fill_backlog(const sockaddr_un& addr, socklen_t len, std::vector<UniqueFd>& clients) {
  for (int i = 0; i < 64; ++i) {
    UniqueFd c(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
    if (!c) return false;
    if (::connect(c.get(), reinterpret_cast<const sockaddr*>(&addr), len) != 0) {
      if (errno == EAGAIN) return true;
      ADD_FAILURE() << "connect: " << errno_text();
      return false;
    }
    clients.push_back(std::move(c));
  }
  return false;
}

// Writes an X lock file the way X does: the pid as "%10d\n".
void write_lock(const std::string& path, pid_t pid) {
  UniqueFd fd(::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0444));
  ASSERT_TRUE(fd) << path << ": " << errno_text();
  char text[32];
  const int n = std::snprintf(text, sizeof(text), "%10d\n", static_cast<int>(pid));
  ASSERT_EQ(::write(fd.get(), text, static_cast<std::size_t>(n)), n);
}

void write_file(const std::string& path, const std::string& content) {
  UniqueFd fd(::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644));
  ASSERT_TRUE(fd) << path << ": " << errno_text();
  ASSERT_EQ(::write(fd.get(), content.data(), content.size()), static_cast<ssize_t>(content.size()));
}

void remove_file(const std::string& path) { ASSERT_EQ(::unlink(path.c_str()), 0) << path << ": " << errno_text(); }

void make_dir(const std::string& path) { ASSERT_EQ(::mkdir(path.c_str(), 0755), 0) << path << ": " << errno_text(); }

void remove_tree(const std::string& path) {
  std::error_code ec;
  std::filesystem::remove_all(path, ec);
  ASSERT_FALSE(ec) << path << ": " << ec.message();
  struct stat st {};
  ASSERT_NE(::lstat(path.c_str(), &st), 0) << path << " still there";
}

// The pid of a child that has exited and been reaped: nobody has it.
pid_t reaped_pid() {
  const pid_t pid = ::fork();
  if (pid == 0) ::_exit(0);
  EXPECT_GT(pid, 0) << "fork: " << errno_text();
  int status = 0;
  EXPECT_EQ(::waitpid(pid, &status, 0), pid);
  return pid;
}

std::size_t open_fd_count() {
  std::size_t n = 0;
  DIR* dir = ::opendir("/proc/self/fd");
  if (dir == nullptr) {
    ADD_FAILURE() << "opendir /proc/self/fd: " << errno_text();
    return 0;
  }
  while (const dirent* e = ::readdir(dir))
    if (e->d_name[0] != '.') ++n;
  ::closedir(dir);
  return n;
}

void expect_socket_absent(const SocketFileFacts& s, const char* what) {
  EXPECT_KIND(s.kind, FileKind::absent) << " " << what;
  EXPECT_FALSE(s.listening) << what;
}

// Every field says "nothing there".
void expect_nothing(const DisplayFacts& f, std::uint32_t display, const std::string& when) {
  SCOPED_TRACE("expect nothing: " + when);
  EXPECT_EQ(f.display, display);
  EXPECT_KIND(f.lock.kind, FileKind::absent);
  EXPECT_EQ(f.lock.pid, 0);
  EXPECT_FALSE(f.lock.pid_alive);
  expect_socket_absent(f.x11_socket, "x11_socket");
  EXPECT_FALSE(f.x11_abstract_in_use);
  EXPECT_FALSE(f.xpra_abstract_in_use);
  expect_socket_absent(f.xpra_shared_socket, "xpra_shared_socket");
  expect_socket_absent(f.xpra_user_socket, "xpra_user_socket");
  EXPECT_TRUE(f.xpra_dir_entries.empty());
}

void expect_listening_socket(const SocketFileFacts& s, const char* what) {
  EXPECT_KIND(s.kind, FileKind::socket) << " " << what;
  EXPECT_TRUE(s.listening) << what;
  EXPECT_EQ(s.owner, ::geteuid()) << what;
}

class DisplayProbeTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char pattern[] = "/tmp/xpra-probe-test-XXXXXX";
    ASSERT_NE(::mkdtemp(pattern), nullptr) << errno_text();
    root_ = pattern;
    tmp_ = root_ + "/tmp";
    shared_ = root_ + "/shared";
    user_ = root_ + "/user";
    make_dir(tmp_);
    make_dir(shared_);
    make_dir(user_);
  }
  void TearDown() override {
    probe_.reset();
    if (!root_.empty()) {
      std::error_code ec;
      std::filesystem::remove_all(root_, ec);
      EXPECT_FALSE(ec) << root_ << ": " << ec.message();
    }
  }

  // Built after SetUp, with .X11-unix not there yet: each test creates what
  // it looks for only after the probe exists and has answered once.
  DisplayProbe& make_probe() {
    probe_ = std::make_unique<DisplayProbe>(tmp_, shared_, kHost);
    return *probe_;
  }
  // With shared socket dirs of the host's Xpra config.
  DisplayProbe& make_probe_with_xpra_dirs(const std::vector<std::string>& dirs) {
    std::vector<XpraSharedDirs::Spec> specs;
    for (const auto& d : dirs) specs.push_back({d, "test config"});
    probe_ = std::make_unique<DisplayProbe>(tmp_, shared_, kHost,
                                            std::make_shared<XpraSharedDirs>(std::move(specs), ::geteuid()));
    return *probe_;
  }
  DisplayFacts probe(std::uint32_t display) { return probe_->probe(display, user_); }

  std::string lock_path(std::uint32_t d) const { return tmp_ + "/.X" + std::to_string(d) + "-lock"; }
  std::string x11_dir() const { return tmp_ + "/.X11-unix"; }
  std::string x11_path(std::uint32_t d) const { return x11_dir() + "/X" + std::to_string(d); }
  std::string x11_abstract_name(std::uint32_t d) const { return x11_path(d); }
  static std::string xpra_abstract_name(std::uint32_t d) { return "xpra/" + std::to_string(d); }
  static std::string xpra_name(std::uint32_t d) { return std::string(kHost) + "-" + std::to_string(d); }
  std::string shared_path(std::uint32_t d) const { return shared_ + "/" + xpra_name(d); }
  std::string user_path(std::uint32_t d) const { return user_ + "/" + xpra_name(d); }

  std::string root_, tmp_, shared_, user_;
  std::unique_ptr<DisplayProbe> probe_;
};

// 1. Nothing there: every field absent or false, more than once.
TEST_F(DisplayProbeTest, NothingThereEveryFieldAbsent) {
  make_probe();
  expect_nothing(probe(kNothingDisplay), kNothingDisplay, "first probe");
  expect_nothing(probe(kNothingDisplay), kNothingDisplay, "second probe");
  expect_nothing(probe(kNothingDisplay + 1), kNothingDisplay + 1, "another number");
  // .X11-unix existing but empty changes nothing.
  make_dir(x11_dir());
  expect_nothing(probe(kNothingDisplay), kNothingDisplay, "with an empty .X11-unix");
  EXPECT_EQ(probe_->hostname(), kHost);
}

// 2a. A lock file with a live pid (ours), then with a dead one.
TEST_F(DisplayProbeTest, LockFileAppearsWithLiveThenDeadPid) {
  const std::uint32_t d = kLockDisplay;
  make_probe();
  expect_nothing(probe(d), d, "before the lock");

  write_lock(lock_path(d), ::getpid());
  DisplayFacts f = probe(d);
  EXPECT_KIND(f.lock.kind, FileKind::regular);
  EXPECT_EQ(f.lock.owner, ::geteuid());
  EXPECT_EQ(f.lock.pid, ::getpid());
  EXPECT_TRUE(f.lock.pid_alive);
  expect_socket_absent(f.x11_socket, "x11_socket");

  remove_file(lock_path(d));
  expect_nothing(probe(d), d, "after the live lock is removed");

  const pid_t dead = reaped_pid();
  write_lock(lock_path(d), dead);
  f = probe(d);
  EXPECT_KIND(f.lock.kind, FileKind::regular);
  EXPECT_EQ(f.lock.pid, dead);
  EXPECT_FALSE(f.lock.pid_alive);

  remove_file(lock_path(d));
  expect_nothing(probe(d), d, "after the dead lock is removed");

  // Not a number: a regular lock without a pid.
  write_file(lock_path(d), "garbage\n");
  f = probe(d);
  EXPECT_KIND(f.lock.kind, FileKind::regular);
  EXPECT_EQ(f.lock.pid, 0);
  EXPECT_FALSE(f.lock.pid_alive);
  remove_file(lock_path(d));
  expect_nothing(probe(d), d, "after the garbage lock is removed");
}

// 2b. A symlink named .X<N>-lock is never followed, even to a valid lock of a
// live process.
TEST_F(DisplayProbeTest, LockSymlinkIsNotFollowed) {
  const std::uint32_t d = kLockLinkDisplay;
  make_probe();
  expect_nothing(probe(d), d, "before the symlink");

  const std::string target = root_ + "/real-lock";
  write_lock(target, ::getpid());
  ASSERT_EQ(::symlink(target.c_str(), lock_path(d).c_str()), 0) << errno_text();
  DisplayFacts f = probe(d);
  EXPECT_NE(f.lock.kind, FileKind::absent);
  EXPECT_NE(f.lock.kind, FileKind::regular);
  EXPECT_KIND(f.lock.kind, FileKind::other);
  EXPECT_EQ(f.lock.pid, 0);
  EXPECT_FALSE(f.lock.pid_alive);

  remove_file(lock_path(d));
  expect_nothing(probe(d), d, "after the symlink is removed");

  // A dangling symlink is there too.
  ASSERT_EQ(::symlink((root_ + "/nowhere").c_str(), lock_path(d).c_str()), 0) << errno_text();
  f = probe(d);
  EXPECT_KIND(f.lock.kind, FileKind::other);
  EXPECT_EQ(f.lock.pid, 0);
  remove_file(lock_path(d));
  expect_nothing(probe(d), d, "after the dangling symlink is removed");
}

// 3. .X11-unix/X<N>: a listening socket, then a stale one.
TEST_F(DisplayProbeTest, X11SocketListeningThenStale) {
  const std::uint32_t d = kX11SocketDisplay;
  make_probe();
  expect_nothing(probe(d), d, "before .X11-unix");
  make_dir(x11_dir());
  expect_nothing(probe(d), d, "with an empty .X11-unix");

  {
    UniqueFd listener = listen_at(x11_path(d));
    ASSERT_TRUE(listener);
    const DisplayFacts f = probe(d);
    expect_listening_socket(f.x11_socket, "x11_socket");
    EXPECT_KIND(f.lock.kind, FileKind::absent);
    EXPECT_FALSE(f.x11_abstract_in_use);  // a filesystem name is not the abstract one
    // A second probe of a listener it already connected to.
    expect_listening_socket(probe(d).x11_socket, "x11_socket, again");
  }
  // The listener closed, the file left behind.
  DisplayFacts f = probe(d);
  EXPECT_KIND(f.x11_socket.kind, FileKind::socket);
  EXPECT_FALSE(f.x11_socket.listening);
  remove_file(x11_path(d));
  expect_nothing(probe(d), d, "after the socket file is removed");

  make_stale_socket(x11_path(d));
  f = probe(d);
  EXPECT_KIND(f.x11_socket.kind, FileKind::socket);
  EXPECT_FALSE(f.x11_socket.listening);
  EXPECT_EQ(f.x11_socket.owner, ::geteuid());
  remove_file(x11_path(d));
  expect_nothing(probe(d), d, "after the stale socket is removed");

  // A regular file where the socket goes.
  write_file(x11_path(d), "");
  f = probe(d);
  EXPECT_KIND(f.x11_socket.kind, FileKind::regular);
  EXPECT_FALSE(f.x11_socket.listening);
  remove_file(x11_path(d));
  expect_nothing(probe(d), d, "after the regular file is removed");
}

// 4. .X11-unix created only after the probe has answered, then removed and
// recreated.
TEST_F(DisplayProbeTest, X11DirCreatedRemovedAndRecreatedAfterFirstProbe) {
  const std::uint32_t d = kX11DirLaterDisplay;
  make_probe();
  expect_nothing(probe(d), d, "no .X11-unix");

  make_dir(x11_dir());
  UniqueFd listener = listen_at(x11_path(d));
  ASSERT_TRUE(listener);
  expect_listening_socket(probe(d).x11_socket, "x11_socket in the new .X11-unix");

  listener.reset();
  remove_tree(x11_dir());
  expect_nothing(probe(d), d, ".X11-unix removed");
  make_dir(x11_dir());
  expect_nothing(probe(d), d, ".X11-unix recreated empty");

  listener = listen_at(x11_path(d));
  ASSERT_TRUE(listener);
  expect_listening_socket(probe(d).x11_socket, "x11_socket in the recreated .X11-unix");

  // Once more, without closing the listener first: the directory goes with
  // the socket file in it.
  remove_tree(x11_dir());
  expect_nothing(probe(d), d, ".X11-unix removed under a live listener");
  listener.reset();
  make_dir(x11_dir());
  make_stale_socket(x11_path(d));
  const DisplayFacts f = probe(d);
  EXPECT_KIND(f.x11_socket.kind, FileKind::socket);
  EXPECT_FALSE(f.x11_socket.listening);
  remove_file(x11_path(d));
  expect_nothing(probe(d), d, "stale socket removed");
}

// 5. .X11-unix replaced by a symlink to a directory holding a listening
// X<N>: never followed. The current code reports the socket absent (the
// O_NOFOLLOW open of .X11-unix fails), and it must never say listening.
TEST_F(DisplayProbeTest, X11DirSymlinkIsNotFollowed) {
  const std::uint32_t d = kX11DirSymlinkDisplay;
  make_probe();
  make_dir(x11_dir());
  expect_nothing(probe(d), d, "empty .X11-unix");

  const std::string elsewhere = root_ + "/elsewhere";
  make_dir(elsewhere);
  UniqueFd listener = listen_at(elsewhere + "/X" + std::to_string(d));
  ASSERT_TRUE(listener);
  remove_tree(x11_dir());
  ASSERT_EQ(::symlink(elsewhere.c_str(), x11_dir().c_str()), 0) << errno_text();
  // Make sure the planted path does lead to a live listener.
  {
    sockaddr_un addr;
    const socklen_t len = path_address(x11_path(d), addr);
    UniqueFd c(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
    ASSERT_EQ(::connect(c.get(), reinterpret_cast<sockaddr*>(&addr), len), 0) << errno_text();
  }

  DisplayFacts f = probe(d);
  EXPECT_FALSE(f.x11_socket.listening);
  EXPECT_KIND(f.x11_socket.kind, FileKind::absent);  // the current behaviour
  EXPECT_FALSE(f.x11_abstract_in_use);

  // Back to a real directory with a real listener: seen again.
  remove_file(x11_dir());
  make_dir(x11_dir());
  expect_nothing(probe(d), d, "real .X11-unix again, empty");
  UniqueFd real = listen_at(x11_path(d));
  ASSERT_TRUE(real);
  expect_listening_socket(probe(d).x11_socket, "x11_socket in the real .X11-unix");
  real.reset();
  remove_file(x11_path(d));
  expect_nothing(probe(d), d, "all removed");
}

// 6a. Abstract sockets: @<x11_tmp_dir>/.X11-unix/X<N> and @xpra/<N>.
TEST_F(DisplayProbeTest, AbstractSocketsAppearAndGo) {
  const std::uint32_t d = kAbstractDisplay;
  make_probe();
  expect_nothing(probe(d), d, "before the listeners");

  UniqueFd x11 = listen_abstract(x11_abstract_name(d));
  ASSERT_TRUE(x11);
  DisplayFacts f = probe(d);
  EXPECT_TRUE(f.x11_abstract_in_use);
  EXPECT_FALSE(f.xpra_abstract_in_use);
  expect_socket_absent(f.x11_socket, "x11_socket (only the abstract name exists)");

  UniqueFd xpra = listen_abstract(xpra_abstract_name(d));
  ASSERT_TRUE(xpra);
  f = probe(d);
  EXPECT_TRUE(f.x11_abstract_in_use);
  EXPECT_TRUE(f.xpra_abstract_in_use);
  // The neighbour number sees neither.
  expect_nothing(probe(d + 1), d + 1, "the next number");

  x11.reset();
  f = probe(d);
  EXPECT_FALSE(f.x11_abstract_in_use);
  EXPECT_TRUE(f.xpra_abstract_in_use);

  xpra.reset();
  expect_nothing(probe(d), d, "after closing both");

  // A name bound but not listening is no server yet.
  {
    sockaddr_un addr;
    const socklen_t len = abstract_address(xpra_abstract_name(d), addr);
    UniqueFd bound = bound_socket(addr, len, "@xpra");
    ASSERT_TRUE(bound);
    EXPECT_FALSE(probe(d).xpra_abstract_in_use);
  }
  // And once listening again, seen again.
  xpra = listen_abstract(xpra_abstract_name(d));
  ASSERT_TRUE(xpra);
  EXPECT_TRUE(probe(d).xpra_abstract_in_use);
  xpra.reset();
  expect_nothing(probe(d), d, "after closing again");
}

// 6b. A listener whose backlog is full still reads as in use (connect() says
// EAGAIN, not ECONNREFUSED), for abstract names and socket files alike.
TEST_F(DisplayProbeTest, FullBacklogStillReadsAsListening) {
  const std::uint32_t d = kBacklogDisplay;
  make_probe();
  make_dir(x11_dir());
  expect_nothing(probe(d), d, "before the listeners");

  UniqueFd x11 = listen_abstract(x11_abstract_name(d), 0);
  UniqueFd xpra = listen_abstract(xpra_abstract_name(d), 0);
  UniqueFd file = listen_at(x11_path(d), 0);
  UniqueFd shared = listen_at(shared_path(d), 0);
  ASSERT_TRUE(x11 && xpra && file && shared);
  std::vector<UniqueFd> clients;
  sockaddr_un addr;
  socklen_t len = abstract_address(x11_abstract_name(d), addr);
  ASSERT_TRUE(fill_backlog(addr, len, clients)) << "could not fill the x11 abstract backlog";
  len = abstract_address(xpra_abstract_name(d), addr);
  ASSERT_TRUE(fill_backlog(addr, len, clients)) << "could not fill the xpra abstract backlog";
  len = path_address(x11_path(d), addr);
  ASSERT_TRUE(fill_backlog(addr, len, clients)) << "could not fill the x11 socket backlog";
  len = path_address(shared_path(d), addr);
  ASSERT_TRUE(fill_backlog(addr, len, clients)) << "could not fill the xpra socket backlog";

  for (int round = 0; round < 3; ++round) {
    SCOPED_TRACE("round " + std::to_string(round));
    const DisplayFacts f = probe(d);
    EXPECT_TRUE(f.x11_abstract_in_use);
    EXPECT_TRUE(f.xpra_abstract_in_use);
    expect_listening_socket(f.x11_socket, "x11_socket");
    expect_listening_socket(f.xpra_shared_socket, "xpra_shared_socket");
  }

  clients.clear();
  x11.reset();
  xpra.reset();
  file.reset();
  shared.reset();
  remove_file(x11_path(d));
  remove_file(shared_path(d));
  expect_nothing(probe(d), d, "after closing everything");
}

// 7. Xpra sockets <hostname>-<N> in the shared and in the user's dir.
TEST_F(DisplayProbeTest, XpraSocketsInSharedAndUserDir) {
  const std::uint32_t d = kXpraDisplay;
  make_probe();
  expect_nothing(probe(d), d, "before the sockets");

  UniqueFd shared = listen_at(shared_path(d));
  ASSERT_TRUE(shared);
  DisplayFacts f = probe(d);
  expect_listening_socket(f.xpra_shared_socket, "xpra_shared_socket");
  expect_socket_absent(f.xpra_user_socket, "xpra_user_socket");

  UniqueFd user = listen_at(user_path(d));
  ASSERT_TRUE(user);
  f = probe(d);
  expect_listening_socket(f.xpra_shared_socket, "xpra_shared_socket");
  expect_listening_socket(f.xpra_user_socket, "xpra_user_socket");

  shared.reset();
  remove_file(shared_path(d));
  f = probe(d);
  expect_socket_absent(f.xpra_shared_socket, "xpra_shared_socket after removal");
  expect_listening_socket(f.xpra_user_socket, "xpra_user_socket");

  user.reset();
  remove_file(user_path(d));
  expect_nothing(probe(d), d, "after both are removed");

  // Regular files with those names.
  write_file(shared_path(d), "x");
  write_file(user_path(d), "x");
  f = probe(d);
  EXPECT_KIND(f.xpra_shared_socket.kind, FileKind::regular);
  EXPECT_FALSE(f.xpra_shared_socket.listening);
  EXPECT_KIND(f.xpra_user_socket.kind, FileKind::regular);
  EXPECT_FALSE(f.xpra_user_socket.listening);
  remove_file(shared_path(d));
  remove_file(user_path(d));
  expect_nothing(probe(d), d, "after the regular files are removed");

  // Stale sockets.
  make_stale_socket(shared_path(d));
  make_stale_socket(user_path(d));
  f = probe(d);
  EXPECT_KIND(f.xpra_shared_socket.kind, FileKind::socket);
  EXPECT_FALSE(f.xpra_shared_socket.listening);
  EXPECT_KIND(f.xpra_user_socket.kind, FileKind::socket);
  EXPECT_FALSE(f.xpra_user_socket.listening);
  remove_file(shared_path(d));
  remove_file(user_path(d));
  expect_nothing(probe(d), d, "after the stale sockets are removed");

  // A symlink in the shared dir to a live socket is not followed.
  const std::string real = root_ + "/real-xpra-socket";
  UniqueFd target = listen_at(real);
  ASSERT_TRUE(target);
  ASSERT_EQ(::symlink(real.c_str(), shared_path(d).c_str()), 0) << errno_text();
  f = probe(d);
  EXPECT_KIND(f.xpra_shared_socket.kind, FileKind::other);
  EXPECT_FALSE(f.xpra_shared_socket.listening);
  remove_file(shared_path(d));
  expect_nothing(probe(d), d, "after the symlink is removed");
}

// 8. An empty user_dir: xpra_user_socket stays absent even when the socket
// exists in the user's dir; a user dir that appears only later is seen.
TEST_F(DisplayProbeTest, UserDirEmptyOrCreatedLater) {
  const std::uint32_t d = kUserDirDisplay;
  make_probe();
  expect_nothing(probe_->probe(d, ""), d, "empty user_dir");
  expect_nothing(probe(d), d, "with user_dir");

  UniqueFd user = listen_at(user_path(d));
  ASSERT_TRUE(user);
  expect_listening_socket(probe(d).xpra_user_socket, "xpra_user_socket");
  expect_nothing(probe_->probe(d, ""), d, "empty user_dir, socket in the user's dir");
  user.reset();
  remove_file(user_path(d));
  expect_nothing(probe(d), d, "after removal");

  // A user dir that did not exist at the first probe.
  const std::string later = root_ + "/user-later";
  expect_nothing(probe_->probe(d, later), d, "user dir missing");
  make_dir(later);
  expect_nothing(probe_->probe(d, later), d, "user dir created empty");
  user = listen_at(later + "/" + xpra_name(d));
  ASSERT_TRUE(user);
  expect_listening_socket(probe_->probe(d, later).xpra_user_socket, "xpra_user_socket in the later dir");
  expect_nothing(probe_->probe(d, ""), d, "empty user_dir again");
  user.reset();
  remove_tree(later);
  expect_nothing(probe_->probe(d, later), d, "user dir removed");
}

// 9. Many creations and removals between two probes (more events than an
// inotify queue holds by default) must not hide what appears afterwards.
TEST_F(DisplayProbeTest, ManyChangesBetweenProbesDoNotHideNewArtifacts) {
  const std::uint32_t d = kChurnDisplay;
  make_probe();
  expect_nothing(probe(d), d, "before the churn");
  make_dir(x11_dir());
  expect_nothing(probe(d), d, "empty .X11-unix");

  constexpr int kFiles = 20000;
  for (const std::string& dir : {tmp_, x11_dir(), shared_}) {
    for (int i = 0; i < kFiles; ++i) {
      const std::string name = dir + "/churn-" + std::to_string(i);
      UniqueFd fd(::open(name.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600));
      ASSERT_TRUE(fd) << name << ": " << errno_text();
      fd.reset();
      ASSERT_EQ(::unlink(name.c_str()), 0) << name << ": " << errno_text();
    }
  }
  write_lock(lock_path(d), ::getpid());
  UniqueFd x11 = listen_at(x11_path(d));
  UniqueFd shared = listen_at(shared_path(d));
  ASSERT_TRUE(x11 && shared);

  DisplayFacts f = probe(d);
  EXPECT_KIND(f.lock.kind, FileKind::regular);
  EXPECT_EQ(f.lock.pid, ::getpid());
  EXPECT_TRUE(f.lock.pid_alive);
  expect_listening_socket(f.x11_socket, "x11_socket after the churn");
  expect_listening_socket(f.xpra_shared_socket, "xpra_shared_socket after the churn");

  // And the other way round: churn, then removal.
  for (int i = 0; i < kFiles; ++i) {
    const std::string name = tmp_ + "/churn-" + std::to_string(i);
    UniqueFd fd(::open(name.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600));
    ASSERT_TRUE(fd) << name << ": " << errno_text();
    fd.reset();
    ASSERT_EQ(::unlink(name.c_str()), 0) << name << ": " << errno_text();
  }
  remove_file(lock_path(d));
  x11.reset();
  shared.reset();
  remove_file(x11_path(d));
  remove_file(shared_path(d));
  expect_nothing(probe(d), d, "after the second churn and the removals");

  // Appearing once more after all that.
  write_lock(lock_path(d), ::getpid());
  f = probe(d);
  EXPECT_KIND(f.lock.kind, FileKind::regular);
  EXPECT_TRUE(f.lock.pid_alive);
  remove_file(lock_path(d));
  expect_nothing(probe(d), d, "at the end");
}

// 10. Repeated probes never leak a file descriptor.
TEST_F(DisplayProbeTest, RepeatedProbesDoNotLeakFds) {
  const std::uint32_t present = kFdLeakDisplay;
  const std::uint32_t absent = kFdLeakDisplay + 1;
  const std::size_t before_probe = open_fd_count();
  make_probe();
  expect_nothing(probe(present), present, "first probe");
  expect_nothing(probe(absent), absent, "first probe of the other number");

  make_dir(x11_dir());
  write_lock(lock_path(present), ::getpid());
  UniqueFd x11 = listen_at(x11_path(present));
  UniqueFd shared = listen_at(shared_path(present));
  UniqueFd user = listen_at(user_path(present));
  UniqueFd x11_abstract = listen_abstract(x11_abstract_name(present));
  UniqueFd xpra_abstract = listen_abstract(xpra_abstract_name(present));
  ASSERT_TRUE(x11 && shared && user && x11_abstract && xpra_abstract);
  make_stale_socket(x11_path(absent + 1));  // a stale socket on a third number
  const std::uint32_t stale = absent + 1;

  auto check_present = [&](const DisplayFacts& f) {
    EXPECT_KIND(f.lock.kind, FileKind::regular);
    EXPECT_TRUE(f.lock.pid_alive);
    EXPECT_TRUE(f.x11_socket.listening);
    EXPECT_TRUE(f.xpra_shared_socket.listening);
    EXPECT_TRUE(f.xpra_user_socket.listening);
    EXPECT_TRUE(f.x11_abstract_in_use);
    EXPECT_TRUE(f.xpra_abstract_in_use);
    return !::testing::Test::HasFailure();
  };
  ASSERT_TRUE(check_present(probe(present)));
  expect_nothing(probe(absent), absent, "warm-up");
  EXPECT_KIND(probe(stale).x11_socket.kind, FileKind::socket);
  expect_nothing(probe(absent), absent, "warm-up, last");
  const std::size_t warm = open_fd_count();

  for (int i = 0; i < 1000; ++i) {
    const DisplayFacts p = probe(present);
    const DisplayFacts a = probe(absent);
    const DisplayFacts s = probe(stale);
    if (!check_present(p)) FAIL() << "iteration " << i;
    expect_nothing(a, absent, "iteration " + std::to_string(i));
    EXPECT_KIND(s.x11_socket.kind, FileKind::socket);
    EXPECT_FALSE(s.x11_socket.listening);
    if (::testing::Test::HasFailure()) FAIL() << "iteration " << i;
  }
  // The number that was absent comes and goes too.
  for (int i = 0; i < 200; ++i) {
    write_lock(lock_path(absent), ::getpid());
    const DisplayFacts f = probe(absent);
    EXPECT_KIND(f.lock.kind, FileKind::regular);
    remove_file(lock_path(absent));
    expect_nothing(probe(absent), absent, "come-and-go " + std::to_string(i));
    if (::testing::Test::HasFailure()) FAIL() << "come-and-go " << i;
  }
  expect_nothing(probe(absent), absent, "last");
  EXPECT_EQ(open_fd_count(), warm) << "fds open after 3600 probes vs. before";

  probe_.reset();
  x11.reset();
  shared.reset();
  user.reset();
  x11_abstract.reset();
  xpra_abstract.reset();
  EXPECT_EQ(open_fd_count(), before_probe) << "fds open after the probe is gone vs. before it was built";
}

// Artifacts that arrive by link() and rename(), as X itself writes its lock
// (a temporary file linked into place), and that leave by rename().
TEST_F(DisplayProbeTest, ArtifactsLinkedOrRenamedIntoAndOutOfPlace) {
  const std::uint32_t d = kRenameDisplay;
  make_probe();
  expect_nothing(probe(d), d, "before");

  // X: write /tmp/.tX<N>-lock, link() it to .X<N>-lock, unlink the temporary.
  const std::string temp_lock = tmp_ + "/.tX" + std::to_string(d) + "-lock";
  write_lock(temp_lock, ::getpid());
  expect_nothing(probe(d), d, "only the temporary lock");
  ASSERT_EQ(::link(temp_lock.c_str(), lock_path(d).c_str()), 0) << errno_text();
  remove_file(temp_lock);
  DisplayFacts f = probe(d);
  EXPECT_KIND(f.lock.kind, FileKind::regular);
  EXPECT_EQ(f.lock.pid, ::getpid());
  EXPECT_TRUE(f.lock.pid_alive);

  // Renamed away.
  ASSERT_EQ(::rename(lock_path(d).c_str(), temp_lock.c_str()), 0) << errno_text();
  expect_nothing(probe(d), d, "lock renamed away");
  // Renamed back in from another directory.
  const std::string outside = root_ + "/lock-outside";
  ASSERT_EQ(::rename(temp_lock.c_str(), outside.c_str()), 0) << errno_text();
  ASSERT_EQ(::rename(outside.c_str(), lock_path(d).c_str()), 0) << errno_text();
  f = probe(d);
  EXPECT_KIND(f.lock.kind, FileKind::regular);
  EXPECT_EQ(f.lock.pid, ::getpid());
  remove_file(lock_path(d));
  expect_nothing(probe(d), d, "lock removed");

  // A whole .X11-unix renamed into place, with a live socket in it.
  const std::string staged = tmp_ + "/staged";
  make_dir(staged);
  UniqueFd listener = listen_at(staged + "/X" + std::to_string(d));
  ASSERT_TRUE(listener);
  expect_nothing(probe(d), d, "socket in a staged dir");
  ASSERT_EQ(::rename(staged.c_str(), x11_dir().c_str()), 0) << errno_text();
  expect_listening_socket(probe(d).x11_socket, "x11_socket in the renamed .X11-unix");
  // And renamed away again.
  ASSERT_EQ(::rename(x11_dir().c_str(), staged.c_str()), 0) << errno_text();
  expect_nothing(probe(d), d, ".X11-unix renamed away");
  // The socket file alone renamed into a fresh .X11-unix.
  make_dir(x11_dir());
  expect_nothing(probe(d), d, "fresh empty .X11-unix");
  ASSERT_EQ(::rename((staged + "/X" + std::to_string(d)).c_str(), x11_path(d).c_str()), 0) << errno_text();
  expect_listening_socket(probe(d).x11_socket, "x11_socket renamed into .X11-unix");

  // An Xpra socket renamed into the shared dir.
  UniqueFd xpra = listen_at(staged + "/xpra");
  ASSERT_TRUE(xpra);
  ASSERT_EQ(::rename((staged + "/xpra").c_str(), shared_path(d).c_str()), 0) << errno_text();
  expect_listening_socket(probe(d).xpra_shared_socket, "xpra_shared_socket renamed in");

  listener.reset();
  xpra.reset();
  remove_file(x11_path(d));
  remove_file(shared_path(d));
  expect_nothing(probe(d), d, "all removed");
}

// x11_tmp_dir and the shared dir missing when the probe is built: created
// later, what appears in them is seen.
TEST_F(DisplayProbeTest, DirectoriesMissingAtConstructionCreatedLater) {
  const std::uint32_t d = kDirsLaterDisplay;
  const std::string tmp_later = root_ + "/tmp-later";
  const std::string shared_later = root_ + "/shared-later";
  DisplayProbe p(tmp_later, shared_later, kHost);
  expect_nothing(p.probe(d, user_), d, "neither dir exists");

  make_dir(tmp_later);
  make_dir(shared_later);
  expect_nothing(p.probe(d, user_), d, "both dirs exist, empty");

  write_lock(tmp_later + "/.X" + std::to_string(d) + "-lock", ::getpid());
  make_dir(tmp_later + "/.X11-unix");
  UniqueFd x11 = listen_at(tmp_later + "/.X11-unix/X" + std::to_string(d));
  UniqueFd shared = listen_at(shared_later + "/" + xpra_name(d));
  UniqueFd x11_abstract = listen_abstract(tmp_later + "/.X11-unix/X" + std::to_string(d));
  ASSERT_TRUE(x11 && shared && x11_abstract);
  const DisplayFacts f = p.probe(d, user_);
  EXPECT_KIND(f.lock.kind, FileKind::regular);
  EXPECT_EQ(f.lock.pid, ::getpid());
  EXPECT_TRUE(f.lock.pid_alive);
  expect_listening_socket(f.x11_socket, "x11_socket");
  expect_listening_socket(f.xpra_shared_socket, "xpra_shared_socket");
  EXPECT_TRUE(f.x11_abstract_in_use);

  x11.reset();
  shared.reset();
  x11_abstract.reset();
  remove_tree(tmp_later);
  remove_tree(shared_later);
  expect_nothing(p.probe(d, user_), d, "both dirs removed again");
}

// 15. Within one request (begin_request .. end_request, as LinuxHost
// brackets each) the watch is drained once, before the request's first
// answer; outside requests before every answer. A lock that appears in the
// middle of a request is therefore seen by the next one, and the file system
// fallback (names the watch has seen) is still asked every time.
TEST_F(DisplayProbeTest, TheWatchIsDrainedOncePerRequestAndBeforeEveryAnswerOutsideOne) {
  const std::uint32_t d = kRequestDisplay;
  DisplayProbe& p = make_probe();
  p.begin_request();
  expect_nothing(probe(d), d, "first answer of the request");
  write_lock(lock_path(d), ::getpid());
  EXPECT_KIND(probe(d).lock.kind, FileKind::absent);  // as of the request's first answer
  EXPECT_TRUE(p.x_lock_absent(d));
  p.end_request();
  EXPECT_KIND(probe(d).lock.kind, FileKind::regular);
  EXPECT_FALSE(p.x_lock_absent(d));

  p.begin_request();
  EXPECT_KIND(probe(d).lock.kind, FileKind::regular);
  remove_file(lock_path(d));
  // A name the watch has seen is looked up again, so its removal shows at once.
  EXPECT_KIND(probe(d).lock.kind, FileKind::absent);
  p.end_request();
  expect_nothing(probe(d), d, "after the request");
}

// 16. The shared socket dirs of the host's Xpra config: what appears there
// after the probe answered is seen (the watch vouches only for absence), a
// planted non-socket is reported as what it is, and only the dir holding
// the entry is named.
TEST_F(DisplayProbeTest, XpraConfigDirsAreProbed) {
  const std::uint32_t d = kXpraConfigDirDisplay;
  const std::string a = root_ + "/xpra-a", b = root_ + "/xpra-b";
  make_dir(a);
  make_dir(b);
  make_probe_with_xpra_dirs({a, b});
  expect_nothing(probe(d), d, "empty dirs");

  UniqueFd live = listen_at(b + "/" + xpra_name(d));
  ASSERT_TRUE(live);
  DisplayFacts f = probe(d);
  ASSERT_EQ(f.xpra_dir_entries.size(), 1u);
  EXPECT_EQ(f.xpra_dir_entries[0].dir, b);
  expect_listening_socket(f.xpra_dir_entries[0].entry, "live socket in b");
  expect_nothing(probe(d + 1), d + 1, "another display");

  make_stale_socket(a + "/" + xpra_name(d));
  f = probe(d);
  ASSERT_EQ(f.xpra_dir_entries.size(), 2u);
  EXPECT_EQ(f.xpra_dir_entries[0].dir, a);
  EXPECT_KIND(f.xpra_dir_entries[0].entry.kind, FileKind::socket);
  EXPECT_FALSE(f.xpra_dir_entries[0].entry.listening);

  live.reset();
  remove_file(b + "/" + xpra_name(d));
  remove_file(a + "/" + xpra_name(d));
  expect_nothing(probe(d), d, "after removal");

  write_file(a + "/" + xpra_name(d), "planted");
  f = probe(d);
  ASSERT_EQ(f.xpra_dir_entries.size(), 1u);
  EXPECT_KIND(f.xpra_dir_entries[0].entry.kind, FileKind::regular);
  remove_file(a + "/" + xpra_name(d));
  ASSERT_EQ(::symlink("/nonexistent", (a + "/" + xpra_name(d)).c_str()), 0);
  f = probe(d);
  ASSERT_EQ(f.xpra_dir_entries.size(), 1u);
  EXPECT_KIND(f.xpra_dir_entries[0].entry.kind, FileKind::other);
  remove_file(a + "/" + xpra_name(d));
  expect_nothing(probe(d), d, "after the link is removed");
  EXPECT_EQ(probe_->watched_directories(), 5u) << "tmp, shared, the user dir and the two Xpra dirs";
}

// 17. `socket-dirs = /tmp`: the Xpra dir is the X tmp dir itself. inotify
// keeps one watch per inode, so both kinds of names are tracked on it.
TEST_F(DisplayProbeTest, XpraConfigDirThatIsTheX11TmpDir) {
  const std::uint32_t d = kXpraTmpDirDisplay;
  make_probe_with_xpra_dirs({tmp_});
  expect_nothing(probe(d), d, "before");
  write_lock(lock_path(d), ::getpid());
  UniqueFd xpra = listen_at(tmp_ + "/" + xpra_name(d + 1));
  ASSERT_TRUE(xpra);
  DisplayFacts f = probe(d);
  EXPECT_KIND(f.lock.kind, FileKind::regular);
  EXPECT_TRUE(f.xpra_dir_entries.empty()) << "the socket is of another display";
  f = probe(d + 1);
  EXPECT_KIND(f.lock.kind, FileKind::absent);
  ASSERT_EQ(f.xpra_dir_entries.size(), 1u);
  expect_listening_socket(f.xpra_dir_entries[0].entry, "xpra socket in /tmp");
  remove_file(lock_path(d));
  xpra.reset();
  remove_file(tmp_ + "/" + xpra_name(d + 1));
  expect_nothing(probe(d), d, "after removal");
  expect_nothing(probe(d + 1), d + 1, "after removal");
}

// 18. An Xpra dir missing when the broker starts (no session made it yet) is
// opened when it appears (tried at most once a second), and one removed and
// made again is followed to the new directory.
TEST_F(DisplayProbeTest, XpraConfigDirCreatedLaterAndReplaced) {
  const std::uint32_t d = kXpraDirLaterDisplay;
  const std::string later = root_ + "/xpra-later";
  make_probe_with_xpra_dirs({later});
  expect_nothing(probe(d), d, "dir missing");
  make_dir(later);
  ::usleep(1100 * 1000);
  UniqueFd first = listen_at(later + "/" + xpra_name(d));
  ASSERT_TRUE(first);
  ASSERT_EQ(probe(d).xpra_dir_entries.size(), 1u) << "the dir that appeared";
  first.reset();
  remove_tree(later);
  expect_nothing(probe(d), d, "dir removed");
  ::usleep(1100 * 1000);
  expect_nothing(probe(d), d, "dir removed, looked at again");
  make_dir(later);
  UniqueFd second = listen_at(later + "/" + xpra_name(d));
  ASSERT_TRUE(second);
  ::usleep(1100 * 1000);
  const DisplayFacts f = probe(d);
  ASSERT_EQ(f.xpra_dir_entries.size(), 1u) << "the new dir of that name";
  expect_listening_socket(f.xpra_dir_entries[0].entry, "socket in the new dir");
}

}  // namespace
}  // namespace xpra_broker
