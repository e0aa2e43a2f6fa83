// Qwen2 byte-level BPE tokenizer (MODEL.md §8), matching Hugging Face /
// transformers.js ids exactly on valid UTF-8 input.
//
// Encode pipeline:
//   1. reject ill-formed UTF-8 (INVALID_ARGUMENT with the byte offset);
//   2. split out added tokens (kUserDefined always, as Hugging Face does
//      with split_special_tokens; kControl only if parse_special) by exact
//      byte match, longest match at each position, scanning left to right
//      (transformers.js DictionarySplitter);
//   3. NFC-normalize each remaining segment (utf8proc);
//   4. split it with the Qwen2 regex (Qwen2PreTokenizer, PCRE2);
//   5. BPE each piece over byte-level token ids (BpeModel).
// No BOS/EOS is added (add_bos() is informational; Qwen2 never adds BOS).
//
// Decode concatenates raw token bytes: byte-level tokens are mapped back to
// bytes, added tokens are emitted verbatim, kUnused ("[PAD<id>]") tokens and
// out-of-range ids emit nothing. The result may end in the middle of a UTF-8
// character; use StreamDecoder for incremental, always-valid text.
//
// Cost: Create ~0.1 s for the 151,936-token vocabulary (hash maps of tokens
// and 151,387 merges, ~20 MB with the TokenizerData it keeps). Encode is
// O(n log n) in the piece length, ~1M tokens/s on one core, no shared caches.
// Thread-safe: all methods are const and share no mutable state.
#pragma once

#include <array>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "model/bpe.h"
#include "model/tokenizer_data.h"
#include "model/tokenizer_pretokenizer.h"

namespace st {

class Tokenizer {
 public:
  // Validates `data` (supported model/pre, sizes, ids in range, well-formed
  // merges) and builds the lookup tables. INVALID_ARGUMENT names the problem.
  static absl::StatusOr<std::unique_ptr<Tokenizer>> Create(TokenizerData data);
  ~Tokenizer();
  Tokenizer(const Tokenizer&) = delete;
  Tokenizer& operator=(const Tokenizer&) = delete;

  // Text -> ids. With parse_special = false control-token texts such as
  // "<|im_end|>" are tokenized as ordinary text (use this for untrusted user
  // content so it cannot forge chat-template markers); user-defined added
  // tokens ("<think>", "<tool_call>") are still matched, as in Hugging Face.
  absl::StatusOr<std::vector<int32_t>> Encode(std::string_view text,
                                              bool parse_special = true) const;

  // Ids -> raw bytes (see the file comment).
  std::string Decode(absl::Span<const int32_t> ids) const;
  // Appends the raw bytes of one token to `out` (nothing for unused or
  // out-of-range ids).
  void AppendTokenBytes(int32_t id, std::string* out) const;

  // Stored token text (byte-level alphabet for ordinary tokens); empty for
  // out-of-range ids.
  std::string_view TokenText(int32_t id) const;
  // kNormal for out-of-range ids.
  TokenType token_type(int32_t id) const;
  std::optional<int32_t> TokenId(std::string_view text) const;
  int32_t vocab_size() const { return static_cast<int32_t>(data_.tokens.size()); }

  // True for eos_id() and the control tokens <|im_end|> and <|endoftext|>
  // (llama.cpp marks the same set as end-of-generation).
  bool IsEndOfGeneration(int32_t id) const;

  int32_t bos_id() const { return data_.bos_id; }  // -1 = none
  int32_t eos_id() const { return data_.eos_id; }  // -1 = none
  int32_t pad_id() const { return data_.pad_id; }  // -1 = none
  bool add_bos() const { return data_.add_bos; }
  const std::string& chat_template() const { return data_.chat_template; }
  const TokenizerData& data() const { return data_; }

 private:
  Tokenizer() = default;
  // Appends the ids of an ordinary (non-added-token) segment.
  absl::Status EncodeSegment(std::string_view segment, BpeModel::Workspace* ws,
                             std::vector<std::string_view>* pieces,
                             std::vector<int32_t>* out) const;
  // The longest added token at text[pos], or -1; control tokens only if
  // `control`.
  int32_t MatchAddedToken(std::string_view text, size_t pos, bool control) const;

  TokenizerData data_;
  VocabIndex vocab_;  // keys point into data_.tokens
  BpeModel bpe_;
  std::unique_ptr<Qwen2PreTokenizer> pre_;
  // Added-token ids by first byte, longest text first.
  std::array<std::vector<int32_t>, 256> added_by_first_byte_;
  std::vector<int32_t> eog_ids_;
};

}  // namespace st
