// untrusted_text.h: what a user's text becomes before it reaches a log line
// or a terminal, for every byte value.
#include "untrusted_text.h"

#include <gtest/gtest.h>

#include <string>

namespace xpra_broker {
namespace {

TEST(EscapeUntrustedTest, PrintableUtf8PassesThrough) {
  EXPECT_EQ(escape_untrusted("xpra start :105"), "xpra start :105");
  EXPECT_EQ(escape_untrusted("Grüße, 日本, 🙂"), "Grüße, 日本, 🙂");
  EXPECT_EQ(escape_untrusted(""), "");
}

TEST(EscapeUntrustedTest, LineBreaksEscapesAndBackslashesCannotForgeALine) {
  EXPECT_EQ(escape_untrusted("a\nlease=x uid=0 acquired"), "a\\nlease=x uid=0 acquired");
  EXPECT_EQ(escape_untrusted("\r\t\\"), "\\r\\t\\\\");
  EXPECT_EQ(escape_untrusted("\x1b[2J\x1b]0;owned\x07"), "\\x1b[2J\\x1b]0;owned\\x07");
  EXPECT_EQ(escape_untrusted(std::string("a\0b", 3)), "a\\x00b");
  EXPECT_EQ(escape_untrusted("\x7f"), "\\x7f");
  EXPECT_EQ(escape_untrusted("\xc2\x9b"), "\\xc2\\x9b") << "C1 CSI, as UTF-8";
}

TEST(EscapeUntrustedTest, BytesThatAreNotUtf8AreEscapedOneByOne) {
  EXPECT_EQ(escape_untrusted("\xff\xfe"), "\\xff\\xfe");
  EXPECT_EQ(escape_untrusted("\xc3"), "\\xc3") << "truncated sequence";
  EXPECT_EQ(escape_untrusted("\xc0\xaf"), "\\xc0\\xaf") << "overlong '/'";
  EXPECT_EQ(escape_untrusted("\xed\xa0\x80"), "\\xed\\xa0\\x80") << "a surrogate";
  EXPECT_EQ(escape_untrusted("\xf4\x90\x80\x80"), "\\xf4\\x90\\x80\\x80") << "above U+10FFFF";
}

TEST(EscapeUntrustedTest, EveryByteValueComesOutPrintable) {
  for (int b = 0; b < 256; ++b) {
    const std::string out = escape_untrusted(std::string(1, static_cast<char>(b)));
    for (unsigned char c : out) EXPECT_TRUE(c >= 0x20 && c < 0x7f) << "byte " << b << " -> " << out;
  }
}

TEST(EscapeUntrustedTest, LongInputIsCapped) {
  const std::string out = escape_untrusted(std::string(10000, '\n'), 100);
  EXPECT_EQ(out.size(), 200u + 3u);
  EXPECT_EQ(out.substr(out.size() - 3), "...");
}

TEST(EscapeUntrustedTest, FormatAndBidiCharactersAreNamedNotPrinted) {
  // U+202E RIGHT-TO-LEFT OVERRIDE makes "gpj.exe" read "exe.jpg".
  EXPECT_EQ(escape_untrusted("photo\u202Egpj.exe"), "photo\\u202egpj.exe");
  EXPECT_EQ(escape_untrusted("a\u200Bb\u2066c\u2069\uFEFF"), "a\\u200bb\\u2066c\\u2069\\ufeff");
  EXPECT_EQ(escape_untrusted("\u00AD\u061C\u2028\u2029"), "\\u00ad\\u061c\\u2028\\u2029");
  EXPECT_EQ(escape_untrusted("tag\U000E0041"), "tag\\U000e0041");
  // Neighbours of the ranges are ordinary text.
  EXPECT_EQ(escape_untrusted("\u00AC\u2010\u2030\u2070"), "\u00AC\u2010\u2030\u2070");
}

TEST(IsPrintableTextTest, RefusesFormatAndBidiCharacters) {
  for (const char* text : {"\u202E", "\u202A", "\u2066", "\u2067", "\u2068", "\u2069", "\u200E", "\u200F",
                           "\u061C", "\u200B", "\u200D", "\u2060", "\uFEFF", "\u00AD", "\u2028", "\U000E0001"})
    EXPECT_FALSE(is_printable_text(std::string("desktop ") + text)) << escape_untrusted(text);
  EXPECT_TRUE(is_printable_text("\u05E9\u05DC\u05D5\u05DD")) << "Hebrew letters themselves are fine";
}

TEST(IsPrintableTextTest, AcceptsTextRefusesControlsAndBrokenUtf8) {
  EXPECT_TRUE(is_printable_text("xpra desktop (jupyter)"));
  EXPECT_TRUE(is_printable_text("Grüße"));
  EXPECT_TRUE(is_printable_text(""));
  EXPECT_FALSE(is_printable_text("a\nb"));
  EXPECT_FALSE(is_printable_text("\x1b[31m"));
  EXPECT_FALSE(is_printable_text("\t"));
  EXPECT_FALSE(is_printable_text("\xff"));
  EXPECT_FALSE(is_printable_text("\xc2\x85")) << "NEL";
}

}  // namespace
}  // namespace xpra_broker
