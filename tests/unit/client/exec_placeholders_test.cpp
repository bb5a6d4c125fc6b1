// session_command.h: substitute_placeholders() for `xpra-request-display exec`.
#include "session_command.h"

#include <gtest/gtest.h>

#include <string>

namespace xpra_broker::client {
namespace {

const std::string kDir = "/run/xpra/1000";

std::string sub(const std::string& arg, std::uint32_t display = 123, const std::string& dir = kDir) {
  return substitute_placeholders(arg, display, dir);
}

TEST(ExecPlaceholdersTest, DisplayIsReplacedByTheNumber) {
  EXPECT_EQ(sub("{display}"), "123");
  EXPECT_EQ(sub(":{display}"), ":123");
  EXPECT_EQ(sub("--display=:{display}"), "--display=:123");
  EXPECT_EQ(sub("{display}", 0), "0");
  EXPECT_EQ(sub("{display}", 59535), "59535");
}

TEST(ExecPlaceholdersTest, RuntimeDirIsReplacedByThePath) {
  EXPECT_EQ(sub("{runtime_dir}"), kDir);
  EXPECT_EQ(sub("--socket-dir={runtime_dir}"), "--socket-dir=/run/xpra/1000");
  EXPECT_EQ(sub("--bind={runtime_dir}/xpra-server,auth=none"), "--bind=/run/xpra/1000/xpra-server,auth=none");
}

TEST(ExecPlaceholdersTest, BothInOneArgument) {
  EXPECT_EQ(sub("{runtime_dir}/log-{display}.txt"), "/run/xpra/1000/log-123.txt");
}

TEST(ExecPlaceholdersTest, RepeatedAndAdjacentPlaceholders) {
  EXPECT_EQ(sub("{display}{display}"), "123123");
  EXPECT_EQ(sub("{display}-{display}-{display}"), "123-123-123");
  EXPECT_EQ(sub("{runtime_dir}{runtime_dir}"), kDir + kDir);
  EXPECT_EQ(sub("{display}{runtime_dir}{display}"), "123" + kDir + "123");
}

TEST(ExecPlaceholdersTest, ArgumentsWithoutPlaceholdersAreUnchanged) {
  for (const std::string arg : {"", "xpra", "start", "--html=on", "a b c", "100%", "$DISPLAY", "-"})
    EXPECT_EQ(sub(arg), arg);
}

TEST(ExecPlaceholdersTest, UnknownOrBrokenBracesAreLeftAlone) {
  for (const std::string arg : {"{}", "{user}", "{DISPLAY}", "{ display }", "{display", "display}", "{runtime_dir",
                                "{runtime-dir}", "{{", "}}", "}{", "{displayx}", "{display_}", "{runtime_dirs}"})
    EXPECT_EQ(sub(arg), arg) << arg;
}

TEST(ExecPlaceholdersTest, PlaceholdersNextToOtherBraces) {
  EXPECT_EQ(sub("{{display}}"), "{123}");
  EXPECT_EQ(sub("{{display}"), "{123");
  EXPECT_EQ(sub("{display}}"), "123}");
  EXPECT_EQ(sub("{x}{display}{y}"), "{x}123{y}");
  EXPECT_EQ(sub("{runtime_dir{display}}"), "{runtime_dir123}");
}

TEST(ExecPlaceholdersTest, SubstitutedTextIsNotScannedAgain) {
  // A runtime dir that happens to contain a placeholder is inserted as is.
  EXPECT_EQ(sub("{runtime_dir}", 7, "/tmp/{display}"), "/tmp/{display}");
  EXPECT_EQ(sub("{runtime_dir}", 7, ""), "");
}

TEST(ExecPlaceholdersTest, PartialPlaceholderAtTheEnd) {
  EXPECT_EQ(sub("x{displa"), "x{displa");
  EXPECT_EQ(sub("x{runtime_di"), "x{runtime_di");
  EXPECT_EQ(sub("{"), "{");
}

}  // namespace
}  // namespace xpra_broker::client
