#include "durable/reserve_shares.h"

namespace xpra_broker {

bool ReserveShares::may_write(uid_t uid, std::uint64_t bytes, std::uint64_t reserve_left) const {
  if (uid == 0) return true;  // root: the PAM module's logins, an admin's own leases
  if (reserve_left < kFloorBytes + bytes) return false;
  return used_by(uid) + bytes <= kPerUserBytes;
}

void ReserveShares::charge(uid_t uid, std::uint64_t bytes) {
  if (uid != 0) used_[uid] += bytes;
}

std::uint64_t ReserveShares::used_by(uid_t uid) const {
  const auto it = used_.find(uid);
  return it == used_.end() ? 0 : it->second;
}

}  // namespace xpra_broker
