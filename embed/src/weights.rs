//! Loading Hugging Face model folders: `config.json` into a serde config, `model.safetensors`
//! into a Burn module through `burn::store` (PyTorch layouts adapted: linear weights transposed,
//! norm `weight`/`bias` mapped to `gamma`/`beta`).

use std::path::{Path, PathBuf};

use burn::store::{ApplyError, ModuleSnapshot, PyTorchToBurnAdapter, SafetensorsStore};
use serde::de::DeserializeOwned;
use sha2::{Digest, Sha256};

use crate::ModelError;

/// The three files of a Hugging Face model folder.
#[derive(Clone, Debug)]
pub struct ModelFiles {
    /// `config.json`.
    pub config: PathBuf,
    /// `model.safetensors`.
    pub weights: PathBuf,
    /// `tokenizer.json`.
    pub tokenizer: PathBuf,
}

impl ModelFiles {
    /// The standard file names inside `dir`.
    pub fn in_dir(dir: &Path) -> Self {
        Self {
            config: dir.join("config.json"),
            weights: dir.join("model.safetensors"),
            tokenizer: dir.join("tokenizer.json"),
        }
    }

    /// A hex sha256 over the three files' contents: the model's identity for score caches.
    pub fn fingerprint(&self) -> Result<String, ModelError> {
        let mut hasher = Sha256::new();
        for (path, what) in [
            (&self.config, "model config"),
            (&self.weights, "weights"),
            (&self.tokenizer, "tokenizer"),
        ] {
            let mut file = std::fs::File::open(path).map_err(|e| read_error(path, what, e))?;
            std::io::copy(&mut file, &mut hasher).map_err(|e| read_error(path, what, e))?;
        }
        Ok(hasher
            .finalize()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect())
    }
}

fn read_error(path: &Path, what: &'static str, e: impl std::fmt::Display) -> ModelError {
    ModelError::Read {
        path: path.to_path_buf(),
        what,
        message: e.to_string(),
    }
}

/// Parses a `config.json`; errors name the file and the offending key.
pub fn read_config<C: DeserializeOwned>(path: &Path) -> Result<C, ModelError> {
    let text = std::fs::read_to_string(path).map_err(|e| read_error(path, "model config", e))?;
    let mut deserializer = serde_json::Deserializer::from_str(&text);
    serde_path_to_error::deserialize(&mut deserializer).map_err(|e| ModelError::Config {
        path: path.to_path_buf(),
        message: format!("key `{}`: {}", e.path(), e.inner()),
    })
}

/// Overwrites `module`'s parameters with the tensors of a safetensors file.
///
/// `remaps` are (regex, replacement) pairs turning file names into module paths. Every module
/// parameter must be present with the shape the config implies; tensors the module does not use
/// (a BERT pooler, say) are ignored.
pub fn load_safetensors<M: ModuleSnapshot>(
    module: &mut M,
    path: &Path,
    remaps: &[(&str, &str)],
) -> Result<(), ModelError> {
    if !path.is_file() {
        return Err(read_error(path, "weights", "no such file"));
    }
    let mut store = SafetensorsStore::from_file(path)
        .with_from_adapter(PyTorchToBurnAdapter)
        .allow_partial(true)
        .validate(false);
    for (from, to) in remaps {
        store = store.with_key_remapping(*from, *to);
    }
    let result = module
        .load_from(&mut store)
        .map_err(|e| read_error(path, "weights", e))?;
    if let Some(error) = result.errors.first() {
        let (tensor, message) = match error {
            ApplyError::ShapeMismatch {
                path,
                expected,
                found,
            } => (
                path.clone(),
                format!(
                    "shape {:?} does not match the config's {:?}",
                    found.as_slice(),
                    expected.as_slice()
                ),
            ),
            ApplyError::DTypeMismatch {
                path,
                expected,
                found,
            } => (
                path.clone(),
                format!("dtype {found:?}, expected {expected:?}"),
            ),
            ApplyError::AdapterError { path, message }
            | ApplyError::LoadError { path, message } => (path.clone(), message.clone()),
        };
        return Err(ModelError::Tensor {
            path: path.to_path_buf(),
            tensor,
            message,
        });
    }
    if let Some((tensor, _)) = result.missing.first() {
        let more = result.missing.len() - 1;
        return Err(ModelError::Tensor {
            path: path.to_path_buf(),
            tensor: tensor.clone(),
            message: if more == 0 {
                "missing from the file".to_string()
            } else {
                format!("missing from the file (and {more} more)")
            },
        });
    }
    Ok(())
}
