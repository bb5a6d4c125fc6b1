// Logging to journald with real priorities and fields an admin can filter on
// (journalctl -p warning, journalctl LEASE=..., DISPLAY=..., LEASE_USER=...),
// and a MESSAGE_ID on the events an admin alerts on.
//
// The broker's log lines follow one convention: "lease=<id>", "uid=<n>(<name>)"
// and "display=:<n>" name what a line is about. The journal sink reads those
// tokens back as fields, so every existing line gets them without a second
// way of logging. Text a client or another user chose (a lease id it sent,
// a purpose, an X server's words) is escaped (untrusted_text.h) and logged in
// double quotes after the broker's own tokens; fields are read only before
// the first quote, so such text cannot pose as a field.
#pragma once

#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <spdlog/sinks/sink.h>

#include "broker_host.h"  // LogEvent

namespace xpra_broker {

// The events with a MESSAGE_ID (journalctl MESSAGE_ID=...; ids in
// docs/deployment.md). Set for the next line this thread logs.
const char* message_id(LogEvent event);

class ScopedLogEvent {
 public:
  explicit ScopedLogEvent(LogEvent event);
  ~ScopedLogEvent();
  ScopedLogEvent(const ScopedLogEvent&) = delete;
  ScopedLogEvent& operator=(const ScopedLogEvent&) = delete;

 private:
  LogEvent previous_;
};
LogEvent current_log_event();

// The journal fields a message names: LEASE, DISPLAY, LEASE_UID, LEASE_USER
// (the first of each). Pure; exposed for tests.
std::vector<std::pair<std::string, std::string>> journal_fields(std::string_view message);

// A sink that writes each line to journald (sd_journal_sendv) with PRIORITY,
// SYSLOG_IDENTIFIER, the fields above and MESSAGE_ID.
std::shared_ptr<spdlog::sinks::sink> make_journal_sink();

// Is stderr connected to the journal (systemd's JOURNAL_STREAM names its
// device and inode)? Then plain lines would all land at one priority.
bool stderr_is_journal();

}  // namespace xpra_broker
