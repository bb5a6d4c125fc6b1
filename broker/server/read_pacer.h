// Paces the read verbs (status, list) per user: a token bucket, and a request
// over the limit is answered late rather than refused. A refusal would be
// just as cheap to ask for again at once; a delayed answer holds the asking
// connection (which reads nothing more until it is answered), so a user who
// loops `status` on all of their connections costs the broker at most
// `per_second` answers a second, and every other user keeps the loop.
// Pure: time is passed in.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <unordered_map>

namespace xpra_broker {

class ReadPacer {
 public:
  using Time = std::chrono::steady_clock::time_point;
  ReadPacer(std::uint32_t per_second, std::uint32_t burst, std::size_t max_users = 65536)
      : per_second_(per_second), burst_(burst), max_users_(max_users) {}

  // Charges one read to `uid` and says how long to wait before answering it
  // (zero: at once). Reads queued behind each other are spaced 1/per_second
  // apart: the bucket may go into debt, so the waits grow with the queue.
  std::chrono::milliseconds charge(uid_t uid, Time now);

  std::size_t tracked_users() const { return buckets_.size(); }

 private:
  struct Bucket {
    double tokens = 0;  // may go negative: reads already promised a slot
    Time updated;
  };
  std::uint32_t per_second_;
  std::uint32_t burst_;
  std::size_t max_users_;
  std::unordered_map<uid_t, Bucket> buckets_;
};

}  // namespace xpra_broker
