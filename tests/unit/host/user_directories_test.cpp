// user_directories.h on a real temporary directory: creation, repair, and
// refusal to follow anything planted at <runtime-dir>/<uid>. Runs as root
// (like CI) so it can hand directories to made-up uids and plant files of
// other owners.
#include "host/user_directories.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <cstdio>
#include <fstream>
#include <sstream>
#include <string>

#include "test_support.h"

namespace xpra_broker {
namespace {

using testing::Contains;
using testing::TempDir;

constexpr gid_t kBrokerGroup = 5000;
constexpr uid_t kAlice = 4001;
constexpr uid_t kBob = 4002;
constexpr uid_t kStranger = 4999;

struct stat lstat_of(const std::string& path) {
  struct stat st {};
  EXPECT_EQ(::lstat(path.c_str(), &st), 0) << path;
  return st;
}

bool exists(const std::string& path) {
  struct stat st {};
  return ::lstat(path.c_str(), &st) == 0;
}

std::string read_all(const std::string& path) {
  std::ifstream in(path);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

class UserDirectoriesTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_EQ(::geteuid(), 0u) << "these tests chown to test uids: run them as root, as CI does";
    ASSERT_TRUE(testing::restore_effective_capabilities());
    runtime_ = tmp_.path() + "/run";
    ASSERT_EQ(::mkdir(runtime_.c_str(), 0755), 0);
    UniqueFd fd(::open(runtime_.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
    ASSERT_TRUE(fd);
    dirs_ = std::make_unique<UserDirectories>(std::move(fd), runtime_, kBrokerGroup);
  }
  // The test's own setup steps need CAP_CHOWN / CAP_FOWNER back after an
  // ensure() (see restore_effective_capabilities()).
  void as_root() { ASSERT_TRUE(testing::restore_effective_capabilities()); }

  std::string user_path(uid_t uid) const { return runtime_ + "/" + std::to_string(uid); }

  void expect_proper_dir(uid_t uid) {
    const struct stat st = lstat_of(user_path(uid));
    EXPECT_TRUE(S_ISDIR(st.st_mode));
    EXPECT_EQ(st.st_uid, uid);
    EXPECT_EQ(st.st_gid, kBrokerGroup);
    EXPECT_EQ(st.st_mode & 07777, 0770u) << std::oct << (st.st_mode & 07777);
  }

  TempDir tmp_;
  std::string runtime_;
  std::unique_ptr<UserDirectories> dirs_;
};

TEST_F(UserDirectoriesTest, PathForIsRuntimeDirSlashUid) {
  EXPECT_EQ(dirs_->path_for(1000), runtime_ + "/1000");
  EXPECT_EQ(dirs_->path_for(0), runtime_ + "/0");
  EXPECT_EQ(UserDirectories::kMode, 0770u);
}

TEST_F(UserDirectoriesTest, CreatesTheDirectoryWithModeOwnerAndGroup) {
  const auto r = dirs_->ensure(kAlice);
  ASSERT_TRUE(r.ok) << r.error;
  EXPECT_EQ(r.path, user_path(kAlice));
  EXPECT_TRUE(r.error.empty());
  expect_proper_dir(kAlice);
}

TEST_F(UserDirectoriesTest, EachUidGetsItsOwnDirectory) {
  ASSERT_TRUE(dirs_->ensure(kAlice).ok);
  ASSERT_TRUE(dirs_->ensure(kBob).ok);
  expect_proper_dir(kAlice);
  expect_proper_dir(kBob);
}

TEST_F(UserDirectoriesTest, EnsureIsIdempotent) {
  ASSERT_TRUE(dirs_->ensure(kAlice).ok);
  const ino_t inode = lstat_of(user_path(kAlice)).st_ino;
  // Something of the user's inside it survives.
  as_root();
  std::ofstream(user_path(kAlice) + "/xpra-server") << "x";
  for (int i = 0; i < 3; ++i) {
    const auto r = dirs_->ensure(kAlice);
    ASSERT_TRUE(r.ok) << r.error;
  }
  EXPECT_EQ(lstat_of(user_path(kAlice)).st_ino, inode) << "an existing directory is kept, not replaced";
  EXPECT_TRUE(exists(user_path(kAlice) + "/xpra-server"));
  expect_proper_dir(kAlice);
}

TEST_F(UserDirectoriesTest, RepairsAWrongMode) {
  for (mode_t wrong : {0755, 0700, 0777, 01777, 02770, 0000, 0771}) {
    SCOPED_TRACE(wrong);
    ASSERT_TRUE(dirs_->ensure(kAlice).ok);
    as_root();
    ASSERT_EQ(::chmod(user_path(kAlice).c_str(), wrong), 0);
    const auto r = dirs_->ensure(kAlice);
    ASSERT_TRUE(r.ok) << r.error;
    expect_proper_dir(kAlice);
  }
}

TEST_F(UserDirectoriesTest, RepairsAWrongOwnerOrGroup) {
  ASSERT_TRUE(dirs_->ensure(kAlice).ok);
  struct Owner {
    uid_t uid;
    gid_t gid;
  };
  for (Owner wrong : {Owner{kStranger, kStranger}, Owner{0, 0}, Owner{kAlice, 0}, Owner{kStranger, kBrokerGroup}}) {
    SCOPED_TRACE(std::to_string(wrong.uid) + ":" + std::to_string(wrong.gid));
    as_root();
    ASSERT_EQ(::chown(user_path(kAlice).c_str(), wrong.uid, wrong.gid), 0);
    const auto r = dirs_->ensure(kAlice);
    ASSERT_TRUE(r.ok) << r.error;
    expect_proper_dir(kAlice);
  }
}

TEST_F(UserDirectoriesTest, RepairsADirectoryCreatedBySomeoneElse) {
  ASSERT_EQ(::mkdir(user_path(kAlice).c_str(), 0777), 0);
  ASSERT_EQ(::chmod(user_path(kAlice).c_str(), 0777), 0);
  ASSERT_EQ(::chown(user_path(kAlice).c_str(), kStranger, kStranger), 0);
  const auto r = dirs_->ensure(kAlice);
  ASSERT_TRUE(r.ok) << r.error;
  expect_proper_dir(kAlice);
}

// A symlink planted at <runtime-dir>/<uid> (CVE-2011-4029 style): refused,
// and the target's owner and mode stay exactly as they were.
TEST_F(UserDirectoriesTest, RefusesASymlinkToADirectoryAndNeverTouchesTheTarget) {
  struct Target {
    uid_t uid;
    gid_t gid;
    mode_t mode;
  };
  for (Target t : {Target{0, 0, 0755}, Target{kStranger, kStranger, 0700}, Target{0, 0, 01777}}) {
    SCOPED_TRACE(std::to_string(t.uid) + " " + std::to_string(t.mode));
    as_root();
    const std::string target = tmp_.path() + "/victim-" + std::to_string(t.uid) + "-" + std::to_string(t.mode);
    ASSERT_EQ(::mkdir(target.c_str(), 0700), 0);
    ASSERT_EQ(::chmod(target.c_str(), t.mode), 0);
    ASSERT_EQ(::chown(target.c_str(), t.uid, t.gid), 0);
    ::unlink(user_path(kAlice).c_str());
    ASSERT_EQ(::symlink(target.c_str(), user_path(kAlice).c_str()), 0);

    const auto r = dirs_->ensure(kAlice);
    EXPECT_FALSE(r.ok);
    EXPECT_FALSE(r.error.empty());
    EXPECT_TRUE(Contains(r.error, user_path(kAlice)));

    const struct stat after = lstat_of(target);
    EXPECT_EQ(after.st_uid, t.uid) << "the symlink was followed: target chowned";
    EXPECT_EQ(after.st_gid, t.gid) << "the symlink was followed: target chgrp'd";
    EXPECT_EQ(after.st_mode & 07777, t.mode) << "the symlink was followed: target chmod'ed";
    EXPECT_TRUE(S_ISLNK(lstat_of(user_path(kAlice)).st_mode)) << "the planted link itself is left for the admin";
  }
}

TEST_F(UserDirectoriesTest, RefusesADanglingSymlinkAndCreatesNothingAtItsTarget) {
  const std::string target = tmp_.path() + "/does-not-exist";
  ASSERT_EQ(::symlink(target.c_str(), user_path(kAlice).c_str()), 0);
  const auto r = dirs_->ensure(kAlice);
  EXPECT_FALSE(r.ok);
  EXPECT_FALSE(r.error.empty());
  EXPECT_FALSE(exists(target)) << "mkdir followed the link";
}

TEST_F(UserDirectoriesTest, RefusesASymlinkToAFile) {
  const std::string target = tmp_.path() + "/passwd-like";
  std::ofstream(target) << "root:x:0:0\n";
  ASSERT_EQ(::chmod(target.c_str(), 0644), 0);
  ASSERT_EQ(::symlink(target.c_str(), user_path(kAlice).c_str()), 0);
  const auto r = dirs_->ensure(kAlice);
  EXPECT_FALSE(r.ok);
  const struct stat st = lstat_of(target);
  EXPECT_EQ(st.st_uid, 0u);
  EXPECT_EQ(st.st_mode & 07777, 0644u);
  EXPECT_EQ(read_all(target), "root:x:0:0\n");
}

TEST_F(UserDirectoriesTest, RegularFileInTheWayIsAnError) {
  std::ofstream(user_path(kAlice)) << "in the way";
  ASSERT_EQ(::chmod(user_path(kAlice).c_str(), 0600), 0);
  ASSERT_EQ(::chown(user_path(kAlice).c_str(), kStranger, kStranger), 0);
  const auto r = dirs_->ensure(kAlice);
  EXPECT_FALSE(r.ok);
  EXPECT_TRUE(Contains(r.error, user_path(kAlice)));
  const struct stat st = lstat_of(user_path(kAlice));
  EXPECT_TRUE(S_ISREG(st.st_mode));
  EXPECT_EQ(st.st_uid, kStranger) << "the file in the way must not be chowned";
  EXPECT_EQ(st.st_mode & 07777, 0600u) << "the file in the way must not be chmod'ed";
  EXPECT_EQ(read_all(user_path(kAlice)), "in the way");
}

TEST_F(UserDirectoriesTest, FailureForOneUidDoesNotAffectAnother) {
  std::ofstream(user_path(kAlice)) << "in the way";
  EXPECT_FALSE(dirs_->ensure(kAlice).ok);
  ASSERT_TRUE(dirs_->ensure(kBob).ok);
  expect_proper_dir(kBob);
}

// Everything happens relative to the runtime dir fd opened at start-up: if
// the runtime path is later swapped for a link elsewhere, the directory is
// still made in the real runtime dir, never at the link's target.
TEST_F(UserDirectoriesTest, WorksRelativeToTheRuntimeDirFdNotItsPath) {
  const std::string moved = tmp_.path() + "/run.moved";
  const std::string elsewhere = tmp_.path() + "/elsewhere";
  ASSERT_EQ(::mkdir(elsewhere.c_str(), 0755), 0);
  ASSERT_EQ(::rename(runtime_.c_str(), moved.c_str()), 0);
  ASSERT_EQ(::symlink(elsewhere.c_str(), runtime_.c_str()), 0);
  const auto r = dirs_->ensure(kAlice);
  ASSERT_TRUE(r.ok) << r.error;
  EXPECT_FALSE(exists(elsewhere + "/4001"));
  const struct stat st = lstat_of(moved + "/4001");
  EXPECT_TRUE(S_ISDIR(st.st_mode));
  EXPECT_EQ(st.st_uid, kAlice);
}

}  // namespace
}  // namespace xpra_broker
