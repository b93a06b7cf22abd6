// The Model dialog's catalog: a short list of small instruct models people run in browsers, as
// single GGUF files on Hugging Face (which sends CORS headers), and whether each fits this
// device before anything is downloaded. Nothing here touches the network: a model is fetched
// only when the user picks it. The default model is the site's own copy.

/** `url: null` is the site's own default model. Sizes are the files' bytes (approximate where
 *  marked `~`, from the hosts' file lists). */
export const CATALOG = [
  { id: "smollm2-135m", name: "SmolLM2 135M Instruct", arch: "llama", quant: "Q4_1", size: 98_362_432, licence: "Apache-2.0", url: null },
  {
    id: "smollm2-360m", name: "SmolLM2 360M Instruct", arch: "llama", quant: "Q8_0", size: 386_000_000, approx: true, licence: "Apache-2.0",
    url: "https://huggingface.co/HuggingFaceTB/SmolLM2-360M-Instruct-GGUF/resolve/main/smollm2-360m-instruct-q8_0.gguf",
  },
  {
    id: "smollm2-1.7b", name: "SmolLM2 1.7B Instruct", arch: "llama", quant: "Q4_K_M", size: 1_055_609_824, licence: "Apache-2.0",
    url: "https://huggingface.co/bartowski/SmolLM2-1.7B-Instruct-GGUF/resolve/main/SmolLM2-1.7B-Instruct-Q4_K_M.gguf",
  },
  {
    id: "qwen2.5-0.5b", name: "Qwen2.5 0.5B Instruct", arch: "qwen2", quant: "Q4_K_M", size: 397_808_192, licence: "Apache-2.0",
    url: "https://huggingface.co/bartowski/Qwen2.5-0.5B-Instruct-GGUF/resolve/main/Qwen2.5-0.5B-Instruct-Q4_K_M.gguf",
  },
  {
    id: "qwen3-0.6b", name: "Qwen3 0.6B", arch: "qwen3", quant: "Q8_0", size: 639_446_688, licence: "Apache-2.0", thinking: true,
    url: "https://huggingface.co/Qwen/Qwen3-0.6B-GGUF/resolve/main/Qwen3-0.6B-Q8_0.gguf",
  },
  {
    id: "gemma3-270m", name: "Gemma 3 270M IT", arch: "gemma3", quant: "Q8_0", size: 291_545_600, licence: "Gemma Terms of Use",
    url: "https://huggingface.co/ggml-org/gemma-3-270m-it-GGUF/resolve/main/gemma-3-270m-it-Q8_0.gguf",
  },
  {
    id: "gemma3-1b", name: "Gemma 3 1B IT", arch: "gemma3", quant: "Q4_K_M", size: 806_000_000, approx: true, licence: "Gemma Terms of Use",
    url: "https://huggingface.co/ggml-org/gemma-3-1b-it-GGUF/resolve/main/gemma-3-1b-it-Q4_K_M.gguf",
  },
  {
    id: "llama3.2-1b", name: "Llama 3.2 1B Instruct", arch: "llama", quant: "Q4_K_M", size: 807_694_464, licence: "Llama 3.2 Community License",
    url: "https://huggingface.co/bartowski/Llama-3.2-1B-Instruct-GGUF/resolve/main/Llama-3.2-1B-Instruct-Q4_K_M.gguf",
  },
];

const GiB = 2 ** 30;
const MiB = 2 ** 20;

/** What loading a file of `size` bytes takes, as the worker loads it: the engine reads the file a
 *  tensor at a time into the weights (about 1.15 × the file at most: quantised blocks with f32
 *  scales, and the tensor being read), plus the KV cache and the engine (~200 MB). A file that
 *  cannot be kept (no storage) is held once more, as the downloaded chunks. */
export function memoryNeeded(size, { kept = true } = {}) {
  return Math.round(1.15 * size + (kept ? 0 : size) + 200 * MiB);
}

/** Whether `entry` fits, before anything is downloaded:
 *  - `memory`: "ok", "tight" (within 25 % of the device's memory) or "no" (over it, or over what
 *    wasm32 can address: the worker allows weights of up to 3.5 GiB);
 *  - `storage`: "ok" (it can be kept for offline use), "no" (it still loads, but is not kept), or
 *    null where the browser does not say.
 *  `device`: `{ memoryBytes }` (navigator.deviceMemory, or the page's ?memory_limit_mb=),
 *  `{ storageFree }` (quota less usage, or ?storage_quota_mb=). */
export function fits(entry, { memoryBytes = null, storageFree = null } = {}) {
  const storage = storageFree == null ? null : entry.url === null || storageFree >= entry.size ? "ok" : "no";
  const need = memoryNeeded(entry.size, { kept: storage !== "no" });
  const wasmRoom = 1.15 * entry.size <= 3.5 * GiB;
  let memory = "ok";
  if (!wasmRoom || (memoryBytes != null && need > memoryBytes)) memory = "no";
  else if (memoryBytes != null && need > 0.75 * memoryBytes) memory = "tight";
  return { memory, storage, need };
}

/** The device's memory and free storage as the browser reports them (or the page's test overrides). */
export async function deviceLimits(params = new URLSearchParams(location.search)) {
  let memoryBytes = params.has("memory_limit_mb") ? Number(params.get("memory_limit_mb")) * MiB : null;
  // navigator.deviceMemory is rounded down and capped at 8 (GB); absent in Firefox and Safari.
  if (memoryBytes == null && typeof navigator !== "undefined" && navigator.deviceMemory) memoryBytes = navigator.deviceMemory * GiB;
  let storageFree = null;
  if (params.has("storage_quota_mb")) storageFree = Number(params.get("storage_quota_mb")) * MiB;
  else {
    try {
      const { usage = 0, quota } = await navigator.storage.estimate();
      if (quota) storageFree = quota - usage;
    } catch { /* no storage manager */ }
  }
  return { memoryBytes, storageFree };
}
