#include "exec_command.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <termios.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <iostream>

#include "exit_codes.h"
#include "unique_fd.h"

namespace xpra_broker::client {

namespace {

using Clock = std::chrono::steady_clock;

void warn(const std::string& message) { std::cerr << "xpra-request-display: " << message << "\n"; }

int exit_status_of(int wait_status) {
  if (WIFEXITED(wait_status)) return WEXITSTATUS(wait_status);
  if (WIFSIGNALED(wait_status)) return 128 + WTERMSIG(wait_status);
  return kExitInternal;
}

bool group_alive(pid_t pgid) { return ::kill(-pgid, 0) == 0 || errno == EPERM; }

// Reaps every exited child (we are a subreaper, so orphans of the command
// come to us). Returns the wait status of `leader` if it was among them.
void reap_children(pid_t leader, int& leader_status, bool& leader_done) {
  for (;;) {
    int status = 0;
    const pid_t pid = ::waitpid(-1, &status, WNOHANG);
    if (pid <= 0) return;
    if (pid == leader) {
      leader_status = status;
      leader_done = true;
    }
  }
}

// TERM, then KILL after the grace period, to what is left of the group.
void terminate_group(pid_t pgid, std::chrono::milliseconds grace, pid_t leader, int& leader_status,
                     bool& leader_done) {
  reap_children(leader, leader_status, leader_done);
  if (!group_alive(pgid)) return;
  ::kill(-pgid, SIGTERM);
  ::kill(-pgid, SIGCONT);  // a stopped process cannot act on SIGTERM
  const auto deadline = Clock::now() + grace;
  while (Clock::now() < deadline) {
    reap_children(leader, leader_status, leader_done);
    if (!group_alive(pgid)) return;
    ::usleep(20000);
  }
  ::kill(-pgid, SIGKILL);
  for (int i = 0; i < 250 && group_alive(pgid); ++i) {
    reap_children(leader, leader_status, leader_done);
    ::usleep(20000);
  }
  reap_children(leader, leader_status, leader_done);
}

void set_env(const char* name, const std::string& value) { ::setenv(name, value.c_str(), 1); }

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

int run_exec(const GlobalOptions& options, const ExecOptions& exec) {
  auto conn = connect_or_report(options);
  if (!conn.connected()) return kExitUnavailable;

  v1::Request request;
  std::string purpose = exec.purpose;
  if (purpose.empty()) {
    purpose = exec.command.front();
    if (auto slash = purpose.rfind('/'); slash != std::string::npos) purpose = purpose.substr(slash + 1);
  }
  request.mutable_acquire()->set_purpose(purpose.substr(0, 128));
  v1::Response response;
  if (int rc = call_or_report(conn, options, request, response); rc != kExitOk) return rc;
  const v1::Lease lease = response.acquire().lease();

  std::vector<std::string> args;
  for (const auto& a : exec.command) args.push_back(substitute_placeholders(a, lease.display(), lease.runtime_dir()));

  // Signals arrive through a signalfd; the child gets the old mask back.
  sigset_t handled, old_mask;
  sigemptyset(&handled);
  for (int s : {SIGTERM, SIGINT, SIGHUP, SIGCHLD}) sigaddset(&handled, s);
  ::sigprocmask(SIG_BLOCK, &handled, &old_mask);
  UniqueFd signals(::signalfd(-1, &handled, SFD_CLOEXEC | SFD_NONBLOCK));
  // Orphans of the command are reparented to us, so we can see and reap all.
  ::prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0);

  int exec_pipe[2];
  if (::pipe2(exec_pipe, O_CLOEXEC) != 0) {
    warn(std::string("pipe: ") + std::strerror(errno));
    return kExitOsError;
  }
  UniqueFd exec_read(exec_pipe[0]), exec_write(exec_pipe[1]);

  const bool own_terminal = ::isatty(STDIN_FILENO) && ::tcgetpgrp(STDIN_FILENO) == ::getpgrp();
  const pid_t child = ::fork();
  if (child < 0) {
    warn(std::string("fork: ") + std::strerror(errno));
    return kExitOsError;
  }
  if (child == 0) {
    ::setpgid(0, 0);
    ::sigprocmask(SIG_SETMASK, &old_mask, nullptr);
    set_env("DISPLAY", ":" + std::to_string(lease.display()));
    set_env("XPRA_BROKER_DISPLAY", std::to_string(lease.display()));
    set_env("XPRA_BROKER_RUNTIME_DIR", lease.runtime_dir());
    set_env("XPRA_BROKER_LEASE", lease.id());
    std::vector<char*> argv;
    for (auto& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    ::execvp(argv[0], argv.data());
    const int err = errno;
    (void)!::write(exec_write.get(), &err, sizeof(err));
    ::_exit(err == ENOENT ? kExitCommandNotFound : kExitCannotExecute);
  }
  ::setpgid(child, child);  // also here: no race with the child's own call
  exec_write.reset();
  if (own_terminal) {
    // Give the command the terminal, as a shell does for a foreground job.
    ::signal(SIGTTOU, SIG_IGN);
    ::tcsetpgrp(STDIN_FILENO, child);
  }

  int exec_errno = 0;
  const bool exec_failed = ::read(exec_read.get(), &exec_errno, sizeof(exec_errno)) == sizeof(exec_errno);
  if (exec_failed)
    warn("cannot run '" + args.front() + "': " + std::strerror(exec_errno) +
         (exec_errno == ENOENT ? " (is it installed and on PATH?)" : ""));

  int leader_status = 0;
  bool leader_done = false;
  bool broker_lost = false;
  while (!leader_done) {
    pollfd fds[2] = {{signals.get(), POLLIN, 0}, {conn.fd(), POLLIN, 0}};
    const int n = ::poll(fds, broker_lost ? 1 : 2, -1);
    if (n < 0 && errno != EINTR) break;
    if (fds[0].revents & POLLIN) {
      signalfd_siginfo info{};
      while (::read(signals.get(), &info, sizeof(info)) == sizeof(info)) {
        if (info.ssi_signo != SIGCHLD) ::kill(-child, static_cast<int>(info.ssi_signo));
      }
      reap_children(child, leader_status, leader_done);
    }
    if (!broker_lost && (fds[1].revents & (POLLIN | POLLHUP | POLLERR))) {
      // The broker sends nothing unasked: readable means it closed.
      char byte;
      if (::recv(conn.fd(), &byte, 1, MSG_DONTWAIT) <= 0) {
        broker_lost = true;
        warn("lost the connection to the broker; display :" + std::to_string(lease.display()) +
             " is no longer leased. The command keeps running.");
      }
    }
  }

  // The command ended: nothing of its process group may outlive the lease.
  terminate_group(child, exec.grace, child, leader_status, leader_done);
  if (own_terminal) ::tcsetpgrp(STDIN_FILENO, ::getpgrp());

  if (!broker_lost) {
    v1::Request release;
    release.mutable_release()->set_lease_id(lease.id());
    v1::Response released;
    // A failure here is harmless: closing the connection ends the lease too.
    conn.call(release, released);
  }
  return exit_status_of(leader_status);
}

}  // namespace xpra_broker::client
