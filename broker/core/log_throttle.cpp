#include "core/log_throttle.h"

namespace xpra_broker {

LogThrottle::Decision LogThrottle::admit(uid_t uid, const std::string& reason, Time now) {
  auto key = std::make_pair(uid, reason);
  auto it = entries_.find(key);
  if (it != entries_.end() && now - it->second.logged_at < interval_) {
    ++it->second.suppressed;
    return {false, it->second.suppressed};
  }
  Decision d{true, 0, {}};
  if (it != entries_.end()) {
    d.suppressed = it->second.suppressed;
    d.over = std::chrono::duration_cast<std::chrono::seconds>(now - it->second.logged_at);
  }
  if (it != entries_.end()) {
    it->second = Entry{now, 0};
    return d;
  }
  if (entries_.size() >= max_keys_) {
    // Bounded: forget keys whose interval is over (their held-back count is
    // lost, which only shortens a later line).
    for (auto e = entries_.begin(); e != entries_.end();)
      e = now - e->second.logged_at >= interval_ ? entries_.erase(e) : std::next(e);
    if (entries_.size() >= max_keys_) return {false, 0};  // a flood of new keys: drop, never grow
  }
  entries_.emplace(std::move(key), Entry{now, 0});
  return d;
}

std::string LogThrottle::suffix(const Decision& d) const {
  if (d.suppressed == 0) return "";
  return " (" + std::to_string(d.suppressed) + " more suppressed in the last " + std::to_string(d.over.count()) +
         " s)";
}

}  // namespace xpra_broker
