// The sampler settings: saved ones, this visit's overrides from the URL, the Settings dialog's
// form, and the generation options they make.
import * as store from "./store.js";
import { SAMPLER_DEFAULTS } from "./defaults.js";

const { temperature, top_k, top_p, min_p, repeat_penalty } = SAMPLER_DEFAULTS;
export const DEFAULTS = { temperature, top_k, top_p, min_p, repeat_penalty, max_tokens: 512, seed: "", thinking: true };

/** Regenerate at temperature 0 would give the same answer again: it draws at this one instead. */
export const REGENERATE_TEMPERATURE = 0.7;

const $ = (id) => document.getElementById(id);
let settings = store.loadSettings(DEFAULTS);

// ?temperature=, ?max_tokens=, ?seed=, ?top_k=, ?top_p=, ?min_p= and ?repeat_penalty= override
// the saved settings for this visit (demos and tests), until the user changes that setting.
const overrides = {};
const params = new URLSearchParams(location.search);
for (const k of ["temperature", "max_tokens", "seed", "top_k", "top_p", "min_p", "repeat_penalty"]) {
  if (params.has(k) && Number.isFinite(Number(params.get(k)))) overrides[k] = Number(params.get(k));
}

/** The settings in force. */
export function read() {
  return { ...settings, ...overrides };
}

/** Saves one setting (and drops this visit's override of it). */
export function set(k, v) {
  settings[k] = v;
  delete overrides[k];
  store.saveSettings(settings);
}

/** Back to the defaults, overrides included. */
export function reset() {
  settings = { ...DEFAULTS };
  for (const k of Object.keys(overrides)) delete overrides[k];
  store.saveSettings(settings);
}

/** The sampler's settings, with a random seed when none is set. */
export function sampling(seed = null) {
  const s = read();
  const drawn = seed ?? (s.seed === "" ? Math.floor(Math.random() * 2 ** 31) : Number(s.seed));
  return { temperature: s.temperature, top_k: s.top_k, top_p: s.top_p, min_p: s.min_p, repeat_penalty: s.repeat_penalty, repeat_window: SAMPLER_DEFAULTS.repeat_window, seed: drawn };
}

/** Options of a streamed chat answer. Nobody reads a streamed token's candidates, so none are computed. */
export function chatOptions({ again = false } = {}) {
  const s = sampling();
  if (again && s.temperature === 0) s.temperature = REGENERATE_TEMPERATURE;
  return { max_tokens: read().max_tokens, top_n: 0, sampling: s };
}

export function fillForm() {
  const form = $("settings-form");
  const s = read();
  for (const k of Object.keys(DEFAULTS)) {
    if (form.elements[k].type === "checkbox") form.elements[k].checked = s[k];
    else form.elements[k].value = s[k];
  }
}

/** The form's valid values become the settings. */
export function fromForm() {
  const form = $("settings-form");
  for (const k of Object.keys(DEFAULTS)) {
    const v = form.elements[k].value;
    const old = read()[k];
    if (form.elements[k].type === "checkbox") { if (form.elements[k].checked !== old) set(k, form.elements[k].checked); continue; }
    if (k === "seed") { const seed = v === "" ? "" : Math.max(0, Math.floor(Number(v))); if (seed !== old) set(k, seed); continue; }
    const n = Number(v);
    if (v !== "" && Number.isFinite(n) && form.elements[k].checkValidity()) {
      const value = k === "top_k" || k === "max_tokens" ? Math.round(n) : n;
      if (value !== old) set(k, value);
    }
  }
}

/** Wires the Settings dialog; `changed()` runs after every change. */
export function wire(changed) {
  $("open-settings").addEventListener("click", () => { fillForm(); $("settings-dialog").showModal(); });
  $("settings-form").addEventListener("input", () => { fromForm(); changed(); });
  $("settings-reset").addEventListener("click", () => { reset(); fillForm(); changed(); });
}
