// Who listens on an abstract Unix socket name? The kernel knows (sock_diag,
// UNIX_DIAG_UID, Linux 5.3): the uid that created the listening socket,
// read without ptrace and without any capability, as `ss -xlp` does. A
// display number squatted with @/tmp/.X11-unix/X<N> or @xpra/<N> is then
// blamed on its squatter instead of on "uid 0" (issue 21).
//
// Any user can bind abstract names, so the answer is a fact about the
// kernel's socket, not a claim: it names who to ask, never whom to signal.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <optional>
#include <string>
#include <unordered_map>

namespace xpra_broker {

// Every listening abstract Unix socket on the host, by name (without the
// leading NUL), with its owner's uid. Empty if sock_diag is unavailable.
// One netlink dump: cost grows with the listening sockets on the host.
std::unordered_map<std::string, uid_t> abstract_listener_owners();

// abstract_listener_owners(), taken at most once per `max_age`: the probe
// asks about many numbers in a row (a squatted range is rechecked number by
// number), and one dump answers them all.
class AbstractListenerOwners {
 public:
  explicit AbstractListenerOwners(std::chrono::milliseconds max_age = std::chrono::milliseconds(1000))
      : max_age_(max_age) {}
  std::optional<uid_t> owner_of(const std::string& name);

 private:
  std::chrono::milliseconds max_age_;
  std::chrono::steady_clock::time_point taken_{};
  bool have_ = false;
  std::unordered_map<std::string, uid_t> owners_;
};

}  // namespace xpra_broker
