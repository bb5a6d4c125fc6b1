// The PAM module's hand-written protobuf (pam/login_protocol.c) against the
// C++ generated code of proto/xpra_broker.proto: the requests it sends are
// byte for byte what the C++ code would send, and the replies the C++ code
// produces (the broker's own serializer) decode to the same values, while
// truncated, malformed and hostile replies are refused with a reason and
// never read outside their bytes.
#include "login_protocol.h"

#include <google/protobuf/stubs/logging.h>
#include <gtest/gtest.h>

#include <cstdint>
#include <limits>
#include <span>
#include <string>

#include "framing.h"
#include "login_reply_oracle.h"
#include "protocol.h"

namespace xpra_broker {
namespace {

using pam_oracle::judge;

// libprotobuf logs every invalid UTF-8 string it refuses; the tests feed it many.
const bool kProtobufQuiet = (google::protobuf::SetLogHandler(nullptr), true);

constexpr std::uint32_t kUids[] = {0, 1, 127, 128, 1000, 16383, 16384, 64001, 65534, 2097152, 0x7fffffff,
                                   0x80000000, std::numeric_limits<std::uint32_t>::max()};

std::string c_open_login(std::uint32_t uid) {
  std::uint8_t out[XPB_MAX_LOGIN_REQUEST_FRAME];
  const std::size_t n = xpb_encode_open_login(uid, out);
  return std::string(reinterpret_cast<const char*>(out), n);
}

std::string c_close_login(std::uint32_t uid, bool reap) {
  std::uint8_t out[XPB_MAX_LOGIN_REQUEST_FRAME];
  const std::size_t n = xpb_encode_close_login(uid, reap, out);
  return std::string(reinterpret_cast<const char*>(out), n);
}

std::string hex(const std::string& bytes) {
  static const char digits[] = "0123456789abcdef";
  std::string out;
  for (unsigned char c : bytes) {
    out += digits[c >> 4];
    out += digits[c & 15];
    out += ' ';
  }
  return out;
}

TEST(LoginProtocol, OpenLoginFrameIsWhatTheGeneratedCodeSends) {
  for (const std::uint32_t uid : kUids) {
    v1::Request request;
    request.mutable_open_login()->set_uid(uid);
    const auto expected = wire::encode_frame(request);
    ASSERT_TRUE(expected.has_value());
    EXPECT_EQ(hex(c_open_login(uid)), hex(*expected)) << "uid " << uid;
  }
}

TEST(LoginProtocol, CloseLoginFrameIsWhatTheGeneratedCodeSends) {
  for (const std::uint32_t uid : kUids) {
    for (const bool reap : {false, true}) {
      v1::Request request;
      request.mutable_close_login()->set_uid(uid);
      request.mutable_close_login()->set_reap_leases(reap);
      const auto expected = wire::encode_frame(request);
      ASSERT_TRUE(expected.has_value());
      EXPECT_EQ(hex(c_close_login(uid, reap)), hex(*expected)) << "uid " << uid << " reap " << reap;
    }
  }
}

// The broker's side reads the C frames as the requests they stand for.
TEST(LoginProtocol, BrokerParsesTheCFrames) {
  const std::string open = c_open_login(64001);
  v1::Request parsed;
  ASSERT_TRUE(parsed.ParseFromArray(open.data() + wire::kHeaderSize, static_cast<int>(open.size() - 4)));
  ASSERT_EQ(parsed.verb_case(), v1::Request::kOpenLogin);
  EXPECT_EQ(parsed.open_login().uid(), 64001u);
  const std::string close = c_close_login(0, true);
  ASSERT_TRUE(parsed.ParseFromArray(close.data() + wire::kHeaderSize, static_cast<int>(close.size() - 4)));
  ASSERT_EQ(parsed.verb_case(), v1::Request::kCloseLogin);
  EXPECT_EQ(parsed.close_login().uid(), 0u);
  EXPECT_TRUE(parsed.close_login().reap_leases());
}

TEST(LoginProtocol, FrameHeaderAgreesWithTheBrokersCodec) {
  for (const std::uint32_t size : {0u, 1u, 255u, 256u, 65535u, 65536u, 65537u, 0x01000000u, 0xffffffffu}) {
    std::uint8_t header[4];
    wire::encode_header(size, std::span<std::uint8_t, 4>(header));
    std::uint32_t decoded = 0;
    const char* error = xpb_decode_frame_header(header, &decoded);
    const auto expected = wire::decode_header(std::span<const std::uint8_t, 4>(header));
    EXPECT_EQ(error == nullptr, expected.error == wire::HeaderError::none) << size;
    if (error) {
      EXPECT_STREQ(error, wire::describe(expected.error)) << size;
    } else {
      EXPECT_EQ(decoded, size);
    }
  }
}

v1::Response open_login_reply(const std::string& dir, std::uint32_t sessions) {
  v1::Response r;
  r.set_status(v1::OK);
  r.mutable_open_login()->set_runtime_dir(dir);
  r.mutable_open_login()->set_login_sessions(sessions);
  return r;
}

v1::Response close_login_reply(std::uint32_t left, std::uint32_t ended, bool counted) {
  v1::Response r;
  r.set_status(v1::OK);
  r.mutable_close_login()->set_login_sessions(left);
  r.mutable_close_login()->set_leases_ended(ended);
  r.mutable_close_login()->set_counted(counted);
  return r;
}

// Replies as the broker's serializer writes them, every field the module reads.
std::vector<v1::Response> typical_replies() {
  std::vector<v1::Response> out;
  out.push_back(open_login_reply("/run/xpra/64001", 1));
  out.push_back(open_login_reply("/run/xpra/64001", 0xffffffffu));
  out.push_back(open_login_reply("", 0));
  out.push_back(open_login_reply("/tmp/\xc3\xa9t\xc3\xa9/" + std::string(3000, 'd'), 7));
  out.push_back(close_login_reply(0, 3, true));
  out.push_back(close_login_reply(2, 0, false));
  out.push_back(close_login_reply(0xffffffffu, 0xffffffffu, true));
  for (const auto status : {v1::STATUS_UNSPECIFIED, v1::OK, v1::DENIED, v1::NOT_FOUND, v1::EXHAUSTED,
                            v1::RATE_LIMITED, v1::INVALID, v1::INTERNAL, v1::UNAVAILABLE}) {
    v1::Response r;
    r.set_status(status);
    r.set_message("only root may open a login session (you are uid 1000)\n\t\x1b[31m");
    r.set_retry_after_ms(1500);
    out.push_back(r);
  }
  v1::Response unknown_status;
  unknown_status.set_status(static_cast<v1::Status>(42));
  out.push_back(unknown_status);
  v1::Response negative_status;
  negative_status.set_status(static_cast<v1::Status>(-7));
  out.push_back(negative_status);
  // OK with another verb's result: the module sees no open_login/close_login.
  v1::Response other;
  other.set_status(v1::OK);
  other.mutable_status_reply()->set_version("0.1.0");
  other.mutable_status_reply()->add_warnings("w");
  out.push_back(other);
  v1::Response big;
  big.set_status(v1::INTERNAL);
  big.set_message(std::string(60000, 'm'));
  out.push_back(big);
  return out;
}

TEST(LoginProtocol, DecodesWhatTheGeneratedCodeWrites) {
  for (const auto& response : typical_replies()) {
    const std::string body = response.SerializeAsString();
    const auto verdict = judge(body);
    ASSERT_TRUE(verdict.cpp_parsed);
    EXPECT_EQ(verdict.c_error, nullptr) << verdict.c_error << " for " << response.ShortDebugString().substr(0, 200);
    EXPECT_EQ(verdict.mismatch, "") << response.ShortDebugString().substr(0, 200);
  }
}

TEST(LoginProtocol, ReadsTheValuesTheModuleUses) {
  const std::string body = open_login_reply("/run/xpra/64001", 2).SerializeAsString();
  xpb_login_reply reply{};
  ASSERT_EQ(xpb_decode_login_reply(reinterpret_cast<const std::uint8_t*>(body.data()), body.size(), &reply), nullptr);
  EXPECT_EQ(reply.status, XPB_STATUS_OK);
  EXPECT_EQ(reply.result, static_cast<std::uint32_t>(XPB_RESULT_OPEN_LOGIN));
  EXPECT_EQ(pam_oracle::view(reply.open_login.runtime_dir), "/run/xpra/64001");
  EXPECT_EQ(reply.open_login.login_sessions, 2u);
  EXPECT_STREQ(xpb_status_name(XPB_STATUS_DENIED), "DENIED");
  EXPECT_STREQ(xpb_status_name(42), "");
  EXPECT_STREQ(xpb_status_name(-1), "");
}

// libprotobuf reads a 5-byte tag's low 32 bits and ignores the rest (the
// first thing the fuzzer found): so does the C decoder.
TEST(LoginProtocol, FiveByteTagKeepsItsLow32Bits) {
  const std::string body("\x15\x00\x01\x00\x16\x08\x01\x95\xff\xed\xfa\x30" ".1.!", 16);
  const auto verdict = judge(body);
  ASSERT_TRUE(verdict.cpp_parsed);
  EXPECT_EQ(verdict.c_error, nullptr) << verdict.c_error;
  EXPECT_EQ(verdict.mismatch, "");
}

// Fields a later broker may add, anywhere, of every wire type: skipped, and
// what the module reads is unchanged (libprotobuf keeps them as unknown).
TEST(LoginProtocol, SkipsUnknownFieldsOfEveryWireType) {
  const std::string unknown[] = {
      std::string("\x20\x96\x01", 3),                          // field 4, varint
      std::string("\x29\x01\x02\x03\x04\x05\x06\x07\x08", 9),  // field 5, fixed64
      std::string("\x32\x03" "abc", 5),                        // field 6, length-delimited
      std::string("\x3d\x01\x02\x03\x04", 5),                  // field 7, fixed32
      std::string("\x43\x48\x01\x44", 4),                      // field 8, group with a varint inside
      std::string("\xa2\x06\x01\x00", 4),                      // field 100, length-delimited
      std::string("\xf8\xff\xff\xff\x0f\x01", 6),              // field 2^29-1, varint
      std::string("\x0a\x01x", 3),                             // field 1 (status) with the wrong wire type
  };
  for (const auto& response : typical_replies()) {
    const std::string body = response.SerializeAsString();
    for (const auto& field : unknown) {
      for (const std::string& mixed : {field + body, body + field}) {
        const auto verdict = judge(mixed);
        ASSERT_TRUE(verdict.cpp_parsed) << hex(field);
        EXPECT_EQ(verdict.mismatch, "") << hex(field);
      }
    }
  }
  // Inside the open_login and close_login results too.
  for (const auto& field : unknown) {
    std::string open_inner = open_login_reply("/run/xpra/5", 1).open_login().SerializeAsString() + field;
    std::string body = std::string("\x08\x01\x72", 3) + static_cast<char>(open_inner.size()) + open_inner;
    auto verdict = judge(body);
    ASSERT_TRUE(verdict.cpp_parsed) << hex(body);
    EXPECT_EQ(verdict.mismatch, "") << hex(body);
    std::string close_inner = field + close_login_reply(1, 2, true).close_login().SerializeAsString();
    body = std::string("\x08\x01\x7a", 3) + static_cast<char>(close_inner.size()) + close_inner;
    verdict = judge(body);
    ASSERT_TRUE(verdict.cpp_parsed) << hex(body);
    EXPECT_EQ(verdict.mismatch, "") << hex(body);
  }
}

// Concatenated messages merge: the last oneof member wins, a repeated member
// is merged, a repeated scalar takes its last value.
TEST(LoginProtocol, MergesLikeProtobuf) {
  const auto replies = typical_replies();
  for (const auto& a : replies) {
    for (const auto& b : replies) {
      const std::string body = a.SerializeAsString() + b.SerializeAsString();
      if (body.size() > 20000) continue;
      const auto verdict = judge(body);
      ASSERT_TRUE(verdict.cpp_parsed);
      EXPECT_EQ(verdict.mismatch, "") << a.ShortDebugString().substr(0, 100) << " + "
                                      << b.ShortDebugString().substr(0, 100);
    }
  }
}

// Cut anywhere: either still a whole message (both accept, same values) or
// refused by both, never read past the cut.
TEST(LoginProtocol, EveryTruncationIsRefusedOrWhole) {
  for (const auto& response : typical_replies()) {
    const std::string body = response.SerializeAsString();
    if (body.size() > 5000) continue;
    int refused = 0;
    for (std::size_t cut = 0; cut < body.size(); ++cut) {
      const auto verdict = judge(std::string_view(body).substr(0, cut));
      EXPECT_EQ(verdict.mismatch, "") << "cut at " << cut;
      EXPECT_EQ(verdict.c_error == nullptr, verdict.cpp_parsed) << "cut at " << cut << ": C says "
                                                                 << (verdict.c_error ? verdict.c_error : "ok");
      refused += verdict.c_error != nullptr;
    }
    if (body.size() > 3) {
      EXPECT_GT(refused, 0) << "no truncation was refused";
    }
  }
}

// Every single-bit error in a reply: whatever libprotobuf still accepts, the
// C decoder reads the same way.
TEST(LoginProtocol, BitFlipsNeverDiverge) {
  for (const auto& response : typical_replies()) {
    const std::string body = response.SerializeAsString();
    if (body.size() > 300) continue;
    for (std::size_t i = 0; i < body.size(); ++i) {
      for (int bit = 0; bit < 8; ++bit) {
        std::string flipped = body;
        flipped[i] = static_cast<char>(flipped[i] ^ (1 << bit));
        const auto verdict = judge(flipped);
        EXPECT_EQ(verdict.mismatch, "") << "byte " << i << " bit " << bit << ": " << hex(flipped);
      }
    }
  }
}

struct Malformed {
  const char* what;
  std::string body;
  const char* reason;  // what the C decoder says
};

TEST(LoginProtocol, RefusesMalformedRepliesWithAReason) {
  const Malformed cases[] = {
      {"varint of 11 bytes", std::string("\x08\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01", 12),
       "varint longer than 10 bytes"},
      {"varint cut short", std::string("\x08\xff", 2), "truncated varint"},
      {"tag 0", std::string("\x00\x01", 2), "field number 0"},
      {"field 0, length-delimited", std::string("\x02\x00", 2), "field number 0"},
      {"tag of 6 bytes", std::string("\x88\x80\x80\x80\x80\x00\x01", 7), "field tag longer than 5 bytes"},
      {"tag whose low 32 bits are 0", std::string("\x80\x80\x80\x80\x10\x00", 6), "field number 0"},
      {"wire type 6", std::string("\x0e\x00", 2), "invalid wire type"},
      {"wire type 7", std::string("\x0f\x00", 2), "invalid wire type"},
      {"end-group at the top", std::string("\x0c", 1), "an end-group tag without its start"},
      {"group closed by another number", std::string("\x43\x4c", 2), "an end-group tag without its start"},
      {"group never closed", std::string("\x43\x48\x01", 3), "a group is not closed"},
      {"message longer than the frame", std::string("\x12\x05" "ab", 4),
       "a field's length runs past the end of the frame"},
      {"length of 2^35", std::string("\x12\x80\x80\x80\x80\x80\x01", 7), "field length longer than 5 bytes"},
      {"length of 2^31", std::string("\x12\x80\x80\x80\x80\x08", 6),
       "a field's length runs past the end of the frame"},
      {"fixed64 cut short", std::string("\x29\x01\x02", 3), "a fixed-size field runs past the end of the frame"},
      {"fixed32 cut short", std::string("\x3d\x01", 2), "a fixed-size field runs past the end of the frame"},
      {"message not UTF-8", std::string("\x12\x02\xc3\x28", 4), "a string field is not valid UTF-8"},
      {"message with a surrogate", std::string("\x12\x03\xed\xa0\x80", 5), "a string field is not valid UTF-8"},
      {"message with an overlong slash", std::string("\x12\x02\xc0\xaf", 4), "a string field is not valid UTF-8"},
      {"runtime_dir not UTF-8", std::string("\x08\x01\x72\x03\x0a\x01\xff", 7), "a string field is not valid UTF-8"},
      {"open_login longer than the frame", std::string("\x08\x01\x72\x09\x0a\x01/", 7),
       "a field's length runs past the end of the frame"},
      {"runtime_dir longer than open_login", std::string("\x08\x01\x72\x03\x0a\x05/", 7) + "abcd",
       "a field's length runs past the end of the frame"},
      {"close_login counter cut short", std::string("\x08\x01\x7a\x02\x08\x80", 6), "truncated varint"},
      {"end-group inside close_login", std::string("\x08\x01\x7a\x01\x0c", 5), "an end-group tag without its start"},
  };
  for (const auto& c : cases) {
    const auto verdict = judge(c.body);
    EXPECT_FALSE(verdict.cpp_parsed) << c.what << ": libprotobuf accepts it, so it is not malformed";
    ASSERT_NE(verdict.c_error, nullptr) << c.what;
    EXPECT_STREQ(verdict.c_error, c.reason) << c.what;
  }
}

// Unknown groups nest; the C decoder allows at least as deep as libprotobuf
// and refuses past a bound, without recursion.
TEST(LoginProtocol, NestedGroupsAreBounded) {
  int c_deepest = 0, cpp_deepest = 0;
  for (int depth = 1; depth <= 200; ++depth) {
    std::string body = "\x08\x01";
    for (int i = 0; i < depth; ++i) body += "\x43";  // field 8, start group
    for (int i = 0; i < depth; ++i) body += "\x44";  // field 8, end group
    const auto verdict = judge(body);
    EXPECT_EQ(verdict.mismatch, "") << "depth " << depth;
    if (verdict.c_error == nullptr) c_deepest = depth;
    if (verdict.cpp_parsed) cpp_deepest = depth;
  }
  EXPECT_GE(c_deepest, cpp_deepest);
  EXPECT_LT(c_deepest, 200);
  xpb_login_reply reply{};
  std::string deep = "\x08\x01" + std::string(150, '\x43') + std::string(150, '\x44');
  EXPECT_STREQ(xpb_decode_login_reply(reinterpret_cast<const std::uint8_t*>(deep.data()), deep.size(), &reply),
               "groups nested too deep");
}

TEST(LoginProtocol, EmptyBodyIsAnAllDefaultsReply) {
  // The frame layer refuses empty frames; the decoder alone reads defaults.
  xpb_login_reply reply{};
  reply.status = 9;
  ASSERT_EQ(xpb_decode_login_reply(nullptr, 0, &reply), nullptr);
  EXPECT_EQ(reply.status, XPB_STATUS_UNSPECIFIED);
  EXPECT_EQ(reply.result, 0u);
}

}  // namespace
}  // namespace xpra_broker
