// Measured worker speed and the rule that moves work away from a worker that
// is markedly slower than placement assumes.
//
// A worker's speed as the coordinator sees it is items per second of reply
// time: the round trip (network, queueing) included, since that is what a
// layer step waits for. SpeedMeter keeps the last kWindow per-item times and
// reports their median, so one descheduled step does not move placement.
// Rebalanced() is the hysteresis: placement changes only when a worker's
// measured share of the speed differs from the share placement gave it by at
// least `factor` (either way), and each change starts the window again.
//
// Thread-compatible.
#pragma once

#include <optional>
#include <vector>

namespace st {

class SpeedMeter {
 public:
  static constexpr int kWindow = 32;
  // Samples needed before the meter reports a speed.
  static constexpr int kMinSamples = 16;

  // One reply: `seconds` from sending the request to receiving the reply,
  // for `items` expert items.
  void Add(double seconds, int items);
  int count() const { return count_; }
  // Items per second (median of the window); 0 until kMinSamples.
  double ItemsPerSecond() const;
  void Reset() { count_ = 0; next_ = 0; }

 private:
  double samples_[kWindow] = {};  // seconds per item
  int count_ = 0, next_ = 0;
};

// `placed`: the speeds placement uses now; `measured`: SpeedMeter speeds
// (0 = not measured, such a worker keeps its placed speed). Compares only
// workers with both (at least two). Returns new placed speeds if one
// worker's measured share of their total speed is `factor` times larger or
// smaller than its placed share; the new speeds keep the measured workers'
// placed total, so unmeasured workers keep their share. nullopt = keep.
std::optional<std::vector<double>> Rebalanced(const std::vector<double>& placed,
                                              const std::vector<double>& measured, double factor);

}  // namespace st
