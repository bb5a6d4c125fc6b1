// Who gets one more connection to the broker: a pure decision of counts, so
// it is tested exhaustively (connection_admission_test.cpp).
//
// The broker holds at most kMaxConnections sessions (fds and memory are
// finite). Three rules keep that shared count from being used against others
// (issue 21: 64 users x 64 idle connections locked out root and the PAM
// module, whose sessions are root's):
//   - root's connections have a reserve the others cannot take: ordinary
//     users share kMaxConnections - kRootReserve;
//   - each ordinary user may hold max-connections-per-user at most;
//   - when the users' share is full, a user below her fair share (the pool
//     divided by the users holding connections, her included) still gets in:
//     one idle connection (no lease) of the user holding the most is closed
//     for her. A user at or above her share is refused.
#pragma once

#include <sys/types.h>

#include <cstddef>
#include <cstdint>

namespace xpra_broker {

inline constexpr std::size_t kMaxConnections = 4096;
inline constexpr std::size_t kRootReserve = 64;
inline constexpr std::size_t kUserConnectionPool = kMaxConnections - kRootReserve;

struct ConnectionCounts {
  std::size_t total = 0;           // every open session, root's included, before this one
  std::size_t root = 0;            // root's
  std::size_t of_caller = 0;       // the caller's own, before this one
  std::size_t users_holding = 0;   // ordinary uids with at least one, the caller included
  std::uint32_t max_per_user = 64;
};

enum class Admission {
  admit,
  admit_evicting_idle,  // admit once one idle connection of the biggest holder is closed
  refuse_full,          // the broker (or, for root, root's own reserve) is full
  refuse_per_user,      // over max-connections-per-user
};

Admission admit_connection(uid_t caller, const ConnectionCounts& counts);

// A user's fair share of the pool when `users_holding` users hold some.
std::size_t fair_share(std::size_t users_holding);

}  // namespace xpra_broker
