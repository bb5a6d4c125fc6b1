// pam_xpra_broker.so: the login hook of xpra-broker, in the way pam_systemd
// handles /run/user/$UID.
//
//   open_session   asks the broker (as root, so it may act for the user being
//                  logged in) to prepare <runtime-dir>/<uid> and to count one
//                  more login session; exports XPRA_BROKER_RUNTIME_DIR and
//                  XPRA_SOCKET_DIRS into the session's environment.
//   close_session  tells the broker one login session ended; at the user's
//                  last one it ends the user's leases if reap=yes.
//
// The module lives inside other people's daemons (sshd, login, JupyterHub),
// so it keeps to itself: no global or static mutable state (what one session
// needs between open and close is pam_set_data on its own handle), no signal
// handlers (sends use MSG_NOSIGNAL), no threads, no fork, no exit, no
// exceptions across the C ABI, and every wait on the broker is bounded by
// timeout=. Only pam_sm_open_session and pam_sm_close_session are exported
// (pam_xpra_broker.map); everything else, including the statically linked
// client library, is hidden.
#include <pwd.h>
#include <security/pam_ext.h>
#include <security/pam_modules.h>
#include <syslog.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "broker_connection.h"
#include "pam_options.h"
#include "protocol.h"

namespace xpra_broker::pam {

namespace {

using Clock = std::chrono::steady_clock;

// pam_set_data key: whether this handle's open_session was counted by the
// broker. close_session on the same handle sends close_login only if it was,
// so a login let through with the broker down (fail=open) can never end
// another, counted session's leases.
constexpr const char* kLoginCountedKey = "pam_xpra_broker:login_counted";
constexpr const char* kCounted = "counted";
constexpr const char* kNotCounted = "not counted";

// What Xpra reads (checked against Xpra's sources, see docs/pam.md).
constexpr const char* kRuntimeDirVariable = "XPRA_BROKER_RUNTIME_DIR";
constexpr const char* kXpraSocketDirsVariable = "XPRA_SOCKET_DIRS";

struct LoginUser {
  std::string name;
  uid_t uid = 0;
};

std::string errno_text(int error) {
  char buf[256];
  // GNU strerror_r: thread-safe, returns a pointer to the message.
  return ::strerror_r(error, buf, sizeof(buf));
}

// One log line stays one line, whatever the broker put in its message.
std::string printable(std::string text) {
  for (char& c : text)
    if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) c = '?';
  return text;
}

std::string describe_user(const LoginUser& user) { return "user=" + user.name + " uid=" + std::to_string(user.uid); }

void log_line(pam_handle_t* pamh, int priority, const std::string& text) {
  pam_syslog(pamh, priority, "%s", text.c_str());
}

// The uid comes from the user database, never from the environment: the PAM
// user name is what the application authenticated.
std::optional<LoginUser> find_login_user(pam_handle_t* pamh, std::string& error) {
  const char* name = nullptr;
  const int rc = pam_get_user(pamh, &name, nullptr);
  if (rc != PAM_SUCCESS || name == nullptr || *name == '\0') {
    error = std::string("cannot get the user being logged in: ") + pam_strerror(pamh, rc);
    return std::nullopt;
  }
  const long hint = ::sysconf(_SC_GETPW_R_SIZE_MAX);
  std::vector<char> buf(hint > 0 ? static_cast<std::size_t>(hint) : 16384);
  for (;;) {
    passwd pw{};
    passwd* found = nullptr;
    const int err = ::getpwnam_r(name, &pw, buf.data(), buf.size(), &found);
    if (err == ERANGE && buf.size() < (1u << 20)) {
      buf.resize(buf.size() * 2);
      continue;
    }
    if (err != 0) {
      error = std::string("cannot look up user ") + name + ": " + errno_text(err);
      return std::nullopt;
    }
    if (found == nullptr) {
      error = std::string("user ") + name + " is not in the user database";
      return std::nullopt;
    }
    return LoginUser{name, pw.pw_uid};
  }
}

struct BrokerAnswer {
  bool ok = false;
  v1::Response response;
  std::string error;  // why not ok, for the log
};

// One request, one reply. timeout= bounds the connect; what is left of it
// bounds sending the request and each read of the reply.
BrokerAnswer ask_broker(const ModuleOptions& options, const v1::Request& request) {
  BrokerAnswer answer;
  const auto started = Clock::now();
  auto conn = BrokerConnection::connect(options.socket, options.timeout);
  if (!conn.connected()) {
    answer.error = std::string(describe(conn.error())) + " at " + options.socket + " (" +
                   errno_text(conn.errno_value()) + ")";
    return answer;
  }
  const auto left =
      options.timeout - std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - started);
  conn.set_timeout(std::max(left, std::chrono::milliseconds(1)));
  if (const auto e = conn.call(request, answer.response); e != BrokerConnection::Error::none) {
    answer.error = std::string(describe(e)) + " at " + options.socket;
    if (e == BrokerConnection::Error::timeout)
      answer.error += " (timeout=" + std::to_string(options.timeout.count()) + " ms)";
    else if (conn.errno_value() != 0)
      answer.error += " (" + errno_text(conn.errno_value()) + ")";
    return answer;
  }
  if (answer.response.status() != v1::OK) {
    answer.error = "the broker refused (" + v1::Status_Name(answer.response.status()) +
                   "): " + printable(answer.response.message().substr(0, 512));
    if (answer.response.status() == v1::DENIED && ::geteuid() != 0)
      answer.error += "; the module must run as root, but this process runs as uid " + std::to_string(::geteuid());
    return answer;
  }
  answer.ok = true;
  return answer;
}

// The broker is trusted (root-configured socket), but what goes into a login
// environment is still checked: an absolute path, printable, bounded.
bool plausible_runtime_dir(const std::string& dir) {
  return !dir.empty() && dir.front() == '/' && dir.size() < 4096 &&
         std::none_of(dir.begin(), dir.end(), [](char c) { return static_cast<unsigned char>(c) < 0x20 || c == 0x7f; });
}

// The broker could not do its part: refuse (fail=closed) or let the login
// through with a warning (fail=open). Either way the log says who and why.
int on_broker_failure(pam_handle_t* pamh, const ModuleOptions& options, const std::string& what,
                      const char* let_through_means) {
  if (options.fail == FailMode::closed) {
    log_line(pamh, LOG_ERR, what + "; session refused (fail=closed)");
    return PAM_SESSION_ERR;
  }
  log_line(pamh, LOG_WARNING, what + "; " + let_through_means + " (fail=open)");
  return PAM_SUCCESS;
}

void remember_login_counted(pam_handle_t* pamh, bool counted) {
  // The marker strings are constants: nothing to free, so no cleanup callback.
  pam_set_data(pamh, kLoginCountedKey, const_cast<char*>(counted ? kCounted : kNotCounted), nullptr);
}

// True unless this handle's open_session ran and was not counted. Without a
// marker (close on another handle or in another process than the open, as
// some daemons do), the close is sent: the broker never counts below zero.
bool login_was_counted(pam_handle_t* pamh) {
  const void* data = nullptr;
  if (pam_get_data(pamh, kLoginCountedKey, &data) != PAM_SUCCESS || data == nullptr) return true;
  return std::strcmp(static_cast<const char*>(data), kNotCounted) != 0;
}

std::optional<ModuleOptions> load_options(pam_handle_t* pamh, int argc, const char** argv) {
  auto parsed = parse_module_options(std::span<const char* const>(argv, argc > 0 ? argc : 0));
  if (!parsed.ok()) {
    // The user as the application set it; no lookup (and no prompt) for a
    // session the module is not going to act on.
    const void* item = nullptr;
    const char* name = pam_get_item(pamh, PAM_USER, &item) == PAM_SUCCESS && item ? static_cast<const char*>(item) : "?";
    for (const auto& error : parsed.errors)
      log_line(pamh, LOG_ERR, std::string("user=") + name + ": configuration error in the service file: " + error);
  }
  if (!parsed.ok()) return std::nullopt;
  if (parsed.options.debug)
    log_line(pamh, LOG_DEBUG,
             "options: socket=" + parsed.options.socket + " timeout=" + std::to_string(parsed.options.timeout.count()) +
                 " fail=" + to_string(parsed.options.fail) + " reap=" + (parsed.options.reap_leases ? "yes" : "no"));
  return parsed.options;
}

// Best effort: undoes a counted open_session that is being refused after all,
// so the broker's count stays right. Never reaps.
void uncount_login(const ModuleOptions& options, const LoginUser& user) {
  v1::Request request;
  request.mutable_close_login()->set_uid(user.uid);
  request.mutable_close_login()->set_reap_leases(false);
  ask_broker(options, request);
}

int open_session(pam_handle_t* pamh, int argc, const char** argv) {
  const auto options = load_options(pamh, argc, argv);
  if (!options) return PAM_SERVICE_ERR;

  std::string error;
  const auto user = find_login_user(pamh, error);
  if (!user) {
    remember_login_counted(pamh, false);
    return on_broker_failure(pamh, *options, error, "login continues without a broker directory");
  }

  v1::Request request;
  request.mutable_open_login()->set_uid(user->uid);
  const BrokerAnswer answer = ask_broker(*options, request);
  if (!answer.ok) {
    remember_login_counted(pamh, false);
    return on_broker_failure(pamh, *options, describe_user(*user) + ": open_login failed: " + answer.error,
                             "login continues without a broker directory");
  }
  const auto& reply = answer.response.open_login();
  const std::string& dir = reply.runtime_dir();

  std::string export_error;
  if (!plausible_runtime_dir(dir)) {
    export_error = "the broker replied with an unusable directory '" + dir.substr(0, 128) + "'";
  } else {
    for (const char* variable : {kRuntimeDirVariable, kXpraSocketDirsVariable}) {
      const std::string entry = std::string(variable) + "=" + dir;
      if (const int rc = pam_putenv(pamh, entry.c_str()); rc != PAM_SUCCESS) {
        export_error = std::string("cannot export ") + variable + ": " + pam_strerror(pamh, rc);
        break;
      }
    }
  }
  if (!export_error.empty()) {
    const int rc = on_broker_failure(pamh, *options, describe_user(*user) + ": " + export_error,
                                     "login continues without the broker's environment");
    if (rc != PAM_SUCCESS) {
      uncount_login(*options, *user);
      remember_login_counted(pamh, false);
    } else {
      remember_login_counted(pamh, true);
    }
    return rc;
  }

  remember_login_counted(pamh, true);
  if (options->debug)
    log_line(pamh, LOG_DEBUG,
             describe_user(*user) + ": login session opened, dir=" + dir + ", " +
                 std::to_string(reply.login_sessions()) + " login session(s) of this user");
  return PAM_SUCCESS;
}

int close_session(pam_handle_t* pamh, int argc, const char** argv) {
  const auto options = load_options(pamh, argc, argv);
  if (!options) return PAM_SERVICE_ERR;

  std::string error;
  const auto user = find_login_user(pamh, error);
  if (!user) return on_broker_failure(pamh, *options, error, "logout continues; the broker's count is not updated");

  if (!login_was_counted(pamh)) {
    if (options->debug)
      log_line(pamh, LOG_DEBUG,
               describe_user(*user) + ": this session's open was not counted by the broker; nothing to close");
    return PAM_SUCCESS;
  }

  v1::Request request;
  request.mutable_close_login()->set_uid(user->uid);
  request.mutable_close_login()->set_reap_leases(options->reap_leases);
  const BrokerAnswer answer = ask_broker(*options, request);
  if (!answer.ok)
    return on_broker_failure(pamh, *options, describe_user(*user) + ": close_login failed: " + answer.error,
                             "logout continues; the broker's count is not updated");

  const auto& reply = answer.response.close_login();
  // Only reaching zero is worth a line without debug: that is when leases end.
  if (reply.login_sessions() == 0 && (options->debug || reply.leases_ended() > 0))
    log_line(pamh, LOG_INFO,
             describe_user(*user) + ": last login session ended, " + std::to_string(reply.leases_ended()) +
                 " lease(s) ended (reap=" + (options->reap_leases ? "yes" : "no") + ")");
  else if (options->debug)
    log_line(pamh, LOG_DEBUG,
             describe_user(*user) + ": login session closed, " + std::to_string(reply.login_sessions()) +
                 " login session(s) left");
  return PAM_SUCCESS;
}

// Nothing may escape into the calling C code; an allocation failure is the
// only exception the code above can raise.
template <typename Body>
int guarded(pam_handle_t* pamh, Body body) noexcept {
  try {
    return body();
  } catch (const std::exception& e) {
    pam_syslog(pamh, LOG_CRIT, "unexpected error: %s", e.what());
  } catch (...) {
    pam_syslog(pamh, LOG_CRIT, "unexpected error");
  }
  return PAM_BUF_ERR;
}

}  // namespace

}  // namespace xpra_broker::pam

// The module is built with hidden visibility; these two are its whole ABI.
#define XPRA_PAM_ENTRY extern "C" __attribute__((visibility("default")))

XPRA_PAM_ENTRY int pam_sm_open_session(pam_handle_t* pamh, int flags, int argc, const char** argv) {
  return xpra_broker::pam::guarded(pamh, [&] { return xpra_broker::pam::open_session(pamh, argc, argv); });
}

XPRA_PAM_ENTRY int pam_sm_close_session(pam_handle_t* pamh, int flags, int argc, const char** argv) {
  return xpra_broker::pam::guarded(pamh, [&] { return xpra_broker::pam::close_session(pamh, argc, argv); });
}
