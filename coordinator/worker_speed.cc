#include "coordinator/worker_speed.h"

#include <algorithm>

namespace st {

void SpeedMeter::Add(double seconds, int items) {
  if (items <= 0 || seconds <= 0) return;
  samples_[next_] = seconds / items;
  next_ = (next_ + 1) % kWindow;
  count_ = std::min(count_ + 1, kWindow);
}

double SpeedMeter::ItemsPerSecond() const {
  if (count_ < kMinSamples) return 0;
  double v[kWindow];
  std::copy(samples_, samples_ + count_, v);
  std::nth_element(v, v + count_ / 2, v + count_);
  return v[count_ / 2] > 0 ? 1.0 / v[count_ / 2] : 0;
}

std::optional<std::vector<double>> Rebalanced(const std::vector<double>& placed,
                                              const std::vector<double>& measured, double factor) {
  if (factor <= 1 || placed.size() != measured.size()) return std::nullopt;
  double sum_placed = 0, sum_measured = 0;
  int n = 0;
  for (size_t i = 0; i < placed.size(); ++i) {
    if (placed[i] <= 0 || measured[i] <= 0) continue;
    sum_placed += placed[i];
    sum_measured += measured[i];
    ++n;
  }
  if (n < 2) return std::nullopt;
  bool off = false;
  for (size_t i = 0; i < placed.size(); ++i) {
    if (placed[i] <= 0 || measured[i] <= 0) continue;
    const double ratio = (measured[i] / sum_measured) / (placed[i] / sum_placed);
    if (ratio >= factor || ratio <= 1 / factor) off = true;
  }
  if (!off) return std::nullopt;
  std::vector<double> next = placed;
  for (size_t i = 0; i < placed.size(); ++i) {
    if (placed[i] <= 0 || measured[i] <= 0) continue;
    next[i] = sum_placed * measured[i] / sum_measured;
  }
  return next;
}

}  // namespace st
