// What the admin's monitoring sees (docs/monitoring.md): counters that the
// hub and the server bump as things happen, and a pure renderer that turns
// them, with the gauges read at scrape time, into the Prometheus text
// exposition format (version 0.0.4).
//
// The privileged daemon opens no port for this: the admin-only `metrics`
// verb carries the text, and `xpra-request-display metrics --output FILE`
// writes it for node-exporter's textfile collector. So the renderer's one
// hard limit is the frame: its output stays under kMaxExpositionBytes,
// whatever the number of users or the length of their names; per-user
// series are capped and a gauge says when some were left out.
//
// Pure: no I/O, no clock, no passwd look-up; the caller passes every value
// in, so the output is tested byte for byte.
#pragma once

#include <sys/types.h>

#include <array>
#include <cstddef>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "protocol.h"

namespace xpra_broker {

// A Prometheus histogram over fixed upper bounds, in seconds.
class Histogram {
 public:
  explicit Histogram(std::vector<double> upper_bounds);
  void observe(double seconds);
  const std::vector<double>& upper_bounds() const { return bounds_; }
  // Per bucket, not cumulative; one more than the bounds (the +Inf bucket).
  const std::vector<std::uint64_t>& bucket_counts() const { return counts_; }
  double sum() const { return sum_; }
  std::uint64_t count() const { return count_; }

 private:
  std::vector<double> bounds_;
  std::vector<std::uint64_t> counts_;
  double sum_ = 0;
  std::uint64_t count_ = 0;
};

// Why a number of the range is not free right now: the fixed label set of
// xpra_broker_blocked_displays{reason=...}. Each maps to one generic reason
// users see in `status` (block_reason_text).
enum class BlockReason : std::size_t {
  in_use,            // something of another owner runs on it (probe)
  leftovers,         // stale files the broker could not (or may not) remove
  quarantined,       // a confirmed display conflict reported by a user
  reap_survivors,    // processes of the last lease survived SIGKILL
  awaiting_journal,  // its lease ended, but the end is not in the journal yet
  orphan_reap,       // processes of a lease not restored are being reaped
};
inline constexpr std::size_t kBlockReasons = 6;
const char* block_reason_label(BlockReason reason);
// What users are told in `status` (never the broker's own findings).
const char* block_reason_text(BlockReason reason);

// Why an acquire was refused before a number was picked, or none was free.
enum class AcquireRefusal : std::size_t { user_quota, host_limit, rate_limit, backoff, no_free_display, journal };
inline constexpr std::size_t kAcquireRefusals = 6;
const char* acquire_refusal_label(AcquireRefusal reason);

// Everything that only ever grows while the broker runs.
struct BrokerCounters {
  BrokerCounters();

  // Every answered request, by verb (the Request oneof's field number) and
  // status, including refusals by the central access check.
  void count_request(v1::Request::VerbCase verb, v1::Status status);
  std::uint64_t requests(v1::Request::VerbCase verb, v1::Status status) const;

  static constexpr std::size_t kVerbSlots = 32;   // the policy test pins field numbers below 32
  static constexpr std::size_t kStatusSlots = 16;  // v1::Status values are below 16
  std::array<std::array<std::uint64_t, kStatusSlots>, kVerbSlots> requests_by_verb{};
  std::array<std::uint64_t, kAcquireRefusals> acquire_refusals{};
  // Counts a refused acquire, in total and for the user: a user in a restart
  // loop is named by xpra_broker_user_acquire_refusals_total (the alert
  // XpraBrokerRestartLoop). Users beyond kMaxCountedUsers are counted in the
  // total only, and the truncation gauge says so.
  void count_refusal(uid_t uid, AcquireRefusal reason);
  static constexpr std::size_t kMaxCountedUsers = 4096;
  std::map<uid_t, std::array<std::uint64_t, kAcquireRefusals>> user_acquire_refusals;
  bool user_refusals_uncounted = false;
  std::uint64_t processes_terminated = 0;
  std::uint64_t processes_killed = 0;
  std::uint64_t processes_unkillable = 0;
  Histogram reap_duration;  // one observation per reap that ran (a lease's or an orphan's)
  std::uint64_t leases_ended = 0;
  std::uint64_t stale_files_removed = 0;
  std::uint64_t quarantines = 0;
  Histogram journal_commit_duration;  // one group commit (one write) each
  std::uint64_t connections_accepted = 0;
  std::uint64_t connections_refused = 0;  // over max-connections-per-user or the broker's total
};

// One user's row of the per-user families.
struct UserMetrics {
  uid_t uid = 0;
  std::string name;  // from the passwd database; any bytes (escaped when rendered)
  std::uint32_t leases = 0;
  std::uint32_t x_servers = 0;
  std::uint32_t orphans = 0;  // processes that outlived a lease of theirs (host/orphan_watch.h)
  // Numbers of the range blocked by what this user runs outside broker
  // leases (a live lock's X server, a socket or abstract listener).
  std::uint32_t blocked_displays = 0;
  std::array<std::uint64_t, kAcquireRefusals> acquire_refusals{};  // since the broker started
};

struct JournalMetrics {
  std::uint64_t bytes = 0;
  std::uint64_t records = 0;
  bool degraded = false;
  std::uint64_t owed_records = 0;
};

// The gauges, read when the exposition is asked for.
struct MetricsSnapshot {
  std::string version;
  double start_time_unix_seconds = 0;
  double uptime_seconds = 0;
  std::uint32_t leases_active = 0, leases_detached = 0, leases_ending = 0;
  std::uint32_t max_leases = 0, max_leases_per_user = 0;
  std::uint32_t x_server_warn_threshold = 0;  // the leak watchdog's: above it, a user is warned about
  std::uint32_t range_size = 0;
  std::uint32_t free_displays = 0;
  std::array<std::uint32_t, kBlockReasons> blocked{};
  std::uint32_t connections = 0;
  // Every user with a lease, an X server or a refused acquire, any order.
  std::vector<UserMetrics> users;
  bool user_refusals_uncounted = false;  // BrokerCounters::user_refusals_uncounted
  std::optional<double> x_server_census_age_seconds;  // none before the first census
  std::uint64_t orphans_seen_total = 0;               // distinct orphans of ended leases counted since start
  std::optional<JournalMetrics> journal;              // none with journal=no
};

// Per-user series: at most this many users, the ones blocking the most
// numbers, then with the most X servers and orphans (then refused acquires,
// then leases) first, so neither a leaking user nor one in a restart loop is
// the one left out.
inline constexpr std::size_t kMaxMetricsUsers = 256;
// The whole text, so the reply (plus Protobuf's few bytes) fits one 64 KiB
// frame whatever the users' names.
inline constexpr std::size_t kMaxExpositionBytes = 60 * 1024;

std::string render_metrics(const BrokerCounters& counters, const MetricsSnapshot& snapshot);

// A label value as the text format requires: backslash, double quote and
// line feed escaped; bytes that are not UTF-8 become U+FFFD (the format is
// UTF-8, and so is the Protobuf string that carries it), and so do other
// control characters (the text is also printed on an admin's terminal).
std::string escape_label_value(std::string_view value);

// The latency buckets, in seconds.
std::vector<double> reap_duration_buckets();            // 10 ms .. 30 s
std::vector<double> journal_commit_duration_buckets();  // 10 us .. 100 ms

}  // namespace xpra_broker
