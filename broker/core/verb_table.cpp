#include "core/verb_table.h"

#include "core/lease_core.h"
#include "untrusted_text.h"

namespace xpra_broker {

namespace {

LeaseTarget lease_by_id(const std::string& id) {
  return {true, id, std::nullopt, "lease " + escape_untrusted(id, 64)};
}

LeaseTarget release_target(const v1::Request& r) {
  switch (r.release().target_case()) {
    case v1::ReleaseRequest::kLeaseId: return lease_by_id(r.release().lease_id());
    case v1::ReleaseRequest::kDisplay:
      return {true, {}, r.release().display(), "display :" + std::to_string(r.release().display())};
    default: return {};
  }
}
LeaseTarget report_process_target(const v1::Request& r) { return lease_by_id(r.report_process().lease_id()); }
LeaseTarget report_failure_target(const v1::Request& r) { return lease_by_id(r.report_start_failure().lease_id()); }
LeaseTarget reattach_target(const v1::Request& r) { return lease_by_id(r.reattach().lease_id()); }

std::string not_held(const LeaseTarget& t) {
  return "you hold no " + t.what + "; 'xpra-request-display list' shows your leases";
}
std::string no_active(const LeaseTarget& t) { return "you hold no active " + t.what; }
std::string nothing_to_reattach(const LeaseTarget& t) {
  return "no " + t.what + " of yours to reattach (it ended, or the token does not match)";
}

bool lists_everyone(const v1::Request& r) { return r.list().all(); }

}  // namespace

const std::vector<VerbRule>& verb_rules() {
  using V = v1::Request;
  using A = VerbAudience;
  using C = LeaseCore;
  using J = Journaling;
  static const std::vector<VerbRule> rules = {
      // verb                  name                    who                        paced  journals          recorded as      handler
      {V::kAcquire,            "acquire",              A::allowed_users,          false, J::withdrawable,  "lease",         &C::acquire},
      {V::kRelease,            "release",              A::lease_owner_or_admin,   false, J::owed,          nullptr,         &C::release,
       release_target, not_held},
      {V::kList,               "list",                 A::any_user,               true,  J::none,          nullptr,         &C::list,
       nullptr, nullptr, lists_everyone},
      {V::kStatus,             "status",               A::any_user,               true,  J::none,          nullptr,         &C::status},
      {V::kMetrics,            "metrics",              A::admins,                 true,  J::none,          nullptr,         &C::metrics},
      {V::kReportProcess,      "report_process",       A::lease_owner,            false, J::withdrawable,  "process",       &C::report_process,
       report_process_target, no_active},
      {V::kReportStartFailure, "report_start_failure", A::lease_owner,            false, J::owed,          nullptr,         &C::report_start_failure,
       report_failure_target, no_active},
      {V::kReattach,           "reattach",             A::lease_owner,            false, J::withdrawable,  "reattach",      &C::reattach,
       reattach_target, nothing_to_reattach},
      {V::kOpenLogin,          "open_login",           A::root_only,              false, J::withdrawable,  "login session", &C::open_login},
      {V::kCloseLogin,         "close_login",          A::root_only,              false, J::owed,          nullptr,         &C::close_login},
  };
  return rules;
}

const VerbRule* find_verb_rule(v1::Request::VerbCase verb) {
  for (const auto& rule : verb_rules())
    if (rule.verb == verb) return &rule;
  return nullptr;
}

AccessDecision check_verb_access(const AccessPolicy& policy, const Caller& caller, const VerbRule* rule,
                                 const v1::Request& request) {
  if (!rule) return {false, v1::INVALID, "unknown or missing request verb"};
  switch (rule->audience) {
    case VerbAudience::any_user:
    case VerbAudience::lease_owner:
    case VerbAudience::lease_owner_or_admin: break;
    case VerbAudience::allowed_users:
      if (policy.may_use_broker(caller)) break;
      return {false, v1::DENIED,
              "uid " + std::to_string(caller.uid) +
                  " is not in any of the broker's allowed-groups; ask the administrator to add you"};
    case VerbAudience::root_only:
      if (caller.is_root()) break;
      return {false, v1::DENIED, std::string(rule->name) + " is for root (the PAM module) only"};
    case VerbAudience::admins:
      if (policy.is_admin(caller)) break;
      return {false, v1::DENIED,
              std::string(rule->name) + " is for root and members of admin-groups only (it names every user)"};
  }
  if (rule->admin_form && rule->admin_form(request) && !policy.is_admin(caller))
    return {false, v1::DENIED,
            std::string("only root and members of admin-groups may ") + rule->name + " every user's leases"};
  return {true, v1::OK, {}};
}

AccessDecision check_verb_access(const AccessPolicy& policy, const Caller& caller, v1::Request::VerbCase verb) {
  v1::Request request;  // the plain form of the verb (no admin form)
  return check_verb_access(policy, caller, find_verb_rule(verb), request);
}

}  // namespace xpra_broker
