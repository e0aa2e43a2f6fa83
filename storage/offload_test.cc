// Offloaded experts give exactly the logits of the all-in-RAM run, whatever
// the source, cache size or speculation; budgets are enforced; bad packs are
// refused with clear errors.
#include "storage/offload.h"

#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <thread>

#include "gtest/gtest.h"
#include "common/process_memory.h"
#include "common/status_macros.h"
#include "model/session.h"
#include "model/mapped_repack.h"
#include "storage/expert_stats.h"
#include "storage/pack_test_util.h"
#include "storage/pack_writer.h"
#include "tests/testutil/testutil.h"

namespace st {
namespace {

class OffloadTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new st::testing::TempDir();
    auto m = st::testing::SynthModel(dir_->path(), "tiny-swa", DType::kQ4_0);
    ASSERT_TRUE(m.ok()) << m.status();
    gguf_ = new std::string(*m);
    ASSERT_TRUE(WritePack({.gguf_path = *m, .progress = false}).ok());
  }
  static void TearDownTestSuite() {
    delete gguf_;
    delete dir_;
  }
  static std::unique_ptr<Model> Load(const std::string& path = "") {
    auto m = Model::Load(path.empty() ? *gguf_ : path, {.threads = 2, .max_batch = 5});
    EXPECT_TRUE(m.ok()) << m.status();
    return std::move(*m);
  }
  // Logits of a 23-token prompt (batches of 5) and 12 decode steps.
  static absl::StatusOr<std::vector<float>> Logits(Model& model) {
    Session session(model, 64);
    std::vector<int32_t> prompt;
    for (int i = 0; i < 23; ++i) prompt.push_back((i * 37 + 11) % 250);
    ST_ASSIGN_OR_RETURN(std::vector<float> all, session.Evaluate(prompt, true));
    int32_t next = 3;
    for (int i = 0; i < 12; ++i) {
      ST_ASSIGN_OR_RETURN(std::vector<float> step, session.Evaluate({&next, 1}, false));
      all.insert(all.end(), step.begin(), step.end());
      next = static_cast<int32_t>(std::max_element(step.begin(), step.end()) - step.begin());
    }
    return all;
  }
  static OffloadOptions Opts() {
    OffloadOptions o;
    o.pin_hot = false;
    o.stats_path = dir_->File("unused.stats");
    return o;
  }

  static st::testing::TempDir* dir_;
  static std::string* gguf_;
};
st::testing::TempDir* OffloadTest::dir_ = nullptr;
std::string* OffloadTest::gguf_ = nullptr;

TEST_F(OffloadTest, EverySourceAndCacheSizeGivesTheAllInRamLogits) {
  auto ref_model = Load();
  auto ref_offload = EnableOffload(*ref_model, Opts());
  ASSERT_TRUE(ref_offload.ok()) << ref_offload.status();
  ASSERT_NE(*ref_offload, nullptr);
  EXPECT_EQ((*ref_offload)->plan().slots, (*ref_offload)->plan().total_experts);  // all in RAM
  auto ref = Logits(*ref_model);
  ASSERT_TRUE(ref.ok()) << ref.status();
  EXPECT_EQ((*ref_offload)->executor().cache().counters().misses, 0u);

  for (SourceKind kind : {SourceKind::kIoUring, SourceKind::kPread, SourceKind::kMmap, SourceKind::kMemory}) {
    for (int slots : {2, 5, 37}) {
      for (bool speculate : {false, true}) {
        SCOPED_TRACE(::testing::Message() << SourceKindName(kind) << " slots " << slots
                                          << (speculate ? " speculate" : ""));
        auto model = Load();
        OffloadOptions o = Opts();
        o.source.kind = kind;
        o.cache_slots = slots;
        o.speculate = speculate;
        auto offload = EnableOffload(*model, o);
        ASSERT_TRUE(offload.ok()) << offload.status();
        auto got = Logits(*model);
        ASSERT_TRUE(got.ok()) << got.status();
        EXPECT_TRUE(*got == *ref) << "logits differ from the all-in-RAM run";
        const ExpertCacheCounters& c = (*offload)->executor().cache().counters();
        EXPECT_GT(c.misses, 0u);
        EXPECT_GT(c.evictions, 0u);
        EXPECT_EQ(c.hits + c.misses, c.requests);
        if (speculate) {
          const SpeculationCounters& sc = (*offload)->executor().speculation();
          EXPECT_GT(sc.guessed, 0u);
          // With 2 slots (top-k) both hold the layer's own experts: no
          // guess finds a slot, and none counts as read. With more, a
          // cache this small misses most guesses.
          if (slots == 2) {
            EXPECT_EQ(sc.reads, 0u);
            EXPECT_GT(c.prefetch_skipped, 0u);
          } else {
            EXPECT_GT(sc.reads, 0u);
          }
          EXPECT_LE(sc.reads, c.reads);
          EXPECT_LE(sc.reads_used, sc.reads);
          EXPECT_LE(sc.reads_used, sc.correct);
          EXPECT_EQ(sc.tokens, 12u);  // the decode steps; no prompt batch guesses
        }
        const double active = (*offload)->executor().sparsity().active_fraction();
        EXPECT_GT(active, 0.2);
        EXPECT_LT(active, 0.8);
      }
    }
  }
}

// A Q4_K_M model (K-quant experts, packed as the file stores them):
// offloaded through any source and cache size it gives the logits of the
// GGUF's experts computed in RAM, bit for bit, and converts nothing.
TEST_F(OffloadTest, KQuantModelOffloadedGivesTheInRamLogits) {
  st::testing::TempDir d;
  // d_model 512 beside d_expert 256: down's shape is not its transpose's.
  auto m = st::testing::SynthModel(d.path(), "tiny-256", DType::kQ8_0, Gating::kSigmoid, 5, false,
                                   "", SynthMix::kQ4_K_M, /*d_model=*/512);
  ASSERT_TRUE(m.ok()) << m.status();
  auto w = WritePack({.gguf_path = *m, .progress = false});
  ASSERT_TRUE(w.ok()) << w.status();
  ASSERT_TRUE(w->as_stored);
  auto ref_model = Load(*m);  // no EnableOffload: the GGUF's experts in RAM
  auto ref = Logits(*ref_model);
  ASSERT_TRUE(ref.ok()) << ref.status();
  for (float v : *ref) ASSERT_TRUE(std::isfinite(v));
  const size_t copies_before = PackedCopyBytes();
  for (SourceKind kind : {SourceKind::kIoUring, SourceKind::kPread, SourceKind::kMmap, SourceKind::kMemory}) {
    for (int slots : {0, 3, 17}) {  // 0: every expert cached
      SCOPED_TRACE(::testing::Message() << SourceKindName(kind) << " slots " << slots);
      auto model = Load(*m);
      OffloadOptions o = Opts();
      o.source.kind = kind;
      o.cache_slots = slots;
      o.speculate = slots == 17;
      auto offload = EnableOffload(*model, o);
      ASSERT_TRUE(offload.ok()) << offload.status();
      ASSERT_NE(*offload, nullptr);
      auto got = Logits(*model);
      ASSERT_TRUE(got.ok()) << got.status();
      EXPECT_TRUE(*got == *ref) << "logits differ from the GGUF's in RAM";
      if (slots > 0) {
        EXPECT_GT((*offload)->executor().cache().counters().misses, 0u);
      }
      const double active = (*offload)->executor().sparsity().active_fraction();
      EXPECT_GT(active, 0.2);
      EXPECT_LT(active, 0.8);
    }
  }
  // Offloaded, the GGUF's K-quant experts are never converted in RAM.
  EXPECT_EQ(PackedCopyBytes(), copies_before);
  // --no-repack (dense matrices in rows) still packs K-quant gates and
  // downs in RAM as the pack holds them: offloaded or not, the same logits.
  {
    const ModelOptions no_repack{.threads = 2, .max_batch = 5, .repack = false};
    auto in_ram = Model::Load(*m, no_repack);
    ASSERT_TRUE(in_ram.ok()) << in_ram.status();
    auto want = Logits(**in_ram);
    ASSERT_TRUE(want.ok()) << want.status();
    auto model = Model::Load(*m, no_repack);
    ASSERT_TRUE(model.ok()) << model.status();
    OffloadOptions o = Opts();
    o.cache_slots = 3;
    auto offload = EnableOffload(**model, o);
    ASSERT_TRUE(offload.ok()) << offload.status();
    ASSERT_NE(*offload, nullptr);
    auto got = Logits(**model);
    ASSERT_TRUE(got.ok()) << got.status();
    EXPECT_TRUE(*got == *want) << "--no-repack: offloaded logits differ from in RAM";
  }

  // --kquant-as-q8 computes nothing as stored: found beside the model,
  // such a pack is passed over (experts from the GGUF); asked for by a
  // budget or by its path, it is refused.
  auto q8_model = Model::Load(*m, {.threads = 2, .max_batch = 5, .native_kquant = false});
  ASSERT_TRUE(q8_model.ok()) << q8_model.status();
  auto passed_over = EnableOffload(**q8_model, Opts());
  ASSERT_TRUE(passed_over.ok()) << passed_over.status();
  EXPECT_EQ(*passed_over, nullptr);
  OffloadOptions budget = Opts(), by_path = Opts();
  budget.memory_budget = uint64_t{1} << 30;
  by_path.pack_path = w->path;
  for (const OffloadOptions& o : {budget, by_path}) {
    auto refused = EnableOffload(**q8_model, o);
    ASSERT_FALSE(refused.ok());
    EXPECT_EQ(refused.status().code(), absl::StatusCode::kFailedPrecondition) << refused.status();
    EXPECT_NE(refused.status().message().find("convert --kquant-as-q8"), std::string::npos)
        << refused.status();
  }
}

// A Q4_K_M model converted with kquant_as_q8 (Q8_0 records, down
// transposed): offloaded through a small cache it gives the logits of its
// pack all in RAM.
TEST_F(OffloadTest, KQuantModelRunsFromItsQ8_0Pack) {
  st::testing::TempDir d;
  auto m = st::testing::SynthModel(d.path(), "tiny-256", DType::kQ8_0, Gating::kSigmoid, 5, false,
                                   "", SynthMix::kQ4_K_M);
  ASSERT_TRUE(m.ok()) << m.status();
  ASSERT_TRUE(WritePack({.gguf_path = *m, .progress = false, .kquant_as_q8 = true}).ok());
  const size_t copies_before = PackedCopyBytes();
  auto ref_model = Load(*m);
  auto ref_offload = EnableOffload(*ref_model, Opts());
  ASSERT_TRUE(ref_offload.ok()) << ref_offload.status();
  ASSERT_NE(*ref_offload, nullptr);
  ASSERT_FALSE((*ref_offload)->executor().cache().pack().header().as_stored());
  auto ref = Logits(*ref_model);
  ASSERT_TRUE(ref.ok()) << ref.status();
  for (float v : *ref) ASSERT_TRUE(std::isfinite(v));
  auto model = Load(*m);
  OffloadOptions o = Opts();
  o.cache_slots = 3;
  auto offload = EnableOffload(*model, o);
  ASSERT_TRUE(offload.ok()) << offload.status();
  auto got = Logits(*model);
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_TRUE(*got == *ref) << "logits differ from the all-in-RAM run";
  EXPECT_GT((*offload)->executor().cache().counters().misses, 0u);
  // Offloaded, the GGUF's K-quant experts are never converted in RAM.
  EXPECT_EQ(PackedCopyBytes(), copies_before);
}

// A guess for layer l+1 is scored by the Prepare right after it only: when
// a step fails after guessing and the next one starts over at layer 0, the
// stale guess must not count against a later layer l+1 (it had: correct
// and reads_used grew without a guess, and read precision could pass 1).
TEST_F(OffloadTest, AGuessIsScoredOnlyByTheNextPrepare) {
  auto model = Load();
  OffloadOptions o = Opts();
  o.cache_slots = 6;
  o.speculate = true;
  auto offload = EnableOffload(*model, o);
  ASSERT_TRUE(offload.ok()) << offload.status();
  CachedExpertExecutor& ex = (*offload)->executor();
  const int k = model->config().top_k;
  Routes r{.n_tokens = 1, .top_k = k};
  for (int j = 0; j < k; ++j) {
    r.ids.push_back(j);
    r.weights.push_back(1.0f / k);
  }
  ex.Speculate(1, r);  // a guess for layer 1 ...
  ex.Prepare(0, r);    // ... but the next step starts over at layer 0
  ex.cache().ReleaseAll();
  ex.Prepare(1, r);    // layer 1 chooses the guessed experts, later
  ex.cache().ReleaseAll();
  EXPECT_EQ(ex.speculation().correct, 0u);
  EXPECT_EQ(ex.speculation().needed, 0u);
  EXPECT_EQ(ex.speculation().reads_used, 0u);
  ex.Speculate(1, r);
  ex.Prepare(1, r);  // right after its guess: scored
  ex.cache().ReleaseAll();
  EXPECT_EQ(ex.speculation().correct, static_cast<uint64_t>(k));
  EXPECT_EQ(ex.speculation().needed, static_cast<uint64_t>(k));
  EXPECT_EQ(ex.speculation().tokens, 2u);
  EXPECT_LE(ex.speculation().reads_used, ex.speculation().reads);
}

TEST_F(OffloadTest, NoPackNoBudgetRunsFromTheGguf) {
  st::testing::TempDir d;
  const std::string copy = d.File("m.gguf");
  std::filesystem::copy_file(*gguf_, copy);
  auto model = Load(copy);
  auto offload = EnableOffload(*model, Opts());
  ASSERT_TRUE(offload.ok()) << offload.status();
  EXPECT_EQ(*offload, nullptr);
  OffloadOptions o = Opts();
  o.memory_budget = 1ull << 30;
  auto refused = EnableOffload(*model, o);
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kFailedPrecondition) << refused.status();
  EXPECT_NE(refused.status().message().find("smallthinker convert"), std::string::npos);
}

TEST_F(OffloadTest, BudgetTooSmallForTheDensePartIsRefusedWithTheNumbers) {
  auto model = Load();
  OffloadOptions o = Opts();
  o.memory_budget = 1 << 20;
  auto offload = EnableOffload(*model, o);
  EXPECT_EQ(offload.status().code(), absl::StatusCode::kResourceExhausted) << offload.status();
  const std::string msg(offload.status().message());
  for (const char* part : {"memory budget", "dense weights", "KV cache", "expert cache"}) {
    EXPECT_NE(msg.find(part), std::string::npos) << part << " missing in: " << msg;
  }
}

TEST_F(OffloadTest, BudgetSizesTheCache) {
  auto model = Load();
  OffloadOptions o = Opts();
  // Enough for the process as it is now, plus about 40 records.
  const auto probe = EnableOffload(*Load(), Opts());
  ASSERT_TRUE(probe.ok());
  const MemoryPlan& p = (*probe)->plan();
  o.memory_budget =
      ReadProcessMemory().rss_bytes + p.dense + p.kv + p.scratch + o.margin_bytes + 40 * p.record;
  auto offload = EnableOffload(*model, o);
  ASSERT_TRUE(offload.ok()) << offload.status();
  EXPECT_GE((*offload)->plan().slots, 2);
  EXPECT_LT((*offload)->plan().slots, (*offload)->plan().total_experts);
  // The token embedding counts as one step's rows, not the whole table
  // (its pages are released after each step)...
  const DenseWeights& w = model->weights();
  const uint64_t embd = static_cast<uint64_t>(w.token_embd.rows) * w.token_embd.row_bytes();
  const MemoryPlan& plan = (*offload)->plan();
  const bool tied = w.output.data == w.token_embd.data;
  EXPECT_GT(plan.embedding_reserve, 0u);
  EXPECT_LE(plan.embedding_reserve, embd);  // (the tiny table is smaller than one step's reserve)
  EXPECT_EQ(plan.dense + (tied ? 0 : embd), w.dense_bytes - w.packed_bytes + plan.embedding_reserve);
  // ... and releasing them changes no number.
  auto ref_model = Load();
  auto ref_offload = EnableOffload(*ref_model, Opts());
  ASSERT_TRUE(ref_offload.ok());
  auto want = Logits(*ref_model);
  auto got = Logits(*model);
  ASSERT_TRUE(want.ok() && got.ok());
  EXPECT_TRUE(*want == *got);
}

// serve's --kv-budget below sessions x context: the plan reserves only it
// for KV caches, and the expert cache gets the rest (it had reserved
// sessions x context, leaving the 4b 50 of 1024 experts at 1 GiB).
TEST_F(OffloadTest, KvCapGivesTheRestToTheExpertCache) {
  OffloadOptions o = Opts();
  o.sessions = 4;
  o.context_tokens = 512;
  const auto probe = EnableOffload(*Load(), o);
  ASSERT_TRUE(probe.ok()) << probe.status();
  const MemoryPlan& p = (*probe)->plan();
  // Room for the process as it grows (two more models loaded) and some slots.
  o.memory_budget = ReadProcessMemory().rss_bytes + p.dense + p.kv + p.scratch + o.margin_bytes +
                    (16ull << 20);
  auto full = EnableOffload(*Load(), o);
  ASSERT_TRUE(full.ok()) << full.status();
  o.kv_cap_bytes = p.kv / 4;
  auto capped = EnableOffload(*Load(), o);
  ASSERT_TRUE(capped.ok()) << capped.status();
  EXPECT_EQ((*capped)->plan().kv, p.kv / 4);
  EXPECT_EQ((*full)->plan().kv, p.kv);
  EXPECT_GE((*capped)->plan().slots, (*full)->plan().slots);
}

TEST_F(OffloadTest, FlippedBytesEndTheRequestWithDataLoss) {
  auto pack = ExpertPack::Open(DefaultPackPath(*gguf_));
  ASSERT_TRUE(pack.ok());
  const PackHeader& h = (*pack)->header();
  st::testing::TempDir d;
  const std::string copy = d.File("m.gguf");
  std::filesystem::copy_file(*gguf_, copy);
  // Corrupt every expert of layer 2 so the request surely needs one.
  std::string pack_path = DefaultPackPath(copy);
  st::testing::CopyModified(DefaultPackPath(*gguf_), pack_path, -1);
  for (int e = 0; e < static_cast<int>(h.n_experts); ++e) {
    st::testing::CopyModified(pack_path, pack_path + ".tmp", h.RecordOffset(2, e) + 100);
    std::filesystem::rename(pack_path + ".tmp", pack_path);
  }
  {  // Small cache: the request fails, naming layer and expert.
    auto model = Load(copy);
    OffloadOptions o = Opts();
    o.cache_slots = 3;
    auto offload = EnableOffload(*model, o);
    ASSERT_TRUE(offload.ok()) << offload.status();
    auto logits = Logits(*model);
    EXPECT_EQ(logits.status().code(), absl::StatusCode::kDataLoss) << logits.status();
    EXPECT_NE(logits.status().message().find("layer 2 expert"), std::string::npos) << logits.status();
  }
  {  // All in RAM: refused at start.
    auto model = Load(copy);
    auto offload = EnableOffload(*model, Opts());
    EXPECT_EQ(offload.status().code(), absl::StatusCode::kDataLoss) << offload.status();
  }
}

TEST_F(OffloadTest, PackOfAnotherModelIsRefused) {
  st::testing::TempDir d;
  auto other = st::testing::SynthModel(d.path(), "tiny-swa", DType::kQ4_0, Gating::kSigmoid, /*seed=*/99);
  ASSERT_TRUE(other.ok());
  ASSERT_TRUE(WritePack({.gguf_path = *other, .progress = false}).ok());
  auto model = Load();
  OffloadOptions o = Opts();
  o.pack_path = DefaultPackPath(*other);
  auto offload = EnableOffload(*model, o);
  EXPECT_EQ(offload.status().code(), absl::StatusCode::kFailedPrecondition) << offload.status();
  // Found beside the model (no --pack): with a budget, refused the same way;
  // without one, passed over (the experts run from the GGUF).
  const std::string copy = d.File("m.gguf");
  std::filesystem::copy_file(*gguf_, copy);
  std::filesystem::copy_file(DefaultPackPath(*other), DefaultPackPath(copy));
  auto beside = Load(copy);
  OffloadOptions budget = Opts();
  budget.memory_budget = uint64_t{1} << 30;
  auto refused = EnableOffload(*beside, budget);
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kFailedPrecondition) << refused.status();
  EXPECT_NE(refused.status().message().find("another model"), std::string::npos);
  auto passed_over = EnableOffload(*beside, Opts());
  ASSERT_TRUE(passed_over.ok()) << passed_over.status();
  EXPECT_EQ(*passed_over, nullptr);
}

TEST_F(OffloadTest, RecordedStatsPinTheHottestExperts) {
  OffloadOptions o = Opts();
  o.stats_path = dir_->File("pin.stats");
  o.pin_hot = true;
  o.pin_fraction = 0.5;
  o.preload_fraction = 0.0;
  o.cache_slots = 9;
  std::vector<float> first;
  {
    auto model = Load();
    auto offload = EnableOffload(*model, o);
    ASSERT_TRUE(offload.ok()) << offload.status();
    EXPECT_EQ((*offload)->plan().pinned, 0);  // no stats yet
    auto logits = Logits(*model);
    ASSERT_TRUE(logits.ok());
    first = *logits;
    ASSERT_TRUE((*offload)->SaveStats(model->forward()).ok());
  }
  auto model = Load();
  auto offload = EnableOffload(*model, o);
  ASSERT_TRUE(offload.ok()) << offload.status();
  EXPECT_EQ((*offload)->plan().pinned, 4);  // half the slots
  auto logits = Logits(*model);
  ASSERT_TRUE(logits.ok());
  EXPECT_TRUE(*logits == first);
  // Stats accumulate across runs.
  ASSERT_TRUE((*offload)->SaveStats(model->forward()).ok());
  auto pack = ExpertPack::Open(DefaultPackPath(*gguf_));
  auto stats = LoadExpertStats(o.stats_path, (*pack)->header());
  ASSERT_TRUE(stats.ok()) << stats.status();
  uint64_t total = 0;
  for (uint64_t c : stats->counts) total += c;
  const ModelConfig& c = model->config();
  EXPECT_EQ(total, 2ull * (23 + 12) * c.top_k * c.n_layers);
}

// By default the recorded hottest experts are read at start but not pinned:
// they are resident before the first step, and evictable.
TEST_F(OffloadTest, RecordedStatsPreloadTheHottestExpertsUnpinned) {
  OffloadOptions o = Opts();
  o.stats_path = dir_->File("preload.stats");
  o.pin_hot = true;
  o.cache_slots = 9;
  std::vector<float> first;
  std::vector<std::pair<int, int>> hottest;
  {
    auto model = Load();
    auto offload = EnableOffload(*model, o);
    ASSERT_TRUE(offload.ok()) << offload.status();
    EXPECT_EQ((*offload)->plan().preloaded, 0);  // no stats yet
    auto logits = Logits(*model);
    ASSERT_TRUE(logits.ok());
    first = *logits;
    ASSERT_TRUE((*offload)->SaveStats(model->forward()).ok());
    auto pack = ExpertPack::Open(DefaultPackPath(*gguf_));
    auto stats = LoadExpertStats(o.stats_path, (*pack)->header());
    ASSERT_TRUE(stats.ok()) << stats.status();
    hottest = stats->Hottest(4);
  }
  auto model = Load();
  auto offload = EnableOffload(*model, o);
  ASSERT_TRUE(offload.ok()) << offload.status();
  EXPECT_EQ((*offload)->plan().pinned, 0);
  EXPECT_EQ((*offload)->plan().preloaded, 4);  // half the slots
  ExpertCache& cache = (*offload)->executor().cache();
  for (auto [l, e] : hottest) EXPECT_TRUE(cache.IsResident(l, e)) << l << " " << e;
  EXPECT_EQ(cache.counters().reads, 0u);  // counters start after loading
  auto logits = Logits(*model);
  ASSERT_TRUE(logits.ok());
  EXPECT_TRUE(*logits == first);
  EXPECT_GT(cache.counters().evictions, 0u);  // preloaded slots are not pinned
}

TEST_F(OffloadTest, MalformedStatsFileIsIgnoredWithAWarning) {
  OffloadOptions o = Opts();
  o.stats_path = dir_->File("bad.stats");
  o.pin_hot = true;
  o.cache_slots = 6;
  std::ofstream(o.stats_path) << "smallthinker-expert-stats 1\nfingerprint zz\n";
  auto model = Load();
  auto offload = EnableOffload(*model, o);
  ASSERT_TRUE(offload.ok()) << offload.status();
  EXPECT_EQ((*offload)->plan().pinned, 0);
  auto pack = ExpertPack::Open(DefaultPackPath(*gguf_));
  EXPECT_EQ(LoadExpertStats(o.stats_path, (*pack)->header()).status().code(),
            absl::StatusCode::kInvalidArgument);
}

// A stats file that is there but cannot be read is neither taken for
// "no stats yet" nor replaced by a fresh one (it would lose its counts).
// A symlink loop stands in for an unreadable file: root reads any mode.
TEST_F(OffloadTest, UnreadableStatsFileIsNotReplaced) {
  auto pack = ExpertPack::Open(DefaultPackPath(*gguf_));
  ASSERT_TRUE(pack.ok()) << pack.status();
  const PackHeader& h = (*pack)->header();
  const std::string path = dir_->File("loop.stats");
  ASSERT_EQ(symlink(path.c_str(), path.c_str()), 0) << std::strerror(errno);
  const absl::Status load = LoadExpertStats(path, h).status();
  EXPECT_FALSE(load.ok());
  EXPECT_FALSE(absl::IsNotFound(load)) << load;
  EXPECT_NE(load.message().find(path), std::string::npos) << load;
  const size_t n = static_cast<size_t>(h.n_layers) * h.n_experts;
  EXPECT_FALSE(AddExpertStats(path, h, std::vector<uint64_t>(n, 1)).ok());
  char target[4096];
  const ssize_t len = readlink(path.c_str(), target, sizeof(target));
  ASSERT_GT(len, 0) << "the link was replaced";
  EXPECT_EQ(std::string(target, len), path);
  EXPECT_TRUE(absl::IsNotFound(LoadExpertStats(dir_->File("none.stats"), h).status()));
  // A FIFO is refused at once (opening it for reading had blocked until a
  // writer came, so `run` hung at start and again at its end-of-run save).
  const std::string fifo = dir_->File("fifo.stats");
  ASSERT_EQ(mkfifo(fifo.c_str(), 0600), 0) << std::strerror(errno);
  const absl::Status on_fifo = LoadExpertStats(fifo, h).status();
  EXPECT_EQ(on_fifo.code(), absl::StatusCode::kInvalidArgument) << on_fifo;
  EXPECT_NE(on_fifo.message().find("not a regular file"), std::string::npos) << on_fifo;
  // Adding to it replaces it, as a malformed stats file is, without blocking.
  ASSERT_TRUE(AddExpertStats(fifo, h, std::vector<uint64_t>(n, 1)).ok());
  EXPECT_TRUE(LoadExpertStats(fifo, h).ok());
}

// A stats file larger than the model's counts can be is refused from its
// size: a file of zeros (one "word" with no spaces) had been read into
// memory whole, past any memory budget (a 1 GiB one: 2 GiB of RSS).
// A FIFO at the lock file's path had blocked the save, and the exit of run
// and chat, forever: the counts are added without the lock.
TEST_F(OffloadTest, OversizedStatsFileAndFifoLockDoNotStall) {
  auto pack = ExpertPack::Open(DefaultPackPath(*gguf_));
  ASSERT_TRUE(pack.ok()) << pack.status();
  const PackHeader& h = (*pack)->header();
  const size_t n = static_cast<size_t>(h.n_layers) * h.n_experts;
  const std::string path = dir_->File("huge.stats");
  {
    std::ofstream out(path);
    out << "smallthinker-expert-stats";
  }
  ASSERT_EQ(truncate(path.c_str(), int64_t{1} << 30), 0) << std::strerror(errno);  // sparse
  const absl::Status big = LoadExpertStats(path, h).status();
  EXPECT_EQ(big.code(), absl::StatusCode::kInvalidArgument) << big;
  EXPECT_NE(big.message().find("more than its counts can take"), std::string::npos) << big;
  // A file as large as the counts can be is still read.
  ASSERT_TRUE(AddExpertStats(path, h, std::vector<uint64_t>(n, UINT64_MAX)).ok());
  auto full = LoadExpertStats(path, h);
  ASSERT_TRUE(full.ok()) << full.status();
  EXPECT_EQ(full->counts[0], UINT64_MAX);
  std::filesystem::remove(path + ".lock");  // the regular one the adds made
  ASSERT_EQ(mkfifo((path + ".lock").c_str(), 0600), 0) << std::strerror(errno);
  ASSERT_TRUE(AddExpertStats(path, h, std::vector<uint64_t>(n, 1)).ok());
  struct stat st;
  ASSERT_EQ(stat((path + ".lock").c_str(), &st), 0);
  EXPECT_TRUE(S_ISFIFO(st.st_mode));  // left as it was
}

TEST_F(OffloadTest, IoMemoryCannotHoldABudget) {
  auto model = Load();
  OffloadOptions o = Opts();
  o.memory_budget = 1ull << 40;
  o.source.kind = SourceKind::kMemory;
  auto offload = EnableOffload(*model, o);
  EXPECT_EQ(offload.status().code(), absl::StatusCode::kInvalidArgument) << offload.status();
  EXPECT_NE(offload.status().message().find("--io memory"), std::string::npos);
}

TEST_F(OffloadTest, StatsFromRunsEndingTogetherAddUp) {
  auto pack = ExpertPack::Open(DefaultPackPath(*gguf_));
  ASSERT_TRUE(pack.ok()) << pack.status();
  const PackHeader& h = (*pack)->header();
  const std::string path = dir_->File("together.stats");
  const std::vector<uint64_t> one(static_cast<size_t>(h.n_layers) * h.n_experts, 1);
  std::vector<std::thread> runs;
  for (int t = 0; t < 8; ++t) {
    runs.emplace_back([&] {
      for (int i = 0; i < 20; ++i) EXPECT_TRUE(AddExpertStats(path, h, one).ok());
    });
  }
  for (auto& r : runs) r.join();
  auto stats = LoadExpertStats(path, h);
  ASSERT_TRUE(stats.ok()) << stats.status();
  for (uint64_t c : stats->counts) EXPECT_EQ(c, 160u);
}

TEST_F(OffloadTest, StatsCountsAreDigitsAndSaturate) {
  auto pack = ExpertPack::Open(DefaultPackPath(*gguf_));
  ASSERT_TRUE(pack.ok()) << pack.status();
  const PackHeader& h = (*pack)->header();
  const size_t n = static_cast<size_t>(h.n_layers) * h.n_experts;
  ExpertStats s{.fingerprint = h.fingerprint,
                .n_layers = static_cast<int>(h.n_layers),
                .n_experts = static_cast<int>(h.n_experts),
                .counts = std::vector<uint64_t>(n, 5)};
  s.counts[0] = std::numeric_limits<uint64_t>::max() - 1;
  const std::string path = dir_->File("saturate.stats");
  // Saved through a symlink (relative, to a file not there yet): the link
  // stays and its file holds the counts.
  const std::string real = dir_->File("real.stats");
  std::filesystem::create_symlink("real.stats", path);
  ASSERT_TRUE(SaveExpertStats(path, s).ok());
  ASSERT_TRUE(AddExpertStats(path, h, std::vector<uint64_t>(n, 3)).ok());
  EXPECT_TRUE(std::filesystem::is_symlink(path));
  EXPECT_TRUE(std::filesystem::is_regular_file(std::filesystem::symlink_status(real)));
  // A link another user owns is not followed (in a shared directory it could
  // name any file of ours): the link itself is replaced.
  if (geteuid() == 0) {
    const std::string planted = dir_->File("planted.stats");
    const std::string victim = dir_->File("victim.txt");
    std::ofstream(victim) << "keep me";
    std::filesystem::create_symlink("victim.txt", planted);
    ASSERT_EQ(lchown(planted.c_str(), 65534, 65534), 0);
    ASSERT_TRUE(SaveExpertStats(planted, s).ok());
    EXPECT_FALSE(std::filesystem::is_symlink(planted));
    std::ifstream in(victim);
    EXPECT_EQ(std::string(std::istreambuf_iterator<char>(in), {}), "keep me");
  }
  auto back = LoadExpertStats(path, h);
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(back->counts[0], std::numeric_limits<uint64_t>::max());
  EXPECT_EQ(back->counts[1], 8u);
  // A negative count (istream would read -5 as 2^64 - 5) is malformed.
  std::ifstream in(path);
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  const size_t at = text.find(" 8", text.find("\n", text.find("shape")));  // layer 0's 2nd count
  ASSERT_NE(at, std::string::npos);
  text.replace(at, 2, " -5");
  std::ofstream(path, std::ios::trunc) << text;
  auto bad = LoadExpertStats(path, h);
  EXPECT_EQ(bad.status().code(), absl::StatusCode::kInvalidArgument) << bad.status();
  EXPECT_NE(bad.status().message().find("bad count '-5'"), std::string::npos) << bad.status();
}

}  // namespace
}  // namespace st
