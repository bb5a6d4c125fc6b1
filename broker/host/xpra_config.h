// Where Xpra on this host looks for the sockets of display N: its
// `socket-dir` and `socket-dirs` settings, read the way Xpra 3.1 reads its
// own configuration, and which of those directories are shared between users
// (the broker's to check) rather than each user's own.
//
// Xpra 3.1.3, the sources this follows:
// - xpra/scripts/config.py read_config(): per file, lines are stripped;
//   empty lines and lines starting with '#' or '!' are dropped; then a line
//   ending in '\' is joined to the next kept line with a space; a line
//   without '=' at position > 0 is ignored; `key = value` is split at the
//   first '=' and both sides stripped; a key repeated within one file
//   collects a list of values.
// - conf_files()/read_xpra_conf(): in each config dir, conf.d/*.conf in
//   sorted order, then xpra.conf; get_xpra_defaults_dirs(): the system dirs
//   /etc/xpra, /usr/local/etc/xpra, $XDG_CONFIG_DIRS/xpra (default
//   /etc/xdg/xpra), then the user's own. Each file's values *replace* the
//   key (dict.update): the last file that sets socket-dirs decides the
//   whole list.
// - fixup_socketdirs(): each socket-dirs value is split at ':'.
// - do_validate_config(): socket-dir is a string; repeated in one file it
//   becomes a list and Xpra drops it with a warning.
// - platform/xposix/paths.py do_get_socket_dirs(): without any setting,
//   $XDG_RUNTIME_DIR/xpra (/run/user/$UID/xpra), /run/xpra and ~/.xpra.
// - os_util.py osexpand(): ~, $HOME, $UID, $GID, $USER, $USERNAME,
//   $XDG_RUNTIME_DIR, $PID and any other environment variable are expanded
//   for the user who runs xpra; such directories are each user's own.
//
// Pure: text in, lists out. Reading the files is read_xpra_config_files().
#pragma once

#include <map>
#include <string>
#include <vector>

namespace xpra_broker {

// One file's settings, as read_config() returns them: every value of a key
// repeated in the file, in order.
using XpraConfValues = std::map<std::string, std::vector<std::string>>;
XpraConfValues parse_xpra_conf(const std::string& text);

struct XpraConfFile {
  std::string path;
  std::string text;
};

// A setting after every file was read: its values and the file that set it
// (empty: no file did; Xpra's built-in default applies).
struct XpraSetting {
  std::vector<std::string> values;
  std::string source;
};

struct XpraSocketSettings {
  XpraSetting socket_dirs;
  XpraSetting socket_dir;  // at most one value (Xpra drops a repeated one)
  std::vector<std::string> notes;  // what Xpra would warn about, for --check-config
};

// `files` in the order Xpra reads them (see xpra_config_file_order()).
XpraSocketSettings merge_xpra_conf(const std::vector<XpraConfFile>& files);

// Xpra's built-in socket-dirs on Linux when no file sets them.
const std::vector<std::string>& xpra_default_socket_dirs();

struct XpraSocketDir {
  std::string path;    // as Xpra's setting writes it, slashes tidied
  std::string source;  // the config file, "xpra built-in default" or "xpra-socket-dirs"
  bool per_user = false;  // depends on who runs xpra (~, $VAR, relative)
};

// Every directory Xpra checks for "<host>-<N>": socket-dir, then each
// socket-dirs entry split at ':', then the broker's own extra dirs; empty
// and repeated entries dropped (the first one stays).
std::vector<XpraSocketDir> xpra_socket_dirs(const XpraSocketSettings& settings,
                                            const std::vector<std::string>& extra_dirs);

// Depends on who runs xpra: not absolute, or expanded per user.
bool xpra_dir_is_per_user(const std::string& dir);

// "/a//b/" -> "/a/b": the same directory Xpra joins its names to.
std::string tidy_dir_path(const std::string& dir);

// ---- host side ---------------------------------------------------------------

// Reads, in Xpra's order, conf.d/*.conf then xpra.conf of each config dir
// (regular files only, as Xpra's isfile(); a file that cannot be read is
// reported in `problems` and skipped).
std::vector<XpraConfFile> read_xpra_config_files(const std::vector<std::string>& config_dirs,
                                                 std::vector<std::string>& problems);

}  // namespace xpra_broker
