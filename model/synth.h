// Synthetic SmallThinker models: random weights with the exact architecture,
// keys, tensor names and shapes that upstream llama.cpp uses (MODEL.md 5.2, 6).
#pragma once

#include <cstdint>
#include <string>

#include "absl/status/statusor.h"
#include "kernels/dtype.h"
#include "kernels/routing.h"

namespace st {

struct SynthSpec {
  std::string preset;
  int d_model = 0, n_layers = 0, n_heads = 0, n_kv_heads = 0, head_dim = 0;
  int n_experts = 0, top_k = 0, d_expert = 0;
  int64_t context_length = 0;
  int64_t sliding_window = 0;  // 0: no SWA layers (4B); else 21B schedule
  double rope_theta = 1.5e6;
  Gating gating = Gating::kSigmoid;
  bool tied_output = false;    // omit output.weight
};

// Presets: "tiny" (4 layers, unit tests), "tiny-swa" (8 layers, window 8: the
// 21B NoPE/SWA schedule in miniature), "tiny-256" (every row a whole
// 256-weight block, so K-quant mixes store K-quants everywhere; 16 experts),
// "4b",
// "21b" (the real shapes).
absl::StatusOr<SynthSpec> SynthPreset(std::string_view name);

// A mix of types per tensor, as llama.cpp's quantizer makes it.
enum class SynthMix {
  kNone,    // SynthOptions::type everywhere
  kQ4_K_M,  // Q4_K, with Q6_K for the LM head and some attn_v / ffn_down (model/synth.cc)
};

struct SynthOptions {
  SynthSpec spec;
  DType type = DType::kQ4_0;     // every 2-D weight except the F32 router
  SynthMix mix = SynthMix::kNone;  // set: overrides `type`
  std::string out_path;
  std::string tokenizer_json;    // HF tokenizer.json; empty: byte-level fallback vocab
  uint64_t seed = 1;
  double route_skew = 0.0;       // 0 uniform routing; 1 strongly skewed to a few hot experts
  bool progress = true;
};

// Writes the model tensor by tensor (peak RAM ~ one tensor). The file is
// written under a temporary name and renamed when complete.
absl::Status WriteSyntheticModel(const SynthOptions& options);

}  // namespace st
