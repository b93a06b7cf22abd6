//! The tokenizer built from GGUF metadata against Python `tokenizers` on a varied corpus.

use std::sync::OnceLock;

use ember::tokenizer::StreamDecoder;
use ember::Tokenizer;

use crate::{json, real_metadata, u32s};

pub fn smollm_tokenizer() -> &'static Tokenizer {
    static TK: OnceLock<Tokenizer> = OnceLock::new();
    TK.get_or_init(|| Tokenizer::from_gguf(real_metadata()).unwrap())
}

#[test]
fn ids_equal_python_tokenizers_on_the_whole_corpus() {
    let tk = smollm_tokenizer();
    let cases = json("tokenizer.json");
    let cases = cases.as_array().unwrap();
    assert!(cases.len() >= 25);
    let mut failures = Vec::new();
    for c in cases {
        let text = c["text"].as_str().unwrap();
        let want = u32s(&c["ids"]);
        let got = tk.encode(text).unwrap();
        if got != want {
            failures.push(format!("{text:?}: got {got:?}, want {want:?}"));
        }
        assert_eq!(tk.decode(&got).unwrap(), text, "round trip");
    }
    assert!(failures.is_empty(), "{} of {} differ:\n{}", failures.len(), cases.len(), failures.join("\n"));
}

#[test]
fn special_tokens_in_text_are_special_and_ends_of_turn_stop() {
    let tk = smollm_tokenizer();
    assert_eq!(tk.encode("<|im_start|>").unwrap(), vec![1]);
    assert_eq!(tk.encode("<|im_end|>").unwrap(), vec![2]);
    assert_eq!(tk.eos(), Some(2));
    assert!(tk.encode("").unwrap().is_empty(), "no BOS: add_bos_token is false");
    assert!(tk.stop_ids().contains(&2) && tk.stop_ids().contains(&0), "{:?}", tk.stop_ids());
}

#[test]
fn streaming_never_emits_half_a_character() {
    let tk = smollm_tokenizer();
    let text = "Emoji 😀🎉👍🏽 and 中文, then ascii. 👨‍👩‍👧‍👦";
    let ids = tk.encode(text).unwrap();
    // Byte-level BPE splits these characters across tokens: make sure the test means something.
    let partial = ids.iter().filter(|&&i| tk.decode(&[i]).unwrap().contains('\u{FFFD}')).count();
    assert!(partial > 0, "no token of this text is a partial character");
    let mut dec = StreamDecoder::new();
    let mut out = String::new();
    for &id in &ids {
        if let Some(delta) = dec.step(tk, id).unwrap() {
            assert!(!delta.contains('\u{FFFD}'), "delta {delta:?} holds half a character");
            out.push_str(&delta);
        }
    }
    out.push_str(&dec.flush(tk).unwrap());
    assert_eq!(out, text);
}

/// Each kind of tokenizer a GGUF file describes alone (SentencePiece as Llama 2 and as Gemma
/// write it, Llama 3's and Qwen2's byte-level BPE), against its Python reference on a
/// multilingual corpus with special and user-defined tokens (`make_gguf_tokenizers.py`).
#[test]
fn gguf_tokenizers_equal_their_python_references() {
    let fx = json("tokenizers.json");
    let mut failures = Vec::new();
    for kind in ["spm", "gemma", "llama-bpe", "qwen2"] {
        let k = &fx[kind];
        let bytes = std::fs::read(crate::fixture(k["file"].as_str().unwrap())).unwrap();
        let gguf = ember::gguf::Gguf::parse(&bytes).unwrap();
        let tk = Tokenizer::from_gguf(&gguf.metadata).unwrap_or_else(|e| panic!("{kind}: {e}"));
        assert_eq!(tk.bos(), k["bos"].as_u64().map(|b| b as u32), "{kind}: BOS");
        for t in k["texts"].as_array().unwrap() {
            let text = t["text"].as_str().unwrap();
            let want = u32s(&t["ids"]);
            // `encode` adds BOS where the file asks; the references were asked for the text alone.
            let got = tk.encode(text).unwrap();
            let got = if tk.bos().is_some() && got.first() == tk.bos().as_ref() && want.first() != tk.bos().as_ref() { got[1..].to_vec() } else { got };
            if got != want {
                failures.push(format!("{kind} {text:?}: got {got:?}, want {want:?}"));
            }
            assert_eq!(tk.decode(&want).unwrap(), t["decoded"].as_str().unwrap(), "{kind}: decoding {text:?}");
        }
    }
    assert!(failures.is_empty(), "{} texts differ:\n{}", failures.len(), failures.join("\n"));
}

/// SentencePiece files ask for BOS unless they say otherwise (llama.cpp's default); a text that
/// starts with BOS (a template that writes it) does not get a second one.
#[test]
fn sentencepiece_adds_bos_once() {
    let bytes = std::fs::read(crate::fixture("tokenizers/spm.gguf")).unwrap();
    let gguf = ember::gguf::Gguf::parse(&bytes).unwrap();
    let tk = Tokenizer::from_gguf(&gguf.metadata).unwrap();
    let bos = tk.bos().unwrap();
    let ids = tk.encode("Hello").unwrap();
    assert_eq!(ids[0], bos);
    let text = format!("{}Hello", tk.token_text(Some(bos)));
    let again = tk.encode(&text).unwrap();
    assert_eq!(again.iter().filter(|&&t| t == bos).count(), 1, "{again:?}");
}

/// A SentencePiece vocabulary whose tokens are huge (a hostile file) is refused, rather than
/// deriving merges from billions of ways to split them.
#[test]
fn sentencepiece_with_huge_tokens_is_refused_quickly() {
    use ember::gguf::Value;
    let bytes = std::fs::read(crate::fixture("tokenizers/spm.gguf")).unwrap();
    let mut w = ember::gguf::writer::GgufWriter::from_gguf(&ember::gguf::Gguf::parse(&bytes).unwrap());
    let n = match w.get_meta("tokenizer.ggml.tokens") {
        Some(Value::Array(a)) => a.len(),
        _ => unreachable!(),
    };
    let huge = "a".repeat(20_000);
    w.set_meta("tokenizer.ggml.tokens", Value::Array((0..n).map(|i| Value::String(format!("{i}{huge}"))).collect()));
    let bytes = w.to_bytes();
    // Refused from the count, before any split is tried.
    let err = Tokenizer::from_gguf(&ember::gguf::Gguf::parse(&bytes).unwrap().metadata).unwrap_err().to_string();
    assert!(err.contains("ways to split in two"), "{err}");
}

/// GPT-2's byte → character table (used by the structured output's vocabulary reader and the
/// tiny test model): GPT-2's own values for a space, a newline and the soft hyphen, and SmolLM2's
/// single-byte tokens, which are written in it.
#[test]
fn byte_level_chars_are_gpt2s() {
    let table = ember::tokenizer::byte_level_chars();
    assert_eq!([table[b' ' as usize], table[b'\n' as usize], table[0xAD], table[b'a' as usize], table[0xFF]], ['Ġ', 'Ċ', 'Ń', 'a', 'ÿ']);
    let distinct: std::collections::HashSet<char> = table.iter().copied().collect();
    assert_eq!(distinct.len(), 256, "one character per byte");
    let tok = smollm_tokenizer();
    let vocab: std::collections::HashSet<String> = (0..tok.vocab_size() as u32).filter_map(|id| tok.token(id)).collect();
    // Every byte is a token but those its training text never held: six control bytes, and
    // bytes that start no character (0xC0, 0xC1, 0xF5 on) or only rare planes' (0xF1, 0xF2).
    let missing: Vec<usize> = table.iter().enumerate().filter(|(_, c)| !vocab.contains(&c.to_string())).map(|(b, _)| b).collect();
    let never: Vec<usize> = [0x04, 0x06, 0x13, 0x14, 0x16, 0x1D, 0xC0, 0xC1, 0xF1, 0xF2].into_iter().chain(0xF5..=0xFF).collect();
    assert_eq!(missing, never, "bytes whose character is not a token of SmolLM2's vocabulary");
}
