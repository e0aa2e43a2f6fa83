#include "storage/offload.h"

#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "absl/strings/str_format.h"
#include "common/process_memory.h"
#include "common/progress.h"
#include "common/status_macros.h"
#include "common/units.h"
#include "glog/logging.h"
#include "model/kv_cache.h"

namespace st {
namespace {

bool FileExists(const std::string& path) {
  struct stat st;
  return ::stat(path.c_str(), &st) == 0;
}

// The token embedding as the forward pass uses it: one row per token
// (Forward::Embed), read from the GGUF mapping. Unless the LM head streams
// the same mapping (tied and not packed), its pages are needed only for the
// step that embeds them, so an offloaded run drops them after each step.
struct EmbeddingRows {
  bool rows_only = false;
  uint64_t counted = 0;  // bytes of it the dense part counts
  uint64_t reserve = 0;  // what one step can make resident
  const char* data = nullptr;
  uint64_t bytes = 0;
};

EmbeddingRows EmbeddingRowsOnly(const Model& model) {
  const MatrixRef& e = model.weights().token_embd;
  const MatrixRef& o = model.weights().output;
  const GgufFile& f = model.file();
  EmbeddingRows r;
  r.data = static_cast<const char*>(e.data);
  r.bytes = static_cast<uint64_t>(e.rows) * e.row_bytes();
  const auto* base = reinterpret_cast<const char*>(f.base());
  const bool in_mapping =
      base != nullptr && r.data >= base && r.data + r.bytes <= base + f.file_size();
  const bool tied = o.data == e.data;
  if (!in_mapping || (tied && o.packed == nullptr && o.packed_kquant == nullptr)) return r;
  r.rows_only = true;
  r.counted = tied ? 0 : r.bytes;  // tied and packed: counted as packed_bytes
  // A row can straddle two pages, and a fault maps up to 64 KiB of cached
  // neighbours (fault-around): 64 KiB per token of a batch, plus one.
  r.reserve = std::min<uint64_t>(r.bytes, (model.options().max_batch + 1ull) * (64u << 10));
  return r;
}

}  // namespace

std::string MemoryPlan::Describe() const {
  std::string s;
  auto line = [&](const char* what, uint64_t bytes) {
    absl::StrAppend(&s, absl::StrFormat("  %-44s %12s\n", what, FormatBytes(bytes)));
  };
  if (budget) line("memory budget", budget);
  line("process (code, tokenizer, packed weights)", process);
  line(embedding_reserve ? "mapped dense weights (embedding rows in use)" : "mapped dense weights", dense);
  line("KV cache", kv);
  line("expert scratch (one step's tokens)", scratch);
  line("margin (transient buffers)", margin);
  absl::StrAppend(&s, absl::StrFormat("  %-44s %12s = %d of %d experts x %s, %d pinned, %d preloaded\n",
                                      "expert cache", FormatBytes(cache), slots, total_experts,
                                      FormatBytes(record), pinned, preloaded));
  return s;
}

absl::StatusOr<std::unique_ptr<Offload>> EnableOffload(Model& model, const OffloadOptions& options) {
  const ModelConfig& config = model.config();
  std::string pack_path = options.pack_path;
  if (pack_path.empty() && options.use_pack) {
    const std::string beside = DefaultPackPath(model.path());
    if (FileExists(beside)) pack_path = beside;
  }
  if (pack_path.empty() || !options.use_pack) {
    if (options.memory_budget > 0 && !options.use_pack) {
      return absl::InvalidArgumentError(
          "--memory-budget and --no-pack conflict: a budget caches experts read from the pack");
    }
    if (options.memory_budget > 0) {
      return absl::FailedPreconditionError(absl::StrCat(
          "--memory-budget needs an expert pack beside the model (", DefaultPackPath(model.path()),
          "); create it with: smallthinker convert ", model.path()));
    }
    if (options.use_pack) {  // (with --no-pack the user chose this)
      LOG(WARNING) << "no expert pack beside " << model.path()
                   << ": experts run from the GGUF mapping (dense ReGLU down). `smallthinker "
                      "convert "
                   << model.path() << "` enables SSD offload and sparse ReGLU.";
    }
    return nullptr;
  }
  if (options.memory_budget > 0 && options.source.kind == SourceKind::kMemory) {
    return absl::InvalidArgumentError(
        "--io memory keeps the whole pack in RAM besides the expert cache, so it cannot hold "
        "--memory-budget; use --io auto (io_uring), pread or mmap");
  }
  absl::StatusOr<std::shared_ptr<const ExpertPack>> opened =
      ExpertPack::OpenFor(pack_path, model.file());
  if (absl::IsFailedPrecondition(opened.status()) && options.memory_budget == 0 &&
      options.pack_path.empty()) {
    // A pack only found beside the model that this build cannot use for it
    // (another model's, or an older layout): run from the GGUF, as without
    // one. Asked for by --pack, or needed by a budget, it is an error.
    LOG(WARNING) << opened.status().message() << " (experts run from the GGUF meanwhile)";
    return nullptr;
  }
  ST_ASSIGN_OR_RETURN(std::shared_ptr<const ExpertPack> pack, std::move(opened));
  const PackHeader& h = pack->header();
  if (h.as_stored() && !model.options().native_kquant) {
    const std::string what = absl::StrCat(
        pack_path, " holds the K-quant experts as the model file stores them, which "
        "--kquant-as-q8 does not compute");
    const std::string hint = absl::StrCat(
        "`smallthinker convert --kquant-as-q8 ", model.path(),
        "` writes a Q8_0 pack in its place (with -o PATH elsewhere, for --pack PATH)");
    if (options.memory_budget == 0 && options.pack_path.empty()) {
      // The pack was only found beside the model: run from the GGUF, as
      // without a pack.
      LOG(WARNING) << what << ": experts run from the GGUF instead; " << hint;
      return nullptr;
    }
    return absl::FailedPreconditionError(absl::StrCat(what, "; drop the flag, or ", hint));
  }

  // (Before the plan reads RSS: speculation's router copies count there.
  // Making them read the mapped routers, which the plan counts among the
  // dense weights still to be touched: their pages go back, not counted
  // twice.)
  model.forward().set_speculate(options.speculate);
  if (options.speculate) {
    for (const LayerWeights& w : model.weights().layers) {
      if (model.file().Contains(w.router.data)) {
        model.file().ReleasePages(w.router.data, w.router.rows * w.router.row_bytes());
      }
    }
  }
  MemoryPlan plan;
  plan.budget = options.memory_budget;
  plan.record = h.record_size;
  plan.total_experts = static_cast<int>(h.record_count);
  plan.process = ReadProcessMemory().rss_bytes;
  // Packed copies (DenseWeights::PackForKernels) are resident already and
  // counted in plan.process; the rest of the dense part is still to be touched.
  plan.dense = model.weights().dense_bytes - model.weights().packed_bytes;
  const EmbeddingRows embd = EmbeddingRowsOnly(model);
  if (embd.rows_only) {
    // Only the rows of one step are resident (released after each step):
    // count that, not the whole table (~126 MiB of the 4b's 1 GiB).
    plan.dense = plan.dense - embd.counted + embd.reserve;
    plan.embedding_reserve = embd.reserve;
  }
  plan.kv = KvCache::BytesFor(config, std::min<int64_t>(options.context_tokens, config.context_length),
                              model.options().max_batch, model.options().kv_type) *
            std::max(options.sessions, 1);
  if (options.kv_cap_bytes > 0) plan.kv = std::min(plan.kv, options.kv_cap_bytes);
  plan.margin = options.margin_bytes;
  plan.scratch = CachedExpertExecutor::ScratchBytes(config, model.options().max_batch, h.as_stored());
  if (options.cache_slots > 0) {
    plan.slots = std::min(options.cache_slots, plan.total_experts);
  } else if (plan.budget == 0) {
    plan.slots = plan.total_experts;
  } else {
    const uint64_t fixed = plan.process + plan.dense + plan.kv + plan.scratch + plan.margin;
    const uint64_t left = plan.budget > fixed ? plan.budget - fixed : 0;
    plan.slots = static_cast<int>(std::min<uint64_t>(left / h.record_size, h.record_count));
    const int min_slots = config.top_k;
    if (plan.slots < min_slots) {
      plan.cache = static_cast<uint64_t>(plan.slots) * h.record_size;
      return absl::ResourceExhaustedError(absl::StrCat(
          "memory budget ", FormatBytes(plan.budget), " is too small for this model: ",
          "the expert cache needs at least ", min_slots, " experts (", FormatBytes(min_slots * h.record_size),
          ") after the fixed part, which needs ", FormatBytes(fixed), ".\n", plan.Describe(),
          "Raise --memory-budget, or lower --ctx-size (the KV cache, ", FormatBytes(plan.kv),
          ") or -b (the expert scratch for one step's tokens, ", FormatBytes(plan.scratch),
          ")."));
    }
  }
  plan.cache = static_cast<uint64_t>(plan.slots) * h.record_size;
  if (plan.budget == 0 && options.cache_slots == 0) {
    // No budget: every expert is read into RAM. Refuse up front what cannot
    // fit (a 21b pack is ~11 GB) rather than be killed for memory later.
    // (The KV caches and scratch come on top; --io memory holds a second
    // copy of the pack.)
    const uint64_t need = plan.cache + plan.kv + plan.scratch +
                          (options.source.kind == SourceKind::kMemory ? h.file_size : 0);
    const uint64_t available = AvailableMemoryBytes();
    if (available > 0 && need > available) {
      return absl::ResourceExhaustedError(absl::StrCat(
          "the pack's experts with the KV cache and buffers (", FormatBytes(need),
          ") do not fit the memory available (",
          FormatBytes(available), "), and with no --memory-budget every expert is read into RAM. "
          "Run with --memory-budget (e.g. --memory-budget ",
          absl::StrReplaceAll(FormatBytes(available / 10 * 8 + plan.process), {{" ", ""}}),
          ") to cache a part of them and read "
          "the rest from the pack as needed."));
    }
  }

  ST_ASSIGN_OR_RETURN(std::unique_ptr<ExpertSource> source, OpenExpertSource(pack, options.source));
  const std::string source_name(source->name());
  ST_ASSIGN_OR_RETURN(std::unique_ptr<ExpertCache> cache,
                      ExpertCache::Create(std::move(source), plan.slots));
  cache->set_cycle(config.n_layers * config.top_k);

  auto offload = std::unique_ptr<Offload>(new Offload());
  offload->pack_path_ = pack_path;
  offload->stats_path_ = options.stats_path.empty() ? DefaultStatsPath(pack_path) : options.stats_path;
  offload->fingerprint_ = h.fingerprint;
  offload->saved_counts_.assign(h.record_count, 0);

  const auto t0 = std::chrono::steady_clock::now();
  if (plan.slots == plan.total_experts) {
    // Everything fits: read every expert once, up front, a layer at a time
    // under a progress bar (a 21b pack is ~11 GB: minutes from a cold disk).
    const uint64_t total = static_cast<uint64_t>(plan.total_experts) * h.record_size;
    ProgressBar bar("reading experts", total, /*enabled=*/total >= (uint64_t{256} << 20));
    for (uint32_t l = 0; l < h.n_layers; ++l) {
      std::vector<std::pair<int, int>> layer;
      for (uint32_t e = 0; e < h.n_experts; ++e) layer.emplace_back(l, e);
      ST_RETURN_IF_ERROR(cache->Pin(layer, 0));
      bar.Add(static_cast<uint64_t>(h.n_experts) * h.record_size);
    }
    bar.Finish();
    plan.pinned = plan.slots;
  } else if (options.pin_hot) {
    absl::StatusOr<ExpertStats> stats = LoadExpertStats(offload->stats_path_, h);
    if (stats.ok()) {
      const int n_pin = std::min(
          static_cast<int>(plan.slots * std::clamp(options.pin_fraction, 0.0, 1.0)),
          plan.slots - config.top_k);
      const int n_warm = static_cast<int>(plan.slots * std::clamp(options.preload_fraction, 0.0, 1.0));
      const std::vector<std::pair<int, int>> hot = stats->Hottest(std::max(n_pin, 0) + n_warm);
      const size_t split = std::min<size_t>(hot.size(), std::max(n_pin, 0));
      ST_RETURN_IF_ERROR(cache->Pin({hot.data(), split}, config.top_k));
      plan.pinned = static_cast<int>(split);
      ST_ASSIGN_OR_RETURN(plan.preloaded, cache->Preload({hot.data() + split, hot.size() - split}));
    } else if (!absl::IsNotFound(stats.status())) {
      LOG(WARNING) << "ignoring expert stats: " << stats.status();
    }
  }
  const double load_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  cache->ResetCounters();
  LOG(INFO) << "experts from " << pack_path << " via " << source_name << ": "
            << plan.slots << " of " << plan.total_experts << " cached (" << FormatBytes(plan.cache)
            << "), " << plan.pinned << " pinned, " << plan.preloaded << " preloaded, loaded in " << absl::StrFormat("%.2f", load_s) << " s";
  if (plan.budget > 0) LOG(INFO) << "memory plan:\n" << plan.Describe();
  // Fewer slots than one token's experts: nearly every step reads from the
  // pack (a session-36 docs audit: `serve --memory-budget 1GiB` with its
  // default 4 x 4096-token KV caches left the 4b 48 of 1024 experts, 10% hits
  // and 8 tok/s; 301 slots with one 1024-token cache, 60% and 19 tok/s).
  const int one_token = config.n_layers * config.top_k;
  if (plan.budget > 0 && plan.slots < std::min(one_token, plan.total_experts)) {
    LOG(WARNING) << "the expert cache holds only " << plan.slots << " of " << plan.total_experts
                 << " experts, fewer than one token uses (" << one_token
                 << "): most expert reads will wait for the SSD. The KV caches take "
                 << FormatBytes(plan.kv) << " of the " << FormatBytes(plan.budget)
                 << " budget: lower the context size (or serve's --parallel, or set its "
                    "--kv-budget), or raise --memory-budget";
  }

  offload->plan_ = plan;
  model.WrapExperts([&](std::unique_ptr<ExpertExecutor>) {
    auto exec = std::make_unique<CachedExpertExecutor>(model.config(), std::move(cache), &model.pool());
    offload->executor_ = exec.get();
    return exec;
  });
  if (embd.rows_only && plan.budget > 0) {
    // No readahead around a row's page, and each step's rows released when
    // its layers start (Embed has read them by then; the mapping re-reads a
    // row from the page cache or the file when a later token needs it).
    const GgufFile& file = model.file();
    const uintptr_t page = static_cast<uintptr_t>(sysconf(_SC_PAGESIZE));
    const uintptr_t lo = (reinterpret_cast<uintptr_t>(embd.data) + page - 1) / page * page;
    const uintptr_t hi = (reinterpret_cast<uintptr_t>(embd.data) + embd.bytes) / page * page;
    if (hi > lo) (void)madvise(reinterpret_cast<void*>(lo), hi - lo, MADV_RANDOM);
    offload->executor_->set_step_hook(
        [&file, p = embd.data, n = embd.bytes] { file.ReleasePages(p, n); });
  }
  return offload;
}

absl::Status Offload::SaveStats(const Forward& forward) {
  const std::vector<uint64_t>& counts = forward.routing_counts();
  if (counts.size() != saved_counts_.size()) {
    return absl::InternalError("routing counts do not match the pack's shape");
  }
  const PackHeader& h = executor_->cache().pack().header();
  std::vector<uint64_t> delta(counts.size());
  for (size_t i = 0; i < counts.size(); ++i) {
    // ResetStats() on the forward pass may have zeroed its counts.
    delta[i] = counts[i] >= saved_counts_[i] ? counts[i] - saved_counts_[i] : counts[i];
  }
  absl::Status replaced;
  ST_RETURN_IF_ERROR(AddExpertStats(stats_path_, h, delta, &replaced));
  if (!replaced.ok()) LOG(WARNING) << "replaced expert stats: " << replaced;
  saved_counts_ = counts;
  return absl::OkStatus();
}

}  // namespace st
