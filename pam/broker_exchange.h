/* One request, one reply with the broker over its Unix socket, bounded by a
   timeout: the C counterpart of common/broker_connection.cpp for the PAM
   module (same bounds, same error kinds and wording). */
#ifndef XPRA_BROKER_PAM_BROKER_EXCHANGE_H
#define XPRA_BROKER_PAM_BROKER_EXCHANGE_H

#include <stddef.h>
#include <stdint.h>

#include "login_protocol.h"

enum xpb_exchange_error {
  XPB_EXCHANGE_OK,
  XPB_EXCHANGE_CONNECT_FAILED,
  XPB_EXCHANGE_TIMEOUT,
  XPB_EXCHANGE_CLOSED,
  XPB_EXCHANGE_MALFORMED,
  XPB_EXCHANGE_NO_MEMORY,
};

struct xpb_exchange {
  enum xpb_exchange_error error;
  int connected;         /* 0: the error is the connect's */
  int errno_value;       /* of the failing call, 0 if none */
  const char *malformed; /* with XPB_EXCHANGE_MALFORMED: what was wrong */
  uint8_t *body;         /* the reply's bytes; reply points into them */
  struct xpb_login_reply reply;
};

/* Connects (bounded by timeout_ms, a full listen backlog included), sends the
   request frame and reads one reply frame, all within timeout_ms in all.
   Always call xpb_exchange_end afterwards. */
void xpb_exchange_run(const char *socket_path, long timeout_ms, const uint8_t *request, size_t request_size,
                      struct xpb_exchange *exchange);

void xpb_exchange_end(struct xpb_exchange *exchange);

/* "cannot connect to the broker", "the broker did not answer in time", ... */
const char *xpb_exchange_error_text(enum xpb_exchange_error error);

#endif
