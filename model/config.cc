#include "model/config.h"

#include <cmath>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "common/status_macros.h"
#include "glog/logging.h"
#include "model/tensor_names.h"

namespace st {
namespace {

constexpr char kArch[] = "smallthinker";

std::string Key(std::string_view suffix) { return absl::StrCat(kArch, ".", std::string(suffix)); }

std::string ShapeString(const std::vector<uint64_t>& ne) {
  return absl::StrCat("{", absl::StrJoin(ne, ", "), "}");
}

// Required u32 key; the error names the key and says what it is for.
absl::StatusOr<int> RequiredInt(const GgufFile& f, std::string_view suffix) {
  const std::string key = Key(suffix);
  auto v = f.GetUint32(key);
  if (!v.ok()) {
    if (absl::IsNotFound(v.status())) {
      return absl::InvalidArgumentError(
          absl::StrCat("missing required metadata key '", key, "'"));
    }
    return v.status();
  }
  // Dimensions above 2^20 are no real model and could overflow products.
  const uint32_t limit = suffix == "context_length" ? (1u << 30) : (1u << 20);
  if (*v == 0 || *v > limit) {
    return absl::InvalidArgumentError(absl::StrCat("metadata '", key, "' = ", *v, " is out of range"));
  }
  return static_cast<int>(*v);
}

absl::StatusOr<int> OptionalInt(const GgufFile& f, std::string_view suffix, int fallback) {
  if (!f.Has(Key(suffix))) return fallback;
  return RequiredInt(f, suffix);
}

// An optional key: nullopt if absent; present with the wrong type is an error
// (never silently treated as absent).
absl::StatusOr<std::optional<float>> OptionalFloat(const GgufFile& f, std::string_view suffix) {
  if (!f.Has(Key(suffix))) return std::nullopt;
  ST_ASSIGN_OR_RETURN(float v, f.GetFloat32(Key(suffix)));
  return v;
}
absl::StatusOr<std::optional<uint32_t>> OptionalUint(const GgufFile& f, std::string_view suffix) {
  if (!f.Has(Key(suffix))) return std::nullopt;
  ST_ASSIGN_OR_RETURN(uint32_t v, f.GetUint32(Key(suffix)));
  return v;
}

absl::Status CheckTensor(const GgufFile& f, const std::string& name,
                         const std::vector<uint64_t>& want) {
  const GgufTensorInfo* t = f.FindTensor(name);
  if (t == nullptr) {
    return absl::InvalidArgumentError(absl::StrCat("missing required tensor '", name, "'"));
  }
  if (t->ne != want) {
    return absl::InvalidArgumentError(absl::StrCat("tensor '", name, "' has shape ",
                                                   ShapeString(t->ne), " but the config implies ",
                                                   ShapeString(want)));
  }
  return absl::OkStatus();
}

absl::Status CheckTensors(const GgufFile& f, ModelConfig& c) {
  namespace tn = tensor_names;
  const uint64_t d = c.d_model, v = c.vocab_size, q = c.q_dim(), kv = c.kv_dim();
  const uint64_t e = c.n_experts, ff = c.d_expert;
  ST_RETURN_IF_ERROR(CheckTensor(f, tn::kTokenEmbd, {d, v}));
  ST_RETURN_IF_ERROR(CheckTensor(f, tn::kOutputNorm, {d}));
  c.tied_output = f.FindTensor(tn::kOutput) == nullptr;
  if (!c.tied_output) ST_RETURN_IF_ERROR(CheckTensor(f, tn::kOutput, {d, v}));
  std::set<std::string> storage;  // the experts' storage-only formats
  for (int l = 0; l < c.n_layers; ++l) {
    ST_RETURN_IF_ERROR(CheckTensor(f, tn::Blk(l, tn::kAttnNorm), {d}));
    ST_RETURN_IF_ERROR(CheckTensor(f, tn::Blk(l, tn::kAttnQ), {d, q}));
    ST_RETURN_IF_ERROR(CheckTensor(f, tn::Blk(l, tn::kAttnK), {d, kv}));
    ST_RETURN_IF_ERROR(CheckTensor(f, tn::Blk(l, tn::kAttnV), {d, kv}));
    ST_RETURN_IF_ERROR(CheckTensor(f, tn::Blk(l, tn::kAttnOut), {q, d}));
    ST_RETURN_IF_ERROR(CheckTensor(f, tn::Blk(l, tn::kFfnNorm), {d}));
    ST_RETURN_IF_ERROR(CheckTensor(f, tn::Blk(l, tn::kRouter), {d, e}));
    ST_RETURN_IF_ERROR(CheckTensor(f, tn::Blk(l, tn::kGateExps), {d, ff, e}));
    ST_RETURN_IF_ERROR(CheckTensor(f, tn::Blk(l, tn::kUpExps), {d, ff, e}));
    // Upstream layout {d_expert, d_model, E}; PowerInfer's --transpose-down
    // files store {d_model, d_expert, E}. Detected by shape (MODEL.md 10.2).
    const std::string down = tn::Blk(l, tn::kDownExps);
    const GgufTensorInfo* t = f.FindTensor(down);
    const bool transposed = t != nullptr && t->ne == std::vector<uint64_t>{d, ff, e} && d != ff;
    if (l == 0) c.down_transposed = transposed;
    if (transposed != c.down_transposed) {
      return absl::InvalidArgumentError(
          absl::StrCat("tensor '", down, "' layout differs from layer 0's"));
    }
    ST_RETURN_IF_ERROR(
        CheckTensor(f, down, transposed ? std::vector<uint64_t>{d, ff, e} : std::vector<uint64_t>{ff, d, e}));
    // Experts in a storage-only format (K-quants, Q4_1, Q5_0, Q5_1) are
    // computed as Q8_0, converted on first use (model/mapped_repack.h) or in
    // the expert pack: their type here is Q8_0, so a Q4_K_M file's Q4_K and
    // Q6_K experts share one.
    for (const char* s : {tn::kGateExps, tn::kUpExps, tn::kDownExps}) {
      const GgufTensorInfo* x = f.FindTensor(tn::Blk(l, s));
      if (x->storage != nullptr) storage.insert(std::string(x->type_name()));
    }
    const DType gate_type = f.FindTensor(tn::Blk(l, tn::kGateExps))->type;
    if (l == 0) c.expert_type = gate_type;
    for (const char* s : {tn::kGateExps, tn::kUpExps, tn::kDownExps}) {
      const GgufTensorInfo* x = f.FindTensor(tn::Blk(l, s));
      if (x->type != c.expert_type) {
        auto computed_as = [](const GgufTensorInfo& t) {
          return t.storage != nullptr
                     ? absl::StrCat(std::string(t.type_name()), " (computed as Q8_0)")
                     : std::string(DTypeName(t.type));
        };
        return absl::InvalidArgumentError(absl::StrCat(
            "expert tensors must share one computed type; '", tn::Blk(l, s), "' is ",
            computed_as(*x), ", '", tn::Blk(0, tn::kGateExps), "' ",
            computed_as(*f.FindTensor(tn::Blk(0, tn::kGateExps)))));
      }
    }
  }
  // Tensors of blocks past block_count: a corrupt or edited block_count
  // (a 4-block file saying 1 had loaded and run one layer).
  for (const GgufTensorInfo& t : f.tensors()) {
    int block = -1;
    const size_t dot = t.name.find('.', 4);
    if (t.name.rfind("blk.", 0) == 0 && dot != std::string::npos &&
        absl::SimpleAtoi(t.name.substr(4, dot - 4), &block) && block >= c.n_layers) {
      return absl::InvalidArgumentError(absl::StrCat(
          "tensor '", t.name, "' belongs to block ", block, ", but block_count is ", c.n_layers,
          " (a corrupt or mismatched block_count?)"));
    }
  }
  c.expert_storage = absl::StrJoin(storage, ", ");
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<ModelConfig> LoadModelConfig(const GgufFile& f) {
  auto arch = f.GetString("general.architecture");
  if (!arch.ok()) {
    return absl::InvalidArgumentError(absl::StrCat(
        f.path(), ": missing 'general.architecture' (not a model GGUF?)"));
  }
  if (*arch != kArch) {
    return absl::InvalidArgumentError(
        absl::StrCat(f.path(), ": architecture is '", *arch, "', expected 'smallthinker'"));
  }
  // One shard of a split GGUF (llama-gguf-split) holds only some tensors.
  // Its merge keeps the key with 0, and llama.cpp reads shards only above 1.
  if (f.Has("split.count")) {
    auto count = f.GetUint32("split.count");
    if (!count.ok() || *count > 1) {
      return absl::InvalidArgumentError(absl::StrCat(
          f.path(), ": one shard of a split GGUF (split.count ",
          count.ok() ? absl::StrCat(*count) : std::string("malformed"),
          "); HINT: merge the shards into one file with `llama-gguf-split --merge "
          "FIRST-SHARD.gguf OUT.gguf`"));
    }
  }
  // RoPE scaling (YaRN, linear) is not implemented: a file that asks for it
  // would run with the wrong positions, so it is refused. The released
  // SmallThinker configs have none (MODEL.md).
  if (const GgufValue* v = f.Find(Key("rope.scaling.type")); v != nullptr) {
    auto type = f.GetString(Key("rope.scaling.type"));
    if (!type.ok() || *type != "none") {
      return absl::InvalidArgumentError(absl::StrCat(
          f.path(), ": metadata '", Key("rope.scaling.type"), "' asks for RoPE scaling (",
          type.ok() ? *type : "not a string", "), which this engine does not implement"));
    }
  }
  // A scaling factor without a type is linear scaling to llama.cpp
  // (freq_scale = 1 / factor): refused the same way, not run unscaled.
  for (const std::string& key : {Key("rope.scaling.factor"), Key("rope.scale_linear")}) {
    if (f.Find(key) == nullptr || f.Find(Key("rope.scaling.type")) != nullptr) continue;
    auto factor = f.GetFloat32(key);
    if (!factor.ok() || (*factor != 0.0f && *factor != 1.0f)) {
      return absl::InvalidArgumentError(absl::StrCat(
          f.path(), ": metadata '", key, "' = ",
          factor.ok() ? absl::StrCat(*factor) : std::string("not a float32"),
          " asks for (linear) RoPE scaling, which this engine does not implement"));
    }
  }
  ModelConfig c;
  if (auto name = f.GetString("general.name"); name.ok()) c.name = *name;
  ST_ASSIGN_OR_RETURN(c.d_model, RequiredInt(f, "embedding_length"));
  ST_ASSIGN_OR_RETURN(c.n_layers, RequiredInt(f, "block_count"));
  ST_ASSIGN_OR_RETURN(c.n_heads, RequiredInt(f, "attention.head_count"));
  ST_ASSIGN_OR_RETURN(c.n_kv_heads, OptionalInt(f, "attention.head_count_kv", c.n_heads));
  ST_ASSIGN_OR_RETURN(c.head_dim, OptionalInt(f, "attention.key_length", c.d_model / c.n_heads));
  ST_ASSIGN_OR_RETURN(int v_dim, OptionalInt(f, "attention.value_length", c.head_dim));
  ST_ASSIGN_OR_RETURN(c.n_experts, RequiredInt(f, "expert_count"));
  ST_ASSIGN_OR_RETURN(c.top_k, RequiredInt(f, "expert_used_count"));
  if (f.Has(Key("expert_feed_forward_length"))) {
    ST_ASSIGN_OR_RETURN(c.d_expert, RequiredInt(f, "expert_feed_forward_length"));
  } else {
    ST_ASSIGN_OR_RETURN(c.d_expert, RequiredInt(f, "feed_forward_length"));
  }
  ST_ASSIGN_OR_RETURN(int ctx, RequiredInt(f, "context_length"));
  c.context_length = ctx;
  ST_ASSIGN_OR_RETURN(int rot, OptionalInt(f, "rope.dimension_count", c.head_dim));

  ST_ASSIGN_OR_RETURN(std::optional<float> eps, OptionalFloat(f, "attention.layer_norm_rms_epsilon"));
  if (!eps.has_value()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "missing required metadata key '", Key("attention.layer_norm_rms_epsilon"), "'"));
  }
  if (!(*eps > 0 && *eps < 1)) {
    return absl::InvalidArgumentError(absl::StrCat("layer_norm_rms_epsilon ", *eps, " out of range"));
  }
  c.rms_eps = *eps;
  ST_ASSIGN_OR_RETURN(std::optional<float> theta, OptionalFloat(f, "rope.freq_base"));
  if (theta.has_value()) {
    c.rope_theta = *theta;
  } else {
    LOG(WARNING) << "no " << Key("rope.freq_base") << "; using llama.cpp's default 10000";
  }
  ST_ASSIGN_OR_RETURN(std::optional<float> theta_swa_key, OptionalFloat(f, "rope.freq_base_swa"));
  const double theta_swa = theta_swa_key.value_or(c.rope_theta);
  if (!(c.rope_theta > 0) || !(theta_swa > 0) || !std::isfinite(c.rope_theta) ||
      !std::isfinite(theta_swa)) {
    // (inf had loaded: every rotation frequency but the first was 0)
    return absl::InvalidArgumentError(absl::StrCat("rope.freq_base must be positive and finite, got ",
                                                   c.rope_theta, " (swa ", theta_swa, ")"));
  }

  ST_ASSIGN_OR_RETURN(std::optional<uint32_t> g, OptionalUint(f, "expert_gating_func"));
  if (g.has_value()) {
    if (*g != 1 && *g != 2) {
      return absl::InvalidArgumentError(absl::StrCat(
          "metadata '", Key("expert_gating_func"), "' = ", *g, " (expected 1 softmax or 2 sigmoid)"));
    }
    c.gating = static_cast<Gating>(*g);
  } else {
    LOG(WARNING) << "no " << Key("expert_gating_func")
                 << " (PowerInfer converter omits it for sigmoid models); using sigmoid";
    c.gating = Gating::kSigmoid;
  }
  ST_ASSIGN_OR_RETURN(std::optional<uint32_t> window, OptionalUint(f, "attention.sliding_window"));
  if (window.value_or(0) > 0) {
    c.sliding_window = *window;
    // 0 = every layer slides (llama.cpp's set_swa_pattern).
    ST_ASSIGN_OR_RETURN(std::optional<uint32_t> period,
                        OptionalUint(f, "attention.sliding_window_pattern"));
    if (period.value_or(0) > (1u << 20)) {
      return absl::InvalidArgumentError(absl::StrCat(
          "metadata '", Key("attention.sliding_window_pattern"), "' = ", *period, " is out of range"));
    }
    c.swa_period = static_cast<int>(period.value_or(4));
  }

  // Consistency.
  if (c.n_heads % c.n_kv_heads != 0) {
    return absl::InvalidArgumentError(absl::StrCat("head_count ", c.n_heads,
                                                   " is not a multiple of head_count_kv ",
                                                   c.n_kv_heads));
  }
  if (v_dim != c.head_dim || rot != c.head_dim || c.head_dim % 2 != 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "unsupported head dims: key_length ", c.head_dim, ", value_length ", v_dim,
        ", rope.dimension_count ", rot, " (need equal and even)"));
  }
  if (static_cast<int64_t>(c.n_heads) * c.head_dim > (1 << 20)) {
    return absl::InvalidArgumentError(absl::StrCat("head_count ", c.n_heads, " x key_length ",
                                                   c.head_dim, " is too large"));
  }
  // As llama.cpp's LLAMA_MAX_LAYERS and LLAMA_MAX_EXPERTS (SmallThinker: 32
  // or 52 layers, 32 or 64 experts). A few-MiB file asking for 2^20 experts
  // had loaded, then spent ~2^59 steps choosing the first token's.
  constexpr int kMaxLayers = 512, kMaxExperts = 512;
  if (c.n_layers > kMaxLayers) {
    return absl::InvalidArgumentError(
        absl::StrCat("block_count ", c.n_layers, " is out of range (at most ", kMaxLayers, ")"));
  }
  if (c.n_experts > kMaxExperts) {
    return absl::InvalidArgumentError(
        absl::StrCat("expert_count ", c.n_experts, " is out of range (at most ", kMaxExperts, ")"));
  }
  if (c.top_k > c.n_experts) {
    return absl::InvalidArgumentError(absl::StrCat("expert_used_count ", c.top_k,
                                                   " exceeds expert_count ", c.n_experts));
  }
  const GgufTensorInfo* embd = f.FindTensor(tensor_names::kTokenEmbd);
  if (embd == nullptr || embd->ne.size() != 2) {
    return absl::InvalidArgumentError("missing or malformed tensor 'token_embd.weight'");
  }
  if (embd->ne[1] > (1u << 24)) {
    return absl::InvalidArgumentError(absl::StrCat("token_embd has ", embd->ne[1], " rows (too many)"));
  }
  c.vocab_size = static_cast<int>(embd->ne[1]);
  ST_ASSIGN_OR_RETURN(std::optional<uint32_t> vs, OptionalUint(f, "vocab_size"));
  if (vs.has_value() && *vs != static_cast<uint32_t>(c.vocab_size)) {
    return absl::InvalidArgumentError(absl::StrCat("vocab_size ", *vs, " disagrees with token_embd rows ",
                                                   c.vocab_size));
  }
  ST_RETURN_IF_ERROR(CheckTensors(f, c));

  // Per-layer schedule (MODEL.md 3), as llama.cpp builds it: with SWA,
  // layers i % period != 0 slide (period 4 unless the optional pattern key
  // says otherwise; 0 = all of them) and layers i % 4 == 0 skip RoPE, 4 being
  // llama.cpp's n_no_rope_layer_step, which no key sets, so the pattern key
  // moves the window but never the NoPE layers; its rule `use_rope = step ==
  // n_layer || i % step != 0` also ropes every layer of a 4-layer model.
  // Without SWA every layer is global RoPE. llama.cpp forces the window to
  // 4096 whatever the key says; we use the key's value, which is 4096 in
  // every released file (scripts/check-llamacpp-parity compares the two).
  constexpr int kNoRopeStep = 4;
  c.layers.resize(c.n_layers);
  for (int i = 0; i < c.n_layers; ++i) {
    LayerConfig& lc = c.layers[i];
    const bool swa = c.sliding_window > 0 && (c.swa_period == 0 || i % c.swa_period != 0);
    lc.window = swa ? c.sliding_window : 0;
    lc.use_rope = c.sliding_window == 0 || c.n_layers == kNoRopeStep || i % kNoRopeStep != 0;
    lc.rope_theta = swa ? theta_swa : c.rope_theta;
  }
  return c;
}


namespace {

// "Q4_0", or for a file whose experts are in storage-only formats what
// becomes of them: Q4_K and Q6_K computed as stored (with whole 256-weight
// rows, as those formats have), the rest converted to Q8_0; in an expert
// pack they stay as stored when all of them can (storage/pack_writer.h),
// else every one of them becomes Q8_0.
std::string ExpertTypeLine(const ModelConfig& c) {
  if (c.expert_storage.empty()) return std::string(DTypeName(c.expert_type));
  std::vector<std::string> native, converted;
  for (absl::string_view name : absl::StrSplit(c.expert_storage, ", ")) {
    (name == "Q4_K" || name == "Q6_K" ? native : converted).emplace_back(name);
  }
  std::vector<std::string> parts;
  if (!native.empty() && !c.down_transposed) {
    parts.push_back(absl::StrCat(absl::StrJoin(native, ", "), " computed as stored"));
  } else {
    converted.insert(converted.begin(), native.begin(), native.end());
  }
  if (!converted.empty()) {
    parts.push_back(absl::StrCat("Q8_0 converted from ", absl::StrJoin(converted, ", ")));
  }
  const bool pack_as_stored = converted.empty() && !c.down_transposed && c.d_model % 256 == 0 &&
                             c.d_expert % 256 == 0;
  return absl::StrCat(absl::StrJoin(parts, "; "),
                      pack_as_stored ? " (in an expert pack too)" : " (Q8_0 in an expert pack)");
}

}  // namespace

std::string DescribeConfig(const ModelConfig& c) {
  int n_swa = 0, n_nope = 0;
  for (const auto& l : c.layers) {
    n_swa += l.window > 0;
    n_nope += !l.use_rope;
  }
  return absl::StrFormat(
      "name            %s\n"
      "d_model         %d\nn_layers        %d\nn_heads         %d\nn_kv_heads      %d\n"
      "head_dim        %d\nn_experts       %d\ntop_k           %d\nd_expert        %d\n"
      "vocab_size      %d\ncontext_length  %d\nrms_eps         %g\nrope_theta      %g\n"
      "gating          %s\nsliding_window  %d (%d SWA layers, %d NoPE layers)\n"
      "expert_type     %s\ndown_layout     %s\nlm_head         %s\n",
      c.name.empty() ? "(none)" : c.name, c.d_model, c.n_layers, c.n_heads, c.n_kv_heads,
      c.head_dim, c.n_experts, c.top_k, c.d_expert, c.vocab_size, c.context_length, c.rms_eps,
      c.rope_theta, c.gating == Gating::kSigmoid ? "sigmoid" : "softmax", c.sliding_window, n_swa,
      n_nope,
      ExpertTypeLine(c),
      c.down_transposed ? "transposed {d_model, d_expert, E} (PowerInfer)"
                        : "upstream {d_expert, d_model, E}",
      c.tied_output ? "tied to token_embd" : "output.weight");
}

}  // namespace st
