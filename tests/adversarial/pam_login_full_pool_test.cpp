// Issue 21, attack 4, with the real PAM module: 64 uids each hold their
// whole share (max-connections-per-user, 64) of idle connections, 4096 in
// all, the broker's global cap. A real login through PAM (pamtester with a
// service file that loads the built pam_xpra_broker.so, fail=closed, so a
// refused open_login refuses the login) must still open: the module's
// connection is root's, and the cap keeps room for root.
//
// The 64 uids are bare kernel uids (no passwd entry: SO_PEERCRED is all the
// broker's admission reads), 4242000-4242063, so no account is created.
// A private --x11-tmp-dir, displays 52750-52759.
#include <grp.h>
#include <poll.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <fstream>

#include "adversarial_support.h"

namespace xpra_broker::adversarial {
namespace {

constexpr uid_t kFirstFillerUid = 4242000;
constexpr int kFillerUids = 64;
constexpr int kConnectionsPerUid = 64;  // the default max-connections-per-user

class PamLoginFullPoolTest : public AdversarialTest {
 protected:
  void TearDown() override {
    if (!service_path_.empty()) ::unlink(service_path_.c_str());
    AdversarialTest::TearDown();
  }
  std::string service_path_;
};

TEST_F(PamLoginFullPoolTest, APamLoginOpensWhile64UidsHoldTheWholeConnectionPool) {
  ASSERT_EQ(::access("/usr/bin/pamtester", X_OK), 0) << "pamtester is not installed (scripts/install-deps.sh)";
  start_broker({"--displays=52750-52759", "--x11-tmp-dir=" + private_x11_dir(), "--idle-timeout-seconds=600",
                "--allowed-groups=" + std::string(kAllowedGroup)});
  const std::string socket = broker().socket_path();
  const std::string service = "xpra-broker-adversarial-full-pool-" + std::to_string(::getpid());
  service_path_ = "/etc/pam.d/" + service;
  {
    std::ofstream out(service_path_);
    out << "session required " << XPB_PAM_MODULE_PATH << " socket=" << socket << " timeout=10000 fail=closed\n";
    ASSERT_TRUE(out.good()) << "cannot write " << service_path_;
  }

  // Counters: 0 = connections that got in and stayed, 1 = fillers ready,
  // 2 = fillers that failed, 7 = stop. Root forks one filler per uid.
  BackgroundAs fillers("root", [socket](BackgroundAs::Counters& c) {
    std::vector<pid_t> children;
    for (int i = 0; i < kFillerUids; ++i) {
      const pid_t pid = ::fork();
      if (pid < 0) return 2;
      if (pid == 0) {
        const uid_t uid = kFirstFillerUid + static_cast<uid_t>(i);
        if (::setgroups(0, nullptr) != 0 || ::setresgid(uid, uid, uid) != 0 || ::setresuid(uid, uid, uid) != 0) {
          ++c[2];
          ::_exit(1);
        }
        std::vector<BrokerConnection> conns;
        for (int k = 0; k < kConnectionsPerUid; ++k) conns.push_back(BrokerConnection::connect(socket, 30s));
        // A refused connection gets its reply and EOF at once; give the
        // broker a moment to refuse, then count the ones still open.
        ::usleep(500000);
        for (auto& conn : conns) {
          if (!conn.connected()) continue;
          pollfd p{conn.fd(), POLLIN, 0};
          if (::poll(&p, 1, 0) == 0) ++c[0];
        }
        ++c[1];
        ::pause();  // holds them until killed
        ::_exit(0);
      }
      children.push_back(pid);
    }
    while (c[7] == 0) ::usleep(100000);
    for (pid_t pid : children) ::kill(pid, SIGKILL);
    for (pid_t pid : children) ::waitpid(pid, nullptr, 0);
    return 0;
  });
  ASSERT_TRUE(integration::wait_until(
      [&] { return fillers.counter(1) + fillers.counter(2) == kFillerUids || fillers.wait_for(0ms); }, 120s));
  ASSERT_EQ(fillers.counter(2), 0u) << "some fillers could not take their uid";
  const std::uint64_t held = fillers.counter(0);
  const v1::Response status = broker().call(status_request());

  // The login: pamtester as root (as sshd or login would run it).
  const ProcessResult login =
      integration::run_as("root", {"pamtester", "-v", service, kAlice, "open_session", "close_session"}, {}, 60s);
  lifecycle::report(std::to_string(kFillerUids) + " uids hold " + std::to_string(held) +
                    " idle connections (broker counts " + std::to_string(status.status_reply().connections()) +
                    "); pamtester open_session+close_session for " + kAlice + ": exit " +
                    std::to_string(login.exit_code));
  EXPECT_GE(held + 64, static_cast<std::uint64_t>(kFillerUids * kConnectionsPerUid))
      << "the fillers did not fill the pool; the login proves nothing";
  EXPECT_EQ(login.exit_code, 0) << login.describe();
  const std::string log = broker().log();
  EXPECT_NE(log.find("login opened"), std::string::npos) << "the broker did not count alice's login";
  fillers.set_counter(7, 1);
  EXPECT_EQ(fillers.wait_for(30s), std::optional<int>(0)) << "the fillers did not end";
}

}  // namespace
}  // namespace xpra_broker::adversarial
