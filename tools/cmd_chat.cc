// `smallthinker chat`: interactive multi-turn chat in ChatML.
#include <cstdio>
#include <iostream>
#include <memory>
#include <string>

#include "model/chat_template.h"
#include "model/model.h"
#include "model/session.h"
#include "tools/commands.h"
#include "tools/offload_flags.h"
#include "tools/sampling_flags.h"
#include "tools/worker_flags.h"

namespace st::tools {

void RegisterChat(CLI::App& app) {
  struct Flags {
    GenerationFlags gen;
    OffloadFlags offload;
    std::string system;
  };
  auto f = std::make_shared<Flags>();
  CLI::App* cmd = app.add_subcommand(
      "chat",
      "Interactive multi-turn chat. Type a message and press Enter; /reset starts over,\n"
      "/exit (or end of input) quits. The KV cache is reused between turns.");
  AddGenerationFlags(cmd, &f->gen);
  AddOffloadFlags(cmd, &f->offload);
  cmd->add_option("--system", f->system,
                  "System message (default: the one the model's chat template adds, if any)");
  cmd->callback([f] {
    auto fail = Fail;
    auto model = LoadModel(f->gen);
    if (!model.ok()) return fail(model.status());
    f->gen.ctx_size = ContextSize((*model)->config(), f->gen.ctx_size);
    auto offload = ApplyOffloadOrWorkers(**model, f->offload, f->gen.cluster, f->gen.ctx_size);
    if (!offload.ok()) return Fail(offload.status());
    Session session(**model, f->gen.ctx_size);
    const GenerateOptions options = GenerateOptionsFrom(f->gen);
    // The conversation as token ids, extended turn by turn with exactly the
    // ids the model saw and sampled, so the KV cache prefix always matches
    // (re-encoding the assistant's text could tokenize it differently).
    const Tokenizer& tok = (*model)->tokenizer();
    std::vector<int32_t> history;
    std::vector<ChatMessage> pending;  // messages not yet in `history`
    // Without --system, the system turn the model's own template adds.
    const std::string system =
        f->system.empty() ? DefaultSystemPrompt(tok.chat_template()) : f->system;
    if (!system.empty()) pending.push_back({"system", system});
    const std::vector<ChatMessage> initial = pending;
    std::string line;
    while (true) {
      std::fprintf(stderr, "> ");
      if (!std::getline(std::cin, line) || line == "/exit") break;
      if (line == "/reset") {
        history.clear();
        pending = initial;
        session.Reset();
        continue;
      }
      if (line.empty()) continue;
      std::vector<ChatMessage> turn = pending;
      turn.push_back({"user", line});
      auto turn_ids = EncodeChatMl(tok, turn, /*add_generation_prompt=*/true);
      if (!turn_ids.ok()) {
        std::fprintf(stderr, "error: %s\n", std::string(turn_ids.status().message()).c_str());
        continue;
      }
      std::vector<int32_t> prompt = history;
      prompt.insert(prompt.end(), turn_ids->begin(), turn_ids->end());
      if (static_cast<int64_t>(prompt.size()) >= session.context_size()) {  // no room to answer
        std::fprintf(stderr,
                     "context full: this turn needs %zu of the %lld tokens (%zu from earlier "
                     "turns); /reset to start over, or raise -c\n",
                     prompt.size(), static_cast<long long>(session.context_size()),
                     history.size());
        continue;
      }
      auto result = session.Generate(prompt, options, [](std::string_view piece) {
        std::fwrite(piece.data(), 1, piece.size(), stdout);
        std::fflush(stdout);
      });
      if (!result.ok()) {  // the chat goes on; the exit code says a turn failed
        std::fprintf(stderr, "\nerror: %s\n", std::string(result.status().message()).c_str());
        ExitCode() = 1;
        continue;
      }
      std::printf("\n");
      const int n = static_cast<int>(result->generated_ids.size()) - 1;
      std::fprintf(stderr, "[%d tokens, %.2f tok/s]\n", n + 1,
                   n > 0 ? n / std::max(result->decode_seconds, 1e-9) : 0.0);
      history = std::move(prompt);
      std::vector<int32_t> answer = std::move(result->generated_ids);
      if (result->finish == FinishReason::kStop) {
        // A --stop string (or an end token, whose text is not shown): keep
        // what was shown; CloseAssistantTurn ends the turn either way.
        answer = IdsUpToStopString(tok, answer, result->text);
      }
      history.insert(history.end(), answer.begin(), answer.end());
      CloseAssistantTurn(tok, &history);
      pending.clear();
    }
    SaveOffloadStats(*offload, **model, f->offload);
    PrintClusterSummary(**model);
  });
}

}  // namespace st::tools
