#include "host/display_probe.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstddef>
#include <charconv>
#include <cstring>

#include "unique_fd.h"

namespace xpra_broker {

std::string local_hostname() {
  char buf[256] = {};
  if (::gethostname(buf, sizeof(buf) - 1) != 0) return "localhost";
  return buf;
}

DisplayProbe::DisplayProbe(std::string x11_tmp_dir, std::string xpra_shared_dir, std::string hostname,
                           std::shared_ptr<XpraSharedDirs> xpra_dirs)
    : x11_tmp_dir_(std::move(x11_tmp_dir)), xpra_shared_dir_(std::move(xpra_shared_dir)),
      hostname_(std::move(hostname)),
      // Opened once: every probe works relative to these, which saves a path
      // walk per file and never follows a link in the last component.
      tmp_dir_fd_(::open(x11_tmp_dir_.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC)),
      shared_dir_fd_(::open(xpra_shared_dir_.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC)),
      watch_(tmp_dir_fd_.get(), shared_dir_fd_.get(), hostname_), xpra_dirs_(std::move(xpra_dirs)),
      xpra_watched_generation_(xpra_dirs_ ? xpra_dirs_->size() : 0, 0) {}

void DisplayProbe::refresh() const {
  if (freshness_ == Freshness::drained) return;
  watch_.drain();
  if (freshness_ == Freshness::in_request) freshness_ = Freshness::drained;
}

bool DisplayProbe::user_dir_intact(const std::string& user_dir) const {
  refresh();
  return watch_.user_dir_intact(user_dir);
}

void DisplayProbe::user_dir_verified(const std::string& user_dir) const { watch_.user_dir_verified(user_dir); }

bool DisplayProbe::x_lock_absent(std::uint32_t display) const {
  refresh();
  if (watch_.lock_absent(display)) return true;
  const std::string lock_name = (tmp_dir_fd_ ? "" : x11_tmp_dir_ + "/") + DisplayNames(display, x11_tmp_dir_, "").lock;
  return name_absent(tmp_dir_fd_ ? tmp_dir_fd_.get() : AT_FDCWD, lock_name.c_str());
}

DisplayFacts DisplayProbe::probe(std::uint32_t display, const std::string& user_dir) const {
  DisplayFacts f;
  f.display = display;
  const DisplayNames names(display, x11_tmp_dir_, hostname_);
  const int tmp = tmp_dir_fd_ ? tmp_dir_fd_.get() : AT_FDCWD;
  const std::string tmp_prefix = tmp_dir_fd_ ? "" : x11_tmp_dir_ + "/";
  // The watch answers "absent" for the files it has seen no name of; the
  // filesystem is asked about the rest.
  refresh();

  if (!watch_.lock_absent(display)) f.lock = read_lock_at(tmp, tmp_prefix + names.lock, display);

  // .X11-unix is looked up per probe: it may be created (or recreated) by the
  // first X server after the broker started. The stat through it may follow
  // a planted .X11-unix symlink, but it only ever answers "absent"; anything
  // found is looked at again through the directory opened with O_NOFOLLOW.
  const std::string x11_in_tmp = tmp_prefix + names.x11_dir;
  if (!watch_.x11_socket_absent(display) && !name_absent(tmp, (x11_in_tmp + "/" + names.x11_socket).c_str())) {
    UniqueFd x11_dir(::openat(tmp, x11_in_tmp.c_str(), O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
    if (x11_dir) f.x11_socket = probe_socket_file_at(x11_dir.get(), names.x11_socket, names.x11_abstract);
  }
  f.x11_abstract_in_use = abstract_probe_.in_use(names.x11_abstract);
  f.xpra_abstract_in_use = abstract_probe_.in_use(names.xpra_abstract);
  // Rare (a number in use outside the broker): ask the kernel whose it is.
  if (f.x11_abstract_in_use) f.x11_abstract_owner = listener_owners_.owner_of(names.x11_abstract);
  if (f.xpra_abstract_in_use) f.xpra_abstract_owner = listener_owners_.owner_of(names.xpra_abstract);
  const std::string shared_path = xpra_shared_dir_ + "/" + names.xpra_socket;
  if (!watch_.shared_socket_absent(display))
    f.xpra_shared_socket = shared_dir_fd_ ? probe_socket_file_at(shared_dir_fd_.get(), names.xpra_socket, shared_path)
                                          : probe_socket_file(shared_path);
  if (!user_dir.empty() && !watch_.user_socket_absent(user_dir, display))
    f.xpra_user_socket = probe_socket_file(user_dir + "/" + names.xpra_socket);
  if (xpra_dirs_)
    for (std::size_t i = 0; i < xpra_dirs_->size(); ++i) probe_xpra_dir(i, names, f);
  if (tmp_dir_fd_ && !watch_.session_dirs_absent(display))
    f.xpra_session_dirs = probe_xpra_session_dirs(tmp_dir_fd_.get(), x11_tmp_dir_, display);
  return f;
}

void DisplayProbe::probe_xpra_dir(std::size_t index, const DisplayNames& names, DisplayFacts& f) const {
  if (watch_.take_xpra_dir_lost(index)) xpra_dirs_->lost(index);
  const int dir = xpra_dirs_->fd(index);
  if (dir < 0) return;
  // A directory opened anew (it appeared, or was replaced) is watched anew.
  if (xpra_watched_generation_[index] != xpra_dirs_->generation(index)) {
    watch_.watch_xpra_dir(index, dir);
    xpra_watched_generation_[index] = xpra_dirs_->generation(index);
  }
  if (watch_.xpra_socket_absent(index, f.display)) return;
  const std::string& path = xpra_dirs_->path(index);
  const SocketFileFacts entry =
      probe_socket_file_at(dir, names.xpra_socket, path + "/" + names.xpra_socket, BoundPathMatch::name_in_any_dir);
  if (entry.kind != FileKind::absent) f.xpra_dir_entries.push_back({path, entry});
}

}  // namespace xpra_broker
