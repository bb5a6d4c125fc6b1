// Issue 21, attack 1: one process named like an X server, named by a lock
// for every number of the range. A lock proves a number live only when its
// pid is an X server of the lock's owner that serves that number (its last
// ":<N>" argument, as X itself reads its command line), so one process can
// hold at most the one number it serves, whatever it is called and however
// many ":N" it lists.
//
// A private --x11-tmp-dir (the locks are planted there), displays 52700-52709.
// (Attacks 5 and 6, abstract-socket squatting, below: 52730-52739.)
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstddef>
#include <cstring>
#include <filesystem>
#include <set>
#include <thread>

#include "adversarial_support.h"

namespace xpra_broker::adversarial {
namespace {

class SquattingTest : public AdversarialTest {};

TEST_F(SquattingTest, OneProcessNamedLikeAnXServerHoldsAtMostTheNumberItServes) {
  constexpr std::uint32_t kFirst = 52700, kLast = 52709;
  const std::string x11_dir = private_x11_dir();
  // Sticky and writable by all, as /tmp: the broker removes forged locks
  // with CAP_FOWNER, which needs a directory it may write.
  ASSERT_EQ(::chmod(x11_dir.c_str(), 01777), 0);
  // Mallory's two stand-ins: her own process renamed "Xvfb" with
  // PR_SET_NAME, and a copy of /bin/sh called Xvfb whose arguments list
  // every number of the range (it serves the last one, :52709).
  BackgroundAs renamed(kMallory, [](BackgroundAs::Counters& c) {
    ::prctl(PR_SET_NAME, "Xvfb", 0, 0, 0);
    c[0] = 1;
    while (c[7] == 0) ::usleep(100000);
    return 0;
  });
  integration::TempDir bin("xpb-adv-fake-x", 0755);
  const std::string fake_xvfb = bin.path() + "/Xvfb";
  std::filesystem::copy_file("/bin/sh", fake_xvfb);
  ASSERT_EQ(::chmod(fake_xvfb.c_str(), 0755), 0);
  std::vector<std::string> argv = {fake_xvfb, "-c", "sleep 1000; :", "Xvfb"};
  for (std::uint32_t d = kFirst; d <= kLast; ++d) argv.push_back(":" + std::to_string(d));
  auto listing = spawn_marked(kMallory, argv);
  ASSERT_TRUE(integration::wait_until([&] { return renamed.counter(0) == 1; }, 10s));
  for (std::uint32_t d = kFirst; d <= kLast; ++d) {
    const pid_t named = d < 52705 ? renamed.pid() : listing.pid();
    lifecycle::plant_lock_file(kMallory, x11_dir + "/.X" + std::to_string(d) + "-lock", named, 3600s);
  }
  start_broker({"--displays=52700-52709", "--x11-tmp-dir=" + x11_dir, "--max-leases-per-user=10",
                "--allowed-groups=" + std::string(kAllowedGroup)});

  UserAgent alice(kAlice, broker().socket_path());
  std::set<std::uint32_t> got;
  std::string last_refusal;
  for (int i = 0; i < 10; ++i) {
    const auto r = alice.call(acquire_request("past-one-fake-x-server"));
    if (r.status_name() == "OK") got.insert(r.response.acquire().lease().display());
    else last_refusal = r.status_name() + ": " + r.response.message();
  }
  lifecycle::report("two processes of mallory's named Xvfb, named by locks for 10 numbers: alice got " +
                    std::to_string(got.size()) + " of 10 displays");
  EXPECT_EQ(got.size(), 9u) << "one fake X server must hold only the number it serves; last refusal: "
                            << last_refusal;
  EXPECT_FALSE(got.count(kLast)) << ":52709 is served by mallory's stand-in by X's own rule";
  EXPECT_TRUE(integration::process_running(renamed.pid())) << "the broker signalled mallory's process";
  EXPECT_TRUE(listing.running()) << "the broker signalled mallory's process";
  renamed.set_counter(7, 1);
}

}  // namespace
}  // namespace xpra_broker::adversarial

namespace xpra_broker::adversarial {
namespace {

// Issue 21, attacks 5 and 6: mallory binds @<x11 dir>/.X11-unix/X<N> and
// listens, for every number of the range (documented: the numbers are
// hers while she holds them). The kernel knows whose those sockets are:
// the log, root's `status` and the metrics must name her, not "uid=0", and
// the "skipped" lines of the rechecks (every second here) must be one per
// interval, not one per number per recheck.
//
// A private --x11-tmp-dir, displays 52730-52739.
TEST_F(SquattingTest, AbstractSocketSquattingIsBlamedOnTheSquatterInFewLines) {
  constexpr std::uint32_t kFirst = 52730, kLast = 52739;
  const std::string x11_dir = private_x11_dir();
  BackgroundAs squatter(kMallory, [x11_dir](BackgroundAs::Counters& c) {
    std::vector<int> fds;
    for (std::uint32_t d = kFirst; d <= kLast; ++d) {
      const std::string name = x11_dir + "/.X11-unix/X" + std::to_string(d);
      sockaddr_un a{};
      a.sun_family = AF_UNIX;
      std::memcpy(a.sun_path + 1, name.data(), name.size());
      const int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
      const auto len = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + 1 + name.size());
      if (fd >= 0 && ::bind(fd, reinterpret_cast<sockaddr*>(&a), len) == 0 && ::listen(fd, 1) == 0) ++c[0];
      fds.push_back(fd);
    }
    while (c[7] == 0) ::usleep(100000);
    return 0;
  });
  ASSERT_TRUE(integration::wait_until([&] { return squatter.counter(0) == kLast - kFirst + 1; }, 10s));
  start_broker({"--displays=52730-52739", "--x11-tmp-dir=" + x11_dir, "--recheck-seconds=1", "--leak-check-seconds=1",
                "--xserver-warn-per-user=2", "--acquire-burst=100000", "--acquires-per-minute=1000000",
                "--allowed-groups=" + std::string(kAllowedGroup)});
  // The whole log of this broker: the status call with which start_broker
  // waits for it already probes the range (status surveys the numbers that
  // look free), so the first "skipped" line may come before any acquire.
  const std::size_t log_before = 0;
  const uid_t mallory = integration::uid_of(kMallory);
  const std::string by_mallory = "owner uid=" + std::to_string(mallory);

  // Alice asks for 6 s: every second the range is probed again.
  UserAgent alice(kAlice, broker().socket_path());
  int exhausted = 0;
  const auto until = std::chrono::steady_clock::now() + 6s;
  while (std::chrono::steady_clock::now() < until) {
    exhausted += alice.call(acquire_request("squatted")).status_name() == "EXHAUSTED";
    std::this_thread::sleep_for(200ms);
  }
  EXPECT_GT(exhausted, 0) << "the range was not squatted";

  // Blocks last recheck-seconds (1 s here): probe once more right before
  // each look, as a user's acquire would.
  alice.call(acquire_request("squatted"));
  const v1::Response status = broker().call(status_request());
  std::size_t blamed = 0;
  for (const auto& b : status.status_reply().blocked()) blamed += b.owner_uid() == mallory && !b.owner_unknown();
  std::uint32_t held = 0;
  for (const auto& h : status.status_reply().display_holders())
    if (h.uid() == mallory) held = h.displays();
  v1::Request metrics_request;
  metrics_request.mutable_metrics();
  alice.call(acquire_request("squatted"));
  const std::string exposition = broker().call(metrics_request).metrics().exposition();
  const std::string metric = "xpra_broker_user_blocked_displays{user=\"" + std::string(kMallory) + "\",uid=\"" +
                             std::to_string(mallory) + "\"} 10";

  const auto lines = log_lines_from(broker().log(), log_before);
  const std::size_t skipped = count_containing(lines, "skipped:");
  const std::size_t skipped_naming_her = count_containing(lines, by_mallory);
  const std::size_t watchdog = count_containing(lines, "display numbers of the range outside broker leases");
  lifecycle::report("10 abstract X11 sockets of mallory's, rechecked every second for 6 s: root's status blames her "
                    "for " + std::to_string(blamed) + " of " + std::to_string(status.status_reply().blocked_size()) +
                    " blocked numbers (holders: " + std::to_string(held) + "); " + std::to_string(skipped) +
                    " 'skipped' log lines (" + std::to_string(skipped_naming_her) + " naming her), " +
                    std::to_string(watchdog) + " watchdog lines");
  EXPECT_EQ(blamed, 10u) << "status must name the squatter, not uid 0";
  EXPECT_EQ(held, 10u) << "status: display holders";
  EXPECT_NE(exposition.find(metric), std::string::npos) << "no " << metric << " in\n" << exposition;
  EXPECT_GE(skipped_naming_her, 1u) << "the log must name the squatter";
  EXPECT_LE(skipped, 3u) << "the 'skipped' lines are throttled per owner and interval (30 s)";
  EXPECT_GE(watchdog, 1u) << "the watchdog names the user holding more numbers than xserver-warn-per-user";
  EXPECT_LE(watchdog, 8u) << "one watchdog line per interval (1 s) at most";
  squatter.set_counter(7, 1);
}

}  // namespace
}  // namespace xpra_broker::adversarial
