//! The decoder's shape and what each family is made of, read from a file's metadata (GGUF) or
//! `config.json` (Hugging Face): one mapping per format and family.

use burn::config::Config;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::gguf::Metadata;
use crate::safetensors::HfConfig;

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
    /// Qwen3: Llama with a per-head RMSNorm on queries and keys (QK-norm) and a head width of
    /// its own.
    Qwen3,
    /// Gemma 3 (text): embeddings scaled by √width, QK-norm, norms before and after attention
    /// and the MLP, a GELU (tanh) gated MLP, and local sliding-window layers between global ones,
    /// each kind with its own RoPE base.
    Gemma3,
    /// SmolLM3: Llama with no positional encoding (NoPE) in every fourth block.
    Smollm3,
    /// Phi-3 and Phi-4-mini: Llama with q, k and v stored as one projection and gate and up as
    /// another, LongRoPE (per-frequency factors for short and long contexts, and an attention
    /// factor), and RoPE over part of each head (Phi-4-mini: 96 of 128 dims).
    Phi3,
}

impl Arch {
    /// The family a GGUF `general.architecture` or HF `model_type` names.
    pub fn parse(name: &str) -> Option<Self> {
        match name {
            "llama" => Some(Arch::Llama),
            "qwen2" => Some(Arch::Qwen2),
            "gpt2" => Some(Arch::Gpt2),
            "qwen3" => Some(Arch::Qwen3),
            // `gemma3_text` is the text-only model's `config.json` (270M, 1B).
            "gemma3" | "gemma3_text" => Some(Arch::Gemma3),
            "smollm3" => Some(Arch::Smollm3),
            "phi3" => Some(Arch::Phi3),
            _ => None,
        }
    }
    /// Its name in GGUF and in `config.json`.
    pub fn name(self) -> &'static str {
        match self {
            Arch::Llama => "llama",
            Arch::Qwen2 => "qwen2",
            Arch::Gpt2 => "gpt2",
            Arch::Qwen3 => "qwen3",
            Arch::Gemma3 => "gemma3",
            Arch::Smollm3 => "smollm3",
            Arch::Phi3 => "phi3",
        }
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
    /// Width of an attention head where it is not `d_model / n_head` (Qwen3, Gemma 3: GGUF
    /// `attention.key_length`, HF `head_dim`).
    #[config(default = "None")]
    pub head_width: Option<usize>,
    /// The attention scores' scale where it is not `1/√head_dim` (Gemma 3's
    /// `query_pre_attn_scalar^-½`).
    #[config(default = "None")]
    pub attn_scale: Option<f64>,
    /// Keys a local (sliding-window) layer sees: the query's own position and the
    /// `sliding_window - 1` before it. `None`: every layer is global.
    #[config(default = "None")]
    pub sliding_window: Option<usize>,
    /// With a window, every `swa_pattern`-th block is global and the others local (Gemma 3: 6,
    /// so blocks 5, 11, 17, … are global).
    #[config(default = 6)]
    pub swa_pattern: usize,
    /// RoPE base of the local layers (Gemma 3: 10000, where the global ones use `rope_theta`).
    #[config(default = "None")]
    pub rope_theta_local: Option<f64>,
    /// With NoPE layers, every `nope_interval`-th block (the 4th, 8th, …) runs without RoPE
    /// (SmolLM3: llama.cpp fixes 4; HF `no_rope_layer_interval` or `no_rope_layers`).
    #[config(default = "None")]
    pub nope_interval: Option<usize>,
    /// Llama 3's RoPE scaling, as a Hugging Face `config.json` gives it (a GGUF file holds the
    /// frequencies' divisors it implies as the tensor `rope_freqs.weight`).
    #[config(default = "None")]
    pub rope_llama3: Option<Llama3Rope>,
    /// Dims of each head that RoPE rotates, where fewer than all (Phi-4-mini: 96 of 128; GGUF
    /// `rope.dimension_count`, HF `partial_rotary_factor`): the first ones, the rest pass through.
    #[config(default = "None")]
    pub rope_dims: Option<usize>,
    /// LongRoPE (Phi-3): the frequencies' divisors for a short and a long context, and the
    /// factor on cos and sin.
    #[config(default = "None")]
    pub longrope: Option<LongRope>,
}

/// LongRoPE (`rope_type: longrope`, Phi-3): each frequency divided by a factor, from the short
/// list for a context up to the one first trained on and from the long list past it, and cos
/// and sin multiplied by an attention factor. Which list is fixed when the model loads, by the
/// context asked for (llama.cpp's rule; transformers switches when a sequence grows past it,
/// which gives the same numbers within the context loaded).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LongRope {
    /// The context first trained on (`original_max_position_embeddings`).
    pub original_context: usize,
    /// What multiplies cos and sin: `√(1 + ln s / ln original)` for `s` = context / original,
    /// unless the files give it.
    pub attn_factor: f64,
    /// The short and long divisors, `[rotary dims / 2]` each, where `config.json` gives them
    /// (a GGUF file holds them as `rope_factors_short.weight` and `rope_factors_long.weight`).
    pub factors: Option<(Vec<f32>, Vec<f32>)>,
}

impl LongRope {
    /// The attention factor transformers and llama.cpp's converter derive from the scale `s` (the
    /// context over the one first trained on, or `config.json`'s `factor`).
    pub fn default_attn_factor(s: f64, original: usize) -> f64 {
        if s <= 1.0 {
            1.0
        } else {
            (1.0 + s.ln() / (original as f64).ln()).sqrt()
        }
    }

    /// Whether a context of `positions` uses the long factors.
    pub fn long(&self, positions: usize) -> bool {
        positions > self.original_context
    }
}

/// Llama 3's RoPE scaling (`rope_type: llama3`): low frequencies divided by `factor`, high ones
/// kept, a smooth blend between.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Llama3Rope {
    /// The divisor of the lowest frequencies.
    pub factor: f64,
    /// Wavelengths above `original_context / low_freq_factor` are divided by `factor`.
    pub low_freq_factor: f64,
    /// Wavelengths below `original_context / high_freq_factor` are kept.
    pub high_freq_factor: f64,
    /// The context the model was first trained with.
    pub original_context: f64,
}

impl Llama3Rope {
    /// Each frequency's divisor, `[head_dim/2]`: what llama.cpp's converter writes as
    /// `rope_freqs.weight` (conversion/llama.py, `generate_extra_tensors`), and what
    /// transformers' `_compute_llama3_parameters` divides by.
    pub fn factors(&self, head_dim: usize, theta: f64) -> Vec<f32> {
        let (low_wavelen, high_wavelen) = (self.original_context / self.low_freq_factor, self.original_context / self.high_freq_factor);
        (0..head_dim / 2)
            .map(|i| {
                let freq = theta.powf(-((2 * i) as f64) / head_dim as f64);
                let wavelen = 2.0 * std::f64::consts::PI / freq;
                let f = if wavelen < high_wavelen {
                    1.0
                } else if wavelen > low_wavelen {
                    self.factor
                } else {
                    let smooth = (self.original_context / wavelen - self.low_freq_factor) / (self.high_freq_factor - self.low_freq_factor);
                    1.0 / ((1.0 - smooth) / self.factor + smooth)
                };
                f as f32
            })
            .collect()
    }
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
        self.head_width.unwrap_or(self.d_model / self.n_head.max(1))
    }

    /// Dims of each head that RoPE rotates.
    pub fn rot_dims(&self) -> usize {
        self.rope_dims.unwrap_or(self.head_dim())
    }

    /// The attention's shape (a global layer's: [`Self::window`] gives a local one's window).
    pub fn heads(&self) -> super::decoder::Heads {
        let head_dim = self.head_dim();
        // In f32, as the CPU executor always computed it.
        let scale = self.attn_scale.map_or(1.0 / (head_dim as f32).sqrt(), |s| s as f32);
        super::decoder::Heads { n_head: self.n_head, n_kv_head: self.n_kv_head, head_dim, scale, window: None }
    }

    /// Whether block `l` rotates its queries and keys (all but a NoPE model's every
    /// `nope_interval`-th).
    pub fn uses_rope(&self, l: usize) -> bool {
        self.nope_interval.is_none_or(|n| !every_nth(l, n))
    }

    /// The window of block `l`: `Some` for a local (sliding-window) block.
    pub fn window(&self, l: usize) -> Option<usize> {
        self.sliding_window.filter(|_| !every_nth(l, self.swa_pattern))
    }

    /// Parameters of a model of this shape.
    pub fn n_params(&self) -> usize {
        let (d, q, kv, ff) = (self.d_model, self.n_head * self.head_dim(), self.n_kv_head * self.head_dim(), self.d_ff);
        let f = self.arch.family();
        let norm = if f.layer_norm { 2 * d } else { d };
        let attn = d * q + 2 * d * kv + q * d + if f.qkv_bias { q + 2 * kv } else { 0 } + if f.out_bias { d } else { 0 };
        let qk_norm = if f.qk_norm { 2 * self.head_dim() } else { 0 };
        let norms = if f.sandwich_norms { 4 * norm } else { 2 * norm };
        let mlp = if f.gated { 3 * d * ff } else { 2 * d * ff } + if f.out_bias { ff + d } else { 0 };
        let head = if self.tied_embeddings { 0 } else { self.vocab_size * d };
        let positions = if f.learned_positions { self.context_length * d } else { 0 };
        self.vocab_size * d + positions + self.n_layer * (norms + attn + qk_norm + mlp) + norm + head
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
        if self.head_width.is_none() && !self.d_model.is_multiple_of(self.n_head) {
            return bad(format!("embedding width {} is not divisible by {} heads", self.d_model, self.n_head));
        }
        if !(1..=1 << 12).contains(&self.head_dim()) {
            return bad(format!("head width {} is outside 1..=4096", self.head_dim()));
        }
        if self.sliding_window == Some(0) {
            return bad("a sliding window of 0 positions".into());
        }
        for (what, v) in [("attention scale", self.attn_scale), ("local RoPE base", self.rope_theta_local)] {
            if v.is_some_and(|v| !(v.is_finite() && v > 0.0)) {
                return bad(format!("{what} {v:?} is not a positive number"));
            }
        }
        if !self.n_head.is_multiple_of(self.n_kv_head) {
            return bad(format!("{} heads cannot be grouped over {} KV heads", self.n_head, self.n_kv_head));
        }
        let f = self.arch.family();
        if self.arch == Arch::Gpt2 && self.n_kv_head != self.n_head {
            return bad(format!("GPT-2 with {} KV heads for {} heads", self.n_kv_head, self.n_head));
        }
        if !f.learned_positions {
            if !self.head_dim().is_multiple_of(2) {
                return bad(format!("head width {} is odd; RoPE rotates pairs", self.head_dim()));
            }
            if self.rope_dims.is_some_and(|r| r == 0 || r % 2 != 0 || r > self.head_dim()) {
                return bad(format!("RoPE over {:?} of {} dims per head (an even number, at most all)", self.rope_dims, self.head_dim()));
            }
            if let Some(lr) = &self.longrope {
                let n = self.rot_dims() / 2;
                let fine = |v: &[f32]| v.len() == n && v.iter().all(|f| f.is_finite() && *f > 0.0);
                if lr.original_context == 0
                    || !(lr.attn_factor.is_finite() && lr.attn_factor > 0.0)
                    || lr.factors.as_ref().is_some_and(|(s, l)| !fine(s) || !fine(l))
                {
                    return bad(format!(
                        "LongRoPE with original context {}, attention factor {} and factors of {n} positive numbers expected",
                        lr.original_context, lr.attn_factor
                    ));
                }
            }
            if !(self.rope_theta.is_finite() && self.rope_theta > 1.0) {
                return bad(format!("RoPE base {} is not a finite number above 1", self.rope_theta));
            }
        }
        if !(self.norm_eps.is_finite() && self.norm_eps > 0.0) {
            let norm = if f.layer_norm { "LayerNorm" } else { "RMSNorm" };
            return bad(format!("{norm} epsilon {} must be positive", self.norm_eps));
        }
        Ok(())
    }
}

/// The activation of the feed-forward network.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Activation {
    /// `x · sigmoid(x)` (SwiGLU's gate).
    Silu,
    /// The tanh approximation of GELU, `0.5·x·(1 + tanh(√(2/π)·(x + 0.044715·x³)))` (HF's
    /// `gelu_new`, `gelu_pytorch_tanh`).
    GeluTanh,
}

/// What a family's decoder is made of: the one place where the families differ. The model
/// description (`model::decoder`), the weights walk and the parameter count read it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Family {
    /// LayerNorm with a bias instead of RMSNorm.
    pub layer_norm: bool,
    /// Learned absolute positions instead of RoPE.
    pub learned_positions: bool,
    /// Biases on the q, k and v projections.
    pub qkv_bias: bool,
    /// Biases on the attention output and the feed-forward projections.
    pub out_bias: bool,
    /// A gated feed-forward network, `down(act(gate(x)) · up(x))`, rather than `down(act(up(x)))`.
    pub gated: bool,
    /// The feed-forward activation.
    pub act: Activation,
    /// Its files store q, k and v as one projection, split at load.
    pub fused_qkv: bool,
    /// Its files store the gate and up projections as one (gate rows, then up rows), split at load.
    pub fused_gate_up: bool,
    /// An RMSNorm over each head of the queries and the keys, before RoPE.
    pub qk_norm: bool,
    /// A norm after the attention and after the MLP too, before each residual add.
    pub sandwich_norms: bool,
    /// The token embeddings are multiplied by √d_model (not the tied head's).
    pub scaled_embed: bool,
    /// Its Hugging Face norms store `w` and scale by `1 + w` (Gemma); its GGUF files store
    /// `1 + w` already, as llama.cpp's converter adds the one.
    pub hf_norm_plus_one: bool,
    /// Its GGUF files keep Hugging Face's half-split RoPE order (llama.cpp runs it as NeoX RoPE)
    /// rather than the interleaved order the `llama` converter permutes Q and K into.
    pub gguf_half_split: bool,
}

/// Llama: RMSNorm, RoPE, SwiGLU, no biases. The others are written as their differences from it.
const LLAMA: Family = Family {
    layer_norm: false,
    learned_positions: false,
    qkv_bias: false,
    out_bias: false,
    gated: true,
    act: Activation::Silu,
    fused_qkv: false,
    fused_gate_up: false,
    qk_norm: false,
    sandwich_norms: false,
    scaled_embed: false,
    hf_norm_plus_one: false,
    gguf_half_split: false,
};

impl Arch {
    /// What this family's decoder is made of.
    pub const fn family(self) -> Family {
        match self {
            // SmolLM3's NoPE blocks are its shape (`DecoderConfig::nope_interval`), not new parts.
            Arch::Llama | Arch::Smollm3 => LLAMA,
            Arch::Qwen2 => Family { qkv_bias: true, gguf_half_split: true, ..LLAMA },
            Arch::Qwen3 => Family { qk_norm: true, gguf_half_split: true, ..LLAMA },
            Arch::Phi3 => Family { fused_qkv: true, fused_gate_up: true, gguf_half_split: true, ..LLAMA },
            Arch::Gemma3 => Family {
                act: Activation::GeluTanh,
                qk_norm: true,
                sandwich_norms: true,
                scaled_embed: true,
                hf_norm_plus_one: true,
                gguf_half_split: true,
                ..LLAMA
            },
            Arch::Gpt2 => Family {
                layer_norm: true,
                learned_positions: true,
                qkv_bias: true,
                out_bias: true,
                gated: false,
                act: Activation::GeluTanh,
                fused_qkv: true,
                ..LLAMA
            },
        }
    }
}

fn unsupported_arch(name: &str) -> Error {
    let supported = "llama (SmolLM2, Llama), qwen2, qwen3, gemma3, smollm3, phi3 and gpt2 models";
    Error::UnsupportedArch { name: name.to_string(), supported }
}

impl DecoderConfig {
    /// Reads the decoder's shape from GGUF metadata (`llama.*`, `qwen2.*` or `gpt2.*` keys) and
    /// checks it.
    pub fn from_gguf(meta: &Metadata) -> Result<Self> {
        let name: String = meta.req("general.architecture")?;
        let arch = Arch::parse(&name).ok_or_else(|| unsupported_arch(&name))?;
        let key = |k: &str| format!("{name}.{k}");
        let n_head: usize = meta.req(&key("attention.head_count"))?;
        let vocab = match meta.opt::<usize>(&key("vocab_size"))? {
            Some(v) => v,
            None => meta.req::<Vec<String>>("tokenizer.ggml.tokens")?.len(),
        };
        let eps = match arch {
            Arch::Gpt2 => meta.req::<f32>(&key("attention.layer_norm_epsilon"))?,
            _ => meta.req::<f32>(&key("attention.layer_norm_rms_epsilon"))?,
        };
        let config = DecoderConfig::new(
            meta.req(&key("block_count"))?,
            meta.req(&key("embedding_length"))?,
            n_head,
            meta.opt(&key("attention.head_count_kv"))?.unwrap_or(n_head),
            meta.req(&key("feed_forward_length"))?,
            vocab,
            meta.req(&key("context_length"))?,
        )
        .with_arch(arch)
        .with_rope_theta(meta.opt::<f32>(&key("rope.freq_base"))?.map_or(10000.0, f64::from))
        .with_norm_eps(f64::from(eps));
        let config = config.with_gguf_heads(meta, &key)?;
        let config = match arch {
            Arch::Gemma3 => config.with_gemma3_gguf(meta, &key)?,
            // llama.cpp fixes SmolLM3's NoPE step at 4 (no metadata key says it).
            Arch::Smollm3 => config.with_nope_interval(Some(4)),
            Arch::Phi3 => config.with_phi3_gguf(meta, &key)?,
            _ => config,
        };
        if let Some(n_rot) = meta.opt::<usize>(&key("rope.dimension_count"))? {
            if arch != Arch::Gpt2 && arch != Arch::Phi3 && n_rot != config.head_dim() {
                return Err(Error::Unsupported(format!("partial RoPE ({n_rot} of {} dims per head) in {name}", config.head_dim())));
            }
        }
        if let Some(kind) = meta.opt::<String>(&key("rope.scaling.type"))? {
            if kind != "none" && !(arch == Arch::Phi3 && matches!(kind.as_str(), "longrope" | "su")) {
                return Err(Error::Unsupported(format!("RoPE scaling `{kind}`")));
            }
        }
        config.validate()?;
        Ok(config)
    }

    /// Phi-3's rotary dims (`rope.dimension_count`) and LongRoPE where the file has its context
    /// first trained on (`rope.scaling.original_context_length`); the factors are tensors. Its
    /// `attention.sliding_window` is not applied, as llama.cpp does not (Phi-3.5's 262144 is
    /// past any context; Phi-3-mini-4k's 2047 differs from transformers past position 2047).
    fn with_phi3_gguf(self, meta: &Metadata, key: &dyn Fn(&str) -> String) -> Result<Self> {
        let n_rot = meta.opt::<usize>(&key("rope.dimension_count"))?.filter(|&r| r != self.head_dim());
        let longrope = match meta.opt::<usize>(&key("rope.scaling.original_context_length"))? {
            Some(orig) => {
                let attn_factor = match meta.opt::<f32>(&key("rope.scaling.attn_factor"))? {
                    Some(f) => f64::from(f),
                    None => LongRope::default_attn_factor(self.context_length as f64 / orig as f64, orig),
                };
                Some(LongRope { original_context: orig, attn_factor, factors: None })
            }
            None => None,
        };
        Ok(self.with_rope_dims(n_rot).with_longrope(longrope))
    }

    /// The head width from `attention.key_length` where it differs from `d_model / n_head`
    /// (llama.cpp's rule); values must be as wide as keys.
    fn with_gguf_heads(self, meta: &Metadata, key: &dyn Fn(&str) -> String) -> Result<Self> {
        let Some(k) = meta.opt::<usize>(&key("attention.key_length"))? else {
            return Ok(self);
        };
        if let Some(v) = meta.opt::<usize>(&key("attention.value_length"))?.filter(|&v| v != k) {
            return Err(Error::Unsupported(format!("values {v} wide for keys {k} wide")));
        }
        let even = self.n_head > 0 && self.d_model.is_multiple_of(self.n_head) && self.d_model / self.n_head == k;
        Ok(if even { self } else { self.with_head_width(Some(k)) })
    }

    /// Gemma 3's local layers, as llama.cpp reads them: a window from
    /// `attention.sliding_window` (none when 0 or absent), every sixth block global, and the
    /// local RoPE base from `rope.freq_base_swa` where the file has one, else 10000 (what
    /// llama.cpp fixes for Gemma 3). The attention scale is 1/√head_dim but for the 62-block
    /// 27B, whose `query_pre_attn_scalar` is d_model / n_head (llama.cpp, gemma_pytorch).
    fn with_gemma3_gguf(self, meta: &Metadata, key: &dyn Fn(&str) -> String) -> Result<Self> {
        let window = meta.opt::<usize>(&key("attention.sliding_window"))?.filter(|&w| w > 0);
        let local = meta.opt::<f32>(&key("rope.freq_base_swa"))?.map_or(10000.0, f64::from);
        let scale = (self.n_layer == 62).then(|| 1.0 / ((self.d_model / self.n_head) as f64).sqrt());
        Ok(self.with_sliding_window(window).with_swa_pattern(6).with_rope_theta_local(window.map(|_| local)).with_attn_scale(scale))
    }

    /// Reads the decoder's shape from a Hugging Face `config.json` and checks it. Keys the
    /// decoder does not implement (RoPE scaling, sliding windows, other activations) are
    /// refused by name rather than ignored.
    pub fn from_hf(hf: &HfConfig) -> Result<Self> {
        let name = hf.model_type()?;
        let arch = Arch::parse(&name).ok_or_else(|| unsupported_arch(&name))?;
        let refuse = |what: String| Err(Error::Unsupported(what));
        let config = match arch {
            Arch::Gpt2 => {
                let d: usize = hf.req("n_embd")?;
                let n_head: usize = hf.req("n_head")?;
                let act = hf.opt::<String>("activation_function")?.unwrap_or_else(|| "gelu_new".into());
                if !matches!(act.as_str(), "gelu_new" | "gelu_pytorch_tanh" | "gelu_fast") {
                    return refuse(format!("GPT-2 activation `{act}` (Ember runs the tanh GELU, `gelu_new`)"));
                }
                for flag in ["scale_attn_by_inverse_layer_idx", "reorder_and_upcast_attn"] {
                    if hf.opt::<bool>(flag)?.unwrap_or(false) {
                        return refuse(format!("GPT-2 with `{flag}`"));
                    }
                }
                if !hf.opt::<bool>("scale_attn_weights")?.unwrap_or(true) {
                    return refuse("GPT-2 without `scale_attn_weights`".into());
                }
                DecoderConfig::new(hf.req("n_layer")?, d, n_head, n_head, hf.opt("n_inner")?.unwrap_or(4 * d), hf.req("vocab_size")?, hf.req("n_positions")?)
                    .with_arch(arch)
                    .with_norm_eps(hf.opt("layer_norm_epsilon")?.unwrap_or(1e-5))
                    .with_tied_embeddings(hf.opt("tie_word_embeddings")?.unwrap_or(true))
            }
            Arch::Llama | Arch::Qwen2 | Arch::Qwen3 | Arch::Gemma3 | Arch::Smollm3 | Arch::Phi3 => Self::llama_like_from_hf(hf, arch, &name)?,
        };
        config.validate()?;
        Ok(config)
    }

    /// `config.json` of the RoPE families (Llama, Qwen2, Qwen3, Gemma 3).
    fn llama_like_from_hf(hf: &HfConfig, arch: Arch, name: &str) -> Result<Self> {
        let refuse = |what: String| Err(Error::Unsupported(what));
        let gemma = arch == Arch::Gemma3;
        let n_head: usize = hf.req("num_attention_heads")?;
        let (act_key, want) = if gemma { ("hidden_activation", "gelu_pytorch_tanh") } else { ("hidden_act", "silu") };
        let act = hf.opt::<String>(act_key)?.unwrap_or_else(|| want.into());
        if act != want {
            return refuse(format!("activation `{act}` (Ember runs `{want}` for {name})"));
        }
        let llama3 = if arch == Arch::Llama { hf_llama3_rope(hf)? } else { None };
        let phi3 = arch == Arch::Phi3;
        if let Some(scaling) = hf.opt::<serde_json::Value>("rope_scaling")?.filter(|_| llama3.is_none() && !phi3) {
            return refuse(format!("RoPE scaling {scaling}"));
        }
        let (theta, theta_local) = hf_rope_bases(hf, phi3)?;
        if arch != Arch::Llama && hf.opt::<serde_json::Value>("rope_parameters")?.is_some_and(|r| r.get("rope_type").and_then(|t| t.as_str()) == Some("llama3"))
        {
            return refuse(format!("RoPE scaling `llama3` in {name}"));
        }
        let layer_types = hf.opt::<Vec<String>>("layer_types")?.unwrap_or_default();
        for flag in ["attention_bias", "mlp_bias", "use_sliding_window", "use_bidirectional_attention"] {
            if hf.opt::<bool>(flag)?.unwrap_or(false) {
                return refuse(format!("{name} with `{flag}`"));
            }
        }
        for cap in ["attn_logit_softcapping", "final_logit_softcapping"] {
            if let Some(v) = hf.opt::<f64>(cap)? {
                return refuse(format!("{name} with `{cap}` {v}"));
            }
        }
        let mut config = DecoderConfig::new(
            hf.req("num_hidden_layers")?,
            hf.req("hidden_size")?,
            n_head,
            hf.opt("num_key_value_heads")?.unwrap_or(n_head),
            hf.req("intermediate_size")?,
            hf.req("vocab_size")?,
            hf.req("max_position_embeddings")?,
        )
        .with_arch(arch)
        .with_rope_theta(theta)
        .with_norm_eps(hf.opt("rms_norm_eps")?.unwrap_or(1e-6))
        .with_tied_embeddings(hf.opt("tie_word_embeddings")?.unwrap_or(gemma))
        .with_rope_llama3(llama3);
        if let Some(hd) = hf.opt::<usize>("head_dim")? {
            if n_head == 0 || hd * n_head != config.d_model {
                config = config.with_head_width(Some(hd));
            }
        }
        if !gemma {
            if let Some(t) = layer_types.iter().find(|t| *t != "full_attention") {
                return refuse(format!("`{t}` layers (Ember runs full attention in {name})"));
            }
            return match arch {
                Arch::Smollm3 => Ok(config.with_nope_interval(Some(smollm3_nope_interval(hf)?))),
                Arch::Phi3 => hf_phi3_rope(hf, config),
                _ => Ok(config),
            };
        }
        let pattern = gemma_pattern(hf, &layer_types, config.n_layer)?;
        let window = hf.opt::<usize>("sliding_window")?.filter(|_| pattern != 1);
        if let Some(s) = hf.opt::<f64>("query_pre_attn_scalar")? {
            if s != config.head_dim() as f64 {
                config = config.with_attn_scale(Some(1.0 / s.sqrt()));
            }
        }
        Ok(config.with_sliding_window(window).with_swa_pattern(pattern).with_rope_theta_local(window.map(|_| theta_local)))
    }
}

/// The global and local RoPE bases of a `config.json`. transformers ≥ 5 writes
/// `rope_parameters: {rope_theta, rope_type}`, or for Gemma 3 one such map per layer kind
/// (`full_attention`, `sliding_attention`); older versions a top-level `rope_theta` and Gemma's
/// `rope_local_base_freq`. Only plain RoPE (`default`) is run.
fn hf_rope_bases(hf: &HfConfig, longrope: bool) -> Result<(f64, f64)> {
    use serde_json::{Map, Value};
    let rope = hf.opt::<Map<String, Value>>("rope_parameters")?.unwrap_or_default();
    let theta_of = |m: &Map<String, Value>, what: &str| -> Result<Option<f64>> {
        let known = |t: &str| t == "default" || t == "llama3" || (longrope && t == "longrope");
        if let Some(kind) = m.get("rope_type").and_then(Value::as_str).filter(|&t| !known(t)) {
            return Err(Error::Unsupported(format!("RoPE scaling `{kind}`")));
        }
        m.get("rope_theta").map(|t| t.as_f64().ok_or_else(|| Error::bad_key(&format!("{what}.rope_theta (config.json)"), "expected a number"))).transpose()
    };
    let kind = |k: &str| rope.get(k).and_then(Value::as_object);
    let global = match kind("full_attention") {
        Some(m) => theta_of(m, "rope_parameters.full_attention")?,
        None => theta_of(&rope, "rope_parameters")?,
    };
    let local = kind("sliding_attention").map(|m| theta_of(m, "rope_parameters.sliding_attention")).transpose()?.flatten();
    let global = hf.opt::<f64>("rope_theta")?.or(global).unwrap_or(10000.0);
    let local = hf.opt::<f64>("rope_local_base_freq")?.or(local).unwrap_or(10000.0);
    Ok((global, local))
}

/// Llama 3's RoPE scaling, from `rope_parameters` (transformers ≥ 5) or `rope_scaling` (older),
/// where its `rope_type` is `llama3`; with transformers' defaults for the keys it leaves out.
fn hf_llama3_rope(hf: &HfConfig) -> Result<Option<Llama3Rope>> {
    use serde_json::{Map, Value};
    let Some(m) = hf.opt::<Map<String, Value>>("rope_parameters")?.or(hf.opt::<Map<String, Value>>("rope_scaling")?) else {
        return Ok(None);
    };
    if m.get("rope_type").or(m.get("type")).and_then(Value::as_str) != Some("llama3") {
        return Ok(None);
    }
    let num = |k: &str, default: f64| -> Result<f64> {
        m.get(k).map_or(Ok(default), |v| v.as_f64().ok_or_else(|| Error::bad_key(&format!("rope_parameters.{k} (config.json)"), "expected a number")))
    };
    let r = Llama3Rope {
        factor: num("factor", 8.0)?,
        low_freq_factor: num("low_freq_factor", 1.0)?,
        high_freq_factor: num("high_freq_factor", 4.0)?,
        original_context: num("original_max_position_embeddings", 8192.0)?,
    };
    if !(r.factor > 0.0 && r.low_freq_factor > 0.0 && r.high_freq_factor > r.low_freq_factor && r.original_context > 0.0) {
        return Err(Error::Unsupported(format!("Llama 3 RoPE scaling with {r:?}")));
    }
    Ok(Some(r))
}

/// Phi-3's rotary dims (`partial_rotary_factor`, in `rope_parameters` or at the top level) and
/// LongRoPE, from `rope_parameters` (transformers ≥ 5) or `rope_scaling` (older: `type` `longrope`
/// or `su`), with the context first trained on from either place.
fn hf_phi3_rope(hf: &HfConfig, config: DecoderConfig) -> Result<DecoderConfig> {
    use serde_json::{Map, Value};
    let m = hf.opt::<Map<String, Value>>("rope_parameters")?.or(hf.opt::<Map<String, Value>>("rope_scaling")?).unwrap_or_default();
    let num = |k: &str| -> Result<Option<f64>> {
        m.get(k)
            .filter(|v| !v.is_null())
            .map(|v| v.as_f64().ok_or_else(|| Error::bad_key(&format!("rope_parameters.{k} (config.json)"), "expected a number")))
            .transpose()
    };
    let partial = match num("partial_rotary_factor")? {
        Some(p) => Some(p),
        None => hf.opt::<f64>("partial_rotary_factor")?,
    };
    // transformers: int(head_dim · factor); llama.cpp's converter: int(factor · n_embd) / n_head.
    let rot = partial.map(|p| (config.head_dim() as f64 * p) as usize).filter(|&r| r != config.head_dim());
    let config = config.with_rope_dims(rot);
    let kind = m.get("rope_type").or(m.get("type")).and_then(Value::as_str).unwrap_or("default");
    if kind == "default" {
        return Ok(config);
    }
    if !matches!(kind, "longrope" | "su") {
        return Err(Error::Unsupported(format!("RoPE scaling `{kind}` in phi3")));
    }
    let factors = |k: &str| -> Result<Vec<f32>> {
        let v =
            m.get(k).and_then(Value::as_array).ok_or_else(|| Error::bad_key(&format!("rope_parameters.{k} (config.json)"), "expected a list of numbers"))?;
        v.iter()
            .map(|x| x.as_f64().map(|f| f as f32).ok_or_else(|| Error::bad_key(&format!("rope_parameters.{k} (config.json)"), "expected a list of numbers")))
            .collect()
    };
    let original = match num("original_max_position_embeddings")? {
        Some(o) => o as usize,
        None => hf.req::<usize>("original_max_position_embeddings")?,
    };
    let attn_factor = match (num("attention_factor")?, num("factor")?) {
        (Some(a), _) => a,
        // transformers: a `factor` given stands for context / original.
        (None, Some(f)) => LongRope::default_attn_factor(f, original),
        (None, None) => LongRope::default_attn_factor(config.context_length as f64 / original as f64, original),
    };
    let longrope = LongRope { original_context: original, attn_factor, factors: Some((factors("short_factor")?, factors("long_factor")?)) };
    Ok(config.with_longrope(Some(longrope)))
}

/// SmolLM3's NoPE period: `no_rope_layers` (1 where a block uses RoPE; every `n`-th 0) or
/// `no_rope_layer_interval` (4 by default). Other arrangements are refused: GGUF files cannot
/// say them, and llama.cpp fixes 4.
fn smollm3_nope_interval(hf: &HfConfig) -> Result<usize> {
    let interval = hf.opt::<usize>("no_rope_layer_interval")?.unwrap_or(4);
    let Some(list) = hf.opt::<Vec<u8>>("no_rope_layers")? else {
        return Ok(interval);
    };
    let nope: Vec<bool> = list.iter().map(|&r| r == 0).collect();
    period(&nope).map_err(|(l, n)| {
        let how = if nope[l] { "off" } else { "on" };
        Error::Unsupported(format!("SmolLM3 with RoPE switched {how} in layer {l} (Ember runs every {n}th layer without RoPE)"))
    })
}

/// Whether block `l` is one of every `n`-th (the `n`-th, `2n`-th, …; none when `n` is 0).
fn every_nth(l: usize, n: usize) -> bool {
    (l + 1).is_multiple_of(n)
}

/// The period `n` of per-block flags set on every `n`-th block (one past the list when none is
/// set), or the first block that breaks it, with that period.
fn period(flags: &[bool]) -> std::result::Result<usize, (usize, usize)> {
    let n = flags.iter().position(|&f| f).map_or(flags.len() + 1, |i| i + 1);
    match flags.iter().enumerate().find(|&(l, &f)| f != every_nth(l, n)) {
        Some((l, _)) => Err((l, n)),
        None => Ok(n),
    }
}

/// Gemma 3's period of local and global blocks: `layer_types` (each `pattern`-th block
/// `full_attention`, the others `sliding_attention`) or the older `sliding_window_pattern`.
/// Other arrangements are refused: GGUF files cannot say them, and llama.cpp fixes 6.
fn gemma_pattern(hf: &HfConfig, layer_types: &[String], n_layer: usize) -> Result<usize> {
    if layer_types.is_empty() {
        return Ok(hf.opt("sliding_window_pattern")?.unwrap_or(6));
    }
    let global: Vec<bool> = layer_types.iter().map(|t| t == "full_attention").collect();
    let refuse = |l: usize, n: usize| Error::Unsupported(format!("layer {l} of type `{}` (Ember runs Gemma 3 with every {n}th layer global)", layer_types[l]));
    // All local: a period past the last block.
    let n = period(&global).map_err(|(l, n)| refuse(l, n))?.min(n_layer + 1);
    match layer_types.iter().position(|t| t != "full_attention" && t != "sliding_attention") {
        Some(l) => Err(refuse(l, n)),
        None => Ok(n),
    }
}
