// The browser benchmark: Ember (WebGPU, CPU) and wllama (1 thread, 2 threads) on the same GGUF
// file, in the same headless Chromium, one after the other, each in a fresh profile; and Ember's
// CPU path again in Firefox ESR and WebKitGTK (ember-cpu-firefox, ember-cpu-webkit), so that a
// slow path in SpiderMonkey or JavaScriptCore shows beside V8's. Prints the
// figures and the ratios to wllama, and writes bench/results/<time>.json (everything),
// bench/latest.json (medians, min and max per subject) and bench/chart.svg.
// Usage: node bench/browser.mjs [--runs N] [--n-predict N] [--only a,b] [--webgpu-n-predict N]
//   [--model FILE --out bench/latest-X.json]: another file of models/ (bench/run measures the
//   Q4_K_M file so, into bench/latest-q4_k_m.json and bench/chart-q4_k_m.svg).
import { execFileSync } from "node:child_process";
import { cpus, totalmem } from "node:os";
import { mkdirSync, readFileSync, writeFileSync, existsSync } from "node:fs";
import { join, resolve } from "node:path";
import { serve, browser } from "../tests/web/harness.mjs";
import { firefox, webkit } from "../tests/web/drivers.mjs";

const arg = (name, def) => {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? process.argv[i + 1] : def;
};
const runs = Number(arg("runs", 5));
const nPredict = Number(arg("n-predict", 128));
// SwiftShader runs WebGPU on the CPU at ~0.2 GFLOP/s: the 128-token prompt alone takes minutes
// there, so unless `--webgpu-full` (for a real GPU) the WebGPU subject runs the prompt's first
// sentence and decodes 8 tokens (said in the results).
const webgpuFull = process.argv.includes("--webgpu-full");
const webgpuPredict = webgpuFull ? nPredict : Number(arg("webgpu-n-predict", 8));
const subjects = arg("only", "wllama-1t,wllama-mt,ember-cpu,ember-cpu-mt,ember-webgpu,ember-cpu-firefox,ember-cpu-webkit").split(",");
const MODEL = arg("model", "SmolLM2-135M-Instruct.Q4_1.gguf");
const OUT = arg("out", "bench/latest.json");
const CHART = OUT.replace(/latest(.*)\.json$/, "chart$1.svg");
if (!existsSync(join("models", MODEL))) { console.error(`models/${MODEL} is missing: run models/fetch.sh`); process.exit(2); }
if (!existsSync("dist/worker.js")) { console.error("dist/ is missing: run trunk build --release"); process.exit(2); }

// A prompt of about 128 tokens (both engines read the same vocabulary from the file, and each
// reports how many prompt tokens it ran).
const PROMPT = "The history of the printing press begins in the fifteenth century, when Johannes Gutenberg, " +
  "a goldsmith from Mainz, combined movable metal type, oil-based ink and a wooden screw press into a system " +
  "that could produce books faster and more cheaply than scribes ever could. Within fifty years, presses were " +
  "running in more than two hundred cities across Europe, and millions of volumes had been printed. The effects " +
  "reached far beyond the workshop: literacy spread, scientific results could be shared and checked, and new " +
  "ideas travelled with a speed that surprised the people who lived through it. Historians still argue about " +
  "whether the press caused these changes or only sped up what had already begun, and";

const SHORT_PROMPT = PROMPT.slice(0, PROMPT.indexOf(",") + 1).trim();

const site = await serve(
  { "/app/": resolve("dist"), "/bench/": resolve("bench/page"), "/wllama/": resolve("node_modules/@wllama/wllama/esm"), "/models/": resolve("models") },
  // Cross-origin isolation: wllama's threads need SharedArrayBuffer, and the memory measurement
  // API needs it too. Everything is same-origin, so nothing else changes.
  { headers: { "cross-origin-opener-policy": "same-origin", "cross-origin-embedder-policy": "require-corp" } },
);

const stats = (xs) => {
  const v = xs.filter((x) => typeof x === "number" && Number.isFinite(x)).sort((a, b) => a - b);
  if (!v.length) return null;
  const mid = v.length >> 1;
  return { median: v.length % 2 ? v[mid] : (v[mid - 1] + v[mid]) / 2, min: v[0], max: v[v.length - 1], n: v.length };
};

const raw = {};
const chromiumVersion = execFileSync("/usr/bin/chromium", ["--version"], { stdio: ["ignore", "pipe", "ignore"] }).toString().trim().replace(/^Chromium (\S+).*$/s, "$1");
let adapter = null;
for (const which of subjects) {
  // One profile per subject (its cache makes every load after the first a cached one), and a fresh
  // page per run: wllama's wasm memory is only given back when its page goes (five instances in one
  // page crashed the renderer).
  const other = /-(firefox|webkit)$/.exec(which)?.[1];
  if (other) { await otherEngine(which, other); continue; }
  const b = await browser({ origin: site.origin, args: ["--enable-blink-features=ForceEagerMeasureMemory"] });
  const short = which === "ember-webgpu" && !webgpuFull;
  const n = short ? webgpuPredict : nPredict;
  const url = `${site.origin}/bench/?which=${which}&runs=1&n_predict=${n}&model=${encodeURIComponent(`/models/${MODEL}`)}&prompt=${encodeURIComponent(short ? SHORT_PROMPT : PROMPT)}`;
  console.log(`== ${which}: ${runs} runs, ${n} tokens each`);
  const t0 = Date.now();
  const got = [];
  try {
    for (let i = 0; i < runs; i++) {
      const page = await b.context.newPage();
      try {
        await page.goto(url);
        await page.waitForFunction(() => window.bench, null, { timeout: 3_600_000, polling: 1000 });
        const r = await page.evaluate(() => window.bench);
        if (r.error) throw new Error(r.error);
        const run = { ...r.runs[0], cold: i === 0 };
        console.log(`   run ${i + 1}/${runs}: ${JSON.stringify(run)}`);
        got.push(run);
        adapter ??= r.adapter;
        raw[which] = { ...r, runs: got, n_predict: n, wall_s: (Date.now() - t0) / 1000 };
      } finally {
        await page.close();
      }
    }
  } catch (e) {
    console.log(`   ${which} failed: ${e.message.split("\n")[0]}`);
    raw[which] = { error: e.message.split("\n")[0], runs_done: got };
  } finally {
    await b.close();
  }
}
await site.close();

/** A subject in Firefox or WebKit (tests/web/drivers.mjs): the same page and runs, one browser,
 *  the page loaded afresh for each run. */
async function otherEngine(which, engine) {
  const url = `${site.origin}/bench/?which=${which}&runs=1&n_predict=${nPredict}&model=${encodeURIComponent(`/models/${MODEL}`)}&prompt=${encodeURIComponent(PROMPT)}`;
  console.log(`== ${which}: ${runs} runs, ${nPredict} tokens each`);
  const t0 = Date.now();
  const got = [];
  let d = null;
  try {
    d = await (engine === "firefox" ? firefox : webkit)({ origin: site.origin });
    for (let i = 0; i < runs; i++) {
      await d.goto(url);
      const r = await d.waitFor(() => window.bench, undefined, 3_600_000);
      if (r.error) throw new Error(r.error);
      const run = { ...r.runs[0], cold: i === 0 };
      console.log(`   run ${i + 1}/${runs}: ${JSON.stringify(run)}`);
      got.push(run);
      raw[which] = { ...r, runs: got, n_predict: nPredict, wall_s: (Date.now() - t0) / 1000, engine: d.version };
    }
  } catch (e) {
    console.log(`   ${which} failed: ${e.message.split("\n")[0]}`);
    raw[which] = { error: e.message.split("\n")[0], runs_done: got };
  } finally {
    await d?.close();
  }
}

const mb = (x) => (x == null ? null : x / 2 ** 20);
const summary = {};
for (const [which, r] of Object.entries(raw)) {
  if (r.error) { summary[which] = { error: r.error }; continue; }
  const warm = r.runs.filter((x) => !x.cold);
  summary[which] = {
    prefill_tok_s: stats(r.runs.map((x) => x.prefill_tok_s)),
    decode_tok_s: stats(r.runs.map((x) => x.decode_tok_s)),
    // Load time from the browser's cache (every run after the first); the first, cold run apart.
    load_s: stats(warm.map((x) => x.load_s)),
    load_cold_s: r.runs.find((x) => x.cold)?.load_s ?? null,
    memory_mb: stats(r.runs.map((x) => mb(x.memory_bytes))),
    wasm_memory_mb: stats(r.runs.map((x) => mb(x.wasm_bytes))),
    prompt_tokens: r.runs[0]?.prompt_tokens ?? null,
    decode_tokens: r.runs[0]?.decode_tokens ?? null,
    runs: r.runs.length,
    ...(r.engine ? { engine: r.engine } : {}),
    ...(which.startsWith("wllama") ? { threads: r.runs[0]?.threads, multithread: r.runs[0]?.multithread } : {}),
    ...(which.startsWith("ember") ? {
      threads: r.runs[0]?.threads ?? null,
      // The weights as the backend holds them (computed from the file), and on WebGPU as the GPU
      // allocator counted them while they loaded (the model card's figure there).
      weights_mb: mb(r.runs[0]?.weight_bytes ?? null),
      gpu_weights_mb: which === "ember-webgpu" ? mb(r.runs[0]?.gpu_weight_bytes ?? null) : null,
    } : {}),
  };
}

const swift = adapter && /swiftshader/i.test(`${adapter.architecture} ${adapter.vendor} ${adapter.description}`);
const machine = `${cpus()[0]?.model ?? "unknown CPU"}, ${cpus().length} cores, ${(totalmem() / 2 ** 30).toFixed(0)} GiB; ` +
  `Debian chromium ${chromiumVersion}; WebGPU adapter: ${adapter ? `${adapter.vendor}/${adapter.architecture}` : "none"}` +
  (swift ? " (SwiftShader: CPU-emulated WebGPU, not a GPU)" : "");
const model = `${MODEL.replace(/\.gguf$/, "").replace(/\.([^.]+)$/, " $1")} GGUF (${(readFileSync(join("models", MODEL)).length / 1e6).toFixed(1)} MB)`;
const latest = {
  machine,
  model,
  date: new Date().toISOString(),
  settings: { runs, n_predict: nPredict, webgpu_n_predict: webgpuPredict, prompt_chars: PROMPT.length, webgpu_full: webgpuFull },
  notes: {
    ...(swift ? { "ember-webgpu": "CPU-emulated WebGPU (SwiftShader), not a GPU" } : {}),
    ...(webgpuFull || !summary["ember-webgpu"]?.prompt_tokens ? {} : { "ember-webgpu-prompt": `short prompt (${summary["ember-webgpu"].prompt_tokens} tokens) and ${webgpuPredict} decoded tokens per run` }),
  },
  runs: Object.fromEntries(Object.entries(summary).map(([k, s]) => [k, s])),
};
// WebGPU calls per prompt token and per decoded token (counts: the same in every run), as the
// worker counted them in the measured run (issue 20).
const calls = raw["ember-webgpu"]?.runs?.[0]?.gpu_calls;
if (calls) latest.counters = { "webgpu-browser": calls };

// A run of some subjects (`--only`) updates theirs and keeps the others' figures (and the native
// section), each subject with the date it was measured.
for (const s of Object.values(latest.runs)) s.date = latest.date;
if (process.argv.includes("--only") && existsSync(OUT)) {
  const old = JSON.parse(readFileSync(OUT, "utf8"));
  latest.runs = { ...old.runs, ...latest.runs };
  latest.notes = { ...old.notes, ...latest.notes };
  if (old.native) latest.native = old.native;
  if (old.counters) latest.counters = { ...old.counters, ...latest.counters };
  if (!adapter) latest.machine = old.machine; // the same machine; the older run saw its WebGPU adapter
}
mkdirSync("bench/results", { recursive: true });
const stamp = latest.date.replace(/[:.]/g, "-");
writeFileSync(`bench/results/browser-${stamp}.json`, JSON.stringify({ ...latest, raw }, null, 1) + "\n");
writeFileSync(OUT, JSON.stringify(latest, null, 1) + "\n");
writeFileSync(CHART, chart(latest));

// ---------------------------------------------------------------- report
const f = (s, d = 1) => (s ? `${s.median.toFixed(d)} (${s.min.toFixed(d)}–${s.max.toFixed(d)})` : "—");
console.log(`\n${machine}\n${model}\n`);
console.log("subject        prefill tok/s        decode tok/s         load s (cached)   cold load s   memory MB");
for (const [k, s] of Object.entries(summary)) {
  if (s.error) { console.log(`${k.padEnd(14)} failed: ${s.error}`); continue; }
  console.log(`${k.padEnd(14)} ${f(s.prefill_tok_s).padEnd(20)} ${f(s.decode_tok_s).padEnd(20)} ${f(s.load_s, 2).padEnd(17)} ${(s.load_cold_s ?? 0).toFixed(2).padEnd(13)} ${f(s.memory_mb, 0)}`);
}
console.log("\nratios (Ember ÷ wllama, medians):");
for (const e of ["ember-cpu", "ember-cpu-mt", "ember-webgpu", "ember-cpu-firefox", "ember-cpu-webkit"]) for (const w of ["wllama-1t", "wllama-mt"]) {
  const a = summary[e], b = summary[w];
  if (!a?.decode_tok_s || !b?.decode_tok_s) continue;
  console.log(`  ${e} / ${w}: prefill ${(a.prefill_tok_s.median / b.prefill_tok_s.median).toFixed(3)}, decode ${(a.decode_tok_s.median / b.decode_tok_s.median).toFixed(3)}`);
}
console.log(`\nwrote ${OUT}, ${CHART}, bench/results/browser-${stamp}.json`);

/** A bar chart of the medians (log scale: the subjects differ by orders of magnitude). */
function chart(l) {
  const rows = Object.entries(l.runs).filter(([, s]) => !s.error);
  const W = 760, rowH = 56, top = 70, left = 130, plot = W - left - 120;
  const vals = rows.flatMap(([, s]) => [s.prefill_tok_s?.median, s.decode_tok_s?.median]).filter((v) => v > 0);
  const lo = Math.min(0.1, ...vals), hi = Math.max(...vals) * 1.5;
  const x = (v) => (Math.log10(Math.max(v, lo)) - Math.log10(lo)) / (Math.log10(hi) - Math.log10(lo)) * plot;
  const esc = (t) => String(t).replace(/&/g, "&amp;").replace(/</g, "&lt;");
  let s = `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${top + rows.length * rowH + 60}" font-family="sans-serif" font-size="12">\n`;
  s += `<text x="10" y="20" font-size="15" font-weight="bold">Tokens per second (median of ${l.settings.runs} runs; log scale; whiskers min–max)</text>\n`;
  s += `<text x="10" y="38">${esc(l.model)}</text>\n<text x="10" y="54">${esc(l.machine)}</text>\n`;
  rows.forEach(([k, st], i) => {
    const y = top + i * rowH;
    s += `<text x="10" y="${y + 22}">${esc(k)}</text>\n`;
    [["prefill", st.prefill_tok_s, "#c2410c"], ["decode", st.decode_tok_s, "#1d4ed8"]].forEach(([name, v, color], j) => {
      if (!v) return;
      const yy = y + 6 + j * 22;
      s += `<rect x="${left}" y="${yy}" width="${x(v.median).toFixed(1)}" height="16" fill="${color}"/>\n`;
      s += `<line x1="${left + x(v.min)}" x2="${left + x(v.max)}" y1="${yy + 8}" y2="${yy + 8}" stroke="#000"/>\n`;
      s += `<text x="${left + x(v.median) + 6}" y="${yy + 13}">${name} ${v.median.toFixed(1)}</text>\n`;
    });
  });
  const note = Object.entries(l.notes).map(([k, v]) => `${k}: ${v}`).join("; ");
  if (note) s += `<text x="10" y="${top + rows.length * rowH + 20}">${esc(note)}</text>\n`;
  return s + "</svg>\n";
}
