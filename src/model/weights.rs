//! Building a decoder from a file's tensors (GGUF, or Hugging Face safetensors) through one
//! name table per format, and the decoder's shape from the file's metadata.
//!
//! Every tensor is first brought to one canonical form: vectors as they are, embeddings as
//! row-major `(rows, d_model)`, projections as PyTorch's `Linear` stores them, row-major
//! `(out, in)`, with Q and K rows in interleaved RoPE order. From there each goes to the device as
//! burn wants it (a projection transposed once to `[in, out]`), one tensor at a time, so that the
//! f32 copy of the whole model never sits in (wasm) memory beside the file.

use burn::module::Param;
use burn::nn::{Embedding, LayerNormConfig, Linear, RmsNorm};
use burn::tensor::{Device, Tensor, TensorData};

use super::cpu::{CpuBlock, CpuDecoder, CpuLinear, CpuNorm};
use super::decoder::{Arch, Attention, Block, Decoder, DecoderConfig, Embed, Mlp, Norm, Proj, QEmbed, QProj};
use super::gpu::{QFormat, QWeight};
use super::qmatrix::QMatrix;
use crate::error::{Error, Result};
use crate::gguf::quant::{dequantize, dequantize_into, GgmlType};
use crate::gguf::{Gguf, Metadata};
use crate::safetensors::{HfConfig, Safetensors};

/// Where a file's tensor goes in the model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Slot {
    Embed,
    Positions,
    FinalNorm,
    FinalNormBias,
    Output,
    AttnNorm,
    AttnNormBias,
    Q,
    QBias,
    K,
    KBias,
    V,
    VBias,
    /// GPT-2's fused q/k/v projection: split into Q, K and V at load.
    Qkv,
    QkvBias,
    O,
    OBias,
    FfnNorm,
    FfnNormBias,
    Gate,
    Up,
    UpBias,
    Down,
    DownBias,
    /// A buffer some checkpoints save that is not a weight: skipped.
    Ignored,
}

/// How a stored tensor becomes the canonical form.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Layout {
    /// Already canonical: vectors, embeddings, and projections stored as `(out, in)` (every
    /// GGUF projection, whose dims `[in, out]` list the innermost first; HF `nn.Linear`).
    AsIs,
    /// HF GPT-2's `Conv1D` stores a projection as `(in, out)` (it computes `x @ W + b`):
    /// transposed to `(out, in)` here.
    Conv1D,
}

use Layout::{AsIs, Conv1D};

/// GGUF tensor names, for all three families (llama.cpp's names). `N` is the block index.
/// GGUF `llama` files hold Q and K already in interleaved RoPE order; `qwen2` files do not.
const GGUF_NAMES: &[(&str, Slot, Layout)] = &[
    ("token_embd.weight", Slot::Embed, AsIs),                 // [vocab, d_model]
    ("position_embd.weight", Slot::Positions, AsIs),          // GPT-2: [context, d_model]
    ("output_norm.weight", Slot::FinalNorm, AsIs),            // [d_model]
    ("output_norm.bias", Slot::FinalNormBias, AsIs),          // GPT-2: [d_model]
    ("output.weight", Slot::Output, AsIs),                    // (vocab, d_model); absent: tied
    ("blk.N.attn_norm.weight", Slot::AttnNorm, AsIs),         // [d_model]
    ("blk.N.attn_norm.bias", Slot::AttnNormBias, AsIs),       // GPT-2: [d_model]
    ("blk.N.attn_q.weight", Slot::Q, AsIs),                   // (heads·head_dim, d_model)
    ("blk.N.attn_q.bias", Slot::QBias, AsIs),                 // Qwen2: [heads·head_dim]
    ("blk.N.attn_k.weight", Slot::K, AsIs),                   // (kv_heads·head_dim, d_model)
    ("blk.N.attn_k.bias", Slot::KBias, AsIs),                 // Qwen2: [kv_heads·head_dim]
    ("blk.N.attn_v.weight", Slot::V, AsIs),                   // (kv_heads·head_dim, d_model)
    ("blk.N.attn_v.bias", Slot::VBias, AsIs),                 // Qwen2: [kv_heads·head_dim]
    ("blk.N.attn_qkv.weight", Slot::Qkv, AsIs),               // GPT-2: (3·d_model, d_model)
    ("blk.N.attn_qkv.bias", Slot::QkvBias, AsIs),             // GPT-2: [3·d_model]
    ("blk.N.attn_output.weight", Slot::O, AsIs),              // (d_model, heads·head_dim)
    ("blk.N.attn_output.bias", Slot::OBias, AsIs),            // GPT-2: [d_model]
    ("blk.N.ffn_norm.weight", Slot::FfnNorm, AsIs),           // [d_model]
    ("blk.N.ffn_norm.bias", Slot::FfnNormBias, AsIs),         // GPT-2: [d_model]
    ("blk.N.ffn_gate.weight", Slot::Gate, AsIs),              // (d_ff, d_model)
    ("blk.N.ffn_up.weight", Slot::Up, AsIs),                  // (d_ff, d_model)
    ("blk.N.ffn_up.bias", Slot::UpBias, AsIs),                // GPT-2: [d_ff]
    ("blk.N.ffn_down.weight", Slot::Down, AsIs),              // (d_model, d_ff)
    ("blk.N.ffn_down.bias", Slot::DownBias, AsIs),            // GPT-2: [d_model]
];

/// Hugging Face `LlamaForCausalLM` / `Qwen2ForCausalLM` names. Q and K rows are in HF's
/// half-split RoPE order and are permuted at load.
const HF_LLAMA_NAMES: &[(&str, Slot, Layout)] = &[
    ("model.embed_tokens.weight", Slot::Embed, AsIs),                      // [vocab, d_model]
    ("model.norm.weight", Slot::FinalNorm, AsIs),                          // [d_model]
    ("lm_head.weight", Slot::Output, AsIs),                                // (vocab, d_model); tied: unused
    ("model.layers.N.input_layernorm.weight", Slot::AttnNorm, AsIs),       // [d_model]
    ("model.layers.N.self_attn.q_proj.weight", Slot::Q, AsIs),             // (heads·head_dim, d_model)
    ("model.layers.N.self_attn.q_proj.bias", Slot::QBias, AsIs),           // Qwen2
    ("model.layers.N.self_attn.k_proj.weight", Slot::K, AsIs),             // (kv_heads·head_dim, d_model)
    ("model.layers.N.self_attn.k_proj.bias", Slot::KBias, AsIs),           // Qwen2
    ("model.layers.N.self_attn.v_proj.weight", Slot::V, AsIs),             // (kv_heads·head_dim, d_model)
    ("model.layers.N.self_attn.v_proj.bias", Slot::VBias, AsIs),           // Qwen2
    ("model.layers.N.self_attn.o_proj.weight", Slot::O, AsIs),             // (d_model, heads·head_dim)
    ("model.layers.N.post_attention_layernorm.weight", Slot::FfnNorm, AsIs), // [d_model]
    ("model.layers.N.mlp.gate_proj.weight", Slot::Gate, AsIs),             // (d_ff, d_model)
    ("model.layers.N.mlp.up_proj.weight", Slot::Up, AsIs),                 // (d_ff, d_model)
    ("model.layers.N.mlp.down_proj.weight", Slot::Down, AsIs),             // (d_model, d_ff)
    ("model.layers.N.self_attn.rotary_emb.inv_freq", Slot::Ignored, AsIs), // old checkpoints: RoPE's buffer
];

/// Hugging Face `GPT2LMHeadModel` names, after its `transformer.` prefix is dropped (the
/// original `gpt2` checkpoint, a `GPT2Model`, has none). Projections are `Conv1D`, `(in, out)`.
const HF_GPT2_NAMES: &[(&str, Slot, Layout)] = &[
    ("wte.weight", Slot::Embed, AsIs),                  // [vocab, d_model]
    ("wpe.weight", Slot::Positions, AsIs),              // [n_positions, d_model]
    ("ln_f.weight", Slot::FinalNorm, AsIs),             // [d_model]
    ("ln_f.bias", Slot::FinalNormBias, AsIs),           // [d_model]
    ("lm_head.weight", Slot::Output, AsIs),             // tied to wte: unused
    ("h.N.ln_1.weight", Slot::AttnNorm, AsIs),          // [d_model]
    ("h.N.ln_1.bias", Slot::AttnNormBias, AsIs),        // [d_model]
    ("h.N.attn.c_attn.weight", Slot::Qkv, Conv1D),      // (d_model, 3·d_model)
    ("h.N.attn.c_attn.bias", Slot::QkvBias, AsIs),      // [3·d_model]
    ("h.N.attn.c_proj.weight", Slot::O, Conv1D),        // (d_model, d_model)
    ("h.N.attn.c_proj.bias", Slot::OBias, AsIs),        // [d_model]
    ("h.N.ln_2.weight", Slot::FfnNorm, AsIs),           // [d_model]
    ("h.N.ln_2.bias", Slot::FfnNormBias, AsIs),         // [d_model]
    ("h.N.mlp.c_fc.weight", Slot::Up, Conv1D),          // (d_model, d_ff)
    ("h.N.mlp.c_fc.bias", Slot::UpBias, AsIs),          // [d_ff]
    ("h.N.mlp.c_proj.weight", Slot::Down, Conv1D),      // (d_ff, d_model)
    ("h.N.mlp.c_proj.bias", Slot::DownBias, AsIs),      // [d_model]
    ("h.N.attn.bias", Slot::Ignored, AsIs),             // old checkpoints: the causal-mask buffer
    ("h.N.attn.masked_bias", Slot::Ignored, AsIs),      // old checkpoints: the mask's fill value
];

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
                DecoderConfig::new(
                    hf.req("n_layer")?,
                    d,
                    n_head,
                    n_head,
                    hf.opt("n_inner")?.unwrap_or(4 * d),
                    hf.req("vocab_size")?,
                    hf.req("n_positions")?,
                )
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
                    None => rope.get("rope_theta").map_or(Ok(10000.0), |t| {
                        t.as_f64().ok_or_else(|| Error::bad_key("rope_parameters.rope_theta (config.json)", "expected a number"))
                    })?,
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

    /// Whether a model of this family has a tensor in `slot` (all but `Output`, which only
    /// untied models have).
    fn has(&self, slot: Slot) -> bool {
        let gpt2 = self.arch == Arch::Gpt2;
        match slot {
            Slot::Embed | Slot::FinalNorm | Slot::AttnNorm | Slot::O | Slot::FfnNorm | Slot::Up | Slot::Down | Slot::Output => true,
            Slot::Q | Slot::K | Slot::V | Slot::Gate => !gpt2,
            Slot::QBias | Slot::KBias | Slot::VBias => self.arch == Arch::Qwen2,
            Slot::Positions | Slot::FinalNormBias | Slot::AttnNormBias | Slot::Qkv | Slot::QkvBias | Slot::OBias | Slot::FfnNormBias | Slot::UpBias | Slot::DownBias => gpt2,
            Slot::Ignored => true,
        }
    }

    /// Canonical row-major shape of a tensor in `slot`.
    fn expected_shape(&self, slot: Slot) -> Vec<usize> {
        let (d, q, kv, ff) = (self.d_model, self.n_head * self.head_dim(), self.n_kv_head * self.head_dim(), self.d_ff);
        match slot {
            Slot::Embed | Slot::Output => vec![self.vocab_size, d],
            Slot::Positions => vec![self.context_length, d],
            Slot::FinalNorm | Slot::FinalNormBias | Slot::AttnNorm | Slot::AttnNormBias | Slot::FfnNorm | Slot::FfnNormBias | Slot::OBias | Slot::DownBias => vec![d],
            Slot::Q => vec![q, d],
            Slot::QBias => vec![q],
            Slot::K | Slot::V => vec![kv, d],
            Slot::KBias | Slot::VBias => vec![kv],
            Slot::Qkv => vec![q + 2 * kv, d],
            Slot::QkvBias => vec![q + 2 * kv],
            Slot::O => vec![d, q],
            Slot::Gate | Slot::Up => vec![ff, d],
            Slot::UpBias => vec![ff],
            Slot::Down => vec![d, ff],
            Slot::Ignored => vec![],
        }
    }
}

/// Splits `blk.12.attn_q.weight` into (`blk.N.attn_q.weight`, Some(12)): the first dotted
/// segment that is a number is the block index, in every naming scheme.
fn pattern_of(name: &str) -> (String, Option<usize>) {
    let mut layer = None;
    let parts: Vec<&str> = name
        .split('.')
        .map(|p| match p.parse::<usize>() {
            Ok(i) if layer.is_none() && !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()) => {
                layer = Some(i);
                "N"
            }
            _ => p,
        })
        .collect();
    (parts.join("."), layer)
}

/// Row-major `(rows, cols)` → `(cols, rows)`, for elements of any type.
fn transpose<T: Copy + Default>(x: &[T], rows: usize, cols: usize) -> Vec<T> {
    let mut out = vec![T::default(); x.len()];
    for (r, row) in x.chunks_exact(cols).enumerate() {
        for (c, &v) in row.iter().enumerate() {
            out[c * rows + r] = v;
        }
    }
    out
}

/// Reorders the rows of a Q or K projection (or its bias: `cols` = 1) from Hugging Face's
/// half-split RoPE layout, where a head's dims `i` and `i + head_dim/2` form a rotated pair, to
/// the interleaved layout `Rope` uses, where dims `2i` and `2i + 1` do. Within each head, new
/// row `2i + j` is old row `j·head_dim/2 + i`. This is convert_hf_to_gguf.py's `permute`
/// (`reshape(heads, 2, head_dim/2, ..).swapaxes(1, 2)`), done in the one place every
/// half-split source goes through; the golden tests against `transformers` prove it. Rows are
/// `cols` items of any type: f32 values, or a quantised row's bytes (whole blocks, so rows move
/// without being dequantised).
pub fn rope_interleave<T: Copy>(x: &[T], heads: usize, head_dim: usize, cols: usize) -> Vec<T> {
    let half = head_dim / 2;
    let mut out = Vec::with_capacity(x.len());
    for h in 0..heads {
        for i in 0..half {
            for j in 0..2 {
                let old = h * head_dim + j * half + i;
                out.extend_from_slice(&x[old * cols..(old + 1) * cols]);
            }
        }
    }
    out
}

/// A tensor as stored (GGUF blocks, or safetensors' F32/F16/BF16 elements), with its canonical
/// row-major shape. Row operations (the RoPE permutation, splitting GPT-2's fused projection)
/// move whole rows of bytes, so quantised weights stay quantised until a decoder takes them.
pub struct Raw {
    /// Element or block type.
    pub ty: GgmlType,
    /// The stored bytes.
    pub bytes: Vec<u8>,
    /// Canonical shape: `[n]` or `[rows, cols]`.
    pub shape: Vec<usize>,
}

impl Raw {
    fn cols(&self) -> usize {
        if self.shape.len() == 2 { self.shape[1] } else { 1 }
    }

    /// Bytes per canonical row, if rows are whole blocks.
    fn row_bytes(&self) -> Result<usize> {
        let (bs, ts, cols) = (self.ty.block_size(), self.ty.type_size(), self.cols());
        if cols % bs != 0 {
            return Err(Error::Unsupported(format!("{} rows of {cols} values (not whole blocks of {bs})", self.ty.name())));
        }
        Ok(cols / bs * ts)
    }

    /// The index of the first element that dequantises to a non-finite value: only a block's
    /// f16 scale or offset can be one, the quants are small integers.
    fn first_non_finite(&self) -> Option<usize> {
        let ts = self.ty.type_size();
        let fields: &[usize] = match self.ty {
            GgmlType::F32 | GgmlType::F16 | GgmlType::BF16 => {
                let mut one = [0f32; 1];
                return self.bytes.chunks_exact(ts).position(|e| {
                    dequantize_into(self.ty, e, &mut one).is_err() || !one[0].is_finite()
                });
            }
            GgmlType::Q4_0 | GgmlType::Q5_0 | GgmlType::Q8_0 => &[0],
            GgmlType::Q4_1 | GgmlType::Q5_1 | GgmlType::Q4_K | GgmlType::Q5_K => &[0, 2],
            GgmlType::Q6_K => &[208],
        };
        let bad = |b: &[u8]| fields.iter().any(|&i| !half::f16::from_le_bytes([b[i], b[i + 1]]).is_finite());
        self.bytes.chunks_exact(ts).position(bad).map(|b| b * self.ty.block_size())
    }

    fn to_f32(&self) -> Result<Vec<f32>> {
        dequantize(self.ty, &self.bytes, self.shape.iter().product())
    }

    fn into_qmatrix(self) -> Result<QMatrix> {
        let (rows, cols) = match self.shape[..] {
            [rows, cols] => (rows, cols),
            [n] => (1, n),
            _ => unreachable!("shapes are checked against expected_shape"),
        };
        QMatrix::new(self.ty, &self.bytes, rows, cols)
    }
}

/// One tensor of a model file: its name, row-major shape, and how to read its stored bytes.
pub struct Entry<'a> {
    /// Name in the file.
    pub name: String,
    /// Row-major shape.
    pub shape: Vec<usize>,
    read: Box<dyn Fn() -> Result<(GgmlType, Vec<u8>)> + 'a>,
}

/// How the tensors of a file are to be read.
struct Plan<'t> {
    /// The format's name table.
    table: &'t [(&'t str, Slot, Layout)],
    /// Whether Q and K are stored in half-split RoPE order.
    half_split_rope: bool,
    /// `Some(tied)` when the metadata says whether the head is tied (HF); `None` when the
    /// absence of an output tensor says so (GGUF).
    tied: Option<bool>,
    /// The format, for messages.
    format: &'static str,
}

type Slots = std::collections::HashMap<(Slot, Option<usize>), Raw>;

fn gguf_entries<'a>(gguf: &'a Gguf<'_>, config: &DecoderConfig) -> (Vec<Entry<'a>>, Plan<'static>) {
    let entries = gguf
        .tensors
        .iter()
        .map(|info| {
            let name = info.name.clone();
            Entry {
                shape: info.shape(),
                read: Box::new(move || {
                    let view = gguf.tensor(&name).expect("listed tensor");
                    Ok((view.info.ty, view.data.to_vec()))
                }),
                name: info.name.clone(),
            }
        })
        .collect();
    // llama.cpp runs `qwen2` with NeoX (half-split) RoPE on unpermuted weights.
    (entries, Plan { table: GGUF_NAMES, half_split_rope: config.arch == Arch::Qwen2, tied: None, format: "GGUF" })
}

fn hf_entries<'a>(shards: &'a [Safetensors<'_>], config: &DecoderConfig) -> Result<(Vec<Entry<'a>>, Plan<'static>)> {
    let mut entries: Vec<Entry> = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for shard in shards {
        for info in &shard.tensors {
            if !seen.insert(info.name.as_str()) {
                return Err(Error::tensor(&info.name, "is in more than one safetensors file"));
            }
            let name = info.name.clone();
            entries.push(Entry { shape: info.shape.clone(), read: Box::new(move || shard.raw(&name)), name: info.name.clone() });
        }
    }
    let gpt2 = config.arch == Arch::Gpt2;
    if gpt2 {
        for e in &mut entries {
            if let Some(rest) = e.name.strip_prefix("transformer.") {
                e.name = rest.to_string();
            }
        }
    }
    let plan = Plan {
        table: if gpt2 { HF_GPT2_NAMES } else { HF_LLAMA_NAMES },
        half_split_rope: !gpt2,
        tied: Some(config.tied_embeddings),
        format: "Hugging Face",
    };
    Ok((entries, plan))
}

/// Builds the burn decoder from a parsed GGUF file. Every tensor must map to a slot of this
/// family (an unexpected one is an error), every slot must be filled (a missing one is an
/// error, but for `output.weight`, whose absence means a tied head), and every shape must
/// match `config`.
pub fn load_gguf(
    gguf: &Gguf<'_>,
    config: &DecoderConfig,
    max_positions: usize,
    device: &Device,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<(Decoder, DecoderConfig)> {
    let (entries, plan) = gguf_entries(gguf, config);
    to_burn(collect(entries, &plan, config, progress)?, &plan, config, max_positions, device)
}

/// Builds the burn decoder from Hugging Face safetensors shards (`config` from `config.json`).
/// A tensor may be in any shard, but in only one.
pub fn load_safetensors(
    shards: &[Safetensors<'_>],
    config: &DecoderConfig,
    max_positions: usize,
    device: &Device,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<(Decoder, DecoderConfig)> {
    let (entries, plan) = hf_entries(shards, config)?;
    to_burn(collect(entries, &plan, config, progress)?, &plan, config, max_positions, device)
}

/// [`load_gguf`] for the CPU decoder: the weights stay in the file's block formats.
pub fn load_gguf_cpu(gguf: &Gguf<'_>, config: &DecoderConfig, capacity: usize, progress: &mut dyn FnMut(usize, usize)) -> Result<(CpuDecoder, DecoderConfig)> {
    let (entries, plan) = gguf_entries(gguf, config);
    to_cpu(collect(entries, &plan, config, progress)?, &plan, config, capacity)
}

/// [`load_safetensors`] for the CPU decoder (F16 and BF16 weights become f32).
pub fn load_safetensors_cpu(shards: &[Safetensors<'_>], config: &DecoderConfig, capacity: usize, progress: &mut dyn FnMut(usize, usize)) -> Result<(CpuDecoder, DecoderConfig)> {
    let (entries, plan) = hf_entries(shards, config)?;
    to_cpu(collect(entries, &plan, config, progress)?, &plan, config, capacity)
}

/// Reads every tensor into its slot in canonical form, checking names, shapes and values.
fn collect(entries: Vec<Entry<'_>>, plan: &Plan<'_>, config: &DecoderConfig, progress: &mut dyn FnMut(usize, usize)) -> Result<Slots> {
    let arch = config.arch.name();
    let (hd, q, kv) = (config.head_dim(), config.n_head * config.head_dim(), config.n_kv_head * config.head_dim());
    let mut slots: Slots = Default::default();
    let total = entries.len();
    for (i, entry) in entries.into_iter().enumerate() {
        let (pattern, layer) = pattern_of(&entry.name);
        let &(_, slot, layout) = plan
            .table
            .iter()
            .find(|(p, _, _)| *p == pattern)
            .filter(|(_, s, _)| config.has(*s))
            .ok_or_else(|| Error::tensor(&entry.name, format!("is not part of a {} {arch} model (unexpected tensor)", plan.format)))?;
        if pattern.contains(".N.") && layer.is_none_or(|l| l >= config.n_layer) {
            return Err(Error::tensor(&entry.name, format!("block index is past the {} blocks", config.n_layer)));
        }
        progress(i + 1, total);
        if slot == Slot::Ignored || (slot == Slot::Output && plan.tied == Some(true)) {
            continue; // a tied head's copy (transformers re-ties it to the embedding on load)
        }
        let want = config.expected_shape(slot);
        let stored: Vec<usize> = if layout == Conv1D { want.iter().rev().copied().collect() } else { want.clone() };
        if entry.shape != stored {
            return Err(Error::tensor(&entry.name, format!("has shape {:?}, expected {stored:?}", entry.shape)));
        }
        let (ty, bytes) = (entry.read)()?;
        let mut raw = Raw { ty, bytes, shape: want.clone() };
        if let Some(bad) = raw.first_non_finite() {
            return Err(Error::tensor(&entry.name, format!("holds a non-finite value at element {bad}")));
        }
        let in_rows = |e: Error| Error::tensor(&entry.name, e.to_string());
        if layout == Conv1D {
            // Elements (safetensors holds no blocks), transposed a whole element at a time.
            let ts = raw.ty.type_size();
            let elems: Vec<&[u8]> = raw.bytes.chunks_exact(ts).collect();
            raw.bytes = transpose(&elems, want[1], want[0]).concat();
        }
        let cols = raw.cols();
        if plan.half_split_rope && matches!(slot, Slot::Q | Slot::QBias | Slot::K | Slot::KBias) {
            let heads = if matches!(slot, Slot::Q | Slot::QBias) { config.n_head } else { config.n_kv_head };
            // A vector's rows are single elements.
            let unit = if cols == 1 { raw.ty.type_size() } else { raw.row_bytes().map_err(in_rows)? };
            if cols == 1 && raw.ty.block_size() != 1 {
                return Err(Error::tensor(&entry.name, "is a quantised vector; Ember cannot reorder it for RoPE"));
            }
            raw.bytes = rope_interleave(&raw.bytes, heads, hd, unit);
        }
        match slot {
            // GPT-2's fused projection: rows [0, q) are Q, then K, then V. (GPT-2 has no RoPE,
            // so nothing here needs the permutation.)
            Slot::Qkv | Slot::QkvBias => {
                let bias = slot == Slot::QkvBias;
                let unit = if bias {
                    if raw.ty.block_size() != 1 {
                        return Err(Error::tensor(&entry.name, "is a quantised vector; Ember cannot split it"));
                    }
                    raw.ty.type_size()
                } else {
                    raw.row_bytes().map_err(in_rows)?
                };
                let parts = if bias { [Slot::QBias, Slot::KBias, Slot::VBias] } else { [Slot::Q, Slot::K, Slot::V] };
                let mut at = 0;
                for (part, rows) in parts.into_iter().zip([q, kv, kv]) {
                    let bytes = raw.bytes[at * unit..(at + rows) * unit].to_vec();
                    let shape = if bias { vec![rows] } else { vec![rows, cols] };
                    slots.insert((part, layer), Raw { ty: raw.ty, bytes, shape });
                    at += rows;
                }
            }
            _ => {
                slots.insert((slot, layer), raw);
            }
        }
    }
    Ok(slots)
}

/// Takes tensors out of the slots, naming the file's tensor when one is missing.
struct Taker<'p> {
    slots: std::cell::RefCell<Slots>,
    plan: &'p Plan<'p>,
    gpt2: bool,
}

impl Taker<'_> {
    fn take(&self, slot: Slot, layer: Option<usize>) -> Result<Raw> {
        self.slots.borrow_mut().remove(&(slot, layer)).ok_or_else(|| {
            // Name the tensor the file lacks (for a split part, the fused one).
            let named = match slot {
                Slot::Q | Slot::K | Slot::V if self.gpt2 => Slot::Qkv,
                Slot::QBias | Slot::KBias | Slot::VBias if self.gpt2 => Slot::QkvBias,
                s => s,
            };
            let pattern = self.plan.table.iter().find(|r| r.1 == named).map_or("?", |r| r.0);
            let name = layer.map_or(pattern.to_string(), |l| pattern.replacen(".N.", &format!(".{l}."), 1));
            Error::tensor(&name, "is missing from the file")
        })
    }

    /// Whether the model has its own output head: HF says so in its config; in GGUF, the
    /// tensor's presence does.
    fn untied(&self) -> bool {
        match self.plan.tied {
            Some(tied) => !tied,
            None => self.slots.borrow().contains_key(&(Slot::Output, None)),
        }
    }
}

fn to_burn(slots: Slots, plan: &Plan<'_>, config: &DecoderConfig, max_positions: usize, device: &Device) -> Result<(Decoder, DecoderConfig)> {
    let gpt2 = config.arch == Arch::Gpt2;
    let t = Taker { slots: std::cell::RefCell::new(slots), plan, gpt2 };
    // On a wgpu device, Q4_0/Q4_1/Q8_0 matrices stay in their blocks (`gpu::QWeight`). Every
    // other tensor is dequantised as it goes to the device, so that the f32 copy of the whole
    // model never sits in (wasm) memory beside the file.
    let blocks_on_gpu = matches!(device.as_dispatch(), burn::backend::DispatchDevice::Cube(_));
    let quant = |raw: &Raw| -> Option<Result<QWeight>> {
        match raw.shape[..] {
            [rows, cols] if blocks_on_gpu && QFormat::of(raw.ty).is_some() => Some(QWeight::new(raw.ty, &raw.bytes, rows, cols, device)),
            _ => None,
        }
    };
    let matrix = |slot: Slot, raw: Raw| -> Result<Tensor<2>> {
        let values = raw.to_f32()?;
        let data = match raw.shape[..] {
            // Projections: canonical (out, in) → burn's `Linear` [in, out].
            [rows, cols] if !matches!(slot, Slot::Embed | Slot::Positions) => TensorData::new(transpose(&values, rows, cols), [cols, rows]),
            [rows, cols] => TensorData::new(values, [rows, cols]),
            _ => unreachable!("matrices are 2-D"),
        };
        Ok(Tensor::from_data(data, device))
    };
    let vector = |slot: Slot, l: Option<usize>| -> Result<Tensor<1>> {
        let values = t.take(slot, l)?.to_f32()?;
        let n = values.len();
        Ok(Tensor::from_data(TensorData::new(values, [n]), device))
    };
    let linear = |w: Slot, b: Option<Slot>, l: Option<usize>| -> Result<Proj> {
        let raw = t.take(w, l)?;
        let bias = b.map(|b| vector(b, l)).transpose()?;
        Ok(match quant(&raw) {
            Some(weight) => Proj::Quant(QProj { weight: weight?, bias }),
            None => Proj::Dense(Linear { weight: Param::from_tensor(matrix(w, raw)?), bias: bias.map(Param::from_tensor) }),
        })
    };
    let eps = config.norm_eps;
    let norm = |w: Slot, b: Slot, l: Option<usize>| -> Result<Norm> {
        let gamma = Param::from_tensor(vector(w, l)?);
        Ok(if gpt2 {
            // LayerNorm's epsilon is private: build one, then give it the file's weights.
            let mut n = LayerNormConfig::new(config.d_model).with_epsilon(eps).init(device);
            n.gamma = gamma;
            n.beta = Some(Param::from_tensor(vector(b, l)?));
            Norm::Layer(n)
        } else {
            Norm::Rms(RmsNorm { gamma, epsilon: eps })
        })
    };
    let qkv_bias = config.arch.qkv_bias();
    let bias = |on: bool, s: Slot| on.then_some(s);
    let mut layers = Vec::with_capacity(config.n_layer);
    for l in (0..config.n_layer).map(Some) {
        layers.push(Block {
            attn_norm: norm(Slot::AttnNorm, Slot::AttnNormBias, l)?,
            attn: Attention {
                wq: linear(Slot::Q, bias(qkv_bias, Slot::QBias), l)?,
                wk: linear(Slot::K, bias(qkv_bias, Slot::KBias), l)?,
                wv: linear(Slot::V, bias(qkv_bias, Slot::VBias), l)?,
                wo: linear(Slot::O, bias(gpt2, Slot::OBias), l)?,
                n_head: config.n_head,
                n_kv_head: config.n_kv_head,
                head_dim: config.head_dim(),
            },
            ffn_norm: norm(Slot::FfnNorm, Slot::FfnNormBias, l)?,
            mlp: Mlp {
                gate: (!gpt2).then(|| linear(Slot::Gate, None, l)).transpose()?,
                up: linear(Slot::Up, bias(gpt2, Slot::UpBias), l)?,
                down: linear(Slot::Down, bias(gpt2, Slot::DownBias), l)?,
            },
        });
    }
    let raw = t.take(Slot::Embed, None)?;
    let embed = match quant(&raw) {
        Some(weight) => Embed::Quant(QEmbed { weight: weight? }),
        None => Embed::Dense(Embedding { weight: Param::from_tensor(matrix(Slot::Embed, raw)?) }),
    };
    let positions = gpt2.then(|| matrix(Slot::Positions, t.take(Slot::Positions, None)?)).transpose()?.map(|w| Embedding { weight: Param::from_tensor(w) });
    let final_norm = norm(Slot::FinalNorm, Slot::FinalNormBias, None)?;
    let output = t.untied().then(|| linear(Slot::Output, None, None)).transpose()?;
    let config = config.clone().with_tied_embeddings(output.is_none());
    let model = Decoder::new(&config, embed, positions, layers, final_norm, output, max_positions, device);
    Ok((model, config))
}

fn to_cpu(slots: Slots, plan: &Plan<'_>, config: &DecoderConfig, capacity: usize) -> Result<(CpuDecoder, DecoderConfig)> {
    let gpt2 = config.arch == Arch::Gpt2;
    let t = Taker { slots: std::cell::RefCell::new(slots), plan, gpt2 };
    let matrix = |slot: Slot, l: Option<usize>| t.take(slot, l)?.into_qmatrix();
    let linear = |w: Slot, b: Option<Slot>, l: Option<usize>| -> Result<CpuLinear> {
        Ok(CpuLinear { weight: matrix(w, l)?, bias: b.map(|b| t.take(b, l)?.to_f32()).transpose()? })
    };
    let eps = config.norm_eps as f32;
    let norm = |w: Slot, b: Slot, l: Option<usize>| -> Result<CpuNorm> {
        let beta = gpt2.then(|| t.take(b, l)?.to_f32()).transpose()?;
        Ok(CpuNorm { gamma: t.take(w, l)?.to_f32()?, beta, eps })
    };
    let qkv_bias = config.arch.qkv_bias();
    let bias = |on: bool, s: Slot| on.then_some(s);
    let mut layers = Vec::with_capacity(config.n_layer);
    for l in (0..config.n_layer).map(Some) {
        layers.push(CpuBlock {
            attn_norm: norm(Slot::AttnNorm, Slot::AttnNormBias, l)?,
            wq: linear(Slot::Q, bias(qkv_bias, Slot::QBias), l)?,
            wk: linear(Slot::K, bias(qkv_bias, Slot::KBias), l)?,
            wv: linear(Slot::V, bias(qkv_bias, Slot::VBias), l)?,
            wo: linear(Slot::O, bias(gpt2, Slot::OBias), l)?,
            ffn_norm: norm(Slot::FfnNorm, Slot::FfnNormBias, l)?,
            gate: (!gpt2).then(|| linear(Slot::Gate, None, l)).transpose()?,
            up: linear(Slot::Up, bias(gpt2, Slot::UpBias), l)?,
            down: linear(Slot::Down, bias(gpt2, Slot::DownBias), l)?,
        });
    }
    let embed = matrix(Slot::Embed, None)?;
    let positions = gpt2.then(|| matrix(Slot::Positions, None)).transpose()?;
    let final_norm = norm(Slot::FinalNorm, Slot::FinalNormBias, None)?;
    let output = t.untied().then(|| matrix(Slot::Output, None)).transpose()?;
    let config = config.clone().with_tied_embeddings(output.is_none());
    let model = CpuDecoder::new(&config, embed, positions, layers, final_norm, output, capacity);
    Ok((model, config))
}
