//! Errors raised while loading or running a model; each names the file and, where one is at
//! fault, the tensor.

use std::path::PathBuf;

/// A model, tokenizer or weight file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    /// A file is missing or unreadable.
    #[error("{path}: cannot read {what}: {message}")]
    Read {
        /// The file.
        path: PathBuf,
        /// What the file should hold ("model config", "weights", "tokenizer").
        what: &'static str,
        /// The underlying error.
        message: String,
    },
    /// `config.json` does not describe a model this crate can build.
    #[error("{path}: {message}")]
    Config {
        /// The config file.
        path: PathBuf,
        /// What is wrong, naming the key.
        message: String,
    },
    /// A weight tensor is missing, has the wrong shape or could not be converted.
    #[error("{path}: tensor `{tensor}`: {message}")]
    Tensor {
        /// The weight file.
        path: PathBuf,
        /// The tensor's name in the file.
        tensor: String,
        /// What is wrong.
        message: String,
    },
    /// A document could not be tokenized.
    #[error("{path}: tokenizer failed: {message}")]
    Tokenize {
        /// The tokenizer file.
        path: PathBuf,
        /// The tokenizer's message.
        message: String,
    },
    /// The requested device is not available in this build.
    #[error("device `{name}` is not available: {message}")]
    Device {
        /// The device name from the config.
        name: String,
        /// Why (for example, the binary was built without the `cuda` feature).
        message: String,
    },
    /// A caller asked for something the loaded model does not have (a layer or head index).
    #[error("{0}")]
    Request(String),
}
