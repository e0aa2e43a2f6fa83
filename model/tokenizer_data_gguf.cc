// TokenizerData <-> GGUF tokenizer.ggml.* metadata (MODEL.md §6).
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/status_macros.h"
#include "glog/logging.h"
#include "model/gguf.h"
#include "model/tokenizer_data.h"

namespace st {
namespace {

constexpr char kModel[] = "tokenizer.ggml.model";
constexpr char kPre[] = "tokenizer.ggml.pre";
constexpr char kTokens[] = "tokenizer.ggml.tokens";
constexpr char kTokenType[] = "tokenizer.ggml.token_type";
constexpr char kMerges[] = "tokenizer.ggml.merges";
constexpr char kBos[] = "tokenizer.ggml.bos_token_id";
constexpr char kEos[] = "tokenizer.ggml.eos_token_id";
constexpr char kEot[] = "tokenizer.ggml.eot_token_id";
constexpr char kPad[] = "tokenizer.ggml.padding_token_id";
constexpr char kAddBos[] = "tokenizer.ggml.add_bos_token";
constexpr char kChatTemplate[] = "tokenizer.chat_template";

// Optional u32 token id: absent -> -1; present must index a token.
absl::StatusOr<int32_t> OptionalId(const GgufFile& f, const char* key, size_t n_tokens) {
  if (!f.Has(key)) return -1;
  ST_ASSIGN_OR_RETURN(const uint32_t id, f.GetUint32(key));
  if (id >= n_tokens) {
    return absl::InvalidArgumentError(
        absl::StrFormat("%s = %d is outside the vocabulary of %d tokens", key, id, n_tokens));
  }
  return static_cast<int32_t>(id);
}

absl::StatusOr<TokenizerData> FromGgufImpl(const GgufFile& f) {
  TokenizerData d;
  if (!f.Has(kModel)) {
    return absl::InvalidArgumentError(
        absl::StrCat("no ", kModel, " key: the file carries no tokenizer"));
  }
  ST_ASSIGN_OR_RETURN(d.model, f.GetString(kModel));
  d.pre.clear();
  if (f.Has(kPre)) {
    ST_ASSIGN_OR_RETURN(d.pre, f.GetString(kPre));
  }
  ST_RETURN_IF_ERROR(CheckTokenizerKind(d.model, d.pre));
  if (d.pre != "qwen2") {
    LOG(WARNING) << kPre << " is \"" << d.pre
                 << "\"; using the Qwen2 pre-tokenizer regex (SmallThinker ships the Qwen2 "
                    "tokenizer)";
  }

  ST_ASSIGN_OR_RETURN(d.tokens, f.GetStringArray(kTokens));
  if (d.tokens.empty()) return absl::InvalidArgumentError(absl::StrCat(kTokens, " is empty"));
  if (f.Has(kTokenType)) {
    ST_ASSIGN_OR_RETURN(d.token_types, f.GetInt32Array(kTokenType));
    if (d.token_types.size() != d.tokens.size()) {
      return absl::InvalidArgumentError(absl::StrFormat("%s has %d entries but %s has %d",
                                                        kTokenType, d.token_types.size(), kTokens,
                                                        d.tokens.size()));
    }
  } else {
    d.token_types.assign(d.tokens.size(), static_cast<int32_t>(TokenType::kNormal));
  }
  if (!f.Has(kMerges)) {
    return absl::InvalidArgumentError(absl::StrCat("gpt2 tokenizer without ", kMerges));
  }
  ST_ASSIGN_OR_RETURN(d.merges, f.GetStringArray(kMerges));

  ST_ASSIGN_OR_RETURN(d.bos_id, OptionalId(f, kBos, d.tokens.size()));
  ST_ASSIGN_OR_RETURN(d.eos_id, OptionalId(f, kEos, d.tokens.size()));
  ST_ASSIGN_OR_RETURN(d.eot_id, OptionalId(f, kEot, d.tokens.size()));
  ST_ASSIGN_OR_RETURN(d.pad_id, OptionalId(f, kPad, d.tokens.size()));
  d.add_bos = false;
  if (f.Has(kAddBos)) {
    ST_ASSIGN_OR_RETURN(d.add_bos, f.GetBool(kAddBos));
  }
  if (f.Has(kChatTemplate)) {
    ST_ASSIGN_OR_RETURN(d.chat_template, f.GetString(kChatTemplate));
  }
  return d;
}

}  // namespace

absl::StatusOr<TokenizerData> TokenizerDataFromGguf(const GgufFile& f) {
  absl::StatusOr<TokenizerData> d = FromGgufImpl(f);
  if (!d.ok()) return Annotate(d.status(), absl::StrCat("tokenizer in ", f.path()));
  return d;
}

std::vector<std::pair<std::string, GgufValue>> TokenizerGgufMetadata(const TokenizerData& data) {
  std::vector<std::pair<std::string, GgufValue>> kv;
  kv.emplace_back(kModel, GgufValue::Str(data.model));
  kv.emplace_back(kPre, GgufValue::Str(data.pre));
  GgufArray tokens;
  tokens.elem_type = GgufType::kString;
  tokens.strings = data.tokens;
  kv.emplace_back(kTokens, GgufValue::Arr(std::move(tokens)));
  GgufArray types;
  types.elem_type = GgufType::kInt32;
  types.ints.assign(data.token_types.begin(), data.token_types.end());
  kv.emplace_back(kTokenType, GgufValue::Arr(std::move(types)));
  GgufArray merges;
  merges.elem_type = GgufType::kString;
  merges.strings = data.merges;
  kv.emplace_back(kMerges, GgufValue::Arr(std::move(merges)));
  if (data.bos_id >= 0) kv.emplace_back(kBos, GgufValue::U32(static_cast<uint32_t>(data.bos_id)));
  if (data.eos_id >= 0) kv.emplace_back(kEos, GgufValue::U32(static_cast<uint32_t>(data.eos_id)));
  if (data.eot_id >= 0) kv.emplace_back(kEot, GgufValue::U32(static_cast<uint32_t>(data.eot_id)));
  if (data.pad_id >= 0) kv.emplace_back(kPad, GgufValue::U32(static_cast<uint32_t>(data.pad_id)));
  kv.emplace_back(kAddBos, GgufValue::Bool(data.add_bos));
  if (!data.chat_template.empty()) {
    kv.emplace_back(kChatTemplate, GgufValue::Str(data.chat_template));
  }
  return kv;
}

void WriteTokenizerToGguf(const TokenizerData& data, GgufWriter* w) {
  for (auto& [key, value] : TokenizerGgufMetadata(data)) w->Set(std::move(key), std::move(value));
}

}  // namespace st
