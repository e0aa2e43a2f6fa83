#include "model/kv_cache.h"

#include <algorithm>
#include <cstring>
#include <string>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "glog/logging.h"
#include "kernels/f16_row.h"
#include "kernels/fp16.h"

namespace st {

absl::StatusOr<DType> ParseKvType(std::string_view name) {
  const std::string lower = absl::AsciiStrToLower(std::string(name));
  if (lower == "f16") return DType::kF16;
  if (lower == "bf16") return DType::kBF16;
  if (lower == "f32") return DType::kF32;
  return absl::InvalidArgumentError(
      absl::StrCat("unknown KV cache type '", std::string(name), "' (want f16, bf16 or f32)"));
}

namespace {

// Slots of layer l: every position for a global layer; window + max_batch - 1
// for a sliding-window one (see the class comment), never more than
// max_tokens.
int64_t LayerCapacity(const ModelConfig& config, int l, int64_t max_tokens, int max_batch) {
  const int64_t window = config.layers[l].window;
  return window > 0 ? std::min(max_tokens, window + std::max(max_batch, 1) - 1) : max_tokens;
}

}  // namespace

KvCache::KvCache(const ModelConfig& config, int64_t max_tokens, int max_batch, DType type)
    : kv_dim_(config.kv_dim()),
      max_tokens_(max_tokens),
      max_batch_(std::max(max_batch, 1)),
      type_(type),
      elem_bytes_(type == DType::kF32 ? 4 : 2) {
  CHECK_GE(max_tokens, 1) << "KvCache needs room for at least one token";
  CHECK(IsKvType(type)) << "KV cache type must be F32, F16 or BF16, not " << DTypeName(type);
  bytes_ = BytesFor(config, max_tokens, max_batch_, type);
  uint8_t* base = nullptr;
  if (bytes_ >= kHugePagesFrom) {
    absl::StatusOr<std::unique_ptr<HugePageArena>> arena = HugePageArena::Create(bytes_);
    if (arena.ok()) {
      arena_ = *std::move(arena);
      base = reinterpret_cast<uint8_t*>(arena_->data());
    } else {
      LOG(WARNING) << "KV cache in ordinary memory: " << arena.status();
    }
  }
  if (base == nullptr) {
    plain_.assign(bytes_, 0);
    base = plain_.data();
  }
  layers_.resize(config.n_layers);
  size_t off = 0;
  for (int l = 0; l < config.n_layers; ++l) {
    const int64_t cap = LayerCapacity(config, l, max_tokens, max_batch_);
    const size_t layer_bytes = static_cast<size_t>(cap) * kv_dim_ * elem_bytes_;
    layers_[l].capacity = cap;
    layers_[l].k = base + off;
    layers_[l].v = base + off + layer_bytes;
    off += 2 * layer_bytes;
  }
  CHECK_EQ(off, bytes_);
}

size_t KvCache::bytes() const { return bytes_; }

size_t KvCache::BytesFor(const ModelConfig& config, int64_t max_tokens, int max_batch,
                         DType type) {
  size_t total = 0;
  for (int l = 0; l < config.n_layers; ++l) {
    const int64_t cap = LayerCapacity(config, l, max_tokens, max_batch);
    total += 2 * static_cast<size_t>(cap) * config.kv_dim() * (type == DType::kF32 ? 4 : 2);
  }
  return total;
}

namespace {

void Convert(DType type, const float* src, int n, uint8_t* dst) {
  if (type == DType::kF32) {
    std::memcpy(dst, src, n * sizeof(float));
    return;
  }
  auto* out = reinterpret_cast<uint16_t*>(dst);
  if (type == DType::kF16) {
    F32ToF16Row(src, n, out);
  } else {
    for (int i = 0; i < n; ++i) out[i] = F32ToBF16(src[i]);
  }
}

}  // namespace

void KvCache::Store(int layer, int64_t pos, const float* k, const float* v) {
  Layer& l = layers_[layer];
  const size_t off = static_cast<size_t>(pos % l.capacity) * kv_dim_ * elem_bytes_;
  Convert(type_, k, kv_dim_, l.k + off);
  Convert(type_, v, kv_dim_, l.v + off);
}

void KvCache::StoreColumns(int layer, int64_t pos, int col0, int n, const float* k,
                           const float* v) {
  Layer& l = layers_[layer];
  const size_t off = (static_cast<size_t>(pos % l.capacity) * kv_dim_ + col0) * elem_bytes_;
  Convert(type_, k, n, l.k + off);
  Convert(type_, v, n, l.v + off);
}

KvRingView KvCache::View(int layer) const {
  const Layer& l = layers_[layer];
  return KvRingView{l.k, l.v, static_cast<size_t>(kv_dim_), l.capacity, type_};
}

}  // namespace st
