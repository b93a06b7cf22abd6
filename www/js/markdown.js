// Markdown → DOM, safe by construction: every piece of text becomes a text node, elements come
// only from a fixed list, links only for http(s)/mailto (opened in a new tab, without referrer),
// and images are never fetched (their alt text is shown). Model output and imported files are
// untrusted; nothing here ever parses HTML.
const SAFE_URL = /^(https?:|mailto:)/i;

function el(tag, children = [], attrs = {}) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
  for (const c of children) e.append(c);
  return e;
}

// Inline: `code`, **bold**, *italic* / _italic_, ~~strike~~, [text](url), ![alt](src).
export function inline(text) {
  const out = [];
  let plain = "";
  const flush = () => { if (plain) { out.push(document.createTextNode(plain)); plain = ""; } };
  let i = 0;
  while (i < text.length) {
    const rest = text.slice(i);
    let m;
    if ((m = /^(`+)([\s\S]*?[^`])\1(?!`)/.exec(rest))) {
      flush(); out.push(el("code", [m[2]])); i += m[0].length; continue;
    }
    if ((m = /^!\[([^\]]*)\]\(([^)\s]*)(?:\s+"[^"]*")?\)/.exec(rest))) {
      // Loading an image would contact another origin: show what it is instead.
      flush(); out.push(el("span", [`[image: ${m[1] || m[2]}]`], { class: "md-image" })); i += m[0].length; continue;
    }
    if ((m = /^\[([^\]]+)\]\(([^)\s]*)(?:\s+"[^"]*")?\)/.exec(rest))) {
      flush();
      const url = m[2].trim();
      if (SAFE_URL.test(url)) {
        const a = el("a", inline(m[1]), { href: url, target: "_blank", rel: "noopener noreferrer nofollow" });
        out.push(a);
      } else {
        out.push(document.createTextNode(m[0]));
      }
      i += m[0].length; continue;
    }
    // Underscores never open or close emphasis inside a word (snake_case, __dunder__).
    const wordBefore = /\w/.test(text[i - 1] || "");
    if ((m = /^(\*\*(?=\S)([\s\S]*?\S)\*\*|__(?=\S)([\s\S]*?\S)__(?!\w))/.exec(rest)) && !(m[1].startsWith("_") && wordBefore)) {
      flush(); out.push(el("strong", inline(m[2] ?? m[3]))); i += m[0].length; continue;
    }
    if ((m = /^~~(?=\S)([\s\S]*?\S)~~/.exec(rest))) {
      flush(); out.push(el("del", inline(m[1]))); i += m[0].length; continue;
    }
    if ((m = /^(\*(?=[^\s*])([\s\S]*?[^\s*])\*(?!\*)|_(?=\S)([\s\S]*?\S)_(?!\w))/.exec(rest)) && !(m[1].startsWith("_") && wordBefore)) {
      flush(); out.push(el("em", inline(m[2] ?? m[3]))); i += m[0].length; continue;
    }
    plain += text[i];
    i += 1;
  }
  flush();
  return out;
}

const isTableSep = (line) => /^\s*\|?\s*:?-{2,}:?\s*(\|\s*:?-{2,}:?\s*)*\|?\s*$/.test(line);
const cells = (line) => line.trim().replace(/^\|/, "").replace(/\|$/, "").split("|").map((c) => c.trim());
const listItem = /^(\s*)([-*+]|\d{1,9}[.)])\s+(.*)$/;

function list(lines, start, copyLabel) {
  // Items at the first item's indentation; deeper lines belong to the item above.
  const indent = listItem.exec(lines[start])[1].length;
  const ordered = /\d/.test(listItem.exec(lines[start])[2]);
  const root = el(ordered ? "ol" : "ul");
  if (ordered) {
    const n = parseInt(listItem.exec(lines[start])[2], 10);
    if (n !== 1) root.setAttribute("start", String(n));
  }
  let i = start;
  while (i < lines.length) {
    const m = listItem.exec(lines[i]);
    if (!m || m[1].length !== indent || /\d/.test(m[2]) !== ordered) break;
    const body = [m[3]];
    i += 1;
    while (i < lines.length && lines[i].trim() !== "" && !(listItem.exec(lines[i]) && listItem.exec(lines[i])[1].length <= indent)) {
      body.push(lines[i].length - lines[i].trimStart().length > indent ? lines[i].slice(Math.min(indent + 2, lines[i].length - lines[i].trimStart().length)) : lines[i].trim());
      i += 1;
    }
    const li = el("li");
    const first = [];
    let j = 0;
    while (j < body.length && !listItem.test(body[j]) && !body[j].startsWith("```")) first.push(body[j++]);
    li.append(...inline(first.join("\n")));
    if (j < body.length) li.append(...blocks(body.slice(j), copyLabel));
    root.append(li);
  }
  return [root, i];
}

function blocks(lines, copyLabel) {
  const out = [];
  let i = 0;
  while (i < lines.length) {
    const line = lines[i];
    let m;
    if (line.trim() === "") { i += 1; continue; }
    if ((m = /^\s*(`{3,}|~{3,})\s*([\w+#.-]*)/.exec(line))) {
      const fence = m[1];
      const code = [];
      i += 1;
      // An unterminated fence (still streaming) runs to the end.
      while (i < lines.length && !lines[i].trim().startsWith(fence)) code.push(lines[i++]);
      i += 1;
      out.push(codeBlock(code.join("\n"), m[2], copyLabel));
      continue;
    }
    if ((m = /^(#{1,6})\s+(.*?)\s*#*\s*$/.exec(line))) {
      out.push(el(`h${m[1].length}`, inline(m[2]))); i += 1; continue;
    }
    if (/^\s*([-*_])(\s*\1){2,}\s*$/.test(line)) { out.push(el("hr")); i += 1; continue; }
    if (/^\s*>/.test(line)) {
      const quoted = [];
      while (i < lines.length && /^\s*>/.test(lines[i])) quoted.push(lines[i++].replace(/^\s*>\s?/, ""));
      out.push(el("blockquote", blocks(quoted, copyLabel)));
      continue;
    }
    if (line.includes("|") && i + 1 < lines.length && isTableSep(lines[i + 1])) {
      const head = cells(line);
      const table = el("table");
      table.append(el("thead", [el("tr", head.map((c) => el("th", inline(c))))]));
      const tbody = el("tbody");
      i += 2;
      while (i < lines.length && lines[i].includes("|") && lines[i].trim() !== "") {
        const row = cells(lines[i++]);
        tbody.append(el("tr", head.map((_, k) => el("td", inline(row[k] ?? "")))));
      }
      table.append(tbody);
      out.push(el("div", [table], { class: "md-table" }));
      continue;
    }
    if (listItem.test(line)) {
      const [node, next] = list(lines, i, copyLabel);
      out.push(node);
      i = next;
      continue;
    }
    const para = [];
    while (i < lines.length && lines[i].trim() !== "" && !/^\s*(`{3,}|~{3,}|#{1,6}\s|>)/.test(lines[i]) && !listItem.test(lines[i])
           && !(lines[i].includes("|") && i + 1 < lines.length && isTableSep(lines[i + 1]))) {
      para.push(lines[i++]);
    }
    if (para.length === 0) para.push(lines[i++]);
    out.push(el("p", inline(para.join("\n"))));
  }
  return out;
}

function codeBlock(code, lang, copyLabel) {
  const pre = el("pre", [el("code", [code], lang ? { "data-lang": lang } : {})]);
  const copy = el("button", [copyLabel.copy], { type: "button", class: "copy", "aria-label": copyLabel.copy });
  copy.addEventListener("click", async () => {
    try { await navigator.clipboard.writeText(code); } catch {
      // Without clipboard access, select the code so that the user can copy it.
      const r = document.createRange(); r.selectNodeContents(pre); getSelection().removeAllRanges(); getSelection().addRange(r);
    }
    copy.textContent = copyLabel.copied;
    setTimeout(() => { copy.textContent = copyLabel.copy; }, 1500);
  });
  return el("div", [lang ? el("span", [lang], { class: "lang" }) : "", copy, pre], { class: "codeblock" });
}

/** Renders `text` as Markdown into fresh DOM nodes. */
export function renderMarkdown(text, copyLabel = { copy: "Copy code", copied: "Copied" }) {
  return blocks(String(text).replace(/\r\n?/g, "\n").split("\n"), copyLabel);
}
