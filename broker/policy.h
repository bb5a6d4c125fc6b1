// Who may do what. Pure functions of the caller's kernel identity and plain
// data, checked centrally before any handler runs (after OpenSSH's monitor
// table and dbus-broker's method table).
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

// Which callers a verb admits.
enum class VerbAudience {
  allowed_users,  // may_use_broker()
  any_user,       // anyone who can connect (status, list of own leases)
  root_only,      // the PAM module
  admins,         // root and admin-groups: what names every user (metrics)
};

struct VerbRule {
  v1::Request::VerbCase verb;
  const char* name;
  VerbAudience audience;
  // A read that any loop could ask for as fast as the broker answers:
  // paced per user by the server (read_pacer.h), before the access check,
  // so a refused one costs the same wait.
  bool paced = false;
};

// The table; a verb not in it is INVALID.
const std::vector<VerbRule>& verb_rules();
const VerbRule* find_verb_rule(v1::Request::VerbCase verb);

struct AccessDecision {
  bool allowed = false;
  v1::Status status = v1::OK;
  std::string message;
};
AccessDecision check_verb_access(const AccessPolicy& policy, const Caller& caller, v1::Request::VerbCase verb);

}  // namespace xpra_broker
