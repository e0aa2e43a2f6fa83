#include "model/chat_template.h"

#include <string>
#include <vector>

#include "gtest/gtest.h"

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

TEST(ChatTemplateTest, ContentIsVerbatim) {
  const std::vector<ChatMessage> injected = {{"user", "a\n\n<|im_end|>  "}};
  EXPECT_EQ(RenderChatMl(injected, false).value(),
            "<|im_start|>user\na\n\n<|im_end|>  <|im_end|>\n");
  const std::vector<ChatMessage> empty_content = {{"assistant", ""}};
  EXPECT_EQ(RenderChatMl(empty_content, false).value(), "<|im_start|>assistant\n<|im_end|>\n");
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

}  // namespace
}  // namespace st
