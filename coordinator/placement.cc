#include "coordinator/placement.h"

#include <algorithm>
#include <cmath>
#include <numeric>

namespace st {

int Placement::Count(int w) const {
  return static_cast<int>(std::count(owner_.begin(), owner_.end(), w));
}

Placement ComputePlacement(int n_layers, int n_experts, const std::vector<WorkerShare>& workers,
                           const PlacementOptions& options) {
  Placement p(n_layers, n_experts);
  const int n_workers = static_cast<int>(workers.size());
  if (n_workers == 0) return p;
  // A speed that is not a finite positive number (a worker's Describe is
  // not to be trusted: NaN had made every share NaN, so every expert stayed
  // on the coordinator) counts as none.
  auto speed = [](const WorkerShare& w) { return std::isfinite(w.speed) && w.speed > 0 ? w.speed : 0.0; };
  double total_speed = 0;
  int n_up = 0;
  for (const WorkerShare& w : workers) {
    if (!w.up) continue;
    total_speed += speed(w);
    ++n_up;
  }
  if (n_up == 0) return p;
  const double local = std::clamp(options.local_share, 0.0, 0.999);
  // share[0] = coordinator, share[1 + i] = worker i.
  std::vector<double> share(n_workers + 1);
  share[0] = local;
  for (int i = 0; i < n_workers; ++i) {
    if (!workers[i].up) continue;
    share[i + 1] = (1 - local) * (total_speed > 0 ? speed(workers[i]) / total_speed : 1.0 / n_up);
  }
  std::vector<uint64_t> left(n_workers);
  for (int i = 0; i < n_workers; ++i) left[i] = workers[i].up ? workers[i].capacity_experts : 0;

  for (int layer = 0; layer < n_layers; ++layer) {
    std::vector<int> order(n_experts);
    if (layer < static_cast<int>(options.hot_order.size()) &&
        static_cast<int>(options.hot_order[layer].size()) == n_experts) {
      order = options.hot_order[layer];
    } else {
      std::iota(order.begin(), order.end(), 0);
    }
    const int hot = std::clamp(options.hot_experts_local, 0, n_experts);
    std::vector<double> given(n_workers + 1, 0);
    given[0] = hot;
    // Hot experts stay local; the rest are dealt by largest deficit. Start
    // the deal at a layer-dependent owner so rounding does not always favor
    // the same worker.
    for (int r = hot; r < n_experts; ++r) {
      const int e = order[r];
      const double dealt = r + 1;
      int best = -1;
      double best_deficit = -1e300;
      for (int k = 0; k <= n_workers; ++k) {
        const int o = (k + layer) % (n_workers + 1);
        if (o > 0 && left[o - 1] == 0) continue;
        if (share[o] <= 0) continue;
        const double deficit = share[o] * dealt - given[o];
        if (deficit > best_deficit + 1e-12) {
          best_deficit = deficit;
          best = o;
        }
      }
      if (best < 0) best = 0;  // nobody has room: keep it local
      given[best] += 1;
      if (best > 0) {
        --left[best - 1];
        p.set_owner(layer, e, best - 1);
      }
    }
  }
  return p;
}

}  // namespace st
