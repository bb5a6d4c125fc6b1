// Percentiles of a set of latency samples, shared by the benchmarks.
#pragma once

#include <cstdint>
#include <vector>

namespace xpra_broker::bench {

struct LatencySummary {
  std::size_t count = 0;
  double mean_us = 0;
  double p50_us = 0;
  double p90_us = 0;
  double p99_us = 0;
  double max_us = 0;
};

// Nearest-rank percentiles; sorts `samples_ns` in place.
LatencySummary summarize(std::vector<std::uint32_t>& samples_ns);
// The same for samples that may exceed the 4.29 s a uint32 of ns can hold
// (a request stuck behind a stalled broker).
LatencySummary summarize(std::vector<std::uint64_t>& samples_ns);

}  // namespace xpra_broker::bench
