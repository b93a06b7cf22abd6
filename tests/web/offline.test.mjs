// Offline and private, in Debian's chromium: the service worker serves the app shell with the
// network off, the model cache (OPFS) serves the model, an interrupted download leaves no
// broken model and resumes with a Range request, a corrupt download is discarded, a new build
// offers a reload, the storage manager lists and deletes, the page carries its CSP, and no
// request leaves the page's origin. Usage: node tests/web/offline.test.mjs [dist-dir]
import { cpSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { createHash } from "node:crypto";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { serve, browser, check, report, assert, assertEq, assertClean, waitState, sendMessage, texts, cardRow, artifacts } from "./harness.mjs";

const dist = resolve(process.argv[2] || "dist");
// A private copy of the site, so that a "new build" can be made by changing its sw.js.
const site = mkdtempSync(join(tmpdir(), "ember-offline-"));
cpSync(dist, site, { recursive: true, filter: (src) => !src.startsWith(join(dist, "models")) });
symlinkSync(join(dist, "models"), join(site, "models"));
const tinySha = createHash("sha256").update(readFileSync(join(artifacts, "tiny-chat.gguf"))).digest("hex");
const server = await serve(
  { "/sub/": site, "/fixtures/": artifacts, "/flaky/": artifacts, "/lfs-bad/": artifacts, "/lfs-good/": artifacts },
  { flaky: ["/flaky/"], etags: { "/lfs-bad/": "0".repeat(64), "/lfs-good/": tinySha } });
const origin = server.origin;
const reference = JSON.parse(readFileSync("tests/fixtures/smollm2.json", "utf8")).cases.find((c) => c.kind === "chat");

const b = await browser({ origin });
let page = b.page;
page.on("dialog", (d) => d.accept());
const stored = async () => {
  await page.getByRole("button", { name: "Model" }).click();
  await page.waitForFunction(() => document.querySelector("#stored-models li"));
  await page.waitForTimeout(200);
  const items = await page.locator("#stored-models li span").allTextContents();
  await page.keyboard.press("Escape");
  return items;
};
const opfs = () => page.evaluate(async () => {
  const d = await (await navigator.storage.getDirectory()).getDirectoryHandle("models", { create: true });
  const names = [];
  for await (const [name] of d.entries()) names.push(name.replace(/^[0-9a-f]{32}/, "K"));
  return names.sort();
});

try {
  await check("the page carries a strict CSP and a web app manifest with icons", async () => {
    await page.goto(`${origin}/sub/?model=../fixtures/tiny-chat.gguf&backend=cpu`);
    await waitState(page, "ready");
    // The first visit: no service worker controls the page yet, so it is not isolated, and the
    // engine runs its single-thread build.
    assertEq(await page.evaluate(() => crossOriginIsolated), false, "isolated on the first visit");
    assert(/on the CPU, 1 thread \(as asked\)/.test(await page.getByTestId("status").textContent()), await page.getByTestId("status").textContent());
    const csp = await page.locator('meta[http-equiv="Content-Security-Policy"]').getAttribute("content");
    for (const part of ["default-src 'self'", "script-src 'self' 'wasm-unsafe-eval'", "connect-src 'self'", "object-src 'none'"]) assert(csp.includes(part), `CSP lacks ${part}: ${csp}`);
    // Enforced: an injected inline script and a fetch to another origin are refused.
    const violations = await page.evaluate(() => new Promise((done) => {
      const seen = [];
      document.addEventListener("securitypolicyviolation", (e) => seen.push(e.effectiveDirective));
      const s = document.createElement("script");
      s.textContent = "window.__inline = 1";
      document.body.append(s);
      fetch("http://127.0.0.2:9/beacon").catch(() => {}).finally(() => setTimeout(() => done([seen, window.__inline ?? null]), 300));
    }));
    assertEq(violations, [["script-src-elem", "connect-src"], null], "CSP violations");
    const manifest = await page.evaluate(async () => (await fetch(document.querySelector('link[rel="manifest"]').href)).json());
    assertEq(manifest.icons.map((i) => i.sizes), ["192x192", "512x512", "any"], "icons");
    for (const i of manifest.icons) assert((await page.request.get(new URL(i.src, `${origin}/sub/`).href)).ok(), `icon ${i.src}`);
  });

  await check("one visit with the default model, then offline: the app, the model and the chat work", async () => {
    await page.goto(`${origin}/sub/?backend=cpu&temperature=0&repeat_penalty=1&max_tokens=8`);
    await waitState(page, "ready", 300_000);
    await page.evaluate(async () => { await navigator.serviceWorker.ready; });
    await page.waitForFunction(() => navigator.serviceWorker.controller !== null);
    const models = await stored();
    assert(models.some((m) => /^SmolLM2-135M-Instruct\.Q4_1\.gguf · 98\.4 MB · SHA-256 verified$/.test(m)), JSON.stringify(models));
    await b.context.setOffline(true);
    const before = server.requests.length;
    try {
      await page.reload();
      await waitState(page, "ready", 300_000);
      // The threaded engine is precached too: offline, the CPU still runs on every core.
      const cores = await page.evaluate(() => navigator.hardwareConcurrency);
      const status = await page.getByTestId("status").textContent();
      assert(cores === 1 || new RegExp(`on the CPU, ${Math.min(cores, 8)} threads`).test(status), status);
      await sendMessage(page, reference.messages[0].content, { timeout: 300_000 });
    } finally {
      await b.context.setOffline(false);
    }
    const [answer] = await texts(page, "assistant");
    assert(reference.greedy_text.startsWith(answer) && answer.includes("Paris"), answer);
    // The browser's own update check of sw.js is not the page's and ignores the emulation.
    assertEq(server.requests.slice(before).filter((r) => r.path !== "/sub/sw.js"), [], "requests that reached the server while offline");
    await page.screenshot({ path: join(artifacts, "offline.png") });
  });

  await check("threads: under the service worker the page (on a subpath) is cross-origin isolated, the CPU runs on every core, answers as the reference, and stops at once", async () => {
    await page.goto(`${origin}/sub/?backend=cpu&temperature=0&repeat_penalty=1&max_tokens=8`);
    await waitState(page, "ready", 300_000);
    const [isolated, cores] = await page.evaluate(() => [crossOriginIsolated, navigator.hardwareConcurrency]);
    assertEq(isolated, true, "isolated by the service worker's headers");
    const want = Math.min(cores, 8);
    const status = await page.getByTestId("status").textContent();
    assert(new RegExp(`on the CPU, ${want} threads? \\(as asked\\)`).test(status), `${want} threads: ${status}`);
    await sendMessage(page, reference.messages[0].content, { timeout: 300_000 });
    const answer = (await texts(page, "assistant")).at(-1);
    assert(reference.greedy_text.startsWith(answer) && answer.includes("Paris"), answer);
    // Stop, mid-answer, with the pool of workers busy: the answer ends within 0.3 s.
    await page.goto(`${origin}/sub/?backend=cpu&temperature=0&repeat_penalty=1&max_tokens=400`);
    await waitState(page, "ready", 300_000);
    await sendMessage(page, "Tell me a long story about a cat.", { wait: false });
    await page.waitForFunction(() => (document.querySelector('#transcript [data-role="assistant"]:last-child .content')?.textContent.length || 0) > 20, null, { timeout: 60_000 });
    const took = await page.evaluate(() => new Promise((done) => {
      const t0 = performance.now();
      const status = document.querySelector('[data-testid="status"]');
      new MutationObserver((_, o) => { if (status.dataset.state === "ready") { o.disconnect(); done(performance.now() - t0); } })
        .observe(status, { attributes: true, attributeFilter: ["data-state"] });
      document.getElementById("stop").click();
    }));
    assert(took < 300, `Stop took ${took.toFixed(0)} ms`);
    // Settable: ?threads=1 runs the single-thread build.
    await page.goto(`${origin}/sub/?backend=cpu&threads=1`);
    await waitState(page, "ready", 300_000);
    assert(/on the CPU, 1 thread \(as asked\)/.test(await page.getByTestId("status").textContent()), await page.getByTestId("status").textContent());
  });

  await check("a threaded engine that does not start (a worker that fails to load, or never answers) is no hang: one thread runs, and the card says why", async () => {
    const cores = await page.evaluate(() => navigator.hardwareConcurrency);
    assert(cores > 1, `this check needs two cores, the machine has ${cores}`);
    for (const [fault, why] of [["pool-fail", /threaded engine did not start: a thread's worker failed/], ["pool-hang", /threaded engine did not start: the thread pool did not start within 2 s/]]) {
      await page.goto(`${origin}/sub/?backend=cpu&temperature=0&repeat_penalty=1&max_tokens=8&fault=${fault}`);
      await waitState(page, "ready", 60_000);
      const status = await page.getByTestId("status").textContent();
      assert(/on the CPU, 1 thread \(as asked\)/.test(status), `${fault}: ${status}`);
      const card = await page.evaluate(cardRow, "Backend");
      assert(why.test(card || ""), `${fault}: the card says ${JSON.stringify(card)}`);
      await sendMessage(page, reference.messages[0].content, { timeout: 120_000 });
      const answer = (await texts(page, "assistant")).at(-1);
      assert(reference.greedy_text.startsWith(answer) && answer.includes("Paris"), `${fault}: ${answer}`);
    }
  });

  await check("an interrupted download leaves no model behind, and the next try resumes with Range", async () => {
    const complete = (await opfs()).filter((f) => f === "K.gguf").length;
    await page.goto(`${origin}/sub/?model=../flaky/tiny-chat.gguf&backend=cpu`);
    await waitState(page, "error");
    assert(/interrupted after [\d.]+ MB/.test(await page.getByTestId("status").textContent()), await page.getByTestId("status").textContent());
    const files = await opfs();
    assert(files.includes("K.part") && files.filter((f) => f === "K.gguf").length === complete, `a .part and no new model: ${files}`);
    const before = server.requests.length;
    await page.reload();
    await waitState(page, "ready");
    const ranged = server.requests.slice(before).filter((r) => r.path === "/flaky/tiny-chat.gguf");
    assertEq(ranged.length, 1, "one request for the rest");
    assert(/^bytes=[1-9]\d*-$/.test(ranged[0].range), `a Range request: ${ranged[0].range}`);
    assert((await opfs()).filter((f) => f === "K.gguf").length === complete + 1 && !(await opfs()).includes("K.part"), "committed");
    await sendMessage(page, "resumed");
  });

  await check("a download whose SHA-256 does not match is discarded; a matching one is marked verified", async () => {
    const before = await opfs();
    await page.goto(`${origin}/sub/?model=../lfs-bad/tiny-chat.gguf&backend=cpu`);
    await waitState(page, "error");
    assert(/corrupt \(its SHA-256 does not match\)/.test(await page.getByTestId("status").textContent()), await page.getByTestId("status").textContent());
    assertEq(await opfs(), before, "nothing stored");
    await page.goto(`${origin}/sub/?model=../lfs-good/tiny-chat.gguf&backend=cpu`);
    await waitState(page, "ready");
    assert((await stored()).filter((m) => /^tiny-chat\.gguf · 0\.3 MB · SHA-256 verified$/.test(m)).length === 1, "verified");
  });

  await check("a model that does not fit the storage quota is loaded, not kept, and the page says so", async () => {
    const before = await opfs();
    await page.goto(`${origin}/sub/?model=${encodeURIComponent("../fixtures/tiny-chat.gguf?quota")}&backend=cpu&storage_quota_mb=0.01`);
    await waitState(page, "ready");
    const n = await page.locator("#notice").textContent();
    assert(/does not fit in this browser's storage .* it is loaded but not kept for offline use/.test(n), n);
    assertEq(await opfs(), before, "nothing stored");
    await sendMessage(page, "works without the cache");
  });

  await check("the storage manager deletes a stored model and every conversation", async () => {
    await sendMessage(page, "one");
    await page.getByRole("button", { name: "Model" }).click();
    const list = page.getByRole("list", { name: "Stored models" });
    const n = await list.getByRole("listitem").count();
    assertEq(n, 4, "stored models (the default, and the tiny one from three URLs)");
    assert(/MB used of [\d]+ MB/.test(await page.locator("#storage-used").textContent()), "usage shown");
    // A deletion the browser refuses is reported, and the model stays listed.
    await page.evaluate(() => {
      const real = FileSystemDirectoryHandle.prototype.removeEntry;
      window.__restoreRemove = () => { FileSystemDirectoryHandle.prototype.removeEntry = real; };
      FileSystemDirectoryHandle.prototype.removeEntry = function (name, ...rest) {
        if (name.endsWith(".gguf")) return Promise.reject(new DOMException("the file is in use", "NoModificationAllowedError"));
        return real.call(this, name, ...rest);
      };
    });
    await list.getByRole("button", { name: /^Delete stored model: tiny-chat.gguf/ }).first().click();
    await page.waitForFunction(() => !document.getElementById("storage-error").hidden);
    assert(/tiny-chat.gguf could not be deleted \(the file is in use\)/.test(await page.locator("#storage-error").textContent()), await page.locator("#storage-error").textContent());
    assertEq(await list.getByRole("listitem").count(), n, "still listed");
    await page.evaluate(() => window.__restoreRemove());
    await list.getByRole("button", { name: /^Delete stored model: tiny-chat.gguf/ }).first().click();
    await page.waitForFunction((k) => document.querySelectorAll("#stored-models li").length === k, n - 1);
    assert(await page.locator("#storage-error").isHidden(), "the error goes with a deletion that works");
    await page.getByRole("button", { name: "Delete all conversations" }).click();
    await page.keyboard.press("Escape");
    // The deletion is asynchronous (IndexedDB): the list empties when it is done.
    await page.waitForFunction(() => document.querySelectorAll("#conversations li").length === 0, null, { timeout: 5_000 }).catch(() => {});
    assertEq(await page.locator("#conversations li").count(), 0, "no conversations left");
    await page.reload();
    await waitState(page, "ready");
    assertEq(await page.locator("#conversations li").count(), 0, "none after a reload");
  });

  await check("a new build installs beside the old one and the page offers a reload", async () => {
    const sw = join(site, "sw.js");
    const text = readFileSync(sw, "utf8");
    const version = /"version":"([0-9a-f]+)"/.exec(text)[1];
    writeFileSync(sw, text.replace(`"version":"${version}"`, `"version":"${version}-next"`));
    await page.reload();
    await page.waitForSelector("#update:not([hidden])", { timeout: 30_000 });
    await page.getByRole("button", { name: "Reload" }).click();
    await page.waitForFunction(async (v) => (await caches.keys()).join() === `ember-app-${v}-next`, version, { timeout: 30_000, polling: 250 });
    await waitState(page, "ready");
  });

  await check("no request to another origin, no page error", async () => {
    assertClean(b);
  });
} finally {
  await b.close();
  await server.close();
  rmSync(site, { recursive: true, force: true });
}
process.exit(report("web, offline and private") ? 1 : 0);
