// Sampling and generation flags shared by `run` and `chat`.
#pragma once

#include <string>
#include <vector>

#include <cstdio>
#include <memory>
#include <optional>

#include "CLI/CLI.hpp"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "common/status_macros.h"
#include "model/kv_cache.h"
#include "model/model.h"
#include "model/sampler.h"
#include "model/session.h"
#include "tools/commands.h"
#include "tools/cpus_flag.h"
#include "tools/worker_flags.h"

namespace st::tools {

// How K-quant files' tensors are computed (AddKQuantFlags).
struct KQuantFlags {
  bool as_q8 = false;            // --kquant-as-q8: every K-quant as Q8_0
  bool dense_as_q8 = false;      // --kquant-dense-as-q8: dense ones as Q8_0
  bool dense_as_stored = false;  // --kquant-dense-as-stored (on any CPU)
};

// ModelOptions::dense_kquant_as_stored from the flags: given, or the
// CPU's choice.
inline std::optional<bool> DenseKQuantAsStored(const KQuantFlags& f) {
  if (f.dense_as_q8) return false;
  if (f.dense_as_stored) return true;
  return std::nullopt;
}

struct GenerationFlags {
  std::string model;
  int threads = 0;
  std::string cpus;  // --cpus
  int64_t ctx_size = 4096;
  int batch = 64;
  int max_tokens = 256;
  std::string kv_type = "f16";
  bool huge_pages = false;
  bool no_repack = false;
  KQuantFlags kquant;
  GenerateOptions generate;
  WorkerFlags cluster;
};

// Adds --kv-type (KV cache element type: f16, bf16 or f32).
inline void AddKvTypeFlag(CLI::App* cmd, std::string* kv_type) {
  cmd->add_option("--kv-type", *kv_type, "KV cache element type: f16, bf16 or f32")
      ->check(CLI::IsMember({"f16", "bf16", "f32"}, CLI::ignore_case))
      ->capture_default_str();
}

// Adds -m, -t, -c, -b, --kv-type, -n and the sampling flags (llama.cpp spelling).
// --kquant-as-q8 (when offer_as_q8), --kquant-dense-as-q8 and
// --kquant-dense-as-stored, with their help.
inline void AddKQuantFlags(CLI::App* cmd, KQuantFlags* f, bool offer_as_q8) {
  if (offer_as_q8) {
    cmd->add_flag("--kquant-as-q8", f->as_q8,
                  "Compute every Q4_K/Q6_K tensor (K-quant files) as Q8_0: experts converted\n"
                  "in RAM on first use (1.76x their file size), attention and LM head at\n"
                  "load; by default all of them are computed as the file stores them");
  }
  cmd->add_flag("--kquant-dense-as-q8", f->dense_as_q8,
                "Convert Q4_K/Q6_K attention and LM-head weights to Q8_0 at load instead\n"
                "of computing them as stored (~5% more memory for a Q4_K_M). Default: as\n"
                "stored where the CPU has AVX2 or AVX-512 (packed K-quant kernels, faster\n"
                "than Q8_0), converted elsewhere");
  cmd->add_flag("--kquant-dense-as-stored", f->dense_as_stored,
                "Compute them as stored on any CPU (less memory; without AVX2 ~9%\n"
                "slower decode than converted)");
}

inline void AddGenerationFlags(CLI::App* cmd, GenerationFlags* f) {
  cmd->add_option("-m,--model", f->model, "SmallThinker GGUF file")->required();
  cmd->add_option("-t,--threads", f->threads, "Kernel threads (0 = all cores)")
      ->check(CLI::Range(0, 1024))
      ->capture_default_str();
  AddCpusFlag(cmd, &f->cpus);
  cmd->add_option("-c,--ctx-size,--ctx", f->ctx_size,
                  "Context size in tokens (KV cache; capped at the model's context length)")
      ->check(CLI::Range(int64_t{1}, int64_t{1} << 30))
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
  cmd->add_option("-n,--n-predict", f->max_tokens,
                  "Maximum tokens to generate (0 or -1: until the context is full)")
      ->check(CLI::Range(-1, 1 << 30))
      ->capture_default_str();
  SamplingParams& s = f->generate.sampling;
  cmd->add_option("--temp", s.temperature, "Temperature; 0 = greedy")->capture_default_str();
  cmd->add_option("--top-k", s.top_k, "Top-k (0 = off)")->capture_default_str();
  cmd->add_option("--top-p", s.top_p, "Top-p / nucleus (1 = off)")->capture_default_str();
  cmd->add_option("--min-p", s.min_p, "Min-p (0 = off)")->capture_default_str();
  cmd->add_option("--repeat-penalty", s.repeat_penalty, "Repetition penalty (1 = off)")
      ->capture_default_str();
  cmd->add_option("--repeat-last-n", s.repeat_last_n,
                  "Tokens considered by penalties (-1 = the whole history)")
      ->capture_default_str();
  cmd->add_option("--presence-penalty", s.presence_penalty, "OpenAI presence penalty")
      ->capture_default_str();
  cmd->add_option("--frequency-penalty", s.frequency_penalty, "OpenAI frequency penalty")
      ->capture_default_str();
  // Any 64-bit seed (run --json prints drawn ones); negative (llama.cpp's
  // -1) = random, as 0. Parsed here: CLI11 2.1 clamps out-of-range integers.
  cmd->add_option_function<std::string>(
         "-s,--seed",
         [&s](const std::string& v) {
           int64_t negative = 0;
           if (!v.empty() && v[0] == '-' && absl::SimpleAtoi(v, &negative)) {
             s.seed = 0;
           } else if (!absl::SimpleAtoi(v, &s.seed)) {
             throw CLI::ValidationError("--seed", "'" + v + "' is not a 64-bit integer");
           }
         },
         "Sampling seed (0 or -1 = random)")
      ->type_name("INT")
      ->default_str("0");
  cmd->add_option("--stop", f->generate.stop, "Stop string (repeatable)");
  cmd->add_flag("--ignore-eos", f->generate.ignore_eos, "Do not stop at end-of-generation tokens");
  AddWorkerFlags(cmd, &f->cluster);
}

// Prints "error: CODE: message" (no status payloads) and sets the exit code 1.
inline void Fail(const absl::Status& status) {
  std::fprintf(stderr, "error: %s: %s\n", absl::StatusCodeToString(status.code()).c_str(),
               std::string(status.message()).c_str());
  ExitCode() = 1;
}

// --kquant-as-q8 and --kquant-dense-as-q8 convert K-quants,
// --kquant-dense-as-stored computes them as stored: not both.
inline absl::Status CheckKQuantFlags(const KQuantFlags& f) {
  if ((f.as_q8 || f.dense_as_q8) && f.dense_as_stored) {
    return absl::InvalidArgumentError(absl::StrCat(
        "--kquant-dense-as-stored computes K-quants as stored and ",
        f.as_q8 ? "--kquant-as-q8" : "--kquant-dense-as-q8",
        " converts them to Q8_0: give one of them"));
  }
  return absl::OkStatus();
}

// The sampling flags checked as flags (a bad --temp had failed every chat
// turn, after the model had loaded, and chat exited 0).
inline absl::Status CheckSamplingFlags(const SamplingParams& s) {
  const absl::Status status = ValidateSamplingParams(s);
  if (status.ok()) return status;
  return absl::InvalidArgumentError(absl::StrReplaceAll(
      status.message(), {{"sampling parameter temperature", "--temp"},
                         {"sampling parameter top_p", "--top-p"},
                         {"sampling parameter min_p", "--min-p"},
                         {"sampling parameter repeat_penalty", "--repeat-penalty"},
                         {"sampling parameter repeat_last_n", "--repeat-last-n"},
                         {"sampling parameter presence_penalty", "--presence-penalty"},
                         {"sampling parameter frequency_penalty", "--frequency-penalty"}}));
}

// Checks the sampling flags, then loads the model.
inline absl::StatusOr<std::unique_ptr<Model>> LoadModel(const GenerationFlags& f) {
  ST_RETURN_IF_ERROR(CheckSamplingFlags(f.generate.sampling));
  ST_RETURN_IF_ERROR(CheckKQuantFlags(f.kquant));
  ST_ASSIGN_OR_RETURN(const DType kv_type, ParseKvType(f.kv_type));
  return Model::Load(f.model,
                     ModelOptions{.threads = f.threads,
                                  .cpus = CpusFrom(f.cpus),
                                  .max_batch = f.batch,
                                  .kv_type = kv_type,
                                  .huge_pages = f.huge_pages,
                                  .repack = !f.no_repack,
                                  .native_kquant = !f.kquant.as_q8,
                                  .dense_kquant_as_stored = DenseKQuantAsStored(f.kquant)});
}

// The generate options the flags describe.
inline GenerateOptions GenerateOptionsFrom(const GenerationFlags& f) {
  GenerateOptions o = f.generate;
  o.max_tokens = f.max_tokens;
  return o;
}

}  // namespace st::tools
