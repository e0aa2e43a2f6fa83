// What serving reports about where experts run: the expert cache's counters
// when the model computes experts from its pack (offloaded with
// --memory-budget, or every expert read into RAM once), and the remote
// workers' counters when it serves with --workers. GetStats and /metrics
// show them.
#pragma once

#include <cstdint>

#include "model/model.h"
#include "storage/expert_cache.h"

namespace st {

struct CacheCounters {
  bool present = false;  // the model's experts run through an ExpertCache
  int slots = 0;
  int resident = 0;
  uint64_t slot_bytes = 0;
  ExpertCacheCounters counters;
  double hit_rate() const {
    return counters.requests ? static_cast<double>(counters.hits) / counters.requests : 0.0;
  }
};

struct WorkerCounters {
  bool present = false;  // the model's experts run on remote workers
  int workers_up = 0;
  uint64_t steps = 0, remote_requests = 0, remote_items = 0, local_items = 0;
  uint64_t failover_items = 0, failovers = 0, timeouts = 0, readmissions = 0;
  uint64_t bytes_sent = 0, bytes_received = 0;
};

// Reads the cache counters of the model's expert executor. Not thread-safe
// with the forward pass: call on the thread that runs it (or before it runs).
CacheCounters ReadCacheCounters(Model& model);

// Reads the worker counters of the model's expert executor. Thread-safe.
WorkerCounters ReadWorkerCounters(Model& model);

}  // namespace st
