// The SmallThinker forward pass (MODEL.md section 4), one batch of tokens at
// a time: batched prefill and single-token decode are the same code.
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

#include "absl/status/status.h"
#include "absl/types/span.h"
#include "common/huge_page_arena.h"
#include "common/thread_pool.h"
#include "model/config.h"
#include "model/expert_executor.h"
#include "model/kv_cache.h"
#include "model/step_traffic.h"
#include "model/weights.h"

namespace st {

// Time spent per zone, accumulated over calls (seconds).
struct ForwardZones {
  double route = 0, attention = 0, experts = 0, lm_head = 0;
};

// One sequence's share of a multi-sequence step (Forward::RunSequences): its
// own KV cache, the position of its first token, and its new tokens.
struct SequenceInput {
  KvCache* kv = nullptr;
  int64_t pos0 = 0;
  absl::Span<const int32_t> tokens;
};

// Thread-compatible: one Run at a time. Holds scratch sized for max_batch.
class Forward {
 public:
  Forward(const ModelConfig& config, const DenseWeights& weights, ExpertExecutor* experts,
          ThreadPool* pool, int max_batch);

  int max_batch() const { return max_batch_; }
  void set_experts(ExpertExecutor* experts) { experts_ = experts; }
  // One-layer-ahead speculation: right after layer l's attention, layer
  // l+1's router also runs on that state (x with attention added, half a
  // layer closer to l+1's input than the pre-attention x: on the synthetic
  // 4b 89.5% of the guesses right against 78.1%) and its choice goes to
  // ExpertExecutor::Speculate, so reads can start before layer l's experts.
  // The guesses read a Q8_0 copy of each F32/F16/BF16 router (packed for
  // the VNNI kernels; a quarter of the F32 bytes: on the 21b the F32 pass
  // took ~3% of a token), made on the first set_speculate(true); routing
  // itself always reads the model's router. A guess only orders reads, so
  // it never changes the logits.
  void set_speculate(bool on);
  // The router layer's guesses read (after set_speculate(true)).
  const MatrixRef& guess_router(int layer) const { return guess_router_[layer]; }

  // Runs `tokens` at positions pos0, pos0 + 1, ... through every layer,
  // storing their keys/values in `kv` (positions before pos0 must already be
  // there). Batches larger than max_batch are split. Writes logits
  // [vocab_size] of the last token, or [n_tokens, vocab_size] if all_logits.
  absl::Status Run(KvCache& kv, int64_t pos0, absl::Span<const int32_t> tokens, bool all_logits,
                   std::vector<float>* logits);

  // Continuous batching: runs the tokens of several independent sequences in
  // one pass. Embedding, routing, experts (grouped by expert across all
  // sequences) and the LM head see all tokens together; attention runs per
  // sequence over its own KV cache. The total token count must be <=
  // max_batch, and so must each KV cache's max_batch be >= max_batch. Writes
  // logits [seqs.size(), vocab_size]: row i is the last token of seqs[i].
  // Kernels are batch-invariant, so each row equals what Run would give for
  // that sequence alone.
  absl::Status RunSequences(absl::Span<const SequenceInput> seqs, std::vector<float>* logits);

  const ForwardZones& zones() const { return zones_; }
  // How often each expert was chosen: [n_layers, n_experts], one count per
  // (token, slot), accumulated over calls.
  const std::vector<uint64_t>& routing_counts() const { return routing_counts_; }
  uint64_t routed_tokens() const { return routed_tokens_; }  // tokens routed per layer
  // Pure decode steps (every sequence one token) of n tokens, for n in
  // [1, max_batch]: distinct experts, K/V bytes read and time, accumulated
  // over calls (model/step_traffic.h turns them into a memory roofline).
  DecodeStepCounters decode_steps(int n) const {
    return n >= 1 && n <= max_batch_ ? decode_steps_[n] : DecodeStepCounters{};
  }
  // Zeroes zone times and routing counts.
  void ResetStats() {
    zones_ = ForwardZones{};
    std::fill(routing_counts_.begin(), routing_counts_.end(), 0);
    routed_tokens_ = 0;
    std::fill(decode_steps_.begin(), decode_steps_.end(), DecodeStepCounters{});
  }

 private:
  // Rows [row0, row0 + n) of a batch belong to one sequence.
  struct Segment {
    KvCache* kv;
    int64_t pos0;
    int row0, n;
  };
  enum class LogitRows { kNone, kAll, kLastOfEachSegment };
  absl::Status CheckSequence(const KvCache& kv, int64_t pos0, absl::Span<const int32_t> tokens) const;
  absl::Status RunBatch(absl::Span<const Segment> segments, absl::Span<const int32_t> tokens,
                        LogitRows rows, float* logits);
  void Embed(absl::Span<const int32_t> tokens);
  // Routes the batch's current x_ through `layer`'s router into `routes`;
  // count: add the choice to routing_counts_; logits_ready: router_ already
  // holds the logits (AttentionInputs computed them).
  // `router` is layer's router matrix (or its guess copy, with count false).
  void Route(int layer, const MatrixRef& router, int n, Routes& routes, bool count = true,
             bool logits_ready = false);
  // h = RmsNorm(x), then q, k, v and (when q, k and v share a type) the
  // router's logits of the raw x in one pool pass; returns whether it did
  // the router.
  bool AttentionInputs(int layer, int n);
  // The rest of attention on q, k, v: RoPE, KV store, attend, wo, x += a.
  void Attention(int layer, absl::Span<const Segment> segments, int n);
  absl::Status Experts(int layer, int n);
  void LmHead(int n_rows, const float* x, float* logits);

  const ModelConfig& config_;
  const DenseWeights& weights_;
  ExpertExecutor* experts_;
  ThreadPool* pool_;
  int max_batch_;
  ForwardZones zones_;
  std::vector<uint64_t> routing_counts_;
  uint64_t routed_tokens_ = 0;
  std::vector<DecodeStepCounters> decode_steps_;  // [max_batch + 1], by tokens per step
  DecodeStepCounters step_;                       // the running step's share
  std::vector<uint8_t> expert_seen_;              // [n_experts] scratch of Route

  // Scratch for one batch of n <= max_batch tokens.
  std::vector<float> x_;        // [n, d_model] residual stream
  std::vector<float> h_;        // [n, d_model] normalized input of a sub-block
  std::vector<float> q_;        // [n, q_dim]
  std::vector<float> k_;        // [n, kv_dim]
  std::vector<float> v_;        // [n, kv_dim]
  std::vector<float> att_;      // [n, q_dim] attention output before Wo
  std::vector<float> delta_;    // [n, d_model] sub-block output
  std::vector<float> router_;   // [n, n_experts] router logits
  Routes routes_;
  std::vector<int> row_segment_;  // [n] which segment each row belongs to
  Routes speculated_;
  bool speculate_ = false;
  std::vector<MatrixRef> guess_router_;          // [n_layers] what the guesses read
  std::unique_ptr<HugePageArena> guess_arena_;   // the Q8_0 copies in guess_router_
};

}  // namespace st
