// The short request/response commands: list, release, status, metrics.
#pragma once

#include <sys/types.h>

#include <string>
#include <string_view>

#include "broker_call.h"

namespace xpra_broker::client {

int run_list(const GlobalOptions& options, bool all, bool json);
int run_release(const GlobalOptions& options, const std::string& target);
int run_status(const GlobalOptions& options, bool json);
// The broker's metrics (Prometheus text format) on stdout, or written to
// `output` atomically for node-exporter's textfile collector.
int run_metrics(const GlobalOptions& options, const std::string& output);

// Replaces `path` with `content` so that a reader sees the old file or the
// new one, never a part: a temporary file in the same directory (a hidden
// name without the .prom ending, which the textfile collector skips) gets
// `mode` and the content, then is renamed over `path`. Returns an empty
// string on success, else what failed (the temporary file is removed).
std::string write_file_atomically(const std::string& path, std::string_view content, mode_t mode);

}  // namespace xpra_broker::client
