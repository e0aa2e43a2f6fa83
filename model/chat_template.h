// ChatML rendering for SmallThinker / Qwen2.5-style chat (MODEL.md §8.5):
//
//   <|im_start|>{role}\n{content}<|im_end|>\n        per message
//   <|im_start|>assistant\n                          if add_generation_prompt
//
// A system turn with `default_system` is inserted first when default_system
// is non-empty and the first message is not a system message. Tool results
// (role "tool") are rendered as Qwen2.5's template does: consecutive tool
// messages share one user turn, each wrapped as
// "\n<tool_response>\n{content}\n</tool_response>".
//
// This is a fixed renderer, not a Jinja interpreter: the GGUF's
// tokenizer.chat_template is not evaluated. Tool definitions and assistant
// tool_calls are out of scope here.
//
// Contents are copied verbatim; a content containing "<|im_end|>" would be
// parsed as that control token by Tokenizer::Encode(..., parse_special=true).
// Callers handling untrusted input should encode contents with
// parse_special=false (see Tokenizer::Encode).
//
// Pure function; thread-safe.
#pragma once

#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include "absl/types/span.h"

namespace st {

struct ChatMessage {
  std::string role;  // "system", "user", "assistant" or "tool"
  std::string content;
};

// INVALID_ARGUMENT (naming the message index) for an empty or unknown role.
// Pass a named std::vector<ChatMessage>: an inline braced list with one brace
// level too many (RenderChatMl({{{"user", "hi"}}}, ...)) compiles and builds
// `role` from the two string literals as an iterator range (UB).
absl::StatusOr<std::string> RenderChatMl(absl::Span<const ChatMessage> messages,
                                         bool add_generation_prompt,
                                         std::string_view default_system = "");

}  // namespace st
