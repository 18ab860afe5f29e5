//! Resolving input patterns (files, directories, globs) to a sorted, de-duplicated file list.

use crate::error::{Result, StorageError};
use crate::jsonl::jsonl_codec;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// One resolved input file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InputFile {
    /// Path as resolved from the pattern.
    pub path: PathBuf,
    /// Size in bytes on disk.
    pub bytes: u64,
}

/// Whether a file name looks like a committed parquet or JSONL file (hidden and temporary
/// files are not).
fn is_visible_input(path: &Path) -> bool {
    let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
        return false;
    };
    !name.starts_with('.') && (name.ends_with(".parquet") || jsonl_codec(path).is_some())
}

fn collect_dir(dir: &Path, out: &mut BTreeSet<PathBuf>) -> Result<()> {
    let entries = std::fs::read_dir(dir).map_err(|e| StorageError::io(dir, e))?;
    for entry in entries {
        let entry = entry.map_err(|e| StorageError::io(dir, e))?;
        let path = entry.path();
        let file_type = entry.file_type().map_err(|e| StorageError::io(&path, e))?;
        let hidden = entry.file_name().to_string_lossy().starts_with('.');
        if file_type.is_dir() && !hidden {
            collect_dir(&path, out)?;
        } else if is_visible_input(&path) {
            out.insert(path);
        }
    }
    Ok(())
}

/// Resolves each pattern to input files: a file is taken as is, a directory is walked
/// recursively for `*.parquet` and JSONL files (`*.jsonl`, `*.ndjson`, `*.json.gz`, each
/// optionally `.gz`/`.zst`; hidden entries skipped), anything else is a glob.
/// The result is sorted by path so the corpus order never depends on the filesystem.
pub fn resolve_inputs(patterns: &[String]) -> Result<Vec<InputFile>> {
    let mut paths = BTreeSet::new();
    for pattern in patterns {
        let before = paths.len();
        let as_path = Path::new(pattern);
        if as_path.is_file() {
            paths.insert(as_path.to_path_buf());
        } else if as_path.is_dir() {
            collect_dir(as_path, &mut paths)?;
        } else {
            let matches = glob::glob(pattern).map_err(|e| StorageError::BadPattern {
                pattern: pattern.clone(),
                message: e.to_string(),
            })?;
            for entry in matches {
                let path = entry.map_err(|e| {
                    let p = e.path().to_path_buf();
                    StorageError::io(p, e.into())
                })?;
                if path.is_dir() {
                    collect_dir(&path, &mut paths)?;
                } else if is_visible_input(&path) {
                    paths.insert(path);
                }
            }
        }
        if paths.len() == before && !patterns_overlap(pattern, &paths) {
            return Err(StorageError::NoMatch {
                pattern: pattern.clone(),
            });
        }
    }
    paths
        .into_iter()
        .map(|path| {
            let bytes = std::fs::metadata(&path)
                .map_err(|e| StorageError::io(&path, e))?
                .len();
            Ok(InputFile { path, bytes })
        })
        .collect()
}

/// A pattern that only re-matches files already found by an earlier pattern still matched.
fn patterns_overlap(pattern: &str, found: &BTreeSet<PathBuf>) -> bool {
    let Ok(p) = glob::Pattern::new(pattern) else {
        return false;
    };
    found
        .iter()
        .any(|f| p.matches_path(f) || f.starts_with(pattern))
}

/// `path:bytes:mtime` of every file the patterns resolve to (a cache key that changes when a
/// file is replaced).
pub fn file_identities(patterns: &[String]) -> Result<Vec<String>> {
    resolve_inputs(patterns)?
        .into_iter()
        .map(|f| {
            let modified = std::fs::metadata(&f.path)
                .and_then(|m| m.modified())
                .map_err(|source| StorageError::Io {
                    path: f.path.clone(),
                    source,
                })?;
            let nanos = modified
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or(0);
            Ok(format!("{}:{}:{nanos}", f.path.display(), f.bytes))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolves_files_dirs_and_globs_sorted_and_skips_hidden() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        std::fs::create_dir_all(d.join("sub")).unwrap();
        for name in [
            "b.parquet",
            "a.parquet",
            ".a.parquet.tmp",
            "notes.txt",
            "stats.json",
            "d.jsonl.zst",
            "sub/c.parquet",
            ".hidden.parquet",
        ] {
            std::fs::write(d.join(name), b"x").unwrap();
        }
        let dir_pat = d.to_string_lossy().into_owned();
        let files = resolve_inputs(&[dir_pat]).unwrap();
        let names: Vec<_> = files
            .iter()
            .map(|f| {
                f.path
                    .strip_prefix(d)
                    .unwrap()
                    .to_string_lossy()
                    .into_owned()
            })
            .collect();
        assert_eq!(
            names,
            ["a.parquet", "b.parquet", "d.jsonl.zst", "sub/c.parquet"]
        );

        let glob_pat = format!("{}/*.parquet", d.display());
        let single = format!("{}/a.parquet", d.display());
        let files = resolve_inputs(&[glob_pat, single]).unwrap();
        assert_eq!(
            files.len(),
            2,
            "a.parquet appears once even when matched twice"
        );
        assert_eq!(files[0].bytes, 1);
    }

    #[test]
    fn a_pattern_matching_nothing_is_an_error_naming_it() {
        let err = resolve_inputs(&["/nonexistent/dir/*.parquet".to_string()]).unwrap_err();
        assert!(
            err.to_string().contains("/nonexistent/dir/*.parquet"),
            "{err}"
        );
    }
}
