// libFuzzer target: the frame codec (proto/framing.h) and Request parsing, fed
// a byte stream the way ClientSession (broker/server/broker_server.cpp) reads one:
// header, length check, body, ParseFromArray, verb check, next frame in the
// same buffer. Checks that whatever parses survives a round trip through
// encode_frame, and that the header codec is its own inverse.
#include <google/protobuf/stubs/logging.h>

#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <span>
#include <string>

#include "framing.h"
#include "core/verb_table.h"
#include "protocol.h"

using namespace xpra_broker;

namespace {

[[noreturn]] void fail(const char* what) {
  std::fprintf(stderr, "frame_decoder_fuzzer: invariant broken: %s\n", what);
  std::abort();
}

// Everything a parsed request leads the server to read: the verb rule and
// the fields the handlers look at.
void touch(const v1::Request& request) {
  const VerbRule* rule = find_verb_rule(request.verb_case());
  if (rule && rule->verb != request.verb_case()) fail("verb table answers for another verb");
  switch (request.verb_case()) {
    case v1::Request::kRelease:
      if (request.release().target_case() == v1::ReleaseRequest::kLeaseId)
        (void)request.release().lease_id().substr(0, 64);
      break;
    case v1::Request::kReportStartFailure: (void)v1::StartFailure_Name(request.report_start_failure().failure()); break;
    case v1::Request::kReportProcess: (void)v1::ProcessRole_Name(request.report_process().role()); break;
    default: break;
  }
}

void check_round_trip(const v1::Request& request) {
  const auto frame = wire::encode_frame(request);
  const std::size_t body = request.ByteSizeLong();
  if (!frame) {
    if (body != 0 && body <= wire::kMaxFrameSize) fail("encode_frame refused a message that fits");
    return;
  }
  if (frame->size() != wire::kHeaderSize + body) fail("frame size is not header + body");
  const auto header = wire::decode_header(
      std::span<const std::uint8_t, wire::kHeaderSize>(reinterpret_cast<const std::uint8_t*>(frame->data()), 4));
  if (header.error != wire::HeaderError::none || header.body_size != body) fail("own frame header does not decode");
  v1::Request again;
  if (!again.ParseFromArray(frame->data() + wire::kHeaderSize, static_cast<int>(body))) fail("own frame does not parse");
  if (again.SerializeAsString() != request.SerializeAsString()) fail("round trip changed the request");
  if (again.verb_case() != request.verb_case()) fail("round trip changed the verb");
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  // libprotobuf logs malformed UTF-8 on its own; that is noise here.
  google::protobuf::SetLogHandler(nullptr);
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  // The header codec on the first four bytes, whatever they are.
  if (size >= wire::kHeaderSize) {
    std::span<const std::uint8_t, wire::kHeaderSize> raw(data, wire::kHeaderSize);
    const auto h = wire::decode_header(raw);
    const std::uint32_t value = (std::uint32_t{data[0]} << 24) | (std::uint32_t{data[1]} << 16) |
                                (std::uint32_t{data[2]} << 8) | data[3];
    if ((h.error == wire::HeaderError::none) != (value != 0 && value <= wire::kMaxFrameSize))
      fail("decode_header accepts the wrong sizes");
    std::uint8_t out[wire::kHeaderSize];
    wire::encode_header(value, std::span<std::uint8_t, wire::kHeaderSize>(out));
    if (std::memcmp(out, data, wire::kHeaderSize) != 0) fail("encode_header is not decode_header's inverse");
    if (std::strlen(wire::describe(h.error)) == 0) fail("empty error description");
  }

  // The stream, frame after frame, until the server would close it.
  std::size_t offset = 0;
  while (size - offset >= wire::kHeaderSize) {
    const auto decoded = wire::decode_header(std::span<const std::uint8_t, wire::kHeaderSize>(data + offset, 4));
    if (decoded.error != wire::HeaderError::none) break;  // protocol violation: closed
    if (decoded.body_size > wire::kMaxFrameSize) fail("accepted a body above the maximum");
    const std::size_t frame_size = wire::kHeaderSize + decoded.body_size;
    if (size - offset < frame_size) break;  // the server would read on (and time out)
    // Its own buffer, exactly the body: ASan sees any read past it.
    std::string body(reinterpret_cast<const char*>(data + offset + wire::kHeaderSize), decoded.body_size);
    offset += frame_size;
    v1::Request request;
    if (!request.ParseFromArray(body.data(), static_cast<int>(body.size()))) break;
    if (request.verb_case() == v1::Request::VERB_NOT_SET) break;
    touch(request);
    check_round_trip(request);
  }
  return 0;
}
