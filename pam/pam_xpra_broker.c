/* pam_xpra_broker.so: the login hook of xpra-broker, in the way pam_systemd
   handles /run/user/$UID.

     open_session   asks the broker (as root, so it may act for the user being
                    logged in) to prepare <runtime-dir>/<uid> and to count one
                    more login session; exports XPRA_BROKER_RUNTIME_DIR and
                    XPRA_SOCKET_DIRS into the session's environment.
     close_session  tells the broker one login session ended; at the user's
                    last one it ends the user's leases if reap=yes.

   The module lives inside other people's daemons (sshd, login, JupyterHub),
   so it keeps to itself: C linking only libc and libpam (no C++ runtime, no
   libprotobuf: login_protocol.c speaks the broker's protobuf frames by hand),
   no global or static mutable state (what one session needs between open and
   close is pam_set_data on its own handle), no signal handlers (sends use
   MSG_NOSIGNAL), no threads, no fork, no exit, and every wait on the broker
   is bounded by timeout=. Only pam_sm_open_session and pam_sm_close_session
   are exported (pam_xpra_broker.map). */
#define _GNU_SOURCE
#include <errno.h>
#include <pwd.h>
#include <security/pam_ext.h>
#include <security/pam_modules.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>
#include <unistd.h>

#include "broker_exchange.h"
#include "login_protocol.h"
#include "pam_options.h"

/* pam_set_data key: whether this handle's open_session was counted by the
   broker. close_session on the same handle sends close_login only if it was,
   so a login let through with the broker down (fail=open) can never end
   another, counted session's leases. The values are constants in the module:
   nothing to free, so no cleanup callback, and pam_end drops the data before
   it unloads the module. */
static const char kLoginCountedKey[] = "pam_xpra_broker:login_counted";
static const char kCounted[] = "counted";
static const char kNotCounted[] = "not counted";

/* What Xpra reads (checked against Xpra's sources, see docs/pam.md). */
static const char *const kExportedVariables[] = {"XPRA_BROKER_RUNTIME_DIR", "XPRA_SOCKET_DIRS"};

/* Longest log text the module composes; longer ones are cut, never overrun. */
#define TEXT_MAX 4096

struct login_user {
  const char *name; /* PAM's copy, valid for the handle's life */
  uid_t uid;
};

/* One log line stays one line, whatever the broker put in its text. */
static void copy_printable(const uint8_t *text, size_t size, char *out, size_t out_size) {
  size_t n = size < out_size - 1 ? size : out_size - 1;
  for (size_t i = 0; i < n; i++) out[i] = text[i] < 0x20 || text[i] == 0x7f ? '?' : (char)text[i];
  out[n] = '\0';
}

static const char *errno_text(int error, char *buf, size_t size) {
  return strerror_r(error, buf, size); /* GNU: thread-safe, returns the message */
}

static int out_of_memory(pam_handle_t *pamh) {
  pam_syslog(pamh, LOG_CRIT, "unexpected error: out of memory");
  return PAM_BUF_ERR;
}

/* The uid comes from the user database, never from the environment: the PAM
   user name is what the application authenticated. Returns PAM_SUCCESS,
   PAM_BUF_ERR, or PAM_USER_UNKNOWN with *error saying why. */
static int find_login_user(pam_handle_t *pamh, struct login_user *user, char *error, size_t error_size) {
  const char *name = NULL;
  const int rc = pam_get_user(pamh, &name, NULL);
  if (rc != PAM_SUCCESS || name == NULL || *name == '\0') {
    snprintf(error, error_size, "cannot get the user being logged in: %s", pam_strerror(pamh, rc));
    return PAM_USER_UNKNOWN;
  }
  const long hint = sysconf(_SC_GETPW_R_SIZE_MAX);
  size_t size = hint > 0 ? (size_t)hint : 16384;
  for (;;) {
    char *buf = malloc(size);
    if (buf == NULL) return PAM_BUF_ERR;
    struct passwd pw;
    struct passwd *found = NULL;
    const int err = getpwnam_r(name, &pw, buf, size, &found);
    const uid_t uid = found != NULL ? pw.pw_uid : 0;
    free(buf);
    if (err == ERANGE && size < (1u << 20)) {
      size *= 2;
      continue;
    }
    if (err != 0) {
      char text[256];
      snprintf(error, error_size, "cannot look up user %s: %s", name, errno_text(err, text, sizeof(text)));
      return PAM_USER_UNKNOWN;
    }
    if (found == NULL) {
      snprintf(error, error_size, "user %s is not in the user database", name);
      return PAM_USER_UNKNOWN;
    }
    user->name = name;
    user->uid = uid;
    return PAM_SUCCESS;
  }
}

struct broker_answer {
  bool ok;
  bool out_of_memory;
  char error[1024]; /* why not ok, for the log */
  struct xpb_exchange exchange;
};

/* One request, one reply (broker_exchange.c bounds it by timeout=). Always
   end with end_answer. */
static void ask_broker(const struct xpb_module_options *options, const uint8_t *request, size_t request_size,
                       struct broker_answer *answer) {
  answer->ok = false;
  answer->out_of_memory = false;
  answer->error[0] = '\0';
  struct xpb_exchange *x = &answer->exchange;
  xpb_exchange_run(options->socket, options->timeout_ms, request, request_size, x);
  char text[256];
  const char *what = xpb_exchange_error_text(x->error);
  if (x->error == XPB_EXCHANGE_NO_MEMORY) {
    answer->out_of_memory = true;
    return;
  }
  if (x->error != XPB_EXCHANGE_OK && !x->connected) {
    snprintf(answer->error, sizeof(answer->error), "%s at %s (%s)", what, options->socket,
             errno_text(x->errno_value, text, sizeof(text)));
    return;
  }
  if (x->error == XPB_EXCHANGE_TIMEOUT) {
    snprintf(answer->error, sizeof(answer->error), "%s at %s (timeout=%ld ms)", what, options->socket,
             options->timeout_ms);
    return;
  }
  if (x->error == XPB_EXCHANGE_MALFORMED) {
    snprintf(answer->error, sizeof(answer->error), "%s at %s (%s)", what, options->socket, x->malformed);
    return;
  }
  if (x->error != XPB_EXCHANGE_OK) {
    if (x->errno_value != 0)
      snprintf(answer->error, sizeof(answer->error), "%s at %s (%s)", what, options->socket,
               errno_text(x->errno_value, text, sizeof(text)));
    else
      snprintf(answer->error, sizeof(answer->error), "%s at %s", what, options->socket);
    return;
  }
  const struct xpb_login_reply *reply = &x->reply;
  if (reply->status != XPB_STATUS_OK) {
    char message[513];
    copy_printable(reply->message.data, reply->message.size, message, sizeof(message));
    const int n = snprintf(answer->error, sizeof(answer->error), "the broker refused (%s): %s",
                           xpb_status_name(reply->status), message);
    if (reply->status == XPB_STATUS_DENIED && geteuid() != 0 && n > 0 && (size_t)n < sizeof(answer->error))
      snprintf(answer->error + n, sizeof(answer->error) - (size_t)n,
               "; the module must run as root, but this process runs as uid %u", (unsigned)geteuid());
    return;
  }
  answer->ok = true;
}

static void end_answer(struct broker_answer *answer) { xpb_exchange_end(&answer->exchange); }

/* The broker is trusted (root-configured socket), but what goes into a login
   environment is still checked: an absolute path, printable, bounded. */
static bool plausible_runtime_dir(struct xpb_bytes dir) {
  if (dir.size == 0 || dir.data[0] != '/' || dir.size >= 4096) return false;
  for (size_t i = 0; i < dir.size; i++)
    if (dir.data[i] < 0x20 || dir.data[i] == 0x7f) return false;
  return true;
}

/* The broker could not do its part: refuse (fail=closed) or let the login
   through with a warning (fail=open). Either way the log says who and why. */
static int on_broker_failure(pam_handle_t *pamh, const struct xpb_module_options *options, const char *what,
                             const char *let_through_means) {
  if (options->fail == XPB_FAIL_CLOSED) {
    pam_syslog(pamh, LOG_ERR, "%s; session refused (fail=closed)", what);
    return PAM_SESSION_ERR;
  }
  pam_syslog(pamh, LOG_WARNING, "%s; %s (fail=open)", what, let_through_means);
  return PAM_SUCCESS;
}

/* ask_broker for the session of `user`: true when the broker did its part
   (end the answer after use); otherwise the answer is ended, the failure
   logged, and *rc is what the session returns. */
static bool ask_broker_for(pam_handle_t *pamh, const struct xpb_module_options *options, const struct login_user *user,
                           const char *verb, const uint8_t *request, size_t request_size, const char *let_through,
                           struct broker_answer *answer, int *rc) {
  ask_broker(options, request, request_size, answer);
  if (answer->ok) return true;
  if (answer->out_of_memory) {
    *rc = out_of_memory(pamh);
  } else {
    char what[TEXT_MAX];
    snprintf(what, sizeof(what), "user=%s uid=%u: %s failed: %s", user->name, (unsigned)user->uid, verb,
             answer->error);
    *rc = on_broker_failure(pamh, options, what, let_through);
  }
  end_answer(answer);
  return false;
}

static void remember_login_counted(pam_handle_t *pamh, bool counted) {
  pam_set_data(pamh, kLoginCountedKey, (void *)(counted ? kCounted : kNotCounted), NULL);
}

/* True unless this handle's open_session ran and was not counted. Without a
   marker (close on another handle or in another process than the open, as
   some daemons do), the close is sent: the broker never counts below zero. */
static bool login_was_counted(pam_handle_t *pamh) {
  const void *data = NULL;
  if (pam_get_data(pamh, kLoginCountedKey, &data) != PAM_SUCCESS || data == NULL) return true;
  return strcmp((const char *)data, kNotCounted) != 0;
}

struct option_error_context {
  pam_handle_t *pamh;
  const char *user;
};

static void log_option_error(void *context, const char *message) {
  const struct option_error_context *c = context;
  pam_syslog(c->pamh, LOG_ERR, "user=%s: configuration error in the service file: %s", c->user, message);
}

static bool load_options(pam_handle_t *pamh, int argc, const char **argv, struct xpb_module_options *options) {
  /* The user as the application set it; no lookup (and no prompt) for a
     session the module is not going to act on. */
  const void *item = NULL;
  struct option_error_context context = {pamh, "?"};
  if (pam_get_item(pamh, PAM_USER, &item) == PAM_SUCCESS && item != NULL) context.user = item;
  if (xpb_parse_module_options(argc > 0 ? argc : 0, argv, options, log_option_error, &context) != 0) return false;
  if (options->debug)
    pam_syslog(pamh, LOG_DEBUG, "options: socket=%s timeout=%ld fail=%s reap=%s", options->socket,
               options->timeout_ms, xpb_fail_mode_name(options->fail), options->reap_leases ? "yes" : "no");
  return true;
}

/* Best effort: undoes a counted open_session that is being refused after all,
   so the broker's count stays right. Never reaps. */
static void uncount_login(const struct xpb_module_options *options, const struct login_user *user) {
  uint8_t request[XPB_MAX_LOGIN_REQUEST_FRAME];
  struct broker_answer answer;
  ask_broker(options, request, xpb_encode_close_login(user->uid, false, request), &answer);
  end_answer(&answer);
}

static int open_session(pam_handle_t *pamh, int argc, const char **argv) {
  struct xpb_module_options options;
  if (!load_options(pamh, argc, argv, &options)) return PAM_SERVICE_ERR;
  const char *let_through = "login continues without a broker directory";

  char what[TEXT_MAX];
  struct login_user user;
  const int found = find_login_user(pamh, &user, what, sizeof(what));
  if (found == PAM_BUF_ERR) return out_of_memory(pamh);
  if (found != PAM_SUCCESS) {
    remember_login_counted(pamh, false);
    return on_broker_failure(pamh, &options, what, let_through);
  }

  uint8_t request[XPB_MAX_LOGIN_REQUEST_FRAME];
  struct broker_answer answer;
  int rc;
  if (!ask_broker_for(pamh, &options, &user, "open_login", request, xpb_encode_open_login(user.uid, request),
                      let_through, &answer, &rc)) {
    remember_login_counted(pamh, false);
    return rc;
  }

  /* The default instance when the broker answered OK with another result. */
  const struct xpb_login_reply *reply = &answer.exchange.reply;
  const bool is_open_login = reply->result == XPB_RESULT_OPEN_LOGIN;
  const struct xpb_bytes dir = is_open_login ? reply->open_login.runtime_dir : (struct xpb_bytes){NULL, 0};
  const unsigned login_sessions = is_open_login ? reply->open_login.login_sessions : 0;

  char entry[TEXT_MAX + 64];
  what[0] = '\0';
  if (!plausible_runtime_dir(dir)) {
    char shown[129];
    copy_printable(dir.data, dir.size, shown, sizeof(shown));
    snprintf(what, sizeof(what), "user=%s uid=%u: the broker replied with an unusable directory '%s'", user.name,
             (unsigned)user.uid, shown);
  } else {
    for (size_t i = 0; i < sizeof(kExportedVariables) / sizeof(kExportedVariables[0]); i++) {
      snprintf(entry, sizeof(entry), "%s=%.*s", kExportedVariables[i], (int)dir.size, (const char *)dir.data);
      const int put = pam_putenv(pamh, entry);
      if (put != PAM_SUCCESS) {
        snprintf(what, sizeof(what), "user=%s uid=%u: cannot export %s: %s", user.name, (unsigned)user.uid,
                 kExportedVariables[i], pam_strerror(pamh, put));
        break;
      }
    }
  }
  if (what[0] != '\0') {
    end_answer(&answer);
    rc = on_broker_failure(pamh, &options, what, "login continues without the broker's environment");
    if (rc != PAM_SUCCESS) {
      uncount_login(&options, &user);
      remember_login_counted(pamh, false);
    } else {
      remember_login_counted(pamh, true);
    }
    return rc;
  }

  remember_login_counted(pamh, true);
  if (options.debug)
    pam_syslog(pamh, LOG_DEBUG, "user=%s uid=%u: login session opened, dir=%.*s, %u login session(s) of this user",
               user.name, (unsigned)user.uid, (int)dir.size, (const char *)dir.data, login_sessions);
  end_answer(&answer);
  return PAM_SUCCESS;
}

static int close_session(pam_handle_t *pamh, int argc, const char **argv) {
  struct xpb_module_options options;
  if (!load_options(pamh, argc, argv, &options)) return PAM_SERVICE_ERR;
  const char *let_through = "logout continues; the broker's count is not updated";

  char what[TEXT_MAX];
  struct login_user user;
  const int found = find_login_user(pamh, &user, what, sizeof(what));
  if (found == PAM_BUF_ERR) return out_of_memory(pamh);
  if (found != PAM_SUCCESS) return on_broker_failure(pamh, &options, what, let_through);

  if (!login_was_counted(pamh)) {
    if (options.debug)
      pam_syslog(pamh, LOG_DEBUG, "user=%s uid=%u: this session's open was not counted by the broker; nothing to close",
                 user.name, (unsigned)user.uid);
    return PAM_SUCCESS;
  }

  uint8_t request[XPB_MAX_LOGIN_REQUEST_FRAME];
  struct broker_answer answer;
  int rc;
  if (!ask_broker_for(pamh, &options, &user, "close_login", request,
                      xpb_encode_close_login(user.uid, options.reap_leases, request), let_through, &answer, &rc))
    return rc;

  const struct xpb_login_reply *reply = &answer.exchange.reply;
  const bool is_close_login = reply->result == XPB_RESULT_CLOSE_LOGIN;
  const unsigned sessions_left = is_close_login ? reply->close_login.login_sessions : 0;
  const unsigned leases_ended = is_close_login ? reply->close_login.leases_ended : 0;
  end_answer(&answer);
  /* Only reaching zero is worth a line without debug: that is when leases end. */
  if (sessions_left == 0 && (options.debug || leases_ended > 0))
    pam_syslog(pamh, LOG_INFO, "user=%s uid=%u: last login session ended, %u lease(s) ended (reap=%s)", user.name,
               (unsigned)user.uid, leases_ended, options.reap_leases ? "yes" : "no");
  else if (options.debug)
    pam_syslog(pamh, LOG_DEBUG, "user=%s uid=%u: login session closed, %u login session(s) left", user.name,
               (unsigned)user.uid, sessions_left);
  return PAM_SUCCESS;
}

/* The module is built with hidden visibility; these two are its whole ABI. */
#define XPRA_PAM_ENTRY __attribute__((visibility("default")))

XPRA_PAM_ENTRY int pam_sm_open_session(pam_handle_t *pamh, int flags, int argc, const char **argv) {
  (void)flags;
  return open_session(pamh, argc, argv);
}

XPRA_PAM_ENTRY int pam_sm_close_session(pam_handle_t *pamh, int flags, int argc, const char **argv) {
  (void)flags;
  return close_session(pamh, argc, argv);
}
