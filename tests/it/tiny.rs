//! A 2-layer llama GGUF written by the `gguf` Python package with random weights in every
//! block type, against the numpy reference: prefill, decode through the KV cache, chunked
//! prefill and greedy decoding.

use burn::tensor::{Device, Int, Tensor, TensorData};
use ember::gguf::Gguf;
use ember::model::decoder::KvCache;
use ember::model::{load_gguf, Decoder, DecoderConfig};

use crate::{argmax, assert_close, backends, f32s, fixture, json, u32s};

fn load(dev: &Device) -> (Decoder, DecoderConfig) {
    let bytes = std::fs::read(fixture("tiny-llama.gguf")).unwrap();
    let g = Gguf::parse(&bytes).unwrap();
    let config = DecoderConfig::from_gguf(&g.metadata).unwrap();
    load_gguf(&g, &config, 64, dev, &mut |_, _| {}).unwrap()
}

fn run(model: &Decoder, cache: &mut KvCache, ids: &[u32], dev: &Device) -> Vec<f32> {
    let data = TensorData::new(ids.iter().map(|&i| i as i32).collect::<Vec<_>>(), [1, ids.len()]);
    let logits = model.forward(Tensor::<2, Int>::from_data(data, dev), cache).unwrap();
    logits.into_data().try_into_vec::<f32>().unwrap()
}

#[test]
fn config_and_untied_head_come_from_the_file() {
    let dev = ember::backend::cpu_device();
    let (model, config) = load(&dev);
    assert_eq!((config.n_layer, config.d_model, config.n_head, config.n_kv_head, config.d_ff, config.vocab_size), (2, 256, 4, 2, 256, 320));
    assert!(!config.tied_embeddings);
    assert!(model.output.is_some());
}

#[test]
fn logits_match_the_reference_through_prefill_and_decode() {
    let fx = json("tiny-llama.json");
    let prompt = u32s(&fx["prompt"]);
    let follow = u32s(&fx["follow"]);
    for b in backends() {
        let dev = ember::backend::device(b).unwrap();
        let (model, config) = load(&dev);
        let mut cache = KvCache::new(&config, 64, &dev);
        let got = run(&model, &mut cache, &prompt, &dev);
        assert_close(&got, &f32s(&fx["prefill_logits"]), 1e-3, &format!("prefill on {b:?}"));
        for (i, &t) in follow.iter().enumerate() {
            let got = run(&model, &mut cache, &[t], &dev);
            assert_close(&got, &f32s(&fx["step_logits"][i]), 1e-3, &format!("decode step {i} on {b:?}"));
        }
        assert_eq!(cache.len(), prompt.len() + follow.len());

        // The same positions in two chunks give the same logits (the mask over the cache).
        cache.reset();
        run(&model, &mut cache, &prompt[..4], &dev);
        let got = run(&model, &mut cache, &prompt[4..], &dev);
        assert_close(&got, &f32s(&fx["prefill_logits"]), 1e-3, &format!("chunked prefill on {b:?}"));

        // Greedy decoding from scratch.
        cache.reset();
        let mut logits = run(&model, &mut cache, &prompt, &dev);
        let mut out = Vec::new();
        for _ in 0..8 {
            let t = argmax(&logits) as u32;
            out.push(t);
            logits = run(&model, &mut cache, &[t], &dev);
        }
        assert_eq!(out, u32s(&fx["greedy"]), "greedy on {b:?}");
    }
}

#[test]
fn a_full_cache_is_an_error_not_a_panic() {
    let dev = ember::backend::cpu_device();
    let (model, config) = load(&dev);
    let mut cache = KvCache::new(&config, 8, &dev);
    run(&model, &mut cache, &[1, 2, 3, 4, 5, 6], &dev);
    let data = TensorData::new(vec![1i32, 2, 3], [1, 3]);
    let err = model.forward(Tensor::<2, Int>::from_data(data, &dev), &mut cache).unwrap_err();
    assert!(matches!(err, ember::Error::ContextFull { needed: 9, limit: 8 }), "{err}");
}
