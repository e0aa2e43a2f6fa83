// MatMul throughput per weight type at SmallThinker-4B shapes. Bytes
// processed = weight bytes streamed per iteration (the matrix is read once
// per call however many vectors there are, see matmul.cc row tiles); items
// processed = vectors (tokens), so vecs 1 is mat-vec (decode) and vecs 8 / 64
// are mat-mat (prefill batches).
//
// Shapes: expert gate/up [768 x 1536], expert down [1536 x 768], and an
// LM-head slice [32768 x 1536] (the full head is 151936 rows). BM_PackedMatMul
// runs the Q4_0/Q8_0 cases on the 16-row packed layout (packed_matrix.h).
// ST_BENCH_AVX2=1 measures the AVX2 kernels (kernels/benchmark_targets.h).
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "benchmark/benchmark.h"
#include "common/huge_page_arena.h"
#include "common/thread_pool.h"
#include "kernels/benchmark_targets.h"
#include "kernels/fp16.h"
#include "kernels/ggml_storage.h"
#include "kernels/matmul.h"
#include "kernels/packed_matrix.h"

namespace st {
namespace {

std::vector<float> Gaussian(size_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> dist(0.0f, 1.0f);
  std::vector<float> v(n);
  for (float& f : v) f = dist(rng);
  return v;
}

// args: type, rows, cols, n_vecs, threads
void RunMatMul(benchmark::State& state, bool packed) {
  const auto type = static_cast<DType>(state.range(0));
  const size_t rows = state.range(1), cols = state.range(2), n_vecs = state.range(3);
  const int threads = static_cast<int>(state.range(4));
  const std::vector<float> src = Gaussian(cols * 64, 1);
  std::vector<char> w(RowBytes(type, cols) * rows);
  for (size_t r = 0; r < rows; ++r) {  // 64 distinct rows repeated
    QuantizeRow(type, src.data() + (r % 64) * cols, w.data() + r * RowBytes(type, cols), cols);
  }
  std::vector<char> packed_w;
  MatrixRef m{type, w.data(), rows, cols};
  if (packed) {
    if (!CanPack(type, rows, cols)) {
      state.SkipWithError("no packed kernel for this type on this CPU");
      return;
    }
    packed_w.resize(w.size());
    PackRows(type, w.data(), rows, cols, packed_w.data());
    m.packed = packed_w.data();
  }
  const std::vector<float> x = Gaussian(cols * n_vecs, 2);
  Activations act;
  act.PrepareFor(type, x.data(), n_vecs, cols);
  std::vector<float> y(rows * n_vecs);
  ThreadPool pool(threads);
  for (auto _ : state) {
    MatMul(m, act, y.data(), threads > 1 ? &pool : nullptr);
    benchmark::DoNotOptimize(y.data());
    benchmark::ClobberMemory();
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations()) * w.size());
  state.SetItemsProcessed(static_cast<int64_t>(state.iterations()) * n_vecs);  // vectors (tokens)
  state.SetLabel(std::string(DTypeName(type)) + (packed ? " packed" : "") +
                 BenchTargetSuffix());
}

void BM_MatMul(benchmark::State& state) { RunMatMul(state, false); }
void BM_PackedMatMul(benchmark::State& state) { RunMatMul(state, true); }

void ArgsFor(benchmark::internal::Benchmark* b, std::initializer_list<DType> types) {
  b->ArgNames({"type", "rows", "cols", "vecs", "threads"});
  for (DType t : types) {
    for (auto [rows, cols] : {std::pair{768, 1536}, std::pair{1536, 768}, std::pair{32768, 1536}}) {
      for (int vecs : {1, 8, 64}) {
        for (int threads : {1, 2}) {
          if (vecs == 64 && threads == 1) continue;  // prefill batches: 2 threads only
          b->Args({static_cast<int64_t>(t), rows, cols, vecs, threads});
        }
      }
    }
  }
}
void Args(benchmark::internal::Benchmark* b) {
  ArgsFor(b, {DType::kQ4_0, DType::kQ8_0, DType::kBF16, DType::kF16, DType::kF32});
}
void PackedArgs(benchmark::internal::Benchmark* b) { ArgsFor(b, {DType::kQ4_0, DType::kQ8_0}); }
// Decode's mat-vecs as memory sees them: distinct matrices [rows x 1536]
// that together far exceed the caches (256 MiB), so every weight byte comes
// from DRAM, as in a decode step. args: type, threads, whole (0: each matrix
// split over the pool; 1: one whole matrix per thread), rows (768: an
// expert's gate or up; 6144: a slice of attention or the LM head), vecs
// (1: a decode step; 8: a continuous-batching step of 8 streams).
void BM_PackedMatMulCold(benchmark::State& state) {
  const auto type = static_cast<DType>(state.range(0));
  const int threads = static_cast<int>(state.range(1));
  const bool whole = state.range(2) != 0;
  const size_t kRows = static_cast<size_t>(state.range(3)), kCols = 1536;
  const size_t vecs = static_cast<size_t>(state.range(4));
  if (!CanPack(type, kRows, kCols)) {
    state.SkipWithError("no packed kernel for this type on this CPU");
    return;
  }
  const size_t bytes = RowBytes(type, kCols) * kRows;
  const size_t count = (size_t{256} << 20) / bytes;
  const std::vector<float> src = Gaussian(kCols * 64, 1);
  std::vector<char> row(bytes);
  // In a 2 MiB huge-page arena, as the engine keeps its packed stacks: heap
  // memory of this size is 4 KiB pages at whatever alignment malloc gives.
  auto arena = HugePageArena::Create(bytes * count);
  if (!arena.ok()) {
    state.SkipWithError(std::string(arena.status().message()).c_str());
    return;
  }
  char* const packed = (*arena)->data();
  for (size_t r = 0; r < kRows; ++r) {
    QuantizeRow(type, src.data() + (r % 64) * kCols, row.data() + r * RowBytes(type, kCols), kCols);
  }
  for (size_t i = 0; i < count; ++i) PackRows(type, row.data(), kRows, kCols, packed + i * bytes);
  const std::vector<float> x = Gaussian(kCols * vecs, 2);
  Activations act;
  act.PrepareFor(type, x.data(), vecs, kCols);
  std::vector<float> y(kRows * threads * vecs);
  ThreadPool pool(threads);
  auto matrix = [&](size_t i) { return MatrixRef{type, nullptr, kRows, kCols, packed + (i % count) * bytes}; };
  size_t next = 0;
  for (auto _ : state) {
    if (whole && threads > 1) {
      pool.ParallelFor(threads, [&](size_t b, size_t e) {
        for (size_t t = b; t < e; ++t) MatMul(matrix(next + t), act, y.data() + t * kRows * vecs, nullptr);
      });
      next += threads;
    } else {
      MatMul(matrix(next++), act, y.data(), threads > 1 ? &pool : nullptr);
    }
    benchmark::DoNotOptimize(y.data());
    benchmark::ClobberMemory();
  }
  const int64_t per_iter = static_cast<int64_t>(bytes) * (whole && threads > 1 ? threads : 1);
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations()) * per_iter);
  state.SetLabel(std::string(DTypeName(type)) + " packed, from DRAM" +
                 BenchTargetSuffix());
}

// Dense Q4_K / Q6_K matrices computed as stored (model/weights.h: a K-quant
// file's attention and LM head), against BM_PackedMatMulCold's Q8_0 that
// they were converted to before: distinct [6144 x 1536] matrices from DRAM
// (256 MiB), MatMul split over the pool. Random levels and scales with sane
// f16 scales (every byte pattern is a valid block). args: ggml type,
// threads, vecs (1: decode; 8, 64: prefill batches).
void BM_StoredMatMulCold(benchmark::State& state) {
  const auto ggml_type = static_cast<uint32_t>(state.range(0));
  const int threads = static_cast<int>(state.range(1));
  const size_t vecs = static_cast<size_t>(state.range(2));
  constexpr size_t kRows = 6144, kCols = 1536;
  const StorageFormat* f = FindStorageFormat(ggml_type);
  const size_t bytes = kRows * kCols / f->block_elems * f->block_bytes;
  const size_t count = (size_t{256} << 20) / bytes;
  auto arena = HugePageArena::Create(bytes * count);
  if (!arena.ok()) {
    state.SkipWithError(std::string(arena.status().message()).c_str());
    return;
  }
  std::mt19937 rng(5);
  std::vector<char> one(bytes);
  for (char& c : one) c = static_cast<char>(rng());
  const uint16_t scale = F32ToF16(0.01f);
  for (size_t b = 0; b < bytes / f->block_bytes; ++b) {
    char* blk = one.data() + b * f->block_bytes;
    if (ggml_type == kGgmlQ4_K) {
      std::memcpy(blk, &scale, 2);
      std::memcpy(blk + 2, &scale, 2);
    } else {
      std::memcpy(blk + 208, &scale, 2);
    }
  }
  for (size_t i = 0; i < count; ++i) std::memcpy((*arena)->data() + i * bytes, one.data(), bytes);
  const std::vector<float> x = Gaussian(kCols * vecs, 2);
  Activations act;
  act.Prepare(x.data(), vecs, kCols, /*need_q8=*/true);
  std::vector<float> y(kRows * vecs);
  ThreadPool pool(threads);
  size_t next = 0;
  for (auto _ : state) {
    const MatrixRef m{.type = DType::kQ8_0,
                      .data = (*arena)->data() + (next++ % count) * bytes,
                      .rows = kRows,
                      .cols = kCols,
                      .storage = f};
    MatMul(m, act, y.data(), threads > 1 ? &pool : nullptr);
    benchmark::DoNotOptimize(y.data());
    benchmark::ClobberMemory();
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations()) * bytes);
  state.SetItemsProcessed(static_cast<int64_t>(state.iterations()) * vecs);  // vectors (tokens)
  state.SetLabel(std::string(f->name) + " as stored, from DRAM" + BenchTargetSuffix());
}

BENCHMARK(BM_MatMul)->Apply(Args)->UseRealTime();
BENCHMARK(BM_StoredMatMulCold)
    ->ArgNames({"type", "threads", "vecs"})
    ->ArgsProduct({{kGgmlQ4_K, kGgmlQ6_K}, {1, 2}, {1}})
    ->ArgsProduct({{kGgmlQ4_K, kGgmlQ6_K}, {2}, {8, 64}})
    ->UseRealTime();
BENCHMARK(BM_PackedMatMulCold)
    ->ArgNames({"type", "threads", "whole", "rows", "vecs"})
    // Expert-shaped (768 rows) and attention/LM-head-like (6144) mat-vecs.
    ->ArgsProduct({{static_cast<int64_t>(DType::kQ4_0), static_cast<int64_t>(DType::kQ8_0)},
                   {1, 2}, {0}, {768, 6144}, {1}})
    // Each of 2 threads on its own matrix: no split, no join inside a matrix.
    ->ArgsProduct({{static_cast<int64_t>(DType::kQ4_0), static_cast<int64_t>(DType::kQ8_0)},
                   {2}, {1}, {768}, {1}})
    // Several vectors (a batched step of 2-8 streams, an expert shared by
    // several tokens) from DRAM: against BM_PackedMatMul's L2-hot figures
    // this shows whether the kernel's prefetch hides DRAM once it is
    // compute-bound (packed_matmul_simd.cc).
    ->ArgsProduct({{static_cast<int64_t>(DType::kQ4_0), static_cast<int64_t>(DType::kQ8_0)},
                   {1, 2}, {0}, {6144}, {2, 4, 8}})
    // A prefill batch, beside BM_StoredMatMulCold's.
    ->ArgsProduct({{static_cast<int64_t>(DType::kQ8_0)}, {2}, {0}, {6144}, {64}})
    ->UseRealTime();
BENCHMARK(BM_PackedMatMul)->Apply(PackedArgs)->UseRealTime();

}  // namespace
}  // namespace st
