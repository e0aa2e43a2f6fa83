// Runs LLVMFuzzerTestOneInput over every file named on the command line (or
// in a directory named there), so the fuzz corpus is a plain unit test under
// any compiler. Files named valid_* must also parse without error. A failing
// input traps inside the target; the last "replay:" line names it.
#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include "model/gguf.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size);

int main(int argc, char** argv) {
  namespace fs = std::filesystem;
  std::vector<fs::path> files;
  for (int i = 1; i < argc; ++i) {
    std::error_code ec;
    if (fs::is_directory(argv[i], ec)) {
      for (const auto& e : fs::directory_iterator(argv[i])) {
        if (e.is_regular_file()) files.push_back(e.path());
      }
    } else {
      files.emplace_back(argv[i]);
    }
  }
  std::sort(files.begin(), files.end());
  if (files.empty()) {
    std::fprintf(stderr, "usage: %s <file-or-dir>... (no inputs found)\n", argv[0]);
    return 2;
  }
  int failures = 0;
  for (const fs::path& p : files) {
    std::ifstream in(p, std::ios::binary);
    if (!in) {
      std::fprintf(stderr, "replay: cannot read %s\n", p.c_str());
      ++failures;
      continue;
    }
    const std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    std::fprintf(stderr, "replay: %s (%zu bytes)\n", p.c_str(), bytes.size());
    LLVMFuzzerTestOneInput(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size());
    if (p.filename().string().rfind("valid_", 0) == 0) {
      auto f = st::GgufFile::FromBuffer(bytes);
      if (!f.ok()) {
        std::fprintf(stderr, "replay: FAIL %s should parse: %s\n", p.c_str(),
                     f.status().ToString().c_str());
        ++failures;
      }
    }
  }
  std::fprintf(stderr, "replay: %zu inputs, %d failures\n", files.size(), failures);
  return failures == 0 ? 0 : 1;
}
