// Test-only, served by the cross-engine suite (tests/web/engines.test.mjs) at the top of the
// page: it records what a driver without log or network events cannot see. Uncaught errors,
// unhandled rejections and console errors; CSP violations (under the app's connect-src 'self',
// every request to another origin is one) and resource-timing entries of other origins.
(() => {
  const errors = [];
  const blocked = [];
  addEventListener("error", (e) => errors.push(`uncaught: ${e.message || e.target?.src || e.type}`), true);
  addEventListener("unhandledrejection", (e) => errors.push(`unhandled: ${e.reason?.message || e.reason}`));
  const original = console.error.bind(console);
  console.error = (...args) => { errors.push(`console: ${args.map(String).join(" ")}`); original(...args); };
  document.addEventListener("securitypolicyviolation", (e) => blocked.push(`${e.effectiveDirective} ${e.blockedURI}`));
  const other = (u) => !u.startsWith(location.origin) && !/^(blob|data|about):/.test(u);
  window.__probe = { errors, foreign: () => [...blocked, ...performance.getEntriesByType("resource").map((r) => r.name).filter(other)] };
})();
