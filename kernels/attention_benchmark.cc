// AttendRing throughput per KV element type at SmallThinker's decode shapes
// (MODEL.md: 4B 12 query heads over 2 kv heads, 21B 28 over 4, head_dim
// 128; sessions up to 18 measured 32 over 4, a shape of neither): one query token over
// n_keys cached positions, SIMD (best target) and the scalar twin. Bytes
// processed = K and V bytes read per call (n_keys * kv_dim * 2 * element).
#include <cstdint>
#include <cstring>
#include <memory>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "benchmark/benchmark.h"
#include "common/huge_page_arena.h"
#include "kernels/attention.h"
#include "kernels/fp16.h"

namespace st {
namespace {

std::vector<uint8_t> RandomRows(DType type, size_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> dist(0.0f, 1.0f);
  const size_t elem = type == DType::kF32 ? 4 : 2;
  std::vector<uint8_t> out(n * elem);
  for (size_t i = 0; i < n; ++i) {
    const float x = dist(rng);
    if (type == DType::kF32) {
      std::memcpy(&out[i * 4], &x, 4);
    } else {
      const uint16_t h = type == DType::kF16 ? F32ToF16(x) : F32ToBF16(x);
      std::memcpy(&out[i * 2], &h, 2);
    }
  }
  return out;
}

// args: type, n_keys, simd (1) or scalar twin (0), model (4: 4B, 21: 21B)
void BM_AttendRing(benchmark::State& state) {
  const auto type = static_cast<DType>(state.range(0));
  const int64_t n_keys = state.range(1);
  const bool simd = state.range(2) != 0;
  const bool big = state.range(3) == 21;
  const AttentionShape shape{big ? 28 : 12, big ? 4 : 2, 128};
  const size_t kv_dim = static_cast<size_t>(shape.n_kv_heads) * 128;
  const std::vector<uint8_t> k = RandomRows(type, n_keys * kv_dim, 1);
  const std::vector<uint8_t> v = RandomRows(type, n_keys * kv_dim, 2);
  const KvRingView view{k.data(), v.data(), kv_dim, n_keys, type};
  std::vector<float> q(static_cast<size_t>(shape.n_heads) * 128, 0.05f), out(q.size());
  std::vector<float> scratch(n_keys);
  for (auto _ : state) {
    if (simd) {
      AttendRing(shape, q.data(), view, 0, n_keys - 1, out.data(), scratch.data());
    } else {
      scalar::AttendRing(shape, q.data(), view, 0, n_keys - 1, out.data(), scratch.data());
    }
    benchmark::DoNotOptimize(out.data());
    benchmark::ClobberMemory();
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations()) * (k.size() + v.size()));
  state.SetLabel(std::string(DTypeName(type)) + (simd ? " simd" : " scalar"));
}
BENCHMARK(BM_AttendRing)
    ->ArgNames({"type", "keys", "simd", "model"})
    ->ArgsProduct({{static_cast<int64_t>(DType::kF32), static_cast<int64_t>(DType::kF16),
                    static_cast<int64_t>(DType::kBF16)},
                   {128, 1024, 4096},
                   {1, 0},
                   {4, 21}});

// Decode at depth as the forward pass runs it: every layer's cache in turn
// (32 layers of F16 K/V, 4B: 128 MiB at 4096 keys, so each read comes from
// DRAM), one call per (layer, kv head) over that head's columns of the
// interleaved rows, the cache in ordinary memory (4 KiB pages where
// transparent huge pages are madvise-only) or in a HugePageArena (counter
// huge_page_MiB: how much of it the kernel backed with huge pages). One
// thread; time per iteration is one token's attention on one core. At 1024
// keys the 4B's 32 MiB may partly stay in the last-level cache.
// args: n_keys, model (4: 4B, 21: 21B), huge (1: 2 MiB pages)
void BM_AttendRingColdLayers(benchmark::State& state) {
  const int64_t n_keys = state.range(0);
  const bool big = state.range(1) == 21;
  const bool huge = state.range(2) != 0;
  const int n_heads = big ? 28 : 12, n_kv = big ? 4 : 2, layers = 32;
  const size_t kv_dim = static_cast<size_t>(n_kv) * 128;
  const size_t bytes = n_keys * kv_dim * 2;
  std::vector<std::vector<uint8_t>> rows;
  for (int l = 0; l < 2 * layers; ++l) {
    rows.push_back(RandomRows(DType::kF16, n_keys * kv_dim, l + 1));
  }
  std::unique_ptr<HugePageArena> arena;
  std::vector<const uint8_t*> kv;
  if (huge) {
    absl::StatusOr<std::unique_ptr<HugePageArena>> created =
        HugePageArena::Create(rows.size() * bytes);
    if (!created.ok()) {
      state.SkipWithError(created.status().ToString().c_str());
      return;
    }
    arena = *std::move(created);
    for (size_t i = 0; i < rows.size(); ++i) {
      std::memcpy(arena->data() + i * bytes, rows[i].data(), bytes);
      kv.push_back(reinterpret_cast<const uint8_t*>(arena->data() + i * bytes));
    }
    rows.clear();
    state.counters["huge_page_MiB"] = static_cast<double>(arena->HugePageBytes() >> 20);
  } else {
    for (const auto& r : rows) kv.push_back(r.data());
  }
  const AttentionShape shape{n_heads / n_kv, 1, 128};
  std::vector<float> q(static_cast<size_t>(n_heads) * 128, 0.05f), out(q.size()), scratch(n_keys);
  for (auto _ : state) {
    for (int l = 0; l < layers; ++l) {
      const KvRingView view{kv[2 * l], kv[2 * l + 1], kv_dim, n_keys, DType::kF16};
      for (int h = 0; h < n_kv; ++h) {
        const size_t off = static_cast<size_t>(h) * (n_heads / n_kv) * 128;
        AttendRing(shape, q.data() + off, view.Columns(h * 128), 0, n_keys - 1, out.data() + off,
                   scratch.data());
      }
    }
    benchmark::DoNotOptimize(out.data());
    benchmark::ClobberMemory();
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations()) * 2 * layers *
                          static_cast<int64_t>(bytes));
}
BENCHMARK(BM_AttendRingColdLayers)
    ->ArgNames({"keys", "model", "huge"})
    ->ArgsProduct({{1024, 4096}, {4, 21}, {0, 1}})
    ->Unit(benchmark::kMicrosecond);

}  // namespace
}  // namespace st
