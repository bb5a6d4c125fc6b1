// read_pacer.h: a user's reads beyond the burst are spaced 1/rate apart;
// other users are not affected.
#include "server/read_pacer.h"

#include <gtest/gtest.h>

namespace xpra_broker {
namespace {

using std::chrono::milliseconds;
const ReadPacer::Time t0 = ReadPacer::Time{} + std::chrono::hours(1);

TEST(ReadPacerTest, BurstAtOnceThenSpacedByTheRate) {
  ReadPacer p(10, 20);
  for (int i = 0; i < 20; ++i) EXPECT_EQ(p.charge(1000, t0), milliseconds(0)) << i;
  EXPECT_EQ(p.charge(1000, t0), milliseconds(100));
  EXPECT_EQ(p.charge(1000, t0), milliseconds(200)) << "queued reads wait in turn";
  EXPECT_EQ(p.charge(2000, t0), milliseconds(0)) << "another user keeps their own burst";
}

TEST(ReadPacerTest, SixtyFourConnectionsOfOneUserGetTheRateNotMore) {
  ReadPacer p(10, 20);
  // One user asks as fast as the broker answers, on 64 connections, for 10 s
  // of simulated time: answered reads stay at burst + rate * time.
  int answered = 0;
  std::vector<ReadPacer::Time> ready(64, t0);
  for (auto now = t0; now < t0 + std::chrono::seconds(10); now += milliseconds(1))
    for (auto& r : ready)
      if (r <= now) {
        r = now + p.charge(1000, now);
        ++answered;
      }
  EXPECT_LE(answered, 20 + 10 * 10 + 64);
  EXPECT_GE(answered, 20 + 10 * 10 - 1);
}

TEST(ReadPacerTest, IdleTimeRefillsUpToTheBurstOnly) {
  ReadPacer p(10, 5);
  for (int i = 0; i < 5; ++i) p.charge(1, t0);
  for (int i = 0; i < 5; ++i) EXPECT_EQ(p.charge(1, t0 + std::chrono::hours(1)), milliseconds(0));
  EXPECT_GT(p.charge(1, t0 + std::chrono::hours(1)), milliseconds(0));
}

TEST(ReadPacerTest, ZeroRateMeansNoPacing) {
  ReadPacer p(0, 1);
  for (int i = 0; i < 1000; ++i) EXPECT_EQ(p.charge(1, t0), milliseconds(0));
}

}  // namespace
}  // namespace xpra_broker
