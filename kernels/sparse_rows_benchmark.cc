// Sparse ReGLU's row kernels on one thread, at the 4b preset's expert shape
// (d_expert 768 rows of d_model 1536, Q4_0 or Q8_0, the expert pack's row
// layout), reading only the active rows (a random `percent` of them; half,
// as a synthetic model's relu(gate) leaves them, for AxpyRows):
//   DotRowsIndexed: up rows . x (one decode vector), plain rows;
//   DotRowsIndexedSplit: the same on Q4_0 rows in the split layout
//                   (kernels/split_rows.h, the pack's up rows);
//   AxpyRows:       y += z[f] * down^T.row(f), in column slices of `cols`
//                   (SparsePhases' phase-2 items are 256 columns).
// Bytes processed = the active rows' bytes. `cold` 1: distinct matrices that
// together far exceed the caches (256 MiB in 2 MiB huge pages, as the expert
// cache keeps them), a new one every iteration, as in a decode step; 0: one
// matrix, hot in L2. The gap between the two is what memory access costs
// beyond the arithmetic.
#include <algorithm>
#include <random>
#include <string>
#include <vector>

#include "benchmark/benchmark.h"
#include "common/huge_page_arena.h"
#include "kernels/axpy.h"
#include "kernels/benchmark_targets.h"
#include "kernels/dot.h"
#include "kernels/quant.h"
#include "kernels/split_rows.h"

namespace st {
namespace {

constexpr size_t kRows = 768, kCols = 1536;

struct Rows {
  std::unique_ptr<HugePageArena> arena;
  size_t matrix_bytes = 0, count = 0;
  std::vector<std::vector<uint32_t>> active;  // per matrix (cycled)
};

// `count` copies of one quantized [kRows, kCols] matrix and, per copy, a
// random `percent` of its rows in increasing order.
absl::StatusOr<Rows> MakeRows(DType type, bool cold, int percent = 50, bool split = false) {
  Rows r;
  const size_t rb = RowBytes(type, kCols);
  r.matrix_bytes = rb * kRows;
  r.count = cold ? (size_t{256} << 20) / r.matrix_bytes : 1;
  auto arena = HugePageArena::Create(r.matrix_bytes * r.count);
  if (!arena.ok()) return arena.status();
  r.arena = std::move(*arena);
  std::mt19937 rng(5);
  std::normal_distribution<float> dist(0.0f, 1.0f);
  std::vector<float> src(kCols);
  std::vector<char> one(r.matrix_bytes);
  for (size_t row = 0; row < kRows; ++row) {
    for (float& f : src) f = dist(rng);
    QuantizeRow(type, src.data(), one.data() + row * rb, kCols);
    if (split) {
      std::vector<char> plain(one.begin() + row * rb, one.begin() + (row + 1) * rb);
      SplitQ4_0Row(plain.data(), kCols, one.data() + row * rb);
    }
  }
  for (size_t i = 0; i < r.count; ++i) {
    std::copy(one.begin(), one.end(), r.arena->data() + i * r.matrix_bytes);
  }
  std::bernoulli_distribution pick(percent / 100.0);
  for (size_t i = 0; i < std::min<size_t>(r.count, 64); ++i) {
    std::vector<uint32_t> rows;
    for (uint32_t f = 0; f < kRows; ++f) {
      if (pick(rng)) rows.push_back(f);
    }
    r.active.push_back(std::move(rows));
  }
  return r;
}

void Label(benchmark::State& state, DType type, bool cold, size_t bytes, const Rows& rows) {
  state.SetBytesProcessed(static_cast<int64_t>(bytes));
  state.SetLabel(std::string(DTypeName(type)) + (cold ? ", from DRAM" : ", hot") + " huge " +
                 std::to_string(rows.arena->HugePageBytes() >> 20) + " MiB" + BenchTargetSuffix());
}

// args: type, cold, percent (of the rows active); `split` for the split
// Q4_0 layout.
void DotRowsIndexedBench(benchmark::State& state, bool split) {
  const auto type = static_cast<DType>(state.range(0));
  const bool cold = state.range(1) != 0;
  auto rows = MakeRows(type, cold, static_cast<int>(state.range(2)), split);
  if (!rows.ok()) {
    state.SkipWithError(std::string(rows.status().message()).c_str());
    return;
  }
  std::mt19937 rng(2);
  std::normal_distribution<float> dist(0.0f, 1.0f);
  std::vector<float> x(kCols);
  for (float& f : x) f = dist(rng);
  std::vector<BlockQ8_0> xq(kCols / kQK);
  QuantizeRow(DType::kQ8_0, x.data(), xq.data(), kCols);
  const VecRef vec{x.data(), xq.data(), kCols};
  std::vector<float> y(kRows);
  const size_t rb = RowBytes(type, kCols);
  size_t next = 0, bytes = 0;
  for (auto _ : state) {
    const size_t i = next++ % rows->count;
    const std::vector<uint32_t>& act = rows->active[i % rows->active.size()];
    const char* w = rows->arena->data() + i * rows->matrix_bytes;
    if (split) {
      DotRowsIndexedSplitQ4_0(w, rb, act.data(), act.size(), &vec, 1, y.data(), kRows);
    } else {
      DotRowsIndexed(type, w, rb, act.data(), act.size(), &vec, 1, y.data(), kRows);
    }
    bytes += act.size() * rb;
    benchmark::DoNotOptimize(y.data());
    benchmark::ClobberMemory();
  }
  Label(state, type, cold, bytes, *rows);
}

void BM_DotRowsIndexed(benchmark::State& state) { DotRowsIndexedBench(state, false); }
void BM_DotRowsIndexedSplit(benchmark::State& state) { DotRowsIndexedBench(state, true); }

// args: type, cold, cols (per AxpyRows call; the row is covered in slices)
void BM_AxpyRows(benchmark::State& state) {
  const auto type = static_cast<DType>(state.range(0));
  const bool cold = state.range(1) != 0;
  const size_t cols = static_cast<size_t>(state.range(2));
  auto rows = MakeRows(type, cold);
  if (!rows.ok()) {
    state.SkipWithError(std::string(rows.status().message()).c_str());
    return;
  }
  std::vector<float> coef(kRows, 0.25f), y(kCols);
  const size_t rb = RowBytes(type, kCols);
  size_t next = 0, bytes = 0;
  for (auto _ : state) {
    const size_t i = next++ % rows->count;
    const std::vector<uint32_t>& act = rows->active[i % rows->active.size()];
    const char* w = rows->arena->data() + i * rows->matrix_bytes;
    for (size_t c0 = 0; c0 < kCols; c0 += cols) {
      AxpyRows(type, w, rb, RowBytes(type, c0), act.data(), coef.data(), act.size(), y.data() + c0,
               std::min(cols, kCols - c0));
    }
    bytes += act.size() * rb;
    benchmark::DoNotOptimize(y.data());
    benchmark::ClobberMemory();
  }
  Label(state, type, cold, bytes, *rows);
}

constexpr int64_t kQ4 = static_cast<int64_t>(DType::kQ4_0);
constexpr int64_t kQ8 = static_cast<int64_t>(DType::kQ8_0);

BENCHMARK(BM_DotRowsIndexed)
    ->ArgNames({"type", "cold", "percent"})
    ->ArgsProduct({{kQ4, kQ8}, {0, 1}, {25, 50, 100}})
    ->UseRealTime();
BENCHMARK(BM_DotRowsIndexedSplit)
    ->ArgNames({"type", "cold", "percent"})
    ->ArgsProduct({{kQ4}, {0, 1}, {25, 50, 100}})
    ->UseRealTime();
BENCHMARK(BM_AxpyRows)
    ->ArgNames({"type", "cold", "cols"})
    ->ArgsProduct({{kQ4, kQ8}, {0, 1}, {256, 768, 1536}})
    ->UseRealTime();

}  // namespace
}  // namespace st
