// Who may do what, end to end: identity comes from the kernel, so these run
// the client as the real test users.
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sstream>

#include "integration_fixture.h"

namespace xpra_broker::integration {
namespace {

class AccessTest : public BrokerTest {
 protected:
  // Starts an exec client of `user` that holds its lease until terminated;
  // returns it once the command runs, with the lease id and display it got.
  struct Holder {
    ChildProcess client;
    std::string lease;
    std::string display;
  };
  Holder hold_display(const std::string& user, const std::string& tag) {
    const std::string file = scratch("held-" + tag);
    Holder h;
    h.client = broker_->spawn_client_as(
        user, exec_shell("echo \"$XPRA_BROKER_LEASE $XPRA_BROKER_DISPLAY\" > " + file + "; exec sleep 120"));
    std::istringstream fields(wait_for_file(file));
    fields >> h.lease >> h.display;
    EXPECT_FALSE(h.lease.empty()) << "the exec client of " << user
                                  << " did not get a display: " << h.client.terminate().describe();
    return h;
  }
};

TEST_F(AccessTest, UsersCannotSeeOrReleaseEachOthersLeases) {
  start_broker({"--displays=330-331"});
  Holder alice = hold_display(kAlice, "alice");
  ASSERT_FALSE(alice.lease.empty());

  const auto bob_list = broker_->client_as(kBob, {"list", "--json"});
  EXPECT_EQ(bob_list.exit_code, 0) << bob_list.describe();
  EXPECT_EQ(parse_json_output(bob_list), nlohmann::json::array()) << "bob sees alice's lease";

  for (const auto& args : std::vector<std::vector<std::string>>{{"list", "--all"}, {"list", "--all", "--json"}}) {
    const auto r = broker_->client_as(kBob, args);
    EXPECT_EQ(r.exit_code, 77) << r.describe();
    EXPECT_EQ(r.out.find(alice.lease), std::string::npos) << r.describe();
  }
  for (const auto& target : {alice.lease, ":" + alice.display}) {
    const auto r = broker_->client_as(kBob, {"release", target});
    EXPECT_EQ(r.exit_code, 1) << "bob releasing " << target << ": " << r.describe();
    EXPECT_NE(r.err.find("NOT_FOUND"), std::string::npos) << r.describe();
  }

  const auto alice_list = parse_json_output(broker_->client_as(kAlice, {"list", "--json"}));
  ASSERT_EQ(alice_list.size(), 1u) << "alice's lease did not survive bob's attempts: " << alice_list.dump(1);
  EXPECT_EQ(alice_list[0]["lease"], alice.lease);
  EXPECT_TRUE(alice.client.running());

  const auto all = list_all();
  ASSERT_EQ(all.size(), 1u) << all.dump(1);
  EXPECT_EQ(all[0]["lease"], alice.lease);
  EXPECT_EQ(all[0]["uid"].get<uid_t>(), uid_of(kAlice));

  const auto root_release = broker_->client_as("root", {"release", alice.lease});
  EXPECT_EQ(root_release.exit_code, 0) << root_release.describe();
  EXPECT_EQ(lease_count(), 0u) << list_all().dump(1);
  EXPECT_EQ(alice.client.terminate().exit_code, 128 + SIGTERM);
}

TEST_F(AccessTest, AUserWhoChangesTheirOwnDirectoryFindsItRepairedAtTheNextAcquire) {
  // The broker skips the check of a directory its inotify watch saw no
  // change on; a change must still be seen and repaired.
  start_broker({"--displays=332-333"});
  const std::string dir = broker_->runtime_dir() + "/" + std::to_string(uid_of(kAlice));
  const auto mode_of = [&] {
    struct stat st {};
    EXPECT_EQ(::stat(dir.c_str(), &st), 0) << dir;
    return st.st_mode & 07777;
  };
  for (int i = 0; i < 3; ++i) {  // the first acquires check it and start watching it
    const auto r = broker_->client_as(kAlice, {"exec", "--", "true"});
    ASSERT_EQ(r.exit_code, 0) << r.describe();
  }
  ASSERT_EQ(mode_of(), 0770u);
  for (const char* mode : {"0700", "0777"}) {
    const auto chmod = run_as(kAlice, {"chmod", mode, dir});
    ASSERT_EQ(chmod.exit_code, 0) << chmod.describe();
    ASSERT_NE(mode_of(), 0770u);
    const auto r = broker_->client_as(kAlice, {"exec", "--", "true"});
    ASSERT_EQ(r.exit_code, 0) << r.describe();
    EXPECT_EQ(mode_of(), 0770u) << "not repaired after alice set " << mode;
  }
}

TEST_F(AccessTest, UserOutsideAllowedGroupsIsRefusedWithAReason) {
  start_broker({"--displays=335-336", "--allowed-groups=xpb-users"});
  const std::string mark = scratch("mallory-ran");

  const auto mallory = broker_->client_as(kMallory, {"exec", "--", "touch", mark});
  EXPECT_EQ(mallory.exit_code, 125) << mallory.describe();
  EXPECT_NE(mallory.err.find("allowed-groups"), std::string::npos)
      << "the refusal should say why: " << mallory.describe();
  EXPECT_NE(::access(mark.c_str(), F_OK), 0) << "the command ran without a lease";

  const auto alice = broker_->client_as(kAlice, exec_shell("echo $XPRA_BROKER_DISPLAY"));
  EXPECT_EQ(alice.exit_code, 0) << alice.describe();
  EXPECT_EQ(alice.out, "335\n");
  EXPECT_EQ(lease_count(), 0u);
}

TEST_F(AccessTest, QuotasRefuseWithTempFailAndAReason) {
  start_broker({"--displays=340-349", "--max-leases-per-user=2", "--max-leases=3"});
  Holder a1 = hold_display(kAlice, "a1");
  Holder a2 = hold_display(kAlice, "a2");
  ASSERT_FALSE(a1.lease.empty());
  ASSERT_FALSE(a2.lease.empty());

  const auto third = broker_->client_as(kAlice, {"exec", "--", "true"});
  EXPECT_EQ(third.exit_code, 124) << third.describe();
  EXPECT_NE(third.err.find("max-leases-per-user"), std::string::npos) << third.describe();

  // The per-user quota is per user: bob still gets one, which fills max-leases.
  Holder b1 = hold_display(kBob, "b1");
  ASSERT_FALSE(b1.lease.empty());
  const auto over_total = broker_->client_as(kBob, {"exec", "--", "true"});
  EXPECT_EQ(over_total.exit_code, 124) << over_total.describe();
  EXPECT_NE(over_total.err.find("(max-leases)"), std::string::npos) << over_total.describe();
  EXPECT_EQ(lease_count(), 3u);

  // A freed lease makes room again.
  EXPECT_EQ(a1.client.terminate().exit_code, 128 + SIGTERM);
  ASSERT_TRUE(wait_until([&] { return lease_count() == 2; })) << list_all().dump(1);
  const auto after = broker_->client_as(kBob, {"exec", "--", "true"});
  EXPECT_EQ(after.exit_code, 0) << after.describe();
}

}  // namespace
}  // namespace xpra_broker::integration
