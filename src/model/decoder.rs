//! The decoder of the GPT-style families Ember runs, in burn: Llama (RMSNorm, RoPE, grouped-query
//! attention, SwiGLU), Qwen2 (Llama with q/k/v biases) and GPT-2 (LayerNorm with bias, learned
//! positions, biased projections, a GELU MLP). One module serves all three; `Arch` says which
//! parts a model has. The KV cache is preallocated; activations are f32 throughout.

use burn::config::Config;
use burn::module::Module;
use burn::nn::{Embedding, EmbeddingConfig, LayerNorm, LayerNormConfig, Linear, LinearConfig, RmsNorm, RmsNormConfig};
use burn::tensor::{activation, Device, Int, Tensor, TensorData};
use serde::{Deserialize, Serialize};

use super::gpu::{self, QWeight};
use crate::error::{Error, Result};

/// A decoder family: which norm, positions, biases and feed-forward network a model has.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Arch {
    /// Llama (SmolLM2, TinyLlama, Llama 3): RMSNorm, RoPE, SwiGLU, no biases.
    Llama,
    /// Qwen2 (Qwen2, Qwen2.5): Llama with biases on the q, k and v projections.
    Qwen2,
    /// GPT-2: LayerNorm, learned absolute positions, biases everywhere, GELU (tanh) MLP.
    Gpt2,
}

impl Arch {
    /// The family a GGUF `general.architecture` or HF `model_type` names.
    pub fn parse(name: &str) -> Option<Self> {
        match name {
            "llama" => Some(Arch::Llama),
            "qwen2" => Some(Arch::Qwen2),
            "gpt2" => Some(Arch::Gpt2),
            _ => None,
        }
    }
    /// Its name in GGUF and in `config.json`.
    pub fn name(self) -> &'static str {
        match self {
            Arch::Llama => "llama",
            Arch::Qwen2 => "qwen2",
            Arch::Gpt2 => "gpt2",
        }
    }
    /// GPT-2 is the one with LayerNorm, learned positions, biased outputs and no gate.
    fn is_gpt2(self) -> bool {
        self == Arch::Gpt2
    }
    /// Whether the q, k and v projections have biases.
    pub fn qkv_bias(self) -> bool {
        self != Arch::Llama
    }
}

/// The shape of a decoder.
#[derive(Config, Debug, PartialEq)]
pub struct DecoderConfig {
    /// Number of decoder blocks.
    pub n_layer: usize,
    /// Width of the residual stream (the embedding width).
    pub d_model: usize,
    /// Number of query heads.
    pub n_head: usize,
    /// Number of key/value heads; fewer than `n_head` means grouped-query attention.
    pub n_kv_head: usize,
    /// Hidden width of the feed-forward network.
    pub d_ff: usize,
    /// Vocabulary size (rows of the token embedding).
    pub vocab_size: usize,
    /// Context length the model was trained with (GPT-2: rows of the position embedding).
    pub context_length: usize,
    /// The family, which decides the norm, positions, biases and feed-forward network.
    #[config(default = "Arch::Llama")]
    pub arch: Arch,
    /// RoPE base frequency θ (unused by GPT-2).
    #[config(default = 10000.0)]
    pub rope_theta: f64,
    /// RMSNorm (or GPT-2's LayerNorm) epsilon.
    #[config(default = 1e-5)]
    pub norm_eps: f64,
    /// Whether the output head reuses the token embedding.
    #[config(default = true)]
    pub tied_embeddings: bool,
}

/// 1e-5 as GGUF stores it (an f32), so presets equal what files give.
const GGUF_EPS: f64 = 1e-5_f32 as f64;

impl DecoderConfig {
    /// SmolLM2-135M (and -Instruct): 30 blocks of width 576, 9 heads over 3 KV heads.
    pub fn smollm2_135m() -> Self {
        Self::new(30, 576, 9, 3, 1536, 49152, 8192).with_rope_theta(100_000.0).with_norm_eps(GGUF_EPS)
    }

    /// SmolLM2-360M: 32 blocks of width 960, 15 heads over 5 KV heads.
    pub fn smollm2_360m() -> Self {
        Self::new(32, 960, 15, 5, 2560, 49152, 8192).with_rope_theta(100_000.0).with_norm_eps(GGUF_EPS)
    }

    /// Qwen2.5-0.5B: 24 blocks of width 896, 14 heads over 2 KV heads, tied head.
    pub fn qwen2_5_0_5b() -> Self {
        Self::new(24, 896, 14, 2, 4864, 151936, 32768).with_arch(Arch::Qwen2).with_rope_theta(1_000_000.0).with_norm_eps(1e-6)
    }

    /// GPT-2 (124M): 12 blocks of width 768, 12 heads, 1024 positions, tied head.
    pub fn gpt2_124m() -> Self {
        Self::new(12, 768, 12, 12, 3072, 50257, 1024).with_arch(Arch::Gpt2)
    }

    /// Width of one attention head.
    pub fn head_dim(&self) -> usize {
        self.d_model / self.n_head
    }

    /// Parameters of a model of this shape.
    pub fn n_params(&self) -> usize {
        let (d, q, kv, ff) = (self.d_model, self.n_head * self.head_dim(), self.n_kv_head * self.head_dim(), self.d_ff);
        let gpt2 = self.arch.is_gpt2();
        let norm = if gpt2 { 2 * d } else { d };
        let attn = d * q + 2 * d * kv + q * d + if self.arch.qkv_bias() { q + 2 * kv } else { 0 } + if gpt2 { d } else { 0 };
        let mlp = if gpt2 { 2 * d * ff + ff + d } else { 3 * d * ff };
        let head = if self.tied_embeddings { 0 } else { self.vocab_size * d };
        let positions = if gpt2 { self.context_length * d } else { 0 };
        self.vocab_size * d + positions + self.n_layer * (2 * norm + attn + mlp) + norm + head
    }

    /// Checks that the shape is one the decoder can run, so that no later step panics.
    pub fn validate(&self) -> Result<()> {
        let bad = |msg: String| Err(Error::Unsupported(msg));
        for (name, v, max) in [
            ("block count", self.n_layer, 1 << 10),
            ("embedding width", self.d_model, 1 << 16),
            ("head count", self.n_head, 1 << 10),
            ("KV head count", self.n_kv_head, 1 << 10),
            ("feed-forward width", self.d_ff, 1 << 18),
            ("vocabulary size", self.vocab_size, 1 << 22),
            ("context length", self.context_length, 1 << 24),
        ] {
            if v == 0 || v > max {
                return bad(format!("{name} {v} is outside 1..={max}"));
            }
        }
        if self.d_model % self.n_head != 0 {
            return bad(format!("embedding width {} is not divisible by {} heads", self.d_model, self.n_head));
        }
        if self.n_head % self.n_kv_head != 0 {
            return bad(format!("{} heads cannot be grouped over {} KV heads", self.n_head, self.n_kv_head));
        }
        if self.arch.is_gpt2() {
            if self.n_kv_head != self.n_head {
                return bad(format!("GPT-2 with {} KV heads for {} heads", self.n_kv_head, self.n_head));
            }
        } else {
            if self.head_dim() % 2 != 0 {
                return bad(format!("head width {} is odd; RoPE rotates pairs", self.head_dim()));
            }
            if !(self.rope_theta.is_finite() && self.rope_theta > 1.0) {
                return bad(format!("RoPE base {} is not a finite number above 1", self.rope_theta));
            }
        }
        if !(self.norm_eps.is_finite() && self.norm_eps > 0.0) {
            let norm = if self.arch.is_gpt2() { "LayerNorm" } else { "RMSNorm" };
            return bad(format!("{norm} epsilon {} must be positive", self.norm_eps));
        }
        Ok(())
    }

    /// A norm of this model's kind.
    fn init_norm(&self, device: &Device) -> Norm {
        if self.arch.is_gpt2() {
            Norm::Layer(LayerNormConfig::new(self.d_model).with_epsilon(self.norm_eps).init(device))
        } else {
            Norm::Rms(RmsNormConfig::new(self.d_model).with_epsilon(self.norm_eps).init(device))
        }
    }

    /// A model with freshly initialised (random) weights, for tests and shape checks.
    pub fn init(&self, max_positions: usize, device: &Device) -> Decoder {
        let (d, hd, gpt2) = (self.d_model, self.head_dim(), self.arch.is_gpt2());
        let linear = |i, o, bias| Proj::Dense(LinearConfig::new(i, o).with_bias(bias).init(device));
        let layers = (0..self.n_layer)
            .map(|_| Block {
                attn_norm: self.init_norm(device),
                attn: Attention {
                    wq: linear(d, self.n_head * hd, self.arch.qkv_bias()),
                    wk: linear(d, self.n_kv_head * hd, self.arch.qkv_bias()),
                    wv: linear(d, self.n_kv_head * hd, self.arch.qkv_bias()),
                    wo: linear(self.n_head * hd, d, gpt2),
                    n_head: self.n_head,
                    n_kv_head: self.n_kv_head,
                    head_dim: hd,
                },
                ffn_norm: self.init_norm(device),
                mlp: Mlp {
                    gate: (!gpt2).then(|| linear(d, self.d_ff, false)),
                    up: linear(d, self.d_ff, gpt2),
                    down: linear(self.d_ff, d, gpt2),
                },
            })
            .collect();
        Decoder::new(
            self,
            Embed::Dense(EmbeddingConfig::new(self.vocab_size, d).init(device)),
            gpt2.then(|| EmbeddingConfig::new(self.context_length, d).init(device)),
            layers,
            self.init_norm(device),
            (!self.tied_embeddings).then(|| linear(d, self.vocab_size, false)),
            max_positions,
            device,
        )
    }
}

/// RMSNorm (Llama, Qwen2) or LayerNorm with a bias (GPT-2).
#[derive(Module, Debug)]
pub enum Norm {
    /// `x / rms(x) · γ`.
    Rms(RmsNorm),
    /// `(x − mean) / std · γ + β`.
    Layer(LayerNorm),
}

impl Norm {
    /// Normalises the last axis.
    pub fn forward<const D: usize>(&self, x: Tensor<D>) -> Tensor<D> {
        match self {
            Norm::Rms(n) if gpu::is_cube(&x.device()) => gpu::rms_norm(x, &n.gamma.val(), n.epsilon),
            Norm::Rms(n) => n.forward(x),
            Norm::Layer(n) => n.forward(x),
        }
    }
}

/// Rotary position embedding on interleaved pairs `(x[2i], x[2i+1])`.
///
/// This is llama.cpp's "normal" RoPE, the convention of GGUF `llama` files: the converter
/// (convert_hf_to_gguf.py) permuted the rows of Q and K from Hugging Face's half-split
/// ("rotate_half") order, so those weights are used as stored. Sources still in half-split order
/// (Hugging Face Llama and Qwen2 weights, GGUF `qwen2`, which llama.cpp runs as "NeoX" RoPE) are
/// permuted into this order once, at load (`weights::rope_interleave`). Proven by the golden tests.
#[derive(Debug, Clone)]
pub struct Rope {
    /// cos(pos · θ^(-2i/d)) for every position. // [max_pos, head_dim/2]
    cos: Tensor<2>,
    /// sin of the same angles. // [max_pos, head_dim/2]
    sin: Tensor<2>,
}

impl Rope {
    /// Tables for `max_pos` positions ([`rope_tables`]).
    pub fn new(head_dim: usize, max_pos: usize, theta: f64, device: &Device) -> Self {
        let half = head_dim / 2;
        let (cos, sin) = rope_tables(head_dim, max_pos, theta);
        Rope {
            cos: Tensor::from_data(TensorData::new(cos, [max_pos, half]), device),
            sin: Tensor::from_data(TensorData::new(sin, [max_pos, half]), device),
        }
    }

    /// Positions the tables cover.
    pub fn max_pos(&self) -> usize {
        self.cos.dims()[0]
    }

    /// Rotates `x` whose first token sits at position `pos0`.
    pub fn apply(&self, x: Tensor<4>, pos0: usize) -> Tensor<4> {
        if gpu::is_cube(&x.device()) {
            return gpu::rope(x, &self.cos, &self.sin, pos0);
        }
        let [b, t, h, hd] = x.dims(); // [batch, seq, heads, head_dim]
        let half = hd / 2;
        let cos = self.cos.clone().slice([pos0..pos0 + t, 0..half]).reshape([1, t, 1, half, 1]);
        let sin = self.sin.clone().slice([pos0..pos0 + t, 0..half]).reshape([1, t, 1, half, 1]);
        let x = x.reshape([b, t, h, half, 2]); // pairs on the last axis
        let x0 = x.clone().slice([0..b, 0..t, 0..h, 0..half, 0..1]);
        let x1 = x.slice([0..b, 0..t, 0..h, 0..half, 1..2]);
        let r0 = x0.clone() * cos.clone() - x1.clone() * sin.clone();
        let r1 = x0 * sin + x1 * cos;
        Tensor::cat(vec![r0, r1], 4).reshape([b, t, h, hd])
    }
}

/// RoPE's cos and sin of `pos · θ^(-2i/head_dim)`, `[max_pos, head_dim/2]` each. Angles are
/// computed in f64, then rounded, as the reference does. Shared by both decoders.
pub fn rope_tables(head_dim: usize, max_pos: usize, theta: f64) -> (Vec<f32>, Vec<f32>) {
    let half = head_dim / 2;
    let mut cos = Vec::with_capacity(max_pos * half);
    let mut sin = Vec::with_capacity(max_pos * half);
    for p in 0..max_pos {
        for i in 0..half {
            let a = p as f64 * theta.powf(-((2 * i) as f64) / head_dim as f64);
            cos.push(a.cos() as f32);
            sin.push(a.sin() as f32);
        }
    }
    (cos, sin)
}

/// Keys and values of every block for the positions seen so far, preallocated to a capacity.
/// The next token's position is always `len()`.
#[derive(Debug, Clone)]
pub struct KvCache {
    /// Per block. // [batch, kv_heads, capacity, head_dim]
    k: Vec<Tensor<4>>,
    /// Per block. // [batch, kv_heads, capacity, head_dim]
    v: Vec<Tensor<4>>,
    len: usize,
    capacity: usize,
}

impl KvCache {
    /// A cache for `capacity` positions of a model of shape `config`.
    pub fn new(config: &DecoderConfig, capacity: usize, device: &Device) -> Self {
        let shape = [1, config.n_kv_head, capacity, config.head_dim()];
        let zeros = || (0..config.n_layer).map(|_| Tensor::zeros(shape, device)).collect();
        KvCache { k: zeros(), v: zeros(), len: 0, capacity }
    }
    /// Positions filled.
    pub fn len(&self) -> usize {
        self.len
    }
    /// Whether nothing is cached.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
    /// Positions the cache can hold.
    pub fn capacity(&self) -> usize {
        self.capacity
    }
    /// Forgets every position (a new conversation). The buffers are kept.
    pub fn reset(&mut self) {
        self.len = 0;
    }
    /// Keeps the first `len` positions: later ones are overwritten by the next forward.
    pub fn truncate(&mut self, len: usize) {
        self.len = self.len.min(len);
    }
}

/// A projection `x·Wᵀ + b`: burn's `Linear` over f32 weights, or GGUF blocks kept on the GPU.
#[derive(Module, Debug)]
pub enum Proj {
    /// f32 weights `[in, out]`, any backend.
    Dense(Linear),
    /// Q4_0/Q4_1/Q8_0 blocks on a wgpu device ([`QWeight`]), with an f32 bias.
    Quant(QProj),
}

impl Proj {
    /// `[..., in]` → `[..., out]`.
    pub fn forward<const D: usize>(&self, x: Tensor<D>) -> Tensor<D> {
        match self {
            Proj::Dense(l) => l.forward(x),
            Proj::Quant(q) => q.forward(x),
        }
    }
}

/// [`Proj::Quant`]: the weight in its block format (not a burn parameter) and an f32 bias.
#[derive(Module, Debug)]
pub struct QProj {
    /// `[out, in]` in blocks.
    #[module(skip)]
    pub weight: QWeight,
    /// `[out]`.
    pub bias: Option<Tensor<1>>,
}

impl QProj {
    /// `[..., in]` → `[..., out]`: the leading axes flattened into tokens.
    pub fn forward<const D: usize>(&self, x: Tensor<D>) -> Tensor<D> {
        let dims = x.dims();
        let tokens = dims[..D - 1].iter().product();
        let y = self.weight.matmul(x.reshape([tokens, self.weight.cols()])); // [tokens, out]
        let y = match &self.bias {
            Some(b) => y + b.clone().unsqueeze(),
            None => y,
        };
        let mut out = dims;
        out[D - 1] = self.weight.rows();
        y.reshape(out)
    }
}

/// The token embedding: burn's f32 `Embedding`, or GGUF blocks on the GPU. A tied output head
/// multiplies by the same table.
#[derive(Module, Debug)]
pub enum Embed {
    /// f32 `[vocab, d_model]`.
    Dense(Embedding),
    /// Blocks on a wgpu device, rows dequantised as they are looked up.
    Quant(QEmbed),
}

/// [`Embed::Quant`].
#[derive(Module, Debug)]
pub struct QEmbed {
    /// `[vocab, d_model]` in blocks.
    #[module(skip)]
    pub weight: QWeight,
}

impl Embed {
    /// Rows of `tokens`: `[batch, seq]` → `[batch, seq, d_model]`.
    pub fn forward(&self, tokens: Tensor<2, Int>) -> Tensor<3> {
        match self {
            Embed::Dense(e) => e.forward(tokens),
            Embed::Quant(q) => {
                let [b, t] = tokens.dims();
                q.weight.rows_of(tokens.reshape([b * t])).reshape([b, t, q.weight.cols()])
            }
        }
    }

    /// The tied head: `[batch, d_model]` → `[batch, vocab]`.
    pub fn head(&self, x: Tensor<2>) -> Tensor<2> {
        match self {
            // Multiply the row-major [vocab, d_model] table by the column vector, rather than
            // the row by the table's transposed view, which CPU backends copy (113 MB for
            // SmolLM2) on every token.
            Embed::Dense(e) => e.weight.val().matmul(x.transpose()).transpose(), // [vocab, batch] → [batch, vocab]
            Embed::Quant(q) => q.weight.matmul(x),
        }
    }

    /// Rows of the table.
    pub fn vocab(&self) -> usize {
        match self {
            Embed::Dense(e) => e.weight.dims()[0],
            Embed::Quant(q) => q.weight.rows(),
        }
    }
}

/// The feed-forward network: SwiGLU `down(silu(gate(x)) · up(x))` when it has a gate (Llama,
/// Qwen2), GPT-2's `down(gelu(up(x)))` (`c_fc`, `c_proj`, tanh GELU as HF's `gelu_new`) when not.
#[derive(Module, Debug)]
pub struct Mlp {
    /// Gate projection, `[d_model, d_ff]`; `None` for GPT-2.
    pub gate: Option<Proj>,
    /// Up projection, `[d_model, d_ff]`.
    pub up: Proj,
    /// Down projection, `[d_ff, d_model]`.
    pub down: Proj,
}

impl Mlp {
    /// `[batch, seq, d_model]` → `[batch, seq, d_model]`.
    pub fn forward(&self, x: Tensor<3>) -> Tensor<3> {
        let h = match &self.gate {
            Some(gate) => swiglu(gate.forward(x.clone()), self.up.forward(x)),
            None => activation::gelu_approximate(self.up.forward(x)),
        }; // [batch, seq, d_ff]
        self.down.forward(h)
    }
}

/// `silu(gate) · up`.
pub fn swiglu<const D: usize>(gate: Tensor<D>, up: Tensor<D>) -> Tensor<D> {
    if gpu::is_cube(&gate.device()) {
        return gpu::swiglu(gate, up);
    }
    activation::silu(gate) * up
}

/// Multi-head attention with grouped key/value heads.
#[derive(Module, Debug)]
pub struct Attention {
    /// Query projection, `[d_model, n_head · head_dim]`.
    pub wq: Proj,
    /// Key projection, `[d_model, n_kv_head · head_dim]`.
    pub wk: Proj,
    /// Value projection, `[d_model, n_kv_head · head_dim]`.
    pub wv: Proj,
    /// Output projection, `[n_head · head_dim, d_model]`.
    pub wo: Proj,
    /// Query heads.
    pub n_head: usize,
    /// Key/value heads.
    pub n_kv_head: usize,
    /// Width of a head.
    pub head_dim: usize,
}

impl Attention {
    /// Attends from the `seq` new positions (starting at `pos0`) to every cached position and
    /// to themselves, and writes their keys and values into the cache buffers.
    pub fn forward(
        &self,
        x: Tensor<3>,
        rope: Option<&Rope>,
        mask: Option<&Tensor<5>>,
        cache_k: &mut Tensor<4>,
        cache_v: &mut Tensor<4>,
        pos0: usize,
    ) -> Tensor<3> {
        let [b, t, _] = x.dims(); // [batch, seq, d_model]
        let (nh, nkv, hd) = (self.n_head, self.n_kv_head, self.head_dim);
        let q = self.wq.forward(x.clone()).reshape([b, t, nh, hd]);
        let k = self.wk.forward(x.clone()).reshape([b, t, nkv, hd]);
        let v = self.wv.forward(x).reshape([b, t, nkv, hd]);
        let (q, k) = match rope {
            Some(rope) => (rope.apply(q, pos0), rope.apply(k, pos0)),
            None => (q, k),
        };
        let q = q.swap_dims(1, 2); // [batch, heads, seq, head_dim]
        let k = k.swap_dims(1, 2); // [batch, kv_heads, seq, head_dim]
        let v = v.swap_dims(1, 2); // [batch, kv_heads, seq, head_dim]

        let end = pos0 + t;
        cache_k.inplace(|c| c.slice_assign([0..b, 0..nkv, pos0..end, 0..hd], k));
        cache_v.inplace(|c| c.slice_assign([0..b, 0..nkv, pos0..end, 0..hd], v));
        let k = cache_k.clone().slice([0..b, 0..nkv, 0..end, 0..hd]); // [batch, kv_heads, past+seq, head_dim]
        let v = cache_v.clone().slice([0..b, 0..nkv, 0..end, 0..hd]);
        let o = attend(q, k, v, mask).swap_dims(1, 2).reshape([b, t, nh * hd]); // [batch, seq, heads·head_dim]
        self.wo.forward(o)
    }
}

/// Scaled dot-product attention of `q` over `k`/`v` with fewer key/value heads: consecutive
/// query heads share one KV head (HF's `repeat_kv`, ggml's broadcast), so the query heads are
/// grouped per KV head by a reshape and K/V are never copied.
///
/// `q`: `[batch, heads, seq, head_dim]`; `k`, `v`: `[batch, kv_heads, keys, head_dim]`;
/// `mask`: additive, `[1, 1, 1, seq, keys]`. Returns `[batch, heads, seq, head_dim]`.
pub fn attend(q: Tensor<4>, k: Tensor<4>, v: Tensor<4>, mask: Option<&Tensor<5>>) -> Tensor<4> {
    let [b, nh, t, hd] = q.dims();
    let [_, nkv, s, _] = k.dims();
    let g = nh / nkv;
    let q = q.reshape([b, nkv, g * t, hd]); // [batch, kv_heads, group·seq, head_dim]
    let scores = q.matmul(k.swap_dims(2, 3)).mul_scalar(1.0 / (hd as f64).sqrt()); // [batch, kv_heads, group·seq, keys]
    let scores = match mask {
        Some(m) => (scores.reshape([b, nkv, g, t, s]) + m.clone()).reshape([b, nkv, g * t, s]),
        None => scores,
    };
    let probs = activation::softmax(scores, 3);
    probs.matmul(v).reshape([b, nh, t, hd])
}

/// The additive causal mask for `seq` new positions after `past` cached ones, or `None` when a
/// single new token may see everything. // [1, 1, 1, seq, past+seq]
pub fn causal_mask(past: usize, seq: usize, device: &Device) -> Option<Tensor<5>> {
    if seq <= 1 {
        return None;
    }
    let keys = past + seq;
    // A large finite value rather than -inf: exp() gives exactly 0 either way, and no backend
    // can turn inf - inf into NaN.
    let data = (0..seq)
        .flat_map(|i| (0..keys).map(move |j| if j <= past + i { 0.0f32 } else { -1e30 }))
        .collect::<Vec<_>>();
    Some(Tensor::from_data(TensorData::new(data, [1, 1, 1, seq, keys]), device))
}

/// One decoder block: pre-norm attention and a pre-norm feed-forward network, each with a
/// residual (the same order in all three families).
#[derive(Module, Debug)]
pub struct Block {
    /// Norm before attention.
    pub attn_norm: Norm,
    /// Self-attention.
    pub attn: Attention,
    /// Norm before the feed-forward network.
    pub ffn_norm: Norm,
    /// Feed-forward network.
    pub mlp: Mlp,
}

/// The decoder.
#[derive(Module, Debug)]
pub struct Decoder {
    /// Token embedding, `[vocab, d_model]`.
    pub embed: Embed,
    /// Learned absolute positions, `[context, d_model]` (GPT-2); `None` with RoPE.
    pub positions: Option<Embedding>,
    /// Decoder blocks.
    pub layers: Vec<Block>,
    /// Final norm.
    pub norm: Norm,
    /// Output head `[d_model, vocab]`; `None` when tied to the embedding.
    pub output: Option<Proj>,
    /// RoPE tables (constants, not parameters); `None` with learned positions.
    #[module(skip)]
    pub rope: Option<Rope>,
    /// Positions the model can take: the RoPE tables' or the position embedding's length.
    #[module(skip)]
    pub max_pos: usize,
}

impl Decoder {
    /// Assembles a decoder of shape `config` from its parts, with RoPE tables for
    /// `max_positions` positions unless the model has learned ones.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        config: &DecoderConfig,
        embed: Embed,
        positions: Option<Embedding>,
        layers: Vec<Block>,
        norm: Norm,
        output: Option<Proj>,
        max_positions: usize,
        device: &Device,
    ) -> Self {
        let (rope, max_pos) = match &positions {
            Some(p) => (None, p.weight.dims()[0].min(max_positions)),
            None => (Some(Rope::new(config.head_dim(), max_positions, config.rope_theta, device)), max_positions),
        };
        Decoder { embed, positions, layers, norm, output, rope, max_pos }
    }

    /// Runs `tokens` (the positions after those in `cache`) through the decoder, appends their
    /// keys and values to the cache, and returns the logits of the last position only.
    ///
    /// `tokens`: `[1, seq]`. Returns `[1, vocab]`.
    pub fn forward(&self, tokens: Tensor<2, Int>, cache: &mut KvCache) -> Result<Tensor<2>> {
        let [_, seq] = tokens.dims();
        let pos0 = cache.len();
        let needed = pos0 + seq;
        let limit = cache.capacity().min(self.max_pos);
        if seq == 0 || needed > limit {
            return Err(Error::ContextFull { needed, limit });
        }
        let device = tokens.device();
        let mask = causal_mask(pos0, seq, &device);
        let mut x = self.embed.forward(tokens); // [1, seq, d_model]
        if let Some(positions) = &self.positions {
            let at = Tensor::<1, Int>::arange(pos0 as i64..needed as i64, &device).reshape([1, seq]);
            x = x + positions.forward(at); // [1, seq, d_model]
        }
        for (i, block) in self.layers.iter().enumerate() {
            let h = block.attn.forward(
                block.attn_norm.forward(x.clone()),
                self.rope.as_ref(),
                mask.as_ref(),
                &mut cache.k[i],
                &mut cache.v[i],
                pos0,
            );
            x = x + h;
            x = x.clone() + block.mlp.forward(block.ffn_norm.forward(x));
        }
        cache.len = needed;
        let [b, _, d] = x.dims();
        // The norm is per position, so only the last position needs it.
        let last = self.norm.forward(x.slice([0..b, seq - 1..seq, 0..d]).reshape([b, d])); // [1, d_model]
        Ok(match &self.output {
            Some(head) => head.forward(last),
            None => self.embed.head(last),
        }) // [1, vocab]
    }
}
