// `smallthinker bench`: prompt processing (ppN) and text generation (tgN)
// speed in llama-bench's vocabulary, next to the machine's memory roofline.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <memory>
#include <numeric>
#include <optional>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/units.h"
#include "common/process_memory.h"
#include "common/status_macros.h"
#include "expert_worker/worker_server.h"
#include "kernels/argmax.h"
#include "kernels/memory_bandwidth.h"
#include "model/local_expert_executor.h"
#include "model/model.h"
#include "model/session.h"
#include "model/traffic.h"
#include "nlohmann/json.hpp"
#include "storage/pack_verify.h"
#include "tools/bench_stats.h"
#include "tools/commands.h"
#include "tools/sampling_flags.h"
#include "tools/offload_flags.h"
#include "tools/worker_flags.h"

namespace st::tools {
namespace {

// The I/O roofline's pack read bandwidth: the best of 2 x kPackSamples
// samples of kPackSampleRecords records each, kPackSamples before the tests
// and as many (other records) after them, disjoint when the pack holds at
// least 2 x kPackSamples x kPackSampleRecords records, kPackSampleInFlight whole
// records in flight (whatever --io-depth and --io-chunk say: a roofline is
// what the device can do; with 8 in flight and the median, the sample
// (0.4-2 GB/s on this VM's disk) came out below the rate decode itself read
// at (the 4b at 1 GiB read 2.4 GB/s)).
constexpr int kPackSamples = 3;
constexpr uint64_t kPackSampleRecords = 128;
constexpr int kPackSampleInFlight = 32;

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
  std::string name;  // "pp128", "tg128", "tg128 @ d4096" (at a context depth)
  int n_tokens = 0;
  int depth = 0;            // tokens already in the context (-d)
  std::vector<double> tps;  // per repetition
  ForwardZones zones;       // summed over repetitions
  double sample_seconds = 0;
  double wall_seconds = 0;  // summed over repetitions
  nlohmann::json experts;   // cache / sparsity / RSS figures over the repetitions
  // Neurons active in ReGLU, when this process computed experts (not when
  // every expert ran on workers, which do not report it).
  std::optional<double> active_fraction;
  double read_fraction = 1.0;    // up/down rows the expert path read (1 = every row)
  double kv_bytes_per_token = 0;  // tgN: K and V bytes attention read per decode step
};

std::string TestName(const char* kind, int n, int depth) {
  return depth > 0 ? absl::StrCat(kind, n, " @ d", depth) : absl::StrCat(kind, n);
}

// Where the expert executor's statistics live: the offload's cache executor
// or the GGUF-backed local one.
struct ExpertStatsView {
  Offload* offload = nullptr;
  LocalExpertExecutor* local = nullptr;

  void Reset() {
    if (offload != nullptr) offload->executor().ResetStats();
    if (local != nullptr) local->ResetSparsity();
  }
  // Figures since Reset() over `tokens` tokens.
  void Report(TestResult& r, uint64_t tokens) const {
    r.experts = OffloadReport(offload, tokens);
    const FfnSparsity* s = offload != nullptr ? &offload->executor().sparsity()
                           : local != nullptr ? &local->sparsity()
                                              : nullptr;
    if (s != nullptr && s->total_rows > 0) {
      r.active_fraction = s->active_fraction();
      r.read_fraction = s->read_fraction();
    }
    r.experts["active_neuron_fraction"] =
        r.active_fraction ? nlohmann::json(*r.active_fraction) : nlohmann::json(nullptr);
    r.experts["up_down_rows_read_fraction"] = r.read_fraction;
  }
};

// At a context depth every repetition first fills its context (untimed), so
// the figures are taken per repetition, after that fill, and averaged here
// (each repetition times the same number of tokens).
class PerRepetitionStats {
 public:
  explicit PerRepetitionStats(ExpertStatsView& ev) : ev_(ev) {}
  void Begin() { ev_.Reset(); }
  void End(uint64_t tokens) {
    TestResult one;
    ev_.Report(one, tokens);
    reports_.push_back(std::move(one));
  }
  void Report(TestResult& r) const {
    if (reports_.empty()) return;
    r.experts = reports_[0].experts;
    for (auto& [key, value] : r.experts.items()) {
      if (!value.is_number()) continue;
      // Over the repetitions that measured it (the active fraction is null
      // in one whose experts all ran on workers).
      double sum = 0;
      int n = 0;
      for (const TestResult& one : reports_) {
        const auto it = one.experts.find(key);
        if (it == one.experts.end() || !it->is_number()) continue;
        sum += it->get<double>();
        ++n;
      }
      value = sum / n;  // n >= 1: reports_[0] has it
    }
    const nlohmann::json& active = r.experts["active_neuron_fraction"];
    if (active.is_number()) r.active_fraction = active.get<double>();
    r.read_fraction = r.experts["up_down_rows_read_fraction"].get<double>();
  }

 private:
  ExpertStatsView& ev_;
  std::vector<TestResult> reports_;
};

// A session of `context` positions whose first `depth` already hold a
// prompt (random tokens, seed per repetition), filled untimed.
absl::StatusOr<std::unique_ptr<Session>> SessionAtDepth(Model& model, int depth, int64_t context,
                                                        uint32_t seed) {
  auto s = std::make_unique<Session>(model, context);
  if (depth > 0) {
    auto logits = s->Evaluate(RandomTokens(depth, model.config().vocab_size, seed), false);
    if (!logits.ok()) return logits.status();
  }
  return s;
}

// Prompt processing: one batched forward over n tokens in a fresh session.
// At depth d the session already holds d tokens (filled untimed first).
TestResult RunPrompt(Model& model, int n, int depth, int reps, ExpertStatsView& ev) {
  TestResult r{TestName("pp", n, depth), n, depth};
  PerRepetitionStats per_rep(ev);
  if (depth == 0) ev.Reset();
  for (int i = 0; i < reps; ++i) {
    auto s = SessionAtDepth(model, depth, depth + n + 1, 29 + i);
    if (!s.ok()) {
      std::fprintf(stderr, "%s: %s\n", r.name.c_str(), s.status().ToString().c_str());
      continue;
    }
    if (depth > 0) per_rep.Begin();
    model.forward().ResetStats();
    const double t0 = Now();
    auto logits = (*s)->Evaluate(RandomTokens(n, model.config().vocab_size, 17 + i), false);
    const double dt = Now() - t0;
    if (depth > 0) per_rep.End(n);
    if (!logits.ok()) {
      std::fprintf(stderr, "%s: %s\n", r.name.c_str(), logits.status().ToString().c_str());
      continue;
    }
    r.tps.push_back(n / dt);
    r.wall_seconds += dt;
    const ForwardZones& z = model.forward().zones();
    r.zones.route += z.route, r.zones.attention += z.attention, r.zones.experts += z.experts,
        r.zones.lm_head += z.lm_head;
  }
  if (depth > 0) {
    per_rep.Report(r);
  } else {
    ev.Report(r, static_cast<uint64_t>(n) * reps);
  }
  return r;
}

// Text generation: n single-token steps (greedy argmax as the sampler).
// At depth d the one-token prompt follows d tokens (filled untimed first).
TestResult RunGenerate(Model& model, int n, int depth, int reps, ExpertStatsView& ev) {
  TestResult r{TestName("tg", n, depth), n, depth};
  uint64_t tokens = 0, kv_bytes = 0, steps = 0;
  bool first = true;
  PerRepetitionStats per_rep(ev);
  for (int i = 0; i < reps; ++i) {
    auto s = SessionAtDepth(model, depth, depth + n + 2, 31 + i);
    absl::StatusOr<std::vector<float>> logits =
        s.ok() ? (*s)->Evaluate({static_cast<int32_t>((1000 + i) % model.config().vocab_size)}, false)
               : s.status();
    if (!logits.ok()) {
      std::fprintf(stderr, "%s: %s\n", r.name.c_str(), logits.status().ToString().c_str());
      continue;
    }
    model.forward().ResetStats();
    if (depth > 0) {
      per_rep.Begin();
    } else if (first) {
      ev.Reset();  // decode steps only (and later reps' 1-token prompts)
    }
    first = false;
    tokens += n;
    double sample = 0;
    const double t0 = Now();
    for (int k = 0; k < n && logits.ok(); ++k) {
      const double ts = Now();
      const int32_t next = static_cast<int32_t>(Argmax(logits->data(), logits->size()));
      sample += Now() - ts;
      logits = (*s)->Evaluate({next}, false);
    }
    const double dt = Now() - t0;
    if (depth > 0) per_rep.End(n);
    if (!logits.ok()) {
      std::fprintf(stderr, "%s: %s\n", r.name.c_str(), logits.status().ToString().c_str());
      continue;
    }
    const DecodeStepCounters c = model.forward().decode_steps(1);
    kv_bytes += c.kv_bytes;
    steps += c.steps;
    r.tps.push_back(n / dt);
    r.wall_seconds += dt;
    r.sample_seconds += sample;
    const ForwardZones& z = model.forward().zones();
    r.zones.route += z.route, r.zones.attention += z.attention, r.zones.experts += z.experts,
        r.zones.lm_head += z.lm_head;
  }
  if (depth > 0) {
    per_rep.Report(r);
  } else {
    ev.Report(r, tokens);
  }
  r.kv_bytes_per_token = steps > 0 ? static_cast<double>(kv_bytes) / steps : 0;
  return r;
}

// Adds repetition results of the same test: `from`'s into `into`.
void Append(TestResult& into, const TestResult& from) {
  into.tps.insert(into.tps.end(), from.tps.begin(), from.tps.end());
  into.wall_seconds += from.wall_seconds;
  into.sample_seconds += from.sample_seconds;
  into.zones.route += from.zones.route, into.zones.attention += from.zones.attention,
      into.zones.experts += from.zones.experts, into.zones.lm_head += from.zones.lm_head;
  into.experts = from.experts;
  into.active_fraction = from.active_fraction;
  into.read_fraction = from.read_fraction;
  into.kv_bytes_per_token = from.kv_bytes_per_token;
}

// `--vs-local`: tgN on the cluster and on this process alone, repetition by
// repetition in turns (ABBA: local first in even rounds, the cluster first
// in odd ones), each the same one-token prompt and greedy steps, so both
// see the same machine: on a shared host the speed drifts by tens of
// percent within minutes, and separate runs compared that drift as much as
// the two setups. ratios[i] = cluster / local of round i.
struct VsLocal {
  TestResult cluster, local;
  std::vector<double> ratios;
};
VsLocal RunGenerateVsLocal(Model& model, int n, int depth, int reps, RemoteExpertExecutor& remote,
                           ExpertStatsView& cluster_ev, ExpertStatsView& local_ev) {
  VsLocal v;
  v.cluster.name = v.local.name = TestName("tg", n, depth);
  v.cluster.n_tokens = v.local.n_tokens = n;
  v.cluster.depth = v.local.depth = depth;
  auto one = [&](bool local) {
    model.forward().set_experts(local ? remote.kept() : &remote);
    remote.ResetStepClock();
    const TestResult r = RunGenerate(model, n, depth, 1, local ? local_ev : cluster_ev);
    Append(local ? v.local : v.cluster, r);
    return r.tps.empty() ? 0.0 : r.tps[0];
  };
  for (int i = 0; i < reps; ++i) {
    const bool local_first = i % 2 == 0;
    const double a = one(local_first), b = one(!local_first);
    const double local = local_first ? a : b, cluster = local_first ? b : a;
    if (local > 0 && cluster > 0) v.ratios.push_back(cluster / local);
  }
  model.forward().set_experts(&remote);
  return v;
}

std::string ZoneBreakdown(const TestResult& r) {
  const ForwardZones& z = r.zones;
  const double zoned = z.route + z.attention + z.experts + z.lm_head + r.sample_seconds;
  // "other": wall time outside the zones (embedding, session bookkeeping,
  // copying logits out).
  const double total = std::max(zoned, r.wall_seconds);
  if (total <= 0) return "";
  auto pct = [&](double v) { return 100.0 * v / total; };
  return absl::StrFormat("router %.0f%% | attention %.0f%% | experts %.0f%% | lm_head %.0f%% | "
                         "sampling %.0f%% | other %.0f%%",
                         pct(z.route), pct(z.attention), pct(z.experts), pct(z.lm_head),
                         pct(r.sample_seconds), pct(total - zoned));
}

}  // namespace

// Drops the kernel's page cache (needs root), so offloaded runs start cold.
bool DropPageCache() {
  FILE* f = std::fopen("/proc/sys/vm/drop_caches", "w");
  if (f == nullptr) return false;
  const bool ok = std::fputs("3\n", f) >= 0;
  return std::fclose(f) == 0 && ok;
}

// Resets VmHWM to the current RSS (Linux >= 4.0), so the peak reported is the
// engine's, not the bandwidth measurement's buffer.
void ResetPeakRss() {
  if (FILE* f = std::fopen("/proc/self/clear_refs", "w")) {
    std::fputs("5\n", f);
    std::fclose(f);
  }
}

void RegisterBench(CLI::App& app) {
  struct Flags {
    std::string model, output = "md";
    std::vector<int> prompt = {128, 512};
    std::vector<int> gen = {128};
    std::vector<int> depth = {0};
    int threads = 0, reps = 3, batch = 512;
    std::string cpus;
    std::string bandwidth_size = "1GiB";
    std::string kv_type = "f16";
    bool huge_pages = false;
    bool no_repack = false;
    KQuantFlags kquant;
    bool no_drop_caches = false;
    bool vs_local = false;
    OffloadFlags offload;
    WorkerFlags cluster;
  };
  auto f = std::make_shared<Flags>();
  CLI::App* cmd = app.add_subcommand(
      "bench",
      "Measure prompt processing (ppN: N tokens in one batched pass) and text generation\n"
      "(tgN: N decode steps) in tokens/s, mean +- sd over -r repetitions after a warm-up,\n"
      "and the fraction of the limit reached by decode, both measured in the same run:\n"
      "  memory roofline = read bandwidth / weight bytes touched per token (only the\n"
      "                    up/down rows the expert path reads: the active ones on\n"
      "                    the pack's sparse path, all of them from the GGUF)\n"
      "  I/O roofline    = expert pack read bandwidth / bytes read from it per token\n"
      "                    (offloaded runs: --memory-budget)\n"
      "  limit           = the smaller of the two.\n"
      "Offloaded runs also report cache hit rate, bytes read and I/O stall per token and\n"
      "peak RSS; the page cache is dropped first (when run as root).");
  cmd->add_option("-m,--model", f->model, "SmallThinker GGUF file")->required();
  cmd->add_option("-p,--n-prompt", f->prompt, "Prompt sizes, repeatable or comma-separated (0 to skip)")
      ->delimiter(',')
      ->check(CLI::Range(0, 1000000))
      ->capture_default_str();
  cmd->add_option("-n,--n-gen", f->gen, "Generation lengths, repeatable or comma-separated (0 to skip)")
      ->delimiter(',')
      ->check(CLI::Range(0, 1000000))
      ->capture_default_str();
  cmd->add_option("-d,--n-depth", f->depth,
                  "Context depths, repeatable or comma-separated: each test runs after this\n"
                  "many tokens already in the KV cache (filled untimed), as llama-bench's -d;\n"
                  "named e.g. tg128 @ d4096. Decode then reads that many K/V rows per layer,\n"
                  "which the memory roofline counts")
      ->delimiter(',')
      ->check(CLI::Range(0, 1000000))
      ->capture_default_str();
  cmd->add_option("-t,--threads", f->threads, "Threads (0 = all cores)")
      ->check(CLI::Range(0, 1024))
      ->capture_default_str();
  AddCpusFlag(cmd, &f->cpus);
  cmd->add_option("-r,--repetitions", f->reps, "Repetitions per test")
      ->check(CLI::Range(1, 100))
      ->capture_default_str();
  cmd->add_option("-b,--batch-size", f->batch, "Prompt tokens per forward batch")
      ->check(CLI::Range(1, 4096))
      ->capture_default_str();
  AddKvTypeFlag(cmd, &f->kv_type);
  cmd->add_flag("--huge-pages", f->huge_pages,
                "Copy attention, router and LM-head weights into 2 MiB huge pages");
  cmd->add_flag("--no-repack", f->no_repack,
                "Keep Q4_0/Q8_0 attention, router and LM-head weights in the file's row\n"
                "layout (default: re-laid for the 16-row packed kernels at load)");
  AddKQuantFlags(cmd, &f->kquant, /*offer_as_q8=*/true);
  cmd->add_option("--bandwidth-size", f->bandwidth_size, "Buffer for the bandwidth measurement")
      ->type_name("SIZE")
      ->capture_default_str();
  cmd->add_flag("--no-drop-caches", f->no_drop_caches,
                "Keep the page cache before offloaded runs");
  AddOffloadFlags(cmd, &f->offload, /*records_stats=*/false);
  AddWorkerFlags(cmd, &f->cluster);
  cmd->add_flag("--vs-local", f->vs_local,
                "With --workers: time each tgN repetition twice, on the cluster and on this\n"
                "process alone (same model, same tokens), in turns, and print the\n"
                "cluster/local speed ratio (median over the repetitions): the comparison\n"
                "sees one machine state, which separate runs on a shared host do not.\n"
                "The coordinator then holds every expert (the local runs), besides its share");
  cmd->add_option("-o,--output", f->output, "md | json")
      ->check(CLI::IsMember({"md", "json"}))
      ->capture_default_str();
  cmd->callback([f] {
    auto fail = Fail;
    const absl::StatusOr<uint64_t> bw_bytes = BandwidthBytes(f->bandwidth_size);
    if (!bw_bytes.ok()) {
      std::fprintf(stderr, "error: %s\n", std::string(bw_bytes.status().message()).c_str());
      ExitCode() = 2;
      return;
    }
    if (std::all_of(f->prompt.begin(), f->prompt.end(), [](int n) { return n == 0; }) &&
        std::all_of(f->gen.begin(), f->gen.end(), [](int n) { return n == 0; })) {
      return fail(absl::InvalidArgumentError("nothing to measure: every -p and -n is 0"));
    }
    if (f->vs_local && !f->cluster.any()) {
      return fail(absl::InvalidArgumentError("--vs-local compares a cluster with this process: "
                                             "give --workers or --cluster-config"));
    }
    if (f->vs_local && std::all_of(f->gen.begin(), f->gen.end(), [](int n) { return n == 0; })) {
      return fail(absl::InvalidArgumentError("--vs-local times decode: give -n above 0"));
    }
    if (absl::Status s = CheckKQuantFlags(f->kquant); !s.ok()) {
      return fail(s);
    }
    const bool budgeted = !f->offload.memory_budget.empty();
    if (budgeted && !f->no_drop_caches) {
      std::fprintf(stderr, "%s\n", DropPageCache() ? "page cache dropped"
                                                   : "warning: cannot drop the page cache (not root?)");
    }
    const DType kv_type = *ParseKvType(f->kv_type);  // validated by the flag check
    // No step is larger than the longest prompt test or -d fill (decode
    // steps are one token; a fill runs in batches of -b): buffers, and what
    // --memory-budget reserves for them, for that.
    int longest_prompt = 1;
    for (int n : f->prompt) longest_prompt = std::max(longest_prompt, n);
    for (int d : f->depth) longest_prompt = std::max(longest_prompt, d);
    auto model = Model::Load(
        f->model, ModelOptions{.threads = f->threads,
                               .cpus = CpusFrom(f->cpus),
                               .max_batch = std::min(f->batch, longest_prompt),
                               .kv_type = kv_type,
                               .huge_pages = f->huge_pages,
                               .repack = !f->no_repack,
                               .native_kquant = !f->kquant.as_q8,
                               .dense_kquant_as_stored = DenseKQuantAsStored(f->kquant)});
    if (!model.ok()) return fail(model.status());
    Model& m = **model;
    const ModelConfig& c = m.config();
    // ppN needs N positions, tgN N + 1 (its one-token prompt, then N
    // steps), both after the deepest -d.
    const int max_depth = *std::max_element(f->depth.begin(), f->depth.end());
    for (int n : f->prompt) {
      if (n > 0 && static_cast<int64_t>(max_depth) + n > c.context_length) {
        return fail(absl::InvalidArgumentError(absl::StrCat(
            "-p ", n, max_depth > 0 ? absl::StrCat(" at -d ", max_depth) : "",
            " does not fit the model's context of ", c.context_length, " tokens")));
      }
    }
    for (int n : f->gen) {
      if (n > 0 && static_cast<int64_t>(max_depth) + n + 1 > c.context_length) {
        return fail(absl::InvalidArgumentError(absl::StrCat(
            "-n ", n, max_depth > 0 ? absl::StrCat(" at -d ", max_depth) : "",
            " does not fit the model's context of ", c.context_length, " tokens")));
      }
    }
    const int threads = m.pool().num_threads();

    // Limits first (their buffers must not count in the engine's peak RSS).
    std::fprintf(stderr, "measuring memory read bandwidth with %d threads...\n", threads);
    BandwidthResult bw = MeasureReadBandwidth(m.pool(), *bw_bytes);
    int64_t longest = 1;
    for (int n : f->prompt) longest = std::max<int64_t>(longest, n);
    for (int n : f->gen) longest = std::max<int64_t>(longest, n);
    auto offload = ApplyOffloadOrWorkers(m, f->offload, f->cluster, max_depth + longest + 2);
    if (!offload.ok()) return fail(offload.status());
    double ssd_gbps = 0;
    // kPackSamples samples into the best so far; `round` 1 (after the
    // tests) reads records other than round 0's, so neither round is served
    // from what the disk cached of the other.
    auto sample_pack = [&](int round) -> absl::Status {
      ST_ASSIGN_OR_RETURN(std::shared_ptr<const ExpertPack> pack,
                          ExpertPack::Open((*offload)->pack_path()));
      SourceOptions so;
      so.kind = ParseSourceKind(f->offload.io).value_or(SourceKind::kAuto);
      so.queue_depth = kPackSampleInFlight;
      so.read_chunk_bytes = AlignUp(pack->header().record_size, kPackAlignment);
      const uint64_t spacing =
          std::max<uint64_t>(1, pack->header().record_count / kPackSampleRecords);
      for (int i = 0; i < kPackSamples; ++i) {
        const uint64_t first = (round * kPackSamples + i) * spacing / (2 * kPackSamples);
        ST_ASSIGN_OR_RETURN(VerifyResult v,
                            VerifyPack(pack, so, kPackSampleInFlight, kPackSampleRecords, first));
        ssd_gbps = std::max(ssd_gbps, v.gb_per_s());
      }
      return absl::OkStatus();
    };
    const bool sample_io =
        *offload != nullptr && (*offload)->plan().slots < (*offload)->plan().total_experts;
    if (sample_io) {
      std::fprintf(stderr, "measuring expert pack read bandwidth...\n");
      if (absl::Status s = sample_pack(0); !s.ok()) return fail(s);
    }
    ResetPeakRss();
    ExpertStatsView ev{.offload = *offload,
                       .local = dynamic_cast<LocalExpertExecutor*>(&m.experts())};
    DecodeTraffic traffic = DecodeTrafficPerToken(c, m.weights());
    if (ev.local != nullptr) {  // K-quant experts computed as stored: their own bytes
      traffic.experts = static_cast<uint64_t>(c.n_layers) * c.top_k * ev.local->ExpertBytes();
    } else if (*offload != nullptr && (*offload)->executor().cache().pack().header().as_stored()) {
      const PackHeader& ph = (*offload)->executor().cache().pack().header();
      traffic.experts = 0;
      for (int l = 0; l < c.n_layers; ++l) {
        for (int mi = 0; mi < 3; ++mi) traffic.experts += c.top_k * ph.MatrixBytes(l, mi);
      }
    }
    // Bytes touched per token when the expert path reads a fraction `a` of
    // the up and down rows: gate rows always; up and down rows only where
    // active on the pack's sparse path, every row on the GGUF path (its
    // packed kernels compute them all).
    auto touched = [&](double a) {
      return traffic.total() - traffic.experts + traffic.experts * (1.0 + 2.0 * a) / 3.0;
    };
    auto limits = [&](const TestResult& r) {
      const double mem = bw.median_gbps * 1e9 / (touched(r.read_fraction) + r.kv_bytes_per_token);
      const double missed = r.experts.value("bytes_read_per_token", 0.0);
      const double io = missed > 0 && ssd_gbps > 0 ? ssd_gbps * 1e9 / missed : 0.0;
      return std::tuple{mem, io, io > 0 ? std::min(mem, io) : mem};
    };

    std::fprintf(stderr, "warm-up...\n");
    RunGenerate(m, 8, 0, 1, ev);  // touches every dense page; experts as routed
    auto* remote = dynamic_cast<RemoteExpertExecutor*>(&m.experts());
    ExpertStatsView local_ev;
    if (f->vs_local) {
      if (remote == nullptr || remote->kept() == nullptr) {
        return fail(absl::InternalError("--vs-local: no local expert executor to compare with"));
      }
      // The local executor packs every expert stack at its first step
      // (mapped_repack.h): in this warm-up, so no repetition pays for it.
      local_ev.local = dynamic_cast<LocalExpertExecutor*>(remote->kept());
      m.forward().set_experts(remote->kept());
      RunGenerate(m, 8, 0, 1, local_ev);
      m.forward().set_experts(remote);
    }
    std::vector<TestResult> results;
    std::vector<VsLocal> vs;
    for (int d : f->depth) {
      for (int n : f->prompt) {
        if (n > 0) results.push_back(RunPrompt(m, n, d, f->reps, ev));
      }
    }
    for (int d : f->depth) {
      for (int n : f->gen) {
        if (n <= 0) continue;
        if (f->vs_local) {
          vs.push_back(RunGenerateVsLocal(m, n, d, f->reps, *remote, ev, local_ev));
          results.push_back(vs.back().cluster);
        } else {
          results.push_back(RunGenerate(m, n, d, f->reps, ev));
        }
      }
    }
    auto check_reps = [&](const TestResult& r, const char* which) {  // errors were printed
      if (static_cast<int>(r.tps.size()) < f->reps) {
        std::fprintf(stderr, "error: %d of %d %srepetitions of %s failed\n",
                     f->reps - static_cast<int>(r.tps.size()), f->reps, which, r.name.c_str());
        ExitCode() = 1;
      }
    };
    for (const TestResult& r : results) check_reps(r, "");
    for (const VsLocal& v : vs) check_reps(v.local, "local ");
    const uint64_t peak_rss = ReadProcessMemory().peak_rss_bytes;
    // Once more after the tests (the peak RSS is taken): on a shared host a
    // neighbour can halve one measurement (22.5 against 43-47 GB/s minutes
    // apart here), and a low figure makes the roofline fraction pass 100%.
    // The machine's bandwidth is the better of the two medians.
    std::fprintf(stderr, "measuring memory read bandwidth again...\n");
    const BandwidthResult bw_after = MeasureReadBandwidth(m.pool(), *bw_bytes);
    if (bw_after.median_gbps > bw.median_gbps) bw = bw_after;
    // The disk swings too (1.3-2.2 GB/s samples minutes apart here): the
    // I/O roofline takes the best of both rounds.
    if (sample_io) {
      // Decode read records through the page cache too (--io mmap or
      // pread): drop them again, as before the tests.
      if (budgeted && !f->no_drop_caches) (void)DropPageCache();
      std::fprintf(stderr, "measuring expert pack read bandwidth again...\n");
      if (absl::Status s = sample_pack(1); !s.ok()) return fail(s);
    }

    PrintClusterSummary(m);
    // The experts' computed type: a K-quant file's formats where they are
    // computed as stored.
    const std::string native =
        ev.local != nullptr ? ev.local->NativeFormats()
        : *offload != nullptr && (*offload)->executor().cache().pack().header().as_stored()
            ? (*offload)->executor().cache().pack().header().TypeNames()
            : "";
    const std::string type = native.empty() ? std::string(DTypeName(c.expert_type)) : native;
    const uint64_t size = m.file().file_size();
    const std::string where =
        remote != nullptr ? absl::StrCat("gguf + ", remote->stats().workers_up, " worker(s)")
        : *offload == nullptr ? "gguf (in RAM)"
        : budgeted            ? absl::StrCat("pack @ ", f->offload.memory_budget)
                              : "pack (in RAM)";
    if (f->output == "json") {
      nlohmann::json j = {{"model", f->model},
                          {"model_type", type},
                          {"model_size", size},
                          {"experts", where},
                          {"threads", threads},
                          {"kv_type", std::string(DTypeName(kv_type))},
                          {"isa", DispatchedIsa()},
                          {"repetitions", f->reps},
                          {"read_bandwidth_gbps", bw.median_gbps},
                          {"read_bandwidth_huge_page_bytes", bw.huge_page_bytes},
                          {"pack_read_bandwidth_gbps", ssd_gbps},
                          // Weights with every expert row; each tg test's
                          // bytes_per_token is its roofline's denominator.
                          {"weight_bytes_per_token_every_row", traffic.total()},
                          {"peak_rss_bytes", peak_rss},
                          {"tests", nlohmann::json::array()}};
      for (const TestResult& r : results) {
        const Stats s = MeanSd(r.tps);
        nlohmann::json t = {{"test", r.name},      {"n_tokens", r.n_tokens}, {"n_depth", r.depth},
                            {"avg_ts", s.mean},    {"stddev_ts", s.sd},
                            {"samples_ts", r.tps}, {"zones", ZoneBreakdown(r)},
                            {"experts", r.experts}};
        if (r.name.rfind("tg", 0) == 0) {
          const auto [mem, io, limit] = limits(r);
          t["memory_roofline_ts"] = mem;
          t["io_roofline_ts"] = io;
          t["roofline_fraction"] = s.mean / limit;
          t["kv_bytes_per_token"] = r.kv_bytes_per_token;
          // What memory_roofline_ts divides the bandwidth by: the weights
          // with the up/down rows this test read, and its K/V reads.
          t["bytes_per_token"] = touched(r.read_fraction) + r.kv_bytes_per_token;
          t["up_down_rows_read_fraction"] = r.read_fraction;
        }
        j["tests"].push_back(t);
      }
      if (nlohmann::json cj = ClusterJson(m); !cj.is_null()) j["cluster"] = cj;
      for (const VsLocal& v : vs) {
        j["vs_local"].push_back({{"test", v.cluster.name},
                                 {"cluster_ts", v.cluster.tps},
                                 {"local_ts", v.local.tps},
                                 {"ratios", v.ratios},
                                 {"median_ratio", Median(v.ratios)},
                                 {"local_zones", ZoneBreakdown(v.local)}});
      }
      std::printf("%s\n", j.dump(2).c_str());
      return;
    }
    std::printf("| model | type | experts | threads | test | t/s | limit | of limit | hit rate | read/token | stall/token |\n");
    std::printf("| --- | --- | --- | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: |\n");
    for (const TestResult& r : results) {
      const Stats s = MeanSd(r.tps);
      const bool tg = r.name.rfind("tg", 0) == 0;
      const auto [mem, io, limit] = limits(r);
      const bool cached = r.experts.contains("cache_hit_rate");
      std::printf(
          "| %s | %s | %s | %d | %s | %.2f ± %.2f | %s | %s | %s | %s | %s |\n",
          c.name.empty() ? "smallthinker" : c.name.c_str(), type.c_str(), where.c_str(), threads,
          r.name.c_str(), s.mean, s.sd, tg ? absl::StrFormat("%.1f", limit).c_str() : "",
          tg ? absl::StrFormat("%.0f%%", 100 * s.mean / limit).c_str() : "",
          cached ? absl::StrFormat("%.1f%%", 100 * r.experts["cache_hit_rate"].get<double>()).c_str() : "",
          cached ? FormatBytes(static_cast<uint64_t>(r.experts["bytes_read_per_token"].get<double>())).c_str() : "",
          cached ? absl::StrFormat("%.2f ms", r.experts["io_stall_ms_per_token"].get<double>()).c_str() : "");
    }
    for (const VsLocal& v : vs) {
      const TestResult& r = v.local;
      const Stats s = MeanSd(r.tps);
      const auto [mem, io, limit] = limits(r);
      std::printf("| %s | %s | gguf (in RAM), alone | %d | %s | %.2f ± %.2f | %.1f | %.0f%% |  |  |  |\n",
                  c.name.empty() ? "smallthinker" : c.name.c_str(), type.c_str(), threads,
                  r.name.c_str(), s.mean, s.sd, limit, 100 * s.mean / limit);
    }
    for (const VsLocal& v : vs) {
      std::string each;
      for (double x : v.ratios) absl::StrAppend(&each, each.empty() ? "" : ", ", absl::StrFormat("%.1f%%", 100 * x));
      std::printf("\nvs local: %s on the cluster / alone, in turns: median %.1f%% over %zu rounds (%s)\n",
                  v.cluster.name.c_str(), 100 * Median(v.ratios), v.ratios.size(), each.c_str());
    }
    std::printf("\nmemory: %.1f GB/s read (better of two medians of %d passes, before and after the "
                "tests, %d threads, %s of %s in 2 MiB pages); decode touches %s of weights per "
                "token with every expert row (attention %s, router %s, experts %s, lm_head %s), "
                "plus the K/V rows it reads (per test below)\n",
                bw.median_gbps, bw.passes, threads, FormatBytes(bw.huge_page_bytes).c_str(),
                FormatBytes(bw.bytes).c_str(), FormatBytes(traffic.total()).c_str(),
                FormatBytes(traffic.attention).c_str(), FormatBytes(traffic.router).c_str(),
                FormatBytes(traffic.experts).c_str(), FormatBytes(traffic.lm_head).c_str());
    if (ssd_gbps > 0) {
      std::printf("expert pack: %.2f GB/s read (best of %d samples of %d records, %d in flight, "
                  "before and after the tests)\n",
                  ssd_gbps, 2 * kPackSamples, static_cast<int>(kPackSampleRecords),
                  kPackSampleInFlight);
    }
    std::printf("peak RSS: %s\n", FormatBytes(peak_rss).c_str());
    std::printf("kv cache: %s\n", std::string(DTypeName(kv_type)).c_str());
    std::printf("kernels: %s\n", DispatchedIsa().c_str());
    for (const TestResult& r : results) {
      const auto [mem, io, limit] = limits(r);
      const std::string speculation = FormatSpeculation(r.experts);
      std::printf("%-6s active neurons %s, up/down rows read %.1f%%%s | memory roofline %.1f t/s%s%s | zones: %s\n",
                  r.name.c_str(),
                  r.active_fraction
                      ? absl::StrFormat("%.1f%%", 100 * *r.active_fraction).c_str()
                      : "n/a (experts on workers)",
                  100 * r.read_fraction,
                  r.kv_bytes_per_token > 0
                      ? absl::StrCat(", K/V read ", FormatBytes(static_cast<uint64_t>(r.kv_bytes_per_token)), "/token").c_str()
                      : "",
                  mem,
                  io > 0 ? absl::StrFormat(" | I/O roofline %.1f t/s", io).c_str() : "",
                  speculation.c_str(), ZoneBreakdown(r).c_str());
    }
  });
}

}  // namespace st::tools
