// The `smallthinker` command as a user runs it: real processes, real files.
#include <array>
#include <cstdio>
#include <string>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "tests/testutil/testutil.h"

namespace st {
namespace {

struct CliRun {
  int exit_code;
  std::string out;  // stdout only
};

CliRun Cli(const std::string& args) {
  const std::string cmd = absl::StrCat("'", ST_CLI, "' ", args, " 2>/dev/null");
  CliRun r{-1, ""};
  FILE* p = popen(cmd.c_str(), "r");
  if (p == nullptr) return r;
  std::array<char, 4096> buf;
  size_t n;
  while ((n = fread(buf.data(), 1, buf.size(), p)) > 0) r.out.append(buf.data(), n);
  const int status = pclose(p);
  r.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return r;
}

class CliTest : public ::testing::Test {
 protected:
  void SetUp() override {
    model_ = dir_.File("tiny.gguf");
    ASSERT_EQ(Cli(absl::StrCat("synth --preset tiny --type q8_0 --out '", model_, "'")).exit_code, 0);
  }
  testing::TempDir dir_;
  std::string model_;
};

TEST_F(CliTest, InspectShowsDerivedConfig) {
  CliRun r = Cli(absl::StrCat("inspect '", model_, "'"));
  ASSERT_EQ(r.exit_code, 0);
  EXPECT_NE(r.out.find("smallthinker.expert_count"), std::string::npos);
  EXPECT_NE(r.out.find("n_experts       8"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("blk.0.ffn_gate_exps.weight"), std::string::npos);
}

TEST_F(CliTest, RunJsonIsReproducibleWithASeed) {
  const std::string args =
      absl::StrCat("run -m '", model_, "' -p 'Hello' -n 12 --seed 9 --ignore-eos --json -t 2");
  CliRun a = Cli(args), b = Cli(args);
  ASSERT_EQ(a.exit_code, 0);
  auto ja = nlohmann::json::parse(a.out), jb = nlohmann::json::parse(b.out);
  EXPECT_EQ(ja["generated_ids"].size(), 12u);
  EXPECT_EQ(ja["generated_ids"], jb["generated_ids"]);
  EXPECT_EQ(ja["prompt_ids"], (nlohmann::json{72, 101, 108, 108, 111}));  // byte-level vocab
  EXPECT_EQ(ja["finish_reason"], "length");
  EXPECT_GT(ja["decode_tokens_per_second"].get<double>(), 0);
}

TEST_F(CliTest, TokenizeAndDetokenizeRoundTrip) {
  CliRun ids = Cli(absl::StrCat("tokenize -m '", model_, "' 'hi<|im_end|>'"));
  ASSERT_EQ(ids.exit_code, 0);
  EXPECT_EQ(ids.out, "104 105 258\n");
  CliRun text = Cli(absl::StrCat("detokenize -m '", model_, "' 104 105"));
  EXPECT_EQ(text.out, "hi\n");
  EXPECT_EQ(Cli(absl::StrCat("detokenize -m '", model_, "' 99999")).exit_code, 2);
}

TEST_F(CliTest, BenchReportsJson) {
  CliRun r = Cli(absl::StrCat("bench -m '", model_, "' -p 16 -n 8 -r 2 -t 1 -o json --bandwidth-size 64MiB --kv-type bf16"));
  ASSERT_EQ(r.exit_code, 0);
  auto j = nlohmann::json::parse(r.out);
  EXPECT_EQ(j["kv_type"], "BF16");
  ASSERT_EQ(j["tests"].size(), 2u);
  EXPECT_EQ(j["tests"][0]["test"], "pp16");
  EXPECT_EQ(j["tests"][1]["test"], "tg8");
  EXPECT_GT(j["tests"][1]["avg_ts"].get<double>(), 0);
  EXPECT_GT(j["bytes_per_token"].get<double>(), 0);
}

TEST_F(CliTest, BadInputGivesErrorsNotCrashes) {
  EXPECT_EQ(Cli("run -m /nonexistent.gguf -p x").exit_code, 1);
  EXPECT_EQ(Cli(absl::StrCat("run -m '", model_, "' -p x -c 0")).exit_code, 105);  // CLI11 range
  EXPECT_EQ(Cli(absl::StrCat("run -m '", model_, "' -p x --kv-type q4_0")).exit_code, 105);
  EXPECT_EQ(Cli(absl::StrCat("run -m '", model_, "' -p x -n 2 --kv-type F32")).exit_code, 0);
  const std::string junk = dir_.File("junk.gguf");
  FILE* f = fopen(junk.c_str(), "w");
  fputs("GGUF\x03", f);
  fclose(f);
  EXPECT_EQ(Cli(absl::StrCat("inspect '", junk, "'")).exit_code, 1);
}

}  // namespace
}  // namespace st
