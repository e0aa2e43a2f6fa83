#include "model/synth.h"

#include <unistd.h>

#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <functional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "common/output_path.h"
#include "common/progress.h"
#include "common/status_macros.h"
#include "common/temp_file_guard.h"
#include "common/thread_pool.h"
#include "kernels/quant.h"
#include "kernels/ggml_storage.h"
#include "model/gguf.h"
#include "model/synth_quant.h"
#include "model/tensor_names.h"
#include "model/tokenizer_data.h"

namespace st {
namespace {

// Deterministic, order-independent random numbers: every tensor row gets its
// own stream from (seed, tensor name, row).
uint64_t SplitMix(uint64_t& s) {
  uint64_t z = (s += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}
uint64_t HashName(std::string_view s, uint64_t seed) {
  uint64_t h = seed ^ 0xCBF29CE484222325ull;
  for (char c : s) h = (h ^ static_cast<uint8_t>(c)) * 0x100000001B3ull;
  return h;
}
// Uniform in [-1, 1) scaled by sqrt(3) so the standard deviation is 1.
float UnitNoise(uint64_t& s) {
  return static_cast<float>((SplitMix(s) >> 40) * (2.0 / 16777216.0) - 1.0) * 1.7320508f;
}

uint32_t FileType(DType t) {
  switch (t) {
    case DType::kF32: return 0;
    case DType::kF16: return 1;
    case DType::kQ4_0: return 2;
    case DType::kQ8_0: return 7;
    case DType::kBF16: return 32;
  }
  return 0;
}

// llama.cpp's use_more_bits (llama-quant.cpp): the first and last eighth
// of the layers and every third one between them.
bool UseMoreBits(int layer, int n_layers) {
  return layer < n_layers / 8 || layer >= 7 * n_layers / 8 || (layer - n_layers / 8) % 3 == 2;
}

// The ggml type a tensor gets: o.type, or the mix's choice, as llama.cpp's
// quantizer makes it for Q4_K_M (llama_tensor_get_type) in a model with
// other than 8 experts (SmallThinker's 32 and 64; exactly 8 has rules of its
// own): Q4_K everywhere, Q6_K for the LM head (and so for a tied embedding)
// and, in use_more_bits layers, for attn_v and ffn_down; a row that is no
// whole number of 256-blocks falls back as llama.cpp's does (Q4_K -> Q5_0,
// Q6_K -> Q8_0).
uint32_t TensorType(const SynthOptions& o, std::string_view name, int layer, uint64_t row_len) {
  if (o.mix == SynthMix::kNone) return static_cast<uint32_t>(o.type);
  namespace tn = tensor_names;
  const bool more_bits = layer >= 0 && UseMoreBits(layer, o.spec.n_layers) &&
                         (name == tn::Blk(layer, tn::kAttnV) || name == tn::Blk(layer, tn::kDownExps));
  const bool q6 = name == tn::kOutput || (o.spec.tied_output && name == tn::kTokenEmbd) ||
                  more_bits;
  if (row_len % 256 != 0) return q6 ? static_cast<uint32_t>(DType::kQ8_0) : kGgmlQ5_0;
  return q6 ? kGgmlQ6_K : kGgmlQ4_K;
}

// How one tensor's values are made: row r, column c -> value.
struct TensorPlan {
  std::string name;
  uint32_t type;             // ggml type id (model/synth_quant.h)
  std::vector<uint64_t> ne;  // ggml order
  std::function<void(uint64_t row, float* out)> fill;  // writes ne[0] floats
};

TokenizerData ByteLevelFallback(size_t pad_to) {
  // GPT-2 byte -> unicode table: printable bytes map to themselves, the rest
  // to U+0100 + n in increasing byte order.
  TokenizerData d;
  int n = 0;
  for (int b = 0; b < 256; ++b) {
    const bool keep = (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174);
    const uint32_t cp = keep ? b : 256 + n++;
    std::string s;
    if (cp < 0x80) {
      s.push_back(static_cast<char>(cp));
    } else {
      s.push_back(static_cast<char>(0xC0 | (cp >> 6)));
      s.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
    }
    d.tokens.push_back(s);
    d.token_types.push_back(1);
  }
  for (const char* special : {"<|endoftext|>", "<|im_start|>", "<|im_end|>"}) {
    d.tokens.push_back(special);
    d.token_types.push_back(3);
  }
  d.bos_id = d.pad_id = 256;
  d.eos_id = 258;
  while (d.tokens.size() < pad_to) {
    d.tokens.push_back(absl::StrCat("[PAD", d.tokens.size(), "]"));
    d.token_types.push_back(5);
  }
  return d;
}

}  // namespace

absl::StatusOr<SynthSpec> SynthPreset(std::string_view name) {
  SynthSpec s;
  s.preset = std::string(name);
  if (name == "tiny-256") {
    // 16 experts: llama.cpp's quantizer has its own rules for models of
    // exactly 8 (attn_k and attn_v Q8_0, ...), which SmallThinker is not.
    s.d_model = 256;
    s.n_layers = 4;
    s.n_heads = 4;
    s.n_kv_heads = 2;
    s.head_dim = 64;
    s.n_experts = 16;
    s.top_k = 2;
    s.d_expert = 256;
    s.context_length = 4096;
    s.rope_theta = 10000.0;
  } else if (name == "tiny" || name == "tiny-swa") {
    s.d_model = 128;
    s.n_layers = name == "tiny" ? 4 : 8;
    s.n_heads = 4;
    s.n_kv_heads = 2;
    s.head_dim = 32;
    s.n_experts = 8;
    s.top_k = 2;
    s.d_expert = 64;
    s.context_length = 4096;
    s.rope_theta = 10000.0;
    s.sliding_window = name == "tiny" ? 0 : 8;
  } else if (name == "4b") {
    s.d_model = 1536;
    s.n_layers = 32;
    s.n_heads = 12;
    s.n_kv_heads = 2;
    s.head_dim = 128;
    s.n_experts = 32;
    s.top_k = 4;
    s.d_expert = 768;
    s.context_length = 32768;
  } else if (name == "21b") {
    s.d_model = 2560;
    s.n_layers = 52;
    s.n_heads = 28;
    s.n_kv_heads = 4;
    s.head_dim = 128;
    s.n_experts = 64;
    s.top_k = 6;
    s.d_expert = 768;
    s.context_length = 16384;
    s.sliding_window = 4096;
  } else {
    return absl::InvalidArgumentError(
        absl::StrCat("unknown preset '", std::string(name), "' (choose tiny, tiny-swa, tiny-256, 4b or 21b)"));
  }
  return s;
}

absl::Status WriteSyntheticModel(const SynthOptions& o) {
  std::error_code ec;
  if (o.out_path.empty() || std::filesystem::is_directory(o.out_path, ec)) {
    return absl::InvalidArgumentError(
        absl::StrCat("output path '", o.out_path, "' is empty or a directory; name a file"));
  }
  // Written under a temporary name beside it, then renamed into place.
  ST_ASSIGN_OR_RETURN(const std::string out_path, ReplaceableOutputPath(o.out_path));
  const SynthSpec& s = o.spec;
  const bool real_shape = s.preset == "4b" || s.preset == "21b";
  TokenizerData tok;
  if (!o.tokenizer_json.empty()) {
    ST_ASSIGN_OR_RETURN(tok, LoadHfTokenizerJson(o.tokenizer_json, 151936));
  } else {
    tok = ByteLevelFallback(real_shape ? 151936 : 0);
  }
  const uint64_t vocab = tok.tokens.size();
  const uint64_t d = s.d_model, q = s.n_heads * s.head_dim, kv = s.n_kv_heads * s.head_dim;
  const uint64_t e = s.n_experts, ff = s.d_expert;

  GgufWriter w;
  const std::string a = "smallthinker.";
  w.Set("general.architecture", GgufValue::Str("smallthinker"));
  w.Set("general.name", GgufValue::Str(absl::StrCat("SmallThinker synthetic ", s.preset,
                                                    " (random weights)")));
  // llama_ftype: 15 is MOSTLY_Q4_K_M.
  w.Set("general.file_type", GgufValue::U32(o.mix == SynthMix::kQ4_K_M ? 15 : FileType(o.type)));
  if (IsBlockQuantized(o.type) || o.mix != SynthMix::kNone) {
    w.Set("general.quantization_version", GgufValue::U32(2));
  }
  w.Set(a + "context_length", GgufValue::U32(s.context_length));
  w.Set(a + "embedding_length", GgufValue::U32(s.d_model));
  w.Set(a + "block_count", GgufValue::U32(s.n_layers));
  w.Set(a + "feed_forward_length", GgufValue::U32(s.d_expert));
  w.Set(a + "expert_feed_forward_length", GgufValue::U32(s.d_expert));
  w.Set(a + "expert_count", GgufValue::U32(s.n_experts));
  w.Set(a + "expert_used_count", GgufValue::U32(s.top_k));
  w.Set(a + "expert_gating_func", GgufValue::U32(static_cast<uint32_t>(s.gating)));
  w.Set(a + "attention.head_count", GgufValue::U32(s.n_heads));
  w.Set(a + "attention.head_count_kv", GgufValue::U32(s.n_kv_heads));
  w.Set(a + "attention.key_length", GgufValue::U32(s.head_dim));
  w.Set(a + "attention.value_length", GgufValue::U32(s.head_dim));
  w.Set(a + "attention.layer_norm_rms_epsilon", GgufValue::F32(1e-6f));
  w.Set(a + "rope.freq_base", GgufValue::F32(static_cast<float>(s.rope_theta)));
  if (s.sliding_window > 0) {
    w.Set(a + "attention.sliding_window", GgufValue::U32(s.sliding_window));
  }
  w.Set("smallthinker_engine.synth.seed", GgufValue::U64(o.seed));
  w.Set("smallthinker_engine.synth.route_skew", GgufValue::F32(static_cast<float>(o.route_skew)));
  WriteTokenizerToGguf(tok, &w);

  // A direction shared by every embedding row; with --route-skew the router
  // rows of a few "hot" experts per layer lean towards it, so those experts
  // win for most tokens (the raw residual the router reads keeps it).
  const uint64_t seed = o.seed;
  std::vector<float> shared(d);
  {
    uint64_t st = HashName("shared-direction", seed);
    double norm = 0;
    for (auto& v : shared) {
      v = UnitNoise(st);
      norm += v * v;
    }
    for (auto& v : shared) v /= std::sqrt(norm);
  }
  const float embd_shared = o.route_skew > 0 ? 0.5f * std::sqrt(static_cast<float>(d)) : 0.0f;

  std::vector<TensorPlan> plans;
  auto noise = [seed](std::string name, float scale, float offset = 0.0f) {
    const uint64_t base = HashName(name, seed);
    return [base, scale, offset](uint64_t row, float* out, uint64_t n) {
      uint64_t st = base ^ (row * 0xD1B54A32D192ED03ull);
      for (uint64_t i = 0; i < n; ++i) out[i] = offset + scale * UnitNoise(st);
    };
  };
  // A weight matrix of layer `layer` (-1: none) in the type its name gets;
  // 1-D norms stay F32.
  auto add = [&](std::string name, int layer, std::vector<uint64_t> ne, float scale,
                 float offset = 0.0f) {
    auto f = noise(name, scale, offset);
    const uint64_t n = ne[0];
    const uint32_t type = ne.size() == 1 ? static_cast<uint32_t>(DType::kF32)
                                         : TensorType(o, name, layer, n);
    plans.push_back({std::move(name), type, std::move(ne),
                     [f, n](uint64_t row, float* out) { f(row, out, n); }});
  };
  namespace tn = tensor_names;
  const float inv_sqrt_d = 1.0f / std::sqrt(static_cast<float>(d));
  {
    auto f = noise(tn::kTokenEmbd, 1.0f);
    plans.push_back({tn::kTokenEmbd, TensorType(o, tn::kTokenEmbd, -1, d), {d, vocab}, [f, d, &shared, embd_shared](uint64_t r, float* out) {
                       f(r, out, d);
                       for (uint64_t i = 0; i < d; ++i) out[i] += embd_shared * shared[i];
                     }});
  }
  for (int l = 0; l < s.n_layers; ++l) {
    add(tn::Blk(l, tn::kAttnNorm), l, {d}, 0.1f, 1.0f);
    add(tn::Blk(l, tn::kAttnQ), l, {d, q}, inv_sqrt_d);
    add(tn::Blk(l, tn::kAttnK), l, {d, kv}, inv_sqrt_d);
    add(tn::Blk(l, tn::kAttnV), l, {d, kv}, inv_sqrt_d);
    add(tn::Blk(l, tn::kAttnOut), l, {q, d}, 1.0f / std::sqrt(static_cast<float>(q)));
    add(tn::Blk(l, tn::kFfnNorm), l, {d}, 0.1f, 1.0f);
    {
      // Router rows: noise, plus for skewed routing a lean towards the shared
      // direction that decays geometrically over a per-layer random ranking.
      const std::string name = tn::Blk(l, tn::kRouter);
      auto f = noise(name, inv_sqrt_d);
      std::vector<float> lean(e, 0.0f);
      if (o.route_skew > 0) {
        uint64_t st = HashName(name + "/rank", seed);
        std::vector<int> perm(e);
        for (uint64_t i = 0; i < e; ++i) perm[i] = static_cast<int>(i);
        for (uint64_t i = e - 1; i > 0; --i) std::swap(perm[i], perm[SplitMix(st) % (i + 1)]);
        for (uint64_t rank = 0; rank < e; ++rank) {
          lean[perm[rank]] = static_cast<float>(o.route_skew * 6.0 / embd_shared *
                                                std::exp(-static_cast<double>(rank) / (e / 8.0)));
        }
      }
      plans.push_back({name, static_cast<uint32_t>(DType::kF32), {d, e}, [f, d, lean, &shared](uint64_t r, float* out) {
                         f(r, out, d);
                         for (uint64_t i = 0; i < d; ++i) out[i] += lean[r] * shared[i];
                       }});
    }
    add(tn::Blk(l, tn::kGateExps), l, {d, ff, e}, inv_sqrt_d);
    add(tn::Blk(l, tn::kUpExps), l, {d, ff, e}, inv_sqrt_d);
    add(tn::Blk(l, tn::kDownExps), l, {ff, d, e}, 1.0f / std::sqrt(static_cast<float>(ff)));
  }
  add(tn::kOutputNorm, -1, {d}, 0.1f, 1.0f);
  if (!s.tied_output) add(tn::kOutput, -1, {d, vocab}, inv_sqrt_d);

  uint64_t total_bytes = 0;
  for (const TensorPlan& p : plans) {
    ST_RETURN_IF_ERROR(w.AddTensorInfo(p.name, p.type, p.ne));
    uint64_t rows = 1;
    for (size_t i = 1; i < p.ne.size(); ++i) rows *= p.ne[i];
    total_bytes += rows * SynthRowBytes(p.type, p.ne[0]);
  }
  RemoveStaleTempFiles(out_path);  // an interrupted synth's (logged)
  const std::string tmp = TempPathFor(out_path);
  TempFileGuard guard(tmp);  // removes it if a signal ends the process
  if (absl::Status st = w.Begin(tmp); !st.ok()) {
    std::remove(tmp.c_str());
    return st;
  }
  const TempFileLock lock(tmp);  // while written (RemoveStaleTempFiles)
  ProgressBar bar(absl::StrCat("synth ", s.preset, " ",
                               std::string(o.mix == SynthMix::kQ4_K_M ? std::string_view("Q4_K_M") : DTypeName(o.type))),
                  total_bytes,
                  o.progress);
  ThreadPool pool(0);
  std::vector<uint8_t> bytes;
  for (const TensorPlan& p : plans) {
    uint64_t rows = 1;
    for (size_t i = 1; i < p.ne.size(); ++i) rows *= p.ne[i];
    const size_t row_bytes = SynthRowBytes(p.type, p.ne[0]);
    bytes.resize(rows * row_bytes);
    pool.ParallelFor(rows, [&](size_t begin, size_t end) {
      std::vector<float> row(p.ne[0]);
      for (size_t r = begin; r < end; ++r) {
        p.fill(r, row.data());
        SynthQuantizeRow(p.type, row.data(), bytes.data() + r * row_bytes, p.ne[0]);
      }
    });
    absl::Status st = w.WriteTensorData(p.name, bytes.data(), bytes.size());
    if (!st.ok()) {
      std::remove(tmp.c_str());
      return st;
    }
    bar.Add(bytes.size());
  }
  absl::Status st = w.Finish();
  if (st.ok() && std::rename(tmp.c_str(), out_path.c_str()) != 0) {
    st = absl::InternalError(
        absl::StrCat("cannot rename ", tmp, " to ", out_path, ": ", std::strerror(errno)));
  }
  if (!st.ok()) {
    std::remove(tmp.c_str());
    return st;
  }
  bar.Finish();
  return st;
}

}  // namespace st
