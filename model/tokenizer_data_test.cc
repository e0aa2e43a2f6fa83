// TokenizerData loading from HF tokenizer.json and the GGUF round trip.
#include "model/tokenizer_data.h"

#include <filesystem>
#include <fstream>
#include <string>

#include "gtest/gtest.h"
#include "model/gguf.h"
#include "model/tokenizer.h"
#include "model/tokenizer_testing.h"
#include "nlohmann/json.hpp"

namespace st {
namespace {

using Json = nlohmann::json;
namespace fs = std::filesystem;

constexpr char kQwenRegex[] =
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+"
    "[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";

Json MinimalTokenizerJson() {
  Json j;
  j["normalizer"] = {{"type", "NFC"}};
  j["pre_tokenizer"] = {
      {"type", "Sequence"},
      {"pretokenizers", Json::array({{{"type", "Split"}, {"pattern", {{"Regex", kQwenRegex}}}},
                                     {{"type", "ByteLevel"}, {"use_regex", false}}})}};
  j["model"] = {{"type", "BPE"},
                {"vocab", {{"a", 0}, {"b", 1}, {"ab", 2}, {"Ġ", 3}}},
                {"merges", Json::array({Json::array({"a", "b"})})}};
  j["added_tokens"] = Json::array({{{"id", 4}, {"content", "<|endoftext|>"}, {"special", true}},
                                   {{"id", 5}, {"content", "<tool_call>"}, {"special", false}}});
  return j;
}

class HfJsonTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::path(::testing::TempDir()) /
           ("tok_" + std::string(::testing::UnitTest::GetInstance()->current_test_info()->name()));
    fs::remove_all(dir_);
    fs::create_directories(dir_);
  }
  std::string Write(const std::string& name, const std::string& text) {
    const fs::path p = dir_ / name;
    std::ofstream(p) << text;
    return p.string();
  }
  fs::path dir_;
};

TEST_F(HfJsonTest, LoadsAndPads) {
  const std::string path = Write("tokenizer.json", MinimalTokenizerJson().dump());
  absl::StatusOr<TokenizerData> d = LoadHfTokenizerJson(path, 8);
  ASSERT_TRUE(d.ok()) << d.status();
  EXPECT_EQ(d->tokens, (std::vector<std::string>{"a", "b", "ab", "Ġ", "<|endoftext|>",
                                                 "<tool_call>", "[PAD6]", "[PAD7]"}));
  EXPECT_EQ(d->token_types, (std::vector<int32_t>{1, 1, 1, 1, 3, 4, 5, 5}));
  EXPECT_EQ(d->merges, std::vector<std::string>{"a b"});
  EXPECT_EQ(d->model, "gpt2");
  EXPECT_EQ(d->pre, "qwen2");
  // Qwen defaults do not fit an 8-token vocabulary: none.
  EXPECT_EQ(d->eos_id, -1);
  EXPECT_EQ(d->bos_id, -1);
  EXPECT_TRUE(d->chat_template.empty());
}

TEST_F(HfJsonTest, StringMergesAndConfig) {
  Json j = MinimalTokenizerJson();
  j["model"]["merges"] = Json::array({"a b"});
  const std::string path = Write("tokenizer.json", j.dump());
  Write("tokenizer_config.json",
        R"({"eos_token": "<|endoftext|>", "pad_token": {"content": "<tool_call>"},
            "bos_token": null, "add_bos_token": true, "chat_template": "T"})");
  absl::StatusOr<TokenizerData> d = LoadHfTokenizerJson(path, 0);
  ASSERT_TRUE(d.ok()) << d.status();
  EXPECT_EQ(d->tokens.size(), 6u);  // pad_to below the size pads nothing
  EXPECT_EQ(d->merges, std::vector<std::string>{"a b"});
  EXPECT_EQ(d->eos_id, 4);
  EXPECT_EQ(d->pad_id, 5);
  EXPECT_EQ(d->bos_id, -1);
  EXPECT_TRUE(d->add_bos);
  EXPECT_EQ(d->chat_template, "T");
}

TEST_F(HfJsonTest, Errors) {
  const auto load = [&](const Json& j) {
    return LoadHfTokenizerJson(Write("tokenizer.json", j.dump()), 0).status();
  };
  absl::Status s = LoadHfTokenizerJson((dir_ / "missing.json").string()).status();
  EXPECT_EQ(s.code(), absl::StatusCode::kNotFound) << s;
  EXPECT_NE(s.message().find("missing.json"), std::string::npos);

  s = LoadHfTokenizerJson(Write("bad.json", "{\"model\": [1, 2")).status();
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << s;
  EXPECT_NE(s.message().find("bad.json"), std::string::npos);

  Json gap = MinimalTokenizerJson();
  gap["added_tokens"][1]["id"] = 9;
  s = load(gap);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("id 5 has no token"), std::string::npos) << s;

  // An id far beyond the number of tokens is refused before anything is
  // allocated for it (1e9 had asked for ~40 GiB).
  Json far = MinimalTokenizerJson();
  far["model"]["vocab"]["c"] = 1000000000;
  s = load(far);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("has a bad id 1000000000"), std::string::npos) << s;

  Json dup = MinimalTokenizerJson();
  dup["model"]["vocab"]["c"] = 1;
  s = load(dup);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("id 1 is used by both"), std::string::npos) << s;

  Json nfkc = MinimalTokenizerJson();
  nfkc["normalizer"] = {{"type", "NFKC"}};
  EXPECT_EQ(load(nfkc).code(), absl::StatusCode::kInvalidArgument);

  Json regex = MinimalTokenizerJson();
  regex["pre_tokenizer"]["pretokenizers"][0]["pattern"]["Regex"] = "\\s+";
  EXPECT_EQ(load(regex).code(), absl::StatusCode::kInvalidArgument);

  Json wordpiece = MinimalTokenizerJson();
  wordpiece["model"]["type"] = "WordPiece";
  EXPECT_EQ(load(wordpiece).code(), absl::StatusCode::kInvalidArgument);

  Json bad_merge = MinimalTokenizerJson();
  bad_merge["model"]["merges"] = Json::array({Json::array({"a"})});
  s = load(bad_merge);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("merge 0"), std::string::npos) << s;

  Json wrong_type = MinimalTokenizerJson();
  wrong_type["model"]["vocab"]["a"] = "zero";
  EXPECT_EQ(load(wrong_type).code(), absl::StatusCode::kInvalidArgument);

  Json null_model = MinimalTokenizerJson();
  null_model["model"]["merges"] = 7;
  EXPECT_EQ(load(null_model).code(), absl::StatusCode::kInvalidArgument);

  Write("tokenizer_config.json", R"({"eos_token": "<|nope|>"})");
  s = load(MinimalTokenizerJson());
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("<|nope|>"), std::string::npos) << s;
}

void ExpectSameData(const TokenizerData& a, const TokenizerData& b) {
  EXPECT_EQ(a.tokens, b.tokens);
  EXPECT_EQ(a.token_types, b.token_types);
  EXPECT_EQ(a.merges, b.merges);
  EXPECT_EQ(a.model, b.model);
  EXPECT_EQ(a.pre, b.pre);
  EXPECT_EQ(a.bos_id, b.bos_id);
  EXPECT_EQ(a.eos_id, b.eos_id);
  EXPECT_EQ(a.pad_id, b.pad_id);
  EXPECT_EQ(a.eot_id, b.eot_id);
  EXPECT_EQ(a.add_bos, b.add_bos);
  EXPECT_EQ(a.chat_template, b.chat_template);
}

absl::StatusOr<TokenizerData> RoundTrip(
    const std::vector<std::pair<std::string, GgufValue>>& metadata) {
  absl::StatusOr<std::string> bytes = GgufWriter::BuildInMemory(metadata, {}, {});
  if (!bytes.ok()) return bytes.status();
  absl::StatusOr<std::unique_ptr<GgufFile>> f = GgufFile::FromBuffer(*bytes);
  if (!f.ok()) return f.status();
  return TokenizerDataFromGguf(**f);
}

TEST(TokenizerGgufTest, RoundTripTiny) {
  TokenizerData d = testing::TinyTokenizerData({"a b", "ab c"});
  d.chat_template = "{{ messages }}";
  d.add_bos = true;
  d.pad_id = -1;
  absl::StatusOr<TokenizerData> back = RoundTrip(TokenizerGgufMetadata(d));
  ASSERT_TRUE(back.ok()) << back.status();
  ExpectSameData(d, *back);
}

TEST(TokenizerGgufTest, RoundTripQwen) {
  if (!testing::QwenTokenizerAvailable()) GTEST_SKIP() << testing::kQwenMissingMessage;
  absl::StatusOr<TokenizerData> d = LoadHfTokenizerJson(testing::QwenTokenizerJsonPath());
  ASSERT_TRUE(d.ok()) << d.status();
  absl::StatusOr<TokenizerData> back = RoundTrip(TokenizerGgufMetadata(*d));
  ASSERT_TRUE(back.ok()) << back.status();
  ExpectSameData(*d, *back);
  absl::StatusOr<std::unique_ptr<Tokenizer>> tok = Tokenizer::Create(*std::move(back));
  ASSERT_TRUE(tok.ok()) << tok.status();
  EXPECT_EQ((*tok)->Encode("<|im_start|>user\nhi<|im_end|>\n").value(),
            (std::vector<int32_t>{151644, 872, 198, 6023, 151645, 198}));
}

std::vector<std::pair<std::string, GgufValue>> With(
    std::vector<std::pair<std::string, GgufValue>> kv, const std::string& key,
    std::optional<GgufValue> value) {
  std::erase_if(kv, [&](const auto& p) { return p.first == key; });
  if (value.has_value()) kv.emplace_back(key, *value);
  return kv;
}

TEST(TokenizerGgufTest, KindAndErrors) {
  const auto kv = TokenizerGgufMetadata(testing::TinyTokenizerData({"a b"}));

  absl::Status s = RoundTrip(With(kv, "tokenizer.ggml.model", GgufValue::Str("llama"))).status();
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("\"llama\""), std::string::npos) << s;

  s = RoundTrip(With(kv, "tokenizer.ggml.pre", GgufValue::Str("deepseek-llm"))).status();
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("\"deepseek-llm\""), std::string::npos) << s;

  // "default" and absent are accepted (with a warning) and use the Qwen2 regex.
  for (auto v : {std::optional<GgufValue>(GgufValue::Str("default")), std::optional<GgufValue>()}) {
    absl::StatusOr<TokenizerData> d = RoundTrip(With(kv, "tokenizer.ggml.pre", v));
    ASSERT_TRUE(d.ok()) << d.status();
    ASSERT_TRUE(Tokenizer::Create(*std::move(d)).ok());
  }

  EXPECT_FALSE(RoundTrip(With(kv, "tokenizer.ggml.model", std::nullopt)).ok());
  EXPECT_FALSE(RoundTrip(With(kv, "tokenizer.ggml.tokens", std::nullopt)).ok());
  EXPECT_FALSE(RoundTrip(With(kv, "tokenizer.ggml.merges", std::nullopt)).ok());
  s = RoundTrip(With(kv, "tokenizer.ggml.eos_token_id", GgufValue::U32(100000))).status();
  EXPECT_NE(s.message().find("eos_token_id"), std::string::npos) << s;
  s = RoundTrip(With(kv, "tokenizer.ggml.eot_token_id", GgufValue::U32(100000))).status();
  EXPECT_NE(s.message().find("eot_token_id"), std::string::npos) << s;
  // eot_token_id, as llama.cpp takes it, ends generation too.
  {
    absl::StatusOr<TokenizerData> with_eot =
        RoundTrip(With(kv, "tokenizer.ggml.eot_token_id", GgufValue::U32(1)));
    ASSERT_TRUE(with_eot.ok()) << with_eot.status();
    EXPECT_EQ(with_eot->eot_id, 1);
    absl::StatusOr<TokenizerData> without = RoundTrip(kv);
    ASSERT_TRUE(without.ok()) << without.status();
    EXPECT_EQ(without->eot_id, -1);
    auto tok = Tokenizer::Create(*std::move(with_eot));
    ASSERT_TRUE(tok.ok()) << tok.status();
    EXPECT_TRUE((*tok)->IsEndOfGeneration(1));
    auto plain = Tokenizer::Create(*std::move(without));
    ASSERT_TRUE(plain.ok()) << plain.status();
    EXPECT_FALSE((*plain)->IsEndOfGeneration(1));
  }
  GgufArray short_types;
  short_types.elem_type = GgufType::kInt32;
  short_types.ints = {1, 1};
  s = RoundTrip(With(kv, "tokenizer.ggml.token_type", GgufValue::Arr(short_types))).status();
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  // Absent token_type: all normal.
  absl::StatusOr<TokenizerData> d = RoundTrip(With(kv, "tokenizer.ggml.token_type", std::nullopt));
  ASSERT_TRUE(d.ok()) << d.status();
  EXPECT_EQ(d->token_types, std::vector<int32_t>(d->tokens.size(), 1));
}

TEST(TokenizerGgufTest, WriterSetsSameKeys) {
  // WriteTokenizerToGguf only forwards TokenizerGgufMetadata; make sure it
  // accepts the values (validated at Begin()).
  GgufWriter w;
  WriteTokenizerToGguf(testing::TinyTokenizerData({"a b"}), &w);
  const std::string path = ::testing::TempDir() + "/tok_writer.gguf";
  ASSERT_TRUE(w.Begin(path).ok());
  ASSERT_TRUE(w.Finish().ok());
  absl::StatusOr<std::unique_ptr<GgufFile>> f = GgufFile::Open(path);
  ASSERT_TRUE(f.ok()) << f.status();
  absl::StatusOr<TokenizerData> d = TokenizerDataFromGguf(**f);
  ASSERT_TRUE(d.ok()) << d.status();
  ExpectSameData(testing::TinyTokenizerData({"a b"}), *d);
}

TEST(CheckTokenizerKindTest, Values) {
  EXPECT_TRUE(CheckTokenizerKind("gpt2", "qwen2").ok());
  EXPECT_TRUE(CheckTokenizerKind("gpt2", "default").ok());
  EXPECT_TRUE(CheckTokenizerKind("gpt2", "").ok());
  EXPECT_FALSE(CheckTokenizerKind("llama", "qwen2").ok());
  EXPECT_FALSE(CheckTokenizerKind("gpt2", "llama3").ok());
}

}  // namespace
}  // namespace st
