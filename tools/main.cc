// smallthinker: synthesize, inspect and run SmallThinker MoE models.
#include <cstdio>

#include <string>

#include "CLI/CLI.hpp"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "glog/logging.h"
#include "hwy/targets.h"
#include "tools/commands.h"

namespace st::tools {
int& ExitCode() {
  static int code = 0;
  return code;
}
}  // namespace st::tools

int main(int argc, char** argv) {
#ifdef NDEBUG
  // Debian's Abseil is built without NDEBUG, so every absl::Mutex lock (gRPC
  // takes dozens per message) would run its lock-order deadlock check:
  // ~40 ns per nested lock here, ~5 us per remote layer step. Release
  // builds skip it; debug and sanitizer builds (the tests) keep it.
  absl::SetMutexDeadlockDetectionMode(absl::OnDeadlockCycle::kIgnore);
#endif
  google::InitGoogleLogging(argv[0]);
  FLAGS_logtostderr = true;
  FLAGS_minloglevel = 1;  // warnings and errors; --verbose lowers it
  CLI::App app{
      "SmallThinker Engine: runs SmallThinker MoE models (4B-A0.6B, 21B-A3B) from GGUF files.\n"
      "Try:  smallthinker synth --preset tiny --type q8_0 --out tiny.gguf\n"
      "      smallthinker run -m tiny.gguf -p \"Hello\" -n 32",
      "smallthinker"};
  app.require_subcommand(1);
  bool verbose = false;
  app.add_flag("-v,--verbose", verbose,
               "Log informational messages to stderr (before or after the command)");
  bool no_avx512 = false;
  app.add_flag("--no-avx512", no_avx512,
               "Run the AVX2 kernels where the CPU has AVX-512, as a CPU without it would\n"
               "(to measure what most x86 desktops get; libxxhash's pack checksums still\n"
               "choose their own; no effect elsewhere)");
  // `smallthinker serve -v ...` as well as `smallthinker -v serve ...`: a
  // command's unknown option falls through to these (commands made after
  // this inherit it).
  app.fallthrough();
  app.parse_complete_callback([&] {
    if (verbose) FLAGS_minloglevel = 0;
    // Before any kernel is dispatched: every target better than AVX2.
#if HWY_ARCH_X86
    if (no_avx512 && (HWY_TARGETS & HWY_AVX2) == 0) {
      LOG(WARNING) << "--no-avx512: this build has no AVX2 kernels (built for this CPU "
                      "alone, ST_NATIVE), so the flag changes nothing";
    } else if (no_avx512) {
      hwy::DisableTargets(HWY_AVX2 - 1);
    }
#endif
  });
  st::tools::RegisterSynth(app);
  st::tools::RegisterInspect(app);
  st::tools::RegisterTokenize(app);
  st::tools::RegisterRun(app);
  st::tools::RegisterChat(app);
  st::tools::RegisterMembw(app);
  st::tools::RegisterConvert(app);
  st::tools::RegisterBench(app);
  st::tools::RegisterWorker(app);
  st::tools::RegisterServe(app);
  st::tools::RegisterBenchServe(app);
  // A mistyped command would otherwise get CLI11's "A subcommand is
  // required", which does not say what was wrong.
  // (The only options before a command are flags: the first other word is
  // the command.)
  int first = 1;
  while (first < argc && argv[first][0] == '-') ++first;
  if (first < argc) {
    std::string known;
    bool found = false;
    for (const CLI::App* sub : app.get_subcommands({})) {
      found = found || sub->check_name(argv[first]);
      absl::StrAppend(&known, known.empty() ? "" : ", ", sub->get_name());
    }
    if (!found) {
      std::fprintf(stderr, "unknown command '%s'; the commands are: %s (see --help)\n",
                   argv[first], known.c_str());
      return 109;  // CLI11's code for an argument it did not expect
    }
  }
  CLI11_PARSE(app, argc, argv);
  return st::tools::ExitCode();
}
