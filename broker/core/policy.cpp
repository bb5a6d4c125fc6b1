#include "core/policy.h"

#include <algorithm>

namespace xpra_broker {

bool Caller::in_any_group(const std::vector<gid_t>& wanted) const {
  for (gid_t g : wanted) {
    if (g == gid) return true;
    if (std::find(groups.begin(), groups.end(), g) != groups.end()) return true;
  }
  return false;
}

bool AccessPolicy::may_use_broker(const Caller& caller) const {
  if (caller.is_root() || allowed_gids.empty()) return true;
  return caller.in_any_group(allowed_gids) || is_admin(caller);
}

bool AccessPolicy::is_admin(const Caller& caller) const {
  return caller.is_root() || caller.in_any_group(admin_gids);
}

bool AccessPolicy::may_manage_lease(const Caller& caller, uid_t lease_uid) const {
  return caller.uid == lease_uid || is_admin(caller);
}

}  // namespace xpra_broker
