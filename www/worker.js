// The engine's worker: the page never freezes while the model loads or generates.
// Protocol, page → worker:  {type: "load", url, backend}  {type: "generate", id, messages, options}
//                            {type: "stop"}  {type: "reset"}
// worker → page:            {type: "progress", stage, loaded, total}  {type: "ready", info, backend, load_s}
//                            {type: "token", id, step}  {type: "done", id, stats, reason}  {type: "error", id?, message}
import init, { WasmEngine } from "./ember.js";

let engine = null;
let stopRequested = false;
const post = (m) => self.postMessage(m);
const errorText = (e) => (e && e.message) || String(e);

self.addEventListener("error", (e) => post({ type: "error", message: `worker error: ${e.message}` }));
self.addEventListener("unhandledrejection", (e) => post({ type: "error", message: `worker error: ${errorText(e.reason)}` }));

async function fetchModel(url) {
  const res = await fetch(url);
  if (!res.ok) throw new Error(`the model could not be downloaded: HTTP ${res.status} for ${url}`);
  const total = Number(res.headers.get("content-length")) || 0;
  const reader = res.body.getReader();
  const chunks = [];
  let loaded = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    chunks.push(value);
    loaded += value.length;
    post({ type: "progress", stage: "downloading", loaded, total });
  }
  const bytes = new Uint8Array(loaded);
  let at = 0;
  for (const c of chunks) { bytes.set(c, at); at += c.length; }
  return bytes;
}

async function load({ url, backend }) {
  const t0 = performance.now();
  await init();
  const bytes = await fetchModel(url);
  post({ type: "progress", stage: "parsing", loaded: bytes.length, total: bytes.length });
  let used = backend;
  try {
    engine = await WasmEngine.load(bytes, backend, { max_context: 2048 });
  } catch (e) {
    if (backend !== "webgpu") throw e;
    post({ type: "progress", stage: "WebGPU failed, loading on the CPU", loaded: 0, total: 0 });
    used = "cpu";
    engine = await WasmEngine.load(bytes, "cpu", { max_context: 2048 });
  }
  post({ type: "ready", info: engine.info(), backend: used, load_s: (performance.now() - t0) / 1000 });
}

async function generate({ id, messages, options }) {
  stopRequested = false;
  engine.start({ chat: messages }, options);
  let reason = null;
  for (;;) {
    // Yield to the event loop so that a "stop" message can arrive between tokens.
    await new Promise((r) => setTimeout(r, 0));
    if (stopRequested) { engine.stop(); reason = "stopped"; break; }
    const step = await engine.next();
    if (step === null) break;
    post({ type: "token", id, step });
    if (step.done) { reason = step.done; break; }
  }
  post({ type: "done", id, reason, stats: engine.stats() });
}

self.onmessage = async ({ data }) => {
  try {
    switch (data.type) {
      case "load": await load(data); break;
      case "generate": await generate(data); break;
      case "stop": stopRequested = true; break;
      case "reset": if (engine) engine.reset(); break;
    }
  } catch (e) {
    post({ type: "error", id: data.id, message: errorText(e) });
  }
};
