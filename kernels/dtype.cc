#include "kernels/dtype.h"

#include <array>
#include <cctype>
#include <string>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"

namespace st {
namespace {

// ggml's `enum ggml_type`, indexed by id. Removed ids keep their historic
// names so old files still produce a readable error.
constexpr std::array<std::string_view, 40> kGgmlNames = {
    "F32",      "F16",      "Q4_0",       "Q4_1",       "Q4_2",       "Q4_3",
    "Q5_0",     "Q5_1",     "Q8_0",       "Q8_1",       "Q2_K",       "Q3_K",
    "Q4_K",     "Q5_K",     "Q6_K",       "Q8_K",       "IQ2_XXS",    "IQ2_XS",
    "IQ3_XXS",  "IQ1_S",    "IQ4_NL",     "IQ3_S",      "IQ2_S",      "IQ4_XS",
    "I8",       "I16",      "I32",        "I64",        "F64",        "IQ1_M",
    "BF16",     "Q4_0_4_4", "Q4_0_4_8",   "Q4_0_8_8",   "TQ1_0",      "TQ2_0",
    "IQ4_NL_4_4", "IQ4_NL_4_8", "IQ4_NL_8_8", "MXFP4",
};

constexpr DType kAll[] = {DType::kF32, DType::kF16, DType::kQ4_0, DType::kQ8_0, DType::kBF16};

// Abseil 20220623's string_view is its own type, not std::string_view.
absl::string_view Absl(std::string_view s) { return absl::string_view(s.data(), s.size()); }

bool EqualsIgnoreCase(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    if (std::tolower(static_cast<unsigned char>(a[i])) !=
        std::tolower(static_cast<unsigned char>(b[i]))) {
      return false;
    }
  }
  return true;
}

}  // namespace

absl::StatusOr<DType> DTypeFromGgml(uint32_t ggml_type) {
  for (DType t : kAll) {
    if (static_cast<uint32_t>(t) == ggml_type) return t;
  }
  return absl::InvalidArgumentError(
      absl::StrCat("unsupported tensor type ", Absl(GgmlTypeName(ggml_type)), " (ggml type id ",
                   ggml_type, "); HINT: the engine computes in F32, F16, BF16, Q8_0 and Q4_0, and "
                   "reads Q2_K, Q3_K, Q4_K, Q5_K, Q6_K, Q4_1, Q5_0 and Q5_1 by converting them "
                   "to Q8_0; IQ types are not read. Quantize the model with llama.cpp to one "
                   "of those, e.g. `llama-quantize MODEL-F16.gguf OUT.gguf Q4_0` (the fastest "
                   "here) or Q4_K_M"));
}

std::string_view GgmlTypeName(uint32_t ggml_type) {
  if (ggml_type < kGgmlNames.size()) return kGgmlNames[ggml_type];
  // Stable storage for the fallback names of ids 40..255; beyond that a fixed string.
  static const auto* const kFallback = [] {
    auto* names = new std::array<std::string, 256 - kGgmlNames.size()>();
    for (size_t i = 0; i < names->size(); ++i) {
      (*names)[i] = absl::StrCat("type", kGgmlNames.size() + i);
    }
    return names;
  }();
  if (ggml_type - kGgmlNames.size() < kFallback->size()) {
    return (*kFallback)[ggml_type - kGgmlNames.size()];
  }
  return "type<unknown>";
}

std::string_view DTypeName(DType type) {
  switch (type) {
    case DType::kF32: return "F32";
    case DType::kF16: return "F16";
    case DType::kQ4_0: return "Q4_0";
    case DType::kQ8_0: return "Q8_0";
    case DType::kBF16: return "BF16";
  }
  return "invalid";
}

absl::StatusOr<DType> ParseDType(std::string_view name) {
  for (DType t : kAll) {
    if (EqualsIgnoreCase(name, DTypeName(t))) return t;
  }
  return absl::InvalidArgumentError(
      absl::StrCat("unknown dtype '", Absl(name), "'; expected one of F32, F16, BF16, Q8_0, Q4_0"));
}

size_t BlockElems(DType type) {
  return (type == DType::kQ4_0 || type == DType::kQ8_0) ? 32 : 1;
}

size_t BlockBytes(DType type) {
  switch (type) {
    case DType::kF32: return 4;
    case DType::kF16: return 2;
    case DType::kBF16: return 2;
    case DType::kQ4_0: return 18;
    case DType::kQ8_0: return 34;
  }
  return 0;
}

}  // namespace st
