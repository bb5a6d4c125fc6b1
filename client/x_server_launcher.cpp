#include "x_server_launcher.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <iostream>

#include "process_group.h"
#include "unique_fd.h"

namespace xpra_broker::client {

using Clock = std::chrono::steady_clock;

std::chrono::milliseconds display_fd_timeout() {
  if (const char* env = std::getenv("XPRA_DISPLAY_FD_TIMEOUT"); env && *env) {
    char* end = nullptr;
    const double seconds = std::strtod(env, &end);
    if (end && *end == '\0' && seconds > 0 && seconds < 86400)
      return std::chrono::milliseconds(static_cast<long>(seconds * 1000));
    std::cerr << "xpra-request-display: ignoring XPRA_DISPLAY_FD_TIMEOUT='" << env << "' (not a number of seconds)\n";
  }
  return std::chrono::seconds(20);
}

bool is_display_conflict(const std::string& text) {
  // The X server's words (Xvfb 21, PROBLEM.md), then Xpra's own when it
  // finds a socket of the display in one of its socket dirs
  // (xpra/net/socket_util.py, setup_local_sockets(): checkstate(); the same
  // words in 3.1, 5.0 and 6.5, and in 6.x also for a squatted @xpra/N).
  // 5.x/6.x's "There is an X11 server already running on display :N" (its
  // X server died but :N answers: xpra/x11/vfb_util.py) is matched by the
  // first pattern.
  static const char* patterns[] = {"server already running", "_XSERVTransSocketUNIXCreateListener",
                                   "_XSERVTransMakeAllCOTSServerListeners", "Could not create server lock file",
                                   "Server is already active for display", "An xpra server is already running at",
                                   "You already have an xpra server running at"};
  for (const char* p : patterns)
    if (text.find(p) != std::string::npos) return true;
  return false;
}

XServerResult start_x_server(const std::string& command, std::uint32_t display, std::chrono::milliseconds timeout,
                             const std::function<void(pid_t)>& on_started) {
  XServerResult result;
  int ready_pipe[2], err_pipe[2];
  if (::pipe2(ready_pipe, O_CLOEXEC) != 0) return result;
  UniqueFd ready_read(ready_pipe[0]), ready_write(ready_pipe[1]);
  if (::pipe2(err_pipe, O_CLOEXEC) != 0) return result;
  UniqueFd err_read(err_pipe[0]), err_write(err_pipe[1]);

  const std::string script = "exec " + command + " :" + std::to_string(display) + " -displayfd 3";
  const pid_t pid = ::fork();
  if (pid < 0) return result;
  if (pid == 0) {
    ::setpgid(0, 0);
    sigset_t none;
    sigemptyset(&none);
    ::sigprocmask(SIG_SETMASK, &none, nullptr);
    ::dup2(ready_write.get(), 3);  // dup2 clears CLOEXEC on the copy
    ::dup2(err_write.get(), STDERR_FILENO);
    ::execl("/bin/sh", "sh", "-c", script.c_str(), static_cast<char*>(nullptr));
    ::_exit(127);
  }
  ::setpgid(pid, pid);
  result.pid = pid;
  ready_write.reset();
  if (on_started) on_started(pid);
  err_write.reset();
  ::fcntl(err_read.get(), F_SETFL, O_NONBLOCK);

  std::string ready_text;
  const auto deadline = Clock::now() + timeout;
  bool err_open = true;
  for (;;) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
    if (left <= 0) {
      result.outcome = XStart::timeout;
      break;
    }
    pollfd fds[2] = {{ready_read.get(), POLLIN, 0}, {err_read.get(), POLLIN, 0}};
    const int n = ::poll(fds, err_open ? 2 : 1, static_cast<int>(std::min<long>(left, 100)));
    if (n < 0 && errno != EINTR) break;
    if (err_open && (fds[1].revents & (POLLIN | POLLHUP))) {
      char buf[4096];
      const ssize_t got = ::read(err_read.get(), buf, sizeof(buf));
      if (got > 0 && result.error_lines.size() < 16384) result.error_lines.append(buf, static_cast<std::size_t>(got));
      if (got == 0) err_open = false;
    }
    if (fds[0].revents & (POLLIN | POLLHUP)) {
      char buf[64];
      const ssize_t got = ::read(ready_read.get(), buf, sizeof(buf));
      if (got > 0) {
        ready_text.append(buf, static_cast<std::size_t>(got));
        if (ready_text.find('\n') != std::string::npos) {
          result.outcome = XStart::ready;
          break;
        }
      } else if (got == 0) {
        // The X server closed the display fd without a number: it failed.
        result.outcome = XStart::exited;
        break;
      }
    }
    int status = 0;
    if (::waitpid(pid, &status, WNOHANG) == pid) {
      result.outcome = XStart::exited;
      result.pid = 0;
      break;
    }
  }
  if (result.outcome != XStart::ready) {
    // Drain what it still has to say, then make sure nothing of it remains.
    char buf[4096];
    for (ssize_t got; err_open && (got = ::read(err_read.get(), buf, sizeof(buf))) > 0;)
      if (result.error_lines.size() < 16384) result.error_lines.append(buf, static_cast<std::size_t>(got));
    stop_process_group(pid, std::chrono::milliseconds(1000), Reap::leader_only);
    result.pid = 0;
  }
  result.display_conflict = is_display_conflict(result.error_lines);
  if (result.outcome == XStart::ready) result.stderr_fd = std::move(err_read);
  return result;
}

}  // namespace xpra_broker::client
