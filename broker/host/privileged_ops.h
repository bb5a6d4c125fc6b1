// Every system call of the broker that needs a Linux capability lives here.
//
// The broker keeps CAP_CHOWN, CAP_FOWNER and CAP_KILL in its permitted set
// only; each is raised into the effective set just around the one call that
// needs it (CapabilityBracket) and lowered again. Nothing it spawns inherits
// any capability (inheritable and ambient sets are cleared at start-up).
#pragma once

#include <sys/types.h>
#include <sys/capability.h>

#include <string>
#include <vector>

namespace xpra_broker {

// The capabilities the broker may use, and why:
//   CAP_CHOWN   hand a per-user directory to its user (fchown).
//   CAP_FOWNER  remove another user's stale lock/socket from the sticky /tmp
//               dirs, and chmod a directory it no longer owns.
//   CAP_KILL    end the processes of a lease that belongs to another user.
inline constexpr cap_value_t kBrokerCapabilities[] = {CAP_CHOWN, CAP_FOWNER, CAP_KILL};

// Raises one capability in the effective set for the lifetime of the object,
// if it is permitted; otherwise does nothing and the call runs unprivileged.
class CapabilityBracket {
 public:
  explicit CapabilityBracket(cap_value_t cap);
  ~CapabilityBracket();
  CapabilityBracket(const CapabilityBracket&) = delete;
  CapabilityBracket& operator=(const CapabilityBracket&) = delete;
  bool raised() const { return raised_; }

 private:
  cap_value_t cap_;
  bool raised_ = false;
};

bool capability_permitted(cap_value_t cap);

// fchown() of an fd already opened without following links (CAP_CHOWN).
int privileged_fchown(int fd, uid_t uid, gid_t gid);
// fchmod() of an fd the broker may not own (CAP_FOWNER).
int privileged_fchmod(int fd, mode_t mode);

// pidfd_send_signal() to a process that may belong to another user (CAP_KILL).
int privileged_pidfd_signal(int pidfd, int signo);
// unlinkat() of another user's file in a sticky directory such as
// /tmp/.X11-unix (CAP_FOWNER). Never follows a link: unlinkat removes the
// directory entry itself.
int privileged_unlinkat(int dir_fd, const char* name);

struct PrivilegeSetup {
  std::vector<std::string> kept;     // capability names kept permitted
  std::vector<std::string> missing;  // wanted but not available
  std::string switched_to;           // "user:group" when root switched, else empty
};

// Start-up, once: when root, switch to user/group (if given) keeping only the
// broker's capabilities; then clear effective, inheritable and ambient sets,
// shrink the bounding set and set no_new_privs. Throws std::runtime_error with
// a message for the admin on failure (a start-up step: docs/hacking.md, "Errors").
PrivilegeSetup setup_process_privileges(const std::string& user, const std::string& group);

}  // namespace xpra_broker
