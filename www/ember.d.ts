// Types of Ember's embedding API (ember.mjs, beside this file in the build output).

/** What an EmberError is about. */
export type EmberErrorKind =
  | "not_found" // the model URL answered 404, or a folder lacks a file
  | "cors" // the model is on another origin that refused this page (or the network is down)
  | "network" // the download failed or was interrupted
  | "checksum" // the download's SHA-256 differs from the one given
  | "not_a_model" // not a GGUF file or model folder Ember can read (an HTML page, a corrupt file, …)
  | "unsupported_architecture" // a model family Ember does not run (named in the message)
  | "unsupported" // a tensor type or feature Ember does not support
  | "template" // the model's chat template failed on these messages
  | "gpu_lost" // the WebGPU device was lost
  | "out_of_memory" // the model does not fit the GPU's or the tab's memory
  | "context_full" // the prompt does not fit the context window
  | "aborted" // an AbortSignal fired, the reader left the stream, or the model was unloaded
  | "invalid_argument" // a parameter out of range or of the wrong type
  | "device" // the compute device failed
  | "engine_failed"; // the engine crashed (its worker died)

export class EmberError extends Error {
  readonly name: "EmberError";
  readonly kind: EmberErrorKind;
  /** The error's details by name (url, status, needed, limit, …). */
  readonly vars: Record<string, unknown>;
  /** The engine's own error, where there was one: its `kind` is finer (errGpuMemory, errHtml, …). */
  readonly cause?: unknown;
}

export interface CreateOptions {
  /** A GGUF file's URL (relative to the page), a File or Blob, or a model folder's files. */
  model: string | URL | Blob | File[] | FileList;
  /** The file's SHA-256 (hex): a download that differs is refused (kind "checksum"). */
  sha256?: string;
  /** "auto" (default): WebGPU where the browser has an adapter, else the CPU. */
  backend?: "auto" | "webgpu" | "cpu";
  /** Download and load progress: stage "downloading", "reading", "uploading", "loading", … */
  onProgress?: (p: { stage: string; loaded: number; total: number }) => void;
  /** Cancels the load (rejects with kind "aborted"). */
  signal?: AbortSignal;
  /** Threads for the CPU (where the page is cross-origin isolated); default: the cores, at most 8. */
  threads?: number;
  /** The positions the engine keeps (default 2048, never past the model's own). */
  maxContext?: number;
  /** Notes on the load that are not errors (the cache was full, …): a kind and its details. */
  onNotice?: (kind: string, vars: Record<string, unknown>) => void;
  /** Why this backend, shown by info().backend_reason (the app says why it reloaded on the CPU). */
  reason?: { key: string; vars: Record<string, unknown> } | null;
  /** The engine's limits for tests: {memory_mb, quota_mb}. */
  limits?: Record<string, number>;
}

export interface ChatMessage {
  role: "system" | "user" | "assistant";
  content: string;
}

/** Sampling and length, OpenAI's names; a setting left out takes Ember's default (greedy with a
 *  mild repetition penalty, chosen by measurement). */
export interface SamplingParams {
  temperature?: number;
  top_p?: number;
  top_k?: number;
  min_p?: number;
  repetition_penalty?: number;
  /** The same seed and settings give the same tokens. Without one, a seed is drawn. */
  seed?: number;
  max_tokens?: number;
  max_completion_tokens?: number;
  /** Generation ends before any of these strings, which are left out of the text. */
  stop?: string | string[];
  /** Each token's log-probability in the distribution it was drawn from (after temperature,
   *  top-k, top-p and min-p; at temperature 0 that distribution at temperature 1, whose most
   *  probable token greedy decoding takes). */
  logprobs?: boolean;
  /** How many of that distribution's most probable tokens to list with each token (0–20). */
  top_logprobs?: number;
  /** Structured output: every token is drawn from those the format allows, so the text always
   *  parses (JSON valid against the schema, or the regex matched, or the Lark grammar's text). */
  response_format?:
    | { type: "text" }
    | { type: "json_object" }
    | { type: "json_schema"; json_schema: { name?: string; schema: object; strict?: boolean } }
    | { type: "regex"; pattern: string }
    | { type: "lark"; grammar: string };
  /** Stops the generation within a token; the request rejects (or the stream throws) with kind "aborted". */
  signal?: AbortSignal;
  /** The prompt's progress: tokens done of the total. */
  onPrefill?: (p: { done: number; total: number }) => void;
  /** Template arguments: a reasoning model's `enable_thinking` (default: the Ember's `thinking`). */
  chat_template_kwargs?: { enable_thinking?: boolean };
  /** Only 1. */
  n?: 1;
  frequency_penalty?: 0;
  presence_penalty?: 0;
}

export interface TokenLogprob {
  token: string;
  logprob: number;
  bytes: number[];
}

export interface Logprobs {
  content: (TokenLogprob & { top_logprobs: TokenLogprob[] })[];
}

export interface Usage {
  prompt_tokens: number;
  completion_tokens: number;
  total_tokens: number;
}

/** What Ember adds: why it stopped ("eos", "max_tokens", "stop_string", "context_full",
 *  "repeating"), its speed, and the backend. */
export interface EmberExtra {
  stop_reason: string | null;
  /** mask_s: the structured output's masks, included in the steps' times. */
  stats: { prefill_tokens: number; prefill_s: number; decode_tokens: number; decode_s: number; mask_s: number };
  backend: "webgpu" | "cpu";
  /** On WebGPU, the GPU calls per prompt token and per decoded token. */
  gpu_calls: { prompt_token: GpuCalls | null; decode_token: GpuCalls | null } | null;
}

export interface GpuCalls {
  dispatches: number;
  submits: number;
  bind_groups: number;
  writes: number;
  readbacks: number;
  readback_bytes: number;
}

/** The first chunk's addition: the prompt's size, the tokens reused from the last request's
 *  cache, and the turns left out so that max_tokens fit the context. */
export interface EmberStart {
  prompt_tokens: number;
  reused: number;
  dropped: number;
}

export type FinishReason = "stop" | "length";

export interface ChatCompletion {
  id: string;
  object: "chat.completion";
  created: number;
  model: string;
  choices: [{ index: 0; message: { role: "assistant"; content: string }; logprobs: Logprobs | null; finish_reason: FinishReason }];
  usage: Usage;
  ember: EmberExtra;
}

export interface ChatCompletionChunk {
  id: string;
  object: "chat.completion.chunk";
  created: number;
  model: string;
  /** Empty in the last chunk, which carries `usage`. */
  choices: { index: 0; delta: { role?: "assistant"; content?: string }; logprobs: Logprobs | null; finish_reason: FinishReason | null }[];
  usage?: Usage;
  /** EmberStart in the first chunk (the role), EmberExtra in the last (with usage). */
  ember?: EmberExtra | EmberStart;
}

export interface Completion {
  id: string;
  object: "text_completion";
  created: number;
  model: string;
  choices: { index: 0; text: string; logprobs: Logprobs | null; finish_reason: FinishReason | null }[];
  usage?: Usage;
  ember?: EmberExtra;
}

export interface ChatParams extends SamplingParams {
  messages: ChatMessage[];
  stream?: boolean;
}

export interface CompletionParams extends SamplingParams {
  /** Text the model continues as it is (a base model's use). */
  prompt: string;
  stream?: boolean;
}

/** The model card. */
export interface ModelInfo {
  name: string;
  display_name: string;
  architecture: string;
  n_params: number;
  config: { context_length: number; vocab_size: number; n_layer: number; d_model: number; [k: string]: unknown };
  backend: "webgpu" | "cpu";
  /** Why not WebGPU, where that was not the page's choice (an i18n key of the app, and its vars). */
  backend_reason: { key: string; vars: Record<string, unknown> } | null;
  threads: number;
  threads_error: string | null;
  load_s: number;
  wasm_bytes: number | null;
  gpu_calls: EmberExtra["gpu_calls"];
  [k: string]: unknown;
}

/** How a conversation fits the context window. */
export interface ChatFit {
  /** Prompt tokens of what is kept, and of the whole conversation. */
  tokens: number;
  total_tokens: number;
  /** Turns left out (after the system prompt), and the index of the first kept. */
  dropped: number;
  first: number;
  reserve: number;
  limit: number;
}

/** The engine's sampler settings (classroom calls). */
export interface Sampling {
  temperature?: number;
  top_k?: number;
  top_p?: number;
  min_p?: number;
  repeat_penalty?: number;
  repeat_window?: number;
  seed?: number;
}

/** A candidate for the next token, and the sampler's stages for it. */
export interface Next {
  done?: boolean;
  reason?: string;
  stats?: EmberExtra["stats"];
  candidates?: { token: number; text: string; prob: number }[];
  /** The most probable tokens, and each sampler stage's probabilities for them (softmax →
   *  temperature → top-k → top-p → min-p). */
  pipeline?: { tokens: { token: number; text: string; prob: number }[]; stages: { name: string; probs: number[]; [k: string]: unknown }[] };
}

/** One drawn token. */
export interface Step {
  token: number;
  text: string;
  piece: string;
  prob: number;
  top: { token: number; text: string; prob: number }[];
  done: string | null;
}

export class Ember {
  static create(options: CreateOptions): Promise<Ember>;
  readonly backend: "webgpu" | "cpu";
  /** What was loaded: {url, sha256?} (the URL absolute), {file} or {files}. */
  readonly source: { url?: string; sha256?: string; file?: Blob; files?: File[] };
  /** A reasoning model thinks before it answers unless this is false (default true). */
  thinking: boolean;
  /** Called once if the engine dies (GPU lost, a crash); later calls reject with that error. */
  onlost: ((error: EmberError) => void) | null;
  readonly chat: {
    completions: {
      create(params: ChatParams & { stream: true }): Promise<AsyncIterable<ChatCompletionChunk>>;
      create(params: ChatParams & { stream?: false }): Promise<ChatCompletion>;
    };
    /** The exact text the model reads for `messages`, the assistant's turn opened after them. */
    render(messages: ChatMessage[], params?: { chat_template_kwargs?: { enable_thinking?: boolean } }): Promise<string>;
    /** How `messages` fit with room for `max_tokens` (rejects with context_full when they cannot). */
    fit(messages: ChatMessage[], params?: { max_tokens?: number; chat_template_kwargs?: { enable_thinking?: boolean } }): Promise<ChatFit>;
  };
  /** One token at a time, the sampler's stages visible (Ember's classroom mode). */
  readonly classroom: {
    start(params: { messages?: ChatMessage[]; ids?: number[]; max_tokens?: number; sampling?: Sampling; top_n?: number; chat_template_kwargs?: { enable_thinking?: boolean } },
          on?: { start?: (e: { prompt_tokens: number; prompt_ids: number[]; fit: ChatFit | null }) => void; prefill?: (p: { done: number; total: number }) => void }): Promise<Next>;
    step(params?: { forced?: number | null; sampling?: Sampling; top_n?: number }): Promise<{ step: Step | null; forced: number | null; next: Next }>;
    pipeline(sampling: Sampling, topN?: number): Promise<Next["pipeline"]>;
    stop(): Promise<unknown>;
  };
  readonly completions: {
    create(params: CompletionParams & { stream: true }): Promise<AsyncIterable<Completion>>;
    create(params: CompletionParams & { stream?: false }): Promise<Completion>;
  };
  /** The token ids of `text` as the model reads it, with each token's text; or those of a
   *  conversation's prompt (its answer's turn opened unless `generation` is false). */
  tokenize(input: string | { messages: ChatMessage[]; generation?: boolean }): Promise<{ ids: number[]; tokens: string[] }>;
  info(): ModelInfo;
  /** Forgets the cached prompt. */
  reset(): Promise<unknown>;
  /** Ends the engine's worker and frees its memory. */
  unload(): void;
}
