// HealthService against a real in-process gRPC server on a loopback port:
// Check, Watch's updates, unknown services, and Shutdown ending a Watch.
#include "proto/health_service.h"

#include <chrono>
#include <memory>
#include <thread>

#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"

namespace st {
namespace {

namespace hv1 = grpc::health::v1;

class HealthServiceTest : public ::testing::Test {
 protected:
  void SetUp() override {
    grpc::EnableDefaultHealthCheckService(false);
    grpc::ServerBuilder builder;
    int port = 0;
    builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &port);
    builder.RegisterService(&health_);
    server_ = builder.BuildAndStart();
    ASSERT_NE(server_, nullptr);
    stub_ = hv1::Health::NewStub(grpc::CreateChannel("127.0.0.1:" + std::to_string(port),
                                                     grpc::InsecureChannelCredentials()));
  }
  void TearDown() override {
    health_.Shutdown();
    server_->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(5));
  }

  grpc::Status Check(const std::string& service, hv1::HealthCheckResponse::ServingStatus* out) {
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
    hv1::HealthCheckRequest req;
    req.set_service(service);
    hv1::HealthCheckResponse resp;
    grpc::Status s = stub_->Check(&ctx, req, &resp);
    *out = resp.status();
    return s;
  }

  HealthService health_;
  std::unique_ptr<grpc::Server> server_;
  std::unique_ptr<hv1::Health::Stub> stub_;
};

TEST_F(HealthServiceTest, CheckReportsEachServiceAndRefusesUnknownOnes) {
  hv1::HealthCheckResponse::ServingStatus status;
  ASSERT_TRUE(Check("", &status).ok());
  EXPECT_EQ(status, hv1::HealthCheckResponse::SERVING);  // the server starts serving
  EXPECT_EQ(Check("x.Service", &status).error_code(), grpc::StatusCode::NOT_FOUND);
  health_.SetServing("x.Service", false);
  ASSERT_TRUE(Check("x.Service", &status).ok());
  EXPECT_EQ(status, hv1::HealthCheckResponse::NOT_SERVING);
  health_.SetServing("x.Service", true);
  health_.SetServing("", false);
  ASSERT_TRUE(Check("x.Service", &status).ok());
  EXPECT_EQ(status, hv1::HealthCheckResponse::SERVING);
  ASSERT_TRUE(Check("", &status).ok());
  EXPECT_EQ(status, hv1::HealthCheckResponse::NOT_SERVING);
}

TEST_F(HealthServiceTest, WatchStreamsEveryChangeAndEndsAtShutdown) {
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(30));
  hv1::HealthCheckRequest req;
  req.set_service("x.Service");
  auto reader = stub_->Watch(&ctx, req);
  hv1::HealthCheckResponse resp;
  ASSERT_TRUE(reader->Read(&resp));
  EXPECT_EQ(resp.status(), hv1::HealthCheckResponse::SERVICE_UNKNOWN);
  health_.SetServing("x.Service", true);
  ASSERT_TRUE(reader->Read(&resp));
  EXPECT_EQ(resp.status(), hv1::HealthCheckResponse::SERVING);
  health_.SetServing("other.Service", false);  // not watched: no message
  health_.SetServing("x.Service", false);
  ASSERT_TRUE(reader->Read(&resp));
  EXPECT_EQ(resp.status(), hv1::HealthCheckResponse::NOT_SERVING);
  health_.SetServing("x.Service", true);
  ASSERT_TRUE(reader->Read(&resp));
  EXPECT_EQ(resp.status(), hv1::HealthCheckResponse::SERVING);
  // Shutdown: a last NOT_SERVING, then the stream ends (OK), well before
  // the call's deadline.
  const auto start = std::chrono::steady_clock::now();
  health_.Shutdown();
  ASSERT_TRUE(reader->Read(&resp));
  EXPECT_EQ(resp.status(), hv1::HealthCheckResponse::NOT_SERVING);
  EXPECT_FALSE(reader->Read(&resp));
  EXPECT_TRUE(reader->Finish().ok());
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(10));
  health_.SetServing("x.Service", true);  // ignored once shut down
  hv1::HealthCheckResponse::ServingStatus status;
  ASSERT_TRUE(Check("x.Service", &status).ok());
  EXPECT_EQ(status, hv1::HealthCheckResponse::NOT_SERVING);
}

TEST_F(HealthServiceTest, CancelledWatchReturns) {
  auto ctx = std::make_unique<grpc::ClientContext>();
  hv1::HealthCheckRequest req;
  auto reader = stub_->Watch(ctx.get(), req);
  hv1::HealthCheckResponse resp;
  ASSERT_TRUE(reader->Read(&resp));
  EXPECT_EQ(resp.status(), hv1::HealthCheckResponse::SERVING);
  ctx->TryCancel();
  EXPECT_FALSE(reader->Read(&resp));
  EXPECT_EQ(reader->Finish().error_code(), grpc::StatusCode::CANCELLED);
  // The handler noticed: the server shuts down without waiting for it
  // (TearDown's Shutdown would otherwise take its 5 s grace).
  const auto start = std::chrono::steady_clock::now();
  server_->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(5));
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(3));
}

TEST_F(HealthServiceTest, WatchesPastTheLimitAreRefusedAndTheirSlotsComeBack) {
  std::vector<std::unique_ptr<grpc::ClientContext>> ctxs;
  std::vector<std::unique_ptr<grpc::ClientReader<hv1::HealthCheckResponse>>> readers;
  hv1::HealthCheckRequest req;
  hv1::HealthCheckResponse resp;
  for (int i = 0; i < HealthService::kMaxWatches; ++i) {
    ctxs.push_back(std::make_unique<grpc::ClientContext>());
    readers.push_back(stub_->Watch(ctxs.back().get(), req));
    ASSERT_TRUE(readers.back()->Read(&resp)) << i;  // open: its first status
  }
  {
    grpc::ClientContext ctx;
    auto extra = stub_->Watch(&ctx, req);
    EXPECT_FALSE(extra->Read(&resp));
    const grpc::Status s = extra->Finish();
    EXPECT_EQ(s.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
    EXPECT_NE(s.error_message().find("limit 32"), std::string::npos) << s.error_message();
  }
  hv1::HealthCheckResponse::ServingStatus status;
  EXPECT_TRUE(Check("", &status).ok());  // Check still answers
  ctxs[0]->TryCancel();
  EXPECT_FALSE(readers[0]->Read(&resp));
  readers[0]->Finish();
  // The cancelled stream's slot is free once its handler notices (a 100 ms
  // wake; allow 20 s on a loaded machine).
  bool reopened = false;
  for (int attempt = 0; attempt < 400 && !reopened; ++attempt) {
    grpc::ClientContext ctx;
    auto again = stub_->Watch(&ctx, req);
    reopened = again->Read(&resp);
    ctx.TryCancel();
    again->Finish();
    if (!reopened) std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  EXPECT_TRUE(reopened);
  for (size_t i = 1; i < ctxs.size(); ++i) ctxs[i]->TryCancel();
  for (size_t i = 1; i < readers.size(); ++i) {
    while (readers[i]->Read(&resp)) {
    }
    readers[i]->Finish();
  }
}

}  // namespace
}  // namespace st
