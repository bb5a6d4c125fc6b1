#include "server/connection_admission.h"

#include <algorithm>

namespace xpra_broker {

std::size_t fair_share(std::size_t users_holding) {
  return kUserConnectionPool / std::max<std::size_t>(users_holding, 1);
}

Admission admit_connection(uid_t caller, const ConnectionCounts& c) {
  if (caller == 0) return c.total < kMaxConnections ? Admission::admit : Admission::refuse_full;
  if (c.of_caller >= c.max_per_user) return Admission::refuse_per_user;
  const std::size_t users = c.total - std::min(c.total, c.root);
  if (users < kUserConnectionPool && c.total < kMaxConnections) return Admission::admit;
  // The users' pool is full: only somebody below her share may take an idle
  // connection from whoever holds the most.
  return c.of_caller < fair_share(c.users_holding) ? Admission::admit_evicting_idle : Admission::refuse_full;
}

}  // namespace xpra_broker
