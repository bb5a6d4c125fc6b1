#include "server/read_pacer.h"

#include <algorithm>
#include <cmath>

namespace xpra_broker {

std::chrono::milliseconds ReadPacer::charge(uid_t uid, Time now) {
  if (per_second_ == 0) return std::chrono::milliseconds(0);  // pacing off
  auto it = buckets_.find(uid);
  if (it == buckets_.end()) {
    if (buckets_.size() >= max_users_) {
      // Forget users whose bucket has filled up again: they owe nothing.
      for (auto b = buckets_.begin(); b != buckets_.end();) {
        const double elapsed = std::chrono::duration<double>(now - b->second.updated).count();
        b = b->second.tokens + elapsed * per_second_ >= burst_ ? buckets_.erase(b) : std::next(b);
      }
    }
    it = buckets_.emplace(uid, Bucket{static_cast<double>(burst_), now}).first;
  }
  Bucket& b = it->second;
  const double elapsed = std::chrono::duration<double>(now - b.updated).count();
  b.tokens = std::min<double>(burst_, b.tokens + std::max(0.0, elapsed) * per_second_);
  b.updated = now;
  b.tokens -= 1;
  if (b.tokens >= 0) return std::chrono::milliseconds(0);
  return std::chrono::milliseconds(static_cast<std::int64_t>(std::ceil(-b.tokens * 1000.0 / per_second_)));
}

}  // namespace xpra_broker
