// Throughput of the small per-token kernels at SmallThinker-4B sizes:
// RmsNorm (d_model 1536), RopeNeox (32 heads x 128), routing (SelectTopK +
// GatingWeights over 32 and 64 experts), AxpyRow per weight type (one
// transposed-down row of 1536), ReGlu (768). Bytes processed = bytes read
// plus bytes written per call.
#include <random>
#include <string>
#include <vector>

#include "benchmark/benchmark.h"
#include "kernels/activation.h"
#include "kernels/axpy.h"
#include "kernels/norm.h"
#include "kernels/quant.h"
#include "kernels/rope.h"
#include "kernels/routing.h"

namespace st {
namespace {

std::vector<float> Gaussian(size_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> dist(0.0f, 1.0f);
  std::vector<float> v(n);
  for (float& f : v) f = dist(rng);
  return v;
}

void BM_RmsNorm(benchmark::State& state) {
  const size_t n = state.range(0);
  const std::vector<float> x = Gaussian(n, 1), gain = Gaussian(n, 2);
  std::vector<float> y(n);
  for (auto _ : state) {
    RmsNorm(x.data(), gain.data(), n, 1e-6f, y.data());
    benchmark::DoNotOptimize(y.data());
    benchmark::ClobberMemory();
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations()) * 3 * n * sizeof(float));
}
BENCHMARK(BM_RmsNorm)->Arg(1536)->Arg(2560);

void BM_RopeNeox(benchmark::State& state) {
  const int heads = static_cast<int>(state.range(0)), hd = 128;
  std::vector<float> x = Gaussian(static_cast<size_t>(heads) * hd, 1);
  int64_t pos = 0;
  for (auto _ : state) {
    RopeNeox(x.data(), heads, hd, pos++ & 4095, 1e6);
    benchmark::DoNotOptimize(x.data());
    benchmark::ClobberMemory();
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations()) * 2 * x.size() * sizeof(float));
}
BENCHMARK(BM_RopeNeox)->Arg(32)->Arg(4);

// args: n_experts, k
void BM_Routing(benchmark::State& state) {
  const int n = static_cast<int>(state.range(0)), k = static_cast<int>(state.range(1));
  const std::vector<float> logits = Gaussian(n, 3);
  std::vector<int> ids(k);
  std::vector<float> w(k);
  for (auto _ : state) {
    SelectTopK(logits.data(), n, k, ids.data());
    GatingWeights(Gating::kSigmoid, logits.data(), ids.data(), k, w.data());
    benchmark::DoNotOptimize(w.data());
    benchmark::ClobberMemory();
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations()) * n * sizeof(float));
}
BENCHMARK(BM_Routing)->Args({32, 4})->Args({64, 6});

void BM_AxpyRow(benchmark::State& state) {
  const auto type = static_cast<DType>(state.range(0));
  const size_t n = 1536;
  const std::vector<float> src = Gaussian(n, 4);
  std::vector<char> row(RowBytes(type, n));
  QuantizeRow(type, src.data(), row.data(), n);
  std::vector<float> y(n, 0.0f);
  for (auto _ : state) {
    AxpyRow(type, row.data(), 0.001f, y.data(), n);
    benchmark::DoNotOptimize(y.data());
    benchmark::ClobberMemory();
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations()) *
                          (row.size() + 2 * n * sizeof(float)));
  state.SetLabel(std::string(DTypeName(type)));
}
BENCHMARK(BM_AxpyRow)
    ->Arg(static_cast<int64_t>(DType::kF32))
    ->Arg(static_cast<int64_t>(DType::kF16))
    ->Arg(static_cast<int64_t>(DType::kBF16))
    ->Arg(static_cast<int64_t>(DType::kQ8_0))
    ->Arg(static_cast<int64_t>(DType::kQ4_0));

void BM_ReGlu(benchmark::State& state) {
  const size_t n = state.range(0);
  const std::vector<float> gate = Gaussian(n, 5), up = Gaussian(n, 6);
  std::vector<float> out(n);
  for (auto _ : state) {
    ReGlu(gate.data(), up.data(), out.data(), n);
    benchmark::DoNotOptimize(out.data());
    benchmark::ClobberMemory();
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations()) * 3 * n * sizeof(float));
}
BENCHMARK(BM_ReGlu)->Arg(768)->Arg(1536);

}  // namespace
}  // namespace st
