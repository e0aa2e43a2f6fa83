// `smallthinker tokenize` / `detokenize`: the model's tokenizer alone.
#include <cstdio>
#include <iostream>
#include <memory>
#include <sstream>

#include "absl/strings/numbers.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "model/gguf.h"
#include "model/tokenizer.h"
#include "model/tokenizer_data.h"
#include "tools/commands.h"

namespace st::tools {
namespace {

absl::StatusOr<std::unique_ptr<Tokenizer>> LoadTokenizer(const std::string& path) {
  auto file = GgufFile::Open(path);
  if (!file.ok()) return file.status();
  auto data = TokenizerDataFromGguf(**file);
  if (!data.ok()) return data.status();
  return Tokenizer::Create(std::move(*data));
}

}  // namespace

void RegisterTokenize(CLI::App& app) {
  struct Flags {
    std::string model, text;
    bool no_special = false;
    std::vector<std::string> ids;
  };
  auto f = std::make_shared<Flags>();
  CLI::App* tok = app.add_subcommand("tokenize", "Print the token ids of TEXT (\"-\" reads stdin).");
  tok->add_option("-m,--model", f->model, "GGUF file with a tokenizer")->required();
  tok->add_option("text", f->text, "Text to tokenize")->required();
  tok->add_flag("--no-special", f->no_special, "Treat special-token text as plain text");
  tok->callback([f] {
    auto t = LoadTokenizer(f->model);
    if (!t.ok()) {
      std::fprintf(stderr, "error: %s\n", t.status().ToString().c_str());
      ExitCode() = 1;
      return;
    }
    std::string text = f->text;
    if (text == "-") {
      std::ostringstream ss;
      ss << std::cin.rdbuf();
      text = ss.str();
    }
    auto ids = (*t)->Encode(text, !f->no_special);
    if (!ids.ok()) {
      std::fprintf(stderr, "error: %s\n", ids.status().ToString().c_str());
      ExitCode() = 1;
      return;
    }
    std::printf("%s\n", absl::StrJoin(*ids, " ").c_str());
  });

  CLI::App* detok = app.add_subcommand("detokenize", "Print the text of token IDS.");
  detok->add_option("-m,--model", f->model, "GGUF file with a tokenizer")->required();
  detok->add_option("ids", f->ids, "Token ids (separated by spaces or commas)")->required();
  detok->callback([f] {
    auto t = LoadTokenizer(f->model);
    if (!t.ok()) {
      std::fprintf(stderr, "error: %s\n", t.status().ToString().c_str());
      ExitCode() = 1;
      return;
    }
    std::vector<int32_t> ids;
    for (const std::string& arg : f->ids) {
      for (absl::string_view piece : absl::StrSplit(arg, absl::ByAnyChar(", "), absl::SkipEmpty())) {
        int32_t id;
        if (!absl::SimpleAtoi(piece, &id) || id < 0 || id >= (*t)->vocab_size()) {
          std::fprintf(stderr, "error: '%s' is not a token id in [0, %d)\n",
                       std::string(piece).c_str(), (*t)->vocab_size());
          ExitCode() = 2;
          return;
        }
        ids.push_back(id);
      }
    }
    std::printf("%s\n", (*t)->Decode(ids).c_str());
  });
}

}  // namespace st::tools
