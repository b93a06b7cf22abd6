//! The decoder and its loading.

pub mod llama;
pub mod weights;

pub use llama::{Llama, LlamaConfig, ModelConfig};
pub use weights::load_llama;
