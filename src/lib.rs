//! Ember: a small GPT-style language model that runs in a browser tab.
//!
//! The core loads a GGUF model (SmolLM2-135M-Instruct is the reference), runs a Llama-style
//! decoder with burn on WebGPU/wgpu or the CPU, and generates text one token at a time:
//! [`Engine::start`] then [`Engine::next_async`], each step with the distribution it was
//! drawn from. It builds and is tested natively; the same code is compiled to wasm32.

pub mod backend;
pub mod chat;
mod clock;
pub mod engine;
pub mod error;
pub mod gguf;
pub mod model;
pub mod sampling;
#[doc(hidden)]
pub mod testkit;
pub mod tokenizer;
#[cfg(target_arch = "wasm32")]
pub mod wasm;

pub use backend::Backend;
pub use chat::{ChatTemplate, Message};
pub use engine::{Candidate, ChatFit, Engine, GenerateOptions, LoadOptions, ModelInfo, Prompt, StartInfo, Step, StopReason};
pub use error::{Error, Result};
pub use sampling::SamplingConfig;
pub use tokenizer::Tokenizer;
