// session_command.h: the purpose `exec` acquires with, and the argv and
// environment its command gets from the lease.
#include "session_command.h"

#include <unistd.h>

#include <gtest/gtest.h>

#include <cstdlib>
#include <map>
#include <optional>
#include <string>

namespace xpra_broker::client {
namespace {

v1::Lease lease_on(std::uint32_t display) {
  v1::Lease lease;
  lease.set_id("lease-1");
  lease.set_display(display);
  lease.set_runtime_dir("/run/xpra/users/1000");
  return lease;
}

std::map<std::string, EnvSetting> by_name(const std::vector<EnvSetting>& env) {
  std::map<std::string, EnvSetting> out;
  for (const auto& e : env) EXPECT_TRUE(out.emplace(e.name, e).second) << e.name << " set twice";
  return out;
}

// Sets or unsets a variable of this process for one test, and puts it back.
class ScopedEnv {
 public:
  ScopedEnv(const char* name, const char* value) : name_(name) {
    if (const char* old = std::getenv(name)) old_ = old;
    value ? ::setenv(name, value, 1) : ::unsetenv(name);
  }
  ~ScopedEnv() { old_ ? ::setenv(name_, old_->c_str(), 1) : ::unsetenv(name_); }

 private:
  const char* name_;
  std::optional<std::string> old_;
};

TEST(AcquirePurposeTest, WithoutOneItIsTheProgramsBaseName) {
  EXPECT_EQ(acquire_purpose("", "/usr/bin/xterm"), "xterm");
  EXPECT_EQ(acquire_purpose("", "xterm"), "xterm");
  EXPECT_EQ(acquire_purpose("my notebook", "/usr/bin/xterm"), "my notebook");
}

TEST(AcquirePurposeTest, ControlCharactersAreRefusedInAGivenPurposeAndEscapedInAProgramName) {
  EXPECT_EQ(acquire_purpose("two\nlines", "xterm"), std::nullopt);
  EXPECT_EQ(acquire_purpose("bell\a", "xterm"), std::nullopt);
  const auto from_program = acquire_purpose("", "/tmp/evil\nname");
  ASSERT_TRUE(from_program);
  EXPECT_EQ(from_program->find('\n'), std::string::npos) << *from_program;
}

TEST(AcquirePurposeTest, CutAt128BytesNeverInsideAUtf8Sequence) {
  EXPECT_EQ(acquire_purpose(std::string(200, 'a'), "x")->size(), 128u);
  // 127 ASCII bytes, then a 2-byte "é" across the 128-byte mark: dropped whole.
  const auto cut = acquire_purpose(std::string(127, 'a') + "\xc3\xa9" + "b", "x");
  ASSERT_TRUE(cut);
  EXPECT_EQ(*cut, std::string(127, 'a'));
}

TEST(LeaseEnvironmentTest, TheDisplayAndTheLeaseForEveryCommand) {
  const auto env = by_name(lease_environment(lease_on(1201), false, 0));
  EXPECT_EQ(env.at("DISPLAY").value, ":1201");
  EXPECT_EQ(env.at("XPRA_BROKER_DISPLAY").value, "1201");
  EXPECT_EQ(env.at("XPRA_BROKER_RUNTIME_DIR").value, "/run/xpra/users/1000");
  EXPECT_EQ(env.at("XPRA_BROKER_LEASE").value, "lease-1");
  for (const auto& [name, e] : env) EXPECT_TRUE(e.overwrite) << name;
  EXPECT_EQ(env.count("XPRA_AUTO_ABSTRACT_SOCKET"), 0u) << "only under --xpra";
  EXPECT_EQ(env.count("XPRA_WAIT_PROBE_TIMEOUT"), 0u) << "only under --xpra";
  EXPECT_EQ(env.count("XDG_RUNTIME_DIR"), 0u) << "only under --xpra";
}

TEST(LeaseEnvironmentTest, UnderXpraNoSharedAbstractSocketUnlessTheUserChose) {
  const auto env = by_name(lease_environment(lease_on(1201), true, 6));
  ASSERT_EQ(env.count("XPRA_AUTO_ABSTRACT_SOCKET"), 1u);
  EXPECT_EQ(env.at("XPRA_AUTO_ABSTRACT_SOCKET").value, "0");
  EXPECT_FALSE(env.at("XPRA_AUTO_ABSTRACT_SOCKET").overwrite) << "a value the user set wins";
}

TEST(LeaseEnvironmentTest, UnderXpraEveryVersionRemovesADeadSocketOnItsNumberWithoutWaiting) {
  for (int major : {3, 5, 6}) {
    const auto env = by_name(lease_environment(lease_on(1201), true, major));
    ASSERT_EQ(env.count("XPRA_WAIT_PROBE_TIMEOUT"), 1u) << "Xpra " << major;
    EXPECT_EQ(env.at("XPRA_WAIT_PROBE_TIMEOUT").value, "0");
    EXPECT_FALSE(env.at("XPRA_WAIT_PROBE_TIMEOUT").overwrite) << "a value the user set wins";
  }
}

TEST(LeaseEnvironmentTest, Xpra5WithoutARuntimeDirGetsTheLeasesInsteadOfTmp) {
  const bool user_runtime_dir = ::access(("/run/user/" + std::to_string(::getuid())).c_str(), F_OK) == 0;
  {
    ScopedEnv unset("XDG_RUNTIME_DIR", nullptr);
    const auto env = by_name(lease_environment(lease_on(1201), true, 5));
    if (user_runtime_dir)
      EXPECT_EQ(env.count("XDG_RUNTIME_DIR"), 0u) << "/run/user/UID exists: Xpra uses it";
    else
      EXPECT_EQ(env.at("XDG_RUNTIME_DIR").value, "/run/xpra/users/1000");
    EXPECT_EQ(by_name(lease_environment(lease_on(1201), true, 4)).count("XDG_RUNTIME_DIR"), 0u)
        << "Xpra 4 keeps its state elsewhere";
  }
  ScopedEnv set("XDG_RUNTIME_DIR", "/run/user/4242");
  EXPECT_EQ(by_name(lease_environment(lease_on(1201), true, 6)).count("XDG_RUNTIME_DIR"), 0u)
      << "a runtime dir of the user's own is left alone";
}

TEST(SessionCommandTest, PlaceholdersAreReplacedInEveryArgument) {
  const auto command = session_command({"sh", "-c", "echo {display}", "{runtime_dir}/x"}, false, lease_on(1202));
  EXPECT_EQ(command.args, (std::vector<std::string>{"sh", "-c", "echo 1202", "/run/xpra/users/1000/x"}));
  EXPECT_EQ(by_name(command.env).at("DISPLAY").value, ":1202");
}

}  // namespace
}  // namespace xpra_broker::client
