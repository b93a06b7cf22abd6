// The web app as `trunk build --release` ships it, in Firefox ESR and in WebKitGTK (Safari's
// engine), beside the Chromium suites: the default model's greedy answer equals the reference's,
// Stop, a reload keeps the transcript, an offline reload answers (the model kept in OPFS, or in
// Cache Storage where there is none), a classroom Step, a local file through the model dialog,
// the stored model listed and deleted, no request to another origin, no console error. What an engine lacks
// (WebGPU, OPFS in a private window, SharedArrayBuffer) is asserted as the app's fallback, and
// what each engine has is written to tests/artifacts/engines.json (the README's support table).
// Usage: node tests/web/engines.test.mjs [dist-dir] [firefox|webkit]...
import { cpSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { serve, check, report, assert, assertEq, cardRow, artifacts } from "./harness.mjs";
import { firefox, webkit, installed } from "./drivers.mjs";

const dist = resolve(process.argv[2] || "dist");
const engines = process.argv.slice(3).length ? process.argv.slice(3) : ["firefox", "webkit"];
const reference = JSON.parse(readFileSync("tests/fixtures/smollm2.json", "utf8")).cases.find((c) => c.kind === "chat");
const question = reference.messages[0].content;
const tiny = join(artifacts, "tiny-chat.gguf");

// The site as built, with the probe first in the page and in the service worker's precache (so
// that it is there offline too). Nothing else changes.
const site = mkdtempSync(join(tmpdir(), "ember-engines-"));
cpSync(dist, site, { recursive: true, filter: (src) => !src.startsWith(join(dist, "models")) });
symlinkSync(join(dist, "models"), join(site, "models"));
cpSync("tests/web/files/probe.js", join(site, "probe.js"));
const html = readFileSync(join(site, "index.html"), "utf8");
writeFileSync(join(site, "index.html"), html.replace("<head>", '<head><script src="probe.js"></script>'));
const sw = readFileSync(join(site, "sw.js"), "utf8");
assert(sw.includes('"files":["./",'), "sw.js precache list");
writeFileSync(join(site, "sw.js"), sw.replace('"files":["./",', '"files":["./","probe.js",'));

const mounts = { "/sub/": site, "/fixtures/": artifacts };
let server = await serve(mounts);
const origin = server.origin;
const port = Number(new URL(origin).port);
const app = (query = "") => `${origin}/sub/?${query}`;

// In-page steps, each self-contained (they are sent to the page as source).
const stateIs = (s) => document.querySelector('[data-testid="status"]')?.dataset.state === s;
const statusText = () => document.querySelector('[data-testid="status"]').textContent;
const assistantTexts = () => [...document.querySelectorAll('#transcript [data-role="assistant"] .content')].map((e) => e.textContent);
const answeredAfter = (n) => document.querySelectorAll('#transcript [data-role="assistant"]').length > n
  && document.getElementById("transcript").getAttribute("aria-busy") !== "true"
  && document.querySelector('[data-testid="status"]').dataset.state === "ready";
const send = (text) => {
  const box = document.getElementById("message");
  box.value = text;
  box.dispatchEvent(new Event("input", { bubbles: true }));
  document.getElementById("send").click();
  return document.querySelectorAll('#transcript [data-role="assistant"]').length;
};
const click = (id) => { document.getElementById(id).click(); return true; };
const storedModels = async () => (await (await import(new URL("js/model-cache.js", location.href).href)).list()).map((m) => `${m.name} ${m.complete ? "complete" : "part"}`);
const features = async () => {
  let opfs = "absent";
  if (navigator.storage?.getDirectory) {
    try {
      const d = await navigator.storage.getDirectory();
      const f = await d.getFileHandle("ember-probe", { create: true });
      opfs = f.createWritable ? "writable" : "no createWritable";
      await d.removeEntry("ember-probe");
    } catch (e) { opfs = `refused (${e.name})`; }
  }
  return {
    userAgent: navigator.userAgent, webgpu: Boolean(navigator.gpu), opfs, locks: Boolean(navigator.locks),
    persist: Boolean(navigator.storage?.persist), sharedArrayBuffer: typeof SharedArrayBuffer !== "undefined",
    sharedWasmMemory: (() => { try { return new WebAssembly.Memory({ initial: 1, maximum: 1, shared: true }).buffer.byteLength > 0; } catch { return false; } })(),
    crossOriginIsolated: self.crossOriginIsolated === true, hardwareConcurrency: navigator.hardwareConcurrency,
    measureMemory: typeof performance.measureUserAgentSpecificMemory === "function", serviceWorker: "serviceWorker" in navigator,
    cacheStorage: !self.caches ? "absent" : await caches.open("ember-probe").then(() => caches.delete("ember-probe")).then(() => true, (e) => `refused (${e.name})`),
  };
};

const report_ = {};
const launch = { firefox, webkit };
for (const engine of engines) {
  if (!installed(engine)) { console.log(`FAIL ${engine}: not installed (scripts/setup-web.sh installs it)`); process.exitCode = 1; continue; }
  const d = await launch[engine]({ origin });
  const row = (report_[engine] = { version: d.version, requests_seen: d.sees, checks: {} });
  const named = (name) => `${engine}: ${name}`;
  const timed = async (name, fn) => {
    const t0 = Date.now();
    await check(named(name), fn);
    row.checks[name] = (Date.now() - t0) / 1000;
  };
  try {
    await timed("the default model loads (CPU: no WebGPU, said so) and answers greedily as the reference", async () => {
      const t0 = Date.now();
      await d.goto(app("temperature=0&repeat_penalty=1&max_tokens=8"));
      await d.waitFor(stateIs, "ready", 300_000);
      row.ready_s = (Date.now() - t0) / 1000;
      row.features = await d.eval(features);
      const status = await d.eval(statusText);
      if (!row.features.webgpu) assert(/on the CPU, \d+ threads? \(this browser has no WebGPU\)/.test(status), status);
      const before = await d.eval(send, question);
      await d.waitFor(answeredAfter, before, 120_000);
      const [answer] = await d.eval(assistantTexts);
      assert(reference.greedy_text.startsWith(answer) && answer.includes("Paris"), `answer ${JSON.stringify(answer)}`);
      row.status = await d.eval(statusText);
      // Kept for offline use: in OPFS, or where there is none, in Cache Storage.
      row.model_store = row.features.opfs === "writable" ? "OPFS" : "Cache Storage";
      assertEq(await d.eval(storedModels), ["SmolLM2-135M-Instruct.Q4_1.gguf complete"], `kept in ${row.model_store}`);
    });

    await timed("Stop ends an answer mid-way and keeps what was written", async () => {
      await d.goto(app("temperature=0&repeat_penalty=1&max_tokens=200&fault=slow:150"));
      await d.waitFor(stateIs, "ready", 120_000);
      const before = await d.eval(send, "Tell me a long story about a cat.");
      await d.waitFor((n) => (document.querySelectorAll('#transcript [data-role="assistant"] .content')[n]?.textContent.length || 0) > 10, before, 60_000);
      const t0 = Date.now();
      await d.eval(click, "stop");
      await d.waitFor(stateIs, "ready", 5_000);
      const took = Date.now() - t0;
      assert(took < 1500, `Stop took ${took} ms`);
      const texts = await d.eval(assistantTexts);
      assert(texts.at(-1).length > 10, "the partial answer is kept");
    });

    await timed("a reload keeps the transcript", async () => {
      const before = await d.eval(assistantTexts);
      await d.reload();
      await d.waitFor(stateIs, "ready", 120_000);
      await d.waitFor((n) => document.querySelectorAll('#transcript [data-role="assistant"]').length === n, before.length, 10_000);
      assertEq(await d.eval(assistantTexts), before, "answers after the reload");
    });

    await timed("under the service worker the page is isolated where the browser can be, and runs the CPU on its threads", async () => {
      await d.waitFor(() => navigator.serviceWorker?.controller != null, undefined, 30_000);
      await d.goto(app("temperature=0&repeat_penalty=1&max_tokens=8"));
      await d.waitFor(stateIs, "ready", 120_000);
      const f = await d.eval(features);
      row.controlled = { crossOriginIsolated: f.crossOriginIsolated, sharedArrayBuffer: f.sharedArrayBuffer, sharedWasmMemory: f.sharedWasmMemory };
      assert(f.crossOriginIsolated, "isolated by the service worker's headers");
      // Threads need SharedArrayBuffer: WebKitGTK creates shared wasm memory, but without the
      // global it cannot post it to a worker ("The object can not be cloned"), so it runs one.
      const want = f.sharedArrayBuffer ? Math.min(f.hardwareConcurrency, 8) : 1;
      const status = await d.eval(statusText);
      row.threads = Number(/on the CPU, (\d+) threads?/.exec(status)?.[1]);
      // The model card says why where the threaded engine did not start.
      row.card_backend = await d.eval(cardRow, "Backend");
      assertEq(row.threads, want, `threads (${status}; ${row.card_backend})`);
      const before = await d.eval(send, question);
      await d.waitFor(answeredAfter, before, 120_000);
      const [answer] = (await d.eval(assistantTexts)).slice(-1);
      assert(reference.greedy_text.startsWith(answer) && answer.includes("Paris"), `answer ${JSON.stringify(answer)}`);
    });

    await timed("offline (the server gone), a reload starts the app and the model answers", async () => {
      await d.waitFor(() => navigator.serviceWorker?.controller != null, undefined, 30_000);
      await d.goto(app("temperature=0&repeat_penalty=1&max_tokens=8"));
      await d.waitFor(stateIs, "ready", 120_000);
      await server.close();
      try {
        await d.reload();
        await d.waitFor(stateIs, "ready", 120_000);
        const before = await d.eval(send, question);
        await d.waitFor(answeredAfter, before, 120_000);
        const texts = await d.eval(assistantTexts);
        assert(reference.greedy_text.startsWith(texts.at(-1)) && texts.at(-1).includes("Paris"), `offline answer ${JSON.stringify(texts.at(-1))}`);
      } finally {
        server = await serve(mounts, { port });
      }
    });

    await timed("classroom Step takes the greedy token", async () => {
      await d.goto(app("mode=classroom&temperature=0&repeat_penalty=1"));
      await d.waitFor(stateIs, "ready", 120_000);
      await d.eval(send, question);
      await d.waitFor(() => document.querySelector('[data-testid="status"]').dataset.state === "ready" && document.querySelector('[data-testid="topk"] [data-token-id]')
        && !document.getElementById("c-step").disabled, undefined, 60_000);
      const top = await d.eval(() => Number(document.querySelector('[data-testid="topk"] [data-token-id]').dataset.tokenId));
      assertEq(top, reference.greedy[0], "the most probable candidate is the reference's greedy token");
      await d.eval(click, "c-step");
      await d.waitFor(() => document.querySelectorAll("#transcript [data-role='assistant'] .tok").length === 1, undefined, 60_000);
      assertEq(await d.eval(() => document.querySelector("#transcript [data-role='assistant'] .tok").textContent), "The", "the first token");
    });

    await timed("a local file opens through the model dialog", async () => {
      await d.goto(app("temperature=0"));
      await d.waitFor(stateIs, "ready", 120_000);
      await d.eval(click, "open-model");
      await d.upload("#model-file", tiny);
      await d.waitFor(() => /tiny chat/.test(document.querySelector('[data-testid="status"]').textContent) && document.querySelector('[data-testid="status"]').dataset.state === "ready", undefined, 60_000);
    });

    await timed("the model dialog lists the kept model, verified, and deletes it", async () => {
      if (!(await d.eval(() => document.getElementById("model-dialog").open))) await d.eval(click, "open-model");
      const shown = await d.waitFor(() => [...document.querySelectorAll("#stored-models li span")].map((e) => e.textContent).find((x) => x.startsWith("SmolLM2")), undefined, 10_000);
      assert(/98\.4 MB · SHA-256 verified$/.test(shown), shown);
      // Whether the browser promised to keep it (WebKit has no persist()) is said, not assumed.
      row.persisted = await d.eval(async () => (navigator.storage?.persisted ? await navigator.storage.persisted() : "absent"));
      const used = await d.waitFor(() => document.getElementById("storage-used").textContent, undefined, 5_000);
      assert((row.persisted === true ? /keeps it until you delete it/ : /may clear it when space runs short/).test(used), used);
      await d.eval(() => [...document.querySelectorAll("#stored-models li")].find((li) => li.textContent.startsWith("SmolLM2")).querySelector("button").click());
      await d.waitFor(() => !/SmolLM2/.test(document.getElementById("stored-models").textContent), undefined, 10_000);
      assertEq(await d.eval(storedModels), [], `nothing left in ${row.model_store}`);
    });

    await timed("no request left the origin, and no console error", async () => {
      assertEq(await d.foreign(), [], `requests to other origins (seen: ${d.sees})`);
      assertEq(await d.errors(), [], "errors");
    });
    await d.screenshot(join(artifacts, `engine-${engine}.png`)).catch(() => {});
  } finally {
    await d.close();
  }

  if (engine === "firefox") {
    // A private window: whatever it refuses (OPFS has been), the model loads and the app says
    // whether it keeps it.
    const p = await firefox({ origin, prefs: { "browser.privatebrowsing.autostart": true } });
    try {
      await timed("a private window loads the model, and says so where it cannot keep it", async () => {
        await p.goto(app("model=../fixtures/tiny-chat.gguf&temperature=0"));
        await p.waitFor(stateIs, "ready", 120_000);
        const f = await p.eval(features);
        row.private_window = { opfs: f.opfs, cacheStorage: f.cacheStorage };
        const notice = await p.eval(() => (document.getElementById("notice").hidden ? "" : document.getElementById("notice").textContent));
        const stored = await p.eval(storedModels);
        if (f.opfs === "writable" || f.cacheStorage === true) {
          assertEq(stored, ["tiny-chat.gguf complete"], "kept for the window's life");
          assert(!/cannot be stored/.test(notice), notice);
        } else {
          assertEq(stored, [], "nothing kept");
          assert(/cannot be stored in this browser/.test(notice), `the fallback is said: ${JSON.stringify(notice)}`);
        }
        assertEq(await p.errors(), [], "errors");
      });
    } finally {
      await p.close();
    }
  }
}

writeFileSync(join(artifacts, "engines.json"), JSON.stringify(report_, null, 2));
await server.close();
rmSync(site, { recursive: true, force: true });
process.exitCode = report("engines") || process.exitCode ? 1 : 0;
