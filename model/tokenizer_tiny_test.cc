// Tokenizer behavior on a tiny synthetic vocabulary (no external files):
// BPE merge order, added-token matching, errors, byte-level tables.
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "model/byte_level.h"
#include "model/tokenizer.h"
#include "model/tokenizer_pretokenizer.h"
#include "model/tokenizer_testing.h"

namespace st {
namespace {

using Ids = std::vector<int32_t>;

std::unique_ptr<Tokenizer> Make(const std::vector<std::string>& merges) {
  absl::StatusOr<std::unique_ptr<Tokenizer>> t =
      Tokenizer::Create(testing::TinyTokenizerData(merges));
  EXPECT_TRUE(t.ok()) << t.status();
  return t.ok() ? *std::move(t) : nullptr;
}

std::vector<std::string> Texts(const Tokenizer& t, const Ids& ids) {
  std::vector<std::string> out;
  for (int32_t id : ids) out.emplace_back(t.TokenText(id));
  return out;
}

std::vector<std::string> Split(std::string_view text) {
  auto pre = Qwen2PreTokenizer::Create();
  EXPECT_TRUE(pre.ok());
  std::vector<std::string_view> pieces;
  EXPECT_TRUE((*pre)->Split(text, &pieces).ok());
  return {pieces.begin(), pieces.end()};
}

TEST(ByteLevelTest, Table) {
  EXPECT_EQ(ByteToUnicode(' '), 0x120u);
  EXPECT_EQ(ByteToUnicode('\n'), 0x10Au);
  EXPECT_EQ(ByteToUnicode('A'), static_cast<char32_t>('A'));
  EXPECT_EQ(ByteToUnicode(0xAD), 0x143u);  // the last remapped byte
  EXPECT_EQ(ByteLevelEncode(" a\n"),
            "\xC4\xA0"
            "a"
            "\xC4\x8A");
  std::string all;
  for (int b = 0; b < 256; ++b) all.push_back(static_cast<char>(b));
  std::string back;
  EXPECT_TRUE(ByteLevelDecode(ByteLevelEncode(all), &back));
  EXPECT_EQ(back, all);
  back.clear();
  EXPECT_FALSE(ByteLevelDecode("\xE4\xB8\x80", &back));  // U+4E00 not in the alphabet
  EXPECT_EQ(back, "\xE4\xB8\x80");                       // passed through
  EXPECT_EQ(UnicodeToByte(0x144), std::nullopt);
}

TEST(PreTokenizerTest, Qwen2Pieces) {
  printf("[ pcre2  ] JIT %s\n", Qwen2PreTokenizer::Create().value()->jit_enabled() ? "on" : "off");
  EXPECT_EQ(Split("Hello world's 2025!!\n\n  x"),
            (std::vector<std::string>{"Hello", " world", "'s", " ", "2", "0", "2", "5", "!!\n\n",
                                      " ", " x"}));
  EXPECT_EQ(Split("I'LL  go\t\n"), (std::vector<std::string>{"I", "'LL", " ", " go", "\t\n"}));
  EXPECT_EQ(Split("a  "), (std::vector<std::string>{"a", "  "}));
  EXPECT_EQ(Split("x\xEF\xBB\xBF  y"),  // U+FEFF counts as JS whitespace
            (std::vector<std::string>{"x", "\xEF\xBB\xBF ", " y"}));
  EXPECT_EQ(Split(std::string("a\0b", 3)), (std::vector<std::string>{"a", std::string("\0b", 2)}));
}

TEST(TinyTokenizerTest, LowestRankFirstThenLeftmost) {
  // Ranks: "b c" (0) beats "a b" (1): "abc" -> a + bc.
  auto t = Make({"b c", "a b"});
  EXPECT_EQ(Texts(*t, t->Encode("abc").value()), (std::vector<std::string>{"a", "bc"}));
  // Same rank everywhere: leftmost pair first, "aaa" -> aa + a.
  auto u = Make({"a a", "aa aa"});
  EXPECT_EQ(Texts(*u, u->Encode("aaa").value()), (std::vector<std::string>{"aa", "a"}));
  EXPECT_EQ(Texts(*u, u->Encode("aaaaa").value()), (std::vector<std::string>{"aaaa", "a"}));
  // Merges chain across created symbols.
  auto v = Make({"a b", "ab c", "abc d"});
  EXPECT_EQ(Texts(*v, v->Encode("abcdab").value()), (std::vector<std::string>{"abcd", "ab"}));
  // Pieces never merge across the pre-tokenizer boundary.
  EXPECT_EQ(Texts(*v, v->Encode("ab ab").value()),
            (std::vector<std::string>{"ab", "\xC4\xA0", "ab"}));
}

TEST(TinyTokenizerTest, MergesWithUnknownPartsAreSkipped) {
  TokenizerData d = testing::TinyTokenizerData({"a b"});
  d.merges.push_back("zz q");  // "zz" is not a token
  auto t = Tokenizer::Create(d);
  ASSERT_TRUE(t.ok()) << t.status();
  EXPECT_EQ((*t)->Encode("ab").value().size(), 1u);
  d.merges.push_back("nospace");
  EXPECT_EQ(Tokenizer::Create(d).status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(TinyTokenizerTest, AddedTokensLongestMatch) {
  TokenizerData d = testing::TinyTokenizerData({});
  d.tokens.push_back("<|im");  // overlapping user-defined token
  d.token_types.push_back(static_cast<int32_t>(TokenType::kUserDefined));
  auto t = Tokenizer::Create(d);
  ASSERT_TRUE(t.ok());
  const int32_t im_end = *(*t)->TokenId("<|im_end|>");
  const int32_t im = *(*t)->TokenId("<|im");
  EXPECT_EQ((*t)->Encode("<|im_end|>").value(), Ids{im_end});
  EXPECT_EQ((*t)->Encode("<|im_x").value()[0], im);
  EXPECT_EQ((*t)->Encode("<tool_call>").value(), Ids{*(*t)->TokenId("<tool_call>")});
  // Unused (type 5) tokens are never matched.
  d.tokens.push_back("<unused>");
  d.token_types.push_back(static_cast<int32_t>(TokenType::kUnused));
  auto u = Tokenizer::Create(d);
  ASSERT_TRUE(u.ok());
  EXPECT_EQ((*u)->Encode("<unused>").value().size(), 8u);
}

TEST(TinyTokenizerTest, DecodeRules) {
  TokenizerData d = testing::TinyTokenizerData({});
  d.tokens.push_back("[PAD260]");
  d.token_types.push_back(static_cast<int32_t>(TokenType::kUnused));
  auto t = Tokenizer::Create(d);
  ASSERT_TRUE(t.ok());
  const int32_t im_end = *(*t)->TokenId("<|im_end|>");
  EXPECT_EQ((*t)->Decode({'h', 'i', im_end, 260, -5, 100000}), "hi<|im_end|>");
  EXPECT_EQ((*t)->Decode({0xC3, 0xA9}), "\xC3\xA9");  // raw bytes; é
  EXPECT_EQ((*t)->Decode({0xC3}), "\xC3");            // may end mid-character
  EXPECT_TRUE((*t)->IsEndOfGeneration(im_end));
  EXPECT_TRUE((*t)->IsEndOfGeneration(*(*t)->TokenId("<|endoftext|>")));
  EXPECT_FALSE((*t)->IsEndOfGeneration(*(*t)->TokenId("<|im_start|>")));
}

TEST(TinyTokenizerTest, CreateValidates) {
  TokenizerData d = testing::TinyTokenizerData({});
  d.eos_id = static_cast<int32_t>(d.tokens.size());
  EXPECT_EQ(Tokenizer::Create(d).status().code(), absl::StatusCode::kInvalidArgument);
  d = testing::TinyTokenizerData({});
  d.token_types.pop_back();
  EXPECT_EQ(Tokenizer::Create(d).status().code(), absl::StatusCode::kInvalidArgument);
  d = testing::TinyTokenizerData({});
  d.model = "llama";
  absl::Status s = Tokenizer::Create(d).status();
  EXPECT_NE(s.message().find("\"llama\""), std::string::npos) << s;
  d = testing::TinyTokenizerData({});
  d.token_types.clear();  // defaults to all normal
  EXPECT_TRUE(Tokenizer::Create(d).ok());
  EXPECT_FALSE(Tokenizer::Create(TokenizerData{}).ok());
}

TEST(TinyTokenizerTest, MissingByteTokenIsAnError) {
  TokenizerData d = testing::TinyTokenizerData({});
  d.tokens['x'] = "not-x";
  auto t = Tokenizer::Create(d);
  ASSERT_TRUE(t.ok());
  absl::Status s = (*t)->Encode("axb").status();
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("0x78"), std::string::npos) << s;
}

TEST(TinyTokenizerTest, NfcAppliedOutsideAddedTokens) {
  auto t = Make({});
  // "e" + U+0301 becomes U+00E9 (2 bytes -> 2 byte tokens, not 3).
  EXPECT_EQ(t->Encode("e\xCC\x81").value(), (Ids{0xC3, 0xA9}));
  EXPECT_EQ(t->Encode("\xE2\x84\xAB").value(), (Ids{0xC3, 0x85}));  // U+212B -> U+00C5
}

TEST(TinyTokenizerTest, LongPiecesAreFast) {
  auto t = Make({"a a", "aa aa", "aaaa aaaa"});
  const std::string text(200000, 'a');  // one 200 kB letter run
  absl::StatusOr<Ids> ids = t->Encode(text);
  ASSERT_TRUE(ids.ok());
  EXPECT_EQ(ids->size(), 200000u / 8);
}

}  // namespace
}  // namespace st
