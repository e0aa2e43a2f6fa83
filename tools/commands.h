// Subcommands of the `smallthinker` tool. Each Register* adds one CLI11
// subcommand whose callback runs it; flags are converted to config structs at
// once and never passed further down.
#pragma once

#include "CLI/CLI.hpp"

namespace st::tools {

void RegisterSynth(CLI::App& app);
void RegisterInspect(CLI::App& app);
void RegisterTokenize(CLI::App& app);
void RegisterRun(CLI::App& app);
void RegisterChat(CLI::App& app);
void RegisterMembw(CLI::App& app);
void RegisterConvert(CLI::App& app);
void RegisterBench(CLI::App& app);
void RegisterWorker(CLI::App& app);

// Exit code of the subcommand that ran (set by its callback).
int& ExitCode();

}  // namespace st::tools
