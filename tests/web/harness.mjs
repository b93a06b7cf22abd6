// Shared by the browser tests: a static server for the built site (under a subpath, as on
// GitHub Pages), Debian's chromium through playwright-core (never a downloaded browser), a
// request log per origin, and a tiny check/report helper.
import { chromium } from "playwright-core";
import { createServer } from "node:http";
import { createReadStream, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { extname, join, normalize, resolve } from "node:path";

export const artifacts = resolve("tests/artifacts");
mkdirSync(artifacts, { recursive: true });

const TYPES = { ".html": "text/html; charset=utf-8", ".js": "text/javascript", ".mjs": "text/javascript", ".css": "text/css",
                ".wasm": "application/wasm", ".json": "application/json", ".gguf": "application/octet-stream", ".png": "image/png" };

/** Serves `mounts` ({"/sub/": dir}) on 127.0.0.1 with Range support; resolves to {origin,
 *  close, requests}. Under a mount listed in `flaky`, a whole-file request is cut off halfway
 *  (a dropped connection); requests with a Range are served. */
export function serve(mounts, { port = 0, flaky = [], etags = {}, headers: extra = {} } = {}) {
  const requests = [];
  const server = createServer((req, res) => {
    const url = new URL(req.url, "http://x");
    requests.push({ path: url.pathname, range: req.headers.range || null });
    const mount = Object.keys(mounts).find((m) => url.pathname.startsWith(m));
    if (!mount) { res.writeHead(404).end("not found"); return; }
    let rel = decodeURIComponent(url.pathname.slice(mount.length)) || "index.html";
    if (rel.endsWith("/")) rel += "index.html";
    const file = normalize(join(mounts[mount], rel));
    if (!file.startsWith(resolve(mounts[mount])) || !existsSync(file) || !statSync(file).isFile()) { res.writeHead(404).end("not found"); return; }
    const size = statSync(file).size;
    const headers = { ...extra, "content-type": TYPES[extname(file)] || "application/octet-stream", "cache-control": "no-store", "accept-ranges": "bytes", etag: `"${size}-${statSync(file).mtimeMs}"` };
    if (etags[mount]) headers["x-linked-etag"] = `"${etags[mount]}"`;
    const m = /^bytes=(\d+)-$/.exec(req.headers.range || "");
    if (m && Number(m[1]) < size) {
      const start = Number(m[1]);
      res.writeHead(206, { ...headers, "content-range": `bytes ${start}-${size - 1}/${size}`, "content-length": size - start });
      if (req.method === "HEAD") { res.end(); return; }
      createReadStream(file, { start }).pipe(res);
      return;
    }
    res.writeHead(200, { ...headers, "content-length": size });
    if (req.method === "HEAD") { res.end(); return; }
    if (flaky.includes(mount)) {
      const half = Math.floor(size / 2);
      createReadStream(file, { start: 0, end: half - 1 }).on("end", () => setTimeout(() => res.socket?.destroy(), 50)).pipe(res, { end: false });
      return;
    }
    createReadStream(file).pipe(res);
  });
  return new Promise((ok) => server.listen(port, "127.0.0.1", () => ok({
    origin: `http://127.0.0.1:${server.address().port}`,
    requests,
    close: () => new Promise((done) => { server.closeAllConnections(); server.close(done); }),
  })));
}

export const CHROMIUM_ARGS = ["--no-sandbox", "--disable-quic", "--no-first-run", "--disable-background-networking",
  "--disable-component-update", "--disable-sync", "--enable-unsafe-webgpu", "--disable-dev-shm-usage"];

/** A fresh chromium profile; records every request that leaves `origin`. `restart()` closes
 *  the browser and opens it again on the same profile (what survives a browser restart). */
export async function browser({ origin, viewport = { width: 1280, height: 800 }, locale = "en-US", allowed = [], webgpu = true, args = [] } = {}) {
  const profile = mkdtempSync(join(tmpdir(), "ember-chromium-"));
  const b = { foreign: [], pageErrors: [] };
  const launch = async () => {
    b.context = await chromium.launchPersistentContext(profile, {
      executablePath: "/usr/bin/chromium", headless: true, viewport, locale, acceptDownloads: true,
      args: [...(webgpu ? CHROMIUM_ARGS : CHROMIUM_ARGS.filter((a) => a !== "--enable-unsafe-webgpu")), ...args],
    });
    b.context.on("request", (r) => {
      const u = r.url();
      if (!u.startsWith(origin) && !u.startsWith("blob:") && !u.startsWith("data:") && !allowed.some((a) => u.startsWith(a))) b.foreign.push(u);
    });
    b.page = b.context.pages()[0] || (await b.context.newPage());
    b.page.on("pageerror", (e) => b.pageErrors.push(e.message));
  };
  await launch();
  b.restart = async () => { await b.context.close(); await launch(); return b.page; };
  b.close = async () => { await b.context.close(); rmSync(profile, { recursive: true, force: true }); };
  return b;
}

const results = [];
export async function check(name, fn) {
  const t0 = Date.now();
  try { await fn(); results.push([name, true]); console.log(`ok   ${name} (${((Date.now() - t0) / 1000).toFixed(1)} s)`); }
  catch (e) { results.push([name, false]); console.log(`FAIL ${name}: ${e.stack || e.message}`); }
}

export function report(suite) {
  const failed = results.filter((r) => !r[1]).length;
  console.log(`${suite}: ${results.length - failed} passed, ${failed} failed`);
  return failed;
}

export function assert(cond, msg) { if (!cond) throw new Error(msg); }
export function assertEq(got, want, what) {
  if (JSON.stringify(got) !== JSON.stringify(want)) throw new Error(`${what}: got ${JSON.stringify(got)}, want ${JSON.stringify(want)}`);
}

// Page helpers, shared by the suites.
export const waitState = (page, state, timeout = 60_000) => page.waitForFunction(
  (s) => document.querySelector('[data-testid="status"]')?.dataset.state === s, state, { timeout });

/** Resolves once an answer started after `before` assistant messages has ended. */
export const answered = (page, before, timeout = 120_000) => page.waitForFunction(
  (n) => document.querySelectorAll('#transcript [data-role="assistant"]').length > n
    && document.getElementById("transcript").getAttribute("aria-busy") !== "true"
    && document.querySelector('[data-testid="status"]').dataset.state === "ready", before, { timeout });

export const assistantCount = (page) => page.locator('#transcript [data-role="assistant"]').count();

export async function sendMessage(page, text, { wait = true, timeout = 120_000 } = {}) {
  const before = await assistantCount(page);
  await page.getByRole("textbox", { name: "Message" }).fill(text);
  await page.getByRole("button", { name: "Send" }).click();
  if (wait) await answered(page, before, timeout);
}

/** What a whole session left behind: no request to another origin, no uncaught page error. */
export function assertClean(b) {
  assertEq(b.foreign, [], "requests to other origins");
  assertEq(b.pageErrors, [], "page errors");
}

/** The open conversation as the "Export JSON" button downloads it (the file's text). */
export async function exportJson(page) {
  const [dl] = await Promise.all([page.waitForEvent("download"), page.getByRole("button", { name: "Export JSON" }).click()]);
  return readFileSync(await dl.path(), "utf8");
}

/** In the page (self-contained, for any driver's eval): the model card's value for the row
 *  labelled `label` ("Backend"), or null. */
export const cardRow = (label) => [...document.querySelectorAll("#model-card dt")].find((e) => e.textContent === label)?.nextElementSibling?.textContent ?? null;

/** Writes the bad models the suites load, made from the tiny model (written by the native
 *  tests) into `artifacts`: `truncated.gguf` (its last 1000 bytes cut off) and `mamba-big.gguf`
 *  (its architecture renamed "mamba", then 16 MB of padding: a file Ember refuses from its
 *  first megabytes). Returns mamba-big's length. */
export function writeBadModels() {
  const tinyBytes = readFileSync(join(artifacts, "tiny-chat.gguf"));
  const key = Buffer.from("general.architecture");
  const at = tinyBytes.indexOf(key) + key.length + 4 + 8;
  assertEq(tinyBytes.subarray(at, at + 5).toString(), "llama", "the architecture's value");
  const mamba = Buffer.concat([tinyBytes.subarray(0, at), Buffer.from("mamba"), tinyBytes.subarray(at + 5), Buffer.alloc(16 << 20)]);
  writeFileSync(join(artifacts, "mamba-big.gguf"), mamba);
  writeFileSync(join(artifacts, "truncated.gguf"), tinyBytes.subarray(0, tinyBytes.length - 1000));
  return mamba.length;
}

export const texts = (page, role) => page.locator(`#transcript [data-role="${role}"] .content`).allTextContents();
