//! The safetensors reader, the `config.json` reader and a model folder's other JSON files on any
//! bytes: parse, then read every tensor as f32, the keys a Llama, Qwen2 or GPT-2 config holds,
//! and a folder's chat template, special tokens and shard index. The input's first byte chooses
//! which: even → safetensors, 1 mod 4 → config.json, 3 mod 4 → the folder's JSON files.
#![no_main]
use ember::hf::HfFolder;
use ember::safetensors::{HfConfig, Safetensors};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&which, rest)) = data.split_first() else { return };
    if which % 2 == 0 {
        let Ok(st) = Safetensors::parse(rest) else { return };
        for t in &st.tensors {
            let _ = st.to_f32(&t.name);
        }
    } else if which % 4 == 3 {
        // The same bytes as every JSON file of a folder, and as the one shard an index may name.
        let names = ["tokenizer_config.json", "generation_config.json", "model.safetensors.index.json", "model-00001-of-00001.safetensors"];
        let folder = HfFolder::new(names.map(|n| (n.to_string(), rest.to_vec())));
        let _ = folder.chat_template();
        let _ = folder.specials(|t| t.len().checked_sub(1).map(|n| n as u32));
        let _ = folder.weights();
        let _ = ember::hf::shard_names(rest);
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
