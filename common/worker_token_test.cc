#include "common/worker_token.h"

#include <string>

#include "gtest/gtest.h"

namespace st {
namespace {

TEST(WorkerTokenTest, AcceptsPrintableAsciiAndNone) {
  EXPECT_TRUE(ValidateWorkerToken("", "--token").ok());
  EXPECT_TRUE(ValidateWorkerToken("s3cret", "--token").ok());
  EXPECT_TRUE(ValidateWorkerToken("!~azAZ09+/=_-.:", "--token").ok());
}

TEST(WorkerTokenTest, RefusesWhatGrpcWouldAbortOn) {
  // Non-ASCII (UTF-8 of "pässwörd"), control characters, spaces, DEL.
  for (const std::string& bad :
       {std::string("p\xc3\xa4sswort"), std::string("ab\ncd"), std::string("ab\tcd"),
        std::string("a b"), std::string(" ab"), std::string("ab\x7f"), std::string("ab\0cd", 5)}) {
    const absl::Status s = ValidateWorkerToken(bad, "--token");
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << bad;
    EXPECT_NE(s.message().find("--token"), std::string::npos) << s;
    EXPECT_NE(s.message().find("printable ASCII"), std::string::npos) << s;
    // The message must not leak the secret.
    EXPECT_EQ(s.message().find(bad), std::string::npos) << s;
  }
}

}  // namespace
}  // namespace st
