//! The CPU executor: the model description's operations over the file's quantised blocks
//! ([`QMatrix`]), with f32 activations in plain vectors. burn's CPU backend would hold the
//! weights as f32, five times the file, and repacked every one of them for each token's matmul
//! (the profile in bench/PROFILE.md); this reads the file's blocks once a token.
//!
//! A token's result does not depend on how many tokens run with it (the kernels are
//! batch-invariant), so a follow-up turn that reuses the cache equals a fresh run.

use std::future::Future;

use super::config::Activation;
use super::decoder::{Executor, Heads, Norm, Rope};
use super::pool::{self, Parts};
use super::qmatrix::{dot, QMatrix};
use super::weights::Raw;
use crate::error::Result;

/// Runs the model on the CPU (natively, and in wasm with SIMD128).
#[derive(Debug, Clone, Copy, Default)]
pub struct CpuExecutor;

impl Executor for CpuExecutor {
    /// `[t, width]`, row-major.
    type Act = Vec<f32>;
    type Matrix = QMatrix;
    type Vector = Vec<f32>;
    /// `[capacity, kv_heads · head_dim]`.
    type Kv = Vec<f32>;

    fn matrix(&self, raw: Raw, _table: bool) -> Result<QMatrix> {
        raw.into_qmatrix()
    }

    fn vector(&self, values: Vec<f32>) -> Result<Vec<f32>> {
        Ok(values)
    }

    fn kv(&self, capacity: usize, heads: Heads) -> Vec<f32> {
        vec![0f32; capacity * heads.n_kv_head * heads.head_dim]
    }

    fn input(&self, values: Vec<f32>, _width: usize) -> Vec<f32> {
        values
    }

    fn embed(&self, table: &QMatrix, ids: &[u32]) -> Vec<f32> {
        let d = table.cols();
        let mut x = vec![0f32; ids.len() * d];
        for (&id, row) in ids.iter().zip(x.chunks_exact_mut(d)) {
            table.row_into(id as usize, row);
        }
        x
    }

    fn matmul(&self, x: &Vec<f32>, w: &QMatrix) -> Vec<f32> {
        let t = x.len() / w.cols();
        let mut y = vec![0f32; t * w.rows()];
        w.matmul(x, t, &mut y);
        y
    }

    fn add(&self, mut x: Vec<f32>, y: &Vec<f32>) -> Vec<f32> {
        x.iter_mut().zip(y).for_each(|(x, y)| *x += y);
        x
    }

    fn scale(&self, mut x: Vec<f32>, s: f32) -> Vec<f32> {
        x.iter_mut().for_each(|v| *v *= s);
        x
    }

    fn add_bias(&self, mut x: Vec<f32>, b: &Vec<f32>) -> Vec<f32> {
        for row in x.chunks_exact_mut(b.len()) {
            row.iter_mut().zip(b).for_each(|(y, b)| *y += b);
        }
        x
    }

    fn norm(&self, x: &Vec<f32>, n: &Norm<Self>) -> Vec<f32> {
        let (d, eps) = (n.gamma.len(), n.eps as f32);
        let mut out = vec![0f32; x.len()];
        for (x, y) in x.chunks_exact(d).zip(out.chunks_exact_mut(d)) {
            match &n.beta {
                None => {
                    let ms = x.iter().map(|v| v * v).sum::<f32>() / d as f32;
                    let inv = 1.0 / (ms + eps).sqrt();
                    for ((y, x), g) in y.iter_mut().zip(x).zip(&n.gamma) {
                        *y = x * inv * g;
                    }
                }
                Some(beta) => {
                    let mean = x.iter().sum::<f32>() / d as f32;
                    let var = x.iter().map(|v| (v - mean) * (v - mean)).sum::<f32>() / d as f32;
                    let inv = 1.0 / (var + eps).sqrt();
                    for (((y, x), g), b) in y.iter_mut().zip(x).zip(&n.gamma).zip(beta) {
                        *y = (x - mean) * inv * g + b;
                    }
                }
            }
        }
        out
    }

    fn rope(&self, mut x: Vec<f32>, rope: &Rope<Self>, heads: usize, pos0: usize) -> Vec<f32> {
        let hd = rope.head_dim;
        let half = hd / 2;
        for (i, row) in x.chunks_exact_mut(heads * hd).enumerate() {
            let at = (pos0 + i) * half;
            let (cos, sin) = (&rope.cos[at..at + half], &rope.sin[at..at + half]);
            for head in row.chunks_exact_mut(hd) {
                for (j, pair) in head.chunks_exact_mut(2).enumerate() {
                    let (x0, x1) = (pair[0], pair[1]);
                    pair[0] = x0 * cos[j] - x1 * sin[j];
                    pair[1] = x0 * sin[j] + x1 * cos[j];
                }
            }
        }
        x
    }

    fn attend(&self, q: Vec<f32>, k: Vec<f32>, v: Vec<f32>, (kc, vc): (&mut Vec<f32>, &mut Vec<f32>), heads: Heads, pos0: usize) -> Vec<f32> {
        let Heads { n_head: nh, n_kv_head: nkv, head_dim: hd, scale, window } = heads;
        let (qd, kvd, group) = (nh * hd, nkv * hd, nh / nkv);
        let t = q.len() / qd;
        let end = pos0 + t;
        kc[pos0 * kvd..end * kvd].copy_from_slice(&k);
        vc[pos0 * kvd..end * kvd].copy_from_slice(&v);
        let (kc, vc): (&[f32], &[f32]) = (kc, vc);
        let mut o = vec![0f32; t * qd]; // [t, heads·head_dim]
        let out = Parts::of(&mut o);
        // One head of every token: the heads are the threads' parts, each its own arithmetic.
        let head = |head: usize| {
            let kvh = head / group; // consecutive query heads share a KV head
            let mut scores = vec![0f32; end];
            for i in 0..t {
                let keys = pos0 + i + 1; // causal: itself and everything before
                let first = window.map_or(0, |w| keys.saturating_sub(w)); // a local layer's window
                let scores = &mut scores[first..keys];
                let qv = &q[i * qd + head * hd..][..hd];
                for (j, s) in (first..).zip(scores.iter_mut()) {
                    *s = dot(qv, &kc[j * kvd + kvh * hd..][..hd]) * scale;
                }
                softmax(scores);
                // SAFETY: head `head` of token `i` is this part's alone, within `o`.
                let out = unsafe { std::slice::from_raw_parts_mut(out.at(i * qd + head * hd), hd) };
                for (j, &p) in (first..).zip(scores.iter()) {
                    let vv = &vc[j * kvd + kvh * hd..][..hd];
                    out.iter_mut().zip(vv).for_each(|(o, v)| *o += p * v);
                }
            }
        };
        pool::run(nh, &head);
        o
    }

    fn glu(&self, gate: Vec<f32>, mut up: Vec<f32>, act: Activation) -> Vec<f32> {
        up.iter_mut().zip(&gate).for_each(|(u, &g)| *u *= activate(g, act));
        up
    }

    fn activate(&self, mut x: Vec<f32>, act: Activation) -> Vec<f32> {
        x.iter_mut().for_each(|v| *v = activate(*v, act));
        x
    }

    fn columns(&self, x: &Vec<f32>, width: usize, range: std::ops::Range<usize>) -> Vec<f32> {
        x.chunks_exact(width).flat_map(|row| &row[range.clone()]).copied().collect()
    }

    fn last(&self, mut x: Vec<f32>, tokens: usize) -> Vec<f32> {
        let width = x.len() / tokens;
        x.drain(..(tokens - 1) * width);
        x
    }

    fn read(&self, x: Vec<f32>) -> impl Future<Output = Result<Vec<f32>>> {
        std::future::ready(Ok(x))
    }
}

/// One activation.
fn activate(x: f32, act: Activation) -> f32 {
    match act {
        Activation::Silu => x / (1.0 + (-x).exp()),
        Activation::GeluTanh => gelu_tanh(x),
    }
}

/// In place, over the whole slice.
fn softmax(x: &mut [f32]) {
    let max = x.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let mut sum = 0f32;
    for v in x.iter_mut() {
        *v = (*v - max).exp();
        sum += *v;
    }
    let inv = 1.0 / sum;
    x.iter_mut().for_each(|v| *v *= inv);
}

/// The tanh GELU: `0.5·x·(1 + tanh(√(2/π)·(x + 0.044715·x³)))`.
fn gelu_tanh(x: f32) -> f32 {
    const C: f32 = 0.797_884_6; // √(2/π)
    0.5 * x * (1.0 + (C * (x + 0.044715 * x * x * x)).tanh())
}

#[cfg(test)]
mod tests {
    use super::CpuExecutor;
    use crate::gguf::Gguf;
    use crate::model::weights::Tensors;
    use crate::model::{DecoderConfig, Loaded};

    /// The prompt run in one pass leaves the same cache, and gives the same logits, as run
    /// token by token: the engine relies on it when a follow-up turn reuses the cache.
    #[test]
    fn one_pass_equals_token_by_token() {
        let bytes = crate::testkit::tiny_model_bytes();
        let g = Gguf::parse(&bytes).unwrap();
        let config = DecoderConfig::from_gguf(&g.metadata).unwrap();
        let mut m = Loaded::new(CpuExecutor, Tensors::gguf(&g, &config), &config, 64, &mut |_, _| {}).unwrap();
        let ids: Vec<u32> = (0..11).map(|i| (i * 7 + 3) % config.vocab_size as u32).collect();
        let whole = pollster::block_on(m.logits(&ids)).unwrap();
        m.cache.reset();
        let mut last = Vec::new();
        for id in &ids {
            last = pollster::block_on(m.logits(&[*id])).unwrap();
        }
        let d = whole.iter().zip(&last).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
        assert!(d == 0.0, "max |Δ| {d}");
    }
}
