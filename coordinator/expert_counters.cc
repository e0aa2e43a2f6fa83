#include "coordinator/expert_counters.h"

#include "coordinator/remote_expert_executor.h"
#include "storage/cached_expert_executor.h"

namespace st {

CacheCounters ReadCacheCounters(Model& model) {
  CacheCounters c;
  auto* cached = dynamic_cast<CachedExpertExecutor*>(&model.experts());
  if (cached == nullptr) return c;
  const ExpertCache& cache = cached->cache();
  c.present = true;
  c.slots = cache.n_slots();
  c.resident = cache.resident();
  c.slot_bytes = cache.slot_bytes();
  c.counters = cache.counters();
  return c;
}

WorkerCounters ReadWorkerCounters(Model& model) {
  WorkerCounters w;
  auto* remote = dynamic_cast<RemoteExpertExecutor*>(&model.experts());
  if (remote == nullptr) return w;
  const RemoteExpertStats s = remote->stats();
  w.present = true;
  w.workers_up = s.workers_up;
  w.steps = s.steps;
  w.remote_requests = s.remote_requests;
  w.remote_items = s.remote_items;
  w.local_items = s.local_items;
  w.failover_items = s.failover_items;
  w.failovers = s.failovers;
  w.timeouts = s.timeouts;
  w.readmissions = s.readmissions;
  w.bytes_sent = s.bytes_sent;
  w.bytes_received = s.bytes_received;
  return w;
}

}  // namespace st
