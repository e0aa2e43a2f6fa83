#include "coordinator/openai_json.h"

#include <cmath>
#include <limits>
#include <type_traits>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "coordinator/request_limits.h"

namespace st::serve {
namespace {

using nlohmann::json;

absl::Status TypeError(std::string_view field, std::string_view want) {
  return absl::InvalidArgumentError(
      absl::StrCat("'", std::string(field), "' must be ", std::string(want)));
}

// Reads an optional number field into *out; wrong types are errors.
absl::Status Number(const json& j, const char* field, float* out) {
  auto it = j.find(field);
  if (it == j.end() || it->is_null()) return absl::OkStatus();
  if (!it->is_number()) return TypeError(field, "a number");
  const double v = it->get<double>();
  if (!std::isfinite(v)) return TypeError(field, "finite");
  *out = static_cast<float>(v);
  return absl::OkStatus();
}

template <typename Int>
absl::Status Integer(const json& j, const char* field, Int* out) {
  auto it = j.find(field);
  if (it == j.end() || it->is_null()) return absl::OkStatus();
  if (!it->is_number_integer()) return TypeError(field, "an integer");
  if constexpr (std::is_unsigned_v<Int>) {
    if (it->is_number_unsigned()) {
      *out = static_cast<Int>(it->get<uint64_t>());
    } else if (it->get<int64_t>() >= 0) {
      *out = static_cast<Int>(it->get<int64_t>());
    } else {
      return TypeError(field, "a non-negative integer");
    }
    return absl::OkStatus();
  } else {
    if (it->is_number_unsigned() &&
        it->get<uint64_t>() > static_cast<uint64_t>(std::numeric_limits<Int>::max())) {
      return TypeError(field, "an integer in range");
    }
    const int64_t v = it->get<int64_t>();
    if (v < std::numeric_limits<Int>::min() || v > std::numeric_limits<Int>::max()) {
      return TypeError(field, "an integer in range");
    }
    *out = static_cast<Int>(v);
    return absl::OkStatus();
  }
}

absl::Status Bool(const json& j, const char* field, bool* out) {
  auto it = j.find(field);
  if (it == j.end() || it->is_null()) return absl::OkStatus();
  if (!it->is_boolean()) return TypeError(field, "a boolean");
  *out = it->get<bool>();
  return absl::OkStatus();
}

// A message content: a string, or an array of {"type": "text", "text": ...}.
absl::StatusOr<std::string> Content(const json& c, size_t index) {
  const std::string where = absl::StrCat("messages[", index, "].content");
  if (c.is_string()) return c.get<std::string>();
  if (!c.is_array()) return TypeError(where, "a string or an array of text parts");
  std::string text;
  for (const json& part : c) {
    if (!part.is_object() || part.value("type", json()) != "text" || !part.contains("text") ||
        !part["text"].is_string()) {
      return TypeError(where, "made of {\"type\": \"text\", \"text\": string} parts");
    }
    text += part["text"].get<std::string>();
  }
  return text;
}

absl::StatusOr<std::vector<int32_t>> Prompt(const json& j, const Tokenizer& tok) {
  auto it = j.find("prompt");
  if (it == j.end()) return absl::InvalidArgumentError("missing 'prompt'");
  if (it->is_string()) return EncodePrompt(tok, it->get_ref<const std::string&>());
  if (it->is_array() && it->size() == 1 && (*it)[0].is_string()) {
    return EncodePrompt(tok, (*it)[0].get_ref<const std::string&>());
  }
  if (it->is_array() && !it->empty() &&
      std::all_of(it->begin(), it->end(), [](const json& v) { return v.is_number_integer(); })) {
    std::vector<int32_t> ids;
    for (const json& v : *it) {
      const int64_t id = v.get<int64_t>();
      if (id < 0 || id >= tok.vocab_size()) {
        return absl::InvalidArgumentError(absl::StrCat("prompt token id ", id, " out of range"));
      }
      ids.push_back(static_cast<int32_t>(id));
    }
    ST_RETURN_IF_ERROR(ValidateIds(ids, tok.vocab_size()));
    return ids;
  }
  return TypeError("prompt", "a non-empty string, [string] or [token id, ...]");
}

absl::StatusOr<std::vector<int32_t>> Messages(const json& j, const Tokenizer& tok) {
  auto it = j.find("messages");
  if (it == j.end()) return absl::InvalidArgumentError("missing 'messages'");
  if (!it->is_array() || it->empty()) return TypeError("messages", "a non-empty array");
  if (it->size() > kMaxMessages) {
    return absl::InvalidArgumentError(absl::StrCat("more than ", kMaxMessages, " messages"));
  }
  std::vector<ChatMessage> messages;
  for (size_t i = 0; i < it->size(); ++i) {
    const json& m = (*it)[i];
    if (!m.is_object()) return TypeError(absl::StrCat("messages[", i, "]"), "an object");
    auto role = m.find("role");
    if (role == m.end() || !role->is_string()) {
      return TypeError(absl::StrCat("messages[", i, "].role"), "a string");
    }
    auto content = m.find("content");
    if (content == m.end() || content->is_null()) {
      return absl::InvalidArgumentError(absl::StrCat("messages[", i, "] has no content"));
    }
    ST_ASSIGN_OR_RETURN(std::string text, Content(*content, i));
    messages.push_back({role->get<std::string>(), std::move(text)});
  }
  return EncodeChat(tok, messages);
}

std::string FinishName(FinishReason f) {
  return f == FinishReason::kNone ? "" : std::string(FinishReasonName(f));
}

}  // namespace

absl::StatusOr<OpenAiRequest> ParseOpenAiRequest(ApiKind kind, std::string_view body,
                                                 const Tokenizer& tokenizer) {
  json j = json::parse(body, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) return absl::InvalidArgumentError("request body is not valid JSON");
  if (!j.is_object()) return absl::InvalidArgumentError("request body must be a JSON object");
  OpenAiRequest r;
  r.kind = kind;
  if (kind == ApiKind::kChat) {
    ST_ASSIGN_OR_RETURN(r.engine.prompt, Messages(j, tokenizer));
  } else {
    ST_ASSIGN_OR_RETURN(r.engine.prompt, Prompt(j, tokenizer));
  }
  if (r.engine.prompt.empty()) return absl::InvalidArgumentError("empty prompt");
  GenerateOptions& g = r.engine.options;
  SamplingParams& s = g.sampling;
  g.max_tokens = 0;  // until the context is full
  ST_RETURN_IF_ERROR(Integer(j, "max_completion_tokens", &g.max_tokens));
  ST_RETURN_IF_ERROR(Integer(j, "max_tokens", &g.max_tokens));
  if (g.max_tokens < 0) return TypeError("max_tokens", "a non-negative integer");
  ST_RETURN_IF_ERROR(Number(j, "temperature", &s.temperature));
  ST_RETURN_IF_ERROR(Number(j, "top_p", &s.top_p));
  ST_RETURN_IF_ERROR(Integer(j, "top_k", &s.top_k));
  ST_RETURN_IF_ERROR(Number(j, "min_p", &s.min_p));
  ST_RETURN_IF_ERROR(Number(j, "repeat_penalty", &s.repeat_penalty));
  ST_RETURN_IF_ERROR(Number(j, "presence_penalty", &s.presence_penalty));
  ST_RETURN_IF_ERROR(Number(j, "frequency_penalty", &s.frequency_penalty));
  ST_RETURN_IF_ERROR(Integer(j, "seed", &s.seed));
  ST_RETURN_IF_ERROR(ValidateSamplingParams(s));
  ST_RETURN_IF_ERROR(Bool(j, "ignore_eos", &g.ignore_eos));
  if (auto it = j.find("stop"); it != j.end() && !it->is_null()) {
    if (it->is_string()) {
      g.stop.push_back(it->get<std::string>());
    } else if (it->is_array() &&
               std::all_of(it->begin(), it->end(), [](const json& v) { return v.is_string(); })) {
      for (const json& v : *it) g.stop.push_back(v.get<std::string>());
    } else {
      return TypeError("stop", "a string or an array of strings");
    }
    ST_RETURN_IF_ERROR(ValidateStops(g.stop));
  }
  int n = 1;
  ST_RETURN_IF_ERROR(Integer(j, "n", &n));
  if (n != 1) return absl::InvalidArgumentError("only n = 1 is supported");
  ST_RETURN_IF_ERROR(Bool(j, "stream", &r.stream));
  if (auto it = j.find("stream_options"); it != j.end() && !it->is_null()) {
    if (!it->is_object()) return TypeError("stream_options", "an object");
    ST_RETURN_IF_ERROR(Bool(*it, "include_usage", &r.include_usage));
  }
  if (auto it = j.find("model"); it != j.end() && !it->is_null() && !it->is_string()) {
    return TypeError("model", "a string");
  }
  return r;
}

int HttpStatusFor(absl::StatusCode code) {
  switch (code) {
    case absl::StatusCode::kInvalidArgument:
    case absl::StatusCode::kOutOfRange: return 400;
    case absl::StatusCode::kUnauthenticated: return 401;
    case absl::StatusCode::kPermissionDenied: return 403;
    case absl::StatusCode::kNotFound: return 404;
    case absl::StatusCode::kResourceExhausted: return 429;
    case absl::StatusCode::kUnavailable: return 503;
    case absl::StatusCode::kDeadlineExceeded: return 504;
    default: return 500;
  }
}

json ErrorJson(int http_status, std::string_view message) {
  std::string type = "server_error";
  if (http_status == 400 || http_status == 404 || http_status == 413) type = "invalid_request_error";
  if (http_status == 401) type = "authentication_error";
  if (http_status == 429) type = "rate_limit_error";
  if (http_status == 503) type = "unavailable_error";
  return {{"error",
           {{"message", std::string(message)}, {"type", type}, {"param", nullptr},
            {"code", http_status}}}};
}

json UsageJson(const EngineUsage& u) {
  return {{"prompt_tokens", u.prompt_tokens},
          {"completion_tokens", u.completion_tokens},
          {"total_tokens", u.prompt_tokens + u.completion_tokens}};
}

namespace {
json Timings(const EngineUsage& u) {
  // llama.cpp-style timings (milliseconds).
  return {{"prompt_n", u.prompt_tokens},
          {"prompt_ms", u.prompt_seconds * 1e3},
          {"predicted_n", u.completion_tokens},
          {"predicted_ms", u.decode_seconds * 1e3},
          {"queue_ms", u.queue_seconds * 1e3},
          {"ttft_ms", u.ttft_seconds * 1e3},
          {"predicted_per_second",
           u.completion_tokens > 1 && u.decode_seconds > 0
               ? (u.completion_tokens - 1) / u.decode_seconds
               : 0.0}};
}

json Base(const ReplyContext& c, bool chunk) {
  const char* object = c.kind == ApiKind::kChat ? (chunk ? "chat.completion.chunk" : "chat.completion")
                                                : "text_completion";
  return {{"id", c.id}, {"object", object}, {"created", c.created}, {"model", c.model}};
}
}  // namespace

json FullReply(const ReplyContext& c, const std::string& text, FinishReason finish,
               const EngineUsage& usage) {
  json j = Base(c, false);
  json choice = {{"index", 0}, {"finish_reason", FinishName(finish)}};
  if (c.kind == ApiKind::kChat) {
    choice["message"] = {{"role", "assistant"}, {"content", text}};
  } else {
    choice["text"] = text;
    choice["logprobs"] = nullptr;
  }
  j["choices"] = json::array({choice});
  j["usage"] = UsageJson(usage);
  j["timings"] = Timings(usage);
  j["system_fingerprint"] = "smallthinker";
  return j;
}

json ChunkJson(const ReplyContext& c, const std::string& text, bool first, FinishReason finish) {
  json j = Base(c, true);
  json choice = {{"index", 0}};
  choice["finish_reason"] = finish == FinishReason::kNone ? json(nullptr) : json(FinishName(finish));
  if (c.kind == ApiKind::kChat) {
    json delta = json::object();
    if (first) delta["role"] = "assistant";
    if (!text.empty() || finish == FinishReason::kNone) delta["content"] = text;
    choice["delta"] = delta;
  } else {
    choice["text"] = text;
    choice["logprobs"] = nullptr;
  }
  j["choices"] = json::array({choice});
  return j;
}

json UsageChunkJson(const ReplyContext& c, const EngineUsage& usage) {
  json j = Base(c, true);
  j["choices"] = json::array();
  j["usage"] = UsageJson(usage);
  j["timings"] = Timings(usage);
  return j;
}

std::string Dump(const json& j) {
  return j.dump(-1, ' ', false, json::error_handler_t::replace);
}

}  // namespace st::serve
