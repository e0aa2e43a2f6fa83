#include "coordinator/cluster_config.h"

#include <fstream>

#include "gtest/gtest.h"
#include "tests/testutil/testutil.h"

namespace st {
namespace {

TEST(ClusterConfigTest, ParsesTextproto) {
  auto c = ParseClusterConfig(R"pb(
    worker { address: "10.0.0.2:7070" }
    worker { address: "[::1]:7071" }
    token: "s3cret"
    step_timeout_ms: 500
    local_share: 0.25
  )pb");
  ASSERT_TRUE(c.ok()) << c.status();
  ASSERT_EQ(c->worker_size(), 2);
  EXPECT_EQ(c->worker(1).address(), "[::1]:7071");
  EXPECT_EQ(c->token(), "s3cret");
  EXPECT_EQ(c->step_timeout_ms(), 500);
  EXPECT_DOUBLE_EQ(c->local_share(), 0.25);
}

TEST(ClusterConfigTest, ReportsParseErrorsWithLine) {
  auto c = ParseClusterConfig("worker { address: \"a:1\" }\nbogus_field: 3\n");
  ASSERT_FALSE(c.ok());
  EXPECT_EQ(c.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(c.status().message().find("line 2"), std::string::npos) << c.status();
  EXPECT_NE(c.status().message().find("bogus_field"), std::string::npos) << c.status();
}

TEST(ClusterConfigTest, FlagsAndFileCombine) {
  testing::TempDir dir;
  const std::string path = dir.File("cluster.textproto");
  std::ofstream(path) << "worker { address: \"h1:1\" } token: \"file\"\n";
  auto c = ClusterConfigFromFlags("h2:2, h3:3", "flag", path);
  ASSERT_TRUE(c.ok()) << c.status();
  ASSERT_EQ(c->worker_size(), 3);
  EXPECT_EQ(c->worker(2).address(), "h3:3");
  EXPECT_EQ(c->token(), "flag");
  EXPECT_FALSE(ClusterConfigFromFlags("nohost", "", "").ok());
  EXPECT_EQ(ClusterConfigFromFlags("", "", dir.File("missing")).status().code(),
            absl::StatusCode::kNotFound);
}

}  // namespace
}  // namespace st
