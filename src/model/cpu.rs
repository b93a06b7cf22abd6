//! The decoder on the CPU over quantised weights: the same three families and arithmetic as
//! [`super::Decoder`] (f32 activations, interleaved RoPE, the same norms and activations), with
//! every projection a [`QMatrix`] product. burn's CPU backend would hold the weights as f32,
//! five times the file, and repacked every one of them for each token's matmul (the profile in
//! bench/PROFILE.md); this reads the file's blocks once a token.
//!
//! Its KV cache lives inside it, preallocated; the next position is `len()`.

use super::decoder::{rope_tables, Arch, DecoderConfig};
use super::qmatrix::{dot, QMatrix};
use crate::error::{Error, Result};

/// RMSNorm (`beta` None) or LayerNorm (`beta` Some).
#[derive(Debug, Clone)]
pub struct CpuNorm {
    /// Per-channel scale γ. // [d_model]
    pub gamma: Vec<f32>,
    /// LayerNorm's shift β; `None` for RMSNorm. // [d_model]
    pub beta: Option<Vec<f32>>,
    /// Added to the variance (or mean square).
    pub eps: f32,
}

impl CpuNorm {
    /// Normalises every row of `x` (`[t, d]`) into `out`.
    fn forward(&self, x: &[f32], out: &mut [f32]) {
        let d = self.gamma.len();
        for (x, y) in x.chunks_exact(d).zip(out.chunks_exact_mut(d)) {
            match &self.beta {
                None => {
                    let ms = x.iter().map(|v| v * v).sum::<f32>() / d as f32;
                    let inv = 1.0 / (ms + self.eps).sqrt();
                    for ((y, x), g) in y.iter_mut().zip(x).zip(&self.gamma) {
                        *y = x * inv * g;
                    }
                }
                Some(beta) => {
                    let mean = x.iter().sum::<f32>() / d as f32;
                    let var = x.iter().map(|v| (v - mean) * (v - mean)).sum::<f32>() / d as f32;
                    let inv = 1.0 / (var + self.eps).sqrt();
                    for (((y, x), g), b) in y.iter_mut().zip(x).zip(&self.gamma).zip(beta) {
                        *y = (x - mean) * inv * g + b;
                    }
                }
            }
        }
    }
}

/// A projection and its optional bias.
#[derive(Debug, Clone)]
pub struct CpuLinear {
    /// `(out, in)`.
    pub weight: QMatrix,
    /// `[out]`.
    pub bias: Option<Vec<f32>>,
}

impl CpuLinear {
    /// `[t, in]` → `[t, out]`.
    fn forward(&self, x: &[f32], t: usize) -> Vec<f32> {
        let mut y = vec![0f32; t * self.weight.rows()];
        self.weight.matmul(x, t, &mut y);
        if let Some(b) = &self.bias {
            for row in y.chunks_exact_mut(b.len()) {
                row.iter_mut().zip(b).for_each(|(y, b)| *y += b);
            }
        }
        y
    }
}

/// One block's weights.
#[derive(Debug, Clone)]
pub struct CpuBlock {
    /// Norm before attention.
    pub attn_norm: CpuNorm,
    /// Query, key, value and output projections.
    pub wq: CpuLinear,
    /// Key projection.
    pub wk: CpuLinear,
    /// Value projection.
    pub wv: CpuLinear,
    /// Output projection.
    pub wo: CpuLinear,
    /// Norm before the feed-forward network.
    pub ffn_norm: CpuNorm,
    /// SwiGLU's gate; `None` for GPT-2's GELU MLP.
    pub gate: Option<CpuLinear>,
    /// Up projection.
    pub up: CpuLinear,
    /// Down projection.
    pub down: CpuLinear,
}

/// The decoder with its KV cache.
#[derive(Debug, Clone)]
pub struct CpuDecoder {
    config: DecoderConfig,
    embed: QMatrix,
    positions: Option<QMatrix>,
    layers: Vec<CpuBlock>,
    norm: CpuNorm,
    output: Option<QMatrix>,
    /// RoPE tables, `[max_pos, head_dim/2]` each; empty with learned positions.
    cos: Vec<f32>,
    sin: Vec<f32>,
    max_pos: usize,
    /// Per block, `[capacity, kv_heads · head_dim]`.
    k: Vec<Vec<f32>>,
    v: Vec<Vec<f32>>,
    len: usize,
    capacity: usize,
}

impl CpuDecoder {
    /// Assembles a decoder from its weights, with a cache of `capacity` positions.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        config: &DecoderConfig,
        embed: QMatrix,
        positions: Option<QMatrix>,
        layers: Vec<CpuBlock>,
        norm: CpuNorm,
        output: Option<QMatrix>,
        capacity: usize,
    ) -> Self {
        let (cos, sin, max_pos) = match &positions {
            Some(p) => (Vec::new(), Vec::new(), p.rows().min(capacity)),
            None => {
                let (cos, sin) = rope_tables(config.head_dim(), capacity, config.rope_theta);
                (cos, sin, capacity)
            }
        };
        let kv = config.n_kv_head * config.head_dim();
        let buffers = || (0..config.n_layer).map(|_| vec![0f32; capacity * kv]).collect();
        CpuDecoder { config: config.clone(), embed, positions, layers, norm, output, cos, sin, max_pos, k: buffers(), v: buffers(), len: 0, capacity }
    }

    /// Positions cached.
    pub fn len(&self) -> usize {
        self.len
    }
    /// Whether nothing is cached.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
    /// Positions the cache holds.
    pub fn capacity(&self) -> usize {
        self.capacity
    }
    /// Forgets every position.
    pub fn reset(&mut self) {
        self.len = 0;
    }
    /// Keeps the first `len` positions.
    pub fn truncate(&mut self, len: usize) {
        self.len = self.len.min(len);
    }
    /// Rotates each head of every row of `x` (`[t, heads · head_dim]`), row `i` at `pos0 + i`.
    fn rope(&self, x: &mut [f32], heads: usize, pos0: usize) {
        let hd = self.config.head_dim();
        let half = hd / 2;
        for (i, row) in x.chunks_exact_mut(heads * hd).enumerate() {
            let (cos, sin) = (&self.cos[(pos0 + i) * half..][..half], &self.sin[(pos0 + i) * half..][..half]);
            for head in row.chunks_exact_mut(hd) {
                for (j, pair) in head.chunks_exact_mut(2).enumerate() {
                    let (x0, x1) = (pair[0], pair[1]);
                    pair[0] = x0 * cos[j] - x1 * sin[j];
                    pair[1] = x0 * sin[j] + x1 * cos[j];
                }
            }
        }
    }

    /// Runs `ids` after the cached positions, appends their keys and values, and returns the
    /// last position's logits.
    pub fn forward(&mut self, ids: &[u32]) -> Result<Vec<f32>> {
        let c = &self.config;
        let (t, d, pos0) = (ids.len(), c.d_model, self.len);
        let needed = pos0 + t;
        let limit = self.capacity.min(self.max_pos);
        if t == 0 || needed > limit {
            return Err(Error::ContextFull { needed, limit });
        }
        if let Some(&bad) = ids.iter().find(|&&id| id as usize >= c.vocab_size) {
            return Err(Error::Unsupported(format!("token id {bad} is outside the vocabulary of {}", c.vocab_size)));
        }
        let (nh, nkv, hd) = (c.n_head, c.n_kv_head, c.head_dim());
        let (qd, kvd, group) = (nh * hd, nkv * hd, nh / nkv);
        let scale = 1.0 / (hd as f32).sqrt();

        let mut x = vec![0f32; t * d]; // [t, d_model]
        let mut pos_row = vec![0f32; d];
        for (i, (&id, row)) in ids.iter().zip(x.chunks_exact_mut(d)).enumerate() {
            self.embed.row_into(id as usize, row);
            if let Some(p) = &self.positions {
                p.row_into(pos0 + i, &mut pos_row);
                row.iter_mut().zip(&pos_row).for_each(|(x, p)| *x += p);
            }
        }
        let mut h = vec![0f32; t * d];
        let mut scores = vec![0f32; needed];
        for (l, block) in self.layers.iter().enumerate() {
            block.attn_norm.forward(&x, &mut h);
            let mut q = block.wq.forward(&h, t); // [t, heads·head_dim]
            let mut k = block.wk.forward(&h, t); // [t, kv_heads·head_dim]
            let v = block.wv.forward(&h, t);
            if c.arch != Arch::Gpt2 {
                self.rope(&mut q, nh, pos0);
                self.rope(&mut k, nkv, pos0);
            }
            self.k[l][pos0 * kvd..needed * kvd].copy_from_slice(&k);
            self.v[l][pos0 * kvd..needed * kvd].copy_from_slice(&v);
            let (kc, vc) = (&self.k[l], &self.v[l]);
            let mut o = vec![0f32; t * qd]; // [t, heads·head_dim]
            for i in 0..t {
                let keys = pos0 + i + 1; // causal: itself and everything before
                for head in 0..nh {
                    let kvh = head / group; // consecutive query heads share a KV head
                    let qv = &q[i * qd + head * hd..][..hd];
                    for (j, s) in scores[..keys].iter_mut().enumerate() {
                        let kv = &kc[j * kvd + kvh * hd..][..hd];
                        *s = dot(qv, kv) * scale;
                    }
                    softmax(&mut scores[..keys]);
                    let out = &mut o[i * qd + head * hd..][..hd];
                    for (j, &p) in scores[..keys].iter().enumerate() {
                        let vv = &vc[j * kvd + kvh * hd..][..hd];
                        out.iter_mut().zip(vv).for_each(|(o, v)| *o += p * v);
                    }
                }
            }
            let attn = block.wo.forward(&o, t);
            x.iter_mut().zip(&attn).for_each(|(x, a)| *x += a);

            block.ffn_norm.forward(&x, &mut h);
            let mut up = block.up.forward(&h, t); // [t, d_ff]
            match &block.gate {
                Some(gate) => {
                    let g = gate.forward(&h, t);
                    up.iter_mut().zip(&g).for_each(|(u, g)| *u *= g / (1.0 + (-g).exp()));
                }
                None => up.iter_mut().for_each(|u| *u = gelu_tanh(*u)),
            }
            let down = block.down.forward(&up, t);
            x.iter_mut().zip(&down).for_each(|(x, a)| *x += a);
        }
        self.len = needed;
        // Only the last position's logits are wanted.
        let mut last = vec![0f32; d];
        self.norm.forward(&x[(t - 1) * d..], &mut last);
        let head = self.output.as_ref().unwrap_or(&self.embed);
        let mut logits = vec![0f32; head.rows()];
        head.matvec(&last, &mut logits);
        Ok(logits)
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

/// GPT-2's `gelu_new`: `0.5·x·(1 + tanh(√(2/π)·(x + 0.044715·x³)))`.
fn gelu_tanh(x: f32) -> f32 {
    const C: f32 = 0.797_884_6; // √(2/π)
    0.5 * x * (1.0 + (C * (x + 0.044715 * x * x * x)).tanh())
}

#[cfg(test)]
mod tests {
    use crate::gguf::Gguf;
    use crate::model::{load_gguf_cpu, DecoderConfig};

    /// The prompt run in one pass leaves the same cache, and gives the same logits, as run
    /// token by token: the engine relies on it when a follow-up turn reuses the cache.
    #[test]
    fn one_pass_equals_token_by_token() {
        let bytes = crate::testkit::tiny_model_bytes();
        let g = Gguf::parse(&bytes).unwrap();
        let config = DecoderConfig::from_gguf(&g.metadata).unwrap();
        let (mut m, _) = load_gguf_cpu(&g, &config, 64, &mut |_, _| {}).unwrap();
        let ids: Vec<u32> = (0..11).map(|i| (i * 7 + 3) % config.vocab_size as u32).collect();
        let whole = m.forward(&ids).unwrap();
        m.reset();
        let mut last = Vec::new();
        for id in &ids {
            last = m.forward(&[*id]).unwrap();
        }
        let d = whole.iter().zip(&last).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
        assert!(d == 0.0, "max |Δ| {d}");
    }
}
