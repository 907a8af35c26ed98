//! Choosing where tensors live: burn's `flex` CPU backend (always built), or `wgpu`, `cuda` and
//! `ndarray` when their cargo features are on.

use burn::tensor::Device;
use std::fmt;
use std::str::FromStr;

use crate::error::{PrismError, Result};

/// The compute backends Prism can run on.
///
/// ```
/// use prism_core::Backend;
/// let b: Backend = "cpu".parse().unwrap();
/// assert_eq!(b, Backend::Cpu);
/// assert_eq!(Backend::Wgpu.to_string(), "wgpu");
/// assert_eq!("cuda".parse::<Backend>().unwrap(), Backend::Cuda);
/// assert!("tpu".parse::<Backend>().is_err());
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum Backend {
    /// burn's `flex` CPU backend (the default).
    #[default]
    Cpu,
    /// burn's older `ndarray` CPU backend (deprecated upstream, kept selectable); needs the
    /// `ndarray-backend` cargo feature.
    Ndarray,
    /// burn's `wgpu` backend: Vulkan, Metal or DX12 GPUs, or Mesa's software Vulkan (lavapipe);
    /// needs the `wgpu` cargo feature.
    Wgpu,
    /// burn's CUDA backend (NVIDIA GPUs); needs the `cuda` cargo feature.
    Cuda,
}

impl fmt::Display for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Backend::Cpu => "cpu",
            Backend::Ndarray => "ndarray",
            Backend::Wgpu => "wgpu",
            Backend::Cuda => "cuda",
        })
    }
}

impl FromStr for Backend {
    type Err = PrismError;
    fn from_str(s: &str) -> Result<Self> {
        match s.to_ascii_lowercase().as_str() {
            "cpu" | "flex" => Ok(Backend::Cpu),
            "ndarray" => Ok(Backend::Ndarray),
            "wgpu" | "gpu" => Ok(Backend::Wgpu),
            "cuda" => Ok(Backend::Cuda),
            other => Err(PrismError::Device {
                device: other.to_string(),
                message: "expected one of cpu, ndarray, wgpu, cuda".into(),
            }),
        }
    }
}

impl Backend {
    /// Returns the burn device for this backend, initialising it on first use.
    ///
    /// For `wgpu` this asks for the default adapter and falls back to a CPU (software)
    /// adapter; when neither exists the error says so instead of panicking later.
    ///
    /// ```
    /// use prism_core::Backend;
    /// let device = Backend::Cpu.device().unwrap();
    /// let t = burn::tensor::Tensor::<1>::from_floats([1.0, 2.0], &device);
    /// assert_eq!(t.sum().into_scalar::<f32>(), 3.0);
    /// ```
    pub fn device(self) -> Result<Device> {
        match self {
            Backend::Cpu => Ok(Device::flex()),
            Backend::Ndarray => ndarray_device(),
            Backend::Wgpu => wgpu_device(),
            Backend::Cuda => cuda_device(),
        }
    }
}

/// Parses a backend name and returns its device in one step.
///
/// ```
/// let device = prism_core::device("cpu").unwrap();
/// assert!(prism_core::device("abacus").is_err());
/// ```
pub fn device(name: &str) -> Result<Device> {
    name.parse::<Backend>()?.device()
}

#[cfg(feature = "cuda")]
fn cuda_device() -> Result<Device> {
    // cubecl loads the CUDA driver when the first kernel runs and panics when it is missing:
    // try a small computation once and report a missing driver as an error.
    static CUDA: std::sync::OnceLock<std::result::Result<Device, String>> =
        std::sync::OnceLock::new();
    CUDA.get_or_init(|| {
        std::panic::catch_unwind(|| {
            let device = Device::cuda(0usize);
            let t = burn::tensor::Tensor::<1>::from_floats([1.0, 2.0], &device);
            let sum = t.sum().into_scalar::<f32>();
            (sum == 3.0)
                .then_some(device)
                .ok_or_else(|| format!("a test sum on the GPU gave {sum}, expected 3"))
        })
        .unwrap_or_else(|_| {
            Err("no CUDA device could be initialised (is the NVIDIA driver installed?)".into())
        })
    })
    .clone()
    .map_err(|message| PrismError::Device {
        device: "cuda".into(),
        message,
    })
}

#[cfg(not(feature = "cuda"))]
fn cuda_device() -> Result<Device> {
    Err(not_built("cuda", "cuda"))
}

/// The error for a backend this build left out: which cargo feature brings it in.
#[allow(dead_code)] // every backend may be compiled in
fn not_built(device: &str, feature: &str) -> PrismError {
    PrismError::Device {
        device: device.into(),
        message: format!(
            "this build has no {device} backend; rebuild with `cargo build --release --features \
             {feature}` (or use --device cpu)"
        ),
    }
}

#[cfg(feature = "ndarray-backend")]
fn ndarray_device() -> Result<Device> {
    #[allow(deprecated)]
    Ok(Device::ndarray())
}

#[cfg(not(feature = "ndarray-backend"))]
fn ndarray_device() -> Result<Device> {
    Err(not_built("ndarray", "ndarray-backend"))
}

#[cfg(not(feature = "wgpu"))]
fn wgpu_device() -> Result<Device> {
    Err(not_built("wgpu", "wgpu"))
}

#[cfg(feature = "wgpu")]
fn wgpu_device() -> Result<Device> {
    // burn registers a wgpu runtime once per process; keep the outcome of the first attempt.
    use burn::tensor::DeviceKind;
    static WGPU: std::sync::OnceLock<std::result::Result<Device, String>> =
        std::sync::OnceLock::new();
    WGPU.get_or_init(|| {
        let mut errors = Vec::new();
        for kind in [DeviceKind::DefaultDevice, DeviceKind::Cpu] {
            let label = format!("{kind:?}");
            match Device::wgpu_options().device_kind(kind).init() {
                Ok(device) => return Ok(device),
                Err(e) => errors.push(format!("{label}: {e}")),
            }
        }
        Err(format!(
            "no wgpu adapter could be initialised ({}); install a Vulkan driver \
             (e.g. Debian's mesa-vulkan-drivers for software rendering) or use --device cpu",
            errors.join("; ")
        ))
    })
    .clone()
    .map_err(|message| PrismError::Device {
        device: "wgpu".into(),
        message,
    })
}
