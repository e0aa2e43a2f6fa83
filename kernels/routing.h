// Expert selection and gating weights for MoE routing.
#pragma once

#include <cstdint>

namespace st {

// Values as in GGUF `expert_gating_func`.
enum class Gating : uint32_t {
  kSoftmax = 1,  // w_j = exp(l_j) / sum over selected exp(l)
  kSigmoid = 2,  // w_j = sigmoid(l_j) / sum over selected sigmoid(l)
};

// Writes the indices of the k largest of logits[0..n) to ids, largest first;
// ties go to the lower index; NaN ranks below every number. Requires
// 0 < k <= n.
void SelectTopK(const float* logits, int n, int k, int* ids);

// Normalized weights of the selected experts (see Gating). The denominator is
// clamped to >= 6.1035e-5 as llama.cpp does.
void GatingWeights(Gating gating, const float* logits, const int* ids, int k, float* weights);

}  // namespace st
