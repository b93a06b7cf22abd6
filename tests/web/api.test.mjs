// The embedding API (dist/ember.mjs) as an outside page uses it: a page of its own, on its own
// path, that imports the module by URL and nothing else of the app. The tiny model where the
// real one proves nothing more; SmolLM2 for the greedy answer and the logprobs, against the numpy
// reference. Usage: node tests/web/api.test.mjs [dist-dir]
import { mkdtempSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { serve, browser, check, report, assert, assertEq, artifacts, writeBadModels } from "./harness.mjs";

const dist = resolve(process.argv[2] || "dist");
const outside = mkdtempSync(join(tmpdir(), "ember-outside-"));
// The site builder's page: the module, imported by URL, on the window for the checks.
writeFileSync(join(outside, "index.html"), `<!doctype html><meta charset="utf-8"><title>outside</title>
<script type="module">import { Ember, EmberError } from "/ember/ember.mjs"; window.Ember = Ember; window.EmberError = EmberError; window.ready = true;</script>`);
const site = await serve({ "/ember/": dist, "/page/": outside, "/fixtures/": artifacts, "/files/": resolve("tests/web/files"), "/models/": resolve("models") });
// Another origin, serving the tiny model without CORS headers.
const other = await serve({ "/": artifacts });
const origin = site.origin;
const smollm = JSON.parse(readFileSync("tests/fixtures/smollm2.json", "utf8"));
const tinyGreedy = JSON.parse(readFileSync("tests/fixtures/tiny-chat-greedy.json", "utf8"));

// The reference's log-softmax of case 0's last position (numpy, float32 logits).
function referenceLogprobs(file) {
  const buf = readFileSync(join("tests/fixtures", file));
  const logits = new Float32Array(buf.buffer, buf.byteOffset, buf.byteLength / 4);
  const max = logits.reduce((a, b) => Math.max(a, b), -Infinity);
  const lse = max + Math.log(logits.reduce((s, v) => s + Math.exp(v - max), 0));
  return [...logits].map((v) => v - lse).sort((a, b) => b - a);
}

writeBadModels();
const jsonCases = JSON.parse(readFileSync("tests/fixtures/json-schemas.json", "utf8"));

/** Why `v` is not valid against `schema`, for the keywords the fixture's schemas use (the same
 *  checks as tests/it/grammar.rs), or null. */
function invalid(v, schema, at = "$") {
  const fail = (why) => `${at}: ${why} (${JSON.stringify(v)})`;
  if (schema.enum && !schema.enum.some((e) => JSON.stringify(e) === JSON.stringify(v))) return fail("not in the enum");
  const types = { object: (x) => x !== null && typeof x === "object" && !Array.isArray(x), array: Array.isArray, string: (x) => typeof x === "string",
    integer: Number.isInteger, number: (x) => typeof x === "number" };
  if (schema.type && !types[schema.type](v)) return fail("wrong type");
  if (typeof v === "number" && ((schema.minimum !== undefined && v < schema.minimum) || (schema.maximum !== undefined && v > schema.maximum))) return fail("out of range");
  if (typeof v === "string" && schema.maxLength !== undefined && [...v].length > schema.maxLength) return fail("too long");
  if (Array.isArray(v)) {
    if ((schema.minItems !== undefined && v.length < schema.minItems) || (schema.maxItems !== undefined && v.length > schema.maxItems)) return fail("wrong number of items");
    for (const [i, x] of v.entries()) { const e = invalid(x, schema.items ?? {}, `${at}[${i}]`); if (e) return e; }
  } else if (types.object(v)) {
    const props = schema.properties ?? {};
    const missing = (schema.required ?? []).find((k) => !(k in v));
    if (missing) return fail(`lacks ${missing}`);
    if (schema.additionalProperties === false) { const extra = Object.keys(v).find((k) => !(k in props)); if (extra) return fail(`has ${extra}`); }
    for (const [k, x] of Object.entries(v)) { if (props[k]) { const e = invalid(x, props[k], `${at}.${k}`); if (e) return e; } }
  }
  return null;
}

/** Every prompt under every schema through `model` on `backend`: the texts, by schema. */
const jsonAnswers = (page, model, backend, maxTokens) => inPage(page, async ({ model, backend, cases, maxTokens }) => {
  const ember = await Ember.create({ model, backend });
  const out = [];
  for (const [name, schema] of Object.entries(cases.schemas)) {
    for (const prompt of cases.prompts) {
      const r = await ember.chat.completions.create({ messages: [{ role: "user", content: `Answer in JSON (${name}): ${prompt}` }], temperature: 0,
        repetition_penalty: 1.1, max_tokens: maxTokens, response_format: { type: "json_schema", json_schema: { name, schema } } });
      out.push({ name, prompt, text: r.choices[0].message.content, finish: r.choices[0].finish_reason });
    }
  }
  ember.unload();
  return out;
}, { model, backend, cases: jsonCases, maxTokens });

function assertAllValid(answers) {
  assertEq(answers.length, 30, "10 prompts × 3 schemas");
  for (const a of answers) {
    let v;
    try { v = JSON.parse(a.text); } catch (e) { throw new Error(`${a.name}, ${a.prompt}: ${JSON.stringify(a.text)} does not parse (${a.finish}): ${e.message}`); }
    const why = invalid(v, jsonCases.schemas[a.name]);
    assert(why === null, `${a.name}, ${a.prompt}: ${why}`);
  }
}

/** Runs `fn(args)` in the outside page, where `Ember` is the imported class. */
const inPage = (page, fn, args = {}) => page.evaluate(fn, args);

const b = await browser({ origin, allowed: [other.origin] });
const page = b.page;
try {
  await page.goto(`${origin}/page/`);
  await page.waitForFunction(() => window.ready === true);

  for (const backend of ["cpu", "webgpu"]) {
    await check(`${backend}: streamed chunks have OpenAI's shape, end with usage, and add up to the non-streamed answer with the same seed`, async () => {
      const r = await inPage(page, async ({ backend }) => {
        const ember = await Ember.create({ model: "/fixtures/tiny-chat.gguf", backend });
        const params = { messages: [{ role: "user", content: "the theme" }], temperature: 0.9, top_k: 0, top_p: 1, min_p: 0, seed: 7, max_tokens: 10 };
        const chunks = [];
        for await (const c of await ember.chat.completions.create({ ...params, stream: true })) chunks.push(c);
        const whole = await ember.chat.completions.create(params);
        const info = ember.info();
        ember.unload();
        return { chunks, whole, backend: ember.backend, info };
      }, { backend });
      assertEq(r.backend, backend, "backend");
      const { chunks, whole } = r;
      for (const c of chunks) {
        assertEq([c.object, typeof c.id, typeof c.created, typeof c.model], ["chat.completion.chunk", "string", "number", "string"], "chunk fields");
        assertEq(c.id, chunks[0].id, "one id per stream");
      }
      assertEq(chunks[0].choices[0].delta, { role: "assistant", content: "" }, "first delta");
      const body = chunks.slice(0, -1);
      assert(body.every((c) => c.choices.length === 1 && c.choices[0].index === 0 && "finish_reason" in c.choices[0]), "each chunk has one choice");
      assertEq(body.slice(0, -1).map((c) => c.choices[0].finish_reason).filter(Boolean), [], "finish_reason only at the end");
      assert(["stop", "length"].includes(body.at(-1).choices[0].finish_reason), `last finish_reason ${body.at(-1).choices[0].finish_reason}`);
      const last = chunks.at(-1);
      assertEq(last.choices, [], "the usage chunk has no choices");
      assertEq(last.usage.total_tokens, last.usage.prompt_tokens + last.usage.completion_tokens, "usage adds up");
      assert(last.usage.completion_tokens > 0 && last.usage.completion_tokens <= 10, `completion_tokens ${last.usage.completion_tokens}`);
      const streamed = body.map((c) => c.choices[0].delta.content ?? "").join("");
      assertEq(whole.object, "chat.completion", "object");
      assertEq(whole.choices[0].message, { role: "assistant", content: streamed }, "the non-streamed message");
      assertEq(whole.usage, last.usage, "usage");
      assertEq(r.info.backend, backend, "info().backend");
      assert(r.info.config.context_length > 0 && r.info.n_params > 0, "info() is the model card");
    });

    await check(`${backend}: the greedy answer is the native engine's (tiny model)`, async () => {
      const text = await inPage(page, async ({ backend, fx }) => {
        const ember = await Ember.create({ model: "/fixtures/tiny-chat.gguf", backend });
        const r = await ember.chat.completions.create({ messages: fx.messages, temperature: 0, repetition_penalty: 1, top_k: 0, top_p: 1, min_p: 0, max_tokens: fx.max_tokens });
        ember.unload();
        return r.choices[0].message.content;
      }, { backend, fx: tinyGreedy });
      assertEq(text, tinyGreedy.text, "greedy text");
    });
  }

  await check("SmolLM2 on the CPU: the greedy chat answer is the reference's, and logprobs are the drawn distribution's", async () => {
    const ref = smollm.cases.find((c) => c.kind === "chat" && c.messages.at(-1).content === "What is the capital of France?");
    const r = await inPage(page, async ({ messages }) => {
      const ember = await Ember.create({ model: "/models/SmolLM2-135M-Instruct.Q4_1.gguf", backend: "cpu" });
      window.smol = ember;
      const greedy = await ember.chat.completions.create({ messages, temperature: 0, repetition_penalty: 1, top_k: 0, top_p: 1, min_p: 0, max_tokens: 12, logprobs: true, top_logprobs: 3 });
      // At temperature 1 with every filter off, the distribution is the model's softmax.
      const free = await ember.completions.create({ prompt: "The capital of France is", temperature: 1, repetition_penalty: 1, top_k: 0, top_p: 1, min_p: 0, seed: 3, max_tokens: 1, logprobs: true, top_logprobs: 5 });
      const tokens = await ember.tokenize("The capital of France is");
      // Ember's own calls, which the app's pages use: the exact prompt, its tokens and its fit.
      const prompt = await ember.chat.render(messages);
      const promptTokens = await ember.tokenize({ messages });
      const fit = await ember.chat.fit(messages, { max_tokens: 100 });
      return { greedy, free, tokens, prompt, promptTokens, fit };
    }, { messages: ref.messages });
    const answer = r.greedy.choices[0].message.content;
    assert(answer.length >= 8 && ref.greedy_text.startsWith(answer), `${JSON.stringify(answer)} is not a prefix of the reference ${JSON.stringify(ref.greedy_text)}`);
    // Greedy: each token is its distribution's most probable (the distribution at temperature 1
    // after the filters, as classroom mode shows it).
    const content = r.greedy.choices[0].logprobs.content;
    assertEq(content.map((t) => t.token).join(""), answer, "the tokens spell the answer");
    assert(content.every((t) => t.logprob <= 0 && t.top_logprobs.length === 3 && t.top_logprobs[0].token === t.token && t.top_logprobs[0].logprob === t.logprob
      && t.top_logprobs[1].logprob <= t.logprob), `greedy logprobs: ${JSON.stringify(content.slice(0, 2))}`);
    assertEq(content[0].bytes, [...new TextEncoder().encode(content[0].token)], "bytes");
    // Temperature 1: the top five are the reference's softmax (the CPU's logits are within 0.03).
    const want = referenceLogprobs(smollm.cases[0].logits_file).slice(0, 5);
    const first = r.free.choices[0].logprobs.content[0];
    assertEq(first.top_logprobs[0].token, " Paris", "most probable token");
    first.top_logprobs.forEach((t, i) => assert(Math.abs(t.logprob - want[i]) < 0.06, `top ${i}: ${t.logprob} vs the reference's ${want[i]}`));
    const listed = first.top_logprobs.find((t) => t.token === first.token);
    assert(listed ? listed.logprob === first.logprob : first.logprob <= first.top_logprobs[4].logprob, "the drawn token's logprob is its entry's");
    assertEq(r.tokens.ids, smollm.cases[0].prompt_ids, "tokenize");
    assertEq(r.tokens.tokens.join(""), "The capital of France is", "tokens' text");
    assertEq(r.prompt, ref.prompt_text, "chat.render: the template's text");
    assertEq(r.promptTokens.ids, ref.prompt_ids, "tokenize({messages}): the prompt's ids");
    assertEq([r.fit.tokens, r.fit.dropped, r.fit.reserve], [ref.prompt_ids.length, 0, 100], "chat.fit");
  });

  await check("the app's pages reach the engine through ember.mjs alone", async () => {
    // Only the API module imports the engine client: the chat page and classroom mode use the API.
    const importers = readdirSync(join(dist, "js")).filter((f) => /from "\.\/engine-client\.js"/.test(readFileSync(join(dist, "js", f), "utf8")));
    assertEq(importers, [], "modules of the app that import engine-client.js");
    assert(/from "\.\.\/ember\.mjs"/.test(readFileSync(join(dist, "js", "app.js"), "utf8")), "app.js imports ../ember.mjs");
  });

  await check("response_format json_schema: 10 prompts × 3 schemas on the CPU (SmolLM2), every answer parses and validates", async () => {
    const answers = await jsonAnswers(page, "/models/SmolLM2-135M-Instruct.Q4_1.gguf", "cpu", 160);
    assertAllValid(answers);
    console.log(`     (for example ${answers[0].text})`);
  });

  await check("response_format json_schema: the same 30 on WebGPU (the tiny model, with a longer context), every answer parses and validates", async () => {
    // SwiftShader runs SmolLM2 at a token every few seconds: the tiny model (a byte a token)
    // shows that the masks hold on the WebGPU engine as well.
    assertAllValid(await jsonAnswers(page, "/fixtures/tiny-long.gguf", "webgpu", 400));
  });

  await check("an AbortSignal stops a stream within a token; the stream throws kind aborted; the engine answers again", async () => {
    const r = await inPage(page, async () => {
      const controller = new AbortController();
      const stream = await window.smol.chat.completions.create({ messages: [{ role: "user", content: "Write a long story about a dragon." }], stream: true, max_tokens: 200, signal: controller.signal });
      let seen = 0, after = 0, kind = null, t0 = 0;
      try {
        for await (const c of stream) {
          if (controller.signal.aborted) after++;
          else if (c.choices[0]?.delta?.content && ++seen === 4) { t0 = performance.now(); controller.abort(); }
        }
      } catch (e) { kind = e.kind; }
      const waited = performance.now() - t0;
      const next = await window.smol.chat.completions.create({ messages: [{ role: "user", content: "Hi" }], max_tokens: 3 });
      return { seen, after, kind, waited, next: next.choices[0].message.content };
    });
    assertEq(r.kind, "aborted", "error kind");
    assert(r.after <= 1, `${r.after} chunks after the abort (at most the token in flight)`);
    assert(r.next.length > 0, "the next request answers");
    console.log(`     (stopped ${r.waited.toFixed(0)} ms after the abort)`);
  });

  await check("each error kind has its case", async () => {
    const kinds = await inPage(page, async ({ other }) => {
      const kind = (p) => p.then(() => "resolved", (e) => (e instanceof EmberError ? e.kind : `not an EmberError: ${e}`));
      const smol = window.smol;
      const out = {
        not_found: await kind(Ember.create({ model: "/fixtures/missing.gguf", backend: "cpu" })),
        cors: await kind(Ember.create({ model: `${other}/tiny-chat.gguf`, backend: "cpu" })),
        not_a_model: await kind(Ember.create({ model: "/files/not-a-model.html", backend: "cpu" })),
        truncated: await kind(Ember.create({ model: "/fixtures/truncated.gguf", backend: "cpu" })),
        unsupported_architecture: await kind(Ember.create({ model: "/fixtures/mamba-big.gguf", backend: "cpu" })),
        out_of_memory: await kind(Ember.create({ model: "/fixtures/tiny-chat.gguf", backend: "webgpu", faults: "gpu-oom" })),
        invalid_argument: await kind(smol.chat.completions.create({ messages: [{ role: "user", content: "x" }], n: 2 })),
        bad_setting: await kind(smol.chat.completions.create({ messages: [{ role: "user", content: "x" }], top_p: 7 })),
        context_full: await kind(smol.completions.create({ prompt: "word ".repeat(9000), max_tokens: 4 })),
        aborted_before: await kind(smol.chat.completions.create({ messages: [{ role: "user", content: "x" }], signal: AbortSignal.abort() })),
      };
      const lost = await Ember.create({ model: "/fixtures/tiny-chat.gguf", backend: "webgpu", faults: "device-lost:2" });
      out.gpu_lost = await kind(lost.chat.completions.create({ messages: [{ role: "user", content: "the theme" }], max_tokens: 8 }));
      smol.unload();
      out.unloaded = await kind(smol.chat.completions.create({ messages: [{ role: "user", content: "x" }] }));
      return out;
    }, { other: other.origin });
    assertEq(kinds, {
      not_found: "not_found", cors: "cors", not_a_model: "not_a_model", truncated: "not_a_model",
      unsupported_architecture: "unsupported_architecture", out_of_memory: "out_of_memory", invalid_argument: "invalid_argument",
      bad_setting: "invalid_argument", context_full: "context_full", aborted_before: "aborted", gpu_lost: "gpu_lost", unloaded: "aborted",
    }, "kinds");
  });

  await check("no request to another origin but the one a model URL named, no page error", async () => {
    assertEq(b.foreign.filter((u) => !u.startsWith(other.origin)), [], "foreign requests");
    assertEq(b.pageErrors, [], "page errors");
  });
} finally {
  await b.close();
}

// The example page in the build output, as a visitor without WebGPU sees it.
const v = await browser({ origin, webgpu: false });
try {
  await check("dist/examples/embed.html loads the model, streams an answer as text, and says where it runs", async () => {
    await v.page.goto(`${origin}/ember/examples/embed.html`);
    await v.page.waitForFunction(() => /on the CPU/.test(document.getElementById("status").textContent), null, { timeout: 120_000 });
    await v.page.locator("#question").fill("What is the capital of France? Answer in <b>bold</b>.");
    await v.page.getByRole("button", { name: "Ask" }).click();
    await v.page.waitForFunction(() => document.getElementById("answer").textContent.length > 20, null, { timeout: 120_000 });
    await v.page.waitForTimeout(1500);
    const answer = await v.page.locator("#answer").textContent();
    assert(/Paris/.test(answer), answer);
    assertEq(await v.page.locator("#answer *").count(), 0, "the answer is text, never HTML");
    await v.page.screenshot({ path: join(artifacts, "embed-example.png") });
    assertEq(v.foreign, [], "requests to other origins");
    assertEq(v.pageErrors, [], "page errors");
  });
} finally {
  await v.close();
  await site.close();
  await other.close();
}
process.exit(report("the embedding API") ? 1 : 0);
