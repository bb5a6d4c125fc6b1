// Back-off: after failures-before-backoff consecutive failed sessions, the
// next acquire is refused with exit 124 (exec's code for 75) and a retry hint; honouring the hint,
// a session works again, and a healthy session clears the count.
#include <regex>
#include <thread>

#include "lifecycle_support.h"

namespace xpra_broker::lifecycle {
namespace {

class BackoffTest : public LifecycleTest {};

TEST_F(BackoffTest, FailingSessionIsRefusedWithRetryHintThenWorksAfterTheBackoff) {
  // A base long enough that the three runs right after the third failure
  // fall into it even on a loaded machine; the tolerance below covers the
  // case where they do not.
  constexpr auto kBase = 6s;
  start_broker({"--displays=655-659", "--failures-before-backoff=3", "--backoff-base-ms=6000",
                "--backoff-max-seconds=60", "--acquire-burst=1000"});
  std::vector<int> codes;
  std::string last_refusal;
  auto third_failure_at = std::chrono::steady_clock::now();
  for (int i = 0; i < 6; ++i) {
    const auto r = run_client(kAlice, {"exec", "--purpose", "fails", "--", "false"});
    codes.push_back(r.exit_code);
    if (i == 2) third_failure_at = std::chrono::steady_clock::now();
    if (r.exit_code == 124) {
      last_refusal = r.err;
      EXPECT_NE(r.err.find("RATE_LIMITED"), std::string::npos) << r.describe();
      EXPECT_NE(r.err.find("failed soon after start"), std::string::npos) << r.describe();
      EXPECT_TRUE(std::regex_search(r.err, std::regex("hint: try again in [0-9]+ s"))) << r.describe();
    }
    if (i >= 3 && r.exit_code != 124) {
      // Only acceptable if this run came after the back-off period.
      EXPECT_GE(std::chrono::steady_clock::now() - third_failure_at, kBase)
          << "run " << i + 1 << " was not refused inside the back-off: " << r.describe();
    }
  }
  std::string summary;
  for (int c : codes) summary += std::to_string(c) + " ";
  report("back-off: exit codes of 6 failing runs with failures-before-backoff=3: " + summary);
  EXPECT_EQ(codes[0], 1);
  EXPECT_EQ(codes[1], 1);
  EXPECT_EQ(codes[2], 1);
  ASSERT_EQ(codes[3], 124) << "the run right after the third failure was not refused";

  // Honour the hint; then a session works again.
  std::smatch m;
  ASSERT_TRUE(std::regex_search(last_refusal, m, std::regex("try again in ([0-9]+) s")));
  const auto hint = std::chrono::seconds(std::stol(m[1]));
  EXPECT_LE(hint, kBase + 1s) << "retry hint longer than the back-off";
  std::this_thread::sleep_for(hint);
  const auto ok = run_client(kAlice, {"exec", "--purpose", "works", "--", "true"});
  EXPECT_EQ(ok.exit_code, 0) << "refused after honouring the retry hint: " << ok.describe();
  // The healthy session cleared the count: a failure now is just a failure.
  const auto again = run_client(kAlice, {"exec", "--purpose", "fails", "--", "false"});
  EXPECT_EQ(again.exit_code, 1) << again.describe();
}

// A display found taken after all (a race with an X server started outside
// the broker after its probe) is the host's doing, not a failed session of
// the user's (a failed session: non-zero exit within healthy-after-seconds,
// or a holder that vanished). The client promises to retry on another
// display (--attempts); the back-off must not turn that retry into a
// refusal, even for a user with earlier failures on record.
TEST_F(BackoffTest, DisplayConflictRetryIsNotRefusedByTheBackoff) {
  start_broker({"--displays=695-699", "--failures-before-backoff=3", "--backoff-base-ms=6000",
                "--backoff-max-seconds=60", "--acquire-burst=1000", "--quarantine-seconds=60"});
  for (int i = 0; i < 2; ++i) {
    const auto r = run_client(kAlice, {"exec", "--purpose", "fails", "--", "false"});
    ASSERT_EQ(r.exit_code, 1) << r.describe();
  }
  // A conflict the broker confirms (bob's X server raced onto the display)
  // is the host's doing: it does not count, so the retry is not held back.
  ChildProcess bobs_xvfb;
  const auto r = run_client_racing(kAlice, {"--purpose", "conflict-once"}, [&](std::uint32_t display) {
    bobs_xvfb = start_xvfb_outside(kBob, display);
  });
  EXPECT_NE(r.err.find("retrying on another display"), std::string::npos) << r.describe();
  EXPECT_EQ(r.exit_code, 0) << "the retry on another display was refused:\n" << r.describe();
}

}  // namespace
}  // namespace xpra_broker::lifecycle
