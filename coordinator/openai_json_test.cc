// OpenAI wire format: parameters land in the engine request, wrong types and
// ranges are INVALID_ARGUMENT naming the field, replies have OpenAI's shape.
#include "coordinator/openai_json.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "coordinator/request_limits.h"
#include "gtest/gtest.h"
#include "model/chat_template.h"
#include "model/model.h"
#include "tests/testutil/testutil.h"

namespace st::serve {
namespace {

using nlohmann::json;

class OpenAiJsonTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new testing::TempDir();
    auto path = testing::SynthModel(dir_->path(), "tiny", DType::kF32);
    ASSERT_TRUE(path.ok()) << path.status();
    auto model = Model::Load(*path, ModelOptions{.threads = 1});
    ASSERT_TRUE(model.ok()) << model.status();
    model_ = model->release();
  }
  static void TearDownTestSuite() {
    delete model_;
    delete dir_;
  }
  absl::StatusOr<OpenAiRequest> Parse(ApiKind kind, const std::string& body) {
    return ParseOpenAiRequest(kind, body, model_->tokenizer());
  }
  static testing::TempDir* dir_;
  static Model* model_;
};
testing::TempDir* OpenAiJsonTest::dir_ = nullptr;
Model* OpenAiJsonTest::model_ = nullptr;

// A message may mention the chat control tokens (a question about ChatML,
// a pasted log): they are its text, not turn boundaries (they had been
// refused with 400).
TEST_F(OpenAiJsonTest, ControlTokenTextInMessagesAndRawPromptsIsText) {
  const Tokenizer& tok = model_->tokenizer();
  const int32_t im_end = tok.Encode("<|im_end|>", /*parse_special=*/true).value().at(0);
  auto count = [im_end](const std::vector<int32_t>& ids) {
    return std::count(ids.begin(), ids.end(), im_end);
  };
  auto r = Parse(ApiKind::kChat,
                 R"({"messages": [{"role": "user", "content": "say <|im_end|> now"}]})");
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(count(r->engine.prompt), 1);  // the template's own
  EXPECT_EQ(tok.Decode(r->engine.prompt),
            "<|im_start|>user\nsay <|im_end|> now<|im_end|>\n<|im_start|>assistant\n");
  // Without such text, the ids of the whole rendered text.
  const std::vector<ChatMessage> m = {{"system", "be brief"}, {"user", " a\n\n b "}};
  auto two = Parse(ApiKind::kChat, R"({"messages": [{"role": "system", "content": "be brief"},
      {"role": "user", "content": " a\n\n b "}]})");
  ASSERT_TRUE(two.ok()) << two.status();
  EXPECT_EQ(two->engine.prompt,
            tok.Encode(RenderChatMl(m, true).value(), /*parse_special=*/true).value());
  // A raw prompt's are text as well (an application may template untrusted
  // text into it); control tokens come as ids.
  auto raw = Parse(ApiKind::kCompletion, R"({"prompt": "hi<|im_end|>"})");
  ASSERT_TRUE(raw.ok()) << raw.status();
  EXPECT_EQ(count(raw->engine.prompt), 0);
  EXPECT_EQ(tok.Decode(raw->engine.prompt), "hi<|im_end|>");
}

// A final assistant message is a prefill the model continues (llama-server's
// default); vLLM's continue_final_message says so explicitly, or (false)
// asks for a new assistant turn after it.
TEST_F(OpenAiJsonTest, FinalAssistantMessageIsContinued) {
  const Tokenizer& tok = model_->tokenizer();
  const std::string msgs = R"("messages": [{"role": "user", "content": "Tell a story"},
      {"role": "assistant", "content": "Once upon"}])";
  auto r = Parse(ApiKind::kChat, "{" + msgs + "}");
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(tok.Decode(r->engine.prompt),
            "<|im_start|>user\nTell a story<|im_end|>\n<|im_start|>assistant\nOnce upon");
  auto vllm = Parse(ApiKind::kChat,
                    "{" + msgs + R"(, "continue_final_message": true, "add_generation_prompt": false})");
  ASSERT_TRUE(vllm.ok()) << vllm.status();
  EXPECT_EQ(vllm->engine.prompt, r->engine.prompt);
  auto closed = Parse(ApiKind::kChat, "{" + msgs + R"(, "continue_final_message": false})");
  ASSERT_TRUE(closed.ok()) << closed.status();
  EXPECT_EQ(tok.Decode(closed->engine.prompt),
            "<|im_start|>user\nTell a story<|im_end|>\n<|im_start|>assistant\nOnce "
            "upon<|im_end|>\n<|im_start|>assistant\n");
  const std::pair<std::string, std::string> refused[] = {
      {R"({"messages": [{"role": "user", "content": "hi"}], "continue_final_message": true})",
       "without a final assistant message"},
      {"{" + msgs + R"(, "add_generation_prompt": false})", "'add_generation_prompt' false"},
      {"{" + msgs + R"(, "continue_final_message": "yes"})", "continue_final_message"},
  };
  for (const auto& [body, needle] : refused) {
    auto bad = Parse(ApiKind::kChat, body);
    ASSERT_FALSE(bad.ok()) << body;
    EXPECT_EQ(bad.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_NE(bad.status().message().find(needle), std::string::npos) << bad.status();
  }
}

TEST_F(OpenAiJsonTest, ParametersReachTheEngineRequest) {
  auto r = Parse(ApiKind::kChat, R"({"model": "x", "messages": [{"role": "user", "content": "hi"}],
      "max_tokens": 7, "temperature": 0.5, "top_p": 0.9, "top_k": 5, "min_p": 0.1,
      "repeat_penalty": 1.2, "presence_penalty": 0.3, "frequency_penalty": -0.4, "seed": 11,
      "stop": ["a", "b"], "stream": true, "stream_options": {"include_usage": true}})");
  ASSERT_TRUE(r.ok()) << r.status();
  const GenerateOptions& g = r->engine.options;
  EXPECT_EQ(g.max_tokens, 7);
  EXPECT_FLOAT_EQ(g.sampling.temperature, 0.5f);
  EXPECT_FLOAT_EQ(g.sampling.top_p, 0.9f);
  EXPECT_EQ(g.sampling.top_k, 5);
  EXPECT_FLOAT_EQ(g.sampling.min_p, 0.1f);
  EXPECT_FLOAT_EQ(g.sampling.repeat_penalty, 1.2f);
  EXPECT_FLOAT_EQ(g.sampling.presence_penalty, 0.3f);
  EXPECT_FLOAT_EQ(g.sampling.frequency_penalty, -0.4f);
  EXPECT_EQ(g.sampling.seed, 11u);
  EXPECT_EQ(g.stop, (std::vector<std::string>{"a", "b"}));
  EXPECT_TRUE(r->stream);
  EXPECT_TRUE(r->include_usage);
  auto text = model_->tokenizer().Decode(r->engine.prompt);
  EXPECT_EQ(text, "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n");
  // Content as text parts; completion prompt as a string and as ids.
  EXPECT_TRUE(Parse(ApiKind::kChat, R"({"messages": [{"role": "user", "content":
      [{"type": "text", "text": "hi"}]}]})").ok());
  auto ids = Parse(ApiKind::kCompletion, R"({"prompt": [104, 105]})");
  ASSERT_TRUE(ids.ok());
  EXPECT_EQ(ids->engine.prompt, (std::vector<int32_t>{104, 105}));
  EXPECT_EQ(ids->engine.options.max_tokens, 0);  // until the context is full
}

TEST_F(OpenAiJsonTest, AcceptsWhatOpenAiClientsSend) {
  // max_completion_tokens wins over max_tokens; -1 = no limit.
  auto r = Parse(ApiKind::kCompletion, R"({"prompt": "x", "max_tokens": 9, "max_completion_tokens": 3})");
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->engine.options.max_tokens, 3);
  r = Parse(ApiKind::kCompletion, R"({"prompt": "x", "max_tokens": -1})");
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->engine.options.max_tokens, 0);
  // seed -1 = random (0); top_p 0 = keep the most probable token.
  r = Parse(ApiKind::kCompletion, R"({"prompt": "x", "seed": -1, "top_p": 0})");
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->engine.options.sampling.seed, 0u);
  EXPECT_EQ(r->engine.options.sampling.top_k, 1);
  EXPECT_EQ(r->engine.options.sampling.top_p, 1.0f);
  for (const char* top_k : {"5", "0", "-1"}) {  // top_p 0 wins over any top_k
    r = Parse(ApiKind::kCompletion,
              absl::StrCat(R"({"prompt": "x", "top_p": 0, "top_k": )", top_k, "}"));
    ASSERT_TRUE(r.ok()) << r.status();
    EXPECT_EQ(r->engine.options.sampling.top_k, 1) << top_k;
  }
  // seed 0 is a fixed seed, as for OpenAI and llama.cpp (the engine's 0 is
  // "random").
  r = Parse(ApiKind::kCompletion, R"({"prompt": "x", "seed": 0})");
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->engine.options.sampling.seed, kSeedForZero);
  // llama.cpp's n_predict and repeat_last_n; max_tokens wins over n_predict.
  r = Parse(ApiKind::kCompletion, R"({"prompt": "x", "n_predict": 5, "repeat_last_n": 16})");
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->engine.options.max_tokens, 5);
  EXPECT_EQ(r->engine.options.sampling.repeat_last_n, 16);
  r = Parse(ApiKind::kCompletion, R"({"prompt": "x", "n_predict": 5, "max_tokens": 2})");
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->engine.options.max_tokens, 2);
  r = Parse(ApiKind::kCompletion, R"({"prompt": "x", "seed": 18446744073709551615})");
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->engine.options.sampling.seed, 18446744073709551615u);
  // Neutral values of unsupported features pass.
  EXPECT_TRUE(Parse(ApiKind::kChat, R"({"messages": [{"role": "user", "content": "hi"}],
      "tools": [], "tool_choice": "none", "logprobs": false, "top_logprobs": 0,
      "response_format": {"type": "text"}})").ok());
  EXPECT_TRUE(Parse(ApiKind::kCompletion, R"({"prompt": "x", "echo": false, "best_of": 1,
      "suffix": "", "logprobs": 0, "logit_bias": {}, "grammar": "", "json_schema": {},
      "n_probs": 0, "modalities": ["text"]})").ok());
  EXPECT_TRUE(Parse(ApiKind::kChat, R"({"messages": [{"role": "user", "content": "hi"}],
      "mirostat": 0, "typical_p": 1, "dynatemp_range": 0, "top_n_sigma": -1,
      "xtc_probability": 0, "dry_multiplier": 0, "min_tokens": 0, "t_max_predict_ms": 0,
      "continue_final_message": false, "add_generation_prompt": true, "enable_thinking": false,
      "chat_template_kwargs": {"enable_thinking": false}})").ok());
  // vLLM's name for repeat_penalty (which wins when both are given).
  r = Parse(ApiKind::kCompletion, R"({"prompt": "x", "repetition_penalty": 1.3})");
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_FLOAT_EQ(r->engine.options.sampling.repeat_penalty, 1.3f);
  r = Parse(ApiKind::kCompletion, R"({"prompt": "x", "repetition_penalty": 1.3,
      "repeat_penalty": 1.1})");
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_FLOAT_EQ(r->engine.options.sampling.repeat_penalty, 1.1f);
  r = Parse(ApiKind::kCompletion, R"({"prompt": "x", "repetition_penalty": 1.3,
      "repeat_penalty": null, "typical_p": 1.5})");
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_FLOAT_EQ(r->engine.options.sampling.repeat_penalty, 1.3f);
  // developer = system; an assistant's tool calls (content null) rendered as
  // Qwen's template does; text parts joined by newlines.
  r = Parse(ApiKind::kChat, R"({"messages": [
      {"role": "developer", "content": "be brief"},
      {"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]},
      {"role": "assistant", "content": null, "tool_calls": [{"id": "1", "type": "function",
          "function": {"name": "f", "arguments": "{\"x\": 1}"}}]},
      {"role": "tool", "content": "ok"}]})");
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(model_->tokenizer().Decode(r->engine.prompt),
            "<|im_start|>system\nbe brief<|im_end|>\n<|im_start|>user\na\nb<|im_end|>\n"
            "<|im_start|>assistant\n<tool_call>\n{\"name\": \"f\", \"arguments\": {\"x\": 1}}\n"
            "</tool_call><|im_end|>\n<|im_start|>user\n<tool_response>\nok\n</tool_response>"
            "<|im_end|>\n<|im_start|>assistant\n");
  // A user turn still needs content.
  EXPECT_EQ(Parse(ApiKind::kChat, R"({"messages": [{"role": "user", "content": null}]})").status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST_F(OpenAiJsonTest, BadInputNamesTheProblem) {
  const std::vector<std::pair<std::string, std::string>> cases = {
      {R"({"prompt": "x", "temperature": "hot"})", "temperature"},
      {R"({"prompt": "x", "top_k": 1.5})", "top_k"},
      {R"({"prompt": "x", "seed": 1.5})", "seed"},
      {R"({"prompt": "x", "max_tokens": 0})", "max_tokens"},
      {R"({"prompt": "x", "max_completion_tokens": -2})", "max_completion_tokens"},
      {R"({"prompt": "x", "echo": true})", "echo"},
      {R"({"prompt": "x", "logprobs": 2})", "logprobs"},
      {R"({"prompt": "x", "logprobs": 18446744073709551615})", "logprobs"},
      {R"({"prompt": "x", "best_of": 3})", "best_of"},
      {R"({"prompt": "x", "suffix": "end"})", "suffix"},
      {R"({"prompt": "x", "tools": [{"type": "function"}]})", "tools"},
      {R"({"prompt": "x", "tool_choice": "required"})", "tool_choice"},
      {R"({"prompt": "x", "response_format": {"type": "json_object"}})", "response_format"},
      {R"({"prompt": "x", "logit_bias": {"15": -100}})", "logit_bias"},
      {R"({"prompt": "x", "grammar": "root ::= \"a\""})", "grammar"},
      {R"({"prompt": "x", "json_schema": {"type": "object"}})", "json_schema"},
      {R"({"prompt": "x", "n_predict": 0})", "n_predict"},
      {R"({"prompt": "x", "repeat_last_n": -2})", "repeat_last_n"},
      {R"({"prompt": "x", "stop": 3})", "stop"},
      {R"({"prompt": "x", "stop": [""]})", "stop"},
      {R"({"prompt": "x", "stream_options": 1})", "stream_options"},
      {R"({"prompt": "x", "presence_penalty": 3})", "presence_penalty"},
      {R"({"prompt": "x", "max_tokens": 1e99})", "max_tokens"},
      {R"({"prompt": "x", "model": 5})", "model"},
      {R"({"prompt": null})", "prompt"},
      {R"({})", "prompt"},
      {"{\"prompt\": \"\xff\"}", "JSON"},
      {"not json", "JSON"},
      // The parser's reason follows.
      {R"({"prompt": "x", "temperature": 1e400})", "number overflow parsing '1e400'"},
      {R"({"prompt": "x",})", "line 1, column 16"},
      // An integer past 64 bits is one, out of range.
      {R"({"prompt": "x", "seed": 18446744073709551621})", "'seed' must be an integer in range"},
      {R"({"prompt": "x", "n_probs": 3})", "n_probs"},
      // Other servers' samplers: accepted, they had changed nothing.
      {R"({"prompt": "x", "mirostat": 2})", "'mirostat' is not supported"},
      {R"({"prompt": "x", "typical_p": 0.9})", "'typical_p' is not supported"},
      {R"({"prompt": "x", "dynatemp_range": 0.5})", "'dynatemp_range'"},
      {R"({"prompt": "x", "top_n_sigma": 1})", "'top_n_sigma'"},
      {R"({"prompt": "x", "xtc_probability": 0.5})", "'xtc_probability'"},
      {R"({"prompt": "x", "dry_multiplier": 0.8})", "'dry_multiplier'"},
      {R"({"prompt": "x", "min_tokens": 5})", "'min_tokens'"},
      {R"({"prompt": "x", "t_max_predict_ms": 100})", "'t_max_predict_ms'"},
      {R"({"prompt": "x", "mirostat": "on"})", "'mirostat'"},
      {R"({"prompt": "x", "continue_final_message": true})", "continue_final_message"},
      {R"({"prompt": "x", "add_generation_prompt": false})", "add_generation_prompt"},
      {R"({"prompt": "x", "enable_thinking": true})", "thinking"},
      {R"({"prompt": "x", "chat_template_kwargs": {"enable_thinking": true}})",
       "chat_template_kwargs"},
      {R"({"prompt": "x", "repetition_penalty": "high"})", "repetition_penalty"},
      {R"({"prompt": "x", "modalities": ["text", "audio"]})", "modalities"},
      {R"({"prompt": "x", "audio": {"voice": "alloy", "format": "wav"}})", "audio"},
      {R"({"prompt": "x", "prediction": {"type": "content", "content": "x"}})", "prediction"},
  };
  for (const auto& [body, needle] : cases) {
    auto r = Parse(ApiKind::kCompletion, body);
    ASSERT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument) << body;
    EXPECT_NE(r.status().message().find(needle), std::string::npos) << r.status() << " " << body;
  }
  // Nesting past kMaxJsonDepth is refused before any field is read: a body
  // nested 10^5 deep used to overflow the stack when a field was copied.
  for (const int depth : {kMaxJsonDepth + 1, 100000}) {
    const std::string body = absl::StrCat(R"({"prompt": "x", "response_format": {"type": )",
                                          std::string(depth, '['), std::string(depth, ']'), "}}");
    auto r = Parse(ApiKind::kCompletion, body);
    ASSERT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument) << depth;
    EXPECT_NE(r.status().message().find("deeper than"), std::string::npos) << r.status();
  }
  EXPECT_TRUE(Parse(ApiKind::kCompletion,
                    absl::StrCat(R"({"prompt": "x", "user": )", std::string(kMaxJsonDepth - 1, '['),
                                 std::string(kMaxJsonDepth - 1, ']'), "}"))
                  .ok());
  // Brackets inside strings (escaped quotes too) are text, not nesting.
  EXPECT_TRUE(Parse(ApiKind::kCompletion,
                    absl::StrCat(R"({"prompt": "x", "user": "\")", std::string(100, '['), R"("})"))
                  .ok());
  // Wide is not deep, and costs linear time: a 2.4 MB body of 800,000
  // empty objects parses at once. (The depth check had gone through a
  // parser callback that made this quadratic: 160,000 took 6.5 s, and
  // 800,000 would take minutes.)
  std::string wide = R"({"prompt": "x", "metadata_list": [{})";
  for (int i = 1; i < 800000; ++i) wide += ",{}";
  wide += "]}";
  const absl::Time start = absl::Now();
  EXPECT_TRUE(Parse(ApiKind::kCompletion, wide).ok());
  EXPECT_LT(absl::Now() - start, absl::Seconds(20));
  auto chat = Parse(ApiKind::kChat, R"({"messages": [{"role": "user"}]})");
  EXPECT_EQ(chat.status().code(), absl::StatusCode::kInvalidArgument);
  chat = Parse(ApiKind::kChat, R"({"messages": [{"role": 1, "content": "x"}]})");
  EXPECT_EQ(chat.status().code(), absl::StatusCode::kInvalidArgument);
}

TEST_F(OpenAiJsonTest, RepliesHaveOpenAiShape) {
  ReplyContext c{ApiKind::kChat, "chatcmpl-1", "tiny", 1700000000};
  EngineUsage u;
  u.prompt_tokens = 3;
  u.completion_tokens = 2;
  json full = FullReply(c, "hi", FinishReason::kStop, u);
  EXPECT_EQ(full["object"], "chat.completion");
  EXPECT_EQ(full["choices"][0]["message"]["content"], "hi");
  EXPECT_EQ(full["choices"][0]["finish_reason"], "stop");
  EXPECT_EQ(full["usage"]["total_tokens"], 5);
  json first = ChunkJson(c, "h", true, FinishReason::kNone);
  EXPECT_EQ(first["choices"][0]["delta"], (json{{"role", "assistant"}, {"content", "h"}}));
  EXPECT_TRUE(first["choices"][0]["finish_reason"].is_null());
  json last = ChunkJson(c, "", false, FinishReason::kLength);
  EXPECT_EQ(last["choices"][0]["delta"], json::object());
  EXPECT_EQ(last["choices"][0]["finish_reason"], "length");
  EXPECT_EQ(UsageChunkJson(c, u)["choices"], json::array());
  // Errors: the HTTP status as the code, or the status's OpenAI code.
  json e = ErrorJson(absl::InvalidArgumentError("bad"));
  EXPECT_EQ(e["error"]["code"], 400);
  EXPECT_EQ(e["error"]["type"], "invalid_request_error");
  e = ErrorJson(ContextLengthExceeded("too long"));
  EXPECT_EQ(e["error"]["code"], "context_length_exceeded");
  EXPECT_EQ(e["error"]["message"], "too long");
  EXPECT_EQ(ErrorJson(absl::ResourceExhaustedError("full"))["error"]["type"], "rate_limit_error");
  json err = ErrorJson(429, "busy");
  EXPECT_EQ(err["error"]["type"], "rate_limit_error");
  EXPECT_EQ(err["error"]["message"], "busy");
  // Every other 4xx is the client's; 5xx the server's.
  for (const int status : {405, 414, 422}) {
    EXPECT_EQ(ErrorJson(status, "x")["error"]["type"], "invalid_request_error") << status;
  }
  EXPECT_EQ(ErrorJson(500, "x")["error"]["type"], "server_error");
  EXPECT_EQ(HttpStatusFor(absl::StatusCode::kResourceExhausted), 429);
  EXPECT_EQ(HttpStatusFor(absl::StatusCode::kInvalidArgument), 400);
  EXPECT_EQ(HttpStatusFor(absl::StatusCode::kUnauthenticated), 401);
  EXPECT_EQ(HttpStatusFor(absl::StatusCode::kInternal), 500);
}

}  // namespace
}  // namespace st::serve
