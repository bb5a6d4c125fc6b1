#include "exec_command.h"

#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>

#include <cerrno>
#include <cstring>
#include <iostream>
#include <optional>

#include "command_process.h"
#include "exec_wait_loop.h"
#include "exit_codes.h"
#include "lease_conversation.h"
#include "process_group.h"
#include "process_tree.h"
#include "session_command.h"
#include "unique_fd.h"
#include "x_server_launcher.h"

namespace xpra_broker::client {

namespace {

void warn(const std::string& message) { std::cerr << "xpra-request-display: " << message << "\n"; }

struct AttemptResult {
  int exit_code = 0;
  bool retry = false;  // the display was taken after all: try another one
  bool command_status = false;  // exit_code is CMD's own (else exec's: exec_own_failure)
};

// How the command of one lease ended, which decides what the release says.
enum class CommandEnd {
  exited,          // it ran and exited by itself: its status is reported
  stopped,         // a stop signal reached us and it ended on it: not a failure
  not_tracked,     // the broker did not take it, so it never ran: not a failure
  could_not_exec,  // the user's typo (no such program), not a failed session
  could_not_fork,
};

struct CommandRun {
  CommandEnd end = CommandEnd::exited;
  int exit_code = 0;
  std::string stderr_tail;  // the command's last words, for the display-conflict check
  // What the release reports as the session's status (the back-off counts
  // failures): a command that exited, or one the client could not fork.
  bool counts_as_session() const { return end == CommandEnd::exited || end == CommandEnd::could_not_fork; }
};

// Everything of one lease: X server (optional), command, waiting, cleanup.
// The jobs are elsewhere: processes in command_process.h, what is said to
// the broker in lease_conversation.h, the waiting in exec_wait_loop.h; this
// is their order.
class ExecAttempt {
 public:
  ExecAttempt(BrokerConnection& conn, const GlobalOptions& options, const ExecOptions& exec, const v1::Lease& lease,
              std::string reattach_token, int signal_fd, const sigset_t& child_mask)
      : exec_(exec), lease_(conn, options.socket, lease, std::move(reattach_token)), signal_fd_(signal_fd),
        child_mask_(child_mask) {}

  AttemptResult run(bool last_attempt) {
    if (exec_.start_x_server) {
      bool x_tracked = true;
      auto x = start_x_server(exec_.x_server_command.empty() ? kDefaultXServerCommand : exec_.x_server_command,
                              display(), display_fd_timeout(),
                              [&](pid_t pid) { x_tracked = lease_.report_process(pid, v1::X_SERVER); });
      if (x.outcome == XStart::ready && !x_tracked) {
        // The broker could not record it (its journal is full): an X server
        // it does not know of would outlive a broker restart. Stop it.
        stop_process_group(x.pid, exec_.grace, Reap::leader_only);
        warn("not starting the command: the broker could not track its X server");
        release(std::nullopt);
        return {kExitInternal, false};
      }
      if (x.outcome != XStart::ready) return x_server_failed(x, last_attempt);
      x_pid_ = x.pid;
      x_stderr_ = std::move(x.stderr_fd);
    }
    const CommandRun command = run_command();
    if (x_pid_ > 0) stop_process_group(x_pid_, exec_.grace, Reap::leader_only);

    const bool broker_there = lease_.link() == LeaseConversation::Link::connected;
    if (command.exit_code != 0 && command.end != CommandEnd::stopped && broker_there &&
        is_display_conflict(command.stderr_tail)) {
      warn("display :" + std::to_string(display()) + " turned out to be taken (" +
           (exec_.xpra ? "xpra" : "the X server") + " said so)" +
           (last_attempt ? "" : "; retrying on another display"));
      lease_.report_start_failure(v1::DISPLAY_CONFLICT, command.stderr_tail);
      return {command.exit_code, !last_attempt, command.end == CommandEnd::exited};
    }
    // A session stopped on request (SIGTERM to us), or one the broker could
    // not track, did not fail: say nothing of its status, so it does not
    // feed the back-off.
    if (broker_there) release(command.counts_as_session() ? std::optional<int>(command.exit_code) : std::nullopt);
    const bool own_status = command.end == CommandEnd::exited || command.end == CommandEnd::stopped;
    return {command.exit_code, false, own_status};
  }

 private:
  std::uint32_t display() const { return lease_.lease().display(); }

  // Closing the connection would end the lease anyway; releasing says how
  // the session ended (for the restart-loop back-off).
  void release(std::optional<int> exit_status) { lease_.release(exit_status, exec_.grace + std::chrono::seconds(15)); }

  AttemptResult x_server_failed(const XServerResult& x, bool last_attempt) {
    const char* what = x.outcome == XStart::timeout ? "did not report ready in time"
                       : x.outcome == XStart::exited ? "exited during start-up"
                                                     : "could not be started";
    std::string lines = x.error_lines;
    while (!lines.empty() && lines.back() == '\n') lines.pop_back();
    warn("the X server on :" + std::to_string(display()) + " " + what +
         (x.outcome == XStart::timeout
              ? " (" + std::to_string(display_fd_timeout().count() / 1000) + " s, XPRA_DISPLAY_FD_TIMEOUT); it was killed"
              : std::string()) +
         (lines.empty() ? "" : ". It said:\n" + lines));
    lease_.report_start_failure(x.display_conflict             ? v1::DISPLAY_CONFLICT
                                : x.outcome == XStart::timeout ? v1::TIMEOUT
                                                               : v1::EXITED,
                                x.error_lines);
    if (x.display_conflict && !last_attempt) {
      warn("retrying on another display");
      return {0, true};
    }
    return {kExitXServerFailed, false};
  }

  CommandRun run_command() {
    SessionCommand session = session_command(exec_.command, exec_.xpra, lease_.lease());
    const TerminalHandover terminal;
    std::optional<CommandProcess> command =
        CommandProcess::start(std::move(session.args), session.env, {exec_.grace, exec_.xpra}, child_mask_);
    if (!command) return {CommandEnd::could_not_fork, kExitOsError, {}};
    // The keeper first: once the broker tracks it, whatever the command's
    // tree leaves behind descends from a process of the lease.
    if (!lease_.report_process(command->keeper_pid(), v1::KEEPER) ||
        !lease_.report_process(command->pid(), v1::SESSION)) {
      // Untracked, the command could outlive its lease: it never starts.
      command->never_run();
      warn("not starting '" + command->program() + "': the broker could not track it");
      return {CommandEnd::not_tracked, kExitInternal, {}};
    }
    command->let_run();
    terminal.hand_to(command->pid());
    const int exec_errno = command->wait_for_exec();
    // The keeper has ended the command's whole tree when it reports.
    const CommandWait wait = wait_for_command(signal_fd_, *command, lease_, x_stderr_, exec_.xpra);
    command->relay_last_stderr();
    if (!wait.status) end_orphans_of_a_lost_keeper(command->keeper_pid());
    command->reap_keeper();
    terminal.take_back();
    if (exec_errno) return {CommandEnd::could_not_exec, exit_code_for_exec_error(exec_errno), command->stderr_tail()};
    return {wait.stop_requested ? CommandEnd::stopped : CommandEnd::exited, exit_status_of(wait.status.value_or(0)),
            command->stderr_tail()};
  }

  // The keeper died before it could end the tree (someone killed it): what
  // it held was reparented to us, the next subreaper up. Nothing of it may
  // outlive the lease either.
  void end_orphans_of_a_lost_keeper(pid_t keeper) {
    warn("the keeper process (pid " + std::to_string(keeper) +
         ") died before the command's processes ended; ending them here");
    end_process_tree(exec_.grace, [this](pid_t pid, int) {
      if (pid == x_pid_) x_pid_ = 0;  // nothing left to stop
    });
  }

  const ExecOptions& exec_;
  LeaseConversation lease_;
  int signal_fd_;
  const sigset_t& child_mask_;
  pid_t x_pid_ = 0;
  UniqueFd x_stderr_;
};

// The kernel sends us SIGTERM (read from the signalfd like any other) when
// our parent dies; a parent that died before we asked is seen by getppid().
bool end_with_parent() {
  const pid_t parent = ::getppid();
  if (::prctl(PR_SET_PDEATHSIG, SIGTERM, 0, 0, 0) != 0) {
    std::cerr << "xpra-request-display: --end-with-parent: prctl(PR_SET_PDEATHSIG): " << std::strerror(errno) << "\n";
    return false;
  }
  if (::getppid() != parent) {
    std::cerr << "xpra-request-display: --end-with-parent: the parent process is already gone; not starting\n";
    return false;
  }
  return true;
}

// Under --xpra a supervisor (jupyter-server-proxy) starts a refused client
// again at once: waiting out the broker's retry time (at most a minute; a
// signal ends the wait) before exiting turns a spin of hundreds of refusals a
// second into one per retry time.
void wait_before_refused_exit(int signal_fd, std::uint32_t retry_after_ms) {
  if (retry_after_ms == 0) return;
  const int wait_ms = static_cast<int>(std::min<std::uint32_t>(retry_after_ms, 60000));
  std::cerr << "xpra-request-display: --xpra: waiting " << (wait_ms + 999) / 1000
            << " s before exiting, so a supervisor that restarts this at once does not spin\n";
  pollfd fd{signal_fd, POLLIN, 0};
  ::poll(&fd, 1, wait_ms);
}

}  // namespace

int run_exec(const GlobalOptions& options, const ExecOptions& exec) {
  auto conn = connect_or_report(options);
  if (!conn.connected()) return exec_own_failure(kExitUnavailable);

  // Signals arrive through a signalfd; children get the old mask back.
  sigset_t handled, old_mask;
  sigemptyset(&handled);
  for (int s : {SIGTERM, SIGINT, SIGHUP, SIGCHLD}) sigaddset(&handled, s);
  ::sigprocmask(SIG_BLOCK, &handled, &old_mask);
  UniqueFd signals(::signalfd(-1, &handled, SFD_CLOEXEC | SFD_NONBLOCK));
  // Orphans of the command are reparented to us, so we can see and reap all.
  ::prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0);
  if (exec.end_with_parent && !end_with_parent()) return exec_own_failure(kExitUnavailable);

  // The purpose is shown to admins and logged.
  const std::optional<std::string> purpose = acquire_purpose(exec.purpose, exec.command.front());
  if (!purpose) {
    std::cerr << "xpra-request-display: --purpose must be printable text (UTF-8, no control characters)\n";
    return exec_own_failure(kExitUsage);
  }
  const int attempts = std::max(1, exec.max_attempts);
  for (int attempt = 1;; ++attempt) {
    v1::Request request;
    request.mutable_acquire()->set_purpose(*purpose);
    v1::Response response;
    if (int rc = call_or_report(conn, options, request, response); rc != kExitOk) {
      if (rc == kExitTempFail && exec.xpra) wait_before_refused_exit(signals.get(), response.retry_after_ms());
      return exec_own_failure(rc);
    }
    const v1::Lease lease = response.acquire().lease();
    ExecAttempt run(conn, options, exec, lease, response.acquire().reattach_token(), signals.get(), old_mask);
    const AttemptResult result = run.run(attempt == attempts);
    if (!result.retry) return result.command_status ? result.exit_code : exec_own_failure(result.exit_code);
  }
}

}  // namespace xpra_broker::client
