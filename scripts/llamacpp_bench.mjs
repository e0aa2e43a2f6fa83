// llama.cpp on a GGUF through node-llama-cpp's prebuilt CPU build (ggml
// picks its best CPU variant at run time): prefill and decode tokens/s in
// llama-bench's terms, for scripts/bench-llamacpp.
//   node scripts/llamacpp_bench.mjs MODEL.gguf [threads=2] [pp=128] [tg=128] [reps=3]
// ppN: one batch of N prompt tokens into an empty context. tgN: N greedy
// tokens after a one-token prompt, timed together. A first, untimed
// repetition warms the caches; the line reports mean ± sd of the rest.
import {loadLlama} from "./llamacpp_load.mjs";

const [modelPath, threadsArg, ppArg, tgArg, repsArg] = process.argv.slice(2);
if (!modelPath) {
  console.error("usage: node llamacpp_bench.mjs MODEL.gguf [threads] [pp] [tg] [reps]");
  process.exit(2);
}
const threads = Number(threadsArg ?? 2), pp = Number(ppArg ?? 128);
const tg = Number(tgArg ?? 128), reps = Math.max(1, Number(repsArg ?? 3));
const {llama, variant} = await loadLlama();
const model = await llama.loadModel({modelPath, gpuLayers: 0});
const context = await model.createContext({contextSize: 2048, threads, batchSize: 512});
const prompt = model.tokenize("The quick brown fox jumps over the lazy dog. ".repeat(64));
if (prompt.length < pp) throw new Error(`the prompt has only ${prompt.length} tokens`);
const now = () => Number(process.hrtime.bigint()) / 1e9;
const ppRates = [], tgRates = [];
for (let r = 0; r <= reps; ++r) {
  const seq = context.getSequence();
  let t0 = now();
  await seq.evaluateWithoutGeneratingNewTokens(prompt.slice(0, pp));
  const ppSeconds = now() - t0;
  await seq.clearHistory();
  let n = 0;
  t0 = now();
  for await (const token of seq.evaluate(prompt.slice(0, 1), {temperature: 0})) {
    void token;
    if (++n >= tg) break;
  }
  const tgSeconds = now() - t0;
  seq.dispose();
  if (r === 0) continue;
  ppRates.push(pp / ppSeconds);
  tgRates.push(n / tgSeconds);
}
const stat = (a) => {
  const m = a.reduce((x, y) => x + y) / a.length;
  const sd = Math.sqrt(a.reduce((x, y) => x + (y - m) ** 2, 0) / Math.max(1, a.length - 1));
  return `${m.toFixed(2)} ± ${sd.toFixed(2)}`;
};
console.log(`| llama.cpp (${variant()}) | ${threads} | pp${pp} | ${stat(ppRates)} |`);
console.log(`| llama.cpp (${variant()}) | ${threads} | tg${tg} | ${stat(tgRates)} |`);
await context.dispose();
await model.dispose();
