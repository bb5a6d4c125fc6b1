// Restart-loop defence, per user: a token bucket on acquires and exponential
// back-off after consecutive failed sessions. Pure: time comes in as a
// parameter, so every path is unit-tested without sleeping.
//
// A supervisor (jupyter-server-proxy) restarting a failing session every
// second is slowed to one try per back-off period; together with the lease
// quota and the reaper this bounds the X servers a user can pile up.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <unordered_map>

namespace xpra_broker {

struct RestartGuardSettings {
  std::uint32_t acquire_burst = 10;        // acquires allowed at once
  std::uint32_t acquires_per_minute = 60;  // refill rate
  std::uint32_t failures_before_backoff = 3;
  std::chrono::milliseconds backoff_base{1000};
  std::chrono::milliseconds backoff_max{300000};
  // A session that ran at least this long counts as healthy.
  std::chrono::milliseconds healthy_after{10000};
};

class RestartGuard {
 public:
  using Time = std::chrono::steady_clock::time_point;
  explicit RestartGuard(RestartGuardSettings settings) : settings_(settings) {}

  enum class Refusal { none, rate_limited, backing_off };
  struct Decision {
    Refusal refusal = Refusal::none;
    std::chrono::milliseconds retry_after{0};
    std::uint32_t consecutive_failures = 0;
  };

  // Checks and, when allowed, charges one acquire.
  Decision check_acquire(uid_t uid, Time now);

  // A session ended: failed (non-zero exit, start failure, holder vanished)
  // and how long it ran decide whether it counts as a failure.
  void record_session_end(uid_t uid, bool failed, std::chrono::milliseconds ran, Time now);
  // A start that failed before the session ran at all.
  void record_start_failure(uid_t uid, Time now);

  std::uint32_t consecutive_failures(uid_t uid) const;
  // A reload's new limits; each user's failures and back-off are kept.
  void set_settings(RestartGuardSettings settings) { settings_ = settings; }
  std::size_t tracked_users() const { return users_.size(); }
  // Drops users whose state no longer matters (full bucket, no back-off).
  void forget_idle(Time now);

 private:
  struct UserState {
    double tokens = 0;
    Time refilled;
    std::uint32_t failures = 0;
    Time backoff_until;
  };
  UserState& state_for(uid_t uid, Time now);
  void refill(UserState& s, Time now) const;
  void add_failure(UserState& s, Time now);

  RestartGuardSettings settings_;
  std::unordered_map<uid_t, UserState> users_;
};

}  // namespace xpra_broker
