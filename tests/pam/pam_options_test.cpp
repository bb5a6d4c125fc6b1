// The module's option parser: every option, every refused spelling, and that
// nothing unknown slips through silently.
#include "pam_options.h"

#include <gtest/gtest.h>

#include <initializer_list>
#include <vector>

namespace xpra_broker::pam {
namespace {

ParsedOptions parse(std::initializer_list<const char*> args) {
  const std::vector<const char*> v(args);
  return parse_module_options(v);
}

TEST(PamOptions, DefaultsWithoutArguments) {
  const auto p = parse({});
  ASSERT_TRUE(p.ok());
  EXPECT_EQ(p.options.socket, "/run/xpra/broker.sock");
  EXPECT_EQ(p.options.timeout, std::chrono::milliseconds(2000));
  EXPECT_EQ(p.options.fail, FailMode::open);
  EXPECT_FALSE(p.options.reap_leases);
  EXPECT_FALSE(p.options.debug);
}

TEST(PamOptions, EveryOptionIsApplied) {
  const auto p = parse({"socket=/tmp/x/broker.sock", "timeout=500", "fail=closed", "reap=yes", "debug"});
  ASSERT_TRUE(p.ok()) << p.errors.front();
  EXPECT_EQ(p.options.socket, "/tmp/x/broker.sock");
  EXPECT_EQ(p.options.timeout, std::chrono::milliseconds(500));
  EXPECT_EQ(p.options.fail, FailMode::closed);
  EXPECT_TRUE(p.options.reap_leases);
  EXPECT_TRUE(p.options.debug);
}

TEST(PamOptions, LaterOccurrenceWins) {
  const auto p = parse({"fail=closed", "fail=open", "reap=yes", "reap=no", "timeout=10", "timeout=20"});
  ASSERT_TRUE(p.ok());
  EXPECT_EQ(p.options.fail, FailMode::open);
  EXPECT_FALSE(p.options.reap_leases);
  EXPECT_EQ(p.options.timeout, std::chrono::milliseconds(20));
}

TEST(PamOptions, TimeoutBounds) {
  EXPECT_TRUE(parse({"timeout=1"}).ok());
  EXPECT_TRUE(parse({"timeout=60000"}).ok());
  for (const char* bad : {"timeout=0", "timeout=60001", "timeout=-5", "timeout=", "timeout=2s", "timeout=1.5",
                          "timeout= 5", "timeout=99999999999999999999999"}) {
    const auto p = parse({bad});
    ASSERT_EQ(p.errors.size(), 1u) << bad;
    EXPECT_NE(p.errors[0].find("milliseconds from 1 to 60000"), std::string::npos) << p.errors[0];
  }
}

TEST(PamOptions, SocketMustBeAbsoluteAndFit) {
  EXPECT_FALSE(parse({"socket=relative/broker.sock"}).ok());
  EXPECT_FALSE(parse({"socket="}).ok());
  EXPECT_TRUE(parse({("socket=/" + std::string(106, 'a')).c_str()}).ok());
  const std::string too_long = "socket=/" + std::string(107, 'a');
  const auto p = parse({too_long.c_str()});
  ASSERT_EQ(p.errors.size(), 1u);
  EXPECT_NE(p.errors[0].find("107 bytes"), std::string::npos);
  EXPECT_FALSE(parse({"socket=/run/x\tbroker"}).ok());
}

TEST(PamOptions, EnumValuesAreExact) {
  for (const char* bad : {"fail=Open", "fail=yes", "fail=", "reap=true", "reap=1", "reap=", "reap=YES"}) {
    const auto p = parse({bad});
    EXPECT_EQ(p.errors.size(), 1u) << bad;
  }
}

TEST(PamOptions, UnknownOptionsAreReportedNotIgnored) {
  const auto p = parse({"debug", "reap=yes", "kill_user_processes", "sockett=/x", "fail=closed"});
  ASSERT_EQ(p.errors.size(), 2u);
  EXPECT_NE(p.errors[0].find("unknown option 'kill_user_processes'"), std::string::npos) << p.errors[0];
  EXPECT_NE(p.errors[0].find("known options: socket=PATH"), std::string::npos);
  EXPECT_NE(p.errors[1].find("unknown option 'sockett=/x'"), std::string::npos) << p.errors[1];
}

TEST(PamOptions, ValuedOptionWithoutValue) {
  for (const char* bare : {"socket", "timeout", "fail", "reap"}) {
    const auto p = parse({bare});
    ASSERT_EQ(p.errors.size(), 1u) << bare;
    EXPECT_NE(p.errors[0].find("needs a value"), std::string::npos) << p.errors[0];
  }
}

TEST(PamOptions, DebugTakesNoValue) {
  const auto p = parse({"debug=1"});
  ASSERT_EQ(p.errors.size(), 1u);
  EXPECT_NE(p.errors[0].find("takes no value"), std::string::npos);
}

TEST(PamOptions, EveryBadArgumentIsReportedOnce) {
  const auto p = parse({"timeout=x", "fail=maybe", "nonsense", "reap=perhaps"});
  EXPECT_EQ(p.errors.size(), 4u);
}

TEST(PamOptions, ErrorsQuoteArgumentsSafely) {
  const std::string huge = "x" + std::string(5000, 'y') + "\n";
  const auto p = parse({huge.c_str(), "bad\x1b[31m"});
  ASSERT_EQ(p.errors.size(), 2u);
  EXPECT_LT(p.errors[0].size(), 400u);
  EXPECT_EQ(p.errors[1].find('\x1b'), std::string::npos);
}

TEST(PamOptions, NullEntriesAreSkipped) {
  const std::vector<const char*> v{"debug", nullptr};
  EXPECT_TRUE(parse_module_options(v).ok());
}

}  // namespace
}  // namespace xpra_broker::pam
