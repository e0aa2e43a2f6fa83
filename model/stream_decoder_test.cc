#include "model/stream_decoder.h"

#include <fstream>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "model/tokenizer.h"
#include "model/tokenizer_testing.h"
#include "model/tokenizer_utf8.h"

namespace st {
namespace {

constexpr char kFffd[] = "\xEF\xBF\xBD";

std::unique_ptr<Tokenizer> Tiny() {
  return Tokenizer::Create(testing::TinyTokenizerData({})).value();
}

// Ids 0..255 of the tiny vocabulary are the raw bytes.
std::vector<std::string> PushAll(StreamDecoder* d, const std::string& bytes) {
  std::vector<std::string> out;
  for (char c : bytes) out.push_back(d->Push(static_cast<uint8_t>(c)));
  return out;
}

TEST(StreamDecoderTest, HoldsBackIncompleteCharacters) {
  auto tok = Tiny();
  StreamDecoder d(*tok);
  // U+1F600 split byte by byte.
  EXPECT_EQ(PushAll(&d, "\xF0\x9F\x98\x80"),
            (std::vector<std::string>{"", "", "", "\xF0\x9F\x98\x80"}));
  EXPECT_EQ(d.pending_bytes(), 0u);
  EXPECT_EQ(PushAll(&d, "a\xC3"), (std::vector<std::string>{"a", ""}));
  EXPECT_EQ(d.pending_bytes(), 1u);
  EXPECT_EQ(d.Push(0xA9), "\xC3\xA9");
  EXPECT_EQ(d.Flush(), "");
}

TEST(StreamDecoderTest, InvalidBytesBecomeReplacementAtOnce) {
  auto tok = Tiny();
  StreamDecoder d(*tok);
  EXPECT_EQ(d.Push(0xFF), kFffd);
  EXPECT_EQ(d.Push(0xF0), "");
  EXPECT_EQ(d.Push('A'), std::string(kFffd) + "A");  // lead byte then ASCII
  EXPECT_EQ(d.Push(0xE4), "");
  EXPECT_EQ(d.Flush(), kFffd);  // truncated tail
  EXPECT_EQ(d.Flush(), "");
  EXPECT_EQ(d.Push('z'), "z");  // usable after Flush
}

// Control tokens show nothing and leave a held-back character held (the
// bytes that complete it may follow); user-defined added tokens are text.
TEST(StreamDecoderTest, ControlTokensShowNothing) {
  auto tok = Tiny();
  StreamDecoder d(*tok);
  EXPECT_EQ(d.Push(0xE4), "");
  for (const char* control : {"<|im_start|>", "<|im_end|>", "<|endoftext|>"}) {
    EXPECT_EQ(d.Push(*tok->TokenId(control)), "") << control;
  }
  EXPECT_EQ(d.pending_bytes(), 1u);
  EXPECT_EQ(d.Push(0xB8), "");
  EXPECT_EQ(d.Push(0xAD), "\xE4\xB8\xAD");  // U+4E2D
  EXPECT_EQ(d.Push(*tok->TokenId("<tool_call>")), "<tool_call>");
  EXPECT_EQ(d.Flush(), "");
}

// A stop string that is a control token's text still ends generation.
TEST(StreamDecoderTest, FeedGeneratedMatchesStopStringsOnHiddenTokens) {
  auto tok = Tiny();
  StreamDecoder d(*tok);
  StopChecker stop({"<|im_start|>"}, {}, 0);
  EXPECT_EQ(FeedGenerated('o', false, d, stop).text, "o");
  EXPECT_EQ(FeedGenerated('k', false, d, stop).text, "k");
  const StopStep step = FeedGenerated(*tok->TokenId("<|im_start|>"), false, d, stop);
  EXPECT_EQ(step.finish, FinishReason::kStop);
  EXPECT_EQ(step.text, "");
  StreamDecoder shown(*tok, /*show_control=*/true);
  const int32_t im_end = *tok->TokenId("<|im_end|>");
  StopChecker none({}, {}, 0);
  EXPECT_EQ(FeedGenerated(im_end, false, shown, none).text, "<|im_end|>");
  StopChecker eos({}, {im_end}, 0);
  EXPECT_EQ(FeedGenerated(im_end, true, shown, eos).finish, FinishReason::kStop);
}

TEST(StreamDecoderTest, ControlTokensShownWhenAskedFor) {
  auto tok = Tiny();
  StreamDecoder d(*tok, /*show_control=*/true);
  EXPECT_EQ(d.Push(0xE4), "");
  // An added token arriving after an incomplete character: the held byte is
  // ill-formed now and is replaced; the token text follows.
  EXPECT_EQ(d.Push(*tok->TokenId("<|im_end|>")), std::string(kFffd) + "<|im_end|>");
}

TEST(StreamDecoderTest, QwenEmojiAndCjkTokenByToken) {
  if (!testing::QwenTokenizerAvailable()) GTEST_SKIP() << testing::kQwenMissingMessage;
  auto data = LoadHfTokenizerJson(testing::QwenTokenizerJsonPath());
  ASSERT_TRUE(data.ok()) << data.status();
  auto tok = Tokenizer::Create(*std::move(data));
  ASSERT_TRUE(tok.ok()) << tok.status();
  const std::vector<std::string> texts = {
      "👨‍👩‍👧‍👦 family 👍🏽 🏳️‍🌈 🇯🇵 🫠",
      "混合专家模型在推理时只激活部分参数。东京は日本の首都です。안녕하세요 세계",
      "𝔘𝔫𝔦𝔠𝔬𝔡𝔢 𠀋𠀎 ✨🔥 e\xCC\x81 done",
      std::string(300, '\x20') + "😀😂🤖🚀" + "的的的的",
  };
  int split_chars = 0;
  for (const std::string& text : texts) {
    const std::vector<int32_t> ids = (*tok)->Encode(text).value();
    StreamDecoder d(**tok);
    std::string all;
    for (int32_t id : ids) {
      const std::string chunk = d.Push(id);
      EXPECT_EQ(internal::FindInvalidUtf8(chunk), std::nullopt) << "token " << id;
      split_chars += d.pending_bytes() > 0;
      all += chunk;
    }
    all += d.Flush();
    EXPECT_EQ(all, internal::NormalizeNfc(text).value());
  }
  EXPECT_GT(split_chars, 0) << "no token ended mid-character; the test proves nothing";
}

}  // namespace
}  // namespace st
