// Conversations in IndexedDB (one record per conversation, each write its own transaction, so
// that two tabs never leave a half-written record), settings in localStorage. When storage is
// unavailable or full, the app keeps working in memory and says so.
const DB = "ember";
const STORE = "conversations";
let dbPromise = null;
let memory = null; // Map id → record, once IndexedDB has failed

function open() {
  if (!dbPromise) {
    dbPromise = new Promise((resolve, reject) => {
      const req = indexedDB.open(DB, 1);
      req.onupgradeneeded = () => req.result.createObjectStore(STORE, { keyPath: "id" });
      req.onsuccess = () => resolve(req.result);
      req.onerror = () => reject(req.error);
      req.onblocked = () => reject(new Error("the database is blocked by another tab"));
    });
  }
  return dbPromise;
}

function tx(mode, fn) {
  return open().then((db) => new Promise((resolve, reject) => {
    const t = db.transaction(STORE, mode);
    const result = fn(t.objectStore(STORE));
    t.oncomplete = () => resolve(result.result);
    t.onerror = () => reject(t.error);
    t.onabort = () => reject(t.error || new Error("the write was aborted"));
  }));
}

/** Every stored conversation, newest first. */
export async function listConversations() {
  if (memory) return [...memory.values()].sort((a, b) => b.updated - a.updated);
  const all = await tx("readonly", (s) => s.getAll());
  return all.sort((a, b) => b.updated - a.updated);
}

/** Saves one conversation. Rejects when storage fails; `memory` then holds the data. */
export async function saveConversation(conv) {
  const copy = structuredClone(conv);
  if (memory) { memory.set(copy.id, copy); return; }
  try {
    await tx("readwrite", (s) => s.put(copy));
  } catch (e) {
    memory = new Map((await listConversations().catch(() => [])).map((c) => [c.id, c]));
    memory.set(copy.id, copy);
    throw e;
  }
}

export async function deleteConversation(id) {
  if (memory) { memory.delete(id); return; }
  await tx("readwrite", (s) => s.delete(id));
}

export function loadSettings(defaults) {
  try { return { ...defaults, ...JSON.parse(localStorage.getItem("ember.settings") || "{}") }; } catch { return { ...defaults }; }
}

export function saveSettings(settings) {
  try { localStorage.setItem("ember.settings", JSON.stringify(settings)); } catch { /* private mode: settings last this visit */ }
}

export function getPref(key) {
  try { return localStorage.getItem(`ember.${key}`); } catch { return null; }
}

export function setPref(key, value) {
  try { localStorage.setItem(`ember.${key}`, value); } catch { /* ignore */ }
}
