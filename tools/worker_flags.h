// --workers / --worker-token / --cluster-config: run a command's experts on
// remote `smallthinker worker` processes (coordinator/remote_expert_executor.h).
#pragma once

#include <cstdio>
#include <filesystem>
#include <string>
#include <vector>

#include "CLI/CLI.hpp"
#include "absl/strings/ascii.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_replace.h"
#include "coordinator/remote_expert_executor.h"
#include "model/model.h"
#include "nlohmann/json.hpp"
#include "storage/expert_pack.h"
#include "tools/offload_flags.h"

namespace st::tools {

struct WorkerFlags {
  std::string workers, token, config_file;
  int step_timeout_ms = 0;
  bool any() const { return !workers.empty() || !config_file.empty(); }
};

inline void AddWorkerFlags(CLI::App* cmd, WorkerFlags* f) {
  cmd->add_option("--workers", f->workers,
                  "Expert workers host:port,... (started with `smallthinker worker`)")
      ->check(CLI::Validator(
          [](std::string& s) -> std::string {
            return absl::StripAsciiWhitespace(absl::StrReplaceAll(s, {{",", ""}})).empty()
                       ? "no worker address given"
                       : "";
          },
          "HOST:PORT,..."));
  cmd->add_option("--worker-token", f->token,
                  "Shared token for the workers, characters ! to ~ (default: $ST_WORKER_TOKEN)");
  cmd->add_option("--cluster-config", f->config_file,
                  "Deployment config (textproto smallthinker.v1.ClusterConfig: workers, token, "
                  "TLS, timeouts, local share)");
  cmd->add_option("--worker-timeout-ms", f->step_timeout_ms,
                  "Per layer step deadline before recomputing a worker's experts locally "
                  "(0 or unset: the cluster config's step_timeout_ms, else 2000)")
      ->check(CLI::Range(0, 3600000));
}

// Wraps the model's experts with the cluster, if one is configured.
inline absl::Status AttachWorkerFlags(Model& model, const WorkerFlags& f) {
  if (!f.any()) return absl::OkStatus();
  std::string token = f.token;
  if (token.empty()) {
    if (const char* env = std::getenv("ST_WORKER_TOKEN")) token = env;
  }
  auto cluster = ClusterConfigFromFlags(f.workers, token, f.config_file);
  if (!cluster.ok()) return cluster.status();
  if (f.step_timeout_ms > 0) cluster->set_step_timeout_ms(f.step_timeout_ms);
  return AttachWorkers(model, *cluster).status();
}

// With workers configured: attaches them (the coordinator computes its own
// share and failovers from the mapped GGUF; combining workers with the SSD
// offload is not supported yet) and returns nullptr. Otherwise ApplyOffload.
inline absl::StatusOr<Offload*> ApplyOffloadOrWorkers(Model& model, const OffloadFlags& offload,
                                                      const WorkerFlags& workers,
                                                      int64_t context_tokens, int sessions = 1) {
  if (!workers.any()) return ApplyOffload(model, offload, context_tokens, sessions);
  if (!model.options().native_kquant) {
    // Workers compute K-quant experts as stored: the coordinator's share
    // and failovers must too, or the logits would depend on placement.
    return absl::InvalidArgumentError(
        "--kquant-as-q8 cannot be combined with workers (they compute Q4_K/Q6_K experts as "
        "stored, and every expert must be computed the same way wherever it runs)");
  }
  if (!offload.memory_budget.empty()) {
    return absl::InvalidArgumentError(
        "--memory-budget with --workers is not supported yet (give workers their own "
        "--memory-budget)");
  }
  if (absl::Status s = AttachWorkerFlags(model, workers); !s.ok()) return s;
  // The coordinator's share and failovers compute from the GGUF mapping,
  // as the workers do: a pack's re-laid (re-rounded) down matrices would
  // make the numbers depend on where each expert ran.
  if (const std::vector<std::string> unused = PackFlagsGiven(offload); !unused.empty()) {
    std::fprintf(stderr, "warning: %s ignored: with workers, experts run from the GGUF\n",
                 absl::StrJoin(unused, ", ").c_str());
  } else if (const std::string pack = DefaultPackPath(model.path());
             !offload.no_pack && std::filesystem::exists(pack)) {
    std::fprintf(stderr,
                 "note: with workers, experts run from the GGUF, not the pack beside it (%s): "
                 "tokens equal those of a run with --no-pack\n",
                 pack.c_str());
  }
  return nullptr;
}

// Prints the cluster counters to stderr when the model runs on workers.
inline void PrintClusterSummary(Model& model) {
  if (auto* remote = dynamic_cast<RemoteExpertExecutor*>(&model.experts())) {
    std::fprintf(stderr, "%s\n", remote->Summary().c_str());
  }
}

// The cluster counters as JSON (null when the model runs locally).
inline nlohmann::json ClusterJson(Model& model) {
  auto* remote = dynamic_cast<RemoteExpertExecutor*>(&model.experts());
  if (remote == nullptr) return nullptr;
  const RemoteExpertStats s = remote->stats();
  return {{"workers_up", s.workers_up},         {"steps", s.steps},
          {"remote_requests", s.remote_requests}, {"remote_items", s.remote_items},
          {"local_items", s.local_items},       {"failovers", s.failovers},
          {"timeouts", s.timeouts},             {"failover_items", s.failover_items},
          {"readmissions", s.readmissions},     {"placements", s.placements},
          {"rebalances", s.rebalances},         {"assigns", s.assigns},
          {"assign_failures", s.assign_failures}, {"bytes_sent", s.bytes_sent},
          {"bytes_received", s.bytes_received},
          {"overhead_us_p50", OverheadPercentile(s, 0.5)},
          {"overhead_us_p99", OverheadPercentile(s, 0.99)}};
}

}  // namespace st::tools
