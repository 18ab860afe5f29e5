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

/// A file being written that hashes (sha256) and counts its bytes as they pass, so the record
/// of a shard needs no second read of the file (which, for shards no longer in the page
/// cache, would read the whole output from disk again).
///
/// Every [`WRITEBACK_BYTES`] it asks the kernel to start writing the file's dirty pages to
/// disk (Linux), so the fsync of [`commit`] waits for the last stretch only instead of the
/// whole shard.
pub struct HashingFile {
    file: File,
    hasher: Sha256,
    bytes: u64,
    unflushed: u64,
}

/// Bytes written between two requests to start writeback.
pub const WRITEBACK_BYTES: u64 = 8 << 20;

impl HashingFile {
    /// Starts hashing what is written to `file` from here on.
    pub fn new(file: File) -> Self {
        Self {
            file,
            hasher: Sha256::new(),
            bytes: 0,
            unflushed: 0,
        }
    }

    /// Starts writeback of what was written so far without waiting for it; a hint, so a
    /// failure is ignored (the fsync at commit reports real errors).
    fn start_writeback(&self) {
        #[cfg(target_os = "linux")]
        {
            use std::os::fd::AsRawFd;
            // SAFETY: the descriptor is open for the lifetime of `self.file`; offset 0 with
            // length 0 means the whole file.
            unsafe {
                libc::sync_file_range(self.file.as_raw_fd(), 0, 0, libc::SYNC_FILE_RANGE_WRITE);
            }
        }
    }

    /// The file, the hex sha256 of the bytes written and their count.
    pub fn finish(self) -> (File, String, u64) {
        (self.file, hex(&self.hasher.finalize()), self.bytes)
    }
}

impl Write for HashingFile {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.file.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.bytes += n as u64;
        self.unflushed += n as u64;
        if self.unflushed >= WRITEBACK_BYTES {
            self.unflushed = 0;
            self.start_writeback();
        }
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.file.flush()
    }
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

    #[test]
    fn a_hashing_file_hashes_and_counts_what_passes_through() {
        let dir = tempfile::tempdir().unwrap();
        let mut file = HashingFile::new(File::create(dir.path().join("a.txt")).unwrap());
        file.write_all(b"a").unwrap();
        file.write_all(b"bc").unwrap();
        let (_, sha256, bytes) = file.finish();
        assert_eq!(
            sha256,
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(bytes, 3);
        assert_eq!(std::fs::read(dir.path().join("a.txt")).unwrap(), b"abc");
    }

    #[test]
    fn a_file_past_several_writeback_requests_keeps_its_bytes_and_hash() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("big.bin");
        let tmp = temp_path_for(&path);
        let mut file = HashingFile::new(File::create(&tmp).unwrap());
        let block: Vec<u8> = (0..1_000_003u32).map(|i| (i * 7 % 251) as u8).collect();
        let rounds = (2 * WRITEBACK_BYTES) as usize / block.len() + 2;
        for _ in 0..rounds {
            file.write_all(&block).unwrap();
        }
        let (inner, sha256, bytes) = file.finish();
        commit(inner, &tmp, &path).unwrap();
        assert_eq!(bytes, (rounds * block.len()) as u64);
        assert!(bytes > 2 * WRITEBACK_BYTES, "writeback was asked for twice");
        assert_eq!(sha256, sha256_file(&path).unwrap());
        let content = std::fs::read(&path).unwrap();
        assert!(content.chunks(block.len()).all(|c| c == block));
    }
}
