//! Each decoder piece on tiny shapes against the numpy reference, on every backend.

use burn::module::Param;
use burn::nn::RmsNorm;
use burn::tensor::{Device, Tensor, TensorData};
use ember::model::decoder::{attend, causal_mask, swiglu, Norm, Rope};

use crate::{assert_close, backends, f32s, json};

fn devices() -> Vec<(ember::Backend, Device)> {
    backends().into_iter().map(|b| (b, ember::backend::device(b).unwrap())).collect()
}

fn tensor<const D: usize>(v: &serde_json::Value, shape: [usize; D], dev: &Device) -> Tensor<D> {
    Tensor::from_data(TensorData::new(f32s(v), shape), dev)
}

fn values<const D: usize>(t: Tensor<D>) -> Vec<f32> {
    t.into_data().try_into_vec::<f32>().unwrap()
}

#[test]
fn rmsnorm() {
    let fx = &json("layers.json")["rmsnorm"];
    let [t, d] = [3, 12];
    for (b, dev) in devices() {
        // The decoder's norm: burn's RmsNorm on the CPU, the fused kernel on wgpu.
        let norm = Norm::Rms(RmsNorm { gamma: Param::from_tensor(tensor(&fx["w"], [d], &dev)), epsilon: fx["eps"].as_f64().unwrap() });
        let out = norm.forward(tensor(&fx["x"], [t, d], &dev));
        assert_close(&values(out), &f32s(&fx["out"]), 1e-5, &format!("rmsnorm on {b:?}"));
    }
}

#[test]
fn rope_rotates_interleaved_pairs() {
    let fx = &json("layers.json")["rope"];
    let (t, h, hd) = (3, 2, 8);
    for (b, dev) in devices() {
        let rope = Rope::new(hd, 16, fx["base"].as_f64().unwrap(), &dev);
        let x = tensor(&fx["x"], [1, t, h, hd], &dev);
        let out = rope.apply(x, fx["pos0"].as_u64().unwrap() as usize);
        assert_close(&values(out), &f32s(&fx["out"]), 1e-5, &format!("rope on {b:?}"));
    }
}

#[test]
fn rope_half_split_pairing_would_differ() {
    // Guard against a silent switch to HF's rotate_half pairing: it must give other values.
    let fx = &json("layers.json")["rope"];
    let x = f32s(&fx["x"]);
    let want = f32s(&fx["out"]);
    let mut swapped = x.clone();
    for head in swapped.chunks_mut(8) {
        let (a, b) = (head[..4].to_vec(), head[4..].to_vec());
        for i in 0..4 {
            head[2 * i] = a[i];
            head[2 * i + 1] = b[i];
        }
    }
    let dev = ember::backend::cpu_device();
    let rope = Rope::new(8, 16, 10000.0, &dev);
    let out = values(rope.apply(Tensor::from_data(TensorData::new(swapped, [1, 3, 2, 8]), &dev), 2));
    assert!(crate::max_diff(&out, &want).0 > 1e-2);
}

#[test]
fn attention_with_gqa_cache_and_causal_mask() {
    let fx = &json("layers.json")["attention"];
    let (nh, nkv, hd, t, past) = (4, 2, 8, 3, 2);
    assert_eq!(fx["n_head"], nh);
    for (b, dev) in devices() {
        let q = tensor(&fx["q"], [1, t, nh, hd], &dev).swap_dims(1, 2); // [1, heads, seq, hd]
        let k = tensor(&fx["k"], [1, past + t, nkv, hd], &dev).swap_dims(1, 2);
        let v = tensor(&fx["v"], [1, past + t, nkv, hd], &dev).swap_dims(1, 2);
        let mask = causal_mask(past, t, &dev);
        let out = attend(q, k, v, mask.as_ref()).swap_dims(1, 2); // [1, seq, heads, hd]
        assert_close(&values(out), &f32s(&fx["out"]), 1e-5, &format!("attention on {b:?}"));
    }
}

#[test]
fn swiglu_matches() {
    let fx = &json("layers.json")["swiglu"];
    for (b, dev) in devices() {
        let out = swiglu(tensor(&fx["gate"], [3, 6], &dev), tensor(&fx["up"], [3, 6], &dev));
        assert_close(&values(out), &f32s(&fx["out"]), 1e-5, &format!("swiglu on {b:?}"));
    }
}
