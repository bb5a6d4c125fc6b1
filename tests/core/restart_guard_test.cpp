// restart_guard.h: the per-user token bucket and the back-off after failed
// sessions, driven with a made-up clock. Waiting is moving `now`.
#include "core/restart_guard.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <deque>
#include <map>
#include <optional>
#include <random>
#include <vector>

namespace xpra_broker {
namespace {

using std::chrono::milliseconds;
using std::chrono::minutes;
using std::chrono::seconds;
using Time = RestartGuard::Time;
using Refusal = RestartGuard::Refusal;

const Time kStart = Time{} + std::chrono::hours(1000);

RestartGuardSettings make_settings(std::uint32_t burst, std::uint32_t per_minute, std::uint32_t failures = 3,
                                   milliseconds base = milliseconds(1000), milliseconds max = milliseconds(300000),
                                   milliseconds healthy = milliseconds(10000)) {
  RestartGuardSettings s;
  s.acquire_burst = burst;
  s.acquires_per_minute = per_minute;
  s.failures_before_backoff = failures;
  s.backoff_base = base;
  s.backoff_max = max;
  s.healthy_after = healthy;
  return s;
}

// Settings where the bucket never refuses, so only the back-off is seen.
RestartGuardSettings backoff_only(std::uint32_t failures, milliseconds base = milliseconds(1000),
                                  milliseconds max = milliseconds(300000), milliseconds healthy = milliseconds(10000)) {
  return make_settings(1000000, 1000000, failures, base, max, healthy);
}

// ---- token bucket ----------------------------------------------------------

TEST(RestartGuardTest, BurstIsAllowedAtOnceThenRateLimited) {
  for (std::uint32_t burst : {1u, 2u, 3u, 10u, 25u, 100u}) {
    SCOPED_TRACE(burst);
    RestartGuard guard(make_settings(burst, 60));
    for (std::uint32_t i = 0; i < burst; ++i) {
      const auto d = guard.check_acquire(1000, kStart);
      ASSERT_EQ(d.refusal, Refusal::none) << "acquire " << i << " of the burst";
      EXPECT_EQ(d.retry_after, milliseconds(0));
      EXPECT_EQ(d.consecutive_failures, 0u);
    }
    const auto refused = guard.check_acquire(1000, kStart);
    EXPECT_EQ(refused.refusal, Refusal::rate_limited);
    EXPECT_GT(refused.retry_after, milliseconds(0));
    EXPECT_EQ(refused.consecutive_failures, 0u) << "rate limiting is not a failure";
    // Refused attempts are not charged: asking again at the same instant
    // gives the same answer.
    for (int i = 0; i < 100; ++i) ASSERT_EQ(guard.check_acquire(1000, kStart).retry_after, refused.retry_after);
  }
}

TEST(RestartGuardTest, RetryAfterIsEnoughAndNotMuchMore) {
  for (std::uint32_t per_minute : {1u, 2u, 7u, 13u, 60u, 61u, 600u, 6000u, 59999u, 60000u, 120000u}) {
    for (std::uint32_t burst : {1u, 3u}) {
      SCOPED_TRACE("acquires-per-minute=" + std::to_string(per_minute) + " burst=" + std::to_string(burst));
      RestartGuard guard(make_settings(burst, per_minute));
      Time now = kStart;
      for (std::uint32_t i = 0; i < burst; ++i) ASSERT_EQ(guard.check_acquire(7, now).refusal, Refusal::none);
      // One token takes 60000/per_minute ms to come back.
      const double interval_ms = 60000.0 / per_minute;
      for (int round = 0; round < 200; ++round) {
        const auto refused = guard.check_acquire(7, now);
        if (refused.refusal == Refusal::none) continue;  // a fraction of a token was left over
        ASSERT_EQ(refused.refusal, Refusal::rate_limited) << "round " << round;
        ASSERT_GT(refused.retry_after, milliseconds(0));
        ASSERT_LE(refused.retry_after.count(), static_cast<std::int64_t>(interval_ms) + 1) << "round " << round;
        if (refused.retry_after > milliseconds(2)) {
          // Asking 2 ms early is still too early (and does not charge).
          ASSERT_EQ(guard.check_acquire(7, now + refused.retry_after - milliseconds(2)).refusal,
                    Refusal::rate_limited)
              << "round " << round;
        }
        now += refused.retry_after;
        ASSERT_EQ(guard.check_acquire(7, now).refusal, Refusal::none)
            << "waiting exactly retry_after (" << refused.retry_after.count() << " ms) must be enough, round "
            << round;
      }
    }
  }
}

TEST(RestartGuardTest, RefillMatchesTheRateOverALongRun) {
  for (std::uint32_t per_minute : {1u, 6u, 60u, 600u}) {
    for (std::uint32_t burst : {1u, 5u, 20u}) {
      SCOPED_TRACE("acquires-per-minute=" + std::to_string(per_minute) + " burst=" + std::to_string(burst));
      RestartGuard guard(make_settings(burst, per_minute));
      // A client that retries exactly when told to, for 30 simulated minutes.
      const Time end = kStart + minutes(30);
      Time now = kStart;
      std::uint64_t granted = 0;
      while (now < end) {
        const auto d = guard.check_acquire(42, now);
        if (d.refusal == Refusal::none)
          ++granted;
        else
          now += d.retry_after;
      }
      const std::uint64_t ideal = burst + 30ull * per_minute;
      EXPECT_LE(granted, ideal + 1) << "more than the configured rate";
      EXPECT_GE(granted * 100, ideal * 85) << "retry_after is too pessimistic";
    }
  }
}

TEST(RestartGuardTest, BucketNeverHoldsMoreThanTheBurst) {
  RestartGuard guard(make_settings(4, 60));
  Time now = kStart;
  ASSERT_EQ(guard.check_acquire(1, now).refusal, Refusal::none);
  for (seconds idle : {seconds(0), seconds(61), seconds(3600), seconds(3600 * 24 * 365)}) {
    SCOPED_TRACE(idle.count());
    now += idle + minutes(1);
    for (int i = 0; i < 4; ++i) ASSERT_EQ(guard.check_acquire(1, now).refusal, Refusal::none) << i;
    EXPECT_EQ(guard.check_acquire(1, now).refusal, Refusal::rate_limited) << "idling must not bank extra tokens";
  }
}

// ---- back-off --------------------------------------------------------------

TEST(RestartGuardTest, BackoffStartsAfterTheConfiguredNumberOfConsecutiveFailures) {
  for (std::uint32_t threshold = 1; threshold <= 8; ++threshold) {
    SCOPED_TRACE("failures-before-backoff=" + std::to_string(threshold));
    RestartGuard guard(backoff_only(threshold, milliseconds(1500)));
    for (std::uint32_t i = 1; i < threshold; ++i) {
      guard.record_start_failure(9, kStart);
      const auto d = guard.check_acquire(9, kStart);
      ASSERT_EQ(d.refusal, Refusal::none) << "after " << i << " failures";
      EXPECT_EQ(d.consecutive_failures, i);
    }
    guard.record_start_failure(9, kStart);
    EXPECT_EQ(guard.consecutive_failures(9), threshold);
    const auto d = guard.check_acquire(9, kStart);
    ASSERT_EQ(d.refusal, Refusal::backing_off);
    EXPECT_EQ(d.consecutive_failures, threshold);
    EXPECT_GE(d.retry_after, milliseconds(1500));
    EXPECT_LE(d.retry_after, milliseconds(1501));
    // Still backing off just before; free again once retry_after has passed.
    EXPECT_EQ(guard.check_acquire(9, kStart + d.retry_after - milliseconds(2)).refusal, Refusal::backing_off);
    EXPECT_EQ(guard.check_acquire(9, kStart + d.retry_after).refusal, Refusal::none);
  }
}

TEST(RestartGuardTest, BackoffDoublesWithEachFurtherFailureAndIsCapped) {
  const milliseconds base(1000), max(300000);
  RestartGuard guard(backoff_only(3, base, max));
  Time now = kStart;
  for (int i = 0; i < 2; ++i) guard.record_start_failure(5, now);
  milliseconds expected = base;
  for (std::uint32_t failures = 3; failures <= 200; ++failures) {
    SCOPED_TRACE(failures);
    guard.record_start_failure(5, now);
    const auto d = guard.check_acquire(5, now);
    ASSERT_EQ(d.refusal, Refusal::backing_off);
    ASSERT_EQ(d.consecutive_failures, failures);
    ASSERT_GE(d.retry_after, expected);
    ASSERT_LE(d.retry_after, expected + milliseconds(1));
    // Wait it out and try again (and fail again).
    now += d.retry_after;
    ASSERT_EQ(guard.check_acquire(5, now).refusal, Refusal::none);
    expected = std::min(expected * 2, max);
  }
  EXPECT_EQ(expected, max) << "the sequence must have reached the cap";
}

TEST(RestartGuardTest, CapIsExactAndNoOverflowWithHugeFailureCounts) {
  for (milliseconds max : {milliseconds(1), milliseconds(999), milliseconds(5000), milliseconds(86400000)}) {
    SCOPED_TRACE(max.count());
    RestartGuard guard(backoff_only(1, milliseconds(1000), max));
    for (int i = 0; i < 100000; ++i) guard.record_start_failure(3, kStart);
    const auto d = guard.check_acquire(3, kStart);
    ASSERT_EQ(d.refusal, Refusal::backing_off);
    EXPECT_EQ(d.consecutive_failures, 100000u);
    EXPECT_GE(d.retry_after, std::min(max, milliseconds(1000)));
    EXPECT_LE(d.retry_after, max + milliseconds(1));
  }
}

TEST(RestartGuardTest, SupervisorRestartingAsFastAsAllowedIsSlowedDown) {
  // A session that always dies after 1 s, restarted as soon as allowed.
  RestartGuard guard(make_settings(10, 60, 3, milliseconds(1000), milliseconds(60000), milliseconds(10000)));
  Time now = kStart;
  std::vector<milliseconds> waits;
  int sessions = 0;
  while (now < kStart + std::chrono::hours(1)) {
    const auto d = guard.check_acquire(77, now);
    if (d.refusal != Refusal::none) {
      if (d.refusal == Refusal::backing_off) waits.push_back(d.retry_after);
      now += d.retry_after;
      continue;
    }
    ++sessions;
    now += seconds(1);
    guard.record_session_end(77, /*failed=*/true, seconds(1), now);
  }
  // After the first few, one try per back-off period of 60 s at most.
  EXPECT_LE(sessions, 3 + 8 + 60);
  ASSERT_GE(waits.size(), 8u);
  for (std::size_t i = 1; i < waits.size(); ++i) EXPECT_GE(waits[i], waits[i - 1]) << i;
  EXPECT_LE(waits.back(), milliseconds(60001));
  EXPECT_GE(waits.back(), milliseconds(59000));
}

// ---- healthy sessions ------------------------------------------------------

TEST(RestartGuardTest, CleanExitResetsTheFailureCount) {
  RestartGuard guard(backoff_only(3));
  guard.record_start_failure(1, kStart);
  guard.record_session_end(1, true, milliseconds(5), kStart);
  EXPECT_EQ(guard.consecutive_failures(1), 2u);
  // A clean exit, however short, is not a failure.
  guard.record_session_end(1, /*failed=*/false, milliseconds(0), kStart);
  EXPECT_EQ(guard.consecutive_failures(1), 0u);
  guard.record_start_failure(1, kStart);
  guard.record_start_failure(1, kStart);
  EXPECT_EQ(guard.check_acquire(1, kStart).refusal, Refusal::none) << "two failures since the reset: no back-off yet";
}

TEST(RestartGuardTest, SessionThatRanLongEnoughIsHealthyEvenIfItFailed) {
  const milliseconds healthy(10000);
  RestartGuard guard(backoff_only(3, milliseconds(1000), milliseconds(300000), healthy));
  for (milliseconds ran : {healthy, healthy + milliseconds(1), std::chrono::duration_cast<milliseconds>(
                                                                   std::chrono::hours(24 * 30))}) {
    SCOPED_TRACE(ran.count());
    guard.record_start_failure(2, kStart);
    guard.record_start_failure(2, kStart);
    ASSERT_EQ(guard.consecutive_failures(2), 2u);
    guard.record_session_end(2, /*failed=*/true, ran, kStart);
    EXPECT_EQ(guard.consecutive_failures(2), 0u);
  }
  // One millisecond short of healthy is a failure.
  guard.record_session_end(2, true, healthy - milliseconds(1), kStart);
  EXPECT_EQ(guard.consecutive_failures(2), 1u);
  guard.record_session_end(2, true, milliseconds(0), kStart);
  EXPECT_EQ(guard.consecutive_failures(2), 2u);
}

TEST(RestartGuardTest, HealthySessionAfterBackoffStartsCountingFromZero) {
  RestartGuard guard(backoff_only(2, milliseconds(1000), milliseconds(64000)));
  Time now = kStart;
  for (int i = 0; i < 6; ++i) guard.record_start_failure(4, now);  // back-off 16 s
  auto d = guard.check_acquire(4, now);
  ASSERT_EQ(d.refusal, Refusal::backing_off);
  now += d.retry_after;
  ASSERT_EQ(guard.check_acquire(4, now).refusal, Refusal::none);
  now += seconds(60);
  guard.record_session_end(4, true, seconds(60), now);
  EXPECT_EQ(guard.consecutive_failures(4), 0u);
  guard.record_start_failure(4, now);
  EXPECT_EQ(guard.check_acquire(4, now).refusal, Refusal::none) << "one failure after a healthy session";
  guard.record_start_failure(4, now);
  d = guard.check_acquire(4, now);
  ASSERT_EQ(d.refusal, Refusal::backing_off);
  EXPECT_LE(d.retry_after, milliseconds(1001)) << "the back-off restarts at the base, not where it left off";
}

TEST(RestartGuardTest, RecordStartFailureCountsLikeAFailedSession) {
  RestartGuard a(backoff_only(4)), b(backoff_only(4));
  for (int i = 1; i <= 10; ++i) {
    a.record_start_failure(1, kStart);
    b.record_session_end(1, true, milliseconds(1), kStart);
    ASSERT_EQ(a.consecutive_failures(1), static_cast<std::uint32_t>(i));
    ASSERT_EQ(b.consecutive_failures(1), static_cast<std::uint32_t>(i));
    const auto da = a.check_acquire(1, kStart);
    const auto db = b.check_acquire(1, kStart);
    ASSERT_EQ(da.refusal, db.refusal) << i;
    ASSERT_EQ(da.retry_after, db.retry_after) << i;
  }
}

// ---- users -----------------------------------------------------------------

TEST(RestartGuardTest, UidsAreIndependent) {
  RestartGuard guard(make_settings(3, 60, 2));
  const std::vector<uid_t> uids = {0, 1, 1000, 1001, 65534, 4294967294u};
  // Each uid, in turn, exhausts its bucket and starts backing off; nobody
  // else is affected.
  for (std::size_t victim = 0; victim < uids.size(); ++victim) {
    const uid_t u = uids[victim];
    SCOPED_TRACE(u);
    for (int i = 0; i < 3; ++i) ASSERT_EQ(guard.check_acquire(u, kStart).refusal, Refusal::none);
    ASSERT_EQ(guard.check_acquire(u, kStart).refusal, Refusal::rate_limited);
    guard.record_start_failure(u, kStart);
    guard.record_start_failure(u, kStart);
    ASSERT_EQ(guard.check_acquire(u, kStart).refusal, Refusal::backing_off);
    for (std::size_t other = victim + 1; other < uids.size(); ++other) {
      EXPECT_EQ(guard.consecutive_failures(uids[other]), 0u) << uids[other];
    }
  }
  EXPECT_EQ(guard.tracked_users(), uids.size());
  // A fresh uid still has its whole burst.
  for (int i = 0; i < 3; ++i) EXPECT_EQ(guard.check_acquire(5555, kStart).refusal, Refusal::none);
  // A healthy session of one uid clears only that uid.
  guard.record_session_end(1000, false, seconds(1), kStart);
  EXPECT_EQ(guard.consecutive_failures(1000), 0u);
  EXPECT_EQ(guard.consecutive_failures(1001), 2u);
}

TEST(RestartGuardTest, ForgetIdleDropsOnlyIdleUsers) {
  RestartGuard guard(make_settings(5, 60, 2, milliseconds(10000)));
  Time now = kStart;
  guard.check_acquire(1, now);                      // bucket not full yet
  guard.record_start_failure(2, now);               // one failure
  guard.record_session_end(3, false, seconds(1), now);  // idle: full bucket, no failures
  guard.record_start_failure(4, now);
  guard.record_start_failure(4, now);               // backing off for 10 s
  ASSERT_EQ(guard.tracked_users(), 4u);

  guard.forget_idle(now);
  EXPECT_EQ(guard.tracked_users(), 3u) << "only uid 3 is idle";
  EXPECT_EQ(guard.consecutive_failures(2), 1u);
  EXPECT_EQ(guard.consecutive_failures(4), 2u);

  // 1 s later uid 1's token is back: it is idle now.
  now += seconds(1);
  guard.forget_idle(now);
  EXPECT_EQ(guard.tracked_users(), 2u);
  EXPECT_EQ(guard.consecutive_failures(2), 1u);
  EXPECT_EQ(guard.consecutive_failures(4), 2u);

  // Failures are never forgotten by idling; the back-off runs out, the
  // count stays until a healthy session.
  now += std::chrono::hours(24);
  guard.forget_idle(now);
  EXPECT_EQ(guard.tracked_users(), 2u);
  EXPECT_EQ(guard.consecutive_failures(2), 1u);
  EXPECT_EQ(guard.consecutive_failures(4), 2u);
  EXPECT_EQ(guard.check_acquire(4, now).refusal, Refusal::none);
  guard.record_session_end(4, false, seconds(20), now);
  guard.record_session_end(2, true, seconds(20), now);
  guard.forget_idle(now);
  EXPECT_EQ(guard.tracked_users(), 1u) << "uid 4 still owes the token it just used";
  guard.forget_idle(now + seconds(1));
  EXPECT_EQ(guard.tracked_users(), 0u);
}

TEST(RestartGuardTest, ForgetIdleKeepsAUserWhoseBucketIsDrained) {
  RestartGuard guard(make_settings(3, 1));
  for (int i = 0; i < 3; ++i) ASSERT_EQ(guard.check_acquire(8, kStart).refusal, Refusal::none);
  for (int minute = 0; minute < 3; ++minute) {
    guard.forget_idle(kStart + minutes(minute));
    ASSERT_EQ(guard.tracked_users(), 1u) << "minute " << minute;
  }
  // Forgetting her would have handed out a fresh burst of 3; she has 2.
  EXPECT_EQ(guard.check_acquire(8, kStart + minutes(2)).refusal, Refusal::none);
  EXPECT_EQ(guard.check_acquire(8, kStart + minutes(2)).refusal, Refusal::none);
  EXPECT_EQ(guard.check_acquire(8, kStart + minutes(2)).refusal, Refusal::rate_limited);
  guard.forget_idle(kStart + minutes(4));
  EXPECT_EQ(guard.tracked_users(), 1u);
  guard.forget_idle(kStart + minutes(5));
  EXPECT_EQ(guard.tracked_users(), 0u);
}

// ---- random sequences ------------------------------------------------------

// Random acquires, failures and healthy sessions for a few users: after every
// step the guard keeps its promises.
TEST(RestartGuardTest, RandomSequencesKeepTheInvariants) {
  std::mt19937 rng(4711);
  for (int config = 0; config < 40; ++config) {
    const std::uint32_t burst = 1 + rng() % 6;
    const std::uint32_t per_minute = 1 + rng() % 120;
    const std::uint32_t threshold = 1 + rng() % 4;
    const milliseconds base(1 + rng() % 5000);
    const milliseconds max = base * (1 + rng() % 100);
    const milliseconds healthy(1000 + rng() % 20000);
    SCOPED_TRACE("burst=" + std::to_string(burst) + " per-minute=" + std::to_string(per_minute) +
                 " threshold=" + std::to_string(threshold) + " base=" + std::to_string(base.count()) +
                 " max=" + std::to_string(max.count()));
    RestartGuard guard(make_settings(burst, per_minute, threshold, base, max, healthy));

    struct Model {
      std::uint32_t failures = 0;
      std::deque<Time> granted;                 // grant times
      std::optional<Time> last_reached_threshold;  // last failure that made failures >= threshold
    };
    std::map<uid_t, Model> model;
    Time now = kStart;
    for (int step = 0; step < 2000; ++step) {
      now += milliseconds(rng() % 3000);
      const uid_t uid = 1000 + rng() % 3;
      Model& m = model[uid];
      switch (rng() % 6) {
        case 0:
        case 1:
        case 2: {
          const auto d = guard.check_acquire(uid, now);
          ASSERT_EQ(d.consecutive_failures, m.failures) << "step " << step;
          if (d.refusal == Refusal::none) {
            ASSERT_EQ(d.retry_after, milliseconds(0));
            m.granted.push_back(now);
            // In any window of W ms no more than burst + W*rate grants.
            for (const Time since : m.granted) {
              const double window_min = std::chrono::duration<double, std::ratio<60>>(now - since).count();
              const auto in_window = std::count_if(m.granted.begin(), m.granted.end(),
                                                   [&](Time t) { return t >= since; });
              ASSERT_LE(in_window, burst + window_min * per_minute + 1e-6) << "step " << step;
            }
            while (m.granted.size() > 50) m.granted.pop_front();
          } else {
            ASSERT_GT(d.retry_after, milliseconds(0)) << "step " << step;
            if (d.refusal == Refusal::backing_off) {
              // Only after failures-before-backoff consecutive failures, and
              // for at most backoff-max after the last of them.
              ASSERT_TRUE(m.last_reached_threshold) << "back-off without enough failures, step " << step;
              ASSERT_LE(now + d.retry_after, *m.last_reached_threshold + max + milliseconds(1)) << "step " << step;
            }
            // Waiting what it said is enough (nothing else happens meanwhile).
            const Time later = now + d.retry_after;
            const auto again = guard.check_acquire(uid, later);
            if (again.refusal == Refusal::none) {
              m.granted.push_back(later);
              now = later;
            } else {
              // A back-off that ran out can leave the bucket empty; a rate
              // limit waited out is always enough.
              ASSERT_EQ(d.refusal, Refusal::backing_off) << "step " << step;
              ASSERT_EQ(again.refusal, Refusal::rate_limited) << "step " << step;
              now = later;
            }
          }
          break;
        }
        case 3:
          guard.record_start_failure(uid, now);
          if (++m.failures >= threshold) m.last_reached_threshold = now;
          break;
        case 4: {
          const milliseconds ran(rng() % (2 * healthy.count()));
          const bool failed = rng() % 4 != 0;
          guard.record_session_end(uid, failed, ran, now);
          m.failures = (!failed || ran >= healthy) ? 0 : m.failures + 1;
          if (m.failures >= threshold) m.last_reached_threshold = now;
          break;
        }
        case 5: {
          guard.forget_idle(now);
          ASSERT_LE(guard.tracked_users(), 3u);
          break;
        }
      }
      ASSERT_EQ(guard.consecutive_failures(uid), m.failures) << "step " << step;
    }
  }
}

}  // namespace
}  // namespace xpra_broker
