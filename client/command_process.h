// The process mechanics of `exec`: the command forked under its keeper
// (session_keeper.h), held before exec until the broker tracks it, its
// stderr relayed, its exec errors and wait status turned into exit codes.
// Nothing here speaks to the broker: lease_conversation.h does.
#pragma once

#include <signal.h>
#include <sys/types.h>

#include <optional>
#include <string>
#include <vector>

#include "session_command.h"
#include "session_keeper.h"
#include "unique_fd.h"

namespace xpra_broker::client {

// A wait status as a shell reports it: the exit status, or 128 + signal.
int exit_status_of(int wait_status);

// As a shell reports a command it could not run: 127 not found, 126 else.
int exit_code_for_exec_error(int err);

// Copies one read's worth of `from` (non-blocking) to our stderr and, when
// `tail` is given, keeps its last 16 KiB there (for the display-conflict
// check). Returns read()'s result: > 0 copied, 0 the writers closed it,
// < 0 nothing now (EAGAIN) or an error.
ssize_t forward_stderr(int from, std::string* tail);
// Whether more may come after that read result (copied, or EAGAIN).
bool still_open(ssize_t read_result);

// The command from fork until its tree is gone. Move-only; the caller must
// either let_run() it or never_run() it, then wait for the keeper's report.
class CommandProcess {
 public:
  // Forks the keeper and, under it, the command in its own process group
  // with `child_mask` as its signal mask and `env` added; the command waits
  // before exec until let_run(). nullopt if a pipe or fork failed (said why
  // on stderr).
  static std::optional<CommandProcess> start(std::vector<std::string> args, const std::vector<EnvSetting>& env,
                                             const KeeperOptions& keeper_options, const sigset_t& child_mask);

  pid_t pid() const { return keeper_.command; }  // also its process group
  pid_t keeper_pid() const { return keeper_.pid; }
  const std::string& program() const { return program_; }

  // Lets it exec. Once the broker tracks it and the keeper, not before: a
  // client killed in between leaves no untracked command behind.
  void let_run();
  // It must not run (the broker did not take it): without the go byte it
  // exits before exec, and the keeper with it; both are reaped here.
  void never_run();
  // Blocks until it has exec'd or failed to: 0, or the errno of a failed
  // exec (said why on stderr).
  int wait_for_exec();

  // Readable once the keeper reports (the command's tree is gone) or died.
  int keeper_report_fd() const { return keeper_.report.get(); }
  // The command's wait status, nullopt if the keeper died without a report.
  std::optional<int> read_keeper_report() const;
  void reap_keeper() const;

  // The command's stderr, -1 once it closed; relayed to ours by
  // relay_stderr(), its tail kept for the display-conflict check.
  int stderr_fd() const { return stderr_open_ ? stderr_.get() : -1; }
  void relay_stderr();
  // What it wrote just before it exited (blocking until EOF).
  void relay_last_stderr();
  const std::string& stderr_tail() const { return stderr_tail_; }

 private:
  CommandProcess(Keeper keeper, std::string program, UniqueFd exec_error, UniqueFd stderr_read, UniqueFd go);

  Keeper keeper_;
  std::string program_;
  UniqueFd exec_error_;  // its errno when exec fails; EOF once exec succeeded
  UniqueFd stderr_;
  bool stderr_open_ = true;
  std::string stderr_tail_;
  UniqueFd go_;  // one byte 'g' lets it exec; closing it unwritten stops it
};

// The terminal as a shell hands it to a foreground job and takes it back:
// only when we are in the foreground of our terminal to begin with.
class TerminalHandover {
 public:
  TerminalHandover();
  void hand_to(pid_t pgid) const;
  void take_back() const;

 private:
  bool own_terminal_;
};

}  // namespace xpra_broker::client
