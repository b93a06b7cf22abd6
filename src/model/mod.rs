//! The model: its shape and families (`config`), the one model description (`decoder`) over
//! the operations each executor implements (`cpu`: Ember's quantised kernels of `qmatrix`;
//! `wgpu`: burn with Ember's CubeCL kernels of `gpu`), and the one weights walk (`weights`).

pub mod config;
pub mod cpu;
pub mod decoder;
#[cfg(feature = "gpu")]
pub mod gpu;
pub mod pool;
pub mod qmatrix;
pub mod weights;
#[cfg(feature = "gpu")]
pub mod wgpu;

pub use config::{Activation, Arch, DecoderConfig, Family, Llama3Rope, LongRope};
pub use cpu::CpuExecutor;
pub use decoder::{BoxedRunner, Decoder, Executor, Heads, KvCache, Loaded, Rope, RopeSpec, Runner};
pub use qmatrix::QMatrix;
pub use weights::{rope_interleave, Tensors};
#[cfg(feature = "gpu")]
pub use wgpu::GpuExecutor;
