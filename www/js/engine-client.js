// The one engine client: the page's side of the worker's envelope (documented at the top of
// worker.js). Every request gets an id, and replies are matched to it here and nowhere else;
// events stream to the request's handlers; errors arrive as EngineError with a `kind` (never
// English text to parse). The WebGPU → CPU fallback policy lives here too (cpuFallback).

/** An engine error: `kind` names it (the engine's kinds such as context_full or too_large, the
 *  loader's such as errNotFound, or fatal ones such as gpuLost), `vars` its arguments. */
export class EngineError extends Error {
  constructor({ kind = null, vars = {}, message = "" } = {}) {
    super(message || kind || "engine error");
    this.name = "EngineError";
    this.kind = kind;
    this.vars = vars || {};
  }
}

/** Why a WebGPU engine should start again on the CPU after `error`, as an i18n key and its
 *  vars, or null. A failure that is not the file's fault (no kind: WebGPU itself failed, or a
 *  device error, a lost GPU, a crash) goes to the CPU, which may still run the model; so does a
 *  model too large for the GPU's buffers. The GPU running out of memory is left to the user
 *  (errGpuMemory: the page offers the CPU), and so is every fault of the file. */
export function cpuFallback(error, backend) {
  if (backend !== "webgpu") return null;
  const kind = error?.kind ?? null;
  if (kind === null || kind === "device" || kind === "gpuLost" || kind === "fatal") return { key: "whyGpuFailed", vars: { m: error.message } };
  if (kind === "too_large") return { key: "whyGpuFailed", vars: { m: error.message } };
  return null;
}

/** Which backend to use: the one asked for, or WebGPU where the browser has an adapter. The
 *  reason (an i18n key and vars) says why when it is not WebGPU by choice. */
async function chooseBackend(pref) {
  if (pref === "cpu" || pref === "webgpu") return { backend: pref, why: { key: "whyForced", vars: {} } };
  if (!("gpu" in navigator)) return { backend: "cpu", why: { key: "whyNoGpu", vars: {} } };
  try {
    return (await navigator.gpu.requestAdapter()) ? { backend: "webgpu", why: null } : { backend: "cpu", why: { key: "whyNoAdapter", vars: {} } };
  } catch {
    return { backend: "cpu", why: { key: "whyNoAdapter", vars: {} } };
  }
}

export class EngineClient {
  /** Loads `source` ({url, sha256?} | {file} | {files}) in a fresh worker on `backend` ("auto",
   *  "webgpu" or "cpu"), falling back to the CPU where cpuFallback says so. Resolves to a ready
   *  client; rejects with an EngineError (kind "aborted" when `signal` aborts). `why` overrides
   *  the reason shown for the backend. */
  static async load(source, { backend = "auto", limits = {}, why = null, workerUrl = new URL("../worker.js", import.meta.url), onProgress = () => {}, onNotice = () => {}, signal } = {}) {
    const chosen = await chooseBackend(backend);
    if (why) chosen.why = why;
    const start = (b, reason) => EngineClient.#start(source, b, reason, { limits, workerUrl, onProgress, onNotice, signal });
    try {
      return await start(chosen.backend, chosen.why);
    } catch (e) {
      const fallback = cpuFallback(e, chosen.backend);
      if (!fallback || signal?.aborted) throw e;
      return start("cpu", fallback);
    }
  }

  static async #start(source, backend, why, { limits, workerUrl, onProgress, onNotice, signal }) {
    const client = new EngineClient(new Worker(workerUrl, { type: "module" }), source, backend, why);
    const abort = () => { client.terminate(); client.#failAll(new EngineError({ kind: "aborted", message: "the load was cancelled" })); };
    if (signal?.aborted) abort();
    signal?.addEventListener("abort", abort, { once: true });
    try {
      const ready = await client.request("load", { source, backend, limits }, {
        progress: (e) => onProgress(e),
        notice: (e) => onNotice(e.kind, e.vars),
      });
      client.info = ready.info;
      client.loadS = ready.load_s;
      client.threads = ready.threads ?? 1;
      client.threadsError = ready.threads_error ?? null;
      client.wasmBytes = ready.wasm_bytes ?? null;
      return client;
    } catch (e) {
      client.terminate();
      throw e;
    } finally {
      signal?.removeEventListener("abort", abort);
    }
  }

  constructor(worker, source, backend, why) {
    /** Whether a reasoning model thinks before it answers (its template's `enable_thinking`). */
    this.thinking = true;
    this.worker = worker;
    this.source = source;
    this.backend = backend;
    /** Why this backend, when it is not WebGPU by choice: {key, vars} or null. */
    this.why = why;
    this.info = null;
    this.loadS = 0;
    /** How many threads the CPU's products use (1 on WebGPU). */
    this.threads = 1;
    /** Why the threaded engine did not start, where it was tried (else null). */
    this.threadsError = null;
    /** The engine's wasm memory once loaded: the most loading took (wasm memory only grows). */
    this.wasmBytes = null;
    /** Called once with an EngineError when the engine dies (a trap in wasm, the GPU lost). */
    this.onfatal = null;
    this.nextId = 1;
    this.pending = new Map(); // id → {resolve, reject, handlers}
    this.dead = null;
    worker.onmessage = ({ data }) => this.#receive(data);
    worker.onerror = (e) => this.#die(new EngineError({ kind: "fatal", vars: { m: e.message || "the worker failed" }, message: e.message || "the worker failed" }));
  }

  #receive(data) {
    if (data.type === "fatal") { this.#die(new EngineError(data.error)); return; }
    const p = this.pending.get(data.id);
    if (!p) return;
    if (data.type === "event") { p.handlers[data.event]?.(data); return; }
    this.pending.delete(data.id);
    if (data.type === "result") p.resolve(data.value);
    else p.reject(new EngineError(data.error));
  }

  #failAll(error) {
    for (const p of this.pending.values()) p.reject(error);
    this.pending.clear();
  }

  #die(error) {
    if (this.dead) return;
    this.dead = error;
    this.worker.terminate();
    this.#failAll(error);
    this.onfatal?.(error);
  }

  /** Sends `op` with `args`; `handlers` maps event names to callbacks. Resolves to the result. */
  request(op, args = {}, handlers = {}) {
    if (this.dead) return Promise.reject(this.dead);
    const id = this.nextId++;
    // A conversation is rendered with the thinking switch in force (a reasoning model's template
    // reads it), whichever request renders it: the request's own, else this client's.
    const thinking = args.messages !== undefined ? { thinking: args.thinking ?? this.thinking } : {};
    return new Promise((resolve, reject) => {
      this.pending.set(id, { resolve, reject, handlers });
      this.worker.postMessage({ id, op, ...args, ...thinking });
    });
  }

  /** Streams an answer: `on.start(e)`, `on.prefill(e)`, `on.token(step)`. Resolves to
   *  {reason, stats, wasm_bytes, gpu_calls}; reason "stopped" after stop(). On WebGPU,
   *  `gpu_calls` (also kept as `gpuCalls`, the last answer's) counts the WebGPU calls per
   *  prompt token and per decoded token: {prompt_token, decode_token}, each {dispatches,
   *  submits, bind_groups, writes, readbacks, readback_bytes} or null. */
  async generate({ messages, text, options, reserve = 0, thinking }, on = {}) {
    const r = await this.request("generate", { messages, text, options, reserve, thinking }, {
      start: (e) => on.start?.(e), prefill: (e) => on.prefill?.(e), token: (e) => on.token?.(e.step),
    });
    if (r.gpu_calls?.decode_token) this.gpuCalls = r.gpu_calls;
    return r;
  }

  /** Stops the running generation (or classroom answer). */
  stop() { return this.request("stop").catch(() => null); }
  /** Forgets the cache: a new conversation. */
  reset() { return this.request("reset").catch(() => null); }
  /** How `messages` fit the context window with `reserve` tokens for the answer (a ChatFit). */
  fit(messages, reserve, thinking) { return this.request("fit", { messages, reserve, thinking }); }
  /** The exact prompt text for `messages`. */
  render(messages, thinking) { return this.request("render", { messages, thinking }); }
  /** Token ids and texts of `text`, or of the rendered `messages` (the assistant's turn opened
   *  after them unless `generation` is false). */
  tokens({ text, messages, generation, thinking }) { return this.request("tokens", { text, messages, generation, thinking }); }

  // Classroom mode: each call resolves to what comes next ({candidates, pipeline} or {done, reason, stats}).
  classroomStart({ messages, ids, options, reserve, thinking }, on = {}) {
    return this.request("cstart", { messages, ids, options, reserve, thinking }, { start: (e) => on.start?.(e), prefill: (e) => on.prefill?.(e) });
  }
  /** Draws the next token, or takes `forced`: {step, forced, next}. */
  classroomStep({ forced = null, sampling, topN }) { return this.request("cstep", { forced, sampling, topN }); }
  /** The pipeline for the next token under other sampler settings, from the same logits. */
  pipeline(sampling, topN) { return this.request("cpipeline", { sampling, topN }); }

  /** Ends the worker; requests still running reject with kind "aborted". */
  terminate() {
    this.dead ||= new EngineError({ kind: "aborted", message: "the engine was closed" });
    this.worker.terminate();
    this.#failAll(this.dead);
  }
}
