// One broker per runtime dir: a second xpra-brokerd on the same runtime dir
// is refused (exit 71, naming broker.lock) and the first keeps serving with
// its leases and journal untouched; the socket file a kill -9 leaves behind
// does not stop the restart.
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <fstream>

#include "durable_support.h"

namespace xpra_broker::durable {
namespace {

class SingleInstanceTest : public DurableTest {};

TEST_F(SingleInstanceTest, ASecondBrokerOnTheSameRuntimeDirExits71NamingTheLockAndTheFirstKeepsServing) {
  start_broker({"--displays=780-782", "--x11-tmp-dir=" + private_x11_dir()});
  auto alice = connect_as(kAlice, broker().socket_path());
  const auto acquired = call_or_fail(alice, acquire_request("first broker"));
  ASSERT_EQ(acquired.status(), v1::OK) << acquired.message();
  const std::string journal_before = integration::read_file(broker().runtime_dir() + "/leases.journal");
  ASSERT_FALSE(journal_before.empty());

  integration::TempDir config_dir("xpb-durable-conf");
  const std::string config = config_dir.path() + "/broker.conf";
  std::ofstream(config) << "# empty\n";
  for (const std::string& socket : {broker().socket_path(), config_dir.path() + "/other.sock"}) {
    SCOPED_TRACE("second broker on socket " + socket);
    const auto second = integration::run_as(
        "root",
        {integration::brokerd_path(), "--config=" + config, "--user=xpra-broker", "--group=xpra",
         "--runtime-dir=" + broker().runtime_dir(), "--socket=" + socket, "--displays=780-782",
         "--x11-tmp-dir=" + private_x11_dir()},
        {}, 30s);
    EXPECT_EQ(second.exit_code, 71) << second.describe();
    EXPECT_NE((second.out + second.err).find("broker.lock"), std::string::npos) << second.describe();
  }

  // The first one is untouched: alive, its socket answers, its lease and
  // journal are as they were.
  EXPECT_TRUE(broker().alive());
  v1::Request status;
  status.mutable_status();
  EXPECT_EQ(broker().call(status).status(), v1::OK);
  const auto lease = find_lease(acquired.acquire().lease().id());
  ASSERT_TRUE(lease);
  EXPECT_EQ(lease->state(), v1::ACTIVE);
  EXPECT_EQ(integration::read_file(broker().runtime_dir() + "/leases.journal"), journal_before);
  const auto more = call_or_fail(alice, acquire_request("still serving"));
  EXPECT_EQ(more.status(), v1::OK) << more.message();
}

bool connect_refused(const std::string& path) {
  const int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  path.copy(addr.sun_path, sizeof(addr.sun_path) - 1);
  const bool refused = ::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0 && errno == ECONNREFUSED;
  ::close(fd);
  return refused;
}

TEST_F(SingleInstanceTest, TheStaleSocketFileOfAKilledBrokerDoesNotStopTheRestart) {
  start_broker({"--displays=783-784", "--x11-tmp-dir=" + private_x11_dir(), "--reattach-grace-seconds=600"});
  auto alice = connect_as(kAlice, broker().socket_path());
  const auto acquired = call_or_fail(alice, acquire_request("across the restart"));
  ASSERT_EQ(acquired.status(), v1::OK) << acquired.message();

  kill_broker();
  ASSERT_FALSE(HasFatalFailure());
  struct stat st {};
  ASSERT_EQ(::lstat(broker().socket_path().c_str(), &st), 0) << "kill -9 leaves the socket file behind";
  ASSERT_TRUE(S_ISSOCK(st.st_mode));
  ASSERT_TRUE(connect_refused(broker().socket_path())) << "nobody listens on it";

  restart_broker();  // throws (with the log) if it does not come up
  v1::Request status;
  status.mutable_status();
  EXPECT_EQ(broker().call(status).status(), v1::OK);
  auto again = connect_as(kAlice, broker().socket_path());
  const auto r = call_or_fail(
      again, reattach_request(acquired.acquire().lease().id(), acquired.acquire().reattach_token()));
  EXPECT_EQ(r.status(), v1::OK) << r.message();
  EXPECT_EQ(r.reattach().lease().display(), acquired.acquire().lease().display());
}

}  // namespace
}  // namespace xpra_broker::durable
