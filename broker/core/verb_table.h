// The one table of protocol verbs (after OpenSSH's monitor table): for each,
// its name, who may call it, whether reads of it are paced, how its change
// is recorded, and the core's handler. The access check is made here, centrally, before any handler
// runs; a verb missing from the table is INVALID, so a verb cannot be
// handled without a rule nor have a rule without a handler.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "core/policy.h"
#include "protocol.h"

namespace xpra_broker {

class LeaseCore;
struct Call;

// Which callers a verb admits.
enum class VerbAudience {
  allowed_users,         // may_use_broker()
  any_user,              // anyone who can connect (status, list of own leases)
  root_only,             // the PAM module
  admins,                // root and admin-groups: what names every user (metrics)
  lease_owner,           // the owner of the active lease the request names
  lease_owner_or_admin,  // the owner of the lease the request names, or an admin
};

// The lease a request names, for the lease audiences.
struct LeaseTarget {
  bool valid = false;  // false: the request names no lease at all
  std::string lease_id;
  std::optional<std::uint32_t> display;
  std::string what;  // "lease <id>" or "display :N", escaped, for replies
};

// How a verb's change is recorded (lease_records.h), which decides its
// reply when the group commit it waited for fails.
enum class Journaling {
  none,          // records nothing: its reply stands
  withdrawable,  // announces a change that is taken back if unrecorded: INTERNAL, nothing changed
  owed,          // ends something, never undone, not acknowledged until recorded: INTERNAL, ending
};

struct VerbRule {
  v1::Request::VerbCase verb;
  const char* name;
  VerbAudience audience;
  // A read that any loop could ask for as fast as the broker answers:
  // paced per user by the server (read_pacer.h), before the access check,
  // so a refused one costs the same wait.
  bool paced;
  Journaling journals;
  // Withdrawable: what the reply after a failed commit says was not recorded.
  const char* recorded_as;
  v1::Response (LeaseCore::*handler)(const Call&);
  // Lease audiences: which lease the request names.
  LeaseTarget (*target)(const v1::Request&) = nullptr;
  // Lease audiences: the reply when the caller has no such lease (another
  // user's lease reads exactly like a missing one).
  std::string (*not_found)(const LeaseTarget&) = nullptr;
  // A form of the verb only admins may use (list --all).
  bool (*admin_form)(const v1::Request&) = nullptr;
};

// The table; a verb not in it is INVALID.
const std::vector<VerbRule>& verb_rules();
const VerbRule* find_verb_rule(v1::Request::VerbCase verb);

struct AccessDecision {
  bool allowed = false;
  v1::Status status = v1::OK;
  std::string message;
};
// The caller's part of the check (kernel identity, groups, admin forms).
// The lease audiences pass here; the core then checks the lease itself
// (LeaseCore::authorize).
// `rule`: the request's row (find_verb_rule), or null for a verb not in the table.
AccessDecision check_verb_access(const AccessPolicy& policy, const Caller& caller, const VerbRule* rule,
                                 const v1::Request& request);
AccessDecision check_verb_access(const AccessPolicy& policy, const Caller& caller, v1::Request::VerbCase verb);

}  // namespace xpra_broker
