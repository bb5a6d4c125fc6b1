// log_throttle.h: one line per (uid, reason) per interval, with the count of
// the ones held back; bounded memory under a flood of keys.
#include "core/log_throttle.h"

#include <gtest/gtest.h>

namespace xpra_broker {
namespace {

using std::chrono::seconds;
const LogThrottle::Time t0 = LogThrottle::Time{} + std::chrono::hours(1);

TEST(LogThrottleTest, OneLinePerUidAndReasonPerInterval) {
  LogThrottle t(seconds(10));
  EXPECT_TRUE(t.admit(1000, "connections", t0).log);
  for (int i = 0; i < 11000; ++i) EXPECT_FALSE(t.admit(1000, "connections", t0 + seconds(5)).log);
  EXPECT_TRUE(t.admit(1001, "connections", t0 + seconds(5)).log) << "another user has a line of their own";
  EXPECT_TRUE(t.admit(1000, "protocol", t0 + seconds(5)).log) << "and so has another reason";
  const auto d = t.admit(1000, "connections", t0 + seconds(10));
  EXPECT_TRUE(d.log);
  EXPECT_EQ(d.suppressed, 11000u);
  EXPECT_EQ(d.over, seconds(10));
  EXPECT_EQ(t.suffix(d), " (11000 more suppressed in the last 10 s)");
  EXPECT_EQ(t.admit(1000, "connections", t0 + seconds(30)).suppressed, 0u) << "the count starts again";
  EXPECT_EQ(t.suffix(LogThrottle::Decision{true, 0, {}}), "");
}

TEST(LogThrottleTest, AFloodOfNewKeysNeverGrowsItBeyondItsBound) {
  LogThrottle t(seconds(10), 100);
  int logged = 0;
  for (uid_t uid = 0; uid < 10000; ++uid) logged += t.admit(uid, "x", t0).log;
  EXPECT_EQ(logged, 100) << "new keys beyond the bound are dropped within the interval";
  EXPECT_TRUE(t.admit(50000, "x", t0 + seconds(10)).log) << "old keys make room once their interval is over";
}

}  // namespace
}  // namespace xpra_broker
