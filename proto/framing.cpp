#include "framing.h"

#include <google/protobuf/message_lite.h>

namespace xpra_broker::wire {

HeaderResult decode_header(std::span<const std::uint8_t, kHeaderSize> header) {
  const std::uint32_t size = (std::uint32_t{header[0]} << 24) | (std::uint32_t{header[1]} << 16) |
                             (std::uint32_t{header[2]} << 8) | std::uint32_t{header[3]};
  if (size == 0) return {0, HeaderError::empty_frame};
  if (size > kMaxFrameSize) return {size, HeaderError::too_large};
  return {size, HeaderError::none};
}

void encode_header(std::uint32_t body_size, std::span<std::uint8_t, kHeaderSize> out) {
  out[0] = static_cast<std::uint8_t>(body_size >> 24);
  out[1] = static_cast<std::uint8_t>(body_size >> 16);
  out[2] = static_cast<std::uint8_t>(body_size >> 8);
  out[3] = static_cast<std::uint8_t>(body_size);
}

std::optional<std::string> encode_frame(const google::protobuf::MessageLite& message) {
  const std::size_t body = message.ByteSizeLong();
  // An empty message (all defaults) still needs a non-empty body on the wire,
  // but every Request/Response we send has a verb or status set, so body > 0.
  if (body == 0 || body > kMaxFrameSize) return std::nullopt;
  std::string frame(kHeaderSize + body, '\0');
  encode_header(static_cast<std::uint32_t>(body),
                std::span<std::uint8_t, kHeaderSize>(reinterpret_cast<std::uint8_t*>(frame.data()), kHeaderSize));
  if (!message.SerializeToArray(frame.data() + kHeaderSize, static_cast<int>(body))) return std::nullopt;
  return frame;
}

const char* describe(HeaderError error) {
  switch (error) {
    case HeaderError::none: return "ok";
    case HeaderError::empty_frame: return "empty frame";
    case HeaderError::too_large: return "frame larger than 64 KiB";
  }
  return "unknown";
}

}  // namespace xpra_broker::wire
