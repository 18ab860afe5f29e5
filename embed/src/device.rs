//! Device selection by name, as written in a pipeline config.
//!
//! `cpu` is Burn's pure-Rust `flex` backend (always built). `gpu` is Burn's Vulkan backend
//! (wgpu with SPIR-V shaders), built with the `gpu` feature from the package registries alone;
//! it runs wherever a Vulkan driver and loader are installed (NVIDIA, AMD, Intel). `cuda` is
//! Burn's CUDA backend, built with the `cuda` feature where its LLVM bundle can be fetched.
//!
//! GPU backends open their device lazily and panic when it is missing; [`device_from_name`]
//! opens it at once with a small computation and turns such a panic into an error that names
//! the device, so a stage fails with a message instead of a crash.

use burn::prelude::{Device, Tensor};

use crate::ModelError;

/// A device a config can name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeviceName {
    /// Burn's pure-Rust `flex` CPU backend (always built).
    Cpu,
    /// The first GPU through Vulkan (needs the `gpu` feature).
    Gpu,
    /// The first CUDA GPU (needs the `cuda` feature).
    Cuda,
}

impl DeviceName {
    /// Parses `cpu`, `gpu` (also `vulkan`) or `cuda`.
    pub fn parse(name: &str) -> Result<Self, ModelError> {
        match name {
            "cpu" => Ok(Self::Cpu),
            "gpu" | "vulkan" => Ok(Self::Gpu),
            "cuda" => Ok(Self::Cuda),
            other => Err(ModelError::Device {
                name: other.to_string(),
                message: "expected `cpu`, `gpu` (Vulkan) or `cuda`".to_string(),
            }),
        }
    }

    /// The name as configs write it.
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Cpu => "cpu",
            Self::Gpu => "gpu",
            Self::Cuda => "cuda",
        }
    }
}

fn not_built(name: DeviceName, feature: &str) -> ModelError {
    ModelError::Device {
        name: name.as_str().to_string(),
        message: format!(
            "this gleaner was built without the `{feature}` feature; rebuild with \
             `cargo build --release -p gleaner --features {feature}`"
        ),
    }
}

/// Opens `device` with a small computation; a panic of the backend (no adapter, no driver,
/// no loader, out of memory) becomes an error naming the device.
fn opened(name: DeviceName, device: Device) -> Result<Device, ModelError> {
    let probe = device.clone();
    let result = std::panic::catch_unwind(move || {
        let t = Tensor::<1>::from_floats([1.0f32, 2.0, 3.0], &probe);
        t.sum().into_scalar::<f32>()
    });
    match result {
        Ok(sum) if (sum - 6.0).abs() < 1e-6 => Ok(device),
        Ok(sum) => Err(ModelError::Device {
            name: name.as_str().to_string(),
            message: format!("a test sum on the device gave {sum}, not 6"),
        }),
        Err(panic) => {
            let why = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_else(|| "the backend panicked".to_string());
            Err(ModelError::Device {
                name: name.as_str().to_string(),
                message: format!(
                    "the device could not be opened ({why}); is a GPU with its driver and \
                     loader installed and visible to this process?"
                ),
            })
        }
    }
}

/// The Burn device for a name, opened; a device this build lacks, or one that cannot be
/// opened, is an error naming it.
pub fn device_from_name(name: DeviceName) -> Result<Device, ModelError> {
    match name {
        DeviceName::Cpu => opened(name, Device::flex()),
        #[cfg(feature = "gpu")]
        DeviceName::Gpu => opened(
            name,
            Device::vulkan(burn::tensor::DeviceKind::DefaultDevice),
        ),
        #[cfg(not(feature = "gpu"))]
        DeviceName::Gpu => Err(not_built(name, "gpu")),
        #[cfg(feature = "cuda")]
        DeviceName::Cuda => opened(name, Device::cuda(0)),
        #[cfg(not(feature = "cuda"))]
        DeviceName::Cuda => Err(not_built(name, "cuda")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_parse_and_unknown_ones_list_the_choices() {
        assert_eq!(DeviceName::parse("gpu").unwrap(), DeviceName::Gpu);
        assert_eq!(DeviceName::parse("vulkan").unwrap(), DeviceName::Gpu);
        let e = DeviceName::parse("tpu").unwrap_err().to_string();
        assert!(
            e.contains("tpu") && e.contains("gpu") && e.contains("cuda"),
            "{e}"
        );
    }

    #[test]
    fn the_cpu_opens_and_a_device_that_cannot_is_an_error_not_a_panic() {
        assert!(device_from_name(DeviceName::Cpu).is_ok());
        #[cfg(not(feature = "gpu"))]
        {
            let e = device_from_name(DeviceName::Gpu).unwrap_err().to_string();
            assert!(e.contains("`gpu`") && e.contains("--features gpu"), "{e}");
        }
    }
}
