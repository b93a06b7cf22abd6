//! The decoder and its loading.

pub mod cpu;
pub mod gpu;
pub mod decoder;
pub mod qmatrix;
pub mod weights;

pub use cpu::CpuDecoder;
pub use decoder::{Arch, Decoder, DecoderConfig};
pub use qmatrix::QMatrix;
pub use weights::{load_gguf, load_gguf_cpu, load_safetensors, load_safetensors_cpu, rope_interleave};
