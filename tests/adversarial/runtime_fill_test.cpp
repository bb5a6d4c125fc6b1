// Issue 21, attack 2: the runtime dir shares its filesystem with every
// allowed user's own directory (<runtime-dir>/<uid>). Alice fills hers to
// the last byte and keeps the file open but deleted (so `du` does not show
// it). Bob's acquires and releases must keep working: the journal appends
// into the space reserve it allocated at start-up (lease_journal.h).
//
// The runtime dir is a 32 MiB tmpfs mounted for the test (as /run is on a
// real host); a private --x11-tmp-dir, displays 52720-52729.
#include <fcntl.h>
#include <sys/mount.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "adversarial_support.h"

namespace xpra_broker::adversarial {
namespace {

constexpr int kCycles = 75;

class RuntimeFillTest : public AdversarialTest {
 protected:
  void TearDown() override {
    if (!tmpfs_.empty()) {
      if (broker_) broker_->stop();
      ::umount2(tmpfs_.c_str(), MNT_DETACH);
    }
    AdversarialTest::TearDown();
  }
  std::string tmpfs_;
};

TEST_F(RuntimeFillTest, AUserFillingHerRuntimeDirDoesNotStopOtherUsersLeases) {
  broker_ = std::make_unique<integration::BrokerProcess>(std::vector<std::string>{
      "--displays=52720-52729", "--x11-tmp-dir=" + private_x11_dir(), "--acquire-burst=100000",
      "--acquires-per-minute=1000000", "--allowed-groups=" + std::string(kAllowedGroup)});
  const std::string run = broker_->runtime_dir();
  integration::make_directory(run, 0755);
  ASSERT_EQ(::mount("tmpfs", run.c_str(), "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, "size=32m,mode=0755"), 0)
      << std::strerror(errno);
  tmpfs_ = run;
  broker_->start(60s);
  const std::string socket = broker_->socket_path();

  // Both users have their directories (made at their first acquire).
  UserAgent alice(kAlice, socket), bob(kBob, socket);
  for (auto* agent : {&alice, &bob}) {
    const auto a = agent->call(acquire_request("first"));
    ASSERT_EQ(a.status_name(), "OK") << a.response.message();
    ASSERT_EQ(agent->call(release_request(a.response.acquire().lease().id())).status_name(), "OK");
  }
  // Counters: 0 = bytes written, 1 = errno that stopped her (ENOSPC), 2 = done, 7 = stop.
  const std::string filler = run + "/" + std::to_string(integration::uid_of(kAlice)) + "/filler";
  BackgroundAs filling(kAlice, [filler](BackgroundAs::Counters& c) {
    const int fd = ::open(filler.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0) return 1;
    ::unlink(filler.c_str());  // hidden from du, still holding the space
    const std::string block(65536, 'x');
    for (;;) {
      const ssize_t n = ::write(fd, block.data(), block.size());
      if (n > 0) c[0] += static_cast<std::uint64_t>(n);
      if (n < 0 && errno != EINTR) {
        c[1] = static_cast<std::uint64_t>(errno);
        break;
      }
    }
    c[2] = 1;
    while (c[7] == 0) ::usleep(100000);
    ::close(fd);
    return 0;
  });
  ASSERT_TRUE(integration::wait_until([&] { return filling.counter(2) == 1 || filling.wait_for(0ms); }, 60s));
  ASSERT_EQ(filling.counter(1), static_cast<std::uint64_t>(ENOSPC)) << "alice could not fill the filesystem";

  int ok = 0;
  std::string first_refusal;
  for (int i = 0; i < kCycles; ++i) {
    const auto a = bob.call(acquire_request("while-alice-fills-the-disk"));
    if (a.status_name() != "OK") {
      if (first_refusal.empty()) first_refusal = a.status_name() + ": " + a.response.message();
      continue;
    }
    const auto r = bob.call(release_request(a.response.acquire().lease().id()));
    if (r.status_name() == "OK") ++ok;
    else if (first_refusal.empty()) first_refusal = "release " + r.status_name() + ": " + r.response.message();
  }
  lifecycle::report("alice filled the runtime dir's filesystem with " + std::to_string(filling.counter(0) >> 20) +
                    " MiB (deleted, kept open); bob: " + std::to_string(ok) + " of " + std::to_string(kCycles) +
                    " acquire+release pairs OK");
  EXPECT_EQ(ok, kCycles) << "first refusal: " << first_refusal;
  filling.set_counter(7, 1);
}

}  // namespace
}  // namespace xpra_broker::adversarial
