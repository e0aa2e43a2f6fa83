// `smallthinker bench-serve`: throughput of the continuous-batching engine
// (coordinator/engine.h) under N concurrent streams, in process: aggregate
// decode tokens/s at each concurrency and time to first token p50/p99.
#include <algorithm>
#include <cstdio>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "common/units.h"
#include "coordinator/engine.h"
#include "kernels/memory_bandwidth.h"
#include "model/model.h"
#include "model/step_traffic.h"
#include "nlohmann/json.hpp"
#include "tools/bench_stats.h"
#include "tools/commands.h"
#include "tools/offload_flags.h"
#include "tools/sampling_flags.h"
#include "tools/worker_flags.h"

namespace st::tools {
namespace {

double Percentile(std::vector<double> v, double p) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  const size_t i = std::min(v.size() - 1, static_cast<size_t>(p * (v.size() - 1) + 0.5));
  return v[i];
}

struct Level {
  int streams = 0;
  double agg_decode_tps = 0;   // sum of decode tokens / decode window, mean over rounds
  double steady_tps = 0;       // tokens / time while all N streams decode, mean over rounds
  double per_stream_tps = 0;
  double ttft_p50 = 0, ttft_p99 = 0;
  int64_t tokens = 0;
  ForwardZones zones;  // seconds spent per zone during this level
  StepRoofline roof;   // decode steps of exactly `streams` tokens during this level
  double bandwidth_gbps = 0;  // read bandwidth measured right before this level
};

// Rate of level i over the single-stream levels beside it in the run order
// (the mean of the one just before and the one just after; one of them if
// only one is a single stream), or 0 if neither is. With interleaved levels
// (--streams 1,8,1,8,1) each ratio then rides on the same minutes of a
// noisy host, where a ratio to the first level alone would not.
double NeighbourRatio(const std::vector<Level>& levels, size_t i, double Level::*rate) {
  double sum = 0;
  int count = 0;
  for (size_t j : {i - 1, i + 1}) {  // i - 1 wraps for i == 0: out of range
    if (j < levels.size() && levels[j].streams == 1) {
      sum += levels[j].*rate;
      ++count;
    }
  }
  return count == 0 || sum <= 0 ? 0 : levels[i].*rate / (sum / count);
}

// Per concurrency level N > 1 that has single-stream neighbours: the
// NeighbourRatio of each of its runs, steady and aggregate.
struct Interleaved {
  int streams = 0;
  std::vector<double> steady, aggregate;
};
std::vector<Interleaved> InterleavedRatios(const std::vector<Level>& levels) {
  std::vector<Interleaved> out;
  for (size_t i = 0; i < levels.size(); ++i) {
    if (levels[i].streams == 1) continue;
    const double steady = NeighbourRatio(levels, i, &Level::steady_tps);
    if (steady <= 0) continue;
    auto it = std::find_if(out.begin(), out.end(),
                           [&](const Interleaved& x) { return x.streams == levels[i].streams; });
    if (it == out.end()) it = out.insert(out.end(), Interleaved{levels[i].streams, {}, {}});
    it->steady.push_back(steady);
    it->aggregate.push_back(NeighbourRatio(levels, i, &Level::agg_decode_tps));
  }
  return out;
}

}  // namespace

void RegisterBenchServe(CLI::App& app) {
  struct Flags {
    std::string model, streams = "1,2,4,8", output = "text", bandwidth_size = "1GiB";
    int threads = 0, prompt_tokens = 32, gen_tokens = 64, rounds = 2, batch = 256;
    int prefill_while_decoding = EngineOptions{}.prefill_while_decoding;
    std::string cpus;
    KQuantFlags kquant;
    OffloadFlags offload;
    WorkerFlags workers;
  };
  auto f = std::make_shared<Flags>();
  CLI::App* cmd = app.add_subcommand(
      "bench-serve",
      "Benchmark the serving engine in process: for each concurrency N, start N greedy\n"
      "requests at once (prompt -p tokens, -n generated tokens each) and report aggregate\n"
      "decode tokens/s (all streams' tokens after their first / the decode window) and\n"
      "time to first token p50/p99 over all requests of all rounds. The engine first runs\n"
      "one -p token prompt as a warm-up (not measured).\n"
      "Memory roofline per level: the bytes one decode step of N streams touched (dense\n"
      "weights once, the union of the experts its tokens routed to, every stream's K/V),\n"
      "measured from the steps' real routes, and the bound that puts on aggregate tok/s at\n"
      "the read bandwidth `bench` measures (taken again before each level); achieved =\n"
      "steady rate / bound.\n"
      "With single-stream levels between the others (--streams 1,8,1,8,1), each level's\n"
      "speedup is also taken over the single streams right beside it, and the medians\n"
      "are printed at the end ('interleaved:'; JSON 'interleaved').\n"
      "Experts run as `serve` runs them: from the pack beside the model when there is\n"
      "one (--no-pack: the GGUF path), --memory-budget for the SSD expert cache, or on\n"
      "workers (--workers / --cluster-config).");
  cmd->add_option("-m,--model", f->model, "SmallThinker GGUF file")->required();
  cmd->add_option("--streams", f->streams,
                  "Comma-separated concurrency levels; they may repeat (1,8,1,8,1,8 interleaves "
                  "them, so a ratio between levels does not ride on a noisy host's slow minute)")
      ->capture_default_str();
  cmd->add_option("-p,--prompt-tokens", f->prompt_tokens, "Prompt tokens per request")
      ->check(CLI::Range(1, 1 << 20))
      ->capture_default_str();
  cmd->add_option("-n,--n-gen", f->gen_tokens, "Tokens generated per request")
      ->check(CLI::Range(2, 1 << 20))
      ->capture_default_str();
  cmd->add_option("-r,--rounds", f->rounds, "Rounds per concurrency level")
      ->check(CLI::Range(1, 1000))
      ->capture_default_str();
  cmd->add_option("-b,--batch-size", f->batch,
                  "Tokens per forward step (as `serve`: prompts that arrive while no request "
                  "is decoding go through in steps this large)")
      ->check(CLI::Range(1, 4096))
      ->capture_default_str();
  cmd->add_option("--prefill-while-decoding", f->prefill_while_decoding,
                  "Prompt tokens per step while any request is decoding (0 = up to -b), as `serve`")
      ->check(CLI::Range(0, 4096))
      ->capture_default_str();
  cmd->add_option("-t,--threads", f->threads, "Kernel threads (0 = all cores)")
      ->check(CLI::Range(0, 1024))
      ->capture_default_str();
  AddCpusFlag(cmd, &f->cpus);
  AddKQuantFlags(cmd, &f->kquant, /*offer_as_q8=*/false);  // as `serve`
  cmd->add_option("--bandwidth-size", f->bandwidth_size, "Buffer for the bandwidth measurement")
      ->type_name("SIZE")
      ->capture_default_str();
  cmd->add_option("-o,--output", f->output, "text or json")
      ->check(CLI::IsMember({"text", "json"}))
      ->capture_default_str();
  AddOffloadFlags(cmd, &f->offload, /*records_stats=*/false);
  AddWorkerFlags(cmd, &f->workers);
  cmd->callback([f] {
    if (absl::Status s = CheckKQuantFlags(f->kquant); !s.ok()) return Fail(s);
    std::vector<int> levels;
    for (absl::string_view s : absl::StrSplit(f->streams, ',')) {
      int n;
      if (!absl::SimpleAtoi(s, &n) || n < 1) {
        return Fail(absl::InvalidArgumentError("bad --streams entry '" + std::string(s) + "'"));
      }
      levels.push_back(n);
    }
    if (const int most = *std::max_element(levels.begin(), levels.end()); most > f->batch) {
      // The engine would run at most -b of them at once (one token each
      // per step) and report the level as if all had.
      return Fail(absl::InvalidArgumentError(absl::StrCat(
          "--streams ", most, " needs -b ", most, " or more: a decode step holds one token per "
          "stream, and -b is ", f->batch)));
    }
    const absl::StatusOr<uint64_t> bw_bytes = BandwidthBytes(f->bandwidth_size);
    if (!bw_bytes.ok()) return Fail(bw_bytes.status());
    auto model = Model::Load(
        f->model, ModelOptions{.threads = f->threads,
                               .cpus = CpusFrom(f->cpus),
                               .max_batch = f->batch,
                               .dense_kquant_as_stored = DenseKQuantAsStored(f->kquant)});
    if (!model.ok()) return Fail(model.status());
    // Measured before every level (as `bench` does once): on a shared machine
    // the bandwidth at hand changes, and the bound should be the one the
    // level ran under.
    auto measure_bandwidth = [&] {
      std::fprintf(stderr, "measuring memory read bandwidth with %d threads...\n",
                   (*model)->pool().num_threads());
      return MeasureReadBandwidth((*model)->pool(), *bw_bytes).median_gbps;
    };
    const int vocab = (*model)->config().vocab_size;
    const int max_streams = *std::max_element(levels.begin(), levels.end());
    const int64_t context = f->prompt_tokens + f->gen_tokens + 1;
    // As `serve` does: workers, or the pack beside the model (its plan
    // reserving KV caches for every stream under --memory-budget).
    f->offload.margin_bytes = kServeMarginBytes;
    auto offload = ApplyOffloadOrWorkers(**model, f->offload, f->workers, context, max_streams);
    if (!offload.ok()) return Fail(offload.status());
    const std::string experts =
        f->workers.any()     ? "workers"
        : *offload == nullptr ? "gguf (in RAM)"
        : f->offload.memory_budget.empty() ? "pack (in RAM)"
                                           : "pack @ " + f->offload.memory_budget;
    if (f->output == "text") {
      std::printf("experts: %s | batch %d, prompt tokens per step while decoding %d\n",
                  experts.c_str(), f->batch, f->prefill_while_decoding);
    }
    // The pack's experts run on the sparse path (only active up/down rows
    // read); the step roofline counts whole experts (model/step_traffic.h).
    const bool sparse_path = !f->workers.any() && *offload != nullptr;
    uint64_t kv_budget = 0;
    if (*offload != nullptr && (*offload)->plan().budget > 0) kv_budget = (*offload)->plan().kv;
    Engine engine(**model, EngineOptions{.parallel = max_streams,
                                         .queue = max_streams,
                                         .context_size = context,
                                         .kv_budget_bytes = kv_budget,
                                         .prefill_while_decoding = f->prefill_while_decoding,
                                         .warmup_tokens = f->prompt_tokens});
    std::vector<Level> results;
    uint64_t salt = 1;
    for (int n : levels) {
      Level lv;
      lv.streams = n;
      lv.bandwidth_gbps = measure_bandwidth();
      std::vector<double> ttfts, tps, steady;
      const ForwardZones z0 = (*model)->forward().zones();
      const DecodeStepCounters c0 = (*model)->forward().decode_steps(n);
      for (int round = 0; round < f->rounds; ++round) {
        std::vector<EngineEvent> pending(n);  // each stream's final event
        std::vector<EngineRequest> requests(n);
        for (EngineRequest& r : requests) {
          for (int t = 0; t < f->prompt_tokens; ++t) {
            r.prompt.push_back(static_cast<int32_t>((salt * 7919 + t * 104729) % vocab));
          }
          ++salt;
          r.options.sampling.temperature = 0;
          r.options.max_tokens = f->gen_tokens;
          r.options.ignore_eos = true;
        }
        // All N at once (one enqueue), so they start in the same step even
        // if this thread is descheduled: submitted one by one on a busy
        // host, the first could finish before the second arrived.
        // Their arrival is t0, the origin of every time below.
        const absl::Time t0 = absl::Now();
        auto submitted = engine.SubmitAll(std::move(requests));
        if (!submitted.ok()) return Fail(submitted.status());
        std::vector<std::unique_ptr<RequestStream>> streams = std::move(*submitted);
        // Decode window: from the first request's first token to the last
        // request's last token; tokens counted are those after each request's
        // first (the first belongs to prefill). With N > 1 that window also
        // holds the prompt steps of the later requests, so the steady rate
        // counts only the span where all N stream (from the last first token
        // to the first last token). Tokens are timed by the end of the step
        // that made them (EngineEvent::time), and this thread blocks on one
        // stream at a time while the others queue their events: it wakes
        // about once per step. (It used to poll every stream each
        // millisecond; on 2 cores those ~1000 wake-ups a second preempted
        // kernel threads and cost the 8-stream steady rate ~20%.)
        double window_lo = 1e30, window_hi = 0;
        int64_t decode_tokens = 0;
        std::vector<std::vector<std::pair<double, int>>> arrivals(streams.size());
        for (size_t i = 0; i < streams.size(); ++i) {
          EngineEvent e;
          while (streams[i]->Next(&e) == RequestStream::Poll::kEvent) {
            if (!e.token_ids.empty()) {
              arrivals[i].push_back({absl::ToDoubleSeconds(e.time - t0),
                                     static_cast<int>(e.token_ids.size())});
            }
            if (!e.done) continue;
            pending[i] = std::move(e);
            break;
          }
        }
        double steady_lo = 0, steady_hi = 1e30;
        for (const auto& a : arrivals) {
          if (a.empty()) continue;
          steady_lo = std::max(steady_lo, a.front().first);
          steady_hi = std::min(steady_hi, a.back().first);
        }
        int64_t steady_tokens = 0;
        for (const auto& a : arrivals) {
          for (const auto& [t, k] : a) steady_tokens += t > steady_lo && t <= steady_hi ? k : 0;
        }
        if (steady_hi > steady_lo) steady.push_back(steady_tokens / (steady_hi - steady_lo));
        for (size_t i = 0; i < streams.size(); ++i) {
          const EngineEvent& e = pending[i];
          if (!e.status.ok()) return Fail(e.status);
          ttfts.push_back(e.usage.ttft_seconds);
          const double t_first = e.usage.queue_seconds + e.usage.prompt_seconds;
          window_lo = std::min(window_lo, t_first);
          window_hi = std::max(window_hi, t_first + e.usage.decode_seconds);
          decode_tokens += e.usage.completion_tokens - 1;
          lv.tokens += e.usage.completion_tokens;
        }
        tps.push_back(decode_tokens / std::max(1e-9, window_hi - window_lo));
      }
      double sum = 0;
      for (double x : tps) sum += x;
      lv.agg_decode_tps = sum / tps.size();
      double steady_sum = 0;
      for (double x : steady) steady_sum += x;
      lv.steady_tps = steady.empty() ? 0 : steady_sum / steady.size();
      lv.per_stream_tps = lv.agg_decode_tps / n;
      lv.ttft_p50 = Percentile(ttfts, 0.5);
      lv.ttft_p99 = Percentile(ttfts, 0.99);
      const ForwardZones& z1 = (*model)->forward().zones();
      lv.zones = {z1.route - z0.route, z1.attention - z0.attention, z1.experts - z0.experts,
                  z1.lm_head - z0.lm_head};
      lv.roof = DecodeStepRoofline((*model)->config(), (*model)->weights(), n,
                                   (*model)->forward().decode_steps(n) - c0, lv.bandwidth_gbps);
      results.push_back(lv);
      if (f->output == "text") {

        std::printf("streams %2d | aggregate decode %8.2f tok/s | per stream %7.2f tok/s | "
                    "speedup %5.2fx | TTFT p50 %7.1f ms p99 %7.1f ms\n",
                    n, lv.agg_decode_tps, lv.per_stream_tps,
                    lv.agg_decode_tps / results.front().agg_decode_tps, lv.ttft_p50 * 1e3,
                    lv.ttft_p99 * 1e3);
        std::printf("           all %d streams decoding: %8.2f tok/s | speedup %5.2fx\n", n,
                    lv.steady_tps, lv.steady_tps / std::max(1e-9, results.front().steady_tps));
        std::printf("           zones: route %.2f s | attention %.2f s | experts %.2f s | "
                    "lm_head %.2f s\n",
                    lv.zones.route, lv.zones.attention, lv.zones.experts, lv.zones.lm_head);
        const StepRoofline& r = lv.roof;
        auto fb = [](double b) { return FormatBytes(static_cast<uint64_t>(b)); };
        std::printf("           roofline: read bandwidth %.2f GB/s | %llu steps of %d | "
                    "%.1f experts/layer | step reads %s "
                    "(dense %s, experts %s, kv %s) = %s/token | bound %.2f tok/s | "
                    "achieved %.0f%% (steady) %.0f%% (step time %.2f tok/s)\n",
                    lv.bandwidth_gbps, static_cast<unsigned long long>(r.steps), n,
                    r.experts_per_layer,
                    fb(r.step_bytes()).c_str(), fb(r.dense_bytes).c_str(),
                    fb(r.expert_bytes).c_str(), fb(r.kv_bytes).c_str(),
                    fb(r.step_bytes() / n).c_str(), r.bound_tps,
                    100 * lv.steady_tps / std::max(1e-9, r.bound_tps),
                    100 * r.step_tps / std::max(1e-9, r.bound_tps), r.step_tps);
        if (sparse_path) {
          std::printf("           (experts counted whole; the pack's sparse ReGLU reads only "
                      "their active up/down rows, so the bound is low and 'achieved' high)\n");
        }
        std::fflush(stdout);
      }
    }
    const std::vector<Interleaved> interleaved = InterleavedRatios(results);
    if (f->output == "text") {
      for (const Interleaved& x : interleaved) {
        auto list = [](const std::vector<double>& v) {
          std::string s;
          for (double r : v) s += absl::StrFormat(" %.2f", r);
          return s;
        };
        std::printf("interleaved: %d streams over the single streams beside them: steady%s "
                    "(median %.2fx) | aggregate%s (median %.2fx)\n",
                    x.streams, list(x.steady).c_str(), Median(x.steady),
                    list(x.aggregate).c_str(), Median(x.aggregate));
      }
    }
    if (f->output == "json") {
      nlohmann::json j = {{"model", f->model},
                          {"experts", experts},
                          {"threads", (*model)->pool().num_threads()},
                          {"prompt_tokens", f->prompt_tokens},
                          {"gen_tokens", f->gen_tokens},
                          {"batch", f->batch},
                          {"prefill_while_decoding", f->prefill_while_decoding},
                          {"rounds", f->rounds},
                          {"levels", nlohmann::json::array()}};
      for (const Level& lv : results) {
        j["levels"].push_back({{"streams", lv.streams},
                               {"aggregate_decode_tokens_per_second", lv.agg_decode_tps},
                               {"per_stream_tokens_per_second", lv.per_stream_tps},
                               {"speedup", lv.agg_decode_tps / results.front().agg_decode_tps},
                               {"steady_decode_tokens_per_second", lv.steady_tps},
                               {"steady_speedup",
                                lv.steady_tps / std::max(1e-9, results.front().steady_tps)},
                               {"ttft_p50_seconds", lv.ttft_p50},
                               {"ttft_p99_seconds", lv.ttft_p99},
                               {"zones_seconds",
                                {{"route", lv.zones.route},
                                 {"attention", lv.zones.attention},
                                 {"experts", lv.zones.experts},
                                 {"lm_head", lv.zones.lm_head}}},
                               {"roofline",
                                {{"read_bandwidth_gbps", lv.bandwidth_gbps},
                                 {"decode_steps", lv.roof.steps},
                                 {"experts_per_layer", lv.roof.experts_per_layer},
                                 {"step_bytes", lv.roof.step_bytes()},
                                 {"dense_bytes", lv.roof.dense_bytes},
                                 {"expert_bytes", lv.roof.expert_bytes},
                                 {"kv_bytes", lv.roof.kv_bytes},
                                 {"bound_tokens_per_second", lv.roof.bound_tps},
                                 {"step_tokens_per_second", lv.roof.step_tps},
                                 {"experts_counted_whole", true},
                                 {"sparse_expert_path", sparse_path},
                                 {"achieved_fraction_steady",
                                  lv.steady_tps / std::max(1e-9, lv.roof.bound_tps)}}}});
      }
      j["interleaved"] = nlohmann::json::array();
      for (const Interleaved& x : interleaved) {
        j["interleaved"].push_back({{"streams", x.streams},
                                    {"steady_speedups", x.steady},
                                    {"steady_speedup_median", Median(x.steady)},
                                    {"aggregate_speedups", x.aggregate},
                                    {"aggregate_speedup_median", Median(x.aggregate)}});
      }
      std::printf("%s\n", j.dump(2).c_str());
    }
  });
}

}  // namespace st::tools
