#include "host/log_sink.h"

#include <sys/stat.h>
#include <sys/uio.h>
#include <systemd/sd-journal.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <mutex>

#include <spdlog/sinks/base_sink.h>
#include <spdlog/spdlog.h>

namespace xpra_broker {

namespace {

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

spdlog::level::level_enum spdlog_level(LogLevel level) {
  static constexpr spdlog::level::level_enum kLevels[] = {spdlog::level::debug, spdlog::level::info,
                                                          spdlog::level::warn, spdlog::level::err};
  return kLevels[static_cast<int>(level)];
}

class JournalSink final : public spdlog::sinks::base_sink<std::mutex>, public LogEventSink {
 public:
  void write_event(const LogLine& line, std::string_view text) override {
    std::lock_guard<std::mutex> lock(mutex_);
    send(spdlog_level(line.level), text, journal_fields(line));
  }

 protected:
  void sink_it_(const spdlog::details::log_msg& msg) override {
    send(msg.level, std::string_view(msg.payload.data(), msg.payload.size()), {});
  }
  void flush_() override {}

 private:
  static void send(spdlog::level::level_enum level, std::string_view text,
                   const std::vector<std::pair<std::string, std::string>>& extra) {
    std::vector<std::string> fields;
    fields.push_back("MESSAGE=" + std::string(text));
    fields.push_back("PRIORITY=" + std::to_string(priority_of(level)));
    fields.push_back("SYSLOG_IDENTIFIER=xpra-brokerd");
    for (const auto& [key, value] : extra) fields.push_back(key + "=" + value);
    std::vector<iovec> iov;
    for (auto& f : fields) iov.push_back({f.data(), f.size()});
    if (sd_journal_sendv(iov.data(), static_cast<int>(iov.size())) < 0) {
      // The journal is gone (stopped, restarting): the line is not lost.
      std::fprintf(stderr, "<%d>%.*s\n", priority_of(level), static_cast<int>(text.size()), text.data());
    }
  }
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

std::vector<std::pair<std::string, std::string>> journal_fields(const LogLine& line) {
  const LogSubject& s = line.subject;
  std::vector<std::pair<std::string, std::string>> out;
  if (!s.lease.empty()) out.emplace_back("LEASE", s.lease);
  if (s.display) out.emplace_back("DISPLAY", std::to_string(s.display));
  if (s.uid) out.emplace_back("LEASE_UID", std::to_string(*s.uid));
  if (s.uid && !s.user.empty()) out.emplace_back("LEASE_USER", s.user);
  if (s.pid) out.emplace_back("CLIENT_PID", std::to_string(s.pid));
  if (const char* id = message_id(line.event)) out.emplace_back("MESSAGE_ID", id);
  return out;
}

bool log_level_wanted(LogLevel level) { return spdlog::should_log(spdlog_level(level)); }

void write_log_event(const LogLine& line) {
  spdlog::logger* logger = spdlog::default_logger_raw();
  const auto level = spdlog_level(line.level);
  if (!logger || !logger->should_log(level)) return;
  const std::string text = format_log_line(line);
  const spdlog::details::log_msg msg(logger->name(), level, text);
  for (const auto& sink : logger->sinks()) {
    if (!sink->should_log(level)) continue;
    if (auto* events = dynamic_cast<LogEventSink*>(sink.get()))
      events->write_event(line, text);
    else
      sink->log(msg);
  }
  if (level >= logger->flush_level()) logger->flush();
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
