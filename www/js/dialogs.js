// The Model dialog (the model card, a model from a URL, files or a folder, dropped files, the
// stored models and conversations) and the classroom's table of GPT sizes.
import { sentences, t } from "./i18n.js";
import * as modelCache from "./model-cache.js";
import { iconButton } from "./transcript.js";
import { CATALOG, deviceLimits, fits } from "./catalog.js";

const $ = (id) => document.getElementById(id);

/** 135M, 1.5B, 175B. */
export const count = (n) => (n >= 1e9 ? `${(n / 1e9).toFixed(1)}B` : n >= 1e6 ? `${(n / 1e6).toFixed(0)}M` : `${(n / 1e3).toFixed(0)}K`);

/** The loaded model's card; `engine` is the Ember (ember.mjs; null before a model is ready). */
export function renderModelCard(engine) {
  const dl = $("model-card");
  dl.replaceChildren();
  if (!engine) return;
  const i = engine.info();
  const c = i.config;
  const rows = [
    ["card_arch", i.architecture + (i.display_name ? ` · ${i.display_name}` : "")],
    // The file's own name for the model (often a training run's), where it differs.
    ["card_filename", i.name && i.name !== i.display_name ? i.name : undefined],
    ["card_format", i.format],
    ["card_mode", i.has_chat_template ? t("modeChat") : t("modeCompletion")],
    ["card_positions", positionsText(i)],
    ["card_attention", attentionText(i.architecture, c)],
    ["card_thinking", i.thinking ? t("thinkingYes") : t("thinkingNo")],
    ["card_params", `${count(i.n_params)} (${i.n_params.toLocaleString("en-US")})`],
    ["card_layers", c.n_layer], ["card_heads", `${c.n_head} / ${c.n_kv_head}`],
    ["card_width", c.d_model], ["card_ffn", c.d_ff], ["card_vocab", c.vocab_size],
    ["card_ctx", `${i.max_context} / ${c.context_length}`],
    ["card_quant", i.tensor_types.map(([n, k]) => `${n} ×${k}`).join(", ")],
    ["card_size", `${(i.file_size / 1e6).toFixed(1)} MB`],
    // On WebGPU, what the GPU allocator counted while the weights loaded; else the computed size.
    ["card_weights", `${((i.gpu_weight_bytes ?? i.weight_bytes) / 1e6).toFixed(1)} MB` + (i.gpu_weight_bytes != null ? ` (${t("gpuCounted")})` : "")],
    // The engine's wasm memory after the load: the most loading took (against the file size).
    ["card_wasm", i.wasm_bytes == null ? null : `${(i.wasm_bytes / 1e6).toFixed(1)} MB`],
    ["card_license", i.license || "—"],
    ["card_org", i.organization || "—"],
    ["card_langs", i.languages.length ? i.languages.join(", ") : "—"],
    ["card_data", i.datasets.length ? i.datasets.join(", ") : t("notStated")],
    ["card_backend", i.backend === "webgpu" ? "WebGPU"
      : i.threads_error ? t("cardCpuFailed", { m: i.threads_error }) : t(i.threads > 1 ? "cardCpuThreads" : "cardCpu", { n: i.threads })],
    ["card_load", `${i.load_s.toFixed(1)} s`],
    // What a decoded token costs in WebGPU calls, counted in the last answer (issue 20).
    ["card_gpuCalls", i.backend !== "webgpu" ? undefined : i.gpu_calls?.decode_token ? t("gpuCallsText", i.gpu_calls.decode_token) : t("gpuCallsNone")],
  ];
  for (const [k, v] of rows.filter((r) => r[1] !== undefined)) {
    const dt = document.createElement("dt");
    dt.textContent = t(k);
    const dd = document.createElement("dd");
    dd.textContent = String(v ?? "—");
    dl.append(dt, dd);
  }
}

/** Positions: learned, or RoPE with its base, the dims it turns where not all, and LongRoPE. */
function positionsText(i) {
  const c = i.config;
  if (i.architecture === "gpt2") return t("posLearned");
  const parts = [t("posRope", { theta: c.rope_theta.toLocaleString("en-US") })];
  const headDim = c.head_width ?? Math.floor(c.d_model / c.n_head);
  if (c.rope_dims != null) parts.push(t("posPartial", { n: c.rope_dims, of: headDim }));
  if (c.longrope) {
    // The engine takes the long factors for a context past the one first trained on.
    const which = i.max_context > c.longrope.original_context ? t("lrLong") : t("lrShort");
    parts.push(t("posLongRope", { which, orig: c.longrope.original_context }));
  }
  return parts.join(" · ");
}

/** How the model attends: head width, QK-norm, and local sliding-window layers with their RoPE base. */
function attentionText(arch, c) {
  const headDim = c.head_width ?? Math.floor(c.d_model / c.n_head);
  const parts = [t("attnHeadWidth", { n: headDim })];
  if (arch === "qwen3" || arch === "gemma3") parts.push(t("attnQkNorm"));
  if (c.sliding_window != null) {
    parts.push(t("attnWindow", { window: c.sliding_window, every: c.swa_pattern, theta: (c.rope_theta_local ?? c.rope_theta).toLocaleString("en-US") }));
  } else {
    parts.push(t("attnGlobal"));
  }
  return parts.join(" · ");
}

/** The catalog: each model with its size, licence and whether it fits this device, and a
 *  button that loads it (`load(url)`); `defaultUrl` is the site's own default model, `current`
 *  the loaded model's URL. */
export async function renderCatalog(load, current, defaultUrl) {
  const ul = $("catalog");
  const device = await deviceLimits();
  ul.replaceChildren();
  for (const m of CATALOG) {
    const li = document.createElement("li");
    li.dataset.model = m.id;
    const f = fits(m, device);
    const name = document.createElement("strong");
    name.textContent = m.name;
    const facts = document.createElement("span");
    facts.className = "hint";
    const size = `${m.approx ? "~" : ""}${(m.size / 1e6).toFixed(0)} MB`;
    facts.textContent = ` · ${m.quant} · ${size} · ${m.licence}` + (m.url ? "" : ` · ${t("catalogHere")}`) + (m.thinking ? ` · ${t("catalogThinking")}` : "");
    const verdict = document.createElement("span");
    verdict.className = `fit fit-${f.memory}`;
    verdict.dataset.fit = f.memory;
    verdict.textContent = t(`fit_${f.memory}`, { need: (f.need / 1e6).toFixed(0) }) + (f.storage === "no" ? ` ${t("fit_nostore")}` : "");
    const b = document.createElement("button");
    b.type = "button";
    b.className = "secondary";
    const url = m.url ?? defaultUrl;
    b.textContent = current === url ? t("catalogLoaded") : t("catalogLoad");
    b.disabled = current === url;
    b.setAttribute("aria-label", `${t("catalogLoad")}: ${m.name}`);
    b.addEventListener("click", () => load(url));
    li.append(name, facts, document.createElement("br"), verdict, " ", b);
    ul.append(li);
  }
}

/** The stored models, each with its delete button, and the storage estimate. */
export async function renderStorage() {
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
    li.append(label, iconButton("✕", `${t("deleteModel")}: ${m.name}`, async () => {
      const error = $("storage-error");
      error.hidden = true;
      try { await modelCache.remove(m.key); } catch (e) {
        error.textContent = t("errDelete", { name: m.name, m: e?.message || String(e) });
        error.hidden = false;
      }
      renderStorage();
    }));
    ul.append(li);
  }
  // Whether the browser promised to keep the site's data (Safari and WebKitGTK have no
  // `persist()`; Chromium and Firefox may refuse it): a person should know a model may need
  // downloading again.
  const persisted = await Promise.resolve(navigator.storage?.persisted?.()).catch(() => undefined);
  const kept = persisted === true ? t("storagePersisted") : t("storageMayClear");
  try {
    const { usage = 0, quota = 0 } = await navigator.storage.estimate();
    $("storage-used").textContent = sentences(t("storageUsed", { used: (usage / 1e6).toFixed(1), quota: (quota / 1e6).toFixed(0) }), kept);
  } catch { $("storage-used").textContent = kept; }
}

/** GPT-1/2/3 next to the loaded model: the same recipe, at very different sizes. */
export function renderHistoryTable(engine) {
  const table = $("c-history");
  const rows = [["GPT-1 (2018)", 12, 768, 12, 512, "117M"], ["GPT-2 (2019)", 48, 1600, 25, 1024, "1.5B"], ["GPT-3 (2020)", 96, 12288, 96, 2048, "175B"]];
  if (engine) {
    const i = engine.info();
    const c = i.config;
    rows.push([`${t("h_this")}: ${i.display_name || i.name || i.architecture}`, c.n_layer, c.d_model, `${c.n_head} (${c.n_kv_head} KV)`, c.context_length, count(i.n_params)]);
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

/** Wires the Model dialog: `load(source, backend)` loads a model, `importFile(file)` a
 *  conversation, `deleteAll()` removes every conversation, `engine()` the current engine. */
export function wireModelDialog({ load, importFile, deleteAll, engine, defaultUrl, defaultSha256 }) {
  const params = new URLSearchParams(location.search);
  const pickCatalog = (url) => load(url === defaultUrl ? { url, sha256: defaultSha256 } : { url }, $("backend-choice").value);
  $("open-model").addEventListener("click", () => {
    renderModelCard(engine());
    renderStorage();
    renderCatalog(pickCatalog, engine()?.source?.url, defaultUrl);
    $("model-dialog").showModal();
    // The card first: the focused URL field may sit below it, and would scroll it away.
    $("model-dialog").scrollTop = 0;
  });
  $("delete-all").addEventListener("click", deleteAll);
  $("backend-choice").value = params.get("backend") || "auto";
  const pref = () => $("backend-choice").value;
  // A new choice applies at once: the model in use is loaded again on that backend.
  $("backend-choice").addEventListener("change", () => {
    const e = engine();
    if (e?.source && (pref() === "auto" || pref() !== e.backend)) load(e.source, pref());
  });
  $("load-url").addEventListener("click", () => {
    const url = $("model-url").value.trim();
    if (url) load({ url: new URL(url, location.href).href }, pref());
  });
  $("model-url").addEventListener("keydown", (e) => { if (e.key === "Enter") { e.preventDefault(); $("load-url").click(); } });
  // One .gguf, or a model folder's files (picked together, or as a folder).
  const pickFiles = (list) => {
    const files = [...list];
    if (files.length === 1 && !files[0].name.endsWith(".json")) load({ file: files[0] }, pref());
    else if (files.length) load({ files }, pref());
  };
  $("model-file").addEventListener("change", (e) => pickFiles(e.target.files));
  $("model-folder").addEventListener("change", (e) => pickFiles(e.target.files));

  // Drag and drop a .gguf (or a conversation's JSON) anywhere on the page.
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
}
