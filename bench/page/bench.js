// One benchmark subject per page load (`?which=`): Ember on WebGPU or on the CPU through the web
// app's own engine client and worker (so the figures are the ones the app's UI shows), or
// wllama (llama.cpp in wasm) with one or two threads. Each run loads the model (the first run
// of a fresh profile is the cold load; later ones come from the browser's cache), runs an unmeasured
// warm-up generation, then the measured one: the same prompt, greedy, a fixed number of tokens
// past end-of-sequence. Results land in `window.bench` for bench/browser.mjs.
const q = new URLSearchParams(location.search);
const which = q.get("which");
const runs = Number(q.get("runs") || 5);
const nPredict = Number(q.get("n_predict") || 128);
const prompt = q.get("prompt");
const model = new URL(q.get("model"), location.href).href;
const log = (m) => { document.getElementById("log").textContent += m + "\n"; console.log(m); };

/** Total memory of this page and its workers (JS heaps and wasm memories), where the browser tells. */
async function memoryBytes() {
  if (!self.crossOriginIsolated || !performance.measureUserAgentSpecificMemory) return null;
  try { return (await performance.measureUserAgentSpecificMemory()).bytes; } catch { return null; }
}

// ---------------------------------------------------------------- Ember, through the app's engine client
async function emberRun(backend, threads) {
  const { EngineClient } = await import("/app/js/engine-client.js");
  const out = {};
  const t0 = performance.now();
  let step = "load";
  let engine = null;
  const generate = (max_tokens, on = {}) => engine.generate({
    text: prompt, reserve: 0,
    options: { sampling: { temperature: 0, top_k: 0, top_p: 1, min_p: 0, repeat_penalty: 1 }, max_tokens, top_n: 0, ignore_eos: true },
  }, on);
  try {
    engine = await EngineClient.load({ url: model }, { backend, limits: { max_context: 1024, threads } });
    out.threads = engine.threads;
    out.load_s = engine.loadS;
    out.page_load_s = (performance.now() - t0) / 1000;
    out.n_params = engine.info.n_params;
    out.weight_bytes = engine.info.weight_bytes;
    out.gpu_weight_bytes = engine.info.gpu_weight_bytes ?? null;
    out.backend = engine.backend;
    step = "warm-up";
    await generate(4);
    await engine.reset(); // the measured run prefills the whole prompt again
    step = "measured run";
    const t1 = performance.now();
    const done = await generate(nPredict, { start: (e) => { out.prompt_tokens = e.prompt_tokens; } });
    out.total_s = (performance.now() - t1) / 1000;
    out.prefill_tok_s = done.stats.prefill_tok_s;
    out.decode_tok_s = done.stats.decode_tok_s;
    out.decode_tokens = done.stats.decode_tokens;
    out.wasm_bytes = done.wasm_bytes;
    out.gpu_calls = done.gpu_calls ?? null; // WebGPU calls per token (the worker counts them)
    // The page's memory as measured, with the engine's wasm memory (the weights and the cache;
    // it only grows, so its size now is its peak) where the measurement left it out: Chromium
    // counts the threaded engine's shared memory, but not the single-thread engine's (it read
    // 3 MB, where the weights alone take 100 MB), so a total below the wasm memory lacks it.
    const measured = await memoryBytes();
    out.memory_bytes = measured === null ? null : measured >= done.wasm_bytes ? measured : measured + done.wasm_bytes;
    return out;
  } catch (e) {
    throw new Error(`${which} ${step}: ${e.kind ? `${e.kind}: ` : ""}${e.message}`);
  } finally {
    engine?.terminate();
  }
}

// ---------------------------------------------------------------- wllama
async function wllamaRun(threads) {
  const { Wllama } = await import("/wllama/index.js");
  const wllama = new Wllama({ default: "/wllama/wasm/wllama.wasm" }, { suppressNativeLog: true, logger: { debug() {}, log() {}, warn() {}, error: console.error } });
  const out = {};
  const t0 = performance.now();
  await wllama.loadModelFromUrl(model, { n_threads: threads, n_ctx: 1024, n_gpu_layers: 0, useCache: true });
  out.load_s = (performance.now() - t0) / 1000;
  out.threads = wllama.getNumThreads();
  out.multithread = wllama.isMultithread();
  const complete = (max_tokens) => wllama.createCompletion({ prompt, max_tokens, temperature: 0, ignore_eos: true, cache_prompt: false });
  await complete(4); // warm-up
  const t1 = performance.now();
  const res = await complete(nPredict);
  out.total_s = (performance.now() - t1) / 1000;
  const t = res.timings;
  out.prompt_tokens = t.prompt_n;
  out.prefill_tok_s = t.prompt_per_second;
  out.decode_tok_s = t.predicted_per_second;
  out.decode_tokens = t.predicted_n;
  out.memory_bytes = await memoryBytes();
  await wllama.exit();
  return out;
}

async function main() {
  const results = [];
  let adapter = null;
  if (which === "ember-webgpu" && navigator.gpu) {
    const a = await navigator.gpu.requestAdapter();
    adapter = a?.info ? { vendor: a.info.vendor, architecture: a.info.architecture, description: a.info.description } : null;
  }
  for (let i = 0; i < runs; i++) {
    const r = which === "ember-webgpu" ? await emberRun("webgpu")
      : which === "ember-cpu-mt" ? await emberRun("cpu") // the threaded build, one thread a core
      : which.startsWith("ember-cpu") ? await emberRun("cpu", 1) // -firefox, -webkit: the same run in another engine
      : which === "wllama-1t" ? await wllamaRun(1)
      : which === "wllama-mt" ? await wllamaRun(2)
      : null;
    if (!r) throw new Error(`unknown subject ${which}`);
    r.cold = i === 0;
    results.push(r);
    log(`${which} run ${i + 1}/${runs}: ${JSON.stringify(r)}`);
  }
  window.bench = { which, runs: results, adapter, isolated: self.crossOriginIsolated, cores: navigator.hardwareConcurrency, userAgent: navigator.userAgent };
}

main().catch((e) => { window.bench = { which, error: String(e.stack || e) }; log(String(e.stack || e)); });
