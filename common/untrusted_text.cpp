#include "untrusted_text.h"

#include <cstdint>
#include <cstdio>

namespace xpra_broker {

namespace {

// Length of the valid UTF-8 sequence at text[i] (1-4), or 0 if it is not
// one (stray continuation, overlong form, surrogate, beyond U+10FFFF,
// truncated). Also yields the code point.
std::size_t utf8_sequence(std::string_view text, std::size_t i, std::uint32_t& cp) {
  const auto b0 = static_cast<unsigned char>(text[i]);
  std::size_t len;
  std::uint32_t min;
  if (b0 < 0x80) return cp = b0, 1;
  if ((b0 & 0xE0) == 0xC0) len = 2, cp = b0 & 0x1F, min = 0x80;
  else if ((b0 & 0xF0) == 0xE0) len = 3, cp = b0 & 0x0F, min = 0x800;
  else if ((b0 & 0xF8) == 0xF0) len = 4, cp = b0 & 0x07, min = 0x10000;
  else return 0;
  if (i + len > text.size()) return 0;
  for (std::size_t k = 1; k < len; ++k) {
    const auto b = static_cast<unsigned char>(text[i + k]);
    if ((b & 0xC0) != 0x80) return 0;
    cp = (cp << 6) | (b & 0x3F);
  }
  if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return 0;
  return len;
}

bool is_control(std::uint32_t cp) { return cp < 0x20 || cp == 0x7F || (cp >= 0x80 && cp <= 0x9F); }

// Unicode's format characters (General Category Cf, Unicode 15.1), which
// include every bidi control (U+061C, U+200E/F, U+202A-202E, U+2066-2069),
// plus the line and paragraph separators: invisible, or they reorder or
// break what an admin reads ("U+202E" makes "exe.txt" read "txt.exe").
// A table of 21 ranges instead of ICU: the broker links no Unicode library,
// and the category changes rarely.
bool is_format(std::uint32_t cp) {
  static constexpr std::uint32_t ranges[][2] = {
      {0x00AD, 0x00AD},   {0x0600, 0x0605},   {0x061C, 0x061C},   {0x06DD, 0x06DD},   {0x070F, 0x070F},
      {0x0890, 0x0891},   {0x08E2, 0x08E2},   {0x180E, 0x180E},   {0x200B, 0x200F},   {0x2028, 0x202E},
      {0x2060, 0x2064},   {0x2066, 0x206F},   {0xFEFF, 0xFEFF},   {0xFFF9, 0xFFFB},   {0x110BD, 0x110BD},
      {0x110CD, 0x110CD}, {0x13430, 0x1343F}, {0x1BCA0, 0x1BCA3}, {0x1D173, 0x1D17A}, {0xE0001, 0xE0001},
      {0xE0020, 0xE007F},
  };
  if (cp < 0xAD) return false;  // the common case: ASCII and Latin-1 letters
  for (const auto& r : ranges)
    if (cp >= r[0] && cp <= r[1]) return true;
  return false;
}

void append_code_point(std::string& out, std::uint32_t cp) {
  char buf[12];
  if (cp > 0xFFFF) std::snprintf(buf, sizeof(buf), "\\U%08x", static_cast<unsigned>(cp));
  else std::snprintf(buf, sizeof(buf), "\\u%04x", static_cast<unsigned>(cp));
  out += buf;
}

void append_hex(std::string& out, unsigned char byte) {
  char buf[5];
  std::snprintf(buf, sizeof(buf), "\\x%02x", byte);
  out += buf;
}

}  // namespace

std::string escape_untrusted(std::string_view text, std::size_t max_bytes) {
  const bool cut = text.size() > max_bytes;
  if (cut) text = text.substr(0, max_bytes);
  std::string out;
  out.reserve(text.size() + 8);
  for (std::size_t i = 0; i < text.size();) {
    std::uint32_t cp = 0;
    const std::size_t len = utf8_sequence(text, i, cp);
    if (len == 0) {
      // Not UTF-8 (or a sequence cut by max_bytes): escape this one byte.
      append_hex(out, static_cast<unsigned char>(text[i]));
      ++i;
      continue;
    }
    switch (cp) {
      case '\n': out += "\\n"; break;
      case '\r': out += "\\r"; break;
      case '\t': out += "\\t"; break;
      case '\\': out += "\\\\"; break;
      default:
        if (is_control(cp)) {
          for (std::size_t k = 0; k < len; ++k) append_hex(out, static_cast<unsigned char>(text[i + k]));
        } else if (is_format(cp)) {
          append_code_point(out, cp);
        } else {
          out.append(text.data() + i, len);
        }
    }
    i += len;
  }
  if (cut) out += "...";
  return out;
}

bool is_printable_text(std::string_view text) {
  for (std::size_t i = 0; i < text.size();) {
    std::uint32_t cp = 0;
    const std::size_t len = utf8_sequence(text, i, cp);
    if (len == 0 || is_control(cp) || is_format(cp)) return false;
    i += len;
  }
  return true;
}

}  // namespace xpra_broker
