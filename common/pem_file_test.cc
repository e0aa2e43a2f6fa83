#include "common/pem_file.h"

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>

#include "gtest/gtest.h"

namespace st {
namespace {

class PemFileTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/st_pem_XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }
  std::string Write(const std::string& name, const std::string& text) {
    const std::string p = dir_ + "/" + name;
    std::ofstream(p) << text;
    return p;
  }
  std::string dir_;
};

TEST_F(PemFileTest, ReadsBlocksOfTheRightKind) {
  const std::string cert = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n";
  EXPECT_EQ(*ReadPemFile(Write("c.pem", cert), PemKind::kCertificate, "TLS certificate"), cert);
  for (const char* key : {"-----BEGIN PRIVATE KEY-----\nMC4\n-----END PRIVATE KEY-----\n",
                          "-----BEGIN EC PRIVATE KEY-----\nMHc\n-----END EC PRIVATE KEY-----\n",
                          "-----BEGIN RSA PRIVATE KEY-----\nMII\n-----END RSA PRIVATE KEY-----\n"}) {
    EXPECT_TRUE(ReadPemFile(Write("k.pem", key), PemKind::kPrivateKey, "TLS key").ok()) << key;
  }
}

TEST_F(PemFileTest, OtherFilesAreNamedInTheError) {
  const std::string cert = Write("c.pem", "-----BEGIN CERTIFICATE-----\nMIIB\n");
  const std::string gguf = Write("model.gguf", std::string("GGUF\3\0\0\0", 8));
  const auto bad = [](const absl::StatusOr<std::string>& r, const std::string& path,
                      const std::string& want) {
    ASSERT_FALSE(r.ok());
    EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_NE(r.status().message().find(path), std::string::npos) << r.status();
    EXPECT_NE(r.status().message().find(want), std::string::npos) << r.status();
  };
  bad(ReadPemFile(gguf, PemKind::kCertificate, "TLS certificate"), gguf, "not a PEM certificate");
  bad(ReadPemFile(cert, PemKind::kPrivateKey, "TLS key"), cert, "not a PEM private key");
  bad(ReadPemFile(dir_ + "/missing.pem", PemKind::kCertificate, "TLS CA"), "missing.pem",
      "cannot read TLS CA");
}

}  // namespace
}  // namespace st
