// llama.cpp through node-llama-cpp's prebuilt CPU build, for
// llamacpp_bench.mjs and llamacpp_parity.mjs: loadLlama() returns the Llama
// instance and a function naming the CPU variant ggml loaded
// (libggml-cpu-<variant>.so, from its log), e.g. "zen4".
import {getLlama, LlamaLogLevel} from "node-llama-cpp";

export async function loadLlama() {
  let variant = "?";
  const llama = await getLlama({
    gpu: false,
    build: "never",
    logLevel: LlamaLogLevel.debug,
    logger: (level, message) => {
      const m = /libggml-cpu-([\w-]+)\.so/.exec(message);
      if (m) variant = m[1];
      else if (level === LlamaLogLevel.error || level === LlamaLogLevel.fatal) console.error(message);
    },
  });
  return {llama, variant: () => variant};
}
