#include "host/lease_reaper.h"

#include <fcntl.h>
#include <signal.h>
#include <unistd.h>

#include <boost/asio/post.hpp>
#include <ctime>
#include <set>
#include <spdlog/fmt/fmt.h>
#include <unordered_map>

#include "host/display_probe.h"
#include "host/log_sink.h"
#include "host/host_display.h"
#include "host/privileged_ops.h"
#include "host/process_inspector.h"

namespace xpra_broker {

using Clock = std::chrono::steady_clock;

std::vector<pid_t> select_lease_processes(const std::vector<ProcessInfo>& snapshot, uid_t uid,
                                          const std::vector<TrackedProcess>& tracked, const std::set<pid_t>& chosen_before) {
  std::set<pid_t> roots(chosen_before), groups, sessions;
  for (const auto& t : tracked) {
    roots.insert(t.pid);
    if (t.group_leader > 0) groups.insert(t.group_leader);
    if (t.session_leader > 0) sessions.insert(t.session_leader);
  }

  std::set<pid_t> chosen;
  for (const auto& p : snapshot) {
    if (p.uid != uid) continue;  // never another user's process
    if (roots.count(p.pid) || groups.count(p.pgid) || sessions.count(p.sid)) chosen.insert(p.pid);
  }
  // Descendants of anything chosen (a fixed point over the parent links).
  std::unordered_multimap<pid_t, pid_t> children;
  for (const auto& p : snapshot)
    if (p.uid == uid) children.emplace(p.ppid, p.pid);
  std::vector<pid_t> stack(chosen.begin(), chosen.end());
  while (!stack.empty()) {
    const pid_t parent = stack.back();
    stack.pop_back();
    auto range = children.equal_range(parent);
    for (auto it = range.first; it != range.second; ++it)
      if (chosen.insert(it->second).second) stack.push_back(it->second);
  }
  return {chosen.begin(), chosen.end()};
}

struct AsioLeaseReaper::Run {
  ReapJob job;
  std::function<void(ReapOutcome)> done;
  std::vector<std::pair<pid_t, UniqueFd>> alive;
  std::set<pid_t> chosen;    // every pid taken so far, alive or not
  std::set<pid_t> disowned;  // taken, then found to be another user's: never signalled
  // Boot-time clock ticks (as /proc's starttime) from the oldest reported
  // process to the end of the reap: what started in it is the lease's.
  std::uint64_t window_from = 0;
  Clock::time_point started;
  int polls = 0;
  bool kill_sent = false;
  bool anything_ran = true;
  ReapOutcome outcome;
  boost::asio::steady_timer timer;
  Run(boost::asio::io_context& io) : timer(io) {}
};

AsioLeaseReaper::AsioLeaseReaper(boost::asio::io_context& io, StaleArtifactCleaner& cleaner, std::string x11_tmp_dir,
                                 std::chrono::milliseconds grace, const DisplayProbe* probe, OrphanWatch* orphans)
    : io_(io), cleaner_(cleaner), x11_tmp_dir_(std::move(x11_tmp_dir)), grace_(grace), probe_(probe), orphans_(orphans) {}

namespace {

// A line about the lease being reaped, named as the core names its leases
// (the job carries no user name: "uid=<n>").
void log_about(const ReapJob& job, LogLevel level, std::string text) {
  write_log_event(LogLine{level, LogEvent::none, {job.lease_id, job.uid, {}, 0, job.display}, std::move(text)});
}

// The display's X lock file, read without following a link.
LockFacts read_display_lock(const std::string& x11_tmp_dir, std::uint32_t display) {
  const UniqueFd dir(::open(x11_tmp_dir.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC));
  if (!dir) return {};
  return read_lock_at(dir.get(), DisplayNames(display, x11_tmp_dir, "").lock, display);
}

}  // namespace

bool AsioLeaseReaper::nothing_to_reap(const ReapJob& job) const {
  if (!job.processes.empty()) return false;
  if (probe_) return probe_->x_lock_absent(job.display);
  return read_display_lock(x11_tmp_dir_, job.display).kind == FileKind::absent;
}

void AsioLeaseReaper::reap(ReapJob job, std::function<void(ReapOutcome)> done) {
  auto run = std::make_shared<Run>(io_);
  run->started = Clock::now();
  run->done = std::move(done);
  run->job = std::move(job);
  // Everything runs from a posted handler: the reply to the request that
  // ended the lease goes out first, and the caller is never re-entered from
  // inside reap().
  boost::asio::post(io_, [this, run] {
    collect_and_terminate(*run);
    poll(run);
  });
}

// Takes what the reported processes (and what was taken before) have grown
// since the last look: a process forked after the first /proc snapshot, or
// an orphan reparented to the client's keeper, is the lease's too. Returns
// how many new ones were taken.
std::size_t AsioLeaseReaper::take_new_descendants(Run& run) {
  const ReapJob& job = run.job;
  std::size_t taken = 0;
  for (pid_t pid : select_lease_processes(list_processes(job.uid), job.uid, job.processes, run.chosen)) {
    if (run.chosen.count(pid)) continue;
    ProcessInfo info;
    UniqueFd fd = open_verified_pidfd(pid, info);
    if (!fd || info.uid != job.uid) continue;  // gone, or reused by someone else
    run.chosen.insert(pid);
    run.alive.emplace_back(pid, std::move(fd));
    ++taken;
  }
  return taken;
}

bool AsioLeaseReaper::signal_if_still_owned(Run& run, pid_t pid, int pidfd, int signo) {
  if (process_still_owned_by(pid, pidfd, run.job.uid)) {
    privileged_pidfd_signal(pidfd, signo);
    return true;
  }
  // It exec'd a setuid program (or the like) since it was reported or
  // selected: the user could not signal it herself, so neither does the
  // broker on her lease's behalf.
  if (pidfd_alive(pidfd) && run.disowned.insert(pid).second)
    log_about(run.job, LogLevel::warn,
              fmt::format("pid {} is no longer uid {}'s (a setuid program?); not signalled", pid, run.job.uid));
  return false;
}

void AsioLeaseReaper::collect_and_terminate(Run& run) {
  const ReapJob& job = run.job;
  const LockFacts lock = job.processes_only ? LockFacts{} : read_display_lock(x11_tmp_dir_, job.display);
  // A lease that never reported a process and has no X lock ran nothing we
  // could clean up after; allocation-time cleaning remains the backstop.
  run.anything_ran = !job.processes_only && (!job.processes.empty() || lock.kind != FileKind::absent);
  std::set<pid_t>& have = run.chosen;
  auto take = [&](pid_t pid, UniqueFd fd) {
    have.insert(pid);
    run.alive.emplace_back(pid, std::move(fd));
  };
  for (const auto& t : job.processes)
    if (t.start_time > 0 && (run.window_from == 0 || t.start_time < run.window_from)) run.window_from = t.start_time;
  // What the holder reported (checked when reported), and what that grew.
  // Nothing reported: skip the /proc scan (a bare acquire/release).
  if (!job.processes.empty()) take_new_descendants(run);
  // The X server a failed start left behind (its parent gone, in a session
  // of its own) is found through the display's lock, but only on evidence no
  // other user can forge (host_display.h), and only that one process: a
  // lock's pid never grows a set of processes to signal.
  if (lock_names_lease_x_server(lock, job.uid) && !have.count(lock.pid)) {
    ProcessInfo info;
    UniqueFd fd = open_verified_pidfd(lock.pid, info);
    // Checked again behind the pidfd: the same user's X server on this display.
    if (fd && info.uid == job.uid && is_x_server_command(info.comm) &&
        process_serves_display(lock.pid, job.display) && pidfd_alive(fd.get()))
      take(lock.pid, std::move(fd));
  } else if (lock.pid > 0 && !have.count(lock.pid)) {
    log_about(job, LogLevel::info,
              fmt::format("X lock names pid {} ({}); not signalled: {}", lock.pid,
                          lock.owner == job.uid ? "lock of the lease's user" : "lock of another user",
                          describe_lock(lock)));
  }
  // Reported processes whose /proc entry was not readable still have pidfds.
  for (const auto& t : job.processes)
    if (t.handle && t.handle->pidfd && !have.count(t.pid) && pidfd_alive(t.handle->pidfd.get())) {
      UniqueFd dup(::fcntl(t.handle->pidfd.get(), F_DUPFD_CLOEXEC, 0));
      if (dup) run.alive.emplace_back(t.pid, std::move(dup));
    }
  terminate_from(run, 0);
}

std::size_t AsioLeaseReaper::take_and_signal_new_descendants(Run& run) {
  const std::size_t first = run.alive.size();
  const std::size_t taken = take_new_descendants(run);
  if (!run.kill_sent) {
    terminate_from(run, first);
  } else {
    for (std::size_t i = first; i < run.alive.size(); ++i)
      signal_if_still_owned(run, run.alive[i].first, run.alive[i].second.get(), SIGKILL);
  }
  return taken;
}

void AsioLeaseReaper::terminate_from(Run& run, std::size_t first) {
  for (std::size_t i = first; i < run.alive.size(); ++i) {
    auto& [pid, fd] = run.alive[i];
    if (signal_if_still_owned(run, pid, fd.get(), SIGTERM))
      privileged_pidfd_signal(fd.get(), SIGCONT);  // a stopped process cannot act on TERM
  }
}

void AsioLeaseReaper::poll(std::shared_ptr<Run> run) {
  auto& alive = run->alive;
  // Every 10th look (200 ms), and once more before the last: what the
  // lease's processes forked or had reparented to them since the last scan.
  if (!run->job.processes.empty() && ++run->polls % 10 == 0) take_and_signal_new_descendants(*run);
  for (auto it = alive.begin(); it != alive.end();) {
    if (run->disowned.count(it->first)) {  // another user's now: not ours to wait for
      it = alive.erase(it);
      continue;
    }
    if (pidfd_alive(it->second.get())) {
      ++it;
      continue;
    }
    ++(run->kill_sent ? run->outcome.killed : run->outcome.terminated);
    it = alive.erase(it);
  }
  const auto elapsed = Clock::now() - run->started;
  // One last look before the end: nothing forked in the meantime.
  if (alive.empty() && (run->job.processes.empty() || take_and_signal_new_descendants(*run) == 0))
    return finish(run);
  if (!run->kill_sent && elapsed >= grace_) {
    for (auto& [pid, fd] : alive) {
      log_about(run->job, LogLevel::warn,
                fmt::format("pid {} ignored SIGTERM for {} ms; sending SIGKILL", pid, grace_.count()));
      signal_if_still_owned(*run, pid, fd.get(), SIGKILL);
    }
    run->kill_sent = true;
  } else if (run->kill_sent && elapsed >= grace_ + std::chrono::seconds(5)) {
    for (auto& [pid, fd] : alive)
      log_about(run->job, LogLevel::error,
                fmt::format("pid {} survives SIGKILL (uninterruptible sleep?); giving up on it", pid));
    run->outcome.unkillable = alive.size();
    return finish(run);
  }
  run->timer.expires_after(std::chrono::milliseconds(20));
  run->timer.async_wait([this, run](boost::system::error_code ec) {
    if (!ec) poll(run);
  });
}

void AsioLeaseReaper::finish(std::shared_ptr<Run> run) {
  if (orphans_ && run->window_from > 0)
    orphans_->lease_ended(run->job.lease_id, run->job.uid, run->job.display, run->window_from, boot_time_ticks_now());
  if (run->anything_ran) run->outcome.removed = cleaner_.clean_display(run->job.display, run->job.user_dir);
  // The session bus sockets its dbus-daemons left in /tmp (Xpra stops the
  // bus with SIGINT, which leaves the socket): bound since its oldest
  // reported process started, 1 s earlier for the clocks' rounding.
  if (run->window_from > 0) {
    static const long ticks_per_second = ::sysconf(_SC_CLK_TCK);
    const std::uint64_t now_ticks = boot_time_ticks_now();
    const std::uint64_t ran_ticks = now_ticks > run->window_from ? now_ticks - run->window_from : 0;
    const std::time_t since =
        std::time(nullptr) - static_cast<std::time_t>(ran_ticks / static_cast<std::uint64_t>(ticks_per_second)) - 1;
    for (auto& gone : cleaner_.clean_session_bus_sockets(run->job.uid, since))
      run->outcome.removed.push_back(std::move(gone));
  }
  run->outcome.took = std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - run->started);
  run->done(std::move(run->outcome));
}

}  // namespace xpra_broker
