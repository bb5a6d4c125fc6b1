// The short request/response commands: list, release, status, metrics.
#pragma once

#include <sys/types.h>

#include <string>
#include <string_view>
#include <vector>

#include "broker_call.h"

namespace xpra_broker::client {

struct ListOptions {
  bool all = false;     // everyone's leases (root, admin-groups)
  bool json = false;    // --json, -o json
  bool legend = true;   // --no-legend: rows only, for scripts
};
int run_list(const GlobalOptions& options, const ListOptions& list);
// Ends one lease (LEASE_ID or :N), or with `user` every lease of that user
// (root and admin-groups, as `loginctl terminate-user` for sessions).
int run_release(const GlobalOptions& options, const std::string& target, const std::string& user);
int run_status(const GlobalOptions& options, bool json);
// The broker's metrics (Prometheus text format) on stdout, or written to
// `output` atomically for node-exporter's textfile collector.
int run_metrics(const GlobalOptions& options, const std::string& output);

// Replaces `path` with `content` so that a reader sees the old file or the
// new one, never a part: a temporary file in the same directory (a hidden
// name without the .prom ending, which the textfile collector skips) gets
// `mode` and the content, then is renamed over `path`. Returns an empty
// string on success, else what failed (the temporary file is removed).
// Rows as columns as wide as their widest cell (the header's included), two
// spaces apart, the last column unpadded; without the header when !legend.
std::string format_table(const std::vector<std::vector<std::string>>& rows, bool legend);

std::string write_file_atomically(const std::string& path, std::string_view content, mode_t mode);

}  // namespace xpra_broker::client
