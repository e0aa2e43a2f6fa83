// Tensor element types supported by the engine, numbered as in ggml/GGUF.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string_view>

#include "absl/status/statusor.h"

namespace st {

// Values are ggml's type ids so they can be written to GGUF unchanged.
enum class DType : uint32_t {
  kF32 = 0,
  kF16 = 1,
  kQ4_0 = 2,
  kQ8_0 = 8,
  kBF16 = 30,
};

// Maps a GGUF/ggml type id to a DType; any other id (K-quants, IQ types, ...)
// is INVALID_ARGUMENT naming the ggml type.
absl::StatusOr<DType> DTypeFromGgml(uint32_t ggml_type);

// The ggml name of any ggml type id ("Q4_K", "IQ2_S", ...), or "type<N>".
std::string_view GgmlTypeName(uint32_t ggml_type);

// "F32", "F16", "BF16", "Q8_0", "Q4_0".
std::string_view DTypeName(DType type);

// Case-insensitive inverse of DTypeName ("q4_0" -> kQ4_0).
absl::StatusOr<DType> ParseDType(std::string_view name);

// Elements per block: 32 for Q4_0/Q8_0, 1 otherwise.
size_t BlockElems(DType type);
// Bytes per block: 4, 2, 2, 18 (Q4_0), 34 (Q8_0).
size_t BlockBytes(DType type);
// Bytes of a row of n elements; n must be a multiple of BlockElems(type).
inline size_t RowBytes(DType type, size_t n) { return n / BlockElems(type) * BlockBytes(type); }
inline bool IsBlockQuantized(DType type) { return BlockElems(type) > 1; }

}  // namespace st
