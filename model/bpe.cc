#include "model/bpe.h"

#include <algorithm>
#include <functional>

#include "absl/strings/str_format.h"
#include "model/byte_level.h"

namespace st {
namespace {

constexpr int32_t kDead = -2;

// Min-heap order on (rank, position): lowest rank first, leftmost on ties.
struct CandidateGreater {
  bool operator()(const BpeModel::Workspace::Candidate& a,
                  const BpeModel::Workspace::Candidate& b) const {
    return a.rank != b.rank ? a.rank > b.rank : a.pos > b.pos;
  }
};

}  // namespace

absl::StatusOr<BpeModel> BpeModel::Build(const VocabIndex& vocab,
                                         absl::Span<const std::string> merges) {
  BpeModel m;
  for (int b = 0; b < 256; ++b) {
    const std::string text = ByteLevelEncode(std::string(1, static_cast<char>(b)));
    auto it = vocab.find(absl::string_view(text));
    m.byte_ids_[b] = it == vocab.end() ? -1 : it->second;
  }
  m.merges_.reserve(merges.size());
  std::string joined;
  for (size_t rank = 0; rank < merges.size(); ++rank) {
    const std::string& merge = merges[rank];
    const size_t sep = merge.size() > 1 ? merge.find(' ', 1) : std::string::npos;
    if (sep == std::string::npos) {
      return absl::InvalidArgumentError(absl::StrFormat(
          "BPE merge of rank %d is \"%s\": expected two tokens separated by a space", rank, merge));
    }
    const absl::string_view left(merge.data(), sep);
    const absl::string_view right(merge.data() + sep + 1, merge.size() - sep - 1);
    joined.assign(left.data(), left.size());
    joined.append(right.data(), right.size());
    auto l = vocab.find(left), r = vocab.find(right), j = vocab.find(absl::string_view(joined));
    if (l == vocab.end() || r == vocab.end() || j == vocab.end()) {
      ++m.n_skipped_;
      continue;
    }
    m.merges_.insert_or_assign(Key(l->second, r->second),
                               Merge{static_cast<int32_t>(rank), j->second});
  }
  return m;
}

void BpeModel::PushCandidate(const Workspace::Symbol* syms, int32_t left, Workspace* ws) const {
  const int32_t right = syms[left].next;
  if (right < 0) return;
  auto it = merges_.find(Key(syms[left].id, syms[right].id));
  if (it == merges_.end()) return;
  ws->heap.push_back({it->second.rank, left, syms[left].id, syms[right].id, it->second.merged_id});
  std::push_heap(ws->heap.begin(), ws->heap.end(), CandidateGreater());
}

absl::Status BpeModel::EncodePiece(std::string_view piece, Workspace* ws,
                                   std::vector<int32_t>* out) const {
  const int32_t n = static_cast<int32_t>(piece.size());
  auto& syms = ws->symbols;
  syms.resize(piece.size());
  for (int32_t i = 0; i < n; ++i) {
    const uint8_t b = static_cast<uint8_t>(piece[i]);
    if (byte_ids_[b] < 0) {
      return absl::InvalidArgumentError(
          absl::StrFormat("byte 0x%02X has no byte-level token in the vocabulary", b));
    }
    syms[i] = {byte_ids_[b], i - 1, i + 1 < n ? i + 1 : -1};
  }
  ws->heap.clear();
  for (int32_t i = 0; i + 1 < n; ++i) PushCandidate(syms.data(), i, ws);

  while (!ws->heap.empty()) {
    std::pop_heap(ws->heap.begin(), ws->heap.end(), CandidateGreater());
    const Workspace::Candidate c = ws->heap.back();
    ws->heap.pop_back();
    // Lazy invalidation: the pair must still be exactly (left_id, right_id).
    Workspace::Symbol& left = syms[c.pos];
    if (left.id != c.left_id || left.next < 0) continue;
    Workspace::Symbol& right = syms[left.next];
    if (right.id != c.right_id) continue;
    left.id = c.merged_id;
    left.next = right.next;
    if (right.next >= 0) syms[right.next].prev = c.pos;
    right.id = kDead;
    if (left.prev >= 0) PushCandidate(syms.data(), left.prev, ws);
    PushCandidate(syms.data(), c.pos, ws);
  }
  for (int32_t i = n > 0 ? 0 : -1; i >= 0; i = syms[i].next) out->push_back(syms[i].id);
  return absl::OkStatus();
}

}  // namespace st
