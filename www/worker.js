// The engine's worker: the page never freezes while the model loads or generates. It speaks one
// envelope, which www/js/engine-client.js is the one place to read and write:
//   page → worker   {id, op, ...args}
//   worker → page   {id, type: "event", event, ...}   zero or more, while the request runs
//                   {id, type: "result", value}        the request's answer
//                   {id, type: "error", error}         or its failure
//                   {type: "fatal", error}             the engine is gone (a trap in wasm, the GPU lost)
// An error is {kind, vars, message}: `kind` names it (the engine's own kinds, such as
// context_full, or the loader's, such as errNotFound) and the page translates it from `vars`.
// Ops (arguments → events → result):
//   load      {source: {url, sha256?} | {file} | {files}, backend, limits}
//             → progress {stage, loaded, total}, notice {kind, vars} → {info, backend, threads, threads_error, load_s, wasm_bytes}
//             (`limits.threads`: how many threads the CPU may use; default the cores, at most 8)
//             (a URL ending in "/" is a Hugging Face folder, e.g. https://huggingface.co/<repo>/resolve/main/;
//             `files` are several picked files or a picked folder: a model folder's files, or one .gguf)
//   generate  {messages | text, options, reserve} → start {fit, prompt_tokens, reused, prompt_ids, prompt_text},
//             prefill {done, total}, token {step} → {reason, stats, wasm_bytes}
//   stop  reset  → null (a running generation then ends with reason "stopped")
//   fit {messages, reserve} → ChatFit      render {messages} → text      tokens {text | messages, generation?} → {ids, texts}
//   classroom: cstart {messages | ids, options, reserve} → start, prefill → next
//              cstep {forced?, sampling} → {step, forced, next}      cpipeline {sampling, topN} → pipeline
//              where next is {candidates, pipeline} for the token to come, or {done, reason, stats}
// A request that arrives while a step holds the engine (fit, render, tokens, cpipeline) waits for
// the step; a newer one of the same op supersedes it (its error kind is "superseded").
// A lost WebGPU device is "fatal" too, and the GPU running out of memory while the model loads is
// the load error "errGpuMemory".
// Faults for the tests (`?fault=` on the page, passed in `limits.fault`): `device-lost:N`
// destroys the WebGPU device after N tokens; `gpu-oom` makes the load's out-of-memory error
// scope report an error, as a GPU too small for the model would; `slow:MS` waits MS ms after
// each token (so that a test can act mid-answer); `pool-fail` and `pool-hang` break the threaded
// engine's start (startPool). Several are joined by commas.
import * as modelCache from "./js/model-cache.js";
import { readable } from "./js/names.js";

let engine = null;
let mod = null; // the engine's module: ./ember.js, or the threaded ./mt/ember.js
let wasm = null; // the module's exports (its memory, for the benchmark's figures)
let threads = 1; // the threads the CPU's products use
let threadsError = null; // why the threaded engine did not start, where it was tried
let loadId = null; // the load request in flight
let generating = false;
let stopRequested = false;
let queued = []; // requests that arrived while a step held the engine
// On the CPU, prompt chunks are sized to about this much work, so that a stop lands within it.
// On WebGPU each new chunk shape can cost a shader compilation (over a minute a chunk on
// SwiftShader), so chunks there are large: a stop waits for the chunk on the GPU.
const PREFILL_SLICE_MS = 300;
let minChunk = 4;
const post = (m) => self.postMessage(m);
const event = (id, name, fields) => post({ id, type: "event", event: name, ...fields });
/** Any thrown value as the envelope's error: the engine's errors carry `kind` and `vars`. */
const asError = (e) => ({ kind: e?.kind ?? null, vars: e?.vars ?? {}, message: e instanceof LoadError ? "" : (e && e.message) || String(e) });
const fatal = (kind, message) => post({ type: "fatal", error: { kind, vars: { m: message }, message } });

self.addEventListener("error", async (e) => {
  // This worker reports its own death (the page's onerror would race it with less to say).
  e.preventDefault();
  // A trap while loading on WebGPU may come from the GPU running out of memory.
  const oom = engine ? null : await gpuOomError();
  if (oom && loadId !== null) post({ id: loadId, type: "error", error: { kind: "errGpuMemory", vars: { m: oom.message }, message: oom.message } });
  else fatal(null, e.message || "the engine crashed");
});
self.addEventListener("unhandledrejection", (e) => fatal(null, asError(e.reason).message));

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
      if (engine) fatal("gpuLost", `the GPU device was lost (${info.reason || "unknown"}${info.message ? `: ${info.message}` : ""})`);
    });
    return device;
  };
}

// WebGPU calls, counted (issue 20): what a token costs on a real GPU is mostly its fixed costs,
// and those are counts that any adapter shows, SwiftShader included. wgpu's calls reach WebGPU
// through these prototypes' methods, looked up at each call, so wrapping them sees every
// dispatch, submit, bind group, host write and readback (a buffer mapped for reading) the engine
// makes. `generate` reports them per prompt token and per decoded token.
const gpuCalls = { dispatches: 0, submits: 0, bind_groups: 0, writes: 0, readbacks: 0, readback_bytes: 0 };
{
  // A browser may name some of these interfaces and not others (WebKitGTK without WebGPU):
  // each is looked up on its own, and a missing one is skipped.
  const count = (iface, name, f) => {
    const proto = self[iface]?.prototype;
    const call = proto?.[name];
    if (typeof call === "function") proto[name] = function (...args) { f(args, this); return call.apply(this, args); };
  };
  count("GPUComputePassEncoder", "dispatchWorkgroups", () => gpuCalls.dispatches++);
  count("GPUComputePassEncoder", "dispatchWorkgroupsIndirect", () => gpuCalls.dispatches++);
  count("GPUQueue", "submit", () => gpuCalls.submits++);
  count("GPUQueue", "writeBuffer", () => gpuCalls.writes++);
  count("GPUDevice", "createBindGroup", () => gpuCalls.bind_groups++);
  count("GPUBuffer", "mapAsync", ([mode, offset = 0, size], buffer) => {
    if (!(mode & 1)) return; // GPUMapMode.READ
    gpuCalls.readbacks++;
    gpuCalls.readback_bytes += size ?? buffer.size - offset;
  });
}

/** Calls made between two snapshots of `gpuCalls`, per token; null without tokens. */
function callsPerToken(from, to, tokens) {
  if (!(tokens > 0)) return null;
  return Object.fromEntries(Object.keys(to).map((k) => [k, Math.round(((to[k] - from[k]) / tokens) * 100) / 100]));
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
    if (loaded - last > 1 << 20 || loaded === total) { event(loadId, "progress", { stage, loaded, total }); last = loaded; }
  }
  const bytes = new Uint8Array(loaded);
  let at = 0;
  for (const c of chunks) { bytes.set(c, at); at += c.length; }
  return bytes;
}

// A model from a URL comes from the cache when it is there, else is downloaded into it. Either
// way it is a Blob (the cached file, or the download's chunks), which the engine reads a tensor
// at a time: the file is never one buffer, in wasm or out.
async function fetchModel({ url, sha256 }, limits, gguf = true) {
  let hit = null;
  try { hit = await modelCache.lookup(url); } catch { /* no OPFS here */ }
  if (hit) return { blob: hit.file, stored: true };
  try {
    const blob = await modelCache.download(url, {
      sha256,
      hasher: () => new mod.Sha256(),
      // A GGUF is judged from its first megabytes: a model Ember cannot run stops the download.
      checkHead: gguf ? (head, total) => { checkMagicBytes(head); mod.WasmEngine.check_head(head, total); } : null,
      onProgress: (loaded, total) => event(loadId, "progress", { stage: "downloading", loaded, total }),
      onNotice: (kind, vars) => event(loadId, "notice", { kind, vars }),
      quota: limits?.quota_mb ? limits.quota_mb * 2 ** 20 : null,
    });
    return { blob, stored: false };
  } catch (e) {
    throw e instanceof modelCache.DownloadError ? new LoadError(e.kind, e.vars) : e;
  }
}

async function checkMagic(blob) {
  checkMagicBytes(new Uint8Array(await blob.slice(0, 64).arrayBuffer()));
}

function checkMagicBytes(bytes) {
  bytes = bytes.subarray(0, 64);
  const head = new TextDecoder().decode(bytes).trimStart().toLowerCase();
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

/** A folder's weight files stay Blobs, which the engine reads a tensor at a time; the small
 *  JSON files are read. */
const isWeights = (name) => name.endsWith(".safetensors");

/** Files from a URL folder: each through the model cache, so that they work offline after. */
async function fetchFolder(base, limits) {
  const files = new Map();
  const get = async (name, optional) => {
    try {
      const { blob } = await fetchModel({ url: new URL(name, base).href }, limits, false);
      files.set(name, isWeights(name) ? blob : await readAll(blob.stream(), blob.size, "cache"));
    }
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
  const wanted = (n) => FOLDER_REQUIRED.includes(n) || FOLDER_OPTIONAL.includes(n) || isWeights(n) || n === INDEX;
  const files = new Map();
  for (const f of picked) if (wanted(f.name)) files.set(f.name, isWeights(f.name) ? f : await readAll(f.stream(), f.size, "reading"));
  for (const n of FOLDER_REQUIRED) if (!files.has(n)) throw new LoadError("errFolderMissing", { name: n });
  return files;
}

/** A name for a model whose files give none: a picked folder's name, a Hugging Face repository's
 *  (…/<org>/<repo>/resolve/main/), or a URL's last part. */
function sourceName(source) {
  if (source.files) return source.files[0]?.webkitRelativePath?.split("/")[0] || null;
  const file = source.file?.name;
  if (file) return readable(file);
  const parts = new URL(source.url).pathname.split("/").filter(Boolean).map(decodeURIComponent);
  const r = parts.indexOf("resolve");
  if (r > 0 && /\.gguf$/i.test(parts.at(-1))) return readable(parts.at(-1));
  return (r > 0 ? readable(parts[r - 1]) : readable(parts.pop() || "")) || null;
}

async function gpuLimits() {
  try {
    const adapter = await navigator.gpu?.requestAdapter();
    return adapter ? adapter.limits.maxStorageBufferBindingSize : null;
  } catch { return null; }
}

// Threads: the threaded build of the engine (dist/mt/, scripts/build-threads) runs the CPU's
// products on a pool of workers sharing its memory. That needs SharedArrayBuffer, which a
// browser offers only to a cross-origin-isolated page (the service worker makes the app one from
// its second load on: sw.js). WebKitGTK, isolated, creates shared wasm memory but has no
// SharedArrayBuffer and cannot post that memory to a worker. Elsewhere, on WebGPU, or if that
// build is missing or fails to start (the model card says why), the single-thread build runs;
// the results are the same either way.
const MAX_THREADS = 8;

// The pool's web workers, held from the moment each is made. Firefox may collect a worker that
// shares wasm memory while nothing roots it (bugzilla 1702191); wasm-bindgen-rayon roots its
// workers only once all of them have answered, and here (Firefox ESR 153, tests/web/engines.test.mjs)
// 2 of 5 runs had a threaded load wait forever in initThreadPool; with the workers held, none of 7.
const poolWorkers = [];
const POOL_START_MS = 30_000;

/** `m.initThreadPool(n)`, failing (never hanging) where a worker does not load or the pool has
 *  not started within POOL_START_MS; a failed pool's workers are stopped. */
async function startPool(m, n) {
  const Native = self.Worker;
  // Faults: `pool-fail` gives the pool a worker script that is not there; `pool-hang` one that
  // never answers, and a 2 s wait.
  const failing = /(?:^|,)pool-fail/.test(fault || "") ? "./no-such-thread.js" : null;
  const hanging = /(?:^|,)pool-hang/.test(fault || "") ? URL.createObjectURL(new Blob([""], { type: "text/javascript" })) : null;
  const wait = hanging ? 2_000 : POOL_START_MS;
  let timer;
  const failed = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`the thread pool did not start within ${wait / 1000} s`)), wait);
    // initThreadPool makes its workers with `new Worker(...)`: each is held, and its load error
    // (a script that does not load) ends the wait.
    self.Worker = class extends Native {
      constructor(url, options) {
        super(failing || hanging || url, options);
        poolWorkers.push(this);
        this.addEventListener("error", (e) => reject(new Error(`a thread's worker failed (${e.message || "it did not load"})`)));
      }
    };
  });
  try {
    await Promise.race([m.initThreadPool(n), failed]);
  } catch (e) {
    for (const w of poolWorkers.splice(0)) w.terminate();
    throw e;
  } finally {
    self.Worker = Native;
    clearTimeout(timer);
    if (hanging) URL.revokeObjectURL(hanging);
  }
}

async function startModule(backend, limits) {
  const want = Math.max(1, Math.min(MAX_THREADS, Math.floor(limits?.threads || navigator.hardwareConcurrency || 1)));
  if (backend === "cpu" && want > 1 && self.crossOriginIsolated && typeof SharedArrayBuffer === "function") {
    try {
      const m = await import("./mt/ember.js");
      wasm = await m.default();
      // This worker computes too: want − 1 more, each sharing the module's memory.
      await startPool(m, want - 1);
      m.set_threads(want);
      [mod, threads] = [m, m.threads()];
      return;
    } catch (e) {
      threadsError = String(e?.message || e);
      console.warn(`Ember: the threaded engine did not start (${threadsError}); running on one thread`);
    }
  }
  mod = await import("./ember.js");
  wasm = await mod.default();
  threads = 1;
}

async function load({ source, backend, limits }) {
  const t0 = performance.now();
  fault = limits?.fault || null;
  await startModule(backend, limits);
  // Several picked files with one .gguf among them and no config.json: that GGUF file.
  if (source.files && !source.files.some((f) => f.name === "config.json")) {
    const gguf = source.files.filter((f) => f.name.toLowerCase().endsWith(".gguf"));
    if (gguf.length !== 1) throw new LoadError("errPickedFiles", {});
    source = { file: gguf[0] };
  }
  let blob = null;
  let folder = null;
  let stored = false;
  if (source.files) folder = await readFolder(source.files);
  else if (source.url && new URL(source.url).pathname.endsWith("/")) folder = await fetchFolder(source.url, limits);
  else {
    ({ blob, stored } = source.file ? { blob: source.file, stored: false } : await fetchModel(source, limits));
    await checkMagic(blob);
  }
  // wasm32 addresses 4 GiB. Weights are read into it a tensor at a time (the engine counts that
  // tensor); a folder's small files are in it whole.
  const inWasm = folder ? [...folder.values()].reduce((a, b) => a + (b instanceof Blob ? 0 : b.length), 0) : 0;
  const memory = limits?.memory_mb ? limits.memory_mb * 2 ** 20 : 3.5 * 2 ** 30 - 2 * inWasm;
  const options = { max_context: limits?.max_context || 2048, memory_limit: Math.max(0, Math.floor(memory)), name: sourceName(source) };
  if (backend === "webgpu") {
    const t = await gpuLimits();
    if (t) options.tensor_limit = t;
  }
  event(loadId, "progress", { stage: "parsing", loaded: 0, total: 0 });
  // Weight tensors as they are built: read from the file (a GGUF, a tensor at a time) into the
  // CPU's memory, or uploaded to the GPU.
  const stage = backend === "webgpu" ? "uploading" : stored ? "cache" : "reading";
  const progress = (done, total) => event(loadId, "progress", { stage, loaded: done, total, unit: "tensors" });
  try {
    engine = blob
      ? await mod.WasmEngine.load_blob(blob, backend, options, progress)
      : await mod.WasmEngine.load_folder([...folder.keys()], [...folder.values()], backend, options, progress);
    minChunk = backend === "webgpu" ? 256 : 4;
    event(loadId, "progress", { stage: "warming", loaded: 0, total: 0 });
    await engine.warm_up();
  } catch (e) {
    const oom = await gpuOomError();
    if (oom) throw new LoadError("errGpuMemory", { m: oom.message });
    throw e;
  }
  const oom = await gpuOomError();
  if (oom) { engine = null; throw new LoadError("errGpuMemory", { m: oom.message }); }
  // wasm memory only grows: its size now is the most the load took.
  return { info: engine.info(), backend, threads, threads_error: threadsError, load_s: (performance.now() - t0) / 1000, wasm_bytes: wasm.memory.buffer.byteLength };
}

const tick = () => new Promise((r) => setTimeout(r, 0));

/** Runs the requests that waited for a step. */
function answerQueued() {
  for (const q of queued.splice(0)) handle(q);
}

/** Which waiting requests a newer one replaces: the same op on the same kind of input (a
 *  text's tokens and a conversation's are different views). Renders all get their answer. */
const supersedes = (a, b) => a.op === b.op && a.op !== "render" && (a.messages === undefined) === (b.messages === undefined);

/** Lets `data` wait for the running step; a newer request of the same kind supersedes it. */
function enqueue(data) {
  for (const old of queued.filter((q) => supersedes(q, data))) {
    post({ id: old.id, type: "error", error: { kind: "superseded", vars: {}, message: "superseded by a newer request" } });
  }
  queued = queued.filter((q) => !supersedes(q, data));
  queued.push(data);
}

// Starts a generation from a conversation (the engine leaves out the oldest turns if it outgrows
// the window) or from token ids or text, and tells the page what the model will see.
function startPrompt(id, { messages, ids, text }, options, reserve) {
  const { start, fit } = messages ? engine.start_chat(messages, options, reserve) : { start: engine.start(ids ? { ids } : { text }, options), fit: null };
  event(id, "start", { fit, prompt_tokens: start.prompt_ids.length, reused: start.reused, prompt_ids: start.prompt_ids, prompt_text: start.prompt_text });
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
    event(id, "prefill", { done: total - left - 1, total });
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

/** Runs `work` as the one step that holds the engine; stop and queued requests wait for it. */
async function holding(work) {
  stopRequested = false;
  generating = true;
  try { return await work(); } finally {
    generating = false;
    answerQueued();
  }
}

function generate({ id, messages, text, options, reserve }) {
  return holding(async () => {
    const start = startPrompt(id, { messages, text }, options, reserve);
    let reason = null;
    // The prompt's tokens but the last run in prefill; the first step runs that one and each
    // later step one decoded token.
    const atStart = { ...gpuCalls };
    await prefillPrompt(id, start);
    const afterPrefill = { ...gpuCalls };
    const prefilled = engine.stats().prefill_tokens;
    let afterFirstStep = null;
    let steps = 0;
    for (;;) {
      // Yield to the event loop so that "stop" (and meter requests) can arrive between tokens.
      await tick();
      answerQueued();
      if (stopRequested) { engine.stop(); reason = "stopped"; break; }
      const step = await engine.next();
      if (step === null) break;
      if (++steps === 1) afterFirstStep = { ...gpuCalls };
      event(id, "token", { step });
      if (step.done) { reason = step.done; break; }
      if (fault) await injectFaults(++tokensPosted);
    }
    // Nothing after the last step calls WebGPU (a stop, an end, posting the token).
    const gpu_calls = gpu ? { prompt_token: callsPerToken(atStart, afterPrefill, prefilled), decode_token: callsPerToken(afterFirstStep, gpuCalls, steps - 1) } : null;
    return { reason, stats: engine.stats(), wasm_bytes: wasm?.memory.buffer.byteLength ?? null, gpu_calls };
  });
}

// Classroom mode: one token per request, and the next token's distribution computed ahead
// (peek), so that the page can show the candidates before the draw and force any of them.
let classroom = false; // a classroom answer is running between steps

/** The next token's candidates and pipeline, or how the answer ended. */
async function peekNext(topN) {
  const candidates = await engine.peek();
  if (candidates === null) { classroom = false; return { done: true, reason: null, stats: engine.stats() }; }
  return { candidates, pipeline: engine.pipeline(null, topN) };
}

function classroomStart({ id, messages, ids, options, reserve }) {
  return holding(async () => {
    const start = startPrompt(id, { messages, ids }, options, reserve);
    if (!(await prefillPrompt(id, start))) { engine.stop(); return { done: true, reason: "stopped", stats: engine.stats() }; }
    classroom = true;
    return peekNext(options.top_n || 10);
  });
}

function classroomStep({ forced, sampling, topN }) {
  if (!classroom) throw new Error("no classroom answer is running: send a message first");
  return holding(async () => {
    if (sampling) engine.set_sampling(sampling);
    const step = engine.commit(forced ?? undefined);
    if (step === null) { classroom = false; return { step: null, forced: null, next: { done: true, reason: null, stats: engine.stats() } }; }
    if (step.done) { classroom = false; return { step, forced: forced ?? null, next: { done: true, reason: step.done, stats: engine.stats() } }; }
    return { step, forced: forced ?? null, next: await peekNext(topN || 10) };
  });
}

function tokens({ text, messages, generation }) {
  const prompt = messages ? engine.render(messages, generation !== false) : text;
  const ids = Array.from(engine.tokenize(prompt));
  return { ids, texts: engine.token_texts(Uint32Array.from(ids)) };
}

// What each op does. Ops that only read the engine wait while a step holds it.
const OPS = {
  load: (data) => { loadId = data.id; return load(data).finally(() => { loadId = null; }); },
  generate,
  stop: () => {
    stopRequested = true;
    if (classroom && !generating) { engine.stop(); classroom = false; }
    return null;
  },
  reset: () => {
    classroom = false;
    if (engine && !generating) engine.reset(); else stopRequested = true;
    return null;
  },
  cstart: classroomStart,
  cstep: classroomStep,
  cpipeline: (data) => (classroom ? engine.pipeline(data.sampling, data.topN || 10) : null),
  tokens,
  fit: (data) => engine.fit(data.messages, data.reserve),
  render: (data) => engine.render(data.messages),
};
const WAIT_FOR_STEP = new Set(["cpipeline", "tokens", "fit", "render"]);

async function handle(data) {
  const op = OPS[data.op];
  if (generating && WAIT_FOR_STEP.has(data.op)) { enqueue(data); return; }
  try {
    if (!op) throw new Error(`unknown op ${data.op}`);
    if (!engine && data.op !== "load") throw new Error("no model is loaded");
    if (data.thinking !== undefined) engine.set_thinking(data.thinking);
    post({ id: data.id, type: "result", value: await op(data) });
  } catch (e) {
    post({ id: data.id, type: "error", error: asError(e) });
  }
}

self.onmessage = ({ data }) => handle(data);
