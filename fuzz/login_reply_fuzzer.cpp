// libFuzzer target: the PAM module's reply decoder (pam/login_protocol.c),
// with the generated C++ code as the oracle (tests/pam/login_reply_oracle.h).
// The input is what the module reads from the broker's socket: a frame header
// and a body. The module's code must never read outside the bytes (ASan),
// and whatever libprotobuf parses as a Response the C decoder must decode to
// the same status, message and login results.
#include <google/protobuf/stubs/logging.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string_view>

#include "login_protocol.h"
#include "login_reply_oracle.h"

namespace {

[[noreturn]] void fail(const std::string& what) {
  std::fprintf(stderr, "login_reply_fuzzer: invariant broken: %s\n", what.c_str());
  std::abort();
}

void check(std::string_view body) {
  const auto verdict = xpra_broker::pam_oracle::judge(body);
  if (!verdict.mismatch.empty()) fail(verdict.mismatch);
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  google::protobuf::SetLogHandler(nullptr);  // it logs every invalid UTF-8 string
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view input(reinterpret_cast<const char*>(data), size);
  // As the module reads a frame: the header first, the body only if it is acceptable.
  if (size >= XPB_FRAME_HEADER_SIZE) {
    std::uint8_t header[XPB_FRAME_HEADER_SIZE];
    for (std::size_t i = 0; i < XPB_FRAME_HEADER_SIZE; ++i) header[i] = data[i];
    std::uint32_t body_size = 0;
    const char* refused = xpb_decode_frame_header(header, &body_size);
    if (refused == nullptr && (body_size == 0 || body_size > XPB_MAX_FRAME_SIZE)) fail("header accepted a bad length");
    if (refused == nullptr && body_size <= size - XPB_FRAME_HEADER_SIZE)
      check(input.substr(XPB_FRAME_HEADER_SIZE, body_size));
  }
  // And the whole input as a body, so no byte is only ever a header.
  check(input);
  return 0;
}
