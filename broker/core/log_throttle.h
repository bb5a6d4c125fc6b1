// Repeated refusals are logged once per (uid, reason) per interval, with the
// count of the ones held back: a user who reconnects in a loop, or sends a
// refused request thousands of times a second, must not be able to fill the
// disk through the broker's log. Pure: time is passed in.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <map>
#include <string>
#include <utility>

namespace xpra_broker {

class LogThrottle {
 public:
  using Time = std::chrono::steady_clock::time_point;
  explicit LogThrottle(std::chrono::seconds interval = std::chrono::seconds(10), std::size_t max_keys = 4096)
      : interval_(interval), max_keys_(max_keys) {}

  struct Decision {
    bool log = false;
    std::uint64_t suppressed = 0;  // held back since the last line of this key
    std::chrono::seconds over{0};  // ...which was logged this long ago
  };
  // One more event of `reason` for `uid`: log it, or count it.
  Decision admit(uid_t uid, const std::string& reason, Time now);

  // " (N more suppressed in the last S s)", or "" when none were.
  std::string suffix(const Decision& d) const;

 private:
  struct Entry {
    Time logged_at;
    std::uint64_t suppressed = 0;
  };
  std::chrono::seconds interval_;
  std::size_t max_keys_;
  std::map<std::pair<uid_t, std::string>, Entry> entries_;
};

}  // namespace xpra_broker
