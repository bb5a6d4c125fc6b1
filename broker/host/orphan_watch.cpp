#include "host/orphan_watch.h"

#include <time.h>
#include <unistd.h>

#include <vector>

#include "host/process_inspector.h"

namespace xpra_broker {

std::uint64_t boot_time_ticks_now() {
  timespec ts{};
  ::clock_gettime(CLOCK_BOOTTIME, &ts);
  static const long ticks_per_second = ::sysconf(_SC_CLK_TCK);
  return static_cast<std::uint64_t>(ts.tv_sec) * static_cast<std::uint64_t>(ticks_per_second) +
         static_cast<std::uint64_t>(ts.tv_nsec) / (1000000000ull / static_cast<std::uint64_t>(ticks_per_second));
}

void OrphanWatch::lease_ended(const std::string& lease_id, uid_t uid, std::uint32_t display, std::uint64_t from,
                              std::uint64_t to) {
  if (from == 0 || to < from) return;
  std::lock_guard<std::mutex> lock(mutex_);
  auto& windows = windows_[uid];
  windows.push_back({lease_id, display, from, to});
  while (windows.size() > kMaxWindowsPerUser) windows.pop_front();
}

OrphanWatch::Count OrphanWatch::count() {
  std::map<uid_t, std::deque<Window>> windows;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    windows = windows_;
  }
  Count out;
  // Windows no live process of their user started in: nothing can start in
  // the past, so they are forgotten.
  std::set<std::pair<std::string, std::uint64_t>> dead_windows;
  std::set<std::pair<pid_t, std::uint64_t>> still_seen, candidates;
  for (const auto& [uid, ranges] : windows) {
    std::vector<bool> alive(ranges.size(), false);
    for (const ProcessInfo& p : list_processes(uid)) {
      if (p.uid != uid || p.state == 'Z') continue;
      bool counted = false;
      for (std::size_t i = 0; i < ranges.size(); ++i) {
        const Window& w = ranges[i];
        if (p.start_time < w.from || p.start_time > w.to) continue;
        alive[i] = true;
        // Still someone's child: not an orphan (yet). Counted once, under
        // the first window it fits.
        if (p.ppid != 1 || counted) continue;
        counted = true;
        candidates.insert({p.pid, p.start_time});
        // Only once it was already an orphan at the last count: a keeper
        // whose client was killed is reparented to init for the second or
        // two it takes to end its tree, and is no leak.
        if (!candidates_.count({p.pid, p.start_time})) continue;
        out.by_uid[uid].push_back({p.pid, p.comm, w.lease_id, w.display});
        still_seen.insert({p.pid, p.start_time});
      }
    }
    for (std::size_t i = 0; i < ranges.size(); ++i)
      if (!alive[i]) dead_windows.insert({ranges[i].lease_id, ranges[i].from});
  }
  std::lock_guard<std::mutex> lock(mutex_);
  candidates_ = std::move(candidates);
  for (const auto& key : still_seen)
    if (seen_.insert(key).second) ++seen_total_;
  std::erase_if(seen_, [&](const auto& key) { return !still_seen.count(key); });
  for (auto it = windows_.begin(); it != windows_.end();) {
    std::erase_if(it->second, [&](const Window& w) { return dead_windows.count({w.lease_id, w.from}) > 0; });
    it = it->second.empty() ? windows_.erase(it) : std::next(it);
  }
  out.seen_total = seen_total_;
  return out;
}

}  // namespace xpra_broker
