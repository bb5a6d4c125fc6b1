#include "daemon/startup.h"

#include <dirent.h>
#include <fcntl.h>
#include <grp.h>
#include <pwd.h>
#include <sys/file.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <systemd/sd-daemon.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <optional>
#include <sstream>
#include <stdexcept>

#include "host/xpra_config.h"

namespace xpra_broker {

namespace {

[[noreturn]] void fail(const std::string& what) {
  throw std::runtime_error(what + ": " + std::strerror(errno));
}

}  // namespace

BrokerConfig load_config(const CommandLine& cmd) {
  BrokerConfig config;
  std::vector<ConfigError> errors;
  std::ifstream in(cmd.config_path);
  if (in) {
    std::stringstream text;
    text << in.rdbuf();
    errors = parse_config_text(config, text.str(), cmd.config_path);
  } else if (cmd.config_explicit) {
    throw std::runtime_error("cannot read config file " + cmd.config_path + ": " + std::strerror(errno));
  }
  for (const auto& [key, value] : cmd.overrides) {
    if (auto err = apply_config_setting(config, key, value)) errors.push_back({"command line", 0, "--" + key + ": " + *err});
    else config.origin[key] = "command line (--" + key + ")";
  }
  for (auto& e : validate_config(config)) errors.push_back(std::move(e));
  if (!errors.empty()) {
    std::string all;
    for (const auto& e : errors) all += (all.empty() ? "" : "\n") + e.to_string();
    throw std::runtime_error(all);
  }
  return config;
}

namespace {

std::string octal_mode(mode_t mode) {
  char m[8];
  std::snprintf(m, sizeof(m), "%04o", static_cast<unsigned>(mode & 07777));
  return m;
}

bool directory_is_empty(int dir_fd) {
  DIR* d = ::fdopendir(::fcntl(dir_fd, F_DUPFD_CLOEXEC, 0));
  if (!d) return false;
  bool empty = true;
  while (const dirent* e = ::readdir(d))
    if (std::strcmp(e->d_name, ".") != 0 && std::strcmp(e->d_name, "..") != 0) {
      empty = false;
      break;
    }
  ::closedir(d);
  return empty;
}

}  // namespace

ServiceIdentity service_identity(const BrokerConfig& config) {
  ServiceIdentity id{::geteuid(), ::getegid(), ::geteuid() == 0 && !config.user.empty()};
  if (!id.switches) return id;
  const passwd* pw = ::getpwnam(config.user.c_str());
  if (!pw) throw ConfigurationError("user '" + config.user + "' does not exist (config key 'user')");
  id.uid = pw->pw_uid;
  id.gid = pw->pw_gid;
  if (!config.group.empty()) {
    const struct group* gr = ::getgrnam(config.group.c_str());
    if (!gr) throw ConfigurationError("group '" + config.group + "' does not exist (config key 'group')");
    id.gid = gr->gr_gid;
  }
  return id;
}

std::optional<std::string> runtime_dir_problem(const struct stat& st, bool empty, const ServiceIdentity& id) {
  if (!S_ISDIR(st.st_mode))
    return std::string("not a directory (a symlink or a file); the broker follows no link there. Remove the link "
                       "or file itself (rm, never rm -r: a link's target stays), or point runtime-dir at a real "
                       "directory");
  if (id.switches) {
    // Root's dir (e.g. made by tmpfiles) or the broker's own is taken over;
    // one another user made is not: whatever they put in it would be trusted.
    if (st.st_uid != 0 && st.st_uid != id.uid)
      return "owned by uid " + std::to_string(st.st_uid) + ", neither root nor the broker's user (uid " +
             std::to_string(id.uid) + "). Hand it to root (chown root) and start again; keep its "
             "leases.journal, if there is one: it holds the leases of running sessions";
    // One that others could write (Xpra's own tmpfiles rule makes it 1775
    // root:xpra) is fixed only while it is empty: once anything is in it, it
    // may have been planted, and is not trusted.
    if ((st.st_mode & (S_IWGRP | S_IWOTH)) && !empty)
      return "writable by group or others (mode " + octal_mode(st.st_mode) +
             ") and not empty, so its files may have been planted by other users. Look at what is in it, move "
             "away what is not the broker's (its own are broker.lock, leases.journal and the users' numbered "
             "dirs), then chmod 0755 it; never delete leases.journal: it holds the leases of running sessions";
    return std::nullopt;
  }
  if (st.st_uid != id.uid)
    return "owned by uid " + std::to_string(st.st_uid) + ", not by the broker (uid " + std::to_string(id.uid) +
           "). Hand it to the broker's user (chown), or start the broker as root with user= so it does that itself";
  if (st.st_mode & (S_IWGRP | S_IWOTH))
    return "writable by group or others (mode " + octal_mode(st.st_mode) +
           "); users could plant files the broker then trusts. Make it 0755 (chmod 0755)";
  return std::nullopt;
}

std::optional<std::string> journal_file_problem(const struct stat& st, uid_t broker_uid) {
  if (!S_ISREG(st.st_mode)) return std::string("not a regular file");
  if (st.st_uid != broker_uid)
    return "owned by uid " + std::to_string(st.st_uid) + ", not by the broker (uid " + std::to_string(broker_uid) + ")";
  if (st.st_nlink != 1) return "it has " + std::to_string(st.st_nlink) + " links (another name could change it)";
  if (st.st_mode & (S_IWGRP | S_IWOTH)) return "writable by group or others (mode " + octal_mode(st.st_mode) + ")";
  return std::nullopt;
}

namespace {

[[noreturn]] void unsafe_runtime_dir(const std::string& path, const std::string& problem) {
  throw ConfigurationError("unsafe runtime dir " + path + ": " + problem);
}

[[noreturn]] void unsafe_journal(const std::string& path, const std::string& problem) {
  throw ConfigurationError("unsafe lease journal " + path + ": " + problem +
                           ". The broker acts on the pids and users it holds, so it reads only its own file. "
                           "Move it away (the leases it held are then forgotten) or fix its owner and mode");
}

}  // namespace

std::vector<std::string> configuration_problems(const BrokerConfig& config) {
  std::vector<std::string> problems;
  // Each problem names where the key behind it was set (config.origin).
  const auto attempt = [&](const char* key, const auto& check) {
    try {
      check();
    } catch (const std::exception& e) {
      problems.push_back(located(config, key, e.what()));
    }
  };
  attempt("allowed-groups", [&] { resolve_groups(config.allowed_groups, "allowed-groups"); });
  attempt("admin-groups", [&] { resolve_groups(config.admin_groups, "admin-groups"); });
  std::optional<ServiceIdentity> id;
  attempt(config.origin.count("group") && !config.origin.count("user") ? "group" : "user",
          [&] { id = service_identity(config); });
  if (!id) return problems;
  // What the start will find, looked at without changing anything.
  struct stat st {};
  if (::lstat(config.runtime_dir.c_str(), &st) == 0) {
    bool empty = true;
    if (S_ISDIR(st.st_mode)) {
      UniqueFd dir(::open(config.runtime_dir.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
      empty = dir && directory_is_empty(dir.get());
      struct stat journal {};
      if (config.journal && dir && ::fstatat(dir.get(), "leases.journal", &journal, AT_SYMLINK_NOFOLLOW) == 0)
        if (auto problem = journal_file_problem(journal, id->uid))
          problems.push_back(located(config, "runtime-dir",
                                     "unsafe lease journal " + config.runtime_dir + "/leases.journal: " + *problem));
    }
    if (auto problem = runtime_dir_problem(st, empty, *id))
      problems.push_back(located(config, "runtime-dir", "unsafe runtime dir " + config.runtime_dir + ": " + *problem));
    struct stat lock {};
    if (S_ISDIR(st.st_mode) && ::lstat((config.runtime_dir + "/broker.lock").c_str(), &lock) == 0 &&
        S_ISLNK(lock.st_mode))
      problems.push_back(located(config, "runtime-dir",
                                 "unsafe " + config.runtime_dir +
                                     "/broker.lock: a symlink; the broker follows no link in its runtime dir. "
                                     "Remove the link (rm, not what it points to)"));
  } else {
    const auto parent = config.runtime_dir.substr(0, config.runtime_dir.find_last_of('/'));
    if (!parent.empty() && ::stat(parent.c_str(), &st) != 0)
      problems.push_back(
          located(config, "runtime-dir", "runtime dir " + config.runtime_dir + ": its parent " + parent + " does not exist"));
  }
  if (::lstat(config.socket.c_str(), &st) == 0) {
    if (!S_ISSOCK(st.st_mode))
      problems.push_back(located(config, "socket",
                                 "socket " + config.socket + " exists and is not a socket; remove it or choose another "
                                 "socket path"));
  } else {
    const auto parent = config.socket.substr(0, config.socket.find_last_of('/'));
    if (!parent.empty() && parent != config.runtime_dir && ::stat(parent.c_str(), &st) != 0)
      problems.push_back(located(config, "socket", "socket " + config.socket + ": its directory " + parent + " does not exist"));
  }
  return problems;
}

void prepare_runtime_dir_as_root(const BrokerConfig& config) {
  const ServiceIdentity id = service_identity(config);
  if (!id.switches) return;
  if (::mkdir(config.runtime_dir.c_str(), 0755) != 0 && errno != EEXIST) fail("mkdir " + config.runtime_dir);
  UniqueFd dir(::open(config.runtime_dir.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
  struct stat st {};
  if (!dir && (errno == ELOOP || errno == ENOTDIR) && ::lstat(config.runtime_dir.c_str(), &st) == 0)
    unsafe_runtime_dir(config.runtime_dir, *runtime_dir_problem(st, false, id));
  if (!dir) fail("open " + config.runtime_dir);
  if (::fstat(dir.get(), &st) != 0) fail("fstat " + config.runtime_dir);
  if (auto problem = runtime_dir_problem(st, directory_is_empty(dir.get()), id))
    unsafe_runtime_dir(config.runtime_dir, *problem);
  if (::fchown(dir.get(), id.uid, id.gid) != 0) fail("chown " + config.runtime_dir);
  if (::fchmod(dir.get(), 0755) != 0) fail("chmod " + config.runtime_dir);
}

void choose_service_identity(BrokerConfig& config, std::vector<std::string>& warnings) {
  if (::geteuid() != 0) return;
  if (config.user == "root") {
    config.user.clear();
    if (config.group.empty() || config.group == "root") config.group.clear();
    warnings.push_back("running as root because the configuration says user=root; the broker needs only "
                       "CAP_CHOWN, CAP_FOWNER and CAP_KILL: run it as xpra-broker (see the systemd unit)");
    return;
  }
  if (!config.user.empty()) return;
  constexpr const char* kUser = "xpra-broker";
  constexpr const char* kGroup = "xpra";
  const bool have_user = ::getpwnam(kUser) != nullptr;
  const bool have_group = config.group.empty() ? ::getgrnam(kGroup) != nullptr : true;
  if (!have_user || !have_group)
    throw ConfigurationError(
        std::string("started as root without user=, and the packaged ") + (have_user ? "group " : "user ") +
        (have_user ? kGroup : kUser) +
        " does not exist. Create it (systemd-sysusers, or: useradd --system --gid xpra xpra-broker), or choose "
        "whom to run as with user=NAME (and group=NAME) in the config or on the command line; user=root keeps "
        "root (not advised)");
  config.user = kUser;
  if (config.group.empty()) config.group = kGroup;
}

UniqueFd open_runtime_dir(const std::string& path) {
  if (::mkdir(path.c_str(), 0755) != 0 && errno != EEXIST) fail("cannot create runtime dir " + path);
  UniqueFd dir(::open(path.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
  struct stat st {};
  const ServiceIdentity self{::geteuid(), ::getegid(), false};
  if (!dir && (errno == ELOOP || errno == ENOTDIR) && ::lstat(path.c_str(), &st) == 0)
    unsafe_runtime_dir(path, *runtime_dir_problem(st, false, self));
  if (!dir) fail("cannot open runtime dir " + path);
  if (::fstat(dir.get(), &st) != 0) fail("fstat " + path);
  if (auto problem = runtime_dir_problem(st, false, self)) unsafe_runtime_dir(path, *problem);
  return dir;
}

void check_journal_file(int runtime_dir_fd, const std::string& runtime_dir) {
  const std::string path = runtime_dir + "/leases.journal";
  struct stat st {};
  if (::fstatat(runtime_dir_fd, "leases.journal", &st, AT_SYMLINK_NOFOLLOW) != 0) {
    if (errno == ENOENT) return;
    fail("cannot inspect " + path);
  }
  if (auto problem = journal_file_problem(st, ::geteuid())) unsafe_journal(path, *problem);
}

UniqueFd acquire_instance_lock(int runtime_dir_fd, const std::string& runtime_dir) {
  UniqueFd lock(::openat(runtime_dir_fd, "broker.lock", O_RDWR | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0644));
  if (!lock && errno == ELOOP)
    throw ConfigurationError("unsafe " + runtime_dir + "/broker.lock: a symlink; the broker follows no link in its "
                             "runtime dir. Remove the link (rm, not what it points to)");
  if (!lock) fail("cannot open " + runtime_dir + "/broker.lock");
  if (::flock(lock.get(), LOCK_EX | LOCK_NB) != 0) {
    if (errno == EWOULDBLOCK)
      throw std::runtime_error("another xpra-brokerd already serves " + runtime_dir +
                               " (it holds broker.lock); stop it first, or give this one another --runtime-dir");
    fail("flock " + runtime_dir + "/broker.lock");
  }
  // The pid is informational only; the flock is what counts.
  const std::string pid = std::to_string(::getpid()) + "\n";
  if (::ftruncate(lock.get(), 0) == 0 && ::pwrite(lock.get(), pid.data(), pid.size(), 0) < 0) {
  }
  return lock;
}

UniqueFd open_listening_socket(const std::string& path, bool& from_systemd) {
  from_systemd = false;
  const int n = sd_listen_fds(1);
  if (n > 1) throw std::runtime_error("systemd passed " + std::to_string(n) + " sockets; expected one");
  if (n == 1) {
    if (sd_is_socket_unix(SD_LISTEN_FDS_START, SOCK_STREAM, 1, nullptr, 0) <= 0)
      throw std::runtime_error("the socket systemd passed is not a listening Unix stream socket");
    from_systemd = true;
    return UniqueFd(SD_LISTEN_FDS_START);
  }

  sockaddr_un addr{};
  if (path.size() >= sizeof(addr.sun_path)) throw std::runtime_error("socket path too long: " + path);
  // The instance lock is held, so a socket file here belongs to a dead
  // broker: remove it. Anything that is not a socket is left for the admin.
  struct stat st {};
  if (::lstat(path.c_str(), &st) == 0) {
    if (!S_ISSOCK(st.st_mode))
      throw ConfigurationError(path + " exists and is not a socket; remove it or choose another --socket");
    if (::unlink(path.c_str()) != 0) fail("cannot remove stale socket " + path);
  }
  UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
  if (!fd) fail("socket");
  addr.sun_family = AF_UNIX;
  std::memcpy(addr.sun_path, path.c_str(), path.size() + 1);
  // Created 0666 (every local user may connect; policy uses SO_PEERCRED).
  const mode_t old = ::umask(0);
  const int rc = ::bind(fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof(addr));
  ::umask(old);
  if (rc != 0) fail("cannot bind " + path);
  if (::listen(fd.get(), SOMAXCONN) != 0) fail("listen " + path);
  return fd;
}

std::vector<gid_t> resolve_groups(const std::vector<std::string>& names, const char* key) {
  std::vector<gid_t> gids;
  for (const auto& name : names) {
    const struct group* gr = ::getgrnam(name.c_str());
    if (!gr) throw ConfigurationError(std::string(key) + ": group '" + name + "' does not exist");
    gids.push_back(gr->gr_gid);
  }
  return gids;
}

std::vector<std::string> ordinary_members_of_group(gid_t gid, uid_t broker_uid) {
  std::vector<std::string> members;
  const struct group* gr = ::getgrgid(gid);
  if (!gr || gid == 0) return members;
  const passwd* self = ::getpwuid(broker_uid);
  for (char** m = gr->gr_mem; m && *m; ++m)
    if (!self || std::strcmp(*m, self->pw_name) != 0) members.emplace_back(*m);
  return members;
}

XpraSocketDirPlan plan_xpra_socket_dirs(const BrokerConfig& config) {
  XpraSocketDirPlan plan;
  // No config dirs: not even Xpra's built-in list; xpra-socket-dirs alone
  // says where to look (the override).
  XpraSocketSettings settings;
  if (!config.xpra_config_dirs.empty()) {
    settings = merge_xpra_conf(read_xpra_config_files(config.xpra_config_dirs, plan.problems));
    plan.problems.insert(plan.problems.end(), settings.notes.begin(), settings.notes.end());
  }
  const std::string runtime_dir = tidy_dir_path(config.runtime_dir);
  for (const auto& dir : xpra_socket_dirs(settings, config.xpra_socket_dirs)) {
    if (dir.per_user)
      plan.notes.push_back({dir.path, dir.source, "not checked: per-user, each user's own", false});
    else if (dir.path == runtime_dir)
      plan.notes.push_back({dir.path, dir.source, "checked: the broker's runtime dir", true});
    else
      plan.shared.push_back({dir.path, dir.source});
  }
  return plan;
}

}  // namespace xpra_broker
