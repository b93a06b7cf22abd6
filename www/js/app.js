// The page: conversations, the streamed answer, the status line and the engine's lifecycle.
// The model runs in worker.js behind the embedding API (ember.mjs), the same module site builders
// import, so that everything the app does exercises it; this file never blocks on it. The transcript (transcript.js), the dialogs (dialogs.js), the settings
// (settings.js) and classroom mode (classroom.js) are their own modules. Model output and
// imported files are untrusted: they reach the DOM only as text (see markdown.js).
import { t, has, applyLang, pickLang, sentences } from "./i18n.js";
import * as store from "./store.js";
import * as C from "./conversation.js";
import * as settings from "./settings.js";
import { Ember } from "../ember.mjs";
import { createClassroom } from "./classroom.js";
import { createTranscript, iconButton } from "./transcript.js";
import { count, renderHistoryTable, renderModelCard, renderStorage, wireModelDialog } from "./dialogs.js";

const $ = (id) => document.getElementById(id);
const params = new URLSearchParams(location.search);
const DEFAULT_MODEL = "models/SmolLM2-135M-Instruct.Q4_1.gguf";
// models/fetch.sh checks the same hash; the model cache verifies the download against it.
const DEFAULT_SHA256 = "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53";

const status = $("status");
const input = $("message");

let conversations = new Map(); // id → conversation record
let conv = C.create();
let engine = null; // the ready Ember (ember.mjs)
let loading = null; // the AbortController of the load under way
let gen = null; // {convId, nodeId, t0, firstAt, tokens}
let storageWarned = false;
// Once storage has failed, the message stays up (a new answer does not clear it).
let storageMessage = "";
let statusKind = { key: "starting", vars: {} };

/** The engine's own error behind an EmberError: its kinds (errNotFound, errGpuMemory, …) are
 *  finer than the API's, and the page translates them. */
const engineErr = (e) => (e?.name === "EmberError" && e.cause?.name === "EngineError" ? e.cause : e);

/** An error in the page's language: its kind's message with its arguments (the engine's details
 *  are in English; backticks, a developer's quoting, are dropped). */
function errorText(error) {
  const e = engineErr(error);
  const plain = (v) => (typeof v === "string" ? v.replace(/`/g, "").replace(/\.$/, "") : v);
  const vars = Object.fromEntries(Object.entries(e.vars || {}).map(([k, v]) => [k, plain(v)]));
  if (e.kind && has(e.kind)) return t(e.kind, vars);
  if (e.kind && has(`err_${e.kind}`)) return t(`err_${e.kind}`, vars);
  return plain(e.message || String(e));
}

// ---------------------------------------------------------------- status and notices
function setState(state) {
  status.dataset.state = state;
  $("send").disabled = state !== "ready";
  $("stop").disabled = state !== "generating" && !classroom?.active();
  transcript?.updateRegenerate();
  classroom?.updateControls();
}

/** A classroom step in progress (or not): the same signals as a streamed answer. */
function setBusy(busy) {
  $("transcript").setAttribute("aria-busy", String(busy));
  if (!engine) return;
  showStatus(busy ? "generating" : "ready");
  setState(busy ? "generating" : "ready");
}

function describeStatus() {
  const k = statusKind;
  if (k.key === "ready" || k.key === "generating" || k.key === "prefill") {
    const i = engine.info();
    const why = i.backend_reason;
    const where = (i.backend === "webgpu" ? t("onGpu") : t(i.threads > 1 ? "onCpuThreads" : "onCpu", { n: i.threads })) + (why ? ` (${t(why.key, why.vars)})` : "");
    let base = `${i.display_name || i.name || "model"} · ${t("params", { n: count(i.n_params) })} · ${where} · ${t("loadedIn", { s: i.load_s.toFixed(1) })}`;
    if (!i.has_chat_template) base += ` · ${t("completion")}`;
    if (k.key === "generating") return `${base} · ${t("generating")}`;
    if (k.key === "prefill") return `${base} · ${t("prefilling", k.vars)}`;
    return base;
  }
  if (k.key === "error") return `${t("errTitle")}: ${k.vars.message}`;
  return t(k.key, k.vars);
}

function showStatus(key, vars = {}) {
  statusKind = { key, vars };
  status.textContent = describeStatus();
}

/** Shows a message above the composer; `action` ({label, run}) adds a button that acts on it. */
function notice(text, kind = "error", action = null) {
  const n = $("notice");
  n.textContent = text || "";
  n.dataset.kind = kind;
  n.hidden = !text;
  if (action) {
    const b = document.createElement("button");
    b.type = "button";
    b.className = "secondary";
    b.textContent = action.label;
    b.addEventListener("click", () => { notice(""); action.run(); });
    n.append(" ", b);
  }
}

// ---------------------------------------------------------------- the engine
function limits() {
  const l = {};
  if (params.has("memory_limit_mb")) l.memory_mb = Number(params.get("memory_limit_mb"));
  if (params.has("storage_quota_mb")) l.quota_mb = Number(params.get("storage_quota_mb"));
  // The positions the engine keeps (default 2048, and never past the model's own).
  if (params.has("max_context")) l.max_context = Math.max(1, Math.floor(Number(params.get("max_context")))) || undefined;
  // Test-only fault injection (see worker.js).
  // How many threads the CPU may use (default: the cores, at most 8).
  if (params.has("threads")) l.threads = Math.max(1, Math.floor(Number(params.get("threads")))) || undefined;
  if (params.has("fault")) l.fault = params.get("fault");
  return l;
}

function showProgress(p) {
  const bar = $("progress");
  bar.max = p.total || 1;
  bar.value = p.total ? p.loaded : 0;
  if (!p.total) bar.removeAttribute("value");
  const amount = p.total
    ? p.unit === "tensors" ? ` ${p.loaded} / ${p.total} ${t("tensors")}` : ` ${(p.loaded / 1e6).toFixed(1)} / ${(p.total / 1e6).toFixed(1)} MB`
    : p.loaded ? ` ${(p.loaded / 1e6).toFixed(1)} MB` : "…";
  $("progress-text").textContent = t(p.stage) + amount;
  $("load-progress").dataset.stage = p.stage;
  if (!engine) showStatus("starting");
}

/** Loads a model in a fresh engine; the current one keeps serving until the new one is ready. */
async function loadModel(source, backend, why = null) {
  loading?.abort();
  const attempt = new AbortController();
  loading = attempt;
  if (!engine) setState("loading");
  $("load-progress").hidden = false;
  $("model-error").hidden = true;
  showStatus("starting");
  try {
    const model = source.url ?? source.file ?? source.files;
    const client = await Ember.create({
      model, sha256: source.sha256, backend, reason: why, limits: limits(), signal: attempt.signal,
      onProgress: (p) => { if (loading === attempt) showProgress(p); },
      onNotice: (kind, vars) => { if (loading === attempt) notice(t(kind, vars), "info"); },
    });
    if (loading !== attempt) { client.unload(); return; }
    loading = null;
    becomeReady(client);
  } catch (e) {
    if (loading !== attempt) return; // a newer load took over
    loading = null;
    loadFailed(e, source);
  }
}

function becomeReady(client) {
  // The old engine goes, and with it any answer it was writing: end that answer cleanly.
  if (gen) finishGeneration("stopped", null);
  if (classroom.active()) classroom.reset();
  engine?.unload();
  engine = client;
  engine.onlost = (e) => engineDied(client, e);
  status.dataset.backend = engine.backend;
  $("load-progress").hidden = true;
  engine.thinking = settings.read().thinking;
  $("thinking-setting").hidden = !engine.info().thinking;
  renderModelCard(engine);
  renderStorage();
  renderHistoryTable(engine);
  showStatus("ready");
  setState("ready");
  requestFit();
  // A base model continues text: no system prompt, and the composer says so.
  const base = !engine.info().has_chat_template;
  $("system-box").hidden = base;
  input.dataset.i18nPlaceholder = base ? "messagePlaceholderCompletion" : "messagePlaceholder";
  input.placeholder = t(input.dataset.i18nPlaceholder);
  if (base) notice(t("completionMode"), "info");
  else languageNotice();
}

/** Says so when the page's language is not among those the model's file lists (a 中文 page on
 *  an English-only model: its answers in Chinese are poor, or loops). */
function languageNotice() {
  const langs = (engine?.info().languages || []).map((l) => l.toLowerCase().split(/[-_]/)[0]);
  const ui = $("lang").value;
  if (!langs.length || langs.includes(ui)) return;
  const names = new Intl.DisplayNames([ui], { type: "language" });
  notice(t("langNotice", { langs: langs.map((l) => names.of(l) || l).join(", "), ui: names.of(ui) || ui }), "info");
}

function loadFailed(e, source) {
  const message = errorText(e);
  const shown = sentences(message, engine && t("keepsOld"));
  $("load-progress").hidden = true;
  const err = $("model-error");
  err.textContent = shown;
  err.hidden = false;
  // In view: the dialog may be scrolled to the catalog, or taller than the window.
  err.scrollIntoView({ block: "nearest" });
  // The GPU is too small for this model: the CPU may hold it; the user decides.
  const action = engineErr(e).kind === "errGpuMemory" ? { label: t("useCpu"), run: () => loadModel(source, "cpu", { key: "whyGpuMemory", vars: {} }) } : null;
  if (engine) {
    notice(shown, "error", action);
    showStatus(gen ? "generating" : "ready");
  } else {
    if (action) notice(message, "error", action);
    showStatus("error", { message });
    setState("error");
  }
}

/** A trap in wasm (device lost, out of memory): the worker is gone. Keep the transcript, end
 *  the answer, and bring the engine back on the CPU. */
function engineDied(client, e) {
  if (client !== engine) return;
  engine = null;
  if (classroom.active()) { classroom.reset(); setBusy(false); }
  if (gen) finishGeneration("error", null);
  notice(t("engineRestarted", { m: e.message }));
  loadModel(client.source, "cpu", { key: "whyGpuFailed", vars: { m: e.message } });
}

function engineError(e) {
  if (e.kind === "aborted") return;
  if (classroom.active()) { classroom.reset(); setBusy(false); }
  if (gen) finishGeneration("error", null);
  notice(`${t("errTitle")}: ${errorText(e)}`);
  if (engine) { showStatus("ready"); setState("ready"); }
}

// ---------------------------------------------------------------- conversations
async function saveConv(c = conv) {
  conversations.set(c.id, c);
  if (c === conv) store.setPref("current", c.id); // reopened after a reload
  try { await store.saveConversation(c); } catch (e) {
    if (!storageWarned) { storageWarned = true; storageMessage = t("errStorage", { m: e.message || String(e) }); notice(storageMessage); }
  }
}

function renderSidebar() {
  const list = $("conversations");
  list.replaceChildren();
  const items = [...conversations.values()].sort((a, b) => b.updated - a.updated);
  const titles = C.shownTitles(items, t("untitled"));
  for (const c of items) {
    const li = document.createElement("li");
    li.dataset.id = c.id;
    const shown = titles.get(c.id);
    const title = shown.title + shown.suffix;
    const open = document.createElement("button");
    open.type = "button";
    open.className = "conv";
    const name = document.createElement("span");
    name.className = "conv-title";
    name.textContent = shown.title;
    open.append(name);
    if (shown.suffix) {
      const n = document.createElement("span");
      n.className = "conv-n";
      n.textContent = shown.suffix;
      open.append(n);
    }
    if (c.id === conv.id) open.setAttribute("aria-current", "true");
    open.addEventListener("click", () => openConversation(c.id));
    const rename = iconButton("✎", `${t("rename")}: ${title}`, () => startRename(li, c));
    const del = iconButton("✕", `${t("delete")}: ${title}`, () => removeConversation(c.id));
    li.append(open, rename, del);
    list.append(li);
  }
}

function startRename(li, c) {
  const field = document.createElement("input");
  field.value = c.title;
  field.setAttribute("aria-label", t("conversationTitle"));
  li.replaceChildren(field);
  field.focus();
  field.select();
  let done = false;
  const finish = async (save) => {
    if (done) return;
    done = true;
    if (save && field.value.trim()) { c.title = field.value.trim(); c.updated = Date.now(); await saveConv(c); }
    renderSidebar();
  };
  field.addEventListener("keydown", (e) => {
    if (e.key === "Enter") { e.preventDefault(); finish(true); }
    if (e.key === "Escape") { e.preventDefault(); e.stopPropagation(); finish(false); }
  });
  field.addEventListener("blur", () => finish(true));
}

async function removeConversation(id) {
  if (!confirm(t("confirmDelete"))) return;
  if (gen && gen.convId === id) stopGeneration();
  conversations.delete(id);
  try { await store.deleteConversation(id); } catch (e) { notice(t("errStorage", { m: e.message })); }
  if (conv.id === id) newConversation();
  renderSidebar();
}

/** Leaves the open conversation for `next`: any answer stops, the engine forgets its cache. */
function switchTo(next) {
  if (gen || classroom.active()) stopGeneration();
  classroom.reset();
  conv = next;
  engine?.reset();
}

function openConversation(id) {
  switchTo(conversations.get(id));
  store.setPref("current", id);
  renderAll();
  closeSidebarOnPhone();
}

function newConversation() {
  switchTo(C.create());
  notice("");
  renderAll();
  input.focus();
}

async function deleteAllConversations() {
  if (!confirm(t("confirmDeleteAll"))) return;
  if (gen) stopGeneration();
  for (const id of [...conversations.keys()]) {
    conversations.delete(id);
    try { await store.deleteConversation(id); } catch { /* memory only */ }
  }
  newConversation();
}

function renderAll() {
  $("system").value = conv.system;
  transcript.render();
  renderSidebar();
  requestFit();
}

// ---------------------------------------------------------------- generation
/** The API's parameters for the settings' options (settings.chatOptions). */
function completionParams(options, run) {
  const s = options.sampling;
  return {
    stream: true, max_tokens: options.max_tokens, temperature: s.temperature, top_k: s.top_k, top_p: s.top_p, min_p: s.min_p,
    repetition_penalty: s.repeat_penalty, seed: s.seed, signal: run.stop.signal,
    onPrefill: (e) => { if (gen === run) showStatus("prefill", { d: e.done, t: e.total }); },
  };
}

/** Streams an answer into the run's message: `request` is the API's stream of chunks. */
async function streamInto(run, request) {
  try {
    let end = null;
    for await (const chunk of await request) {
      if (gen !== run) return; // leaving the loop stops the generation
      if (chunk.ember?.dropped !== undefined) { onStart(chunk.ember.dropped); continue; }
      if (chunk.usage) { end = { reason: chunk.ember.stop_reason, stats: chunk.ember.stats, tokens: chunk.usage.completion_tokens }; continue; }
      const choice = chunk.choices[0];
      onToken(choice.delta?.content ?? choice.text ?? "");
    }
    if (gen === run) finishGeneration(end?.reason ?? "stop", end?.stats, end?.tokens);
  } catch (e) {
    if (gen !== run) return;
    // A stop keeps the answer so far, with its figures (none where it came before the start).
    if (e.kind === "aborted") finishGeneration("stopped", e.vars?.stats ?? null, e.vars?.completion_tokens ?? 0);
    else engineError(e);
  }
}

function generateAfter(userNode, { again = false } = {}) {
  const assistant = C.add(conv, userNode.id, "assistant", "", { partial: true });
  const run = { convId: conv.id, nodeId: assistant.id, t0: performance.now(), firstAt: null, stop: new AbortController() };
  gen = run;
  saveConv();
  transcript.render();
  renderSidebar();
  $("transcript").setAttribute("aria-busy", "true");
  showStatus("generating");
  setState("generating");
  const options = settings.chatOptions({ again });
  streamInto(run, engine.chat.completions.create({ messages: C.history(conv, userNode.id), ...completionParams(options, run) }));
}

/** Extends `node`, the last answer (cut at the cap, stopped as a loop, or interrupted): the
 *  model sees the conversation and the answer so far, and the new text is added to the same
 *  message. */
async function continueAnswer(node) {
  if (gen || status.dataset.state !== "ready" || classroom.isOn()) return;
  const run = { convId: conv.id, nodeId: node.id, t0: performance.now(), firstAt: null, stop: new AbortController() };
  gen = run;
  node.partial = true;
  delete node.reason;
  saveConv();
  transcript.render();
  $("transcript").setAttribute("aria-busy", "true");
  showStatus("generating");
  setState("generating");
  const options = settings.chatOptions();
  try {
    // The template's text for a new answer, then this answer's: what the model saw writing it.
    const prompt = (await engine.chat.render(C.history(conv, node.parent))) + node.content;
    if (gen !== run) return;
    await streamInto(run, engine.completions.create({ prompt, ...completionParams(options, run) }));
  } catch (e) {
    if (gen === run) engineError(e);
  }
}

let sending = false;
async function send() {
  const text = input.value.trim();
  if (!text || gen || sending || status.dataset.state !== "ready") return;
  const last = C.path(conv).at(-1);
  // A message the context cannot hold (with the system prompt and room for an answer) is not
  // sent: it stays in the composer, and the page says why.
  const messages = [...(last ? C.history(conv, last.id) : C.history(conv, null)), { role: "user", content: text }];
  sending = true;
  try {
    await engine.chat.fit(messages, { max_tokens: settings.read().max_tokens });
  } catch (e) {
    if (e.kind === "context_full") { notice(t("tooLong", { n: e.vars.needed, limit: e.vars.limit })); return; }
  } finally {
    sending = false;
  }
  if (gen || input.value.trim() !== text) return;
  input.value = "";
  answer(C.add(conv, last ? last.id : "root", "user", text));
}

/** Answers `userNode`: streamed, or one token at a time in classroom mode. */
function answer(userNode, { again = false } = {}) {
  if (!classroom.isOn()) { generateAfter(userNode, { again }); return; }
  if (classroom.active()) classroom.stop();
  const assistant = C.add(conv, userNode.id, "assistant", "", { partial: true, trace: [] });
  saveConv();
  // The run first, so that the empty answer shows as waiting for its first Step, not interrupted.
  classroom.begin(assistant, { messages: C.history(conv, userNode.id) });
  transcript.render();
  renderSidebar();
  // The keys step (→, .) once the composer lets go of them.
  input.blur();
}

function regenerate() {
  if (gen || status.dataset.state !== "ready") return;
  const last = C.path(conv).at(-1);
  if (!last) return;
  // A new sibling of the last answer (or a first answer to a lone question), drawn again.
  answer(last.role === "assistant" ? conv.nodes[last.parent] : last, { again: last.role === "assistant" });
}

function stopGeneration() {
  if (classroom.active()) { classroom.stop(); return; }
  if (gen) gen.stop.abort();
}

function onStart(dropped) {
  if (dropped > 0) notice(trimmedText(dropped) + (storageMessage ? ` ${storageMessage}` : ""), storageMessage ? "error" : "info");
  else notice(storageMessage);
}

function onToken(text) {
  if (gen.firstAt === null) { gen.firstAt = performance.now(); showStatus("generating"); }
  const c = conversations.get(gen.convId) || conv;
  c.nodes[gen.nodeId].content += text;
  // Saved on every token: a reload mid-answer loses at most the unfinished one.
  saveConv(c);
  if (c === conv) transcript.paintStreaming();
}

function finishGeneration(reason, stats, tokens = 0) {
  const c = conversations.get(gen.convId) || conv;
  const node = c.nodes[gen.nodeId];
  node.partial = false;
  node.reason = reason;
  if (stats) {
    node.stats = { ttft: gen.firstAt ? (gen.firstAt - gen.t0) / 1000 : 0, prefill_tok_s: stats.prefill_tok_s, decode_tok_s: stats.decode_tok_s,
                   tokens, prefill_tokens: stats.prefill_tokens };
  }
  gen = null;
  $("transcript").setAttribute("aria-busy", "false");
  saveConv(c);
  if (c === conv) transcript.render();
  if (engine) { showStatus("ready"); setState("ready"); }
  requestFit();
}

// ---------------------------------------------------------------- context meter
let fitTimer = null;
function requestFit() {
  clearTimeout(fitTimer);
  fitTimer = setTimeout(() => {
    if (!engine) return;
    const last = C.path(conv).at(-1);
    const messages = last ? C.history(conv, last.id) : C.history(conv, null);
    const draft = input.value.trim();
    if (draft) messages.push({ role: "user", content: draft });
    // With an empty draft nothing would be sent: the model sees the conversation as it stands.
    classroom.refreshTokens([...messages], draft);
    if (!messages.some((m) => m.role !== "system")) messages.push({ role: "user", content: "" });
    engine.chat.fit(messages, { max_tokens: settings.read().max_tokens }).then(showFit, (e) => {
      if (e.kind !== "aborted") showFitError(e);
    });
  }, 200);
}

function showFitError(e) {
  const meter = $("context-meter");
  $("context-text").textContent = e.kind === "context_full" ? t("tooLong", { n: e.vars.needed, limit: e.vars.limit }) : errorText(e);
  meter.value = meter.max;
  $("meter").dataset.over = "true";
}

function showFit(f) {
  const meter = $("context-meter");
  meter.max = f.limit;
  meter.value = f.tokens;
  $("meter").dataset.over = f.dropped > 0 ? "true" : "false";
  $("meter").dataset.tokens = String(f.tokens);
  $("context-text").textContent = t("contextMeter", { n: f.tokens, limit: f.limit }) + (f.dropped > 0 ? ` · ${trimmedText(f.dropped)}` : "");
}

const trimmedText = (n) => t(n === 1 ? "trimmedOne" : "trimmed", { n });

// ---------------------------------------------------------------- export / import
function download(name, type, text) {
  const a = document.createElement("a");
  a.href = URL.createObjectURL(new Blob([text], { type }));
  a.download = name;
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(a.href), 10_000);
}

const fileStem = () => (conv.title || "conversation").replace(/[^\p{L}\p{N}]+/gu, "-").replace(/^-|-$/g, "").slice(0, 40) || "conversation";

async function importFile(file) {
  try {
    const imported = C.importJson(await file.text());
    const existing = conversations.get(imported.id);
    if (existing && C.exportJson(existing) !== C.exportJson(imported)) imported.id = C.create().id;
    await saveConv(imported);
    openConversation(imported.id);
    notice("");
  } catch (e) {
    notice(t("errImport", { m: e.message }));
  }
}

// ---------------------------------------------------------------- service worker
function registerServiceWorker() {
  if (!("serviceWorker" in navigator)) return;
  let updating = false;
  const offer = (waiting) => {
    // Only an update: the very first install needs no reload.
    if (!navigator.serviceWorker.controller) return;
    $("update").hidden = false;
    $("update-reload").onclick = () => { updating = true; waiting.postMessage({ type: "skip-waiting" }); };
  };
  navigator.serviceWorker.addEventListener("controllerchange", () => { if (updating) location.reload(); });
  navigator.serviceWorker.register("sw.js").then((reg) => {
    if (reg.waiting) offer(reg.waiting);
    reg.addEventListener("updatefound", () => {
      const w = reg.installing;
      w?.addEventListener("statechange", () => { if (w.state === "installed") offer(w); });
    });
  }).catch(() => { /* no service worker: the app still works online */ });
}

// ---------------------------------------------------------------- wiring
function closeSidebarOnPhone() {
  document.body.classList.remove("side-open");
  $("menu").setAttribute("aria-expanded", "false");
}

function wire() {
  $("composer").addEventListener("submit", (e) => { e.preventDefault(); send(); });
  input.addEventListener("keydown", (e) => {
    if (e.key === "Enter" && !e.shiftKey && !e.isComposing) { e.preventDefault(); send(); }
  });
  input.addEventListener("input", requestFit);
  // Esc stops an answer, but not the Esc that closes a dialog or the drawer.
  document.addEventListener("keydown", (e) => {
    if (e.key !== "Escape" || document.querySelector("dialog[open]") || document.body.classList.contains("side-open")) return;
    if (gen || classroom.active()) { e.preventDefault(); stopGeneration(); }
  });
  $("stop").addEventListener("click", stopGeneration);
  $("regenerate").addEventListener("click", regenerate);
  $("new-chat").addEventListener("click", () => { newConversation(); closeSidebarOnPhone(); });
  $("system").addEventListener("input", () => {
    conv.system = $("system").value;
    conv.updated = Date.now();
    if (C.path(conv).length) saveConv();
    requestFit();
  });
  $("system").addEventListener("change", () => transcript.render());
  $("export-json").addEventListener("click", () => download(`${fileStem()}.json`, "application/json", C.exportJson(conv)));
  $("export-md").addEventListener("click", () => download(`${fileStem()}.md`, "text/markdown", C.exportMarkdown(conv, t("untitled"))));
  $("import").addEventListener("click", () => $("import-file").click());
  $("import-file").addEventListener("change", (e) => { const f = e.target.files[0]; e.target.value = ""; if (f) importFile(f); });
  $("menu").addEventListener("click", () => {
    const open = document.body.classList.toggle("side-open");
    $("menu").setAttribute("aria-expanded", String(open));
    if (open) $("new-chat").focus();
  });
  // The drawer closes with its ✕, with Esc, and with a tap outside it.
  const closeDrawer = () => { if (document.body.classList.contains("side-open")) { closeSidebarOnPhone(); $("menu").focus(); } };
  $("menu-close").addEventListener("click", closeDrawer);
  document.addEventListener("keydown", (e) => { if (e.key === "Escape" && document.body.classList.contains("side-open")) { e.preventDefault(); closeDrawer(); } });
  $("app").addEventListener("pointerdown", (e) => {
    if (document.body.classList.contains("side-open") && !e.target.closest("#menu")) { e.preventDefault(); closeDrawer(); }
  }, true);
  settings.wire(() => {
    if (engine) engine.thinking = settings.read().thinking;
    classroom.fillSliders();
    requestFit();
  });
  wireModelDialog({
    load: (source, backend) => loadModel(source, backend),
    importFile,
    deleteAll: deleteAllConversations,
    engine: () => engine,
    defaultUrl: new URL(DEFAULT_MODEL, location.href).href,
    defaultSha256: DEFAULT_SHA256,
  });
  $("lang").addEventListener("change", () => {
    store.setPref("lang", $("lang").value);
    applyLang($("lang").value);
    status.textContent = describeStatus();
    renderAll();
    renderModelCard(engine);
    renderHistoryTable(engine);
    classroom.fillSliders();
    if (engine?.info().has_chat_template) { notice(""); languageNotice(); }
  });
}

const classroom = createClassroom({
  engine: () => engine,
  conv: () => conv,
  path: () => C.path(conv),
  historyBefore: (node) => C.history(conv, node.parent),
  add: (...a) => C.add(...a),
  saveConv: () => saveConv(),
  renderTranscript: () => transcript.render(),
  settings,
  info: () => engine?.info(),
  setBusy,
  notice,
  error: engineError,
  download,
  onToggle: (on) => {
    const u = new URL(location.href);
    if (on) u.searchParams.set("mode", "classroom"); else u.searchParams.delete("mode");
    history.replaceState(null, "", u);
    classroom.fillSliders();
    transcript.render();
    requestFit();
  },
});

const transcript = createTranscript({
  conv: () => conv,
  streamingNode: () => gen?.nodeId ?? null,
  busy: () => Boolean(gen),
  ready: () => status.dataset.state === "ready",
  classroom,
  answer,
  continueAnswer,
  // Example prompts for an empty conversation (none for a base model, which continues text).
  examples: () => (engine?.info().has_chat_template === false ? null : t("examples").split("|")),
  sendText: (text) => { input.value = text; send(); },
  switched: () => { saveConv(); requestFit(); },
});

async function main() {
  const lang = pickLang(params, store.getPref("lang"), navigator.languages);
  $("lang").value = lang;
  applyLang(lang);
  wire();
  try {
    for (const c of await store.listConversations()) conversations.set(c.id, c);
  } catch (e) {
    storageWarned = true;
    storageMessage = t("errStorage", { m: e.message || String(e) });
    notice(storageMessage);
  }
  const current = conversations.get(store.getPref("current"));
  if (current) conv = current; else if (conversations.size) conv = [...conversations.values()].sort((a, b) => b.updated - a.updated)[0];
  classroom.fillSliders();
  if (params.get("mode") === "classroom") classroom.setOn(true);
  renderHistoryTable(engine);
  renderAll();
  const url = new URL(params.get("model") || DEFAULT_MODEL, location.href).href;
  const source = url === new URL(DEFAULT_MODEL, location.href).href ? { url, sha256: DEFAULT_SHA256 } : { url };
  loadModel(source, params.get("backend") || "auto");
  registerServiceWorker();
  // Ask the browser not to evict stored models and conversations under storage pressure.
  navigator.storage?.persist?.().catch(() => {});
}

main();
