// Frame codec shared by the broker and the client (the PAM module, in C,
// reads and writes the same frames in pam/login_protocol.c).
//
// A frame is a 4-byte big-endian length followed by that many bytes of one
// serialized protobuf message. The length is checked against kMaxFrameSize
// before any buffer is sized from it (xrdp's sesman CVE-2022-23613 is what
// happens otherwise). The codec is pure: no I/O, so every malformed input is
// unit-tested and fuzzed.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>

namespace google::protobuf {
class MessageLite;
}

namespace xpra_broker::wire {

inline constexpr std::size_t kHeaderSize = 4;
inline constexpr std::uint32_t kMaxFrameSize = 64 * 1024;

enum class HeaderError { none, empty_frame, too_large };

// Decodes a frame header. Returns the body length, or the reason it is
// unacceptable. A zero-length body is refused: no valid request is empty.
struct HeaderResult {
  std::uint32_t body_size = 0;
  HeaderError error = HeaderError::none;
};
HeaderResult decode_header(std::span<const std::uint8_t, kHeaderSize> header);

void encode_header(std::uint32_t body_size, std::span<std::uint8_t, kHeaderSize> out);

// Serializes `message` as a complete frame (header + body). Returns nullopt if
// the message would exceed kMaxFrameSize.
std::optional<std::string> encode_frame(const google::protobuf::MessageLite& message);

const char* describe(HeaderError error);

}  // namespace xpra_broker::wire
