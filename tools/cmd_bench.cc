// `smallthinker bench`: prompt processing (ppN) and text generation (tgN)
// speed in llama-bench's vocabulary, next to the machine's memory roofline.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <memory>
#include <numeric>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/units.h"
#include "kernels/memory_bandwidth.h"
#include "model/model.h"
#include "model/session.h"
#include "model/traffic.h"
#include "nlohmann/json.hpp"
#include "tools/commands.h"
#include "tools/sampling_flags.h"

namespace st::tools {
namespace {

double Now() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

struct Stats {
  double mean = 0, sd = 0;
};
Stats MeanSd(const std::vector<double>& v) {
  Stats s;
  if (v.empty()) return s;
  s.mean = std::accumulate(v.begin(), v.end(), 0.0) / v.size();
  double ss = 0;
  for (double x : v) ss += (x - s.mean) * (x - s.mean);
  s.sd = v.size() > 1 ? std::sqrt(ss / (v.size() - 1)) : 0.0;
  return s;
}

std::vector<int32_t> RandomTokens(int n, int vocab, uint32_t seed) {
  std::vector<int32_t> t(n);
  for (int i = 0; i < n; ++i) {
    seed = seed * 1664525u + 1013904223u;
    t[i] = static_cast<int32_t>((seed >> 8) % std::min(vocab, 150000));
  }
  return t;
}

struct TestResult {
  std::string name;  // "pp128", "tg128"
  int n_tokens = 0;
  std::vector<double> tps;  // per repetition
  ForwardZones zones;       // summed over repetitions
  double sample_seconds = 0;
};

// Prompt processing: one batched forward over n tokens in a fresh session.
TestResult RunPrompt(Model& model, int n, int reps) {
  TestResult r{absl::StrCat("pp", n), n};
  for (int i = 0; i < reps; ++i) {
    Session s(model, n + 1);
    model.forward().ResetStats();
    const double t0 = Now();
    auto logits = s.Evaluate(RandomTokens(n, model.config().vocab_size, 17 + i), false);
    const double dt = Now() - t0;
    if (!logits.ok()) {
      std::fprintf(stderr, "pp%d: %s\n", n, logits.status().ToString().c_str());
      continue;
    }
    r.tps.push_back(n / dt);
    const ForwardZones& z = model.forward().zones();
    r.zones.route += z.route, r.zones.attention += z.attention, r.zones.experts += z.experts,
        r.zones.lm_head += z.lm_head;
  }
  return r;
}

// Text generation: n single-token steps (greedy argmax as the sampler).
TestResult RunGenerate(Model& model, int n, int reps) {
  TestResult r{absl::StrCat("tg", n), n};
  for (int i = 0; i < reps; ++i) {
    Session s(model, n + 2);
    auto logits = s.Evaluate({static_cast<int32_t>((1000 + i) % model.config().vocab_size)}, false);
    if (!logits.ok()) {
      std::fprintf(stderr, "tg%d: %s\n", n, logits.status().ToString().c_str());
      continue;
    }
    model.forward().ResetStats();
    double sample = 0;
    const double t0 = Now();
    for (int k = 0; k < n && logits.ok(); ++k) {
      const double ts = Now();
      const int32_t next =
          static_cast<int32_t>(std::max_element(logits->begin(), logits->end()) - logits->begin());
      sample += Now() - ts;
      logits = s.Evaluate({next}, false);
    }
    const double dt = Now() - t0;
    if (!logits.ok()) {
      std::fprintf(stderr, "tg%d: %s\n", n, logits.status().ToString().c_str());
      continue;
    }
    r.tps.push_back(n / dt);
    r.sample_seconds += sample;
    const ForwardZones& z = model.forward().zones();
    r.zones.route += z.route, r.zones.attention += z.attention, r.zones.experts += z.experts,
        r.zones.lm_head += z.lm_head;
  }
  return r;
}

std::string ZoneBreakdown(const TestResult& r) {
  const ForwardZones& z = r.zones;
  const double total = z.route + z.attention + z.experts + z.lm_head + r.sample_seconds;
  if (total <= 0) return "";
  auto pct = [&](double v) { return 100.0 * v / total; };
  return absl::StrFormat("router %.0f%% | attention %.0f%% | experts %.0f%% | lm_head %.0f%% | "
                         "sampling %.0f%%",
                         pct(z.route), pct(z.attention), pct(z.experts), pct(z.lm_head),
                         pct(r.sample_seconds));
}

}  // namespace

void RegisterBench(CLI::App& app) {
  struct Flags {
    std::string model, output = "md";
    std::vector<int> prompt = {128, 512};
    std::vector<int> gen = {128};
    int threads = 0, reps = 3, batch = 512;
    std::string bandwidth_size = "1GiB";
    std::string kv_type = "f16";
  };
  auto f = std::make_shared<Flags>();
  CLI::App* cmd = app.add_subcommand(
      "bench",
      "Measure prompt processing (ppN: N tokens in one batched pass) and text generation\n"
      "(tgN: N decode steps) in tokens/s, mean +- sd over -r repetitions after a warm-up,\n"
      "and the fraction of the memory roofline reached by decode:\n"
      "  roofline = read bandwidth (measured now) / weight bytes read per token.");
  cmd->add_option("-m,--model", f->model, "SmallThinker GGUF file")->required();
  cmd->add_option("-p,--n-prompt", f->prompt, "Prompt sizes (0 to skip)")->capture_default_str();
  cmd->add_option("-n,--n-gen", f->gen, "Generation lengths (0 to skip)")->capture_default_str();
  cmd->add_option("-t,--threads", f->threads, "Threads (0 = all cores)")->capture_default_str();
  cmd->add_option("-r,--repetitions", f->reps, "Repetitions per test")
      ->check(CLI::Range(1, 100))
      ->capture_default_str();
  cmd->add_option("-b,--batch-size", f->batch, "Prompt tokens per forward batch")
      ->check(CLI::Range(1, 4096))
      ->capture_default_str();
  AddKvTypeFlag(cmd, &f->kv_type);
  cmd->add_option("--bandwidth-size", f->bandwidth_size, "Buffer for the bandwidth measurement")
      ->capture_default_str();
  cmd->add_option("-o,--output", f->output, "md | json")
      ->check(CLI::IsMember({"md", "json"}))
      ->capture_default_str();
  cmd->callback([f] {
    const DType kv_type = *ParseKvType(f->kv_type);  // validated by the flag check
    auto model = Model::Load(
        f->model, ModelOptions{.threads = f->threads, .max_batch = f->batch, .kv_type = kv_type});
    if (!model.ok()) {
      std::fprintf(stderr, "error: %s\n", model.status().ToString().c_str());
      ExitCode() = 1;
      return;
    }
    Model& m = **model;
    const ModelConfig& c = m.config();
    const int threads = m.pool().num_threads();
    std::fprintf(stderr, "measuring memory read bandwidth with %d threads...\n", threads);
    auto bw_bytes = ParseByteSize(f->bandwidth_size);
    if (!bw_bytes.ok() || *bw_bytes > (uint64_t{64} << 30)) {
      std::fprintf(stderr, "error: bad --bandwidth-size '%s'\n", f->bandwidth_size.c_str());
      ExitCode() = 2;
      return;
    }
    const BandwidthResult bw = MeasureReadBandwidth(m.pool(), *bw_bytes);
    const DecodeTraffic traffic = DecodeTrafficPerToken(c, m.weights());
    const double roofline = bw.median_gbps * 1e9 / traffic.total();

    std::fprintf(stderr, "warm-up...\n");
    RunGenerate(m, 8, 1);  // touches every dense page; experts as routed
    std::vector<TestResult> results;
    for (int n : f->prompt) {
      if (n > 0) results.push_back(RunPrompt(m, n, f->reps));
    }
    for (int n : f->gen) {
      if (n > 0) results.push_back(RunGenerate(m, n, f->reps));
    }

    const std::string type(DTypeName(c.expert_type));
    const uint64_t size = m.file().file_size();
    if (f->output == "json") {
      nlohmann::json j = {{"model", f->model},
                          {"model_type", type},
                          {"model_size", size},
                          {"threads", threads},
                          {"kv_type", std::string(DTypeName(kv_type))},
                          {"repetitions", f->reps},
                          {"read_bandwidth_gbps", bw.median_gbps},
                          {"bytes_per_token", traffic.total()},
                          {"roofline_tokens_per_second", roofline},
                          {"tests", nlohmann::json::array()}};
      for (const TestResult& r : results) {
        const Stats s = MeanSd(r.tps);
        nlohmann::json t = {{"test", r.name},        {"n_tokens", r.n_tokens},
                            {"avg_ts", s.mean},      {"stddev_ts", s.sd},
                            {"samples_ts", r.tps},   {"zones", ZoneBreakdown(r)}};
        if (r.name.rfind("tg", 0) == 0) t["roofline_fraction"] = s.mean / roofline;
        j["tests"].push_back(t);
      }
      std::printf("%s\n", j.dump(2).c_str());
      return;
    }
    std::printf("| model | size | type | threads | test | t/s | roofline |\n");
    std::printf("| --- | ---: | --- | ---: | --- | ---: | ---: |\n");
    for (const TestResult& r : results) {
      const Stats s = MeanSd(r.tps);
      const bool tg = r.name.rfind("tg", 0) == 0;
      std::printf("| %s | %s | %s | %d | %s | %.2f ± %.2f | %s |\n",
                  c.name.empty() ? "smallthinker" : c.name.c_str(), FormatBytes(size).c_str(),
                  type.c_str(), threads, r.name.c_str(), s.mean, s.sd,
                  tg ? absl::StrFormat("%.0f%%", 100 * s.mean / roofline).c_str() : "");
    }
    std::printf(
        "\nmemory: %.1f GB/s read (median of %d passes, %d threads); decode reads %s per token "
        "(attention %s, router %s, experts %s, lm_head %s) -> roofline %.1f tok/s\n",
        bw.median_gbps, bw.passes, threads, FormatBytes(traffic.total()).c_str(),
        FormatBytes(traffic.attention).c_str(), FormatBytes(traffic.router).c_str(),
        FormatBytes(traffic.experts).c_str(), FormatBytes(traffic.lm_head).c_str(), roofline);
    std::printf("kv cache: %s\n", std::string(DTypeName(kv_type)).c_str());
    for (const TestResult& r : results) {
      std::printf("zones %-6s %s\n", r.name.c_str(), ZoneBreakdown(r).c_str());
    }
  });
}

}  // namespace st::tools
