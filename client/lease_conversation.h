// The lease conversation of `exec`: what the client tells the broker about
// one lease while its command runs (the processes to track, a failed start,
// how it ended) and the link to the broker, which may go away (a restart)
// and is taken back with the lease's reattach token. No process mechanics
// here (command_process.h), no waiting (exec_wait_loop.h).
#pragma once

#include <sys/types.h>

#include <chrono>
#include <optional>
#include <string>

#include "broker_call.h"

namespace xpra_broker::client {

class LeaseConversation {
 public:
  // Where the conversation stands with the broker.
  enum class Link {
    connected,    // requests go out on the connection
    reattaching,  // the broker closed it; reconnecting with back-off
    lease_gone,   // a new broker no longer has the lease: nothing left to say
  };

  LeaseConversation(BrokerConnection& conn, std::string socket_path, v1::Lease lease, std::string reattach_token);

  const v1::Lease& lease() const { return lease_; }
  Link link() const { return link_; }

  // False if the broker did not take it (said why): nothing may then run
  // untracked, so the caller stops the process before it does anything.
  bool report_process(pid_t pid, v1::ProcessRole role);

  // Reports a failed start; for a display conflict, says when the broker
  // could not confirm it (then it counts as a failed start of the user's own).
  void report_start_failure(v1::StartFailure failure, const std::string& detail);

  // Releases the lease, with how the session ended (`exit_status`; nothing
  // when it did not fail: the restart-loop back-off counts only failures),
  // and waits up to `limit` until the broker has reaped it, reaping our own
  // exited children meanwhile (what the broker kills may be one).
  void release(std::optional<int> exit_status, std::chrono::milliseconds limit);

  // The connection to watch for the broker closing it, -1 unless connected.
  int broker_fd() const { return link_ == Link::connected ? conn_.fd() : -1; }
  // The connection was readable: the broker sends nothing unasked, so that
  // is EOF or an error (then: reattaching, said so), or a spurious wake-up.
  void check_connection();
  // How long a poll() may sleep before the next reattach attempt (-1: no limit).
  int poll_timeout_ms() const;
  // Tries to reattach if an attempt is due (the broker restarted or crashed):
  // back to connected, lease_gone if the new broker refuses the token, or
  // another attempt later (back-off 100 ms doubling up to 2 s). The broker
  // keeps a recovered lease for reattach-grace-seconds; after that it reaps
  // the session itself.
  void reattach_if_due();

 private:
  using Clock = std::chrono::steady_clock;

  BrokerConnection& conn_;
  std::string socket_path_;
  v1::Lease lease_;
  std::string reattach_token_;
  Link link_ = Link::connected;
  std::chrono::milliseconds reconnect_delay_{100};
  Clock::time_point reconnect_at_;
};

}  // namespace xpra_broker::client
