// Model names shown to people (www/js/names.js), in Node: a file's or repository's name without
// its format and quantisation, words apart.
// Usage: node --test tests/web/names.test.mjs
import { test } from "node:test";
import assert from "node:assert/strict";
import { readable } from "../../www/js/names.js";

test("files and repositories read as the model's name", () => {
  assert.equal(readable("SmolLM2-135M-Instruct.Q4_1.gguf"), "SmolLM2 135M Instruct");
  assert.equal(readable("SmolLM2-135M-Instruct-GGUF"), "SmolLM2 135M Instruct");
  assert.equal(readable("gemma-3-270m-it-Q8_0.gguf"), "gemma 3 270m it");
  assert.equal(readable("Llama-3.2-1B-Instruct-Q4_K_M.gguf"), "Llama 3.2 1B Instruct");
  assert.equal(readable("qwen2.5-0.5b-instruct-q4_k_m.gguf"), "qwen2.5 0.5b instruct");
  assert.equal(readable("Qwen3-0.6B-Q8_0.gguf"), "Qwen3 0.6B");
  assert.equal(readable("model-f16.gguf"), "model");
  assert.equal(readable("tiny-chat.gguf"), "tiny chat");
  assert.equal(readable("llama3"), "llama3", "a folder's name as it is");
});
