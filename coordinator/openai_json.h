// The OpenAI-compatible wire format: parsing /v1/completions and
// /v1/chat/completions bodies into engine requests (with strict type checks)
// and building the JSON replies, stream chunks and error objects.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include "coordinator/engine.h"
#include "model/tokenizer.h"
#include "nlohmann/json.hpp"

namespace st::serve {

enum class ApiKind { kCompletion, kChat };

struct OpenAiRequest {
  ApiKind kind = ApiKind::kCompletion;
  EngineRequest engine;
  bool stream = false;
  bool include_usage = false;  // stream_options.include_usage
};

// Deepest nesting of arrays and objects a request body may have.
inline constexpr int kMaxJsonDepth = 64;
// The engine seed for a request's "seed": 0 (a fixed seed for OpenAI and
// llama.cpp; the engine takes 0 for "draw one").
inline constexpr uint64_t kSeedForZero = 0x9E3779B97F4A7C15;

// Parses and validates a request body: JSON syntax and nesting (at most
// kMaxJsonDepth), field types and ranges, the prompt / messages (see
// request_limits.h). Any problem is INVALID_ARGUMENT with a message naming
// the field. Supported parameters: prompt (string, [string] or [int]) /
// messages, max_tokens (or max_completion_tokens, or llama.cpp's n_predict;
// absent = until the context is full), temperature, top_p, top_k, min_p,
// repeat_penalty, repeat_last_n, presence_penalty, frequency_penalty, seed
// (negative = random), stop (string or [string]), stream,
// stream_options.include_usage, n (must be 1), model (ignored: one model is
// served), ignore_eos. Features it does not implement (tools, logprobs,
// logit_bias, grammar, ...) are refused unless given their neutral value.
absl::StatusOr<OpenAiRequest> ParseOpenAiRequest(ApiKind kind, std::string_view body,
                                                 const Tokenizer& tokenizer);

// {"error": {"message", "type", "param": null, "code"}} in OpenAI's shape;
// `code` is `error_code` when given (e.g. "context_length_exceeded"), else
// the HTTP status.
nlohmann::json ErrorJson(int http_status, std::string_view message,
                         std::string_view error_code = {});
// The same for a status (HttpStatusFor its code, ErrorCodeOf it).
nlohmann::json ErrorJson(const absl::Status& status);
// HTTP status for an engine / validation error.
int HttpStatusFor(absl::StatusCode code);

// Reply pieces. `id` is the completion id ("chatcmpl-7"), `created` Unix s.
struct ReplyContext {
  ApiKind kind;
  std::string id;
  std::string model;
  int64_t created;
  // stream_options.include_usage: every chunk but the usage one then says
  // "usage": null, as OpenAI's do.
  bool include_usage = false;
};
nlohmann::json UsageJson(const EngineUsage& usage);
// A whole non-streaming reply.
nlohmann::json FullReply(const ReplyContext& c, const std::string& text, FinishReason finish,
                         const EngineUsage& usage);
// One stream chunk with a text delta (first = also send the assistant role
// for chat), or the finishing chunk when finish != kNone.
nlohmann::json ChunkJson(const ReplyContext& c, const std::string& text, bool first,
                         FinishReason finish);
// The usage-only chunk sent last when stream_options.include_usage is set.
nlohmann::json UsageChunkJson(const ReplyContext& c, const EngineUsage& usage);

// Serializes for the wire; invalid UTF-8 (never expected) is replaced.
std::string Dump(const nlohmann::json& j);

}  // namespace st::serve
