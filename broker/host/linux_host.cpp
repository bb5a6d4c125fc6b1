#include "host/linux_host.h"

#include <pwd.h>
#include <sys/random.h>

#include <spdlog/spdlog.h>
#include <cerrno>
#include <cstdlib>
#include <cstring>

#include "host/display_verdict.h"
#include "host/host_display.h"
#include "host/log_sink.h"
#include "host/process_inspector.h"
#include "host/runtime_space.h"

namespace xpra_broker {

LinuxHost::LinuxHost(Parts parts)
    : probe_(std::move(parts.probe)),
      user_dirs_(std::move(parts.user_dirs)),
      clock_(std::move(parts.clock)),
      reaper_(parts.reaper),
      cleaner_(parts.cleaner),
      census_(parts.census),
      xpra_dir_notes_(std::move(parts.xpra_dir_notes)) {}

std::string LinuxHost::random_id() {
  // Drawn from a buffer refilled 32 ids at a time: one getrandom() call per
  // 32 ids instead of one each. Single-threaded use only.
  static std::uint8_t pool[256];
  static std::size_t used = sizeof(pool);
  if (used + 8 > sizeof(pool)) {
    // 256 bytes from a seeded pool: getrandom() returns them whole. If the
    // kernel ever did not, no id could be trusted: stop rather than hand
    // out guessable reattach tokens (no exception crosses the event loop).
    if (::getrandom(pool, sizeof(pool), 0) != static_cast<ssize_t>(sizeof(pool))) {
      spdlog::critical("getrandom failed: {}; stopping", std::strerror(errno));
      std::abort();
    }
    used = 0;
  }
  const std::uint8_t* bytes = pool + used;
  used += 8;
  static const char hex[] = "0123456789abcdef";
  std::string id;
  for (int i = 0; i < 8; ++i) {
    id.push_back(hex[bytes[i] >> 4]);
    id.push_back(hex[bytes[i] & 15]);
  }
  return id;
}

std::string LinuxHost::user_name(uid_t uid) {
  if (auto it = user_names_.find(uid); it != user_names_.end()) return it->second;
  std::string name = std::to_string(uid);
  passwd pw{};
  passwd* found = nullptr;
  char buf[4096];
  if (::getpwuid_r(uid, &pw, buf, sizeof(buf), &found) == 0 && found) name = found->pw_name;
  // Bounded: one entry per uid that ever connected.
  if (user_names_.size() < 65536) user_names_.emplace(uid, name);
  return name;
}

BrokerHost::UserDir LinuxHost::prepare_user_dir(uid_t uid) {
  // Checked (and repaired) unless the probe's watch has seen nothing change
  // on it since the last check.
  const std::string path = user_dirs_->path_for(uid);
  if (probe_->user_dir_intact(path)) return {true, path, {}};
  const auto dir = user_dirs_->ensure(uid);
  if (dir.ok) probe_->user_dir_verified(dir.path);
  return {dir.ok, dir.path, dir.error};
}

DisplayVerdict LinuxHost::examine_display(std::uint32_t display, const std::string& user_dir) {
  return classify_display(probe_->probe(display, user_dir));
}

std::vector<RemovedArtifact> LinuxHost::clean_display(std::uint32_t display, const std::string& user_dir) {
  if (!cleaner_) return {};
  return cleaner_->clean_display(display, user_dir);
}

std::optional<ConflictEvidence> LinuxHost::confirm_conflict(std::uint32_t display, const std::string& user_dir,
                                                            uid_t reporter) {
  auto evidence = conflict_with_another_owner(probe_->probe(display, user_dir), reporter);
  // An abstract socket does not say whose it is: the reporter's own X server
  // on the display explains it.
  if (evidence && evidence->owner_unknown && user_runs_x_server_for(reporter, display)) return std::nullopt;
  return evidence;
}

std::optional<ProcessFacts> LinuxHost::open_process(pid_t pid) {
  ProcessInfo info;
  UniqueFd pidfd = open_verified_pidfd(pid, info);
  if (!pidfd) return std::nullopt;
  return ProcessFacts{info.pid,
                      info.uid,
                      info.pgid,
                      info.sid,
                      info.start_time,
                      info.comm,
                      std::make_shared<ProcessHandle>(ProcessHandle{std::move(pidfd)})};
}

bool LinuxHost::process_alive(pid_t pid) { return pid_alive(pid); }

std::shared_ptr<const XServerSnapshot> LinuxHost::x_servers() {
  if (census_) return census_->latest();
  return std::make_shared<const XServerSnapshot>(count_x_servers());
}

void LinuxHost::reap(ReapJob job, std::function<void(ReapOutcome)> done) {
  if (!reaper_) return done({});
  reaper_->reap(std::move(job), std::move(done));
}

bool LinuxHost::nothing_to_reap(const ReapJob& job) { return !reaper_ || reaper_->nothing_to_reap(job); }

HostReport LinuxHost::report() {
  HostReport r{probe_->hostname(), probe_->watched_directories(), probe_->watch_rescans(), probe_->xpra_dir_reports()};
  r.xpra_socket_dirs.insert(r.xpra_socket_dirs.end(), xpra_dir_notes_.begin(), xpra_dir_notes_.end());
  r.watch_wakeups = probe_->watch_wakeups();
  r.watch_events = probe_->watch_activity().events;
  r.watch_display_name_events = probe_->watch_activity().display_name_events;
  return r;
}

RuntimeSpace LinuxHost::runtime_space(std::optional<uid_t> only_uid) {
  RuntimeSpace space = survey_runtime_space(user_dirs_->runtime_dir_fd(), only_uid);
  space.path = user_dirs_->runtime_dir_path();
  return space;
}

bool LinuxHost::wants_log(LogLevel level) { return log_level_wanted(level); }
#include "host/runtime_space.h"

void LinuxHost::log(const LogLine& line) { write_log_event(line); }

}  // namespace xpra_broker
