// The Model dialog's catalog (www/js/catalog.js), in Node: every entry is a single GGUF file the
// app can load, and whether it fits is decided before anything is downloaded, by the same rule
// the worker applies when it loads.
// Usage: node --test tests/web/catalog.test.mjs
import { test } from "node:test";
import assert from "node:assert/strict";
import { CATALOG, fits, memoryNeeded } from "../../www/js/catalog.js";

const MiB = 2 ** 20;
const GiB = 2 ** 30;

test("each entry is a Hugging Face resolve URL of one GGUF file, or the site's own default", () => {
  assert.equal(CATALOG.filter((m) => m.url === null).length, 1, "one default, served by the site");
  for (const m of CATALOG.filter((m) => m.url)) {
    const u = new URL(m.url);
    assert.equal(u.origin, "https://huggingface.co", m.id);
    assert.match(u.pathname, /^\/[^/]+\/[^/]+\/resolve\/main\/[^/]+\.gguf$/, m.id);
    assert.ok(m.size > 50e6 && m.size < 2e9, `${m.id}: size`);
    assert.ok(["llama", "qwen2", "qwen3", "gemma3"].includes(m.arch), `${m.id}: an architecture Ember runs`);
    assert.ok(m.licence, `${m.id}: licence`);
  }
  assert.equal(new Set(CATALOG.map((m) => m.id)).size, CATALOG.length, "ids are unique");
});

test("memory: ok, tight or no against the device's memory", () => {
  const m = { size: 400e6, url: "x" };
  const need = memoryNeeded(m.size);
  assert.ok(need >= 1.15 * m.size && need <= 1.15 * m.size + 256 * MiB, "the weights (read a tensor at a time) and the engine");
  assert.equal(memoryNeeded(m.size, { kept: false }), need + m.size, "a download that is not kept is held once more");
  assert.ok(fits(m, { storageFree: 0 }).need > need, "no room to keep it: the download is held");
  assert.equal(fits(m, { memoryBytes: 8 * GiB }).memory, "ok");
  assert.equal(fits(m, { memoryBytes: need / 0.8 }).memory, "tight");
  assert.equal(fits(m, { memoryBytes: need - 1 }).memory, "no");
  assert.equal(fits(m, {}).memory, "ok", "unknown memory: only wasm's own limit applies");
});

test("memory: past what wasm32 can hold is too large whatever the device", () => {
  // The worker allows weights of 3.5 GiB: files of about 3 GiB, read a tensor at a time.
  assert.equal(fits({ size: 1.2 * GiB, url: "x" }, {}).memory, "ok");
  assert.equal(fits({ size: 2.9 * GiB, url: "x" }, {}).memory, "ok");
  assert.equal(fits({ size: 3.2 * GiB, url: "x" }, { memoryBytes: 64 * GiB }).memory, "no");
});

test("storage: kept, not kept, or unknown", () => {
  const m = { size: 300 * MiB, url: "x" };
  assert.equal(fits(m, { storageFree: 1000 * MiB }).storage, "ok");
  assert.equal(fits(m, { storageFree: 100 * MiB }).storage, "no");
  assert.equal(fits(m, {}).storage, null);
  assert.equal(fits({ size: 300 * MiB, url: null }, { storageFree: 0 }).storage, "ok", "the site's own model is there already");
});
