//! The one weights walk: a model's tensors (GGUF, or Hugging Face safetensors) read through one
//! name table per format into the model description (`model::decoder`), each executor receiving
//! the stored bytes it needs.
//!
//! Every tensor is brought to one canonical form before an executor sees it: vectors as they
//! are, embeddings as row-major `(rows, d_model)`, projections as PyTorch's `Linear` stores them,
//! row-major `(out, in)`, with Q and K rows in interleaved RoPE order. Each layout conversion
//! happens here, in one place, on whole rows of the stored bytes (so quantised weights stay
//! quantised): HF's half-split RoPE rows ([`rope_interleave`]), GPT-2's `Conv1D` (transposed),
//! its fused qkv (split), and the tied head (the embedding serves as the head). Tensors are read
//! one at a time as the walk takes them, so that a copy of the whole model never sits in (wasm)
//! memory beside the file.

use std::borrow::Cow;
use std::collections::HashMap;

use super::config::{DecoderConfig, Family};
use super::decoder::{Decoder, Executor, Layer, Linear, Norm, Rope, RopeSpec, Stacked};
use super::qmatrix::QMatrix;
use crate::error::{Error, Result};
use crate::gguf::quant::{dequantize, dequantize_into, f16_at, GgmlType};
use crate::gguf::Gguf;
use crate::safetensors::Safetensors;

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
    /// QK-norm's weights, `[head_dim]`.
    QNorm,
    KNorm,
    /// Gemma's norms after the attention and after the MLP.
    PostAttnNorm,
    PostFfnNorm,
    FfnNorm,
    FfnNormBias,
    Gate,
    Up,
    UpBias,
    /// Phi-3's fused gate and up projections (gate rows, then up rows): split at load.
    GateUp,
    Down,
    DownBias,
    /// Llama 3's RoPE scaling as each frequency's divisor, `[head_dim/2]` (GGUF only).
    RopeFreqs,
    /// LongRoPE's divisors for a short and a long context, `[rotary dims/2]` (GGUF only).
    RopeShort,
    RopeLong,
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

/// A format's names: the tensor name (`N` for the block index), its slot, and its layout.
type NameTable = &'static [(&'static str, Slot, Layout)];

/// GGUF tensor names, for every family (llama.cpp's names). `N` is the block index.
/// GGUF `llama` files hold Q and K already in interleaved RoPE order; `qwen2`, `qwen3` and
/// `gemma3` files do not (`Family::gguf_half_split`).
const GGUF_NAMES: NameTable = &[
    ("token_embd.weight", Slot::Embed, AsIs),                       // [vocab, d_model]
    ("position_embd.weight", Slot::Positions, AsIs),                // GPT-2: [context, d_model]
    ("output_norm.weight", Slot::FinalNorm, AsIs),                  // [d_model]
    ("output_norm.bias", Slot::FinalNormBias, AsIs),                // GPT-2: [d_model]
    ("output.weight", Slot::Output, AsIs),                          // (vocab, d_model); absent: tied
    ("rope_freqs.weight", Slot::RopeFreqs, AsIs),                   // Llama 3: [head_dim/2]
    ("rope_factors_short.weight", Slot::RopeShort, AsIs),           // Phi-3: [rotary dims/2]
    ("rope_factors_long.weight", Slot::RopeLong, AsIs),             // Phi-3: [rotary dims/2]
    ("blk.N.attn_norm.weight", Slot::AttnNorm, AsIs),               // [d_model]
    ("blk.N.attn_norm.bias", Slot::AttnNormBias, AsIs),             // GPT-2: [d_model]
    ("blk.N.attn_q.weight", Slot::Q, AsIs),                         // (heads·head_dim, d_model)
    ("blk.N.attn_q.bias", Slot::QBias, AsIs),                       // Qwen2: [heads·head_dim]
    ("blk.N.attn_k.weight", Slot::K, AsIs),                         // (kv_heads·head_dim, d_model)
    ("blk.N.attn_k.bias", Slot::KBias, AsIs),                       // Qwen2: [kv_heads·head_dim]
    ("blk.N.attn_v.weight", Slot::V, AsIs),                         // (kv_heads·head_dim, d_model)
    ("blk.N.attn_v.bias", Slot::VBias, AsIs),                       // Qwen2: [kv_heads·head_dim]
    ("blk.N.attn_qkv.weight", Slot::Qkv, AsIs),                     // GPT-2, Phi-3: (heads·hd + 2·kv_heads·hd, d_model)
    ("blk.N.attn_qkv.bias", Slot::QkvBias, AsIs),                   // GPT-2: [3·d_model]
    ("blk.N.attn_output.weight", Slot::O, AsIs),                    // (d_model, heads·head_dim)
    ("blk.N.attn_output.bias", Slot::OBias, AsIs),                  // GPT-2: [d_model]
    ("blk.N.attn_q_norm.weight", Slot::QNorm, AsIs),                // Qwen3, Gemma 3: [head_dim]
    ("blk.N.attn_k_norm.weight", Slot::KNorm, AsIs),                // Qwen3, Gemma 3: [head_dim]
    ("blk.N.post_attention_norm.weight", Slot::PostAttnNorm, AsIs), // Gemma 3: [d_model]
    ("blk.N.post_ffw_norm.weight", Slot::PostFfnNorm, AsIs),        // Gemma 3: [d_model]
    ("blk.N.ffn_norm.weight", Slot::FfnNorm, AsIs),                 // [d_model]
    ("blk.N.ffn_norm.bias", Slot::FfnNormBias, AsIs),               // GPT-2: [d_model]
    ("blk.N.ffn_gate.weight", Slot::Gate, AsIs),                    // (d_ff, d_model)
    ("blk.N.ffn_up.weight", Slot::Up, AsIs),                        // (d_ff, d_model)
    ("blk.N.ffn_up.bias", Slot::UpBias, AsIs),                      // GPT-2: [d_ff]
    ("blk.N.ffn_down.weight", Slot::Down, AsIs),                    // (d_model, d_ff)
    ("blk.N.ffn_down.bias", Slot::DownBias, AsIs),                  // GPT-2: [d_model]
];

/// Phi-3's GGUF name that means another tensor in the other families: its `ffn_up` holds the
/// gate and up projections (searched before [`GGUF_NAMES`]).
const GGUF_PHI3_NAMES: NameTable = &[
    ("blk.N.ffn_up.weight", Slot::GateUp, AsIs), // (2·d_ff, d_model): gate rows, then up rows
];

/// Hugging Face `LlamaForCausalLM` / `Qwen2ForCausalLM` / `Qwen3ForCausalLM` names (and
/// Gemma 3's, with [`HF_GEMMA3_NAMES`] first). Q and K rows are in HF's half-split RoPE order
/// and are permuted at load.
const HF_LLAMA_NAMES: NameTable = &[
    ("model.embed_tokens.weight", Slot::Embed, AsIs),                        // [vocab, d_model]
    ("model.norm.weight", Slot::FinalNorm, AsIs),                            // [d_model]
    ("lm_head.weight", Slot::Output, AsIs),                                  // (vocab, d_model); tied: unused
    ("model.layers.N.input_layernorm.weight", Slot::AttnNorm, AsIs),         // [d_model]
    ("model.layers.N.self_attn.q_proj.weight", Slot::Q, AsIs),               // (heads·head_dim, d_model)
    ("model.layers.N.self_attn.q_proj.bias", Slot::QBias, AsIs),             // Qwen2
    ("model.layers.N.self_attn.k_proj.weight", Slot::K, AsIs),               // (kv_heads·head_dim, d_model)
    ("model.layers.N.self_attn.k_proj.bias", Slot::KBias, AsIs),             // Qwen2
    ("model.layers.N.self_attn.v_proj.weight", Slot::V, AsIs),               // (kv_heads·head_dim, d_model)
    ("model.layers.N.self_attn.v_proj.bias", Slot::VBias, AsIs),             // Qwen2
    ("model.layers.N.self_attn.o_proj.weight", Slot::O, AsIs),               // (d_model, heads·head_dim)
    ("model.layers.N.self_attn.qkv_proj.weight", Slot::Qkv, AsIs),           // Phi-3: (heads·hd + 2·kv_heads·hd, d_model)
    ("model.layers.N.mlp.gate_up_proj.weight", Slot::GateUp, AsIs),          // Phi-3: (2·d_ff, d_model), gate then up
    ("model.layers.N.self_attn.q_norm.weight", Slot::QNorm, AsIs),           // Qwen3, Gemma 3: [head_dim]
    ("model.layers.N.self_attn.k_norm.weight", Slot::KNorm, AsIs),           // Qwen3, Gemma 3: [head_dim]
    ("model.layers.N.post_attention_layernorm.weight", Slot::FfnNorm, AsIs), // [d_model]
    ("model.layers.N.mlp.gate_proj.weight", Slot::Gate, AsIs),               // (d_ff, d_model)
    ("model.layers.N.mlp.up_proj.weight", Slot::Up, AsIs),                   // (d_ff, d_model)
    ("model.layers.N.mlp.down_proj.weight", Slot::Down, AsIs),               // (d_model, d_ff)
    ("model.layers.N.self_attn.rotary_emb.inv_freq", Slot::Ignored, AsIs),   // old checkpoints: RoPE's buffer
];

/// Gemma 3's norms, whose names mean other things in Llama: its `post_attention_layernorm`
/// follows the attention (Llama's precedes the MLP), and `pre_feedforward_layernorm` is the one
/// before the MLP.
const HF_GEMMA3_NAMES: NameTable = &[
    ("model.layers.N.post_attention_layernorm.weight", Slot::PostAttnNorm, AsIs), // [d_model]
    ("model.layers.N.pre_feedforward_layernorm.weight", Slot::FfnNorm, AsIs),     // [d_model]
    ("model.layers.N.post_feedforward_layernorm.weight", Slot::PostFfnNorm, AsIs), // [d_model]
];

/// Hugging Face `GPT2LMHeadModel` names, after its `transformer.` prefix is dropped (the
/// original `gpt2` checkpoint, a `GPT2Model`, has none). Projections are `Conv1D`, `(in, out)`.
const HF_GPT2_NAMES: NameTable = &[
    ("wte.weight", Slot::Embed, AsIs),             // [vocab, d_model]
    ("wpe.weight", Slot::Positions, AsIs),         // [n_positions, d_model]
    ("ln_f.weight", Slot::FinalNorm, AsIs),        // [d_model]
    ("ln_f.bias", Slot::FinalNormBias, AsIs),      // [d_model]
    ("lm_head.weight", Slot::Output, AsIs),        // tied to wte: unused
    ("h.N.ln_1.weight", Slot::AttnNorm, AsIs),     // [d_model]
    ("h.N.ln_1.bias", Slot::AttnNormBias, AsIs),   // [d_model]
    ("h.N.attn.c_attn.weight", Slot::Qkv, Conv1D), // (d_model, 3·d_model)
    ("h.N.attn.c_attn.bias", Slot::QkvBias, AsIs), // [3·d_model]
    ("h.N.attn.c_proj.weight", Slot::O, Conv1D),   // (d_model, d_model)
    ("h.N.attn.c_proj.bias", Slot::OBias, AsIs),   // [d_model]
    ("h.N.ln_2.weight", Slot::FfnNorm, AsIs),      // [d_model]
    ("h.N.ln_2.bias", Slot::FfnNormBias, AsIs),    // [d_model]
    ("h.N.mlp.c_fc.weight", Slot::Up, Conv1D),     // (d_model, d_ff)
    ("h.N.mlp.c_fc.bias", Slot::UpBias, AsIs),     // [d_ff]
    ("h.N.mlp.c_proj.weight", Slot::Down, Conv1D), // (d_ff, d_model)
    ("h.N.mlp.c_proj.bias", Slot::DownBias, AsIs), // [d_model]
    ("h.N.attn.bias", Slot::Ignored, AsIs),        // old checkpoints: the causal-mask buffer
    ("h.N.attn.masked_bias", Slot::Ignored, AsIs), // old checkpoints: the mask's fill value
];

impl Slot {
    /// Whether a model of `family` has a tensor in this slot (`Output` only when untied).
    fn in_family(self, f: Family) -> bool {
        match self {
            Slot::Embed | Slot::FinalNorm | Slot::AttnNorm | Slot::O | Slot::FfnNorm | Slot::Down | Slot::Output | Slot::Ignored => true,
            Slot::Up => !f.fused_gate_up,
            Slot::GateUp => f.fused_gate_up,
            Slot::Q | Slot::K | Slot::V => !f.fused_qkv,
            Slot::Qkv => f.fused_qkv,
            Slot::QBias | Slot::KBias | Slot::VBias => f.qkv_bias && !f.fused_qkv,
            Slot::QkvBias => f.qkv_bias && f.fused_qkv,
            Slot::Gate => f.gated && !f.fused_gate_up,
            Slot::Positions => f.learned_positions,
            Slot::FinalNormBias | Slot::AttnNormBias | Slot::FfnNormBias => f.layer_norm,
            Slot::OBias | Slot::UpBias | Slot::DownBias => f.out_bias,
            Slot::QNorm | Slot::KNorm => f.qk_norm,
            Slot::PostAttnNorm | Slot::PostFfnNorm => f.sandwich_norms,
            Slot::RopeFreqs | Slot::RopeShort | Slot::RopeLong => !f.learned_positions,
        }
    }

    /// How many heads of RoPE-paired rows it holds: Q and K rows, and QK-norm's weights, which
    /// scale one head's dims before the rotation and so move with them.
    fn rotated_heads(self, config: &DecoderConfig) -> Option<usize> {
        match self {
            Slot::Q | Slot::QBias => Some(config.n_head),
            Slot::K | Slot::KBias => Some(config.n_kv_head),
            Slot::QNorm | Slot::KNorm => Some(1),
            _ => None,
        }
    }
}

impl DecoderConfig {
    /// Canonical row-major shape of a tensor in `slot`.
    fn expected_shape(&self, slot: Slot) -> Vec<usize> {
        let (d, q, kv, ff) = (self.d_model, self.n_head * self.head_dim(), self.n_kv_head * self.head_dim(), self.d_ff);
        match slot {
            Slot::Embed | Slot::Output => vec![self.vocab_size, d],
            Slot::Positions => vec![self.context_length, d],
            Slot::FinalNorm
            | Slot::FinalNormBias
            | Slot::AttnNorm
            | Slot::AttnNormBias
            | Slot::FfnNorm
            | Slot::FfnNormBias
            | Slot::OBias
            | Slot::DownBias
            | Slot::PostAttnNorm
            | Slot::PostFfnNorm => vec![d],
            Slot::QNorm | Slot::KNorm => vec![self.head_dim()],
            Slot::RopeFreqs | Slot::RopeShort | Slot::RopeLong => vec![self.rot_dims() / 2],
            Slot::Q => vec![q, d],
            Slot::QBias => vec![q],
            Slot::K | Slot::V => vec![kv, d],
            Slot::KBias | Slot::VBias => vec![kv],
            Slot::Qkv => vec![q + 2 * kv, d],
            Slot::QkvBias => vec![q + 2 * kv],
            Slot::O => vec![d, q],
            Slot::Gate | Slot::Up => vec![ff, d],
            Slot::GateUp => vec![2 * ff, d],
            Slot::UpBias => vec![ff],
            Slot::Down => vec![d, ff],
            Slot::Ignored => vec![],
        }
    }
}

/// A tensor as stored (GGUF blocks, or safetensors' F32/F16/BF16 elements), with its canonical
/// row-major shape. Row operations (the RoPE permutation, splitting GPT-2's fused projection)
/// move whole rows of bytes, so quantised weights stay quantised until an executor takes them.
pub struct Raw<'a> {
    /// Element or block type.
    pub ty: GgmlType,
    /// The stored bytes (borrowed from the file where no conversion moved them).
    pub bytes: Cow<'a, [u8]>,
    /// Canonical shape: `[n]` or `[rows, cols]`.
    pub shape: Vec<usize>,
}

impl Raw<'_> {
    fn cols(&self) -> usize {
        if self.shape.len() == 2 {
            self.shape[1]
        } else {
            1
        }
    }

    /// Bytes per canonical row (a vector's rows are its elements), if rows are whole blocks.
    pub(crate) fn row_bytes(&self) -> Result<usize> {
        let (bs, ts, cols) = (self.ty.block_size(), self.ty.type_size(), self.cols());
        if cols % bs != 0 {
            return Err(Error::Unsupported(format!("{} rows of {cols} values (not whole blocks of {bs})", self.ty.name())));
        }
        Ok(cols / bs * ts)
    }

    /// The index of the first element that dequantises to a non-finite value: only a block's
    /// f16 scale or minimum can be one, the quants are small integers.
    fn first_non_finite(&self) -> Option<usize> {
        let ts = self.ty.type_size();
        let Some(layout) = self.ty.layout() else {
            let mut one = [0f32; 1];
            return self.bytes.chunks_exact(ts).position(|e| dequantize_into(self.ty, e, &mut one).is_err() || !one[0].is_finite());
        };
        let bad = |b: &[u8]| !f16_at(b, layout.d_at).is_finite() || layout.m_at.is_some_and(|at| !f16_at(b, at).is_finite());
        self.bytes.chunks_exact(ts).position(bad).map(|b| b * layout.elements)
    }

    /// The values as f32.
    pub fn to_f32(&self) -> Result<Vec<f32>> {
        dequantize(self.ty, &self.bytes, self.shape.iter().product())
    }

    /// The CPU's form of the matrix (a vector is one row).
    pub fn into_qmatrix(self) -> Result<QMatrix> {
        let (rows, cols) = match self.shape[..] {
            [rows, cols] => (rows, cols),
            [n] => (1, n),
            _ => unreachable!("shapes are checked against expected_shape"),
        };
        QMatrix::new(self.ty, &self.bytes, rows, cols)
    }
}

/// One tensor of a model file: its name, type, row-major shape, and how to read its bytes.
pub struct Entry<'a> {
    /// Name in the file.
    pub name: String,
    /// Element or block type.
    pub ty: GgmlType,
    /// Row-major shape.
    pub shape: Vec<usize>,
    /// Reads the bytes: borrowed from a file in memory, or read from its source now (and
    /// dropped once the executor holds the weight: loading holds one tensor of the file at a time).
    read: Box<dyn Fn() -> Result<Cow<'a, [u8]>> + 'a>,
}

/// A model file's tensors and how to read them: the walk's input, whatever the format.
pub struct Tensors<'a> {
    /// Every tensor of the file (or of all its shards).
    pub entries: Vec<Entry<'a>>,
    /// The format's name tables, searched in order (the first that names a tensor wins).
    tables: &'static [NameTable],
    /// Whether Q and K are stored in half-split RoPE order.
    half_split_rope: bool,
    /// Added to every norm's weights: 1 where the format stores `w` for a norm that scales by
    /// `1 + w` (Gemma's Hugging Face weights), so that every executor runs a plain RMSNorm.
    norm_offset: f32,
    /// `Some(tied)` when the metadata says whether the head is tied (HF); `None` when the
    /// absence of an output tensor says so (GGUF).
    tied: Option<bool>,
    /// The format, for messages.
    format: &'static str,
}

impl<'a> Tensors<'a> {
    /// A GGUF file's tensors.
    pub fn gguf(gguf: &'a Gguf<'_>, config: &DecoderConfig) -> Self {
        let entries = gguf
            .tensors
            .iter()
            .map(|info| {
                let name = info.name.clone();
                let read = move || Ok(gguf.tensor(&name)?.expect("a listed tensor").data);
                Entry { ty: info.ty, shape: info.shape(), read: Box::new(read), name: info.name.clone() }
            })
            .collect();
        // llama.cpp runs `qwen2`, `qwen3` and `gemma3` with NeoX (half-split) RoPE on unpermuted weights.
        let half_split_rope = config.arch.family().gguf_half_split;
        let tables: &'static [NameTable] = if config.arch.family().fused_gate_up { &[GGUF_PHI3_NAMES, GGUF_NAMES] } else { &[GGUF_NAMES] };
        Tensors { entries, tables, half_split_rope, norm_offset: 0.0, tied: None, format: "GGUF" }
    }

    /// Hugging Face safetensors shards (`config` from `config.json`). A tensor may be in any
    /// shard, but in only one.
    pub fn hf(shards: &'a [Safetensors<'a>], config: &DecoderConfig) -> Result<Self> {
        let mut entries: Vec<Entry> = Vec::new();
        let mut seen = std::collections::HashSet::new();
        let gpt2 = config.arch == super::Arch::Gpt2;
        for shard in shards {
            for info in &shard.tensors {
                if !seen.insert(info.name.as_str()) {
                    return Err(Error::tensor(&info.name, "is in more than one safetensors file"));
                }
                let stored = info.name.clone();
                // GPT2LMHeadModel's names have a `transformer.` prefix; the original checkpoint's do not.
                let name = if gpt2 { info.name.strip_prefix("transformer.").unwrap_or(&info.name) } else { &info.name };
                entries.push(Entry {
                    ty: info.dtype.ggml(),
                    shape: info.shape.clone(),
                    read: Box::new(move || Ok(shard.raw(&stored)?.1)),
                    name: name.to_string(),
                });
            }
        }
        let tables: &'static [NameTable] = match config.arch {
            super::Arch::Gpt2 => &[HF_GPT2_NAMES],
            super::Arch::Gemma3 => &[HF_GEMMA3_NAMES, HF_LLAMA_NAMES],
            _ => &[HF_LLAMA_NAMES],
        };
        let norm_offset = if config.arch.family().hf_norm_plus_one { 1.0 } else { 0.0 };
        Ok(Tensors { entries, tables, half_split_rope: !gpt2, norm_offset, tied: Some(config.tied_embeddings), format: "Hugging Face" })
    }
}

/// The walk's state: the file's tensors by slot, checked, and read as they are taken.
struct Walk<'a, 'p> {
    index: HashMap<(Slot, Option<usize>), (Entry<'a>, Layout)>,
    /// GPT-2's K and V (and their biases) split off a fused tensor, waiting to be taken.
    split: HashMap<(Slot, Option<usize>), Raw<'a>>,
    tensors: Tensors<'a>,
    config: &'p DecoderConfig,
    done: usize,
    total: usize,
    progress: &'p mut dyn FnMut(usize, usize),
}

impl<'a, 'p> Walk<'a, 'p> {
    /// Indexes every tensor by its slot: each must map to a slot of this family (an unexpected
    /// one is an error), lie in a block that exists, and have the shape `config` implies.
    fn new(mut tensors: Tensors<'a>, config: &'p DecoderConfig, progress: &'p mut dyn FnMut(usize, usize)) -> Result<Self> {
        let (arch, f) = (config.arch.name(), config.arch.family());
        let mut index = HashMap::new();
        for entry in std::mem::take(&mut tensors.entries) {
            let (pattern, layer) = pattern_of(&entry.name);
            let &(_, slot, layout) = tensors
                .tables
                .iter()
                .find_map(|t| t.iter().find(|(p, _, _)| *p == pattern))
                .filter(|(_, s, _)| s.in_family(f))
                .ok_or_else(|| Error::tensor(&entry.name, format!("is not part of a {} {arch} model (unexpected tensor)", tensors.format)))?;
            if pattern.contains(".N.") && layer.is_none_or(|l| l >= config.n_layer) {
                return Err(Error::tensor(&entry.name, format!("block index is past the {} blocks", config.n_layer)));
            }
            if slot == Slot::Ignored || (slot == Slot::Output && tensors.tied == Some(true)) {
                continue; // a tied head's copy (transformers re-ties it to the embedding on load)
            }
            let want = config.expected_shape(slot);
            let stored: Vec<usize> = if layout == Conv1D { want.iter().rev().copied().collect() } else { want };
            if entry.shape != stored {
                return Err(Error::tensor(&entry.name, format!("has shape {:?}, expected {stored:?}", entry.shape)));
            }
            if let Some((other, _)) = index.insert((slot, layer), (entry, layout)) {
                return Err(Error::tensor(&other.name, "appears twice in the file"));
            }
        }
        let total = index.len();
        Ok(Walk { index, split: HashMap::new(), tensors, config, done: 0, total, progress })
    }

    /// Whether the file has a tensor for `slot`.
    fn has(&self, slot: Slot, layer: Option<usize>) -> bool {
        self.index.contains_key(&(slot, layer))
    }

    /// The tensor for `slot` in canonical form, read now.
    fn take(&mut self, slot: Slot, layer: Option<usize>) -> Result<Raw<'a>> {
        let raw = match self.split.remove(&(slot, layer)) {
            Some(raw) => raw,
            None if self.config.arch.family().fused_qkv && matches!(slot, Slot::Q | Slot::QBias) => self.split_qkv(slot, layer)?,
            None if self.config.arch.family().fused_gate_up && slot == Slot::Gate => self.split_rows(Slot::GateUp, &[Slot::Gate, Slot::Up], layer)?,
            None => self.read(slot, layer)?,
        };
        if let Some(heads) = slot.rotated_heads(self.config).filter(|_| self.tensors.half_split_rope) {
            if raw.cols() == 1 && raw.ty.block_size() != 1 {
                return Err(Error::tensor(&self.name(slot, layer), "is a quantised vector; Ember cannot reorder it for RoPE"));
            }
            let unit = raw.row_bytes().map_err(|e| Error::tensor(&self.name(slot, layer), e.to_string()))?;
            let bytes = rope_interleave(&raw.bytes, heads, self.config.head_dim(), self.config.rot_dims(), unit);
            return Ok(Raw { bytes: Cow::Owned(bytes), ..raw });
        }
        Ok(raw)
    }

    /// Reads a tensor from the file, checks its values, and transposes a `Conv1D` one.
    fn read(&mut self, slot: Slot, layer: Option<usize>) -> Result<Raw<'a>> {
        let (entry, layout) = self.index.remove(&(slot, layer)).ok_or_else(|| Error::tensor(&self.name(slot, layer), "is missing from the file"))?;
        self.done += 1;
        (self.progress)(self.done, self.total);
        let mut raw = Raw { ty: entry.ty, bytes: (entry.read)()?, shape: self.config.expected_shape(slot) };
        if let Some(bad) = raw.first_non_finite() {
            return Err(Error::tensor(&entry.name, format!("holds a non-finite value at element {bad}")));
        }
        if layout == Conv1D {
            // Elements (safetensors holds no blocks), transposed a whole element at a time.
            let ts = raw.ty.type_size();
            let elems: Vec<&[u8]> = raw.bytes.chunks_exact(ts).collect();
            raw.bytes = Cow::Owned(transpose(&elems, raw.shape[1], raw.shape[0]).concat());
        }
        Ok(raw)
    }

    /// A fused projection (or bias) of GPT-2 or Phi-3: rows `[0, q)` are Q, then K, then V.
    /// Returns Q and keeps K and V for their turn (each is permuted for RoPE as it is taken).
    fn split_qkv(&mut self, slot: Slot, layer: Option<usize>) -> Result<Raw<'a>> {
        if slot == Slot::QBias {
            return self.split_rows(Slot::QkvBias, &[Slot::QBias, Slot::KBias, Slot::VBias], layer);
        }
        self.split_rows(Slot::Qkv, &[Slot::Q, Slot::K, Slot::V], layer)
    }

    /// Reads `fused` and splits its rows into `parts`, in order, each as many rows as its own
    /// shape has: returns the first and keeps the others for their turn.
    fn split_rows(&mut self, fused_slot: Slot, parts: &[Slot], layer: Option<usize>) -> Result<Raw<'a>> {
        let fused = self.read(fused_slot, layer)?;
        if fused.cols() == 1 && fused.ty.block_size() != 1 {
            return Err(Error::tensor(&self.name(fused_slot, layer), "is a quantised vector; Ember cannot split it"));
        }
        let unit = fused.row_bytes().map_err(|e| Error::tensor(&self.name(fused_slot, layer), e.to_string()))?;
        let mut at = 0;
        for &part in parts {
            let shape = self.config.expected_shape(part);
            let rows = shape[0];
            let bytes = Cow::Owned(fused.bytes[at * unit..(at + rows) * unit].to_vec());
            self.split.insert((part, layer), Raw { ty: fused.ty, bytes, shape });
            at += rows;
        }
        Ok(self.split.remove(&(parts[0], layer)).expect("just split"))
    }

    /// The file's name for `slot` (for a split part, the fused tensor's).
    fn name(&self, slot: Slot, layer: Option<usize>) -> String {
        let named = match slot {
            Slot::Q | Slot::K | Slot::V if self.config.arch.family().fused_qkv => Slot::Qkv,
            Slot::QBias | Slot::KBias | Slot::VBias if self.config.arch.family().fused_qkv => Slot::QkvBias,
            Slot::Gate | Slot::Up if self.config.arch.family().fused_gate_up => Slot::GateUp,
            s => s,
        };
        let pattern = self.tensors.tables.iter().find_map(|t| t.iter().find(|r| r.1 == named)).map_or("?", |r| r.0);
        layer.map_or(pattern.to_string(), |l| pattern.replacen(".N.", &format!(".{l}."), 1))
    }

    fn vector<E: Executor>(&mut self, exec: &E, slot: Slot, layer: Option<usize>) -> Result<E::Vector> {
        exec.vector(self.take(slot, layer)?.to_f32()?)
    }

    fn matrix<E: Executor>(&mut self, exec: &E, slot: Slot, layer: Option<usize>) -> Result<E::Matrix> {
        exec.matrix(self.take(slot, layer)?, matches!(slot, Slot::Embed | Slot::Positions))
    }

    fn linear<E: Executor>(&mut self, exec: &E, w: Slot, bias: Option<Slot>, layer: Option<usize>) -> Result<Linear<E>> {
        Ok(Linear { weight: self.matrix(exec, w, layer)?, bias: bias.map(|b| self.vector(exec, b, layer)).transpose()? })
    }

    /// A norm: its γ, and its β where the family's norms are LayerNorms and `b` names one.
    fn norm<E: Executor>(&mut self, exec: &E, w: Slot, b: Option<Slot>, layer: Option<usize>) -> Result<Norm<E>> {
        let b = b.filter(|_| self.config.arch.family().layer_norm);
        let mut gamma = self.take(w, layer)?.to_f32()?;
        if self.tensors.norm_offset != 0.0 {
            gamma.iter_mut().for_each(|g| *g += self.tensors.norm_offset); // HF Gemma's 1 + w
        }
        Ok(Norm { gamma: exec.vector(gamma)?, beta: b.map(|b| self.vector(exec, b, layer)).transpose()?, eps: self.config.norm_eps })
    }

    /// An RMSNorm of the family's optional kinds (QK-norm, post-norms), where it has them.
    fn opt_norm<E: Executor>(&mut self, exec: &E, w: Slot, layer: Option<usize>) -> Result<Option<Norm<E>>> {
        w.in_family(self.config.arch.family()).then(|| self.norm(exec, w, None, layer)).transpose()
    }

    /// Matrices multiplied by the same input, stacked where the executor gains from it
    /// ([`Executor::matrices`]): each (as a view of the stack, if stacked) and the stack.
    fn stacked<E: Executor>(&mut self, exec: &E, slots: &[Slot], layer: Option<usize>) -> Result<Stacked<Linear<E>, E::Matrix>> {
        let raws = slots.iter().map(|&s| self.take(s, layer)).collect::<Result<Vec<_>>>()?;
        let (matrices, stack) = exec.matrices(raws)?;
        Ok((matrices.into_iter().map(|weight| Linear { weight, bias: None }).collect(), stack))
    }

    fn layer<E: Executor>(&mut self, exec: &E, l: usize) -> Result<Layer<E>> {
        let f = self.config.arch.family();
        let (l, qkv, out) = (Some(l), |s| f.qkv_bias.then_some(s), |s| f.out_bias.then_some(s));
        let attn_norm = self.norm(exec, Slot::AttnNorm, Some(Slot::AttnNormBias), l)?;
        let (q_norm, k_norm) = (self.opt_norm(exec, Slot::QNorm, l)?, self.opt_norm(exec, Slot::KNorm, l)?);
        // One product for q, k and v (and for gate and up) where at most a bias comes between
        // the product and the fused kernels that read it: not with QK-norm, nor for GPT-2,
        // whose fused projection has no RoPE to fuse with.
        let ([q, k, v], qkv, qkv_bias) = if q_norm.is_some() || (f.qkv_bias && f.fused_qkv) {
            let lin = |w: &mut Self, s, b| w.linear(exec, s, qkv(b), l);
            ([lin(self, Slot::Q, Slot::QBias)?, lin(self, Slot::K, Slot::KBias)?, lin(self, Slot::V, Slot::VBias)?], None, None)
        } else {
            let (mut m, stack) = self.stacked(exec, &[Slot::Q, Slot::K, Slot::V], l)?;
            // Qwen2's biases: each projection keeps its own (the split path's), and a stack
            // also gets them end to end, in the stack's row order, for one add after its product.
            let mut qkv_bias = None;
            if f.qkv_bias {
                let raw = [Slot::QBias, Slot::KBias, Slot::VBias].iter().map(|&s| self.take(s, l)?.to_f32()).collect::<Result<Vec<_>>>()?;
                if stack.is_some() {
                    qkv_bias = Some(exec.vector(raw.concat())?);
                }
                for (lin, b) in m.iter_mut().zip(raw) {
                    lin.bias = Some(exec.vector(b)?);
                }
            }
            (m.try_into().unwrap_or_else(|_| unreachable!("three matrices")), stack, qkv_bias)
        };
        let post_attn_norm = self.opt_norm(exec, Slot::PostAttnNorm, l)?;
        let post_ffn_norm = self.opt_norm(exec, Slot::PostFfnNorm, l)?;
        let o = self.linear(exec, Slot::O, out(Slot::OBias), l)?;
        let ffn_norm = self.norm(exec, Slot::FfnNorm, Some(Slot::FfnNormBias), l)?;
        // The gate before `up`: a fused pair is split when the gate is taken.
        let (gate, up, gate_up) = if f.gated && !f.out_bias {
            let (mut m, stack) = self.stacked(exec, &[Slot::Gate, Slot::Up], l)?;
            let up = m.pop().expect("two matrices");
            (m.pop(), up, stack)
        } else {
            let gate = f.gated.then(|| self.linear(exec, Slot::Gate, None, l)).transpose()?;
            (gate, self.linear(exec, Slot::Up, out(Slot::UpBias), l)?, None)
        };
        let (window, rope) = (self.config.window(l.expect("a block")), self.config.uses_rope(l.expect("a block")));
        let down = self.linear(exec, Slot::Down, out(Slot::DownBias), l)?;
        Ok(Layer { attn_norm, q_norm, k_norm, post_attn_norm, post_ffn_norm, window, rope, qkv, qkv_bias, gate_up, q, k, v, o, ffn_norm, gate, up, down })
    }
}

/// Builds the decoder of shape `config` on `exec` from a file's tensors, with RoPE tables (or
/// the position embedding) for `max_positions` positions. Every tensor must map to a slot of
/// this family (an unexpected one is an error), every slot must be filled (a missing one is an
/// error, but for `output.weight`, whose absence from a GGUF file means a tied head), and every
/// shape must match `config`. `progress(done, total)` is called as each tensor is read.
pub fn build<E: Executor>(
    exec: &E,
    tensors: Tensors<'_>,
    config: &DecoderConfig,
    max_positions: usize,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<Decoder<E>> {
    let f = config.arch.family();
    let tied_in_metadata = tensors.tied;
    let mut walk = Walk::new(tensors, config, progress)?;
    let untied = match tied_in_metadata {
        Some(tied) => !tied,
        None => walk.has(Slot::Output, None),
    };
    let layers = (0..config.n_layer).map(|l| walk.layer(exec, l)).collect::<Result<Vec<_>>>()?;
    let embed = walk.matrix(exec, Slot::Embed, None)?;
    let positions = f.learned_positions.then(|| walk.matrix(exec, Slot::Positions, None)).transpose()?;
    let norm = walk.norm(exec, Slot::FinalNorm, Some(Slot::FinalNormBias), None)?;
    let output = untied.then(|| walk.matrix(exec, Slot::Output, None)).transpose()?;
    let config = config.clone().with_tied_embeddings(output.is_none());
    let factors = rope_factors(&mut walk, &config, max_positions)?;
    let (rope, max_pos) = if f.learned_positions {
        (None, config.context_length.min(max_positions))
    } else {
        let spec = RopeSpec {
            head_dim: config.head_dim(),
            rot_dims: config.rot_dims(),
            theta: config.rope_theta,
            factors: factors.as_deref(),
            mscale: config.longrope.as_ref().map_or(1.0, |l| l.attn_factor),
        };
        (Some(Rope::with_spec(exec, &spec, max_positions)?), max_positions)
    };
    let rope_local = config.rope_theta_local.filter(|_| rope.is_some()).map(|theta| Rope::new(exec, config.head_dim(), max_positions, theta)).transpose()?;
    Ok(Decoder { config, embed, positions, layers, norm, output, rope, rope_local, max_pos })
}

/// The RoPE frequencies' divisors. Llama 3's: the file's `rope_freqs.weight` (GGUF), or computed
/// from `config.json`'s parameters as llama.cpp's converter computes that tensor. LongRoPE's
/// (Phi-3): the short or the long list, by whether `max_positions` passes the context first
/// trained on, from the file's `rope_factors_*.weight` (GGUF) or `config.json`.
fn rope_factors(walk: &mut Walk<'_, '_>, config: &DecoderConfig, max_positions: usize) -> Result<Option<Vec<f32>>> {
    let read = |walk: &mut Walk<'_, '_>, slot: Slot| -> Result<Option<Vec<f32>>> {
        if !walk.has(slot, None) {
            return Ok(None);
        }
        let factors = walk.take(slot, None)?.to_f32()?;
        if let Some(bad) = factors.iter().find(|&&f| !(f > 0.0 && f.is_finite())) {
            return Err(Error::tensor(&walk.name(slot, None), format!("holds the divisor {bad}; RoPE divisors must be positive")));
        }
        Ok(Some(factors))
    };
    let (short, long) = (read(walk, Slot::RopeShort)?, read(walk, Slot::RopeLong)?);
    if let Some(lr) = &config.longrope {
        let from_file = if lr.long(max_positions) { long } else { short };
        let from_config = lr.factors.as_ref().map(|(s, l)| if lr.long(max_positions) { l.clone() } else { s.clone() });
        return Ok(from_file.or(from_config));
    }
    match read(walk, Slot::RopeFreqs)? {
        Some(f) => Ok(Some(f)),
        None => Ok(config.rope_llama3.map(|r| r.factors(config.head_dim(), config.rope_theta))),
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
pub(crate) fn transpose<T: Copy + Default>(x: &[T], rows: usize, cols: usize) -> Vec<T> {
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
///
/// With partial rotary (`rot` < `head_dim`: Phi-4-mini), only a head's first `rot` dims are
/// paired (`i` and `i + rot/2`) and reordered; the rest keep their places and pass through.
pub fn rope_interleave<T: Copy>(x: &[T], heads: usize, head_dim: usize, rot: usize, cols: usize) -> Vec<T> {
    let half = rot / 2;
    let mut out = Vec::with_capacity(x.len());
    for h in 0..heads {
        for i in 0..half {
            for j in 0..2 {
                let old = h * head_dim + j * half + i;
                out.extend_from_slice(&x[old * cols..(old + 1) * cols]);
            }
        }
        out.extend_from_slice(&x[(h * head_dim + rot) * cols..(h + 1) * head_dim * cols]);
    }
    out
}
