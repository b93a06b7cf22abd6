// Every error kind the engine can raise (src/error.rs, `Error::kind`) is said in both of the page's
// languages, with no developer punctuation; where the 中文 sentence must carry the engine's
// English free text, it is marked as a technical detail rather than mixed into the sentence.
// Usage: node --test tests/web/i18n.test.mjs
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { applyLang, has, t } from "../../www/js/i18n.js";

const source = readFileSync(new URL("../../src/error.rs", import.meta.url), "utf8");
const kindFn = source.slice(source.indexOf("pub fn kind(&self)"), source.indexOf("pub fn vars(&self)"));
const kinds = [...kindFn.matchAll(/=> "(\w+)"/g)].map((m) => m[1]);
globalThis.document = { documentElement: {} };
const none = { querySelectorAll: () => [] };
const say = (lang, key, vars) => { applyLang(lang, none); return t(key, vars); };

test("the engine's error kinds are read from src/error.rs", () => {
  assert.ok(kinds.length >= 15, `${kinds}`);
  for (const k of ["truncated", "unsupported_type", "unsupported_arch", "context_full"]) assert.ok(kinds.includes(k), k);
});

test("every error kind is translated, in both languages", () => {
  const vars = { detail: "DETAIL", name: "NAME", key: "KEY", type: "Q3_K", supported: "Q4_0", needed: 9, limit: 8, needed_mb: 9, limit_mb: 8, what: "memory" };
  for (const kind of kinds) {
    const key = `err_${kind}`;
    assert.ok(has(key), `${key} has no message`);
    const en = say("en", key, vars);
    const zh = say("zh", key, vars);
    assert.notEqual(zh, en, `${key} is not translated`);
    assert.match(zh, /[\u4e00-\u9fff]/, `${key} in 中文`);
    for (const s of [en, zh]) {
      assert.doesNotMatch(s, /[`{}]/, `${key}: backticks or an unfilled argument in ${s}`);
    }
    if (zh.includes("DETAIL")) assert.match(zh, /（技术细节：DETAIL）/, `${key}: the English detail is marked as such in ${zh}`);
  }
});

test("the refusals a person meets most need no English detail", () => {
  for (const kind of ["truncated", "unsupported_type", "unsupported_arch", "context_full", "too_large", "missing_key"]) {
    const zh = say("zh", `err_${kind}`, { detail: "DETAIL", name: "n", key: "k", type: "Q3_K", supported: "Q4_0", needed: 1, limit: 1, needed_mb: 1, limit_mb: 1, what: "x" });
    assert.doesNotMatch(zh, /DETAIL/, kind);
  }
  assert.match(say("zh", "err_unsupported_type", { type: "Q3_K", supported: "Q4_0, Q4_K" }), /Q3_K.*Q4_0, Q4_K/);
});
