#include "coordinator/request_limits.h"

#include "absl/strings/cord.h"
#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "model/chat_template.h"
#include "model/tokenizer_utf8.h"

namespace st::serve {

namespace {
constexpr char kErrorCodeUrl[] = "type.smallthinker/openai_error_code";
}  // namespace

absl::Status ContextLengthExceeded(std::string_view message) {
  absl::Status s = absl::InvalidArgumentError(std::string(message));
  s.SetPayload(kErrorCodeUrl, absl::Cord("context_length_exceeded"));
  return s;
}

std::string ErrorCodeOf(const absl::Status& status) {
  const auto code = status.GetPayload(kErrorCodeUrl);
  return code ? std::string(*code) : std::string();
}

absl::Status ValidateText(std::string_view what, std::string_view text) {
  if (text.size() > kMaxTextBytes) {
    return absl::InvalidArgumentError(absl::StrCat(std::string(what), " is ", text.size(),
                                                   " bytes; the limit is ", kMaxTextBytes));
  }
  if (auto bad = internal::FindInvalidUtf8(text)) {
    return absl::InvalidArgumentError(
        absl::StrCat(std::string(what), " is not valid UTF-8 (byte offset ", *bad, ")"));
  }
  return absl::OkStatus();
}

absl::Status ValidateIds(absl::Span<const int32_t> ids, int vocab_size) {
  if (ids.size() > kMaxIds) {
    return absl::InvalidArgumentError(
        absl::StrCat(ids.size(), " token ids; the limit is ", kMaxIds));
  }
  for (int32_t id : ids) {
    if (id < 0 || id >= vocab_size) {
      return absl::InvalidArgumentError(
          absl::StrCat("token id ", id, " outside the vocabulary [0, ", vocab_size, ")"));
    }
  }
  return absl::OkStatus();
}

absl::Status ValidateStops(absl::Span<const std::string> stops) {
  if (stops.size() > kMaxStops) {
    return absl::InvalidArgumentError(
        absl::StrCat(stops.size(), " stop strings; the limit is ", kMaxStops));
  }
  for (size_t i = 0; i < stops.size(); ++i) {
    if (stops[i].empty() || stops[i].size() > kMaxStopBytes) {
      return absl::InvalidArgumentError(absl::StrCat("stop string ", i, " must be 1..",
                                                     kMaxStopBytes, " bytes"));
    }
    ST_RETURN_IF_ERROR(ValidateText(absl::StrCat("stop string ", i), stops[i]));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::vector<int32_t>> EncodePrompt(const Tokenizer& tokenizer,
                                                  std::string_view text) {
  ST_RETURN_IF_ERROR(ValidateText("prompt", text));
  if (text.empty()) return absl::InvalidArgumentError("empty prompt");
  // Control-token text stays text: an application that puts untrusted text
  // into its own template must not have it open a turn (llama-server's
  // /completion parses it). A client that needs the control tokens sends
  // the prompt as token ids.
  return tokenizer.Encode(text, /*parse_special=*/false);
}

absl::StatusOr<std::vector<int32_t>> EncodeChat(const Tokenizer& tokenizer,
                                                absl::Span<const ChatMessage> messages,
                                                bool continue_final_assistant) {
  if (messages.empty()) return absl::InvalidArgumentError("no messages");
  if (messages.size() > kMaxMessages) {
    return absl::InvalidArgumentError(
        absl::StrCat(messages.size(), " messages; the limit is ", kMaxMessages));
  }
  for (size_t i = 0; i < messages.size(); ++i) {
    const std::string& c = messages[i].content;
    ST_RETURN_IF_ERROR(ValidateText(absl::StrCat("content of message ", i), c));
    ST_RETURN_IF_ERROR(ValidateText(absl::StrCat("role of message ", i), messages[i].role));
  }
  // Without a system message, the one the model's own template adds. Only
  // the template's own control tokens are control tokens: one written in a
  // message (a question about ChatML, a pasted log) is text, as OpenAI
  // reads it, and cannot end its turn or open another (it had been refused
  // with 400).
  return EncodeChatMl(tokenizer, messages, /*add_generation_prompt=*/true,
                      DefaultSystemPrompt(tokenizer.chat_template()), continue_final_assistant);
}

}  // namespace st::serve
