// Byte-level BPE merge engine working on token ids (not strings).
//
// Each input byte starts as the id of its one-character byte-level token; the
// adjacent pair with the lowest merge rank is merged repeatedly, ties going to
// the leftmost pair, until no adjacent pair has a rank. This is exactly the
// order of HF tokenizers / transformers.js (rank + positional bias priority
// queue), implemented with a linked list of symbols and a lazily invalidated
// min-heap: O(n log n) per piece, so a 10 kB run of CJK letters or spaces is
// no problem.
//
// Merges are resolved to ids once at Build(): a merge "a b" is kept only if a,
// b and a+b are all in the vocab (HF refuses to load a merge whose result is
// missing; llama.cpp would silently produce an unknown token). If the same
// pair is listed twice, the LAST rank wins, as in transformers.js and HF
// tokenizers (both build a map where later entries overwrite earlier ones).
//
// Immutable after Build(); EncodePiece is thread-safe (scratch is per call).
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"

namespace st {

// Token text -> id. Keys point into storage owned by the caller.
using VocabIndex = absl::flat_hash_map<absl::string_view, int32_t>;

class BpeModel {
 public:
  // Per-call scratch; reuse one across pieces to avoid reallocations.
  struct Workspace {
    struct Symbol {
      int32_t id;    // token id, or kDead after being merged into its left
      int32_t prev;  // index of previous live symbol, -1 at the start
      int32_t next;  // index of next live symbol, -1 at the end
    };
    struct Candidate {
      int32_t rank, pos, left_id, right_id, merged_id;
    };
    std::vector<Symbol> symbols;
    std::vector<Candidate> heap;
  };

  // `merges[r]` is the merge of rank r, "a b" (split at the first space
  // after the first character, as llama.cpp does). INVALID_ARGUMENT names
  // the rank of a merge without a separator.
  static absl::StatusOr<BpeModel> Build(const VocabIndex& vocab,
                                        absl::Span<const std::string> merges);

  // Appends the ids for `piece` (raw bytes of one pre-tokenized piece, not
  // yet byte-level mapped). INVALID_ARGUMENT if a byte has no token of its
  // own in the vocab (never the case for Qwen2, whose vocab has all 256).
  absl::Status EncodePiece(std::string_view piece, Workspace* ws, std::vector<int32_t>* out) const;

  int32_t byte_id(uint8_t b) const { return byte_ids_[b]; }
  size_t n_merges() const { return merges_.size(); }
  // Merges dropped at Build() because a part or the result is not a token.
  size_t n_skipped_merges() const { return n_skipped_; }

 private:
  struct Merge {
    int32_t rank;
    int32_t merged_id;
  };
  static uint64_t Key(int32_t left, int32_t right) {
    return (uint64_t{static_cast<uint32_t>(left)} << 32) | static_cast<uint32_t>(right);
  }
  void PushCandidate(const Workspace::Symbol* syms, int32_t left, Workspace* ws) const;

  std::array<int32_t, 256> byte_ids_{};  // -1 where the byte has no token
  absl::flat_hash_map<uint64_t, Merge> merges_;
  size_t n_skipped_ = 0;
};

}  // namespace st
