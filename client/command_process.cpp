#include "command_process.h"

#include <fcntl.h>
#include <sys/wait.h>
#include <termios.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <iostream>

#include "exit_codes.h"

namespace xpra_broker::client {

namespace {

void warn(const std::string& message) { std::cerr << "xpra-request-display: " << message << "\n"; }

constexpr std::size_t kStderrTailBytes = 16384;

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
  Pipe exec_error;
  Pipe command_stderr;
  Pipe go;

  bool open() { return exec_error.open() && command_stderr.open() && go.open(); }
};

// In the child: EOF without the go byte means the parent died or the broker
// refused the pid, and the child must not run at all.
bool wait_for_go(int go_read) {
  char go = 0;
  while (::read(go_read, &go, 1) < 0 && errno == EINTR) {
  }
  return go == 'g';
}

[[noreturn]] void become_command(CommandPipes& pipes, std::vector<std::string>& args,
                                 const std::vector<EnvSetting>& env, const sigset_t& child_mask) {
  ::setpgid(0, 0);
  pipes.go.write.reset();  // else our own copy would hide the parent's death
  if (!wait_for_go(pipes.go.read.get())) ::_exit(kExitInternal);
  ::sigprocmask(SIG_SETMASK, &child_mask, nullptr);
  ::dup2(pipes.command_stderr.write.get(), STDERR_FILENO);
  for (const auto& e : env) ::setenv(e.name.c_str(), e.value.c_str(), e.overwrite ? 1 : 0);
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  ::execvp(argv[0], argv.data());
  const int err = errno;
  (void)!::write(pipes.exec_error.write.get(), &err, sizeof(err));
  ::_exit(exit_code_for_exec_error(err));
}

}  // namespace

int exit_status_of(int wait_status) {
  if (WIFEXITED(wait_status)) return WEXITSTATUS(wait_status);
  if (WIFSIGNALED(wait_status)) return 128 + WTERMSIG(wait_status);
  return kExitInternal;
}

int exit_code_for_exec_error(int err) { return err == ENOENT ? kExitCommandNotFound : kExitCannotExecute; }

ssize_t forward_stderr(int from, std::string* tail) {
  char buf[4096];
  const ssize_t got = ::read(from, buf, sizeof(buf));
  if (got <= 0) return got;
  (void)!::write(STDERR_FILENO, buf, static_cast<std::size_t>(got));
  if (tail) {
    tail->append(buf, static_cast<std::size_t>(got));
    if (tail->size() > kStderrTailBytes) tail->erase(0, tail->size() - kStderrTailBytes);
  }
  return got;
}

bool still_open(ssize_t read_result) { return read_result > 0 || (read_result < 0 && errno == EAGAIN); }

CommandProcess::CommandProcess(Keeper keeper, std::string program, UniqueFd exec_error, UniqueFd stderr_read,
                               UniqueFd go)
    : keeper_(std::move(keeper)), program_(std::move(program)), exec_error_(std::move(exec_error)),
      stderr_(std::move(stderr_read)), go_(std::move(go)) {}

std::optional<CommandProcess> CommandProcess::start(std::vector<std::string> args, const std::vector<EnvSetting>& env,
                                                    const KeeperOptions& keeper_options, const sigset_t& child_mask) {
  CommandPipes pipes;
  if (!pipes.open()) {
    warn(std::string("pipe: ") + std::strerror(errno));
    return std::nullopt;
  }
  std::optional<Keeper> keeper = start_keeper(
      keeper_options, [&pipes, &args, &env, &child_mask] { become_command(pipes, args, env, child_mask); });
  if (!keeper) {
    warn(std::string("fork: ") + std::strerror(errno));
    return std::nullopt;
  }
  // Our copies of the child's ends close as `pipes` goes: else no read of
  // ours would see EOF when the child execs or exits.
  ::fcntl(pipes.command_stderr.read.get(), F_SETFL, O_NONBLOCK);
  CommandProcess command(std::move(*keeper), args.front(), std::move(pipes.exec_error.read),
                         std::move(pipes.command_stderr.read), std::move(pipes.go.write));
  return command;
}

void CommandProcess::let_run() {
  (void)!::write(go_.get(), "g", 1);
  go_.reset();
}

void CommandProcess::never_run() {
  go_.reset();
  (void)read_keeper_report();  // the command exited, and the keeper with it
  reap_keeper();
}

int CommandProcess::wait_for_exec() {
  int exec_errno = 0;
  if (::read(exec_error_.get(), &exec_errno, sizeof(exec_errno)) != sizeof(exec_errno)) return 0;
  warn("cannot run '" + program_ + "': " + std::strerror(exec_errno) +
       (exec_errno == ENOENT ? " (is it installed and on PATH?)" : ""));
  return exec_errno;
}

std::optional<int> CommandProcess::read_keeper_report() const { return client::read_keeper_report(keeper_); }

void CommandProcess::reap_keeper() const { ::waitpid(keeper_.pid, nullptr, 0); }

void CommandProcess::relay_stderr() {
  if (stderr_open_) stderr_open_ = still_open(forward_stderr(stderr_.get(), &stderr_tail_));
}

// Non-blocking: an orphan of a lost keeper may still hold the pipe open.
void CommandProcess::relay_last_stderr() {
  while (stderr_open_ && forward_stderr(stderr_.get(), &stderr_tail_) > 0) {
  }
}

TerminalHandover::TerminalHandover()
    : own_terminal_(::isatty(STDIN_FILENO) && ::tcgetpgrp(STDIN_FILENO) == ::getpgrp()) {}

// SIGTTOU ignored: we are in the background then, and take the terminal
// back when the command ends.
void TerminalHandover::hand_to(pid_t pgid) const {
  if (!own_terminal_) return;
  ::signal(SIGTTOU, SIG_IGN);
  ::tcsetpgrp(STDIN_FILENO, pgid);
}

void TerminalHandover::take_back() const {
  if (own_terminal_) ::tcsetpgrp(STDIN_FILENO, ::getpgrp());
}

}  // namespace xpra_broker::client
