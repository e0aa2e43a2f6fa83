// ChatML rendering for SmallThinker / Qwen2.5-style chat (MODEL.md §8.5):
//
//   <|im_start|>{role}\n{content}<|im_end|>\n        per message
//   <|im_start|>assistant\n                          if add_generation_prompt
//
// A system turn with `default_system` is inserted first when default_system
// is non-empty and the first message is not a system message.
//
// A final assistant message with add_generation_prompt is a prefill, as
// llama-server takes it: its turn is left open ("<|im_start|>assistant\n
// {content}", no <|im_end|>, no new turn), so the model continues that
// text. continue_final_assistant false closes it and opens a new assistant
// turn instead (vLLM's default, continue_final_message false). Tool results
// (role "tool") are rendered as Qwen2.5's template does: consecutive tool
// messages share one user turn, each wrapped as
// "\n<tool_response>\n{content}\n</tool_response>".
//
// This is a fixed renderer, not a Jinja interpreter: the GGUF's
// tokenizer.chat_template is not evaluated, only searched for its default
// system turn (DefaultSystemPrompt). Tool definitions and assistant
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
#include <vector>

#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "model/tokenizer.h"

namespace st {

struct ChatMessage {
  std::string role;  // "system" (or "developer"), "user", "assistant" or "tool"
  std::string content;
};

// INVALID_ARGUMENT (naming the message index) for an empty or unknown role.
// Pass a named std::vector<ChatMessage>: an inline braced list with one brace
// level too many (RenderChatMl({{{"user", "hi"}}}, ...)) compiles and builds
// `role` from the two string literals as an iterator range (UB).
absl::StatusOr<std::string> RenderChatMl(absl::Span<const ChatMessage> messages,
                                         bool add_generation_prompt,
                                         std::string_view default_system = "",
                                         bool continue_final_assistant = true);

// RenderChatMl's text in pieces: each control token the template writes
// (<|im_start|>, <|im_end|>) a piece with `control` set, the text between
// two of them (role, newlines, contents) one plain piece. Joined, they are
// RenderChatMl's text. For encoding: the plain pieces with control tokens
// read as text, so that a message that mentions "<|im_end|>" (a question
// about ChatML, a pasted log) is text and never closes its turn; for a
// message without such text the ids are those of the joined text's
// encoding (a control token always splits a text).
struct ChatPiece {
  std::string text;
  bool control = false;
};
absl::StatusOr<std::vector<ChatPiece>> RenderChatMlPieces(absl::Span<const ChatMessage> messages,
                                                          bool add_generation_prompt,
                                                          std::string_view default_system = "",
                                                          bool continue_final_assistant = true);

// The rendered chat's ids: each control piece as its token, the plain
// pieces with parse_special off (a control token's text in a message is
// text). What serve, `chat` and `run --chat` feed the model.
absl::StatusOr<std::vector<int32_t>> EncodeChatMl(const Tokenizer& tokenizer,
                                                  absl::Span<const ChatMessage> messages,
                                                  bool add_generation_prompt,
                                                  std::string_view default_system = "",
                                                  bool continue_final_assistant = true);

// The system turn a Qwen2.5-style Jinja chat template (the GGUF's
// tokenizer.chat_template) inserts when a conversation has none: the text of
// its literal "<|im_start|>system\n...<|im_end|>" string, unescaped
// ("You are Qwen, created by Alibaba Cloud. You are a helpful assistant."
// in Qwen2.5's). "" when the template inserts none (Qwen3's, llama.cpp's
// ChatML fallback) or has no such literal. Pass it as RenderChatMl's
// default_system so prompts match the model's own template.
std::string DefaultSystemPrompt(std::string_view jinja_template);

// Closes an assistant turn whose generated ids end `ids` as the template
// renders a finished one: "<|im_end|>\n". A turn the model ended with
// another end-of-generation token (<|endoftext|>) has it replaced, so the
// next turn's prompt holds no end-of-document inside the conversation.
void CloseAssistantTurn(const Tokenizer& tok, std::vector<int32_t>* ids);

// The ids a conversation keeps of an answer that ended on a stop string:
// the user saw `shown` (the text before the stop string), while the sampled
// ids `generated` also hold the stop string and whatever else its last
// token brought. Keeps the sampled ids whose text is wholly inside `shown`
// (control tokens count as no text, as StreamDecoder shows them; so the
// KV cache's prefix stays valid) and encodes the rest of `shown` as
// plain text (control-token texts not parsed, as for untrusted content).
std::vector<int32_t> IdsUpToStopString(const Tokenizer& tok, const std::vector<int32_t>& generated,
                                       std::string_view shown);

}  // namespace st
