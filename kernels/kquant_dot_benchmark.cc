// Q4_K / Q6_K rows dotted with Q8_0 vectors (DotRowsKQuant) beside Q4_0 and
// Q8_0 rows (DotRowsMulti), one thread, at the 4b preset's expert shape
// (768 rows of 1536): every row of a matrix, for 1 or 4 vectors (decode, a
// few tokens). `cold` 1: distinct matrices that together exceed the caches
// (512 MiB in 2 MiB huge pages; L3 can be large on servers), a new one every
// iteration; 0: one matrix, hot in L2. Bytes processed = the matrix's bytes,
// so GB/s compares formats by how fast they stream their own bytes. "Q4_K
// packed" and "Q6_K packed" are the 16-row layouts of packed_kquant.h
// (PackedKQuantMatMulGroups).
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "benchmark/benchmark.h"
#include "common/huge_page_arena.h"
#include "kernels/benchmark_targets.h"
#include "kernels/dot.h"
#include "kernels/fp16.h"
#include "kernels/ggml_storage.h"
#include "kernels/kquant_dot.h"
#include "kernels/matmul.h"
#include "kernels/packed_kquant.h"
#include "kernels/quant.h"

namespace st {
namespace {

constexpr size_t kRows = 768, kCols = 1536;
// Pseudo types for the K-quants (ggml ids + 1000, beside DType values).
constexpr int64_t kQ4K = 1000 + kGgmlQ4_K, kQ6K = 1000 + kGgmlQ6_K;
constexpr int64_t kQ4KPacked = 2000 + kGgmlQ4_K, kQ6KPacked = 2000 + kGgmlQ6_K;

size_t RowBytesOf(int64_t t) {
  if (t == kQ4K || t == kQ4KPacked) return kCols / 256 * kQ4_KBlockBytes;
  if (t == kQ6K || t == kQ6KPacked) return kCols / 256 * kQ6_KBlockBytes;
  return RowBytes(static_cast<DType>(t), kCols);
}

std::string NameOf(int64_t t) {
  if (t == kQ4K) return "Q4_K";
  if (t == kQ4KPacked) return "Q4_K packed";
  if (t == kQ6KPacked) return "Q6_K packed";
  if (t == kQ6K) return "Q6_K";
  return std::string(DTypeName(static_cast<DType>(t)));
}

void BM_DotRows(benchmark::State& state) {
  const int64_t type = state.range(0);
  const bool cold = state.range(1) != 0;
  const size_t n_vecs = static_cast<size_t>(state.range(2));
  const size_t rb = RowBytesOf(type), matrix = rb * kRows;
  const size_t count = cold ? (size_t{512} << 20) / matrix : 1;
  auto arena = HugePageArena::Create(matrix * count);
  if (!arena.ok()) {
    state.SkipWithError(std::string(arena.status().message()).c_str());
    return;
  }
  std::mt19937 rng(5);
  std::vector<char> one(matrix);
  const bool q4k = type == kQ4K || type == kQ4KPacked;
  const bool packed_type = type == kQ4KPacked || type == kQ6KPacked;
  const auto ggml = static_cast<uint32_t>(type % 1000);
  if (q4k || type == kQ6K || type == kQ6KPacked) {  // random levels and scales, sane f16 scales
    for (char& c : one) c = static_cast<char>(rng());
    const size_t bb = q4k ? kQ4_KBlockBytes : kQ6_KBlockBytes;
    for (size_t b = 0; b < matrix / bb; ++b) {
      const uint16_t h = F32ToF16(0.01f);
      std::memcpy(one.data() + b * bb + (q4k ? 0 : 208), &h, 2);
      if (q4k) std::memcpy(one.data() + b * bb + 2, &h, 2);
    }
    if (packed_type) {
      if (!CanPackKQuant(ggml, kRows, kCols)) {
        state.SkipWithError("no packed K-quant kernel on this CPU");
        return;
      }
      std::vector<char> packed(matrix);
      PackKQuantRows(ggml, one.data(), kRows, kCols, packed.data());
      one.swap(packed);
    }
  } else {
    std::normal_distribution<float> dist(0.0f, 1.0f);
    std::vector<float> src(kCols);
    for (size_t r = 0; r < kRows; ++r) {
      for (float& f : src) f = dist(rng);
      QuantizeRow(static_cast<DType>(type), src.data(), one.data() + r * rb, kCols);
    }
  }
  for (size_t i = 0; i < count; ++i) std::memcpy((*arena)->data() + i * matrix, one.data(), matrix);
  std::vector<std::vector<float>> x(n_vecs, std::vector<float>(kCols));
  std::vector<std::vector<BlockQ8_0>> xq(n_vecs, std::vector<BlockQ8_0>(kCols / kQK));
  std::vector<VecRef> vecs;
  std::vector<const BlockQ8_0*> q8s;
  std::normal_distribution<float> dist(0.0f, 1.0f);
  for (size_t v = 0; v < n_vecs; ++v) {
    for (float& f : x[v]) f = dist(rng);
    QuantizeRow(DType::kQ8_0, x[v].data(), xq[v].data(), kCols);
    vecs.push_back({x[v].data(), xq[v].data(), kCols});
    q8s.push_back(xq[v].data());
  }
  std::vector<float> flat;
  for (const auto& v : x) flat.insert(flat.end(), v.begin(), v.end());
  Activations act;
  act.Prepare(flat.data(), n_vecs, kCols, /*need_q8=*/true);
  std::vector<float> y(n_vecs * kRows);
  size_t next = 0, bytes = 0;
  for (auto _ : state) {
    const char* w = (*arena)->data() + (next++ % count) * matrix;
    if (packed_type) {
      PackedKQuantMatMulGroups(ggml, w, kCols, act, 0, n_vecs, 0, kRows / kPackedKQuantRows,
                               y.data(), kRows);
    } else if (type == kQ4K || type == kQ6K) {
      DotRowsKQuant(static_cast<uint32_t>(type - 1000), w, rb, nullptr, kRows, q8s.data(), n_vecs, kCols,
                    y.data(), kRows);
    } else {
      DotRowsMulti(static_cast<DType>(type), w, rb, kRows, vecs.data(), n_vecs, y.data(), kRows);
    }
    bytes += matrix;
    benchmark::DoNotOptimize(y.data());
    benchmark::ClobberMemory();
  }
  state.SetBytesProcessed(static_cast<int64_t>(bytes));
  state.SetLabel(NameOf(type) + (cold ? ", from DRAM" : ", hot") + BenchTargetSuffix());
}

constexpr int64_t kQ4 = static_cast<int64_t>(DType::kQ4_0);
constexpr int64_t kQ8 = static_cast<int64_t>(DType::kQ8_0);

BENCHMARK(BM_DotRows)
    ->ArgNames({"type", "cold", "vecs"})
    ->ArgsProduct({{kQ4, kQ8, kQ4K, kQ4KPacked, kQ6K, kQ6KPacked}, {0, 1}, {1, 4, 8}})
    ->UseRealTime();

}  // namespace
}  // namespace st
