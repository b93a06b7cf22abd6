//! Choosing the compute device: burn's wgpu backend (WebGPU in browsers, Vulkan/Metal/DX12
//! natively), or the CPU, where Ember runs its own kernels over the quantised weights
//! (`model::cpu`; burn's CPU backends would hold them as f32). The device decides the executor
//! the model description runs on, and nothing else does.

use serde::{Deserialize, Serialize};

use crate::error::Error;

/// The backends Ember runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    /// The CPU (wasm32 too, with SIMD128): `model::CpuExecutor` over the file's quantised blocks.
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

/// Where a model runs.
#[derive(Debug, Clone)]
pub enum Device {
    /// The CPU, with Ember's own kernels (no burn device).
    Cpu,
    /// A wgpu device (burn's dispatch device on its CubeCL runtime).
    #[cfg(feature = "gpu")]
    Wgpu(burn::tensor::Device),
}

impl Device {
    /// Which backend this is.
    pub fn backend(&self) -> Backend {
        match self {
            Device::Cpu => Backend::Cpu,
            #[cfg(feature = "gpu")]
            Device::Wgpu(_) => Backend::Wgpu,
        }
    }
}

/// Launches CubeCL records before it submits them. A decoded token is about 250 launches
/// (SmolLM2), so it goes to the GPU in two or three submits, the last one its readback's,
/// where CubeCL's default of 32 made 24; a submit costs driver work on every GPU, while
/// recording more launches before one only delays the GPU's start by their encoding.
#[cfg(feature = "gpu")]
pub const TASKS_MAX: usize = 128;

#[cfg(all(feature = "gpu", not(target_arch = "wasm32")))]
static ADAPTER: std::sync::OnceLock<String> = std::sync::OnceLock::new();

/// The adapter the wgpu device runs on, natively, once it has started: its name, graphics API,
/// kind (a CPU such as lavapipe, or an integrated or discrete GPU) and driver.
#[cfg(all(feature = "gpu", not(target_arch = "wasm32")))]
pub fn wgpu_adapter() -> Option<&'static str> {
    ADAPTER.get().map(String::as_str)
}

/// Initialises the wgpu device once per process (the runtime cannot be initialised twice).
#[cfg(all(feature = "gpu", not(target_arch = "wasm32")))]
pub fn wgpu_device() -> crate::error::Result<burn::tensor::Device> {
    use burn::tensor::Device;
    use std::sync::OnceLock;
    static DEVICE: OnceLock<std::result::Result<Device, String>> = OnceLock::new();
    DEVICE
        .get_or_init(|| {
            // A missing adapter can panic deep inside wgpu: turn that into an error too.
            std::panic::catch_unwind(|| {
                let (device, setup) = Device::wgpu_options().tasks_max(TASKS_MAX).init_with_setup().map_err(|e| e.to_string())?;
                let info = setup.adapter.get_info();
                let _ = ADAPTER.set(format!("{} ({:?}, {:?}, driver {} {})", info.name, info.backend, info.device_type, info.driver, info.driver_info));
                Ok(device)
            })
            .unwrap_or_else(|_| Err("the wgpu runtime panicked while starting".into()))
        })
        .clone()
        .map_err(|e| Error::Device(format!("no usable GPU adapter ({e}); on Linux install mesa-vulkan-drivers, or use --backend cpu")))
}

/// Initialises WebGPU in the browser, once per module instance (the runtime cannot be
/// registered twice; the app starts a fresh worker for each model, a test module loads several).
#[cfg(all(feature = "gpu", target_arch = "wasm32"))]
pub async fn wgpu_device() -> crate::error::Result<burn::tensor::Device> {
    use burn::tensor::Device;
    thread_local! {
        static DEVICE: std::cell::RefCell<Option<Device>> = const { std::cell::RefCell::new(None) };
    }
    if let Some(d) = DEVICE.with(|d| d.borrow().clone()) {
        return Ok(d);
    }
    let device = Device::wgpu_options().tasks_max(TASKS_MAX).init_async().await.map_err(|e| Error::Device(format!("WebGPU is not available: {e}")))?;
    DEVICE.with(|d| *d.borrow_mut() = Some(device.clone()));
    Ok(device)
}

/// A device for `backend` (natively).
#[cfg(not(target_arch = "wasm32"))]
pub fn device(backend: Backend) -> crate::error::Result<Device> {
    match backend {
        Backend::Cpu => Ok(Device::Cpu),
        #[cfg(feature = "gpu")]
        Backend::Wgpu => wgpu_device().map(Device::Wgpu),
        #[cfg(not(feature = "gpu"))]
        Backend::Wgpu => Err(no_gpu()),
    }
}

/// The error for a GPU asked of a build without one (the threaded wasm module).
#[cfg(not(feature = "gpu"))]
pub fn no_gpu() -> Error {
    Error::Device("this build of Ember runs on the CPU only".into())
}
