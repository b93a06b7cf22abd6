// Firefox and WebKit for the cross-engine suite, behind one small interface, from Debian's
// packages only: Firefox ESR through puppeteer-core over WebDriver BiDi, and WebKitGTK's
// MiniBrowser through its WebKitWebDriver (selenium-webdriver, classic WebDriver) under Xvfb.
// Neither downloads a browser or a driver.
//
// A driver is {engine, version, goto, reload, eval, waitFor, upload, screenshot, errors, foreign,
// sees, close}: `eval(fn, ...args)` runs `fn` in the page (a promise is awaited); `errors()` are
// the page's uncaught errors and console errors; `foreign()` the requests that left the origin,
// as far as `sees` says the driver can tell.
import puppeteer from "puppeteer-core";
import { Builder, Capabilities, By } from "selenium-webdriver";
import { spawn } from "node:child_process";
import { existsSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";

export const FIREFOX = "/usr/bin/firefox-esr";
export const WEBKIT_DRIVER = "/usr/bin/WebKitWebDriver";
export const MINIBROWSER = "/usr/lib/x86_64-linux-gnu/webkit2gtk-4.1/MiniBrowser";

const sleep = (ms) => new Promise((ok) => setTimeout(ok, ms));
const freePort = () => new Promise((ok) => {
  const s = createServer().listen(0, "127.0.0.1", () => { const { port } = s.address(); s.close(() => ok(port)); });
});

/** Polls `fn` in the page until it returns something truthy; that value. */
async function waitFor(d, fn, arg, timeout = 60_000) {
  const end = Date.now() + timeout;
  for (;;) {
    const v = await d.eval(fn, arg).catch((e) => { if (/navigat|context|destroyed|detached|unload/i.test(String(e))) return null; throw e; });
    if (v) return v;
    if (Date.now() > end) {
      // What the page said then: the app's status line (the state it was stuck in).
      const now = await d.eval(() => [document.querySelector('[data-testid="status"]')?.textContent ?? document.title, document.getElementById("progress-text")?.textContent].filter(Boolean).join(" · ")).catch((e) => String(e));
      throw new Error(`timed out after ${timeout} ms waiting for ${String(fn).slice(0, 160)} (the page said: ${JSON.stringify(now)})`);
    }
    await sleep(100);
  }
}

/** Firefox ESR, headless, on a fresh profile. `prefs` are set before it starts (a private
 *  window is `{"browser.privatebrowsing.autostart": true}`). */
export async function firefox({ origin, prefs = {}, width = 1280, height = 800 } = {}) {
  const browser = await puppeteer.launch({
    browser: "firefox", executablePath: FIREFOX, headless: true, protocol: "webDriverBiDi",
    defaultViewport: { width, height }, extraPrefsFirefox: prefs,
  });
  const page = (await browser.pages())[0] || (await browser.newPage());
  await page.setViewport({ width, height }); // the first tab does not take defaultViewport
  const errors = [];
  const foreign = [];
  page.on("pageerror", (e) => errors.push(`uncaught: ${e.message}`));
  page.on("console", (m) => { if (m.type() === "error") errors.push(`console: ${m.text()}`); });
  // Every request of the tab and its workers, as the browser makes it.
  page.on("request", (r) => {
    const u = r.url();
    if (!u.startsWith(origin) && !/^(blob|data|about):/.test(u)) foreign.push(u);
  });
  const d = {
    engine: "firefox",
    version: await browser.version(),
    sees: "every request of the tab and its workers (BiDi network events)",
    goto: (url) => page.goto(url, { waitUntil: "load" }),
    reload: () => page.reload({ waitUntil: "load" }),
    eval: (fn, ...args) => page.evaluate(fn, ...args),
    waitFor: (fn, arg, timeout) => waitFor(d, fn, arg, timeout),
    upload: async (selector, path) => (await page.$(selector)).uploadFile(path),
    screenshot: (path) => page.screenshot({ path }),
    errors: () => [...errors],
    foreign: () => [...foreign],
    close: () => browser.close(),
  };
  return d;
}

/** WebKitGTK's MiniBrowser under its own Xvfb display, driven by WebKitWebDriver. The driver
 *  has no log or network events (its BiDi session did not start here), so the page is served
 *  with `tests/web/files/probe.js`, which records uncaught errors, console errors and CSP
 *  violations (every foreign request the page or its worker would make is one, under the
 *  app's `connect-src 'self'`), and the page's resource timing is read besides. */
export async function webkit({ origin, width = 1280, height = 800 } = {}) {
  const display = `:${90 + Math.floor(Math.random() * 400)}`;
  const xvfb = spawn("Xvfb", [display, "-screen", "0", `${width}x${height}x24`, "-nolisten", "tcp"], { stdio: "ignore" });
  const port = await freePort();
  const home = mkdtempSync(join(tmpdir(), "ember-webkit-"));
  // Its own HOME and XDG dirs: a fresh profile (storage, caches, service workers) each run.
  const env = { ...process.env, DISPLAY: display, HOME: home, XDG_DATA_HOME: join(home, "data"), XDG_CACHE_HOME: join(home, "cache"), XDG_CONFIG_HOME: join(home, "config") };
  const driver = spawn(WEBKIT_DRIVER, [`--port=${port}`], { stdio: "ignore", env });
  const stop = () => { driver.kill(); xvfb.kill(); };
  process.once("exit", stop);
  let session;
  for (let i = 0; ; i++) {
    try {
      const caps = new Capabilities({ browserName: "MiniBrowser", "webkitgtk:browserOptions": { binary: MINIBROWSER, args: ["--automation"] } });
      session = await new Builder().usingServer(`http://127.0.0.1:${port}`).withCapabilities(caps).build();
      break;
    } catch (e) {
      if (i > 50) { stop(); throw e; }
      await sleep(200);
    }
  }
  await session.manage().setTimeouts({ script: 600_000 });
  await session.manage().window().setRect({ width, height });
  const caps = await session.getCapabilities();
  const pageLog = () => session.executeScript("return window.__probe ? { errors: window.__probe.errors.slice(), foreign: window.__probe.foreign() } : null").catch(() => null);
  // What the probe saw on pages already left (a reload or a navigation starts a new record).
  const seen = { errors: [], foreign: [] };
  const keep = async () => { const p = await pageLog(); if (p) { seen.errors.push(...p.errors); seen.foreign.push(...p.foreign); } };
  const d = {
    engine: "webkit",
    version: `WebKitGTK ${caps.get("browserVersion")}`,
    sees: "the page's CSP violations and resource timing (the driver has no network events)",
    goto: async (url) => { await keep(); await session.get(url); },
    reload: async () => { await keep(); await session.navigate().refresh(); },
    eval: async (fn, ...args) => {
      const r = await session.executeAsyncScript(
        `const done = arguments[arguments.length - 1];
         Promise.resolve().then(() => (${fn}).apply(null, arguments[0]))
           .then((v) => done({ ok: v === undefined ? null : v }), (e) => done({ err: String(e) + "\\n" + ((e && e.stack) || "") }));`, args);
      if (r && "err" in r) throw new Error(r.err);
      return r?.ok;
    },
    waitFor: (fn, arg, timeout) => waitFor(d, fn, arg, timeout),
    upload: async (selector, path) => (await session.findElement(By.css(selector))).sendKeys(path),
    screenshot: async (path) => writeFileSync(path, Buffer.from(await session.takeScreenshot(), "base64")),
    errors: async () => { const p = await pageLog(); return [...seen.errors, ...(p?.errors || [])]; },
    foreign: async () => { const p = await pageLog(); return [...seen.foreign, ...(p?.foreign || [])]; },
    close: async () => { await session.quit().catch(() => {}); stop(); rmSync(home, { recursive: true, force: true }); },
  };
  return d;
}

/** Whether this machine has the engine (its Debian packages). */
export const installed = (engine) => (engine === "firefox" ? [FIREFOX] : [WEBKIT_DRIVER, MINIBROWSER, "/usr/bin/Xvfb"]).every(existsSync);
