#include "core/display_allocator.h"

namespace xpra_broker {

DisplayAllocator::DisplayAllocator(std::uint32_t first, std::uint32_t last)
    : first_(first), last_(last), cursor_(first) {
  for (std::uint32_t d = first; d <= last; ++d) free_.insert(free_.end(), d);
}

std::optional<std::uint32_t> DisplayAllocator::next_candidate() const {
  if (free_.empty()) return std::nullopt;
  auto it = free_.lower_bound(cursor_);
  if (it == free_.end()) it = free_.begin();
  return *it;
}

bool DisplayAllocator::take(std::uint32_t display) {
  if (free_.erase(display) == 0) return false;
  leased_.insert(display);
  cursor_ = display == last_ ? first_ : display + 1;
  return true;
}

void DisplayAllocator::give_back(std::uint32_t display) {
  if (leased_.erase(display) == 0) return;
  // A block set while leased (e.g. quarantine after a failed start) wins;
  // a number a reload took out of the range is not handed out again.
  if (blocked_.count(display) == 0 && in_range(display)) free_.insert(display);
}

void DisplayAllocator::resize(std::uint32_t first, std::uint32_t last) {
  first_ = first;
  last_ = last;
  for (auto it = blocked_.begin(); it != blocked_.end();)
    it = in_range(it->first) ? std::next(it) : blocked_.erase(it);
  for (auto it = expiry_.begin(); it != expiry_.end();)
    it = in_range(it->second) ? std::next(it) : expiry_.erase(it);
  free_.clear();
  for (std::uint32_t d = first_; d <= last_ && d >= first_; ++d)
    if (!leased_.count(d) && !blocked_.count(d)) free_.insert(free_.end(), d);
  if (!in_range(cursor_)) cursor_ = first_;
}

void DisplayAllocator::block(std::uint32_t display, SteadyTime until, std::string reason) {
  if (!in_range(display)) return;
  free_.erase(display);
  auto [it, inserted] = blocked_.try_emplace(display, Block{until, reason});
  if (!inserted) {
    // Drop the old expiry entry; the new one replaces it.
    auto range = expiry_.equal_range(it->second.until);
    for (auto e = range.first; e != range.second; ++e)
      if (e->second == display) {
        expiry_.erase(e);
        break;
      }
    it->second = Block{until, std::move(reason)};
  }
  expiry_.emplace(until, display);
}

void DisplayAllocator::expire_blocks(SteadyTime now) {
  while (!expiry_.empty() && expiry_.begin()->first <= now) {
    const std::uint32_t display = expiry_.begin()->second;
    expiry_.erase(expiry_.begin());
    blocked_.erase(display);
    if (!leased_.count(display)) free_.insert(display);
  }
}

}  // namespace xpra_broker
