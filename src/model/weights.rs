//! Loading a decoder's weights from GGUF through one name table.

use burn::module::Param;
use burn::nn::{Embedding, Linear, RmsNorm};
use burn::tensor::{Device, Tensor, TensorData};

use super::llama::{Attention, Block, Llama, LlamaConfig, Mlp, Rope};
use crate::error::{Error, Result};
use crate::gguf::{Gguf, Metadata};

/// Where a file's tensor goes in the model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Slot {
    Embed,
    FinalNorm,
    Output,
    AttnNorm,
    Q,
    K,
    V,
    O,
    FfnNorm,
    Gate,
    Up,
    Down,
}

/// How the stored tensor becomes ours.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Layout {
    /// Used as stored: norms, and the embedding, whose row-major `(vocab, d_model)` is burn's
    /// `Embedding` layout.
    AsIs,
    /// A projection stored with GGUF dims `[in, out]` (innermost first), i.e. row-major
    /// `(out, in)` as in PyTorch; burn's `Linear` holds `[in, out]`, so it is transposed once
    /// at load time.
    Transpose,
}

/// GGUF llama tensor names. `blk.N.` prefixes the per-block rows. Q and K are used as stored:
/// convert_hf_to_gguf.py already permuted their rows for interleaved RoPE (see `Rope`).
const GGUF_LLAMA: &[(&str, Slot, Layout)] = &[
    ("token_embd.weight", Slot::Embed, Layout::AsIs),          // [vocab, d_model]
    ("output_norm.weight", Slot::FinalNorm, Layout::AsIs),     // [d_model]
    ("output.weight", Slot::Output, Layout::Transpose),        // optional: absent means tied
    ("blk.N.attn_norm.weight", Slot::AttnNorm, Layout::AsIs),  // [d_model]
    ("blk.N.attn_q.weight", Slot::Q, Layout::Transpose),       // (heads·head_dim, d_model)
    ("blk.N.attn_k.weight", Slot::K, Layout::Transpose),       // (kv_heads·head_dim, d_model)
    ("blk.N.attn_v.weight", Slot::V, Layout::Transpose),       // (kv_heads·head_dim, d_model)
    ("blk.N.attn_output.weight", Slot::O, Layout::Transpose),  // (d_model, heads·head_dim)
    ("blk.N.ffn_norm.weight", Slot::FfnNorm, Layout::AsIs),    // [d_model]
    ("blk.N.ffn_gate.weight", Slot::Gate, Layout::Transpose),  // (d_ff, d_model)
    ("blk.N.ffn_up.weight", Slot::Up, Layout::Transpose),      // (d_ff, d_model)
    ("blk.N.ffn_down.weight", Slot::Down, Layout::Transpose),  // (d_model, d_ff)
];

impl LlamaConfig {
    /// Reads the decoder's shape from GGUF metadata (`llama.*` keys) and checks it.
    pub fn from_gguf(meta: &Metadata) -> Result<Self> {
        let arch: String = meta.req("general.architecture")?;
        if arch != "llama" {
            return Err(Error::Unsupported(format!(
                "architecture `{arch}` (Ember runs `llama`-architecture models such as SmolLM2)"
            )));
        }
        let key = |k: &str| format!("{arch}.{k}");
        let n_head: usize = meta.req(&key("attention.head_count"))?;
        let vocab = match meta.opt::<usize>(&key("vocab_size"))? {
            Some(v) => v,
            None => meta.req::<Vec<String>>("tokenizer.ggml.tokens")?.len(),
        };
        let config = LlamaConfig::new(
            meta.req(&key("block_count"))?,
            meta.req(&key("embedding_length"))?,
            n_head,
            meta.opt(&key("attention.head_count_kv"))?.unwrap_or(n_head),
            meta.req(&key("feed_forward_length"))?,
            vocab,
            meta.req(&key("context_length"))?,
        )
        .with_rope_theta(meta.opt::<f32>(&key("rope.freq_base"))?.map_or(10000.0, f64::from))
        .with_norm_eps(f64::from(meta.req::<f32>(&key("attention.layer_norm_rms_epsilon"))?));
        config.validate()?;
        if let Some(n_rot) = meta.opt::<usize>(&key("rope.dimension_count"))? {
            if n_rot != config.head_dim() {
                return Err(Error::Unsupported(format!(
                    "partial RoPE ({n_rot} of {} dims per head)",
                    config.head_dim()
                )));
            }
        }
        if let Some(kind) = meta.opt::<String>(&key("rope.scaling.type"))? {
            if kind != "none" {
                return Err(Error::Unsupported(format!("RoPE scaling `{kind}`")));
            }
        }
        Ok(config)
    }

    /// Row-major shape a tensor in `slot` must have.
    fn expected_shape(&self, slot: Slot) -> Vec<usize> {
        let (d, q, kv, ff) = (self.d_model, self.n_head * self.head_dim(), self.n_kv_head * self.head_dim(), self.d_ff);
        match slot {
            Slot::Embed | Slot::Output => vec![self.vocab_size, d],
            Slot::FinalNorm | Slot::AttnNorm | Slot::FfnNorm => vec![d],
            Slot::Q => vec![q, d],
            Slot::K | Slot::V => vec![kv, d],
            Slot::O => vec![d, q],
            Slot::Gate | Slot::Up => vec![ff, d],
            Slot::Down => vec![d, ff],
        }
    }
}

/// Splits `blk.12.attn_q.weight` into (`blk.N.attn_q.weight`, Some(12)).
fn pattern_of(name: &str) -> (String, Option<usize>) {
    if let Some(rest) = name.strip_prefix("blk.") {
        if let Some((num, tail)) = rest.split_once('.') {
            if let Ok(i) = num.parse::<usize>() {
                return (format!("blk.N.{tail}"), Some(i));
            }
        }
    }
    (name.to_string(), None)
}

/// Row-major `(rows, cols)` → `(cols, rows)`.
fn transpose(x: &[f32], rows: usize, cols: usize) -> Vec<f32> {
    let mut out = vec![0f32; x.len()];
    for (r, row) in x.chunks_exact(cols).enumerate() {
        for (c, &v) in row.iter().enumerate() {
            out[c * rows + r] = v;
        }
    }
    out
}

type Slots = std::collections::HashMap<(Slot, Option<usize>), Tensor<2>>;

/// Builds the decoder from a parsed GGUF file. Every tensor in the file must map to a slot
/// (an unexpected one is an error), every slot must be filled (a missing one is an error, but
/// for `output.weight`, whose absence means a tied head), and every shape must match `config`.
pub fn load_llama(
    gguf: &Gguf<'_>,
    config: &LlamaConfig,
    max_positions: usize,
    device: &Device,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<(Llama, LlamaConfig)> {
    let mut slots: Slots = Default::default();
    for (i, info) in gguf.tensors.iter().enumerate() {
        let (pattern, layer) = pattern_of(&info.name);
        let &(_, slot, layout) = GGUF_LLAMA
            .iter()
            .find(|(p, _, _)| *p == pattern)
            .ok_or_else(|| Error::tensor(&info.name, "is not part of a llama model (unexpected tensor)"))?;
        if pattern.starts_with("blk.N.") && layer.is_none_or(|l| l >= config.n_layer) {
            return Err(Error::tensor(&info.name, format!("block index is past the {} blocks", config.n_layer)));
        }
        let want = config.expected_shape(slot);
        if info.shape() != want {
            return Err(Error::tensor(&info.name, format!("has shape {:?}, expected {want:?}", info.shape())));
        }
        let view = gguf.tensor(&info.name).expect("listed tensor");
        let values = view.to_f32()?;
        if let Some(bad) = values.iter().position(|v| !v.is_finite()) {
            return Err(Error::tensor(&info.name, format!("holds a non-finite value at element {bad}")));
        }
        let (rows, cols) = if want.len() == 2 { (want[0], want[1]) } else { (1, want[0]) };
        let data = match layout {
            Layout::AsIs => TensorData::new(values, [rows, cols]),
            Layout::Transpose => TensorData::new(transpose(&values, rows, cols), [cols, rows]),
        };
        slots.insert((slot, layer), Tensor::from_data(data, device));
        progress(i + 1, gguf.tensors.len());
    }

    let mut take = |slot: Slot, layer: Option<usize>| -> Result<Tensor<2>> {
        slots.remove(&(slot, layer)).ok_or_else(|| {
            let pattern = GGUF_LLAMA.iter().find(|r| r.1 == slot).expect("every slot has a row").0;
            let name = layer.map_or(pattern.to_string(), |l| pattern.replace(".N.", &format!(".{l}.")));
            Error::tensor(&name, "is missing from the file")
        })
    };
    let linear = |w: Tensor<2>| Linear { weight: Param::from_tensor(w), bias: None };
    let eps = config.norm_eps;
    let norm = |w: Tensor<2>| {
        let [_, d] = w.dims();
        RmsNorm { gamma: Param::from_tensor(w.reshape([d])), epsilon: eps }
    };

    let mut layers = Vec::with_capacity(config.n_layer);
    for l in (0..config.n_layer).map(Some) {
        layers.push(Block {
            attn_norm: norm(take(Slot::AttnNorm, l)?),
            attn: Attention {
                wq: linear(take(Slot::Q, l)?),
                wk: linear(take(Slot::K, l)?),
                wv: linear(take(Slot::V, l)?),
                wo: linear(take(Slot::O, l)?),
                n_head: config.n_head,
                n_kv_head: config.n_kv_head,
                head_dim: config.head_dim(),
            },
            ffn_norm: norm(take(Slot::FfnNorm, l)?),
            mlp: Mlp { gate: linear(take(Slot::Gate, l)?), up: linear(take(Slot::Up, l)?), down: linear(take(Slot::Down, l)?) },
        });
    }
    let embed = Embedding { weight: Param::from_tensor(take(Slot::Embed, None)?) };
    let final_norm = norm(take(Slot::FinalNorm, None)?);
    let output = take(Slot::Output, None).ok().map(linear);
    let config = config.clone().with_tied_embeddings(output.is_none());
    let model = Llama {
        embed,
        layers,
        norm: final_norm,
        output,
        rope: Rope::new(config.head_dim(), max_positions, config.rope_theta, device),
    };
    Ok((model, config))
}
