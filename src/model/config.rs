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

    /// The attention's head shape.
    pub fn heads(&self) -> super::decoder::Heads {
        super::decoder::Heads { n_head: self.n_head, n_kv_head: self.n_kv_head, head_dim: self.head_dim() }
    }

    /// Parameters of a model of this shape.
    pub fn n_params(&self) -> usize {
        let (d, q, kv, ff) = (self.d_model, self.n_head * self.head_dim(), self.n_kv_head * self.head_dim(), self.d_ff);
        let f = self.arch.family();
        let norm = if f.layer_norm { 2 * d } else { d };
        let attn = d * q + 2 * d * kv + q * d + if f.qkv_bias { q + 2 * kv } else { 0 } + if f.out_bias { d } else { 0 };
        let mlp = if f.gated { 3 * d * ff } else { 2 * d * ff } + if f.out_bias { ff + d } else { 0 };
        let head = if self.tied_embeddings { 0 } else { self.vocab_size * d };
        let positions = if f.learned_positions { self.context_length * d } else { 0 };
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
        if !self.d_model.is_multiple_of(self.n_head) {
            return bad(format!("embedding width {} is not divisible by {} heads", self.d_model, self.n_head));
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
}

/// Llama: RMSNorm, RoPE, SwiGLU, no biases. The others are written as their differences from it.
const LLAMA: Family =
    Family { layer_norm: false, learned_positions: false, qkv_bias: false, out_bias: false, gated: true, act: Activation::Silu, fused_qkv: false };

impl Arch {
    /// What this family's decoder is made of.
    pub const fn family(self) -> Family {
        match self {
            Arch::Llama => LLAMA,
            Arch::Qwen2 => Family { qkv_bias: true, ..LLAMA },
            Arch::Gpt2 => {
                Family { layer_norm: true, learned_positions: true, qkv_bias: true, out_bias: true, gated: false, act: Activation::GeluTanh, fused_qkv: true }
            }
        }
    }
}

fn unsupported_arch(name: &str) -> Error {
    Error::Unsupported(format!("architecture `{name}` (Ember runs `llama` (SmolLM2, Llama), `qwen2` and `gpt2` models)"))
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
        config.validate()?;
        if let Some(n_rot) = meta.opt::<usize>(&key("rope.dimension_count"))? {
            if arch != Arch::Gpt2 && n_rot != config.head_dim() {
                return Err(Error::Unsupported(format!("partial RoPE ({n_rot} of {} dims per head)", config.head_dim())));
            }
        }
        if let Some(kind) = meta.opt::<String>(&key("rope.scaling.type"))? {
            if kind != "none" {
                return Err(Error::Unsupported(format!("RoPE scaling `{kind}`")));
            }
        }
        Ok(config)
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
            Arch::Llama | Arch::Qwen2 => {
                let n_head: usize = hf.req("num_attention_heads")?;
                let act = hf.opt::<String>("hidden_act")?.unwrap_or_else(|| "silu".into());
                if act != "silu" {
                    return refuse(format!("activation `{act}` (Ember runs SwiGLU, `silu`)"));
                }
                if let Some(scaling) = hf.opt::<serde_json::Value>("rope_scaling")? {
                    return refuse(format!("RoPE scaling {scaling}"));
                }
                // transformers ≥ 5 writes `rope_parameters: {rope_theta, rope_type}`; older
                // versions a top-level `rope_theta`.
                let rope = hf.opt::<serde_json::Map<String, serde_json::Value>>("rope_parameters")?.unwrap_or_default();
                if let Some(kind) = rope.get("rope_type").and_then(|t| t.as_str()).filter(|&t| t != "default") {
                    return refuse(format!("RoPE scaling `{kind}`"));
                }
                let theta = match hf.opt::<f64>("rope_theta")? {
                    Some(t) => t,
                    None => rope
                        .get("rope_theta")
                        .map_or(Ok(10000.0), |t| t.as_f64().ok_or_else(|| Error::bad_key("rope_parameters.rope_theta (config.json)", "expected a number")))?,
                };
                let layer_types = hf.opt::<Vec<String>>("layer_types")?.unwrap_or_default();
                if let Some(t) = layer_types.iter().find(|t| *t != "full_attention") {
                    return refuse(format!("`{t}` layers (Ember runs full attention)"));
                }
                for flag in ["attention_bias", "mlp_bias"] {
                    if hf.opt::<bool>(flag)?.unwrap_or(false) {
                        return refuse(format!("{name} with `{flag}`"));
                    }
                }
                if hf.opt::<bool>("use_sliding_window")?.unwrap_or(false) {
                    return refuse("sliding-window attention".into());
                }
                let config = DecoderConfig::new(
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
                .with_tied_embeddings(hf.opt("tie_word_embeddings")?.unwrap_or(false));
                if let Some(hd) = hf.opt::<usize>("head_dim")? {
                    if config.n_head > 0 && hd * config.n_head != config.d_model {
                        return refuse(format!("head width {hd} × {n_head} heads ≠ hidden size {}", config.d_model));
                    }
                }
                config
            }
        };
        config.validate()?;
        Ok(config)
    }
}
