// Who the caller is and what the configuration lets them do: pure functions
// of the caller's kernel identity. The verb table (verb_table.h) applies them
// to each request before any handler runs.
#pragma once

#include <sys/types.h>

#include <string>
#include <vector>

#include "protocol.h"

namespace xpra_broker {

// Identity read once from the kernel at accept (SO_PEERCRED, SO_PEERGROUPS);
// never taken from a message.
struct Caller {
  uid_t uid = 0;
  gid_t gid = 0;
  pid_t pid = 0;
  std::vector<gid_t> groups;  // supplementary groups
  bool is_root() const { return uid == 0; }
  bool in_any_group(const std::vector<gid_t>& wanted) const;
};

struct AccessPolicy {
  std::vector<gid_t> allowed_gids;  // empty: every user may take displays
  std::vector<gid_t> admin_gids;

  // May take displays at all (root always may).
  bool may_use_broker(const Caller& caller) const;
  // May see and end every user's leases.
  bool is_admin(const Caller& caller) const;
  // May see / end this lease: its owner or an admin.
  bool may_manage_lease(const Caller& caller, uid_t lease_uid) const;
};

}  // namespace xpra_broker
