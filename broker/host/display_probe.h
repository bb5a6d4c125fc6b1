// Gathers what the host says about one display number: X lock file, X11
// sockets (filesystem and abstract), Xpra sockets. Reads only; never follows a
// symlink (lstat, O_NOFOLLOW, connect through an O_PATH fd).
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "host/display_name_watch.h"
#include "host/display_verdict.h"
#include "unique_fd.h"
#include "host/unix_socket_owners.h"
#include "host/xpra_shared_dirs.h"

namespace xpra_broker {

class DisplayProbe {
 public:
  // x11_tmp_dir: where .X<N>-lock and .X11-unix live (/tmp).
  // xpra_shared_dir: the shared Xpra socket dir (the runtime dir).
  // xpra_dirs: the shared socket dirs of the host's Xpra config (shared
  // with the cleaner), or null.
  DisplayProbe(std::string x11_tmp_dir, std::string xpra_shared_dir, std::string hostname,
               std::shared_ptr<XpraSharedDirs> xpra_dirs = nullptr);
  virtual ~DisplayProbe() = default;

  // user_dir: the caller's own socket dir, or empty.
  virtual DisplayFacts probe(std::uint32_t display, const std::string& user_dir) const;

  const std::string& hostname() const { return hostname_; }
  // The shared Xpra socket dirs it checks, and their state now.
  std::vector<XpraSharedDirs::Report> xpra_dir_reports() const {
    return xpra_dirs_ ? xpra_dirs_->report() : std::vector<XpraSharedDirs::Report>{};
  }
  // The watch's inotify fd (or -1), for the event loop to drain it whenever
  // it is readable, and the drain itself.
  int watch_fd() const { return watch_.fd(); }
  std::size_t watched_directories() const { return watch_.watched_directories(); }
  std::size_t watch_rescans() const { return watch_.rescans(); }
  // No X lock file for the display right now (the watch, else one stat).
  bool x_lock_absent(std::uint32_t display) const;
  // The event loop's drain when the fd became readable: counted as one
  // wake-up of the broker by the watch.
  void drain_watch() const {
    ++watch_wakeups_;
    watch_.drain();
  }
  std::uint64_t watch_wakeups() const { return watch_wakeups_; }
  const DisplayNameWatch::Activity& watch_activity() const { return watch_.activity(); }

  // Within one request the watch is drained once, before its first answer
  // (all of a request's answers are then as fresh as stats made at that
  // moment); outside a request, before every answer.
  void begin_request() const { freshness_ = Freshness::in_request; }
  void end_request() const { freshness_ = Freshness::idle; }

  // The user's directory has not been changed (mode, owner, removed, moved)
  // since user_dir_verified() was last called for it, as far as the watch
  // knows; false when it does not know.
  bool user_dir_intact(const std::string& user_dir) const;
  // Call right after checking the directory, with no answer in between.
  void user_dir_verified(const std::string& user_dir) const;

 private:
  std::string x11_tmp_dir_;
  std::string xpra_shared_dir_;
  std::string hostname_;
  UniqueFd tmp_dir_fd_;
  UniqueFd shared_dir_fd_;
  void refresh() const;
  // "<hostname>-<N>" in the Xpra config's shared dir `index`, into `f`.
  void probe_xpra_dir(std::size_t index, const DisplayNames& names, DisplayFacts& f) const;
  mutable DisplayNameWatch watch_;
  mutable std::uint64_t watch_wakeups_ = 0;
  enum class Freshness { idle, in_request, drained };
  mutable Freshness freshness_ = Freshness::idle;
  mutable AbstractListenerProbe abstract_probe_;
  mutable AbstractListenerOwners listener_owners_{std::chrono::milliseconds(200)};
  std::shared_ptr<XpraSharedDirs> xpra_dirs_;
  // The generation of each Xpra dir's fd the watch follows.
  mutable std::vector<std::uint64_t> xpra_watched_generation_;
};

std::string local_hostname();

}  // namespace xpra_broker
