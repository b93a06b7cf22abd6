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
}

export interface CreateOptions {
  /** A GGUF file's URL (relative to the page), a File or Blob, or a model folder's files. */
  model: string | URL | Blob | File[] | FileList;
  /** "auto" (default): WebGPU where the browser has an adapter, else the CPU. */
  backend?: "auto" | "webgpu" | "cpu";
  /** Download and load progress: stage "downloading", "reading", "uploading", "loading", … */
  onProgress?: (p: { stage: string; loaded: number; total: number }) => void;
  /** Cancels the load (rejects with kind "aborted"). */
  signal?: AbortSignal;
  /** Threads for the CPU (where the page is cross-origin isolated); default: the cores, at most 8. */
  threads?: number;
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
  stats: { prefill_tokens: number; prefill_s: number; decode_tokens: number; decode_s: number };
  backend: "webgpu" | "cpu";
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
  ember?: EmberExtra;
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
  threads: number;
  [k: string]: unknown;
}

export class Ember {
  static create(options: CreateOptions): Promise<Ember>;
  readonly backend: "webgpu" | "cpu";
  readonly chat: {
    completions: {
      create(params: ChatParams & { stream: true }): Promise<AsyncIterable<ChatCompletionChunk>>;
      create(params: ChatParams & { stream?: false }): Promise<ChatCompletion>;
    };
  };
  readonly completions: {
    create(params: CompletionParams & { stream: true }): Promise<AsyncIterable<Completion>>;
    create(params: CompletionParams & { stream?: false }): Promise<Completion>;
  };
  /** The token ids of `text` as the model reads it, with each token's text. */
  tokenize(text: string): Promise<{ ids: number[]; tokens: string[] }>;
  info(): ModelInfo;
  /** Ends the engine's worker and frees its memory. */
  unload(): void;
}
