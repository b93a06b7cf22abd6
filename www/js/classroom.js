// Classroom mode: next-token prediction made visible. The engine computes the next token's
// distribution ahead (peek), so the candidates are on screen before the draw; Step draws one
// token, a click on a candidate forces it, and the sampler pipeline is redrawn from the same
// logits when a slider moves (nothing runs the model again). Every generated token keeps the
// distribution it was drawn from, for the transcript's hover view, branching and the export.
import { t } from "./i18n.js";

const $ = (id) => document.getElementById(id);
const TOP_N = 10;
const STAGES = ["softmax", "temperature", "top_k", "top_p", "min_p"];
// Probability bins for colouring tokens, most to least probable.
// Lower bounds of the colour classes p1…p4 (p0 is under 5 %), low to high as the CSS and the
// legend run: a token's class is how many bounds its probability reaches.
export const BINS = [0.05, 0.2, 0.5, 0.8];

export const visible = (s) => s.replace(/ /g, "␣").replace(/\n/g, "↵").replace(/\t/g, "⇥") || "∅";
const pct = (p) => `${(p * 100).toFixed(p >= 0.1 ? 1 : 2)}%`;
export const bin = (p) => BINS.filter((b) => p >= b).length;

function el(tag, attrs = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "class") e.className = v; else if (k === "text") e.textContent = v; else if (k.startsWith("on")) e.addEventListener(k.slice(2), v); else e.setAttribute(k, v);
  }
  e.append(...children);
  return e;
}

/** `api`: {engine() (the Ember of ember.mjs: its `classroom` calls), conv, path, historyBefore, add, saveConv, renderTranscript,
 *  settings (settings.js), info, setBusy, notice, error(e), download, onToggle} */
export function createClassroom(api) {
  let on = false;
  let run = null; // {convId, nodeId, seed}
  let current = null; // {pipeline} for the next token
  let playing = false;
  let playTimer = null;
  let selected = null; // {nodeId, index}

  function setOn(value) {
    on = value;
    document.body.classList.toggle("classroom", on);
    $("classroom-toggle").setAttribute("aria-pressed", String(on));
    $("classroom").hidden = !on;
    if (!on) pause();
    updateControls();
  }

  function updateControls() {
    const busy = document.querySelector('[data-testid="status"]').dataset.state !== "ready";
    $("c-step").disabled = !run || !current || busy;
    $("c-play").disabled = !run;
    $("c-play").textContent = playing ? t("pause") : t("play");
    $("c-play").setAttribute("aria-pressed", String(playing));
  }

  // The classroom's own sliders: they start from the chat's settings, and moving them changes the
  // classroom's draws only (the chat's settings stay as the user set them).
  let mine = {};
  const classroomSettings = () => ({ ...api.settings.read(), ...mine });

  /** The sampler settings; one seed for the whole answer. */
  function sampling() {
    const s = { ...api.settings.sampling(run?.seed ?? null), ...mine };
    if (run) run.seed = s.seed;
    return s;
  }

  function nodeOf(id) {
    return api.conv().id === run?.convId ? api.conv().nodes[id] : null;
  }

  /** Runs `request` for the answer `r`; what it resolves to is taken only if `r` still runs. */
  function follow(r, request, then) {
    request.then((v) => { if (run === r) then(v); }, (e) => { if (run === r) api.error(e); });
  }

  /** Starts a classroom answer in `node` (an assistant node), from a conversation or from ids. */
  function begin(node, { messages, ids, forceFirst = null }) {
    const c = api.conv();
    const r = { convId: c.id, nodeId: node.id };
    run = r;
    current = null;
    renderNext();
    api.setBusy(true);
    const started = api.engine().classroom.start({ messages, ids, max_tokens: api.settings.read().max_tokens, top_n: TOP_N, sampling: sampling() }, {
      start: (e) => {
        const n = nodeOf(r.nodeId);
        if (run !== r) return;
        if (n && e.prompt_ids && !n.prompt_ids) { n.prompt_ids = e.prompt_ids; api.saveConv(); }
        if (e.fit?.dropped > 0) api.notice(t("trimmed", { n: e.fit.dropped }), "info");
      },
    });
    follow(r, started, (next) => showNext(next, forceFirst));
  }

  /** What the engine said comes next: the candidates for the next token, or the end. */
  function showNext(next, force = null) {
    if (next.done) { finish(next.reason || "eos"); return; }
    current = { pipeline: next.pipeline };
    api.setBusy(false);
    renderNext();
    if (force !== null) step(force); else if (playing) schedule();
    updateControls();
  }

  function finish(reason) {
    const node = nodeOf(run.nodeId);
    if (node) {
      node.partial = false;
      node.reason = reason;
      api.saveConv();
    }
    run = null;
    current = null;
    pause();
    api.setBusy(false);
    api.renderTranscript();
    renderNext();
  }

  function step(forced = null) {
    if (!run || !current) return;
    const r = run;
    current = null;
    renderNext(); // the old candidates go: they belong to the token being drawn
    api.setBusy(true);
    follow(r, api.engine().classroom.step({ forced, sampling: sampling(), top_n: TOP_N }), ({ step: s, forced: f, next }) => {
      const node = nodeOf(r.nodeId);
      if (s && node) {
        const chosen = s.top.find((c) => c.token === s.token);
        node.trace = node.trace || [];
        node.trace.push({ id: s.token, text: s.text, p: chosen ? chosen.prob : 0, forced: f !== null,
                          top: s.top.map((c) => ({ id: c.token, text: c.text, p: c.prob })) });
        node.content += s.text;
        api.saveConv();
        api.renderTranscript();
      }
      showNext(next);
    });
  }

  function play() {
    playing = true;
    updateControls();
    if (current) schedule();
  }
  function pause() {
    playing = false;
    clearTimeout(playTimer);
    updateControls();
  }
  function schedule() {
    clearTimeout(playTimer);
    playTimer = setTimeout(() => { if (playing) step(); }, Number($("c-speed").value));
  }

  // ------------------------------------------------------------ the next token and its pipeline
  function renderNext() {
    const list = $("topk");
    list.replaceChildren();
    const stagesBox = $("c-stages");
    stagesBox.replaceChildren();
    if (!current) {
      $("c-next-hint").textContent = run ? t("computing") : t("sendFirst");
      updateControls();
      return;
    }
    // At temperature 0 nothing is drawn: the most probable token is taken (the engine's last stage).
    $("c-next-hint").textContent = t(Number(sampling().temperature) === 0 ? "nextHintGreedy" : "nextHint");
    const { tokens, stages } = current.pipeline;
    const final = stages.at(-1).probs;
    tokens.forEach((tok, i) => {
      if (final[i] <= 0) return;
      const b = el("button", { type: "button", class: "cand", "data-token-id": String(tok.token), "data-prob": final[i].toFixed(6),
                               "aria-label": `${t("force")} ${visible(tok.text)} (${pct(final[i])})`, onclick: () => step(tok.token) },
        el("span", { class: "tok-text", text: visible(tok.text) }),
        el("span", { class: "bar" }),
        el("span", { class: "p", text: pct(final[i]) }));
      b.querySelector(".bar").style.setProperty("--w", String(final[i]));
      list.append(b);
    });
    STAGES.forEach((name, k) => {
      const st = stages[k];
      const box = el("figure", { class: "stage" }, el("figcaption", { text: `${t(`stage_${name}`)} · ${t("kept", { n: st.kept })}` }));
      tokens.forEach((tok, i) => {
        const row = el("div", { class: "srow" + (st.probs[i] <= 0 ? " cut" : "") },
          el("span", { class: "tok-text", text: visible(tok.text) }), el("span", { class: "bar" }), el("span", { class: "p", text: st.probs[i] > 0 ? pct(st.probs[i]) : "—" }));
        row.querySelector(".bar").style.setProperty("--w", String(st.probs[i]));
        box.append(row);
      });
      stagesBox.append(box);
    });
    updateControls();
  }

  function onSlider() {
    const form = $("c-sliders");
    for (const k of ["temperature", "top_k", "top_p", "min_p"]) {
      const v = Number(form.elements[k].value);
      mine[k] = k === "top_k" ? Math.round(v) : v;
      form.querySelector(`output[for="c-${k}"]`).textContent = k === "top_k" && v === 0 ? t("off") : String(v);
    }
    if (!current) return;
    const r = run;
    api.engine().classroom.pipeline(sampling(), TOP_N).then((pipeline) => {
      if (run === r && current && pipeline) { current.pipeline = pipeline; renderNext(); }
    }, () => { /* a newer slider move superseded it */ });
  }

  function fillSliders() {
    const s = classroomSettings();
    const form = $("c-sliders");
    for (const k of ["temperature", "top_k", "top_p", "min_p"]) {
      form.elements[k].value = s[k];
      form.querySelector(`output[for="c-${k}"]`).textContent = k === "top_k" && Number(s[k]) === 0 ? t("off") : String(s[k]);
    }
  }

  // ------------------------------------------------------------ transcript tokens
  /** The assistant message as token chips, coloured by probability; null outside classroom. */
  function decorate(node) {
    if (!on || node.role !== "assistant" || !node.trace?.length) return null;
    const box = el("div", { class: "tokens" });
    node.trace.forEach((tok, i) => {
      // A token that ends part way through a character has no text of its own yet: show its bytes' stand-in.
      const shown = tok.text || tok.top.find((c) => c.id === tok.id)?.text || "�";
      // The end-of-turn token that ended the answer is the model's choice to stop, not text.
      const end = node.reason === "eos" && i === node.trace.length - 1;
      const chip = el("span", { class: `tok p${bin(tok.p)}` + (tok.forced ? " forced" : "") + (end ? " end" : ""), tabindex: "0", "data-i": String(i), "data-p": String(tok.p),
                               "aria-label": `${end ? t("endChip") : visible(shown)}: ${pct(tok.p)}`, title: end ? shown : "", text: end ? t("endChip") : shown });
      const show = () => showToken(node, i);
      chip.addEventListener("mouseenter", show);
      chip.addEventListener("focus", show);
      box.append(chip);
    });
    return box;
  }

  function showToken(node, i) {
    selected = { nodeId: node.id, index: i };
    const tok = node.trace[i];
    const shown = tok.text || tok.top.find((c) => c.id === tok.id)?.text || "�";
    const box = $("c-token");
    box.replaceChildren(el("p", { text: t("tokenInfo", { n: i + 1, tok: visible(shown), id: tok.id, p: pct(tok.p) }) + (tok.forced ? ` (${t("forced")})` : "") }));
    const list = el("div", { class: "alts", role: "list" });
    for (const c of tok.top) {
      const b = el("button", { type: "button", role: "listitem", class: "cand" + (c.id === tok.id ? " chosen" : ""), "data-token-id": String(c.id),
                               "aria-label": `${t("branchHere")} ${visible(c.text)} (${pct(c.p)})`, onclick: () => branch(node, i, c.id) },
        el("span", { class: "tok-text", text: visible(c.text) }), el("span", { class: "bar" }), el("span", { class: "p", text: pct(c.p) }));
      b.querySelector(".bar").style.setProperty("--w", String(c.p));
      if (c.id === tok.id) b.setAttribute("aria-current", "true");
      list.append(b);
    }
    box.append(list, el("p", { class: "hint", text: t("branchHint") }));
  }

  /** Takes another token at position `i` of `node`: a new version of the answer from there. */
  function branch(node, i, tokenId) {
    if (!node.prompt_ids) return;
    if (run) {
      // The running answer ends here, as it is.
      const old = nodeOf(run.nodeId);
      if (old) { old.partial = false; old.reason = "stopped"; }
      api.engine().classroom.stop();
    }
    const c = api.conv();
    const prefix = node.trace.slice(0, i);
    const copy = api.add(c, node.parent, "assistant", prefix.map((x) => x.text).join(""), { partial: true, trace: structuredClone(prefix), prompt_ids: node.prompt_ids });
    api.saveConv();
    api.renderTranscript();
    begin(copy, { ids: [...node.prompt_ids, ...prefix.map((x) => x.id)], forceFirst: tokenId });
  }

  // ------------------------------------------------------------ tokenisation view
  let tokTimer = null;
  function refreshTokens(messages, draft) {
    if (!on) return;
    clearTimeout(tokTimer);
    tokTimer = setTimeout(() => {
      const engine = api.engine();
      if (!engine) return;
      for (const [which, input] of [["draft", draft], ["prompt", { messages, generation: !!draft }]]) {
        engine.tokenize(input).then((r) => showTokens(which, { ids: r.ids, texts: r.tokens }), () => { /* the engine went */ });
      }
    }, 250);
  }

  function showTokens(which, data) {
    const box = $(which === "draft" ? "c-draft-tokens" : "c-prompt-tokens");
    box.replaceChildren();
    data.ids.forEach((id, i) => {
      const text = data.texts[i];
      const special = /^<\|.*\|>$|^<\/?s>$/.test(text);
      box.append(el("span", { class: `chip c${i % 6}` + (special ? " special" : ""), title: `id ${id}` }, el("span", { text: visible(text) }), el("sub", { text: String(id) })));
    });
    if (which === "prompt") {
      const limit = api.info()?.max_context || 1;
      $("c-prompt-count").textContent = t("promptTokens", { n: data.ids.length, limit });
      $("c-prompt-meter").max = limit;
      $("c-prompt-meter").value = data.ids.length;
    } else {
      $("c-draft-count").textContent = t("draftTokens", { n: data.ids.length });
    }
  }

  // ------------------------------------------------------------ trace export
  function lastTraced() {
    const p = api.path();
    return [...p].reverse().find((n) => n.role === "assistant" && n.trace?.length) || null;
  }

  function traceJson(node) {
    const s = classroomSettings();
    return JSON.stringify({
      format: "ember-trace", version: 1, model: api.info()?.display_name || api.info()?.name || "", prompt_ids: node.prompt_ids || [],
      messages: api.historyBefore(node),
      settings: { temperature: s.temperature, top_k: s.top_k, top_p: s.top_p, min_p: s.min_p, repeat_penalty: s.repeat_penalty },
      steps: node.trace.map((x, i) => ({ step: i + 1, token_id: x.id, text: x.text, prob: x.p, forced: x.forced, top: x.top.map((c) => ({ token_id: c.id, text: c.text, prob: c.p })) })),
    }, null, 2) + "\n";
  }

  function traceCsv(node) {
    const q = (s) => `"${String(s).replace(/"/g, '""')}"`;
    const rows = [["step", "token_id", "token", "prob", "forced", "rank", "candidate_id", "candidate", "candidate_prob"].join(",")];
    node.trace.forEach((x, i) => x.top.forEach((c, r) => rows.push([i + 1, x.id, q(x.text), x.p, x.forced, r + 1, c.id, q(c.text), c.p].join(","))));
    return rows.join("\n") + "\n";
  }

  function wire() {
    $("classroom-toggle").addEventListener("click", () => { setOn(!on); api.onToggle(on); });
    $("c-step").addEventListener("click", () => step());
    $("c-play").addEventListener("click", () => (playing ? pause() : play()));
    $("c-sliders").addEventListener("input", onSlider);
    $("c-export-json").addEventListener("click", () => { const n = lastTraced(); if (n) api.download("trace.json", "application/json", traceJson(n)); });
    $("c-export-csv").addEventListener("click", () => { const n = lastTraced(); if (n) api.download("trace.csv", "text/csv", traceCsv(n)); });
    const speedOut = () => { $("c-speed-out").textContent = `${$("c-speed").value} ms`; };
    $("c-speed").addEventListener("input", speedOut);
    speedOut();
    // Keys, outside text fields: → or . steps, p plays and pauses.
    document.addEventListener("keydown", (e) => {
      if (!on || e.target.closest("textarea, input, select, [contenteditable]") || e.ctrlKey || e.metaKey || e.altKey) return;
      if (e.key === "ArrowRight" || e.key === ".") { e.preventDefault(); step(); }
      if (e.key === "p") { e.preventDefault(); playing ? pause() : play(); }
    });
  }

  wire();
  return {
    setOn, isOn: () => on, begin, decorate, refreshTokens, fillSliders, updateControls,
    running: (nodeId) => run?.nodeId === nodeId,
    active: () => Boolean(run),
    stop: () => { if (!run) return; api.engine()?.classroom.stop(); finish("stopped"); },
    reset: () => { run = null; current = null; pause(); renderNext(); },
    selected: () => selected,
  };
}
