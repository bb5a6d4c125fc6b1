// policy.h: every verb of the table for every kind of caller, and every verb
// number outside the table refused as INVALID (after Chromium's loop over
// every flag bit).
#include "core/verb_table.h"

#include <google/protobuf/descriptor.h>
#include <gtest/gtest.h>

#include <set>
#include <string>

#include "text_assertions.h"

namespace xpra_broker {
namespace {

using testing::Contains;
using V = v1::Request;

constexpr gid_t kUsersGroup = 5000;  // allowed-groups
constexpr gid_t kAdminGroup = 5001;  // admin-groups
constexpr gid_t kOtherGroup = 5002;

AccessPolicy restricted_policy() {
  AccessPolicy p;
  p.allowed_gids = {kUsersGroup};
  p.admin_gids = {kAdminGroup};
  return p;
}

Caller make_caller(uid_t uid, gid_t gid, std::vector<gid_t> groups = {}) {
  Caller c;
  c.uid = uid;
  c.gid = gid;
  c.pid = 100 + static_cast<pid_t>(uid);
  c.groups = std::move(groups);
  return c;
}

const Caller kRoot = make_caller(0, 0);
const Caller kAllowedByPrimary = make_caller(1001, kUsersGroup);
const Caller kAllowedBySupplementary = make_caller(1002, 1002, {kOtherGroup, kUsersGroup});
const Caller kOutsider = make_caller(1003, 1003, {kOtherGroup});
const Caller kAdmin = make_caller(1004, 1004, {kAdminGroup});  // admin, not in allowed-groups

struct NamedCaller {
  const char* name;
  Caller caller;
  bool allowed_user;  // may_use_broker under restricted_policy()
};
const std::vector<NamedCaller>& callers() {
  static const std::vector<NamedCaller> all = {
      {"root", kRoot, true},
      {"allowed by primary group", kAllowedByPrimary, true},
      {"allowed by supplementary group", kAllowedBySupplementary, true},
      {"outside allowed-groups", kOutsider, false},
      {"admin-groups member", kAdmin, true},
  };
  return all;
}

TEST(PolicyTest, TableHasTheDocumentedVerbsWithTheirAudiences) {
  struct Expected {
    V::VerbCase verb;
    const char* name;
    VerbAudience audience;
  };
  const Expected expected[] = {
      {V::kAcquire, "acquire", VerbAudience::allowed_users},
      {V::kRelease, "release", VerbAudience::lease_owner_or_admin},
      {V::kReportProcess, "report_process", VerbAudience::lease_owner},
      {V::kReportStartFailure, "report_start_failure", VerbAudience::lease_owner},
      {V::kReattach, "reattach", VerbAudience::lease_owner},
      {V::kList, "list", VerbAudience::any_user},
      {V::kStatus, "status", VerbAudience::any_user},
      {V::kMetrics, "metrics", VerbAudience::admins},
      {V::kOpenLogin, "open_login", VerbAudience::root_only},
      {V::kCloseLogin, "close_login", VerbAudience::root_only},
  };
  for (const auto& e : expected) {
    SCOPED_TRACE(e.name);
    const VerbRule* rule = find_verb_rule(e.verb);
    ASSERT_NE(rule, nullptr);
    EXPECT_EQ(rule->verb, e.verb);
    EXPECT_STREQ(rule->name, e.name);
    EXPECT_EQ(rule->audience, e.audience);
  }
}

TEST(PolicyTest, TableEntriesAreUniqueAndNamed) {
  std::set<int> verbs;
  std::set<std::string> names;
  for (const auto& rule : verb_rules()) {
    EXPECT_NE(rule.verb, V::VERB_NOT_SET);
    EXPECT_TRUE(verbs.insert(rule.verb).second) << "verb " << rule.verb << " twice";
    ASSERT_NE(rule.name, nullptr);
    EXPECT_FALSE(std::string(rule.name).empty());
    EXPECT_TRUE(names.insert(rule.name).second) << "name " << rule.name << " twice";
    EXPECT_EQ(find_verb_rule(rule.verb), &rule);
  }
}

TEST(PolicyTest, EveryVerbInTheTableForEveryKindOfCaller) {
  const AccessPolicy policy = restricted_policy();
  for (const auto& rule : verb_rules()) {
    for (const auto& named : callers()) {
      SCOPED_TRACE(std::string(rule.name) + " by " + named.name);
      const auto d = check_verb_access(policy, named.caller, rule.verb);
      bool expect_allowed = false;
      switch (rule.audience) {
        case VerbAudience::any_user: expect_allowed = true; break;
        // The caller's part passes; the core checks the lease itself.
        case VerbAudience::lease_owner:
        case VerbAudience::lease_owner_or_admin: expect_allowed = true; break;
        case VerbAudience::allowed_users: expect_allowed = named.allowed_user; break;
        case VerbAudience::root_only: expect_allowed = named.caller.is_root(); break;
        case VerbAudience::admins: expect_allowed = policy.is_admin(named.caller); break;
      }
      EXPECT_EQ(d.allowed, expect_allowed);
      if (expect_allowed) {
        EXPECT_EQ(d.status, v1::OK);
        EXPECT_TRUE(d.message.empty()) << d.message;
      } else {
        EXPECT_EQ(d.status, v1::DENIED);
        EXPECT_FALSE(d.message.empty());
      }
    }
  }
}

// The reads any loop could ask for as fast as the broker answers are paced
// (read_pacer.h); nothing else is, so a lease holder is never held back.
TEST(PolicyTest, ExactlyTheReadVerbsArePaced) {
  std::set<std::string> paced;
  for (const auto& rule : verb_rules())
    if (rule.paced) paced.insert(rule.name);
  EXPECT_EQ(paced, (std::set<std::string>{"list", "metrics", "status"}));
}

// Metrics name every user: root and admin-groups only, like list --all.
TEST(PolicyTest, MetricsAreForRootAndAdminsOnly) {
  const AccessPolicy policy = restricted_policy();
  EXPECT_TRUE(check_verb_access(policy, kRoot, V::kMetrics).allowed);
  EXPECT_TRUE(check_verb_access(policy, kAdmin, V::kMetrics).allowed);
  for (const Caller& c : {kAllowedByPrimary, kAllowedBySupplementary, kOutsider}) {
    const auto d = check_verb_access(policy, c, V::kMetrics);
    EXPECT_EQ(d.status, v1::DENIED);
    EXPECT_TRUE(Contains(d.message, "metrics"));
    EXPECT_TRUE(Contains(d.message, "admin-groups"));
  }
  // No admin-groups configured: root only.
  EXPECT_FALSE(check_verb_access(AccessPolicy{}, kAllowedByPrimary, V::kMetrics).allowed);
}

TEST(PolicyTest, DeniedAcquireSaysWhyAndWhatToDo) {
  const auto d = check_verb_access(restricted_policy(), kOutsider, V::kAcquire);
  EXPECT_FALSE(d.allowed);
  EXPECT_EQ(d.status, v1::DENIED);
  EXPECT_TRUE(Contains(d.message, "uid 1003"));
  EXPECT_TRUE(Contains(d.message, "allowed-groups"));
}

TEST(PolicyTest, RootOnlyVerbsNameThemselvesWhenDenied) {
  for (V::VerbCase verb : {V::kOpenLogin, V::kCloseLogin}) {
    for (const Caller& c : {kAllowedByPrimary, kAdmin, kOutsider}) {
      const auto d = check_verb_access(restricted_policy(), c, verb);
      EXPECT_EQ(d.status, v1::DENIED);
      EXPECT_TRUE(Contains(d.message, find_verb_rule(verb)->name));
      EXPECT_TRUE(Contains(d.message, "root"));
    }
  }
}

TEST(PolicyTest, AdminGroupMembershipIsNotRootForRootOnlyVerbs) {
  const auto d = check_verb_access(restricted_policy(), kAdmin, V::kOpenLogin);
  EXPECT_FALSE(d.allowed);
}

// Every value the verb case can take: those in the table are decided by their
// audience; everything else (VERB_NOT_SET, verbs added to the protocol but not
// to the table, numbers no protocol version used) is INVALID for everyone,
// root included. 0..31 is the enum's whole value range (its highest
// enumerator is below 32), so no cast here is out of range.
TEST(PolicyTest, EveryVerbNumberOutsideTheTableIsInvalid) {
  const auto* verb_oneof = V::descriptor()->FindOneofByName("verb");
  ASSERT_NE(verb_oneof, nullptr);
  for (int i = 0; i < verb_oneof->field_count(); ++i) ASSERT_LT(verb_oneof->field(i)->number(), 32);
  const AccessPolicy policies[] = {restricted_policy(), AccessPolicy{}};
  int outside = 0;
  for (int n = 0; n < 32; ++n) {
    const auto verb = static_cast<V::VerbCase>(n);
    const bool in_table = find_verb_rule(verb) != nullptr;
    outside += in_table ? 0 : 1;
    for (const auto& policy : policies)
      for (const auto& named : callers()) {
        SCOPED_TRACE("verb " + std::to_string(n) + " by " + named.name);
        const auto d = check_verb_access(policy, named.caller, verb);
        if (in_table) {
          EXPECT_NE(d.status, v1::INVALID);
        } else {
          EXPECT_FALSE(d.allowed);
          EXPECT_EQ(d.status, v1::INVALID);
          EXPECT_TRUE(Contains(d.message, "unknown"));
        }
      }
  }
  EXPECT_EQ(find_verb_rule(V::VERB_NOT_SET), nullptr);
  EXPECT_EQ(outside, 32 - static_cast<int>(verb_rules().size()));
}

TEST(PolicyTest, VerbNotSetIsInvalidEvenForRoot) {
  const auto d = check_verb_access(AccessPolicy{}, kRoot, V::VERB_NOT_SET);
  EXPECT_FALSE(d.allowed);
  EXPECT_EQ(d.status, v1::INVALID);
}

TEST(PolicyTest, EmptyAllowedGroupsLetsEveryUserUseTheBroker) {
  AccessPolicy open;
  for (const auto& named : callers()) {
    EXPECT_TRUE(open.may_use_broker(named.caller)) << named.name;
    EXPECT_TRUE(check_verb_access(open, named.caller, V::kAcquire).allowed) << named.name;
  }
}

TEST(PolicyTest, MayUseBroker) {
  const AccessPolicy p = restricted_policy();
  EXPECT_TRUE(p.may_use_broker(kRoot));
  EXPECT_TRUE(p.may_use_broker(kAllowedByPrimary));
  EXPECT_TRUE(p.may_use_broker(kAllowedBySupplementary));
  EXPECT_FALSE(p.may_use_broker(kOutsider));
  EXPECT_TRUE(p.may_use_broker(kAdmin));
  // Group membership is all that counts: a uid equal to the group id is not.
  EXPECT_FALSE(p.may_use_broker(make_caller(kUsersGroup, 1)));
}

TEST(PolicyTest, SupplementaryGroupsCountWhereverTheyAreInTheList) {
  const AccessPolicy p = restricted_policy();
  for (std::size_t n = 1; n <= 8; ++n)
    for (std::size_t at = 0; at < n; ++at) {
      std::vector<gid_t> groups;
      for (std::size_t i = 0; i < n; ++i) groups.push_back(i == at ? kUsersGroup : 7000 + i);
      EXPECT_TRUE(p.may_use_broker(make_caller(1005, 1005, groups))) << n << " groups, at " << at;
      groups[at] = kAdminGroup;
      EXPECT_TRUE(p.is_admin(make_caller(1005, 1005, groups))) << n << " groups, at " << at;
    }
}

TEST(PolicyTest, InAnyGroupLooksAtPrimaryAndSupplementaryGroups) {
  const Caller c = make_caller(1, 10, {20, 30});
  EXPECT_TRUE(c.in_any_group({10}));
  EXPECT_TRUE(c.in_any_group({20}));
  EXPECT_TRUE(c.in_any_group({99, 30}));
  EXPECT_FALSE(c.in_any_group({11, 21, 31}));
  EXPECT_FALSE(c.in_any_group({}));
  EXPECT_FALSE(make_caller(1, 10).in_any_group({20}));
}

TEST(PolicyTest, IsAdmin) {
  const AccessPolicy p = restricted_policy();
  EXPECT_TRUE(p.is_admin(kRoot));
  EXPECT_TRUE(p.is_admin(kAdmin));
  EXPECT_TRUE(p.is_admin(make_caller(1006, kAdminGroup)));  // primary group
  EXPECT_FALSE(p.is_admin(kAllowedByPrimary));
  EXPECT_FALSE(p.is_admin(kAllowedBySupplementary));
  EXPECT_FALSE(p.is_admin(kOutsider));
  // Without admin-groups only root is admin.
  EXPECT_FALSE(AccessPolicy{}.is_admin(kAdmin));
  EXPECT_TRUE(AccessPolicy{}.is_admin(kRoot));
}

TEST(PolicyTest, MayManageLease) {
  const AccessPolicy p = restricted_policy();
  // The owner.
  EXPECT_TRUE(p.may_manage_lease(kAllowedByPrimary, 1001));
  EXPECT_TRUE(p.may_manage_lease(kOutsider, 1003));  // still owns what it holds
  // Another user, even one sharing the group.
  EXPECT_FALSE(p.may_manage_lease(kAllowedByPrimary, 1002));
  EXPECT_FALSE(p.may_manage_lease(kAllowedBySupplementary, 1001));
  EXPECT_FALSE(p.may_manage_lease(make_caller(1010, kUsersGroup), 1001));
  EXPECT_FALSE(p.may_manage_lease(kOutsider, 0));
  // Root and admins.
  EXPECT_TRUE(p.may_manage_lease(kRoot, 1001));
  EXPECT_TRUE(p.may_manage_lease(kAdmin, 1001));
  EXPECT_TRUE(p.may_manage_lease(kAdmin, 0));
  EXPECT_FALSE(AccessPolicy{}.may_manage_lease(kAdmin, 1001));
}

}  // namespace
}  // namespace xpra_broker
