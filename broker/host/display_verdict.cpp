#include "host/display_verdict.h"

namespace xpra_broker {

DisplayVerdict classify_display(const DisplayFacts& f) {
  const LockState lock = judge_lock(f.lock);
  // Live users first: any one of them means a server owns the number.
  if (lock == LockState::live) return {DisplayUse::live, describe_lock(f.lock), f.lock.owner, f.lock.pid};
  if (f.x11_socket.kind == FileKind::socket && f.x11_socket.listening)
    return {DisplayUse::live, "X11 socket has a listener", f.x11_socket.owner, 0};
  if (f.x11_abstract_in_use)
    return {DisplayUse::live, "abstract X11 socket in use", f.x11_abstract_owner.value_or(0), 0,
            f.x11_abstract_owner.has_value()};
  if (f.xpra_abstract_in_use)
    return {DisplayUse::live, "abstract xpra socket in use", f.xpra_abstract_owner.value_or(0), 0,
            f.xpra_abstract_owner.has_value()};
  if (f.xpra_shared_socket.kind == FileKind::socket && f.xpra_shared_socket.listening)
    return {DisplayUse::live, "xpra socket has a listener", f.xpra_shared_socket.owner, 0};
  if (f.xpra_user_socket.kind == FileKind::socket && f.xpra_user_socket.listening)
    return {DisplayUse::live, "xpra socket has a listener", f.xpra_user_socket.owner, 0};
  for (const auto& x : f.xpra_dir_entries)
    if (judge_shared_xpra_entry(x.entry) == SharedXpraEntry::live)
      return {DisplayUse::live, "xpra socket in " + x.dir + " has a listener", x.entry.owner, 0};
  for (const auto& d : f.xpra_session_dirs)
    if (judge_xpra_session_dir(d) == XpraSessionDirState::live)
      return {DisplayUse::live, "xpra session dir " + d.path + " of a running session (its owner runs an X server or xpra for the display)", d.owner, 0};

  // Then leftovers.
  if (lock == LockState::stale)
    return {DisplayUse::stale, describe_lock(f.lock), f.lock.owner, f.lock.kind == FileKind::regular ? f.lock.pid : 0};
  if (socket_file_is_stale(f.x11_socket))
    return {DisplayUse::stale,
            f.x11_socket.kind == FileKind::socket ? "stale X11 socket (no listener)" : "X11 socket path is not a socket",
            f.x11_socket.owner, 0};
  if (f.xpra_shared_socket.kind != FileKind::absent)
    return {DisplayUse::stale, "stale xpra socket in the shared socket dir", f.xpra_shared_socket.owner, 0};
  // Xpra refuses the number while any of these is there.
  for (const auto& x : f.xpra_dir_entries) {
    const SharedXpraEntry entry = judge_shared_xpra_entry(x.entry);
    if (entry == SharedXpraEntry::stale)
      return {DisplayUse::stale, "stale xpra socket in " + x.dir + " (no listener)", x.entry.owner, 0};
    if (entry == SharedXpraEntry::planted)
      return {DisplayUse::stale, "not a socket where xpra puts the display's socket in " + x.dir + " (left alone)",
              x.entry.owner, 0};
  }
  // Xpra 5.x/6.x fail a start on N after its X server started while another
  // user's session dir for N is there.
  for (const auto& d : f.xpra_session_dirs) {
    if (judge_xpra_session_dir(d) == XpraSessionDirState::stale)
      return {DisplayUse::stale, "stale xpra session dir " + d.path + " (its owner runs no X server or xpra for the display)", d.owner, 0};
    return {DisplayUse::stale, "not a directory where xpra 5/6 put the display's session dir: " + d.path + " (left alone)",
            d.owner, 0};
  }
  // A dead xpra socket in the caller's own directory is not listed: Xpra
  // finds it DEAD and removes it itself, as it is the user's own.
  return {};
}

std::optional<ConflictEvidence> conflict_with_another_owner(const DisplayFacts& f, uid_t reporter) {
  auto foreign = [&](FileKind kind, uid_t owner) { return kind != FileKind::absent && owner != reporter; };
  if (foreign(f.lock.kind, f.lock.owner))
    return ConflictEvidence{"X lock file of uid " + std::to_string(f.lock.owner) + ": " + describe_lock(f.lock)};
  if (foreign(f.x11_socket.kind, f.x11_socket.owner))
    return ConflictEvidence{"X11 socket of uid " + std::to_string(f.x11_socket.owner) +
                            (f.x11_socket.listening ? " with a listener" : " (no listener)")};
  if (foreign(f.xpra_shared_socket.kind, f.xpra_shared_socket.owner))
    return ConflictEvidence{"xpra socket of uid " + std::to_string(f.xpra_shared_socket.owner) +
                            " in the shared socket dir"};
  for (const auto& x : f.xpra_dir_entries)
    if (foreign(x.entry.kind, x.entry.owner))
      return ConflictEvidence{(x.entry.kind == FileKind::socket ? "xpra socket of uid " : "non-socket of uid ") +
                              std::to_string(x.entry.owner) + " in xpra socket dir " + x.dir +
                              (x.entry.listening ? " with a listener" : "")};
  for (const auto& d : f.xpra_session_dirs)
    if (d.owner != reporter) return ConflictEvidence{"xpra session dir " + d.path + " of uid " + std::to_string(d.owner)};
  // An abstract name's listener: named by the kernel when it can; the
  // reporter's own is no evidence.
  const auto abstract = [&](bool in_use, const std::optional<uid_t>& owner,
                            const char* what) -> std::optional<ConflictEvidence> {
    if (!in_use) return std::nullopt;
    if (!owner) return ConflictEvidence{std::string(what) + " in use", true};
    if (*owner == reporter) return std::nullopt;
    return ConflictEvidence{std::string(what) + " of uid " + std::to_string(*owner) + " with a listener"};
  };
  if (auto e = abstract(f.x11_abstract_in_use, f.x11_abstract_owner, "abstract X11 socket")) return e;
  if (auto e = abstract(f.xpra_abstract_in_use, f.xpra_abstract_owner, "abstract xpra socket")) return e;
  return std::nullopt;
}

}  // namespace xpra_broker
