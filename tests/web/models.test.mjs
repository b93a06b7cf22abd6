// The decoder families in the browser: tiny random Llama, Qwen2, GPT-2, Qwen3, Llama 3, Gemma 3, SmolLM3 and Phi-3 models
// (tests/fixtures/make_hf_models.py), each as a Hugging Face folder and as GGUF, loaded the ways a
// user loads them (a base URL, picked files, a picked folder, a GGUF URL). Each must show the right
// model card and answer with the greedy continuation `transformers` computed.
// Usage: node tests/web/models.test.mjs [dist-dir]
import { copyFileSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { serve, browser, check, report, assert, assertEq, assertClean, exportJson, waitState, sendMessage, artifacts } from "./harness.mjs";

const dist = resolve(process.argv[2] || "dist");
const hf = resolve("tests/fixtures/hf");
const archs = ["llama", "qwen2", "gpt2", "qwen3", "llama3", "gemma3", "smollm3", "phi3"];
const fx = Object.fromEntries(archs.map((a) => [a, JSON.parse(readFileSync(join(hf, `${a}.json`), "utf8"))]));
// A folder whose index points at another origin: the worker must not follow it.
const evil = mkdtempSync(join(tmpdir(), "ember-evil-"));
for (const n of ["config.json", "tokenizer.json", "tokenizer_config.json", "generation_config.json"]) copyFileSync(join(hf, "qwen2", n), join(evil, n));
const elsewhere = await serve({ "/": evil });
writeFileSync(join(evil, "model.safetensors.index.json"), JSON.stringify({ weight_map: { "model.embed_tokens.weight": `${elsewhere.origin}/model.safetensors` } }));
const site = await serve({ "/sub/": dist, "/hf/": hf, "/evil/": evil });
const origin = site.origin;

/** A fresh profile, the app with `query`; resolves once the model is ready. */
async function open(query, backend = "cpu") {
  const b = await browser({ origin });
  // A context of 128, as transformers ran (Phi-3's 256 would take its long LongRoPE factors).
  await b.page.goto(`${origin}/sub/?backend=${backend}&temperature=0&repeat_penalty=1&max_tokens=12&max_context=128${query}`);
  return b;
}

async function card(page) {
  await page.getByRole("button", { name: "Model" }).click();
  const text = await page.locator("#model-card").textContent();
  await page.keyboard.press("Escape");
  return text;
}

/** The card's figures for `arch` as its fixture's config gives them. */
function cardFigures(arch, format) {
  const c = fx[arch].config;
  const gpt2 = arch === "gpt2";
  const theta = c.rope_parameters?.full_attention?.rope_theta ?? c.rope_parameters?.rope_theta ?? c.rope_theta;
  const headWidth = c.head_dim ?? (gpt2 ? c.n_embd / c.n_head : c.hidden_size / c.num_attention_heads);
  const attention = [`heads ${headWidth} wide`];
  if (arch === "qwen3" || arch === "gemma3") attention.push("QK-norm");
  attention.push(c.sliding_window && arch === "gemma3"
    ? `local layers see the last ${c.sliding_window} tokens (every 6th layer sees all; local RoPE θ = ${c.rope_parameters.sliding_attention.rope_theta.toLocaleString("en-US")})`
    : "every layer sees the whole context");
  return [
    `Architecture${fx[arch].architecture}`, `Format${format}`, `Attention${attention.join(" · ")}`,
    `Layers${gpt2 ? c.n_layer : c.num_hidden_layers}`, `Embedding width${gpt2 ? c.n_embd : c.hidden_size}`,
    `Heads / KV heads${gpt2 ? `${c.n_head} / ${c.n_head}` : `${c.num_attention_heads} / ${c.num_key_value_heads}`}`,
    `Context used / trained128 / ${gpt2 ? c.n_positions : c.max_position_embeddings}`,
    `Mode${fx[arch].chat ? "chat" : "completion"}`,
    `Positions${gpt2 ? "learned" : `RoPE, θ = ${theta.toLocaleString("en-US")}`}`,
    ...(arch === "phi3" ? ["on 6 of 8 dims per head", "LongRoPE (short factors: first trained on 128 positions)"] : []),
  ];
}

/** Sends the fixture's prompt (its conversation, or for a base model its first text) and
 *  checks the answer against the greedy continuation `transformers` computed. */
async function answerMatches(page, arch, what) {
  const f = fx[arch];
  if (f.chat) {
    assert(await page.locator("#system-box").isVisible(), "a chat model has a system prompt");
    await page.locator("#system-box summary").click();
    await page.getByRole("textbox", { name: "System prompt" }).fill(f.chat.messages[0].content);
    await sendMessage(page, f.chat.messages[1].content);
  } else {
    await sendMessage(page, f.encodings[1].text);
  }
  const conv = JSON.parse(await exportJson(page)).conversation;
  const answer = Object.values(conv.nodes).find((n) => n.role === "assistant");
  const want = f.cases[f.chat ? 2 : 0].greedy_text;
  assertEq(answer.content, want, `${what}: greedy answer`);
}

/** From a ready page, loads `files` through the Model dialog's `input` and checks that `arch`
 *  replaced the old model and answers as transformers did. */
async function pickAndAnswer(page, input, files, arch, what) {
  await waitState(page, "ready", 60_000);
  await page.getByRole("button", { name: "Model" }).click();
  await page.locator(input).setInputFiles(files);
  await page.waitForFunction((a) => document.querySelector("#model-card")?.textContent.includes(`Architecture${a}`), fx[arch].architecture, { timeout: 60_000 });
  await page.keyboard.press("Escape");
  await waitState(page, "ready", 60_000);
  await answerMatches(page, arch, what);
}

const summary = [];
try {
  for (const arch of archs) {
    await check(`${arch}: a Hugging Face folder by base URL: model card and transformers' greedy answer`, async () => {
      const b = await open(`&model=${encodeURIComponent(`../hf/${arch}/`)}`);
      try {
        await waitState(b.page, "ready", 60_000);
        const text = await card(b.page);
        for (const want of cardFigures(arch, "safetensors")) assert(text.includes(want), `card lacks ${want}: ${text}`);
        // The folder's name stands in for the name config.json does not give.
        const status = await b.page.getByTestId("status").textContent();
        assert(status.startsWith(`${arch} ·`), status);
        if (!fx[arch].chat) {
          const n = await b.page.locator("#notice").textContent();
          assert(/completion mode/.test(n), `base model notice: ${n}`);
          assert(/completion mode/.test(status), status);
          assert(await b.page.locator("#system-box").isHidden(), "no system prompt for a base model");
          assert(/continues it/.test(await b.page.getByRole("textbox", { name: "Message" }).getAttribute("placeholder")), "composer hint");
        }
        await answerMatches(b.page, arch, `${arch} folder`);
        await b.page.screenshot({ path: join(artifacts, `model-${arch}.png`) });
        // The folder's files were fetched from the site only (a base URL, one request per file).
        const paths = site.requests.map((r) => r.path).filter((p) => p.startsWith(`/hf/${arch}/`));
        assert(paths.includes(`/hf/${arch}/config.json`) && paths.some((p) => p.endsWith(".safetensors")), paths.join(" "));
        assertClean(b);
        summary.push(`${arch} folder`);
      } finally { await b.close(); }
    });

    await check(`${arch}: the GGUF conversion by URL gives the same answer`, async () => {
      const b = await open(`&model=${encodeURIComponent(`../hf/${arch}.gguf`)}`);
      try {
        await waitState(b.page, "ready", 60_000);
        const text = await card(b.page);
        for (const want of cardFigures(arch, "GGUF")) assert(text.includes(want), `card lacks ${want}: ${text}`);
        await answerMatches(b.page, arch, `${arch} gguf`);
        assertClean(b);
      } finally { await b.close(); }
    });
  }

  await check("qwen3: the thinking switch (Settings) turns thinking off as the template asks, and a reasoning answer shows its thinking folded", async () => {
    const b = await open(`&model=${encodeURIComponent("../hf/qwen3.gguf")}`);
    try {
      const page = b.page;
      await waitState(page, "ready", 60_000);
      assert((await card(page)).includes("Thinkinga reasoning model"), "the card says it is a reasoning model");
      await page.getByRole("button", { name: "Settings" }).click();
      const box = page.getByRole("checkbox", { name: /Think before answering/ });
      assert(await box.isVisible(), "the thinking switch is shown for a reasoning model");
      assert(await box.isChecked(), "thinking is on by default");
      await box.uncheck();
      await page.keyboard.press("Escape");
      // With thinking off, Qwen3's template writes an empty <think></think>: transformers' answer to that prompt.
      const v = fx.qwen3.chat_variants.find((x) => x.enable_thinking === false && x.messages.length === 2);
      await page.locator("#system-box summary").click();
      await page.getByRole("textbox", { name: "System prompt" }).fill(v.messages[0].content);
      await sendMessage(page, v.messages[1].content);
      const conv = JSON.parse(await exportJson(page)).conversation;
      assertEq(Object.values(conv.nodes).find((n) => n.role === "assistant").content, v.greedy_text, "the answer without thinking");
      // A reasoning answer: its thinking in a folded block (text, never HTML), then the answer's Markdown.
      await page.locator("#import-file").setInputFiles(resolve("tests/web/files/thinking.json"));
      await page.waitForFunction(() => document.querySelector("#transcript details.thinking"));
      const t = page.locator("#transcript");
      assertEq(await t.locator("details.thinking summary").textContent(), "Thinking", "summary");
      assert(!(await t.locator("details.thinking").evaluate((d) => d.open)), "a finished thought is folded");
      assertEq(await t.locator(".thinking-text").textContent(), "The user wants <b>a product</b>.\n6 × 7 = 42.", "thinking text");
      assertEq(await t.locator(".thinking-text b").count(), 0, "no live HTML in the thinking");
      assertEq(await t.locator("details.thinking + p strong").textContent(), "answer", "the answer's Markdown after it");
      await page.screenshot({ path: join(artifacts, "thinking.png") });
      assertClean(b);
    } finally { await b.close(); }
  });

  await check("a model without a thinking switch has none in Settings", async () => {
    const b = await open("&model=../hf/qwen2.gguf");
    try {
      await waitState(b.page, "ready", 60_000);
      await b.page.getByRole("button", { name: "Settings" }).click();
      assert(await b.page.locator("#thinking-setting").isHidden(), "no thinking switch for qwen2");
      assertClean(b);
    } finally { await b.close(); }
  });

  await check("the catalog: size, licence and whether each model fits, before any download; a pick fetches that one file", async () => {
    // 800 MiB of memory and 500 MiB of storage: a 291 MB model fits (about 545 MB needed), a
    // 398 MB one is tight (667 MB), an 808 MB one does not (it cannot be kept either, so the
    // download is held too); a 639 MB one could not be kept.
    const b = await open("&model=../hf/qwen2.gguf&memory_limit_mb=800&storage_quota_mb=500");
    try {
      const page = b.page;
      await waitState(page, "ready", 60_000);
      await page.getByRole("button", { name: "Model" }).click();
      const item = (id) => page.locator(`#catalog li[data-model="${id}"]`);
      await item("gemma3-270m").waitFor();
      assertEq(await page.locator("#catalog li").count(), 8, "catalog entries");
      const fit = (id) => item(id).locator(".fit").getAttribute("data-fit");
      assertEq(await fit("gemma3-270m"), "ok", "gemma3-270m");
      assertEq(await fit("qwen2.5-0.5b"), "tight", "qwen2.5-0.5b");
      assertEq(await fit("llama3.2-1b"), "no", "llama3.2-1b");
      assert(/292 MB · Gemma Terms of Use/.test(await item("gemma3-270m").textContent()), await item("gemma3-270m").textContent());
      assert(/Not enough storage/.test(await item("qwen3-0.6b").textContent()), "qwen3 could not be kept");
      assert(!/Not enough storage/.test(await item("gemma3-270m").textContent()), "gemma3-270m can be kept");
      assert(/served by this site/.test(await item("smollm2-135m").textContent()), "the default is the site's own");
      await page.screenshot({ path: join(artifacts, "catalog.png") });
      assertEq(b.foreign, [], "nothing is fetched from another origin before a pick");
      // A pick fetches that file (here there is no network: the load fails, the old model stays).
      await page.getByRole("button", { name: "Load: Gemma 3 270M IT" }).click();
      await page.waitForFunction(() => !document.getElementById("model-error").hidden, null, { timeout: 60_000 });
      assertEq([...new Set(b.foreign)], ["https://huggingface.co/ggml-org/gemma-3-270m-it-GGUF/resolve/main/gemma-3-270m-it-Q8_0.gguf"], "the one file picked");
      await page.keyboard.press("Escape");
      await waitState(page, "ready", 10_000);
      assertEq(b.pageErrors, [], "page errors");
    } finally { await b.close(); }
  });

  await check("picked files (a sharded Llama folder's files, several at once) load", async () => {
    const b = await open("&model=../hf/qwen2.gguf");
    try {
      const dir = join(hf, "llama");
      await pickAndAnswer(b.page, "#model-file", readdirSync(dir).map((n) => join(dir, n)), "llama", "llama picked files");
      assertClean(b);
    } finally { await b.close(); }
  });

  await check("a picked folder loads (GPT-2, completion mode)", async () => {
    const b = await open("&model=../hf/qwen2.gguf");
    try {
      await pickAndAnswer(b.page, "#model-folder", join(hf, "gpt2"), "gpt2", "gpt2 picked folder");
      assertClean(b);
    } finally { await b.close(); }
  });

  await check("a 1.2 GB GGUF (random weights, written by the native suite) loads on the CPU a tensor at a time and answers", async () => {
    // The file is read a tensor at a time into the weights: the engine's memory after the load
    // (wasm memory only grows, so the most it took) stays within 1.3 × the file.
    const big = join(artifacts, "random-1.2gb.gguf");
    const size = statSync(big).size;
    const b = await open("&model=../hf/qwen2.gguf");
    try {
      const page = b.page;
      await waitState(page, "ready", 60_000);
      await page.getByRole("button", { name: "Model" }).click();
      await page.locator("#model-file").setInputFiles(big);
      await page.waitForFunction(() => document.querySelector("#model-card")?.textContent.includes("random llama 2048x26"), null, { timeout: 300_000 });
      const text = await page.locator("#model-card").textContent();
      const mb = Number(/Engine memory \(wasm, after loading\)([\d.]+) MB/.exec(text)?.[1]);
      assert(mb > 0, `the card's engine memory: ${text}`);
      summary.push(`1.2 GB file: engine memory ${(mb / (size / 1e6)).toFixed(2)} × the file`);
      assert(mb * 1e6 <= 1.3 * size, `engine memory ${mb} MB for a file of ${(size / 1e6).toFixed(0)} MB`);
      await page.keyboard.press("Escape");
      await waitState(page, "ready", 60_000);
      await sendMessage(page, "hello", { timeout: 300_000 });
      const conv = JSON.parse(await exportJson(page)).conversation;
      const answer = Object.values(conv.nodes).find((n) => n.role === "assistant");
      assert(answer && answer.content.length > 0, `an answer: ${JSON.stringify(answer)}`);
      assertClean(b);
    } finally { await b.close(); }
  });

  await check("a folder without tokenizer.json fails with the file named, and the page keeps working", async () => {
    const b = await open("&model=../hf/qwen2.gguf");
    try {
      await waitState(b.page, "ready", 60_000);
      await b.page.getByRole("button", { name: "Model" }).click();
      const dir = join(hf, "qwen2");
      await b.page.locator("#model-file").setInputFiles(readdirSync(dir).filter((n) => n !== "tokenizer.json").map((n) => join(dir, n)));
      await b.page.waitForFunction(() => !document.getElementById("model-error").hidden, null, { timeout: 60_000 });
      const err = await b.page.locator("#model-error").textContent();
      assert(/tokenizer\.json/.test(err), err);
      await b.page.keyboard.press("Escape");
      await waitState(b.page, "ready", 10_000);
      assertClean(b);
    } finally { await b.close(); }
  });

  await check("a shard index that names another origin is refused, and nothing is fetched from there", async () => {
    const b = await open("&model=../evil/");
    try {
      await waitState(b.page, "error", 60_000);
      const status = await b.page.getByTestId("status").textContent();
      assert(/model\.safetensors\.index\.json names/.test(status), status);
      assertEq(elsewhere.requests, [], "requests to the other origin");
      assertClean(b);
    } finally { await b.close(); }
  });

  await check("GPT-2 on WebGPU (LayerNorm, GELU, learned positions as GPU kernels) gives transformers' answer", async () => {
    const b = await open(`&model=${encodeURIComponent("../hf/gpt2/")}`, "webgpu");
    try {
      await waitState(b.page, "ready", 300_000);
      assertEq(await b.page.getByTestId("status").getAttribute("data-backend"), "webgpu", "backend");
      await answerMatches(b.page, "gpt2", "gpt2 on WebGPU");
      assertClean(b);
    } finally { await b.close(); }
  });
} finally {
  await site.close();
  await elsewhere.close();
  rmSync(evil, { recursive: true, force: true });
}
if (summary.length) console.log(summary.join("\n"));
process.exit(report("models") ? 1 : 0);
