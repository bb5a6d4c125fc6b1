#include "exec_wait_loop.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include <array>
#include <cerrno>

#include "process_tree.h"

namespace xpra_broker::client {

namespace {

enum WatchedFd { kSignals, kKeeper, kBroker, kCommandStderr, kXServerStderr, kWatchedFds };

// SIGCHLD only wakes us up; the others are a request to stop. True if one came.
bool relay_stop_signals(int signal_fd, pid_t command, bool stop_command_alone) {
  bool stop = false;
  signalfd_siginfo info{};
  while (::read(signal_fd, &info, sizeof(info)) == sizeof(info)) {
    if (info.ssi_signo == SIGCHLD) continue;
    stop = true;
    // xpra is told alone: it stops its own X server and removes its
    // sockets from every socket dir, shared ones included. Signalled
    // with it, the X server dies first and xpra exits on the broken
    // display without cleaning up (tests/xpra counts the difference).
    // The rest of its tree is ended by the keeper once xpra has exited.
    ::kill(stop_command_alone ? command : -command, static_cast<int>(info.ssi_signo));
  }
  return stop;
}

}  // namespace

CommandWait wait_for_command(int signal_fd, CommandProcess& command, LeaseConversation& lease, UniqueFd& x_stderr,
                             bool stop_command_alone) {
  CommandWait wait;
  if (x_stderr) ::fcntl(x_stderr.get(), F_SETFL, O_NONBLOCK);
  for (;;) {
    // A negative fd is skipped by poll(): what is closed or lost is not watched.
    std::array<pollfd, kWatchedFds> fds{{{signal_fd, POLLIN, 0},
                                         {command.keeper_report_fd(), POLLIN, 0},
                                         {lease.broker_fd(), POLLIN, 0},
                                         {command.stderr_fd(), POLLIN, 0},
                                         {x_stderr ? x_stderr.get() : -1, POLLIN, 0}}};
    if (::poll(fds.data(), fds.size(), lease.poll_timeout_ms()) < 0 && errno != EINTR) return wait;
    lease.reattach_if_due();
    if (fds[kSignals].revents & POLLIN) {
      if (relay_stop_signals(signal_fd, command.pid(), stop_command_alone)) wait.stop_requested = true;
      reap_exited(nullptr);  // the keeper, an X server, orphans of a lost keeper
    }
    if (fds[kKeeper].revents & (POLLIN | POLLHUP | POLLERR)) {
      wait.status = command.read_keeper_report();
      return wait;
    }
    if (fds[kBroker].revents & (POLLIN | POLLHUP | POLLERR)) lease.check_connection();
    if (fds[kCommandStderr].revents & (POLLIN | POLLHUP)) command.relay_stderr();
    if (fds[kXServerStderr].revents & (POLLIN | POLLHUP))
      if (!still_open(forward_stderr(x_stderr.get(), nullptr))) x_stderr.reset();
  }
}

}  // namespace xpra_broker::client
