// Prints bench/latest.json (or the file named) as the Markdown table the README shows:
//   node bench/table.mjs [bench/latest-q4_k_m.json]
import { readFileSync } from "node:fs";
const file = process.argv[2] ?? "bench/latest.json";
const l = JSON.parse(readFileSync(file, "utf8"));
console.log(`${l.model}\n`);
const f = (s, d = 1) => (s ? `${s.median.toFixed(d)} (${s.min.toFixed(d)}–${s.max.toFixed(d)})` : "—");
// Memory: the page and its workers as Chromium measures them (with Ember's wasm memory added
// where its worker was left out: bench/page/bench.js), else the engine's wasm memory alone.
// (A figure below the wasm memory is an older run's, before the wasm memory was added.)
const mem = (s) => s.memory_mb?.median && s.memory_mb.median >= (s.wasm_memory_mb?.median ?? 0) ? `${s.memory_mb.median.toFixed(0)} (page + workers)`
  : s.wasm_memory_mb?.median ? `${s.wasm_memory_mb.median.toFixed(0)} (wasm)` : "—";
console.log("| subject | prefill tok/s | decode tok/s | load s (cached) | cold load s | memory MB |");
console.log("|---|---|---|---|---|---|");
for (const [k, s] of Object.entries(l.runs)) {
  if (s.error) { console.log(`| ${k} | failed: ${s.error} | | | | |`); continue; }
  console.log(`| ${k} | ${f(s.prefill_tok_s)} | ${f(s.decode_tok_s, 2)} | ${f(s.load_s, 2)} | ${s.load_cold_s?.toFixed(2) ?? "—"} | ${mem(s)} |`);
}
for (const [k, s] of Object.entries(l.native?.runs ?? {})) {
  if (s.error) continue;
  console.log(`| ${k} (native) | ${f(s.prefill_tok_s)} | ${f(s.decode_tok_s, 2)} | ${f(s.load_s, 2)} | — | — |`);
}
const r = (a, b, k) => (l.runs[a]?.[k] && l.runs[b]?.[k] ? (l.runs[a][k].median / l.runs[b][k].median).toFixed(2) : "—");
console.log(`\nEmber CPU ÷ wllama 1 thread: prefill ${r("ember-cpu", "wllama-1t", "prefill_tok_s")}×, decode ${r("ember-cpu", "wllama-1t", "decode_tok_s")}×; ` +
  `÷ wllama 2 threads: prefill ${r("ember-cpu", "wllama-mt", "prefill_tok_s")}×, decode ${r("ember-cpu", "wllama-mt", "decode_tok_s")}×.`);
if (l.runs["ember-cpu-mt"]?.decode_tok_s) {
  const t = l.runs["ember-cpu-mt"].threads;
  console.log(`Ember CPU, ${t} threads ÷ wllama ${l.runs["wllama-mt"]?.threads ?? 2} threads: prefill ${r("ember-cpu-mt", "wllama-mt", "prefill_tok_s")}×, decode ${r("ember-cpu-mt", "wllama-mt", "decode_tok_s")}×; ` +
    `÷ Ember 1 thread (scaling): prefill ${r("ember-cpu-mt", "ember-cpu", "prefill_tok_s")}×, decode ${r("ember-cpu-mt", "ember-cpu", "decode_tok_s")}×.`);
}
for (const e of ["ember-cpu-firefox", "ember-cpu-webkit"]) {
  if (!l.runs[e]?.decode_tok_s) continue;
  console.log(`${e} (${l.runs[e].engine}) ÷ ember-cpu (Chromium): prefill ${r(e, "ember-cpu", "prefill_tok_s")}×, decode ${r(e, "ember-cpu", "decode_tok_s")}×; ` +
    `÷ wllama 1 thread (Chromium): prefill ${r(e, "wllama-1t", "prefill_tok_s")}×, decode ${r(e, "wllama-1t", "decode_tok_s")}×.`);
}
const n = l.native?.runs ?? {};
const rn = (a, b, k) => (n[a]?.[k] && n[b]?.[k] ? (n[a][k].median / n[b][k].median).toFixed(2) : "—");
for (const [e, c, t] of [["ember-cli-cpu", "llama.cpp-1t", 1], ["ember-cli-cpu-2t", "llama.cpp-2t", 2]]) {
  if (n[e] && n[c]) console.log(`Native ember CLI (CPU, ${l.native.ember_build}) ÷ llama.cpp, ${t} thread${t > 1 ? "s" : ""}: prefill ${rn(e, c, "prefill_tok_s")}×, decode ${rn(e, c, "decode_tok_s")}×.`);
}
if (n["ember-cli-cpu-2t"]) console.log(`Native ember CLI 2 threads ÷ 1: prefill ${rn("ember-cli-cpu-2t", "ember-cli-cpu", "prefill_tok_s")}×, decode ${rn("ember-cli-cpu-2t", "ember-cli-cpu", "decode_tok_s")}×.`);
for (const [e, c] of [["ember-cpu", "llama.cpp-1t"], ["ember-cpu-mt", "llama.cpp-2t"]]) {
  const a = l.runs[e]?.decode_tok_s, b = n[c]?.decode_tok_s;
  if (a && b) console.log(`Browser ${e} ÷ native ${c}: decode ${(a.median / b.median).toFixed(2)}×.`);
}
if (l.structured?.schemas?.error) console.log(`Structured output: failed: ${l.structured.schemas.error}`);
for (const [name, s] of Object.entries(l.structured?.schemas?.error ? {} : l.structured?.schemas ?? {})) {
  console.log(`Structured output (${name}, native CPU, ${s.threads ?? "?"} threads, ${l.structured.ember_build}): mask ${s.mask_ms_per_token.median.toFixed(2)} ms a token, ` +
    `decode step ${s.decode_step_ms.median.toFixed(1)} ms: ${(100 * s.mask_fraction_of_step).toFixed(1)} % of the step.`);
}
