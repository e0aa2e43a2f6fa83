// A loaded SmallThinker model: the mapped GGUF, its config, dense weights,
// tokenizer, expert executor and the thread pool its kernels use.
#pragma once

#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "common/thread_pool.h"
#include "kernels/dtype.h"
#include "model/config.h"
#include "model/expert_executor.h"
#include "model/forward.h"
#include "model/gguf.h"
#include "model/tokenizer.h"
#include "model/weights.h"

namespace st {

struct ModelOptions {
  int threads = 0;       // kernel threads; 0 = all cores (or one per entry of cpus)
  // Pin the kernel threads (ThreadPool: the forward thread to cpus[0], pool
  // thread i to cpus[i]); empty = not pinned.
  std::vector<int> cpus;
  int max_batch = 64;    // tokens per forward batch during prefill
  DType kv_type = DType::kF16;  // KV cache elements of sessions: kF16, kBF16 or kF32
  // Copy the per-token dense matrices (attention, router, LM head) that
  // `repack` did not pack into 2 MiB-aligned MADV_HUGEPAGE memory (fewer TLB
  // misses; costs their RSS twice while copying). Off until measured on a
  // quiet machine.
  bool huge_pages = false;
  // Re-lay the Q4_0/Q8_0 attention, router and LM-head matrices for the
  // 16-row packed kernels (DenseWeights::PackForKernels) and, on first use,
  // the experts' gate and non-transposed down (model/mapped_repack.h,
  // process-wide): same bytes, faster mat-vec and mat-mat; results within
  // float rounding of the row layout.
  bool repack = true;
  // Compute experts stored in Q4_K or Q6_K (a K-quant file's) in their own
  // bytes, in rows (kernels/kquant_dot.h), rather than converted to Q8_0 on
  // first use: no copy, and fewer bytes per token (model/mapped_repack.h,
  // process-wide).
  bool native_kquant = true;
  // Also compute dense matrices stored in Q4_K or Q6_K (a K-quant file's
  // attention and LM head) as stored, rather than converted to Q8_0 at load
  // (model/weights.h): ~130 MiB less for a 4b Q4_K_M, so a memory budget
  // caches more experts. Unset: as stored where this CPU has the 16-row
  // packed K-quant kernel (kernels/packed_kquant.h CanPackKQuant: AVX2 or
  // AVX-512), with which a 4b Q4_K_M decoded 10-18% faster in RAM (session
  // 29), and converted elsewhere (Arm), where the row kernels were ~9%
  // slower than Q8_0 (session 28). Only with native_kquant (off, every K-quant is converted).
  std::optional<bool> dense_kquant_as_stored;
};

// Thread-compatible: one forward pass at a time (a Session uses it).
class Model {
 public:
  // Opens and validates the GGUF; experts run locally from the mapping.
  static absl::StatusOr<std::unique_ptr<Model>> Load(const std::string& path,
                                                     const ModelOptions& options);

  const std::string& path() const { return path_; }
  const ModelConfig& config() const { return config_; }
  const GgufFile& file() const { return *file_; }
  const DenseWeights& weights() const { return weights_; }
  const Tokenizer& tokenizer() const { return *tokenizer_; }
  ThreadPool& pool() { return *pool_; }
  Forward& forward() { return *forward_; }
  const ModelOptions& options() const { return options_; }
  ExpertExecutor& experts() { return *experts_; }

  // Replaces the expert executor (e.g. with one that sends work to remote
  // workers and falls back to the local one). `wrap` receives the current
  // executor and returns its replacement; the next forward call uses it.
  void WrapExperts(
      const std::function<std::unique_ptr<ExpertExecutor>(std::unique_ptr<ExpertExecutor>)>& wrap);

  // Keeps `object` alive as long as the model (bookkeeping that layers above
  // model/ attach to it, e.g. the expert offload's plan and statistics).
  void Adopt(std::shared_ptr<void> object) { adopted_.push_back(std::move(object)); }

 private:
  Model() = default;

  ModelOptions options_;
  std::string path_;
  std::unique_ptr<GgufFile> file_;
  ModelConfig config_;
  DenseWeights weights_;
  std::unique_ptr<Tokenizer> tokenizer_;
  std::unique_ptr<ThreadPool> pool_;
  std::unique_ptr<ExpertExecutor> experts_;
  std::unique_ptr<Forward> forward_;
  // Declared last: destroyed first, while the executor they may point to lives.
  std::vector<std::shared_ptr<void>> adopted_;
};

}  // namespace st
