#define _GNU_SOURCE
#include "broker_exchange.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

static long long now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Waits until fd is ready for `events` or the deadline passes. */
static int wait_ready(int fd, short events, long long deadline) {
  for (;;) {
    const long long left = deadline - now_ms();
    if (left <= 0) return 0;
    struct pollfd p = {fd, events, 0};
    const int n = poll(&p, 1, (int)left);
    if (n > 0) return 1;
    if (n < 0 && errno != EINTR) return 0;
  }
}

static enum xpb_exchange_error fail(struct xpb_exchange *x, enum xpb_exchange_error error, int errno_value) {
  x->error = error;
  x->errno_value = errno_value;
  return error;
}

static int connect_bounded(const char *socket_path, long timeout_ms, struct xpb_exchange *x) {
  struct sockaddr_un addr;
  memset(&addr, 0, sizeof(addr));
  const size_t length = strlen(socket_path);
  if (length >= sizeof(addr.sun_path)) {
    fail(x, XPB_EXCHANGE_CONNECT_FAILED, ENAMETOOLONG);
    return -1;
  }
  const int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    fail(x, XPB_EXCHANGE_CONNECT_FAILED, errno);
    return -1;
  }
  /* A blocking connect bounded by SO_SNDTIMEO: on a Unix socket whose listen
     backlog is full, a non-blocking connect fails at once with EAGAIN instead
     of waiting, while a blocking one waits for room up to the timeout. */
  const long ms = timeout_ms > 0 ? timeout_ms : 1;
  const struct timeval tv = {ms / 1000, (ms % 1000) * 1000};
  setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
  addr.sun_family = AF_UNIX;
  memcpy(addr.sun_path, socket_path, length + 1);
  int rc;
  do {
    rc = connect(fd, (struct sockaddr *)&addr, sizeof(addr));
  } while (rc != 0 && errno == EINTR);
  if (rc != 0) {
    const int err = errno;
    close(fd);
    if (err == EAGAIN || err == EINPROGRESS)
      fail(x, XPB_EXCHANGE_TIMEOUT, ETIMEDOUT);
    else
      fail(x, XPB_EXCHANGE_CONNECT_FAILED, err);
    return -1;
  }
  /* From here on every call is bounded by poll() deadlines instead. */
  fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
  return fd;
}

static enum xpb_exchange_error write_all(int fd, const uint8_t *data, size_t size, long long deadline,
                                         struct xpb_exchange *x) {
  while (size > 0) {
    const ssize_t n = send(fd, data, size, MSG_NOSIGNAL); /* no SIGPIPE in someone else's daemon */
    if (n > 0) {
      data += n;
      size -= (size_t)n;
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && errno == EAGAIN) {
      if (!wait_ready(fd, POLLOUT, deadline)) return fail(x, XPB_EXCHANGE_TIMEOUT, 0);
      continue;
    }
    return fail(x, XPB_EXCHANGE_CLOSED, errno);
  }
  return XPB_EXCHANGE_OK;
}

/* Fills buf[0..size) from fd before the deadline. */
static enum xpb_exchange_error read_exactly(int fd, uint8_t *buf, size_t size, long long deadline,
                                            struct xpb_exchange *x) {
  size_t have = 0;
  while (have < size) {
    /* A reply is never there the moment the request has gone out: wait first. */
    if (!wait_ready(fd, POLLIN, deadline)) return fail(x, XPB_EXCHANGE_TIMEOUT, 0);
    const ssize_t n = recv(fd, buf + have, size - have, 0);
    if (n > 0) {
      have += (size_t)n;
      continue;
    }
    if (n == 0) return fail(x, XPB_EXCHANGE_CLOSED, 0);
    if (errno == EINTR || errno == EAGAIN) continue;
    return fail(x, XPB_EXCHANGE_CLOSED, errno);
  }
  return XPB_EXCHANGE_OK;
}

static enum xpb_exchange_error call(int fd, const uint8_t *request, size_t request_size, long long deadline,
                                    struct xpb_exchange *x) {
  if (write_all(fd, request, request_size, deadline, x) != XPB_EXCHANGE_OK) return x->error;
  uint8_t header[XPB_FRAME_HEADER_SIZE];
  if (read_exactly(fd, header, sizeof(header), deadline, x) != XPB_EXCHANGE_OK) return x->error;
  uint32_t body_size;
  /* The length is checked before anything is sized from it. */
  x->malformed = xpb_decode_frame_header(header, &body_size);
  if (x->malformed) return fail(x, XPB_EXCHANGE_MALFORMED, 0);
  x->body = malloc(body_size);
  if (x->body == NULL) return fail(x, XPB_EXCHANGE_NO_MEMORY, ENOMEM);
  if (read_exactly(fd, x->body, body_size, deadline, x) != XPB_EXCHANGE_OK) return x->error;
  x->malformed = xpb_decode_login_reply(x->body, body_size, &x->reply);
  if (x->malformed) return fail(x, XPB_EXCHANGE_MALFORMED, 0);
  return XPB_EXCHANGE_OK;
}

void xpb_exchange_run(const char *socket_path, long timeout_ms, const uint8_t *request, size_t request_size,
                      struct xpb_exchange *x) {
  memset(x, 0, sizeof(*x));
  const long long started = now_ms();
  const int fd = connect_bounded(socket_path, timeout_ms, x);
  if (fd < 0) return;
  x->connected = 1;
  /* What is left of timeout= bounds sending the request and reading the reply. */
  long long left = timeout_ms - (now_ms() - started);
  if (left < 1) left = 1;
  call(fd, request, request_size, now_ms() + left, x);
  close(fd);
}

void xpb_exchange_end(struct xpb_exchange *x) {
  free(x->body);
  x->body = NULL;
}

const char *xpb_exchange_error_text(enum xpb_exchange_error error) {
  switch (error) {
    case XPB_EXCHANGE_OK: return "ok";
    case XPB_EXCHANGE_CONNECT_FAILED: return "cannot connect to the broker";
    case XPB_EXCHANGE_TIMEOUT: return "the broker did not answer in time";
    case XPB_EXCHANGE_CLOSED: return "the broker closed the connection";
    case XPB_EXCHANGE_MALFORMED: return "the broker sent a malformed reply";
    case XPB_EXCHANGE_NO_MEMORY: return "out of memory";
  }
  return "unknown error";
}
