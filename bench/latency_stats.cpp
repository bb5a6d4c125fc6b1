#include "latency_stats.h"

#include <algorithm>
#include <cmath>

namespace xpra_broker::bench {

namespace {

template <typename Sample>
LatencySummary summarize_samples(std::vector<Sample>& samples_ns) {
  LatencySummary s;
  s.count = samples_ns.size();
  if (samples_ns.empty()) return s;
  std::sort(samples_ns.begin(), samples_ns.end());
  const auto at = [&](double q) {
    const auto rank = static_cast<std::size_t>(std::ceil(q * static_cast<double>(samples_ns.size())));
    return static_cast<double>(samples_ns[std::clamp<std::size_t>(rank, 1, samples_ns.size()) - 1]) / 1000.0;
  };
  double total = 0;
  for (auto v : samples_ns) total += static_cast<double>(v);
  s.mean_us = total / static_cast<double>(samples_ns.size()) / 1000.0;
  s.p50_us = at(0.50);
  s.p90_us = at(0.90);
  s.p99_us = at(0.99);
  s.max_us = static_cast<double>(samples_ns.back()) / 1000.0;
  return s;
}

}  // namespace

LatencySummary summarize(std::vector<std::uint32_t>& samples_ns) { return summarize_samples(samples_ns); }
LatencySummary summarize(std::vector<std::uint64_t>& samples_ns) { return summarize_samples(samples_ns); }

}  // namespace xpra_broker::bench
