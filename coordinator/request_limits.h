// Input limits and prompt building shared by the gRPC InferenceService and
// the OpenAI-compatible HTTP gateway: every check that turns bad client input
// into INVALID_ARGUMENT before it reaches the engine.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "model/chat_template.h"
#include "model/tokenizer.h"

namespace st::serve {

inline constexpr size_t kMaxTextBytes = size_t{1} << 20;  // a prompt or message content
inline constexpr size_t kMaxMessages = 1024;
inline constexpr size_t kMaxStops = 16;
inline constexpr size_t kMaxStopBytes = 256;
inline constexpr size_t kMaxIds = size_t{1} << 20;
inline constexpr size_t kMaxBodyBytes = size_t{8} << 20;  // HTTP request body

// A prompt longer than the context: INVALID_ARGUMENT carrying OpenAI's error
// code "context_length_exceeded" (clients that trim history look for it).
absl::Status ContextLengthExceeded(std::string_view message);
// The OpenAI error code a status carries, or "" (the HTTP status is used).
std::string ErrorCodeOf(const absl::Status& status);

// `text` is at most kMaxTextBytes of valid UTF-8; `what` names it in errors.
absl::Status ValidateText(std::string_view what, std::string_view text);

// Ids are at most kMaxIds, each in [0, vocab_size).
absl::Status ValidateIds(absl::Span<const int32_t> ids, int vocab_size);

// At most kMaxStops strings, each non-empty, valid UTF-8, <= kMaxStopBytes.
absl::Status ValidateStops(absl::Span<const std::string> stops);

// A raw prompt (completions, gRPC Generate): tokenized with parse_special =
// false, so text cannot inject control tokens (a client that renders its
// own template sends token ids for them). Empty text is INVALID_ARGUMENT.
absl::StatusOr<std::vector<int32_t>> EncodePrompt(const Tokenizer& tokenizer,
                                                  std::string_view text);

// Chat messages rendered in ChatML with the assistant generation prompt.
// Roles must be system/user/assistant/tool; contents are validated text,
// encoded as text: a control token written in a message (<|im_start|>,
// <|im_end|>, <|endoftext|>) is its characters, never a turn boundary
// (RenderChatMlPieces). A final assistant message is continued (a
// prefill) unless continue_final_assistant is false.
absl::StatusOr<std::vector<int32_t>> EncodeChat(const Tokenizer& tokenizer,
                                                absl::Span<const ChatMessage> messages,
                                                bool continue_final_assistant = true);

}  // namespace st::serve
