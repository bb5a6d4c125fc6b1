#include "login_protocol.h"

#include <string.h>

/* Wire types of the protobuf encoding. */
enum { WIRE_VARINT = 0, WIRE_FIXED64 = 1, WIRE_LENGTH = 2, WIRE_GROUP_START = 3, WIRE_GROUP_END = 4, WIRE_FIXED32 = 5 };

/* Request.verb and Response.result members (xpra_broker.proto). */
enum { REQUEST_OPEN_LOGIN = 14, REQUEST_CLOSE_LOGIN = 15, RESULT_FIRST = 10, RESULT_LAST = 19 };

/* libprotobuf's default recursion limit: a reply it parses, this parses too. */
#define MAX_NESTING 100

/* ------------------------------------------------------------------ encoding */

static size_t put_varint(uint8_t *out, uint64_t value) {
  size_t n = 0;
  while (value >= 0x80) {
    out[n++] = (uint8_t)(value | 0x80);
    value >>= 7;
  }
  out[n++] = (uint8_t)value;
  return n;
}

static uint8_t tag(uint32_t field, uint32_t wire_type) { return (uint8_t)(field << 3 | wire_type); }

/* Frames the verb submessage `inner` as Request{verb = inner}. proto3 leaves
   out fields at their default (uid 0, reap false), as the C++ code does. */
static size_t frame_request(uint32_t verb, const uint8_t *inner, size_t inner_size,
                            uint8_t out[XPB_MAX_LOGIN_REQUEST_FRAME]) {
  uint8_t *body = out + XPB_FRAME_HEADER_SIZE;
  size_t n = 0;
  body[n++] = tag(verb, WIRE_LENGTH);
  n += put_varint(body + n, inner_size);
  memcpy(body + n, inner, inner_size);
  n += inner_size;
  out[0] = (uint8_t)(n >> 24);
  out[1] = (uint8_t)(n >> 16);
  out[2] = (uint8_t)(n >> 8);
  out[3] = (uint8_t)n;
  return XPB_FRAME_HEADER_SIZE + n;
}

size_t xpb_encode_open_login(uint32_t uid, uint8_t out[XPB_MAX_LOGIN_REQUEST_FRAME]) {
  uint8_t inner[8];
  size_t n = 0;
  if (uid != 0) {
    inner[n++] = tag(1, WIRE_VARINT);
    n += put_varint(inner + n, uid);
  }
  return frame_request(REQUEST_OPEN_LOGIN, inner, n, out);
}

size_t xpb_encode_close_login(uint32_t uid, bool reap_leases, uint8_t out[XPB_MAX_LOGIN_REQUEST_FRAME]) {
  uint8_t inner[10];
  size_t n = 0;
  if (uid != 0) {
    inner[n++] = tag(1, WIRE_VARINT);
    n += put_varint(inner + n, uid);
  }
  if (reap_leases) {
    inner[n++] = tag(2, WIRE_VARINT);
    inner[n++] = 1;
  }
  return frame_request(REQUEST_CLOSE_LOGIN, inner, n, out);
}

const char *xpb_decode_frame_header(const uint8_t header[XPB_FRAME_HEADER_SIZE], uint32_t *body_size) {
  const uint32_t size = (uint32_t)header[0] << 24 | (uint32_t)header[1] << 16 | (uint32_t)header[2] << 8 | header[3];
  *body_size = size;
  if (size == 0) return "empty frame";
  if (size > XPB_MAX_FRAME_SIZE) return "frame larger than 64 KiB";
  return NULL;
}

/* ------------------------------------------------------------------ decoding */

/* The unread rest of a (sub)message: never moves past end. */
struct reader {
  const uint8_t *at;
  const uint8_t *end;
};

/* A varint of at most max_bytes bytes; bits beyond 64 are dropped, as
   libprotobuf does. */
static const char *read_varint_of(struct reader *r, unsigned max_bytes, uint64_t *value, const char *too_long) {
  uint64_t v = 0;
  for (unsigned i = 0; i < max_bytes; i++) {
    if (r->at == r->end) return "truncated varint";
    const uint8_t byte = *r->at++;
    if (i < 10) v |= (uint64_t)(byte & 0x7f) << (7 * i);
    if ((byte & 0x80) == 0) {
      *value = v;
      return NULL;
    }
  }
  return too_long;
}

static const char *read_varint(struct reader *r, uint64_t *value) {
  return read_varint_of(r, 10, value, "varint longer than 10 bytes");
}

/* A tag is at most 5 bytes, of which the low 32 bits count (libprotobuf's
   ReadTag), with a field number of at least 1. */
static const char *read_tag(struct reader *r, uint32_t *field, uint32_t *wire_type) {
  uint64_t t;
  const char *error = read_varint_of(r, 5, &t, "field tag longer than 5 bytes");
  if (error) return error;
  *field = (uint32_t)t >> 3;
  *wire_type = (uint32_t)t & 7;
  if (*field == 0) return "field number 0";
  return NULL;
}

/* The payload of a length-delimited field, checked to lie inside r. The
   length is at most 5 bytes and below 2 GiB, as libprotobuf's ReadSize. */
static const char *read_length_delimited(struct reader *r, struct xpb_bytes *payload) {
  uint64_t size;
  const char *error = read_varint_of(r, 5, &size, "field length longer than 5 bytes");
  if (error) return error;
  if (size > (uint64_t)(r->end - r->at)) return "a field's length runs past the end of the frame";
  payload->data = r->at;
  payload->size = (size_t)size;
  r->at += size;
  return NULL;
}

static const char *skip_bytes(struct reader *r, size_t n) {
  if (n > (size_t)(r->end - r->at)) return "a fixed-size field runs past the end of the frame";
  r->at += n;
  return NULL;
}

/* Skips one field of any wire type whose tag has been read, groups included
   (nested ones too, each closed by its own number), without recursion.
   `depth` is the number of messages around this one (0 at the top), which
   count against the nesting limit as they do in libprotobuf. */
static const char *skip_field(struct reader *r, uint32_t field, uint32_t wire_type, unsigned depth) {
  uint32_t open_groups[MAX_NESTING];
  unsigned open = 0;
  for (;;) {
    const char *error = NULL;
    uint64_t ignored;
    struct xpb_bytes payload;
    switch (wire_type) {
      case WIRE_VARINT: error = read_varint(r, &ignored); break;
      case WIRE_FIXED64: error = skip_bytes(r, 8); break;
      case WIRE_LENGTH: error = read_length_delimited(r, &payload); break;
      case WIRE_FIXED32: error = skip_bytes(r, 4); break;
      case WIRE_GROUP_START:
        if (depth + open >= MAX_NESTING) return "groups nested too deep";
        open_groups[open++] = field;
        break;
      case WIRE_GROUP_END:
        if (open == 0 || open_groups[open - 1] != field) return "an end-group tag without its start";
        open--;
        break;
      default: return "invalid wire type";
    }
    if (error) return error;
    if (open == 0) return NULL;
    if (r->at == r->end) return "a group is not closed";
    error = read_tag(r, &field, &wire_type);
    if (error) return error;
  }
}

/* Strict UTF-8, as libprotobuf checks proto3 string fields: no overlong
   forms, no surrogates, nothing above U+10FFFF. */
static bool valid_utf8(struct xpb_bytes text) {
  const uint8_t *s = text.data;
  const uint8_t *end = s + text.size;
  while (s < end) {
    const uint8_t c = *s++;
    if (c < 0x80) continue;
    unsigned more;
    uint8_t low = 0x80, high = 0xbf; /* range of the byte after the lead */
    if (c >= 0xc2 && c <= 0xdf) {
      more = 1;
    } else if (c >= 0xe0 && c <= 0xef) {
      more = 2;
      if (c == 0xe0) low = 0xa0;
      if (c == 0xed) high = 0x9f;
    } else if (c >= 0xf0 && c <= 0xf4) {
      more = 3;
      if (c == 0xf0) low = 0x90;
      if (c == 0xf4) high = 0x8f;
    } else {
      return false;
    }
    if ((size_t)(end - s) < more) return false;
    if (s[0] < low || s[0] > high) return false;
    for (unsigned i = 1; i < more; i++)
      if (s[i] < 0x80 || s[i] > 0xbf) return false;
    s += more;
  }
  return true;
}

static const char *read_string(struct reader *r, struct xpb_bytes *text) {
  const char *error = read_length_delimited(r, text);
  if (error) return error;
  return valid_utf8(*text) ? NULL : "a string field is not valid UTF-8";
}

/* OpenLoginReply{runtime_dir = 1, login_sessions = 2}, merged into *reply
   (a member repeated on the wire is merged, as protobuf does). */
static const char *decode_open_login(struct reader r, struct xpb_login_reply *reply) {
  while (r.at < r.end) {
    uint32_t field, wire_type;
    uint64_t value = 0;
    const char *error = read_tag(&r, &field, &wire_type);
    if (error) return error;
    if (field == 1 && wire_type == WIRE_LENGTH) {
      error = read_string(&r, &reply->open_login.runtime_dir);
    } else if (field == 2 && wire_type == WIRE_VARINT) {
      error = read_varint(&r, &value);
      reply->open_login.login_sessions = (uint32_t)value;
    } else {
      error = skip_field(&r, field, wire_type, 1);
    }
    if (error) return error;
  }
  return NULL;
}

/* CloseLoginReply{login_sessions = 1, leases_ended = 2, counted = 3}. */
static const char *decode_close_login(struct reader r, struct xpb_login_reply *reply) {
  while (r.at < r.end) {
    uint32_t field, wire_type;
    uint64_t value = 0;
    const char *error = read_tag(&r, &field, &wire_type);
    if (error) return error;
    if (field >= 1 && field <= 3 && wire_type == WIRE_VARINT) {
      error = read_varint(&r, &value);
      if (field == 1) reply->close_login.login_sessions = (uint32_t)value;
      if (field == 2) reply->close_login.leases_ended = (uint32_t)value;
      if (field == 3) reply->close_login.counted = value != 0;
    } else {
      error = skip_field(&r, field, wire_type, 1);
    }
    if (error) return error;
  }
  return NULL;
}

/* Another oneof member than the current one clears what the last one set. */
static void switch_result(struct xpb_login_reply *reply, uint32_t field) {
  if (reply->result == field) return;
  reply->result = field;
  memset(&reply->open_login, 0, sizeof(reply->open_login));
  memset(&reply->close_login, 0, sizeof(reply->close_login));
}

const char *xpb_decode_login_reply(const uint8_t *body, size_t size, struct xpb_login_reply *reply) {
  memset(reply, 0, sizeof(*reply));
  if (size == 0) return NULL; /* all defaults; and body may be NULL then */
  struct reader r = {body, body + size};
  while (r.at < r.end) {
    uint32_t field, wire_type;
    uint64_t value = 0;
    struct xpb_bytes payload;
    const char *error = read_tag(&r, &field, &wire_type);
    if (error) return error;
    if (field == 1 && wire_type == WIRE_VARINT) {
      error = read_varint(&r, &value);
      reply->status = (int32_t)(uint32_t)value; /* an int32 enum keeps the low 32 bits */
    } else if (field == 2 && wire_type == WIRE_LENGTH) {
      error = read_string(&r, &reply->message);
    } else if (field >= RESULT_FIRST && field <= RESULT_LAST && wire_type == WIRE_LENGTH) {
      error = read_length_delimited(&r, &payload);
      if (error) return error;
      switch_result(reply, field);
      const struct reader inner = {payload.data, payload.data + payload.size};
      /* Members the module does not read are left unparsed: it never uses them. */
      if (field == XPB_RESULT_OPEN_LOGIN) error = decode_open_login(inner, reply);
      if (field == XPB_RESULT_CLOSE_LOGIN) error = decode_close_login(inner, reply);
    } else {
      error = skip_field(&r, field, wire_type, 0);
    }
    if (error) return error;
  }
  return NULL;
}

const char *xpb_status_name(int32_t status) {
  static const char *const names[] = {"STATUS_UNSPECIFIED", "OK",       "DENIED",   "NOT_FOUND",  "EXHAUSTED",
                                      "RATE_LIMITED",       "INVALID",  "INTERNAL", "UNAVAILABLE"};
  if (status < 0 || (size_t)status >= sizeof(names) / sizeof(names[0])) return "";
  return names[status];
}
