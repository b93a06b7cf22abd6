//! The wasm-bindgen surface: load / start / next / stop / reset, returning plain serde structs
//! through serde-wasm-bindgen. Errors become `JsError` here and only here.
//!
//! Meant to live in a dedicated Web Worker, which handles one call at a time; a call that
//! arrives while another is running gets an "engine busy" error rather than a panic.

use std::cell::RefCell;
use std::rc::Rc;

use js_sys::Promise;
use serde::Serialize;
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::future_to_promise;

use crate::backend::{Backend, Device};
use crate::chat::Message;
use crate::engine::{Engine, GenerateOptions, LoadOptions, Prompt};
use crate::error::Error;
use crate::hf::HfFolder;

// The module's static constructors (CubeCL registers its IR operations through `inventory`)
// run once, from here. wasm-ld treats a module none of whose exports calls `__wasm_call_ctors`
// as a "command" and wraps every export to run all the constructors first: each call from
// JavaScript (a token's step, and each of wasm-bindgen's own helpers it makes) paid for them
// again, about 85 % of a tiny model's token in the browser. An export that calls it makes the
// module a "reactor", whose exports are left as they are. `tests/wasm` pins one run.
extern "C" {
    fn __wasm_call_ctors();
}

/// Runs the static constructors, the first time only. Called by the start function, and again
/// (a no-op then) by the engine's loads, so that a model never runs without them whatever
/// entered the module first.
pub fn run_constructors() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    // SAFETY: the linker's own constructor list, run once per module instance.
    ONCE.call_once(|| unsafe { __wasm_call_ctors() });
}

#[wasm_bindgen(start)]
fn start_module() {
    run_constructors();
    console_error_panic_hook::set_once();
}

// The threaded build (`threads`): the page's worker calls `initThreadPool(n − 1)` (web workers
// sharing this module's memory, as rayon's pool), then `set_threads(n)`, which gives each of them
// the CPU pool's loop (`model::pool`).
#[cfg(feature = "threads")]
pub use wasm_bindgen_rayon::init_thread_pool;

/// Lets the CPU's work use `n` threads (`model::pool`): only the threaded build has more than one.
#[wasm_bindgen]
pub fn set_threads(n: usize) {
    crate::model::pool::set_threads(n);
}

/// The threads the CPU's products use now.
#[wasm_bindgen]
pub fn threads() -> usize {
    crate::model::pool::threads()
}

/// A JS `Error` with the message, and the error's `kind` and `vars` as properties, so that the
/// page tells errors apart (and translates them) without reading the English text.
fn js_err(e: Error) -> JsValue {
    let error: JsValue = JsError::new(&e.to_string()).into();
    let _ = js_sys::Reflect::set(&error, &"kind".into(), &e.kind().into());
    if let Ok(vars) = to_js(&e.vars()) {
        let _ = js_sys::Reflect::set(&error, &"vars".into(), &vars);
    }
    error
}

fn to_js<T: Serialize>(v: &T) -> Result<JsValue, JsValue> {
    v.serialize(&serde_wasm_bindgen::Serializer::json_compatible()).map_err(|e| JsError::new(&e.to_string()).into())
}

/// A JS argument as a Rust value; a wrong one is an error that names it.
fn arg<T: serde::de::DeserializeOwned>(v: JsValue, what: &str) -> Result<T, JsValue> {
    serde_wasm_bindgen::from_value(v).map_err(|e| JsError::new(&format!("{what}: {e}")).into())
}

/// [`arg`], or the default when the argument is absent.
fn from_js<T: serde::de::DeserializeOwned + Default>(v: JsValue, what: &str) -> Result<T, JsValue> {
    if v.is_undefined() || v.is_null() {
        return Ok(T::default());
    }
    arg(v, what)
}

/// A loaded model in the browser.
#[wasm_bindgen]
pub struct WasmEngine {
    engine: Rc<RefCell<Engine>>,
}

/// What to load: a GGUF file's bytes, or a Hugging Face folder's files.
pub enum Source {
    /// A GGUF file.
    Gguf(Vec<u8>),
    /// A GGUF file as a `Blob` (a picked file, the model cache's file, a download), read a
    /// tensor at a time: the file never enters wasm memory whole.
    Blob(web_sys::Blob),
    /// A model folder.
    Folder(HfFolder),
}

impl WasmEngine {
    /// [`WasmEngine::load`] for Rust callers (the wasm tests).
    pub async fn load_async(bytes: Vec<u8>, backend: &str, options: JsValue, progress: Option<js_sys::Function>) -> Result<WasmEngine, JsValue> {
        Self::load_source(Source::Gguf(bytes), backend, options, progress).await
    }

    /// Loads either kind of source.
    pub async fn load_source(source: Source, backend: &str, options: JsValue, progress: Option<js_sys::Function>) -> Result<WasmEngine, JsValue> {
        run_constructors();
        let options: LoadOptions = from_js(options, "load options")?;
        let backend = Backend::parse(backend).ok_or_else(|| JsValue::from(JsError::new(&format!("unknown backend `{backend}`"))))?;
        let device = match backend {
            Backend::Cpu => Device::Cpu,
            #[cfg(feature = "gpu")]
            Backend::Wgpu => Device::Wgpu(crate::backend::wgpu_device().await.map_err(js_err)?),
            #[cfg(not(feature = "gpu"))]
            Backend::Wgpu => return Err(js_err(crate::backend::no_gpu())),
        };
        let mut report = |done: usize, total: usize| {
            if let Some(f) = &progress {
                let _ = f.call2(&JsValue::NULL, &JsValue::from(done as f64), &JsValue::from(total as f64));
            }
        };
        let engine = match &source {
            Source::Gguf(bytes) => Engine::load_with_progress(bytes, device, options, &mut report),
            Source::Blob(blob) => BlobSource::new(blob).and_then(|s| Engine::load_source(Box::new(s), device, options, &mut report)),
            Source::Folder(folder) => Engine::load_hf(folder, device, options, &mut report),
        }
        .map_err(js_err)?;
        Ok(WasmEngine { engine: Rc::new(RefCell::new(engine)) })
    }
}

/// A `Blob` read a range at a time with `FileReaderSync`, which dedicated workers (where the
/// engine lives) have in every browser: the loader's reads stay synchronous, and only the
/// tensor being built is in wasm memory.
struct BlobSource {
    blob: web_sys::Blob,
    reader: web_sys::FileReaderSync,
    len: usize,
}

impl BlobSource {
    fn new(blob: &web_sys::Blob) -> crate::error::Result<Self> {
        let reader = web_sys::FileReaderSync::new().map_err(|e| js_io("FileReaderSync (only in a worker)", e))?;
        Ok(BlobSource { len: blob.size() as usize, blob: blob.clone(), reader })
    }
}

impl crate::gguf::ByteSource for BlobSource {
    fn len(&self) -> usize {
        self.len
    }
    fn read(&self, offset: usize, len: usize) -> crate::error::Result<std::borrow::Cow<'_, [u8]>> {
        let part = self.blob.slice_with_f64_and_f64(offset as f64, (offset + len) as f64).map_err(|e| js_io("slicing the file", e))?;
        let buffer = self.reader.read_as_array_buffer(&part).map_err(|e| js_io("reading the file", e))?;
        let bytes = js_sys::Uint8Array::new(&buffer);
        if bytes.length() as usize != len {
            return Err(Error::Io(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                format!("reading the file: {} bytes at {offset} gave {}", len, bytes.length()),
            )));
        }
        Ok(std::borrow::Cow::Owned(bytes.to_vec()))
    }
}

/// A JS exception while reading a file, as an I/O error (the file changed or went away).
fn js_io(what: &str, e: JsValue) -> Error {
    let detail = e.dyn_ref::<js_sys::Error>().map(|e| String::from(e.message())).or_else(|| e.as_string()).unwrap_or_else(|| format!("{e:?}"));
    Error::Io(std::io::Error::other(format!("{what}: {detail}")))
}

/// SHA-256 over a download as it streams in (Web Crypto hashes only a whole buffer, which a
/// model of gigabytes must not become).
#[wasm_bindgen]
pub struct Sha256(sha2::Sha256);

#[wasm_bindgen]
impl Sha256 {
    /// An empty hash.
    #[wasm_bindgen(constructor)]
    pub fn new() -> Sha256 {
        Sha256(sha2::Digest::new())
    }
    /// Adds bytes.
    pub fn update(&mut self, bytes: &[u8]) {
        sha2::Digest::update(&mut self.0, bytes);
    }
    /// The hash, as 64 lowercase hex digits.
    pub fn hex(&self) -> String {
        sha2::Digest::finalize(self.0.clone()).iter().map(|b| format!("{b:02x}")).collect()
    }
}

impl Default for Sha256 {
    fn default() -> Self {
        Self::new()
    }
}

fn busy() -> JsValue {
    JsError::new("engine busy: wait for the previous call to finish").into()
}

#[wasm_bindgen]
impl WasmEngine {
    /// Loads a GGUF model from its bytes on `backend` (`"webgpu"` or `"cpu"`). `options` is a
    /// `LoadOptions` object (`{max_context, memory_limit, tensor_limit, name}`) or undefined;
    /// `progress`, if given, is called with `(done, total)` as weight tensors reach the device.
    /// Resolves to a `WasmEngine`.
    pub fn load(bytes: Vec<u8>, backend: String, options: JsValue, progress: Option<js_sys::Function>) -> Promise {
        future_to_promise(async move { Ok(Self::load_async(bytes, &backend, options, progress).await?.into()) })
    }

    /// Loads a GGUF model from a `Blob` (a `File`), read a tensor at a time (worker only: it
    /// reads with `FileReaderSync`). Otherwise as [`WasmEngine::load`].
    pub fn load_blob(blob: web_sys::Blob, backend: String, options: JsValue, progress: Option<js_sys::Function>) -> Promise {
        future_to_promise(async move { Ok(Self::load_source(Source::Blob(blob), &backend, options, progress).await?.into()) })
    }

    /// Checks a GGUF file from its first bytes (`head`, of a file of `file_len` bytes) as a
    /// download arrives: throws the load's own error (an unsupported architecture, a bad
    /// header, a tokenizer Ember cannot build) before the rest is downloaded.
    pub fn check_head(head: &[u8], file_len: f64) -> Result<(), JsValue> {
        crate::engine::check_gguf_head(head, file_len as usize).map_err(js_err)
    }

    /// Loads a Hugging Face model folder: `files[i]` is the file named `names[i]`
    /// (`config.json`, `tokenizer.json`, `model.safetensors` or the shards and their index,
    /// `tokenizer_config.json`, `generation_config.json`), a `Uint8Array`, or a `Blob` (a
    /// `File`) for a weight file read a tensor at a time (worker only). Otherwise as
    /// [`WasmEngine::load`].
    pub fn load_folder(names: Vec<String>, files: js_sys::Array, backend: String, options: JsValue, progress: Option<js_sys::Function>) -> Promise {
        future_to_promise(async move {
            if names.len() as u32 != files.length() {
                return Err(JsError::new("load_folder: one name per file").into());
            }
            let mut held = Vec::new();
            let mut read = Vec::new();
            for (name, f) in names.into_iter().zip(files.iter()) {
                match f.dyn_into::<web_sys::Blob>() {
                    Ok(blob) => read.push((name, BlobSource::new(&blob).map_err(js_err)?)),
                    Err(f) => held.push((name, js_sys::Uint8Array::new(&f).to_vec())),
                }
            }
            let folder = read.into_iter().fold(HfFolder::new(held), |folder, (name, source)| folder.with_source(&name, Box::new(source)));
            Ok(Self::load_source(Source::Folder(folder), &backend, options, progress).await?.into())
        })
    }

    /// Runs one token through the model and forgets it (compiles the GPU kernels).
    pub fn warm_up(&self) -> Promise {
        let engine = self.engine.clone();
        future_to_promise(async move {
            let mut e = engine.try_borrow_mut().map_err(|_| busy())?;
            e.warm_up_async().await.map_err(js_err)?;
            Ok(JsValue::UNDEFINED)
        })
    }

    /// Turns a reasoning model's thinking on or off (`undefined`: its template's default).
    pub fn set_thinking(&self, on: Option<bool>) -> Result<(), JsValue> {
        self.engine.try_borrow_mut().map_err(|_| busy())?.set_thinking(on);
        Ok(())
    }

    /// The exact prompt text the model sees for `messages` (`[{role, content}, ...]`), with the
    /// assistant's turn opened after them unless `generation_prompt` is false.
    pub fn render(&self, messages: JsValue, generation_prompt: Option<bool>) -> Result<String, JsValue> {
        let messages: Vec<Message> = arg(messages, "messages")?;
        let engine = self.engine.try_borrow().map_err(|_| busy())?;
        engine.render_chat_as(&messages, generation_prompt.unwrap_or(true)).map_err(js_err)
    }

    /// How `messages` fit the context window with `reserve` tokens kept for the answer: a
    /// `ChatFit` (`{first, dropped, tokens, total_tokens, reserve, limit}`).
    pub fn fit(&self, messages: JsValue, reserve: usize) -> Result<JsValue, JsValue> {
        let messages: Vec<Message> = arg(messages, "messages")?;
        to_js(&self.engine.try_borrow().map_err(|_| busy())?.fit_chat(&messages, reserve).map_err(js_err)?)
    }

    /// Runs up to `max` prompt tokens; resolves to how many still wait (0: the prompt is done).
    /// Calling it until 0 before `next` lets a stop arrive during a long prefill.
    pub fn prefill(&self, max: usize) -> Promise {
        let engine = self.engine.clone();
        future_to_promise(async move {
            let mut e = engine.try_borrow_mut().map_err(|_| busy())?;
            let left = e.prefill_async(max).await.map_err(js_err)?;
            Ok(JsValue::from(left as f64))
        })
    }

    /// The model card (`ModelInfo`).
    pub fn info(&self) -> Result<JsValue, JsValue> {
        to_js(self.engine.try_borrow().map_err(|_| busy())?.info())
    }

    /// Token ids of `text`, tokenised as the model sees it.
    pub fn tokenize(&self, text: &str) -> Result<Vec<u32>, JsValue> {
        self.engine.try_borrow().map_err(|_| busy())?.tokenizer().encode(text).map_err(js_err)
    }

    /// Starts a generation. `prompt` is `{text: "..."}` or `{chat: [{role, content}, ...]}`;
    /// `options` a `GenerateOptions` object or undefined. Returns `StartInfo`.
    pub fn start(&self, prompt: JsValue, options: JsValue) -> Result<JsValue, JsValue> {
        let prompt: Prompt = arg(prompt, "prompt")?;
        let options: GenerateOptions = from_js(options, "generate options")?;
        let info = self.engine.try_borrow_mut().map_err(|_| busy())?.start(&prompt, options).map_err(js_err)?;
        to_js(&info)
    }

    /// Starts a generation from a conversation (`[{role, content}, ...]`), leaving out the
    /// oldest turns if it outgrows the context window with `reserve` tokens kept for the answer.
    /// Returns `{start: StartInfo, fit: ChatFit}`.
    pub fn start_chat(&self, messages: JsValue, options: JsValue, reserve: usize) -> Result<JsValue, JsValue> {
        let messages: Vec<Message> = arg(messages, "messages")?;
        let options: GenerateOptions = from_js(options, "generate options")?;
        let (start, fit) = self.engine.try_borrow_mut().map_err(|_| busy())?.start_chat(&messages, reserve, options).map_err(js_err)?;
        to_js(&serde_json::json!({ "start": start, "fit": fit }))
    }

    /// Generates one token. Resolves to a `Step`, or `null` once the generation has ended.
    pub fn next(&self) -> Promise {
        let engine = self.engine.clone();
        future_to_promise(async move {
            let mut e = engine.try_borrow_mut().map_err(|_| busy())?;
            // The borrow is held across the await: the worker makes one call at a time.
            let step = e.next_async().await.map_err(js_err)?;
            match step {
                Some(s) => to_js(&s),
                None => Ok(JsValue::NULL),
            }
        })
    }

    /// The candidates for the next token (`[Candidate]`), without drawing it; runs the model
    /// once if needed. Resolves to `null` once the generation has ended.
    pub fn peek(&self) -> Promise {
        let engine = self.engine.clone();
        future_to_promise(async move {
            let mut e = engine.try_borrow_mut().map_err(|_| busy())?;
            match e.peek_async().await.map_err(js_err)? {
                Some(c) => to_js(&c),
                None => Ok(JsValue::NULL),
            }
        })
    }

    /// Takes the next token: drawn from the peeked distribution, or `forced`. Returns a `Step`,
    /// or `null` once the generation has ended. Call `peek` first.
    pub fn commit(&self, forced: Option<u32>) -> Result<JsValue, JsValue> {
        match self.engine.try_borrow_mut().map_err(|_| busy())?.commit(forced).map_err(js_err)? {
            Some(s) => to_js(&s),
            None => Ok(JsValue::NULL),
        }
    }

    /// The sampler pipeline for the next token under `sampling` (a `SamplingConfig`, or null
    /// for the running settings), from the logits already computed: a `Pipeline`.
    pub fn pipeline(&self, sampling: JsValue, top_n: usize) -> Result<JsValue, JsValue> {
        let cfg: Option<crate::sampling::SamplingConfig> = if sampling.is_null() || sampling.is_undefined() { None } else { Some(arg(sampling, "sampling")?) };
        to_js(&self.engine.try_borrow().map_err(|_| busy())?.pipeline(cfg.as_ref(), top_n).map_err(js_err)?)
    }

    /// New sampler settings for the rest of the running generation.
    pub fn set_sampling(&self, sampling: JsValue) -> Result<(), JsValue> {
        let cfg = arg(sampling, "sampling")?;
        self.engine.try_borrow_mut().map_err(|_| busy())?.set_sampling(cfg).map_err(js_err)
    }

    /// Each token's text, special tokens included (`<|im_start|>`), for token chips.
    pub fn token_texts(&self, ids: Vec<u32>) -> Result<JsValue, JsValue> {
        let e = self.engine.try_borrow().map_err(|_| busy())?;
        let texts: Vec<String> = ids.iter().map(|&t| e.tokenizer().decode(&[t]).unwrap_or_default()).collect();
        to_js(&texts)
    }

    /// Timing of the current or last generation: `Stats` and its rates.
    pub fn stats(&self) -> Result<JsValue, JsValue> {
        let e = self.engine.try_borrow().map_err(|_| busy())?;
        let s = e.stats();
        to_js(&serde_json::json!({
            "prefill_tokens": s.prefill_tokens, "prefill_s": s.prefill_s, "prefill_tok_s": s.prefill_tok_s(),
            "decode_tokens": s.decode_tokens, "decode_s": s.decode_s, "decode_tok_s": s.decode_tok_s(),
        }))
    }

    /// Ends the current generation; the cache keeps its work for the next turn.
    pub fn stop(&self) -> Result<(), JsValue> {
        self.engine.try_borrow_mut().map_err(|_| busy())?.stop();
        Ok(())
    }

    /// Forgets the cache: a new conversation.
    pub fn reset(&self) -> Result<(), JsValue> {
        self.engine.try_borrow_mut().map_err(|_| busy())?.reset();
        Ok(())
    }
}
