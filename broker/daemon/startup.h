// Start-up steps that touch the outside world, in the order main() runs them.
// Each throws std::runtime_error (or ConfigurationError) with a message for
// the admin: start-up is where exceptions belong (docs/hacking.md, "Errors").
#pragma once

#include <sys/stat.h>
#include <sys/types.h>

#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include "daemon/config.h"
#include "unique_fd.h"
#include "host/xpra_shared_dirs.h"

namespace xpra_broker {

// Loads the config file (an explicit --config must exist; the default may be
// missing) and applies the command-line overrides after it.
struct CommandLine {
  std::string config_path;
  bool config_explicit = false;
  std::vector<std::pair<std::string, std::string>> overrides;
};
BrokerConfig load_config(const CommandLine& cmd);

// A problem with the configuration, or with the host's setup for it, that a
// restart cannot fix (exit 78, which the unit's RestartPreventExitStatus=
// names): not 71, which is left to transient operating-system errors.
struct ConfigurationError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// Started as root: whom to run as. No user= means the packaged xpra-broker
// and group xpra, and a refusal (ConfigurationError) if they do not exist;
// user=root is the one way to stay root, and earns a warning. Not root:
// nothing to choose. Fills config.user/group for the steps below.
void choose_service_identity(BrokerConfig& config, std::vector<std::string>& warnings);

// Whom the broker runs as once started: the configured user and group when
// root switches to them, else itself. Unknown names: ConfigurationError.
struct ServiceIdentity {
  uid_t uid;
  gid_t gid;
  bool switches;  // started as root with user=: the runtime dir is taken over
};
ServiceIdentity service_identity(const BrokerConfig& config);

// The rules for the broker's own files, shared by the start and by
// --check-config, so both judge alike. A reason to refuse, or nullopt.
std::optional<std::string> runtime_dir_problem(const struct stat& st, bool empty, const ServiceIdentity& id);
std::optional<std::string> journal_file_problem(const struct stat& st, uid_t broker_uid);

// Everything the start would refuse as a configuration problem (exit 78),
// found without changing anything: unknown users and groups, an unsafe or
// unusable runtime dir, journal or socket path. Empty: none.
std::vector<std::string> configuration_problems(const BrokerConfig& config);

// When root and about to switch to `user`/`group`: creates the runtime dir if
// missing and hands it to them, so the unprivileged broker can own it.
void prepare_runtime_dir_as_root(const BrokerConfig& config);

// Opens the runtime dir without following a symlink, creating it (0755) if
// the broker may. Refuses (runtime_error) a directory the broker does not own
// or that group or others may write: users could plant files in it that the
// broker then trusts (its journal, per-user directories, sockets).
UniqueFd open_runtime_dir(const std::string& path);

// The lease journal, if it exists, must be the broker's own: a regular file
// with one link, owned by the broker's uid, not writable by group or others.
// Refuses (runtime_error) anything else, before a byte of it is read.
void check_journal_file(int runtime_dir_fd, const std::string& runtime_dir);

// One broker per runtime dir: an exclusive flock on <runtime-dir>/broker.lock
// held for the process's lifetime (a lock, not a pid-file check).
UniqueFd acquire_instance_lock(int runtime_dir_fd, const std::string& runtime_dir);

// The listening socket: systemd's (socket activation) if passed, otherwise
// bound here, replacing a stale socket file of a dead broker.
UniqueFd open_listening_socket(const std::string& path, bool& from_systemd);

// Where Xpra on this host looks for display sockets: its config read from
// config.xpra_config_dirs (xpra_config.h) plus xpra-socket-dirs. The shared
// dirs other than the runtime dir are the broker's to check and clean; the
// runtime dir is checked anyway; per-user dirs are noted, not checked.
struct XpraSocketDirPlan {
  std::vector<XpraSharedDirs::Spec> shared;
  std::vector<XpraSharedDirs::Report> notes;  // the runtime dir and per-user dirs
  std::vector<std::string> problems;         // unreadable files, what Xpra would warn about
};
XpraSocketDirPlan plan_xpra_socket_dirs(const BrokerConfig& config);

// Group names to gids; unknown names are an error.
std::vector<gid_t> resolve_groups(const std::vector<std::string>& names, const char* key);

// Members of the broker's own group other than the broker user: the old
// "put every user into group xpra" advice, which defeats per-user isolation.
std::vector<std::string> ordinary_members_of_group(gid_t gid, uid_t broker_uid);

}  // namespace xpra_broker
