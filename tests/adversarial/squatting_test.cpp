// Issue 21, attack 1: one process named like an X server, named by a lock
// for every number of the range. A lock proves a number live only when its
// pid is an X server of the lock's owner that serves that number (its last
// ":<N>" argument, as X itself reads its command line), so one process can
// hold at most the one number it serves, whatever it is called and however
// many ":N" it lists.
//
// A private --x11-tmp-dir (the locks are planted there), displays 52600-52609.
#include <sys/prctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <set>

#include "adversarial_support.h"

namespace xpra_broker::adversarial {
namespace {

class SquattingTest : public AdversarialTest {};

TEST_F(SquattingTest, OneProcessNamedLikeAnXServerHoldsAtMostTheNumberItServes) {
  constexpr std::uint32_t kFirst = 52600, kLast = 52609;
  const std::string x11_dir = private_x11_dir();
  // Mallory's two stand-ins: her own process renamed "Xvfb" with
  // PR_SET_NAME, and a copy of /bin/sh called Xvfb whose arguments list
  // every number of the range (it serves the last one, :52609).
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
    const pid_t named = d < 52605 ? renamed.pid() : listing.pid();
    lifecycle::plant_lock_file(kMallory, x11_dir + "/.X" + std::to_string(d) + "-lock", named, 3600s);
  }
  start_broker({"--displays=52600-52609", "--x11-tmp-dir=" + x11_dir, "--max-leases-per-user=10",
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
  EXPECT_FALSE(got.count(kLast)) << ":52609 is served by mallory's stand-in by X's own rule";
  EXPECT_TRUE(integration::process_running(renamed.pid())) << "the broker signalled mallory's process";
  EXPECT_TRUE(listing.running()) << "the broker signalled mallory's process";
  renamed.set_counter(7, 1);
}

}  // namespace
}  // namespace xpra_broker::adversarial
