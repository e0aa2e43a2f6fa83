#include "model/tokenizer.h"

#include <algorithm>
#include <cstring>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_format.h"
#include "common/status_macros.h"
#include "glog/logging.h"
#include "model/byte_level.h"
#include "model/tokenizer_utf8.h"

namespace st {

Tokenizer::~Tokenizer() = default;

absl::StatusOr<std::unique_ptr<Tokenizer>> Tokenizer::Create(TokenizerData data) {
  ST_RETURN_IF_ERROR(CheckTokenizerKind(data.model, data.pre));
  const size_t n = data.tokens.size();
  if (n == 0) return absl::InvalidArgumentError("tokenizer has no tokens");
  if (n > (size_t{1} << 30)) {
    return absl::InvalidArgumentError(absl::StrFormat("vocabulary too large: %d tokens", n));
  }
  if (data.token_types.empty()) {
    data.token_types.assign(n, static_cast<int32_t>(TokenType::kNormal));
  }
  if (data.token_types.size() != n) {
    return absl::InvalidArgumentError(
        absl::StrFormat("%d token types for %d tokens", data.token_types.size(), n));
  }
  for (auto [name, id] : {std::pair{"bos", data.bos_id}, std::pair{"eos", data.eos_id},
                          std::pair{"pad", data.pad_id}}) {
    if (id < -1 || id >= static_cast<int32_t>(n)) {
      return absl::InvalidArgumentError(
          absl::StrFormat("%s token id %d is outside the vocabulary of %d tokens", name, id, n));
    }
  }

  std::unique_ptr<Tokenizer> t(new Tokenizer);
  t->data_ = std::move(data);
  const TokenizerData& d = t->data_;
  t->vocab_.reserve(n);
  for (size_t id = 0; id < n; ++id) {
    // First id wins for a duplicated text.
    t->vocab_.emplace(absl::string_view(d.tokens[id]), static_cast<int32_t>(id));
  }
  ST_ASSIGN_OR_RETURN(t->bpe_, BpeModel::Build(t->vocab_, d.merges));
  if (t->bpe_.n_skipped_merges() > 0) {
    LOG(WARNING) << t->bpe_.n_skipped_merges() << " of " << d.merges.size()
                 << " BPE merges ignored: a part or the result is not in the vocabulary";
  }
  ST_ASSIGN_OR_RETURN(t->pre_, Qwen2PreTokenizer::Create());

  for (size_t id = 0; id < n; ++id) {
    const auto type = static_cast<TokenType>(d.token_types[id]);
    if ((type != TokenType::kControl && type != TokenType::kUserDefined) || d.tokens[id].empty()) {
      continue;
    }
    const uint8_t first = static_cast<uint8_t>(d.tokens[id][0]);
    t->added_by_first_byte_[first].push_back(static_cast<int32_t>(id));
    if (type == TokenType::kControl &&
        (d.tokens[id] == "<|im_end|>" || d.tokens[id] == "<|endoftext|>")) {
      t->eog_ids_.push_back(static_cast<int32_t>(id));
    }
  }
  for (auto& ids : t->added_by_first_byte_) {
    std::stable_sort(ids.begin(), ids.end(), [&d](int32_t a, int32_t b) {
      return d.tokens[a].size() > d.tokens[b].size();
    });
  }
  if (d.eos_id >= 0) t->eog_ids_.push_back(d.eos_id);
  if (d.eot_id >= 0) t->eog_ids_.push_back(d.eot_id);
  return t;
}

int32_t Tokenizer::MatchAddedToken(std::string_view text, size_t pos, bool control) const {
  for (int32_t id : added_by_first_byte_[static_cast<uint8_t>(text[pos])]) {
    if (!control && static_cast<TokenType>(data_.token_types[id]) == TokenType::kControl) {
      continue;
    }
    const std::string& tok = data_.tokens[id];
    if (tok.size() <= text.size() - pos &&
        std::memcmp(tok.data(), text.data() + pos, tok.size()) == 0) {
      return id;  // candidates are sorted longest first
    }
  }
  return -1;
}

absl::Status Tokenizer::EncodeSegment(std::string_view segment, BpeModel::Workspace* ws,
                                      std::vector<std::string_view>* pieces,
                                      std::vector<int32_t>* out) const {
  if (segment.empty()) return absl::OkStatus();
  ST_ASSIGN_OR_RETURN(const std::string nfc, internal::NormalizeNfc(segment));
  pieces->clear();
  ST_RETURN_IF_ERROR(pre_->Split(nfc, pieces));
  for (std::string_view piece : *pieces) {
    ST_RETURN_IF_ERROR(bpe_.EncodePiece(piece, ws, out));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::vector<int32_t>> Tokenizer::Encode(std::string_view text,
                                                       bool parse_special) const {
  if (const std::optional<size_t> bad = internal::FindInvalidUtf8(text); bad.has_value()) {
    return absl::InvalidArgumentError(
        absl::StrFormat("invalid UTF-8 at byte offset %d (byte 0x%02X) of a %d-byte text", *bad,
                        static_cast<uint8_t>(text[*bad]), text.size()));
  }
  std::vector<int32_t> ids;
  ids.reserve(text.size() / 3 + 4);
  BpeModel::Workspace ws;
  std::vector<std::string_view> pieces;
  size_t segment_start = 0;
  for (size_t pos = 0; pos < text.size();) {
    const int32_t id = MatchAddedToken(text, pos, /*control=*/parse_special);
    if (id < 0) {
      ++pos;
      continue;
    }
    ST_RETURN_IF_ERROR(
        EncodeSegment(text.substr(segment_start, pos - segment_start), &ws, &pieces, &ids));
    ids.push_back(id);
    pos += data_.tokens[id].size();
    segment_start = pos;
  }
  ST_RETURN_IF_ERROR(EncodeSegment(text.substr(segment_start), &ws, &pieces, &ids));
  return ids;
}

void Tokenizer::AppendTokenBytes(int32_t id, std::string* out) const {
  if (id < 0 || id >= vocab_size()) return;
  switch (static_cast<TokenType>(data_.token_types[id])) {
    case TokenType::kControl:
    case TokenType::kUserDefined:
      out->append(data_.tokens[id]);
      return;
    case TokenType::kUnused:
      return;
    default:
      // Characters outside the byte-level alphabet (malformed vocabularies)
      // are passed through as their UTF-8.
      ByteLevelDecode(data_.tokens[id], out);
      return;
  }
}

std::string Tokenizer::Decode(absl::Span<const int32_t> ids) const {
  std::string out;
  for (int32_t id : ids) AppendTokenBytes(id, &out);
  return out;
}

std::string_view Tokenizer::TokenText(int32_t id) const {
  if (id < 0 || id >= vocab_size()) return {};
  return data_.tokens[id];
}

TokenType Tokenizer::token_type(int32_t id) const {
  if (id < 0 || id >= vocab_size()) return TokenType::kNormal;
  return static_cast<TokenType>(data_.token_types[id]);
}

std::optional<int32_t> Tokenizer::TokenId(std::string_view text) const {
  auto it = vocab_.find(absl::string_view(text.data(), text.size()));
  if (it == vocab_.end()) return std::nullopt;
  return it->second;
}

bool Tokenizer::IsEndOfGeneration(int32_t id) const {
  return id >= 0 && std::find(eog_ids_.begin(), eog_ids_.end(), id) != eog_ids_.end();
}

}  // namespace st
