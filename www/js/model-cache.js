// The model cache, in the origin-private file system (OPFS), shared by the engine's worker
// (which downloads into it) and the page (which lists and deletes). Layout under models/:
//   <key>.part  a download in progress (resumed with a Range request where the server allows)
//   <key>.gguf  a complete, verified model, committed by renaming the .part file
//   <key>.json  what is known of it: {url, name, size, sha256, verified, saved}
// An interrupted download therefore never leaves a .gguf behind.
// Where there is no OPFS (WebKitGTK; a private window in Firefox), a complete, verified model is
// kept in Cache Storage instead (cache "ember-models", keyed by its URL, its description in the
// x-ember-meta header): no resume there, but offline use still works.
const hex = (buf) => [...new Uint8Array(buf)].map((b) => b.toString(16).padStart(2, "0")).join("");
export const sha256 = async (bytes) => hex(await crypto.subtle.digest("SHA-256", bytes));

async function dir() {
  const root = await navigator.storage.getDirectory();
  return root.getDirectoryHandle("models", { create: true });
}

export async function keyFor(url) {
  return (await sha256(new TextEncoder().encode(url))).slice(0, 32);
}

async function fileOf(d, name) {
  try { return await (await d.getFileHandle(name)).getFile(); } catch { return null; }
}

async function readJson(d, name) {
  const f = await fileOf(d, name);
  if (!f) return null;
  try { return JSON.parse(await f.text()); } catch { return null; }
}

async function writeJson(d, name, value) {
  const w = await (await d.getFileHandle(name, { create: true })).createWritable();
  await w.write(JSON.stringify(value));
  await w.close();
}

const FALLBACK = "ember-models";
const fallbackStore = () => (self.caches ? caches.open(FALLBACK) : Promise.reject(new Error("no Cache Storage")));
const metaOf = (res) => { try { return JSON.parse(res.headers.get("x-ember-meta")); } catch { return null; } };

/** OPFS's models folder, or null where this browser has none (or refuses it). */
async function dirOrNull() {
  try { return await dir(); } catch { return null; }
}

/** The cached, verified copy of `url`, or null. */
export async function lookup(url) {
  const d = await dirOrNull();
  if (!d) {
    const res = await (await fallbackStore()).match(url);
    const meta = res && metaOf(res);
    if (!meta) return null;
    const file = await res.blob();
    return file.size === meta.size ? { meta, file } : null;
  }
  const key = await keyFor(url);
  const meta = await readJson(d, `${key}.json`);
  const file = await fileOf(d, `${key}.gguf`);
  if (!meta || !file || meta.url !== url || file.size !== meta.size) return null;
  return { meta, file };
}

/** Keeps a verified download in Cache Storage (no OPFS here); the kept copy, read from disk, so
 *  that the downloaded chunks can be let go. */
async function keepInFallback(url, blob, meta) {
  const store = await fallbackStore();
  await store.put(url, new Response(blob, { headers: { "content-type": "application/octet-stream", "x-ember-meta": JSON.stringify(meta) } }));
  const kept = await store.match(url);
  return kept ? kept.blob() : blob;
}

/** The models kept in Cache Storage, as `list()` gives them. */
async function listFallback() {
  // A browser that refuses Cache Storage too (a private window may) has nothing kept.
  if (!(await (self.caches?.has(FALLBACK) ?? false).catch(() => false))) return [];
  const store = await caches.open(FALLBACK);
  const out = [];
  for (const req of await store.keys()) {
    const meta = metaOf(await store.match(req));
    if (meta) out.push({ key: await keyFor(meta.url), complete: true, size: meta.size, url: meta.url, name: meta.name, verified: Boolean(meta.verified) });
  }
  return out;
}

/** Every stored model (complete ones, and downloads in progress). */
export async function list() {
  const d = await dirOrNull();
  if (!d) return (await listFallback()).sort((a, b) => a.name.localeCompare(b.name));
  const out = [];
  for await (const [name, handle] of d.entries()) {
    const m = /^([0-9a-f]{32})\.(gguf|part)$/.exec(name);
    if (!m) continue;
    const file = await handle.getFile();
    const meta = (await readJson(d, `${m[1]}.json`)) || (await readJson(d, `${m[1]}.part.json`)) || {};
    out.push({ key: m[1], complete: m[2] === "gguf", size: file.size, url: meta.url || "", name: meta.name || name, verified: Boolean(meta.verified) });
  }
  return out.sort((a, b) => a.name.localeCompare(b.name));
}

/** Deletes a stored model's files, the model's own first. A file that is not there is fine; one
 *  that cannot be deleted (in use by another tab, a browser refusal) is an error, and what is
 *  left (its description included) stays: the caller says so rather than showing a model as
 *  gone that is not. */
export async function remove(key) {
  const d = await dirOrNull();
  if (!d) {
    const kept = (await listFallback()).filter((m) => m.key === key);
    const store = kept.length ? await fallbackStore() : null;
    for (const m of kept) if (!(await store.delete(m.url))) throw new Error("Cache Storage kept it");
    return;
  }
  for (const n of [`${key}.gguf`, `${key}.part`, `${key}.json`, `${key}.part.json`]) {
    try { await d.removeEntry(n); } catch (e) { if (e?.name !== "NotFoundError") throw e; }
  }
}

/** How much of a download `checkHead` sees: a GGUF's header and metadata are in its first
 *  megabytes (a 262k-token vocabulary takes about 8). */
const HEAD_BYTES = 4 << 20;

export class DownloadError extends Error {
  constructor(kind, vars) { super(kind); this.kind = kind; this.vars = vars; }
}

/**
 * Downloads `url` into the cache and returns it as a Blob (the cached file, or where there is no
 * room, the downloaded chunks): the model is never one buffer, so the engine can read it a tensor
 * at a time. Worker only (it writes with a sync access handle). `sha256` is the expected hash
 * where known; otherwise a Hugging Face LFS hash from the response headers is used. `hasher()`
 * makes an incremental SHA-256 ({update(bytes), hex()}); the worker passes the engine's.
 * `onProgress(loaded, total)` reports bytes; `onNotice(kind, vars)` reports a model that is
 * loaded but not cached (no room). One tab at a time downloads a given model (a Web Lock per
 * model): a second tab waits, then reads the copy the first one kept.
 */
export async function download(url, options = {}) {
  if (!navigator.locks) return downloadOnce(url, options);
  return navigator.locks.request(`ember-model:${await keyFor(url)}`, async () => {
    let hit = null;
    try { hit = await lookup(url); } catch { /* no OPFS */ }
    if (hit) return hit.file;
    return downloadOnce(url, options);
  });
}

async function downloadOnce(url, options) {
  const { sha256: expected = null, onProgress = () => {}, onNotice = () => {}, quota: quotaLimit = null, hasher, checkHead = null } = options;
  // Without a usable OPFS (a private window, WebKitGTK) the model is kept in Cache Storage once
  // verified; without that either, it is downloaded and not kept.
  let d = null;
  let fallback = false;
  try { d = await dir(); } catch (e) {
    if (self.caches) fallback = true; else onNotice("errCache", { m: e.message || String(e) });
  }
  const key = await keyFor(url);
  const name = decodeURIComponent(new URL(url).pathname.split("/").pop() || url);
  const partMeta = d ? await readJson(d, `${key}.part.json`) : null;
  const partFile = partMeta?.url === url ? await fileOf(d, `${key}.part`) : null;
  let have = partFile ? partFile.size : 0;

  const headers = {};
  if (have > 0) {
    headers.Range = `bytes=${have}-`;
    if (partMeta.validator) headers["If-Range"] = partMeta.validator;
  }
  let res;
  try { res = await fetch(url, { headers }); } catch { throw new DownloadError("errNetwork", { url }); }
  if (res.status === 404) throw new DownloadError("errNotFound", { url });
  if (res.status === 416 && d) { await remove(key); return downloadOnce(url, options); }
  if (!res.ok) throw new DownloadError("errHttp", { url, status: res.status });
  if (res.status !== 206) have = 0; // the server sent the whole file
  const range = /\/(\d+)$/.exec(res.headers.get("content-range") || "");
  const length = Number(res.headers.get("content-length")) || 0;
  const total = range ? Number(range[1]) : length ? have + length : 0;
  const etag = (res.headers.get("x-linked-etag") || res.headers.get("etag") || "").replace(/^W\//, "").replace(/"/g, "");
  const want = expected || (/^[0-9a-f]{64}$/.test(etag) ? etag : null);

  // Room for it? Otherwise load it without keeping it.
  let cache = d !== null;
  if (cache) try {
    const estimate = await navigator.storage.estimate();
    const usage = estimate.usage ?? 0;
    const quota = quotaLimit ?? estimate.quota ?? Infinity;
    if (total && total - have > quota - usage) {
      cache = false;
      onNotice("errQuota", { need: (total / 1e6).toFixed(0), free: ((quota - usage) / 1e6).toFixed(0) });
    }
  } catch { /* no estimate: try */ }

  // The hash runs over the file as it arrives; a resumed download first hashes what it kept
  // (read before the write handle opens, which would make the snapshot unreadable).
  const hash = hasher();
  if (have > 0) {
    const kept = partFile.stream().getReader();
    for (let r = await kept.read(); !r.done; r = await kept.read()) hash.update(r.value);
  }
  let handle = null;
  if (cache) {
    try {
      const validator = res.headers.get("etag") || res.headers.get("last-modified") || null;
      await writeJson(d, `${key}.part.json`, { url, name, validator });
      handle = await (await d.getFileHandle(`${key}.part`, { create: true })).createSyncAccessHandle();
      if (have === 0) handle.truncate(0);
    } catch (e) {
      onNotice("errCache", { m: e.message || String(e) });
      // Not kept: what a resumed download kept is still the .part file, hashed above.
      cache = false;
    }
  }
  const chunks = [];
  let loaded = have;
  // The file's first bytes, for `checkHead` (a fresh download only: a resumed one was checked).
  let head = have === 0 && checkHead ? [] : null;
  const judge = (total) => {
    const bytes = new Uint8Array(head.reduce((a, c) => a + c.length, 0));
    let at = 0;
    for (const c of head) { bytes.set(c, at); at += c.length; }
    head = null;
    checkHead(bytes, total || bytes.length);
  };
  const reader = res.body.getReader();
  try {
    let last = 0;
    for (;;) {
      let step;
      try { step = await reader.read(); } catch { throw new DownloadError("errInterrupted", { url, got: (loaded / 1e6).toFixed(1) }); }
      if (step.done) { if (head) judge(total || loaded); break; }
      if (head) {
        head.push(step.value);
        if (loaded + step.value.length >= HEAD_BYTES) judge(total);
      }
      if (handle) handle.write(step.value, { at: loaded }); else chunks.push(step.value);
      hash.update(step.value);
      loaded += step.value.length;
      if (loaded - last > 1 << 20 || loaded === total) { onProgress(loaded, total); last = loaded; }
    }
    if (total && loaded !== total) throw new DownloadError("errInterrupted", { url, got: (loaded / 1e6).toFixed(1) });
    if (handle) {
      handle.flush();
      handle.close();
      handle = null;
    }
    const got = hash.hex();
    if (want && got !== want) {
      if (d) await remove(key);
      throw new DownloadError("errChecksum", { url });
    }
    const meta = { url, name, size: loaded, sha256: got, verified: Boolean(want), saved: Date.now() };
    if (fallback) {
      const blob = new Blob(chunks);
      try {
        return await keepInFallback(url, blob, meta);
      } catch (e) {
        onNotice("errCache", { m: e.message || String(e) });
        return blob;
      }
    }
    // Not kept: a resumed download's first part is the .part file (no handle wrote to it).
    if (!cache) return new Blob(have > 0 ? [partFile, ...chunks] : chunks);
    // Commit: the complete file takes its final name only now.
    const part = await d.getFileHandle(`${key}.part`);
    await part.move(d, `${key}.gguf`);
    await writeJson(d, `${key}.json`, meta);
    try { await d.removeEntry(`${key}.part.json`); } catch { /* gone */ }
    return await fileOf(d, `${key}.gguf`);
  } catch (e) {
    // A file refused from its first bytes is not downloaded further, nor kept.
    if (!(e instanceof DownloadError)) {
      try { await reader.cancel(); } catch { /* closed */ }
      if (handle) { try { handle.close(); } catch { /* closed */ } handle = null; }
      if (d) await remove(key).catch(() => {});
    }
    throw e;
  } finally {
    if (handle) { try { handle.flush(); handle.close(); } catch { /* closed */ } }
  }
}
