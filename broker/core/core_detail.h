// Small helpers the lease core's files share (not part of its interface).
#pragma once

#include <chrono>
#include <cstdint>
#include <string>

#include "protocol.h"

namespace xpra_broker::core_detail {

inline v1::Response reply(v1::Status status, std::string message, std::uint32_t retry_after_ms = 0) {
  v1::Response r;
  r.set_status(status);
  r.set_message(std::move(message));
  if (retry_after_ms) r.set_retry_after_ms(retry_after_ms);
  return r;
}

inline std::string str(std::uint64_t n) { return std::to_string(n); }

template <typename Duration>
std::int64_t ms(Duration d) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(d).count();
}

}  // namespace xpra_broker::core_detail
