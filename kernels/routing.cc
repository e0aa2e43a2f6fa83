#include "kernels/routing.h"

#include <algorithm>
#include <cmath>

#include "glog/logging.h"

namespace st {

void SelectTopK(const float* logits, int n, int k, int* ids) {
  DCHECK(k > 0 && k <= n) << "k=" << k << " n=" << n;
  // O(n * k) selection: n is the expert count (tens), k <= 8. Strict '>'
  // keeps the lower index on ties; NaN ranks below every number.
  auto better = [&](int a, int b) {
    return !std::isnan(logits[a]) && (std::isnan(logits[b]) || logits[a] > logits[b]);
  };
  for (int s = 0; s < k; ++s) {
    int best = -1;
    for (int e = 0; e < n; ++e) {
      if (std::find(ids, ids + s, e) != ids + s) continue;
      if (best < 0 || better(e, best)) best = e;
    }
    ids[s] = best;
  }
}

void GatingWeights(Gating gating, const float* logits, const int* ids, int k, float* weights) {
  constexpr float kMinDenominator = 6.1035e-5f;
  if (gating == Gating::kSigmoid) {
    for (int s = 0; s < k; ++s) weights[s] = 1.0f / (1.0f + std::exp(-logits[ids[s]]));
  } else {
    // Softmax over the selected logits with max subtraction (exact same
    // weights as llama.cpp's full softmax renormalized over the top k).
    float max = logits[ids[0]];
    for (int s = 1; s < k; ++s) max = std::max(max, logits[ids[s]]);
    for (int s = 0; s < k; ++s) weights[s] = std::exp(logits[ids[s]] - max);
  }
  float sum = 0.0f;
  for (int s = 0; s < k; ++s) sum += weights[s];
  sum = std::max(sum, kMinDenominator);
  for (int s = 0; s < k; ++s) weights[s] /= sum;
}

}  // namespace st
