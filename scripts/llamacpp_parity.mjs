// llama.cpp's side of scripts/check-llamacpp-parity: greedy generation on a
// GGUF through node-llama-cpp's prebuilt CPU build (ggml picks its best CPU
// variant at run time), compared token by token with a record of ours from
// `smallthinker run --json --temp 0 --ignore-eos`.
//   node llamacpp_parity.mjs MODEL.gguf OURS.json [--threads 2] [--top 5]
//        [--shown 3] [--kv f16] [--fa auto|on|off] [--text PROMPT]
//        [--label L] [--type T] [--window W] [--expect equal]  > RESULT.json
// (label, type and window only label the table row.)
//   node llamacpp_parity.mjs --table RESULT.json...  (markdown summary; exit
//        status 1 if a run given --expect equal diverged)
//   node llamacpp_parity.mjs --details RESULT.json... (top-5s, divergences)
// Both engines start from ours' prompt_ids: they go straight into llama.cpp's
// context (no tokenizer, no BOS, no chat template; ours adds no BOS either).
// With --text, llama.cpp's own tokenization of the prompt text is checked
// against those ids too (tokenizer parity, informational). RESULT.json:
//   free:   llama.cpp's own greedy continuation vs ours' generated ids: the
//           first differing step (or -1), llama.cpp's top-`top` tokens and
//           probabilities at the first `shown` steps and at the divergence;
//   forced: ours' generated ids fed back as the prefix (teacher forcing, one
//           batch), llama.cpp's argmax at every step: how many of ours'
//           choices llama.cpp makes too, and for each disagreement the
//           llama.cpp logit margin ln(p_llama_top1 / p_ours_choice), which
//           is ~0 for a rounding tie (a free run diverges for good at the
//           first tie; teacher forcing shows whether the steps after agree).
// --kv sets llama.cpp's K and V cache type (give ours the same --kv-type);
// --fa its flash attention (auto turns it on on CPU). With f32 KV and flash
// attention off llama.cpp's arithmetic is ours' up to float rounding, also
// for Q8_0/Q4_0 (both quantize activations to Q8_0 the same way), so the
// logits agree to ~1e-6 (~1e-5 after 4k tokens). llama.cpp's flash attention casts an f32 cache to
// f16 and on CPU rounds Q and its V accumulator to f16, which moves logits
// by ~1e-2: enough to flip the near-ties of random weights.
// Probabilities are llama.cpp's softmax over the whole vocabulary of the raw
// logits (greedy sampler: no top-k, no temperature), so the difference of
// two tokens' logits is ln(p1/p2).
import {readFileSync} from "node:fs";

const argv = process.argv.slice(2);

if (argv[0] === "--table") {
  const rows = argv.slice(1).map((f) => JSON.parse(readFileSync(f, "utf8")));
  const fmt = (x, d = 4) => (x == null ? "-" : Number(x).toFixed(d));
  console.log("| model | type | KV, llama.cpp FA | window ours / llama.cpp | tokens compared " +
              "| first divergence | teacher-forced agree " +
              "| llama.cpp logit margin at divergence (ours' token's 0-based rank) | tokenizer |");
  console.log("| --- | --- | --- | --- | ---: | --- | ---: | --- | --- |");
  for (const r of rows) {
    const d = r.free.at_divergence;
    const div = r.free.first_divergence < 0 ? "all equal" : `step ${r.free.first_divergence}`;
    const margin = d ? `${fmt(d.logit_margin)} (rank ${d.ours_token_rank_in_llama})` : "-";
    const tok = r.tokenizer == null ? "-" : r.tokenizer.equal ? "same ids" : "DIFFERENT";
    console.log(`| ${r.label ?? r.model} | ${r.type ?? "?"} | ${r.kv_type}, ${r.flash_attention} | ` +
                `${r.window ?? "-"} | ` +
                `${r.ours_generated_ids.length} | ${div} | ${r.forced.agree}/${r.forced.steps} | ` +
                `${margin} | ${tok} |`);
  }
  const expected = rows.filter((r) => r.expect === "equal");
  const failed = expected.filter((r) => r.free.first_divergence >= 0 || r.forced.agree < r.forced.steps);
  console.log();
  if (failed.length > 0) {
    console.log(`FAILED: ${failed.length} of ${expected.length} runs expected to agree exactly diverged: ` +
                failed.map((r) => `${r.label ?? r.model} ${r.type ?? ""} (KV ${r.kv_type})`).join(", "));
    process.exit(1);
  }
  console.log(`ok: all ${expected.length} runs expected to agree exactly did`);
  process.exit(0);
}

if (argv[0] === "--details") {
  const tops = (t) => t.map(({id, p}) => `${id} ${p.toExponential(5)}`).join(", ");
  for (const f of argv.slice(1)) {
    const r = JSON.parse(readFileSync(f, "utf8"));
    console.log(`#### ${r.label ?? r.model} ${r.type ?? ""}, KV ${r.kv_type}, llama.cpp flash attention ` +
                `${r.flash_attention} (CPU variant ${r.llama_cpu_variant})`);
    const ids = r.prompt_ids;
    console.log(`- prompt ids (${ids.length}) ${JSON.stringify(ids.slice(0, 16)).slice(0, -1)}` +
                `${ids.length > 16 ? ", ..." : ""}]`);
    if (r.tokenizer) {
      console.log(`- llama.cpp's tokenization of the prompt text: ${r.tokenizer.equal ? "the same ids" : "different"}` +
                  `; it would prepend BOS (${r.tokenizer.llama_bos}) to a text prompt: ` +
                  `${r.tokenizer.llama_would_prepend_bos}`);
    }
    if (r.tokenizer && !r.tokenizer.equal) {
      const at = r.tokenizer.llama_ids.findIndex((id, i) => id !== ids[i]);
      console.log(`- llama.cpp tokenizes the prompt text differently (${r.tokenizer.llama_ids.length} ids, ` +
                  `first difference at ${at < 0 ? ids.length : at})`);
    }
    for (const {step, top} of r.free.top) console.log(`- llama.cpp top-5 at step ${step}: ${tops(top)}`);
    const d = r.free.at_divergence;
    if (d) {
      console.log(`- free run diverges at step ${d.step}: llama.cpp ${d.llama_token}, ours ${d.ours_token} ` +
                  `(0-based rank ${d.ours_token_rank_in_llama} in llama.cpp, logit margin ${d.logit_margin.toFixed(5)}); ` +
                  `llama.cpp top-5 there: ${tops(d.top)}`);
    }
    const dis = r.forced.disagreements;
    if (dis.length > 0) {
      console.log(`- teacher-forced disagreements at steps ${dis.map((x) => x.step).join(" ")}` +
                  (dis.length > 5 ? "; the first 5:" : ":"));
    }
    for (const x of dis.slice(0, 5)) {
      console.log(`  - step ${x.step}: llama.cpp ${x.llama_token}, ours ${x.ours_token} ` +
                  `(rank ${x.ours_token_rank_in_llama}, logit margin ${x.logit_margin.toFixed(5)})`);
    }
  }
  process.exit(0);
}

const opts = {threads: "2", top: "5", shown: "3", kv: "f16", fa: "auto", text: null, label: null,
              type: null, window: null, expect: null};
const pos = [];
for (let i = 0; i < argv.length; ++i) {
  const m = /^--(\w+)$/.exec(argv[i]);
  if (m && m[1] in opts && i + 1 < argv.length) opts[m[1]] = argv[++i];
  else pos.push(argv[i]);
}
const [modelPath, oursPath] = pos;
if (!modelPath || !oursPath) {
  console.error("usage: node llamacpp_parity.mjs MODEL.gguf OURS.json [--threads N] [--top K] " +
                "[--shown S] [--kv f16|f32] [--fa auto|on|off] [--text PROMPT] [--label L] " +
                "[--type T] [--window W] [--expect equal]\n" +
                "       node llamacpp_parity.mjs --table|--details RESULT.json...");
  process.exit(2);
}
const threads = Number(opts.threads), top = Number(opts.top), shown = Number(opts.shown);
const kv = opts.kv.toUpperCase();
const fa = {auto: "auto", on: true, off: false}[opts.fa];
if (fa === undefined) throw new Error(`--fa ${opts.fa}: expected auto, on or off`);
const ours = JSON.parse(readFileSync(oursPath, "utf8"));
const prompt = ours.prompt_ids, oursGen = ours.generated_ids;
if (!Array.isArray(prompt) || prompt.length === 0 || !Array.isArray(oursGen) || oursGen.length === 0) {
  throw new Error(`${oursPath}: no prompt_ids / generated_ids`);
}
const n = oursGen.length;

const {loadLlama} = await import("./llamacpp_load.mjs");
const {llama, variant} = await loadLlama();
const model = await llama.loadModel({modelPath, gpuLayers: 0});
const context = await model.createContext({
  contextSize: Math.max(256, prompt.length + n + 16),
  threads,
  batchSize: 512,
  flashAttention: fa,
  experimentalKvCacheKeyType: kv,
  experimentalKvCacheValueType: kv,
});

let tokenizer = null;
if (opts.text != null) {
  const ids = [...model.tokenize(opts.text, true)];
  tokenizer = {llama_ids: ids, equal: JSON.stringify(ids) === JSON.stringify(prompt),
               llama_would_prepend_bos: model.tokens.shouldPrependBosToken, llama_bos: model.tokens.bos};
}

const topOf = (probs, k) => [...probs.entries()].slice(0, k).map(([id, p]) => ({id, p}));
// ln(p_a / p_b): the logit difference of tokens a and b.
const margin = (probs, a, b) => Math.log(probs.get(a) / probs.get(b));
const rankOf = (probs, id) => [...probs.keys()].indexOf(id);

// Free-running greedy generation.
const free = {generated_ids: [], first_divergence: -1, top: [], at_divergence: null};
{
  const seq = context.getSequence();
  const gen = seq.evaluateWithMetadata(prompt, {probabilities: true},
                                       {temperature: 0, yieldEogToken: true});
  let step = 0;
  for await (const {token, probabilities} of gen) {
    free.generated_ids.push(token);
    if (step < shown) free.top.push({step, top: topOf(probabilities, top)});
    if (free.first_divergence < 0 && token !== oursGen[step]) {
      free.first_divergence = step;
      free.at_divergence = {
        step,
        llama_token: token,
        ours_token: oursGen[step],
        ours_token_rank_in_llama: rankOf(probabilities, oursGen[step]),
        logit_margin: margin(probabilities, token, oursGen[step]),
        top: topOf(probabilities, top),
      };
    }
    if (++step >= n) break;
  }
  seq.dispose();
}

// Teacher forcing: ours' continuation as the prefix, llama.cpp's argmax at
// each step.
const forced = {steps: n, agree: 0, disagreements: []};
{
  const seq = context.getSequence();
  const input = [...prompt, ...oursGen.slice(0, n - 1)];
  const first = prompt.length - 1;  // the position whose output is step 0
  const items = input.map((t, i) => (i >= first ? [t, {generateNext: {probabilities: true}}] : t));
  const out = await seq.controlledEvaluate(items);
  for (let s = 0; s < n; ++s) {
    const probs = out[first + s]?.next?.probabilities;
    if (!probs) throw new Error(`no probabilities for step ${s}`);
    const best = probs.keys().next().value;
    if (best === oursGen[s]) {
      ++forced.agree;
    } else {
      forced.disagreements.push({
        step: s,
        llama_token: best,
        ours_token: oursGen[s],
        ours_token_rank_in_llama: rankOf(probs, oursGen[s]),
        logit_margin: margin(probs, best, oursGen[s]),
      });
    }
  }
  seq.dispose();
}

console.log(JSON.stringify({
  model: modelPath,
  label: opts.label,
  type: opts.type,
  window: opts.window,
  expect: opts.expect,
  llama_cpu_variant: variant(),
  kv_type: kv,
  flash_attention: opts.fa,
  prompt_ids: prompt,
  ours_generated_ids: oursGen,
  tokenizer,
  free,
  forced,
}));
await context.dispose();
await model.dispose();
