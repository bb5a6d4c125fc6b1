// The log sinks (log_sink.h): an event's journal fields come from the event
// itself, never from its text; a text sink gets the line the core's
// format_log_line() makes; each MESSAGE_ID has its entry in the journald
// catalog the package installs.
#include "host/log_sink.h"

#include <gtest/gtest.h>

#include <fstream>
#include <mutex>
#include <memory>
#include <regex>
#include <set>
#include <sstream>

#include <spdlog/sinks/base_sink.h>
#include <spdlog/sinks/ostream_sink.h>
#include <spdlog/spdlog.h>

namespace xpra_broker {
namespace {

using Fields = std::vector<std::pair<std::string, std::string>>;

constexpr LogEvent kAlertable[] = {LogEvent::leak_watchdog,         LogEvent::quarantine,
                                   LogEvent::backoff,               LogEvent::reaped_with_survivors,
                                   LogEvent::journal_degraded,      LogEvent::orphans_outlived_lease};

LogLine lease_line(std::string text, LogEvent event = LogEvent::none) {
  return {LogLevel::warn, event, {"0f21a833c99a2436", 1001, "xpb-alice", 31000, 700}, std::move(text)};
}

TEST(JournalFieldsTest, ALeaseEventNamesItsLeaseDisplayUserAndClient) {
  EXPECT_EQ(journal_fields(lease_line("acquired")),
            (Fields{{"LEASE", "0f21a833c99a2436"},
                    {"DISPLAY", "700"},
                    {"LEASE_UID", "1001"},
                    {"LEASE_USER", "xpb-alice"},
                    {"CLIENT_PID", "31000"}}));
}

TEST(JournalFieldsTest, OnlyWhatTheEventKnows) {
  EXPECT_EQ(journal_fields({LogLevel::info, LogEvent::none, {"ab", 1001, "", 0, 5}, "from the journal"}),
            (Fields{{"LEASE", "ab"}, {"DISPLAY", "5"}, {"LEASE_UID", "1001"}}));
  EXPECT_TRUE(journal_fields({LogLevel::info, LogEvent::none, {}, "xpra-brokerd serving"}).empty());
  EXPECT_EQ(journal_fields({LogLevel::info, LogEvent::none, {{}, 0, "root", 0, 0}, "x"}),
            (Fields{{"LEASE_UID", "0"}, {"LEASE_USER", "root"}}))
      << "uid 0 is a uid";
}

TEST(JournalFieldsTest, TextCannotPoseAsAField) {
  // A purpose, a lease id a client sent, an X server's words: only text.
  EXPECT_EQ(journal_fields(lease_line("acquired purpose=\"x uid=0(root) display=:1 lease=ffff\"")),
            journal_fields(lease_line("acquired")));
  EXPECT_TRUE(journal_fields({LogLevel::warn, LogEvent::none, {}, "lease=ff display=:1 uid=0(root)"}).empty());
}

TEST(JournalFieldsTest, EachAlertableEventHasItsOwnMessageId) {
  std::set<std::string> ids;
  for (auto e : kAlertable) {
    ASSERT_NE(message_id(e), nullptr);
    EXPECT_EQ(std::string(message_id(e)).size(), 32u);
    EXPECT_TRUE(ids.insert(message_id(e)).second);
    const auto fields = journal_fields(lease_line("x", e));
    EXPECT_EQ(fields.back(), (std::pair<std::string, std::string>{"MESSAGE_ID", message_id(e)}));
  }
  EXPECT_EQ(message_id(LogEvent::none), nullptr);
  for (const auto& [key, value] : journal_fields(lease_line("x"))) EXPECT_NE(key, "MESSAGE_ID");
}

TEST(JournalCatalogTest, KeysOnTheSameMessageIds) {
  std::ifstream in(XPRA_BROKER_JOURNAL_CATALOG);
  ASSERT_TRUE(in) << XPRA_BROKER_JOURNAL_CATALOG;
  std::set<std::string> catalog;
  const std::regex entry("^-- ([0-9a-f]{32})$");
  for (std::string line; std::getline(in, line);)
    if (std::smatch m; std::regex_match(line, m, entry)) catalog.insert(m[1]);
  std::set<std::string> code;
  for (auto e : kAlertable) code.insert(message_id(e));
  EXPECT_EQ(catalog, code) << "every MESSAGE_ID the broker writes is explained by `journalctl -x`, and only those";
}

// Records the events it is handed whole, as the journal sink is.
class RecordingEventSink final : public spdlog::sinks::base_sink<std::mutex>, public LogEventSink {
 public:
  void write_event(const LogLine& line, std::string_view text) override {
    events.push_back(line);
    texts.emplace_back(text);
  }
  std::vector<LogLine> events;
  std::vector<std::string> texts;
  std::vector<std::string> plain;

 protected:
  void sink_it_(const spdlog::details::log_msg& msg) override { plain.emplace_back(msg.payload.data(), msg.payload.size()); }
  void flush_() override {}
};

// A default logger of the test's own for one test; the old one back after.
class LogSinkDispatchTest : public ::testing::Test {
 protected:
  void SetUp() override {
    previous_ = spdlog::default_logger();
    text_sink_ = std::make_shared<spdlog::sinks::ostream_sink_mt>(text_);
    event_sink_ = std::make_shared<RecordingEventSink>();
    auto logger = std::make_shared<spdlog::logger>("log-sink-test", spdlog::sinks_init_list{text_sink_, event_sink_});
    logger->set_pattern("%l: %v");
    logger->set_level(spdlog::level::info);
    spdlog::set_default_logger(logger);
  }
  void TearDown() override { spdlog::set_default_logger(previous_); }

  std::shared_ptr<spdlog::logger> previous_;
  std::ostringstream text_;
  std::shared_ptr<spdlog::sinks::ostream_sink_mt> text_sink_;
  std::shared_ptr<RecordingEventSink> event_sink_;
};

TEST_F(LogSinkDispatchTest, AnEventReachesAnEventSinkWholeAndATextSinkAsTheCoresLine) {
  write_log_event(lease_line("pid 4242 ignored SIGTERM for 3000 ms; sending SIGKILL", LogEvent::quarantine));
  EXPECT_EQ(text_.str(),
            "warning: lease=0f21a833c99a2436 uid=1001(xpb-alice) pid=31000 display=:700 pid 4242 ignored SIGTERM for "
            "3000 ms; sending SIGKILL\n");
  ASSERT_EQ(event_sink_->events.size(), 1u);
  EXPECT_EQ(event_sink_->events[0].event, LogEvent::quarantine);
  EXPECT_EQ(event_sink_->events[0].subject.user, "xpb-alice");
  EXPECT_EQ(event_sink_->texts[0], format_log_line(event_sink_->events[0]));
  EXPECT_TRUE(event_sink_->plain.empty()) << "an event is not also written as a plain line";
}

TEST_F(LogSinkDispatchTest, LevelsBelowTheLoggersAreNotWrittenAnywhere) {
  EXPECT_FALSE(log_level_wanted(LogLevel::debug));
  EXPECT_TRUE(log_level_wanted(LogLevel::info));
  write_log_event({LogLevel::debug, LogEvent::none, {"ab", 1001, "a", 0, 5}, "probe"});
  EXPECT_EQ(text_.str(), "");
  EXPECT_TRUE(event_sink_->events.empty());
}

TEST_F(LogSinkDispatchTest, PlainLinesStayPlainAndAUidWithoutANameIsWrittenBare) {
  spdlog::info("xpra-brokerd serving");
  write_log_event({LogLevel::info, LogEvent::none, {"ab", 1001, "", 0, 5}, "X lock names pid 9"});
  EXPECT_EQ(text_.str(), "info: xpra-brokerd serving\ninfo: lease=ab uid=1001 display=:5 X lock names pid 9\n");
  EXPECT_EQ(event_sink_->plain, std::vector<std::string>{"xpra-brokerd serving"});
  ASSERT_EQ(event_sink_->events.size(), 1u);
}

}  // namespace
}  // namespace xpra_broker
