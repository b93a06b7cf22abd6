//! Each operation of the model description on tiny shapes against the numpy reference, on both
//! shipping executors.

use ember::model::decoder::{Norm, Rope};
use ember::model::{Activation, Executor, Heads};

use crate::{assert_close, f32s, for_each_executor, json};

fn read<E: Executor>(exec: &E, x: E::Act) -> Vec<f32> {
    pollster::block_on(exec.read(x)).unwrap()
}

#[test]
fn rmsnorm() {
    let fx = &json("layers.json")["rmsnorm"];
    let d = 12;
    for_each_executor!(|b, exec| {
        let norm = Norm { gamma: exec.vector(f32s(&fx["w"])).unwrap(), beta: None, eps: fx["eps"].as_f64().unwrap() };
        let out = exec.norm(&exec.input(f32s(&fx["x"]), d), &norm);
        assert_close(&read(&exec, out), &f32s(&fx["out"]), 1e-5, &format!("rmsnorm on {b:?}"));
    });
}

#[test]
fn rope_rotates_interleaved_pairs() {
    let fx = &json("layers.json")["rope"];
    let (h, hd) = (2, 8);
    for_each_executor!(|b, exec| {
        let rope = Rope::new(&exec, hd, 16, fx["base"].as_f64().unwrap()).unwrap();
        let x = exec.input(f32s(&fx["x"]), h * hd); // [t, heads·head_dim]
        let out = exec.rope(x, &rope, h, fx["pos0"].as_u64().unwrap() as usize);
        assert_close(&read(&exec, out), &f32s(&fx["out"]), 1e-5, &format!("rope on {b:?}"));
    });
}

#[test]
fn rope_half_split_pairing_would_differ() {
    // Guard against a silent switch to HF's rotate_half pairing: it must give other values.
    let fx = &json("layers.json")["rope"];
    let want = f32s(&fx["out"]);
    let mut swapped = f32s(&fx["x"]);
    for head in swapped.chunks_mut(8) {
        let (a, b) = (head[..4].to_vec(), head[4..].to_vec());
        for i in 0..4 {
            head[2 * i] = a[i];
            head[2 * i + 1] = b[i];
        }
    }
    let exec = ember::model::CpuExecutor;
    let rope = Rope::new(&exec, 8, 16, 10000.0).unwrap();
    let out = exec.rope(swapped, &rope, 2, 2);
    assert!(crate::max_diff(&out, &want).0 > 1e-2);
}

/// The past positions go through the cache first (their queries' outputs are not checked), then
/// the new ones attend to them and to each other under the causal mask.
#[test]
fn attention_with_gqa_cache_and_causal_mask() {
    let fx = &json("layers.json")["attention"];
    let heads = Heads { n_head: 4, n_kv_head: 2, head_dim: 8, scale: 1.0 / 8f32.sqrt(), window: None };
    let (t, past) = (3, 2);
    assert_eq!(fx["n_head"], heads.n_head);
    let (qd, kvd) = (heads.n_head * heads.head_dim, heads.n_kv_head * heads.head_dim);
    let (k, v) = (f32s(&fx["k"]), f32s(&fx["v"])); // [past + t, kv_heads·head_dim]
    for_each_executor!(|b, exec| {
        let (mut kc, mut vc) = (exec.kv(past + t, heads), exec.kv(past + t, heads));
        let input = |x: &[f32], w| exec.input(x.to_vec(), w);
        let first = exec.attend(input(&vec![0.0; past * qd], qd), input(&k[..past * kvd], kvd), input(&v[..past * kvd], kvd), (&mut kc, &mut vc), heads, 0);
        read(&exec, first);
        let out = exec.attend(input(&f32s(&fx["q"]), qd), input(&k[past * kvd..], kvd), input(&v[past * kvd..], kvd), (&mut kc, &mut vc), heads, past);
        assert_close(&read(&exec, out), &f32s(&fx["out"]), 1e-5, &format!("attention on {b:?}"));
    });
}

#[test]
fn swiglu_matches() {
    let fx = &json("layers.json")["swiglu"];
    for_each_executor!(|b, exec| {
        let out = exec.glu(exec.input(f32s(&fx["gate"]), 6), exec.input(f32s(&fx["up"]), 6), Activation::Silu);
        assert_close(&read(&exec, out), &f32s(&fx["out"]), 1e-5, &format!("swiglu on {b:?}"));
    });
}

/// QK-norm (Qwen3, Gemma 3): a `[head_dim]` norm over each head of a `[t, heads·head_dim]` row.
#[test]
fn qk_norm_normalises_each_head() {
    let fx = &json("layers-families.json")["qk_norm"];
    let width = (fx["heads"].as_u64().unwrap() * fx["head_dim"].as_u64().unwrap()) as usize;
    for_each_executor!(|b, exec| {
        let norm = Norm { gamma: exec.vector(f32s(&fx["w"])).unwrap(), beta: None, eps: fx["eps"].as_f64().unwrap() };
        let out = exec.norm(&exec.input(f32s(&fx["x"]), width), &norm);
        assert_close(&read(&exec, out), &f32s(&fx["out"]), 1e-5, &format!("qk-norm on {b:?}"));
    });
}

/// Gemma 3's local layers: each query sees only the `window` positions up to its own, through
/// the cache, with a scale of the family's own; in a prompt (the mask) and token by token.
#[test]
fn windowed_attention_with_its_own_scale() {
    let fx = &json("layers-families.json")["windowed_attention"];
    let u = |k: &str| fx[k].as_u64().unwrap() as usize;
    let heads =
        Heads { n_head: u("n_head"), n_kv_head: u("n_kv"), head_dim: u("head_dim"), scale: fx["scale"].as_f64().unwrap() as f32, window: Some(u("window")) };
    let (t, past) = (u("seq"), u("past"));
    let (qd, kvd) = (heads.n_head * heads.head_dim, heads.n_kv_head * heads.head_dim);
    let (q, k, v, want) = (f32s(&fx["q"]), f32s(&fx["k"]), f32s(&fx["v"]), f32s(&fx["out"]));
    for_each_executor!(|b, exec| {
        let input = |x: &[f32], w| exec.input(x.to_vec(), w);
        // All new positions in one pass.
        let (mut kc, mut vc) = (exec.kv(past + t, heads), exec.kv(past + t, heads));
        read(&exec, exec.attend(input(&vec![0.0; past * qd], qd), input(&k[..past * kvd], kvd), input(&v[..past * kvd], kvd), (&mut kc, &mut vc), heads, 0));
        let out = exec.attend(input(&q, qd), input(&k[past * kvd..], kvd), input(&v[past * kvd..], kvd), (&mut kc, &mut vc), heads, past);
        assert_close(&read(&exec, out), &want, 1e-5, &format!("windowed attention on {b:?}"));
        // One at a time (no mask: the window alone limits the keys).
        let mut got = Vec::new();
        for i in 0..t {
            let at = |x: &[f32], w: usize| input(&x[(past + i) * w..(past + i + 1) * w], w);
            let out = exec.attend(input(&q[i * qd..(i + 1) * qd], qd), at(&k, kvd), at(&v, kvd), (&mut kc, &mut vc), heads, past + i);
            got.extend(read(&exec, out));
        }
        assert_close(&got, &want, 1e-5, &format!("windowed attention token by token on {b:?}"));
    });
}
