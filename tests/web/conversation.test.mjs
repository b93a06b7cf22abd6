// The conversation tree and its import checks (www/js/conversation.js), in Node: branches from
// edits and regenerations, the prompt history, and imported files that must be refused.
// Usage: node --test tests/web/conversation.test.mjs
import { test } from "node:test";
import assert from "node:assert/strict";
import * as C from "../../www/js/conversation.js";

function sample() {
  const c = C.create("be brief");
  const u1 = C.add(c, "root", "user", "hi\nthere");
  const a1 = C.add(c, u1.id, "assistant", "hello");
  const u2 = C.add(c, a1.id, "user", "more");
  C.add(c, u2.id, "assistant", "sure");
  return { c, u1, a1, u2 };
}

test("the path follows the active children; history adds the system prompt", () => {
  const { c, u2 } = sample();
  assert.deepEqual(C.path(c).map((n) => n.content), ["hi\nthere", "hello", "more", "sure"]);
  assert.deepEqual(C.history(c, u2.id), [
    { role: "system", content: "be brief" }, { role: "user", content: "hi\nthere" },
    { role: "assistant", content: "hello" }, { role: "user", content: "more" }]);
  assert.equal(c.title, "hi");
});

test("an edit is a sibling branch; switching shows each branch whole", () => {
  const { c, u1 } = sample();
  const edited = C.add(c, "root", "user", "edited");
  C.add(c, edited.id, "assistant", "new answer");
  assert.deepEqual(C.path(c).map((n) => n.content), ["edited", "new answer"]);
  assert.deepEqual(C.siblings(c, edited.id), { index: 1, count: 2 });
  assert.equal(C.switchSibling(c, edited.id, -1), true);
  assert.deepEqual(C.path(c).map((n) => n.content), ["hi\nthere", "hello", "more", "sure"]);
  assert.equal(C.switchSibling(c, u1.id, -1), false, "no version before the first");
});

test("JSON export imports back to the same record; Markdown lists the shown path", () => {
  const { c } = sample();
  const json = C.exportJson(c);
  assert.deepEqual(C.importJson(json), c);
  assert.equal(C.exportJson(C.importJson(json)), json);
  assert.equal(C.exportMarkdown(c, "x"), "# hi\n\n## System\n\nbe brief\n\n## User\n\nhi\nthere\n\n## Assistant\n\nhello\n\n## User\n\nmore\n\n## Assistant\n\nsure\n");
});

test("malformed or hostile files are refused with a reason", () => {
  const { c, u1, a1 } = sample();
  const doc = (mutate) => { const d = JSON.parse(C.exportJson(c)); mutate(d.conversation, d); return JSON.stringify(d); };
  const cases = [
    ["{", /not JSON/],
    [JSON.stringify({ format: "other" }), /format/],
    [doc((_, d) => { d.version = 2; }), /version 2/],
    [doc((x) => { x.title = { toString: 1 }; }), /title is not text/],
    [doc((x) => { x.nodes[a1.id].role = "system"; }), /role "system"/],
    [doc((x) => { x.nodes[a1.id].content = 5; }), /content is not text/],
    [doc((x) => { x.nodes[u1.id].children.push("ghost"); }), /missing/],
    [doc((x) => { x.nodes[a1.id].parent = "root"; }), /not its own/],
    [doc((x) => { x.nodes[a1.id].children.push(u1.id); x.nodes[u1.id].parent = a1.id; x.nodes.root.children = []; }), /cycle|unreachable|wrong parent/],
    [doc((x) => { x.nodes.stray = { id: "stray", role: "user", content: "", parent: "root", children: [], active: 0 }; }), /wrong parent|unreachable/],
  ];
  for (const [text, want] of cases) assert.throws(() => C.importJson(text), want, text.slice(0, 80));
});

test("conversations with the same title are told apart in the list, oldest first", () => {
  const mk = (title, created, id) => ({ ...C.create(), title, created, id });
  const shown = C.shownTitles([mk("Hello", 3, "c"), mk("Hello", 1, "a"), mk("", 2, "b"), mk("", 4, "d"), mk("Other", 5, "e")], "Untitled");
  const joined = Object.fromEntries([...shown].map(([id, t]) => [id, t.title + t.suffix]));
  assert.deepEqual(joined, { a: "Hello", c: "Hello (2)", b: "Untitled", d: "Untitled (2)", e: "Other" });
});
