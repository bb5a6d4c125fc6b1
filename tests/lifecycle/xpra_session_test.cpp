// Real Xpra end to end: alice runs `xpra start` on a broker-chosen display
// and directory through xpra-request-display exec, waits until `xpra list`
// shows the session LIVE, then ends it (a) with SIGTERM to the holder and (b)
// with SIGKILL to the holder. Each time nothing of the session may keep
// running (xpra, its Xvfb, what it started) and the display is free again.
#include <signal.h>
#include <unistd.h>

#include "lifecycle_support.h"

namespace xpra_broker::lifecycle {
namespace {

using Clock = std::chrono::steady_clock;

long ms_since(Clock::time_point t) {
  return static_cast<long>(std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - t).count());
}

class XpraSessionTest : public LifecycleTest {
 protected:
  // xpra started quickly and headless, with nothing outside the broker's
  // directory (no ~/.xpra socket either).
  static std::vector<std::string> xpra_start_command() {
    std::vector<std::string> args = {"exec", "--purpose", "xpra start", "--", "env", "XDG_RUNTIME_DIR={runtime_dir}",
                                     "xpra", "start", ":{display}", "--daemon=no", "--socket-dir={runtime_dir}",
                                     "--socket-dirs={runtime_dir}"};
    for (const auto& o : quick_xpra_options()) args.push_back(o);
    return args;
  }

  void run_session_and_end_it(int signo) {
    const uid_t alice = integration::uid_of(kAlice);
    const char* how = signo == SIGKILL ? "kill -9 of the holder" : "SIGTERM to the holder";
    SCOPED_TRACE(how);
    const auto started = Clock::now();
    auto client = spawn_client(kAlice, xpra_start_command());
    const std::optional<v1::Lease> lease = lease_held_by(client);
    ASSERT_TRUE(lease) << client.terminate().describe();
    const std::uint32_t display = lease->display();
    const std::string dir = lease->runtime_dir();
    const std::string live = "LIVE session at :" + std::to_string(display);
    ProcessResult listed;
    const bool up = integration::wait_until(
        [&] {
          listed = integration::run_as(kAlice, {"xpra", "list", "--socket-dir=" + dir, "--socket-dirs=" + dir},
                                       {{{"XDG_RUNTIME_DIR", dir}}, "/"}, 60s);
          return listed.out.find(live) != std::string::npos || !client.running();
        },
        120s, 500ms);
    ASSERT_TRUE(up && client.running()) << "xpra did not come up LIVE on :" << display << "\nxpra list: "
                                        << listed.describe() << "\nholder: " << client.terminate().describe();
    report(std::string("xpra session LIVE after ") + std::to_string(ms_since(started)) + " ms (before " + how + ")");
    ASSERT_FALSE(x_servers_of(alice, display, display).empty()) << "no Xvfb of xpra's found on :" << display;

    const auto ended_at = Clock::now();
    client.send_signal(signo);
    const auto r = client.wait(120s);
    EXPECT_FALSE(r.timed_out) << r.describe();
    std::vector<HostProcess> left;
    bool lease_gone = false;
    const bool clean = integration::wait_until(
        [&] {
          left = marked_processes(mark());
          lease_gone = leases().empty();
          return left.empty() && lease_gone && x_servers_of(alice, display, display).empty();
        },
        60s, 20ms);
    report(std::string("xpra session: everything gone and lease ended ") + std::to_string(ms_since(ended_at)) +
           " ms after " + how);
    EXPECT_TRUE(clean) << (lease_gone ? "" : "lease still there; ") << left.size() << " process(es) left";
    for (const auto& p : left) ADD_FAILURE() << "left running: pid " << p.pid << " " << p.comm;
    // The display is free again: no X lock or socket, no xpra socket.
    EXPECT_FALSE(path_exists(x_lock_path(display)));
    EXPECT_FALSE(path_exists(x_socket_path(display)));
    EXPECT_FALSE(path_exists(dir + "/" + host_name() + "-" + std::to_string(display)));
    const auto status = raw_status();
    for (const auto& b : status.blocked()) EXPECT_NE(b.display(), display) << b.reason();
    if (HasFailure()) std::cout << "---- holder output ----\n" << r.describe() << "\n";
  }
};

TEST_F(XpraSessionTest, XpraStartEndedBySigtermOrKillNineLeavesNothing) {
  for (std::uint32_t d = 660; d <= 669; ++d)
    ASSERT_FALSE(path_exists(x_lock_path(d)) || path_exists(x_socket_path(d))) << ":" << d << " in use before";
  start_broker({"--displays=660-669", "--failures-before-backoff=1000", "--acquire-burst=1000"});
  run_session_and_end_it(SIGTERM);
  run_session_and_end_it(SIGKILL);
}

}  // namespace
}  // namespace xpra_broker::lifecycle
