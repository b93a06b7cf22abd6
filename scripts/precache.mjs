// Trunk post-build hook: writes the service worker's precache list into sw.js in the staging
// directory, with a version that is a hash of every app-shell file, so that any change to the
// app makes a new sw.js and the browser installs the new version. Models are not part of the
// shell: the model cache (www/worker.js) keeps them.
import { createHash } from "node:crypto";
import { readdirSync, readFileSync, statSync, writeFileSync } from "node:fs";
import { join, relative } from "node:path";

const dir = process.env.TRUNK_STAGING_DIR;
if (!dir) throw new Error("TRUNK_STAGING_DIR is not set: run through trunk build");
const files = [];
(function walk(d) {
  for (const name of readdirSync(d).sort()) {
    const p = join(d, name);
    const rel = relative(dir, p).split("\\").join("/");
    if (rel === "models" || rel === "sw.js") continue;
    if (statSync(p).isDirectory()) walk(p); else files.push(rel);
  }
})(dir);
const all = createHash("sha256");
for (const f of files) all.update(f).update("\0").update(readFileSync(join(dir, f)));
const version = all.digest("hex").slice(0, 16);
const sw = join(dir, "sw.js");
const text = readFileSync(sw, "utf8");
if (!text.includes("self.__PRECACHE__")) throw new Error("sw.js lacks the self.__PRECACHE__ placeholder");
writeFileSync(sw, text.replace("self.__PRECACHE__", JSON.stringify({ version, files: ["./", ...files] })));
console.log(`precache: ${files.length} files, version ${version}`);
