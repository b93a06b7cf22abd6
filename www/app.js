// The page: transcript, composer and status. The model runs in worker.js.
const $ = (id) => document.getElementById(id);
const params = new URLSearchParams(location.search);
const status = $("status");
const transcript = $("transcript");
const input = $("message");
const sendBtn = $("send");
const stopBtn = $("stop");

let messages = [];
let generating = false;
let current = null; // {el, text}
let nextId = 1;
let backendWhy = ""; // why this backend, in plain words

function setStatus(state, text) {
  status.dataset.state = state;
  status.textContent = text;
  sendBtn.disabled = state !== "ready";
  stopBtn.disabled = state !== "generating";
}

// Model output is untrusted: it is only ever set as text, never as HTML.
function addMessage(role, text) {
  const el = document.createElement("div");
  el.className = `message ${role}`;
  el.dataset.role = role;
  el.textContent = text;
  transcript.appendChild(el);
  el.scrollIntoView({ block: "end" });
  return el;
}

async function chooseBackend() {
  const forced = params.get("backend");
  if (forced === "cpu" || forced === "webgpu") { backendWhy = "as asked"; return forced; }
  backendWhy = "this browser has no WebGPU";
  if (!("gpu" in navigator)) return "cpu";
  try {
    if (await navigator.gpu.requestAdapter()) { backendWhy = ""; return "webgpu"; }
  } catch { /* no adapter */ }
  return "cpu";
}

const worker = new Worker(new URL("worker.js", location.href), { type: "module" });
worker.onerror = (e) => setStatus("error", `The engine stopped: ${e.message || "worker failed to start"}`);
worker.onmessage = ({ data }) => {
  switch (data.type) {
    case "progress": {
      const p = $("progress");
      p.max = data.total || 1;
      p.value = data.total ? data.loaded : 0;
      const mb = (n) => (n / 1e6).toFixed(1);
      setStatus("loading", data.total ? `${data.stage} ${mb(data.loaded)} / ${mb(data.total)} MB` : `${data.stage}…`);
      break;
    }
    case "ready": {
      $("progress").hidden = true;
      const fellBack = data.backend !== status.dataset.backend;
      status.dataset.backend = data.backend;
      const info = data.info;
      const why = fellBack ? "WebGPU failed" : backendWhy;
      const where = (data.backend === "webgpu" ? "WebGPU" : "the CPU") + (why ? ` (${why})` : "");
      setStatus("ready", `${info.name || "model"} · ${(info.n_params / 1e6).toFixed(0)}M parameters · on ${where} · loaded in ${data.load_s.toFixed(1)} s`);
      break;
    }
    case "token":
      if (current) {
        current.text += data.step.text;
        current.el.textContent = current.text;
      }
      break;
    case "done": {
      generating = false;
      if (current) {
        messages.push({ role: "assistant", content: current.text });
        current = null;
      }
      const s = data.stats;
      $("stats").textContent = `prefill ${s.prefill_tokens} tokens at ${s.prefill_tok_s.toFixed(1)} tok/s · decode ${s.decode_tok_s.toFixed(1)} tok/s`;
      setStatus("ready", status.textContent);
      break;
    }
    case "error":
      generating = false;
      current = null;
      setStatus("error", data.message);
      addMessage("system", `Error: ${data.message}`);
      break;
  }
};

// Until the settings panel exists, `?temperature=`, `?max_tokens=` and `?seed=` override the
// defaults (SmolLM2's model card suggests a low temperature).
function generateOptions() {
  const num = (name, fallback) => (params.has(name) && Number.isFinite(Number(params.get(name))) ? Number(params.get(name)) : fallback);
  return {
    max_tokens: num("max_tokens", 256),
    sampling: { temperature: num("temperature", 0.2), top_p: 0.9, top_k: 40, min_p: 0.05, repeat_penalty: 1.0, repeat_window: 64,
                seed: num("seed", Math.floor(Math.random() * 1e9)) },
  };
}

function send() {
  const text = input.value.trim();
  if (!text || generating || status.dataset.state !== "ready") return;
  input.value = "";
  messages.push({ role: "user", content: text });
  addMessage("user", text);
  current = { el: addMessage("assistant", ""), text: "" };
  generating = true;
  setStatus("generating", status.textContent);
  worker.postMessage({
    type: "generate", id: nextId++, messages,
    options: generateOptions(),
  });
}

$("composer").addEventListener("submit", (e) => { e.preventDefault(); send(); });
input.addEventListener("keydown", (e) => {
  if (e.key === "Enter" && !e.shiftKey) { e.preventDefault(); send(); }
});
document.addEventListener("keydown", (e) => { if (e.key === "Escape" && generating) worker.postMessage({ type: "stop" }); });
stopBtn.addEventListener("click", () => worker.postMessage({ type: "stop" }));
$("new-chat").addEventListener("click", () => {
  if (generating) worker.postMessage({ type: "stop" });
  messages = [];
  transcript.replaceChildren();
  worker.postMessage({ type: "reset" });
});

chooseBackend().then((backend) => {
  status.dataset.backend = backend;
  worker.postMessage({ type: "load", url: new URL(params.get("model") || "models/SmolLM2-135M-Instruct.Q4_1.gguf", location.href).href, backend });
});
