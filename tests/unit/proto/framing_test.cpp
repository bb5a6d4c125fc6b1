// framing.h: the length prefix, its hard maximum, encode_frame, and a
// deterministic randomized run of the header and request decoders.
#include "framing.h"

#include <google/protobuf/stubs/logging.h>
#include <gtest/gtest.h>

#include <array>
#include <cstring>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "core/verb_table.h"
#include "protocol.h"

namespace xpra_broker {
namespace {

using wire::HeaderError;
using wire::kHeaderSize;
using wire::kMaxFrameSize;

using Header = std::array<std::uint8_t, kHeaderSize>;

Header header_of(std::uint32_t n) {
  Header h{};
  wire::encode_header(n, h);
  return h;
}

wire::HeaderResult decode(const Header& h) { return wire::decode_header(std::span<const std::uint8_t, kHeaderSize>(h)); }

wire::HeaderResult decode_prefix(const std::string& bytes) {
  Header h{};
  std::memcpy(h.data(), bytes.data(), kHeaderSize);
  return decode(h);
}

// A request with a purpose of `n` bytes.
v1::Request acquire_with_purpose(std::size_t n) {
  v1::Request r;
  r.mutable_acquire()->set_purpose(std::string(n, 'p'));
  return r;
}

TEST(FramingTest, MaximumIs64KiB) {
  EXPECT_EQ(kMaxFrameSize, 65536u);
  EXPECT_EQ(kHeaderSize, 4u);
}

TEST(FramingTest, HeaderIsBigEndian) {
  EXPECT_EQ(header_of(0x01020304), (Header{0x01, 0x02, 0x03, 0x04}));
  EXPECT_EQ(header_of(1), (Header{0, 0, 0, 1}));
  EXPECT_EQ(header_of(65536), (Header{0, 1, 0, 0}));
  EXPECT_EQ(header_of(0xFFFFFFFFu), (Header{0xFF, 0xFF, 0xFF, 0xFF}));
}

TEST(FramingTest, HeaderRoundTripsForEveryAcceptableSizeClass) {
  for (std::uint32_t n : {1u, 2u, 127u, 128u, 255u, 256u, 1000u, 4096u, 65535u, 65536u}) {
    const auto r = decode(header_of(n));
    EXPECT_EQ(r.error, HeaderError::none) << n;
    EXPECT_EQ(r.body_size, n);
  }
}

TEST(FramingTest, HeaderRoundTripsForEveryValueUpTo64KiB) {
  for (std::uint32_t n = 1; n <= kMaxFrameSize; ++n) {
    const auto r = decode(header_of(n));
    ASSERT_EQ(r.error, HeaderError::none) << n;
    ASSERT_EQ(r.body_size, n);
  }
}

TEST(FramingTest, ZeroLengthIsRefused) {
  const auto r = decode(header_of(0));
  EXPECT_EQ(r.error, HeaderError::empty_frame);
  EXPECT_EQ(r.body_size, 0u);
}

TEST(FramingTest, SixtyFourKiBIsAcceptedAndOneMoreIsRefused) {
  EXPECT_EQ(decode(header_of(65536)).error, HeaderError::none);
  const auto r = decode(header_of(65537));
  EXPECT_EQ(r.error, HeaderError::too_large);
  EXPECT_EQ(r.body_size, 65537u) << "the refused size is reported for the log";
}

TEST(FramingTest, HugeLengthsAreRefused) {
  for (std::uint32_t n : {0x00010001u, 0x00100000u, 0x01000000u, 0x7FFFFFFFu, 0x80000000u, 0xFFFFFFFEu,
                          std::numeric_limits<std::uint32_t>::max()}) {
    const auto r = decode(header_of(n));
    EXPECT_EQ(r.error, HeaderError::too_large) << n;
    EXPECT_EQ(r.body_size, n);
  }
}

TEST(FramingTest, DescribeNamesEveryError) {
  EXPECT_STREQ(wire::describe(HeaderError::none), "ok");
  EXPECT_STREQ(wire::describe(HeaderError::empty_frame), "empty frame");
  EXPECT_STREQ(wire::describe(HeaderError::too_large), "frame larger than 64 KiB");
}

TEST(FramingTest, EncodeFrameRoundTripsARequest) {
  v1::Request req;
  req.mutable_acquire()->set_purpose("xpra start");
  const auto frame = wire::encode_frame(req);
  ASSERT_TRUE(frame.has_value());
  ASSERT_GT(frame->size(), kHeaderSize);
  const auto h = decode_prefix(*frame);
  ASSERT_EQ(h.error, HeaderError::none);
  ASSERT_EQ(h.body_size, frame->size() - kHeaderSize);
  v1::Request back;
  ASSERT_TRUE(back.ParseFromString(frame->substr(kHeaderSize)));
  EXPECT_EQ(back.verb_case(), v1::Request::kAcquire);
  EXPECT_EQ(back.acquire().purpose(), "xpra start");
}

TEST(FramingTest, EncodeFrameRoundTripsAResponse) {
  v1::Response resp;
  resp.set_status(v1::EXHAUSTED);
  resp.set_message("no free display");
  resp.set_retry_after_ms(30000);
  auto* lease = resp.mutable_acquire()->mutable_lease();
  lease->set_id("0123456789abcdef");
  lease->set_display(123);
  const auto frame = wire::encode_frame(resp);
  ASSERT_TRUE(frame.has_value());
  ASSERT_EQ(decode_prefix(*frame).body_size, frame->size() - kHeaderSize);
  v1::Response back;
  ASSERT_TRUE(back.ParseFromString(frame->substr(kHeaderSize)));
  EXPECT_EQ(back.SerializeAsString(), resp.SerializeAsString());
}

TEST(FramingTest, EncodeFrameRefusesAnEmptyMessage) {
  // An all-default message has no bytes; the peer would refuse the frame.
  EXPECT_FALSE(wire::encode_frame(v1::Request{}).has_value());
  EXPECT_FALSE(wire::encode_frame(v1::Response{}).has_value());
}

TEST(FramingTest, EncodeFrameAcceptsExactly64KiBAndRefusesOneMore) {
  // Find the purpose length whose request body is exactly 64 KiB.
  std::size_t exact = 0;
  for (std::size_t n = 65500; n < 65540; ++n)
    if (acquire_with_purpose(n).ByteSizeLong() == kMaxFrameSize) exact = n;
  ASSERT_NE(exact, 0u);

  const auto at_max = wire::encode_frame(acquire_with_purpose(exact));
  ASSERT_TRUE(at_max.has_value());
  EXPECT_EQ(at_max->size(), kHeaderSize + kMaxFrameSize);
  EXPECT_EQ(decode_prefix(*at_max).error, HeaderError::none);

  ASSERT_EQ(acquire_with_purpose(exact + 1).ByteSizeLong(), kMaxFrameSize + 1);
  EXPECT_FALSE(wire::encode_frame(acquire_with_purpose(exact + 1)).has_value());
}

TEST(FramingTest, EncodeFrameRefusesOversizeMessages) {
  for (std::size_t n : {70000u, 1u << 20}) {
    EXPECT_FALSE(wire::encode_frame(acquire_with_purpose(n)).has_value()) << n;
  }
  v1::Response big;
  big.set_status(v1::OK);
  for (int i = 0; i < 2000; ++i) {
    auto* l = big.mutable_list()->add_leases();
    l->set_id(std::string(16, 'a'));
    l->set_runtime_dir(std::string(40, '/'));
  }
  ASSERT_GT(big.ByteSizeLong(), kMaxFrameSize);
  EXPECT_FALSE(wire::encode_frame(big).has_value());
}

TEST(FramingTest, AStreamOfFramesSplitsBackIntoTheSameMessages) {
  std::vector<v1::Request> sent(4);
  sent[0].mutable_acquire()->set_purpose("a");
  sent[1].mutable_release()->set_display(150);
  sent[2].mutable_list()->set_all(true);
  sent[3].mutable_status();
  std::string stream;
  for (const auto& r : sent) stream += *wire::encode_frame(r);

  std::size_t pos = 0;
  std::vector<v1::Request> got;
  while (pos < stream.size()) {
    ASSERT_GE(stream.size() - pos, kHeaderSize);
    const auto h = decode_prefix(stream.substr(pos, kHeaderSize));
    ASSERT_EQ(h.error, HeaderError::none);
    pos += kHeaderSize;
    ASSERT_LE(h.body_size, stream.size() - pos);
    v1::Request r;
    ASSERT_TRUE(r.ParseFromString(stream.substr(pos, h.body_size)));
    got.push_back(r);
    pos += h.body_size;
  }
  ASSERT_EQ(got.size(), sent.size());
  for (std::size_t i = 0; i < sent.size(); ++i) EXPECT_EQ(got[i].SerializeAsString(), sent[i].SerializeAsString());
}

// What the broker does with bytes off the wire: the header rule, then the
// parse, then the verb table. Every outcome is checked against its rule; no
// input may crash or hang.
void check_untrusted_bytes(const std::string& bytes, int& parsed, int& refused) {
  if (bytes.size() >= kHeaderSize) {
    const auto h = decode_prefix(bytes);
    const std::uint32_t expected_size = (std::uint32_t(std::uint8_t(bytes[0])) << 24) |
                                        (std::uint32_t(std::uint8_t(bytes[1])) << 16) |
                                        (std::uint32_t(std::uint8_t(bytes[2])) << 8) | std::uint8_t(bytes[3]);
    ASSERT_EQ(h.body_size, expected_size);
    const HeaderError expected = expected_size == 0              ? HeaderError::empty_frame
                                 : expected_size > kMaxFrameSize ? HeaderError::too_large
                                                                 : HeaderError::none;
    ASSERT_EQ(h.error, expected);
  }
  v1::Request req;
  if (!req.ParseFromString(bytes)) {
    ++refused;
    return;
  }
  ++parsed;
  const Caller nobody{65534, 65534, 1, {}};
  const auto d = check_verb_access(AccessPolicy{}, nobody, req.verb_case());
  if (find_verb_rule(req.verb_case()) == nullptr) {
    ASSERT_EQ(d.status, v1::INVALID);
  } else {
    ASSERT_NE(d.status, v1::INVALID);
  }
  // Whatever parsed can be framed again (or is refused as empty / too big).
  const auto frame = wire::encode_frame(req);
  if (frame) {
    ASSERT_EQ(decode_prefix(*frame).error, HeaderError::none);
  }
}

TEST(FramingTest, RandomBytesNeverCrashTheDecoders) {
  // Invalid UTF-8 in string fields is expected here; protobuf would log each.
  google::protobuf::LogSilencer quiet_protobuf;
  std::mt19937_64 rng(0x5eed'f00d);
  int parsed = 0, refused = 0;
  for (int i = 0; i < 20000; ++i) {
    // Mostly short inputs, now and then a long one.
    const std::size_t len = (i % 100 == 0) ? rng() % 70000 : rng() % 64;
    std::string bytes(len, '\0');
    for (auto& c : bytes) c = static_cast<char>(rng());
    ASSERT_NO_FATAL_FAILURE(check_untrusted_bytes(bytes, parsed, refused)) << "input " << i;
  }
  EXPECT_EQ(parsed + refused, 20000);
}

TEST(FramingTest, MutatedValidRequestsNeverCrashTheDecoders) {
  // Invalid UTF-8 in string fields is expected here; protobuf would log each.
  google::protobuf::LogSilencer quiet_protobuf;
  // Start from real requests of every verb so the mutations reach deep into
  // the parser, then flip, drop, duplicate and insert bytes.
  std::vector<std::string> seeds;
  {
    v1::Request r;
    r.mutable_acquire()->set_purpose("xpra start --html=on");
    seeds.push_back(r.SerializeAsString());
    r.mutable_release()->set_lease_id("0123456789abcdef");
    seeds.push_back(r.SerializeAsString());
    r.mutable_release()->set_display(4242);
    seeds.push_back(r.SerializeAsString());
    r.mutable_list()->set_all(true);
    seeds.push_back(r.SerializeAsString());
    r.mutable_status();
    seeds.push_back(r.SerializeAsString());
    r.mutable_open_login()->set_uid(1000);
    seeds.push_back(r.SerializeAsString());
    r.mutable_close_login()->set_uid(1000);
    r.mutable_close_login()->set_reap_leases(true);
    seeds.push_back(r.SerializeAsString());
  }
  std::mt19937 rng(12345);
  int parsed = 0, refused = 0;
  for (int i = 0; i < 20000; ++i) {
    std::string bytes = seeds[rng() % seeds.size()];
    const int edits = 1 + static_cast<int>(rng() % 4);
    for (int e = 0; e < edits; ++e) {
      const std::size_t at = bytes.empty() ? 0 : rng() % bytes.size();
      switch (rng() % 5) {
        case 0:
          if (!bytes.empty()) bytes[at] = static_cast<char>(bytes[at] ^ (1u << (rng() % 8)));
          break;
        case 1:
          if (!bytes.empty()) bytes[at] = static_cast<char>(rng());
          break;
        case 2: bytes = bytes.substr(0, at); break;
        case 3: bytes.insert(at, 1, static_cast<char>(rng())); break;
        case 4: bytes += bytes.substr(at); break;
      }
    }
    ASSERT_NO_FATAL_FAILURE(check_untrusted_bytes(bytes, parsed, refused)) << "input " << i;
  }
  // The mutations must exercise both outcomes, or the test proves little.
  EXPECT_GT(parsed, 0);
  EXPECT_GT(refused, 0);
}

TEST(FramingTest, EveryFourByteHeaderFollowsTheRule) {
  std::mt19937 rng(7);
  for (int i = 0; i < 100000; ++i) {
    const std::uint32_t n = rng();
    const auto r = decode(header_of(n));
    ASSERT_EQ(r.body_size, n);
    ASSERT_EQ(r.error, n == 0 ? HeaderError::empty_frame : n > kMaxFrameSize ? HeaderError::too_large : HeaderError::none);
  }
}

}  // namespace
}  // namespace xpra_broker
