#include "policy.h"

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

const std::vector<VerbRule>& verb_rules() {
  using V = v1::Request;
  static const std::vector<VerbRule> rules = {
      {V::kAcquire, "acquire", VerbAudience::allowed_users},
      {V::kRelease, "release", VerbAudience::any_user},
      {V::kList, "list", VerbAudience::any_user, /*paced=*/true},
      {V::kStatus, "status", VerbAudience::any_user, /*paced=*/true},
      {V::kMetrics, "metrics", VerbAudience::admins, /*paced=*/true},
      {V::kReportProcess, "report_process", VerbAudience::allowed_users},
      {V::kReportStartFailure, "report_start_failure", VerbAudience::allowed_users},
      {V::kReattach, "reattach", VerbAudience::any_user},
      {V::kOpenLogin, "open_login", VerbAudience::root_only},
      {V::kCloseLogin, "close_login", VerbAudience::root_only},
  };
  return rules;
}

const VerbRule* find_verb_rule(v1::Request::VerbCase verb) {
  for (const auto& rule : verb_rules())
    if (rule.verb == verb) return &rule;
  return nullptr;
}

AccessDecision check_verb_access(const AccessPolicy& policy, const Caller& caller, v1::Request::VerbCase verb) {
  const VerbRule* rule = find_verb_rule(verb);
  if (!rule) return {false, v1::INVALID, "unknown or missing request verb"};
  switch (rule->audience) {
    case VerbAudience::any_user: return {true, v1::OK, {}};
    case VerbAudience::allowed_users:
      if (policy.may_use_broker(caller)) return {true, v1::OK, {}};
      return {false, v1::DENIED,
              "uid " + std::to_string(caller.uid) +
                  " is not in any of the broker's allowed-groups; ask the administrator to add you"};
    case VerbAudience::root_only:
      if (caller.is_root()) return {true, v1::OK, {}};
      return {false, v1::DENIED, std::string(rule->name) + " is for root (the PAM module) only"};
    case VerbAudience::admins:
      if (policy.is_admin(caller)) return {true, v1::OK, {}};
      return {false, v1::DENIED,
              std::string(rule->name) + " is for root and members of admin-groups only (it names every user)"};
  }
  return {false, v1::INTERNAL, "unhandled audience"};
}

}  // namespace xpra_broker
