// survey_runtime_space: who uses the runtime dir's space (host/runtime_space.h).
// A private temporary dir standing in for the runtime dir; root hands its
// <uid> directories to those uids as the broker does.
#include "host/runtime_space.h"

#include <fcntl.h>
#include <stdlib.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <string>

namespace xpra_broker {
namespace {

namespace fs = std::filesystem;

class RuntimeSpaceTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (::geteuid() != 0) GTEST_SKIP() << "needs root to hand directories to other uids";
    char templ[] = "/tmp/xpb-runtime-space-XXXXXX";
    ASSERT_NE(::mkdtemp(templ), nullptr);
    root_ = templ;
    fd_ = ::open(root_.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC);
    ASSERT_GE(fd_, 0);
  }
  void TearDown() override {
    if (fd_ >= 0) ::close(fd_);
    if (!root_.empty()) fs::remove_all(root_);
  }
  // <root>/<dir> owned by `owner`, with `bytes` in one file.
  void user_dir(const std::string& dir, uid_t owner, std::size_t bytes) {
    fs::create_directories(root_ / dir);
    std::ofstream(root_ / dir / "data") << std::string(bytes, 'x');
    ASSERT_EQ(::chown((root_ / dir).c_str(), owner, 0), 0);
    ASSERT_EQ(::chown((root_ / dir / "data").c_str(), owner, 0), 0);
  }
  static const RuntimeDirUser* find(const RuntimeSpace& s, uid_t uid) {
    for (const auto& u : s.users)
      if (u.uid == uid) return &u;
    return nullptr;
  }
  fs::path root_;
  int fd_ = -1;
};

TEST_F(RuntimeSpaceTest, NamesEachUsersDirectoryLargestFirstAndOnlyHersWhenAsked) {
  user_dir("4243001", 4243001, 200000);
  user_dir("4243002", 4243002, 5000);
  const auto all = survey_runtime_space(fd_, std::nullopt, true);
  ASSERT_EQ(all.users.size(), 2u);
  EXPECT_EQ(all.users[0].uid, 4243001u);
  EXPECT_GE(all.users[0].bytes, 200000u);
  EXPECT_GT(all.size_bytes, 0u);
  // Asked again (a second status): the same answer, not an exhausted stream.
  const auto own = survey_runtime_space(fd_, 4243002u, true);
  ASSERT_EQ(own.users.size(), 1u);
  EXPECT_EQ(own.users[0].uid, 4243002u);
  EXPECT_EQ(own.unattributed_bytes, 0u) << "a user's own view says nothing of the others'";
  EXPECT_NE(find(survey_runtime_space(fd_, std::nullopt, true), 4243001u), nullptr);
}

TEST_F(RuntimeSpaceTest, ADirectoryNotOwnedByItsUidAndLinksAreNotCounted) {
  user_dir("4243003", 4243004, 100000);  // named for one uid, owned by another
  fs::create_directory_symlink("/usr", root_ / "4243005");
  const auto all = survey_runtime_space(fd_, std::nullopt, true);
  EXPECT_EQ(find(all, 4243003u), nullptr);
  EXPECT_EQ(find(all, 4243004u), nullptr);
  EXPECT_EQ(find(all, 4243005u), nullptr) << "a symlink was followed";
}

TEST_F(RuntimeSpaceTest, UsersAreSurveyedOnlyWhenTheFilesystemRunsLow) {
  user_dir("4243006", 4243006, 1000);
  const auto s = survey_runtime_space(fd_, std::nullopt);
  // /tmp of the test host may itself be short of space: then it is surveyed.
  if (s.running_low) EXPECT_NE(find(s, 4243006u), nullptr);
  else EXPECT_TRUE(s.users.empty());
}

}  // namespace
}  // namespace xpra_broker
