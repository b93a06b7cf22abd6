//! The wasm API (`WasmEngine`) in headless Chromium, through wasm-bindgen-test, in a dedicated
//! worker as the app runs it: on WebGPU and on the CPU, the tiny model's greedy tokens equal
//! the native engine's (`tests/fixtures/tiny-chat-greedy.json`, checked natively by
//! `engine::tiny_model_greedy_tokens_for_the_browser_tests`), a stop during prefill leaves
//! the engine reusable, and the tiny Llama, Qwen2 and GPT-2 models, as folders and as GGUF, give
//! `transformers`' greedy tokens, and a Llama with every GGUF block type gives the reference
//! logits on both executors (WebGPU, and the CPU's SIMD128 kernels). Run by `scripts/test`.
#![cfg(target_arch = "wasm32")]

use ember::testkit::tiny_model_bytes;
use ember::wasm::WasmEngine;
use ember::{GenerateOptions, SamplingConfig};
use serde::Serialize;
use wasm_bindgen::JsValue;
use wasm_bindgen_futures::JsFuture;
use wasm_bindgen_test::*;

wasm_bindgen_test_configure!(run_in_dedicated_worker);

fn js<T: Serialize>(v: &T) -> JsValue {
    v.serialize(&serde_wasm_bindgen::Serializer::json_compatible()).unwrap()
}

fn rust(v: JsValue) -> serde_json::Value {
    serde_wasm_bindgen::from_value(v).unwrap()
}

fn fixture() -> serde_json::Value {
    serde_json::from_str(include_str!("../fixtures/tiny-chat-greedy.json")).unwrap()
}

fn greedy(max_tokens: usize) -> JsValue {
    js(&GenerateOptions { sampling: SamplingConfig::greedy(), max_tokens, stop: vec![], top_n: 5, ignore_eos: false, stop_repeats: false, grammar: None })
}

async fn load(backend: &str) -> WasmEngine {
    let progress = js_sys::Function::new_no_args("");
    WasmEngine::load_async(tiny_model_bytes(), backend, JsValue::UNDEFINED, Some(progress)).await.unwrap_or_else(|e| panic!("{backend}: {e:?}"))
}

/// Steps a started generation to its end through the JS-facing calls.
async fn tokens(engine: &WasmEngine) -> Vec<u64> {
    let mut out = Vec::new();
    loop {
        let step = JsFuture::from(engine.next()).await.unwrap();
        if step.is_null() {
            return out;
        }
        let step = rust(step);
        out.push(step["token"].as_u64().unwrap());
        if !step["done"].is_null() {
            return out;
        }
    }
}

async fn greedy_tokens_equal_native(backend: &str) {
    let want = fixture();
    let engine = load(backend).await;
    let info = rust(engine.info().unwrap());
    assert_eq!(info["name"], "tiny test llama");
    engine.start(js(&serde_json::json!({ "chat": want["messages"] })), greedy(12)).unwrap();
    let got = tokens(&engine).await;
    let want: Vec<u64> = want["tokens"].as_array().unwrap().iter().map(|t| t.as_u64().unwrap()).collect();
    assert_eq!(got, want, "{backend} in the browser differs from the native engine");
}

#[wasm_bindgen_test]
async fn cpu_greedy_tokens_equal_the_native_engine() {
    greedy_tokens_equal_native("cpu").await;
}

#[wasm_bindgen_test]
async fn webgpu_greedy_tokens_equal_the_native_engine() {
    greedy_tokens_equal_native("webgpu").await;
}

#[wasm_bindgen_test]
async fn prefill_in_chunks_stop_and_fit() {
    let want = fixture();
    let engine = load("cpu").await;
    let chat = js(&serde_json::json!({ "chat": want["messages"] }));
    // Stopped after one prefill chunk: the engine stays usable and the next run is unchanged.
    engine.start(chat.clone(), greedy(12)).unwrap();
    let left = JsFuture::from(engine.prefill(4)).await.unwrap().as_f64().unwrap();
    assert!(left > 0.0);
    engine.stop().unwrap();
    assert!(JsFuture::from(engine.next()).await.unwrap().is_null());
    engine.start(chat, greedy(12)).unwrap();
    while JsFuture::from(engine.prefill(8)).await.unwrap().as_f64().unwrap() > 0.0 {}
    let got = tokens(&engine).await;
    assert_eq!(serde_json::json!(got), want["tokens"]);
    // The context fit and the rendered prompt come through as plain objects.
    let fit = rust(engine.fit(js(&want["messages"]), 16).unwrap());
    assert_eq!(fit["dropped"], 0);
    assert_eq!(fit["limit"], 128);
    let text = engine.render(js(&want["messages"]), None).unwrap();
    assert!(text.starts_with("<|im_start|>system\nbe brief<|im_end|>"), "{text}");
    assert!(text.ends_with("<|im_start|>assistant\n"), "the assistant's turn opened: {text}");
    // Without the generation prompt: the conversation as it stands (classroom's empty draft).
    let as_is = engine.render(js(&want["messages"]), Some(false)).unwrap();
    assert_eq!(format!("{as_is}<|im_start|>assistant\n"), text);
}

#[wasm_bindgen_test]
async fn classroom_calls_peek_commit_and_pipeline() {
    let want = fixture();
    let engine = load("cpu").await;
    engine.start(js(&serde_json::json!({ "chat": want["messages"] })), greedy(12)).unwrap();
    let mut got = Vec::new();
    for _ in 0..3 {
        let cands = rust(JsFuture::from(engine.peek()).await.unwrap());
        let pipeline = rust(engine.pipeline(JsValue::NULL, 5).unwrap());
        assert_eq!(pipeline["stages"].as_array().unwrap().len(), 5);
        assert_eq!(pipeline["tokens"][0]["token"], cands[0]["token"], "the pipeline's top token is the first candidate");
        let step = rust(engine.commit(None).unwrap());
        assert_eq!(step["token"], cands[0]["token"], "greedy takes the top candidate");
        got.push(step["token"].as_u64().unwrap());
    }
    assert_eq!(serde_json::json!(got), serde_json::json!(want["tokens"].as_array().unwrap()[..3]));
    // A forced token is taken as is.
    let cands = rust(JsFuture::from(engine.peek()).await.unwrap());
    let second = cands[1]["token"].as_u64().unwrap() as u32;
    assert_eq!(rust(engine.commit(Some(second)).unwrap())["token"], second);
}

/// The tiny Llama, Qwen2, GPT-2, Qwen3, Llama 3, Gemma 3, SmolLM3 and Phi-3 models (`tests/fixtures/make_hf_models.py`), as Hugging Face
/// folders and as GGUF: in the browser, their greedy tokens are `transformers`' own.
mod archs {
    use super::*;
    use ember::hf::HfFolder;
    use ember::wasm::Source;

    macro_rules! files {
        ($arch:literal: $($name:literal),*) => {
            vec![$(($name.to_string(), include_bytes!(concat!("../fixtures/hf/", $arch, "/", $name)).to_vec())),*]
        };
    }

    fn source(arch: &str, gguf: bool) -> Source {
        if gguf {
            return Source::Gguf(match arch {
                "llama" => include_bytes!("../fixtures/hf/llama.gguf").to_vec(),
                "qwen2" => include_bytes!("../fixtures/hf/qwen2.gguf").to_vec(),
                "qwen3" => include_bytes!("../fixtures/hf/qwen3.gguf").to_vec(),
                "llama3" => include_bytes!("../fixtures/hf/llama3.gguf").to_vec(),
                "smollm3" => include_bytes!("../fixtures/hf/smollm3.gguf").to_vec(),
                "gemma3" => include_bytes!("../fixtures/hf/gemma3.gguf").to_vec(),
                "phi3" => include_bytes!("../fixtures/hf/phi3.gguf").to_vec(),
                _ => include_bytes!("../fixtures/hf/gpt2.gguf").to_vec(),
            });
        }
        let files = match arch {
            "llama" => files!("llama": "config.json", "generation_config.json", "tokenizer.json", "tokenizer_config.json", "chat_template.jinja",
                "model.safetensors.index.json", "model-00001-of-00004.safetensors", "model-00002-of-00004.safetensors",
                "model-00003-of-00004.safetensors", "model-00004-of-00004.safetensors"),
            "qwen2" => files!("qwen2": "config.json", "generation_config.json", "tokenizer.json", "tokenizer_config.json", "model.safetensors"),
            "smollm3" => {
                files!("smollm3": "config.json", "generation_config.json", "tokenizer.json", "tokenizer_config.json", "chat_template.jinja", "model.safetensors")
            }
            "llama3" => {
                files!("llama3": "config.json", "generation_config.json", "tokenizer.json", "tokenizer_config.json", "chat_template.jinja", "model.safetensors")
            }
            "qwen3" => {
                files!("qwen3": "config.json", "generation_config.json", "tokenizer.json", "tokenizer_config.json", "chat_template.jinja", "model.safetensors")
            }
            "gemma3" => {
                files!("gemma3": "config.json", "generation_config.json", "tokenizer.json", "tokenizer_config.json", "chat_template.jinja", "model.safetensors")
            }
            "phi3" => {
                files!("phi3": "config.json", "generation_config.json", "tokenizer.json", "tokenizer_config.json", "chat_template.jinja", "model.safetensors")
            }
            _ => files!("gpt2": "config.json", "generation_config.json", "tokenizer.json", "tokenizer_config.json", "model.safetensors"),
        };
        Source::Folder(HfFolder::new(files))
    }

    fn fixture(arch: &str) -> serde_json::Value {
        serde_json::from_str(match arch {
            "llama" => include_str!("../fixtures/hf/llama.json"),
            "qwen2" => include_str!("../fixtures/hf/qwen2.json"),
            "qwen3" => include_str!("../fixtures/hf/qwen3.json"),
            "llama3" => include_str!("../fixtures/hf/llama3.json"),
            "smollm3" => include_str!("../fixtures/hf/smollm3.json"),
            "gemma3" => include_str!("../fixtures/hf/gemma3.json"),
            "phi3" => include_str!("../fixtures/hf/phi3.json"),
            _ => include_str!("../fixtures/hf/gpt2.json"),
        })
        .unwrap()
    }

    async fn greedy_is_transformers(arch: &str, gguf: bool, backend: &str) {
        let fx = fixture(arch);
        let what = format!("{arch} {} on {backend}", if gguf { "gguf" } else { "folder" });
        // The context transformers ran (Phi-3's 256 would take its long LongRoPE factors).
        let options = js(&serde_json::json!({ "max_context": 128 }));
        let engine = WasmEngine::load_source(source(arch, gguf), backend, options, None).await.unwrap_or_else(|e| panic!("{what}: {e:?}"));
        assert_eq!(rust(engine.info().unwrap())["architecture"], fx["architecture"], "{what}");
        let case = &fx["cases"][0];
        engine.start(js(&serde_json::json!({ "ids": case["ids"] })), greedy(case["greedy"].as_array().unwrap().len())).unwrap();
        assert_eq!(serde_json::json!(tokens(&engine).await), case["greedy"], "{what}");
    }

    #[wasm_bindgen_test]
    async fn cpu_all_families_both_formats() {
        for arch in ["llama", "qwen2", "gpt2", "qwen3", "llama3", "gemma3", "smollm3", "phi3"] {
            for gguf in [false, true] {
                greedy_is_transformers(arch, gguf, "cpu").await;
            }
        }
    }

    #[wasm_bindgen_test]
    async fn webgpu_all_families() {
        for arch in ["llama", "qwen2", "gpt2", "qwen3", "llama3", "gemma3", "smollm3", "phi3"] {
            greedy_is_transformers(arch, false, "webgpu").await;
        }
    }
}

/// Every GGUF block type on both executors as the browser runs them: the tiny Llama with random
/// weights in Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q4_K, Q5_K and Q6_K (and f16, bf16, f32) gives the
/// numpy reference's logits (`tests/fixtures/tiny-llama.json`), as natively: on WebGPU, where the
/// GPU kernels read every type in its blocks, and on the CPU, with the SIMD128 kernels.
#[wasm_bindgen_test]
async fn every_block_type_gives_the_reference_logits() {
    use ember::model::{CpuExecutor, Executor, GpuExecutor, Loaded, Tensors};
    async fn check<E: Executor>(exec: E, what: &str) {
        let fx: serde_json::Value = serde_json::from_str(include_str!("../fixtures/tiny-llama.json")).unwrap();
        let floats = |v: &serde_json::Value| v.as_array().unwrap().iter().map(|x| x.as_f64().unwrap() as f32).collect::<Vec<_>>();
        let g = ember::gguf::Gguf::parse(include_bytes!("../fixtures/tiny-llama.gguf")).unwrap();
        let config = ember::model::DecoderConfig::from_gguf(&g.metadata).unwrap();
        let mut m = Loaded::new(exec, Tensors::gguf(&g, &config), &config, 64, &mut |_, _| {}).unwrap();
        let prompt: Vec<u32> = fx["prompt"].as_array().unwrap().iter().map(|t| t.as_u64().unwrap() as u32).collect();
        let logits = m.logits(&prompt).await.unwrap();
        let want = floats(&fx["prefill_logits"]);
        let worst = logits.iter().zip(&want).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
        assert!(worst <= 1e-3, "{what}: max |Δ| {worst} against the reference");
    }
    check(GpuExecutor::new(ember::backend::wgpu_device().await.unwrap()), "webgpu").await;
    check(CpuExecutor, "cpu").await;
}

// A static constructor of this test module's own: it counts how often the module's
// constructors run. Constructors run once per instance; before `ember::wasm::run_constructors`
// wasm-ld wrapped every export (each step, each of wasm-bindgen's helpers) to run them all again.
static CONSTRUCTOR_RUNS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
extern "C" fn count_constructor_run() {
    CONSTRUCTOR_RUNS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
}
#[used]
#[link_section = ".init_array"]
static COUNT_CONSTRUCTOR_RUN: extern "C" fn() = count_constructor_run;

/// The constructors run once, however many times JavaScript calls into the module: a closure
/// called from JavaScript and a generation's steps each enter it through an export.
#[wasm_bindgen_test]
async fn static_constructors_run_once() {
    use wasm_bindgen::prelude::*;
    let engine = load("cpu").await;
    engine.start(js(&serde_json::json!({ "text": "the theme" })), greedy(4)).unwrap();
    assert!(!tokens(&engine).await.is_empty());
    let calls = std::rc::Rc::new(std::cell::Cell::new(0));
    let seen = calls.clone();
    let f = Closure::<dyn FnMut()>::new(move || seen.set(seen.get() + 1));
    let f: &js_sys::Function = f.as_ref().unchecked_ref();
    for _ in 0..3 {
        f.call0(&JsValue::NULL).unwrap();
    }
    assert_eq!(calls.get(), 3);
    assert_eq!(CONSTRUCTOR_RUNS.load(std::sync::atomic::Ordering::Relaxed), 1, "the static constructors ran more than once");
}
