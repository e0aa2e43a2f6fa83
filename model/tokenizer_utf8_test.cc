#include "model/tokenizer_utf8.h"

#include <string>

#include "gtest/gtest.h"

namespace st::internal {
namespace {

std::string Sanitize(std::string_view s) {
  std::string out;
  AppendSanitizedUtf8(s, &out);
  return out;
}

constexpr char kFffd[] = "\xEF\xBF\xBD";

TEST(Utf8Test, Classify) {
  EXPECT_EQ(Utf8Classify("a", 0), 1);
  EXPECT_EQ(Utf8Classify("\xC3\xA9", 0), 2);
  EXPECT_EQ(Utf8Classify("\xE4\xB8\x80", 0), 3);
  EXPECT_EQ(Utf8Classify("\xF0\x9F\x98\x80", 0), 4);
  EXPECT_EQ(Utf8Classify("\xF0\x9F\x98", 0), 0);  // truncated
  EXPECT_EQ(Utf8Classify("\xC3", 0), 0);
  EXPECT_EQ(Utf8Classify("\x80", 0), -1);          // lone continuation
  EXPECT_EQ(Utf8Classify("\xC0\xAF", 0), -1);      // overlong lead
  EXPECT_EQ(Utf8Classify("\xE0\x80\x80", 0), -1);  // overlong 3-byte
  EXPECT_EQ(Utf8Classify("\xED\xA0\x80", 0), -1);  // surrogate
  EXPECT_EQ(Utf8Classify("\xF4\x90\x80\x80", 0), -1);
  EXPECT_EQ(Utf8Classify("\xF0\x9F\x41", 0), -2);  // maximal subpart F0 9F
  EXPECT_EQ(Utf8Classify("\xFF", 0), -1);
}

TEST(Utf8Test, FindInvalid) {
  EXPECT_EQ(FindInvalidUtf8(""), std::nullopt);
  EXPECT_EQ(FindInvalidUtf8("h\xC3\xA9llo \xF0\x9F\x98\x80"), std::nullopt);
  EXPECT_EQ(FindInvalidUtf8(std::string("a\0b", 3)), std::nullopt);
  EXPECT_EQ(FindInvalidUtf8("abc\xC3"), 3u);
  EXPECT_EQ(FindInvalidUtf8("ab\xE4\xB8x"), 2u);
}

TEST(Utf8Test, SanitizeUsesMaximalSubparts) {
  EXPECT_EQ(Sanitize("ok"), "ok");
  EXPECT_EQ(Sanitize("\xF0\x9F\x41"), std::string(kFffd) + "A");
  EXPECT_EQ(Sanitize("\xC0\xAF"), std::string(kFffd) + kFffd);
  EXPECT_EQ(Sanitize("a\xF0\x9F\x98"), std::string("a") + kFffd);
  EXPECT_EQ(Sanitize("\xED\xA0\x80"), std::string(kFffd) + kFffd + kFffd);
}

TEST(Utf8Test, RoundTripEncodeDecode) {
  for (char32_t cp : {0x0u, 0x7Fu, 0x80u, 0x7FFu, 0x800u, 0xFFFFu, 0x10000u, 0x10FFFFu}) {
    std::string s;
    AppendUtf8(cp, &s);
    ASSERT_GT(Utf8Classify(s, 0), 0);
    size_t pos = 0;
    EXPECT_EQ(DecodeUtf8Char(s, &pos), cp);
    EXPECT_EQ(pos, s.size());
  }
}

TEST(Utf8Test, Nfc) {
  EXPECT_EQ(NormalizeNfc("plain").value(), "plain");
  EXPECT_EQ(NormalizeNfc("e\xCC\x81").value(), "\xC3\xA9");
  EXPECT_EQ(NormalizeNfc("\xE1\x84\x80\xE1\x85\xA1").value(), "\xEA\xB0\x80");  // jamo -> 가
  EXPECT_EQ(NormalizeNfc(std::string("\xC3\xA9\0x", 4)).value(), std::string("\xC3\xA9\0x", 4));
  EXPECT_EQ(NormalizeNfc("\xEF\xAC\x81").value(), "\xEF\xAC\x81");  // ﬁ: NFC keeps it
}

}  // namespace
}  // namespace st::internal
