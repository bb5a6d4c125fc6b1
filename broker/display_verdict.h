// Is a display number really free on this host? The pure half of the check:
// display_probe.cpp gathers the facts, classify_display() decides.
//
// A stale artifact (a lock file whose pid is dead, a socket file nobody
// listens on, a symlink or other odd file where X puts its lock) is never
// mistaken for a running server, but it still makes the number unusable for
// an X server of another user, so the number is skipped and reported.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <string>

namespace xpra_broker {

enum class FileKind { absent, socket, regular, other };

struct SocketFileFacts {
  FileKind kind = FileKind::absent;
  uid_t owner = 0;
  bool listening = false;  // something accepted a connect()
};

struct DisplayFacts {
  std::uint32_t display = 0;
  // /tmp/.X<N>-lock
  FileKind lock_kind = FileKind::absent;
  uid_t lock_owner = 0;
  pid_t lock_pid = 0;  // 0: unreadable or not a number
  bool lock_pid_alive = false;
  // /tmp/.X11-unix/X<N>
  SocketFileFacts x11_socket;
  // @/tmp/.X11-unix/X<N> (the only socket of an X server run with -nolisten unix)
  bool x11_abstract_in_use = false;
  // Xpra: @xpra/<N> and <hostname>-<N> in the shared and the caller's socket dir
  bool xpra_abstract_in_use = false;
  SocketFileFacts xpra_shared_socket;
  SocketFileFacts xpra_user_socket;
};

enum class DisplayUse {
  free,   // nothing of it on the host
  live,   // something runs on it: skip until recheck
  stale,  // leftovers only: skip, report, clean (lifecycle)
};

struct DisplayVerdict {
  DisplayUse use = DisplayUse::free;
  std::string reason;  // for logs and `status`; empty when free
  uid_t owner = 0;     // who left or runs it, when known
  pid_t pid = 0;
};

DisplayVerdict classify_display(const DisplayFacts& facts);

}  // namespace xpra_broker
