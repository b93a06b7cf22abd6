//! The decoder and its loading.

pub mod decoder;
pub mod weights;

pub use decoder::{Arch, Decoder, DecoderConfig};
pub use weights::{load_gguf, load_safetensors, rope_interleave};
