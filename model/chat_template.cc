#include "model/chat_template.h"

#include <optional>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/status_macros.h"

namespace st {
namespace {

constexpr char kStart[] = "<|im_start|>";
constexpr char kEnd[] = "<|im_end|>";

// Pieces being built: text joins the last plain piece; a control token is
// a piece of its own.
class Pieces {
 public:
  Pieces& Text(std::string_view text) {
    if (out_.empty() || out_.back().control) out_.push_back({});
    out_.back().text.append(text);
    return *this;
  }
  Pieces& Control(std::string_view token) {
    out_.push_back({std::string(token), true});
    return *this;
  }
  std::vector<ChatPiece> Take() { return std::move(out_); }

 private:
  std::vector<ChatPiece> out_;
};

void AppendTurn(std::string_view role, std::string_view content, Pieces* out) {
  out->Control(kStart).Text(role).Text("\n").Text(content).Control(kEnd).Text("\n");
}

}  // namespace

absl::StatusOr<std::string> RenderChatMl(absl::Span<const ChatMessage> messages,
                                         bool add_generation_prompt,
                                         std::string_view default_system,
                                         bool continue_final_assistant) {
  ST_ASSIGN_OR_RETURN(std::vector<ChatPiece> pieces,
                      RenderChatMlPieces(messages, add_generation_prompt, default_system,
                                         continue_final_assistant));
  std::string out;
  for (const ChatPiece& p : pieces) out += p.text;
  return out;
}

absl::StatusOr<std::vector<ChatPiece>> RenderChatMlPieces(absl::Span<const ChatMessage> messages,
                                                          bool add_generation_prompt,
                                                          std::string_view default_system,
                                                          bool continue_final_assistant) {
  // "developer" is OpenAI's newer name for the system role.
  auto role_of = [&](size_t i) -> std::string_view {
    return messages[i].role == "developer" ? "system" : std::string_view(messages[i].role);
  };
  for (size_t i = 0; i < messages.size(); ++i) {
    const std::string_view role = role_of(i);
    if (role != "system" && role != "user" && role != "assistant" && role != "tool") {
      return absl::InvalidArgumentError(absl::StrFormat(
          "message %d has %s role \"%s\" (expected system, developer, user, assistant or tool)",
          i, role.empty() ? "an empty" : "an unknown", role));
    }
  }
  Pieces out;
  if (!default_system.empty() && (messages.empty() || role_of(0) != "system")) {
    AppendTurn("system", default_system, &out);
  }
  // A final assistant message to continue: its turn stays open.
  const bool prefill = add_generation_prompt && continue_final_assistant && !messages.empty() &&
                       role_of(messages.size() - 1) == "assistant";
  for (size_t i = 0; i < messages.size(); ++i) {
    const ChatMessage& m = messages[i];
    if (prefill && i + 1 == messages.size()) {
      out.Control(kStart).Text("assistant\n").Text(m.content);
      return out.Take();
    }
    if (role_of(i) != "tool") {
      AppendTurn(role_of(i), m.content, &out);
      continue;
    }
    // Qwen2.5: a run of tool messages forms one user turn.
    if (i == 0 || messages[i - 1].role != "tool") out.Control(kStart).Text("user");
    out.Text("\n<tool_response>\n").Text(m.content).Text("\n</tool_response>");
    if (i + 1 == messages.size() || messages[i + 1].role != "tool") out.Control(kEnd).Text("\n");
  }
  if (add_generation_prompt) out.Control(kStart).Text("assistant\n");
  return out.Take();
}

absl::StatusOr<std::vector<int32_t>> EncodeChatMl(const Tokenizer& tokenizer,
                                                  absl::Span<const ChatMessage> messages,
                                                  bool add_generation_prompt,
                                                  std::string_view default_system,
                                                  bool continue_final_assistant) {
  ST_ASSIGN_OR_RETURN(std::vector<ChatPiece> pieces,
                      RenderChatMlPieces(messages, add_generation_prompt, default_system,
                                         continue_final_assistant));
  std::vector<int32_t> ids;
  for (const ChatPiece& p : pieces) {
    ST_ASSIGN_OR_RETURN(std::vector<int32_t> part,
                        tokenizer.Encode(p.text, /*parse_special=*/p.control));
    if (p.control && part.size() != 1) {
      return absl::FailedPreconditionError(absl::StrCat(
          "the model's tokenizer has no single token for the chat template's ", p.text));
    }
    ids.insert(ids.end(), part.begin(), part.end());
  }
  return ids;
}

std::string DefaultSystemPrompt(std::string_view jinja) {
  // Jinja comments ({# ... #}) render nothing: leave them out.
  std::string t;
  for (size_t i = 0; i < jinja.size();) {
    const size_t open = jinja.find("{#", i);
    t.append(jinja.substr(i, open == std::string_view::npos ? std::string_view::npos : open - i));
    if (open == std::string_view::npos) break;
    const size_t close = jinja.find("#}", open + 2);
    if (close == std::string_view::npos) break;
    i = close + 2;
  }
  // In the template's source the string literal reads
  //   '<|im_start|>system\n' + messages[0]['content'] + ...   (a system turn given)
  //   '<|im_start|>system\nYou are ...<|im_end|>\n'           (none given)
  // with a backslash-n escape; the second form is the default.
  for (const char quote : {'\'', '"'}) {
    const std::string open = absl::StrCat(std::string(1, quote), "<|im_start|>system\\n");
    for (size_t at = t.find(open); at != std::string::npos; at = t.find(open, at + 1)) {
      std::string text;
      bool escaped = false;
      for (size_t i = at + open.size(); i < t.size(); ++i) {
        const char c = t[i];
        if (escaped) {
          text += c == 'n' ? '\n' : c == 't' ? '\t' : c;  // \' \" \\ as themselves
          escaped = false;
        } else if (c == '\\') {
          escaped = true;
        } else if (c == quote) {
          break;  // the literal ends: a default only if it held the whole turn
        } else {
          text += c;
        }
      }
      const size_t end = text.find("<|im_end|>");
      if (end != std::string::npos && end > 0) return text.substr(0, end);
    }
  }
  return "";
}

void CloseAssistantTurn(const Tokenizer& tok, std::vector<int32_t>* ids) {
  const std::optional<int32_t> im_end = tok.TokenId("<|im_end|>");
  if (!ids->empty() && tok.IsEndOfGeneration(ids->back()) && ids->back() != im_end) ids->pop_back();
  if (im_end.has_value() && (ids->empty() || ids->back() != *im_end)) ids->push_back(*im_end);
  if (auto newline = tok.Encode("\n"); newline.ok()) ids->insert(ids->end(), newline->begin(), newline->end());
}

std::vector<int32_t> IdsUpToStopString(const Tokenizer& tok, const std::vector<int32_t>& generated,
                                       std::string_view shown) {
  // ends[k]: bytes of `shown` the first k sampled ids cover.
  std::vector<size_t> ends = {0};
  for (int32_t id : generated) {
    const size_t at = ends.back();
    if (tok.token_type(id) == TokenType::kControl) {  // shown as nothing (StreamDecoder)
      ends.push_back(at);
      continue;
    }
    const std::string piece = tok.Decode({id});
    if (piece.empty() || at + piece.size() > shown.size() ||
        shown.compare(at, piece.size(), piece) != 0) {
      break;
    }
    ends.push_back(at + piece.size());
  }
  // The rest starts at a token boundary, which may split a UTF-8 character
  // (byte-level tokens): give tokens back until it encodes.
  for (size_t k = ends.size(); k-- > 0;) {
    auto rest = tok.Encode(shown.substr(ends[k]), /*parse_special=*/false);
    if (!rest.ok()) continue;
    std::vector<int32_t> ids(generated.begin(), generated.begin() + static_cast<ptrdiff_t>(k));
    ids.insert(ids.end(), rest->begin(), rest->end());
    return ids;
  }
  // `shown` is no valid UTF-8 at all: the ids whose text it begins with.
  return std::vector<int32_t>(generated.begin(),
                              generated.begin() + static_cast<ptrdiff_t>(ends.size() - 1));
}

}  // namespace st
