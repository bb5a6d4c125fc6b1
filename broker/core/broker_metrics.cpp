#include "core/broker_metrics.h"

#include <algorithm>
#include <charconv>

namespace xpra_broker {

Histogram::Histogram(std::vector<double> upper_bounds)
    : bounds_(std::move(upper_bounds)), counts_(bounds_.size() + 1, 0) {}

void Histogram::observe(double seconds) {
  const auto it = std::lower_bound(bounds_.begin(), bounds_.end(), seconds);  // le: upper bound inclusive
  ++counts_[static_cast<std::size_t>(it - bounds_.begin())];
  sum_ += seconds;
  ++count_;
}

std::vector<double> reap_duration_buckets() {
  // A lease with nothing left running is reaped in a few ms; one that needs
  // SIGKILL waits reap-grace-ms (2 s by default) first; beyond 30 s
  // something is stuck.
  return {0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30};
}

std::vector<double> journal_commit_duration_buckets() {
  // One write() to a tmpfs takes microseconds; milliseconds mean a slow
  // disk under the runtime dir or a huge batch.
  return {0.00001, 0.000025, 0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.01, 0.1};
}

namespace {

// One row per BlockReason, in its order: the metric's label and what users
// read in `status`.
struct BlockReasonNames {
  const char* label;
  const char* text;
};
constexpr std::array<BlockReasonNames, kBlockReasons> kBlockReasonNames = {{
    {"in_use", "in use on the host"},
    {"leftovers", "leftover files on the host"},
    {"quarantined", "quarantined after a display conflict"},
    {"reap_survivors", "processes of the last session survived SIGKILL"},
    {"awaiting_journal", "waiting for the lease journal"},
    {"orphan_reap", "processes of an earlier lease are being ended"},
}};

}  // namespace

const char* block_reason_label(BlockReason reason) {
  const auto i = static_cast<std::size_t>(reason);
  return i < kBlockReasons ? kBlockReasonNames[i].label : "unknown";
}

const char* block_reason_text(BlockReason reason) {
  const auto i = static_cast<std::size_t>(reason);
  return i < kBlockReasons ? kBlockReasonNames[i].text : "not available";
}

const char* acquire_refusal_label(AcquireRefusal reason) {
  switch (reason) {
    case AcquireRefusal::user_quota: return "user_quota";
    case AcquireRefusal::host_limit: return "host_limit";
    case AcquireRefusal::rate_limit: return "rate_limit";
    case AcquireRefusal::backoff: return "backoff";
    case AcquireRefusal::no_free_display: return "no_free_display";
    case AcquireRefusal::journal: return "journal";
  }
  return "unknown";
}

BrokerCounters::BrokerCounters()
    : reap_duration(reap_duration_buckets()), journal_commit_duration(journal_commit_duration_buckets()) {}

void BrokerCounters::count_request(v1::Request::VerbCase verb, v1::Status status) {
  const auto v = static_cast<std::size_t>(verb);
  const auto s = static_cast<std::size_t>(status);
  if (v < kVerbSlots && s < kStatusSlots) ++requests_by_verb[v][s];
}

void BrokerCounters::count_refusal(uid_t uid, AcquireRefusal reason) {
  const auto r = static_cast<std::size_t>(reason);
  if (r >= kAcquireRefusals) return;
  ++acquire_refusals[r];
  auto row = user_acquire_refusals.find(uid);
  if (row == user_acquire_refusals.end()) {
    // Bounded: one row per uid ever refused, at most kMaxCountedUsers.
    if (user_acquire_refusals.size() >= kMaxCountedUsers) {
      user_refusals_uncounted = true;
      return;
    }
    row = user_acquire_refusals.emplace(uid, std::array<std::uint64_t, kAcquireRefusals>{}).first;
  }
  ++row->second[r];
}

std::uint64_t BrokerCounters::requests(v1::Request::VerbCase verb, v1::Status status) const {
  const auto v = static_cast<std::size_t>(verb);
  const auto s = static_cast<std::size_t>(status);
  return v < kVerbSlots && s < kStatusSlots ? requests_by_verb[v][s] : 0;
}

std::string escape_label_value(std::string_view value) {
  std::string out;
  out.reserve(value.size());
  std::size_t i = 0;
  while (i < value.size()) {
    const auto c = static_cast<unsigned char>(value[i]);
    if (c < 0x80) {
      if (c == '\\') out += "\\\\";
      else if (c == '"') out += "\\\"";
      else if (c == '\n') out += "\\n";
      else if (c < 0x20 || c == 0x7F) out += "\xEF\xBF\xBD";  // nothing that drives a terminal
      else out += static_cast<char>(c);
      ++i;
      continue;
    }
    // A well-formed multi-byte sequence (no overlong forms, no surrogates,
    // nothing above U+10FFFF) is copied; anything else is one U+FFFD per byte.
    std::size_t len = 0;
    std::uint32_t min = 0, cp = 0;
    if ((c & 0xE0) == 0xC0) len = 2, min = 0x80, cp = c & 0x1F;
    else if ((c & 0xF0) == 0xE0) len = 3, min = 0x800, cp = c & 0x0F;
    else if ((c & 0xF8) == 0xF0) len = 4, min = 0x10000, cp = c & 0x07;
    bool ok = len > 0 && i + len <= value.size();
    for (std::size_t k = 1; ok && k < len; ++k) {
      const auto cc = static_cast<unsigned char>(value[i + k]);
      ok = (cc & 0xC0) == 0x80;
      cp = (cp << 6) | (cc & 0x3F);
    }
    // C1 controls (U+0080..U+009F) are valid UTF-8 but drive terminals too.
    ok = ok && cp >= min && cp <= 0x10FFFF && !(cp >= 0xD800 && cp <= 0xDFFF) && !(cp >= 0x80 && cp <= 0x9F);
    if (ok) {
      out.append(value.substr(i, len));
      i += len;
    } else {
      out += "\xEF\xBF\xBD";
      ++i;
    }
  }
  return out;
}

namespace {

// Integers print as integers; other values in the shortest form that reads
// back the same (std::to_chars without a format: the core links no
// formatting library).
std::string number(double v) {
  char buf[32];
  const auto end = std::to_chars(buf, buf + sizeof(buf), v).ptr;
  return std::string(buf, end);
}
std::string number(std::uint64_t v) { return std::to_string(v); }

class Exposition {
 public:
  // HELP and TYPE once per family, before its samples.
  void family(std::string_view name, std::string_view type, std::string_view help) {
    ((((out_ += "# HELP ") += name) += ' ') += help) += '\n';
    ((((out_ += "# TYPE ") += name) += ' ') += type) += '\n';
  }
  template <typename Value>
  void sample(std::string_view name, std::string_view labels, Value value) {
    out_ += name;
    if (!labels.empty()) ((out_ += '{') += labels) += '}';
    out_ += ' ';
    out_ += number(value);
    out_ += '\n';
  }
  template <typename Value>
  void single(std::string_view name, std::string_view type, std::string_view help, Value value) {
    family(name, type, help);
    sample(name, {}, value);
  }
  void histogram(std::string_view name, std::string_view help, const Histogram& h) {
    family(name, "histogram", help);
    const std::string bucket = std::string(name) + "_bucket";
    std::uint64_t cumulative = 0;
    for (std::size_t i = 0; i < h.upper_bounds().size(); ++i) {
      cumulative += h.bucket_counts()[i];
      sample(bucket, "le=\"" + number(h.upper_bounds()[i]) + "\"", cumulative);
    }
    sample(bucket, "le=\"+Inf\"", h.count());
    sample(std::string(name) + "_sum", {}, h.sum());
    sample(std::string(name) + "_count", {}, h.count());
  }
  std::string& text() { return out_; }

 private:
  std::string out_;
};

std::string label(std::string_view key, std::string_view value) {
  return std::string(key) + "=\"" + escape_label_value(value) + "\"";
}

}  // namespace

std::string render_metrics(const BrokerCounters& c, const MetricsSnapshot& s) {
  Exposition e;
  e.family("xpra_broker_build_info", "gauge", "Always 1; the version of xpra-brokerd that answered.");
  e.sample("xpra_broker_build_info", label("version", s.version), std::uint64_t{1});
  e.single("xpra_broker_start_time_seconds", "gauge", "When the broker started, in seconds since the Unix epoch.",
           s.start_time_unix_seconds);
  e.single("xpra_broker_uptime_seconds", "gauge", "Seconds since the broker started.", s.uptime_seconds);

  e.family("xpra_broker_leases", "gauge",
           "Leases by state: active (held by a connected holder), detached (recovered after a restart, waiting for "
           "its holder), ending (its processes are being ended).");
  e.sample("xpra_broker_leases", "state=\"active\"", std::uint64_t{s.leases_active});
  e.sample("xpra_broker_leases", "state=\"detached\"", std::uint64_t{s.leases_detached});
  e.sample("xpra_broker_leases", "state=\"ending\"", std::uint64_t{s.leases_ending});
  e.single("xpra_broker_max_leases", "gauge", "The host-wide lease limit (max-leases).", std::uint64_t{s.max_leases});
  e.single("xpra_broker_max_leases_per_user", "gauge", "The per-user lease quota (max-leases-per-user).",
           std::uint64_t{s.max_leases_per_user});
  e.single("xpra_broker_x_server_warn_threshold", "gauge",
           "The leak watchdog's threshold: a user running more X servers than this is warned about in the log.",
           std::uint64_t{s.x_server_warn_threshold});
  e.single("xpra_broker_displays", "gauge", "Display numbers in the broker's range.", std::uint64_t{s.range_size});
  e.single("xpra_broker_free_displays", "gauge",
           "Display numbers the broker could hand out now (not leased, not blocked).", std::uint64_t{s.free_displays});
  e.family("xpra_broker_blocked_displays", "gauge",
           "Display numbers the broker will not hand out for now, by reason.");
  for (std::size_t r = 0; r < kBlockReasons; ++r)
    e.sample("xpra_broker_blocked_displays", label("reason", block_reason_label(static_cast<BlockReason>(r))),
             std::uint64_t{s.blocked[r]});

  e.single("xpra_broker_connections", "gauge", "Client connections open now.", std::uint64_t{s.connections});
  e.single("xpra_broker_connections_accepted_total", "counter", "Client connections accepted.",
           c.connections_accepted);
  e.single("xpra_broker_connections_refused_total", "counter",
           "Client connections refused at once (max-connections-per-user, or the broker's total).",
           c.connections_refused);

  // A labelled counter appears once it has counted something (as with the
  // client libraries): every verb times every status would be 80 series of
  // zeros.
  e.family("xpra_broker_requests_total", "counter",
           "Requests answered, by verb and status (OK, or why not: DENIED, EXHAUSTED, RATE_LIMITED, ...).");
  for (std::size_t v = 0; v < BrokerCounters::kVerbSlots; ++v)
    for (std::size_t st = 0; st < BrokerCounters::kStatusSlots; ++st) {
      const std::uint64_t n = c.requests_by_verb[v][st];
      if (n == 0) continue;
      const auto* field = v1::Request::descriptor()->FindFieldByNumber(static_cast<int>(v));
      const std::string& status = v1::Status_Name(static_cast<v1::Status>(st));
      e.sample("xpra_broker_requests_total",
               label("verb", field ? field->name() : std::to_string(v)) + "," +
                   label("status", status.empty() ? std::to_string(st) : status),
               n);
    }
  e.family("xpra_broker_acquire_refusals_total", "counter",
           "Acquires refused, by reason: user_quota and host_limit (EXHAUSTED), rate_limit and backoff (RATE_LIMITED, "
           "the restart-loop defence), no_free_display (EXHAUSTED), journal (INTERNAL, the journal cannot be "
           "written).");
  for (std::size_t r = 0; r < kAcquireRefusals; ++r)
    e.sample("xpra_broker_acquire_refusals_total", label("reason", acquire_refusal_label(static_cast<AcquireRefusal>(r))),
             c.acquire_refusals[r]);

  e.family("xpra_broker_reaped_processes_total", "counter",
           "Processes of ended leases the broker ended: terminated (by SIGTERM), killed (needed SIGKILL), "
           "unkillable (survived SIGKILL).");
  e.sample("xpra_broker_reaped_processes_total", "outcome=\"terminated\"", c.processes_terminated);
  e.sample("xpra_broker_reaped_processes_total", "outcome=\"killed\"", c.processes_killed);
  e.sample("xpra_broker_reaped_processes_total", "outcome=\"unkillable\"", c.processes_unkillable);
  e.histogram("xpra_broker_reap_duration_seconds",
              "How long ending what ran under a lease took, from the first signal to the display's clean-up.",
              c.reap_duration);
  e.single("xpra_broker_leases_ended_total", "counter", "Leases that ended (released, holder gone, logout, ...).",
           c.leases_ended);
  e.single("xpra_broker_stale_files_removed_total", "counter",
           "Stale X lock files and sockets the broker removed.", c.stale_files_removed);
  e.single("xpra_broker_quarantines_total", "counter",
           "Display numbers quarantined after a confirmed display conflict.", c.quarantines);

  if (s.journal) {
    e.single("xpra_broker_journal_bytes", "gauge", "Size of the lease journal file.", s.journal->bytes);
    e.single("xpra_broker_journal_records", "gauge", "Records in the lease journal file.", s.journal->records);
    e.single("xpra_broker_journal_degraded", "gauge",
             "1 while the lease journal cannot be written (new leases are refused), else 0.",
             std::uint64_t{s.journal->degraded ? 1u : 0u});
    e.single("xpra_broker_journal_owed_records", "gauge",
             "Lease ends and logouts not yet written to the journal (their displays are held).",
             s.journal->owed_records);
  }
  e.histogram("xpra_broker_journal_commit_duration_seconds",
              "Time one group commit of the lease journal took (one write for the requests of one loop turn).",
              c.journal_commit_duration);
  if (s.x_server_census_age_seconds)
    e.single("xpra_broker_x_server_census_age_seconds", "gauge",
             "Age of the X-server census the per-user X server counts come from.", *s.x_server_census_age_seconds);
  e.single("xpra_broker_orphans_seen_total", "counter",
           "Distinct processes the census found outliving the lease they started under (reparented to init).",
           s.orphans_seen_total);

  // Per user: the users blocking the most numbers, then with the most X
  // servers and orphans (then leases) first, as many
  // as fit both the cap and the frame.
  std::vector<const UserMetrics*> users;
  users.reserve(s.users.size());
  for (const auto& u : s.users) users.push_back(&u);
  const auto refused = [](const UserMetrics* u) {
    std::uint64_t n = 0;
    for (const auto c : u->acquire_refusals) n += c;
    return n;
  };
  std::sort(users.begin(), users.end(), [&](const UserMetrics* a, const UserMetrics* b) {
    if (a->blocked_displays != b->blocked_displays) return a->blocked_displays > b->blocked_displays;
    const std::uint64_t a_leaked = std::uint64_t{a->x_servers} + a->orphans;
    const std::uint64_t b_leaked = std::uint64_t{b->x_servers} + b->orphans;
    if (a_leaked != b_leaked) return a_leaked > b_leaked;
    if (refused(a) != refused(b)) return refused(a) > refused(b);
    if (a->leases != b->leases) return a->leases > b->leases;
    return a->uid < b->uid;
  });
  std::uint64_t holding = 0;
  for (const UserMetrics* u : users)
    holding += u->leases > 0 || u->x_servers > 0 || u->orphans > 0 || u->blocked_displays > 0;
  e.single("xpra_broker_users", "gauge",
           "Users with a lease, an X server, orphans of ended leases or a blocked display number on the host.",
           holding);
  // What comes after the user lines: the five families' HELP/TYPE and the
  // truncation gauge, well under 2 KiB.
  constexpr std::size_t kTailReserve = 2048;
  const std::size_t budget =
      kMaxExpositionBytes > e.text().size() + kTailReserve ? kMaxExpositionBytes - e.text().size() - kTailReserve : 0;
  std::vector<std::string> user_labels;
  std::size_t used = 0;
  for (const UserMetrics* u : users) {
    if (user_labels.size() >= kMaxMetricsUsers) break;
    std::string labels = label("user", u->name) + "," + label("uid", std::to_string(u->uid));
    // The gauge lines of this user (two, a third if it has orphans, a fourth
    // if it blocks numbers: names, braces, a value of at most 10 digits) and
    // a refusal line per reason counted (the longer name, a reason label, a
    // value of at most 20 digits).
    const std::size_t gauge_lines = 2 + (u->orphans > 0 ? 1 : 0) + (u->blocked_displays > 0 ? 1 : 0);
    std::size_t refusal_lines = 0;
    for (const auto c : u->acquire_refusals) refusal_lines += c > 0;
    const std::size_t cost = gauge_lines * (labels.size() + 34 + 2 + 1 + 10 + 1) +
                             refusal_lines * (labels.size() + 40 + 2 + 27 + 1 + 20 + 1);
    if (used + cost > budget) break;
    used += cost;
    user_labels.push_back(std::move(labels));
  }
  e.family("xpra_broker_user_leases", "gauge", "Leases a user holds.");
  for (std::size_t i = 0; i < user_labels.size(); ++i)
    e.sample("xpra_broker_user_leases", user_labels[i], std::uint64_t{users[i]->leases});
  e.family("xpra_broker_user_x_servers", "gauge",
           "X servers a user runs on the host, under broker leases or not (the leak watchdog's count).");
  for (std::size_t i = 0; i < user_labels.size(); ++i)
    e.sample("xpra_broker_user_x_servers", user_labels[i], std::uint64_t{users[i]->x_servers});
  e.family("xpra_broker_user_orphan_processes", "gauge",
           "Processes of a user that outlived a lease of theirs: started while it ran, reparented to init after it "
           "ended. Only users with one or more: no series means none.");
  for (std::size_t i = 0; i < user_labels.size(); ++i)
    if (users[i]->orphans > 0)
      e.sample("xpra_broker_user_orphan_processes", user_labels[i], std::uint64_t{users[i]->orphans});
  e.family("xpra_broker_user_blocked_displays", "gauge",
           "Display numbers of the range a user holds outside broker leases (an X server, a socket listener).");
  // Only users who block numbers: a line of zeros for everyone else would
  // cost the frame 20 users' worth of series.
  for (std::size_t i = 0; i < user_labels.size(); ++i)
    if (users[i]->blocked_displays)
      e.sample("xpra_broker_user_blocked_displays", user_labels[i], std::uint64_t{users[i]->blocked_displays});
  // Like xpra_broker_requests_total, a user's reason appears once counted.
  e.family("xpra_broker_user_acquire_refusals_total", "counter",
           "Acquires refused for a user since the broker started, by reason (as in "
           "xpra_broker_acquire_refusals_total): backoff and rate_limit growing for one user is a restart loop.");
  for (std::size_t i = 0; i < user_labels.size(); ++i)
    for (std::size_t r = 0; r < kAcquireRefusals; ++r)
      if (users[i]->acquire_refusals[r] > 0)
        e.sample("xpra_broker_user_acquire_refusals_total",
                 user_labels[i] + "," + label("reason", acquire_refusal_label(static_cast<AcquireRefusal>(r))),
                 users[i]->acquire_refusals[r]);
  e.single("xpra_broker_user_series_truncated", "gauge",
           "1 when users were left out of the per-user series (more than 256, too long names for one frame, or "
           "refusals of more than 4096 users since the start).",
           std::uint64_t{user_labels.size() < users.size() || s.user_refusals_uncounted ? 1u : 0u});
  return std::move(e.text());
}

}  // namespace xpra_broker
