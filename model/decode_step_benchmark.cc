// One continuous-batching decode step (Forward::RunSequences with one token
// of each of N sequences, every sequence with its own KV cache) on a real
// GGUF: aggregate tokens/s at N = 1, 2, 4, 8 and the step's zone split.
// The model is ST_BENCH_MODEL (e.g. a `synth --preset 4b` Q4_0 file);
// without it the benchmark is skipped. ST_BENCH_THREADS sets the threads
// (default all cores). GB/s is the bytes a step touched (model/step_traffic.h)
// over its time: the read bandwidth the batched step achieves.
#include <cstdlib>
#include <memory>
#include <string>
#include <vector>

#include "benchmark/benchmark.h"
#include "model/kv_cache.h"
#include "model/model.h"
#include "model/step_traffic.h"

namespace st {
namespace {

Model* SharedModel() {
  static std::unique_ptr<Model> model = [] {
    std::unique_ptr<Model> m;
    const char* path = std::getenv("ST_BENCH_MODEL");
    if (path == nullptr) return m;
    const char* threads = std::getenv("ST_BENCH_THREADS");
    auto loaded =
        Model::Load(path, ModelOptions{.threads = threads ? std::atoi(threads) : 0, .max_batch = 16});
    if (loaded.ok()) m = std::move(*loaded);
    return m;
  }();
  return model.get();
}

void BM_DecodeStep(benchmark::State& state) {
  Model* model = SharedModel();
  if (model == nullptr) {
    state.SkipWithError("set ST_BENCH_MODEL to a SmallThinker GGUF");
    return;
  }
  const int n = static_cast<int>(state.range(0));
  const int64_t prompt = 16, context = 512;
  std::vector<std::unique_ptr<KvCache>> kv;
  std::vector<int32_t> next(n);
  std::vector<float> logits;
  for (int i = 0; i < n; ++i) {
    kv.push_back(std::make_unique<KvCache>(model->config(), context, 16));
    std::vector<int32_t> p(prompt);
    for (int t = 0; t < prompt; ++t) p[t] = (1000 + 7919 * i + 104729 * t) % 150000;
    std::vector<SequenceInput> in{{kv.back().get(), 0, p}};
    if (!model->forward().RunSequences(in, &logits).ok()) {
      state.SkipWithError("prefill failed");
      return;
    }
    next[i] = 100 + i;
  }
  int64_t pos = prompt;
  const ForwardZones z0 = model->forward().zones();
  const DecodeStepCounters c0 = model->forward().decode_steps(n);
  for (auto _ : state) {
    std::vector<SequenceInput> in;
    for (int i = 0; i < n; ++i) in.push_back({kv[i].get(), pos, absl::MakeConstSpan(&next[i], 1)});
    if (!model->forward().RunSequences(in, &logits).ok()) {
      state.SkipWithError("step failed");
      return;
    }
    for (int i = 0; i < n; ++i) next[i] = (next[i] * 31 + 7) % 150000;
    if (++pos == context) pos = prompt;
  }
  const ForwardZones& z1 = model->forward().zones();
  const double steps = static_cast<double>(state.iterations());
  state.counters["tok/s"] = benchmark::Counter(steps * n, benchmark::Counter::kIsRate);
  state.counters["route_ms"] = 1e3 * (z1.route - z0.route) / steps;
  state.counters["attn_ms"] = 1e3 * (z1.attention - z0.attention) / steps;
  state.counters["experts_ms"] = 1e3 * (z1.experts - z0.experts) / steps;
  state.counters["lm_head_ms"] = 1e3 * (z1.lm_head - z0.lm_head) / steps;
  // Bytes the steps touched (dense once, union of experts, K/V) per second of
  // step time: the bandwidth the batched step achieves.
  const StepRoofline r = DecodeStepRoofline(model->config(), model->weights(), n,
                                            model->forward().decode_steps(n) - c0, 1.0);
  state.counters["experts/layer"] = r.experts_per_layer;
  state.counters["MiB/step"] = r.step_bytes() / (1 << 20);
  state.counters["GB/s"] = benchmark::Counter(steps * r.step_bytes() / 1e9, benchmark::Counter::kIsRate);
}
BENCHMARK(BM_DecodeStep)->Arg(1)->Arg(2)->Arg(4)->Arg(8)->UseRealTime()->Unit(benchmark::kMillisecond);

}  // namespace
}  // namespace st

