#include "kernels/split_rows.h"

#include <cstring>

#include "kernels/quant.h"

namespace st {

void SplitQ4_0Row(const void* blocks, size_t n, void* out) {
  const auto* in = static_cast<const BlockQ4_0*>(blocks);
  char* scales = static_cast<char*>(out);
  char* levels = scales + 2 * (n / kQK);
  for (size_t b = 0; b < n / kQK; ++b) {
    std::memcpy(scales + 2 * b, &in[b].d, 2);
    std::memcpy(levels + sizeof(in[b].qs) * b, in[b].qs, sizeof(in[b].qs));
  }
}

void JoinQ4_0Row(const void* split, size_t n, void* out) {
  const char* scales = static_cast<const char*>(split);
  const char* levels = scales + 2 * (n / kQK);
  auto* blocks = static_cast<BlockQ4_0*>(out);
  for (size_t b = 0; b < n / kQK; ++b) {
    std::memcpy(&blocks[b].d, scales + 2 * b, 2);
    std::memcpy(blocks[b].qs, levels + sizeof(blocks[b].qs) * b, sizeof(blocks[b].qs));
  }
}

}  // namespace st
