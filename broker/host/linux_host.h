// The lease core's host (core/broker_host.h) on the real machine: the probe
// of /tmp and the Xpra socket dirs, the per-user directories, /proc and
// pidfds, the reaper, the X-server census, and the log (spdlog, with the
// journald fields of log_sink.h). Every system call the core's decisions
// lead to is made here or below, never in the core.
#pragma once

#include <functional>
#include <memory>
#include <unordered_map>
#include <vector>

#include "core/broker_host.h"
#include "host/display_probe.h"
#include "host/lease_reaper.h"
#include "host/stale_artifact_cleaner.h"
#include "host/user_directories.h"
#include "host/x_server_census.h"

namespace xpra_broker {

class LinuxHost final : public BrokerHost {
 public:
  using SteadyClock = std::function<SteadyTime()>;

  // What the host is made of, complete at construction (daemon/assembly.h).
  struct Parts {
    std::unique_ptr<DisplayProbe> probe;
    std::unique_ptr<UserDirectories> user_dirs;
    SteadyClock clock = std::chrono::steady_clock::now;
    // Who reaps a lease's processes and cleans stale artifacts. Without a
    // reaper a lease ends at once (nothing_to_reap() is true).
    LeaseReaper* reaper = nullptr;
    StaleArtifactCleaner* cleaner = nullptr;
    // Where X-server counts come from: a census taken off the event loop.
    // Without one, /proc is walked on the spot.
    const XServerCensus* census = nullptr;
    // Where else Xpra looks for display sockets (the runtime dir, per-user
    // dirs), for `status` next to the probe's shared Xpra dirs.
    std::vector<XpraDirReport> xpra_dir_notes;
  };
  explicit LinuxHost(Parts parts);

  const DisplayProbe& probe() const { return *probe_; }

  SteadyTime now() override { return clock_(); }
  WallTime wall_now() override { return std::chrono::system_clock::now(); }
  std::string random_id() override;
  std::string user_name(uid_t uid) override;
  UserDir prepare_user_dir(uid_t uid) override;
  void request_started() override { probe_->begin_request(); }
  void request_finished() override { probe_->end_request(); }
  DisplayVerdict examine_display(std::uint32_t display, const std::string& user_dir) override;
  std::vector<RemovedArtifact> clean_display(std::uint32_t display, const std::string& user_dir) override;
  std::optional<ConflictEvidence> confirm_conflict(std::uint32_t display, const std::string& user_dir,
                                                   uid_t reporter) override;
  std::optional<ProcessFacts> open_process(pid_t pid) override;
  bool process_alive(pid_t pid) override;
  std::shared_ptr<const XServerSnapshot> x_servers() override;
  void reap(ReapJob job, std::function<void(ReapOutcome)> done) override;
  bool nothing_to_reap(const ReapJob& job) override;
  HostReport report() override;
  RuntimeSpace runtime_space(std::optional<uid_t> only_uid) override;
  bool wants_log(LogLevel level) override;
  void log(const LogLine& line) override;

 private:
  std::unique_ptr<DisplayProbe> probe_;
  std::unique_ptr<UserDirectories> user_dirs_;
  SteadyClock clock_;
  LeaseReaper* reaper_ = nullptr;
  StaleArtifactCleaner* cleaner_ = nullptr;
  const XServerCensus* census_ = nullptr;
  std::vector<XpraDirReport> xpra_dir_notes_;
  std::unordered_map<uid_t, std::string> user_names_;
};

}  // namespace xpra_broker
