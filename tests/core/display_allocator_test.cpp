// display_allocator.h: round-robin picking, take/give_back, blocks with
// injected time points. Correctness only; nothing here looks at wall time.
#include "core/display_allocator.h"

#include <gtest/gtest.h>

#include <chrono>
#include <map>
#include <random>
#include <set>
#include <vector>

namespace xpra_broker {
namespace {

using std::chrono::seconds;

// A fixed, arbitrary origin: the allocator only compares time points.
const SteadyTime t0 = SteadyTime{} + std::chrono::hours(1000);

// Takes whatever next_candidate() offers; the number taken.
std::uint32_t take_next(DisplayAllocator& a) {
  const auto d = a.next_candidate();
  EXPECT_TRUE(d.has_value());
  if (!d) return 0;
  EXPECT_TRUE(a.take(*d));
  return *d;
}

TEST(DisplayAllocatorTest, FreshRangeOffersTheFirstNumberAndCountsAllFree) {
  DisplayAllocator a(100, 109);
  EXPECT_EQ(a.first(), 100u);
  EXPECT_EQ(a.last(), 109u);
  EXPECT_EQ(a.free_count(), 10u);
  EXPECT_EQ(a.leased_count(), 0u);
  EXPECT_EQ(a.next_candidate(), 100u);
  EXPECT_TRUE(a.blocked().empty());
}

TEST(DisplayAllocatorTest, NextCandidateDoesNotTake) {
  DisplayAllocator a(100, 109);
  EXPECT_EQ(a.next_candidate(), 100u);
  EXPECT_EQ(a.next_candidate(), 100u);
  EXPECT_EQ(a.free_count(), 10u);
  EXPECT_FALSE(a.is_leased(100));
}

TEST(DisplayAllocatorTest, InRange) {
  DisplayAllocator a(100, 109);
  EXPECT_FALSE(a.in_range(99));
  EXPECT_TRUE(a.in_range(100));
  EXPECT_TRUE(a.in_range(109));
  EXPECT_FALSE(a.in_range(110));
  EXPECT_FALSE(a.in_range(0));
}

TEST(DisplayAllocatorTest, TakeMarksLeasedOnceOnly) {
  DisplayAllocator a(100, 109);
  EXPECT_TRUE(a.take(105));
  EXPECT_TRUE(a.is_leased(105));
  EXPECT_EQ(a.free_count(), 9u);
  EXPECT_EQ(a.leased_count(), 1u);
  EXPECT_FALSE(a.take(105)) << "a leased number is not free";
  EXPECT_EQ(a.leased_count(), 1u);
}

TEST(DisplayAllocatorTest, TakeOutsideTheRangeFails) {
  DisplayAllocator a(100, 109);
  EXPECT_FALSE(a.take(99));
  EXPECT_FALSE(a.take(110));
  EXPECT_FALSE(a.take(0));
  EXPECT_EQ(a.free_count(), 10u);
  EXPECT_EQ(a.leased_count(), 0u);
}

TEST(DisplayAllocatorTest, CursorMovesPastTheLastTakenNumber) {
  DisplayAllocator a(100, 109);
  ASSERT_TRUE(a.take(104));
  EXPECT_EQ(a.next_candidate(), 105u);
  ASSERT_TRUE(a.take(105));
  EXPECT_EQ(a.next_candidate(), 106u);
}

TEST(DisplayAllocatorTest, NumberGivenBackIsNotTheNextOneReused) {
  DisplayAllocator a(100, 109);
  EXPECT_EQ(take_next(a), 100u);
  EXPECT_EQ(take_next(a), 101u);
  a.give_back(100);
  EXPECT_FALSE(a.is_leased(100));
  EXPECT_EQ(a.free_count(), 9u);
  // Round-robin: 100 comes round again only after the rest of the range.
  EXPECT_EQ(a.next_candidate(), 102u);
}

TEST(DisplayAllocatorTest, RoundRobinCyclesThroughTheWholeRange) {
  DisplayAllocator a(10, 13);
  std::vector<std::uint32_t> seen;
  for (int i = 0; i < 12; ++i) {
    const std::uint32_t d = take_next(a);
    seen.push_back(d);
    a.give_back(d);
  }
  EXPECT_EQ(seen, (std::vector<std::uint32_t>{10, 11, 12, 13, 10, 11, 12, 13, 10, 11, 12, 13}));
}

TEST(DisplayAllocatorTest, CursorWrapsAfterTheLastNumber) {
  DisplayAllocator a(10, 12);
  ASSERT_TRUE(a.take(12));
  EXPECT_EQ(a.next_candidate(), 10u);
  ASSERT_TRUE(a.take(10));
  ASSERT_TRUE(a.take(11));
  EXPECT_EQ(a.next_candidate(), std::nullopt);
  a.give_back(10);
  EXPECT_EQ(a.next_candidate(), 10u) << "wraps to a free number below the cursor";
}

TEST(DisplayAllocatorTest, SkipsLeasedNumbersAfterTheCursor) {
  DisplayAllocator a(100, 109);
  ASSERT_TRUE(a.take(101));
  ASSERT_TRUE(a.take(102));
  ASSERT_TRUE(a.take(100));  // cursor now 101, but 101 and 102 are leased
  EXPECT_EQ(a.next_candidate(), 103u);
}

TEST(DisplayAllocatorTest, ExhaustionReturnsNullopt) {
  DisplayAllocator a(100, 104);
  std::set<std::uint32_t> taken;
  for (int i = 0; i < 5; ++i) taken.insert(take_next(a));
  EXPECT_EQ(taken, (std::set<std::uint32_t>{100, 101, 102, 103, 104}));
  EXPECT_EQ(a.next_candidate(), std::nullopt);
  EXPECT_EQ(a.free_count(), 0u);
  EXPECT_EQ(a.leased_count(), 5u);
}

TEST(DisplayAllocatorTest, SingleNumberRange) {
  DisplayAllocator a(0, 0);
  EXPECT_EQ(a.free_count(), 1u);
  EXPECT_EQ(take_next(a), 0u);
  EXPECT_EQ(a.next_candidate(), std::nullopt);
  a.give_back(0);
  EXPECT_EQ(a.next_candidate(), 0u);
}

TEST(DisplayAllocatorTest, GiveBackOfANumberNotLeasedChangesNothing) {
  DisplayAllocator a(100, 104);
  a.give_back(102);  // free already
  a.give_back(200);  // outside
  EXPECT_EQ(a.free_count(), 5u);
  EXPECT_EQ(a.leased_count(), 0u);
  a.block(103, t0 + seconds(30), "in use");
  a.give_back(103);  // blocked, not leased: stays blocked
  EXPECT_EQ(a.free_count(), 4u);
  EXPECT_EQ(a.blocked().count(103), 1u);
}

TEST(DisplayAllocatorTest, BlockedNumberIsNeverOfferedUntilItsBlockExpires) {
  DisplayAllocator a(100, 102);
  a.block(100, t0 + seconds(30), "live X server");
  EXPECT_EQ(a.free_count(), 2u);
  ASSERT_EQ(a.blocked().count(100), 1u);
  EXPECT_EQ(a.blocked().at(100).reason, "live X server");
  EXPECT_EQ(a.blocked().at(100).until, t0 + seconds(30));
  EXPECT_FALSE(a.take(100)) << "a blocked number cannot be taken";

  // Cycle through the rest many times: 100 never shows up.
  for (int i = 0; i < 10; ++i) {
    a.expire_blocks(t0 + seconds(i));
    const std::uint32_t d = take_next(a);
    EXPECT_NE(d, 100u);
    a.give_back(d);
  }
  a.expire_blocks(t0 + seconds(29));
  EXPECT_EQ(a.blocked().count(100), 1u);
  // Expiry is inclusive: at `until` the number is back.
  a.expire_blocks(t0 + seconds(30));
  EXPECT_TRUE(a.blocked().empty());
  EXPECT_EQ(a.free_count(), 3u);
  EXPECT_TRUE(a.take(100));
}

TEST(DisplayAllocatorTest, WhenEveryFreeNumberIsBlockedThereIsNoCandidate) {
  DisplayAllocator a(100, 102);
  ASSERT_TRUE(a.take(101));
  a.block(100, t0 + seconds(5), "stale lock");
  a.block(102, t0 + seconds(10), "stale socket");
  EXPECT_EQ(a.next_candidate(), std::nullopt);
  a.expire_blocks(t0 + seconds(5));
  EXPECT_EQ(a.next_candidate(), 100u);
  EXPECT_EQ(a.blocked().count(102), 1u);
}

TEST(DisplayAllocatorTest, ReblockingExtendsTheBlock) {
  DisplayAllocator a(100, 102);
  a.block(101, t0 + seconds(10), "first");
  a.block(101, t0 + seconds(60), "second");
  ASSERT_EQ(a.blocked().count(101), 1u);
  EXPECT_EQ(a.blocked().at(101).reason, "second");
  EXPECT_EQ(a.blocked().at(101).until, t0 + seconds(60));
  a.expire_blocks(t0 + seconds(10));
  EXPECT_EQ(a.blocked().count(101), 1u) << "the old expiry must not free a re-blocked number";
  EXPECT_EQ(a.free_count(), 2u);
  a.expire_blocks(t0 + seconds(59));
  EXPECT_EQ(a.blocked().count(101), 1u);
  a.expire_blocks(t0 + seconds(60));
  EXPECT_TRUE(a.blocked().empty());
  EXPECT_EQ(a.free_count(), 3u);
}

TEST(DisplayAllocatorTest, ReblockingOneNumberLeavesOthersWithTheSameExpiryAlone) {
  DisplayAllocator a(100, 104);
  a.block(100, t0 + seconds(10), "a");
  a.block(101, t0 + seconds(10), "b");
  a.block(102, t0 + seconds(10), "c");
  a.block(101, t0 + seconds(20), "b again");
  a.expire_blocks(t0 + seconds(10));
  EXPECT_EQ(a.blocked().count(100), 0u);
  EXPECT_EQ(a.blocked().count(101), 1u);
  EXPECT_EQ(a.blocked().count(102), 0u);
  EXPECT_EQ(a.free_count(), 4u);
  a.expire_blocks(t0 + seconds(20));
  EXPECT_TRUE(a.blocked().empty());
  EXPECT_EQ(a.free_count(), 5u);
}

TEST(DisplayAllocatorTest, ReblockingManyTimesLeavesOneExpiry) {
  DisplayAllocator a(100, 101);
  for (int i = 1; i <= 50; ++i) a.block(100, t0 + seconds(i), "again");
  a.expire_blocks(t0 + seconds(49));
  EXPECT_EQ(a.blocked().count(100), 1u);
  a.expire_blocks(t0 + seconds(50));
  EXPECT_TRUE(a.blocked().empty());
  EXPECT_EQ(a.free_count(), 2u);
  // The number is free exactly once, not duplicated by stale expiry entries.
  EXPECT_TRUE(a.take(100));
  a.expire_blocks(t0 + seconds(1000));
  EXPECT_TRUE(a.is_leased(100));
  EXPECT_EQ(a.free_count(), 1u);
}

TEST(DisplayAllocatorTest, BlockOutsideTheRangeIsIgnored) {
  DisplayAllocator a(100, 102);
  a.block(99, t0 + seconds(10), "x");
  a.block(103, t0 + seconds(10), "x");
  EXPECT_TRUE(a.blocked().empty());
  EXPECT_EQ(a.free_count(), 3u);
  a.expire_blocks(t0 + seconds(10));
  EXPECT_EQ(a.free_count(), 3u);
  EXPECT_FALSE(a.take(103));
}

TEST(DisplayAllocatorTest, BlockOfALeasedNumberSurvivesGiveBackUntilExpiry) {
  DisplayAllocator a(100, 102);
  ASSERT_TRUE(a.take(101));
  a.block(101, t0 + seconds(30), "quarantine after failed start");
  EXPECT_TRUE(a.is_leased(101));
  a.give_back(101);
  EXPECT_FALSE(a.is_leased(101));
  EXPECT_EQ(a.free_count(), 2u);
  EXPECT_FALSE(a.take(101));
  for (int i = 0; i < 6; ++i) {
    const std::uint32_t d = take_next(a);
    EXPECT_NE(d, 101u);
    a.give_back(d);
  }
  a.expire_blocks(t0 + seconds(29));
  EXPECT_EQ(a.free_count(), 2u);
  a.expire_blocks(t0 + seconds(30));
  EXPECT_EQ(a.free_count(), 3u);
  EXPECT_TRUE(a.take(101));
}

TEST(DisplayAllocatorTest, BlockOfALeasedNumberThatExpiresWhileLeasedKeepsItLeased) {
  DisplayAllocator a(100, 102);
  ASSERT_TRUE(a.take(101));
  a.block(101, t0 + seconds(5), "quarantine");
  a.expire_blocks(t0 + seconds(5));
  EXPECT_TRUE(a.blocked().empty());
  EXPECT_TRUE(a.is_leased(101));
  EXPECT_EQ(a.free_count(), 2u) << "an expired block must not free a number still leased";
  EXPECT_FALSE(a.take(101));
  a.give_back(101);
  EXPECT_EQ(a.free_count(), 3u);
  EXPECT_TRUE(a.take(101));
}

TEST(DisplayAllocatorTest, CountsStayConsistentThroughRandomOperations) {
  // Model check with a fixed seed: free + leased + blocked-not-leased = range.
  DisplayAllocator a(1000, 1063);
  std::set<std::uint32_t> leased;
  std::map<std::uint32_t, SteadyTime> blocked;
  std::mt19937 rng(4242);
  SteadyTime now = t0;
  for (int step = 0; step < 20000; ++step) {
    const std::uint32_t d = 1000 + rng() % 64;
    switch (rng() % 5) {
      case 0:
      case 1: {
        const bool expect = !leased.count(d) && !blocked.count(d);
        ASSERT_EQ(a.take(d), expect) << "take " << d << " at step " << step;
        if (expect) leased.insert(d);
        break;
      }
      case 2:
        a.give_back(d);
        leased.erase(d);
        break;
      case 3: {
        const SteadyTime until = now + seconds(rng() % 40);
        a.block(d, until, "r");
        blocked[d] = until;
        break;
      }
      case 4:
        now += seconds(rng() % 5);
        a.expire_blocks(now);
        for (auto it = blocked.begin(); it != blocked.end();)
          it = it->second <= now ? blocked.erase(it) : std::next(it);
        break;
    }
    std::size_t blocked_not_leased = 0;
    for (const auto& [b, until] : blocked) blocked_not_leased += leased.count(b) ? 0 : 1;
    ASSERT_EQ(a.leased_count(), leased.size()) << "step " << step;
    ASSERT_EQ(a.blocked().size(), blocked.size()) << "step " << step;
    ASSERT_EQ(a.free_count(), 64 - leased.size() - blocked_not_leased) << "step " << step;
    if (auto c = a.next_candidate()) {
      ASSERT_FALSE(leased.count(*c)) << "candidate " << *c << " is leased";
      ASSERT_FALSE(blocked.count(*c)) << "candidate " << *c << " is blocked";
    } else {
      ASSERT_EQ(a.free_count(), 0u);
    }
  }
}

TEST(DisplayAllocatorTest, LargeRangeWithManyLeasesStillFindsCandidates) {
  // The whole usable range, most of it leased: every remaining free number is
  // still found, and exhaustion is reported exactly when none is left.
  const std::uint32_t first = 0, last = 59535;
  DisplayAllocator a(first, last);
  for (std::uint32_t d = first; d <= last; ++d)
    if (d % 7 != 0) {
      ASSERT_TRUE(a.take(d));
    }
  const std::size_t free_left = a.free_count();
  ASSERT_EQ(free_left, (last - first) / 7 + 1);
  std::set<std::uint32_t> handed_out;
  for (std::size_t i = 0; i < free_left; ++i) {
    const auto d = a.next_candidate();
    ASSERT_TRUE(d.has_value()) << "after " << i << " of " << free_left;
    ASSERT_EQ(*d % 7, 0u);
    ASSERT_TRUE(handed_out.insert(*d).second) << *d << " offered twice";
    ASSERT_TRUE(a.take(*d));
  }
  EXPECT_EQ(a.next_candidate(), std::nullopt);
  EXPECT_EQ(a.leased_count(), std::size_t{last - first + 1});

  // Give back a few scattered numbers and block one of them: only the
  // unblocked ones come back.
  a.give_back(17);
  a.give_back(30000);
  a.give_back(59535);
  a.block(30000, t0 + seconds(30), "in use");
  std::set<std::uint32_t> again;
  while (auto d = a.next_candidate()) {
    again.insert(*d);
    ASSERT_TRUE(a.take(*d));
  }
  EXPECT_EQ(again, (std::set<std::uint32_t>{17, 59535}));
}

TEST(DisplayAllocatorTest, ManyBlocksInALargeRangeExpireInOrder) {
  DisplayAllocator a(0, 59535);
  for (std::uint32_t d = 0; d <= 59535; d += 2) a.block(d, t0 + seconds(d % 100), "x");
  EXPECT_EQ(a.free_count(), 59536u / 2);
  a.expire_blocks(t0 + seconds(49));
  for (const auto& [d, b] : a.blocked()) ASSERT_GT(d % 100, 49u);
  a.expire_blocks(t0 + seconds(99));
  EXPECT_TRUE(a.blocked().empty());
  EXPECT_EQ(a.free_count(), 59536u);
}

TEST(DisplayAllocatorTest, EmptyRangeHandsOutNothing) {
  DisplayAllocator a(10, 9);
  EXPECT_EQ(a.free_count(), 0u);
  EXPECT_EQ(a.next_candidate(), std::nullopt);
  EXPECT_FALSE(a.take(9));
  EXPECT_FALSE(a.take(10));
}

}  // namespace
}  // namespace xpra_broker
