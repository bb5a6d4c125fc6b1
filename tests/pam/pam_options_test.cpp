// The module's option parser (C, pam/pam_options.c): every option, every
// refused spelling, and that nothing unknown slips through silently.
#include "pam_options.h"

#include <gtest/gtest.h>

#include <initializer_list>
#include <string>
#include <vector>

namespace {

struct Parsed {
  xpb_module_options options{};
  std::vector<std::string> errors;
  int returned = 0;

  bool ok() const { return errors.empty() && returned == 0; }
};

Parsed parse_vector(const std::vector<const char*>& args) {
  Parsed p;
  p.returned = xpb_parse_module_options(
      static_cast<int>(args.size()), args.data(), &p.options,
      [](void* context, const char* message) { static_cast<Parsed*>(context)->errors.push_back(message); }, &p);
  // The count returned is the count reported.
  EXPECT_EQ(p.returned, static_cast<int>(p.errors.size()));
  return p;
}

Parsed parse(std::initializer_list<const char*> args) { return parse_vector(std::vector<const char*>(args)); }

TEST(PamOptions, DefaultsWithoutArguments) {
  const auto p = parse({});
  ASSERT_TRUE(p.ok());
  EXPECT_STREQ(p.options.socket, "/run/xpra/broker.sock");
  EXPECT_EQ(p.options.timeout_ms, 2000);
  EXPECT_EQ(p.options.fail, XPB_FAIL_OPEN);
  EXPECT_FALSE(p.options.reap_leases);
  EXPECT_FALSE(p.options.debug);
}

TEST(PamOptions, EveryOptionIsApplied) {
  const auto p = parse({"socket=/tmp/x/broker.sock", "timeout=500", "fail=closed", "reap=yes", "debug"});
  ASSERT_TRUE(p.ok()) << p.errors.front();
  EXPECT_STREQ(p.options.socket, "/tmp/x/broker.sock");
  EXPECT_EQ(p.options.timeout_ms, 500);
  EXPECT_EQ(p.options.fail, XPB_FAIL_CLOSED);
  EXPECT_TRUE(p.options.reap_leases);
  EXPECT_TRUE(p.options.debug);
  EXPECT_STREQ(xpb_fail_mode_name(p.options.fail), "closed");
  EXPECT_STREQ(xpb_fail_mode_name(XPB_FAIL_OPEN), "open");
}

TEST(PamOptions, LaterOccurrenceWins) {
  const auto p = parse({"fail=closed", "fail=open", "reap=yes", "reap=no", "timeout=10", "timeout=20"});
  ASSERT_TRUE(p.ok());
  EXPECT_EQ(p.options.fail, XPB_FAIL_OPEN);
  EXPECT_FALSE(p.options.reap_leases);
  EXPECT_EQ(p.options.timeout_ms, 20);
}

TEST(PamOptions, TimeoutBounds) {
  EXPECT_TRUE(parse({"timeout=1"}).ok());
  EXPECT_TRUE(parse({"timeout=60000"}).ok());
  EXPECT_EQ(parse({"timeout=007"}).options.timeout_ms, 7);
  for (const char* bad : {"timeout=0", "timeout=60001", "timeout=-5", "timeout=+5", "timeout=", "timeout=2s",
                          "timeout=1.5", "timeout= 5", "timeout=99999999999999999999999"}) {
    const auto p = parse({bad});
    ASSERT_EQ(p.errors.size(), 1u) << bad;
    EXPECT_NE(p.errors[0].find("milliseconds from 1 to 60000"), std::string::npos) << p.errors[0];
  }
}

TEST(PamOptions, SocketMustBeAbsoluteAndFit) {
  EXPECT_FALSE(parse({"socket=relative/broker.sock"}).ok());
  EXPECT_FALSE(parse({"socket="}).ok());
  const std::string longest = "socket=/" + std::string(106, 'a');
  const auto fits = parse({longest.c_str()});
  ASSERT_TRUE(fits.ok());
  EXPECT_EQ(std::string(fits.options.socket), longest.substr(7));
  const std::string too_long = "socket=/" + std::string(107, 'a');
  const auto p = parse({too_long.c_str()});
  ASSERT_EQ(p.errors.size(), 1u);
  EXPECT_NE(p.errors[0].find("107 bytes"), std::string::npos);
  EXPECT_STREQ(p.options.socket, "/run/xpra/broker.sock") << "a refused value must not be applied";
  EXPECT_FALSE(parse({"socket=/run/x\tbroker"}).ok());
  EXPECT_FALSE(parse({"socket=/run/x\x7f"}).ok());
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
    EXPECT_EQ(p.errors[0], "option '" + std::string(bare) + "' needs a value (" + bare + "=...)");
  }
}

TEST(PamOptions, DebugTakesNoValue) {
  const auto p = parse({"debug=1"});
  ASSERT_EQ(p.errors.size(), 1u);
  EXPECT_EQ(p.errors[0], "bad option 'debug=1': debug takes no value (write just 'debug')");
}

// The exact wording the service-file author reads in the log.
TEST(PamOptions, BadValueMessageNamesOptionAndRule) {
  const auto p = parse({"timeout=abc", "fail=maybe"});
  ASSERT_EQ(p.errors.size(), 2u);
  EXPECT_EQ(p.errors[0], "bad option 'timeout=abc': timeout must be a whole number of milliseconds from 1 to 60000");
  EXPECT_EQ(p.errors[1],
            "bad option 'fail=maybe': fail must be 'open' (let the login through) or 'closed' (refuse the session)");
}

TEST(PamOptions, EveryBadArgumentIsReportedOnce) {
  const auto p = parse({"timeout=x", "fail=maybe", "nonsense", "reap=perhaps"});
  EXPECT_EQ(p.errors.size(), 4u);
}

TEST(PamOptions, ErrorsQuoteArgumentsSafely) {
  const std::string huge = "x" + std::string(5000, 'y') + "\n";
  const std::string huge_valued = "socket=/" + std::string(5000, 'y');
  const auto p = parse({huge.c_str(), "bad\x1b[31m", huge_valued.c_str()});
  ASSERT_EQ(p.errors.size(), 3u);
  EXPECT_LT(p.errors[0].size(), 400u);
  EXPECT_NE(p.errors[0].find("yyy...'"), std::string::npos) << p.errors[0];
  EXPECT_EQ(p.errors[1].find('\x1b'), std::string::npos);
  EXPECT_NE(p.errors[1].find("'bad?[31m'"), std::string::npos) << p.errors[1];
  EXPECT_LT(p.errors[2].size(), XPB_OPTION_ERROR_MAX);
  EXPECT_NE(p.errors[2].find("longer than 107 bytes"), std::string::npos) << p.errors[2];
}

TEST(PamOptions, NullEntriesAreSkipped) {
  EXPECT_TRUE(parse_vector({"debug", nullptr}).ok());
}

TEST(PamOptions, NoCallbackStillCounts) {
  const char* args[] = {"nonsense", "debug"};
  xpb_module_options options{};
  EXPECT_EQ(xpb_parse_module_options(2, args, &options, nullptr, nullptr), 1);
  EXPECT_TRUE(options.debug);
}

}  // namespace
