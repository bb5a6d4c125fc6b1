// Writes the fuzzers' seed corpora: valid frames of every verb (and a few
// broken ones) for frame_decoder_fuzzer, and short scenarios in
// fuzz_steps.h's language for request_handler_fuzzer.
//   make_corpus <corpus dir> <pending dir>
// writes <corpus dir>/frame_decoder_fuzzer/*, <corpus dir>/request_handler_fuzzer/*,
// <corpus dir>/login_reply_fuzzer/*
// and the inputs of known open bugs to <pending dir>/request_handler_fuzzer/*.
// The seeds are committed (fuzz/corpus/); rerun this after changing the
// protocol or fuzz_steps.h.
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "framing.h"
#include "fuzz_steps.h"
#include "protocol.h"

using namespace xpra_broker;
using namespace xpra_broker::fuzz;

namespace {

std::string body(const v1::Request& r) { return r.SerializeAsString(); }
std::string frame(const v1::Request& r) { return *wire::encode_frame(r); }

void write(const std::filesystem::path& path, const std::string& bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << bytes;
  if (!out) {
    std::fprintf(stderr, "make_corpus: cannot write %s\n", path.c_str());
    std::exit(1);
  }
}

// One request of each verb, with typical fields.
std::vector<std::pair<std::string, v1::Request>> every_verb() {
  std::vector<std::pair<std::string, v1::Request>> out;
  v1::Request r;
  r.mutable_acquire()->set_purpose("xpra start");
  out.emplace_back("acquire", r);
  r.Clear();
  r.mutable_release()->set_lease_id("0123456789abcdef");
  r.mutable_release()->set_exit_status(0);
  out.emplace_back("release_id", r);
  r.Clear();
  r.mutable_release()->set_display(100);
  out.emplace_back("release_display", r);
  r.Clear();
  r.mutable_list()->set_all(false);
  out.emplace_back("list", r);
  r.Clear();
  r.mutable_list()->set_all(true);
  out.emplace_back("list_all", r);
  r.Clear();
  r.mutable_status();
  out.emplace_back("status", r);
  r.Clear();
  r.mutable_open_login()->set_uid(64001);
  out.emplace_back("open_login", r);
  r.Clear();
  r.mutable_close_login()->set_uid(64001);
  r.mutable_close_login()->set_reap_leases(true);
  out.emplace_back("close_login", r);
  r.Clear();
  r.mutable_report_process()->set_lease_id("0123456789abcdef");
  r.mutable_report_process()->set_pid(1);
  r.mutable_report_process()->set_role(v1::X_SERVER);
  out.emplace_back("report_process", r);
  r.Clear();
  r.mutable_report_start_failure()->set_lease_id("0123456789abcdef");
  r.mutable_report_start_failure()->set_failure(v1::DISPLAY_CONFLICT);
  r.mutable_report_start_failure()->set_detail("Could not create server lock file: /tmp/.X100-lock");
  out.emplace_back("report_start_failure", r);
  r.Clear();
  r.mutable_reattach()->set_lease_id("0123456789abcdef");
  r.mutable_reattach()->set_reattach_token("0123456789abcdef0123456789abcdef");
  out.emplace_back("reattach", r);
  r.Clear();
  r.mutable_metrics();
  out.emplace_back("metrics", r);
  return out;
}

void frame_seeds(const std::filesystem::path& dir) {
  std::string stream;
  for (const auto& [name, request] : every_verb()) {
    write(dir / ("verb_" + name), frame(request));
    stream += frame(request);
  }
  write(dir / "stream_every_verb", stream);
  write(dir / "empty_frame", std::string("\0\0\0\0", 4));
  write(dir / "too_large", std::string("\0\x01\0\x01", 4));
  write(dir / "truncated_body", frame(every_verb()[0].second).substr(0, 7));
  write(dir / "garbage_body", std::string("\0\0\0\x03\xff\xff\xff", 7));
  // A field this broker does not know (a newer client): parses, no verb.
  write(dir / "unknown_verb", std::string("\0\0\0\x03\xa2\x06\x00", 7));  // field 100, empty
  v1::Request big;
  big.mutable_report_start_failure()->set_detail(std::string(1500, 'x'));
  write(dir / "long_detail", frame(big));
}

struct Scenario_ {
  const char* name;
  Scenario scenario;
  void (*steps)(InputWriter&);
  // Breaks an invariant on the current main (a known, open bug): written to
  // fuzz/pending/ instead, and moved into the corpus with the fix.
  bool pending = false;
};

const v1::Request& verb(const std::string& name) {
  static const auto verbs = every_verb();
  for (const auto& [n, r] : verbs)
    if (n == name) return r;
  std::fprintf(stderr, "make_corpus: no verb %s\n", name.c_str());
  std::exit(1);
}

constexpr std::size_t kRoot = 0, kAlice = 1, kBob = 2, kEve = 3;

void handler_seeds(const std::filesystem::path& dir, const std::filesystem::path& pending) {
  // Every verb from every caller, one at a time.
  for (const auto& [name, request] : every_verb())
    for (std::size_t caller = 0; caller < kCallerCount; ++caller) {
      InputWriter w;
      w.scenario({1, false});
      w.request(caller, 0, body(request), kPatchLoginUid, static_cast<std::uint8_t>(caller));
      write(dir / (name + "_caller" + std::to_string(caller)), w.bytes());
    }

  const std::vector<Scenario_> scenarios = {
      {"acquire_list_release", {1, false},
       [](InputWriter& w) {
         w.request(kAlice, 0, body(verb("acquire")));
         w.request(kAlice, 1, body(verb("list")));
         w.request(kBob, 0, body(verb("list_all")));
         w.request(kAlice, 1, body(verb("release_id")), kPatchLeaseId);
         w.reap(false, false);
         w.request(kAlice, 0, body(verb("status")));
       }},
      {"release_by_display_other_user", {1, false},
       [](InputWriter& w) {
         w.request(kBob, 0, body(verb("acquire")));
         w.request(kAlice, 0, body(verb("release_display")), kPatchDisplay);
         w.request(kRoot, 0, body(verb("release_display")), kPatchDisplay);
         w.reap(true, true);
         w.request(kRoot, 0, body(verb("status")));
       }},
      {"holder_disconnects", {0, false},
       [](InputWriter& w) {
         w.request(kBob, 1, body(verb("acquire")));
         w.close(kBob, 1);
         w.request(kBob, 0, body(verb("list")));
         w.reap(false, false);
         w.clock(20000);
         w.request(kBob, 0, body(verb("acquire")));
       }},
      {"report_process_root", {1, false},
       [](InputWriter& w) {
         w.request(kRoot, 0, body(verb("acquire")));
         w.request(kRoot, 0, body(verb("report_process")), kPatchLeaseId | kPatchOwnPid);
         w.request(kRoot, 0, body(verb("list")));
         w.request(kRoot, 0, body(verb("release_id")), kPatchLeaseId);
         w.reap(false, false);
       }},
      {"report_process_foreign_pid", {1, false},
       [](InputWriter& w) {
         w.request(kAlice, 0, body(verb("acquire")));
         w.request(kAlice, 0, body(verb("report_process")), kPatchLeaseId | kPatchOwnPid);
         w.request(kBob, 0, body(verb("report_process")), kPatchLeaseId);
       }},
      {"start_failure_conflict", {1, true},
       [](InputWriter& w) {
         w.request(kAlice, 0, body(verb("acquire")));
         w.request(kAlice, 0, body(verb("report_start_failure")), kPatchLeaseId);
         w.reap(true, false);
         w.request(kAlice, 0, body(verb("acquire")));
         w.request(kBob, 0, body(verb("status")));
         w.clock(400000);
         w.request(kBob, 0, body(verb("status")));
       }},
      {"start_failure_exited_backoff", {1, false},
       [](InputWriter& w) {
         v1::Request r;
         r.mutable_report_start_failure()->set_failure(v1::EXITED);
         r.mutable_report_start_failure()->set_detail("xpra: exited\nwith status 1\r");
         w.request(kBob, 0, body(verb("acquire")));
         w.request(kBob, 0, body(r), kPatchLeaseId);
         w.reap(true, false);
         w.repeat(3, 5);
         w.request(kBob, 0, body(verb("acquire")));
       }},
      {"reattach_other_connection", {1, false},
       [](InputWriter& w) {
         w.request(kAlice, 0, body(verb("acquire")));
         w.request(kAlice, 1, body(verb("reattach")), kPatchLeaseId | kPatchToken);
         w.request(kBob, 1, body(verb("reattach")), kPatchLeaseId | kPatchToken);
         w.close(kAlice, 0);
         w.request(kAlice, 1, body(verb("list")));
       }},
      {"login_sessions", {1, false},
       [](InputWriter& w) {
         w.request(kRoot, 0, body(verb("open_login")), kPatchLoginUid, kAlice);
         w.request(kRoot, 0, body(verb("open_login")), kPatchLoginUid, kAlice);
         w.request(kAlice, 0, body(verb("acquire")));
         w.request(kRoot, 0, body(verb("close_login")), kPatchLoginUid, kAlice);
         w.request(kRoot, 0, body(verb("close_login")), kPatchLoginUid, kAlice);
         w.request(kAlice, 0, body(verb("list")));
         w.reap(false, false);
       }},
      {"quota_per_user", {2, true},
       [](InputWriter& w) {
         w.request(kAlice, 0, body(verb("acquire")));
         w.repeat(1, 5);
         w.request(kBob, 0, body(verb("acquire")));
         w.repeat(1, 5);
         w.request(kRoot, 0, body(verb("acquire")));
         w.repeat(1, 5);
         w.request(kRoot, 0, body(verb("list_all")));
       }},
      {"rate_limit", {1, false},
       [](InputWriter& w) {
         w.request(kBob, 0, body(verb("acquire")));
         w.request(kBob, 0, body(verb("release_id")), kPatchLeaseId);
         w.repeat(2, 20);
         w.clock(61000);
         w.request(kBob, 0, body(verb("acquire")));
       }},
      {"eve_outside_allowed_groups", {0, false},
       [](InputWriter& w) {
         w.request(kEve, 0, body(verb("acquire")));
         w.request(kEve, 0, body(verb("status")));
         w.request(kEve, 0, body(verb("list_all")));
         w.request(kEve, 1, body(verb("open_login")));
       }},
      {"planted_live_lock", {0, false},
       [](InputWriter& w) {
         w.plant(0, PlantKind::lock_file, kBob, "         1\n");
         w.plant(1, PlantKind::x11_socket, kEve, "");
         w.plant(2, PlantKind::lock_symlink, kEve, "/etc/shadow");
         w.request(kAlice, 0, body(verb("acquire")));
         w.request(kAlice, 0, body(verb("status")));
         w.request(kRoot, 0, body(verb("status")));
       }},
      {"planted_stale_artifacts", {1, false},
       [](InputWriter& w) {
         w.plant(0, PlantKind::lock_file, kEve, "     99999\n");
         w.plant(1, PlantKind::x11_file, kBob, "");
         w.plant(2, PlantKind::lock_file, kAlice, "garbage");
         w.request(kAlice, 0, body(verb("acquire")));
         w.repeat(1, 3);
         w.request(kAlice, 0, body(verb("release_id")), kPatchLeaseId);
         w.reap(false, false);
       }},
      // Issue 10, attack 2: one user quarantines number after number; every
      // status reply lists them all.
      {"quarantine_flood", {3, true},
       [](InputWriter& w) {
         v1::Request r;
         r.mutable_report_start_failure()->set_failure(v1::DISPLAY_CONFLICT);
         r.mutable_report_start_failure()->set_detail(std::string(250, 'd'));
         w.request(kAlice, 0, body(verb("acquire")));
         w.request(kAlice, 0, body(r), kPatchLeaseId);
         w.reap(true, false);
         w.repeat(3, 400);
         w.request(kBob, 0, body(verb("status")));
       },
       /*pending=*/false},  // issue 10's oversized status; fixed, kept as a regression input
      {"long_purpose", {0, false},
       [](InputWriter& w) {
         v1::Request r;
         r.mutable_acquire()->set_purpose(std::string(129, 'p'));
         w.request(kAlice, 0, body(r));
         r.mutable_acquire()->set_purpose("\x1b[31mred\n\x7f");
         w.request(kAlice, 0, body(r));
         w.request(kRoot, 0, body(verb("list_all")));
       }},
  };
  for (const auto& s : scenarios) {
    InputWriter w;
    w.scenario(s.scenario);
    s.steps(w);
    write((s.pending ? pending : dir) / s.name, w.bytes());
  }
}

}  // namespace

// Replies the PAM module reads, as the broker's serializer writes them, in
// frames (login_reply_fuzzer reads a header and a body).
void login_reply_seeds(const std::filesystem::path& dir) {
  v1::Response r;
  r.set_status(v1::OK);
  r.mutable_open_login()->set_runtime_dir("/run/xpra/64001");
  r.mutable_open_login()->set_login_sessions(1);
  write(dir / "open_login", *wire::encode_frame(r));
  r.Clear();
  r.set_status(v1::OK);
  r.mutable_close_login()->set_login_sessions(0);
  r.mutable_close_login()->set_leases_ended(2);
  r.mutable_close_login()->set_counted(true);
  write(dir / "close_login", *wire::encode_frame(r));
  r.Clear();
  r.set_status(v1::DENIED);
  r.set_message("only root may open a login session");
  write(dir / "denied", *wire::encode_frame(r));
  r.Clear();
  r.set_status(v1::OK);
  r.mutable_status_reply()->set_version("0.1.0");
  r.mutable_status_reply()->add_warnings("a warning");
  write(dir / "other_result", *wire::encode_frame(r));
  // An unknown group and a fixed64 before an open_login result.
  write(dir / "unknown_fields", std::string("\0\0\0\x15\x43\x48\x01\x44\x29\1\2\3\4\5\6\7\x08\x08\x01\x72\x04\x0a\x02/x", 25));
}

int main(int argc, char** argv) {
  if (argc != 3) {
    std::fprintf(stderr, "usage: make_corpus <corpus dir> <pending dir>\n");
    return 2;
  }
  const std::filesystem::path root = argv[1], pending = argv[2];
  std::filesystem::create_directories(root / "frame_decoder_fuzzer");
  std::filesystem::create_directories(root / "request_handler_fuzzer");
  std::filesystem::create_directories(pending / "request_handler_fuzzer");
  std::filesystem::create_directories(root / "login_reply_fuzzer");
  login_reply_seeds(root / "login_reply_fuzzer");
  frame_seeds(root / "frame_decoder_fuzzer");
  handler_seeds(root / "request_handler_fuzzer", pending / "request_handler_fuzzer");
  return 0;
}
