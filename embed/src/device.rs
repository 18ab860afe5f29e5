//! Device selection by name, as written in a pipeline config.

use burn::prelude::Device;

use crate::ModelError;

/// A device a config can name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeviceName {
    /// Burn's pure-Rust `flex` CPU backend (always built).
    Cpu,
    /// The first CUDA GPU (needs the `cuda` feature).
    Cuda,
}

impl DeviceName {
    /// Parses `cpu` or `cuda`.
    pub fn parse(name: &str) -> Result<Self, ModelError> {
        match name {
            "cpu" => Ok(Self::Cpu),
            "cuda" => Ok(Self::Cuda),
            other => Err(ModelError::Device {
                name: other.to_string(),
                message: "expected `cpu` or `cuda`".to_string(),
            }),
        }
    }
}

/// The Burn device for a name; `cuda` fails with a clear error in builds without the feature.
pub fn device_from_name(name: DeviceName) -> Result<Device, ModelError> {
    match name {
        DeviceName::Cpu => Ok(Device::flex()),
        #[cfg(feature = "cuda")]
        DeviceName::Cuda => Ok(Device::cuda(0)),
        #[cfg(not(feature = "cuda"))]
        DeviceName::Cuda => Err(ModelError::Device {
            name: "cuda".to_string(),
            message: "this gleaner was built without the `cuda` feature; rebuild with \
                      `cargo build --release --features cuda`"
                .to_string(),
        }),
    }
}
