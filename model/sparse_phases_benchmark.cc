// One MoE layer step of the 4b preset's shapes (d_model 1536, d_expert 768,
// 32 experts, top-4, Q4_0) on 2 threads, weights larger than the caches
// (4 layers, a different one each iteration; all in 2 MiB huge pages):
//   Pack/Old:   the expert pack's layout, ExpertFfn per expert (decode: each
//               expert split over the pool; prefill: one expert per thread),
//               as CachedExpertExecutor did before SparsePhases;
//   Pack/Phases: the same experts through SparsePhases;
//   PackSplit/Phases: the same with the up rows in the split Q4_0 layout
//               (kernels/split_rows.h), as convert now writes them;
//   Gguf/Phases: every matrix packed, ExpertPhases (the GGUF path).
// Arg: tokens in the step (1 = decode, 8 = a batched decode step of 8
// streams, 128 = prefill). Min over repetitions is the number to read on a
// shared machine.
// The *Cold variants stream 384 MiB through both threads before each step
// (not timed), as a decode token's other weights do between its uses of an
// expert: then nothing of the step (scratch, outputs, activations, the
// weights of recent steps) is left in L2 or L3. The size matters: session
// 35's Xeon reports a 480 MiB L3 (shared with other guests), and `membw`
// there read 64-128 MiB at 54-57 GB/s, 192 MiB at 45 and 256 MiB or more at
// 32.6 (DRAM speed: what stays cached of a 256+ MiB cycle), so the 64
// MiB flush used until then left steps in L3 (PackSplitPhasesCold/1 199-231
// us against 258-310 with 384 MiB). Session 15 found the warm variants'
// phase 1 ~30% faster than a real decode's.
// The *Hot variants repeat one layer's step with the same experts, so its
// ~5 MiB of weights stay in L2/L3: the step's compute floor. Session 17,
// decode, medians of 5: Pack 118 us hot against 232 warm, Gguf 90 against
// 322 (the pack reads ~5.3 MB per step, the GGUF path ~8 MB).
// PackReplayCold: no arithmetic, only the loads a cold decode step of the
// split pack makes (each used expert's whole gate, then a random half of
// its up rows and of its down^T rows, as the synthetic models' ReGLU
// activates), split over the 2 threads in the kernel's two phases: the
// floor this host's memory puts under PackSplitPhasesCold/1 for the same
// bytes. Its GB/s counter next to `smallthinker membw` tells how far the
// access pattern itself stays from the streaming-read roofline.
// Args: interleaved (1: each neuron's up row and down^T row stored back to
// back, so an active neuron is one 2-row run, as a pack could lay them out;
// 0: the pack's layout, up rows then down^T rows) and prefetch (1: each
// thread prefetches the unit 2 rows ahead; the kernels prefetch theirs).
// Session 35, medians of 5 in three runs (2 threads, 384 MiB flush,
// MinTime 0.04 s; the host's memory was busier in the first two): pack
// layout 243-303 us, with prefetch 236-291; interleaved 220-274, with
// prefetch 215-271; PackSplitPhasesCold/1 (the kernel) 258-310 in the same
// runs. So the kernel sits within ~6-9% of its layout's prefetched floor,
// and an interleaved pack whose up and down^T rows of a neuron are used
// together could take ~8% off a cold expert step. (Interleaving alone,
// with the kernel's two phases unchanged, gained nothing: 214-225 against
// 199-231 us with the old 64 MiB flush.) A real 4b decode's step took
// 255-260 us (temporary timers: phase 1 177-180, phase 2 78-80), about
// the third run's cold step: some of its recent experts stay in L3.
#include <algorithm>
#include <atomic>
#include <cstring>
#include <memory>
#include <random>
#include <vector>

#include "benchmark/benchmark.h"
#include "common/huge_page_arena.h"
#include "common/thread_pool.h"
#include "kernels/fp16.h"
#include "kernels/memory_bandwidth.h"
#include "kernels/packed_matrix.h"
#include "kernels/split_rows.h"
#include "kernels/test_util.h"
#include "model/expert_executor.h"
#include "model/expert_phases.h"
#include "model/sparse_phases.h"

namespace st {
namespace {

constexpr size_t kDm = 1536, kDe = 768;
constexpr int kExperts = 32, kTopK = 4, kLayers = 4;
constexpr DType kType = DType::kQ4_0;

// Q4_0 rows with sane scales and random levels.
std::vector<uint8_t> RandomRows(size_t rows, size_t cols, std::mt19937& rng) {
  const size_t rb = RowBytes(kType, cols);
  std::vector<uint8_t> out(rows * rb);
  std::uniform_int_distribution<int> byte(0, 255);
  std::uniform_real_distribution<float> scale(0.002f, 0.01f);
  for (size_t r = 0; r < rows; ++r) {
    for (size_t b = 0; b < cols / kQK; ++b) {
      uint8_t* blk = out.data() + r * rb + b * sizeof(BlockQ4_0);
      const uint16_t d = F32ToF16(scale(rng));
      std::memcpy(blk, &d, 2);
      for (int j = 2; j < 18; ++j) blk[j] = static_cast<uint8_t>(byte(rng));
    }
  }
  return out;
}

std::vector<uint8_t> Packed(const std::vector<uint8_t>& rows, size_t n_rows, size_t cols) {
  std::vector<uint8_t> out(rows.size());
  PackRows(kType, rows.data(), n_rows, cols, out.data());
  return out;
}

// Copies `parts` one after another into a 2 MiB huge-page arena, as the
// engine keeps expert slots and packed stacks (4 KiB pages would add a TLB
// miss to nearly every sparse row), and returns where each landed.
std::vector<const uint8_t*> IntoArena(const std::vector<const std::vector<uint8_t>*>& parts,
                                      std::unique_ptr<HugePageArena>& arena) {
  size_t total = 0;
  for (const auto* p : parts) total += (p->size() + 4095) / 4096 * 4096;
  arena = *HugePageArena::Create(total);
  std::vector<const uint8_t*> at;
  char* out = arena->data();
  for (const auto* p : parts) {
    std::memcpy(out, p->data(), p->size());
    at.push_back(reinterpret_cast<const uint8_t*>(out));
    out += (p->size() + 4095) / 4096 * 4096;
  }
  return at;
}

struct Layer {
  // Pack layout, per expert: gate packed, up and down^T in rows.
  std::vector<const uint8_t*> gate, up, down_t, up_split;
  ExpertStacks stacks;  // GGUF layout, stacked and packed: gate, up [E*de, dm], down [E*dm, de]
  std::unique_ptr<HugePageArena> pack_arena, gguf_arena;
  ExpertMatrices Pack(int e, bool split = false) const {
    return {.gate = {kType, nullptr, kDe, kDm, gate[e]},
            .up = {kType, split ? up_split[e] : up[e], kDe, kDm, nullptr, split},
            .down = {kType, down_t[e], kDe, kDm},
            .down_transposed = true};
  }
};

struct World {
  std::vector<Layer> layers;
  ThreadPool pool{2};
  std::vector<uint64_t> flush;  // 384 MiB, made by the first Flush (cold variants only)
  // Reads all of `flush` on the pool (evicting the caches); returns a sum
  // so the reads are not optimized away.
  uint64_t Flush() {
    if (flush.empty()) flush.assign((size_t{384} << 20) / sizeof(uint64_t), 1);
    std::atomic<uint64_t> sum{0};
    pool.ParallelFor(flush.size(), [&](size_t b, size_t e) {
      uint64_t s = 0;
      for (size_t i = b; i < e; i += 8) s += flush[i];  // one read per 64-byte line
      sum.fetch_add(s, std::memory_order_relaxed);
    }, /*grain=*/8);
    return sum.load();
  }
  World() {
    std::mt19937 rng(7);
    layers.resize(kLayers);
    for (Layer& l : layers) {
      // Per expert gate, up, down^T: one record's worth each, like a slot.
      std::vector<std::vector<uint8_t>> bytes;
      for (int e = 0; e < kExperts; ++e) {
        bytes.push_back(Packed(RandomRows(kDe, kDm, rng), kDe, kDm));
        bytes.push_back(RandomRows(kDe, kDm, rng));
        bytes.push_back(RandomRows(kDe, kDm, rng));
        std::vector<uint8_t> split(bytes[bytes.size() - 2].size());
        const size_t rb = RowBytes(kType, kDm);
        for (size_t r = 0; r < kDe; ++r) {
          SplitQ4_0Row(&bytes[bytes.size() - 2][r * rb], kDm, &split[r * rb]);
        }
        bytes.push_back(std::move(split));
      }
      std::vector<const std::vector<uint8_t>*> parts;
      for (const auto& b : bytes) parts.push_back(&b);
      const auto at = IntoArena(parts, l.pack_arena);
      for (int e = 0; e < kExperts; ++e) {
        l.gate.push_back(at[4 * e]);
        l.up.push_back(at[4 * e + 1]);
        l.down_t.push_back(at[4 * e + 2]);
        l.up_split.push_back(at[4 * e + 3]);
      }
      const std::vector<uint8_t> g_gate = Packed(RandomRows(kExperts * kDe, kDm, rng), kExperts * kDe, kDm);
      const std::vector<uint8_t> g_up = Packed(RandomRows(kExperts * kDe, kDm, rng), kExperts * kDe, kDm);
      const std::vector<uint8_t> g_down = Packed(RandomRows(kExperts * kDm, kDe, rng), kExperts * kDm, kDe);
      const auto g = IntoArena({&g_gate, &g_up, &g_down}, l.gguf_arena);
      l.stacks.gate = {kType, nullptr, kExperts * kDe, kDm, g[0]};
      l.stacks.up = {kType, nullptr, kExperts * kDe, kDm, g[1]};
      l.stacks.down = {kType, nullptr, kExperts * kDm, kDe, g[2]};
      l.stacks.n_experts = kExperts;
    }
  }
};

World& Shared() {
  static World* w = new World();
  return *w;
}

// Random top-4 routing of n tokens: by_expert lists and the used experts,
// larger first (as the executors order them).
struct Step {
  std::vector<std::vector<int>> by_expert;
  std::vector<int> used;
};
Step Route(int n, std::mt19937& rng) {
  Step s;
  s.by_expert.resize(kExperts);
  std::vector<int> ids(kExperts);
  for (int t = 0; t < n; ++t) {
    for (int e = 0; e < kExperts; ++e) ids[e] = e;
    std::shuffle(ids.begin(), ids.end(), rng);
    for (int j = 0; j < kTopK; ++j) s.by_expert[ids[j]].push_back(t * kTopK + j);
  }
  for (int e = 0; e < kExperts; ++e) {
    if (!s.by_expert[e].empty()) s.used.push_back(e);
  }
  std::stable_sort(s.used.begin(), s.used.end(), [&](int a, int b) {
    return s.by_expert[a].size() > s.by_expert[b].size();
  });
  return s;
}

enum class Path { kPackOld, kPackPhases, kPackSplitPhases, kGgufPhases };

enum class Heat { kWarm, kCold, kHot };

void Run(benchmark::State& state, Path path, Heat heat = Heat::kWarm) {
  const bool cold = heat == Heat::kCold, hot = heat == Heat::kHot;
  World& w = Shared();
  const int n = static_cast<int>(state.range(0));
  std::mt19937 rng(11);
  std::vector<Step> steps;
  for (int i = 0; i < 16; ++i) steps.push_back(Route(n, rng));
  const std::vector<float> h = st::testing::Gaussian(n * kDm, 3);
  std::vector<float> slot_out(static_cast<size_t>(n) * kTopK * kDm);
  SparsePhases sparse;
  ExpertPhases dense;
  size_t it = 0;
  for (auto _ : state) {
    const Layer& l = w.layers[hot ? 0 : it % kLayers];
    const Step& s = steps[hot ? 0 : it % steps.size()];
    ++it;
    if (cold) {
      state.PauseTiming();
      benchmark::DoNotOptimize(w.Flush());
      state.ResumeTiming();
    }
    if (path == Path::kPackPhases || path == Path::kPackSplitPhases) {
      std::vector<ExpertMatrices> ms;
      std::vector<const std::vector<int>*> slots;
      for (int e : s.used) {
        ms.push_back(l.Pack(e, path == Path::kPackSplitPhases));
        slots.push_back(&s.by_expert[e]);
      }
      sparse.Run(ms, slots, kTopK, h.data(), n, slot_out.data(), &w.pool, nullptr);
    } else if (path == Path::kGgufPhases) {
      dense.Run(l.stacks, s.by_expert, s.used, kTopK, h.data(), n, slot_out.data(), &w.pool,
                nullptr);
    } else {
      auto one = [&](int e, ThreadPool* pool) {
        const std::vector<int>& sl = s.by_expert[e];
        std::vector<float> x(sl.size() * kDm), y(sl.size() * kDm);
        GatherSlotRows(h.data(), sl, kTopK, kDm, x.data());
        ExpertFfn(l.Pack(e), x.data(), static_cast<int>(sl.size()), y.data(), pool, nullptr);
        ScatterSlotRows(y.data(), sl, kDm, slot_out.data());
      };
      if (s.used.size() >= 4) {  // RunResidentInParallel: >= 2 experts per thread
        w.pool.ParallelFor(s.used.size(), [&](size_t b, size_t e) {
          for (size_t i = b; i < e; ++i) one(s.used[i], nullptr);
        });
      } else {
        for (int e : s.used) one(e, &w.pool);
      }
    }
    benchmark::DoNotOptimize(slot_out.data());
  }
  state.SetItemsProcessed(state.iterations() * n);
}

void BM_PackOld(benchmark::State& s) { Run(s, Path::kPackOld); }
void BM_PackPhases(benchmark::State& s) { Run(s, Path::kPackPhases); }
void BM_PackSplitPhases(benchmark::State& s) { Run(s, Path::kPackSplitPhases); }
void BM_GgufPhases(benchmark::State& s) { Run(s, Path::kGgufPhases); }
void BM_PackSplitPhasesCold(benchmark::State& s) {
  Run(s, Path::kPackSplitPhases, Heat::kCold);
}
void BM_PackSplitPhasesHot(benchmark::State& s) { Run(s, Path::kPackSplitPhases, Heat::kHot); }
void BM_PackPhasesCold(benchmark::State& s) { Run(s, Path::kPackPhases, Heat::kCold); }
void BM_GgufPhasesCold(benchmark::State& s) { Run(s, Path::kGgufPhases, Heat::kCold); }
void BM_PackPhasesHot(benchmark::State& s) { Run(s, Path::kPackPhases, Heat::kHot); }
void BM_GgufPhasesHot(benchmark::State& s) { Run(s, Path::kGgufPhases, Heat::kHot); }

// Loads only: see PackReplayCold above.
void BM_PackReplayCold(benchmark::State& state) {
  World& w = Shared();
  std::mt19937 rng(11);
  std::vector<Step> steps;
  for (int i = 0; i < 16; ++i) steps.push_back(Route(1, rng));
  const size_t rb = RowBytes(kType, kDm);
  // Active rows per (step, used expert): a random half, in order.
  std::vector<std::vector<std::vector<uint32_t>>> active(steps.size());
  for (size_t i = 0; i < steps.size(); ++i) {
    for (size_t k = 0; k < steps[i].used.size(); ++k) {
      std::vector<uint32_t> rows;
      for (uint32_t r = 0; r < kDe; ++r) {
        if (rng() & 1) rows.push_back(r);
      }
      active[i].push_back(std::move(rows));
    }
  }
  const bool interleaved = state.range(0) == 1, prefetch = state.range(1) == 1;
  // Units prefetched ahead: 2 rows either way (measured best of 1-4 rows).
  const size_t kAhead = interleaved ? 1 : 2;
  std::atomic<uint64_t> sink{0};
  size_t it = 0;
  double bytes = 0;
  for (auto _ : state) {
    const Layer& l = w.layers[it % kLayers];
    const size_t si = it % steps.size();
    const Step& s = steps[si];
    ++it;
    state.PauseTiming();
    benchmark::DoNotOptimize(w.Flush());
    state.ResumeTiming();
    // Phase 1: the used experts' gates, in 128-row items over the threads.
    const size_t gate_items = kDe / 128;
    w.pool.ParallelFor(s.used.size() * gate_items, [&](size_t b, size_t e) {
      uint64_t acc = 0;
      for (size_t i = b; i < e; ++i) {
        const uint8_t* g = l.gate[s.used[i / gate_items]] + (i % gate_items) * 128 * rb;
        acc += StreamReadSum(reinterpret_cast<const uint64_t*>(g), 128 * rb / 8);
      }
      sink.fetch_add(acc, std::memory_order_relaxed);
    });
    // Phase 2: active up rows, then active down^T rows, of every used expert
    // (pack layout: a unit is one row); or, interleaved, each active
    // neuron's up row and down^T row as one 2-row unit.
    size_t n_rows = 0;
    for (const auto& a : active[si]) n_rows += a.size();
    const size_t n_units = interleaved ? n_rows : 2 * n_rows;
    const size_t unit_bytes = interleaved ? 2 * rb : rb;
    auto unit = [&](size_t i) -> const uint8_t* {
      const bool down = !interleaved && i >= n_rows;
      size_t r = down ? i - n_rows : i, k = 0;
      while (r >= active[si][k].size()) r -= active[si][k++].size();
      const int ex = s.used[k];
      // Interleaved: neuron j at up[ex] + 2 j rb, spanning the expert's up
      // and down^T rows, which lie back to back in the arena (no padding
      // between them: a whole number of 4 KiB pages of Q4_0 rows).
      static_assert(kDe * (kDm / 32 * 18) % 4096 == 0);
      if (interleaved) return l.up[ex] + active[si][k][r] * 2 * rb;
      return (down ? l.down_t[ex] : l.up_split[ex]) + active[si][k][r] * rb;
    };
    w.pool.ParallelFor(n_units, [&](size_t b, size_t e) {
      uint64_t acc = 0;
      for (size_t i = b; i < e; ++i) {
        if (prefetch && i + kAhead < e) {
          const uint8_t* next = unit(i + kAhead);
          for (size_t off = 0; off < unit_bytes; off += 64) __builtin_prefetch(next + off);
        }
        acc += StreamReadSum(reinterpret_cast<const uint64_t*>(unit(i)), unit_bytes / 8);
      }
      sink.fetch_add(acc, std::memory_order_relaxed);
    });
    bytes += static_cast<double>(s.used.size() * kDe + 2 * n_rows) * rb;
  }
  benchmark::DoNotOptimize(sink.load());
  state.counters["GB/s"] = benchmark::Counter(bytes / 1e9, benchmark::Counter::kIsRate);
}

double Min(const std::vector<double>& v) { return *std::min_element(v.begin(), v.end()); }

#define ST_CASES(bm)                                                                       \
  BENCHMARK(bm)->Arg(1)->Arg(8)->Arg(128)->UseRealTime()->Unit(benchmark::kMicrosecond)   \
      ->Repetitions(5)->ComputeStatistics("min", Min)->ReportAggregatesOnly(true)
// Cold cases: each iteration's untimed flush takes ~12 ms, so a shorter
// timed minimum keeps a case to seconds.
#define ST_COLD_CASES(bm) ST_CASES(bm)->MinTime(0.04)
ST_CASES(BM_PackOld);
ST_CASES(BM_PackPhases);
ST_CASES(BM_PackSplitPhases);
ST_CASES(BM_GgufPhases);
ST_COLD_CASES(BM_PackPhasesCold);
ST_COLD_CASES(BM_PackSplitPhasesCold);
ST_COLD_CASES(BM_GgufPhasesCold);
ST_CASES(BM_PackPhasesHot);
ST_CASES(BM_PackSplitPhasesHot);
ST_CASES(BM_GgufPhasesHot);
BENCHMARK(BM_PackReplayCold)->ArgNames({"interleaved", "prefetch"})->ArgsProduct({{0, 1}, {0, 1}})->UseRealTime()->Unit(benchmark::kMicrosecond)
    ->MinTime(0.04)->Repetitions(5)->ComputeStatistics("min", Min)->ReportAggregatesOnly(true);

}  // namespace
}  // namespace st
