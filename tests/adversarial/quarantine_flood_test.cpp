// Attack 2, quarantine flooding: a start failure is the reporter's claim.
// A user allowed to take displays loops acquire + report_start_failure
// (DISPLAY_CONFLICT). The broker must not take her word for it: at most
// max-quarantines-per-user (default 3) numbers end up quarantined because of
// her, even when a confirming artifact of another user is there every other
// round; other users still get displays; their `status` shows neither her
// uid, nor a pid, nor her text. And a `status` with thousands of blocked
// numbers still answers (no INTERNAL "reply too large").
//
// No X server is involved: a private --x11-tmp-dir, displays 52000-52099 and
// 50000-51999.
#include <google/protobuf/descriptor.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <nlohmann/json.hpp>
#include <thread>

#include "adversarial_support.h"

namespace xpra_broker::adversarial {
namespace {

using Clock = std::chrono::steady_clock;

constexpr const char* kSecret = "FLOODSECRET";

class QuarantineFloodTest : public AdversarialTest {};

// The contract's `blocked_total` (StatusReply), read by name so this suite
// builds against a proto without it; nullopt if there is no such field.
std::optional<std::uint32_t> blocked_total(const v1::StatusReply& s) {
  const auto* field = v1::StatusReply::descriptor()->FindFieldByName("blocked_total");
  if (!field || field->cpp_type() != google::protobuf::FieldDescriptor::CPPTYPE_UINT32) return std::nullopt;
  return s.GetReflection()->GetUInt32(s, field);
}

TEST_F(QuarantineFloodTest, OneUserCannotQuarantineMoreThanHerShareOrLeakHerTextToOthers) {
  const std::string x11 = private_x11_dir();
  start_broker({"--displays=52000-52099", "--x11-tmp-dir=" + x11, "--allowed-groups=" + std::string(kAllowedGroup),
                "--acquire-burst=100000", "--acquires-per-minute=100000", "--failures-before-backoff=1000",
                "--quarantine-seconds=300"});
  const uid_t alice = integration::uid_of(kAlice);
  UserAgent flooder(kAlice, broker().socket_path());

  int rounds = 0, acquired = 0, quarantined_replies = 0, planted = 0;
  std::map<std::string, int> refusals;
  const auto deadline = Clock::now() + 15s;
  while (Clock::now() < deadline && rounds < 400) {
    ++rounds;
    const auto a = flooder.call(acquire_request("flood"));
    if (!a.transport_ok || a.response.status() != v1::OK) {
      ++refusals[a.status_name()];
      if (!a.transport_ok) flooder.reconnect();
      // The attacker keeps going, at most at the pace the broker tells her.
      std::this_thread::sleep_for(std::chrono::milliseconds(
          std::clamp<std::uint32_t>(a.transport_ok ? a.response.retry_after_ms() : 100, 10, 200)));
      continue;
    }
    ++acquired;
    const v1::Lease& lease = a.response.acquire().lease();
    // Every other round the conflict is "real": a socket file of bob's sits
    // on the number (a leftover the broker can see for itself).
    if (rounds % 2 == 0) {
      const std::string path = x11 + "/.X11-unix/X" + std::to_string(lease.display());
      if (!lifecycle::path_exists(path)) {
        plant_dead_socket_owned_by(kBob, path);
        ++planted;
      }
    }
    const auto f = flooder.call(start_failure_request(
        lease.id(), v1::DISPLAY_CONFLICT,
        std::string(kSecret) + " uid " + std::to_string(alice) + ": server already running"));
    if (f.transport_ok && f.response.status() == v1::OK && f.response.report_start_failure().quarantined_display() != 0)
      ++quarantined_replies;
  }
  std::ostringstream summary;
  summary << rounds << " rounds, " << acquired << " acquired, " << planted << " with a socket of bob's planted, "
          << quarantined_replies << " quarantine replies; refused:";
  for (const auto& [name, n] : refusals) summary << " " << name << "=" << n;
  lifecycle::report("quarantine flood: " + summary.str());

  // The admin's view: how many numbers are quarantined now.
  const auto root_status = broker().call(status_request());
  ASSERT_EQ(root_status.status(), v1::OK) << root_status.message();
  int quarantined = 0;
  for (const auto& b : root_status.status_reply().blocked())
    if (b.reason().find("quarantin") != std::string::npos) ++quarantined;
  EXPECT_LE(quarantined, 3) << "one user's reports quarantined " << quarantined
                            << " numbers of 100 (max-quarantines-per-user is 3); " << summary.str();
  EXPECT_LE(quarantined_replies, 3) << summary.str();

  // Another user still gets a display, and learns nothing about the flooder.
  UserAgent other(kBob, broker().socket_path());
  const auto b = other.call(acquire_request("bob-after-flood"));
  EXPECT_EQ(b.status_name(), "OK") << "bob cannot get a display after alice's flood: " << b.response.message();
  const auto s = other.call(status_request());
  ASSERT_EQ(s.status_name(), "OK") << s.response.message();
  int with_owner = 0, with_pid = 0, with_text = 0;
  std::string example;
  for (const auto& blocked : s.response.status_reply().blocked()) {
    const bool text = blocked.reason().find(kSecret) != std::string::npos ||
                      blocked.reason().find(kAlice) != std::string::npos;
    with_owner += blocked.owner_uid() != 0;
    with_pid += blocked.pid() != 0;
    with_text += text;
    if (example.empty() && (blocked.owner_uid() != 0 || blocked.pid() != 0 || text))
      example = ":" + std::to_string(blocked.display()) + " owner_uid=" + std::to_string(blocked.owner_uid()) +
                " pid=" + std::to_string(blocked.pid()) + " reason \"" + blocked.reason() + "\"";
  }
  EXPECT_EQ(with_owner, 0) << "bob's status shows an owner uid for " << with_owner << " blocked numbers, e.g. " << example;
  EXPECT_EQ(with_pid, 0) << "bob's status shows a pid for " << with_pid << " blocked numbers, e.g. " << example;
  EXPECT_EQ(with_text, 0) << "bob's status shows alice's text for " << with_text << " blocked numbers, e.g. " << example;
  // The same through the client's table.
  const auto text = broker().client_as(kBob, {"status"});
  EXPECT_EQ(text.exit_code, 0) << text.describe();
  EXPECT_EQ(text.out.find(kSecret), std::string::npos) << "bob's `status` prints alice's text:\n"
                                                       << text.out.substr(0, 2000);
}

TEST_F(QuarantineFloodTest, StatusWithThousandsOfBlockedNumbersStillAnswers) {
  const std::string x11 = private_x11_dir();
  constexpr std::uint32_t kFirst = 50000, kLast = 51999, kListening = 1990;
  // Mallory listens on an X11 socket for nearly every number of the range
  // (any user may create sockets in .X11-unix): all of them are "in use".
  BackgroundAs squatter(kMallory, [&](BackgroundAs::Counters& c) {
    rlimit lim{};
    ::getrlimit(RLIMIT_NOFILE, &lim);
    lim.rlim_cur = lim.rlim_max;
    ::setrlimit(RLIMIT_NOFILE, &lim);
    for (std::uint32_t d = kFirst; d < kFirst + kListening; ++d) {
      sockaddr_un addr{};
      addr.sun_family = AF_UNIX;
      std::snprintf(addr.sun_path, sizeof(addr.sun_path), "%s/.X11-unix/X%u", x11.c_str(), d);
      const int s = ::socket(AF_UNIX, SOCK_STREAM, 0);
      if (s < 0 || ::bind(s, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0 || ::listen(s, 16) != 0) {
        c[1] = 1;
        break;
      }
      c[0] = d - kFirst + 1;
    }
    for (;;) ::pause();
    return 0;
  });
  ASSERT_TRUE(integration::wait_until([&] { return squatter.counter(0) == kListening || squatter.counter(1); }, 60s));
  ASSERT_EQ(squatter.counter(0), kListening) << "mallory could not create her sockets";

  start_broker({"--displays=" + std::to_string(kFirst) + "-" + std::to_string(kLast), "--x11-tmp-dir=" + x11,
                "--allowed-groups=" + std::string(kAllowedGroup), "--recheck-seconds=600"});
  UserAgent alice(kAlice, broker().socket_path());
  // One acquire looks at every number up to the free ones at the end.
  const auto a = alice.call(acquire_request("past-the-squatter"), 0, 120s);
  ASSERT_EQ(a.status_name(), "OK") << a.response.message();
  EXPECT_GE(a.response.acquire().lease().display(), kFirst + kListening);
  UserAgent bob(kBob, broker().socket_path());

  const auto root_status = broker().call(status_request());
  EXPECT_EQ(v1::Status_Name(root_status.status()), "OK") << "root's status: " << root_status.message();
  const auto bob_status = bob.call(status_request());
  EXPECT_EQ(bob_status.status_name(), "OK") << "bob's status: " << bob_status.response.message();
  if (root_status.status() == v1::OK) {
    const auto& s = root_status.status_reply();
    EXPECT_LE(s.blocked_size(), 64) << "`blocked` holds at most 64 entries";
    const auto total = blocked_total(s);
    EXPECT_TRUE(total.has_value()) << "StatusReply has no field blocked_total";
    if (total) {
      EXPECT_GE(*total, kListening);
    }
  }
  const auto json = broker().client_as("root", {"status", "--json"});
  EXPECT_EQ(json.exit_code, 0) << json.describe();
  EXPECT_TRUE(nlohmann::json::accept(json.out)) << "status --json is not JSON:\n" << json.out.substr(0, 2000);
  const auto text = broker().client_as(kBob, {"status"});
  EXPECT_EQ(text.exit_code, 0) << text.describe().substr(0, 4000);
}

}  // namespace
}  // namespace xpra_broker::adversarial
