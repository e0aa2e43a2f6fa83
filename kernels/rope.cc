#include "kernels/rope.h"

#include <cmath>
#include <vector>

#include "glog/logging.h"

namespace st {

namespace {

// cos/sin of one (position, head_dim, theta): 2 * head_dim / 2 floats.
struct CosSinSlot {
  int64_t pos = -1;
  int head_dim = 0;
  double theta = 0;
  std::vector<float> cs;
};

// Slots of a direct-mapped cache by position. Every layer with RoPE rotates
// q and k at the same positions with the same theta, so a step computes each
// position's 3 * head_dim / 2 transcendentals once instead of twice per
// layer (about 8 us per call at head_dim 128, a serial cost of decode).
constexpr size_t kCosSinSlots = 512;

const float* CosSin(int64_t pos, int head_dim, double theta) {
  thread_local std::vector<CosSinSlot> slots(kCosSinSlots);
  CosSinSlot& slot = slots[static_cast<uint64_t>(pos) % kCosSinSlots];
  if (slot.pos == pos && slot.head_dim == head_dim && slot.theta == theta) return slot.cs.data();
  const int half = head_dim / 2;
  // Angles in double so large positions keep their precision; the rotation
  // itself is in float.
  slot.cs.resize(2 * static_cast<size_t>(half));
  for (int j = 0; j < half; ++j) {
    const double phi = static_cast<double>(pos) * std::pow(theta, -2.0 * j / head_dim);
    slot.cs[2 * j] = static_cast<float>(std::cos(phi));
    slot.cs[2 * j + 1] = static_cast<float>(std::sin(phi));
  }
  slot.pos = pos;
  slot.head_dim = head_dim;
  slot.theta = theta;
  return slot.cs.data();
}

}  // namespace

void RopeNeox(float* x, int n_heads, int head_dim, int64_t pos, double theta) {
  DCHECK_EQ(head_dim % 2, 0);
  const int half = head_dim / 2;
  // cos/sin per frequency, shared by all heads (and cached across calls).
  const float* cs = CosSin(pos, head_dim, theta);
  for (int h = 0; h < n_heads; ++h) {
    float* v = x + static_cast<size_t>(h) * head_dim;
    for (int j = 0; j < half; ++j) {
      const float c = cs[2 * j];
      const float s = cs[2 * j + 1];
      const float a = v[j];
      const float b = v[j + half];
      v[j] = a * c - b * s;
      v[j + half] = b * c + a * s;
    }
  }
}

}  // namespace st
