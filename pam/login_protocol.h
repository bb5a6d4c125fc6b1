/* The module's side of the broker protocol (proto/xpra_broker.proto, framing
   in proto/framing.h), without libprotobuf: the two fixed requests it sends
   are encoded by hand in the protobuf wire format, and of a reply only the
   fields it reads are decoded. The broker does not know the difference;
   tests/pam/login_protocol_test.cpp holds both sides against the generated
   C++ code byte for byte.

   Pure functions: no I/O, no allocation, no global state. A reply is read
   strictly inside the bytes it was given: every length is checked against
   what is left before it is used, unknown fields are skipped, anything the
   C++ parser would reject is rejected, with a reason for the log. */
#ifndef XPRA_BROKER_PAM_LOGIN_PROTOCOL_H
#define XPRA_BROKER_PAM_LOGIN_PROTOCOL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Frame: a 4-byte big-endian body length, then the body (wire::kHeaderSize,
   wire::kMaxFrameSize). An empty body is refused like a too large one. */
#define XPB_FRAME_HEADER_SIZE 4
#define XPB_MAX_FRAME_SIZE (64 * 1024)

/* Enough for either request: header, verb tag and length, uid, reap. */
#define XPB_MAX_LOGIN_REQUEST_FRAME 32

/* Status values of the wire (enum Status). */
enum xpb_status {
  XPB_STATUS_UNSPECIFIED = 0,
  XPB_STATUS_OK = 1,
  XPB_STATUS_DENIED = 2,
};

/* Response.result field numbers the module reads. */
#define XPB_RESULT_OPEN_LOGIN 14
#define XPB_RESULT_CLOSE_LOGIN 15

/* Request{open_login{uid}} as a frame; returns its size (never 0). */
size_t xpb_encode_open_login(uint32_t uid, uint8_t out[XPB_MAX_LOGIN_REQUEST_FRAME]);

/* Request{close_login{uid, reap_leases}} as a frame; returns its size. */
size_t xpb_encode_close_login(uint32_t uid, bool reap_leases, uint8_t out[XPB_MAX_LOGIN_REQUEST_FRAME]);

/* Returns NULL and sets *body_size for an acceptable header, else why not. */
const char *xpb_decode_frame_header(const uint8_t header[XPB_FRAME_HEADER_SIZE], uint32_t *body_size);

/* A string field of the reply: points into the decoded body, not terminated. */
struct xpb_bytes {
  const uint8_t *data;
  size_t size;
};

/* The fields of a Response the module reads. Absent fields keep their
   protobuf defaults (0, empty, false); result is the field number of the
   oneof member that was set (0: none, or one the module does not read). */
struct xpb_login_reply {
  int32_t status; /* as sent; may be a value this code has no name for */
  struct xpb_bytes message;
  uint32_t result;
  struct {
    struct xpb_bytes runtime_dir;
    uint32_t login_sessions;
  } open_login;
  struct {
    uint32_t login_sessions;
    uint32_t leases_ended;
    bool counted;
  } close_login;
};

/* Decodes a Response body. Returns NULL on success, else a short reason
   (a constant string) and *reply is not to be used. */
const char *xpb_decode_login_reply(const uint8_t *body, size_t size, struct xpb_login_reply *reply);

/* The enum value's name as in the .proto, "" for a value the .proto does not
   have (as Status_Name says). */
const char *xpb_status_name(int32_t status);

#ifdef __cplusplus
}
#endif

#endif
