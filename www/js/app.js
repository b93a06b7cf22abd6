// The page: conversations, transcript, composer, settings and model choice. The model runs in
// worker.js; this file never blocks on it. Model output and imported files are untrusted: they
// reach the DOM only as text (see markdown.js).
import { t, applyLang, pickLang } from "./i18n.js";
import { renderMarkdown } from "./markdown.js";
import * as store from "./store.js";
import * as C from "./conversation.js";
import * as modelCache from "./model-cache.js";
import { createClassroom } from "./classroom.js";

const $ = (id) => document.getElementById(id);
const params = new URLSearchParams(location.search);
const DEFAULT_MODEL = "models/SmolLM2-135M-Instruct.Q4_1.gguf";
// models/fetch.sh checks the same hash; the model cache verifies the download against it.
const DEFAULT_SHA256 = "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53";
// SmolLM2's model card suggests a low temperature and top-p 0.9.
const DEFAULTS = { temperature: 0.2, top_k: 40, top_p: 0.9, min_p: 0.05, repeat_penalty: 1.0, max_tokens: 512, seed: "" };

const status = $("status");
const transcript = $("transcript");
const input = $("message");

let settings = store.loadSettings(DEFAULTS);
let conversations = new Map(); // id → conversation record
let conv = C.create();
let host = null; // {worker, backend, source, why, info, loadS}
let loading = null; // the worker being loaded
let gen = null; // {id, convId, nodeId, t0, firstAt, text}
let nextId = 1;
let storageWarned = false;
// Once storage has failed, the message stays up (a new answer does not clear it).
let storageMessage = "";
let statusKind = { key: "starting", vars: {} };

// ---------------------------------------------------------------- status and notices
const count = (n) => (n >= 1e9 ? `${(n / 1e9).toFixed(1)}B` : n >= 1e6 ? `${(n / 1e6).toFixed(0)}M` : `${(n / 1e3).toFixed(0)}K`);

function setState(state) {
  status.dataset.state = state;
  $("send").disabled = state !== "ready";
  $("stop").disabled = state !== "generating" && !classroom?.active();
  updateRegenerate();
  classroom?.updateControls();
}

/** A classroom step in progress (or not): the same signals as a streamed answer. */
function setBusy(busy) {
  transcript.setAttribute("aria-busy", String(busy));
  if (!host) return;
  showStatus(busy ? "generating" : "ready");
  setState(busy ? "generating" : "ready");
}

function describeStatus() {
  const k = statusKind;
  if (k.key === "ready" || k.key === "generating" || k.key === "prefill") {
    const i = host.info;
    const where = (host.backend === "webgpu" ? t("onGpu") : t("onCpu")) + (host.why ? ` (${host.why()})` : "");
    let base = `${i.name || "model"} · ${t("params", { n: count(i.n_params) })} · ${where} · ${t("loadedIn", { s: host.loadS.toFixed(1) })}`;
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

// ---------------------------------------------------------------- the engine worker
function chooseBackend(pref) {
  if (pref === "cpu" || pref === "webgpu") return Promise.resolve({ backend: pref, why: () => t("whyForced") });
  if (!("gpu" in navigator)) return Promise.resolve({ backend: "cpu", why: () => t("whyNoGpu") });
  return navigator.gpu.requestAdapter().then(
    (a) => (a ? { backend: "webgpu", why: null } : { backend: "cpu", why: () => t("whyNoAdapter") }),
    () => ({ backend: "cpu", why: () => t("whyNoAdapter") }));
}

function errorMessage(data) {
  return data.kind ? t(data.kind, data.vars || {}) : data.message;
}

function limits() {
  const l = {};
  if (params.has("memory_limit_mb")) l.memory_mb = Number(params.get("memory_limit_mb"));
  if (params.has("storage_quota_mb")) l.quota_mb = Number(params.get("storage_quota_mb"));
  // Test-only fault injection (see worker.js).
  if (params.has("fault")) l.fault = params.get("fault");
  return l;
}

/** Loads a model in a fresh worker; the current one keeps serving until the new one is ready. */
async function loadModel(source, pref, reason = null) {
  if (loading) loading.worker.terminate();
  const chosen = await chooseBackend(pref);
  const backend = chosen.backend;
  const why = reason || chosen.why;
  const worker = new Worker(new URL("worker.js", location.href), { type: "module" });
  const attempt = { worker, backend, why, source, pref };
  loading = attempt;
  if (!host) setState("loading");
  $("load-progress").hidden = false;
  $("model-error").hidden = true;
  showStatus("starting");
  worker.onmessage = ({ data }) => onLoadMessage(attempt, data);
  worker.onerror = (e) => onLoadMessage(attempt, { type: "fatal", message: e.message || "the worker failed to start" });
  worker.postMessage({ type: "load", source, backend, limits: limits() });
}

function onLoadMessage(attempt, data) {
  if (attempt !== loading) return;
  switch (data.type) {
    case "notice": notice(t(data.kind, data.vars), "info"); break;
    case "progress": {
      const p = $("progress");
      p.max = data.total || 1;
      p.value = data.total ? data.loaded : 0;
      if (!data.total) p.removeAttribute("value");
      const stage = t(data.stage);
      const amount = data.total
        ? data.stage === "uploading" ? ` ${data.loaded} / ${data.total}` : ` ${(data.loaded / 1e6).toFixed(1)} / ${(data.total / 1e6).toFixed(1)} MB`
        : data.loaded ? ` ${(data.loaded / 1e6).toFixed(1)} MB` : "…";
      $("progress-text").textContent = stage + amount;
      $("load-progress").dataset.stage = data.stage;
      if (!host) showStatus("starting");
      break;
    }
    case "ready": {
      // The old engine goes, and with it any answer it was writing: end that answer cleanly.
      if (gen) finishGeneration("stopped", null);
      if (classroom.active()) classroom.reset();
      if (host) host.worker.terminate();
      loading = null;
      host = { worker: attempt.worker, backend: attempt.backend, why: attempt.why, source: attempt.source, pref: attempt.pref, info: data.info, loadS: data.load_s };
      host.worker.onmessage = ({ data: d }) => onEngineMessage(host, d);
      host.worker.onerror = (e) => onEngineMessage(host, { type: "fatal", message: e.message || "worker error" });
      status.dataset.backend = host.backend;
      $("load-progress").hidden = true;
      renderModelCard();
      renderStorage();
      renderHistoryTable();
      showStatus("ready");
      setState("ready");
      requestFit();
      // A base model continues text: no system prompt, and the composer says so.
      const base = !data.info.has_chat_template;
      $("system-box").hidden = base;
      $("message").dataset.i18nPlaceholder = base ? "messagePlaceholderCompletion" : "messagePlaceholder";
      $("message").placeholder = t($("message").dataset.i18nPlaceholder);
      if (base) notice(t("completionMode"), "info");
      break;
    }
    case "error":
    case "fatal": {
      attempt.worker.terminate();
      loading = null;
      const message = data.type === "fatal" ? data.message : errorMessage(data);
      // A WebGPU failure that is not the file's fault: the CPU may still run it.
      if (attempt.backend === "webgpu" && !data.kind) {
        loadModel(attempt.source, "cpu", () => t("whyGpuFailed", { m: message }));
        return;
      }
      $("load-progress").hidden = true;
      const err = $("model-error");
      err.textContent = message + (host ? ` ${t("keepsOld")}` : "");
      err.hidden = false;
      // The GPU is too small for this model: the CPU may hold it; the user decides.
      if (data.kind === "errGpuMemory") {
        notice(message + (host ? ` ${t("keepsOld")}` : ""), "error", { label: t("useCpu"), run: () => loadModel(attempt.source, "cpu", () => t("whyGpuMemory")) });
        if (host) showStatus(gen ? "generating" : "ready");
        else { showStatus("error", { message }); setState("error"); }
        break;
      }
      if (host) {
        notice(message + ` ${t("keepsOld")}`);
        showStatus(gen ? "generating" : "ready");
      } else {
        showStatus("error", { message });
        setState("error");
      }
      break;
    }
  }
}

function onEngineMessage(h, data) {
  if (h !== host) return;
  if (classroom.onMessage(data)) return;
  switch (data.type) {
    case "start": onStart(data); break;
    case "prefill": if (gen && data.id === gen.id) { showStatus("prefill", { d: data.done, t: data.total }); } break;
    case "token": onToken(data); break;
    case "done": onDone(data); break;
    case "fit": onFit(data); break;
    case "error": onEngineError(errorMessage(data), data.op); break;
    case "fatal": {
      // A trap in wasm (device lost, out of memory): the worker is gone. Keep the transcript,
      // end the answer, and bring the engine back on the CPU.
      const message = data.message;
      host.worker.terminate();
      const source = host.source;
      host = null;
      onEngineError(message, "generate");
      notice(t("engineRestarted", { m: message }));
      loadModel(source, "cpu", () => t("whyGpuFailed", { m: message }));
      break;
    }
  }
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
  for (const c of items) {
    const li = document.createElement("li");
    li.dataset.id = c.id;
    const title = c.title || t("untitled");
    const open = document.createElement("button");
    open.type = "button";
    open.className = "conv";
    open.textContent = title;
    if (c.id === conv.id) open.setAttribute("aria-current", "true");
    open.addEventListener("click", () => openConversation(c.id));
    const rename = iconButton("✎", `${t("rename")}: ${title}`, () => startRename(li, c));
    const del = iconButton("✕", `${t("delete")}: ${title}`, () => removeConversation(c.id));
    li.append(open, rename, del);
    list.append(li);
  }
}

function iconButton(text, label, onClick) {
  const b = document.createElement("button");
  b.type = "button";
  b.className = "icon secondary";
  b.textContent = text;
  b.setAttribute("aria-label", label);
  b.title = label;
  b.addEventListener("click", onClick);
  return b;
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

function openConversation(id) {
  if (gen || classroom.active()) stopGeneration();
  classroom.reset();
  conv = conversations.get(id);
  store.setPref("current", id);
  host?.worker.postMessage({ type: "reset" });
  renderAll();
  closeSidebarOnPhone();
}

function newConversation() {
  if (gen || classroom.active()) stopGeneration();
  classroom.reset();
  conv = C.create();
  host?.worker.postMessage({ type: "reset" });
  notice("");
  renderAll();
  input.focus();
}

// ---------------------------------------------------------------- transcript
function renderAll() {
  $("system").value = conv.system;
  renderTranscript();
  renderSidebar();
  requestFit();
}

function renderTranscript() {
  transcript.replaceChildren();
  if (conv.system.trim()) transcript.append(messageElement({ id: "system", role: "system", content: conv.system }));
  for (const node of C.path(conv)) transcript.append(messageElement(node));
  transcript.scrollTop = transcript.scrollHeight;
  updateRegenerate();
}

function fillContent(box, node) {
  if (node.role === "assistant") box.replaceChildren(...renderMarkdown(node.content, { copy: t("copyCode"), copied: t("copied") }));
  else box.textContent = node.content;
}

function messageElement(node) {
  const el = document.createElement("article");
  el.className = `message ${node.role}`;
  el.dataset.role = node.role;
  el.dataset.node = node.id;
  const box = document.createElement("div");
  box.className = "content";
  const chips = classroom.decorate(node);
  if (chips) box.append(chips); else fillContent(box, node);
  el.append(box);
  if (node.role === "system") return el;
  const meta = document.createElement("div");
  meta.className = "meta";
  const { index, count } = C.siblings(conv, node.id);
  if (count > 1) {
    const prev = iconButton("‹", t("previous"), () => { if (!gen) { C.switchSibling(conv, node.id, -1); saveConv(); renderTranscript(); requestFit(); } });
    const next = iconButton("›", t("next"), () => { if (!gen) { C.switchSibling(conv, node.id, +1); saveConv(); renderTranscript(); requestFit(); } });
    prev.disabled = index === 0;
    next.disabled = index === count - 1;
    const pos = document.createElement("span");
    pos.className = "branch";
    pos.textContent = `${index + 1}/${count}`;
    meta.append(prev, pos, next);
  }
  if (node.role === "user") meta.append(iconButton("✎", t("edit"), () => startEdit(el, node)));
  if (node.role === "assistant") {
    const info = document.createElement("span");
    info.className = "stats";
    if (node.stats) {
      const s = node.stats;
      info.textContent = t("statsLine", { ttft: s.ttft.toFixed(2), pt: s.prefill_tok_s.toFixed(1), dt: s.decode_tok_s.toFixed(1), n: s.tokens });
    }
    if (node.partial && !(gen && gen.nodeId === node.id) && !classroom.running(node.id)) info.textContent += ` (${t("interrupted")})`;
    else if (node.reason === "stopped") info.textContent += ` (${t("stopped")})`;
    meta.append(info);
  }
  el.append(meta);
  return el;
}

function startEdit(el, node) {
  if (gen) return;
  const area = document.createElement("textarea");
  area.value = node.content;
  area.setAttribute("aria-label", t("edit"));
  area.rows = Math.min(10, node.content.split("\n").length + 1);
  const save = document.createElement("button");
  save.type = "button";
  save.textContent = t("saveSend");
  const cancel = document.createElement("button");
  cancel.type = "button";
  cancel.className = "secondary";
  cancel.textContent = t("cancel");
  const bar = document.createElement("div");
  bar.className = "buttons";
  bar.append(save, cancel);
  el.replaceChildren(area, bar);
  area.focus();
  const submit = () => {
    const text = area.value.trim();
    if (!text || status.dataset.state !== "ready") return;
    // The edit is a new sibling: the old message and everything after it stay as a branch.
    const user = C.add(conv, node.parent, "user", text);
    answer(user);
  };
  save.addEventListener("click", submit);
  cancel.addEventListener("click", () => renderTranscript());
  area.addEventListener("keydown", (e) => {
    if (e.key === "Enter" && !e.shiftKey) { e.preventDefault(); submit(); }
    if (e.key === "Escape") { e.preventDefault(); e.stopPropagation(); renderTranscript(); }
  });
}

function updateRegenerate() {
  const last = C.path(conv).at(-1);
  $("regenerate").disabled = status.dataset.state !== "ready" || !last;
}

let paintQueued = false;
function paintStreaming() {
  if (paintQueued) return;
  paintQueued = true;
  requestAnimationFrame(() => {
    paintQueued = false;
    if (!gen) return;
    const el = transcript.querySelector(`[data-node="${gen.nodeId}"] .content`);
    if (el) fillContent(el, conv.nodes[gen.nodeId]);
    transcript.scrollTop = transcript.scrollHeight;
  });
}

// ---------------------------------------------------------------- generation
function generationOptions() {
  const s = readSettings();
  const seed = s.seed === "" ? Math.floor(Math.random() * 2 ** 31) : Number(s.seed);
  return {
    max_tokens: s.max_tokens,
    top_n: 10,
    sampling: { temperature: s.temperature, top_k: s.top_k, top_p: s.top_p, min_p: s.min_p, repeat_penalty: s.repeat_penalty, repeat_window: 64, seed },
  };
}

function generateAfter(userNode) {
  const assistant = C.add(conv, userNode.id, "assistant", "", { partial: true });
  const convId = conv.id;
  gen = { id: nextId++, convId, nodeId: assistant.id, t0: performance.now(), firstAt: null };
  saveConv();
  renderTranscript();
  renderSidebar();
  transcript.setAttribute("aria-busy", "true");
  showStatus("generating");
  setState("generating");
  const options = generationOptions();
  host.worker.postMessage({ type: "generate", id: gen.id, messages: C.history(conv, userNode.id), options, reserve: options.max_tokens });
}

function send() {
  const text = input.value.trim();
  if (!text || gen || status.dataset.state !== "ready") return;
  input.value = "";
  const last = C.path(conv).at(-1);
  const user = C.add(conv, last ? last.id : "root", "user", text);
  answer(user);
}

/** Answers `userNode`: streamed, or one token at a time in classroom mode. */
function answer(userNode) {
  if (!classroom.isOn()) { generateAfter(userNode); return; }
  if (classroom.active()) classroom.stop();
  const assistant = C.add(conv, userNode.id, "assistant", "", { partial: true, trace: [] });
  saveConv();
  renderTranscript();
  renderSidebar();
  classroom.begin(assistant, { messages: C.history(conv, userNode.id) });
}

function regenerate() {
  if (gen || status.dataset.state !== "ready") return;
  const last = C.path(conv).at(-1);
  if (!last) return;
  // A new sibling of the last answer (or a first answer to a lone question).
  const user = last.role === "assistant" ? conv.nodes[last.parent] : last;
  answer(user);
}

function stopGeneration() {
  if (classroom.active()) { classroom.stop(); return; }
  if (!gen) return;
  host?.worker.postMessage({ type: "stop" });
}

function onStart(data) {
  if (!gen || data.id !== gen.id) return;
  gen.fit = data.fit;
  if (data.fit.dropped > 0) notice(t("trimmed", { n: data.fit.dropped }) + (storageMessage ? ` ${storageMessage}` : ""), storageMessage ? "error" : "info");
  else notice(storageMessage);
}

function onToken(data) {
  if (!gen || data.id !== gen.id) return;
  if (gen.firstAt === null) { gen.firstAt = performance.now(); showStatus("generating"); }
  const c = conversations.get(gen.convId) || conv;
  const node = c.nodes[gen.nodeId];
  node.content += data.step.text;
  gen.tokens = (gen.tokens || 0) + 1;
  // Saved on every token: a reload mid-answer loses at most the unfinished one.
  saveConv(c);
  if (c === conv) paintStreaming();
}

function finishGeneration(reason, stats) {
  const c = conversations.get(gen.convId) || conv;
  const node = c.nodes[gen.nodeId];
  node.partial = false;
  node.reason = reason;
  if (stats) {
    node.stats = { ttft: gen.firstAt ? (gen.firstAt - gen.t0) / 1000 : 0, prefill_tok_s: stats.prefill_tok_s, decode_tok_s: stats.decode_tok_s,
                   tokens: gen.tokens || 0, prefill_tokens: stats.prefill_tokens };
  }
  gen = null;
  transcript.setAttribute("aria-busy", "false");
  saveConv(c);
  if (c === conv) renderTranscript();
  if (host) { showStatus("ready"); setState("ready"); }
  requestFit();
}

function onDone(data) {
  if (!gen || data.id !== gen.id) return;
  finishGeneration(data.reason, data.stats);
}

function onEngineError(message, op) {
  if (op === "fit" || op === "tokens" || op === "cpipeline") return;
  if (classroom.active()) { classroom.reset(); setBusy(false); }
  if (gen) finishGeneration("error", null);
  notice(`${t("errTitle")}: ${message}`);
  if (host) { showStatus("ready"); setState("ready"); }
}

// ---------------------------------------------------------------- context meter
let fitTimer = null;
function requestFit() {
  clearTimeout(fitTimer);
  fitTimer = setTimeout(() => {
    if (!host) return;
    const last = C.path(conv).at(-1);
    const messages = last ? C.history(conv, last.id) : C.history(conv, null);
    const draft = input.value.trim();
    if (draft) messages.push({ role: "user", content: draft });
    if (!messages.some((m) => m.role !== "system")) messages.push({ role: "user", content: "" });
    host.worker.postMessage({ type: "fit", id: nextId++, messages, reserve: readSettings().max_tokens });
    classroom.refreshTokens(messages, draft);
  }, 200);
}

function onFit(data) {
  const text = $("context-text");
  const meter = $("context-meter");
  if (data.error) {
    const m = /(\d+) tokens needed, the model holds (\d+)/.exec(data.error);
    text.textContent = m ? t("tooLong", { n: m[1], limit: m[2] }) : data.error;
    meter.value = meter.max;
    $("meter").dataset.over = "true";
    return;
  }
  const f = data.fit;
  meter.max = f.limit;
  meter.value = f.tokens;
  $("meter").dataset.over = f.dropped > 0 ? "true" : "false";
  $("meter").dataset.tokens = String(f.tokens);
  text.textContent = t("contextMeter", { n: f.tokens, limit: f.limit }) + (f.dropped > 0 ? ` · ${t("trimmed", { n: f.dropped })}` : "");
}

// ---------------------------------------------------------------- settings
// ?temperature=, ?max_tokens=, ?seed=, ?top_k=, ?top_p= and ?min_p= override the saved settings
// for this visit (demos and tests), until the user changes that setting.
const overrides = {};
for (const k of ["temperature", "max_tokens", "seed", "top_k", "top_p", "min_p"]) {
  if (params.has(k) && Number.isFinite(Number(params.get(k)))) overrides[k] = Number(params.get(k));
}

function readSettings() {
  return { ...settings, ...overrides };
}

function setSetting(k, v) {
  settings[k] = v;
  delete overrides[k];
  store.saveSettings(settings);
}

function fillSettingsForm() {
  const form = $("settings-form");
  const s = readSettings();
  for (const k of Object.keys(DEFAULTS)) form.elements[k].value = s[k];
}

function onSettingsInput() {
  const form = $("settings-form");
  for (const k of Object.keys(DEFAULTS)) {
    const v = form.elements[k].value;
    const old = readSettings()[k];
    if (k === "seed") { const seed = v === "" ? "" : Math.max(0, Math.floor(Number(v))); if (seed !== old) setSetting(k, seed); continue; }
    const n = Number(v);
    if (v !== "" && Number.isFinite(n) && form.elements[k].checkValidity()) {
      const value = k === "top_k" || k === "max_tokens" ? Math.round(n) : n;
      if (value !== old) setSetting(k, value);
    }
  }
  requestFit();
}

// ---------------------------------------------------------------- model card
function renderModelCard() {
  const dl = $("model-card");
  dl.replaceChildren();
  if (!host) return;
  const i = host.info;
  const c = i.config;
  const rows = [
    ["card_arch", i.architecture + (i.name ? ` · ${i.name}` : "")],
    ["card_format", i.format],
    ["card_mode", i.has_chat_template ? t("modeChat") : t("modeCompletion")],
    ["card_positions", i.architecture === "gpt2" ? t("posLearned") : t("posRope", { theta: c.rope_theta.toLocaleString("en-US") })],
    ["card_params", `${count(i.n_params)} (${i.n_params.toLocaleString("en-US")})`],
    ["card_layers", c.n_layer], ["card_heads", `${c.n_head} / ${c.n_kv_head}`],
    ["card_width", c.d_model], ["card_ffn", c.d_ff], ["card_vocab", c.vocab_size],
    ["card_ctx", `${i.max_context} / ${c.context_length}`],
    ["card_quant", i.tensor_types.map(([n, k]) => `${n} ×${k}`).join(", ")],
    ["card_size", `${(i.file_size / 1e6).toFixed(1)} MB`],
    // On WebGPU, what the GPU allocator counted while the weights loaded; else the computed size.
    ["card_weights", `${((i.gpu_weight_bytes ?? i.weight_bytes) / 1e6).toFixed(1)} MB` + (i.gpu_weight_bytes != null ? ` (${t("gpuCounted")})` : "")],
    ["card_license", i.license || "—"],
    ["card_org", i.organization || "—"],
    ["card_langs", i.languages.length ? i.languages.join(", ") : "—"],
    ["card_data", i.datasets.length ? i.datasets.join(", ") : t("notStated")],
    ["card_backend", host.backend === "webgpu" ? "WebGPU" : "CPU (wasm)"],
    ["card_load", `${host.loadS.toFixed(1)} s`],
  ];
  for (const [k, v] of rows) {
    const dt = document.createElement("dt");
    dt.textContent = t(k);
    const dd = document.createElement("dd");
    dd.textContent = String(v ?? "—");
    dl.append(dt, dd);
  }
}

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

// ---------------------------------------------------------------- storage manager
async function renderStorage() {
  const ul = $("stored-models");
  let models = [];
  try { models = await modelCache.list(); } catch { /* no OPFS */ }
  ul.replaceChildren();
  if (!models.length) {
    const li = document.createElement("li");
    li.textContent = t("noModels");
    ul.append(li);
  }
  for (const m of models) {
    const li = document.createElement("li");
    li.dataset.key = m.key;
    const label = document.createElement("span");
    label.textContent = `${m.name} · ${(m.size / 1e6).toFixed(1)} MB` + (m.complete ? (m.verified ? ` · ${t("verified")}` : "") : ` · ${t("partial")}`);
    label.title = m.url;
    li.append(label, iconButton("✕", `${t("deleteModel")}: ${m.name}`, async () => { await modelCache.remove(m.key); renderStorage(); }));
    ul.append(li);
  }
  try {
    const { usage = 0, quota = 0 } = await navigator.storage.estimate();
    $("storage-used").textContent = t("storageUsed", { used: (usage / 1e6).toFixed(1), quota: (quota / 1e6).toFixed(0) });
  } catch { $("storage-used").textContent = ""; }
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
  document.addEventListener("keydown", (e) => { if (e.key === "Escape" && (gen || classroom.active())) { e.preventDefault(); stopGeneration(); } });
  $("stop").addEventListener("click", stopGeneration);
  $("regenerate").addEventListener("click", regenerate);
  $("new-chat").addEventListener("click", () => { newConversation(); closeSidebarOnPhone(); });
  $("system").addEventListener("input", () => {
    conv.system = $("system").value;
    conv.updated = Date.now();
    if (C.path(conv).length) saveConv();
    requestFit();
  });
  $("system").addEventListener("change", () => renderTranscript());
  $("export-json").addEventListener("click", () => download(`${fileStem()}.json`, "application/json", C.exportJson(conv)));
  $("export-md").addEventListener("click", () => download(`${fileStem()}.md`, "text/markdown", C.exportMarkdown(conv, t("untitled"))));
  $("import").addEventListener("click", () => $("import-file").click());
  $("import-file").addEventListener("change", (e) => { const f = e.target.files[0]; e.target.value = ""; if (f) importFile(f); });
  $("menu").addEventListener("click", () => {
    const open = document.body.classList.toggle("side-open");
    $("menu").setAttribute("aria-expanded", String(open));
  });

  $("open-settings").addEventListener("click", () => { fillSettingsForm(); $("settings-dialog").showModal(); });
  $("settings-form").addEventListener("input", onSettingsInput);
  $("settings-reset").addEventListener("click", () => {
    settings = { ...DEFAULTS };
    for (const k of Object.keys(overrides)) delete overrides[k];
    store.saveSettings(settings);
    fillSettingsForm();
    classroom.fillSliders();
    requestFit();
  });

  $("open-model").addEventListener("click", () => { renderModelCard(); renderStorage(); $("model-dialog").showModal(); });
  $("delete-all").addEventListener("click", deleteAllConversations);
  $("backend-choice").value = params.get("backend") || "auto";
  const pref = () => $("backend-choice").value;
  $("load-url").addEventListener("click", () => {
    const url = $("model-url").value.trim();
    if (url) loadModel({ url: new URL(url, location.href).href }, pref());
  });
  $("model-url").addEventListener("keydown", (e) => { if (e.key === "Enter") { e.preventDefault(); $("load-url").click(); } });
  // One .gguf, or a model folder's files (picked together, or as a folder).
  const pickFiles = (list) => {
    const files = [...list];
    if (files.length === 1 && !files[0].name.endsWith(".json")) loadModel({ file: files[0] }, pref());
    else if (files.length) loadModel({ files }, pref());
  };
  $("model-file").addEventListener("change", (e) => pickFiles(e.target.files));
  $("model-folder").addEventListener("change", (e) => pickFiles(e.target.files));

  // Drag and drop a .gguf anywhere on the page.
  let depth = 0;
  const overlay = $("drop-overlay");
  const hasFiles = (e) => [...(e.dataTransfer?.types || [])].includes("Files");
  addEventListener("dragenter", (e) => { if (hasFiles(e)) { depth += 1; overlay.hidden = false; } });
  addEventListener("dragleave", () => { depth = Math.max(0, depth - 1); if (!depth) overlay.hidden = true; });
  addEventListener("dragover", (e) => { if (hasFiles(e)) e.preventDefault(); });
  addEventListener("drop", (e) => {
    e.preventDefault();
    depth = 0;
    overlay.hidden = true;
    const files = [...(e.dataTransfer?.files || [])];
    if (!files.length) return;
    if (files.length === 1 && files[0].name.endsWith(".json")) importFile(files[0]); else pickFiles(files);
  });

  $("lang").addEventListener("change", () => {
    store.setPref("lang", $("lang").value);
    applyLang($("lang").value);
    status.textContent = describeStatus();
    renderAll();
    renderModelCard();
    renderHistoryTable();
    classroom.fillSliders();
  });
}

const classroom = createClassroom({
  post: (m) => host?.worker.postMessage(m),
  conv: () => conv,
  path: () => C.path(conv),
  historyBefore: (node) => C.history(conv, node.parent),
  add: (...a) => C.add(...a),
  saveConv: () => saveConv(),
  renderTranscript: () => renderTranscript(),
  settings: () => readSettings(),
  setSetting,
  info: () => host?.info,
  setBusy,
  nextId: () => nextId++,
  notice,
  download,
  onToggle: (on) => {
    const u = new URL(location.href);
    if (on) u.searchParams.set("mode", "classroom"); else u.searchParams.delete("mode");
    history.replaceState(null, "", u);
    classroom.fillSliders();
    renderTranscript();
    requestFit();
  },
});

// GPT-1/2/3 next to the loaded model: the same recipe, at very different sizes.
function renderHistoryTable() {
  const table = $("c-history");
  const rows = [["GPT-1 (2018)", 12, 768, 12, 512, "117M"], ["GPT-2 (2019)", 48, 1600, 25, 1024, "1.5B"], ["GPT-3 (2020)", 96, 12288, 96, 2048, "175B"]];
  if (host) {
    const c = host.info.config;
    rows.push([`${t("h_this")}: ${host.info.name || host.info.architecture}`, c.n_layer, c.d_model, `${c.n_head} (${c.n_kv_head} KV)`, c.context_length, count(host.info.n_params)]);
  }
  const head = document.createElement("tr");
  for (const k of ["h_model", "h_layers", "h_width", "h_heads", "h_ctx", "h_params"]) {
    const th = document.createElement("th");
    th.textContent = t(k);
    head.append(th);
  }
  table.replaceChildren(head);
  for (const r of rows) {
    const tr = document.createElement("tr");
    for (const v of r) { const td = document.createElement("td"); td.textContent = String(v); tr.append(td); }
    table.append(tr);
  }
}

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
  const mode = params.get("mode");
  classroom.fillSliders();
  if (mode === "classroom") classroom.setOn(true);
  renderHistoryTable();
  renderAll();
  const url = new URL(params.get("model") || DEFAULT_MODEL, location.href).href;
  const source = url === new URL(DEFAULT_MODEL, location.href).href ? { url, sha256: DEFAULT_SHA256 } : { url };
  loadModel(source, params.get("backend") || "auto");
  registerServiceWorker();
  // Ask the browser not to evict stored models and conversations under storage pressure.
  navigator.storage?.persist?.().catch(() => {});
}

main();
