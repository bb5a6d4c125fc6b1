// Start-up steps that touch the outside world, in the order main() runs them.
// Each throws std::runtime_error with a message for the admin (exceptions are
// used only here, at start-up).
#pragma once

#include <sys/types.h>

#include <string>
#include <vector>

#include "config.h"
#include "unique_fd.h"

namespace xpra_broker {

// Loads the config file (an explicit --config must exist; the default may be
// missing) and applies the command-line overrides after it.
struct CommandLine {
  std::string config_path;
  bool config_explicit = false;
  std::vector<std::pair<std::string, std::string>> overrides;
};
BrokerConfig load_config(const CommandLine& cmd);

// When root and about to switch to `user`/`group`: creates the runtime dir if
// missing and hands it to them, so the unprivileged broker can own it.
void prepare_runtime_dir_as_root(const BrokerConfig& config);

// Opens the runtime dir without following a symlink, creating it (0755) if
// the broker may. Returns warnings about its ownership and mode.
UniqueFd open_runtime_dir(const std::string& path, std::vector<std::string>& warnings);

// One broker per runtime dir: an exclusive flock on <runtime-dir>/broker.lock
// held for the process's lifetime (a lock, not a pid-file check).
UniqueFd acquire_instance_lock(int runtime_dir_fd, const std::string& runtime_dir);

// The listening socket: systemd's (socket activation) if passed, otherwise
// bound here, replacing a stale socket file of a dead broker.
UniqueFd open_listening_socket(const std::string& path, bool& from_systemd);

// Group names to gids; unknown names are an error.
std::vector<gid_t> resolve_groups(const std::vector<std::string>& names, const char* key);

// Members of the broker's own group other than the broker user: the old
// "put every user into group xpra" advice, which defeats per-user isolation.
std::vector<std::string> ordinary_members_of_group(gid_t gid, uid_t broker_uid);

}  // namespace xpra_broker
