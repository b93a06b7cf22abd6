// A conversation is a tree of messages, so that editing a message or regenerating an answer
// keeps the old branch: each node lists its children and which one is shown (`active`).
// The exported JSON is this record as is.
export const FORMAT = "ember-conversation";
export const VERSION = 1;
const ROLES = new Set(["user", "assistant"]);

const newId = () => (crypto.randomUUID ? crypto.randomUUID() : `${Date.now().toString(36)}-${Math.random().toString(36).slice(2)}`);

export function create(system = "") {
  const now = Date.now();
  return { id: newId(), title: "", created: now, updated: now, system,
           nodes: { root: { id: "root", role: "root", content: "", parent: null, children: [], active: 0 } } };
}

/** The shown path: the nodes from the root's active child down. */
export function path(conv) {
  const out = [];
  let node = conv.nodes.root;
  while (node.children.length) {
    node = conv.nodes[node.children[Math.min(node.active, node.children.length - 1)]];
    out.push(node);
  }
  return out;
}

/** Adds a message under `parentId` and shows it. */
export function add(conv, parentId, role, content, extra = {}) {
  const node = { id: newId(), role, content, parent: parentId, children: [], active: 0, ...extra };
  const parent = conv.nodes[parentId];
  conv.nodes[node.id] = node;
  parent.children.push(node.id);
  parent.active = parent.children.length - 1;
  conv.updated = Date.now();
  if (!conv.title && role === "user") conv.title = content.trim().split("\n")[0].slice(0, 60);
  return node;
}

/** Shows the previous (-1) or next (+1) sibling of a node. */
export function switchSibling(conv, nodeId, delta) {
  const parent = conv.nodes[conv.nodes[nodeId].parent];
  const next = parent.active + delta;
  if (next < 0 || next >= parent.children.length) return false;
  parent.active = next;
  conv.updated = Date.now();
  return true;
}

/** "‹ i/n ›" position of a node among its siblings. */
export function siblings(conv, nodeId) {
  const parent = conv.nodes[conv.nodes[nodeId].parent];
  return { index: parent.children.indexOf(nodeId), count: parent.children.length };
}

/** The messages the model sees up to and including `nodeId`: system prompt, then the path. */
export function history(conv, nodeId) {
  const out = [];
  for (const n of path(conv)) {
    out.push({ role: n.role, content: n.content });
    if (n.id === nodeId) break;
  }
  return conv.system.trim() ? [{ role: "system", content: conv.system }, ...out] : out;
}

export function exportJson(conv) {
  return JSON.stringify({ format: FORMAT, version: VERSION, conversation: conv }, null, 2) + "\n";
}

export function exportMarkdown(conv, untitled) {
  const lines = [`# ${conv.title || untitled}`, ""];
  if (conv.system.trim()) lines.push("## System", "", conv.system, "");
  for (const n of path(conv)) lines.push(n.role === "user" ? "## User" : "## Assistant", "", n.content, "");
  return lines.join("\n");
}

/** Parses and checks an imported file: every field typed, every link between nodes valid. */
export function importJson(text) {
  let doc;
  try { doc = JSON.parse(text); } catch (e) { throw new Error(`not JSON (${e.message})`); }
  if (!doc || doc.format !== FORMAT) throw new Error(`"format" is not "${FORMAT}"`);
  if (doc.version !== VERSION) throw new Error(`version ${doc.version} is not supported`);
  const c = doc.conversation;
  const str = (v, what) => { if (typeof v !== "string") throw new Error(`${what} is not text`); return v; };
  const num = (v, what) => { if (!Number.isFinite(v)) throw new Error(`${what} is not a number`); return v; };
  if (!c || typeof c !== "object") throw new Error("no conversation");
  str(c.id, "id"); str(c.title, "title"); str(c.system, "system"); num(c.created, "created"); num(c.updated, "updated");
  if (!c.nodes || typeof c.nodes !== "object" || !c.nodes.root) throw new Error("no message tree");
  for (const [id, n] of Object.entries(c.nodes)) {
    if (!n || n.id !== id) throw new Error(`node ${id} is malformed`);
    str(n.content, `node ${id} content`);
    if (id === "root" ? n.role !== "root" : !ROLES.has(n.role)) throw new Error(`node ${id} has role ${JSON.stringify(n.role)}`);
    if (!Array.isArray(n.children) || !Number.isInteger(n.active)) throw new Error(`node ${id} is malformed`);
    for (const ch of n.children) if (!c.nodes[ch] || c.nodes[ch].parent !== id) throw new Error(`node ${id} links to a child that is missing or not its own`);
    if (id !== "root" && !c.nodes[n.parent]?.children.includes(id)) throw new Error(`node ${id} has a wrong parent`);
  }
  // Every node reachable from the root exactly once: no cycles.
  const seen = new Set();
  const walk = (id) => { if (seen.has(id)) throw new Error("the message tree has a cycle"); seen.add(id); c.nodes[id].children.forEach(walk); };
  walk("root");
  if (seen.size !== Object.keys(c.nodes).length) throw new Error("the message tree has unreachable nodes");
  return c;
}

/** The titles the sidebar shows: each conversation's own, and where several share one, a number
 *  after it by age ("Hello", "Hello (2)"), so that no two look the same. `untitled` stands for
 *  none. Returns id → {title, suffix} (suffix "" or " (2)", shown apart so that a long title's
 *  ellipsis never hides it). */
export function shownTitles(convs, untitled) {
  const byTitle = new Map();
  for (const c of [...convs].sort((a, b) => a.created - b.created || (a.id < b.id ? -1 : 1))) {
    const title = c.title || untitled;
    byTitle.set(title, [...(byTitle.get(title) || []), c.id]);
  }
  const out = new Map();
  for (const [title, ids] of byTitle) ids.forEach((id, i) => out.set(id, { title, suffix: i === 0 ? "" : ` (${i + 1})` }));
  return out;
}
