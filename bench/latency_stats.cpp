#include "latency_stats.h"

#include <algorithm>
#include <cmath>

namespace xpra_broker::bench {

LatencySummary summarize(std::vector<std::uint32_t>& samples_ns) {
  LatencySummary s;
  s.count = samples_ns.size();
  if (samples_ns.empty()) return s;
  std::sort(samples_ns.begin(), samples_ns.end());
  const auto at = [&](double q) {
    const auto rank = static_cast<std::size_t>(std::ceil(q * static_cast<double>(samples_ns.size())));
    return samples_ns[std::clamp<std::size_t>(rank, 1, samples_ns.size()) - 1] / 1000.0;
  };
  double total = 0;
  for (auto v : samples_ns) total += v;
  s.mean_us = total / static_cast<double>(samples_ns.size()) / 1000.0;
  s.p50_us = at(0.50);
  s.p90_us = at(0.90);
  s.p99_us = at(0.99);
  s.max_us = samples_ns.back() / 1000.0;
  return s;
}

}  // namespace xpra_broker::bench
