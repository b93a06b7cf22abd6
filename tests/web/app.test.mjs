// End-to-end tests of the web app in Debian's chromium, on the tiny random chat model that the
// native tests write to tests/artifacts/tiny-chat.gguf (every token takes milliseconds, so the
// app's behaviour is tested apart from the real model's speed; tests/web/real.test.mjs runs
// SmolLM2). Usage: node tests/web/app.test.mjs [dist-dir]
import { readFileSync, writeFileSync, existsSync } from "node:fs";
import { join, resolve } from "node:path";
import { serve, browser, check, report, assert, assertEq, assertClean, exportJson, waitState, sendMessage, answered, assistantCount, texts, artifacts, writeBadModels } from "./harness.mjs";

const dist = resolve(process.argv[2] || "dist");
const tiny = join(artifacts, "tiny-chat.gguf");
if (!existsSync(tiny)) { console.error(`${tiny} is missing: the native tests write it (cargo test --test it engine::)`); process.exit(2); }
const fixture = JSON.parse(readFileSync("tests/fixtures/tiny-chat-greedy.json", "utf8"));
const files = resolve("tests/web/files");

const site = await serve({ "/sub/": dist, "/fixtures/": artifacts, "/files/": files });
const elsewhere = await serve({ "/": artifacts }); // another origin, without CORS headers
const origin = site.origin;
const app = (query = "") => `${origin}/sub/?model=../fixtures/tiny-chat.gguf${query}`;
const shots = [];
const shot = async (page, name) => { await page.screenshot({ path: join(artifacts, `${name}.png`) }); shots.push(name); };

const b = await browser({ origin, allowed: [elsewhere.origin] });
let page = b.page;
const prepare = async () => {
  await b.context.grantPermissions(["clipboard-read", "clipboard-write"], { origin });
  page.on("dialog", (d) => d.accept());
};
await prepare();


try {
  await check("status contract: loads on the CPU when asked, with a model card", async () => {
    await page.goto(app("&backend=cpu&temperature=0&repeat_penalty=1&max_tokens=12"));
    await waitState(page, "ready", 60_000);
    assertEq(await page.getByTestId("status").getAttribute("data-backend"), "cpu", "data-backend");
    const statusText = await page.getByTestId("status").textContent();
    // The file's name, readable ("tiny-chat.gguf"); the name inside the file stays on the card.
    assert(statusText.startsWith("tiny chat ·") && /on the CPU, \d+ threads? \(as asked\)/.test(statusText) && /loaded in/.test(statusText), statusText);
    await page.getByRole("button", { name: "Model" }).click();
    const card = await page.locator("#model-card").textContent();
    for (const want of ["Architecturellama · tiny chat", "Name in the filetiny test llama", "Layers2", "Heads / KV heads4 / 2", "Embedding width64", "Context used / trained128 / 128", "Q4_1 ×2"]) {
      assert(card.includes(want), `model card lacks ${want}: ${card}`);
    }
    await page.keyboard.press("Escape");
  });

  await check("a chat turn streams the native engine's greedy answer, with stats", async () => {
    await page.locator("#system-box summary").click();
    await page.getByRole("textbox", { name: "System prompt" }).fill(fixture.messages[0].content);
    await sendMessage(page, fixture.messages[1].content);
    const conv = JSON.parse(await exportJson(page)).conversation;
    const answer = Object.values(conv.nodes).find((n) => n.role === "assistant");
    assertEq(answer.content, fixture.text, "greedy answer");
    assertEq(conv.system, "be brief", "system prompt");
    assertEq(await texts(page, "system"), ["be brief"], "system message shown");
    const stats = await page.locator('#transcript [data-role="assistant"] .stats').textContent();
    assert(/first token [\d.]+ s · prompt [\d.]+ tok\/s · [\d.]+ tok\/s · 12 tokens/.test(stats), stats);
  });

  await check("an answer cut at the token cap says so, and Continue extends the same message", async () => {
    const last = page.locator('#transcript [data-role="assistant"]').last();
    assert(/cut off at the length limit/.test(await last.locator(".stats").textContent()), await last.locator(".stats").textContent());
    const count = await assistantCount(page);
    await last.getByRole("button", { name: "Continue" }).click();
    await waitState(page, "ready", 60_000);
    const conv = JSON.parse(await exportJson(page)).conversation;
    const answers = Object.values(conv.nodes).filter((n) => n.role === "assistant");
    assertEq(answers.length, 1, "no new message");
    assertEq(await assistantCount(page), count, "no new message shown");
    assert(answers[0].content.startsWith(fixture.text) && answers[0].content.length > fixture.text.length, JSON.stringify(answers[0].content));
    assertEq(answers[0].reason, "max_tokens", "cut at the cap again (12 more tokens)");
  });

  await check("multi-turn chat; Enter sends, Shift+Enter adds a line; the log is busy only while streaming", async () => {
    const box = page.getByRole("textbox", { name: "Message" });
    await box.fill("first line");
    await box.press("Shift+Enter");
    await box.type("second line");
    assertEq(await box.inputValue(), "first line\nsecond line", "Shift+Enter adds a line");
    const before = await assistantCount(page);
    const busy = page.waitForFunction(() => document.getElementById("transcript").getAttribute("aria-busy") === "true", null, { timeout: 10_000 });
    await box.press("Enter");
    await busy;
    await answered(page, before);
    assertEq(await page.locator("#transcript").getAttribute("aria-busy"), "false", "aria-busy after the answer");
    assertEq(await page.locator("#transcript").getAttribute("role"), "log", "transcript role");
    assertEq(await texts(page, "user"), ["the theme", "first line\nsecond line"], "user messages");
    assertEq(await assistantCount(page), 2, "assistant messages");
    await shot(page, "chat-tiny");
  });

  await check("Regenerate adds a second answer; ‹ › switch between them", async () => {
    const first = (await texts(page, "assistant"))[1];
    // A different seed each time: temperature > 0 here.
    await page.goto(app("&backend=cpu&temperature=1.5&max_tokens=12"));
    await waitState(page, "ready");
    assertEq((await texts(page, "assistant"))[1], first, "the conversation came back after the reload");
    await page.getByRole("button", { name: "Regenerate" }).click();
    await answered(page, 1);
    const last = page.locator('#transcript [data-role="assistant"]').last();
    assertEq(await last.locator(".branch").textContent(), "2/2", "branch position");
    const second = await last.locator(".content").textContent();
    assert(second !== first, "the regenerated answer differs");
    await last.getByRole("button", { name: "Previous version" }).click();
    const back = page.locator('#transcript [data-role="assistant"]').last();
    assertEq(await back.locator(".branch").textContent(), "1/2", "branch position after ‹");
    assertEq(await back.locator(".content").textContent(), first, "the first answer is kept");
    await back.getByRole("button", { name: "Next version" }).click();
    assertEq((await texts(page, "assistant"))[1], second, "› shows the new answer again");
  });

  await check("editing an earlier message continues from there and keeps the old branch", async () => {
    const firstUser = page.locator('#transcript [data-role="user"]').first();
    await firstUser.getByRole("button", { name: "Edit message" }).click();
    const editor = page.getByRole("textbox", { name: "Edit message" });
    await editor.fill("an edited question");
    await page.getByRole("button", { name: "Save & send" }).click();
    await page.waitForFunction(() => document.querySelector('[data-testid="status"]').dataset.state === "ready"
      && document.getElementById("transcript").getAttribute("aria-busy") === "false");
    assertEq(await texts(page, "user"), ["an edited question"], "the edited branch has one question");
    assertEq(await assistantCount(page), 1, "and its own answer");
    const user = page.locator('#transcript [data-role="user"]').first();
    assertEq(await user.locator(".branch").textContent(), "2/2", "the edit is version 2");
    await user.getByRole("button", { name: "Previous version" }).click();
    assertEq(await texts(page, "user"), ["the theme", "first line\nsecond line"], "the old branch is intact");
    await page.locator('#transcript [data-role="user"]').first().getByRole("button", { name: "Next version" }).click();
    assertEq(await texts(page, "user"), ["an edited question"], "and back");
  });

  await check("the same seed gives the same answer; settings persist and reset", async () => {
    await page.getByRole("button", { name: "Settings" }).click();
    const dialog = page.getByRole("dialog", { name: "Settings" });
    await dialog.getByLabel("Temperature").fill("1.2");
    await dialog.getByLabel("Seed (empty: random)").fill("7");
    await dialog.getByLabel("Max new tokens").fill("9");
    await dialog.getByRole("button", { name: "Close" }).click();
    await page.goto(app("&backend=cpu"));
    await waitState(page, "ready");
    await page.getByRole("button", { name: "Settings" }).click();
    assertEq(await dialog.getByLabel("Temperature").inputValue(), "1.2", "temperature persisted");
    assertEq(await dialog.getByLabel("Seed (empty: random)").inputValue(), "7", "seed persisted");
    await dialog.getByRole("button", { name: "Close" }).click();
    await page.getByRole("button", { name: "New chat" }).click();
    await sendMessage(page, "seeded");
    await page.getByRole("button", { name: "Regenerate" }).click();
    await answered(page, 0);
    const last = page.locator('#transcript [data-role="assistant"]').last();
    const second = await last.locator(".content").textContent();
    await last.getByRole("button", { name: "Previous version" }).click();
    const first = await page.locator('#transcript [data-role="assistant"] .content').last().textContent();
    assertEq(second, first, "seed 7 twice");
    const conv = JSON.parse(await exportJson(page)).conversation;
    assert(Object.values(conv.nodes).filter((n) => n.role === "assistant").every((n) => n.stats.tokens <= 9), "max new tokens honoured");
    await page.getByRole("button", { name: "Settings" }).click();
    await dialog.getByRole("button", { name: "Reset to defaults" }).click();
    // The measured defaults (examples/eval.rs): greedy, with a repetition penalty of 1.1.
    assertEq(await dialog.getByLabel("Temperature").inputValue(), "0", "default temperature");
    assertEq(await dialog.getByLabel("Repetition penalty").inputValue(), "1.1", "default repetition penalty");
    assertEq(await dialog.getByLabel("Seed (empty: random)").inputValue(), "", "default seed");
    await shot(page, "tiny-settings");
    await dialog.getByRole("button", { name: "Close" }).click();
    // At temperature 0, Regenerate draws (at 0.7): another answer, not the same one again.
    await page.getByRole("button", { name: "New chat" }).click();
    await sendMessage(page, "vary");
    await page.getByRole("button", { name: "Regenerate" }).click();
    await answered(page, 0);
    const again = await page.locator('#transcript [data-role="assistant"] .content').last().textContent();
    await page.locator('#transcript [data-role="assistant"]').last().getByRole("button", { name: "Previous version" }).click();
    assert(again !== await page.locator('#transcript [data-role="assistant"] .content').last().textContent(), "Regenerate gave another answer");
  });

  await check("Stop ends an answer at once; Esc stops too", async () => {
    await page.goto(app("&backend=cpu&max_tokens=100000"));
    await waitState(page, "ready");
    await page.getByRole("button", { name: "New chat" }).click();
    await sendMessage(page, "go on", { wait: false });
    await page.waitForFunction(() => (document.querySelector('#transcript [data-role="assistant"] .content')?.textContent.length || 0) > 3);
    await page.getByRole("button", { name: "Stop" }).click();
    await answered(page, 0, 10_000);
    const conv = JSON.parse(await exportJson(page)).conversation;
    const a = Object.values(conv.nodes).find((n) => n.role === "assistant");
    assertEq(a.reason, "stopped", "reason");
    assert(a.stats.tokens < 126, `stopped early (${a.stats.tokens} tokens)`);
    await sendMessage(page, "again", { wait: false });
    await page.waitForFunction(() => document.querySelectorAll('#transcript [data-role="assistant"]').length === 2);
    await page.keyboard.press("Escape");
    await answered(page, 1, 10_000);
  });

  await check("conversations: listed, renamed, reopened after a reload, deleted", async () => {
    const list = page.getByRole("list", { name: "Saved conversations" });
    const n = await list.getByRole("listitem").count();
    assert(n >= 3, `${n} conversations listed`);
    await list.getByRole("button", { name: /^Rename conversation: go on/ }).click();
    const title = page.getByRole("textbox", { name: "Conversation title" });
    await title.fill("Stopping test");
    await title.press("Enter");
    // The list shows the new title once it is stored.
    await list.getByRole("button", { name: "Stopping test", exact: true }).waitFor();
    await page.reload();
    await waitState(page, "ready");
    assert(await list.getByRole("button", { name: "Stopping test", exact: true }).isVisible(), "renamed title after reload");
    assertEq(await page.locator('#transcript [aria-current="true"], #conversations [aria-current="true"]').textContent(), "Stopping test", "the open conversation came back");
    assertEq(await texts(page, "user"), ["go on", "again"], "its messages came back");
    await list.getByRole("button", { name: "Delete conversation: Stopping test" }).click();
    await page.waitForFunction((k) => document.querySelectorAll("#conversations li").length === k, n - 1);
    await page.reload();
    await waitState(page, "ready");
    assertEq(await list.getByRole("listitem").count(), n - 1, "deleted for good");
  });

  await check("export JSON → delete → import gives the same file back; Markdown export", async () => {
    const list = page.getByRole("list", { name: "Saved conversations" });
    await list.getByRole("button", { name: "the theme", exact: true }).click();
    const exported = await exportJson(page);
    const conv = JSON.parse(exported).conversation;
    assert(Object.keys(conv.nodes).length >= 7, "all branches are exported");
    const [md] = await Promise.all([page.waitForEvent("download"), page.getByRole("button", { name: "Export Markdown" }).click()]);
    const mdText = readFileSync(await md.path(), "utf8");
    assert(mdText.startsWith("# the theme\n") && mdText.includes("## System\n\nbe brief") && mdText.includes("## User\n\nan edited question") && mdText.includes("## Assistant"), mdText);
    await list.getByRole("button", { name: "Delete conversation: the theme" }).click();
    const file = join(artifacts, "roundtrip.json");
    writeFileSync(file, exported);
    await page.locator("#import-file").setInputFiles(file);
    await page.waitForFunction(() => [...document.querySelectorAll("#conversations button.conv")].some((b) => b.textContent === "the theme"));
    assertEq(await exportJson(page), exported, "the re-exported file");
    // A file that is not a conversation: a clear message, nothing changes.
    writeFileSync(join(artifacts, "not-a-conversation.json"), JSON.stringify({ format: "something else" }));
    await page.locator("#import-file").setInputFiles(join(artifacts, "not-a-conversation.json"));
    await page.waitForFunction(() => /not an Ember conversation/.test(document.getElementById("notice").textContent));
  });

  await check("Markdown renders (headings, lists, tables, code with Copy) and hostile content stays inert", async () => {
    await page.evaluate(() => { window.__pwned = 0; });
    await page.locator("#import-file").setInputFiles(join(files, "markdown-and-hostile.json"));
    await page.waitForFunction(() => document.querySelector("#transcript h2"));
    const t = page.locator("#transcript");
    assertEq(await t.locator("h2").textContent(), "Heading", "heading");
    assertEq(await t.locator("ul > li").count(), 3, "list items (one nested)");
    assertEq(await t.locator("ol > li").count(), 2, "ordered list");
    assertEq(await t.locator("table th").allTextContents(), ["Model", "Size"], "table header");
    assertEq(await t.locator("table td").count(), 4, "table cells");
    assertEq(await t.locator("pre code").textContent(), "fn main() {\n    println!(\"<b>hi</b>\");\n}", "code block");
    assertEq(await t.locator("p code").first().textContent(), "inline <code>", "inline code");
    await t.getByRole("button", { name: "Copy code" }).click();
    assertEq(await page.evaluate(() => navigator.clipboard.readText()), "fn main() {\n    println!(\"<b>hi</b>\");\n}", "copied");
    const live = await page.evaluate(() => {
      const root = document.getElementById("transcript");
      return {
        elements: [...root.querySelectorAll("script, img, svg, iframe, object, embed, style, form, input:not([type]), video, audio, math")].map((e) => e.tagName),
        handlers: [...root.querySelectorAll("*")].flatMap((e) => [...e.attributes].filter((a) => /^on/i.test(a.name)).map((a) => a.name)),
        hrefs: [...root.querySelectorAll("a")].map((a) => a.getAttribute("href")),
        pwned: window.__pwned,
      };
    });
    assertEq(live.elements, [], "no live elements");
    assertEq(live.handlers, [], "no event handler attributes");
    assertEq(live.hrefs, ["https://example.com/safe"], "only the http(s) link is a link");
    await page.waitForTimeout(300);
    assertEq(await page.evaluate(() => window.__pwned), 0, "no script ran");
    const text = await t.textContent();
    for (const s of ["<script>window.__pwned=1</script>", "<img src=x onerror=\"window.__pwned=2\">", "[click](javascript:window.__pwned=3)", "[image: tracker]"]) {
      assert(text.includes(s), `shown as text: ${s}`);
    }
    await shot(page, "markdown");
  });

  await check("context meter counts with the real template; old turns are left out, never the system prompt", async () => {
    await page.goto(app("&backend=cpu&max_tokens=8"));
    await waitState(page, "ready");
    await page.getByRole("button", { name: "New chat" }).click();
    await page.locator("#system-box").evaluate((d) => { d.open = true; });
    await page.getByRole("textbox", { name: "System prompt" }).fill("sys");
    await page.getByRole("textbox", { name: "Message" }).fill("the");
    // ChatML: "<|im_start|>system\nsys<|im_end|>\n<|im_start|>user\nthe<|im_end|>\n<|im_start|>assistant\n"
    // in the tiny byte-level vocabulary: each special token is 1, " the" merges, the rest is bytes.
    await page.waitForFunction(() => /Context: \d+ \/ 128 tokens/.test(document.getElementById("context-text").textContent));
    const n = Number(/Context: (\d+)/.exec(await page.locator("#context-text").textContent())[1]);
    assertEq(n, 34, "tokens of the templated draft");
    for (let i = 0; i < 4; i++) await sendMessage(page, `question number ${i} is here`);
    await page.waitForFunction(() => /left out of the prompt/.test(document.getElementById("notice").textContent));
    const conv = JSON.parse(await exportJson(page)).conversation;
    assertEq(conv.system, "sys", "system prompt kept");
    assertEq((await texts(page, "user")).length, 4, "the transcript keeps every message");
    const meter = await page.locator("#context-meter").evaluate((m) => [m.value, m.max]);
    assert(meter[0] <= 128 && meter[1] === 128, `meter ${meter}`);
    await page.getByRole("textbox", { name: "Message" }).fill("x".repeat(400));
    await page.waitForFunction(() => /too long for the context window/.test(document.getElementById("context-text").textContent));
    // Sent anyway, it is refused before it is sent: no new message, the text stays, a notice says why.
    const users = (await texts(page, "user")).length;
    await page.getByRole("button", { name: "Send" }).click();
    await page.waitForFunction(() => /too long for the context window/.test(document.getElementById("notice").textContent));
    assertEq((await texts(page, "user")).length, users, "no message added");
    assertEq(await page.getByRole("textbox", { name: "Message" }).inputValue(), "x".repeat(400), "the text stays in the composer");
    await page.getByRole("textbox", { name: "Message" }).fill("");
  });

  await check("model errors: 404, another origin without CORS, not a model, a truncated file, too large; the app stays usable", async () => {
    await page.goto(`${origin}/sub/?model=../fixtures/missing.gguf&backend=cpu`);
    await waitState(page, "error");
    assert(/not found \(HTTP 404\)/.test(await page.getByTestId("status").textContent()), "404 message");
    await page.goto(`${origin}/sub/?model=../files/not-a-model.html&backend=cpu`);
    await waitState(page, "error");
    assert(/returned a web page/.test(await page.getByTestId("status").textContent()), await page.getByTestId("status").textContent());
    // A model Ember cannot run is refused from its first megabytes: a 17 MB file (a tiny model
    // whose architecture reads "mamba", then padding) is not downloaded whole, nor kept.
    const mambaLength = writeBadModels();
    await page.goto(`${origin}/sub/?model=../fixtures/mamba-big.gguf&backend=cpu`);
    await waitState(page, "error");
    const refused = await page.getByTestId("status").textContent();
    assert(/architecture, mamba, is not one Ember runs/.test(refused) && !refused.includes("`"), refused);
    // In the page's language (the engine's error kind and arguments, translated).
    await page.goto(`${origin}/sub/?model=../fixtures/mamba-big.gguf&backend=cpu&lang=zh`);
    await waitState(page, "error");
    assert(/这个模型的架构 mamba 不在 Ember 支持之列/.test(await page.getByTestId("status").textContent()), await page.getByTestId("status").textContent());
    const kept = await page.evaluate(async () => {
      const d = await (await navigator.storage.getDirectory()).getDirectoryHandle("models", { create: true });
      const names = [];
      for await (const [n] of d.entries()) names.push(n);
      return names;
    });
    const sizes = await page.evaluate(async () => {
      const d = await (await navigator.storage.getDirectory()).getDirectoryHandle("models", { create: true });
      const out = [];
      for await (const [, h] of d.entries()) if (h.kind === "file") out.push((await h.getFile()).size);
      return out;
    });
    assert(!sizes.some((n) => n >= mambaLength - 1000), `nothing of its size kept: ${kept.join(" ")}`);
    await page.goto(`${origin}/sub/?model=../fixtures/tiny-chat.gguf&backend=cpu&memory_limit_mb=0.1`);
    await waitState(page, "error");
    assert(/too large for this device/.test(await page.getByTestId("status").textContent()), await page.getByTestId("status").textContent());

    await page.goto(app("&backend=cpu"));
    await waitState(page, "ready");
    await page.getByRole("button", { name: "Model" }).click();
    const dialog = page.getByRole("dialog", { name: "Model" });
    await dialog.getByRole("textbox", { name: "Model URL" }).fill(`${elsewhere.origin}/tiny-chat.gguf`);
    await dialog.getByRole("button", { name: "Load from URL" }).click();
    await page.waitForFunction(() => !document.getElementById("model-error").hidden);
    const cors = await page.locator("#model-error").textContent();
    assert(/CORS/.test(cors) && /previous model stays loaded/.test(cors), cors);
    writeFileSync(join(artifacts, "garbage.gguf"), Buffer.from("this is not a model at all"));
    // A short window: the dialog scrolls, and an error is brought into view.
    await page.setViewportSize({ width: 1280, height: 420 });
    for (const [file, want] of [["garbage.gguf", /not a GGUF model file/], ["truncated.gguf", /The file ends before the model does: it is incomplete/]]) {
      await page.locator("#model-dialog").evaluate((d) => { d.scrollTop = d.scrollHeight; });
      await page.locator("#model-file").setInputFiles(join(artifacts, file));
      await page.waitForFunction((w) => new RegExp(w).test(document.getElementById("model-error").textContent), want.source, { timeout: 20_000 })
        .catch(async () => { throw new Error(`${file}: ${await page.locator("#model-error").textContent()}`); });
      const seen = await page.evaluate(() => {
        const e = document.getElementById("model-error").getBoundingClientRect();
        const d = document.getElementById("model-dialog").getBoundingClientRect();
        return e.top >= Math.max(d.top, 0) - 1 && e.bottom <= Math.min(d.bottom, innerHeight) + 1;
      });
      assert(seen, `${file}: the error is in view`);
    }
    await page.setViewportSize({ width: 1280, height: 800 });
    await dialog.getByRole("button", { name: "Close" }).click();
    assertEq(await page.getByTestId("status").getAttribute("data-state"), "ready", "still ready");
    await sendMessage(page, "still works");
  });

  await check("a model from a local file (picker and drag-and-drop), with progress stages", async () => {
    await page.addInitScript(() => {
      window.__stages = [];
      window.__texts = [];
      new MutationObserver(() => {
        const s = document.getElementById("load-progress")?.dataset.stage;
        if (s && window.__stages.at(-1) !== s) window.__stages.push(s);
        const text = document.getElementById("progress-text")?.textContent;
        if (text && window.__texts.at(-1) !== text) window.__texts.push(text);
      }).observe(document, { subtree: true, attributes: true, attributeFilter: ["data-stage"] });
    });
    await page.goto(`${origin}/sub/?model=${encodeURIComponent("../fixtures/tiny-chat.gguf?first-time")}&backend=cpu`);
    await waitState(page, "ready");
    // The file is read a tensor at a time after its header is parsed (on the CPU: "reading", or
    // for the stored copy "cache"; "uploading" is the GPU's).
    assertEq(await page.evaluate(() => window.__stages), ["downloading", "parsing", "reading", "warming"], "stages of a download");
    await page.reload();
    await waitState(page, "ready");
    assertEq(await page.evaluate(() => window.__stages), ["parsing", "cache", "warming"], "stages of a stored model");
    await page.evaluate(() => { window.__stages = []; });
    await page.locator("#model-file").setInputFiles(tiny);
    await page.waitForFunction(() => window.__stages.includes("warming") && document.getElementById("load-progress").hidden);
    assertEq(await page.evaluate(() => window.__stages), ["parsing", "reading", "warming"], "stages of a file");
    const reading = await page.evaluate(() => window.__texts.filter((t) => t.startsWith("Reading")));
    assert(reading.length > 0 && reading.every((t) => /^Reading (the file|the stored model) \d+ \/ \d+ tensors$/.test(t)), `progress counts tensors: ${reading.join(" | ")}`);
    await page.evaluate(() => { window.__stages = []; });
    await page.evaluate(async () => {
      const bytes = await (await fetch("../fixtures/tiny-chat.gguf")).arrayBuffer();
      const dt = new DataTransfer();
      dt.items.add(new File([bytes], "dropped.gguf"));
      window.dispatchEvent(new DragEvent("dragenter", { dataTransfer: dt }));
      window.dispatchEvent(new DragEvent("drop", { dataTransfer: dt, cancelable: true }));
    });
    await page.waitForFunction(() => window.__stages.includes("warming") && document.getElementById("load-progress").hidden);
    await sendMessage(page, "from a dropped file");
    assert(/loaded in/.test(await page.getByTestId("status").textContent()), "load time shown");
  });

  await check("WebGPU is chosen where there is an adapter, and gives the native greedy answer", async () => {
    await page.goto(app("&temperature=0&repeat_penalty=1&max_tokens=12"));
    await waitState(page, "ready", 120_000);
    assertEq(await page.getByTestId("status").getAttribute("data-backend"), "webgpu", "data-backend");
    assert(/ · on WebGPU · loaded in/.test(await page.getByTestId("status").textContent()), await page.getByTestId("status").textContent());
    await page.getByRole("button", { name: "New chat" }).click();
    await page.locator("#system-box").evaluate((d) => { d.open = true; });
    await page.getByRole("textbox", { name: "System prompt" }).fill(fixture.messages[0].content);
    await sendMessage(page, fixture.messages[1].content);
    const conv = JSON.parse(await exportJson(page)).conversation;
    assertEq(Object.values(conv.nodes).find((n) => n.role === "assistant").content, fixture.text, "greedy answer on WebGPU");
    // The Model dialog's backend choice applies at once: the model loads again on the CPU.
    await page.getByRole("button", { name: "Model" }).click();
    await page.getByRole("combobox", { name: "Backend" }).selectOption("cpu");
    await page.waitForFunction(() => document.querySelector('[data-testid="status"]').dataset.backend === "cpu" && document.querySelector('[data-testid="status"]').dataset.state === "ready", null, { timeout: 60_000 });
    assert(/on the CPU, \d+ threads? \(as asked\)/.test(await page.getByTestId("status").textContent()), await page.getByTestId("status").textContent());
    await page.getByRole("combobox", { name: "Backend" }).selectOption("auto");
    await page.waitForFunction(() => document.querySelector('[data-testid="status"]').dataset.backend === "webgpu" && document.querySelector('[data-testid="status"]').dataset.state === "ready", null, { timeout: 120_000 });
    await page.keyboard.press("Escape");
  });

  await check("when the engine dies (a trap in wasm, e.g. device lost), it comes back on the CPU and the chat goes on", async () => {
    const before = await texts(page, "assistant");
    // What the worker's global error handler sees when wasm traps.
    await page.workers().at(-1).evaluate(() => self.dispatchEvent(new ErrorEvent("error", { message: "RuntimeError: unreachable (simulated)" })));
    await page.waitForFunction(() => /restarted on the CPU/.test(document.getElementById("notice").textContent));
    await waitState(page, "ready", 60_000);
    assertEq(await page.getByTestId("status").getAttribute("data-backend"), "cpu", "data-backend");
    assert(/WebGPU failed: RuntimeError: unreachable \(simulated\)/.test(await page.getByTestId("status").textContent()), "says why");
    assertEq(await texts(page, "assistant"), before, "the transcript is intact");
    await sendMessage(page, "still here?");
    assertEq((await texts(page, "assistant")).length, 2, "and the chat goes on");
  });

  await check("a new chat offers example prompts (a click sends one); every message copies; equal titles are told apart", async () => {
    await page.getByRole("button", { name: "New chat" }).click();
    const empty = page.getByTestId("empty");
    assert(/nothing you type leaves this computer/.test(await empty.textContent()), await empty.textContent());
    const examples = await empty.getByRole("button").allTextContents();
    assert(examples.length === 4 && examples.includes("What is 12 times 7?"), examples.join(" | "));
    await empty.getByRole("button", { name: "What is 12 times 7?" }).click();
    await page.waitForFunction(() => document.querySelectorAll('#transcript [data-role="assistant"]').length === 1 && document.getElementById("transcript").getAttribute("aria-busy") === "false");
    assertEq(await texts(page, "user"), ["What is 12 times 7?"], "sent as the first message");
    assertEq(await page.getByTestId("empty").count(), 0, "the examples go once there is a message");
    // Copy: the message's own text (Markdown as written), to the clipboard.
    await page.evaluate(() => { window.__copied = []; navigator.clipboard.writeText = async (x) => { window.__copied.push(x); }; });
    await page.locator('#transcript [data-role="user"]').getByRole("button", { name: "Copy message" }).click();
    await page.locator('#transcript [data-role="assistant"]').getByRole("button", { name: "Copy message" }).click();
    const conv = JSON.parse(await exportJson(page)).conversation;
    const answer = Object.values(conv.nodes).find((n) => n.role === "assistant").content;
    assertEq(await page.evaluate(() => window.__copied), ["What is 12 times 7?", answer], "copied");
    // A second chat with the same first message: the list tells them apart.
    await page.getByRole("button", { name: "New chat" }).click();
    await page.getByTestId("empty").getByRole("button", { name: "What is 12 times 7?" }).click();
    await page.waitForFunction(() => document.getElementById("transcript").getAttribute("aria-busy") === "false" && document.querySelectorAll('#transcript [data-role="assistant"]').length === 1);
    const titles = await page.locator("#conversations button.conv").allTextContents();
    assert(titles.includes("What is 12 times 7?") && titles.includes("What is 12 times 7? (2)"), titles.join(" | "));
  });

  await check("中文 UI from ?lang=zh and the language switch; every control has a name", async () => {
    await page.goto(app("&backend=cpu&lang=zh"));
    await waitState(page, "ready");
    assert(await page.getByRole("button", { name: "发送" }).isVisible(), "Send in Chinese");
    assert(await page.getByRole("textbox", { name: "消息" }).isVisible(), "Message in Chinese");
    assert(/运行于 CPU/.test(await page.getByTestId("status").textContent()), "status in Chinese");
    await shot(page, "tiny-zh");
    const unnamed = await page.evaluate(() => [...document.querySelectorAll("button, input, select, textarea, summary")]
      .filter((e) => e.offsetParent !== null || e.closest("dialog"))
      .filter((e) => !(e.getAttribute("aria-label") || e.textContent.trim() || e.labels?.length || e.getAttribute("aria-labelledby")))
      .map((e) => e.outerHTML.slice(0, 80)));
    assertEq(unnamed, [], "controls without an accessible name");
    await page.getByRole("combobox", { name: "语言" }).selectOption("en");
    assert(await page.getByRole("button", { name: "Send" }).isVisible(), "back to English");
  });

  await check("phone width: no sideways scrolling, the conversation list is a drawer", async () => {
    await page.setViewportSize({ width: 390, height: 844 });
    await page.goto(app("&backend=cpu"));
    await waitState(page, "ready");
    await sendMessage(page, "on a phone");
    const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
    assert(overflow <= 0, `${overflow}px of sideways scrolling`);
    const side = await page.locator("#sidebar").boundingBox();
    assert(side.x + side.width <= 0, `the drawer starts closed (${JSON.stringify(side)})`);
    // The newest answer is in view: the transcript scrolls, not the page below the fold.
    for (const m of ["two", "three", "four", "five"]) await sendMessage(page, m);
    const inView = await page.evaluate(() => {
      const last = [...document.querySelectorAll('#transcript [data-role="assistant"]')].at(-1).getBoundingClientRect();
      const box = document.getElementById("transcript").getBoundingClientRect();
      return last.bottom <= Math.min(box.bottom, innerHeight) + 1 && last.top >= box.top - 1;
    });
    assert(inView, "the last answer is scrolled into view");
    await shot(page, "tiny-phone");
    const closed = async () => (await page.locator("#sidebar").boundingBox()).x + (await page.locator("#sidebar").boundingBox()).width <= 0;
    const menu = page.getByRole("button", { name: "Menu" });
    await menu.click();
    await page.waitForTimeout(300);
    assert(await page.getByRole("button", { name: "Close the list" }).isVisible(), "the drawer has its own close button");
    await page.keyboard.press("Escape");
    await page.waitForTimeout(300);
    assert(await closed(), "Esc closes the drawer");
    await menu.click();
    await page.waitForTimeout(300);
    await page.mouse.click(370, 600);
    await page.waitForTimeout(300);
    assert(await closed(), "a tap outside closes it");
    await menu.click();
    await page.waitForTimeout(300);
    await page.getByRole("button", { name: "Close the list" }).click();
    await page.waitForTimeout(300);
    assert(await closed(), "its ✕ closes it");
    await menu.click();
    await page.getByRole("button", { name: "New chat" }).click();
    assertEq(await assistantCount(page), 0, "new chat from the drawer");
    await page.setViewportSize({ width: 1280, height: 800 });
  });

  await check("without WebGPU in the browser at all, the CPU is chosen and the status says why", async () => {
    const other = await b.context.newPage();
    await other.addInitScript(() => { delete Navigator.prototype.gpu; });
    await other.goto(app(""));
    await waitState(other, "ready");
    assertEq(await other.getByTestId("status").getAttribute("data-backend"), "cpu", "data-backend");
    assert(/on the CPU, \d+ threads? \(this browser has no WebGPU\)/.test(await other.getByTestId("status").textContent()), await other.getByTestId("status").textContent());
    await other.close();
  });

  await check("a model that loops is stopped with a notice, and Continue goes on in the same message", async () => {
    // tests/artifacts/tiny-loop.gguf says "a" forever (written by the native suite).
    const other = await b.context.newPage();
    await other.goto(`${origin}/sub/?model=../fixtures/tiny-loop.gguf&backend=cpu&temperature=0&repeat_penalty=1&max_tokens=200`);
    await waitState(other, "ready");
    await other.getByRole("button", { name: "New chat" }).click();
    await sendMessage(other, "hi");
    const last = other.locator('#transcript [data-role="assistant"]').last();
    assertEq(await last.locator(".content").textContent(), "a".repeat(32), "stopped at 32 repeats, not at the cap of 200");
    assert(/stopped: the model was repeating itself/.test(await last.locator(".stats").textContent()), await last.locator(".stats").textContent());
    await last.getByRole("button", { name: "Continue" }).click();
    await other.waitForFunction(() => [...document.querySelectorAll('#transcript [data-role="assistant"] .content')].at(-1)?.textContent.length === 64, null, { timeout: 60_000 });
    await waitState(other, "ready");
    assertEq(await assistantCount(other), 1, "the same message");
    await other.screenshot({ path: join(artifacts, "loop-guard.png") });
    await other.close();
  });

  await check("conversations survive a browser restart", async () => {
    await page.goto(app("&backend=cpu"));
    await waitState(page, "ready");
    const before = await page.locator("#conversations button.conv").allTextContents();
    const shown = await texts(page, "user");
    assert(before.length >= 3, `${before.length} conversations`);
    page = await b.restart();
    await prepare();
    await page.goto(app("&backend=cpu"));
    await waitState(page, "ready");
    assertEq(await page.locator("#conversations button.conv").allTextContents(), before, "the list");
    assertEq(await texts(page, "user"), shown, "the open conversation");
  });

  await check("no request to another origin, no page error", async () => {
    assertClean(b);
  });
} finally {
  console.log(`foreign requests: ${JSON.stringify(b.foreign)}; page errors: ${JSON.stringify(b.pageErrors)}`);
  await b.close();
  await site.close();
  await elsewhere.close();
}
process.exit(report("web app") ? 1 : 0);
