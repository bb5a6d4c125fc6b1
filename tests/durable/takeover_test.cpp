// Nobody but the holder can take a lease over: not another uid, even with
// the right token; not the holder's uid with a wrong token; not root. Before
// and after a kill -9 and restart of the broker. Every refusal is NOT_FOUND,
// exactly like a lease that does not exist, and changes nothing.
#include <set>

#include "durable_support.h"

namespace xpra_broker::durable {
namespace {

class TakeoverTest : public DurableTest {
 protected:
  // Every way to try for `id` that must fail, each on a fresh connection.
  void expect_every_takeover_refused(const std::string& id, const std::string& token, const char* when) {
    SCOPED_TRACE(when);
    std::string wrong = token;
    wrong[0] = wrong[0] == 'a' ? 'b' : 'a';
    const struct {
      const char* what;
      const char* user;
      std::string token;
    } attempts[] = {
        {"xpb-bob with alice's correct token", kBob, token},
        {"xpb-bob with a wrong token", kBob, wrong},
        {"xpb-alice with a wrong token", kAlice, wrong},
        {"xpb-alice with no token", kAlice, ""},
        {"xpb-alice with a token prefix", kAlice, token.substr(0, token.size() / 2)},
        {"root with alice's correct token", "root", token},
    };
    for (const auto& a : attempts) {
      SCOPED_TRACE(a.what);
      auto conn = connect_as(a.user, broker().socket_path());
      const auto r = call_or_fail(conn, reattach_request(id, a.token));
      EXPECT_EQ(r.status(), v1::NOT_FOUND) << r.message();
      EXPECT_FALSE(r.has_reattach()) << "nothing about the lease is revealed";
      EXPECT_EQ(r.message().find(token), std::string::npos);
      // And closing that connection ends nothing.
    }
  }
};

TEST_F(TakeoverTest, AnotherUidOrAWrongTokenCannotTakeALeaseOverBeforeOrAfterARestart) {
  start_broker({"--displays=785-789", "--x11-tmp-dir=" + private_x11_dir(), "--reattach-grace-seconds=600"});
  const uid_t alice_uid = integration::uid_of(kAlice);
  auto alice = connect_as(kAlice, broker().socket_path());
  const auto acquired = call_or_fail(alice, acquire_request("alice's"));
  ASSERT_EQ(acquired.status(), v1::OK) << acquired.message();
  const std::string id = acquired.acquire().lease().id();
  const std::string token = acquired.acquire().reattach_token();
  const std::uint32_t display = acquired.acquire().lease().display();
  ASSERT_GE(token.size(), 16u) << "the token is a secret of some length";

  // Only the holder sees the token: not in list, not to root.
  for (const auto& l : list_all()) EXPECT_EQ(l.DebugString().find(token), std::string::npos);

  expect_every_takeover_refused(id, token, "while alice is connected");
  auto lease = find_lease(id);
  ASSERT_TRUE(lease);
  EXPECT_EQ(lease->state(), v1::ACTIVE);
  EXPECT_EQ(lease->uid(), alice_uid);

  kill_broker();
  ASSERT_FALSE(HasFatalFailure());
  restart_broker();
  lease = find_lease(id);
  ASSERT_TRUE(lease) << "the lease did not survive the restart";
  EXPECT_EQ(lease->state(), v1::DETACHED);

  expect_every_takeover_refused(id, token, "after the restart, alice not back yet");
  lease = find_lease(id);
  ASSERT_TRUE(lease) << "a refused takeover ended the lease";
  EXPECT_EQ(lease->state(), v1::DETACHED) << "a refused takeover changed the lease";
  EXPECT_EQ(lease->uid(), alice_uid);
  EXPECT_EQ(lease->display(), display);

  // Alice herself, with her token, gets it back.
  auto alice_again = connect_as(kAlice, broker().socket_path());
  const auto r = call_or_fail(alice_again, reattach_request(id, token));
  ASSERT_EQ(r.status(), v1::OK) << r.message();
  EXPECT_EQ(r.reattach().lease().display(), display);
  EXPECT_EQ(r.reattach().lease().state(), v1::ACTIVE);

  expect_every_takeover_refused(id, token, "after alice reattached");
  lease = find_lease(id);
  ASSERT_TRUE(lease);
  EXPECT_EQ(lease->state(), v1::ACTIVE);
  EXPECT_EQ(lease->uid(), alice_uid);

  // It is bound to alice's new connection: closing it ends the lease.
  alice_again = BrokerConnection();
  EXPECT_TRUE(integration::wait_until([&] { return !find_lease(id); }, 20s))
      << "the lease did not end with its holder's connection";
}

}  // namespace
}  // namespace xpra_broker::durable
