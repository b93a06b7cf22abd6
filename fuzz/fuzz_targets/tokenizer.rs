//! Tokenizer construction from GGUF metadata (`tokenizer.ggml.*`) with arbitrary vocabularies,
//! merges, token types, special ids and pre-tokenizer names; then encoding and streaming decode
//! of arbitrary text.
#![no_main]
use arbitrary::Arbitrary;
use ember::gguf::{Gguf, Value};
use ember::gguf::writer::GgufWriter;
use ember::tokenizer::{StreamDecoder, Tokenizer};
use libfuzzer_sys::fuzz_target;

#[derive(Arbitrary, Debug)]
struct Input {
    tokens: Vec<String>,
    merges: Vec<String>,
    types: Option<Vec<i32>>,
    bos: Option<u32>,
    eos: Option<u32>,
    add_bos: bool,
    pre: Option<String>,
    text: String,
}

fuzz_target!(|input: Input| {
    let mut w = GgufWriter::new();
    w.meta("tokenizer.ggml.model", Value::String("gpt2".into()));
    w.meta("tokenizer.ggml.tokens", Value::Array(input.tokens.into_iter().map(Value::String).collect()));
    w.meta("tokenizer.ggml.merges", Value::Array(input.merges.into_iter().map(Value::String).collect()));
    if let Some(t) = input.types {
        w.meta("tokenizer.ggml.token_type", Value::Array(t.into_iter().map(Value::I32).collect()));
    }
    if let Some(b) = input.bos {
        w.meta("tokenizer.ggml.bos_token_id", Value::U32(b));
    }
    if let Some(e) = input.eos {
        w.meta("tokenizer.ggml.eos_token_id", Value::U32(e));
    }
    w.meta("tokenizer.ggml.add_bos_token", Value::Bool(input.add_bos));
    if let Some(p) = input.pre {
        w.meta("tokenizer.ggml.pre", Value::String(p));
    }
    let bytes = w.to_bytes();
    let Ok(g) = Gguf::parse(&bytes) else { return };
    let Ok(tok) = Tokenizer::from_gguf(&g.metadata) else { return };
    let Ok(ids) = tok.encode(&input.text) else { return };
    let mut d = StreamDecoder::new();
    let mut streamed = String::new();
    for &id in &ids {
        if let Ok(Some(s)) = d.step(&tok, id) {
            streamed.push_str(&s);
        }
    }
    if let Ok(rest) = d.flush(&tok) {
        streamed.push_str(&rest);
    }
    let _ = tok.decode(&ids);
});
