// Classroom mode end to end in Debian's chromium, on the tiny model: the next token's candidates
// (the test contract: "Step", data-testid="topk" with data-token-id and data-prob), one token
// per step, forcing a candidate, play and pause, the sampler pipeline redrawn by its sliders,
// a generated token's alternatives and branching from it, the token views, the trace export,
// the explainers, both languages, the keyboard, a projector and a phone.
// Usage: node tests/web/classroom.test.mjs [dist-dir]
import { readFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { serve, browser, check, report, assert, assertEq, assertClean, waitState, artifacts } from "./harness.mjs";

/** A CSV text's records (RFC 4180: a quoted field may hold commas, quotes doubled, and newlines). */
function csvRecords(text) {
  const records = [];
  let row = [], field = "", quoted = false;
  for (let i = 0; i < text.length; i++) {
    const c = text[i];
    if (quoted) {
      if (c === '"' && text[i + 1] === '"') { field += '"'; i++; }
      else if (c === '"') quoted = false;
      else field += c;
    } else if (c === '"') quoted = true;
    else if (c === ",") { row.push(field); field = ""; }
    else if (c === "\n") { row.push(field); records.push(row); row = []; field = ""; }
    else if (c !== "\r") field += c;
  }
  if (field !== "" || row.length) { row.push(field); records.push(row); }
  return records;
}

const dist = resolve(process.argv[2] || "dist");
const site = await serve({ "/sub/": dist, "/fixtures/": artifacts });
const origin = site.origin;
// Wide settings, so that the tiny model offers several candidates.
const url = (q = "") => `${origin}/sub/?model=../fixtures/tiny-chat.gguf&backend=cpu&mode=classroom&temperature=1&top_k=10&top_p=1&min_p=0&seed=3${q}`;
const b = await browser({ origin, viewport: { width: 1280, height: 720 } });
let page = b.page;

const topk = () => page.getByTestId("topk").locator("[data-token-id]");
const candidates = () => topk().evaluateAll((els) => els.map((e) => ({ id: Number(e.dataset.tokenId), p: Number(e.dataset.prob) })));
const tokenCount = () => page.locator("#transcript [data-role='assistant']").last().locator(".tok").count();
const ready = () => page.waitForFunction(() => document.querySelector('[data-testid="status"]').dataset.state === "ready"
  && document.querySelector('[data-testid="topk"] [data-token-id]'), null, { timeout: 30_000 });
async function trace() {
  const [dl] = await Promise.all([page.waitForEvent("download"), page.getByRole("button", { name: "Export trace (JSON)" }).click()]);
  return JSON.parse(readFileSync(await dl.path(), "utf8"));
}

try {
  await check("?mode=classroom opens the classroom; a message shows the next token's candidates", async () => {
    await page.goto(url());
    await waitState(page, "ready");
    assertEq(await page.getByRole("button", { name: "Classroom" }).getAttribute("aria-pressed"), "true", "toggle");
    await page.getByRole("textbox", { name: "Message" }).fill("the theme");
    await page.getByRole("button", { name: "Send" }).click();
    await ready();
    const c = await candidates();
    assert(c.length >= 3 && c.length <= 10, `${c.length} candidates`);
    assert(c.every((x, i) => x.p > 0 && (i === 0 || x.p <= c[i - 1].p)), "probabilities, most probable first");
    const sum = c.reduce((a, x) => a + x.p, 0);
    assert(Math.abs(sum - 1) < 1e-3, `top-10 of a top-k 10 distribution sums to 1 (${sum})`);
    assertEq(await tokenCount(), 0, "nothing generated yet");
    // The toggle looks on, the delay shows its value, and the composer has let go of the keys.
    const bg = (name) => page.getByRole("button", { name, exact: true }).evaluate((b) => getComputedStyle(b).backgroundColor);
    assert(await bg("Classroom") !== await bg("Model"), "the pressed toggle looks pressed");
    assertEq(await page.locator("#c-speed-out").textContent(), "400 ms", "the delay's value and unit");
    assert(await page.evaluate(() => document.activeElement !== document.getElementById("message")), "focus left the composer");
    assert(!/interrupted/.test(await page.locator('#transcript [data-role="assistant"]').last().textContent()), "not 'interrupted' before the first Step");
  });

  await check("Step generates exactly one token, drawn from the candidates shown", async () => {
    for (let i = 1; i <= 4; i++) {
      const shown = (await candidates()).map((x) => x.id);
      await page.getByRole("button", { name: "Step" }).click();
      await page.waitForFunction((n) => document.querySelectorAll("#transcript [data-role='assistant'] .tok").length === n, i);
      await ready();
      const t = await trace();
      assertEq(t.steps.length, i, "steps");
      assert(shown.includes(t.steps[i - 1].token_id), `token ${t.steps[i - 1].token_id} was among ${shown}`);
      assertEq(t.steps[i - 1].forced, false, "drawn, not forced");
    }
  });

  await check("activating a candidate forces it as the next token (click and keyboard)", async () => {
    const c = await candidates();
    const pick = c[c.length - 1];
    await topk().nth(c.length - 1).click();
    await page.waitForFunction(() => document.querySelectorAll("#transcript [data-role='assistant'] .tok").length === 5);
    await ready();
    let t = await trace();
    assertEq([t.steps[4].token_id, t.steps[4].forced], [pick.id, true], "the forced token");
    const c2 = await candidates();
    await topk().nth(1).focus();
    await page.keyboard.press("Enter");
    await page.waitForFunction(() => document.querySelectorAll("#transcript [data-role='assistant'] .tok").length === 6);
    await ready();
    t = await trace();
    assertEq([t.steps[5].token_id, t.steps[5].forced], [c2[1].id, true], "forced from the keyboard");
    // A key press outside text fields takes one step.
    await page.locator("#c-next-title").click();
    await page.keyboard.press(".");
    await page.waitForFunction(() => document.querySelectorAll("#transcript [data-role='assistant'] .tok").length === 7);
    await ready();
  });

  await check("the pipeline redraws from the same logits when a slider moves", async () => {
    const before = await tokenCount();
    const stages = () => page.locator("#c-stages figure").evaluateAll((fs) => fs.map((f) => ({
      caption: f.querySelector("figcaption").textContent, probs: [...f.querySelectorAll(".p")].map((p) => p.textContent) })));
    const s1 = await stages();
    assertEq(s1.map((s) => s.caption.split(" · ")[0]), ["Model (softmax)", "Temperature", "Top-k", "Top-p", "Min-p → drawn from"], "stages");
    const slide = (id, v) => page.locator(id).evaluate((e, x) => { e.value = x; e.dispatchEvent(new Event("input", { bubbles: true })); }, v);
    await slide("#c-top_k", "2");
    await page.waitForFunction(() => document.querySelectorAll('[data-testid="topk"] [data-token-id]').length === 2);
    const s2 = await stages();
    assert(/2 kept/.test(s2[2].caption), s2[2].caption);
    assertEq(s2[0].probs, s1[0].probs, "the model's own softmax is unchanged");
    const c = await candidates();
    assert(Math.abs(c[0].p + c[1].p - 1) < 1e-3, "renormalised over two");
    await slide("#c-temperature", "0.5");
    await page.waitForFunction((p) => document.querySelector("#c-stages figure:nth-child(2) .p").textContent !== p, s2[1].probs[0]);
    assertEq((await stages())[0].probs, s1[0].probs, "still the same softmax");
    assertEq(await tokenCount(), before, "no token was generated");
    // Temperature 0 is greedy: one candidate at 100 %, the model's most probable, and Step takes it.
    await slide("#c-top_k", "10");
    await slide("#c-temperature", "0");
    await page.waitForFunction(() => document.querySelectorAll('[data-testid="topk"] [data-token-id]').length === 1);
    const [only] = await candidates();
    assertEq(only.p, 1, "the greedy pick, at 100 %");
    const top = await page.locator("#c-stages figure:first-child .srow").first().locator(".tok-text").textContent();
    assertEq(await page.locator('[data-testid="topk"] [data-token-id] .tok-text').textContent(), top, "the softmax's most probable token");
    assert(/Temperature 0/.test(await page.locator("#c-next-hint").textContent()), "the hint says greedy");
    const taken = await page.locator('[data-testid="topk"] [data-token-id]').getAttribute("data-token-id");
    await page.getByRole("button", { name: "Step", exact: true }).click();
    await page.waitForFunction((n) => document.querySelectorAll("#transcript [data-role='assistant'] .tok").length === n + 1, before);
    assertEq(String((await trace()).steps.at(-1).token_id), taken, "Step took it");
    await slide("#c-temperature", "1");
    await page.waitForFunction(() => document.querySelectorAll('[data-testid="topk"] [data-token-id]').length > 2);
    // The classroom's sliders are its own: the chat's settings are as they were.
    await slide("#c-temperature", "0.3");
    await page.getByRole("button", { name: "Settings" }).click();
    const dialog = page.getByRole("dialog", { name: "Settings" });
    assertEq(await dialog.getByLabel("Temperature").inputValue(), "1", "the chat's temperature");
    // Esc closes the dialog, and only that: the classroom's answer goes on.
    await page.keyboard.press("Escape");
    await page.waitForFunction(() => !document.querySelector("dialog[open]"));
    assert(await page.getByRole("button", { name: "Play" }).isEnabled(), "the answer was not stopped");
    await slide("#c-temperature", "1");
  });

  await check("Play generates until Pause", async () => {
    await page.locator("#c-speed").evaluate((e) => { e.value = "0"; });
    const before = await tokenCount();
    await page.getByRole("button", { name: "Play" }).click();
    await page.waitForFunction((n) => document.querySelectorAll("#transcript [data-role='assistant'] .tok").length >= n + 3, before);
    await page.getByRole("button", { name: "Pause" }).click();
    await page.waitForTimeout(300);
    const paused = await tokenCount();
    await page.waitForTimeout(500);
    assertEq(await tokenCount(), paused, "no more tokens while paused");
  });

  await check("each token's colour is its probability's class in the legend (low to high)", async () => {
    const chips = await page.locator("#transcript [data-role='assistant'] .tok").evaluateAll((els) => els.map((e) => ({
      p: Number(e.dataset.p), cls: [...e.classList].find((c) => /^p\d$/.test(c)),
      bg: getComputedStyle(e).backgroundColor,
    })));
    const legend = await page.locator(".legend .tok").evaluateAll((els) => els.map((e) => ({ label: e.textContent, cls: [...e.classList].find((c) => /^p\d$/.test(c)), bg: getComputedStyle(e).backgroundColor })));
    // The legend's own words: "<5%", "5–20%", "20–50%", "50–80%", "≥80%".
    const range = (label) => {
      const n = label.match(/[\d.]+/g).map(Number);
      return label.startsWith("<") ? [0, n[0] / 100] : label.startsWith("≥") ? [n[0] / 100, 1.01] : [n[0] / 100, n[1] / 100];
    };
    assert(chips.length >= 3, `tokens: ${chips.length}`);
    for (const c of chips) {
      const entry = legend.find((l) => { const [lo, hi] = range(l.label); return c.p >= lo && c.p < hi; });
      assertEq([c.cls, c.bg], [entry.cls, entry.bg], `a token of ${(c.p * 100).toFixed(2)}% is coloured as "${entry.label}"`);
    }
  });

  await check("a generated token shows its alternatives; choosing one branches, and the old answer stays", async () => {
    const t = await trace();
    const chip = page.locator("#transcript [data-role='assistant'] .tok").nth(2);
    await chip.focus();
    const alts = page.locator("#c-token .alts [data-token-id]");
    await page.waitForFunction(() => document.querySelectorAll("#c-token .alts [data-token-id]").length > 1);
    assertEq(await page.locator("#c-token .alts [aria-current='true']").getAttribute("data-token-id"), String(t.steps[2].token_id), "the chosen one is highlighted");
    const other = await alts.evaluateAll((els) => els.find((e) => !e.getAttribute("aria-current")).dataset.tokenId);
    await alts.locator(`xpath=self::*[@data-token-id="${other}"]`).click();
    await page.waitForFunction(() => document.querySelector("#transcript [data-role='assistant'] .branch")?.textContent === "2/2");
    await ready();
    const t2 = await trace();
    assertEq(t2.steps.slice(0, 2).map((s) => s.token_id), t.steps.slice(0, 2).map((s) => s.token_id), "the same start");
    assertEq([t2.steps[2].token_id, t2.steps[2].forced], [Number(other), true], "then the chosen alternative");
    assertEq(t2.steps.length, 3, "and it waits for the next step");
    await page.locator("#transcript [data-role='assistant']").last().getByRole("button", { name: "Previous version" }).click();
    assertEq((await trace()).steps.map((s) => s.token_id), t.steps.map((s) => s.token_id), "the earlier answer is intact");
    await page.screenshot({ path: join(artifacts, "classroom-tiny.png") });
  });

  await check("token views: the message and the whole templated prompt, with ids and special tokens", async () => {
    await page.getByRole("textbox", { name: "Message" }).fill("the theme");
    await page.waitForFunction(() => document.querySelectorAll("#c-draft-tokens .chip").length === 5);
    const draft = await page.locator("#c-draft-tokens .chip").evaluateAll((cs) => cs.map((c) => c.firstChild.textContent));
    assertEq(draft, ["t", "he", "␣the", "m", "e"], "the tiny BPE's tokens (merges Ġt, he, Ġthe)");
    // The prompt view and the context meter count the same tokens (the same tokenizer and template).
    await page.waitForFunction(() => {
      const m = /Context: (\d+) \/ 128/.exec(document.getElementById("context-text").textContent);
      return m && Number(m[1]) === document.querySelectorAll("#c-prompt-tokens .chip").length;
    }, null, { timeout: 10_000 });
    assert((await page.locator("#c-prompt-tokens .chip.special").first().textContent()).startsWith("<|im_start|>"), "special tokens visible");
    assert(/\d+ of 128 tokens/.test(await page.locator("#c-prompt-count").textContent()), "context fullness");
    const lastSpecial = () => page.locator("#c-prompt-tokens .chip.special").last().evaluate((c) => c.firstChild.textContent);
    assertEq(await lastSpecial(), "<|im_start|>", "with a draft, the prompt ends with the assistant's turn opened");
    await page.getByRole("textbox", { name: "Message" }).fill("");
    // Nothing would be sent: the model sees the conversation as it stands, with no turn opened.
    await page.waitForFunction(() => [...document.querySelectorAll("#c-prompt-tokens .chip.special")].at(-1)?.firstChild.textContent === "<|im_end|>", null, { timeout: 10_000 });
    assertEq(await page.locator("#c-draft-tokens .chip").count(), 0, "no draft tokens");
  });

  await check("the trace exports as JSON and CSV", async () => {
    const t = await trace();
    assertEq(t.format, "ember-trace", "format");
    assertEq(t.settings.top_k, 10, "settings");
    assert(t.prompt_ids.length > 5 && t.messages.at(-1).content === "the theme", "prompt");
    assert(t.steps.every((s) => s.top.length >= 1 && s.top.every((c) => c.prob > 0)), "each step's candidates");
    const [dl] = await Promise.all([page.waitForEvent("download"), page.getByRole("button", { name: "Export trace (CSV)" }).click()]);
    const csv = csvRecords(readFileSync(await dl.path(), "utf8"));
    assertEq(csv[0].join(","), "step,token_id,token,prob,forced,rank,candidate_id,candidate,candidate_prob", "header");
    assertEq(csv.length - 1, t.steps.reduce((a, s) => a + s.top.length, 0), "one row per candidate");
    assert(csv.every((r) => r.length === 9), "nine fields a row");
    // A token's text is quoted, newlines and quotes included (the tiny model's "\n" is one).
    assertEq(csv.slice(1).map((r) => r[7]), t.steps.flatMap((s) => s.top.map((c) => c.text)), "the candidates' texts, as the JSON has them");
  });

  await check("the model next to GPT-1/2/3, and the explainers", async () => {
    const rows = await page.locator("#c-history tr").allTextContents();
    assert(rows.length === 5 && /GPT-3 \(2020\)9612288/.test(rows[3]) && /This model: tiny chat2644 \(2 KV\)12891K/.test(rows[4]), JSON.stringify(rows));
    for (const s of ["Next-token prediction", "GPT and BERT", "How a chat model is made", "What it cannot do"]) {
      await page.getByText(s, { exact: true }).click();
    }
    assert(/SFT, then DPO/.test(await page.locator("#classroom").textContent()), "SmolLM2's tuning");
    assert(/reward model and PPO/.test(await page.locator("#classroom").textContent()), "ChatGPT's");
  });

  await check("a projector (1280×720) and a phone: no sideways scrolling; 中文", async () => {
    let overflow = await page.evaluate(() => document.documentElement.scrollWidth - innerWidth);
    assert(overflow <= 0, `${overflow}px sideways at 1280×720`);
    assert(await page.getByRole("button", { name: "Step" }).isVisible(), "Step visible on a projector");
    await page.screenshot({ path: join(artifacts, "classroom-1280x720.png") });
    await page.goto(url("&lang=zh"));
    await waitState(page, "ready");
    assert(await page.getByRole("button", { name: "单步" }).isVisible(), "Step in Chinese");
    assert(/下一个词元预测/.test(await page.locator("#classroom").textContent()), "explainers in Chinese");
    await page.setViewportSize({ width: 390, height: 844 });
    overflow = await page.evaluate(() => document.documentElement.scrollWidth - innerWidth);
    assert(overflow <= 0, `${overflow}px sideways on a phone`);
    // The panel starts within the first screen, under a transcript that scrolls on its own
    // (not below the whole conversation).
    const panelTop = await page.evaluate(() => document.getElementById("classroom").getBoundingClientRect().top);
    assert(panelTop < 844 * 0.75, `the classroom panel starts at ${panelTop}px`);
    await page.getByRole("button", { name: "单步" }).scrollIntoViewIfNeeded();
    await page.waitForTimeout(400); // the drawer's slide
    await page.screenshot({ path: join(artifacts, "classroom-phone.png") });
    await page.setViewportSize({ width: 1280, height: 720 });
  });

  await check("an answer that ends shows its end-of-turn token as the end, not as text", async () => {
    // tests/artifacts/tiny-eos.gguf says <|im_end|> at once (written by the native suite).
    const other = await b.context.newPage();
    await other.goto(`${origin}/sub/?model=../fixtures/tiny-eos.gguf&backend=cpu&mode=classroom&temperature=0&repeat_penalty=1`);
    await waitState(other, "ready");
    await other.getByRole("button", { name: "New chat" }).click();
    await other.getByRole("textbox", { name: "Message" }).fill("hi");
    await other.getByRole("button", { name: "Send" }).click();
    await other.waitForFunction(() => document.querySelector('[data-testid="topk"] [data-token-id]'));
    await other.getByRole("button", { name: "Step", exact: true }).click();
    await other.waitForFunction(() => document.querySelector('#transcript [data-role="assistant"] .tok'));
    const chip = other.locator('#transcript [data-role="assistant"] .tok').last();
    assertEq(await chip.textContent(), "⏹ end of answer", "the end, in words");
    assertEq(await chip.getAttribute("title"), "<|im_end|>", "the token itself on hover");
    await other.close();
  });

  await check("the toggle leaves classroom mode and back; no request to another origin, no page error", async () => {
    await page.goto(url());
    await waitState(page, "ready");
    await page.getByRole("button", { name: "Classroom" }).click();
    assert(await page.locator("#classroom").isHidden(), "hidden");
    assert(!/mode=classroom/.test(page.url()), "the link follows the mode");
    await page.getByRole("button", { name: "Classroom" }).click();
    assert(/mode=classroom/.test(page.url()), "linkable");
    assertClean(b);
  });
} finally {
  await b.close();
  await site.close();
}
process.exit(report("web, classroom") ? 1 : 0);
