// The journal fields a log line names (log_sink.h): read from the broker's
// own lease=, uid=N(name) and display=:N words, never from quoted text a
// client or another user chose.
#include "log_sink.h"

#include <gtest/gtest.h>

#include <set>

namespace xpra_broker {
namespace {

using Fields = std::vector<std::pair<std::string, std::string>>;

TEST(JournalFieldsTest, ALeaseLineNamesItsLeaseUserAndDisplay) {
  EXPECT_EQ(journal_fields("lease=0f21a833c99a2436 uid=1001(xpb-alice) pid=31000 display=:700 acquired"),
            (Fields{{"LEASE", "0f21a833c99a2436"}, {"DISPLAY", "700"}, {"LEASE_UID", "1001"}, {"LEASE_USER", "xpb-alice"}}));
}

TEST(JournalFieldsTest, AUidWithoutANameAndLinesWithoutTokens) {
  EXPECT_EQ(journal_fields("lease=ab uid=1001 display=:5 from the journal"),
            (Fields{{"LEASE", "ab"}, {"DISPLAY", "5"}, {"LEASE_UID", "1001"}}));
  EXPECT_TRUE(journal_fields("xpra-brokerd 0.1.0 serving /run/xpra/broker.sock").empty());
  EXPECT_TRUE(journal_fields("display=: lease= uid=()").empty()) << "a key without a value is no field";
}

TEST(JournalFieldsTest, TheFirstOfEachCountsAndOnlyAtAWordStart) {
  EXPECT_EQ(journal_fields("xuid=5 mylease=aa lease=bb uid=7(a) uid=8(b)"),
            (Fields{{"LEASE", "bb"}, {"LEASE_UID", "7"}, {"LEASE_USER", "a"}}));
}

TEST(JournalFieldsTest, QuotedTextCannotPoseAsAField) {
  // A purpose, a lease id a client sent, an X server's words: all quoted.
  EXPECT_EQ(journal_fields("lease=aa uid=1001(alice) display=:700 acquired purpose=\"x uid=0(root) display=:1\""),
            (Fields{{"LEASE", "aa"}, {"DISPLAY", "700"}, {"LEASE_UID", "1001"}, {"LEASE_USER", "alice"}}));
  EXPECT_EQ(journal_fields("refused reattach by uid=1002(bob) pid=9: lease \"lease=ff uid=0(root)\""),
            (Fields{{"LEASE_UID", "1002"}, {"LEASE_USER", "bob"}}));
  EXPECT_TRUE(journal_fields("libprotobuf: \"lease=ff display=:1 uid=0(root)\"").empty());
}

TEST(JournalFieldsTest, EachAlertableEventHasItsOwnMessageId) {
  std::set<std::string> ids;
  for (auto e : {LogEvent::leak_watchdog, LogEvent::quarantine, LogEvent::backoff, LogEvent::reaped_with_survivors,
                 LogEvent::journal_degraded, LogEvent::orphans_outlived_lease}) {
    ASSERT_NE(message_id(e), nullptr);
    EXPECT_EQ(std::string(message_id(e)).size(), 32u);
    EXPECT_TRUE(ids.insert(message_id(e)).second);
  }
  EXPECT_EQ(message_id(LogEvent::none), nullptr);
  {
    ScopedLogEvent outer(LogEvent::backoff);
    {
      ScopedLogEvent inner(LogEvent::quarantine);
      EXPECT_EQ(current_log_event(), LogEvent::quarantine);
    }
    EXPECT_EQ(current_log_event(), LogEvent::backoff);
  }
  EXPECT_EQ(current_log_event(), LogEvent::none);
}

}  // namespace
}  // namespace xpra_broker
