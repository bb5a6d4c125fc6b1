/* Options of pam_xpra_broker.so, as written after the module's name in a
   /etc/pam.d service file. Parsing is pure (no I/O, no environment, no
   allocation) so every accepted and refused spelling is unit-tested; the
   module logs the errors. C11: the module links only libc and libpam. */
#ifndef XPRA_BROKER_PAM_OPTIONS_H
#define XPRA_BROKER_PAM_OPTIONS_H

#include <stdbool.h>
#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

/* What to do when the broker cannot be asked (down, too slow, refusing). */
enum xpb_fail_mode {
  XPB_FAIL_OPEN,   /* log a warning and let the login through (default) */
  XPB_FAIL_CLOSED, /* refuse the session */
};

/* sizeof(sockaddr_un::sun_path) is 108 on Linux, one byte of it for the NUL. */
#define XPB_MAX_SOCKET_PATH 107
#define XPB_MIN_TIMEOUT_MS 1
#define XPB_MAX_TIMEOUT_MS 60000

struct xpb_module_options {
  /* Never taken from $XPRA_BROKER_SOCKET: under su or sudo the PAM stack runs
     with the invoking user's environment, who could point it at a fake broker. */
  char socket[XPB_MAX_SOCKET_PATH + 1];
  /* Bounds the connect and the reply: a login never waits longer than this
     for the broker (see docs/pam.md for the exact bound). */
  long timeout_ms;
  enum xpb_fail_mode fail;
  /* At the user's last logout: end the user's leases (reap=yes) or keep them
     (reap=no, the default, like logind's KillUserProcesses=no). */
  bool reap_leases;
  bool debug;
};

/* Longest error message handed to the callback, NUL included: an argument is
   quoted with at most 200 characters of it. */
#define XPB_OPTION_ERROR_MAX 512

/* Called once per bad argument with a message naming it and what is accepted. */
typedef void (*xpb_option_error_fn)(void *context, const char *message);

/* Parses the module arguments (argc/argv of pam_sm_*) into *options, starting
   from the defaults. A later occurrence of an option overrides an earlier one,
   as with other PAM modules; NULL entries are skipped. Returns the number of
   bad arguments: non-zero means the service file is wrong and the module must
   not act on it. on_error may be NULL. */
int xpb_parse_module_options(int argc, const char *const *argv, struct xpb_module_options *options,
                             xpb_option_error_fn on_error, void *context);

const char *xpb_fail_mode_name(enum xpb_fail_mode mode);

#ifdef __cplusplus
}
#endif

#endif
