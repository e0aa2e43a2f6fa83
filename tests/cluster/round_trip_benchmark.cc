// Round trip of one decode-sized Compute step (one hidden row, top-4 items)
// between WorkerClient and a real `smallthinker worker` process (tiny
// synthetic model, one thread, so the worker's compute is a few
// microseconds): loopback TCP against a Unix domain socket, blocking on the
// completion queue against polling it first (spin_us). Counters: round_trip_us
// (Submit to reply in hand, mean), worker_compute_us (its reported compute,
// mean) and overhead_us (their difference).
#include <cstdlib>
#include <memory>
#include <string>

#include "absl/strings/str_cat.h"
#include "benchmark/benchmark.h"
#include "coordinator/worker_client.h"
#include "model/gguf.h"
#include "model/model.h"
#include "storage/expert_pack.h"
#include "tests/cluster/worker_process.h"
#include "tests/testutil/testutil.h"

namespace st {
namespace {

namespace v1 = smallthinker::v1;

void BM_ComputeRoundTrip(benchmark::State& state) {
  const bool unix_socket = state.range(0) == 1;
  const int spin_us = static_cast<int>(state.range(1));
  testing::TempDir dir;
  auto path = testing::SynthModel(dir.path(), "tiny", DType::kQ8_0);
  if (!path.ok()) return state.SkipWithError(std::string(path.status().message()).c_str());
  auto file = GgufFile::Open(*path);
  auto config = file.ok() ? LoadModelConfig(**file) : absl::StatusOr<ModelConfig>(file.status());
  if (!config.ok()) return state.SkipWithError(std::string(config.status().message()).c_str());
  const std::string listen =
      unix_socket ? absl::StrCat("unix:", dir.path(), "/w.sock") : "127.0.0.1:0";
  auto worker = testing::WorkerProcess::Start(*path, listen, {});
  if (!worker.ok()) return state.SkipWithError(std::string(worker.status().message()).c_str());

  v1::ClusterConfig cluster;
  WorkerClient client((*worker)->address(), cluster);
  std::vector<ExpertKey> layer0;
  for (int e = 0; e < config->n_experts; ++e) layer0.push_back({0, e});
  absl::Status s = client.Pair(GgufFingerprint(**file), *config);
  if (s.ok()) s = client.Assign(layer0);
  if (s.ok()) s = client.OpenStream();
  if (!s.ok()) return state.SkipWithError(std::string(s.message()).c_str());

  const std::vector<float> h(config->d_model, 0.01f);
  uint64_t step = 0;
  int64_t compute_us = 0, round_trip_us = 0;
  for (auto _ : state) {
    v1::ComputeRequest r;
    r.set_step_id(++step);
    r.set_layer(0);
    r.set_n_rows(1);
    r.mutable_hidden()->assign(reinterpret_cast<const char*>(h.data()), h.size() * sizeof(float));
    for (int k = 0; k < 4; ++k) {
      r.add_row(0);
      r.add_expert(static_cast<int>((step + k) % config->n_experts));
    }
    const Clock::time_point sent = Clock::now();
    client.Submit(std::move(r));
    // Poll without blocking first (what AwaitAll does on a shared queue).
    const Clock::time_point spin_end = sent + std::chrono::microseconds(spin_us);
    while (client.reply_time() < sent && Clock::now() < spin_end) client.Poll();
    auto reply = client.Await(Clock::now() + std::chrono::seconds(10));
    if (!reply.ok()) return state.SkipWithError(std::string(reply.status().message()).c_str());
    round_trip_us += std::chrono::duration_cast<std::chrono::microseconds>(
                         client.reply_time() - sent).count();
    compute_us += (*reply)->compute_us();
  }
  const double n = static_cast<double>(state.iterations());
  state.counters["round_trip_us"] = round_trip_us / n;
  state.counters["worker_compute_us"] = compute_us / n;
  state.counters["overhead_us"] = (round_trip_us - compute_us) / n;
  client.CloseStream();
}
// Args: {0 = TCP loopback, 1 = Unix socket}, spin microseconds.
BENCHMARK(BM_ComputeRoundTrip)
    ->ArgNames({"unix", "spin_us"})
    ->Args({0, 0})
    ->Args({1, 0})
    ->Args({0, 300})
    ->Args({1, 300})
    ->UseRealTime()
    ->MinTime(1.0)
    ->Unit(benchmark::kMicrosecond);

}  // namespace
}  // namespace st
