//! The bad-file corpus: crafted GGUF files, each of which must fail to load with its own clear
//! error (no panic, no hang), while parsing allocates at most a bounded multiple of the file's
//! size. The files are also written to `tests/artifacts/bad/`, where the fuzzers take them as
//! seeds and RELIABILITY.md counts them.

use ember::gguf::writer::GgufWriter;
use ember::gguf::{Gguf, Value};
use ember::model::DecoderConfig;
use ember::testkit::tiny_model_writer;
use ember::{ChatTemplate, Engine, LoadOptions, Tokenizer};

use crate::alloc::peak_during;

/// One crafted file and a phrase its error must contain.
pub struct Bad {
    pub name: &'static str,
    pub bytes: Vec<u8>,
    pub expect: &'static str,
}

fn tiny(edit: impl FnOnce(&mut GgufWriter)) -> Vec<u8> {
    let mut w = tiny_model_writer();
    edit(&mut w);
    w.to_bytes()
}

fn s(x: &str) -> Value {
    Value::String(x.into())
}

/// A GGUF file written byte by byte, for headers the writer would never produce.
#[derive(Default)]
struct Raw(Vec<u8>);

impl Raw {
    fn header(version: u32, n_tensors: u64, n_kv: u64) -> Self {
        let mut r = Raw::default();
        r.0.extend_from_slice(b"GGUF");
        r.u32(version).u64(n_tensors).u64(n_kv);
        r
    }
    fn u32(&mut self, v: u32) -> &mut Self {
        self.0.extend_from_slice(&v.to_le_bytes());
        self
    }
    fn u64(&mut self, v: u64) -> &mut Self {
        self.0.extend_from_slice(&v.to_le_bytes());
        self
    }
    fn str(&mut self, v: &[u8]) -> &mut Self {
        self.u64(v.len() as u64);
        self.0.extend_from_slice(v);
        self
    }
    /// A tensor header: name, dims, type code, offset.
    fn tensor(&mut self, name: &str, dims: &[u64], ty: u32, offset: u64) -> &mut Self {
        self.str(name.as_bytes()).u32(dims.len() as u32);
        dims.iter().for_each(|&d| {
            self.u64(d);
        });
        self.u32(ty).u64(offset)
    }
    /// Pads to the data section and appends `n` data bytes.
    fn data(&mut self, n: usize) -> Vec<u8> {
        let mut out = std::mem::take(&mut self.0);
        out.resize(out.len().div_ceil(32) * 32 + n, 0);
        out
    }
}

/// An f32 tensor's bytes with one value replaced.
fn poison(data: &mut [u8], value: f32) {
    data[4..8].copy_from_slice(&value.to_le_bytes());
}

/// The corpus. Each entry names what is wrong; `expect` is the phrase the user sees.
pub fn corpus() -> Vec<Bad> {
    let good = tiny(|_| {});
    let html = b"<!doctype html><html><head><title>404 Not Found</title></head><body>Not Found</body></html>".to_vec();
    let mut v = vec![
        // ---- the container
        Bad { name: "empty", bytes: vec![], expect: "truncated: magic" },
        Bad { name: "html-page", bytes: html, expect: "this is not a GGUF file" },
        Bad { name: "ggml-magic", bytes: [b"ggml".as_slice(), &good[4..]].concat(), expect: "wrong magic \"ggml\"" },
        Bad { name: "version-1", bytes: Raw::header(1, 0, 0).data(0), expect: "version 1 is not supported" },
        Bad { name: "version-4", bytes: Raw::header(4, 0, 0).data(0), expect: "version 4 is not supported" },
        Bad { name: "truncated-header", bytes: good[..12].to_vec(), expect: "truncated: tensor count" },
        Bad { name: "truncated-metadata", bytes: good[..2000].to_vec(), expect: "bytes left in the file could hold" },
        Bad { name: "truncated-data", bytes: good[..good.len() - 100].to_vec(), expect: "runs past the end of the file" },
        Bad { name: "absurd-tensor-count", bytes: Raw::header(3, u64::MAX / 2, 0).data(64), expect: "tensor count is" },
        Bad { name: "absurd-metadata-count", bytes: Raw::header(3, 0, 1 << 40).data(64), expect: "metadata count is" },
        Bad {
            name: "absurd-key-length",
            bytes: {
                let mut r = Raw::header(3, 0, 1);
                r.u64(u64::MAX).data(64)
            },
            expect: "metadata key is 18446744073709551615",
        },
        Bad {
            name: "absurd-array-length",
            bytes: {
                let mut r = Raw::header(3, 0, 1);
                r.str(b"general.tags").u32(9).u32(0).u64(1 << 50).data(64)
            },
            expect: "array length of `general.tags`",
        },
        Bad {
            name: "array-memory-bomb",
            // 2 MB of one-byte elements would become 64 MB of parsed values.
            bytes: {
                let mut r = Raw::header(3, 0, 1);
                r.str(b"general.tags").u32(9).u32(0).u64(2 << 20);
                r.data(2 << 20)
            },
            expect: "more memory than a file of this size can justify",
        },
        Bad {
            name: "unknown-value-type",
            bytes: {
                let mut r = Raw::header(3, 0, 1);
                r.str(b"general.name").u32(99).data(64)
            },
            expect: "unknown value type 99",
        },
        Bad {
            name: "unknown-array-type",
            bytes: {
                let mut r = Raw::header(3, 0, 1);
                r.str(b"general.tags").u32(9).u32(42).u64(1).data(64)
            },
            expect: "array of unknown type 42",
        },
        Bad {
            name: "bad-bool",
            bytes: {
                let mut r = Raw::header(3, 0, 1);
                r.str(b"tokenizer.ggml.add_bos_token").u32(7).0.push(7);
                r.data(64)
            },
            expect: "bool of value 7",
        },
        Bad {
            name: "non-utf8-key",
            bytes: {
                let mut r = Raw::header(3, 0, 1);
                r.str(b"general.\xff\xfe").u32(4).u32(1).data(64)
            },
            expect: "metadata key is not valid UTF-8",
        },
        Bad {
            name: "deep-arrays",
            bytes: {
                let mut r = Raw::header(3, 0, 1);
                // An array of arrays of arrays of ... each holding one.
                r.str(b"general.tags").u32(9);
                for _ in 0..6 {
                    r.u32(9).u64(1);
                }
                r.data(64)
            },
            expect: "nests arrays deeper than",
        },
        Bad {
            name: "duplicate-key",
            bytes: tiny(|w| {
                w.meta("general.name", s("again"));
            }),
            expect: "duplicate metadata key `general.name`",
        },
        Bad {
            name: "alignment-3",
            bytes: tiny(|w| {
                w.meta("general.alignment", Value::U32(3));
            }),
            expect: "general.alignment must be a power-of-two",
        },
        // ---- the tensor table
        Bad { name: "tensor-0-dims", bytes: Raw::header(3, 1, 0).tensor("t", &[], 0, 0).data(64), expect: "has 0 dims" },
        Bad { name: "tensor-5-dims", bytes: Raw::header(3, 1, 0).tensor("t", &[1, 1, 1, 1, 1], 0, 0).data(64), expect: "has 5 dims" },
        Bad { name: "tensor-dim-0", bytes: Raw::header(3, 1, 0).tensor("t", &[4, 0], 0, 0).data(64), expect: "has an invalid dim 0" },
        Bad {
            name: "tensor-count-overflow",
            bytes: Raw::header(3, 1, 0).tensor("t", &[1 << 32, 1 << 32, 1 << 32], 0, 0).data(64),
            expect: "element count of dims",
        },
        Bad { name: "tensor-unknown-type", bytes: Raw::header(3, 1, 0).tensor("t", &[32], 99, 0).data(64), expect: "type number 99 is not one Ember reads" },
        Bad { name: "tensor-partial-block", bytes: Raw::header(3, 1, 0).tensor("t", &[33], 8, 0).data(64), expect: "not a multiple of the Q8_0 block size" },
        Bad { name: "tensor-misaligned", bytes: Raw::header(3, 1, 0).tensor("t", &[4], 0, 4).data(64), expect: "is not aligned to 32" },
        Bad { name: "tensor-past-end", bytes: Raw::header(3, 1, 0).tensor("t", &[16], 0, 1 << 40).data(64), expect: "runs past the end of the file" },
        Bad {
            name: "tensor-overlap",
            bytes: Raw::header(3, 2, 0).tensor("a", &[16], 0, 0).tensor("b", &[16], 0, 32).data(96),
            expect: "overlaps the data of `a`",
        },
        Bad {
            name: "tensor-twice",
            bytes: Raw::header(3, 2, 0).tensor("a", &[8], 0, 0).tensor("a", &[8], 0, 32).data(64),
            expect: "appears twice in the file",
        },
        // ---- the model's config
        Bad {
            name: "no-block-count",
            bytes: tiny(|w| {
                w.remove_meta("llama.block_count");
            }),
            expect: "lacks the metadata key `llama.block_count`",
        },
        Bad {
            name: "block-count-string",
            bytes: tiny(|w| {
                w.set_meta("llama.block_count", s("2"));
            }),
            expect: "`llama.block_count`: expected an integer",
        },
        Bad {
            name: "negative-head-count",
            bytes: tiny(|w| {
                w.set_meta("llama.attention.head_count", Value::I32(-4));
            }),
            expect: "-4 is not a valid count",
        },
        Bad {
            name: "arch-mamba",
            bytes: tiny(|w| {
                w.set_meta("general.architecture", s("mamba"));
            }),
            expect: "architecture `mamba`",
        },
        Bad {
            name: "heads-do-not-divide",
            bytes: tiny(|w| {
                w.set_meta("llama.attention.head_count", Value::U32(5));
            }),
            expect: "embedding width 64 is not divisible by 5 heads",
        },
        Bad {
            name: "context-0",
            bytes: tiny(|w| {
                w.set_meta("llama.context_length", Value::U32(0));
            }),
            expect: "context length 0 is outside",
        },
        Bad {
            name: "kv-heads-do-not-group",
            bytes: tiny(|w| {
                w.set_meta("llama.attention.head_count_kv", Value::U32(3));
            }),
            expect: "4 heads cannot be grouped over 3 KV heads",
        },
        Bad {
            name: "epsilon-negative",
            bytes: tiny(|w| {
                w.set_meta("llama.attention.layer_norm_rms_epsilon", Value::F32(-1.0));
            }),
            expect: "RMSNorm epsilon -1 must be positive",
        },
        Bad {
            name: "rope-base-nan",
            bytes: tiny(|w| {
                w.set_meta("llama.rope.freq_base", Value::F32(f32::NAN));
            }),
            expect: "RoPE base NaN",
        },
        Bad {
            name: "partial-rope",
            bytes: tiny(|w| {
                w.set_meta("llama.rope.dimension_count", Value::U32(8));
            }),
            expect: "partial RoPE",
        },
        Bad {
            name: "rope-scaling",
            bytes: tiny(|w| {
                w.set_meta("llama.rope.scaling.type", s("yarn"));
            }),
            expect: "RoPE scaling `yarn`",
        },
        // ---- tensors against the config
        Bad {
            name: "width-disagrees",
            bytes: tiny(|w| {
                w.set_meta("llama.embedding_length", Value::U32(32));
            }),
            expect: "expected [",
        },
        Bad {
            name: "missing-tensor",
            bytes: tiny(|w| {
                w.remove_tensor("blk.1.ffn_down.weight");
            }),
            expect: "`blk.1.ffn_down.weight`: is missing",
        },
        Bad {
            name: "unexpected-tensor",
            bytes: tiny(|w| {
                w.tensor_f32("blk.0.attn_q.bias", &[64], &[0.0; 64]);
            }),
            expect: "unexpected tensor",
        },
        Bad {
            name: "block-past-end",
            bytes: tiny(|w| {
                w.edit_tensor("blk.1.ffn_up.weight", |n, _, _, _| *n = "blk.7.ffn_up.weight".into());
            }),
            expect: "block index is past the 2 blocks",
        },
        Bad {
            name: "nan-weight",
            bytes: tiny(|w| {
                w.edit_tensor("blk.0.attn_q.weight", |_, _, _, d| poison(d, f32::NAN));
            }),
            expect: "non-finite value at element 1",
        },
        Bad {
            name: "inf-weight",
            bytes: tiny(|w| {
                w.edit_tensor("blk.1.ffn_gate.weight", |_, _, _, d| poison(d, f32::INFINITY));
            }),
            expect: "`blk.1.ffn_gate.weight`: holds a non-finite",
        },
        Bad {
            name: "nan-in-q8-scale",
            // A Q8_0 block's f16 scale set to NaN.
            bytes: tiny(|w| {
                w.edit_tensor("token_embd.weight", |_, _, _, d| d[0..2].copy_from_slice(&half::f16::NAN.to_le_bytes()));
            }),
            expect: "`token_embd.weight`: holds a non-finite",
        },
        // ---- the tokenizer
        Bad {
            name: "no-tokens",
            bytes: tiny(|w| {
                w.remove_meta("tokenizer.ggml.tokens");
            }),
            expect: "lacks the metadata key `tokenizer.ggml.tokens`",
        },
        Bad {
            name: "sentencepiece-without-scores",
            bytes: tiny(|w| {
                w.set_meta("tokenizer.ggml.model", s("llama"));
            }),
            expect: "lacks the metadata key `tokenizer.ggml.scores`",
        },
        Bad {
            name: "sentencepiece-short-scores",
            bytes: tiny(|w| {
                w.set_meta("tokenizer.ggml.model", s("llama"));
                w.set_meta("tokenizer.ggml.scores", Value::Array(vec![Value::F32(0.0)]));
            }),
            expect: "`tokenizer.ggml.scores`: has 1 entries for",
        },
        Bad {
            name: "unigram-tokenizer",
            bytes: tiny(|w| {
                w.set_meta("tokenizer.ggml.model", s("t5"));
            }),
            expect: "tokenizer model `t5`",
        },
        Bad {
            name: "unknown-pre-tokenizer",
            bytes: tiny(|w| {
                w.set_meta("tokenizer.ggml.pre", s("klingon"));
            }),
            expect: "pre-tokenizer `klingon`",
        },
        Bad {
            name: "merge-not-in-vocab",
            bytes: tiny(|w| {
                w.set_meta("tokenizer.ggml.merges", Value::Array(vec![s("q z")]));
            }),
            expect: "merge 0 `q z` uses tokens that are not in the vocabulary",
        },
        Bad {
            name: "merge-one-token",
            bytes: tiny(|w| {
                w.set_meta("tokenizer.ggml.merges", Value::Array(vec![s("he")]));
            }),
            expect: "merge 0 `he` is not two tokens",
        },
        Bad {
            name: "token-types-short",
            bytes: tiny(|w| {
                w.set_meta("tokenizer.ggml.token_type", Value::Array(vec![Value::I32(1); 5]));
            }),
            expect: "has 5 entries for",
        },
        Bad {
            name: "duplicate-token",
            bytes: tiny(|w| {
                w.set_meta("tokenizer.ggml.tokens", Value::Array([0, 1, 1].iter().map(|i| s(&format!("t{i}"))).collect()));
                w.remove_meta("tokenizer.ggml.token_type");
                w.set_meta("tokenizer.ggml.merges", Value::Array(vec![]));
            }),
            expect: "lists `t1` twice",
        },
        Bad {
            name: "bos-past-vocab",
            bytes: tiny(|w| {
                w.set_meta("tokenizer.ggml.bos_token_id", Value::U32(1 << 20));
            }),
            expect: "token id 1048576 is past the vocabulary",
        },
        Bad {
            name: "more-tokens-than-embeddings",
            bytes: tiny(|w| {
                w.set_meta("llama.vocab_size", Value::U32(100));
            }),
            expect: "the tokenizer has 262 tokens but the model only 100 embeddings",
        },
        // ---- the chat template
        Bad {
            name: "template-syntax",
            bytes: tiny(|w| {
                w.set_meta("tokenizer.chat_template", s("{% for m in messages %}"));
            }),
            expect: "syntax error",
        },
        Bad {
            name: "template-endless",
            bytes: tiny(|w| {
                w.set_meta("tokenizer.chat_template", s("{% for i in range(100000) %}{% for j in range(100000) %}x{% endfor %}{% endfor %}"));
            }),
            expect: "runs too long",
        },
        Bad {
            name: "template-recursion",
            bytes: tiny(|w| {
                w.set_meta("tokenizer.chat_template", s("{% macro f(n) %}{{ f(n + 1) }}{% endmacro %}{{ f(0) }}"));
            }),
            expect: "recursion",
        },
        Bad {
            name: "template-huge-output",
            bytes: tiny(|w| {
                w.set_meta("tokenizer.chat_template", s("{% for i in range(99999) %}{{ messages | tojson }}{{ 'x' * 200 }}{% endfor %}"));
            }),
            expect: "bytes of prompt",
        },
        Bad {
            // Found by the template fuzzer: a lazily repeated sequence, printed, ran for days.
            name: "template-prints-repeated-sequence",
            bytes: tiny(|w| {
                w.set_meta("tokenizer.chat_template", s("{{ messages * 2 * 111111111122221 }}"));
            }),
            expect: "the template prints a lazy sequence of 666666666733326 items",
        },
        Bad {
            // Found by the template fuzzer next: an empty sequence repeated 24 million times,
            // printed, walked 24 million empty repeats inside one step.
            name: "template-prints-empty-repetition",
            bytes: tiny(|w| {
                w.set_meta("tokenizer.chat_template", s("{{ [] * 2 * 12200000 }}"));
            }),
            expect: "the template prints a lazy sequence of 0 items",
        },
        Bad {
            name: "template-raises",
            bytes: tiny(|w| {
                w.set_meta("tokenizer.chat_template", s("{{ raise_exception('Conversation roles must alternate') }}"));
            }),
            expect: "roles must alternate",
        },
    ];
    v.sort_by_key(|b| b.name);
    v
}

fn load(bytes: &[u8]) -> ember::Result<Engine> {
    Engine::load(bytes, ember::backend::Device::Cpu, LoadOptions { max_context: 64, ..LoadOptions::default() })
}

/// What loading reads before any weight reaches the device: header, metadata, tensor table,
/// config, tokenizer, chat template.
fn parse_all(bytes: &[u8]) -> ember::Result<()> {
    let g = Gguf::parse(bytes)?;
    DecoderConfig::from_gguf(&g.metadata)?;
    let tok = Tokenizer::from_gguf(&g.metadata)?;
    if let Some(t) = g.metadata.opt::<String>("tokenizer.chat_template")? {
        ChatTemplate::new(&t, &tok.token_text(tok.bos()), &tok.token_text(tok.eos()))?.check()?;
    }
    Ok(())
}

#[test]
fn every_bad_file_fails_with_its_own_clear_error() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/artifacts/bad");
    std::fs::create_dir_all(&dir).unwrap();
    let corpus = corpus();
    assert!(corpus.len() >= 30, "the corpus holds {} files", corpus.len());
    let mut seen = std::collections::HashMap::new();
    let mut report = Vec::new();
    let mut wrong = Vec::new();
    for bad in &corpus {
        std::fs::write(dir.join(format!("{}.gguf", bad.name)), &bad.bytes).unwrap();
        let err = match load(&bad.bytes) {
            Ok(_) => {
                wrong.push(format!("{}: loaded", bad.name));
                continue;
            }
            Err(e) => e.to_string(),
        };
        if !err.contains(bad.expect) {
            wrong.push(format!("{}: error {err:?} lacks {:?}", bad.name, bad.expect));
        }
        if let Some(other) = seen.insert(err.clone(), bad.name) {
            wrong.push(format!("{} and {other} give the same error: {err}", bad.name));
        }
        report.push(format!("{:<28} {err}", bad.name));
    }
    assert!(wrong.is_empty(), "{} of {} bad files:\n{}", wrong.len(), corpus.len(), wrong.join("\n"));
    std::fs::write(dir.join("errors.txt"), report.join("\n") + "\n").unwrap();
}

#[test]
fn the_good_file_the_corpus_starts_from_loads() {
    // Without this, a corpus built from a broken base would pass for the wrong reason.
    load(&tiny(|_| {})).unwrap();
    parse_all(&tiny(|_| {})).unwrap();
}

#[test]
fn parsing_a_bad_file_allocates_a_bounded_multiple_of_its_size() {
    // The reader's budget: 8× the file plus 16 MiB for what it parses; the tokenizer adds
    // its own tables (a few hash maps per token), bounded the same way since tokens are in the file.
    let mut worst = (0.0f64, "");
    for bad in corpus() {
        let (_, peak) = peak_during(|| parse_all(&bad.bytes));
        let bound = 8 * bad.bytes.len() + (16 << 20);
        assert!(peak <= bound, "{}: parsing took {peak} bytes for a file of {}", bad.name, bad.bytes.len());
        let ratio = peak as f64 / bad.bytes.len().max(1) as f64;
        if bad.bytes.len() > 4096 && ratio > worst.0 {
            worst = (ratio, bad.name);
        }
    }
    eprintln!("largest allocation ratio over files above 4 KiB: {:.2}× ({})", worst.0, worst.1);
}
