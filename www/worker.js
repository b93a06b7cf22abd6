// The engine's worker: the page never freezes while the model loads or generates.
// Page → worker: {type: "load", source: {url} | {file} | {files}, backend, limits}
//                (a URL ending in "/" is a Hugging Face folder, e.g. https://huggingface.co/<repo>/resolve/main/;
//                `files` are several picked files or a picked folder: a model folder's files, or one .gguf)
//                {type: "generate", id, messages | text, options, reserve}  {type: "fit", id, messages, reserve}
//                {type: "render", id, messages}  {type: "stop"}  {type: "reset"}
//                classroom: {type: "cstart", id, messages | ids, options, reserve}  {type: "cstep", id, forced?, sampling}
//                {type: "cpipeline", sampling, topN}  {type: "tokens", id, which, text | messages}
// Worker → page: {type: "progress", stage, loaded, total}  {type: "ready", info, backend, load_s}
//                {type: "start", id, fit, prompt_tokens, reused}  {type: "prefill", id, done, total}
//                {type: "token", id, step}  {type: "done", id, reason, stats, wasm_bytes}  {type: "fit", id, fit, error}
//                {type: "rendered", id, text}  {type: "notice", kind, vars}
//                classroom: {type: "cpeek", id, candidates, pipeline}  {type: "ctoken", id, step, forced}
//                {type: "cpipeline", id, pipeline}  {type: "cdone", id, stats, reason}  {type: "tokens", id, ids, texts}
//                {type: "error", id?, message, kind}  {type: "fatal", message}
// Errors are messages; a trap inside wasm (GPU lost, out of memory) is "fatal": the page
// replaces this worker. A lost WebGPU device is "fatal" too, and the GPU running out of memory
// while the model loads is the load error "errGpuMemory".
// Faults for the tests (`?fault=` on the page, passed in `limits.fault`): `device-lost:N`
// destroys the WebGPU device after N tokens; `gpu-oom` makes the load's out-of-memory error
// scope report an error, as a GPU too small for the model would; `slow:MS` waits MS ms after
// each token (so that a test can act mid-answer). Several are joined by commas.
import init, { WasmEngine } from "./ember.js";
import * as modelCache from "./js/model-cache.js";

let engine = null;
let wasm = null; // the module's exports (its memory, for the benchmark's figures)
let generating = false;
let stopRequested = false;
let queued = []; // fit/render requests that arrived while a step held the engine
// On the CPU, prompt chunks are sized to about this much work, so that a stop lands within it.
// On WebGPU each new chunk shape can cost a shader compilation (over a minute a chunk on
// SwiftShader), so chunks there are large: a stop waits for the chunk on the GPU.
const PREFILL_SLICE_MS = 300;
let minChunk = 4;
const post = (m) => self.postMessage(m);
const errorText = (e) => (e && e.message) || String(e);

self.addEventListener("error", async (e) => {
  // A trap while loading on WebGPU may come from the GPU running out of memory.
  const oom = engine ? null : await gpuOomError();
  post(oom ? { type: "error", kind: "errGpuMemory", vars: { m: oom.message } } : { type: "fatal", message: e.message || "the engine crashed" });
});
self.addEventListener("unhandledrejection", (e) => post({ type: "fatal", message: errorText(e.reason) }));

// wgpu creates the WebGPU device inside wasm. Wrapping requestDevice lets the worker see it: an
// out-of-memory error scope spans the load (wgpu's own handler would otherwise turn that error
// into a panic with a vaguer message), and its `lost` promise ends this engine cleanly.
let gpu = null; // {device, oomScope}
let fault = null;
if (self.GPUAdapter) {
  const requestDevice = GPUAdapter.prototype.requestDevice;
  GPUAdapter.prototype.requestDevice = async function (...args) {
    const device = await requestDevice.apply(this, args);
    device.pushErrorScope("out-of-memory");
    gpu = { device, oomScope: true };
    device.lost.then((info) => {
      if (engine) post({ type: "fatal", kind: "gpuLost", message: `the GPU device was lost (${info.reason || "unknown"}${info.message ? `: ${info.message}` : ""})` });
    });
    return device;
  };
}

/** Ends the load's out-of-memory scope; the error it caught, if any. */
async function gpuOomError() {
  if (!gpu?.oomScope) return null;
  gpu.oomScope = false;
  const error = await gpu.device.popErrorScope().catch(() => null);
  if (/(?:^|,)gpu-oom/.test(fault || "")) return new GPUOutOfMemoryError("out of memory (injected by the test)");
  return error;
}

class LoadError extends Error {
  constructor(kind, vars) { super(kind); this.kind = kind; this.vars = vars; }
}

async function readAll(stream, total, stage) {
  const reader = stream.getReader();
  const chunks = [];
  let loaded = 0;
  let last = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    chunks.push(value);
    loaded += value.length;
    if (loaded - last > 1 << 20 || loaded === total) { post({ type: "progress", stage, loaded, total }); last = loaded; }
  }
  const bytes = new Uint8Array(loaded);
  let at = 0;
  for (const c of chunks) { bytes.set(c, at); at += c.length; }
  return bytes;
}

// A model from a URL comes from the cache when it is there, else is downloaded into it.
async function fetchModel({ url, sha256 }, limits) {
  let hit = null;
  try { hit = await modelCache.lookup(url); } catch { /* no OPFS here */ }
  if (hit) return readAll(hit.file.stream(), hit.file.size, "cache");
  try {
    return await modelCache.download(url, {
      sha256,
      onProgress: (loaded, total) => post({ type: "progress", stage: "downloading", loaded, total }),
      onNotice: (kind, vars) => post({ type: "notice", kind, vars }),
      quota: limits?.quota_mb ? limits.quota_mb * 2 ** 20 : null,
    });
  } catch (e) {
    throw e instanceof modelCache.DownloadError ? new LoadError(e.kind, e.vars) : e;
  }
}

function checkMagic(bytes) {
  const head = new TextDecoder().decode(bytes.subarray(0, 64)).trimStart().toLowerCase();
  if (head.startsWith("<!doctype") || head.startsWith("<html") || head.startsWith("<")) throw new LoadError("errHtml", {});
  if (bytes.length < 4 || String.fromCharCode(...bytes.subarray(0, 4)) !== "GGUF") throw new LoadError("errNotGguf", {});
}

// A Hugging Face model folder's files: required, optional, and the weights (one file, or the
// shards an index names).
const FOLDER_REQUIRED = ["config.json", "tokenizer.json"];
const FOLDER_OPTIONAL = ["tokenizer_config.json", "generation_config.json", "chat_template.jinja"];
const INDEX = "model.safetensors.index.json";

/** Shard names from an index's weight_map, each once, sorted (as the engine checks them). */
function shardNames(indexBytes) {
  let map;
  try { map = JSON.parse(new TextDecoder().decode(indexBytes)).weight_map; } catch { map = null; }
  if (!map || typeof map !== "object") throw new Error(`${INDEX} has no weight_map`);
  const names = [...new Set(Object.values(map).map(String))].sort();
  // Plain file names in the same folder only: an index must not send the worker elsewhere.
  const bad = names.find((n) => !/^[^/\\:?#.][^/\\:?#]*\.safetensors$/.test(n));
  if (bad !== undefined) throw new Error(`${INDEX} names ${JSON.stringify(bad)}, which is not a .safetensors file in the same folder`);
  return names;
}

/** Files from a URL folder: each through the model cache, so that they work offline after. */
async function fetchFolder(base, limits) {
  const files = new Map();
  const get = async (name, optional) => {
    try { files.set(name, await fetchModel({ url: new URL(name, base).href }, limits)); }
    catch (e) { if (!optional) throw e; }
  };
  for (const n of FOLDER_REQUIRED) await get(n, false);
  for (const n of FOLDER_OPTIONAL) await get(n, true);
  await get(INDEX, true);
  const weights = files.has(INDEX) ? shardNames(files.get(INDEX)) : ["model.safetensors"];
  for (const n of weights) await get(n, false);
  return files;
}

/** Picked files (or a picked folder): the ones a model folder uses, read. */
async function readFolder(picked) {
  const wanted = (n) => FOLDER_REQUIRED.includes(n) || FOLDER_OPTIONAL.includes(n) || n.endsWith(".safetensors") || n === INDEX;
  const files = new Map();
  for (const f of picked) if (wanted(f.name)) files.set(f.name, await readAll(f.stream(), f.size, "reading"));
  for (const n of FOLDER_REQUIRED) if (!files.has(n)) throw new LoadError("errFolderMissing", { name: n });
  return files;
}

/** A name for a model whose files give none: a picked folder's name, a Hugging Face repository's
 *  (…/<org>/<repo>/resolve/main/), or a URL's last part. */
function sourceName(source) {
  if (source.files) return source.files[0]?.webkitRelativePath?.split("/")[0] || null;
  const file = source.file?.name;
  if (file) return file.replace(/\.gguf$/i, "");
  const parts = new URL(source.url).pathname.split("/").filter(Boolean).map(decodeURIComponent);
  const r = parts.indexOf("resolve");
  return (r > 0 ? parts[r - 1] : parts.pop()?.replace(/\.gguf$/i, "")) || null;
}

async function gpuLimits() {
  try {
    const adapter = await navigator.gpu?.requestAdapter();
    return adapter ? adapter.limits.maxStorageBufferBindingSize : null;
  } catch { return null; }
}

async function load({ source, backend, limits }) {
  const t0 = performance.now();
  fault = limits?.fault || null;
  wasm = await init();
  // Several picked files with one .gguf among them and no config.json: that GGUF file.
  if (source.files && !source.files.some((f) => f.name === "config.json")) {
    const gguf = source.files.filter((f) => f.name.toLowerCase().endsWith(".gguf"));
    if (gguf.length !== 1) throw new LoadError("errPickedFiles", {});
    source = { file: gguf[0] };
  }
  let bytes = null;
  let folder = null;
  if (source.files) folder = await readFolder(source.files);
  else if (source.url && new URL(source.url).pathname.endsWith("/")) folder = await fetchFolder(source.url, limits);
  else {
    bytes = source.file ? await readAll(source.file.stream(), source.file.size, "reading") : await fetchModel(source, limits);
    checkMagic(bytes);
  }
  const size = bytes ? bytes.length : [...folder.values()].reduce((a, b) => a + b.length, 0);
  // wasm32 addresses 4 GiB; the file's bytes are in it while the weights are built.
  const memory = limits?.memory_mb ? limits.memory_mb * 2 ** 20 : 3.5 * 2 ** 30 - 2 * size;
  const options = { max_context: limits?.max_context || 2048, memory_limit: Math.max(0, Math.floor(memory)), name: sourceName(source) };
  if (backend === "webgpu") {
    const t = await gpuLimits();
    if (t) options.tensor_limit = t;
  }
  post({ type: "progress", stage: "parsing", loaded: 0, total: 0 });
  const progress = (done, total) => post({ type: "progress", stage: "uploading", loaded: done, total });
  try {
    engine = bytes
      ? await WasmEngine.load(bytes, backend, options, progress)
      : await WasmEngine.load_folder([...folder.keys()], [...folder.values()], backend, options, progress);
    minChunk = backend === "webgpu" ? 256 : 4;
    post({ type: "progress", stage: "warming", loaded: 0, total: 0 });
    await engine.warm_up();
  } catch (e) {
    const oom = await gpuOomError();
    if (oom) throw new LoadError("errGpuMemory", { m: oom.message });
    throw e;
  }
  const oom = await gpuOomError();
  if (oom) { engine = null; throw new LoadError("errGpuMemory", { m: oom.message }); }
  post({ type: "ready", info: engine.info(), backend, load_s: (performance.now() - t0) / 1000 });
}

const tick = () => new Promise((r) => setTimeout(r, 0));

function answerQueued() {
  for (const q of queued.splice(0)) handle(q);
}

// Starts a generation from a conversation (the oldest turns left out if it outgrows the window)
// or from token ids, and tells the page what the model will see.
function startPrompt(id, { messages, ids, text }, options, reserve) {
  if (ids || text !== undefined) {
    const start = engine.start(ids ? { ids } : { text }, options);
    post({ type: "start", id, fit: null, prompt_tokens: start.prompt_ids.length, reused: start.reused, prompt_ids: start.prompt_ids, prompt_text: start.prompt_text });
    return start;
  }
  const fit = engine.fit(messages, reserve);
  const firstTurn = messages.findIndex((m) => m.role !== "system");
  const system = messages.slice(0, firstTurn < 0 ? messages.length : firstTurn);
  const start = engine.start({ chat: [...system, ...messages.slice(fit.first)] }, options);
  post({ type: "start", id, fit, prompt_tokens: start.prompt_ids.length, reused: start.reused, prompt_ids: start.prompt_ids, prompt_text: start.prompt_text });
  return start;
}

// Runs the prompt in chunks, so that Stop works during a long prefill too. False if stopped.
async function prefillPrompt(id, start) {
  const total = start.prompt_ids.length - start.reused;
  let left = total;
  let chunk = Math.max(8, minChunk);
  while (left > 1) {
    await tick();
    answerQueued();
    if (stopRequested) return false;
    const t0 = performance.now();
    const before = left;
    left = await engine.prefill(chunk);
    const perToken = (performance.now() - t0) / Math.max(1, before - left);
    chunk = Math.max(minChunk, Math.min(512, Math.round(PREFILL_SLICE_MS / perToken)));
    post({ type: "prefill", id, done: total - left - 1, total });
  }
  return true;
}

let tokensPosted = 0;
async function injectFaults(tokens) {
  const lost = /(?:^|,)device-lost:(\d+)/.exec(fault || "");
  if (lost && gpu && tokens === Number(lost[1])) gpu.device.destroy();
  const slow = /(?:^|,)slow:(\d+)/.exec(fault || "");
  if (slow) await new Promise((r) => setTimeout(r, Number(slow[1])));
}

async function generate({ id, messages, text, options, reserve }) {
  stopRequested = false;
  generating = true;
  try {
    const start = startPrompt(id, { messages, text }, options, reserve);
    let reason = null;
    await prefillPrompt(id, start);
    for (;;) {
      // Yield to the event loop so that "stop" (and meter requests) can arrive between tokens.
      await tick();
      answerQueued();
      if (stopRequested) { engine.stop(); reason = "stopped"; break; }
      const step = await engine.next();
      if (step === null) break;
      post({ type: "token", id, step });
      if (step.done) { reason = step.done; break; }
      if (fault) await injectFaults(++tokensPosted);
    }
    post({ type: "done", id, reason, stats: engine.stats(), wasm_bytes: wasm?.memory.buffer.byteLength ?? null });
  } finally {
    generating = false;
    answerQueued();
  }
}

// Classroom mode: one token per request, and the next token's distribution computed ahead
// (peek), so that the page can show the candidates before the draw and force any of them.
let classroom = null; // {id}

async function peekAndPost(id, topN) {
  const candidates = await engine.peek();
  if (candidates === null) { classroom = null; post({ type: "cdone", id, stats: engine.stats() }); return; }
  post({ type: "cpeek", id, candidates, pipeline: engine.pipeline(null, topN) });
}

async function classroomStart({ id, messages, ids, options, reserve }) {
  stopRequested = false;
  generating = true;
  try {
    const start = startPrompt(id, { messages, ids }, options, reserve);
    if (!(await prefillPrompt(id, start))) { engine.stop(); post({ type: "cdone", id, stats: engine.stats(), reason: "stopped" }); return; }
    classroom = { id };
    await peekAndPost(id, options.top_n || 10);
  } finally {
    generating = false;
    answerQueued();
  }
}

async function classroomStep({ id, forced, sampling, topN }) {
  if (!classroom || classroom.id !== id) throw new Error("no classroom answer is running: send a message first");
  generating = true;
  try {
    if (sampling) engine.set_sampling(sampling);
    const step = engine.commit(forced ?? undefined);
    if (step === null) { classroom = null; post({ type: "cdone", id, stats: engine.stats() }); return; }
    post({ type: "ctoken", id, step, forced: forced ?? null });
    if (step.done) { classroom = null; post({ type: "cdone", id, stats: engine.stats(), reason: step.done }); return; }
    await peekAndPost(id, topN || 10);
  } finally {
    generating = false;
    answerQueued();
  }
}

function tokens({ id, which, text, messages }) {
  const prompt = messages ? engine.render(messages) : text;
  const ids = Array.from(engine.tokenize(prompt));
  post({ type: "tokens", id, which, ids, texts: engine.token_texts(Uint32Array.from(ids)) });
}

async function handle(data) {
  try {
    switch (data.type) {
      case "load": await load(data); break;
      case "generate": await generate(data); break;
      case "stop":
        stopRequested = true;
        if (classroom && !generating) { engine.stop(); post({ type: "cdone", id: classroom.id, stats: engine.stats(), reason: "stopped" }); classroom = null; }
        break;
      case "cstart": await classroomStart(data); break;
      case "cstep": await classroomStep(data); break;
      case "cpipeline":
        if (generating) { queued = queued.filter((q) => q.type !== "cpipeline"); queued.push(data); break; }
        if (classroom) post({ type: "cpipeline", id: classroom.id, pipeline: engine.pipeline(data.sampling, data.topN || 10) });
        break;
      case "tokens":
        if (generating) { queued = queued.filter((q) => !(q.type === "tokens" && q.which === data.which)); queued.push(data); break; }
        tokens(data);
        break;
      case "reset": classroom = null; if (engine && !generating) engine.reset(); else stopRequested = true; break;
      case "fit":
        if (generating) { queued = queued.filter((q) => q.type !== "fit"); queued.push(data); break; }
        try { post({ type: "fit", id: data.id, fit: engine.fit(data.messages, data.reserve) }); }
        catch (e) { post({ type: "fit", id: data.id, error: errorText(e) }); }
        break;
      case "render":
        if (generating) { queued.push(data); break; }
        post({ type: "rendered", id: data.id, text: engine.render(data.messages) });
        break;
    }
  } catch (e) {
    const message = e instanceof LoadError ? null : errorText(e);
    post({ type: "error", id: data.id, op: data.type, kind: e.kind || null, vars: e.vars || null, message });
  }
}

self.onmessage = ({ data }) => handle(data);
