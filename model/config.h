// SmallThinker model configuration, derived once from GGUF metadata and
// tensor shapes (MODEL.md sections 3 and 6), then immutable.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "kernels/routing.h"
#include "model/gguf.h"

namespace st {

// What varies between layers; the forward pass reads this instead of
// branching on the architecture.
struct LayerConfig {
  bool use_rope = true;     // false on NoPE layers
  int64_t window = 0;       // sliding-window size in tokens; 0 = global attention
  double rope_theta = 1.5e6;
};

// Dimension names follow docs/GLOSSARY.md.
struct ModelConfig {
  std::string name;          // general.name, may be empty
  int d_model = 0;           // smallthinker.embedding_length
  int n_layers = 0;          // smallthinker.block_count
  int n_heads = 0;           // attention.head_count
  int n_kv_heads = 0;        // attention.head_count_kv (default n_heads)
  int head_dim = 0;          // attention.key_length (default d_model / n_heads)
  int n_experts = 0;         // expert_count
  int top_k = 0;             // expert_used_count
  int d_expert = 0;          // expert_feed_forward_length (or feed_forward_length)
  int vocab_size = 0;        // rows of token_embd
  int64_t context_length = 0;
  float rms_eps = 1e-6f;
  double rope_theta = 1e4;   // rope.freq_base (llama.cpp default 10000 when absent)
  Gating gating = Gating::kSigmoid;
  int64_t sliding_window = 0;  // 0: no SWA layers
  int swa_period = 4;          // with SWA, layers i % period != 0 slide (0 = all of them)
  bool down_transposed = false;  // PowerInfer layout: ffn_down_exps {d_model, d_expert, E}
  bool tied_output = false;      // no output.weight: LM head reuses token_embd
  DType expert_type = DType::kF32;
  // The file's storage-only formats that the experts are converted from
  // ("Q4_K, Q6_K" in a Q4_K_M file; expert_type is then Q8_0), or "".
  std::string expert_storage;
  std::vector<LayerConfig> layers;

  int q_dim() const { return n_heads * head_dim; }
  int kv_dim() const { return n_kv_heads * head_dim; }
};

// Reads and validates the config: required keys present, positive and
// mutually consistent dimensions, every required tensor present with the
// shape the config implies. Errors are INVALID_ARGUMENT naming the key or
// tensor, with expected and actual values. A missing expert_gating_func
// defaults to sigmoid with a logged warning (PowerInfer converter files).
absl::StatusOr<ModelConfig> LoadModelConfig(const GgufFile& file);

// One line per fact, for `smallthinker inspect`.
std::string DescribeConfig(const ModelConfig& config);

}  // namespace st
