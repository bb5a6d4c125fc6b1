// Who may still write into the journal's space reserve while the filesystem
// is full (issue 21, attack 2, round two). The reserve (lease_journal.h)
// keeps appends working when a user fills the runtime dir's filesystem, but
// only for 1 MiB: the user who filled it could go on acquiring and
// releasing until the reserve is gone too (some 3,500 pairs), and then
// everyone's acquires fail again. So while the journal lives on its reserve:
//   - records that state what already happened (lease ends, logouts: owed
//     records) and root's records (the PAM module's logins) always get in;
//   - each other user's withdrawable records (new leases, processes,
//     reattaches) may take at most kPerUserBytes of it, and none may take
//     the last kFloorBytes, which are kept for the records above.
// One user can then use at most her share; the others keep getting leases
// until many users have each used theirs (the admin frees space meanwhile:
// `status` names who uses it). When the reserve can be topped up again (the
// space came back), the shares start afresh.
//
// Pure: byte counts in, a decision out.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <unordered_map>

namespace xpra_broker {

class ReserveShares {
 public:
  // About 200 acquire+release pairs per user; the floor, some 800 lease
  // ends, logouts or logins.
  static constexpr std::uint64_t kPerUserBytes = 32 * 1024;
  static constexpr std::uint64_t kFloorBytes = 128 * 1024;

  // May `uid` append a withdrawable record of `bytes`, with `reserve_left`
  // bytes of reserve left?
  bool may_write(uid_t uid, std::uint64_t bytes, std::uint64_t reserve_left) const;
  void charge(uid_t uid, std::uint64_t bytes);
  // Off the reserve (or back on it after a top-up): everyone starts afresh.
  void reset() { used_.clear(); }
  std::uint64_t used_by(uid_t uid) const;

 private:
  std::unordered_map<uid_t, std::uint64_t> used_;
};

}  // namespace xpra_broker
