// The tokenizer as data: vocabulary, token types, BPE merges and the few
// settings that travel with it. Loaded from a Hugging Face tokenizer.json or
// from a GGUF file's tokenizer.ggml.* keys, written back to GGUF, and turned
// into a working encoder by Tokenizer::Create (model/tokenizer.h).
//
// Only byte-level BPE with the Qwen2 pre-tokenizer is supported: model "gpt2",
// pre "qwen2" (also accepted: "default" or absent, with a warning, using the
// Qwen2 regex). See docs MODEL.md §6 and §8.
//
// Value type; thread-compatible.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "model/gguf.h"

namespace st {

// llama.cpp token types (tokenizer.ggml.token_type).
enum class TokenType : int32_t {
  kNormal = 1,
  kUnknown = 2,
  kControl = 3,      // special tokens such as <|im_end|>
  kUserDefined = 4,  // non-special added tokens such as <tool_call>
  kUnused = 5,       // "[PAD<id>]" padding entries
  kByte = 6,
};

struct TokenizerData {
  std::vector<std::string> tokens;   // id -> token text (byte-level alphabet;
                                     // added tokens are stored verbatim)
  std::vector<int32_t> token_types;  // id -> TokenType value; same size
  std::vector<std::string> merges;   // "a b", index = rank
  std::string model = "gpt2";
  std::string pre = "qwen2";
  int32_t bos_id = 151643;  // -1 = none
  int32_t eos_id = 151645;  // -1 = none
  int32_t pad_id = 151643;  // -1 = none
  // tokenizer.ggml.eot_token_id: another end of generation, as llama.cpp
  // takes it (Qwen2 files usually leave it out). -1 = none.
  int32_t eot_id = -1;
  bool add_bos = false;
  std::string chat_template;  // Jinja text, may be empty
};

// Vocabulary size of the SmallThinker / Qwen2 embedding table.
inline constexpr size_t kQwen2PaddedVocabSize = 151936;

// Reads a Hugging Face tokenizer.json (model type BPE, merges either as
// "a b" strings or as [a, b] pairs). Added tokens are placed at their ids:
// special ones as kControl, the others as kUserDefined. Ids from the end of the
// real vocabulary up to `pad_to` are filled with "[PAD<id>]" / kUnused, as the
// llama.cpp converter does (pad_to smaller than the vocabulary pads nothing).
// If tokenizer_config.json exists in the same directory, eos/pad tokens,
// add_bos_token and chat_template are taken from it.
// Errors: NOT_FOUND (missing file), INVALID_ARGUMENT (bad JSON, unsupported
// model/pre-tokenizer/normalizer, duplicate or out-of-range ids, an id below
// the largest id that has no token), each naming the file and the problem.
absl::StatusOr<TokenizerData> LoadHfTokenizerJson(const std::string& path,
                                                  size_t pad_to = kQwen2PaddedVocabSize);

// Reads tokenizer.ggml.{model,pre,tokens,token_type,merges,bos_token_id,
// eos_token_id,eot_token_id,padding_token_id,add_bos_token} and
// tokenizer.chat_template.
// tokens and merges are required; token_type defaults to all kNormal; absent
// ids become -1. INVALID_ARGUMENT for an unsupported model/pre (naming the
// value) or inconsistent sizes; type mismatches are reported with the key.
absl::StatusOr<TokenizerData> TokenizerDataFromGguf(const GgufFile& f);

// The metadata read by TokenizerDataFromGguf, in llama.cpp's key order (ids
// < 0 and an empty chat template are omitted). Also usable with
// GgufWriter::BuildInMemory.
std::vector<std::pair<std::string, GgufValue>> TokenizerGgufMetadata(const TokenizerData& data);

// Sets the keys of TokenizerGgufMetadata on `w` (replacing existing ones).
void WriteTokenizerToGguf(const TokenizerData& data, GgufWriter* w);

// OK if (model, pre) is a supported pair: model "gpt2" and pre "qwen2",
// "default" or "". INVALID_ARGUMENT naming the offending value otherwise.
absl::Status CheckTokenizerKind(const std::string& model, const std::string& pre);

}  // namespace st
