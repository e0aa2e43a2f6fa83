// Coordinator + `smallthinker worker` processes over real sockets: bit-exact
// logits against a single process, kill -9 failover, placement recomputed
// without and with a re-admitted worker, a slow worker behind a delaying
// proxy (deadline, and losing its share), hot experts from recorded stats,
// refused pairings, malformed messages, the worker client's stream driven
// from the calling thread, awaiting several workers at once, and workers in
// another network namespace, a worker on a Unix domain socket, and the
// worker's health service and clean shutdown on SIGTERM.
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <mutex>
#include <fstream>
#include <thread>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "common/cpu_affinity.h"
#include "coordinator/cluster_config.h"
#include "coordinator/hot_order.h"
#include "coordinator/remote_expert_executor.h"
#include "expert_worker/expert_service.h"
#include "expert_worker/worker_server.h"
#include "grpcpp/generic/generic_stub.h"
#include "grpcpp/grpcpp.h"
#include "grpc/health/v1/health.grpc.pb.h"
#include "glog/logging.h"
#include "gtest/gtest.h"
#include "kernels/packed_matrix.h"
#include "model/expert_executor.h"
#include "model/mapped_repack.h"
#include "model/model.h"
#include "model/session.h"
#include "model/synth.h"
#include "nlohmann/json.hpp"
#include "smallthinker/v1/expert.grpc.pb.h"
#include "storage/expert_pack.h"
#include "storage/expert_stats.h"
#include "tests/cluster/delay_proxy.h"
#include "tests/cluster/worker_process.h"
#include "tests/testutil/testutil.h"

namespace st {
namespace {

namespace v1 = smallthinker::v1;
using testing::DelayProxy;
using testing::WorkerProcess;

struct Trace {
  std::vector<int32_t> tokens;
  std::vector<std::vector<float>> logits;  // per step, [vocab]
};

// Greedy decode one token at a time; hook(step) runs before each step.
Trace Greedy(Model& model, const std::vector<int32_t>& prompt, int n,
             const std::function<void(int)>& hook = nullptr) {
  Session s(model, 256);
  Trace t;
  auto logits = s.Evaluate(prompt, /*all_logits=*/false);
  EXPECT_TRUE(logits.ok()) << logits.status();
  for (int i = 0; i < n && logits.ok(); ++i) {
    t.logits.push_back(*logits);
    const int32_t tok = static_cast<int32_t>(
        std::max_element(logits->begin(), logits->end()) - logits->begin());
    t.tokens.push_back(tok);
    if (hook) hook(i);
    logits = s.Evaluate({tok}, false);
    EXPECT_TRUE(logits.ok()) << logits.status();
  }
  return t;
}

void ExpectBitIdentical(const Trace& a, const Trace& b) {
  ASSERT_EQ(a.tokens, b.tokens);
  ASSERT_EQ(a.logits.size(), b.logits.size());
  for (size_t i = 0; i < a.logits.size(); ++i) {
    ASSERT_EQ(a.logits[i].size(), b.logits[i].size());
    EXPECT_EQ(std::memcmp(a.logits[i].data(), b.logits[i].data(), a.logits[i].size() * 4), 0)
        << "logits differ at step " << i;
  }
}

// The worker's Describe answer (no token needed by these workers).
v1::DescribeResponse Describe(const std::string& address) {
  auto stub = v1::ExpertService::NewStub(
      grpc::CreateChannel(address, grpc::InsecureChannelCredentials()));
  grpc::ClientContext ctx;
  v1::DescribeResponse d;
  EXPECT_TRUE(stub->Describe(&ctx, v1::DescribeRequest(), &d).ok());
  return d;
}

const std::vector<int32_t> kPrompt = {72, 101, 108, 108, 111, 32, 119, 111, 114, 108, 100};

class ClusterTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto path = testing::SynthModel(dir_.path(), "tiny", DType::kQ8_0);
    ASSERT_TRUE(path.ok()) << path.status();
    model_path_ = *path;
  }
  std::unique_ptr<Model> Load() {
    auto m = Model::Load(model_path_, ModelOptions{.threads = 1, .max_batch = 64});
    EXPECT_TRUE(m.ok()) << m.status();
    return m.ok() ? std::move(*m) : nullptr;
  }
  std::unique_ptr<WorkerProcess> StartWorker(const std::vector<std::string>& extra = {},
                                             const std::string& listen = "127.0.0.1:0",
                                             const std::string& model = "") {
    auto w = WorkerProcess::Start(model.empty() ? model_path_ : model, listen, extra);
    EXPECT_TRUE(w.ok()) << w.status();
    return w.ok() ? std::move(*w) : nullptr;
  }
  static v1::ClusterConfig Cluster(const std::vector<std::string>& addresses) {
    v1::ClusterConfig c;
    for (const std::string& a : addresses) c.add_worker()->set_address(a);
    c.set_readmit_backoff_min_ms(50);
    c.set_readmit_backoff_max_ms(400);
    return c;
  }
  // Cluster() with `local_share` of each step computed by the coordinator
  // (its hottest expert kept local when the share is positive) and a fixed
  // placement: a speed rebalance (workers measured their speed at startup on
  // a busy machine) would keep gained experts local for a moment.
  static v1::ClusterConfig FixedShareCluster(const std::vector<std::string>& addresses,
                                             double local_share) {
    v1::ClusterConfig c = Cluster(addresses);
    c.set_local_share(local_share);
    c.set_hot_experts_local(local_share > 0 ? 1 : 0);
    c.set_rebalance_factor(-1);
    return c;
  }
  Trace Reference(int n) {
    auto m = Load();
    return Greedy(*m, kPrompt, n);
  }

  testing::TempDir dir_;
  std::string model_path_;
};

TEST_F(ClusterTest, TwoWorkersGiveBitIdenticalLogits) {
  const Trace want = Reference(12);
  auto w1 = StartWorker(), w2 = StartWorker();
  ASSERT_TRUE(w1 && w2);
  for (double local_share : {0.0, 0.4}) {
    SCOPED_TRACE(absl::StrCat("local_share ", local_share));
    auto m = Load();
    v1::ClusterConfig c = FixedShareCluster({w1->address(), w2->address()}, local_share);
    c.set_prefetch_hints(local_share > 0);
    auto remote = AttachWorkers(*m, c);
    ASSERT_TRUE(remote.ok()) << remote.status();
    ExpectBitIdentical(want, Greedy(*m, kPrompt, 12));
    const RemoteExpertStats s = (*remote)->stats();
    EXPECT_GT(s.remote_items, 0u);
    EXPECT_EQ(s.failovers, 0u);
    EXPECT_GT(s.bytes_sent, 0u);
    EXPECT_GT(s.bytes_received, 0u);
    if (local_share > 0) {
      EXPECT_GT(s.local_items, 0u);
    } else {
      EXPECT_EQ(s.local_items, 0u);
    }
    // Shares follow the speeds the workers measured at startup, which a busy
    // machine can skew so far that one of them gets nothing.
    const std::vector<int> owned = (*remote)->OwnedCounts();
    EXPECT_GT(owned[0] + owned[1], 0);
  }
}

// A Q4_K_M model: the worker computes the K-quant experts it is assigned as
// stored, as the coordinator computes its own share, and the tokens and
// logits are the single process's.
TEST_F(ClusterTest, KQuantModelGivesTheSingleProcessLogits) {
  auto path = testing::SynthModel(dir_.path(), "tiny-256", DType::kQ8_0, Gating::kSigmoid, 7,
                                  false, "", SynthMix::kQ4_K_M);
  ASSERT_TRUE(path.ok()) << path.status();
  model_path_ = *path;
  const Trace want = Reference(12);
  auto w = StartWorker();
  ASSERT_TRUE(w);
  auto m = Load();
  v1::ClusterConfig c = Cluster({w->address()});
  c.set_local_share(0.4);
  c.set_hot_experts_local(1);
  c.set_rebalance_factor(-1);
  auto remote = AttachWorkers(*m, c);
  ASSERT_TRUE(remote.ok()) << remote.status();
  ExpectBitIdentical(want, Greedy(*m, kPrompt, 12));
  const RemoteExpertStats s = (*remote)->stats();
  EXPECT_GT(s.remote_items, 0u);
  EXPECT_GT(s.local_items, 0u);
  EXPECT_EQ(s.failovers, 0u);
}

// A worker built for another CPU (ST_FOREIGN_SMALLTHINKER: scripts/cross-arm64
// runs this test with its aarch64 build, under qemu-user) computes its share
// with that CPU's kernels (NEON there), and the tokens and logits are still
// the single process's, bit for bit: every kernel equals its scalar twin, so
// the ISA does not move a number, for a Q8_0 model and a Q4_K_M one.
TEST_F(ClusterTest, WorkerOnAnotherCpuGivesTheSingleProcessLogits) {
  const std::string binary = testing::ForeignSmallthinkerBinary();
  if (binary.empty()) {
    GTEST_SKIP() << "ST_FOREIGN_SMALLTHINKER is not set (scripts/cross-arm64 sets it)";
  }
  auto q4_k_m = testing::SynthModel(dir_.path(), "tiny-256", DType::kQ8_0, Gating::kSigmoid, 7,
                                    false, "", SynthMix::kQ4_K_M);
  ASSERT_TRUE(q4_k_m.ok()) << q4_k_m.status();
  for (const std::string& model : {model_path_, *q4_k_m}) {
    SCOPED_TRACE(model);
    model_path_ = model;
    const Trace want = Reference(12);
    auto w = WorkerProcess::Start(model, "127.0.0.1:0", {}, {}, binary);
    ASSERT_TRUE(w.ok()) << w.status();
    const v1::DescribeResponse d = Describe((*w)->address());
    EXPECT_NE(d.isa(), DispatchedIsa()) << "the worker should run on another CPU";
    LOG(INFO) << "worker ISA " << d.isa() << ", coordinator " << DispatchedIsa();
    for (double local_share : {0.0, 0.4}) {
      SCOPED_TRACE(absl::StrCat("local_share ", local_share));
      auto m = Load();
      v1::ClusterConfig c = FixedShareCluster({(*w)->address()}, local_share);
      // An emulated worker is much slower than a native one: no failover
      // for being slow (that would hide its numbers behind the local ones).
      c.set_step_timeout_ms(60000);
      c.set_call_timeout_ms(60000);
      auto remote = AttachWorkers(*m, c);
      ASSERT_TRUE(remote.ok()) << remote.status();
      ExpectBitIdentical(want, Greedy(*m, kPrompt, 12));
      const RemoteExpertStats s = (*remote)->stats();
      EXPECT_GT(s.remote_items, 0u);
      EXPECT_EQ(s.failovers, 0u);
    }
  }
}

// A worker's share of a step whose reply would pass the message cap (a long
// prefill on the 4B model: items x 1536 x 4 bytes past 64 MiB failed over
// every time) goes as several messages of whole tokens. Here the cap is
// lowered to 4 KiB, a few of the tiny model's tokens: the prompt's steps
// need several, decode steps one; the logits stay bit-identical, with and
// without a local share (per-item replies) and over two workers.
TEST_F(ClusterTest, StepLargerThanAMessageGoesInSeveral) {
  const Trace want = Reference(6);
  auto w1 = StartWorker(), w2 = StartWorker();
  ASSERT_TRUE(w1 && w2);
  struct Case {
    std::vector<std::string> workers;
    double local_share;
  };
  for (const Case& k : {Case{{w1->address()}, 0.0}, Case{{w1->address()}, 0.4},
                        Case{{w1->address(), w2->address()}, 0.0}}) {
    SCOPED_TRACE(absl::StrCat(k.workers.size(), " workers, local_share ", k.local_share));
    uint64_t requests[2] = {0, 0}, combined[2] = {0, 0};
    for (int capped : {0, 1}) {
      auto m = Load();
      v1::ClusterConfig c = Cluster(k.workers);
      c.set_local_share(k.local_share);
      c.set_rebalance_factor(-1);
      c.set_max_message_bytes(capped ? 4096 : 0);
      auto remote = AttachWorkers(*m, c);
      ASSERT_TRUE(remote.ok()) << remote.status();
      ExpectBitIdentical(want, Greedy(*m, kPrompt, 6));
      const RemoteExpertStats s = (*remote)->stats();
      EXPECT_EQ(s.failovers, 0u) << (*remote)->Summary();
      EXPECT_GT(s.remote_items, 0u);
      requests[capped] = s.remote_requests;
      combined[capped] = s.combined_tokens;
    }
    // The same placement, more messages: the prompt's steps were split, in
    // whole tokens (a worker combines at least as many: a message of whole
    // tokens only is combined even when the step's others are not).
    EXPECT_GT(requests[1], requests[0]);
    EXPECT_GE(combined[1], combined[0]);
    if (k.local_share == 0 && k.workers.size() == 1) {
      EXPECT_GT(combined[0], 0u);  // every token whole on the one worker
      EXPECT_EQ(combined[1], combined[0]);
    }
  }
  // A cap that cannot hold one token is refused up front.
  auto m = Load();
  v1::ClusterConfig c = Cluster({w1->address()});
  c.set_max_message_bytes(1000);
  EXPECT_EQ(AttachWorkers(*m, c).status().code(), absl::StatusCode::kInvalidArgument);
}

// Decodes one token at a time (fresh sessions) until `done` or 15 s.
bool DecodeUntil(Model& m, const std::function<bool()>& done) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(15);
  while (!done()) {
    if (std::chrono::steady_clock::now() > deadline) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
    Greedy(m, kPrompt, 1);
  }
  return true;
}

TEST_F(ClusterTest, KilledWorkerFailsOverAndIsReadmitted) {
  const Trace want = Reference(16);
  auto w1 = StartWorker(), w2 = StartWorker();
  ASSERT_TRUE(w1 && w2);
  auto m = Load();
  const int total = m->config().n_layers * m->config().n_experts;
  v1::ClusterConfig c = Cluster({w1->address(), w2->address()});
  c.set_rebalance_factor(-1);  // only membership moves placement here
  auto remote = AttachWorkers(*m, c);
  ASSERT_TRUE(remote.ok()) << remote.status();
  RemoteExpertExecutor& r = **remote;
  // (Placement follows the workers' measured speeds: a worker that measured
  // itself slow during a busy moment could be given nothing to lose.)
  ASSERT_GT(r.OwnedCounts()[0], 0) << "the worker to kill holds no experts: " << r.Summary();
  const std::string address = w1->address();
  ExpectBitIdentical(want, Greedy(*m, kPrompt, 16, [&](int step) {
    if (step == 5) w1->Kill();  // kill -9 mid-generation
  }));
  RemoteExpertStats s = r.stats();
  EXPECT_GE(s.failovers, 1u);
  EXPECT_GT(s.failover_items, 0u);
  EXPECT_EQ(s.workers_up, 1);

  // Placement is recomputed without it: once its Assign is through, the
  // survivor computes all of the dead worker's experts (local_share 0).
  ASSERT_TRUE(DecodeUntil(*m, [&] { return r.OwnedCounts()[1] == total; }))
      << "survivor owns " << r.OwnedCounts()[1] << " of " << total << "; " << r.Summary();
  EXPECT_EQ(r.OwnedCounts()[0], 0);
  // The copies of the experts the coordinator computed in the dead
  // worker's place are freed once the survivor has them (nothing else in
  // this process has packed copies now: Reference's model is gone). The
  // tiny model's experts are packable, so the failover made copies.
  ASSERT_TRUE(CanPack(DType::kQ8_0, m->config().d_expert, m->config().d_model));
  EXPECT_EQ(PackedCopyBytes(), 0u);
  s = r.stats();
  EXPECT_GE(s.placements, 1u);
  EXPECT_GE(s.assigns, 1u);
  EXPECT_EQ(s.assign_failures, 0u);
  ExpectBitIdentical(want, Greedy(*m, kPrompt, 16));
  EXPECT_EQ(r.stats().local_items, s.local_items) << "nothing computed locally any more";
  EXPECT_GT(r.stats().remote_items, s.remote_items);
  EXPECT_GT(r.stats().combined_tokens, s.combined_tokens) << "the survivor holds whole tokens";

  // Restarted on the same port mid-generation: re-admitted with backoff
  // (<= 400 ms) and placement recomputed with it.
  ExpectBitIdentical(want, Greedy(*m, kPrompt, 16, [&](int step) {
    if (step == 3) {
      w1 = StartWorker({}, address);
      ASSERT_TRUE(w1);
    }
  }));
  ASSERT_TRUE(DecodeUntil(*m, [&] { return r.stats().readmissions >= 1; })) << r.Summary();
  s = r.stats();
  EXPECT_EQ(s.workers_up, 2);
  EXPECT_GE(s.placements, 2u);
  EXPECT_GT(r.OwnedCounts()[0], 0);
  EXPECT_GT(r.OwnedCounts()[1], 0);
  EXPECT_EQ(r.OwnedCounts()[0] + r.OwnedCounts()[1], total);
  // Back in service and still exact.
  const uint64_t remote_before = s.remote_items;
  ExpectBitIdentical(want, Greedy(*m, kPrompt, 16));
  EXPECT_GT(r.stats().remote_items, remote_before);
  const std::string summary = r.Summary();
  for (const char* word : {"failovers", "timeouts", "re-admissions", "placement recomputes",
                           "assigns"}) {
    EXPECT_NE(summary.find(word), std::string::npos) << summary;
  }
}

// A worker that does not answer at start is left out, not fatal: the run
// goes on with the others and the worker joins once it answers. None
// answering, or one that answers and is no worker at all, stops the run.
TEST_F(ClusterTest, WorkerDownAtStartIsLeftOutThenAdmitted) {
  const Trace want = Reference(16);
  auto w1 = StartWorker(), w2 = StartWorker();
  ASSERT_TRUE(w1 && w2);
  const std::string address = w1->address();
  w1->Kill();  // nothing listens at `address` now
  w1.reset();
  auto m = Load();
  v1::ClusterConfig c = Cluster({address, w2->address()});
  c.set_rebalance_factor(-1);
  auto remote = AttachWorkers(*m, c);
  ASSERT_TRUE(remote.ok()) << remote.status();
  RemoteExpertExecutor& r = **remote;
  EXPECT_EQ(r.stats().workers_up, 1);
  EXPECT_EQ(r.OwnedCounts()[0], 0);
  EXPECT_GT(r.OwnedCounts()[1], 0);
  EXPECT_EQ(r.stats().failovers, 0u) << "not a failover";
  EXPECT_EQ(r.stats().assigns, 1u) << "the start's Assign counts";
  ExpectBitIdentical(want, Greedy(*m, kPrompt, 16));
  w1 = StartWorker({}, address);
  ASSERT_TRUE(w1);
  ASSERT_TRUE(DecodeUntil(*m, [&] { return r.stats().readmissions >= 1; })) << r.Summary();
  EXPECT_EQ(r.stats().workers_up, 2);
  EXPECT_GE(r.stats().assigns, 2u) << "and the re-admission's";
  ASSERT_TRUE(DecodeUntil(*m, [&] { return r.OwnedCounts()[0] > 0; })) << r.Summary();
  ExpectBitIdentical(want, Greedy(*m, kPrompt, 16));

  // No worker answering at all is a configuration to fix, each named.
  auto alone = Load();
  auto none = AttachWorkers(*alone, Cluster({"127.0.0.1:1", "127.0.0.1:2"}));
  ASSERT_FALSE(none.ok());
  EXPECT_EQ(none.status().code(), absl::StatusCode::kUnavailable) << none.status();
  for (const char* named : {"no worker answered", "127.0.0.1:1", "127.0.0.1:2", "TLS"}) {
    EXPECT_NE(none.status().message().find(named), std::string::npos) << none.status();
  }

  // A gRPC server without the expert service (a bare health service):
  // refused, said so.
  grpc::health::v1::Health::Service health;
  grpc::ServerBuilder builder;
  builder.RegisterService(&health);
  int port = 0;
  builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &port);
  std::unique_ptr<grpc::Server> other = builder.BuildAndStart();
  ASSERT_NE(other, nullptr);
  auto wrong = Load();
  auto refused = AttachWorkers(*wrong, Cluster({absl::StrCat("127.0.0.1:", port)}));
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kUnimplemented);
  EXPECT_NE(refused.status().message().find("no smallthinker worker"), std::string::npos)
      << refused.status();
  other->Shutdown();
}

// A worker on the coordinator's host over a Unix domain socket (unix:PATH
// for --listen and --workers), next to one on TCP loopback: the same logits;
// killed with -9 (its socket file stays behind) and restarted on the same
// path, it is re-admitted.
TEST_F(ClusterTest, WorkerOverUnixSocket) {
  const Trace want = Reference(12);
  const std::string address = absl::StrCat("unix:", dir_.path(), "/worker.sock");
  auto w1 = StartWorker({}, address), w2 = StartWorker();
  ASSERT_TRUE(w1 && w2);
  EXPECT_EQ(w1->address(), address);
  struct stat st;
  ASSERT_EQ(stat(address.substr(5).c_str(), &st), 0);
  EXPECT_TRUE(S_ISSOCK(st.st_mode));
  auto m = Load();
  absl::StatusOr<v1::ClusterConfig> c =
      ClusterConfigFromFlags(absl::StrCat(address, ",", w2->address()), "", "");
  ASSERT_TRUE(c.ok()) << c.status();
  c->set_readmit_backoff_min_ms(50);
  c->set_readmit_backoff_max_ms(400);
  c->set_rebalance_factor(-1);
  auto remote = AttachWorkers(*m, *c);
  ASSERT_TRUE(remote.ok()) << remote.status();
  RemoteExpertExecutor& r = **remote;
  ExpectBitIdentical(want, Greedy(*m, kPrompt, 12));
  EXPECT_GT(r.OwnedCounts()[0], 0);
  EXPECT_GT(r.stats().remote_items, 0u);
  EXPECT_EQ(r.stats().failovers, 0u);

  ExpectBitIdentical(want, Greedy(*m, kPrompt, 12, [&](int step) {
    if (step == 4) w1->Kill();
  }));
  EXPECT_GE(r.stats().failovers, 1u);
  w1 = StartWorker({}, address);  // binds over the stale socket file
  ASSERT_TRUE(w1);
  ASSERT_TRUE(DecodeUntil(*m, [&] { return r.stats().readmissions >= 1; })) << r.Summary();
  const uint64_t remote_before = r.stats().remote_items;
  ExpectBitIdentical(want, Greedy(*m, kPrompt, 12));
  EXPECT_EQ(r.stats().workers_up, 2);
  EXPECT_GT(r.stats().remote_items, remote_before);
}

// `bench --workers --vs-local`: each decode repetition runs on the cluster
// and on the coordinator alone, in turns, and the JSON holds both series
// and their ratios; without workers the flag is refused.
TEST_F(ClusterTest, BenchVsLocalTimesClusterAndAloneInTurns) {
  auto w = StartWorker();
  ASSERT_TRUE(w);
  auto bench = [&](const std::string& args) {
    return testing::RunShell(absl::StrCat("'", ST_CLI, "' bench -m '", model_path_,
                                          "' -p 0 -n 6 -r 3 -t 1 -o json --bandwidth-size 16MiB ",
                                          args, " 2>/dev/null"));
  };
  const testing::ShellRun run = bench(absl::StrCat("--workers ", w->address(), " --vs-local"));
  ASSERT_EQ(run.exit_code, 0) << run.out;
  const nlohmann::json j = nlohmann::json::parse(run.out);
  ASSERT_EQ(j["vs_local"].size(), 1u) << run.out;
  const nlohmann::json& v = j["vs_local"][0];
  EXPECT_EQ(v["test"], "tg6");
  ASSERT_EQ(v["cluster_ts"].size(), 3u);
  ASSERT_EQ(v["local_ts"].size(), 3u);
  ASSERT_EQ(v["ratios"].size(), 3u);
  for (int i = 0; i < 3; ++i) {
    const double c = v["cluster_ts"][i], l = v["local_ts"][i], r = v["ratios"][i];
    EXPECT_GT(c, 0);
    EXPECT_GT(l, 0);
    EXPECT_NEAR(r, c / l, 1e-9);
  }
  EXPECT_GT(v["median_ratio"].get<double>(), 0);
  // The cluster's repetitions went to the worker (3 x 6 steps, warm-up aside).
  EXPECT_GE(j["cluster"]["remote_items"].get<uint64_t>(), 3u * 6u);
  EXPECT_EQ(j["cluster"]["failovers"].get<uint64_t>(), 0u);
  // Every expert ran on the worker, which does not report its ReGLU
  // sparsity: the fraction is null, not the 100% it had been printed as.
  ASSERT_EQ(j["cluster"]["local_items"].get<uint64_t>(), 0u) << run.out;
  ASSERT_EQ(j["tests"].size(), 1u) << run.out;
  EXPECT_TRUE(j["tests"][0]["experts"]["active_neuron_fraction"].is_null()) << run.out;

  EXPECT_NE(bench("--vs-local").exit_code, 0) << "--vs-local without workers";
}

// One worker listed under two addresses is refused: as two workers they
// had kept replacing each other's assignment (49 failovers in 1.4 s).
TEST_F(ClusterTest, OneWorkerListedTwiceIsRefused) {
  // On every address, reached as 127.0.0.1 and 127.0.0.2 (no name to
  // resolve: c-ares leaks a few bytes per lookup under LeakSanitizer).
  auto w = StartWorker({}, "0.0.0.0:0");
  ASSERT_TRUE(w);
  const std::string port = w->address().substr(w->address().rfind(':') + 1);
  auto m = Load();
  auto remote = AttachWorkers(*m, Cluster({"127.0.0.1:" + port, "127.0.0.2:" + port}));
  ASSERT_FALSE(remote.ok());
  EXPECT_EQ(remote.status().code(), absl::StatusCode::kInvalidArgument) << remote.status();
  EXPECT_NE(remote.status().message().find("are one worker process"), std::string::npos)
      << remote.status();
  // More hot experts kept local than a layer has: a configuration mistake.
  v1::ClusterConfig hot = Cluster({"127.0.0.1:" + port});
  hot.set_hot_experts_local(m->config().n_experts + 1);
  remote = AttachWorkers(*m, hot);
  EXPECT_EQ(remote.status().code(), absl::StatusCode::kInvalidArgument) << remote.status();
  EXPECT_NE(remote.status().message().find("hot_experts_local"), std::string::npos)
      << remote.status();
  auto w2 = StartWorker();
  ASSERT_TRUE(w2);
  EXPECT_TRUE(AttachWorkers(*m, Cluster({"127.0.0.1:" + port, w2->address()})).ok());
}

// With workers the coordinator computes from the GGUF, as workers do: a
// pack beside the model is not used, and that is said (the tokens are then
// those of a run with --no-pack); pack flags given anyway are named as
// ignored.
TEST_F(ClusterTest, WithWorkersAPackBesideIsNamedAsUnused) {
  auto w = StartWorker();
  ASSERT_TRUE(w);
  ASSERT_EQ(testing::RunShell(absl::StrCat("'", ST_CLI, "' convert '", model_path_, "' -q 2>&1"))
                .exit_code,
            0);
  const std::string err = dir_.File("err.txt");
  auto run = [&](const std::string& args) {
    testing::ShellRun r = testing::RunShell(
        absl::StrCat("'", ST_CLI, "' run -m '", model_path_, "' -p Hi -n 6 --temp 0 --ignore-eos "
                     "--json -t 1 ", args, " 2>'", err, "'"));
    std::ifstream in(err);
    std::string e((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    return std::make_pair(r, e);
  };
  const auto [cluster, cluster_err] = run("--workers " + w->address());
  ASSERT_EQ(cluster.exit_code, 0) << cluster_err;
  EXPECT_NE(cluster_err.find("note: with workers, experts run from the GGUF, not the pack beside "
                             "it"),
            std::string::npos)
      << cluster_err;
  const auto [plain, plain_err] = run("--no-pack");
  ASSERT_EQ(plain.exit_code, 0) << plain_err;
  EXPECT_EQ(nlohmann::json::parse(cluster.out)["generated_ids"],
            nlohmann::json::parse(plain.out)["generated_ids"]);
  const auto [flags, flags_err] =
      run(absl::StrCat("--workers ", w->address(), " --pack '", model_path_, ".stpack' --speculate"));
  ASSERT_EQ(flags.exit_code, 0) << flags_err;
  EXPECT_NE(flags_err.find("warning: --pack, --speculate ignored: with workers, experts run from "
                           "the GGUF"),
            std::string::npos)
      << flags_err;
}

// A second worker on an address a live one listens on is refused: gRPC's
// default SO_REUSEPORT had let it share the TCP port, and on a Unix socket
// it replaced the live worker's socket file. A stale file (its worker
// killed) is still replaced.
TEST_F(ClusterTest, SecondWorkerOnAnAddressInUseIsRefused) {
  auto tcp = StartWorker();
  ASSERT_TRUE(tcp);
  const std::string unix_address = absl::StrCat("unix:", dir_.path(), "/taken.sock");
  auto on_unix = StartWorker({}, unix_address);
  ASSERT_TRUE(on_unix);
  for (const std::string& address : {tcp->address(), unix_address}) {
    SCOPED_TRACE(address);
    const testing::CommandResult r = testing::RunSmallthinker(
        {"worker", "-m", model_path_, "--listen", address, "-t", "1"}, {}, absl::Seconds(20));
    EXPECT_TRUE(r.exited_with(1)) << r.status << " " << r.err;
    EXPECT_NE(r.err.find("address in use"), std::string::npos) << r.err;
    // The first worker still answers at its address.
    EXPECT_GT(Describe(address).n_layers(), 0);
  }
  on_unix->Kill();  // leaves its socket file behind
  on_unix = StartWorker({}, unix_address);
  ASSERT_TRUE(on_unix);
  EXPECT_GT(Describe(unix_address).n_layers(), 0);
}

// The same-host split: the coordinator computes its share on the forward
// thread alone (local_threads 1) while a one-thread worker on a Unix socket
// computes the rest, then polls for the reply without sleeping (spin_us):
// the same logits. Out-of-range knobs are refused.
TEST_F(ClusterTest, SameHostSplitWithSpinningAwait) {
  const Trace want = Reference(12);
  auto w = StartWorker({}, absl::StrCat("unix:", dir_.path(), "/split.sock"));
  ASSERT_TRUE(w);
  auto m = Load();
  v1::ClusterConfig c = Cluster({w->address()});
  c.set_local_share(0.5);
  c.set_local_threads(1);
  c.set_spin_us(300);
  c.set_rebalance_factor(-1);
  auto remote = AttachWorkers(*m, c);
  ASSERT_TRUE(remote.ok()) << remote.status();
  ExpectBitIdentical(want, Greedy(*m, kPrompt, 12));
  const RemoteExpertStats s = (*remote)->stats();
  EXPECT_GT(s.remote_items, 0u);
  EXPECT_GT(s.local_items, 0u);
  EXPECT_EQ(s.failovers, 0u);

  for (auto bad : {std::make_pair(3, 0), std::make_pair(0, -1), std::make_pair(0, 200000)}) {
    auto m2 = Load();
    v1::ClusterConfig b = Cluster({w->address()});
    b.set_local_threads(bad.first);
    b.set_spin_us(bad.second);
    auto r = AttachWorkers(*m2, b);
    EXPECT_TRUE(absl::IsInvalidArgument(r.status())) << r.status();
  }
}

TEST_F(ClusterTest, SlowWorkerDoesNotStallPastTheDeadline) {
  const Trace want = Reference(8);
  auto fast = StartWorker(), slow = StartWorker();
  ASSERT_TRUE(fast && slow);
  DelayProxy proxy(slow->port(), /*one_way_delay_us=*/0);
  auto m = Load();
  const int total = m->config().n_layers * m->config().n_experts;
  v1::ClusterConfig c = Cluster({fast->address(), absl::StrCat("127.0.0.1:", proxy.port())});
  c.set_step_timeout_ms(150);
  c.set_readmit_backoff_min_ms(5000);  // stays out for the rest of the test
  c.set_readmit_backoff_max_ms(5000);
  auto remote = AttachWorkers(*m, c);
  ASSERT_TRUE(remote.ok()) << remote.status();
  RemoteExpertExecutor& r = **remote;
  EXPECT_GT(r.OwnedCounts()[1], 0);
  proxy.set_delay_us(400000);  // 800 ms round trip: far past the step deadline
  const auto start = std::chrono::steady_clock::now();
  const Trace got = Greedy(*m, kPrompt, 8);
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  ExpectBitIdentical(want, got);
  const RemoteExpertStats s = r.stats();
  EXPECT_EQ(s.timeouts, 1u);  // one step waited for it, then its work moved away
  EXPECT_LT(seconds, 0.15 + 1.5) << "decode stalled";
  EXPECT_EQ(r.OwnedCounts()[1], 0);
  EXPECT_EQ(s.workers_up, 1);
  EXPECT_GE(s.placements, 1u);
  // Its experts go to the fast worker once that one's Assign is through.
  ASSERT_TRUE(DecodeUntil(*m, [&] { return r.OwnedCounts()[0] == total; })) << r.Summary();
  ExpectBitIdentical(want, Greedy(*m, kPrompt, 8));
}

// A worker that stays slower than the step deadline (a slow link) is not
// re-admitted while it is: each re-admission had cost one step's whole
// deadline again (a timeout, then failover), for as long as the run went on.
// Once it answers in time it comes back.
TEST_F(ClusterTest, SlowWorkerStaysOutUntilItAnswersInTime) {
  const Trace want = Reference(8);
  auto fast = StartWorker(), slow = StartWorker();
  ASSERT_TRUE(fast && slow);
  DelayProxy proxy(slow->port(), /*one_way_delay_us=*/0);
  auto m = Load();
  v1::ClusterConfig c = Cluster({fast->address(), absl::StrCat("127.0.0.1:", proxy.port())});
  c.set_step_timeout_ms(200);
  c.set_readmit_backoff_min_ms(20);  // retried as often as it can be
  c.set_readmit_backoff_max_ms(20);
  c.set_rebalance_factor(-1);  // only membership moves placement here
  auto remote = AttachWorkers(*m, c);
  ASSERT_TRUE(remote.ok()) << remote.status();
  RemoteExpertExecutor& r = **remote;
  ASSERT_GT(r.OwnedCounts()[1], 0) << r.Summary();
  proxy.set_delay_us(150000);  // 300 ms a call: every step would time out
  ExpectBitIdentical(want, Greedy(*m, kPrompt, 8));
  // Decode on for 4 s: re-admission attempts every ~0.6 s (two slow calls
  // and the backoff) are all refused.
  const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(4);
  while (std::chrono::steady_clock::now() < until) {
    ExpectBitIdentical(want, Greedy(*m, kPrompt, 8));
  }
  RemoteExpertStats s = r.stats();
  EXPECT_EQ(s.timeouts, 1u) << r.Summary();
  EXPECT_EQ(s.readmissions, 0u) << r.Summary();
  EXPECT_EQ(s.workers_up, 1);
  proxy.set_delay_us(0);
  ASSERT_TRUE(DecodeUntil(*m, [&] { return r.stats().readmissions >= 1; })) << r.Summary();
  ExpectBitIdentical(want, Greedy(*m, kPrompt, 8));
  s = r.stats();
  EXPECT_EQ(s.timeouts, 1u) << r.Summary();
  EXPECT_EQ(s.workers_up, 2);
}

// A worker 200 ms of round trip away (each of TCP's, HTTP/2's and the
// call's). gRPC's minimum connect timeout had been set to 100 ms: no
// connection to it could finish ("connection attempt timed out before
// receiving SETTINGS frame").
TEST_F(ClusterTest, FarWorkerIsReachable) {
  const Trace want = Reference(2);
  auto w = StartWorker();
  ASSERT_TRUE(w);
  DelayProxy proxy(w->port(), /*one_way_delay_us=*/100000);
  auto m = Load();
  v1::ClusterConfig c = Cluster({absl::StrCat("127.0.0.1:", proxy.port())});
  c.set_step_timeout_ms(10000);
  auto remote = AttachWorkers(*m, c);
  ASSERT_TRUE(remote.ok()) << remote.status();
  ExpectBitIdentical(want, Greedy(*m, kPrompt, 2));
  const RemoteExpertStats s = (*remote)->stats();
  EXPECT_EQ(s.failovers, 0u) << (*remote)->Summary();
  EXPECT_GT(s.remote_items, 0u);
}

// A worker that stops answering while the supervisor re-admits it: the
// coordinator's teardown cancels the Describe in flight instead of waiting
// out its deadline (5 s here; an Assign's is 60 s).
TEST_F(ClusterTest, TeardownDoesNotWaitForAStoppedWorkersCall) {
  auto w = StartWorker();
  ASSERT_TRUE(w);
  auto m = Load();
  v1::ClusterConfig c = Cluster({w->address()});
  c.set_step_timeout_ms(100);
  c.set_call_timeout_ms(5000);
  c.set_readmit_backoff_min_ms(10);
  auto remote = AttachWorkers(*m, c);
  ASSERT_TRUE(remote.ok()) << remote.status();
  w->Pause();                             // it answers nothing now
  Greedy(*m, kPrompt, 2);                   // a step times out: the worker is down
  EXPECT_EQ((*remote)->stats().workers_up, 0) << (*remote)->Summary();
  std::this_thread::sleep_for(std::chrono::milliseconds(300));  // a re-admission is waiting
  const auto start = std::chrono::steady_clock::now();
  m.reset();
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  ::kill(w->pid(), SIGCONT);
  EXPECT_LT(seconds, 2.0);
}

// Each worker has its own supervisor thread: while one stopped worker's
// re-admission waits out its Describe (10 s here; an Assign's is 60 s),
// another worker, killed and restarted, comes back within its backoff. One
// supervisor for every worker had held it until the stalled call ended.
TEST_F(ClusterTest, AStalledWorkerHoldsUpNoOtherWorkersReadmission) {
  const Trace want = Reference(4);
  auto stalled = StartWorker(), other = StartWorker();
  ASSERT_TRUE(stalled && other);
  auto m = Load();
  v1::ClusterConfig c = Cluster({stalled->address(), other->address()});
  c.set_step_timeout_ms(100);
  c.set_call_timeout_ms(10000);
  c.set_rebalance_factor(-1);
  auto remote = AttachWorkers(*m, c);
  ASSERT_TRUE(remote.ok()) << remote.status();
  RemoteExpertExecutor& r = **remote;
  stalled->Pause();
  ExpectBitIdentical(want, Greedy(*m, kPrompt, 4));  // a step times out: it is down
  ASSERT_EQ(r.stats().workers_up, 1) << r.Summary();
  // Its backoff (50 ms) is over: a re-admission's Describe is waiting on it.
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  const std::string address = other->address();
  ExpectBitIdentical(want, Greedy(*m, kPrompt, 4, [&](int step) {
    if (step == 1) other->Kill();
  }));
  ASSERT_EQ(r.stats().workers_up, 0) << r.Summary();
  EXPECT_EQ(r.stats().readmissions, 0u);
  other = StartWorker({}, address);
  ASSERT_TRUE(other);
  const auto start = std::chrono::steady_clock::now();
  ASSERT_TRUE(DecodeUntil(*m, [&] { return r.stats().readmissions >= 1; })) << r.Summary();
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  EXPECT_LT(seconds, 3.0) << "held up by the stalled worker's call";
  EXPECT_EQ(r.stats().workers_up, 1) << r.Summary();
  const uint64_t remote_before = r.stats().remote_items;
  ExpectBitIdentical(want, Greedy(*m, kPrompt, 4));
  EXPECT_GT(r.stats().remote_items, remote_before) << r.Summary();
  m.reset();  // cancels the stalled call
  ::kill(stalled->pid(), SIGCONT);
}

TEST_F(ClusterTest, SlowWorkerLosesItsShare) {
  const Trace want = Reference(24);
  auto fast = StartWorker(), slow = StartWorker();
  ASSERT_TRUE(fast && slow);
  DelayProxy proxy(slow->port(), /*one_way_delay_us=*/0);
  auto m = Load();
  const int total = m->config().n_layers * m->config().n_experts;
  auto remote =
      AttachWorkers(*m, Cluster({fast->address(), absl::StrCat("127.0.0.1:", proxy.port())}));
  ASSERT_TRUE(remote.ok()) << remote.status();
  RemoteExpertExecutor& r = **remote;
  const int slow_before = r.OwnedCounts()[1];
  ASSERT_GT(slow_before, 0);
  // 30 ms round trip: inside the 2 s step deadline, so no failover, but
  // many times the fast worker's reply time per item (even under ASan).
  proxy.set_delay_us(15000);
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
  while (r.stats().rebalances == 0 && std::chrono::steady_clock::now() < deadline) {
    ExpectBitIdentical(want, Greedy(*m, kPrompt, 24));
  }
  RemoteExpertStats s = r.stats();
  ASSERT_GE(s.rebalances, 1u) << r.Summary();
  EXPECT_GE(s.placements, 1u);
  EXPECT_EQ(s.failovers, 0u);
  EXPECT_EQ(s.timeouts, 0u);
  EXPECT_EQ(s.workers_up, 2);
  // The slow worker gives its experts up at once; the fast one computes
  // them once its Assign is through.
  ASSERT_TRUE(DecodeUntil(*m, [&] { return r.OwnedCounts()[0] + r.OwnedCounts()[1] == total; }))
      << r.Summary();
  EXPECT_LT(r.OwnedCounts()[1], slow_before);
  EXPECT_GT(r.OwnedCounts()[0], total - slow_before);
  ExpectBitIdentical(want, Greedy(*m, kPrompt, 24));
}

TEST_F(ClusterTest, HotExpertsComeFromRecordedStats) {
  auto w = StartWorker();
  ASSERT_TRUE(w);
  auto m = Load();
  const ModelConfig& cfg = m->config();
  const int n = cfg.n_experts;
  // The highest two ids are the most routed in every layer (with no stats
  // the lowest ids would be the hot ones).
  ExpertStats stats{.fingerprint = GgufFingerprint(m->file()),
                    .n_layers = cfg.n_layers,
                    .n_experts = n,
                    .counts = std::vector<uint64_t>(cfg.n_layers * n, 1)};
  for (int l = 0; l < cfg.n_layers; ++l) {
    stats.counts[l * n + n - 1] = 100;
    stats.counts[l * n + n - 2] = 50;
  }
  ASSERT_TRUE(SaveExpertStats(DefaultStatsPathForModel(model_path_), stats).ok());
  v1::ClusterConfig c = Cluster({w->address()});
  c.set_hot_experts_local(2);
  auto remote = AttachWorkers(*m, c);
  ASSERT_TRUE(remote.ok()) << remote.status();
  for (int l = 0; l < cfg.n_layers; ++l) {
    EXPECT_EQ((*remote)->Owner(l, n - 1), kLocalOwner) << "layer " << l;
    EXPECT_EQ((*remote)->Owner(l, n - 2), kLocalOwner) << "layer " << l;
    EXPECT_EQ((*remote)->Owner(l, 0), 0) << "layer " << l;
  }
  ExpectBitIdentical(Reference(4), Greedy(*m, kPrompt, 4));
  // A stats file named in the config must exist.
  c.set_expert_stats(dir_.path() + "/missing.stats");
  auto m2 = Load();
  auto refused = AttachWorkers(*m2, c);
  ASSERT_FALSE(refused.ok());
  EXPECT_TRUE(absl::IsNotFound(refused.status())) << refused.status();
  EXPECT_NE(refused.status().message().find("missing.stats"), std::string::npos);
}

TEST_F(ClusterTest, RefusesAnotherModel) {
  testing::TempDir dir2;
  auto other_path = testing::SynthModel(dir2.path(), "tiny", DType::kQ8_0, Gating::kSigmoid, 99);
  ASSERT_TRUE(other_path.ok());
  auto w = StartWorker({}, "127.0.0.1:0", *other_path);
  ASSERT_TRUE(w);
  auto m = Load();
  auto remote = AttachWorkers(*m, Cluster({w->address()}));
  ASSERT_FALSE(remote.ok());
  EXPECT_EQ(remote.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_NE(remote.status().message().find("fingerprint"), std::string::npos) << remote.status();
  // The worker refuses on its side too (Assign with the wrong fingerprint).
  auto channel = grpc::CreateChannel(w->address(), grpc::InsecureChannelCredentials());
  auto stub = v1::ExpertService::NewStub(channel);
  grpc::ClientContext ctx;
  v1::AssignRequest req;
  req.set_fingerprint(12345);
  v1::AssignResponse resp;
  grpc::Status s = stub->Assign(&ctx, req, &resp);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::FAILED_PRECONDITION);
  EXPECT_NE(s.error_message().find("fingerprint mismatch"), std::string::npos);
}

// A copy of the model whose expert bytes differ past the first 4 KiB of
// each tensor (as a download into a file made full size first, cut short,
// leaves it) has the same fingerprint: the content sample refuses it. It
// had paired, and computed wrong tokens with no failover.
TEST_F(ClusterTest, RefusesACopyWithOtherTensorBytes) {
  const std::string copy = dir_.File("copy.gguf");
  std::filesystem::copy_file(model_path_, copy);
  uint64_t offset = 0, size = 0;
  {
    auto f = GgufFile::Open(copy);
    ASSERT_TRUE(f.ok()) << f.status();
    for (const GgufTensorInfo& t : (*f)->tensors()) {
      if (t.name != "blk.0.ffn_down_exps.weight") continue;
      offset = static_cast<const uint8_t*>((*f)->TensorData(t)) -
               static_cast<const uint8_t*>((*f)->base());
      size = t.n_bytes;
    }
  }
  ASSERT_GT(size, 8192u);
  {  // Zero the tensor's last 100 bytes, in place.
    std::fstream io(copy, std::ios::in | std::ios::out | std::ios::binary);
    io.seekp(static_cast<std::streamoff>(offset + size - 100));
    const std::string zeros(100, '\0');
    io.write(zeros.data(), zeros.size());
  }
  {
    auto a = GgufFile::Open(model_path_), b = GgufFile::Open(copy);
    ASSERT_TRUE(a.ok() && b.ok());
    ASSERT_EQ(GgufFingerprint(**a), GgufFingerprint(**b)) << "the fingerprint cannot tell";
    ASSERT_NE(GgufContentSample(**a), GgufContentSample(**b));
  }
  auto w = StartWorker({}, "127.0.0.1:0", copy);
  ASSERT_TRUE(w);
  auto m = Load();
  auto remote = AttachWorkers(*m, Cluster({w->address()}));
  ASSERT_FALSE(remote.ok());
  EXPECT_EQ(remote.status().code(), absl::StatusCode::kFailedPrecondition) << remote.status();
  EXPECT_NE(remote.status().message().find("different tensor bytes"), std::string::npos)
      << remote.status();
}

TEST_F(ClusterTest, RefusesWrongOrMissingToken) {
  auto w = StartWorker({"--token", "right"});
  ASSERT_TRUE(w);
  for (const char* token : {"wrong", ""}) {
    auto m = Load();
    v1::ClusterConfig c = Cluster({w->address()});
    c.set_token(token);
    auto remote = AttachWorkers(*m, c);
    ASSERT_FALSE(remote.ok());
    EXPECT_EQ(remote.status().code(), absl::StatusCode::kUnauthenticated) << remote.status();
    EXPECT_NE(remote.status().message().find("token"), std::string::npos);
  }
  auto m = Load();
  v1::ClusterConfig c = Cluster({w->address()});
  c.set_token("right");
  auto remote = AttachWorkers(*m, c);
  ASSERT_TRUE(remote.ok()) << remote.status();
}

// gRPC aborts a process that adds a metadata value outside printable ASCII
// (the coordinator died of SIGABRT, "Illegal header value"), and a worker
// took such a token it could never be sent. Both now refuse it at start.
TEST_F(ClusterTest, RefusesTokensThatAreNotPrintableAscii) {
  const std::string umlauts = "p\xc3\xa4ssw\xc3\xb6rd";
  // The worker: --token and $ST_WORKER_TOKEN.
  for (const auto& [args, env] :
       std::vector<std::pair<std::vector<std::string>, std::vector<std::string>>>{
           {{"--token", umlauts}, {}}, {{}, {"ST_WORKER_TOKEN=ab\ncd"}}}) {
    std::vector<std::string> cmd = {"worker", "-m", model_path_, "--listen", "127.0.0.1:0"};
    cmd.insert(cmd.end(), args.begin(), args.end());
    // (A worker that took the token would serve until killed.)
    const testing::CommandResult r = testing::RunSmallthinker(cmd, env, absl::Seconds(20));
    EXPECT_TRUE(r.exited_with(1)) << r.status << " " << r.err;
    EXPECT_NE(r.err.find("printable ASCII"), std::string::npos) << r.err;
  }
  // The coordinator: --worker-token, $ST_WORKER_TOKEN, the config's token.
  auto w = StartWorker({"--token", "right"});
  ASSERT_TRUE(w);
  const std::string config = dir_.File("bad_token.textproto");
  std::ofstream(config) << "worker { address: \"" << w->address() << "\" }\n"
                        << "token: \"tab\\there\"\n";
  const std::vector<std::string> run = {"run", "-m", model_path_, "-p", "hello", "-n", "1"};
  for (const auto& [args, env] :
       std::vector<std::pair<std::vector<std::string>, std::vector<std::string>>>{
           {{"--workers", w->address(), "--worker-token", umlauts}, {}},
           {{"--workers", w->address()}, {"ST_WORKER_TOKEN=ab\ncd"}},
           {{"--cluster-config", config}, {}}}) {
    std::vector<std::string> cmd = run;
    cmd.insert(cmd.end(), args.begin(), args.end());
    const testing::CommandResult r = testing::RunSmallthinker(cmd, env);
    EXPECT_TRUE(r.exited_with(1)) << r.status << " " << r.err;
    EXPECT_NE(r.err.find("printable ASCII"), std::string::npos) << r.err;
  }
  // A client used without a validated config refuses too, instead of
  // aborting.
  v1::ClusterConfig c = Cluster({w->address()});
  c.set_token("ab\ncd");
  WorkerClient client(w->address(), c);
  auto m = Load();
  const absl::Status s = client.Pair(GgufFingerprint(m->file()), m->config());
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << s;
}

// grpc.health.v1 on a worker (our HealthService: the worker as a whole and
// its ExpertService SERVING, without the token, since probes have none),
// and a Compute stream served beside a Watch held open.
TEST_F(ClusterTest, WorkerServesHealth) {
  auto w = StartWorker({"--token", "t"});
  ASSERT_TRUE(w);
  auto channel = grpc::CreateChannel(w->address(), grpc::InsecureChannelCredentials());
  auto health = grpc::health::v1::Health::NewStub(channel);
  auto check = [&](const std::string& service, grpc::health::v1::HealthCheckResponse* resp) {
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
    grpc::health::v1::HealthCheckRequest req;
    req.set_service(service);
    return health->Check(&ctx, req, resp);
  };
  grpc::health::v1::HealthCheckResponse resp;
  ASSERT_TRUE(check("", &resp).ok());
  EXPECT_EQ(resp.status(), grpc::health::v1::HealthCheckResponse::SERVING);
  ASSERT_TRUE(check("smallthinker.v1.ExpertService", &resp).ok());
  EXPECT_EQ(resp.status(), grpc::health::v1::HealthCheckResponse::SERVING);
  EXPECT_EQ(check("no.Such", &resp).error_code(), grpc::StatusCode::NOT_FOUND);

  grpc::ClientContext watch_ctx;
  auto watch = health->Watch(&watch_ctx, grpc::health::v1::HealthCheckRequest());
  ASSERT_TRUE(watch->Read(&resp));
  EXPECT_EQ(resp.status(), grpc::health::v1::HealthCheckResponse::SERVING);
  auto m = Load();
  v1::ClusterConfig c = Cluster({w->address()});
  c.set_token("t");
  auto remote = AttachWorkers(*m, c);
  ASSERT_TRUE(remote.ok()) << remote.status();
  ExpectBitIdentical(Reference(3), Greedy(*m, kPrompt, 3));
  EXPECT_GT((*remote)->stats().remote_items, 0u);
  watch_ctx.TryCancel();
  EXPECT_FALSE(watch->Read(&resp));
}

// SIGTERM with a Compute stream and a health Watch open: the worker ends
// both and exits 0 within its 1 s grace (the Compute thread drained and
// joined, the signal thread joined).
TEST_F(ClusterTest, WorkerShutsDownCleanlyOnSigterm) {
  auto w = StartWorker();
  ASSERT_TRUE(w);
  auto file = GgufFile::Open(model_path_);
  ASSERT_TRUE(file.ok());
  auto channel = grpc::CreateChannel(w->address(), grpc::InsecureChannelCredentials());
  auto health = grpc::health::v1::Health::NewStub(channel);
  grpc::ClientContext watch_ctx;
  auto watch = health->Watch(&watch_ctx, grpc::health::v1::HealthCheckRequest());
  grpc::health::v1::HealthCheckResponse status;
  ASSERT_TRUE(watch->Read(&status));
  EXPECT_EQ(status.status(), grpc::health::v1::HealthCheckResponse::SERVING);
  // A Compute stream the worker has accepted (its fingerprint checked) and
  // is reading from.
  auto stub = v1::ExpertService::NewStub(channel);
  grpc::ClientContext compute_ctx;
  compute_ctx.AddMetadata(kFingerprintMetadataKey, absl::StrCat(GgufFingerprint(**file)));
  auto stream = stub->Compute(&compute_ctx);
  absl::SleepFor(absl::Milliseconds(200));
  auto exit = w->Stop(absl::Seconds(10));
  ASSERT_TRUE(exit.ok()) << exit.status() << "\n" << w->Stderr();
  EXPECT_TRUE(WIFEXITED(*exit) && WEXITSTATUS(*exit) == 0) << "wait status " << *exit;
  v1::ComputeResponse resp;
  EXPECT_FALSE(stream->Read(&resp));
  while (watch->Read(&status)) {
    EXPECT_EQ(status.status(), grpc::health::v1::HealthCheckResponse::NOT_SERVING);
  }
}

// Builds a CA and a server certificate for 127.0.0.1 / localhost with the
// openssl CLI. Returns false if openssl is missing.
bool MakeCerts(const std::string& dir) {
  const std::string cmd = absl::StrCat(
      "cd '", dir, "' && ",
      "openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.pem -days 1 "
      "-subj /CN=st-test-ca && ",
      "openssl req -newkey rsa:2048 -nodes -keyout server.key -out server.csr "
      "-subj /CN=localhost && ",
      "printf 'subjectAltName=DNS:localhost,IP:127.0.0.1' > san.ext && ",
      "openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial "
      "-out server.pem -days 1 -extfile san.ext && ",
      "openssl req -newkey rsa:2048 -nodes -keyout client.key -out client.csr "
      "-subj /CN=coordinator && ",
      "openssl x509 -req -in client.csr -CA ca.pem -CAkey ca.key -CAcreateserial "
      "-out client.pem -days 1 ) >/dev/null 2>&1");
  return std::system(("( " + cmd).c_str()) == 0;
}

TEST_F(ClusterTest, TlsRequiredButAbsentIsRefusedAndMutualTlsWorks) {
  const std::string d = dir_.path();
  if (!MakeCerts(d)) GTEST_SKIP() << "openssl CLI not available: cannot make test certificates";
  // A key that is not the certificate's: gRPC only logs why it cannot
  // listen; the error says what to check.
  const testing::ShellRun mismatched = testing::RunShell(absl::StrCat(
      "'", ST_CLI, "' worker -m '", model_path_, "' --listen 127.0.0.1:0 --tls-cert '", d,
      "/server.pem' --tls-key '", d, "/client.key' 2>&1"));
  EXPECT_NE(mismatched.exit_code, 0);
  EXPECT_NE(mismatched.out.find("is --tls-key the private key of --tls-cert?"), std::string::npos)
      << mismatched.out;
  auto w = StartWorker({"--tls-cert", d + "/server.pem", "--tls-key", d + "/server.key",
                        "--tls-ca", d + "/ca.pem"});
  ASSERT_TRUE(w);
  {  // Plaintext coordinator.
    auto m = Load();
    v1::ClusterConfig c = Cluster({w->address()});
    c.set_call_timeout_ms(1000);
    auto remote = AttachWorkers(*m, c);
    ASSERT_FALSE(remote.ok());
    EXPECT_NE(remote.status().message().find("TLS"), std::string::npos) << remote.status();
  }
  {  // A client key that is not the client certificate's: said so.
    auto m = Load();
    v1::ClusterConfig c = Cluster({w->address()});
    c.set_call_timeout_ms(1000);
    c.set_tls_ca(d + "/ca.pem");
    c.set_tls_cert(d + "/client.pem");
    c.set_tls_key(d + "/server.key");
    auto remote = AttachWorkers(*m, c);
    ASSERT_FALSE(remote.ok());
    EXPECT_NE(remote.status().message().find("is tls_key the private key of tls_cert?"),
              std::string::npos)
        << remote.status();
  }
  {  // TLS but no client certificate (the worker requires one).
    auto m = Load();
    v1::ClusterConfig c = Cluster({w->address()});
    c.set_call_timeout_ms(1000);
    c.set_tls_ca(d + "/ca.pem");
    EXPECT_FALSE(AttachWorkers(*m, c).ok());
  }
  const Trace want = Reference(4);
  auto m = Load();
  v1::ClusterConfig c = Cluster({w->address()});
  c.set_tls_ca(d + "/ca.pem");
  c.set_tls_cert(d + "/client.pem");
  c.set_tls_key(d + "/client.key");
  c.set_call_timeout_ms(15000);  // TLS handshakes under sanitizers on a busy machine
  auto remote = AttachWorkers(*m, c);
  ASSERT_TRUE(remote.ok()) << remote.status();
  ExpectBitIdentical(want, Greedy(*m, kPrompt, 4));
  EXPECT_GT((*remote)->stats().remote_items, 0u);
}

// The forward pass drives a worker's Compute stream itself (no reader
// thread): Submit returns at once, Poll takes in a reply that is already
// there (its time is then before Await's), Await hands it over; a stalled
// worker makes Await give up at its deadline and cancels the stream, the
// next step on it fails at once, and a new stream works again.
TEST_F(ClusterTest, WorkerClientDrivesTheStreamFromTheCallingThread) {
  auto w = StartWorker();
  ASSERT_TRUE(w);
  DelayProxy proxy(w->port(), /*one_way_delay_us=*/0);
  auto m = Load();
  const ModelConfig& cfg = m->config();
  const uint64_t fingerprint = GgufFingerprint(m->file());
  const v1::ClusterConfig c = Cluster({w->address()});
  std::vector<ExpertKey> layer0;
  for (int e = 0; e < cfg.n_experts; ++e) layer0.push_back({0, e});
  auto request = [&](uint64_t step) {
    v1::ComputeRequest r;
    r.set_step_id(step);
    r.set_layer(0);
    r.set_n_rows(1);
    std::vector<float> h(cfg.d_model, 0.01f * static_cast<float>(step));
    r.mutable_hidden()->assign(reinterpret_cast<const char*>(h.data()), h.size() * sizeof(float));
    r.add_row(0);
    r.add_expert(static_cast<int>(step % cfg.n_experts));
    return r;
  };

  WorkerClient client(w->address(), c);
  ASSERT_TRUE(client.Pair(fingerprint, cfg).ok());
  ASSERT_TRUE(client.Assign(layer0).ok());
  ASSERT_TRUE(client.OpenStream().ok());
  for (uint64_t step = 1; step <= 20; ++step) {
    const Clock::time_point before = Clock::now();
    client.Submit(request(step));
    Clock::time_point polled = Clock::now();
    if (step % 2 == 0) {  // take the reply in with Poll before awaiting it
      const Clock::time_point limit = before + std::chrono::seconds(10);
      while (client.reply_time() < before && Clock::now() < limit) {
        client.Poll();
        std::this_thread::sleep_for(std::chrono::microseconds(200));
      }
      polled = Clock::now();
      ASSERT_GE(client.reply_time(), before) << "Poll never took the reply in";
    }
    auto reply = client.Await(Clock::now() + std::chrono::seconds(10));
    ASSERT_TRUE(reply.ok()) << reply.status();
    EXPECT_EQ((*reply)->step_id(), step);
    EXPECT_EQ((*reply)->output().size(), cfg.d_model * sizeof(float));
    if (step % 2 == 0) {
      EXPECT_LE(client.reply_time(), polled);
    }
  }
  client.CloseStream();

  WorkerClient slow(absl::StrCat("127.0.0.1:", proxy.port()), c);
  ASSERT_TRUE(slow.Pair(fingerprint, cfg).ok());
  ASSERT_TRUE(slow.Assign(layer0).ok());
  ASSERT_TRUE(slow.OpenStream().ok());
  proxy.set_delay_us(300000);
  slow.Submit(request(1));
  Clock::time_point start = Clock::now();
  auto late = slow.Await(start + std::chrono::milliseconds(100));
  double waited = std::chrono::duration<double>(Clock::now() - start).count();
  EXPECT_TRUE(absl::IsDeadlineExceeded(late.status())) << late.status();
  EXPECT_GE(waited, 0.09);
  EXPECT_LT(waited, 1.0);
  slow.Submit(request(2));
  start = Clock::now();
  auto broken = slow.Await(start + std::chrono::seconds(5));
  waited = std::chrono::duration<double>(Clock::now() - start).count();
  EXPECT_TRUE(absl::IsUnavailable(broken.status())) << broken.status();
  EXPECT_LT(waited, 0.5);
  proxy.set_delay_us(0);
  ASSERT_TRUE(slow.OpenStream().ok());
  slow.Submit(request(3));
  auto again = slow.Await(Clock::now() + std::chrono::seconds(10));
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_EQ((*again)->step_id(), 3u);
}

// Interrupt (a worker marked down) ends the Assign in flight at once, not
// at its 60 s deadline, and the Assigns after it until the next Pair.
TEST_F(ClusterTest, InterruptEndsAStalledAssign) {
  auto w = StartWorker();
  ASSERT_TRUE(w);
  DelayProxy proxy(w->port(), /*one_way_delay_us=*/0);
  auto m = Load();
  const ModelConfig& cfg = m->config();
  const uint64_t fingerprint = GgufFingerprint(m->file());
  const v1::ClusterConfig c = Cluster({w->address()});
  WorkerClient client(absl::StrCat("127.0.0.1:", proxy.port()), c);
  ASSERT_TRUE(client.Pair(fingerprint, cfg).ok());
  proxy.set_delay_us(2000000);  // a 4 s round trip: stalled, as far as the test goes
  const Clock::time_point start = Clock::now();
  absl::Status assigned;
  std::thread assign([&] { assigned = client.Assign({{0, 0}}); });
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  client.Interrupt();
  assign.join();
  EXPECT_TRUE(absl::IsCancelled(assigned)) << assigned;
  EXPECT_LT(std::chrono::duration<double>(Clock::now() - start).count(), 1.5);
  // Later Assigns end at once, until the next Pair.
  proxy.set_delay_us(0);
  const Clock::time_point again = Clock::now();
  EXPECT_TRUE(absl::IsCancelled(client.Assign({{0, 0}})));
  EXPECT_LT(std::chrono::duration<double>(Clock::now() - again).count(), 0.5);
  ASSERT_TRUE(client.Pair(fingerprint, cfg).ok());
  EXPECT_TRUE(client.Assign({{0, 0}}).ok());
}

// A stream the worker ends with an error reports the worker's status (the
// coordinator had said only "stream broken", and read the status after
// cancelling the call: CANCELLED).
TEST_F(ClusterTest, BrokenStreamReportsTheWorkersStatus) {
  auto w = StartWorker();
  ASSERT_TRUE(w);
  auto m = Load();
  const ModelConfig& cfg = m->config();
  const v1::ClusterConfig c = Cluster({w->address()});  // the client keeps a reference
  WorkerClient client(w->address(), c);
  ASSERT_TRUE(client.Pair(GgufFingerprint(m->file()), cfg).ok());
  ASSERT_TRUE(client.Assign({{0, 0}}).ok());
  ASSERT_TRUE(client.OpenStream().ok());
  v1::ComputeRequest r;
  r.set_step_id(1);
  r.set_layer(0);
  r.set_n_rows(1);
  const std::vector<float> h(cfg.d_model, 0.01f);
  r.mutable_hidden()->assign(reinterpret_cast<const char*>(h.data()), h.size() * sizeof(float));
  r.add_row(0);
  r.add_expert(3);  // not assigned
  client.Submit(r);
  auto reply = client.Await(Clock::now() + std::chrono::seconds(10));
  EXPECT_TRUE(absl::IsUnavailable(reply.status())) << reply.status();
  EXPECT_NE(reply.status().message().find("expert 3 of layer 0 is not assigned to this worker"),
            std::string::npos)
      << reply.status();
  EXPECT_NE(reply.status().message().find("FAILED_PRECONDITION"), std::string::npos)
      << reply.status();
  EXPECT_NE(reply.status().message().find("one coordinator at a time"), std::string::npos)
      << reply.status();
  // Asked again, the same answer; the stream then closes and reopens.
  EXPECT_EQ(client.Await(Clock::now()).status(), reply.status());
  client.CloseStream();
  ASSERT_TRUE(client.OpenStream().ok());
  r.set_expert(0, 0);
  r.set_step_id(2);
  client.Submit(r);
  EXPECT_TRUE(client.Await(Clock::now() + std::chrono::seconds(10)).ok());
}

// A large Assign packs its experts a few at a time: the steps of the
// current assignment keep being served meanwhile. (It had held the worker's
// compute lock while packing them all, seconds on a real model, so that
// steps waited past the coordinator's deadline and one failover's Assign
// caused the next.)
TEST_F(ClusterTest, StepsGoOnWhileALargeAssignPacks) {
  // The 4B's expert shape, 4 layers of 16 experts (64 experts, 240 MB).
  auto spec = SynthPreset("tiny");
  ASSERT_TRUE(spec.ok());
  spec->d_model = 1536;
  spec->d_expert = 768;
  spec->n_experts = 16;
  const std::string path = dir_.File("wide.gguf");
  ASSERT_TRUE(WriteSyntheticModel(
                  {.spec = *spec, .type = DType::kQ8_0, .out_path = path, .progress = false})
                  .ok());
  auto w = StartWorker({}, "127.0.0.1:0", path);
  ASSERT_TRUE(w);
  auto m = Model::Load(path, ModelOptions{.threads = 1});
  ASSERT_TRUE(m.ok()) << m.status();
  const ModelConfig& cfg = (*m)->config();
  const uint64_t fingerprint = GgufFingerprint((*m)->file());
  const v1::ClusterConfig c = Cluster({w->address()});
  std::vector<ExpertKey> all;
  for (int l = 0; l < cfg.n_layers; ++l) {
    for (int e = 0; e < cfg.n_experts; ++e) all.push_back({l, e});
  }
  WorkerClient stepper(w->address(), c), assigner(w->address(), c);
  ASSERT_TRUE(stepper.Pair(fingerprint, cfg).ok());
  ASSERT_TRUE(assigner.Pair(fingerprint, cfg).ok());
  ASSERT_TRUE(stepper.Assign({{0, 0}}).ok());
  ASSERT_TRUE(stepper.OpenStream().ok());
  v1::ComputeRequest r;
  r.set_layer(0);
  r.set_n_rows(1);
  const std::vector<float> h(cfg.d_model, 0.01f);
  r.mutable_hidden()->assign(reinterpret_cast<const char*>(h.data()), h.size() * sizeof(float));
  r.add_row(0);
  r.add_expert(0);
  uint64_t step = 0;
  auto one_step = [&] {
    r.set_step_id(++step);
    stepper.Submit(r);
    auto reply = stepper.Await(Clock::now() + std::chrono::seconds(30));
    ASSERT_TRUE(reply.ok()) << reply.status();
  };
  one_step();

  // An Assign its caller gives up on stops between turns and leaves the
  // assignment as it was (it had packed everything and installed it).
  {
    auto stub = v1::ExpertService::NewStub(
        grpc::CreateChannel(w->address(), grpc::InsecureChannelCredentials()));
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::milliseconds(20));
    v1::AssignRequest req;
    req.set_fingerprint(fingerprint);
    for (const ExpertKey& k : all) {
      v1::ExpertRef* e = req.add_experts();
      e->set_layer(k.layer);
      e->set_expert(k.expert);
    }
    v1::AssignResponse resp;
    EXPECT_EQ(stub->Assign(&ctx, req, &resp).error_code(), grpc::StatusCode::DEADLINE_EXCEEDED);
    std::this_thread::sleep_for(std::chrono::seconds(1));  // longer than a whole pack
    v1::ComputeRequest other = r;
    other.set_step_id(++step);
    other.set_expert(0, 5);  // in the abandoned set only
    stepper.Submit(other);
    auto refused = stepper.Await(Clock::now() + std::chrono::seconds(30));
    EXPECT_NE(refused.status().message().find("not assigned"), std::string::npos)
        << refused.status();
    stepper.CloseStream();
    ASSERT_TRUE(stepper.OpenStream().ok());
    one_step();
  }

  // Steps one after another while the other client assigns every expert
  // (expert 0 of layer 0 among them, so each step stays valid).
  std::atomic<bool> assigning{true};
  Clock::time_point assign_start, assign_end;
  std::thread assign([&] {
    assign_start = Clock::now();
    EXPECT_TRUE(assigner.Assign(all).ok());
    assign_end = Clock::now();
    assigning = false;
  });
  std::vector<Clock::time_point> replies;
  while (assigning) {
    one_step();
    if (HasFatalFailure()) break;
    replies.push_back(Clock::now());
  }
  assign.join();
  // Replies that came while the Assign ran, and the longest time without one.
  int during = 0;
  double longest = 0;
  Clock::time_point previous = assign_start;
  for (Clock::time_point t : replies) {
    if (t <= assign_start || t >= assign_end) continue;
    ++during;
    longest = std::max(longest, std::chrono::duration<double>(t - previous).count());
    previous = t;
  }
  longest = std::max(longest, std::chrono::duration<double>(assign_end - previous).count());
  const double took = std::chrono::duration<double>(assign_end - assign_start).count();
  std::printf("%d steps during an Assign of %.3f s; longest time without a reply %.4f s\n", during,
              took, longest);
  EXPECT_GE(during, 5) << "the Assign took " << took << " s";
  EXPECT_LT(longest, took / 2) << during << " steps during an Assign of " << took << " s";
  one_step();  // and the worker still computes
}

// A worker serves one coordinator at a time: a second coordinator's Assign
// replaces the first's assignment, and the first fails over (same logits).
TEST_F(ClusterTest, SecondCoordinatorTakesTheWorkerOver) {
  const Trace want = Reference(4);
  auto w = StartWorker();
  ASSERT_TRUE(w);
  auto first = Load(), second = Load();
  v1::ClusterConfig c = Cluster({w->address()});
  c.set_readmit_backoff_min_ms(5000);  // stays out for the rest of the test
  c.set_readmit_backoff_max_ms(5000);
  auto a = AttachWorkers(*first, c);
  ASSERT_TRUE(a.ok()) << a.status();
  c.set_local_share(0.5);  // the worker gets another, smaller set
  auto b = AttachWorkers(*second, c);
  ASSERT_TRUE(b.ok()) << b.status();
  ExpectBitIdentical(want, Greedy(*first, kPrompt, 4));
  EXPECT_GE((*a)->stats().failovers, 1u) << (*a)->Summary();
  ExpectBitIdentical(want, Greedy(*second, kPrompt, 4));
  EXPECT_EQ((*b)->stats().failovers, 0u) << (*b)->Summary();
}

// Collects WARNING lines (glog) that contain `needle`.
class WarningCounter : public google::LogSink {
 public:
  explicit WarningCounter(std::string needle) : needle_(std::move(needle)) {
    google::AddLogSink(this);
  }
  ~WarningCounter() override { google::RemoveLogSink(this); }
  void send(google::LogSeverity severity, const char*, const char*, int,
            const google::LogMessageTime&, const char* message, size_t len) override {
    if (severity != google::GLOG_WARNING) return;
    std::string line(message, len);
    if (line.find(needle_) == std::string::npos) return;
    std::lock_guard<std::mutex> lock(mu_);
    lines_.push_back(std::move(line));
  }
  std::vector<std::string> lines() {
    std::lock_guard<std::mutex> lock(mu_);
    return lines_;
  }

 private:
  const std::string needle_;
  std::mutex mu_;
  std::vector<std::string> lines_;
};

// A worker restarted on another model is retried forever; why it cannot
// come back is a WARNING once (it had been VLOG(1) only), not one per
// attempt.
TEST_F(ClusterTest, WorkerThatCannotComeBackIsReportedOnce) {
  auto w = StartWorker();
  ASSERT_TRUE(w);
  const int port = w->port();
  auto m = Load();
  v1::ClusterConfig c = Cluster({w->address()});
  c.set_readmit_backoff_min_ms(20);
  c.set_readmit_backoff_max_ms(100);
  auto remote = AttachWorkers(*m, c);
  ASSERT_TRUE(remote.ok()) << remote.status();
  WarningCounter warnings("not back yet");
  w->Kill();
  Greedy(*m, kPrompt, 1);  // fails over
  EXPECT_EQ((*remote)->stats().workers_up, 0);
  testing::TempDir dir2;
  auto other = testing::SynthModel(dir2.path(), "tiny", DType::kQ8_0, Gating::kSigmoid, 99);
  ASSERT_TRUE(other.ok());
  w = StartWorker({}, absl::StrCat("127.0.0.1:", port), *other);
  ASSERT_TRUE(w);
  auto fingerprint_lines = [&] {
    const std::vector<std::string> lines = warnings.lines();
    return std::count_if(lines.begin(), lines.end(), [](const std::string& l) {
      return l.find("fingerprint") != std::string::npos;
    });
  };
  // gRPC reconnects within its backoff (at most 1 s, longer on a loaded
  // machine); before that the reason is the refused connection.
  const auto limit = std::chrono::steady_clock::now() + std::chrono::seconds(20);
  while (fingerprint_lines() == 0 && std::chrono::steady_clock::now() < limit) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  ASSERT_EQ(fingerprint_lines(), 1) << warnings.lines().back();
  // Attempts every 100 ms at most: some fifteen more, with the same reason,
  // not one more line.
  std::this_thread::sleep_for(std::chrono::milliseconds(1500));
  EXPECT_EQ(fingerprint_lines(), 1);
  EXPECT_NE(warnings.lines().back().find("fingerprint"), std::string::npos)
      << warnings.lines().back();
  EXPECT_EQ((*remote)->stats().readmissions, 0u);
}

// The step timing series stay bounded however long the coordinator runs:
// with its only worker gone, every step had still added to run_us and
// between_us (overhead_us, which had bounded them, no longer grew), and
// stats() copies them all under the lock the forward pass takes.
TEST_F(ClusterTest, TimingSamplesStayBoundedWithEveryWorkerDown) {
  auto w = StartWorker();
  ASSERT_TRUE(w);
  auto m = Load();
  auto remote = AttachWorkers(*m, Cluster({w->address()}));
  ASSERT_TRUE(remote.ok()) << remote.status();
  w->Kill();
  Greedy(*m, kPrompt, 1);  // fails over
  ASSERT_EQ((*remote)->stats().workers_up, 0);
  const ModelConfig& config = m->config();
  Routes routes{.n_tokens = 1, .top_k = config.top_k};
  for (int j = 0; j < config.top_k; ++j) {
    routes.ids.push_back(j);
    routes.weights.push_back(1.0f / config.top_k);
  }
  std::vector<float> h(config.d_model, 0.5f), out(config.d_model);
  const size_t steps = kMaxTimingSamples + kMaxTimingSamples / 4;
  for (size_t i = 0; i < steps; ++i) {
    ASSERT_TRUE((*remote)->Run(static_cast<int>(i % config.n_layers), routes, h.data(), out.data()).ok());
  }
  const RemoteExpertStats s = (*remote)->stats();
  EXPECT_GE(s.steps, steps);
  EXPECT_LE(s.run_us.size(), kMaxTimingSamples);
  EXPECT_GE(s.run_us.size(), kMaxTimingSamples / 2);  // the latest are kept
  EXPECT_LE(s.between_us.size(), kMaxTimingSamples);
}

// Clients on one completion queue: AwaitAll takes in every reply as it
// comes (the fast worker's is timed long before the slow one's, even though
// the slow one is listed first), gives up on a stalled worker at the
// deadline while keeping the other's reply, and a stalled stream closed from
// the polling thread leaves the other stream working.
TEST_F(ClusterTest, AwaitAllTakesInEveryWorkersReplyAsItComes) {
  auto w1 = StartWorker();
  auto w2 = StartWorker();
  ASSERT_TRUE(w1 && w2);
  DelayProxy proxy(w2->port(), /*one_way_delay_us=*/0);
  auto m = Load();
  const ModelConfig& cfg = m->config();
  const uint64_t fingerprint = GgufFingerprint(m->file());
  const v1::ClusterConfig c = Cluster({w1->address()});
  std::vector<ExpertKey> layer0;
  for (int e = 0; e < cfg.n_experts; ++e) layer0.push_back({0, e});
  auto request = [&](uint64_t step, int expert) {
    v1::ComputeRequest r;
    r.set_step_id(step);
    r.set_layer(0);
    r.set_n_rows(1);
    std::vector<float> h(cfg.d_model, 0.01f * static_cast<float>(step));
    r.mutable_hidden()->assign(reinterpret_cast<const char*>(h.data()), h.size() * sizeof(float));
    r.add_row(0);
    r.add_expert(expert);
    return r;
  };

  grpc::CompletionQueue cq;
  {
    WorkerClient fast(w1->address(), c, &cq);
    WorkerClient slow(absl::StrCat("127.0.0.1:", proxy.port()), c, &cq);
    for (WorkerClient* client : {&fast, &slow}) {
      ASSERT_TRUE(client->Pair(fingerprint, cfg).ok());
      ASSERT_TRUE(client->Assign(layer0).ok());
      ASSERT_TRUE(client->OpenStream().ok());
    }
    // Both answer; the slow one 2 x 150 ms later.
    proxy.set_delay_us(150000);
    const Clock::time_point before = Clock::now();
    slow.Submit(request(1, 1));
    fast.Submit(request(1, 2));
    WorkerClient::AwaitAll({&slow, &fast}, before + std::chrono::seconds(20));
    const Clock::time_point after = Clock::now();
    auto slow_reply = slow.Await(after);  // already in: no waiting
    ASSERT_TRUE(slow_reply.ok()) << slow_reply.status();
    EXPECT_EQ((*slow_reply)->step_id(), 1u);
    auto fast_reply = fast.Await(after);
    ASSERT_TRUE(fast_reply.ok()) << fast_reply.status();
    EXPECT_EQ((*fast_reply)->step_id(), 1u);
    EXPECT_EQ((*fast_reply)->output().size(), cfg.d_model * sizeof(float));
    EXPECT_GE(slow.reply_time() - before, std::chrono::milliseconds(290));
    EXPECT_LT(fast.reply_time() + std::chrono::milliseconds(200), slow.reply_time())
        << "the fast worker's reply was only taken in after the slow one's";

    // The slow one stalls past the deadline: AwaitAll returns at it with the
    // fast reply in; the stalled stream is cancelled and closed here.
    proxy.set_delay_us(2000000);
    slow.Submit(request(2, 1));
    fast.Submit(request(2, 2));
    const Clock::time_point start = Clock::now();
    WorkerClient::AwaitAll({&slow, &fast}, start + std::chrono::milliseconds(300));
    const double waited = std::chrono::duration<double>(Clock::now() - start).count();
    EXPECT_GE(waited, 0.29);
    EXPECT_LT(waited, 1.5);
    auto late = slow.Await(Clock::now());
    EXPECT_TRUE(absl::IsDeadlineExceeded(late.status())) << late.status();
    auto in_time = fast.Await(Clock::now());
    ASSERT_TRUE(in_time.ok()) << in_time.status();
    EXPECT_EQ((*in_time)->step_id(), 2u);
    slow.CloseStream();
    EXPECT_FALSE(slow.has_stream());
    fast.Submit(request(3, 3));
    WorkerClient::AwaitAll({&fast}, Clock::now() + std::chrono::seconds(20));
    auto again = fast.Await(Clock::now());
    ASSERT_TRUE(again.ok()) << again.status();
    EXPECT_EQ((*again)->step_id(), 3u);
    proxy.set_delay_us(0);
  }  // streams closed by the clients
  cq.Shutdown();
  void* tag;
  bool ok;
  while (cq.Next(&tag, &ok)) {
  }
}

TEST_F(ClusterTest, MalformedComputeMessagesGetInvalidArgument) {
  auto w = StartWorker();
  ASSERT_TRUE(w);
  auto m = Load();
  // Pair properly first so the worker has an assignment (all experts).
  auto remote = AttachWorkers(*m, Cluster({w->address()}));
  ASSERT_TRUE(remote.ok()) << remote.status();
  const ModelConfig& cfg = m->config();
  // The coordinator's fingerprint is what the worker reports (paired above).
  const uint64_t fingerprint = Describe(w->address()).fingerprint();
  auto good = [&] {
    v1::ComputeRequest r;
    r.set_step_id(1);
    r.set_layer(0);
    r.set_n_rows(1);
    r.mutable_hidden()->assign(cfg.d_model * sizeof(float), '\0');
    r.add_row(0);
    r.add_expert(0);
    return r;
  };
  // Makes the one item of good() the whole token of row 0: top_k slots
  // with experts 0..top_k-1, each with a weight.
  auto whole = [&](v1::ComputeRequest& r) {
    ASSERT_GT(cfg.top_k, 1);
    r.clear_row();
    r.clear_expert();
    for (int j = 0; j < cfg.top_k; ++j) {
      r.add_row(0);
      r.add_expert(j);
      r.add_weight(0.5f);
    }
  };
  struct Case {
    const char* name;
    std::function<void(v1::ComputeRequest&)> mutate;
    grpc::StatusCode code;
  };
  const std::vector<Case> cases = {
      {"valid", [](v1::ComputeRequest&) {}, grpc::StatusCode::OK},
      {"layer", [&](v1::ComputeRequest& r) { r.set_layer(cfg.n_layers); },
       grpc::StatusCode::INVALID_ARGUMENT},
      {"negative layer", [](v1::ComputeRequest& r) { r.set_layer(-1); },
       grpc::StatusCode::INVALID_ARGUMENT},
      {"hidden bytes", [](v1::ComputeRequest& r) { r.mutable_hidden()->push_back('x'); },
       grpc::StatusCode::INVALID_ARGUMENT},
      {"n_rows", [](v1::ComputeRequest& r) { r.set_n_rows(1 << 30); },
       grpc::StatusCode::INVALID_ARGUMENT},
      {"expert", [&](v1::ComputeRequest& r) { r.set_expert(0, cfg.n_experts); },
       grpc::StatusCode::INVALID_ARGUMENT},
      {"row", [](v1::ComputeRequest& r) { r.set_row(0, 7); }, grpc::StatusCode::INVALID_ARGUMENT},
      {"counts", [](v1::ComputeRequest& r) { r.add_row(0); }, grpc::StatusCode::INVALID_ARGUMENT},
      {"no items", [](v1::ComputeRequest& r) { r.clear_row(); r.clear_expert(); },
       grpc::StatusCode::INVALID_ARGUMENT},
      // With weights: the whole token of row 0 (top_k slots, one reply row).
      {"weighted", [&](v1::ComputeRequest& r) { whole(r); }, grpc::StatusCode::OK},
      {"weight count", [&](v1::ComputeRequest& r) { whole(r); r.add_weight(0.5f); },
       grpc::StatusCode::INVALID_ARGUMENT},
      {"weight not finite", [&](v1::ComputeRequest& r) { whole(r); r.set_weight(0, std::nanf("")); },
       grpc::StatusCode::INVALID_ARGUMENT},
      {"weighted partial token", [](v1::ComputeRequest& r) { r.add_weight(0.5f); },
       grpc::StatusCode::INVALID_ARGUMENT},
      {"weighted repeated expert",
       [&](v1::ComputeRequest& r) {
         whole(r);
         r.set_expert(1, r.expert(0));
       },
       grpc::StatusCode::INVALID_ARGUMENT},
      {"weighted rows decrease",
       [&](v1::ComputeRequest& r) {
         r.set_n_rows(2);
         r.mutable_hidden()->assign(2 * cfg.d_model * sizeof(float), '\0');
         r.clear_row();
         r.clear_expert();
         for (int row : {1, 0}) {
           for (int j = 0; j < cfg.top_k; ++j) {
             r.add_row(row);
             r.add_expert(j);
             r.add_weight(0.5f);
           }
         }
       },
       grpc::StatusCode::INVALID_ARGUMENT},
  };
  auto channel = grpc::CreateChannel(w->address(), grpc::InsecureChannelCredentials());
  auto stub = v1::ExpertService::NewStub(channel);
  for (const Case& k : cases) {
    SCOPED_TRACE(k.name);
    grpc::ClientContext ctx;
    ctx.AddMetadata(kFingerprintMetadataKey, absl::StrCat(fingerprint));
    auto stream = stub->Compute(&ctx);
    v1::ComputeRequest r = good();
    k.mutate(r);
    ASSERT_TRUE(stream->Write(r));
    v1::ComputeResponse resp;
    const bool got = stream->Read(&resp);
    if (k.code == grpc::StatusCode::OK) {
      ASSERT_TRUE(got);
      // One row either way: the single item, or the combined token.
      EXPECT_EQ(resp.output().size(), cfg.d_model * sizeof(float));
      stream->WritesDone();
    }
    grpc::Status s = stream->Finish();
    EXPECT_EQ(s.error_code(), k.code) << s.error_message();
  }
  {  // Bytes that are no ComputeRequest at all (a length that never ends):
     // INVALID_ARGUMENT, not a quiet end of the stream.
    grpc::GenericStub generic(channel);
    grpc::CompletionQueue cq;
    grpc::ClientContext ctx;
    ctx.AddMetadata(kFingerprintMetadataKey, absl::StrCat(fingerprint));
    auto wait = [&](intptr_t tag) {
      void* got = nullptr;
      bool ok = false;
      EXPECT_TRUE(cq.Next(&got, &ok));
      EXPECT_EQ(reinterpret_cast<intptr_t>(got), tag);
      return ok;
    };
    auto call = generic.PrepareCall(&ctx, "/smallthinker.v1.ExpertService/Compute", &cq);
    call->StartCall(reinterpret_cast<void*>(1));
    ASSERT_TRUE(wait(1));
    grpc::Slice garbage("\x0a\xff", 2);
    call->Write(grpc::ByteBuffer(&garbage, 1), reinterpret_cast<void*>(2));
    wait(2);
    grpc::ByteBuffer reply;
    call->Read(&reply, reinterpret_cast<void*>(3));
    EXPECT_FALSE(wait(3));
    grpc::Status s;
    call->Finish(&s, reinterpret_cast<void*>(4));
    ASSERT_TRUE(wait(4));
    EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << s.error_message();
    EXPECT_NE(s.error_message().find("not a ComputeRequest"), std::string::npos) << s.error_message();
    cq.Shutdown();
    void* tag;
    bool ok;
    while (cq.Next(&tag, &ok)) {
    }
  }
  {  // A stream without the fingerprint is refused.
    grpc::ClientContext ctx;
    auto stream = stub->Compute(&ctx);
    stream->Write(good());
    v1::ComputeResponse resp;
    EXPECT_FALSE(stream->Read(&resp));
    EXPECT_EQ(stream->Finish().error_code(), grpc::StatusCode::FAILED_PRECONDITION);
  }
  // The worker is still alive (no failover) and the coordinator still exact.
  ExpectBitIdentical(Reference(3), Greedy(*m, kPrompt, 3));
  EXPECT_EQ((*remote)->stats().failovers, 0u);
  EXPECT_GT((*remote)->stats().remote_items, 0u);
  EXPECT_EQ(::kill(w->pid(), 0), 0) << "worker died: " << w->Stderr();
}

// A request with gate weights gets one combined row per token, equal bit
// for bit to what the coordinator's CombineRows makes of the per-item
// outputs of the same request without weights.
TEST_F(ClusterTest, WorkerCombinesWholeTokensExactly) {
  auto w = StartWorker();
  ASSERT_TRUE(w);
  auto m = Load();
  auto remote = AttachWorkers(*m, Cluster({w->address()}));  // assigns it every expert
  ASSERT_TRUE(remote.ok()) << remote.status();
  const v1::DescribeResponse described = Describe(w->address());
  EXPECT_TRUE(described.combines_tokens());
  const size_t d = m->config().d_model;
  std::vector<float> hidden(2 * d);
  for (size_t c = 0; c < hidden.size(); ++c) hidden[c] = std::sin(0.37f * c);
  v1::ComputeRequest per_item;
  per_item.set_layer(1);
  per_item.set_n_rows(2);
  per_item.mutable_hidden()->assign(reinterpret_cast<const char*>(hidden.data()),
                                    hidden.size() * sizeof(float));
  // Two whole tokens (top_k slots each, distinct experts).
  const int k = m->config().top_k;
  std::vector<float> weights;
  for (int row = 0; row < 2; ++row) {
    for (int j = 0; j < k; ++j) {
      per_item.add_row(row);
      per_item.add_expert((row + 2 * j) % m->config().n_experts);
      weights.push_back(0.3f + 0.4f * j + 0.1f * row);
    }
  }
  v1::ComputeRequest combined = per_item;
  for (float x : weights) combined.add_weight(x);
  per_item.set_step_id(1);
  combined.set_step_id(2);

  auto channel = grpc::CreateChannel(w->address(), grpc::InsecureChannelCredentials());
  auto stub = v1::ExpertService::NewStub(channel);
  grpc::ClientContext ctx;
  ctx.AddMetadata(kFingerprintMetadataKey, absl::StrCat(described.fingerprint()));
  auto stream = stub->Compute(&ctx);
  v1::ComputeResponse a, b;
  ASSERT_TRUE(stream->Write(per_item));
  ASSERT_TRUE(stream->Read(&a));
  ASSERT_TRUE(stream->Write(combined));
  ASSERT_TRUE(stream->Read(&b));
  stream->WritesDone();
  ASSERT_TRUE(stream->Finish().ok());
  ASSERT_EQ(a.output().size(), 2 * k * d * sizeof(float));
  ASSERT_EQ(b.output().size(), 2 * d * sizeof(float));
  const float* y = reinterpret_cast<const float*>(a.output().data());
  std::vector<float> want(2 * d);
  CombineRows(weights.data(), y, k, d, want.data());
  CombineRows(weights.data() + k, y + k * d, k, d, want.data() + d);
  EXPECT_GT(*std::max_element(want.begin(), want.end()), 0.0f);
  EXPECT_EQ(std::memcmp(want.data(), b.output().data(), want.size() * sizeof(float)), 0);

  // A coordinator whose worker holds every expert sends whole tokens: the
  // worker combines them, and the logits stay those of one process.
  const Trace reference = Reference(8);
  ExpectBitIdentical(reference, Greedy(*m, kPrompt, 8));
  RemoteExpertStats s = (*remote)->stats();
  EXPECT_GT(s.combined_tokens, 0u);
  EXPECT_EQ(s.local_items, 0u);
  // Killed mid-generation, the combining worker's tokens are recomputed and
  // combined here: still the same logits.
  ExpectBitIdentical(reference, Greedy(*m, kPrompt, 8, [&](int step) {
    if (step == 3) w->Kill();
  }));
  s = (*remote)->stats();
  EXPECT_GE(s.failovers, 1u);
  EXPECT_GT(s.failover_items, 0u);
}

// A pinned worker (--cpus) binds only the thread that computes its steps
// (and its pool's own threads: none here, StartWorker gives -t 1):
// Assign's packing runs on a gRPC thread through the same pool, and that
// thread (which serves other calls later) keeps the process's CPUs.
TEST_F(ClusterTest, PinnedWorkerBindsOnlyItsComputeThread) {
  const std::vector<int> allowed = AllowedCpus();
  if (allowed.size() < 2) GTEST_SKIP() << "needs two CPUs";
  const std::vector<int> cpus = {allowed[1], allowed[0]};
  auto w = StartWorker({"--cpus", absl::StrCat(cpus[0], ",", cpus[1])});
  ASSERT_TRUE(w);
  auto m = Load();
  auto remote = AttachWorkers(*m, Cluster({w->address()}));  // Assign: the worker packs
  ASSERT_TRUE(remote.ok()) << remote.status();
  ExpectBitIdentical(Reference(4), Greedy(*m, kPrompt, 4));
  ASSERT_GT((*remote)->stats().remote_items, 0u);
  // Each thread's CPUs, from /proc.
  std::vector<std::string> single;
  int threads = 0;
  for (const auto& task : std::filesystem::directory_iterator(
           absl::StrCat("/proc/", w->pid(), "/task"))) {
    std::ifstream status(task.path() / "status");
    std::string line;
    while (std::getline(status, line)) {
      if (line.rfind("Cpus_allowed_list:", 0) != 0) continue;
      ++threads;
      auto list = ParseCpuList(std::string(absl::StripAsciiWhitespace(line.substr(18))));
      ASSERT_TRUE(list.ok()) << line;
      if (list->size() == 1) single.push_back(absl::StrCat((*list)[0]));
    }
  }
  EXPECT_GT(threads, 3);  // gRPC's, the Compute thread, main
  EXPECT_EQ(single, std::vector<std::string>{absl::StrCat(cpus[0])})
      << "threads bound to one CPU (only the Compute thread should be, to cpus[0])";
}

// Coordinator (this process) in the root namespace, a worker in its own
// network namespace behind a veth pair.
TEST_F(ClusterTest, WorkerInAnotherNetworkNamespace) {
  const std::string ns = absl::StrCat("st-w", getpid() % 100000);
  const std::string va = absl::StrCat("stva", getpid() % 100000),
                    vb = absl::StrCat("stvb", getpid() % 100000);
  const int net = 100 + getpid() % 100;
  const std::string host_ip = absl::StrCat("10.231.", net, ".1"),
                    ns_ip = absl::StrCat("10.231.", net, ".2");
  auto sh = [](const std::string& cmd) { return std::system((cmd + " >/dev/null 2>&1").c_str()); };
  sh("ip netns del " + ns);
  const std::string setup = absl::StrCat(
      "ip netns add ", ns, " && ip link add ", va, " type veth peer name ", vb, " && ip link set ",
      vb, " netns ", ns, " && ip addr add ", host_ip, "/24 dev ", va, " && ip link set ", va,
      " up && ip netns exec ", ns, " ip addr add ", ns_ip, "/24 dev ", vb, " && ip netns exec ",
      ns, " ip link set ", vb, " up && ip netns exec ", ns, " ip link set lo up");
  if (sh(setup) != 0) {
    sh("ip netns del " + ns);
    sh("ip link del " + va);
    GTEST_SKIP() << "cannot create network namespaces here (need root and ip netns)";
  }
  struct Cleanup {
    std::function<void()> fn;
    ~Cleanup() { fn(); }
  } cleanup{[&] {
    sh("ip netns del " + ns);
    sh("ip link del " + va);
  }};
  const Trace want = Reference(6);
  auto w = WorkerProcess::Start(model_path_, ns_ip + ":0", {"--token", "ns-token"},
                                {"ip", "netns", "exec", ns});
  ASSERT_TRUE(w.ok()) << w.status();
  EXPECT_EQ((*w)->address().rfind(ns_ip, 0), 0u) << (*w)->address();
  auto m = Load();
  v1::ClusterConfig c = Cluster({(*w)->address()});
  c.set_token("ns-token");
  auto remote = AttachWorkers(*m, c);
  ASSERT_TRUE(remote.ok()) << remote.status();
  ExpectBitIdentical(want, Greedy(*m, kPrompt, 6));
  EXPECT_GT((*remote)->stats().remote_items, 0u);
  // The worker bound its namespace's address only: not reachable as 127.0.0.1.
  v1::ClusterConfig local = Cluster({absl::StrCat("127.0.0.1:", (*w)->port())});
  local.set_token("ns-token");
  local.set_call_timeout_ms(500);
  auto m2 = Load();
  EXPECT_FALSE(AttachWorkers(*m2, local).ok());
}

}  // namespace
}  // namespace st
