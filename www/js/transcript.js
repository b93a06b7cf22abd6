// The transcript: the open conversation's path as messages (Markdown for the model's, text for
// everything else), their branches, edits and stats, and the streaming answer's repaint.
import { t } from "./i18n.js";
import { renderMarkdown } from "./markdown.js";
import * as C from "./conversation.js";

const $ = (id) => document.getElementById(id);

export function iconButton(text, label, onClick) {
  const b = document.createElement("button");
  b.type = "button";
  b.className = "icon secondary";
  b.textContent = text;
  b.setAttribute("aria-label", label);
  b.title = label;
  b.addEventListener("click", onClick);
  return b;
}

/** `api`: {conv(), streamingNode() (the id of the answer being streamed, or null), busy(),
 *  ready(), classroom, answer(userNode), switched()} */
/** A reasoning model's answer `<think>…</think> answer` as its thinking and the answer; null when it has none. */
export function splitThinking(text) {
  const lead = text.match(/^\s*<think>/);
  if (!lead) return null;
  const rest = text.slice(lead[0].length);
  const end = rest.indexOf("</think>");
  if (end < 0) return { thinking: rest.trim(), answer: "", done: false };
  return { thinking: rest.slice(0, end).trim(), answer: rest.slice(end + "</think>".length).trimStart(), done: true };
}

/** An answer's nodes: its Markdown, after its thinking (if any) in a collapsible block that
 *  stays open while the model is still thinking. All of it is text, never HTML. */
function answerNodes(content) {
  const md = (text) => renderMarkdown(text, { copy: t("copyCode"), copied: t("copied") });
  const split = splitThinking(content);
  if (!split) return md(content);
  const box = document.createElement("details");
  box.className = "thinking";
  box.open = !split.done;
  const summary = document.createElement("summary");
  summary.textContent = split.done ? t("thought") : t("thinking");
  const body = document.createElement("div");
  body.className = "thinking-text";
  body.textContent = split.thinking;
  box.append(summary, body);
  return [box, ...md(split.answer)];
}

export function createTranscript(api) {
  const box = $("transcript");

  function render() {
    const conv = api.conv();
    box.replaceChildren();
    if (conv.system.trim()) box.append(messageElement({ id: "system", role: "system", content: conv.system }));
    const path = C.path(conv);
    for (const node of path) box.append(messageElement(node));
    if (!path.length && api.examples) box.append(emptyState());
    box.scrollTop = box.scrollHeight;
    updateRegenerate();
  }

  function fillContent(el, node) {
    if (node.role === "assistant") el.replaceChildren(...answerNodes(node.content));
    else el.textContent = node.content;
  }

  function branchButtons(node) {
    const conv = api.conv();
    const { index, count } = C.siblings(conv, node.id);
    if (count <= 1) return [];
    const go = (d) => () => { if (!api.busy()) { C.switchSibling(conv, node.id, d); render(); api.switched(); } };
    const prev = iconButton("‹", t("previous"), go(-1));
    const next = iconButton("›", t("next"), go(+1));
    prev.disabled = index === 0;
    next.disabled = index === count - 1;
    const pos = document.createElement("span");
    pos.className = "branch";
    pos.textContent = `${index + 1}/${count}`;
    return [prev, pos, next];
  }

  function statsLine(node) {
    const info = document.createElement("span");
    info.className = "stats";
    if (node.stats) {
      const s = node.stats;
      info.textContent = t("statsLine", { ttft: s.ttft.toFixed(2), pt: s.prefill_tok_s.toFixed(1), dt: s.decode_tok_s.toFixed(1), n: s.tokens });
    }
    if (node.partial && api.streamingNode() !== node.id && !api.classroom.running(node.id)) info.textContent += ` (${t(api.classroom.isOn() ? "interrupted" : "interruptedContinue")})`;
    else if (node.reason === "stopped") info.textContent += ` (${t("stopped")})`;
    else if (node.reason === "repeating") info.textContent += ` (${t("stoppedRepeating")})`;
    else if (node.reason === "max_tokens") info.textContent += ` (${t("cutOff")})`;
    return info;
  }

  /** Whether `node` is the answer at the end of the shown path, and ended short of its end: at
   *  the token cap, stopped as a loop, or interrupted (a reload mid-answer). */
  function continuable(node) {
    if (node.role !== "assistant" || api.streamingNode() === node.id || api.classroom.running(node.id)) return false;
    if (C.path(api.conv()).at(-1)?.id !== node.id) return false;
    return node.partial || node.reason === "repeating" || node.reason === "max_tokens";
  }

  function messageElement(node) {
    const el = document.createElement("article");
    el.className = `message ${node.role}`;
    el.dataset.role = node.role;
    el.dataset.node = node.id;
    const content = document.createElement("div");
    content.className = "content";
    const chips = api.classroom.decorate(node);
    if (chips) content.append(chips); else fillContent(content, node);
    el.append(content);
    if (node.role === "system") return el;
    const meta = document.createElement("div");
    meta.className = "meta";
    meta.append(...branchButtons(node));
    if (node.role === "user") meta.append(iconButton("✎", t("edit"), () => startEdit(el, node)));
    const copy = iconButton(t("copy"), t("copyMessage"), async () => {
      try { await navigator.clipboard.writeText(node.content); copy.textContent = t("copied"); } catch { copy.textContent = t("copyFailed"); }
      setTimeout(() => { copy.textContent = t("copy"); }, 1500);
    });
    copy.classList.add("copy");
    meta.append(copy);
    if (node.role === "assistant") meta.append(statsLine(node));
    if (continuable(node) && !api.classroom.isOn()) {
      const more = document.createElement("button");
      more.type = "button";
      more.className = "secondary continue";
      more.textContent = t("continue");
      more.addEventListener("click", () => api.continueAnswer(node));
      meta.append(more);
    }
    el.append(meta);
    return el;
  }

  /** A new conversation's page: what to try, a few example prompts (a click sends one). */
  function emptyState() {
    const el = document.createElement("div");
    el.className = "empty";
    el.dataset.testid = "empty";
    const p = document.createElement("p");
    p.textContent = t(api.examples() ? "emptyHint" : "emptyHintBase");
    el.append(p);
    const list = document.createElement("div");
    list.className = "examples";
    for (const text of api.examples() || []) {
      const b = document.createElement("button");
      b.type = "button";
      b.className = "secondary example";
      b.textContent = text;
      b.addEventListener("click", () => api.sendText(text));
      list.append(b);
    }
    el.append(list);
    return el;
  }

  function startEdit(el, node) {
    if (api.busy()) return;
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
      if (!text || !api.ready()) return;
      // The edit is a new sibling: the old message and everything after it stay as a branch.
      api.answer(C.add(api.conv(), node.parent, "user", text));
    };
    save.addEventListener("click", submit);
    cancel.addEventListener("click", render);
    area.addEventListener("keydown", (e) => {
      if (e.key === "Enter" && !e.shiftKey) { e.preventDefault(); submit(); }
      if (e.key === "Escape") { e.preventDefault(); e.stopPropagation(); render(); }
    });
  }

  function updateRegenerate() {
    $("regenerate").disabled = !api.ready() || !C.path(api.conv()).at(-1);
  }

  // One repaint per frame while an answer streams.
  let paintQueued = false;
  function paintStreaming() {
    if (paintQueued) return;
    paintQueued = true;
    requestAnimationFrame(() => {
      paintQueued = false;
      const id = api.streamingNode();
      if (id === null) return;
      const el = box.querySelector(`[data-node="${id}"] .content`);
      if (el) fillContent(el, api.conv().nodes[id]);
      box.scrollTop = box.scrollHeight;
    });
  }

  return { render, paintStreaming, updateRegenerate };
}
