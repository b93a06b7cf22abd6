//! The GGUF reader on any bytes, and everything loading reads before the weights go to a
//! device: metadata, the tokenizer built from it, the chat template (compiled and tried), and
//! every tensor dequantised. Must return an error, never panic, hang or allocate far beyond the
//! input's size. Seeds: the tiny test model and the bad-file corpus (tests/artifacts/bad).
#![no_main]
use ember::gguf::Gguf;
use ember::{ChatTemplate, Tokenizer};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(g) = Gguf::parse(data) else { return };
    let _ = g.metadata.opt::<String>("general.name");
    let _ = g.metadata.opt::<Vec<String>>("general.languages");
    let _ = g.metadata.opt::<usize>("llama.block_count");
    if let Ok(tok) = Tokenizer::from_gguf(&g.metadata) {
        let _ = tok.encode("Hi <|im_start|>there 123");
        if let Ok(Some(t)) = g.metadata.opt::<String>("tokenizer.chat_template") {
            if let Ok(t) = ChatTemplate::new(&t, &tok.token_text(tok.bos()), &tok.token_text(tok.eos())) {
                let _ = t.check();
            }
        }
    }
    for t in &g.tensors {
        if let Ok(Some(view)) = g.tensor(&t.name) {
            let _ = view.to_f32();
        }
    }
});
