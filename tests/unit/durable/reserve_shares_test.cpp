// ReserveShares: who may still write into the journal's space reserve while
// the filesystem is full (durable/reserve_shares.h).
#include "durable/reserve_shares.h"

#include <gtest/gtest.h>

namespace xpra_broker {
namespace {

constexpr std::uint64_t kPlenty = 900 * 1024;  // reserve left, well above the floor

TEST(ReserveShares, AUserIsRefusedOnceHerShareIsUsedOthersAreNot) {
  ReserveShares shares;
  const uid_t alice = 1001, bob = 1002;
  std::uint64_t taken = 0;
  while (shares.may_write(alice, 0, kPlenty - taken)) {
    shares.charge(alice, 300);
    taken += 300;
    ASSERT_LT(taken, kPlenty) << "alice was never refused";
  }
  EXPECT_LE(shares.used_by(alice), ReserveShares::kPerUserBytes + 300);
  EXPECT_GE(shares.used_by(alice), ReserveShares::kPerUserBytes);
  EXPECT_TRUE(shares.may_write(bob, 0, kPlenty - taken));
}

TEST(ReserveShares, TheFloorIsKeptForRootAndNobodyElse) {
  ReserveShares shares;
  EXPECT_FALSE(shares.may_write(1001, 0, ReserveShares::kFloorBytes - 1));
  EXPECT_TRUE(shares.may_write(1001, 0, ReserveShares::kFloorBytes));
  EXPECT_FALSE(shares.may_write(1001, 100, ReserveShares::kFloorBytes + 99));
  EXPECT_TRUE(shares.may_write(0, 0, 1));  // root: the PAM module's logins
  shares.charge(0, 1 << 20);
  EXPECT_EQ(shares.used_by(0), 0u);  // root is never charged
  EXPECT_TRUE(shares.may_write(0, 0, 1));
}

TEST(ReserveShares, ResetGivesEveryoneTheirShareAgain) {
  ReserveShares shares;
  shares.charge(1001, ReserveShares::kPerUserBytes + 1);
  EXPECT_FALSE(shares.may_write(1001, 0, kPlenty));
  shares.reset();
  EXPECT_TRUE(shares.may_write(1001, 0, kPlenty));
}

}  // namespace
}  // namespace xpra_broker
