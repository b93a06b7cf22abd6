// Browser faults, each injected, on the tiny chat model (tests/artifacts/tiny-chat.gguf, written
// by the native tests): the WebGPU device lost mid-answer, the GPU out of memory at load, the
// storage quota exceeded, two tabs at once, and a reload or tab close mid-answer. The app must
// say what happened, keep the transcript and go on. Usage: node tests/web/faults.test.mjs [dist]
import { readFileSync, existsSync, writeFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { serve, browser, check, report, assert, assertEq, assertClean, exportJson, waitState, sendMessage, answered, texts, artifacts } from "./harness.mjs";

const dist = resolve(process.argv[2] || "dist");
const tiny = join(artifacts, "tiny-chat.gguf");
if (!existsSync(tiny)) { console.error(`${tiny} is missing: the native tests write it`); process.exit(2); }
// The native engine's greedy answer to this conversation (tests/it/engine.rs writes it).
const fixture = JSON.parse(readFileSync("tests/fixtures/tiny-chat-greedy.json", "utf8"));

const site = await serve({ "/sub/": dist, "/fixtures/": artifacts });
const origin = site.origin;
const app = (query = "") => `${origin}/sub/?model=../fixtures/tiny-chat.gguf&temperature=0&repeat_penalty=1${query}`;
const b = await browser({ origin });
const page = b.page;
const figures = [];
const survived = (name) => figures.push(name);

/** Sends the fixture's conversation (system prompt and first message). */
async function sendFixture(p, { wait = true } = {}) {
  await p.getByRole("button", { name: "New chat" }).click();
  await p.locator("#system-box").evaluate((d) => { d.open = true; });
  await p.getByRole("textbox", { name: "System prompt" }).fill(fixture.messages[0].content);
  await sendMessage(p, fixture.messages[1].content, { wait });
}

/** The stored conversations, read straight from IndexedDB. */
const storedConversations = (p) => p.evaluate(() => new Promise((resolve, reject) => {
  const req = indexedDB.open("ember");
  req.onerror = () => reject(req.error);
  req.onsuccess = () => {
    const all = req.result.transaction("conversations").objectStore("conversations").getAll();
    all.onsuccess = () => { req.result.close(); resolve(all.result); };
    all.onerror = () => reject(all.error);
  };
}));
const assistantNodes = (c) => Object.values(c.nodes).filter((n) => n.role === "assistant");

try {
  await check("WebGPU device lost mid-answer: the answer stops with a message, the app goes on on the CPU", async () => {
    // The worker destroys its GPUDevice after the 8th token of 12: a real `device.lost`.
    await page.goto(app("&max_tokens=12&fault=device-lost:8,slow:30"));
    await waitState(page, "ready", 180_000);
    assertEq(await page.getByTestId("status").getAttribute("data-backend"), "webgpu", "starts on WebGPU");
    await sendFixture(page, { wait: false });
    await page.waitForFunction(() => /GPU device was lost/.test(document.getElementById("notice").textContent), null, { timeout: 180_000 });
    await page.waitForFunction(() => {
      const s = document.querySelector('[data-testid="status"]');
      return s.dataset.state === "ready" && s.dataset.backend === "cpu";
    }, null, { timeout: 120_000 });
    assert(/restarted on the CPU/.test(await page.locator("#notice").textContent()), await page.locator("#notice").textContent());
    const [partial] = await texts(page, "assistant");
    assert(partial.length > 0 && fixture.text.startsWith(partial) && partial !== fixture.text,
      `the answer so far is kept and is a prefix of the greedy answer: ${JSON.stringify(partial)}`);
    await sendMessage(page, "and now?");
    assertEq((await texts(page, "assistant")).length, 2, "the chat goes on");
    await page.screenshot({ path: join(artifacts, "fault-device-lost.png") });
    survived("WebGPU device destroyed after the 8th token");
  });

  await check("GPU out of memory at load: a clear message and an offer of the CPU", async () => {
    await page.goto(app("&max_tokens=12&fault=gpu-oom"));
    await page.waitForFunction(() => /GPU ran out of memory/.test(document.getElementById("notice").textContent), null, { timeout: 180_000 });
    assertEq(await page.getByTestId("status").getAttribute("data-state"), "error", "no model yet");
    await page.screenshot({ path: join(artifacts, "fault-gpu-oom.png") });
    await page.locator("#notice").getByRole("button", { name: "Use the CPU" }).click();
    await waitState(page, "ready", 60_000);
    assertEq(await page.getByTestId("status").getAttribute("data-backend"), "cpu", "on the CPU");
    assert(/GPU ran out of memory for this model/.test(await page.getByTestId("status").textContent()), "the status says why");
    await sendFixture(page);
    assertEq(await texts(page, "assistant"), [fixture.text], "the CPU gives the greedy answer");
    survived("GPU out-of-memory error during the load");
  });

  await check("storage quota exceeded: a message, and the chat continues in memory", async () => {
    const p = await b.context.newPage();
    // IndexedDB writes fail as a full disk makes them fail, once the test says so.
    await p.addInitScript(() => {
      const put = IDBObjectStore.prototype.put;
      IDBObjectStore.prototype.put = function (...args) {
        if (self.__quotaFull) throw new DOMException("The quota has been exceeded.", "QuotaExceededError");
        return put.apply(this, args);
      };
    });
    await p.goto(app("&backend=cpu&max_tokens=12"));
    await waitState(p, "ready");
    await sendFixture(p);
    const savedId = (await p.evaluate(() => localStorage.getItem("ember.current")));
    await p.evaluate(() => { self.__quotaFull = true; });
    await sendMessage(p, "a second question");
    const notice = await p.locator("#notice").textContent();
    assert(/cannot be saved here \(The quota has been exceeded\.\); this chat continues in memory only/.test(notice), notice);
    await sendMessage(p, "a third question");
    assert(/continues in memory only/.test(await p.locator("#notice").textContent()), "the message stays up");
    await p.screenshot({ path: join(artifacts, "fault-quota.png") });
    assertEq((await texts(p, "assistant")).length, 3, "every answer is on screen");
    const json = JSON.parse(await exportJson(p));
    assertEq(assistantNodes(json.conversation).length, 3, "the export holds the whole chat");
    // What was stored before the disk filled is intact.
    const stored = (await storedConversations(p)).find((c) => c.id === savedId);
    assert(stored && assistantNodes(stored).length === 1 && assistantNodes(stored)[0].content === fixture.text, "the stored part is intact");
    await p.close();
    survived("IndexedDB QuotaExceededError on every write");
  });

  await check("two tabs at once: one model download, both chats stored whole", async () => {
    const ctx = b.context;
    // A fresh origin's storage: the model is not cached yet, and both tabs load it at once.
    await page.goto(`${origin}/sub/manifest.webmanifest`);
    await page.evaluate(async () => {
      const root = await navigator.storage.getDirectory();
      await root.removeEntry("models", { recursive: true }).catch(() => {});
    });
    const [p1, p2] = [page, await ctx.newPage()];
    await Promise.all([p1.goto(app("&backend=cpu&max_tokens=10")), p2.goto(app("&backend=cpu&max_tokens=10"))]);
    await Promise.all([waitState(p1, "ready"), waitState(p2, "ready")]);
    const models = await p1.evaluate(async () => {
      const d = await (await navigator.storage.getDirectory()).getDirectoryHandle("models");
      const out = [];
      for await (const [name, h] of d.entries()) if (h.kind === "file" && !name.endsWith(".json")) out.push([name.replace(/^[0-9a-f]+/, "*"), (await h.getFile()).size]);
      return out;
    });
    assertEq(models, [["*.gguf", readFileSync(tiny).length]], "one complete cached copy, no .part");
    // Both tabs write conversations at the same time, several times over.
    await Promise.all([p1, p2].map(async (p, i) => {
      await p.getByRole("button", { name: "New chat" }).click();
      for (let k = 0; k < 3; k++) await sendMessage(p, `tab ${i + 1} message ${k + 1}`);
    }));
    const stored = await storedConversations(p1);
    for (const i of [1, 2]) {
      const c = stored.find((s) => Object.values(s.nodes).some((n) => n.content === `tab ${i} message 1`));
      assert(c, `tab ${i}'s conversation is stored`);
      assertEq(Object.values(c.nodes).filter((n) => n.role === "user").map((n) => n.content).sort(), [1, 2, 3].map((k) => `tab ${i} message ${k}`), `tab ${i}'s messages`);
      assertEq(assistantNodes(c).filter((n) => n.content && !n.partial).length, 3, `tab ${i}'s answers`);
    }
    // A reload of either tab lists both.
    await p2.reload();
    await waitState(p2, "ready");
    const titles = await p2.locator("#conversations .conv").allTextContents();
    assert(titles.some((t) => t.startsWith("tab 1")) && titles.some((t) => t.startsWith("tab 2")), JSON.stringify(titles));
    await p2.close();
    survived("two tabs loading one model and writing six turns at once");
  });

  for (const how of ["reload", "tab close"]) {
    await check(`${how} mid-answer: at most the unfinished token is lost`, async () => {
      let p = await b.context.newPage();
      // 150 ms a token, so that the answer is surely mid-way.
      await p.goto(app("&backend=cpu&max_tokens=12&fault=slow:150"));
      await waitState(p, "ready");
      await sendFixture(p, { wait: false });
      await p.waitForFunction(() => (document.querySelector('#transcript [data-role="assistant"] .content')?.textContent || "").length >= 4, null, { timeout: 60_000 });
      const shown = await p.locator('#transcript [data-role="assistant"] .content').first().textContent();
      const id = await p.evaluate(() => localStorage.getItem("ember.current"));
      if (how === "reload") await p.reload();
      else { await p.close(); p = await b.context.newPage(); await p.goto(app("&backend=cpu")); }
      await waitState(p, "ready");
      const c = (await storedConversations(p)).find((s) => s.id === id);
      const [answer] = assistantNodes(c);
      assert(answer.partial, "the answer is marked unfinished");
      assert(fixture.text.startsWith(answer.content), `the stored answer is a prefix of the greedy answer: ${JSON.stringify(answer.content)}`);
      // Tokens of the tiny model are at most 4 characters: what was shown, less one token at most.
      assert(answer.content.length >= shown.length - 4, `stored ${JSON.stringify(answer.content)}, shown ${JSON.stringify(shown)}`);
      assert(/interrupted/.test(await p.locator('#transcript [data-role="assistant"]').first().textContent()), "shown as interrupted");
      if (how === "tab close") await p.close();
      survived(`${how} after ${shown.length} characters of an answer`);
    });
  }

  await check("no request left the origin, no page error", async () => assertClean(b));
} finally {
  await b.close();
  site.close();
}
writeFileSync(join(artifacts, "faults.json"), JSON.stringify({ survived: figures }, null, 1));
process.exit(report("faults") ? 1 : 0);
