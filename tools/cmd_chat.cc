// `smallthinker chat`: interactive multi-turn chat in ChatML.
#include <cstdio>
#include <iostream>
#include <memory>
#include <string>

#include "model/chat_template.h"
#include "model/model.h"
#include "model/session.h"
#include "tools/commands.h"
#include "tools/sampling_flags.h"

namespace st::tools {

void RegisterChat(CLI::App& app) {
  struct Flags {
    GenerationFlags gen;
    std::string system;
  };
  auto f = std::make_shared<Flags>();
  CLI::App* cmd = app.add_subcommand(
      "chat",
      "Interactive multi-turn chat. Type a message and press Enter; /reset starts over,\n"
      "/exit (or end of input) quits. The KV cache is reused between turns.");
  AddGenerationFlags(cmd, &f->gen);
  cmd->add_option("--system", f->system, "System message");
  cmd->callback([f] {
    auto fail = [](const absl::Status& s) {
      std::fprintf(stderr, "error: %s\n", s.ToString().c_str());
      ExitCode() = 1;
    };
    auto model = Model::Load(f->gen.model, ModelOptions{.threads = f->gen.threads,
                                                        .max_batch = f->gen.batch});
    if (!model.ok()) return fail(model.status());
    Session session(**model, f->gen.ctx_size);
    GenerateOptions options = f->gen.generate;
    options.max_tokens = f->gen.max_tokens;
    std::vector<ChatMessage> messages;
    if (!f->system.empty()) messages.push_back({"system", f->system});
    const size_t base = messages.size();
    std::string line;
    while (true) {
      std::fprintf(stderr, "> ");
      if (!std::getline(std::cin, line) || line == "/exit") break;
      if (line == "/reset") {
        messages.resize(base);
        session.Reset();
        continue;
      }
      if (line.empty()) continue;
      messages.push_back({"user", line});
      auto prompt = RenderChatMl(messages, true);
      if (!prompt.ok()) return fail(prompt.status());
      auto ids = (*model)->tokenizer().Encode(*prompt);
      if (!ids.ok()) {
        std::fprintf(stderr, "error: %s\n", ids.status().ToString().c_str());
        messages.pop_back();
        continue;
      }
      auto result = session.Generate(*ids, options, [](std::string_view piece) {
        std::fwrite(piece.data(), 1, piece.size(), stdout);
        std::fflush(stdout);
      });
      if (!result.ok()) {
        std::fprintf(stderr, "\nerror: %s\n", result.status().ToString().c_str());
        messages.pop_back();
        continue;
      }
      std::printf("\n");
      const int n = static_cast<int>(result->generated_ids.size()) - 1;
      std::fprintf(stderr, "[%d tokens, %.2f tok/s]\n", n + 1,
                   n > 0 ? n / std::max(result->decode_seconds, 1e-9) : 0.0);
      messages.push_back({"assistant", result->text});
    }
  });
}

}  // namespace st::tools
