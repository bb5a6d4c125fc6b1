// A user cannot make the broker kill or clean another user's processes or
// files: not by reporting them under her lease, not by naming the other
// user's lease or display, not by planting a lock file that names the other
// user's X server or a symlink to the other user's socket on her own
// display, and not by having her own leases end next to the other user's
// live X servers.
#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <map>
#include <regex>
#include <sstream>
#include <thread>

#include "lifecycle_support.h"

namespace xpra_broker::lifecycle {
namespace {

class CrossUserTest : public LifecycleTest {};

std::map<std::string, std::string> parse_lines(const std::string& text) {
  std::map<std::string, std::string> out;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) {
    const auto eq = line.find('=');
    if (eq != std::string::npos) out[line.substr(0, eq)] = line.substr(eq + 1);
  }
  return out;
}

TEST_F(CrossUserTest, AliceCannotMakeTheBrokerKillOrCleanBobsThings) {
  const uid_t alice = integration::uid_of(kAlice);
  const uid_t bob = integration::uid_of(kBob);
  for (std::uint32_t d = 630; d <= 644; ++d)
    ASSERT_FALSE(path_exists(x_lock_path(d)) || path_exists(x_socket_path(d))) << ":" << d << " in use before";

  // Bob's things the broker did not start: a live Xvfb on :632 and the dead
  // socket of a crashed one on :633.
  auto bob_outside = start_xvfb_outside(kBob, 632);
  remove_at_end(x_socket_path(633));
  plant_dead_socket(kBob, x_socket_path(633), 600s);

  start_broker({"--displays=630-644", "--acquire-burst=1000", "--failures-before-backoff=1000"});

  // Bob's leased session with its X server (first candidate: :630), and a
  // plain process of bob's.
  auto bob_client = spawn_client(kBob, {"exec", "--xvfb", "--purpose", "bob", "--", "sleep", "1000"});
  std::optional<v1::Lease> bob_lease;
  ASSERT_TRUE(integration::wait_until(
      [&] {
        for (const auto& l : leases())
          if (l.uid() == bob && l.process_pids_size() == 3) bob_lease = l;
        return bob_lease.has_value() || !bob_client.running();
      },
      120s))
      << "bob's session did not start";
  ASSERT_TRUE(bob_lease) << bob_client.terminate().describe();
  const std::uint32_t bob_display = bob_lease->display();
  const auto bob_xs = x_servers_of(bob, bob_display, bob_display);
  ASSERT_EQ(bob_xs.size(), 1u);
  const pid_t bob_x = bob_xs[0].pid;
  auto bob_sleep = spawn_marked(kBob, {"sleep", "1000"});

  // Alice, speaking the protocol herself.
  const std::string socket = broker().socket_path();
  const std::string bob_lease_id = bob_lease->id();
  const pid_t bob_sleep_pid = bob_sleep.pid();
  const std::string out = run_in_child_as(kAlice, [&]() -> std::string {
    std::ostringstream o;
    auto conn = BrokerConnection::connect(socket, 10s);
    conn.set_timeout(30s);
    auto status_of = [&](const v1::Request& request) {
      v1::Response response;
      if (conn.call(request, response) != BrokerConnection::Error::none) return std::string("TRANSPORT_ERROR");
      return v1::Status_Name(response.status());
    };
    v1::Request acquire;
    acquire.mutable_acquire()->set_purpose("alice-raw");
    v1::Response acquired;
    if (conn.call(acquire, acquired) != BrokerConnection::Error::none || acquired.status() != v1::OK)
      return "acquire=FAILED " + acquired.message() + "\n";
    const v1::Lease& mine = acquired.acquire().lease();
    o << "acquire=OK\ndisplay=" << mine.display() << "\n";

    auto report = [&](const std::string& lease_id, pid_t pid, v1::ProcessRole role) {
      v1::Request r;
      r.mutable_report_process()->set_lease_id(lease_id);
      r.mutable_report_process()->set_pid(pid);
      r.mutable_report_process()->set_role(role);
      return status_of(r);
    };
    o << "report_bob_process=" << report(mine.id(), bob_sleep_pid, v1::SESSION) << "\n";
    o << "report_bob_x_server=" << report(mine.id(), bob_x, v1::X_SERVER) << "\n";
    o << "report_under_bob_lease=" << report(bob_lease_id, ::getpid(), v1::SESSION) << "\n";
    v1::Request failure;
    failure.mutable_report_start_failure()->set_lease_id(bob_lease_id);
    failure.mutable_report_start_failure()->set_failure(v1::DISPLAY_CONFLICT);
    failure.mutable_report_start_failure()->set_detail("server already running");
    o << "start_failure_on_bob_lease=" << status_of(failure) << "\n";
    v1::Request release_display;
    release_display.mutable_release()->set_display(bob_display);
    o << "release_bob_display=" << status_of(release_display) << "\n";
    v1::Request release_lease;
    release_lease.mutable_release()->set_lease_id(bob_lease_id);
    o << "release_bob_lease=" << status_of(release_lease) << "\n";

    // On her own display: a lock file naming bob's X server, and the X11
    // socket path a symlink to bob's live socket. The broker reads both
    // when her lease ends.
    char lock[16];
    std::snprintf(lock, sizeof(lock), "%10d\n", static_cast<int>(bob_x));
    const int fd = ::open(x_lock_path(mine.display()).c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW, 0444);
    const bool lock_ok = fd >= 0 && ::write(fd, lock, 11) == 11;
    if (fd >= 0) ::close(fd);
    const bool link_ok = ::symlink(x_socket_path(bob_display).c_str(), x_socket_path(mine.display()).c_str()) == 0;
    o << "planted=" << (lock_ok && link_ok ? "yes" : "no") << "\n";
    return o.str();  // the connection closes with this child: the lease ends
  });
  const auto result = parse_lines(out);
  ASSERT_EQ(result.count("display"), 1u) << out;
  const std::uint32_t alice_display = static_cast<std::uint32_t>(std::stoul(result.at("display")));
  remove_at_end(x_lock_path(alice_display));
  remove_at_end(x_socket_path(alice_display));
  EXPECT_EQ(result.at("report_bob_process"), "DENIED") << out;
  EXPECT_EQ(result.at("report_bob_x_server"), "DENIED") << out;
  EXPECT_EQ(result.at("report_under_bob_lease"), "NOT_FOUND") << out;
  EXPECT_EQ(result.at("start_failure_on_bob_lease"), "NOT_FOUND") << out;
  EXPECT_EQ(result.at("release_bob_display"), "NOT_FOUND") << out;
  EXPECT_EQ(result.at("release_bob_lease"), "NOT_FOUND") << out;
  EXPECT_EQ(result.at("planted"), "yes") << out;

  // The same through the client: alice cannot release bob's display.
  const auto release = broker().client_as(kAlice, {"release", ":" + std::to_string(bob_display)});
  EXPECT_EQ(release.exit_code, 1) << release.describe();

  // Alice's raw lease ended with her connection; it is reaped.
  ASSERT_TRUE(integration::wait_until(
      [&] {
        for (const auto& l : leases())
          if (l.uid() == alice) return false;
        return true;
      },
      60s));
  // A leased session of alice's own with an X server, next to bob's: the
  // broker skips bob's live :632 and cleans bob's dead socket on :633.
  const auto alice_run = run_client(kAlice, {"exec", "--xvfb", "--purpose", "alice", "--", "true"});
  EXPECT_EQ(alice_run.exit_code, 0) << alice_run.describe();
  // Give a wrong kill its chance to land before looking.
  std::this_thread::sleep_for(1s);

  EXPECT_TRUE(integration::process_running(bob_sleep.pid())) << "bob's plain process was killed";
  EXPECT_TRUE(integration::process_running(bob_x)) << "bob's leased X server was killed";
  EXPECT_TRUE(bob_client.running()) << "bob's holder ended";
  EXPECT_TRUE(bob_outside.running()) << "bob's X server outside the broker was killed";
  for (std::uint32_t d : {bob_display, 632u})
    EXPECT_TRUE(x_socket_listening(d)) << "bob's X socket of :" << d << " was removed or stopped listening";
  // Xvfb started with -displayfd (as exec --xvfb does) writes no lock file;
  // the one started by hand on :632 does.
  EXPECT_TRUE(path_exists(x_lock_path(632))) << "bob's lock of :632 was removed";
  EXPECT_FALSE(path_exists(x_socket_path(633))) << "bob's dead socket on :633 was not cleaned";
  EXPECT_TRUE(std::regex_search(broker().log(),
                                std::regex("removed stale X11 socket /tmp/.X11-unix/X633 \\(owner uid=" +
                                           std::to_string(bob) + ", [0-9]+ s old\\)")))
      << "the removal of bob's dead socket is not logged with owner and age";

  // Bob's lease is untouched: still active, his display not quarantined.
  bool bob_active = false;
  for (const auto& l : leases())
    if (l.id() == bob_lease_id) bob_active = l.state() == v1::ACTIVE && l.process_pids_size() == 3;
  EXPECT_TRUE(bob_active) << "bob's lease was ended or changed";
  const auto status = raw_status();
  for (const auto& b : status.blocked()) {
    EXPECT_NE(b.display(), bob_display) << "bob's leased display was blocked: " << b.reason();
    if (b.display() == 632) {
      EXPECT_FALSE(b.stale()) << "bob's live :632 was taken for stale";
      EXPECT_EQ(b.owner_uid(), bob);
    }
  }

  // Bob's session ends as it should when he ends it.
  bob_client.send_signal(SIGTERM);
  const auto bob_result = bob_client.wait(60s);
  EXPECT_EQ(bob_result.exit_code, 128 + SIGTERM) << bob_result.describe();
  EXPECT_TRUE(integration::wait_until([&] { return !integration::process_running(bob_x); }, 30s));
}

}  // namespace
}  // namespace xpra_broker::lifecycle
