#include "log_sink.h"

#include <sys/stat.h>
#include <sys/uio.h>
#include <systemd/sd-journal.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <mutex>

#include <spdlog/sinks/base_sink.h>

namespace xpra_broker {

namespace {

thread_local LogEvent current_event = LogEvent::none;

bool is_digit(char c) { return c >= '0' && c <= '9'; }
bool is_hex(char c) { return is_digit(c) || (c >= 'a' && c <= 'f'); }

// The token after `key` at a word start, made of chars `ok` accepts.
template <typename Accept>
std::string_view token_after(std::string_view text, std::string_view key, Accept ok, std::size_t* end = nullptr) {
  for (std::size_t at = text.find(key); at != std::string_view::npos; at = text.find(key, at + 1)) {
    if (at > 0 && text[at - 1] != ' ' && text[at - 1] != '(' && text[at - 1] != ',') continue;
    std::size_t i = at + key.size();
    const std::size_t start = i;
    while (i < text.size() && ok(text[i])) ++i;
    if (i == start) continue;
    if (end) *end = i;
    return text.substr(start, i - start);
  }
  return {};
}

int priority_of(spdlog::level::level_enum level) {
  switch (level) {
    case spdlog::level::trace:
    case spdlog::level::debug: return LOG_DEBUG;
    case spdlog::level::info: return LOG_INFO;
    case spdlog::level::warn: return LOG_WARNING;
    case spdlog::level::err: return LOG_ERR;
    case spdlog::level::critical: return LOG_CRIT;
    default: return LOG_INFO;
  }
}

class JournalSink final : public spdlog::sinks::base_sink<std::mutex> {
 protected:
  void sink_it_(const spdlog::details::log_msg& msg) override {
    const std::string_view text(msg.payload.data(), msg.payload.size());
    std::vector<std::string> fields;
    fields.push_back("MESSAGE=" + std::string(text));
    fields.push_back("PRIORITY=" + std::to_string(priority_of(msg.level)));
    fields.push_back("SYSLOG_IDENTIFIER=xpra-brokerd");
    for (const auto& [key, value] : journal_fields(text)) fields.push_back(key + "=" + value);
    if (const char* id = message_id(current_log_event())) fields.push_back(std::string("MESSAGE_ID=") + id);
    std::vector<iovec> iov;
    for (auto& f : fields) iov.push_back({f.data(), f.size()});
    if (sd_journal_sendv(iov.data(), static_cast<int>(iov.size())) < 0) {
      // The journal is gone (stopped, restarting): the line is not lost.
      std::fprintf(stderr, "<%d>%.*s\n", priority_of(msg.level), static_cast<int>(text.size()), text.data());
    }
  }
  void flush_() override {}
};

}  // namespace

const char* message_id(LogEvent event) {
  switch (event) {
    case LogEvent::leak_watchdog: return "101f2d832e264fb78ec361cb4e0fe62c";
    case LogEvent::quarantine: return "f0b6e022bf60403291ef3d86551a7d91";
    case LogEvent::backoff: return "15198fca3a47494694560cd367a24c94";
    case LogEvent::reaped_with_survivors: return "187adf223a3e465086bb5f78555ea5e4";
    case LogEvent::journal_degraded: return "4b6b2ae16ad942e68f1ee5ac739380f8";
    case LogEvent::orphans_outlived_lease: return "d3ff49d1f32f4172939088381a06f023";
    case LogEvent::none: break;
  }
  return nullptr;
}

ScopedLogEvent::ScopedLogEvent(LogEvent event) : previous_(current_event) { current_event = event; }
ScopedLogEvent::~ScopedLogEvent() { current_event = previous_; }
LogEvent current_log_event() { return current_event; }

std::vector<std::pair<std::string, std::string>> journal_fields(std::string_view message) {
  std::vector<std::pair<std::string, std::string>> out;
  // Text a client or another user chose is logged in quotes, after the
  // broker's own tokens: nothing from the first quote on is read, so such
  // text cannot pose as a field.
  message = message.substr(0, message.find('"'));
  if (auto lease = token_after(message, "lease=", is_hex); !lease.empty()) out.emplace_back("LEASE", lease);
  if (auto display = token_after(message, "display=:", is_digit); !display.empty())
    out.emplace_back("DISPLAY", display);
  std::size_t end = 0;
  if (auto uid = token_after(message, "uid=", is_digit, &end); !uid.empty()) {
    out.emplace_back("LEASE_UID", uid);
    // "uid=1001(alice)": the name the broker looked up, never client text.
    if (end < message.size() && message[end] == '(') {
      const auto close = message.find(')', end);
      if (close != std::string_view::npos && close > end + 1 && close - end <= 33)
        out.emplace_back("LEASE_USER", message.substr(end + 1, close - end - 1));
    }
  }
  return out;
}

std::shared_ptr<spdlog::sinks::sink> make_journal_sink() { return std::make_shared<JournalSink>(); }

bool stderr_is_journal() {
  const char* stream = std::getenv("JOURNAL_STREAM");
  if (!stream) return false;
  unsigned long long dev = 0, ino = 0;
  if (std::sscanf(stream, "%llu:%llu", &dev, &ino) != 2) return false;
  struct stat st {};
  return ::fstat(STDERR_FILENO, &st) == 0 && st.st_dev == dev && st.st_ino == ino;
}

}  // namespace xpra_broker
