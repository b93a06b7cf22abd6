// Ember's API for site builders: a small model behind your own page, in a few lines, with no
// bundler and no server (README, "Embedding Ember"; types in ember.d.ts). It is the app's own
// engine client (js/engine-client.js) behind OpenAI's chat-completions shape:
//
//   import { Ember } from "./ember.mjs";
//   const ember = await Ember.create({ model: "models/SmolLM2-135M-Instruct.Q4_1.gguf" });
//   const stream = await ember.chat.completions.create({ messages, stream: true });
//   for await (const chunk of stream) out.textContent += chunk.choices[0]?.delta?.content ?? "";
//
// The engine runs in its worker (worker.js beside this file), so the page never blocks. Requests
// run one at a time, in the order they were made. Errors are EmberError with a `kind`.
//
// Ember's own chat page and classroom mode talk to the engine through this module too: what the
// page needs beyond OpenAI's shape (the exact prompt, how a conversation fits the context, the
// sampler's pipeline one token at a time) is here as well, under names OpenAI does not use.
import { EngineClient, EngineError } from "./js/engine-client.js";
// Where a request leaves a sampler setting out: the app's defaults, chosen by measurement to
// answer well and never loop. A request without a seed draws one.
import { SAMPLER_DEFAULTS } from "./js/defaults.js";

/** An error with a `kind` a program can branch on (see KINDS), `vars` its details, and `cause`
 *  the engine's own error where there was one. */
export class EmberError extends Error {
  constructor(kind, message, { vars = {}, cause } = {}) {
    super(message, cause ? { cause } : undefined);
    this.name = "EmberError";
    this.kind = kind;
    this.vars = vars;
  }
}

/** The engine's and the loader's error kinds, as the API names them. */
const KINDS = {
  errNotFound: "not_found", errFolderMissing: "not_found",
  errHttp: "network", errInterrupted: "network", errChecksum: "checksum",
  errHtml: "not_a_model", errNotGguf: "not_a_model", bad_gguf: "not_a_model", truncated: "not_a_model",
  bad_format: "not_a_model", missing_key: "not_a_model", bad_key: "not_a_model", bad_tensor: "not_a_model",
  errPickedFiles: "not_a_model",
  unsupported_arch: "unsupported_architecture", unsupported_type: "unsupported", unsupported: "unsupported",
  tokenizer: "not_a_model", template: "template",
  gpuLost: "gpu_lost", errGpuMemory: "out_of_memory", too_large: "out_of_memory",
  context_full: "context_full", aborted: "aborted", superseded: "aborted",
  bad_setting: "invalid_argument", device: "device", fatal: "engine_failed", io: "io",
};

/** An engine error as an EmberError. A network failure on another origin is most often CORS
 *  (the browser hides which): it is named so. */
function toEmberError(e, modelUrl) {
  if (e instanceof EmberError) return e;
  if (!(e instanceof EngineError)) return new EmberError("engine_failed", e?.message || String(e), { cause: e });
  let kind = KINDS[e.kind] ?? (e.kind ? e.kind : "engine_failed");
  if (e.kind === "errNetwork") {
    const crossOrigin = modelUrl && new URL(modelUrl).origin !== globalThis.location?.origin;
    kind = crossOrigin ? "cors" : "network";
  }
  const detail = e.message || e.vars?.detail || e.vars?.m || "";
  const what = {
    not_found: `the model was not found (${e.vars?.url ?? e.vars?.name ?? ""})`,
    cors: `the model's server refused this page (CORS), or the network is down: ${e.vars?.url ?? ""}`,
    not_a_model: "this is not a model Ember can read",
    unsupported_architecture: `the model's architecture ${e.vars?.arch ? `"${e.vars.arch}" ` : ""}is not supported`,
    out_of_memory: "the model does not fit in the memory available",
    context_full: "the conversation does not fit the model's context window",
    gpu_lost: "the GPU was lost",
    aborted: "aborted",
  }[kind];
  return new EmberError(kind, [what, detail].filter(Boolean).join(": ") || kind, { vars: e.vars, cause: e });
}

const now = () => Math.floor(Date.now() / 1000);
let lastId = 0;
const newId = (prefix) => `${prefix}-${Date.now().toString(36)}${(++lastId).toString(36)}`;
const encoder = new TextEncoder();

/** The engine's generation options from OpenAI-style parameters. */
function generateOptions(p) {
  for (const [k, zero] of [["n", 1], ["frequency_penalty", 0], ["presence_penalty", 0]]) {
    if (p[k] !== undefined && p[k] !== null && p[k] !== zero) throw new EmberError("invalid_argument", `${k} other than ${zero} is not supported`);
  }
  const grammar = grammarOf(p.response_format);
  const sampling = { ...SAMPLER_DEFAULTS, seed: Math.floor(Math.random() * 2 ** 31) };
  const set = (key, value) => { if (value !== undefined && value !== null) sampling[key] = value; };
  set("temperature", p.temperature);
  set("top_p", p.top_p);
  set("top_k", p.top_k);
  set("min_p", p.min_p);
  set("repeat_penalty", p.repetition_penalty);
  set("seed", p.seed);
  const stop = p.stop === undefined || p.stop === null ? [] : Array.isArray(p.stop) ? p.stop : [p.stop];
  const topN = p.logprobs ? Math.max(1, Math.min(20, p.top_logprobs ?? 0)) : 0;
  if (p.top_logprobs !== undefined && (p.top_logprobs < 0 || p.top_logprobs > 20)) throw new EmberError("invalid_argument", "top_logprobs must be between 0 and 20");
  return { sampling, max_tokens: p.max_tokens ?? p.max_completion_tokens ?? 256, stop, top_n: topN, grammar };
}

/** The engine's grammar for a response_format: OpenAI's json_object and json_schema, and
 *  Ember's regex ({type: "regex", pattern}) and Lark grammar ({type: "lark", grammar}). Every
 *  token is drawn from those the grammar allows, so the text always parses. */
function grammarOf(format) {
  if (!format || format.type === "text") return null;
  switch (format.type) {
    case "json_object": return { type: "json_object" };
    case "json_schema": {
      const schema = format.json_schema?.schema;
      if (!schema || typeof schema !== "object") throw new EmberError("invalid_argument", "response_format json_schema needs json_schema.schema, an object");
      return { type: "json_schema", schema };
    }
    case "regex": return { type: "regex", pattern: String(format.pattern ?? "") };
    case "lark": return { type: "lark", grammar: String(format.grammar ?? "") };
    default: throw new EmberError("invalid_argument", `response_format type ${JSON.stringify(format.type)} is not text, json_object, json_schema, regex or lark`);
  }
}

/** A step's logprobs entry in OpenAI's shape, from the distribution the token was drawn from. */
function logprobOf(step, topLogprobs) {
  const entry = (text, prob) => ({ token: text, logprob: Math.log(prob), bytes: [...encoder.encode(text)] });
  return {
    ...entry(step.piece, step.prob),
    top_logprobs: step.top.slice(0, topLogprobs).map((c) => entry(c.text, c.prob)),
  };
}

/** OpenAI's finish_reason for the engine's stop reason. */
const finishReason = (done) => (done === "max_tokens" || done === "context_full" ? "length" : "stop");

/** A queue that a producer pushes to and an async iterator drains. */
class Channel {
  #items = [];
  #wake = null;
  #ended = false;
  #error = null;
  /** Set when the reader leaves the loop early (`break`): the generation then stops. */
  cancelled = false;
  onCancel = null;
  push(item) { this.#items.push(item); this.#wake?.(); }
  end(error = null) { this.#ended = true; this.#error = error; this.#wake?.(); }
  async *[Symbol.asyncIterator]() {
    try {
      for (;;) {
        if (this.#items.length) { yield this.#items.shift(); continue; }
        if (this.#ended) { if (this.#error) throw this.#error; return; }
        await new Promise((r) => { this.#wake = r; });
        this.#wake = null;
      }
    } finally {
      if (!this.#ended) { this.cancelled = true; this.onCancel?.(); }
    }
  }
}

export class Ember {
  #client;
  #queue = Promise.resolve();
  #modelUrl;

  /** Loads a model: `model` is a URL (relative to the page), a File or Blob (a .gguf), or the
   *  files of a model folder. `backend` is "auto" (WebGPU where the browser has it, else the
   *  CPU), "webgpu" or "cpu". `onProgress({stage, loaded, total})` reports the download and the
   *  load. `signal` cancels it. Resolves to an Ember; rejects with an EmberError. */
  static async create({ model, sha256, backend = "auto", onProgress = () => {}, onNotice = () => {}, signal, threads, maxContext, limits = {}, faults, reason = null } = {}) {
    if (!model) throw new EmberError("invalid_argument", "Ember.create needs a model (a URL, a File, or a folder's files)");
    let source, modelUrl = null;
    if (typeof model === "string" || model instanceof URL) {
      modelUrl = new URL(model, globalThis.document?.baseURI ?? globalThis.location?.href).href;
      source = { url: modelUrl, ...(sha256 ? { sha256 } : {}) };
    } else if (model instanceof Blob) source = { file: model };
    else if (Array.isArray(model) || model instanceof FileList) source = { files: [...model] };
    else throw new EmberError("invalid_argument", "model must be a URL, a File or Blob, or a list of files");
    if (!["auto", "webgpu", "cpu"].includes(backend)) throw new EmberError("invalid_argument", `backend must be "auto", "webgpu" or "cpu", not ${JSON.stringify(backend)}`);
    const workerUrl = new URL("./worker.js", import.meta.url);
    try {
      // `faults` injects the worker's test faults (worker.js), for the tests; `limits` are the
      // engine's own (memory_mb, quota_mb: test limits too).
      const all = { ...limits, ...(threads ? { threads } : {}), ...(maxContext ? { max_context: maxContext } : {}), ...(faults ? { fault: faults } : {}) };
      const client = await EngineClient.load(source, { backend, workerUrl, onProgress, onNotice, signal, limits: all, why: reason });
      return new Ember(client, modelUrl);
    } catch (e) {
      throw toEmberError(e, modelUrl);
    }
  }

  constructor(client, modelUrl) {
    this.#client = client;
    this.#modelUrl = modelUrl;
    const thinking = (p) => p?.chat_template_kwargs?.enable_thinking ?? this.thinking;
    const wrap = (promise) => promise.catch((e) => { throw toEmberError(e, modelUrl); });
    this.chat = {
      /** OpenAI's `chat.completions.create`: a conversation's next message. */
      completions: { create: (params) => this.#create("chat", params) },
      /** The exact text the model reads for `messages`, its turn opened after them. */
      render: (messages, params = {}) => wrap(client.render(plain(messages), thinking(params))),
      /** How `messages` fit the context with room for `max_tokens`: {tokens, total_tokens,
       *  dropped, first, reserve, limit}; kind context_full when even the last turn does not.
       *  A newer call supersedes one still waiting for a generation's token (kind aborted). */
      fit: (messages, params = {}) => wrap(client.fit(plain(messages), params.max_tokens ?? 256, thinking(params))),
    };
    /** OpenAI's (legacy) `completions.create`: raw text continued (base models). */
    this.completions = { create: (params) => this.#create("text", params) };
    /** One token at a time, with the sampler's pipeline shown: classroom mode's calls. The
     *  sampling objects are the engine's ({temperature, top_k, top_p, min_p, repeat_penalty,
     *  repeat_window, seed}); each call resolves to `next`: {candidates, pipeline} for the token
     *  to come, or {done, reason, stats}. */
    this.classroom = {
      /** Starts an answer to `messages` (or continues the token `ids`): → next. `on.start(e)`
       *  gets {fit, prompt_tokens, prompt_ids}, `on.prefill({done, total})` the prompt's progress. */
      start: ({ messages, ids, max_tokens = 256, sampling, top_n = 10, chat_template_kwargs }, on = {}) => this.#serial(() => client.classroomStart(
        { messages: messages && plain(messages), ids, options: { max_tokens, top_n, sampling: { ...SAMPLER_DEFAULTS, ...sampling } }, reserve: max_tokens, thinking: thinking({ chat_template_kwargs }) }, on)),
      /** Draws the next token, or takes `forced` (a token id): → {step, forced, next}. */
      step: ({ forced = null, sampling, top_n = 10 } = {}) => this.#serial(() => client.classroomStep({ forced, sampling: { ...SAMPLER_DEFAULTS, ...sampling }, topN: top_n })),
      /** The next token's pipeline under other sampler settings, from the same logits (nothing
       *  runs the model again). A newer call supersedes one still waiting (kind aborted). */
      pipeline: (sampling, topN = 10) => wrap(client.pipeline({ ...SAMPLER_DEFAULTS, ...sampling }, topN)),
      /** Ends the answer being stepped. */
      stop: () => client.stop(),
    };
  }

  /** The backend the model runs on: "webgpu" or "cpu". */
  get backend() { return this.#client.backend; }

  /** What was loaded: {url} (absolute), {file} or {files}. */
  get source() { return this.#client.source; }

  /** Whether a reasoning model thinks before it answers (its template's `enable_thinking`), where
   *  a request does not say (`chat_template_kwargs: {enable_thinking}`). */
  get thinking() { return this.#client.thinking; }
  set thinking(on) { this.#client.thinking = Boolean(on); }

  /** Called once with an EmberError (kind gpu_lost or engine_failed) if the engine dies: the
   *  GPU lost, a crash. Later calls reject with that error. */
  set onlost(fn) { this.#client.onfatal = fn ? (e) => fn(toEmberError(e, this.#modelUrl)) : null; }

  /** The model card: name, architecture, parameters, context length, licence, sizes, … and how
   *  it runs: backend, backend_reason ({key, vars}: why not WebGPU, where it is not by choice),
   *  threads, threads_error, load_s, wasm_bytes, and gpu_calls (the last answer's WebGPU calls
   *  per token). */
  info() {
    const c = this.#client;
    return { ...c.info, backend: c.backend, backend_reason: c.why, threads: c.threads, threads_error: c.threadsError, load_s: c.loadS, wasm_bytes: c.wasmBytes, gpu_calls: c.gpuCalls ?? null };
  }

  /** The token ids of `text` as the model reads it, with each token's text. Or, given
   *  {messages, generation}, those of the conversation's prompt (its answer's turn opened unless
   *  `generation` is false). */
  tokenize(input) {
    const args = typeof input === "string" ? { text: input } : { messages: plain(input.messages), generation: input.generation, thinking: input.chat_template_kwargs?.enable_thinking };
    return this.#serial(async () => {
      const r = await this.#client.tokens(args);
      return { ids: r.ids, tokens: r.texts };
    });
  }

  /** Forgets the cached prompt (a new conversation shares nothing with the last). */
  reset() { return this.#client.reset(); }

  /** Ends the engine and frees its memory; later calls reject with kind "aborted". */
  unload() { this.#client.terminate(); }

  /** Runs `work` after every request made before it. */
  #serial(work) {
    const run = this.#queue.then(work, work);
    this.#queue = run.catch(() => {});
    return run.catch((e) => { throw toEmberError(e, this.#modelUrl); });
  }

  #create(kind, params = {}) {
    const isChat = kind === "chat";
    if (isChat && !(Array.isArray(params.messages) && params.messages.length)) {
      return Promise.reject(new EmberError("invalid_argument", "messages must be a non-empty array of {role, content}"));
    }
    if (!isChat && typeof params.prompt !== "string") return Promise.reject(new EmberError("invalid_argument", "prompt must be a string"));
    let options;
    try { options = generateOptions(params); } catch (e) { return Promise.reject(e); }
    const meta = { id: newId(isChat ? "chatcmpl" : "cmpl"), created: now(), model: this.#client.info?.display_name ?? this.#client.info?.name ?? "ember" };
    const channel = new Channel();
    // The stream's iterator throws the request's error after the chunks that came before it.
    this.#serial(() => this.#run(isChat, params, options, meta, channel)).then(() => channel.end(), (e) => channel.end(e));
    return params.stream ? Promise.resolve(channel) : collect(channel, isChat, meta, params);
  }

  /** One generation, its chunks pushed to `channel` as they come; ends with the usage chunk. */
  async #run(isChat, params, options, meta, channel) {
    const signal = params.signal;
    if (signal?.aborted || channel.cancelled) throw new EmberError("aborted", "aborted before it started");
    // An abort, or a reader leaving the stream, stops the generation at the next token.
    const stop = () => this.#client.stop();
    signal?.addEventListener("abort", stop, { once: true });
    channel.onCancel = stop;
    const topLogprobs = params.logprobs ? params.top_logprobs ?? 0 : 0;
    const thinking = params.chat_template_kwargs?.enable_thinking ?? this.thinking;
    const chunk = (choice, extra = {}) => ({
      id: meta.id, object: isChat ? "chat.completion.chunk" : "text_completion", created: meta.created, model: meta.model,
      choices: choice ? [{ index: 0, ...choice }] : [], ...extra,
    });
    let promptTokens = 0, completionTokens = 0, last = null;
    try {
      const request = isChat ? { messages: plain(params.messages), thinking } : { text: params.prompt };
      // The answer's room is kept free: the oldest turns after the system prompt are left out
      // where the conversation would not leave it (the role chunk's `ember.dropped` counts them).
      const r = await this.#client.generate({ ...request, options, reserve: options.max_tokens }, {
        start: (e) => {
          promptTokens = e.prompt_tokens;
          const ember = { prompt_tokens: e.prompt_tokens, reused: e.reused ?? 0, dropped: e.fit?.dropped ?? 0 };
          if (isChat) channel.push(chunk({ delta: { role: "assistant", content: "" }, logprobs: null, finish_reason: null }, { ember }));
        },
        prefill: (e) => params.onPrefill?.({ done: e.done, total: e.total }),
        token: (step) => {
          completionTokens++;
          last = step;
          // The end-of-turn token is not part of the answer, nor of its logprobs (as OpenAI's).
          const logprobs = params.logprobs ? { content: step.done === "eos" ? [] : [logprobOf(step, topLogprobs)] } : null;
          const body = isChat ? { delta: { content: step.text }, logprobs } : { text: step.text, logprobs };
          channel.push(chunk({ ...body, finish_reason: step.done ? finishReason(step.done) : null }));
        },
      });
      // The error carries what was done before the stop, for a page that keeps the partial answer.
      if (r.reason === "stopped") throw new EmberError("aborted", "aborted", { vars: { stop_reason: "stopped", stats: r.stats, completion_tokens: completionTokens } });
      if (!last?.done) channel.push(chunk({ ...(isChat ? { delta: {} } : { text: "" }), logprobs: null, finish_reason: "stop" }));
      channel.push(chunk(null, {
        usage: { prompt_tokens: promptTokens, completion_tokens: completionTokens, total_tokens: promptTokens + completionTokens },
        ember: { stop_reason: last?.done ?? r.reason ?? null, stats: r.stats, backend: this.#client.backend, gpu_calls: r.gpu_calls ?? null },
      }));
    } finally {
      signal?.removeEventListener("abort", stop);
      channel.onCancel = null;
    }
  }
}

/** Messages as the engine takes them: role and text only. */
const plain = (messages) => messages.map(({ role, content }) => ({ role, content: String(content ?? "") }));

/** The non-streamed answer: the chunks put together. */
async function collect(channel, isChat, meta, params) {
  let text = "", finish = null, usage = null, ember = null;
  const content = [];
  for await (const c of channel) {
    if (c.usage) { usage = c.usage; ember = c.ember; continue; }
    const ch = c.choices[0];
    text += (isChat ? ch.delta.content : ch.text) ?? "";
    if (ch.logprobs) content.push(...ch.logprobs.content);
    finish = ch.finish_reason ?? finish;
  }
  const logprobs = params.logprobs ? { content } : null;
  const choice = isChat ? { index: 0, message: { role: "assistant", content: text }, logprobs, finish_reason: finish } : { index: 0, text, logprobs, finish_reason: finish };
  return { id: meta.id, object: isChat ? "chat.completion" : "text_completion", created: meta.created, model: meta.model, choices: [choice], usage, ember };
}
