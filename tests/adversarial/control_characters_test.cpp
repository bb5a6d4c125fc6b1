// Attack 5, text from users reaching logs and terminals raw: `purpose`,
// lease ids and `detail` are written by users. With newlines they forge log
// lines of their own; with ESC sequences they reach the admin's terminal
// through `list --all` and `status` (retitle it, clear it, recolour it).
// Purposes with control characters are refused (INVALID); every other such
// string is escaped wherever it is printed; --json stays JSON; bytes that
// are not UTF-8 are refused without libprotobuf printing past the logger.
//
// A private --x11-tmp-dir, displays 52100-52109.
#include <nlohmann/json.hpp>

#include "adversarial_support.h"

namespace xpra_broker::adversarial {
namespace {

// Text that would start a log line or a table row of its own.
constexpr const char* kForged = "FORGED";

class ControlCharactersTest : public AdversarialTest {};

TEST_F(ControlCharactersTest, UserTextNeverReachesLogsOrTerminalsRaw) {
  const std::string x11 = private_x11_dir();
  start_broker({"--displays=52100-52109", "--x11-tmp-dir=" + x11, "--allowed-groups=" + std::string(kAllowedGroup),
                "--acquire-burst=1000", "--failures-before-backoff=1000"});
  // Connections: 0 for well-formed leases, 1-8 one for each purpose that
  // must be refused (a fresh one each: the broker may close a connection
  // after a refusal; and if it takes the purpose, that lease stays for
  // `list --all`), 9 for everything else that is refused.
  UserAgent alice(kAlice, broker().socket_path(), 10);
  constexpr int kOther = 9;

  // 1. Purposes with control characters, or too long: INVALID.
  const std::vector<std::pair<std::string, std::string>> purposes = {
      {"newline", std::string("evil\n") + kForged + " lease=x uid=0(root) display=:1 acquired"},
      {"carriage return", std::string("evil\r") + kForged},
      {"ESC sequences", "title\x1b]0;owned\x07\x1b[2J\x1b[31mred"},
      {"DEL", "del\x7f"},
      {"NUL", std::string("nul\0byte", 8)},
      {"129 bytes", std::string(129, 'p')},
      // Issue 21: Unicode format characters reorder or hide what admins read.
      {"U+202E right-to-left override", "photo\u202Egpj.exe"},
      {"U+2066 bidi isolate and U+200B zero width space", "a\u2066b\u2069c\u200Bd"},
  };
  for (std::size_t i = 0; i < purposes.size(); ++i) {
    const auto& [what, purpose] = purposes[i];
    const auto r = alice.call(acquire_request(purpose), static_cast<int>(1 + i));
    EXPECT_EQ(r.status_name(), "INVALID") << "acquire with a purpose with " << what << ": " << r.response.message();
  }
  // Not UTF-8: the request does not even parse.
  {
    const std::string placeholder = "PLACEHOLDER-PURPOSE";
    std::string bytes = "caf\xe9 \xff\xfe\xc0\x80 ok";
    bytes.resize(placeholder.size(), '.');
    const auto r = alice.call_raw(serialized_with_bytes(acquire_request(placeholder), placeholder, bytes), kOther);
    EXPECT_EQ(r.status_name(), "INVALID") << "acquire with a purpose that is not UTF-8";
  }

  // 2. Lease ids with control characters, in every verb that takes one.
  const std::string evil_id = std::string("L\n") + kForged + " lease id\x1b[2J\x1b]0;owned\x07";
  for (const auto& [what, request] : std::vector<std::pair<std::string, v1::Request>>{
           {"reattach", reattach_request(evil_id, "token\n" + std::string(kForged))},
           {"release", release_request(evil_id)},
           {"report_start_failure", start_failure_request(evil_id, v1::EXITED, "x")},
       }) {
    ASSERT_TRUE(alice.reconnect(kOther));
    const auto r = alice.call(request, kOther);
    // Refused, or the connection closed: either way nothing happened.
    EXPECT_TRUE(!r.transport_ok || r.response.status() != v1::OK) << what << " with a forged lease id: "
                                                                   << r.status_name();
  }

  // 3. A detail with control characters on a start failure the broker can
  //    confirm (a socket file of bob's on the display): quarantined, and its
  //    text shown to admins, escaped.
  const auto a = alice.call(acquire_request("legit"), 0);
  ASSERT_EQ(a.status_name(), "OK") << a.response.message();
  const auto& lease = a.response.acquire().lease();
  plant_dead_socket_owned_by(kBob, x11 + "/.X11-unix/X" + std::to_string(lease.display()));
  const std::string detail =
      std::string("conflict\n") + kForged + " detail line\x1b[2J\x1b]0;owned\x07\x1b[31m server \u202Egninnur ydaerla";
  const auto f = alice.call(start_failure_request(lease.id(), v1::DISPLAY_CONFLICT, detail), 0);
  EXPECT_EQ(f.status_name(), "OK") << f.response.message();

  // 4. A detail that is not UTF-8, last: the broker closes the connection.
  const auto b = alice.call(acquire_request("legit-2"), 0);
  ASSERT_EQ(b.status_name(), "OK") << b.response.message();
  {
    const std::string placeholder = "PLACEHOLDER-DETAIL";
    std::string bytes = "\xff\xfe\xfd\x1b[2J\xc3\x28 ";
    bytes.resize(placeholder.size(), '.');
    const auto r = alice.call_raw(
        serialized_with_bytes(start_failure_request(b.response.acquire().lease().id(), v1::DISPLAY_CONFLICT, placeholder),
                              placeholder, bytes),
        0);
    EXPECT_EQ(r.status_name(), "INVALID") << "report_start_failure with a detail that is not UTF-8";
  }

  // What the admin and the other users see.
  struct Output {
    std::string what;
    integration::ProcessResult result;
  };
  const std::vector<Output> outputs = {
      {"root: list --all", broker().client_as("root", {"list", "--all"})},
      {"root: status", broker().client_as("root", {"status"})},
      {"bob: status", broker().client_as(kBob, {"status"})},
      {"alice: list", broker().client_as(kAlice, {"list"})},
  };
  for (const auto& o : outputs) {
    EXPECT_EQ(o.result.exit_code, 0) << o.what << ": " << o.result.describe();
    const std::string problem = unclean_text(o.result.out, kForged);
    EXPECT_EQ(problem, "") << o.what << " prints user text raw: " << problem;
  }
  for (const auto& args : std::vector<std::vector<std::string>>{{"list", "--all", "--json"}, {"status", "--json"}}) {
    const auto r = broker().client_as("root", args);
    EXPECT_EQ(r.exit_code, 0) << r.describe();
    EXPECT_TRUE(nlohmann::json::accept(r.out)) << args[0] << " --json is not JSON:\n" << r.out;
  }

  // The broker's log: every line its own, no raw control byte, valid UTF-8,
  // nothing of libprotobuf's own.
  const std::string log = broker().log();
  const std::string problem = unclean_text(log, kForged);
  EXPECT_EQ(problem, "") << "the broker log holds user text raw: " << problem;
  EXPECT_EQ(log.find("[libprotobuf"), std::string::npos) << "libprotobuf printed past the broker's logger";
}

}  // namespace
}  // namespace xpra_broker::adversarial
