// `smallthinker run`: generate from one prompt, streaming text.
#include <algorithm>
#include <cstdio>
#include <memory>

#include "model/chat_template.h"
#include "model/model.h"
#include "model/routing_stats.h"
#include "model/session.h"
#include "nlohmann/json.hpp"
#include "tools/commands.h"
#include "tools/offload_flags.h"
#include "tools/sampling_flags.h"
#include "tools/worker_flags.h"

namespace st::tools {

void RegisterRun(CLI::App& app) {
  struct Flags {
    GenerationFlags gen;
    OffloadFlags offload;
    std::string prompt, system;
    bool chat = false, json = false, routing = false;
  };
  auto f = std::make_shared<Flags>();
  CLI::App* cmd = app.add_subcommand(
      "run",
      "Generate text from a prompt, streaming it as it is produced, then report prompt and\n"
      "decode speed. With --chat the prompt is sent as a user message in ChatML.");
  AddGenerationFlags(cmd, &f->gen);
  AddOffloadFlags(cmd, &f->offload);
  cmd->add_option("-p,--prompt", f->prompt, "Prompt text")->required();
  cmd->add_flag("--chat", f->chat, "Wrap the prompt as a chat user turn (ChatML)");
  cmd->add_option("--system", f->system,
                  "System message for --chat (default: the one the model's chat template adds, "
                  "if any)");
  cmd->add_flag("--routing-stats", f->routing, "Report how concentrated expert routing was");
  cmd->add_flag("--json", f->json,
                "Print one JSON record (prompt ids, generated ids, text, timings) instead of "
                "streaming text");
  cmd->callback([f] {
    auto fail = Fail;
    if (!f->system.empty() && !f->chat) {
      return fail(absl::InvalidArgumentError("--system needs --chat (a raw prompt has no roles)"));
    }
    auto model = LoadModel(f->gen);
    if (!model.ok()) return fail(model.status());
    f->gen.ctx_size = ContextSize((*model)->config(), f->gen.ctx_size);
    auto offload = ApplyOffloadOrWorkers(**model, f->offload, f->gen.cluster, f->gen.ctx_size);
    if (!offload.ok()) return fail(offload.status());
    // A raw prompt's control-token text is read as control tokens (the
    // user may write a template by hand); with --chat the messages' is text.
    absl::StatusOr<std::vector<int32_t>> ids;
    if (f->chat) {
      std::vector<ChatMessage> messages;
      if (!f->system.empty()) messages.push_back({"system", f->system});
      messages.push_back({"user", f->prompt});
      // Without --system, the system turn the model's own template adds.
      ids = EncodeChatMl((*model)->tokenizer(), messages, /*add_generation_prompt=*/true,
                         DefaultSystemPrompt((*model)->tokenizer().chat_template()));
    } else {
      ids = (*model)->tokenizer().Encode(f->prompt);
    }
    if (!ids.ok()) return fail(ids.status());
    Session session(**model, f->gen.ctx_size);
    const GenerateOptions options = GenerateOptionsFrom(f->gen);
    auto on_text = [&](std::string_view piece) {
      if (f->json) return;
      std::fwrite(piece.data(), 1, piece.size(), stdout);
      std::fflush(stdout);
    };
    auto result = session.Generate(*ids, options, on_text);
    if (!result.ok()) return fail(result.status());
    const GenerateResult& r = *result;
    const int n_decode = static_cast<int>(r.generated_ids.size()) - 1;
    const double prompt_tps = r.prompt_tokens_evaluated / std::max(r.prompt_seconds, 1e-9);
    const double decode_tps = n_decode > 0 ? n_decode / std::max(r.decode_seconds, 1e-9) : 0.0;
    SaveOffloadStats(*offload, **model, f->offload);
    // Tokens the model ran: the prompt and every generated token but the
    // last, which is sampled and never evaluated.
    const nlohmann::json memory =
        OffloadReport(*offload, r.prompt_tokens_evaluated + std::max(n_decode, 0));
    if (f->json) {
      nlohmann::json j = {{"model", f->gen.model},
                          {"prompt_ids", r.prompt_ids},
                          {"generated_ids", r.generated_ids},
                          {"text", r.text},
                          {"finish_reason", std::string(FinishReasonName(r.finish))},
                          {"seed", r.seed},
                          {"threads", (*model)->pool().num_threads()},
                          {"prompt_tokens", r.prompt_tokens_evaluated},
                          {"prompt_seconds", r.prompt_seconds},
                          {"prompt_tokens_per_second", prompt_tps},
                          {"decode_tokens", n_decode},
                          {"decode_seconds", r.decode_seconds},
                          {"decode_tokens_per_second", decode_tps},
                          {"memory", memory}};
      if (nlohmann::json c = ClusterJson(**model); !c.is_null()) j["cluster"] = c;
      std::printf("%s\n", j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace).c_str());
      return;
    }
    std::printf("\n");
    std::fprintf(stderr,
                 "\n[%s] prompt: %d tokens in %.3f s (%.1f tok/s) | decode: %d tokens in %.3f s "
                 "(%.2f tok/s) | threads %d\n",
                 std::string(FinishReasonName(r.finish)).c_str(), r.prompt_tokens_evaluated,
                 r.prompt_seconds, prompt_tps, n_decode, r.decode_seconds, decode_tps,
                 (*model)->pool().num_threads());
    PrintClusterSummary(**model);
    const ForwardZones& z = (*model)->forward().zones();
    std::fprintf(stderr, "zones: route %.3f s | attention %.3f s | experts %.3f s | lm_head %.3f s\n",
                 z.route, z.attention, z.experts, z.lm_head);
    std::fprintf(stderr, "memory: %s\n", FormatOffloadReport(memory).c_str());
    if (f->routing) {
      const ModelConfig& c = (*model)->config();
      std::fprintf(stderr, "%s\n",
                   FormatRoutingSummary(SummarizeRouting((*model)->forward().routing_counts(),
                                                         c.n_layers, c.n_experts,
                                                         (*model)->forward().routed_tokens()))
                       .c_str());
    }
  });
}

}  // namespace st::tools
