//! Ember: a small GPT-style language model that runs in a browser tab.
//!
//! The core loads a GGUF model (SmolLM2-135M-Instruct is the reference) or a Hugging Face
//! safetensors folder, runs its decoder (Llama, Qwen2 or GPT-2) with burn on WebGPU/wgpu or with
//! its own quantised kernels on the CPU, and generates text one token at a time:
//! [`Engine::start`] then [`Engine::next_async`], each step with the distribution it was
//! drawn from. It builds and is tested natively; the same code is compiled to wasm32.
//!
//! The `engine` feature (on by default) brings in burn and the decoder; without it only the
//! file formats, tokenizer, chat templates and sampling build (the fuzz targets use that).

#[cfg(feature = "engine")]
pub mod backend;
pub mod chat;
pub mod clock;
#[cfg(feature = "engine")]
pub mod engine;
pub mod error;
pub mod gguf;
#[cfg(all(feature = "gpu", not(target_arch = "wasm32")))]
pub mod gpu_calls;
#[cfg(feature = "engine")]
pub mod grammar;
pub mod hf;
#[cfg(feature = "engine")]
pub mod model;
pub mod safetensors;
pub mod sampling;
#[doc(hidden)]
pub mod testkit;
pub mod tokenizer;
#[cfg(all(target_arch = "wasm32", feature = "engine"))]
pub mod wasm;

#[cfg(feature = "engine")]
pub use backend::Backend;
pub use chat::{ChatTemplate, Message};
#[cfg(feature = "engine")]
pub use engine::{Candidate, ChatFit, Engine, GenerateOptions, LoadOptions, ModelInfo, Prompt, StartInfo, Step, StopReason};
pub use error::{Error, Result};
pub use sampling::SamplingConfig;
pub use tokenizer::Tokenizer;
