#include "session_keeper.h"

#include <dirent.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <vector>

#include "exit_codes.h"
#include "process_tree.h"

namespace xpra_broker::client {

namespace {

using Clock = std::chrono::steady_clock;


// Every descriptor but stdin, stdout, stderr and `keep`.
void close_inherited_fds(const std::vector<int>& keep) {
  DIR* dir = ::opendir("/proc/self/fd");
  if (!dir) return;
  std::vector<int> to_close;
  while (const dirent* entry = ::readdir(dir)) {
    if (entry->d_name[0] == '.') continue;
    const int fd = std::atoi(entry->d_name);
    if (fd > 2 && fd != ::dirfd(dir) && std::find(keep.begin(), keep.end(), fd) == keep.end()) to_close.push_back(fd);
  }
  ::closedir(dir);
  for (int fd : to_close) ::close(fd);
}

void send_int(int fd, int value) { (void)!::send(fd, &value, sizeof(value), MSG_NOSIGNAL); }

// The keeper itself, after the fork; never returns.
class KeeperProcess {
 public:
  KeeperProcess(const KeeperOptions& options, int report, int lifeline)
      : options_(options), report_(report), lifeline_(lifeline) {}

  [[noreturn]] void run(const std::function<void()>& become_command) {
    // Named for `ps`; the command's child takes the client's name back, so
    // the broker's log does not call the command "xpra-rd-keeper" before it
    // execs.
    char client_name[16] = {};
    ::prctl(PR_GET_NAME, client_name, 0, 0, 0);
    ::prctl(PR_SET_NAME, "xpra-rd-keeper", 0, 0, 0);
    ::setpgid(0, 0);  // out of the client's group: a kill of that group spares us
    ::prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0);
    // The client blocked these (its signalfd); we read ours the same way.
    sigset_t handled;
    sigemptyset(&handled);
    for (int s : {SIGTERM, SIGINT, SIGHUP, SIGCHLD}) sigaddset(&handled, s);
    ::sigprocmask(SIG_BLOCK, &handled, nullptr);
    signals_ = ::signalfd(-1, &handled, SFD_CLOEXEC | SFD_NONBLOCK);

    // Closed by the command's child once it has its name and group: the
    // client hears of the pid only then, so the broker's log names it right.
    int named[2] = {-1, -1};
    if (::pipe2(named, O_CLOEXEC) != 0) {
      send_int(report_, -errno);
      ::_exit(kExitOsError);
    }
    command_ = ::fork();
    if (command_ < 0) {
      send_int(report_, -errno);
      ::_exit(kExitOsError);
    }
    if (command_ == 0) {
      ::close(report_);
      ::close(lifeline_);
      ::close(signals_);
      ::close(named[0]);
      ::prctl(PR_SET_NAME, client_name, 0, 0, 0);
      ::setpgid(0, 0);
      ::close(named[1]);
      become_command();
      ::_exit(kExitInternal);
    }
    ::close(named[1]);
    char ignored;
    while (::read(named[0], &ignored, 1) < 0 && errno == EINTR) {
    }
    ::close(named[0]);
    ::setpgid(command_, command_);  // also here: the group exists before the client hears of it
    close_inherited_fds({report_, lifeline_, signals_});
    send_int(report_, command_);
    watch();
    const TreeStop stop = end_process_tree(grace_, [this](pid_t pid, int status) { note_exit(pid, status); });
    (void)stop;
    send_int(report_, status_.value_or(W_EXITCODE(kExitInternal, 0)));
    ::_exit(0);
  }

 private:
  // Until the tree is to be ended: the command exited, the client is gone
  // and the command did not stop within the grace, or we were signalled.
  void watch() {
    std::optional<Clock::time_point> command_told_at;
    for (;;) {
      pollfd fds[2] = {{signals_, POLLIN, 0}, {lifeline_, POLLIN, 0}};
      int timeout = -1;
      if (command_told_at) {
        const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
            *command_told_at + options_.grace - Clock::now());
        if (left.count() <= 0) return;
        timeout = static_cast<int>(left.count());
      }
      if (::poll(fds, lifeline_ >= 0 ? 2 : 1, timeout) < 0 && errno != EINTR) return;
      if (fds[0].revents & POLLIN) {
        signalfd_siginfo info{};
        while (::read(signals_, &info, sizeof(info)) == sizeof(info)) {
          if (info.ssi_signo == SIGCHLD) continue;
          // From the broker's reaper (release, logout, an expired reattach
          // grace), which sends SIGTERM to the whole tree and SIGKILL after
          // the admin's reap-grace-ms: pass SIGTERM on to what appears
          // meanwhile, and leave SIGKILL to the reaper's timing.
          grace_.reset();
          return;
        }
        reap_exited([this](pid_t pid, int status) { note_exit(pid, status); });
        if (status_) return;
      }
      if (lifeline_ >= 0 && (fds[1].revents & (POLLIN | POLLHUP | POLLERR))) {
        // The client holds the only writer and never writes: this is EOF.
        ::close(lifeline_);
        lifeline_ = -1;
        ::kill(options_.stop_command_alone ? command_ : -command_, SIGTERM);
        command_told_at = Clock::now();
      }
    }
  }

  void note_exit(pid_t pid, int status) {
    if (pid == command_ && !status_) status_ = status;
  }

  const KeeperOptions& options_;
  int report_;
  int lifeline_;
  int signals_ = -1;
  pid_t command_ = -1;
  std::optional<std::chrono::milliseconds> grace_ = options_.grace;
  std::optional<int> status_;
};

bool read_int(int fd, int& value) {
  ssize_t got;
  do got = ::recv(fd, &value, sizeof(value), MSG_WAITALL);
  while (got < 0 && errno == EINTR);
  return got == sizeof(value);
}

}  // namespace

std::optional<Keeper> start_keeper(const KeeperOptions& options, const std::function<void()>& become_command) {
  int report[2], lifeline[2];
  if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, report) != 0) return std::nullopt;
  UniqueFd report_ours(report[0]), report_theirs(report[1]);
  if (::pipe2(lifeline, O_CLOEXEC) != 0) return std::nullopt;
  UniqueFd lifeline_read(lifeline[0]), lifeline_write(lifeline[1]);

  const pid_t pid = ::fork();
  if (pid < 0) return std::nullopt;
  if (pid == 0) {
    report_ours.reset();
    lifeline_write.reset();  // else our own copy would hide the client's death
    KeeperProcess(options, report_theirs.release(), lifeline_read.release()).run(become_command);
  }
  ::setpgid(pid, pid);
  report_theirs.reset();
  lifeline_read.reset();
  Keeper keeper{pid, -1, std::move(report_ours), std::move(lifeline_write)};
  int command = 0;
  if (!read_int(keeper.report.get(), command) || command <= 0) {
    if (command < 0) errno = -command;
    ::waitpid(pid, nullptr, 0);
    return std::nullopt;
  }
  keeper.command = command;
  return keeper;
}

std::optional<int> read_keeper_report(const Keeper& keeper) {
  int status = 0;
  if (!read_int(keeper.report.get(), status)) return std::nullopt;
  return status;
}

}  // namespace xpra_broker::client
