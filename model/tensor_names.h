// GGUF tensor names of the SmallThinker architecture (upstream llama.cpp).
#pragma once

#include <string>

#include "absl/strings/str_cat.h"

namespace st::tensor_names {

inline constexpr char kTokenEmbd[] = "token_embd.weight";
inline constexpr char kOutputNorm[] = "output_norm.weight";
inline constexpr char kOutput[] = "output.weight";

inline std::string Blk(int layer, const char* suffix) {
  return absl::StrCat("blk.", layer, ".", suffix, ".weight");
}
inline constexpr char kAttnNorm[] = "attn_norm";
inline constexpr char kAttnQ[] = "attn_q";
inline constexpr char kAttnK[] = "attn_k";
inline constexpr char kAttnV[] = "attn_v";
inline constexpr char kAttnOut[] = "attn_output";
inline constexpr char kFfnNorm[] = "ffn_norm";
inline constexpr char kRouter[] = "ffn_gate_inp";
inline constexpr char kGateExps[] = "ffn_gate_exps";
inline constexpr char kUpExps[] = "ffn_up_exps";
inline constexpr char kDownExps[] = "ffn_down_exps";

}  // namespace st::tensor_names
