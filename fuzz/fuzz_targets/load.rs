//! The whole loader on the CPU backend: parse, config, tokenizer, chat template, tensor table,
//! weights; then, when a file loads, one short generation. Seeded with the tiny test model, so
//! mutations reach past the header into the tensor table and the weights.
#![no_main]
use ember::backend::Device;
use ember::{Engine, GenerateOptions, LoadOptions, Message, Prompt};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // A small device, so that a file claiming a big model fails its size check quickly.
    let options = LoadOptions { max_context: 64, memory_limit: Some(64 << 20), tensor_limit: Some(16 << 20), ..Default::default() };
    let Ok(mut engine) = Engine::load(data, Device::Cpu, options) else { return };
    let prompt = Prompt::Chat(vec![Message::new("user", "hi")]);
    let opts = GenerateOptions { max_tokens: 4, ..GenerateOptions::default() };
    if engine.start(&prompt, opts).is_ok() {
        while let Ok(Some(_)) = engine.next() {}
    }
});
