#include "coordinator/openai_json.h"

#include <algorithm>
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
  if (!it->is_number_integer()) {
    // Integers past 64 bits parse as floating point.
    const bool whole = it->is_number_float() && std::abs(it->get<double>()) >= 0x1p63 &&
                       std::isfinite(it->get<double>());
    return TypeError(field, whole ? "an integer in range" : "an integer");
  }
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

// A message content: a string, or an array of {"type": "text", "text": ...}
// parts, joined by newlines (as llama.cpp joins them).
absl::StatusOr<std::string> Content(const json& c, size_t index) {
  const std::string where = absl::StrCat("messages[", index, "].content");
  if (c.is_string()) return c.get<std::string>();
  if (!c.is_array()) return TypeError(where, "a string or an array of text parts");
  std::string text;
  for (size_t i = 0; i < c.size(); ++i) {
    const json& part = c[i];
    if (!part.is_object() || part.value("type", json()) != "text" || !part.contains("text") ||
        !part["text"].is_string()) {
      return TypeError(where, "made of {\"type\": \"text\", \"text\": string} parts");
    }
    if (i > 0) text += "\n";
    text += part["text"].get<std::string>();
  }
  return text;
}

// An assistant turn's tool calls as Qwen's chat template renders them after
// the content: one <tool_call> block of {"name", "arguments"} per call.
absl::Status AppendToolCalls(const json& calls, size_t index, std::string* text) {
  const std::string where = absl::StrCat("messages[", index, "].tool_calls");
  if (!calls.is_array()) return TypeError(where, "an array");
  for (size_t k = 0; k < calls.size(); ++k) {
    const json& call = calls[k];
    const json& f = call.is_object() && call.contains("function") ? call["function"] : call;
    if (!f.is_object() || !f.contains("name") || !f["name"].is_string()) {
      return TypeError(where, "made of {\"function\": {\"name\": string, \"arguments\": ...}} calls");
    }
    const json args = f.value("arguments", json::object());
    if (!text->empty()) *text += "\n";
    absl::StrAppend(text, "<tool_call>\n{\"name\": \"", f["name"].get<std::string>(),
                    "\", \"arguments\": ", args.is_string() ? args.get<std::string>() : Dump(args),
                    "}\n</tool_call>");
  }
  return absl::OkStatus();
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
    auto role_it = m.find("role");
    if (role_it == m.end() || !role_it->is_string()) {
      return TypeError(absl::StrCat("messages[", i, "].role"), "a string");
    }
    std::string role = role_it->get<std::string>();
    // An assistant turn may carry tool calls and no content (null).
    auto content = m.find("content");
    auto calls = m.find("tool_calls");
    const bool has_calls = role == "assistant" && calls != m.end() && !calls->is_null();
    std::string text;
    if (content != m.end() && !content->is_null()) {
      ST_ASSIGN_OR_RETURN(text, Content(*content, i));
    } else if (role != "assistant") {
      return absl::InvalidArgumentError(absl::StrCat("messages[", i, "] has no content"));
    }
    if (has_calls) ST_RETURN_IF_ERROR(AppendToolCalls(*calls, i, &text));
    messages.push_back({std::move(role), std::move(text)});
  }
  // A final assistant message is continued, as llama-server does, unless
  // vLLM's continue_final_message says false (RejectUnsupported has checked
  // its type).
  auto cont = j.find("continue_final_message");
  return EncodeChat(tok, messages, cont == j.end() || cont->is_null() || *cont == true);
}

// OpenAI features this server does not implement: a clear error rather than
// a reply that silently ignores them (as llama-server refuses echo, best_of
// and suffix). Their neutral values pass.
absl::Status RejectUnsupported(const json& j) {
  auto set = [&](const char* field) {
    auto it = j.find(field);
    return it != j.end() && !it->is_null() ? &*it : nullptr;
  };
  auto unsupported = [](const std::string& what) {
    return absl::InvalidArgumentError(absl::StrCat(what, " is not supported by this server"));
  };
  for (const char* field : {"tools", "functions"}) {
    if (const json* v = set(field); v != nullptr && !(v->is_array() && v->empty())) {
      return unsupported(absl::StrCat("'", field, "' (tool calling)"));
    }
  }
  for (const char* field : {"tool_choice", "function_call"}) {
    if (const json* v = set(field); v != nullptr && *v != "none" && *v != "auto") {
      return unsupported(absl::StrCat("'", field, "' (tool calling)"));
    }
  }
  if (const json* v = set("response_format");
      v != nullptr && !(v->is_object() && v->value("type", json("text")) == "text")) {
    return unsupported("'response_format' other than {\"type\": \"text\"}");
  }
  // Chat: logprobs true and top_logprobs; completions: logprobs N >= 1.
  // (An unsigned value is compared as one: 2^64 - 1 read as int64 is -1,
  // which had passed for "none".)
  if (const json* v = set("logprobs");
      v != nullptr &&
      !(*v == false || (v->is_number_unsigned() ? v->get<uint64_t>() == 0
                                                : v->is_number_integer() && v->get<int64_t>() <= 0))) {
    return unsupported("'logprobs'");
  }
  if (const json* v = set("top_logprobs"); v != nullptr && !(v->is_number_integer() && *v == 0)) {
    return unsupported("'top_logprobs'");
  }
  if (const json* v = set("logit_bias"); v != nullptr && !(v->is_object() && v->empty())) {
    return unsupported("'logit_bias'");
  }
  // llama.cpp's constrained decoding.
  for (const char* field : {"grammar", "json_schema"}) {
    if (const json* v = set(field); v != nullptr && *v != "" && !(v->is_object() && v->empty())) {
      return unsupported(absl::StrCat("'", field, "' (constrained output)"));
    }
  }
  // llama.cpp's token probabilities; OpenAI's audio output and predicted outputs.
  if (const json* v = set("n_probs"); v != nullptr && !(v->is_number_integer() && *v == 0)) {
    return unsupported("'n_probs'");
  }
  if (const json* v = set("modalities"); v != nullptr && *v != json::array({"text"})) {
    return unsupported("'modalities' other than [\"text\"]");
  }
  if (set("audio") != nullptr) return unsupported("'audio' (audio output)");
  if (set("prediction") != nullptr) return unsupported("'prediction' (predicted outputs)");
  if (const json* v = set("echo"); v != nullptr && *v != false) return unsupported("'echo'");
  if (const json* v = set("best_of"); v != nullptr && *v != 1) return unsupported("'best_of' > 1");
  if (const json* v = set("suffix"); v != nullptr && *v != "") return unsupported("'suffix'");
  // Other servers' samplers and limits (llama-server, vLLM), refused unless
  // neutral: accepted, they changed nothing (an HTTP API audit, session 36).
  // A field that is not a number is refused too.
  auto neutral_number = [&](const char* field, auto is_neutral) {
    const json* v = set(field);
    return v == nullptr || (v->is_number() && is_neutral(v->get<double>()));
  };
  const auto zero = [](double x) { return x == 0; };
  const auto at_least_one = [](double x) { return x >= 1; };  // llama.cpp: >= 1 disables
  const auto off = [](double x) { return x <= 0; };  // llama.cpp: <= 0 disables
  const std::pair<const char*, bool> samplers[] = {
      {"mirostat", neutral_number("mirostat", zero)},
      {"typical_p", neutral_number("typical_p", at_least_one)},
      {"dynatemp_range", neutral_number("dynatemp_range", zero)},
      {"top_n_sigma", neutral_number("top_n_sigma", off)},
      {"xtc_probability", neutral_number("xtc_probability", off)},
      {"dry_multiplier", neutral_number("dry_multiplier", off)},
      {"min_tokens", neutral_number("min_tokens", off)},
      {"t_max_predict_ms", neutral_number("t_max_predict_ms", off)},
  };
  for (const auto& [field, ok] : samplers) {
    if (!ok) return unsupported(absl::StrCat("'", field, "'"));
  }
  // vLLM's template switches; SmallThinker's ChatML has no thinking mode.
  // continue_final_message true (with add_generation_prompt false, as vLLM
  // asks) continues a final assistant message, what this server does with
  // one by default; false opens a new assistant turn after it.
  const json* messages = set("messages");
  const bool final_assistant = messages != nullptr && messages->is_array() &&
                               !messages->empty() && messages->back().is_object() &&
                               messages->back().value("role", json()) == "assistant";
  const json* cont = set("continue_final_message");
  if (cont != nullptr && !cont->is_boolean()) return TypeError("continue_final_message", "a boolean");
  if (cont != nullptr && *cont == true && !final_assistant) {
    return unsupported("'continue_final_message' without a final assistant message");
  }
  if (const json* v = set("add_generation_prompt");
      v != nullptr && *v != true && !(cont != nullptr && *cont == true)) {
    return unsupported("'add_generation_prompt' false without 'continue_final_message' true");
  }
  if (const json* v = set("enable_thinking"); v != nullptr && *v != false) {
    return unsupported("'enable_thinking' (the chat template has no thinking mode)");
  }
  if (const json* v = set("chat_template_kwargs");
      v != nullptr && !(v->is_object() && std::all_of(v->items().begin(), v->items().end(),
                                                       [](const auto& kv) {
                                                         return kv.key() == "enable_thinking" &&
                                                                kv.value() == false;
                                                       }))) {
    return unsupported("'chat_template_kwargs' other than {\"enable_thinking\": false}");
  }
  return absl::OkStatus();
}

// The parser's reason for refusing `body` ("number overflow parsing
// '1e400'", "syntax error ... at line 1, column 5"), its
// "[json.exception.*] " tag left out.
absl::Status InvalidJson(std::string_view body) {
  std::string why;
  try {
    const json parsed = json::parse(body);  // throws: the body did not parse before
    (void)parsed;
  } catch (const json::exception& e) {
    why = e.what();
    if (const size_t tag = why.find("] "); why.rfind("[json.exception.", 0) == 0 && tag != why.npos) {
      why.erase(0, tag + 2);
    }
    // ("last read: '...'" quotes the token, which may be most of the body.)
    if (why.size() > 200) why = absl::StrCat(why.substr(0, 200), "...");
  }
  return absl::InvalidArgumentError(
      why.empty() ? "request body is not valid JSON" : absl::StrCat("request body is not valid JSON: ", why));
}

// The deepest nesting of objects and arrays in `body`, brackets inside
// strings not counted (for an invalid body, whatever the scan sees: the
// parser refuses it next). One pass, no allocation.
int NestingDepth(std::string_view body) {
  int depth = 0, deepest = 0;
  bool in_string = false, escaped = false;
  for (const char c : body) {
    if (in_string) {
      if (escaped) {
        escaped = false;
      } else if (c == '\\') {
        escaped = true;
      } else if (c == '"') {
        in_string = false;
      }
    } else if (c == '"') {
      in_string = true;
    } else if (c == '{' || c == '[') {
      deepest = std::max(deepest, ++depth);
    } else if (c == '}' || c == ']') {
      --depth;
    }
  }
  return deepest;
}

std::string FinishName(FinishReason f) {
  return f == FinishReason::kNone ? "" : std::string(FinishReasonName(f));
}

}  // namespace

absl::StatusOr<OpenAiRequest> ParseOpenAiRequest(ApiKind kind, std::string_view body,
                                                 const Tokenizer& tokenizer) {
  // nlohmann::json parses and frees iteratively, but copies and dumps
  // recurse once per level: a body of a few hundred KiB nested ~10^5 deep
  // overflowed the handler's stack when a field was read with value(). The
  // depth is checked by a linear scan first: checking it through a parser
  // callback made the parse quadratic (the callback parser rescans a
  // container's members as each nested object closes: 160,000 `{}` in an
  // array took 6.5 s, 8 MiB of them ~30 min of a core).
  if (NestingDepth(body) > kMaxJsonDepth) {
    return absl::InvalidArgumentError(
        absl::StrCat("request body nests JSON deeper than ", kMaxJsonDepth, " levels"));
  }
  json j = json::parse(body, /*cb=*/nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) return InvalidJson(body);
  if (!j.is_object()) return absl::InvalidArgumentError("request body must be a JSON object");
  OpenAiRequest r;
  r.kind = kind;
  if (kind == ApiKind::kChat) {
    ST_ASSIGN_OR_RETURN(r.engine.prompt, Messages(j, tokenizer));
  } else {
    ST_ASSIGN_OR_RETURN(r.engine.prompt, Prompt(j, tokenizer));
  }
  if (r.engine.prompt.empty()) return absl::InvalidArgumentError("empty prompt");
  ST_RETURN_IF_ERROR(RejectUnsupported(j));
  GenerateOptions& g = r.engine.options;
  SamplingParams& s = g.sampling;
  // max_completion_tokens (OpenAI's newer name) wins over max_tokens, which
  // wins over n_predict (llama.cpp's name); absent, null or -1 = until the
  // context is full (the engine's 0).
  g.max_tokens = 0;
  for (const char* field : {"n_predict", "max_tokens", "max_completion_tokens"}) {
    int64_t max_tokens = -1;
    if (!j.contains(field) || j[field].is_null()) continue;
    ST_RETURN_IF_ERROR(Integer(j, field, &max_tokens));
    if (max_tokens == 0 || max_tokens < -1 || max_tokens > std::numeric_limits<int>::max()) {
      return TypeError(field, "a positive integer up to 2147483647, or -1 for no limit");
    }
    g.max_tokens = max_tokens == -1 ? 0 : static_cast<int>(max_tokens);
  }
  ST_RETURN_IF_ERROR(Number(j, "temperature", &s.temperature));
  ST_RETURN_IF_ERROR(Number(j, "top_p", &s.top_p));
  ST_RETURN_IF_ERROR(Integer(j, "top_k", &s.top_k));
  if (s.top_p == 0.0f) {  // llama.cpp keeps the most probable token, whatever top_k says
    s.top_p = 1.0f;
    s.top_k = 1;
  }
  ST_RETURN_IF_ERROR(Number(j, "min_p", &s.min_p));
  // vLLM's and Hugging Face's name for the same penalty.
  if (!j.contains("repeat_penalty") || j["repeat_penalty"].is_null()) {
    ST_RETURN_IF_ERROR(Number(j, "repetition_penalty", &s.repeat_penalty));
  }
  ST_RETURN_IF_ERROR(Number(j, "repeat_penalty", &s.repeat_penalty));
  ST_RETURN_IF_ERROR(Number(j, "presence_penalty", &s.presence_penalty));
  ST_RETURN_IF_ERROR(Number(j, "frequency_penalty", &s.frequency_penalty));
  ST_RETURN_IF_ERROR(Integer(j, "repeat_last_n", &s.repeat_last_n));
  // Absent, null or negative (llama.cpp's -1): a random seed (the engine's
  // 0). Any other value, 0 included as for OpenAI and llama.cpp, is a fixed
  // seed: 0 becomes kSeedForZero, since the engine reads 0 as "random".
  if (auto it = j.find("seed"); it != j.end() && !it->is_null()) {
    if (it->is_number_unsigned()) {
      ST_RETURN_IF_ERROR(Integer(j, "seed", &s.seed));
      if (s.seed == 0) s.seed = kSeedForZero;
    } else {
      int64_t seed = 0;
      ST_RETURN_IF_ERROR(Integer(j, "seed", &seed));
      s.seed = seed > 0 ? static_cast<uint64_t>(seed) : 0;
    }
  }
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

json ErrorJson(const absl::Status& status) {
  return ErrorJson(HttpStatusFor(status.code()), std::string(status.message()),
                   ErrorCodeOf(status));
}

json ErrorJson(int http_status, std::string_view message, std::string_view error_code) {
  // Every 4xx is the client's (405 wrong method, 414 URI too long, ...).
  std::string type = http_status >= 400 && http_status < 500 ? "invalid_request_error"
                                                              : "server_error";
  if (http_status == 401) type = "authentication_error";
  if (http_status == 429) type = "rate_limit_error";
  if (http_status == 503) type = "unavailable_error";
  return {{"error",
           {{"message", std::string(message)}, {"type", type}, {"param", nullptr},
            {"code", error_code.empty() ? json(http_status) : json(std::string(error_code))}}}};
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
  choice["logprobs"] = nullptr;
  if (c.kind == ApiKind::kChat) {
    choice["message"] = {{"role", "assistant"}, {"content", text}, {"refusal", nullptr}};
  } else {
    choice["text"] = text;
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
  }
  choice["logprobs"] = nullptr;
  j["choices"] = json::array({choice});
  if (c.include_usage) j["usage"] = nullptr;
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
