//! Choosing the compute device: burn's wgpu backend (WebGPU in browsers, Vulkan/Metal/DX12
//! natively), or the CPU, where Ember runs its own kernels over the quantised weights
//! (`model::cpu`; burn's NdArray backend would hold them as f32).

use burn::tensor::Device;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// The backends Ember runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    /// The CPU (wasm32 too, with SIMD128): `model::CpuDecoder` over the file's quantised blocks.
    Cpu,
    /// burn's wgpu backend: WebGPU in the browser, Vulkan (lavapipe included) natively.
    Wgpu,
}

impl Backend {
    /// The name used on the command line and in JSON.
    pub fn name(self) -> &'static str {
        match self {
            Backend::Cpu => "cpu",
            Backend::Wgpu => "wgpu",
        }
    }

    /// Parses `cpu`, `wgpu` (or its alias `webgpu`).
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "cpu" => Some(Backend::Cpu),
            "wgpu" | "webgpu" | "gpu" => Some(Backend::Wgpu),
            _ => None,
        }
    }
}

/// burn's CPU device: what the burn decoder's tests run on (the engine's CPU backend needs no
/// burn device; it is given this one).
#[allow(deprecated)] // NdArray: the faster f32 CPU backend in wasm (see STACK-NOTES)
pub fn cpu_device() -> Device {
    Device::ndarray()
}

/// Initialises the wgpu device once per process (the runtime cannot be initialised twice).
#[cfg(not(target_arch = "wasm32"))]
pub fn wgpu_device() -> Result<Device> {
    use std::sync::OnceLock;
    static DEVICE: OnceLock<std::result::Result<Device, String>> = OnceLock::new();
    DEVICE
        .get_or_init(|| {
            // A missing adapter can panic deep inside wgpu: turn that into an error too.
            std::panic::catch_unwind(|| Device::wgpu_options().init().map_err(|e| e.to_string()))
                .unwrap_or_else(|_| Err("the wgpu runtime panicked while starting".into()))
        })
        .clone()
        .map_err(|e| Error::Device(format!("no usable GPU adapter ({e}); on Linux install mesa-vulkan-drivers, or use --backend cpu")))
}

/// Initialises WebGPU in the browser, once per module instance (the runtime cannot be
/// registered twice; the app starts a fresh worker for each model, a test module loads several).
#[cfg(target_arch = "wasm32")]
pub async fn wgpu_device() -> Result<Device> {
    thread_local! {
        static DEVICE: std::cell::RefCell<Option<Device>> = const { std::cell::RefCell::new(None) };
    }
    if let Some(d) = DEVICE.with(|d| d.borrow().clone()) {
        return Ok(d);
    }
    let device = Device::wgpu_options().init_async().await.map_err(|e| Error::Device(format!("WebGPU is not available: {e}")))?;
    DEVICE.with(|d| *d.borrow_mut() = Some(device.clone()));
    Ok(device)
}

/// A device for `backend` (natively).
#[cfg(not(target_arch = "wasm32"))]
pub fn device(backend: Backend) -> Result<Device> {
    match backend {
        Backend::Cpu => Ok(cpu_device()),
        Backend::Wgpu => wgpu_device(),
    }
}
