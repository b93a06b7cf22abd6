//! A 2-layer llama GGUF written by the `gguf` Python package with random weights in every
//! block type, against the numpy reference, on both shipping executors (the CPU one the app
//! runs without WebGPU, and the GPU one on wgpu): prefill, decode through the KV cache, chunked
//! prefill and greedy decoding.

use ember::gguf::Gguf;
use ember::model::{DecoderConfig, Executor, Loaded, Tensors};

use crate::{argmax, assert_close, f32s, fixture, for_each_executor, json, u32s};

fn load<E: Executor>(exec: E, capacity: usize) -> Loaded<E> {
    let bytes = std::fs::read(fixture("tiny-llama.gguf")).unwrap();
    let g = Gguf::parse(&bytes).unwrap();
    let config = DecoderConfig::from_gguf(&g.metadata).unwrap();
    Loaded::new(exec, Tensors::gguf(&g, &config), &config, capacity, &mut |_, _| {}).unwrap()
}

fn run<E: Executor>(m: &mut Loaded<E>, ids: &[u32]) -> Vec<f32> {
    pollster::block_on(m.logits(ids)).unwrap()
}

#[test]
fn config_and_untied_head_come_from_the_file() {
    let m = load(ember::model::CpuExecutor, 64);
    let c = &m.decoder.config;
    assert_eq!((c.n_layer, c.d_model, c.n_head, c.n_kv_head, c.d_ff, c.vocab_size), (2, 256, 4, 2, 256, 320));
    assert!(!c.tied_embeddings);
    assert!(m.decoder.output.is_some());
}

#[test]
fn logits_match_the_reference_through_prefill_and_decode() {
    let fx = json("tiny-llama.json");
    let prompt = u32s(&fx["prompt"]);
    let follow = u32s(&fx["follow"]);
    for_each_executor!(|b, exec| {
        let mut m = load(exec, 64);
        let got = run(&mut m, &prompt);
        assert_close(&got, &f32s(&fx["prefill_logits"]), 1e-3, &format!("prefill on {b:?}"));
        for (i, &t) in follow.iter().enumerate() {
            let got = run(&mut m, &[t]);
            assert_close(&got, &f32s(&fx["step_logits"][i]), 1e-3, &format!("decode step {i} on {b:?}"));
        }
        assert_eq!(m.cache.len(), prompt.len() + follow.len());

        // The same positions in two chunks give the same logits (the mask over the cache).
        m.cache.reset();
        run(&mut m, &prompt[..4]);
        let got = run(&mut m, &prompt[4..]);
        assert_close(&got, &f32s(&fx["prefill_logits"]), 1e-3, &format!("chunked prefill on {b:?}"));

        // Greedy decoding from scratch.
        m.cache.reset();
        let mut logits = run(&mut m, &prompt);
        let mut out = Vec::new();
        for _ in 0..8 {
            let t = argmax(&logits) as u32;
            out.push(t);
            logits = run(&mut m, &[t]);
        }
        assert_eq!(out, u32s(&fx["greedy"]), "greedy on {b:?}");
    });
}

#[test]
fn a_full_cache_is_an_error_not_a_panic() {
    for_each_executor!(|b, exec| {
        let mut m = load(exec, 8);
        run(&mut m, &[1, 2, 3, 4, 5, 6]);
        let err = pollster::block_on(m.logits(&[1, 2, 3])).unwrap_err();
        assert!(matches!(err, ember::Error::ContextFull { needed: 9, limit: 8 }), "{b:?}: {err}");
    });
}

/// A matrix larger than one GPU buffer may be (a 262k-row embedding) is kept as blocks of rows:
/// the tiny model with every matrix split into many blocks gives the unsplit model's logits, the
/// embedding lookup putting rows from several blocks back in the prompt's order.
#[test]
fn weights_split_into_row_blocks_give_the_same_logits() {
    if !crate::backends().contains(&ember::Backend::Wgpu) {
        return;
    }
    let fx = json("tiny-llama.json");
    let prompt = u32s(&fx["prompt"]);
    let device = ember::backend::wgpu_device().unwrap();
    for part_bytes in [4096, 20_000] {
        let mut m = load(ember::model::GpuExecutor::new(device.clone()).with_part_bytes(part_bytes), 64);
        let got = run(&mut m, &prompt);
        assert_close(&got, &f32s(&fx["prefill_logits"]), 1e-3, &format!("prefill, parts of {part_bytes} bytes"));
        let got = run(&mut m, &u32s(&fx["follow"])[..1]);
        assert_close(&got, &f32s(&fx["step_logits"][0]), 1e-3, &format!("decode, parts of {part_bytes} bytes"));
    }
}
