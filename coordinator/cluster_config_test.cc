#include "coordinator/cluster_config.h"

#include <cmath>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "coordinator/worker_client.h"
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

TEST(ClusterConfigTest, NanFromTextprotoIsRefused) {
  for (const char* text : {"worker { address: \"h:1\" } local_share: nan",
                           "worker { address: \"h:1\" } rebalance_factor: nan"}) {
    auto c = ParseClusterConfig(text);
    ASSERT_TRUE(c.ok()) << c.status();
    EXPECT_EQ(ValidateClusterConfig(*c).code(), absl::StatusCode::kInvalidArgument) << text;
  }
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
  EXPECT_FALSE(ClusterConfigFromFlags("127.0.0.1:99999", "", "").ok());
  EXPECT_FALSE(ClusterConfigFromFlags("h1:1", "", path).ok());  // also in the file
  EXPECT_TRUE(ClusterConfigFromFlags("[::1]:7070,unix:/tmp/w.sock", "", "").ok());
  EXPECT_EQ(ClusterConfigFromFlags("", "", dir.File("missing")).status().code(),
            absl::StatusCode::kNotFound);
  // A folder used to read as an empty file: "no workers configured".
  const absl::Status folder = ClusterConfigFromFlags("", "", dir.path()).status();
  EXPECT_EQ(folder.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(folder.message().find("is a directory"), std::string::npos) << folder;
}

// A TLS file the config names but that cannot be read is the config's
// mistake, not an unreachable worker (which gets a hint about TLS).
TEST(ClusterConfigTest, MissingTlsFilesAreInvalidArgument) {
  smallthinker::v1::ClusterConfig c;
  c.set_tls_ca("/nonexistent/ca.pem");
  const absl::Status s = WorkerCredentials(c).status();
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << s;
  EXPECT_NE(s.message().find("cannot read worker TLS CA '/nonexistent/ca.pem'"), std::string::npos)
      << s;
}

smallthinker::v1::ClusterConfig OneWorker() {
  smallthinker::v1::ClusterConfig c;
  c.add_worker()->set_address("10.0.0.2:7070");
  return c;
}

TEST(ClusterConfigTest, ValidateNamesTheBadField) {
  EXPECT_TRUE(ValidateClusterConfig(OneWorker()).ok());
  struct Case {
    void (*edit)(smallthinker::v1::ClusterConfig&);
    const char* field;
  };
  const Case cases[] = {
      {[](auto& c) { c.clear_worker(); }, "no workers"},
      {[](auto& c) { c.mutable_worker(0)->set_address("nohost"); }, "nohost"},
      // gRPC wrapped the port to 34463, dialled 443, or misread the host.
      {[](auto& c) { c.mutable_worker(0)->set_address("127.0.0.1:99999"); }, "bad port"},
      {[](auto& c) { c.mutable_worker(0)->set_address("[::1]"); }, "[::1]"},
      {[](auto& c) { c.mutable_worker(0)->set_address("::1:7070"); }, "brackets"},
      {[](auto& c) { c.mutable_worker(0)->set_address("127.0.0.1:0"); }, "port 0"},
      {[](auto& c) { c.mutable_worker(0)->set_address("unix:"); }, "socket path"},
      {[](auto& c) { c.add_worker()->set_address("10.0.0.2:7070"); }, "listed twice"},
      {[](auto& c) { c.set_local_share(std::nan("")); }, "local_share"},
      {[](auto& c) { c.set_rebalance_factor(std::nan("")); }, "rebalance_factor"},
      {[](auto& c) { c.set_rebalance_factor(HUGE_VAL); }, "rebalance_factor"},
      {[](auto& c) { c.set_local_share(1.0); }, "local_share"},
      {[](auto& c) { c.set_local_share(-0.1); }, "local_share"},
      {[](auto& c) { c.set_spin_us(100001); }, "spin_us"},
      {[](auto& c) { c.set_local_threads(2); }, "local_threads"},
      {[](auto& c) { c.set_step_timeout_ms(-1); }, "step_timeout_ms"},
      {[](auto& c) { c.set_call_timeout_ms(-5); }, "call_timeout_ms"},
      {[](auto& c) { c.set_hot_experts_local(-1); }, "hot_experts_local"},
      {[](auto& c) { c.set_max_message_bytes(-1); }, "max_message_bytes"},
      {[](auto& c) { c.set_max_message_bytes((64 << 20) + 1); }, "max_message_bytes"},
      {[](auto& c) { c.set_readmit_backoff_max_ms(-100); }, "readmit_backoff_max_ms"},
      {[](auto& c) { c.set_tls_cert("c.pem"); }, "tls_cert and tls_key"},
      // Accepted before, to no effect (or, for 1.01, constant rebalancing).
      {[](auto& c) { c.set_rebalance_factor(1.0); }, "must be above 1"},
      {[](auto& c) { c.set_rebalance_factor(0.5); }, "must be above 1"},
      {[](auto& c) { c.set_readmit_backoff_min_ms(20000); }, "above readmit_backoff_max_ms 10000"},
      {[](auto& c) {
         c.set_readmit_backoff_min_ms(500);
         c.set_readmit_backoff_max_ms(400);
       },
       "readmit_backoff_min_ms 500"},
      {[](auto& c) { c.set_tls_server_name("w.example"); }, "tls_server_name without tls_ca"},
      // gRPC aborted the coordinator that sent these as metadata.
      {[](auto& c) { c.set_token("p\xc3\xa4ssw\xc3\xb6rd"); }, "worker token"},
      {[](auto& c) { c.set_token("ab\ncd"); }, "printable ASCII"},
      {[](auto& c) {
         c.set_tls_cert("c.pem");
         c.set_tls_key("c.key");
       },
       "tls_ca"},
  };
  for (const Case& k : cases) {
    smallthinker::v1::ClusterConfig c = OneWorker();
    k.edit(c);
    const absl::Status s = ValidateClusterConfig(c);
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << k.field;
    EXPECT_NE(s.message().find(k.field), std::string::npos) << s;
  }
}

// Every example deployment in deploy/cluster/ parses and passes the checks a
// coordinator makes before it contacts a worker.
TEST(ClusterConfigTest, DeployConfigsAreValid) {
  const std::filesystem::path dir = std::filesystem::path(testing::SourceDir()) / "deploy" / "cluster";
  int files = 0;
  for (const auto& entry : std::filesystem::directory_iterator(dir)) {
    if (entry.path().extension() != ".textproto") continue;
    SCOPED_TRACE(entry.path().string());
    std::ifstream in(entry.path());
    std::stringstream text;
    text << in.rdbuf();
    auto c = ParseClusterConfig(text.str());
    ASSERT_TRUE(c.ok()) << c.status();
    EXPECT_TRUE(ValidateClusterConfig(*c).ok()) << ValidateClusterConfig(*c);
    ++files;
  }
  EXPECT_GE(files, 5) << "deploy/cluster/*.textproto not found under " << dir;
}

}  // namespace
}  // namespace st
