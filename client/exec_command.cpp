#include "exec_command.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <termios.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <optional>
#include <iostream>

#include "exit_codes.h"
#include "process_group.h"
#include "process_tree.h"
#include "session_keeper.h"
#include "untrusted_text.h"
#include "unique_fd.h"
#include "x_server_launcher.h"
#include "xpra_command.h"

namespace xpra_broker::client {

namespace {

using Clock = std::chrono::steady_clock;

void warn(const std::string& message) { std::cerr << "xpra-request-display: " << message << "\n"; }

int exit_status_of(int wait_status) {
  if (WIFEXITED(wait_status)) return WEXITSTATUS(wait_status);
  if (WIFSIGNALED(wait_status)) return 128 + WTERMSIG(wait_status);
  return kExitInternal;
}

// Copies one read's worth of `from` (non-blocking) to our stderr and keeps
// the last 16 KiB in `tail` for the conflict check. Returns read()'s result:
// > 0 copied, 0 the writers closed it, < 0 nothing now (EAGAIN) or an error.
ssize_t forward_stderr(int from, std::string* tail) {
  char buf[4096];
  const ssize_t got = ::read(from, buf, sizeof(buf));
  if (got <= 0) return got;
  (void)!::write(STDERR_FILENO, buf, static_cast<std::size_t>(got));
  if (tail) {
    tail->append(buf, static_cast<std::size_t>(got));
    if (tail->size() > 16384) tail->erase(0, tail->size() - 16384);
  }
  return got;
}

bool still_open(ssize_t read_result) { return read_result > 0 || (read_result < 0 && errno == EAGAIN); }

// As a shell reports a command it could not run.
int exit_code_for_exec_error(int err) { return err == ENOENT ? kExitCommandNotFound : kExitCannotExecute; }

struct Pipe {
  UniqueFd read, write;

  bool open() {
    int fds[2];
    if (::pipe2(fds, O_CLOEXEC) != 0) return false;
    read.reset(fds[0]);
    write.reset(fds[1]);
    return true;
  }
};

// Between us and the forked command, until it execs.
struct CommandPipes {
  Pipe exec_error;  // its errno when exec fails; EOF once exec succeeded
  Pipe command_stderr;
  Pipe go;  // see wait_for_go()

  bool open() { return exec_error.open() && command_stderr.open() && go.open(); }
};

// The command as the client holds it, from fork until its tree is gone. Its
// parent is the keeper (session_keeper.h), which reports its wait status.
struct CommandChild {
  pid_t pid = -1;
  Keeper keeper;
  UniqueFd exec_error;
  UniqueFd stderr_read;  // forwarded to ours, its tail kept for the conflict check
  bool stderr_open = true;
  UniqueFd go;
};

// In the child: it runs only once the parent has reported its pid to the
// broker, so a client killed in between leaves no untracked command behind.
// EOF without the go byte means the parent died or the broker refused the
// pid: false, and the child must not run at all.
bool wait_for_go(int go_read) {
  char go = 0;
  while (::read(go_read, &go, 1) < 0 && errno == EINTR) {
  }
  return go == 'g';
}

// False if the broker did not take it (then nothing may run untracked: the
// caller stops the process before it does anything).
bool report_process(BrokerConnection& conn, const v1::Lease& lease, pid_t pid, v1::ProcessRole role) {
  v1::Request request;
  auto* r = request.mutable_report_process();
  r->set_lease_id(lease.id());
  r->set_pid(pid);
  r->set_role(role);
  v1::Response response;
  if (conn.call(request, response) == BrokerConnection::Error::none && response.status() == v1::OK) return true;
  warn("the broker did not take pid " + std::to_string(pid) + " under lease " + lease.id() + ": " +
       (response.message().empty() ? std::string("no answer") : escape_untrusted(response.message(), 512)));
  return false;
}

// Reports a failed start; for a display conflict, says when the broker could
// not confirm it (then it counts as a failed start of the user's own).
void report_start_failure(BrokerConnection& conn, const v1::Lease& lease, v1::StartFailure failure,
                          const std::string& detail) {
  v1::Request request;
  auto* r = request.mutable_report_start_failure();
  r->set_lease_id(lease.id());
  r->set_failure(failure);
  // The X server's own words, in whatever encoding its locale had: escaped
  // into valid UTF-8 (a protobuf string must be), the last 1 KiB.
  r->set_detail(escape_untrusted(detail.size() > 1024 ? detail.substr(detail.size() - 1024) : detail, 1024));
  v1::Response response;
  if (conn.call(request, response) == BrokerConnection::Error::none && response.status() == v1::OK &&
      failure == v1::DISPLAY_CONFLICT && !response.report_start_failure().conflict_confirmed())
    warn("the broker found nothing of another user on :" + std::to_string(lease.display()) +
         ", so it counts this as a failed start of yours (see the command's own errors)");
}

struct AttemptResult {
  int exit_code = 0;
  bool retry = false;  // the display was taken after all: try another one
  bool command_status = false;  // exit_code is CMD's own (else exec's: exec_own_failure)
};

// Everything of one lease: X server (optional), command, waiting, cleanup.
class ExecAttempt {
 public:
  ExecAttempt(BrokerConnection& conn, const GlobalOptions& options, const ExecOptions& exec, const v1::Lease& lease,
              std::string reattach_token, int signal_fd, const sigset_t& child_mask)
      : conn_(conn), options_(options), exec_(exec), lease_(lease), reattach_token_(std::move(reattach_token)),
        signal_fd_(signal_fd), child_mask_(child_mask) {}

  AttemptResult run(bool last_attempt) {
    if (exec_.start_x_server) {
      auto x = start_x_server(exec_.x_server_command.empty() ? kDefaultXServerCommand : exec_.x_server_command,
                              lease_.display(), display_fd_timeout(),
                              [this](pid_t pid) { x_untracked_ = !report_process(conn_, lease_, pid, v1::X_SERVER); });
      if (x.outcome == XStart::ready && x_untracked_) {
        // The broker could not record it (its journal is full): an X server
        // it does not know of would outlive a broker restart. Stop it.
        stop_process_group(x.pid, exec_.grace, Reap::leader_only);
        warn("not starting the command: the broker could not track its X server");
        release_lease(std::nullopt);
        return {kExitInternal, false};
      }
      if (x.outcome != XStart::ready) return x_server_failed(x, last_attempt);
      x_pid_ = x.pid;
      x_stderr_ = std::move(x.stderr_fd);
    }
    AttemptResult result = run_command();
    if (x_pid_ > 0) stop_process_group(x_pid_, exec_.grace, Reap::leader_only);

    const bool failed = result.exit_code != 0;
    if (failed && !stop_requested_ && !broker_lost_ && is_display_conflict(stderr_tail_)) {
      warn("display :" + std::to_string(lease_.display()) + " turned out to be taken (" +
           (exec_.xpra ? "xpra" : "the X server") + " said so)" +
           (last_attempt ? "" : "; retrying on another display"));
      report_start_failure(conn_, lease_, v1::DISPLAY_CONFLICT, stderr_tail_);
      result.retry = !last_attempt;
      return result;
    }
    // A session stopped on request (SIGTERM to us), or one the broker could
    // not track, did not fail: say nothing of its status, so it does not
    // feed the back-off.
    if (!broker_lost_)
      release_lease(stop_requested_ || untracked_ || never_ran_ ? std::nullopt : std::optional<int>(result.exit_code));
    return result;
  }

  bool broker_lost() const { return broker_lost_; }

 private:
  // Closing the connection would end the lease anyway; releasing says how
  // the session ended (for the restart-loop back-off).
  void release_lease(std::optional<int> exit_status) {
    v1::Request release;
    release.mutable_release()->set_lease_id(lease_.id());
    if (exit_status) release.mutable_release()->set_exit_status(*exit_status);
    v1::Response released;
    if (conn_.call(release, released) == BrokerConnection::Error::none && released.status() == v1::OK)
      // What the broker kills may be our child (we are a subreaper): reap
      // it meanwhile so no zombie outlives us.
      wait_until_lease_gone(conn_, lease_.id(), /*all=*/false, exec_.grace + std::chrono::seconds(15), [] {
        while (::waitpid(-1, nullptr, WNOHANG) > 0) {
        }
      });
  }

  AttemptResult x_server_failed(const XServerResult& x, bool last_attempt) {
    const char* what = x.outcome == XStart::timeout ? "did not report ready in time"
                       : x.outcome == XStart::exited ? "exited during start-up"
                                                     : "could not be started";
    std::string lines = x.error_lines;
    while (!lines.empty() && lines.back() == '\n') lines.pop_back();
    warn("the X server on :" + std::to_string(lease_.display()) + " " + what +
         (x.outcome == XStart::timeout
              ? " (" + std::to_string(display_fd_timeout().count() / 1000) + " s, XPRA_DISPLAY_FD_TIMEOUT); it was killed"
              : std::string()) +
         (lines.empty() ? "" : ". It said:\n" + lines));
    report_start_failure(conn_, lease_,
                         x.display_conflict             ? v1::DISPLAY_CONFLICT
                         : x.outcome == XStart::timeout ? v1::TIMEOUT
                                                        : v1::EXITED,
                         x.error_lines);
    if (x.display_conflict && !last_attempt) {
      warn("retrying on another display");
      return {0, true};
    }
    return {kExitXServerFailed, false};
  }

  AttemptResult run_command() {
    std::vector<std::string> args = command_args();
    const bool own_terminal = ::isatty(STDIN_FILENO) && ::tcgetpgrp(STDIN_FILENO) == ::getpgrp();
    std::optional<CommandChild> child = start_child(args);
    if (!child) return {kExitOsError, false};
    // The keeper first: once the broker tracks it, whatever the command's
    // tree leaves behind descends from a process of the lease.
    if (!report_process(conn_, lease_, child->keeper.pid, v1::KEEPER) ||
        !report_process(conn_, lease_, child->pid, v1::SESSION))
      return never_start(*child, args.front());
    let_command_run(*child);
    if (own_terminal) hand_terminal_to(child->pid);
    const int exec_errno = wait_for_exec(*child, args.front());
    // The keeper has ended the command's whole tree when it reports.
    std::optional<int> status = wait_for_command(*child);
    forward_last_stderr(*child);
    if (!status) end_orphans_of_a_lost_keeper(*child);
    ::waitpid(child->keeper.pid, nullptr, 0);
    if (own_terminal) ::tcsetpgrp(STDIN_FILENO, ::getpgrp());
    if (exec_errno) {
      // The user's typo (no such program), not a failed session: it must not
      // feed the back-off.
      never_ran_ = true;
      return {exit_code_for_exec_error(exec_errno), false};
    }
    return {exit_status_of(status.value_or(0)), false, true};
  }

  std::vector<std::string> command_args() {
    if (exec_.xpra) {
      xpra_major_ = xpra_version(exec_.command.front());
      return complete_xpra_command(exec_.command, check_xpra_command(exec_.command).shape, lease_.display(),
                                     lease_.runtime_dir(), xpra_major_);
    }
    std::vector<std::string> args;
    for (const auto& a : exec_.command)
      args.push_back(substitute_placeholders(a, lease_.display(), lease_.runtime_dir()));
    return args;
  }

  // Forks the keeper and, under it, the command in its own process group;
  // the command waits before exec until let_command_run(). Nothing if that
  // failed (said why).
  std::optional<CommandChild> start_child(std::vector<std::string>& args) {
    CommandPipes pipes;
    if (!pipes.open()) {
      warn(std::string("pipe: ") + std::strerror(errno));
      return std::nullopt;
    }
    std::optional<Keeper> keeper =
        start_keeper({exec_.grace, exec_.xpra}, [this, &pipes, &args] { become_command(pipes, args); });
    if (!keeper) {
      warn(std::string("fork: ") + std::strerror(errno));
      return std::nullopt;
    }
    const pid_t pid = keeper->command;
    // Our copies of the child's ends close as `pipes` goes: else no read of
    // ours would see EOF when the child execs or exits.
    return CommandChild{pid, std::move(*keeper), std::move(pipes.exec_error.read),
                        std::move(pipes.command_stderr.read), true, std::move(pipes.go.write)};
  }

  // The keeper died before it could end the tree (someone killed it): what
  // it held was reparented to us, the next subreaper up. Nothing of it may
  // outlive the lease either.
  void end_orphans_of_a_lost_keeper(const CommandChild& child) {
    warn("the keeper process (pid " + std::to_string(child.keeper.pid) +
         ") died before the command's processes ended; ending them here");
    end_process_tree(exec_.grace, [this](pid_t pid, int) {
      if (pid == x_pid_) x_pid_ = 0;  // nothing left to stop
    });
  }

  [[noreturn]] void become_command(CommandPipes& pipes, std::vector<std::string>& args) {
    ::setpgid(0, 0);
    pipes.go.write.reset();  // else our own copy would hide the parent's death
    if (!wait_for_go(pipes.go.read.get())) ::_exit(kExitInternal);
    ::sigprocmask(SIG_SETMASK, &child_mask_, nullptr);
    ::dup2(pipes.command_stderr.write.get(), STDERR_FILENO);
    export_lease_environment();
    std::vector<char*> argv;
    for (auto& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    ::execvp(argv[0], argv.data());
    const int err = errno;
    (void)!::write(pipes.exec_error.write.get(), &err, sizeof(err));
    ::_exit(exit_code_for_exec_error(err));
  }

  void export_lease_environment() const {
    ::setenv("DISPLAY", (":" + std::to_string(lease_.display())).c_str(), 1);
    ::setenv("XPRA_BROKER_DISPLAY", std::to_string(lease_.display()).c_str(), 1);
    ::setenv("XPRA_BROKER_RUNTIME_DIR", lease_.runtime_dir().c_str(), 1);
    ::setenv("XPRA_BROKER_LEASE", lease_.id().c_str(), 1);
    // Unless the user chose: Xpra 6's shared @xpra/N is the one socket
    // --socket-dir and --sessions-dir cannot move into the lease's dir.
    if (exec_.xpra) ::setenv(kXpraNoAbstractSocketEnv, "0", 0);
    // Xpra 5+ without XDG_RUNTIME_DIR and /run/user/UID sets it to /tmp
    // (xpra/scripts/main.py) and keeps per-user state in /tmp/xpra, a path
    // another user can take first. The lease's runtime dir is the user's
    // own; a real runtime dir (a user manager's) is left as it is.
    if (exec_.xpra && xpra_major_ >= 5 && !std::getenv("XDG_RUNTIME_DIR") &&
        ::access(("/run/user/" + std::to_string(::getuid())).c_str(), F_OK) != 0)
      ::setenv("XDG_RUNTIME_DIR", lease_.runtime_dir().c_str(), 1);
  }

  // Untracked, the command could outlive its lease: it never starts
  // (without the go byte the child exits before exec).
  AttemptResult never_start(CommandChild& child, const std::string& program) {
    child.go.reset();
    (void)read_keeper_report(child.keeper);  // the command exited, and the keeper with it
    ::waitpid(child.keeper.pid, nullptr, 0);
    warn("not starting '" + program + "': the broker could not track it");
    untracked_ = true;
    return {kExitInternal, false};
  }

  static void let_command_run(CommandChild& child) {
    (void)!::write(child.go.get(), "g", 1);
    child.go.reset();
  }

  // As a shell does for a foreground job. SIGTTOU ignored: we are in the
  // background then, and take the terminal back when the command ends.
  static void hand_terminal_to(pid_t pgid) {
    ::signal(SIGTTOU, SIG_IGN);
    ::tcsetpgrp(STDIN_FILENO, pgid);
  }

  // Blocks until the command has exec'd (the pipe closes on exec) or failed
  // to. Its errno when exec failed (said why), else 0.
  static int wait_for_exec(const CommandChild& child, const std::string& program) {
    int exec_errno = 0;
    if (::read(child.exec_error.get(), &exec_errno, sizeof(exec_errno)) == sizeof(exec_errno))
      warn("cannot run '" + program + "': " + std::strerror(exec_errno) +
           (exec_errno == ENOENT ? " (is it installed and on PATH?)" : ""));
    return exec_errno;
  }

  enum WatchedFd { kSignals, kKeeper, kBroker, kCommandStderr, kXServerStderr, kWatchedFds };

  // Until the keeper reports (the command exited and its tree is gone),
  // relays stop signals and both stderrs and reattaches when the broker goes
  // away. The command's wait status, or nothing if the keeper died without
  // reporting or poll() failed.
  std::optional<int> wait_for_command(CommandChild& child) {
    ::fcntl(child.stderr_read.get(), F_SETFL, O_NONBLOCK);
    if (x_stderr_) ::fcntl(x_stderr_.get(), F_SETFL, O_NONBLOCK);
    for (;;) {
      auto fds = watched_fds(child);
      if (::poll(fds.data(), fds.size(), poll_timeout_ms()) < 0 && errno != EINTR) return std::nullopt;
      if (reattach_due()) try_reattach();
      if (fds[kSignals].revents & POLLIN) {
        relay_stop_signals(child.pid);
        reap_exited(nullptr);  // the keeper, an X server, orphans of a lost keeper
      }
      if (fds[kKeeper].revents & (POLLIN | POLLHUP | POLLERR)) return read_keeper_report(child.keeper);
      if (fds[kBroker].revents & (POLLIN | POLLHUP | POLLERR)) check_broker_connection();
      if (fds[kCommandStderr].revents & (POLLIN | POLLHUP))
        child.stderr_open = still_open(forward_stderr(child.stderr_read.get(), &stderr_tail_));
      if (fds[kXServerStderr].revents & (POLLIN | POLLHUP))
        if (!still_open(forward_stderr(x_stderr_.get(), nullptr))) x_stderr_.reset();
    }
  }

  // A negative fd is skipped by poll(): what is closed or lost is not watched.
  std::array<pollfd, kWatchedFds> watched_fds(const CommandChild& child) const {
    return {{{signal_fd_, POLLIN, 0},
             {child.keeper.report.get(), POLLIN, 0},
             {broker_lost_ ? -1 : conn_.fd(), POLLIN, 0},
             {child.stderr_open ? child.stderr_read.get() : -1, POLLIN, 0},
             {x_stderr_ ? x_stderr_.get() : -1, POLLIN, 0}}};
  }

  // While the broker is away, wake up for the next reconnect attempt.
  int poll_timeout_ms() const {
    if (!broker_lost_ || lease_gone_) return -1;
    return static_cast<int>(std::max<long>(
        0, std::chrono::duration_cast<std::chrono::milliseconds>(reconnect_at_ - Clock::now()).count()));
  }

  bool reattach_due() const { return broker_lost_ && !lease_gone_ && Clock::now() >= reconnect_at_; }

  // SIGCHLD only wakes us up; the others are a request to stop.
  void relay_stop_signals(pid_t command) {
    signalfd_siginfo info{};
    while (::read(signal_fd_, &info, sizeof(info)) == sizeof(info)) {
      if (info.ssi_signo == SIGCHLD) continue;
      stop_requested_ = true;
      // xpra is told alone: it stops its own X server and removes its
      // sockets from every socket dir, shared ones included. Signalled
      // with it, the X server dies first and xpra exits on the broken
      // display without cleaning up (tests/xpra counts the difference).
      // The rest of its tree is ended by the keeper once xpra has exited.
      ::kill(exec_.xpra ? command : -command, static_cast<int>(info.ssi_signo));
    }
  }

  // The broker sends nothing unasked: readable means it closed.
  void check_broker_connection() {
    char byte;
    const ssize_t got = ::recv(conn_.fd(), &byte, 1, MSG_DONTWAIT);
    // A spurious wake-up is not a lost broker: only EOF or an error is.
    if (got > 0 || (got < 0 && (errno == EAGAIN || errno == EINTR))) return;
    broker_lost_ = true;
    reconnect_delay_ = std::chrono::milliseconds(100);
    reconnect_at_ = Clock::now() + reconnect_delay_;
    warn("lost the connection to the broker; the command keeps running on :" + std::to_string(lease_.display()) +
         " while this client reattaches to lease " + lease_.id());
  }

  // What the command wrote just before it exited.
  void forward_last_stderr(CommandChild& child) {
    while (child.stderr_open && forward_stderr(child.stderr_read.get(), &stderr_tail_) > 0) {
    }
  }

  // The broker restarted (or crashed): reconnect with back-off and take the
  // lease back with its token. The broker keeps a recovered lease for
  // reattach-grace-seconds; after that it reaps the session itself.
  void try_reattach() {
    auto fresh = BrokerConnection::connect(options_.socket, std::chrono::milliseconds(1000));
    if (fresh.connected()) {
      v1::Request request;
      request.mutable_reattach()->set_lease_id(lease_.id());
      request.mutable_reattach()->set_reattach_token(reattach_token_);
      v1::Response response;
      if (fresh.call(request, response) == BrokerConnection::Error::none) {
        if (response.status() == v1::OK) {
          conn_ = std::move(fresh);
          broker_lost_ = false;
          warn("reattached to lease " + lease_.id() + " (display :" + std::to_string(lease_.display()) + ")");
          return;
        }
        if (response.status() == v1::NOT_FOUND || response.status() == v1::DENIED) {
          lease_gone_ = true;
          warn("the broker no longer has lease " + lease_.id() + ": " + response.message());
          return;
        }
      }
    }
    reconnect_delay_ = std::min<std::chrono::milliseconds>(reconnect_delay_ * 2, std::chrono::seconds(2));
    reconnect_at_ = Clock::now() + reconnect_delay_;
  }

  BrokerConnection& conn_;
  const GlobalOptions& options_;
  const ExecOptions& exec_;
  const v1::Lease& lease_;
  std::string reattach_token_;
  bool lease_gone_ = false;
  std::chrono::milliseconds reconnect_delay_{100};
  Clock::time_point reconnect_at_;
  int signal_fd_;
  const sigset_t& child_mask_;
  pid_t x_pid_ = 0;
  UniqueFd x_stderr_;
  std::string stderr_tail_;
  bool stop_requested_ = false;
  bool broker_lost_ = false;
  bool x_untracked_ = false;  // the broker refused to track the X server
  bool untracked_ = false;    // ... or the command, which then never ran
  bool never_ran_ = false;    // the command could not be executed (not found, not executable)
  int xpra_major_ = 0;        // under --xpra: the Xpra's major version (0: not told)
};

}  // namespace

std::string substitute_placeholders(const std::string& arg, std::uint32_t display, const std::string& runtime_dir) {
  std::string out;
  out.reserve(arg.size());
  for (std::size_t i = 0; i < arg.size();) {
    if (arg.compare(i, 9, "{display}") == 0) {
      out += std::to_string(display);
      i += 9;
    } else if (arg.compare(i, 13, "{runtime_dir}") == 0) {
      out += runtime_dir;
      i += 13;
    } else {
      out += arg[i++];
    }
  }
  return out;
}

namespace {

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

  // The purpose is shown to admins and logged: the broker takes printable
  // UTF-8 only, at most 128 bytes.
  if (!is_printable_text(exec.purpose)) {
    std::cerr << "xpra-request-display: --purpose must be printable text (UTF-8, no control characters)\n";
    return exec_own_failure(kExitUsage);
  }
  std::string purpose = exec.purpose;
  if (purpose.empty()) {
    purpose = exec.command.front();
    if (auto slash = purpose.rfind('/'); slash != std::string::npos) purpose = purpose.substr(slash + 1);
    purpose = escape_untrusted(purpose, 100);
  }
  // Cut at 128 bytes, never inside a UTF-8 sequence.
  if (purpose.size() > 128) {
    std::size_t cut = 128;
    while (cut > 0 && (static_cast<unsigned char>(purpose[cut]) & 0xC0) == 0x80) --cut;
    purpose.resize(cut);
  }
  const int attempts = std::max(1, exec.max_attempts);
  for (int attempt = 1;; ++attempt) {
    v1::Request request;
    request.mutable_acquire()->set_purpose(purpose);
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
