//! The safetensors reader and the `config.json` reader on any bytes: parse, then read every
//! tensor as f32 and the keys a Llama, Qwen2 or GPT-2 config holds. The input's first byte
//! chooses which: even → safetensors, odd → config.json.
#![no_main]
use ember::safetensors::{HfConfig, Safetensors};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&which, rest)) = data.split_first() else { return };
    if which % 2 == 0 {
        let Ok(st) = Safetensors::parse(rest) else { return };
        for t in &st.tensors {
            let _ = st.to_f32(&t.name);
        }
    } else {
        let Ok(c) = HfConfig::parse(rest) else { return };
        let _ = c.model_type();
        for key in ["hidden_size", "num_hidden_layers", "num_attention_heads", "num_key_value_heads", "intermediate_size", "vocab_size", "n_embd", "n_layer", "n_head", "n_positions"] {
            let _ = c.req::<usize>(key);
        }
        let _ = c.opt::<f64>("rms_norm_eps");
        let _ = c.opt::<f64>("rope_theta");
        let _ = c.opt::<bool>("tie_word_embeddings");
    }
});
