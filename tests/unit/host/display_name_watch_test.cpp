// DisplayNameWatch: the inotify index of lock and socket names that lets the
// display probe skip the filesystem. What matters is that it never says
// "absent" for a name that exists: after creation, rename, overflow, a
// replaced .X11-unix, a removed user dir. Real directories in a private
// temporary dir; plain files stand in for sockets (the watch only reads names).
#include "host/display_name_watch.h"

#include <fcntl.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <string>

namespace xpra_broker {
namespace {

namespace fs = std::filesystem;

class DisplayNameWatchTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char templ[] = "/tmp/xpb-name-watch-XXXXXX";
    ASSERT_NE(::mkdtemp(templ), nullptr);
    root_ = templ;
    tmp_ = root_ / "tmp";
    shared_ = root_ / "run";
    user_ = shared_ / "1000";
    fs::create_directories(tmp_);
    fs::create_directories(user_);
    tmp_fd_ = ::open(tmp_.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC);
    shared_fd_ = ::open(shared_.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC);
    ASSERT_GE(tmp_fd_, 0);
    ASSERT_GE(shared_fd_, 0);
  }
  void TearDown() override {
    ::close(tmp_fd_);
    ::close(shared_fd_);
    fs::remove_all(root_);
  }
  static void touch(const fs::path& p) { std::ofstream(p) << "x"; }

  fs::path root_, tmp_, shared_, user_;
  int tmp_fd_ = -1, shared_fd_ = -1;
};

TEST(DisplayNameWatchParse, AcceptsOnlyNamesTheProbeWrites) {
  const std::string lock_prefix = ".X", lock_suffix = "-lock", none;
  EXPECT_EQ(DisplayNameWatch::display_in_name(".X100-lock", lock_prefix, lock_suffix), 100u);
  EXPECT_EQ(DisplayNameWatch::display_in_name(".X0-lock", lock_prefix, lock_suffix), 0u);
  EXPECT_EQ(DisplayNameWatch::display_in_name("X4294967295", "X", none), 4294967295u);
  EXPECT_FALSE(DisplayNameWatch::display_in_name("X4294967296", "X", none));  // overflows
  EXPECT_FALSE(DisplayNameWatch::display_in_name(".X0100-lock", lock_prefix, lock_suffix));
  EXPECT_FALSE(DisplayNameWatch::display_in_name(".X-lock", lock_prefix, lock_suffix));
  EXPECT_FALSE(DisplayNameWatch::display_in_name(".X11-unix", lock_prefix, lock_suffix));
  EXPECT_FALSE(DisplayNameWatch::display_in_name(".X+1-lock", lock_prefix, lock_suffix));
  EXPECT_FALSE(DisplayNameWatch::display_in_name("X1a", "X", none));
  EXPECT_EQ(DisplayNameWatch::display_in_name("host-a-7", "host-a-", none), 7u);
  EXPECT_FALSE(DisplayNameWatch::display_in_name("host-b-7", "host-a-", none));
}

TEST_F(DisplayNameWatchTest, SeesNamesPresentAtStartAndEveryChangeAfter) {
  touch(tmp_ / ".X5-lock");
  fs::create_directories(tmp_ / ".X11-unix");
  touch(tmp_ / ".X11-unix" / "X6");
  touch(shared_ / "host-7");
  DisplayNameWatch watch(tmp_fd_, shared_fd_, "host");
  watch.drain();
  EXPECT_FALSE(watch.lock_absent(5));
  EXPECT_FALSE(watch.x11_socket_absent(6));
  EXPECT_FALSE(watch.shared_socket_absent(7));
  EXPECT_TRUE(watch.lock_absent(6));
  EXPECT_TRUE(watch.x11_socket_absent(5));
  EXPECT_TRUE(watch.shared_socket_absent(5));

  touch(tmp_ / ".X8-lock");
  fs::rename(tmp_ / ".X5-lock", tmp_ / ".X9-lock");
  fs::remove(tmp_ / ".X11-unix" / "X6");
  touch(shared_ / "host-10");
  touch(shared_ / "other-11");
  watch.drain();
  EXPECT_FALSE(watch.lock_absent(8));
  EXPECT_FALSE(watch.lock_absent(9));
  EXPECT_TRUE(watch.lock_absent(5));
  EXPECT_TRUE(watch.x11_socket_absent(6));
  EXPECT_FALSE(watch.shared_socket_absent(10));
  EXPECT_TRUE(watch.shared_socket_absent(11));
}

// Xpra 5.x/6.x session dirs in the X tmp dir: "<tmp>/N", and any "<tmp>/xpra"
// (which may hold "<tmp>/xpra/N"): present at start and every change after.
TEST_F(DisplayNameWatchTest, SessionDirsAndTheXpraDirAreFollowed) {
  fs::create_directories(tmp_ / "12");
  DisplayNameWatch watch(tmp_fd_, shared_fd_, "host");
  watch.drain();
  EXPECT_FALSE(watch.session_dirs_absent(12));
  EXPECT_TRUE(watch.session_dirs_absent(13));

  fs::create_directories(tmp_ / "13");
  fs::rename(tmp_ / "12", tmp_ / "012");  // not a name Xpra writes for :12
  watch.drain();
  EXPECT_TRUE(watch.session_dirs_absent(12));
  EXPECT_FALSE(watch.session_dirs_absent(13));

  fs::create_directories(tmp_ / "xpra");
  watch.drain();
  EXPECT_FALSE(watch.session_dirs_absent(14)) << "<tmp>/xpra/14 may exist: the filesystem is asked";
  fs::rename(tmp_ / "xpra", tmp_ / "xpra-old");
  fs::remove(tmp_ / "13");
  watch.drain();
  EXPECT_TRUE(watch.session_dirs_absent(13));
  EXPECT_TRUE(watch.session_dirs_absent(14));
}

TEST_F(DisplayNameWatchTest, X11DirThatAppearsVanishesAndComesBackIsFollowed) {
  DisplayNameWatch watch(tmp_fd_, shared_fd_, "host");
  watch.drain();
  EXPECT_TRUE(watch.x11_socket_absent(3));  // no .X11-unix at all: vouched for by the /tmp watch
  fs::create_directories(tmp_ / ".X11-unix");
  touch(tmp_ / ".X11-unix" / "X3");  // before the watch has seen the directory appear
  watch.drain();
  EXPECT_FALSE(watch.x11_socket_absent(3));
  fs::remove_all(tmp_ / ".X11-unix");
  watch.drain();
  EXPECT_TRUE(watch.x11_socket_absent(3));
  fs::create_directories(tmp_ / ".X11-unix");
  watch.drain();
  touch(tmp_ / ".X11-unix" / "X4");
  watch.drain();
  EXPECT_FALSE(watch.x11_socket_absent(4));
  // Moved away and replaced by another directory that has X5.
  fs::create_directories(root_ / "other");
  touch(root_ / "other" / "X5");
  fs::rename(tmp_ / ".X11-unix", root_ / "moved");
  fs::rename(root_ / "other", tmp_ / ".X11-unix");
  watch.drain();
  EXPECT_FALSE(watch.x11_socket_absent(5));
  EXPECT_TRUE(watch.x11_socket_absent(4));
  touch(root_ / "moved" / "X6");  // in the old directory, no longer .X11-unix
  watch.drain();
  EXPECT_TRUE(watch.x11_socket_absent(6));
}

TEST_F(DisplayNameWatchTest, SymlinkedX11DirIsNeverVouchedFor) {
  fs::create_directories(root_ / "elsewhere");
  fs::create_symlink(root_ / "elsewhere", tmp_ / ".X11-unix");
  DisplayNameWatch watch(tmp_fd_, shared_fd_, "host");
  watch.drain();
  // Neither absent nor present: the probe must look at the filesystem.
  EXPECT_FALSE(watch.x11_socket_absent(1));
  touch(root_ / "elsewhere" / "X1");
  watch.drain();
  EXPECT_FALSE(watch.x11_socket_absent(1));
}

TEST_F(DisplayNameWatchTest, UserDirIsWatchedFromTheFirstQuestionAndAgainAfterItIsReplaced) {
  DisplayNameWatch watch(tmp_fd_, shared_fd_, "host");
  EXPECT_TRUE(watch.user_socket_absent(user_.string(), 12));
  touch(user_ / "host-12");
  watch.drain();
  EXPECT_FALSE(watch.user_socket_absent(user_.string(), 12));
  fs::remove_all(user_);
  fs::create_directories(user_);
  touch(user_ / "host-13");
  watch.drain();
  EXPECT_FALSE(watch.user_socket_absent(user_.string(), 13));
  EXPECT_TRUE(watch.user_socket_absent(user_.string(), 12));
  EXPECT_FALSE(watch.user_socket_absent((root_ / "missing").string(), 12));  // cannot watch: no vouching
}

TEST_F(DisplayNameWatchTest, UserDirIsIntactOnlyFromAVerificationUntilItsModeOrOwnerChanges) {
  DisplayNameWatch watch(tmp_fd_, shared_fd_, "host");
  watch.user_dir_verified(user_.string());  // not watched yet: no effect
  EXPECT_FALSE(watch.user_dir_intact(user_.string()));
  EXPECT_TRUE(watch.user_socket_absent(user_.string(), 1));  // starts the watch
  EXPECT_FALSE(watch.user_dir_intact(user_.string())) << "never intact before a verification";
  watch.user_dir_verified(user_.string());
  EXPECT_TRUE(watch.user_dir_intact(user_.string()));
  // Names and their modes inside it do not matter.
  touch(user_ / "host-2");
  ASSERT_EQ(::chmod((user_ / "host-2").c_str(), 0600), 0);
  watch.drain();
  EXPECT_TRUE(watch.user_dir_intact(user_.string()));
  // Its own mode does.
  ASSERT_EQ(::chmod(user_.c_str(), 0777), 0);
  watch.drain();
  EXPECT_FALSE(watch.user_dir_intact(user_.string()));
  watch.user_dir_verified(user_.string());
  EXPECT_TRUE(watch.user_dir_intact(user_.string()));
  ASSERT_EQ(::chown(user_.c_str(), 1234, 1234), 0);
  watch.drain();
  EXPECT_FALSE(watch.user_dir_intact(user_.string()));
  watch.user_dir_verified(user_.string());
  // Removed and made again: a new directory, not known to be intact.
  fs::remove_all(user_);
  fs::create_directories(user_);
  watch.drain();
  EXPECT_FALSE(watch.user_dir_intact(user_.string()));
}

TEST_F(DisplayNameWatchTest, QueueOverflowIsRescannedNotLost) {
  DisplayNameWatch watch(tmp_fd_, shared_fd_, "host");
  watch.drain();
  int max_events = 16384;
  std::ifstream("/proc/sys/fs/inotify/max_queued_events") >> max_events;
  // More events than the queue holds, without a drain in between.
  for (int i = 0; i <= max_events / 2 + 10; ++i) {
    const fs::path p = tmp_ / ("junk" + std::to_string(i));
    touch(p);
    fs::remove(p);
  }
  touch(tmp_ / ".X20-lock");
  const auto before = watch.rescans();
  watch.drain();
  EXPECT_GT(watch.rescans(), before);
  EXPECT_FALSE(watch.lock_absent(20));
  EXPECT_TRUE(watch.lock_absent(21));
}

TEST_F(DisplayNameWatchTest, RemovedTmpDirDisablesTheWatch) {
  DisplayNameWatch watch(tmp_fd_, shared_fd_, "host");
  watch.drain();
  EXPECT_TRUE(watch.lock_absent(1));
  fs::rename(tmp_, root_ / "tmp-moved");
  watch.drain();
  EXPECT_FALSE(watch.lock_absent(1));
  EXPECT_FALSE(watch.shared_socket_absent(1));
  EXPECT_FALSE(watch.user_socket_absent(user_.string(), 1));
}

}  // namespace
}  // namespace xpra_broker

namespace xpra_broker {
namespace {

// Issue 21, attack 7: what the watch read is counted, and names that are no
// display's are told apart from those that are (status shows both).
TEST_F(DisplayNameWatchTest, CountsEventsAndThoseAboutADisplaysName) {
  DisplayNameWatch watch(tmp_fd_, shared_fd_, "host");
  watch.drain();
  const auto start = watch.activity();
  for (int i = 0; i < 50; ++i) {
    touch(tmp_ / ("churn-" + std::to_string(i)));
    fs::remove(tmp_ / ("churn-" + std::to_string(i)));
    touch(tmp_ / (".Xchurn-" + std::to_string(i)));  // passes the first-byte filter, still no display's
    fs::remove(tmp_ / (".Xchurn-" + std::to_string(i)));
  }
  touch(tmp_ / ".X42-lock");
  watch.drain();
  const auto& after = watch.activity();
  EXPECT_EQ(after.events - start.events, 201u);  // 4 x 50 foreign events, and the lock
  EXPECT_EQ(after.display_name_events - start.display_name_events, 1u);
  EXPECT_FALSE(watch.lock_absent(42));
}

}  // namespace
}  // namespace xpra_broker
