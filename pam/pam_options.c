#include "pam_options.h"

#include <stdio.h>
#include <string.h>

#define KNOWN_OPTIONS "socket=PATH, timeout=MS, fail=open|closed, reap=yes|no, debug"

/* Bounded and printable, so a garbled service file cannot flood the log. */
static void quote(const char *text, char *out, size_t out_size) {
  size_t o = 0;
  const size_t length = strlen(text);
  const size_t shown = length > 200 ? 200 : length;
  out[o++] = '\'';
  for (size_t i = 0; i < shown && o + 5 < out_size; i++) {
    const unsigned char c = (unsigned char)text[i];
    out[o++] = c >= 0x20 && c < 0x7f ? (char)c : '?';
  }
  if (length > 200 && o + 5 < out_size) {
    memcpy(out + o, "...", 3);
    o += 3;
  }
  out[o++] = '\'';
  out[o] = '\0';
}

static bool key_is(const char *arg, size_t key_length, const char *key) {
  return strlen(key) == key_length && memcmp(arg, key, key_length) == 0;
}

/* Each setter returns NULL when the value was taken, else why not. */
static const char *set_socket(struct xpb_module_options *o, const char *value) {
  const size_t length = strlen(value);
  if (length == 0 || value[0] != '/') return "must be an absolute path";
  if (length > XPB_MAX_SOCKET_PATH) return "is longer than 107 bytes (the limit of a Unix socket path)";
  for (size_t i = 0; i < length; i++)
    if ((unsigned char)value[i] < 0x20 || value[i] == 0x7f) return "contains control characters";
  memcpy(o->socket, value, length + 1);
  return NULL;
}

static const char *set_timeout(struct xpb_module_options *o, const char *value) {
  /* Digits only (no sign, no blanks, no unit), and never more than fit. */
  static const char bad[] = "must be a whole number of milliseconds from 1 to 60000";
  if (*value == '\0') return bad;
  long ms = 0;
  for (const char *p = value; *p != '\0'; p++) {
    if (*p < '0' || *p > '9') return bad;
    ms = ms * 10 + (*p - '0');
    if (ms > XPB_MAX_TIMEOUT_MS) return bad;
  }
  if (ms < XPB_MIN_TIMEOUT_MS) return bad;
  o->timeout_ms = ms;
  return NULL;
}

static const char *set_fail(struct xpb_module_options *o, const char *value) {
  if (strcmp(value, "open") == 0) {
    o->fail = XPB_FAIL_OPEN;
  } else if (strcmp(value, "closed") == 0) {
    o->fail = XPB_FAIL_CLOSED;
  } else {
    return "must be 'open' (let the login through) or 'closed' (refuse the session)";
  }
  return NULL;
}

static const char *set_reap(struct xpb_module_options *o, const char *value) {
  if (strcmp(value, "yes") == 0) {
    o->reap_leases = true;
  } else if (strcmp(value, "no") == 0) {
    o->reap_leases = false;
  } else {
    return "must be 'yes' (end the user's leases at the last logout) or 'no' (keep them)";
  }
  return NULL;
}

static void report(xpb_option_error_fn on_error, void *context, const char *message) {
  if (on_error != NULL) on_error(context, message);
}

int xpb_parse_module_options(int argc, const char *const *argv, struct xpb_module_options *options,
                             xpb_option_error_fn on_error, void *context) {
  memset(options, 0, sizeof(*options));
  strcpy(options->socket, "/run/xpra/broker.sock");
  options->timeout_ms = 2000;
  options->fail = XPB_FAIL_OPEN;

  int errors = 0;
  char quoted[210];
  char message[XPB_OPTION_ERROR_MAX];
  for (int i = 0; i < argc; i++) {
    const char *arg = argv[i];
    if (arg == NULL) continue;
    if (strcmp(arg, "debug") == 0) {
      options->debug = true;
      continue;
    }
    quote(arg, quoted, sizeof(quoted));
    const char *eq = strchr(arg, '=');
    const size_t key_length = eq != NULL ? (size_t)(eq - arg) : strlen(arg);
    const bool valued = key_is(arg, key_length, "socket") || key_is(arg, key_length, "timeout") ||
                        key_is(arg, key_length, "fail") || key_is(arg, key_length, "reap");
    if (eq == NULL) {
      if (valued)
        snprintf(message, sizeof(message), "option %s needs a value (%s=...)", quoted, arg);
      else
        snprintf(message, sizeof(message), "unknown option %s; known options: " KNOWN_OPTIONS, quoted);
      report(on_error, context, message);
      errors++;
      continue;
    }
    const char *value = eq + 1;
    const char *error;
    if (key_is(arg, key_length, "socket")) {
      error = set_socket(options, value);
    } else if (key_is(arg, key_length, "timeout")) {
      error = set_timeout(options, value);
    } else if (key_is(arg, key_length, "fail")) {
      error = set_fail(options, value);
    } else if (key_is(arg, key_length, "reap")) {
      error = set_reap(options, value);
    } else if (key_is(arg, key_length, "debug")) {
      error = "takes no value (write just 'debug')";
    } else {
      snprintf(message, sizeof(message), "unknown option %s; known options: " KNOWN_OPTIONS, quoted);
      report(on_error, context, message);
      errors++;
      continue;
    }
    if (error != NULL) {
      snprintf(message, sizeof(message), "bad option %s: %.*s %s", quoted, (int)key_length, arg, error);
      report(on_error, context, message);
      errors++;
    }
  }
  return errors;
}

const char *xpb_fail_mode_name(enum xpb_fail_mode mode) { return mode == XPB_FAIL_CLOSED ? "closed" : "open"; }
