// Ember's CPU path in Chromium on each GGUF given (default: SmolLM2 Q4_1 and Gemma 3 270M
// Q4_K_M from models/), through the benchmark page: medians of --runs runs (default 3) of a
// ~54-token prompt and 64 decoded tokens. For before/after comparisons of the CPU kernels:
// build, run, change, build, run, on the same quiet machine.
// Usage: node bench/quants.mjs [--runs N] [label] [model.gguf ...]
import { mkdirSync, writeFileSync } from "node:fs";
import { resolve } from "node:path";
import { serve, browser } from "../tests/web/harness.mjs";

const args = process.argv.slice(2);
const at = args.indexOf("--runs");
const runs = at >= 0 ? Number(args.splice(at, 2)[1]) : 3;
const label = args.find((a) => !a.endsWith(".gguf")) || "run";
const models = args.filter((a) => a.endsWith(".gguf"));
if (!models.length) models.push("SmolLM2-135M-Instruct.Q4_1.gguf", "gemma-3-270m-q4_k_m.gguf");
const PROMPT = "The history of the printing press begins in the fifteenth century, when Johannes Gutenberg, a goldsmith from Mainz, " +
  "combined movable metal type, oil-based ink and a wooden screw press into a system that could produce books faster and more cheaply than scribes ever could.";
const site = await serve({ "/app/": resolve("dist"), "/bench/": resolve("bench/page"), "/models/": resolve("models") });
const out = { label, date: new Date().toISOString(), runs, models: {} };
for (const model of models) {
  const b = await browser({ origin: site.origin });
  const got = [];
  try {
    for (let i = 0; i < runs; i++) {
      const page = await b.context.newPage();
      await page.goto(`${site.origin}/bench/?which=ember-cpu&runs=1&n_predict=64&model=${encodeURIComponent(`/models/${model}`)}&prompt=${encodeURIComponent(PROMPT)}`);
      await page.waitForFunction(() => window.bench, null, { timeout: 600_000, polling: 500 });
      const r = await page.evaluate(() => window.bench);
      await page.close();
      if (r.error) throw new Error(r.error);
      got.push(r.runs[0]);
    }
  } finally {
    await b.close();
  }
  const median = (k) => got.map((x) => x[k]).sort((a, b) => a - b)[got.length >> 1];
  out.models[model] = { prefill_tok_s: median("prefill_tok_s"), decode_tok_s: median("decode_tok_s"), prompt_tokens: got[0].prompt_tokens, runs: got };
  console.log(`${label} ${model}: prefill ${median("prefill_tok_s").toFixed(1)} tok/s, decode ${median("decode_tok_s").toFixed(1)} tok/s`);
}
await site.close();
mkdirSync("bench/results", { recursive: true });
writeFileSync(`bench/results/quants-${label}-${out.date.replace(/[:.]/g, "-")}.json`, JSON.stringify(out, null, 1) + "\n");
