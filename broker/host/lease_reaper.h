// Ends what ran under a lease: every process of the lease's uid that the
// holder reported, or that shares a reported process's group or session (when
// that process leads it), or descends from one, plus the lease's X server
// named by the display's lock file when the lock is evidence no other user
// could forge (lock_names_lease_x_server() in host_display.h). TERM, a grace period, KILL; then the display's
// stale sockets and lock are removed. Only then does the display go back to
// the pool.
//
// cgroup v2 with a delegated subtree would catch even double-forked daemons;
// hosts with a hybrid hierarchy and an unprivileged broker do not offer one,
// so this is the portable fallback (see docs/lifecycle.md).
#pragma once

#include <sys/types.h>

#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <chrono>
#include <functional>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "host/display_probe.h"
#include "host/orphan_watch.h"
#include "core/lease_table.h"
#include "host/process_inspector.h"
#include "host/stale_artifact_cleaner.h"
#include "unique_fd.h"

namespace xpra_broker {

class LeaseReaper {
 public:
  virtual ~LeaseReaper() = default;
  // Starts reaping; `done` runs later, never from inside reap().
  virtual void reap(ReapJob job, std::function<void(ReapOutcome)> done) = 0;
  // True when reap() would find nothing to end and nothing to clean, so the
  // caller may finish the lease at once. The default: always reap.
  virtual bool nothing_to_reap(const ReapJob&) const { return false; }
};

// Which host processes belong to a lease. Pure, over a /proc snapshot:
// `chosen_before` (taken in an earlier scan of the same reap) count as
// reported processes whose descendants are the lease's too.
std::vector<pid_t> select_lease_processes(const std::vector<ProcessInfo>& snapshot, uid_t uid,
                                          const std::vector<TrackedProcess>& tracked,
                                          const std::set<pid_t>& chosen_before = {});

class AsioLeaseReaper : public LeaseReaper {
 public:
  // `probe`: lets nothing_to_reap() ask the probe's name watch about the X
  // lock instead of the filesystem. `orphans`: told the time window of each
  // reaped lease, so the census can count what outlived it.
  AsioLeaseReaper(boost::asio::io_context& io, StaleArtifactCleaner& cleaner, std::string x11_tmp_dir,
                  std::chrono::milliseconds grace, const DisplayProbe* probe = nullptr,
                  OrphanWatch* orphans = nullptr);
  void reap(ReapJob job, std::function<void(ReapOutcome)> done) override;
  // No process reported and no X lock file on the display: the same test
  // that makes reap() skip the /proc scan and the cleaner.
  bool nothing_to_reap(const ReapJob& job) const override;

 private:
  struct Run;
  void collect_and_terminate(Run& run);
  std::size_t take_new_descendants(Run& run);
  std::size_t take_and_signal_new_descendants(Run& run);
  void terminate_from(Run& run, std::size_t first);
  // Signals only a process that is still the lease user's (real, effective
  // and saved uid); false (logged) if it is not.
  bool signal_if_still_owned(Run& run, pid_t pid, int pidfd, int signo);
  void poll(std::shared_ptr<Run> run);
  void finish(std::shared_ptr<Run> run);

  boost::asio::io_context& io_;
  StaleArtifactCleaner& cleaner_;
  std::string x11_tmp_dir_;
  std::chrono::milliseconds grace_;
  const DisplayProbe* probe_;
  OrphanWatch* orphans_;
};

}  // namespace xpra_broker
