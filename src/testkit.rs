//! A tiny random chat model in a real GGUF file (byte-level BPE tokenizer, ChatML template,
//! 2 blocks of width 64, a 128-position context), built in code. The test suites use it natively
//! and in the browser, where it makes every token take milliseconds, so that the app's behaviour
//! can be tested apart from the real model's speed. Its output is deterministic noise.

use crate::gguf::writer::GgufWriter;
use crate::gguf::{quant, GgmlType, Value};

const CHATML: &str = "{% for m in messages %}{{ '<|im_start|>' + m['role'] + '\n' + m['content'] + '<|im_end|>\n' }}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}";

/// A tiny llama GGUF: 2 blocks of width 64, 4 heads over 2 KV heads, random weights.
pub fn tiny_model_bytes() -> Vec<u8> {
    tiny_model_with(&[])
}

/// The tiny model with extra metadata (e.g. for the model card).
pub fn tiny_model_with(extra: &[(&str, Value)]) -> Vec<u8> {
    let mut w = tiny_model_writer();
    for (k, v) in extra {
        w.meta(k, v.clone());
    }
    w.to_bytes()
}

/// The tiny model's shape: 2 blocks of width 64, 4 heads over 2 KV heads.
const TINY: RandomShape = RandomShape { width: 64, heads: 4, kv_heads: 2, ff: 128, layers: 2 };

/// The `llama.*` keys of a model of `shape` with a context of `context` positions (RoPE base
/// 10⁴, RMSNorm ε 1e-5).
fn llama_meta(w: &mut GgufWriter, shape: RandomShape, context: u32) {
    let RandomShape { width, heads, kv_heads, ff, layers } = shape;
    w.meta("llama.block_count", Value::U32(layers as u32))
        .meta("llama.context_length", Value::U32(context))
        .meta("llama.embedding_length", Value::U32(width as u32))
        .meta("llama.feed_forward_length", Value::U32(ff as u32))
        .meta("llama.attention.head_count", Value::U32(heads as u32))
        .meta("llama.attention.head_count_kv", Value::U32(kv_heads as u32))
        .meta("llama.rope.freq_base", Value::F32(10000.0))
        .meta("llama.attention.layer_norm_rms_epsilon", Value::F32(1e-5));
}

/// The tiny model's tokenizer (a byte-level BPE: three specials, the 256 bytes, three merges)
/// and its ChatML template, as metadata; returns the vocabulary's size.
fn tiny_tokenizer(w: &mut GgufWriter) -> usize {
    let chars = crate::tokenizer::byte_level_chars();
    let mut tokens: Vec<String> = vec!["<|endoftext|>".into(), "<|im_start|>".into(), "<|im_end|>".into()];
    let mut types = vec![3i32; 3];
    tokens.extend(chars.iter().map(|c| c.to_string()));
    types.extend(std::iter::repeat_n(1, 256));
    let sp = chars[b' ' as usize];
    let merges = [(format!("{sp}"), "t".to_string()), ("h".into(), "e".into()), (format!("{sp}t"), "he".to_string())];
    for (a, b) in &merges {
        tokens.push(format!("{a}{b}"));
        types.push(1);
    }
    let s = |x: &str| Value::String(x.into());
    w.meta("tokenizer.ggml.model", s("gpt2"))
        .meta("tokenizer.ggml.pre", s("smollm"))
        .meta("tokenizer.ggml.tokens", Value::Array(tokens.iter().map(|t| s(t)).collect()))
        .meta("tokenizer.ggml.token_type", Value::Array(types.iter().map(|&t| Value::I32(t)).collect()))
        .meta("tokenizer.ggml.merges", Value::Array(merges.iter().map(|(a, b)| s(&format!("{a} {b}"))).collect()))
        .meta("tokenizer.ggml.bos_token_id", Value::U32(1))
        .meta("tokenizer.ggml.eos_token_id", Value::U32(2))
        .meta("tokenizer.chat_template", s(CHATML));
    tokens.len()
}

/// The tiny model before it is written, for tests that craft variants of it.
pub fn tiny_model_writer() -> GgufWriter {
    tiny_model_writer_with_context(128)
}

/// The same weights with room for `context` positions (RoPE needs no more weights): the
/// browser's structured-output test writes whole JSON answers byte by byte with it.
pub fn tiny_model_writer_with_context(context: u32) -> GgufWriter {
    let RandomShape { width: d, heads: nh, kv_heads: nkv, ff, layers: nl } = TINY;
    let hd = d / nh;

    let mut seed = 0x2545_F491_4F6C_DD1Du64;
    let mut rand = |n: usize, scale: f32| -> Vec<f32> {
        (0..n)
            .map(|_| {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                ((seed >> 40) as f32 / (1u64 << 24) as f32 - 0.5) * 2.0 * scale
            })
            .collect()
    };
    let mut w = GgufWriter::new();
    w.meta("general.architecture", Value::String("llama".into())).meta("general.name", Value::String("tiny test llama".into()));
    llama_meta(&mut w, TINY, context);
    let vocab = tiny_tokenizer(&mut w);
    w.tensor("token_embd.weight", &[d, vocab], GgmlType::Q8_0, quant::quantize_q8_0(&rand(d * vocab, 1.0)));
    for l in 0..nl {
        let p = |n: &str| format!("blk.{l}.{n}.weight");
        // GGUF dims are [in, out].
        w.tensor_f32(&p("attn_norm"), &[d], &vec![1.0; d]);
        w.tensor_f32(&p("attn_q"), &[d, d], &rand(d * d, 0.3));
        w.tensor_f32(&p("attn_k"), &[d, nkv * hd], &rand(d * nkv * hd, 0.3));
        w.tensor_f32(&p("attn_v"), &[d, nkv * hd], &rand(d * nkv * hd, 0.3));
        w.tensor(&p("attn_output"), &[d, d], GgmlType::Q4_1, quant::quantize_q4_1(&rand(d * d, 0.3)));
        w.tensor_f32(&p("ffn_norm"), &[d], &vec![1.0; d]);
        w.tensor_f32(&p("ffn_gate"), &[d, ff], &rand(d * ff, 0.3));
        w.tensor_f32(&p("ffn_up"), &[d, ff], &rand(d * ff, 0.3));
        w.tensor_f32(&p("ffn_down"), &[ff, d], &rand(ff * d, 0.3));
    }
    w.tensor_f32("output_norm.weight", &[d], &vec![1.0; d]);
    w
}

/// The dimensions of a generated random model (Llama layout, the tiny model's tokenizer).
#[derive(Debug, Clone, Copy)]
pub struct RandomShape {
    /// Hidden width.
    pub width: usize,
    /// Query heads.
    pub heads: usize,
    /// Key/value heads.
    pub kv_heads: usize,
    /// MLP width.
    pub ff: usize,
    /// Blocks.
    pub layers: usize,
}

impl RandomShape {
    /// About 1.2 GB in Q8_0: TinyLlama's block shape, 26 blocks.
    pub const BIG: RandomShape = RandomShape { width: 2048, heads: 32, kv_heads: 4, ff: 5632, layers: 26 };
}

/// Writes a random Llama model of `shape`, every matrix in Q8_0, generated a tensor at a time
/// (so a test can write a file of gigabytes without holding it): the tiny model's tokenizer and
/// template, weights of standard deviation about 0.02, unit norms.
pub fn write_random_model(out: &mut impl std::io::Write, shape: RandomShape) -> std::io::Result<()> {
    let mut w = GgufWriter::new();
    let RandomShape { width: d, heads, kv_heads, ff, layers } = shape;
    w.meta("general.architecture", Value::String("llama".into())).meta("general.name", Value::String(format!("random llama {d}x{layers}")));
    llama_meta(&mut w, shape, 2048);
    let vocab = tiny_tokenizer(&mut w);
    let kv = kv_heads * d / heads;
    let q8 = |w: &mut GgufWriter, name: &str, dims: &[usize]| {
        w.tensor(name, dims, GgmlType::Q8_0, Vec::new());
    };
    q8(&mut w, "token_embd.weight", &[d, vocab]);
    for l in 0..layers {
        let p = |n: &str| format!("blk.{l}.{n}.weight");
        w.tensor(&p("attn_norm"), &[d], GgmlType::F32, Vec::new());
        q8(&mut w, &p("attn_q"), &[d, d]);
        q8(&mut w, &p("attn_k"), &[d, kv]);
        q8(&mut w, &p("attn_v"), &[d, kv]);
        q8(&mut w, &p("attn_output"), &[d, d]);
        w.tensor(&p("ffn_norm"), &[d], GgmlType::F32, Vec::new());
        q8(&mut w, &p("ffn_gate"), &[d, ff]);
        q8(&mut w, &p("ffn_up"), &[d, ff]);
        q8(&mut w, &p("ffn_down"), &[ff, d]);
    }
    w.tensor("output_norm.weight", &[d], GgmlType::F32, Vec::new());
    let types = w.tensor_types();
    // Q8_0 quants uniform in ±127 have a standard deviation of about 73: a scale of 2.7e-4 makes it 0.02.
    let scale = half::f16::from_f32(2.7e-4).to_le_bytes();
    let mut seed = 0x9E37_79B9_7F4A_7C15u64;
    w.write_generated(out, |i, buf| {
        if types[i] == GgmlType::F32 {
            buf.chunks_exact_mut(4).for_each(|c| c.copy_from_slice(&1f32.to_le_bytes()));
            return;
        }
        for block in buf.chunks_exact_mut(34) {
            block[..2].copy_from_slice(&scale);
            for q in block[2..].chunks_mut(8) {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                // Bytes of -127..=127 (i8::MIN has no negation in Q8_0's symmetric range).
                q.iter_mut().zip(seed.to_le_bytes()).for_each(|(q, b)| *q = (b as i8).max(-127) as u8);
            }
        }
    })
}

/// The tiny model made to loop: every token's embedding is the same vector `e`, the blocks add
/// nothing (zero output projections), and the head scores `token` alone (its row is `e`), so
/// greedy decoding says `token` forever. The loop guard's end-to-end tests run it.
pub fn tiny_loop_model_bytes(token: u32) -> Vec<u8> {
    let mut w = tiny_model_writer();
    let RandomShape { width: d, ff, layers, .. } = TINY;
    let vocab = match w.get_meta("tokenizer.ggml.tokens") {
        Some(Value::Array(t)) => t.len(),
        _ => unreachable!("the tiny model has a vocabulary"),
    };
    let e: Vec<f32> = (0..d).map(|i| if i % 2 == 0 { 0.5 } else { -0.25 }).collect();
    let rows: Vec<f32> = std::iter::repeat_n(e.clone(), vocab).flatten().collect();
    w.edit_tensor("token_embd.weight", |_, _, _, data| *data = quant::quantize_q8_0(&rows));
    for l in 0..layers {
        w.edit_tensor(&format!("blk.{l}.attn_output.weight"), |_, _, _, data| *data = quant::quantize_q4_1(&vec![0.0; d * d]));
        w.edit_tensor(&format!("blk.{l}.ffn_down.weight"), |_, _, ty, data| {
            *ty = GgmlType::F32;
            *data = vec![0u8; ff * d * 4];
        });
    }
    let mut head = vec![0f32; vocab * d];
    head[token as usize * d..(token as usize + 1) * d].copy_from_slice(&e);
    w.tensor_f32("output.weight", &[d, vocab], &head);
    w.set_meta("general.name", Value::String("tiny looping llama".into()));
    w.to_bytes()
}

/// The backends the native tests run on: the CPU always, wgpu (lavapipe natively) unless
/// `EMBER_TEST_BACKENDS` says otherwise (e.g. `cpu`).
#[cfg(feature = "engine")]
pub fn test_backends() -> Vec<crate::Backend> {
    let list = std::env::var("EMBER_TEST_BACKENDS").unwrap_or_else(|_| "cpu,wgpu".into());
    list.split(',').filter_map(|b| crate::Backend::parse(b.trim())).collect()
}
