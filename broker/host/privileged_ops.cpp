#include "host/privileged_ops.h"

#include <fcntl.h>
#include <grp.h>
#include <pwd.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <memory>
#include <stdexcept>
#include <string>

namespace xpra_broker {

namespace {

struct CapFree {
  void operator()(void* p) const { cap_free(p); }
};
using CapState = std::unique_ptr<std::remove_pointer_t<cap_t>, CapFree>;

bool set_effective(cap_value_t cap, cap_flag_value_t value) {
  CapState caps(cap_get_proc());
  if (!caps) return false;
  if (cap_set_flag(caps.get(), CAP_EFFECTIVE, 1, &cap, value) != 0) return false;
  return cap_set_proc(caps.get()) == 0;
}

std::string cap_name(cap_value_t cap) {
  char* name = cap_to_name(cap);
  std::string out = name ? name : "cap_" + std::to_string(cap);
  cap_free(name);
  return out;
}

[[noreturn]] void fail(const std::string& what) {
  throw std::runtime_error(what + ": " + std::strerror(errno));
}

}  // namespace

bool capability_permitted(cap_value_t cap) {
  CapState caps(cap_get_proc());
  if (!caps) return false;
  cap_flag_value_t value = CAP_CLEAR;
  cap_get_flag(caps.get(), cap, CAP_PERMITTED, &value);
  return value == CAP_SET;
}

CapabilityBracket::CapabilityBracket(cap_value_t cap) : cap_(cap) {
  CapState caps(cap_get_proc());
  if (!caps) return;
  cap_flag_value_t permitted = CAP_CLEAR, effective = CAP_CLEAR;
  cap_get_flag(caps.get(), cap, CAP_PERMITTED, &permitted);
  cap_get_flag(caps.get(), cap, CAP_EFFECTIVE, &effective);
  // Raise only what is permitted and not already effective, so the bracket
  // leaves the effective set exactly as it found it.
  if (permitted == CAP_SET && effective == CAP_CLEAR) raised_ = set_effective(cap, CAP_SET);
}

CapabilityBracket::~CapabilityBracket() {
  if (raised_) set_effective(cap_, CAP_CLEAR);
}

int privileged_fchown(int fd, uid_t uid, gid_t gid) {
  CapabilityBracket bracket(CAP_CHOWN);
  // AT_EMPTY_PATH: the fd's own inode, also for an O_PATH fd.
  return ::fchownat(fd, "", uid, gid, AT_EMPTY_PATH);
}

int privileged_fchmod(int fd, mode_t mode) {
  CapabilityBracket bracket(CAP_FOWNER);
  if (::fchmod(fd, mode) == 0) return 0;
  if (errno != EBADF) return -1;
  // An O_PATH fd (a directory the broker may not read, e.g. one its owner
  // made 0700): chmod through the fd's /proc link, which names that inode
  // and no path a user could swap.
  const std::string by_fd = "/proc/self/fd/" + std::to_string(fd);
  return ::chmod(by_fd.c_str(), mode);
}

int privileged_pidfd_signal(int pidfd, int signo) {
  CapabilityBracket bracket(CAP_KILL);
  return static_cast<int>(::syscall(SYS_pidfd_send_signal, pidfd, signo, nullptr, 0));
}

int privileged_unlinkat(int dir_fd, const char* name) {
  CapabilityBracket bracket(CAP_FOWNER);
  return ::unlinkat(dir_fd, name, 0);
}

PrivilegeSetup setup_process_privileges(const std::string& user, const std::string& group) {
  PrivilegeSetup result;
  const bool root = ::geteuid() == 0;

  // Bounding set first, while CAP_SETPCAP may still be effective: a switch to
  // a non-root uid below clears the effective set. Without CAP_SETPCAP (a
  // systemd start) the bounding set stays as given, already narrowed by the
  // unit's CapabilityBoundingSet=.
  if (capability_permitted(CAP_SETPCAP)) {
    CapabilityBracket setpcap(CAP_SETPCAP);
    for (cap_value_t cap = 0; cap <= CAP_LAST_CAP; ++cap) {
      bool keep = false;
      for (cap_value_t k : kBrokerCapabilities) keep = keep || k == cap;
      if (!keep && CAP_IS_SUPPORTED(cap) && cap_drop_bound(cap) != 0 && errno != EINVAL)
        fail("cannot drop " + cap_name(cap) + " from the bounding set");
    }
  }

  if (root && (!user.empty() || !group.empty())) {
    uid_t uid = 0;
    gid_t gid = 0;
    if (!user.empty()) {
      const passwd* pw = ::getpwnam(user.c_str());
      if (!pw) throw std::runtime_error("user '" + user + "' does not exist (config key 'user')");
      uid = pw->pw_uid;
      gid = pw->pw_gid;
    }
    if (!group.empty()) {
      const struct group* gr = ::getgrnam(group.c_str());
      if (!gr) throw std::runtime_error("group '" + group + "' does not exist (config key 'group')");
      gid = gr->gr_gid;
    }
    // Keep the permitted set across setuid; everything else is rebuilt below.
    if (::prctl(PR_SET_KEEPCAPS, 1, 0, 0, 0) != 0) fail("prctl(PR_SET_KEEPCAPS)");
    if (::setgroups(1, &gid) != 0) fail("setgroups");
    if (::setresgid(gid, gid, gid) != 0) fail("setresgid");
    if (uid != 0 && ::setresuid(uid, uid, uid) != 0) fail("setresuid");
    if (::prctl(PR_SET_KEEPCAPS, 0, 0, 0, 0) != 0) fail("prctl(PR_SET_KEEPCAPS, 0)");
    result.switched_to = (user.empty() ? std::string("root") : user) + ":" + std::to_string(gid);
  }

  // Permitted: what we have of our three; effective and inheritable: empty.
  CapState current(cap_get_proc());
  if (!current) fail("cap_get_proc");
  CapState wanted(cap_init());
  for (cap_value_t cap : kBrokerCapabilities) {
    cap_flag_value_t have = CAP_CLEAR;
    cap_get_flag(current.get(), cap, CAP_PERMITTED, &have);
    if (have == CAP_SET) {
      cap_set_flag(wanted.get(), CAP_PERMITTED, 1, &cap, CAP_SET);
      result.kept.push_back(cap_name(cap));
    } else {
      result.missing.push_back(cap_name(cap));
    }
  }

  if (cap_reset_ambient() != 0 && errno != EINVAL) fail("cap_reset_ambient");
  if (cap_set_proc(wanted.get()) != 0) fail("cap_set_proc");
  if (::prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) fail("prctl(PR_SET_NO_NEW_PRIVS)");
  return result;
}

}  // namespace xpra_broker
