// The broker's log sinks. A line about a lease or a user is an event, a
// LogLine (broker_host.h: level, event, lease, uid, user, pid, display,
// text), from the core (BrokerHost::log), the reaper, durable and the server
// alike, and stays one until a sink writes it:
//
// - the journal sink writes its fields as journal fields an admin can filter
//   on (journalctl LEASE=..., DISPLAY=..., LEASE_USER=..., -p warning) and,
//   on the events an admin alerts on, a MESSAGE_ID (the catalog in
//   packaging/journald/xpra-broker.catalog explains each);
// - any other sink (stderr, a test's stream) gets the line's text,
//   format_log_line(): "lease=<id> uid=<n>(<name>) pid=<n> display=:<n> <text>".
//
// Nothing is read back out of text: what a client or another user chose (a
// purpose, an X server's words) stays in the text, and fields come from the
// event alone. Lines about nothing in particular (start-up, reload) are
// plain spdlog lines: MESSAGE and PRIORITY only.
#pragma once

#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <spdlog/sinks/sink.h>

#include "core/broker_host.h"  // LogLine, LogEvent

namespace xpra_broker {

// The events with a MESSAGE_ID (journalctl MESSAGE_ID=...; ids in
// docs/deployment.md and the journald catalog); nullptr for LogEvent::none.
const char* message_id(LogEvent event);

// The journal fields of an event beyond MESSAGE and PRIORITY: LEASE,
// DISPLAY, LEASE_UID, LEASE_USER, CLIENT_PID and MESSAGE_ID, each only when
// the event has it. Pure; exposed for tests.
std::vector<std::pair<std::string, std::string>> journal_fields(const LogLine& line);

// A sink that takes events whole; others get their text.
class LogEventSink {
 public:
  virtual ~LogEventSink() = default;
  // `text` is format_log_line(line), made once for all sinks.
  virtual void write_event(const LogLine& line, std::string_view text) = 0;
};

// Would an event of this level be written at all? (Then its text is made.)
bool log_level_wanted(LogLevel level);

// Writes an event to the sinks of spdlog's default logger, if its level is
// logged: whole to a LogEventSink, as text to any other.
void write_log_event(const LogLine& line);

// A sink that writes each line to journald (sd_journal_sendv) with PRIORITY,
// SYSLOG_IDENTIFIER and, for an event, the fields above.
std::shared_ptr<spdlog::sinks::sink> make_journal_sink();

// Is stderr connected to the journal (systemd's JOURNAL_STREAM names its
// device and inode)? Then plain lines would all land at one priority.
bool stderr_is_journal();

}  // namespace xpra_broker
