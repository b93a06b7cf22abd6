// The service worker: the app shell (HTML, JS, CSS, wasm) is precached, so that the app starts
// with the network off. The list and its version are written in by scripts/precache.mjs at
// build time; a new build is a new sw.js, which installs beside the old one and waits until the
// page asks it to take over (the page offers a reload). Models are cached by the engine's worker.
//
// It also makes the app cross-origin isolated, which a static host's headers cannot: everything
// it serves carries COOP and COEP, so that from the second load on (once it controls the page)
// the page has SharedArrayBuffer and the engine runs on several threads (www/worker.js). The
// page's own requests are same-origin; a model from another origin is fetched with CORS, which
// `require-corp` allows.
const PRECACHE = self.__PRECACHE__;
const PREFIX = "ember-app-";
const CACHE = PREFIX + PRECACHE.version;

self.addEventListener("install", (event) => {
  event.waitUntil((async () => {
    const cache = await caches.open(CACHE);
    await cache.addAll(PRECACHE.files.map((f) => new Request(f, { cache: "reload" })));
  })());
});

self.addEventListener("activate", (event) => {
  event.waitUntil((async () => {
    for (const key of await caches.keys()) if (key.startsWith(PREFIX) && key !== CACHE) await caches.delete(key);
    await self.clients.claim();
  })());
});

self.addEventListener("message", (event) => {
  if (event.data?.type === "skip-waiting") self.skipWaiting();
});

const scope = new URL(self.registration.scope);
self.addEventListener("fetch", (event) => {
  const req = event.request;
  const url = new URL(req.url);
  if (req.method !== "GET" || url.origin !== scope.origin || !url.pathname.startsWith(scope.pathname)) return;
  const rel = url.pathname.slice(scope.pathname.length);
  // The page itself, whatever its query (?model=, ?lang=…), is the cached index.
  const key = req.mode === "navigate" || rel === "" || rel === "index.html" ? "./" : PRECACHE.files.includes(rel) ? rel : null;
  if (!key) return;
  event.respondWith((async () => {
    const cache = await caches.open(CACHE);
    const hit = await cache.match(key);
    return isolated(hit || await fetch(req));
  })());
});

/** `res` with the headers that isolate the page (an opaque or redirect response as it is). */
function isolated(res) {
  if (res.status === 0 || res.type === "opaqueredirect") return res;
  const headers = new Headers(res.headers);
  headers.set("Cross-Origin-Opener-Policy", "same-origin");
  headers.set("Cross-Origin-Embedder-Policy", "require-corp");
  return new Response(res.body, { status: res.status, statusText: res.statusText, headers });
}
