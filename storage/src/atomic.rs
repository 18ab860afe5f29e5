//! Atomic file commit: write under a hidden temporary name, fsync, then rename into place.

use crate::error::{Result, StorageError};
use sha2::{Digest, Sha256};
use std::fs::File;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

/// The hidden temporary name a file is written under before it is renamed to `path`.
pub fn temp_path_for(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    path.with_file_name(format!(".{name}.tmp"))
}

/// Flushes `file` to disk and renames `tmp` to `path`, then syncs the directory.
pub fn commit(file: File, tmp: &Path, path: &Path) -> Result<()> {
    file.sync_all().map_err(|e| StorageError::io(tmp, e))?;
    drop(file);
    std::fs::rename(tmp, path).map_err(|e| StorageError::io(path, e))?;
    if let Some(dir) = path.parent() {
        // Directory fsync makes the rename durable; not every filesystem supports it.
        if let Ok(d) = File::open(dir) {
            let _ = d.sync_all();
        }
    }
    Ok(())
}

/// Writes `bytes` to `path` atomically (temporary name, fsync, rename).
pub fn write_bytes(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = temp_path_for(path);
    let mut file = File::create(&tmp).map_err(|e| StorageError::io(&tmp, e))?;
    file.write_all(bytes)
        .map_err(|e| StorageError::io(&tmp, e))?;
    commit(file, &tmp, path)
}

/// Hex sha256 of a file's content, read in a streaming fashion.
pub fn sha256_file(path: &Path) -> Result<String> {
    let mut file = File::open(path).map_err(|e| StorageError::io(path, e))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buf).map_err(|e| StorageError::io(path, e))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hex(&hasher.finalize()))
}

/// Lower-case hexadecimal encoding of bytes.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn write_bytes_leaves_no_temp_and_hash_matches_known_vector() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.txt");
        write_bytes(&path, b"abc").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"abc");
        assert!(!temp_path_for(&path).exists());
        // FIPS 180-2 test vector for "abc".
        assert_eq!(
            sha256_file(&path).unwrap(),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
