#include "display_verdict.h"

namespace xpra_broker {

DisplayVerdict classify_display(const DisplayFacts& f) {
  // Live users first: any one of them means a server owns the number.
  if (f.lock_kind == FileKind::regular && f.lock_pid > 0 && f.lock_pid_alive)
    return {DisplayUse::live, "X server running (lock pid " + std::to_string(f.lock_pid) + ")", f.lock_owner,
            f.lock_pid};
  if (f.x11_socket.kind == FileKind::socket && f.x11_socket.listening)
    return {DisplayUse::live, "X11 socket has a listener", f.x11_socket.owner, 0};
  if (f.x11_abstract_in_use) return {DisplayUse::live, "abstract X11 socket in use", 0, 0};
  if (f.xpra_abstract_in_use) return {DisplayUse::live, "abstract xpra socket in use", 0, 0};
  if (f.xpra_shared_socket.kind == FileKind::socket && f.xpra_shared_socket.listening)
    return {DisplayUse::live, "xpra socket has a listener", f.xpra_shared_socket.owner, 0};
  if (f.xpra_user_socket.kind == FileKind::socket && f.xpra_user_socket.listening)
    return {DisplayUse::live, "xpra socket has a listener", f.xpra_user_socket.owner, 0};

  // Then leftovers.
  if (f.lock_kind == FileKind::regular)
    return {DisplayUse::stale,
            f.lock_pid > 0 ? "stale lock file (pid " + std::to_string(f.lock_pid) + " is dead)"
                           : "unreadable lock file",
            f.lock_owner, f.lock_pid};
  if (f.lock_kind != FileKind::absent) return {DisplayUse::stale, "lock path is not a regular file", f.lock_owner, 0};
  if (f.x11_socket.kind == FileKind::socket)
    return {DisplayUse::stale, "stale X11 socket (no listener)", f.x11_socket.owner, 0};
  if (f.x11_socket.kind != FileKind::absent)
    return {DisplayUse::stale, "X11 socket path is not a socket", f.x11_socket.owner, 0};
  if (f.xpra_shared_socket.kind != FileKind::absent)
    return {DisplayUse::stale, "stale xpra socket in the shared socket dir", f.xpra_shared_socket.owner, 0};
  // A dead xpra socket in the caller's own directory is not listed: Xpra
  // finds it DEAD and removes it itself, as it is the user's own.
  return {};
}

}  // namespace xpra_broker
