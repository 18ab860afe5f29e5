//! The run manifest: what went in, what came out, with which config and code.

use crate::atomic::write_bytes;
use crate::error::{Result, StorageError};
use crate::reader::SkippedFile;
use crate::writer::ShardInfo;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::Path;

/// File name of the manifest inside an output directory. It is written last: its
/// presence means the run completed.
pub const MANIFEST_FILE: &str = "manifest.json";

/// One input file as read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InputRecord {
    /// Path as resolved from the config.
    pub path: String,
    /// Size on disk.
    pub bytes: u64,
    /// Rows in the file.
    pub rows: u64,
    /// Row groups in the file.
    pub row_groups: usize,
}

/// Everything needed to know how an output directory was produced.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    /// gleaner's version and, when built from git, its commit.
    pub code_version: String,
    /// sha256 of the resolved config's canonical JSON.
    pub config_hash: String,
    /// The resolved config (after defaults and overrides).
    pub config: serde_json::Value,
    /// Readable inputs, in corpus order.
    pub inputs: Vec<InputRecord>,
    /// Inputs left out because they were bad (only with `on_bad_file = "skip"`).
    pub skipped_inputs: Vec<SkippedFile>,
    /// Selected-document shards.
    pub outputs: Vec<ShardInfo>,
    /// Per-document selection records (`selection.parquet`).
    pub selection: ShardInfo,
    /// Dropped-document shards by reason, when `write_removed` is on.
    pub removed: BTreeMap<String, Vec<ShardInfo>>,
}

impl Manifest {
    /// Writes the manifest atomically into `dir`.
    pub fn write(&self, dir: &Path) -> Result<()> {
        let path = dir.join(MANIFEST_FILE);
        let json = serde_json::to_vec_pretty(self).map_err(|e| StorageError::Write {
            path: path.clone(),
            message: e.to_string(),
        })?;
        write_bytes(&path, &json)
    }

    /// Reads the manifest of an output directory.
    pub fn read(dir: &Path) -> Result<Self> {
        let path = dir.join(MANIFEST_FILE);
        let bytes = std::fs::read(&path).map_err(|e| StorageError::io(&path, e))?;
        serde_json::from_slice(&bytes).map_err(|e| StorageError::Corrupt {
            path,
            message: e.to_string(),
        })
    }
}
