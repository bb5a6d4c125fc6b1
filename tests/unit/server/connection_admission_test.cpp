#include "server/connection_admission.h"

#include <gtest/gtest.h>

namespace xpra_broker {
namespace {

constexpr uid_t kRoot = 0, kAlice = 1001;

ConnectionCounts counts(std::size_t total, std::size_t root, std::size_t of_caller, std::size_t users,
                        std::uint32_t max_per_user = 64) {
  ConnectionCounts c;
  c.total = total;
  c.root = root;
  c.of_caller = of_caller;
  c.users_holding = users;
  c.max_per_user = max_per_user;
  return c;
}

TEST(ConnectionAdmissionTest, RootGetsInWhenUsersHaveFilledTheirWholePool) {
  // Issue 21: 64 users x 64 idle connections used to fill all 4096.
  EXPECT_EQ(admit_connection(kRoot, counts(kUserConnectionPool, 0, 0, 64)), Admission::admit);
  EXPECT_EQ(admit_connection(kRoot, counts(kMaxConnections - 1, kRootReserve - 1, kRootReserve - 1, 64)),
            Admission::admit);
  EXPECT_EQ(admit_connection(kRoot, counts(kMaxConnections, kRootReserve, kRootReserve, 64)),
            Admission::refuse_full);
  // Root's own connections are not limited by max-connections-per-user.
  EXPECT_EQ(admit_connection(kRoot, counts(100, 100, 100, 0)), Admission::admit);
}

TEST(ConnectionAdmissionTest, UsersCannotTakeRootsReserve) {
  EXPECT_EQ(admit_connection(kAlice, counts(kUserConnectionPool - 1, 0, 10, 70)), Admission::admit);
  EXPECT_EQ(admit_connection(kAlice, counts(kUserConnectionPool, 0, fair_share(64), 64)), Admission::refuse_full)
      << "at her share already";
  // Root's connections do not count against the users' pool.
  EXPECT_EQ(admit_connection(kAlice, counts(kUserConnectionPool - 1 + 30, 30, 10, 70)), Admission::admit);
}

TEST(ConnectionAdmissionTest, AUserBelowHerShareOfAFullPoolTakesAnIdleConnectionFromTheBiggestHolder) {
  // One user holds the whole pool: alice (new) is below her half.
  constexpr std::uint32_t kMany = 100000;  // max-connections-per-user out of the way
  EXPECT_EQ(admit_connection(kAlice, counts(kUserConnectionPool, 0, 0, 2, kMany)), Admission::admit_evicting_idle);
  EXPECT_EQ(admit_connection(kAlice, counts(kUserConnectionPool, 0, fair_share(2) - 1, 2, kMany)),
            Admission::admit_evicting_idle);
  EXPECT_EQ(admit_connection(kAlice, counts(kUserConnectionPool, 0, fair_share(2), 2, kMany)),
            Admission::refuse_full);
  // 64 users with 63 each: the 65th user's first connection gets in.
  EXPECT_EQ(admit_connection(kAlice, counts(kUserConnectionPool, 0, 0, 65)), Admission::admit_evicting_idle);
  EXPECT_EQ(fair_share(64), kUserConnectionPool / 64);
  EXPECT_EQ(fair_share(0), kUserConnectionPool);
}

TEST(ConnectionAdmissionTest, MaxConnectionsPerUserComesFirst) {
  EXPECT_EQ(admit_connection(kAlice, counts(100, 0, 64, 3)), Admission::refuse_per_user);
  EXPECT_EQ(admit_connection(kAlice, counts(100, 0, 63, 3)), Admission::admit);
}

}  // namespace
}  // namespace xpra_broker
