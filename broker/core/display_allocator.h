// Which display numbers of the range may be handed out next.
//
// Pure bookkeeping, no I/O: the broker asks for a candidate, probes the host
// (display_probe.h), and then either takes the number or blocks it for a
// while. Free numbers live in an ordered set and are picked round-robin from a
// cursor, so one allocation costs O(log range) whatever the number of held
// leases, and a number just given back is not the first to be reused (its X
// server may still be shutting down).
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <vector>

namespace xpra_broker {

using SteadyTime = std::chrono::steady_clock::time_point;

class DisplayAllocator {
 public:
  DisplayAllocator(std::uint32_t first, std::uint32_t last);

  // The next free, unblocked number at or after the cursor (wrapping), or
  // nullopt when none is left. Does not take it.
  std::optional<std::uint32_t> next_candidate() const;

  // Marks a free number as leased; false if it was not free.
  bool take(std::uint32_t display);
  // A leased number goes back to the pool.
  void give_back(std::uint32_t display);

  // Keeps a free number out of the pool until `until` (in use outside the
  // broker, stale artifacts, quarantine). Re-blocking extends the time.
  void block(std::uint32_t display, SteadyTime until, std::string reason);
  // Returns numbers whose block has passed to the pool. Call before picking.
  void expire_blocks(SteadyTime now);

  // A reload's new range. Leased numbers stay leased, in the range or not;
  // one outside it leaves the pool when given back. Blocks outside it go.
  void resize(std::uint32_t first, std::uint32_t last);

  struct Block {
    SteadyTime until;
    std::string reason;
  };
  const std::map<std::uint32_t, Block>& blocked() const { return blocked_; }

  bool in_range(std::uint32_t display) const { return display >= first_ && display <= last_; }
  bool is_leased(std::uint32_t display) const { return leased_.count(display) != 0; }
  std::size_t free_count() const { return free_.size(); }
  const std::set<std::uint32_t>& free_numbers() const { return free_; }
  std::size_t leased_count() const { return leased_.size(); }
  std::uint32_t first() const { return first_; }
  std::uint32_t last() const { return last_; }

 private:
  std::uint32_t first_;
  std::uint32_t last_;
  std::uint32_t cursor_;
  std::set<std::uint32_t> free_;
  std::set<std::uint32_t> leased_;
  std::map<std::uint32_t, Block> blocked_;
  // Blocks ordered by expiry, so expire_blocks() touches only expired ones.
  std::multimap<SteadyTime, std::uint32_t> expiry_;
};

}  // namespace xpra_broker
