// The C++ generated protobuf code as the oracle for the PAM module's C
// decoder (pam/login_protocol.c): whatever libprotobuf accepts as a Response,
// the C decoder accepts too, with the same values in every field the module
// reads. The C decoder may refuse more (it is never less strict on the fields
// it reads) but never crashes or reads outside the bytes. Shared by
// tests/pam/login_protocol_test.cpp and fuzz/login_reply_fuzzer.cpp.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "login_protocol.h"
#include "protocol.h"

namespace xpra_broker::pam_oracle {

inline std::string_view view(xpb_bytes b) {
  return b.size == 0 ? std::string_view() : std::string_view(reinterpret_cast<const char*>(b.data), b.size);
}

// Empty when `reply` holds what `response` holds in the fields the module reads.
inline std::string differences(const v1::Response& response, const xpb_login_reply& reply) {
  std::string out;
  auto differ = [&out](const char* field) { out += std::string(out.empty() ? "" : ", ") + field; };
  if (reply.status != static_cast<std::int32_t>(response.status())) differ("status");
  if (view(reply.message) != response.message()) differ("message");
  if (reply.result != static_cast<std::uint32_t>(response.result_case())) differ("result");
  if (response.has_open_login()) {
    if (view(reply.open_login.runtime_dir) != response.open_login().runtime_dir()) differ("open_login.runtime_dir");
    if (reply.open_login.login_sessions != response.open_login().login_sessions())
      differ("open_login.login_sessions");
  }
  if (response.has_close_login()) {
    if (reply.close_login.login_sessions != response.close_login().login_sessions())
      differ("close_login.login_sessions");
    if (reply.close_login.leases_ended != response.close_login().leases_ended()) differ("close_login.leases_ended");
    if (reply.close_login.counted != response.close_login().counted()) differ("close_login.counted");
  }
  if (std::string(xpb_status_name(reply.status)) != v1::Status_Name(response.status())) differ("status name");
  return out;
}

struct Verdict {
  bool cpp_parsed = false;
  const char* c_error = nullptr;  // the C decoder's reason, nullptr if it decoded
  std::string mismatch;           // broken promise, empty if none
};

// Decodes `body` both ways. The body is copied into a buffer of exactly its
// size, so a read past the end is caught by ASan (fuzz build) or valgrind.
inline Verdict judge(std::string_view body) {
  Verdict verdict;
  const std::vector<std::uint8_t> exact(body.begin(), body.end());
  xpb_login_reply reply{};
  verdict.c_error = xpb_decode_login_reply(exact.data(), exact.size(), &reply);
  v1::Response response;
  verdict.cpp_parsed = response.ParseFromArray(body.data(), static_cast<int>(body.size()));
  if (verdict.c_error != nullptr && std::string_view(verdict.c_error).empty())
    verdict.mismatch = "the C decoder failed without a reason";
  if (!verdict.cpp_parsed) return verdict;
  if (verdict.c_error != nullptr) {
    verdict.mismatch = std::string("libprotobuf parsed it, the C decoder refused: ") + verdict.c_error;
    return verdict;
  }
  const std::string diff = differences(response, reply);
  if (!diff.empty()) verdict.mismatch = "fields differ: " + diff;
  return verdict;
}

}  // namespace xpra_broker::pam_oracle
