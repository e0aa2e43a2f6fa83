// Which executor owns each (layer, expert): the coordinator itself or one of
// its workers. Shares are proportional to each worker's measured speed and
// bounded by its memory; hot experts can be pinned to the coordinator.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

namespace st {

inline constexpr int kLocalOwner = -1;

struct WorkerShare {
  double speed = 1;                  // expert-tokens per second (relative is enough)
  uint64_t capacity_experts = 0;     // how many experts it can hold in total
  bool up = true;                    // false: gets nothing and dilutes no share
};

struct PlacementOptions {
  double local_share = 0;  // fraction of experts kept on the coordinator, [0, 1)
  int hot_experts_local = 0;
  // Per layer, experts from most to least routed (empty = by id).
  std::vector<std::vector<int>> hot_order;
};

class Placement {
 public:
  Placement() = default;
  Placement(int n_layers, int n_experts)
      : n_layers_(n_layers), n_experts_(n_experts),
        owner_(static_cast<size_t>(n_layers) * n_experts, kLocalOwner) {}

  int owner(int layer, int expert) const { return owner_[Index(layer, expert)]; }
  void set_owner(int layer, int expert, int w) { owner_[Index(layer, expert)] = w; }
  int n_layers() const { return n_layers_; }
  int n_experts() const { return n_experts_; }
  // Number of experts owned by `w` (kLocalOwner for the coordinator).
  int Count(int w) const;

 private:
  size_t Index(int layer, int expert) const {
    return static_cast<size_t>(layer) * n_experts_ + expert;
  }
  int n_layers_ = 0, n_experts_ = 0;
  std::vector<int> owner_;
};

// Deterministic. In every layer the experts are dealt to the owners in
// proportion to their shares (largest deficit first, so a layer's experts are
// interleaved across workers), skipping workers whose capacity is used up.
// The coordinator's share is options.local_share; the rest is split over
// the workers that are up, by speed. With no worker up (or no room left)
// everything stays local.
Placement ComputePlacement(int n_layers, int n_experts, const std::vector<WorkerShare>& workers,
                           const PlacementOptions& options);

}  // namespace st
