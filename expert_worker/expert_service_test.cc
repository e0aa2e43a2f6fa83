// ExpertServiceImpl::Validate on its own (no store needed): a request whose
// reply could not fit a message is refused before anything is computed.
#include "expert_worker/expert_service.h"

#include <string>

#include "gtest/gtest.h"
#include "model/config.h"
#include "smallthinker/v1/expert.pb.h"

namespace st {
namespace {

namespace v1 = smallthinker::v1;

// The 21B's width: 65536 items of 2560 floats would be a 671 MB reply.
ModelConfig Wide() {
  ModelConfig c;
  c.d_model = 2560;
  c.n_layers = 2;
  c.n_experts = 64;
  c.top_k = 6;
  return c;
}

v1::ComputeRequest Items(const ModelConfig& c, int n_items) {
  v1::ComputeRequest r;
  r.set_step_id(1);
  r.set_layer(0);
  r.set_n_rows(1);
  r.mutable_hidden()->assign(static_cast<size_t>(c.d_model) * sizeof(float), '\0');
  for (int i = 0; i < n_items; ++i) {
    r.add_row(0);
    r.add_expert(i % c.n_experts);
  }
  return r;
}

TEST(ExpertServiceValidateTest, ARequestWhoseReplyCannotFitIsRefused) {
  const ModelConfig c = Wide();
  ExpertServiceImpl service(c, /*store=*/nullptr, /*pool=*/nullptr, ExpertServiceInfo{});
  const int fits = (kMaxMessageBytes - kReplyEnvelopeBytes) / (c.d_model * 4);
  // One item more than a reply can hold: refused, naming the cap.
  absl::Status s = service.Validate(Items(c, fits + 1));
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << s;
  EXPECT_NE(s.message().find("message cap"), std::string::npos) << s;
  // As many as fit pass the size check (then fail as unassigned: nothing
  // was assigned to this service).
  s = service.Validate(Items(c, fits));
  EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition) << s;
}

// Items are at most 4096 x top_k (expert.proto), not a flat 65536.
TEST(ExpertServiceValidateTest, ItemsAreCappedAtRowsTimesTopK) {
  ModelConfig c;
  c.d_model = 64;
  c.n_layers = 2;
  c.n_experts = 8;
  c.top_k = 2;
  ExpertServiceImpl service(c, /*store=*/nullptr, /*pool=*/nullptr, ExpertServiceInfo{});
  absl::Status s = service.Validate(Items(c, kMaxComputeRows * 2 + 1));
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << s;
  EXPECT_NE(s.message().find("items outside [1, 8192]"), std::string::npos) << s;
  s = service.Validate(Items(c, kMaxComputeRows * 2));
  EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition) << s;  // unassigned, as above
}

}  // namespace
}  // namespace st
