#include "core/restart_guard.h"

#include <algorithm>

namespace xpra_broker {

using std::chrono::duration_cast;
using std::chrono::milliseconds;

RestartGuard::UserState& RestartGuard::state_for(uid_t uid, Time now) {
  auto [it, inserted] = users_.try_emplace(uid);
  if (inserted) {
    it->second.tokens = settings_.acquire_burst;
    it->second.refilled = now;
    it->second.backoff_until = now;
  }
  return it->second;
}

void RestartGuard::refill(UserState& s, Time now) const {
  if (now <= s.refilled) return;
  const double minutes = std::chrono::duration<double, std::ratio<60>>(now - s.refilled).count();
  s.tokens = std::min<double>(settings_.acquire_burst, s.tokens + minutes * settings_.acquires_per_minute);
  s.refilled = now;
}

RestartGuard::Decision RestartGuard::check_acquire(uid_t uid, Time now) {
  UserState& s = state_for(uid, now);
  refill(s, now);
  if (now < s.backoff_until)
    return {Refusal::backing_off, duration_cast<milliseconds>(s.backoff_until - now) + milliseconds(1), s.failures};
  if (s.tokens < 1.0) {
    const double missing = 1.0 - s.tokens;
    const auto wait = milliseconds(static_cast<std::int64_t>(missing * 60000.0 / settings_.acquires_per_minute) + 1);
    return {Refusal::rate_limited, wait, s.failures};
  }
  s.tokens -= 1.0;
  return {Refusal::none, milliseconds(0), s.failures};
}

void RestartGuard::add_failure(UserState& s, Time now) {
  ++s.failures;
  if (s.failures < settings_.failures_before_backoff) return;
  // 1x, 2x, 4x ... the base, capped; the shift is bounded to avoid overflow.
  const std::uint32_t doublings = std::min<std::uint32_t>(s.failures - settings_.failures_before_backoff, 20);
  const auto delay = std::min<milliseconds>(settings_.backoff_max, settings_.backoff_base * (1LL << doublings));
  s.backoff_until = std::max(s.backoff_until, now + delay);
}

void RestartGuard::record_session_end(uid_t uid, bool failed, milliseconds ran, Time now) {
  UserState& s = state_for(uid, now);
  if (!failed || ran >= settings_.healthy_after) {
    // A healthy session ends the back-off too: the loop it guarded is over.
    s.failures = 0;
    s.backoff_until = std::min(s.backoff_until, now);
    return;
  }
  add_failure(s, now);
}

void RestartGuard::record_start_failure(uid_t uid, Time now) { add_failure(state_for(uid, now), now); }

std::uint32_t RestartGuard::consecutive_failures(uid_t uid) const {
  auto it = users_.find(uid);
  return it == users_.end() ? 0 : it->second.failures;
}

void RestartGuard::forget_idle(Time now) {
  for (auto it = users_.begin(); it != users_.end();) {
    refill(it->second, now);
    if (it->second.failures == 0 && it->second.tokens >= settings_.acquire_burst && now >= it->second.backoff_until)
      it = users_.erase(it);
    else
      ++it;
  }
}

}  // namespace xpra_broker
