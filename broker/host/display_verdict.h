// Is a display number really free on this host? The pure half of the check:
// display_probe.cpp gathers the facts, classify_display() decides.
//
// A stale artifact (a lock file whose pid is dead or that names no X server
// of its owner, a socket file nobody listens on, a symlink or other odd file
// where X puts its lock) is never mistaken for a running server, but it still
// makes the number unusable for an X server of another user, so the number is
// skipped and reported. What counts as stale is decided in host_display.h.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "core/broker_host.h"
#include "host/host_display.h"
#include "host/xpra_session_dirs.h"

namespace xpra_broker {

struct DisplayFacts {
  std::uint32_t display = 0;
  // /tmp/.X<N>-lock, and what the host says about the pid it names
  LockFacts lock;
  // /tmp/.X11-unix/X<N>
  SocketFileFacts x11_socket;
  // @/tmp/.X11-unix/X<N> (the only socket of an X server run with -nolisten unix)
  bool x11_abstract_in_use = false;
  // Xpra: @xpra/<N> and <hostname>-<N> in the shared and the caller's socket dir
  bool xpra_abstract_in_use = false;
  // Who listens on those abstract names, when the kernel says (sock_diag).
  std::optional<uid_t> x11_abstract_owner;
  std::optional<uid_t> xpra_abstract_owner;
  SocketFileFacts xpra_shared_socket;
  SocketFileFacts xpra_user_socket;
  // <hostname>-<N> in the shared socket dirs of the host's Xpra config
  // (judged by judge_shared_xpra_entry()); only the dirs that hold one.
  struct XpraDirEntry {
    std::string dir;
    SocketFileFacts entry;
  };
  std::vector<XpraDirEntry> xpra_dir_entries;
  // Xpra 5.x/6.x session dirs for N in the X tmp dir ("<tmp>/N",
  // "<tmp>/xpra/N"), judged by judge_xpra_session_dir(); only those there.
  std::vector<XpraSessionDirFacts> xpra_session_dirs;
};

DisplayVerdict classify_display(const DisplayFacts& facts);

// A start on the display failed with a conflict the reporter blames on the
// host: is there evidence of someone else there? Any lock or socket file of
// another owner (in the shared Xpra socket dirs too), or an abstract socket
// in use of another owner (when the kernel does not say whose:
// owner_unknown, and the caller rules out the reporter's own X server).
// Nullopt: no such evidence, and the report is not believed.
std::optional<ConflictEvidence> conflict_with_another_owner(const DisplayFacts& facts, uid_t reporter);

}  // namespace xpra_broker
