//! Resolving input patterns (files, directories, globs; local or object-storage URLs) to a
//! sorted, de-duplicated file list.

use crate::arrow_ipc::is_arrow_ipc;
use crate::error::{Result, StorageError};
use crate::jsonl::{is_plain_json, jsonl_codec};
use crate::object::{is_remote, ObjectLocation};
use crate::warc::is_warc;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// One resolved input file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InputFile {
    /// Path as resolved from the pattern.
    pub path: PathBuf,
    /// Size in bytes on disk.
    pub bytes: u64,
    /// What changes when the file is replaced: the modification time in nanoseconds, or an
    /// object's entity tag (else its modification time).
    pub version: String,
}

fn local_version(path: &Path) -> Result<String> {
    let modified = std::fs::metadata(path)
        .and_then(|m| m.modified())
        .map_err(|e| StorageError::io(path, e))?;
    let nanos = modified
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    Ok(nanos.to_string())
}

/// Whether a file name looks like a committed parquet, JSONL, Arrow IPC or WARC file (hidden and temporary
/// files are not). A plain `.json` file counts only when a pattern names it (`named`), not
/// in a directory walk.
fn is_visible_input(path: &Path, named: bool) -> bool {
    let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
        return false;
    };
    !name.starts_with('.')
        && (name.ends_with(".parquet")
            || is_arrow_ipc(path)
            || is_warc(path)
            || (jsonl_codec(path).is_some() && (named || !is_plain_json(path))))
}

/// Whether `dir` (not its subdirectories) holds a plain `.json` file.
fn holds_plain_json(dir: &Path) -> bool {
    std::fs::read_dir(dir).is_ok_and(|entries| {
        entries
            .flatten()
            .any(|e| is_plain_json(&e.path()) && e.path().is_file())
    })
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
        } else if is_visible_input(&path, false) {
            out.insert(path);
        }
    }
    Ok(())
}

/// Resolves each pattern to input files: a file is taken as is, a directory is walked
/// recursively for `*.parquet`, Arrow IPC (`*.arrow`, `*.feather`) and JSONL files
/// (`*.jsonl`, `*.ndjson`, `*.json`, each
/// optionally `.gz`/`.zst`, but a plain `*.json` only when named by a file or glob pattern;
/// hidden entries skipped), anything else is a glob.
/// The result is sorted by path so the corpus order never depends on the filesystem.
pub fn resolve_inputs(patterns: &[String]) -> Result<Vec<InputFile>> {
    let mut paths = BTreeSet::new();
    let mut remote = Vec::new();
    for pattern in patterns {
        if is_remote(pattern) {
            remote.extend(resolve_remote(pattern)?);
            continue;
        }
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
                } else if is_visible_input(&path, true) {
                    paths.insert(path);
                }
            }
        }
        if paths.len() == before && !patterns_overlap(pattern, &paths) {
            let hint = if as_path.is_dir() && holds_plain_json(as_path) {
                format!(
                    " (a directory walk leaves plain .json files out; name them to read them as \
                     JSON Lines: `{}/*.json`)",
                    pattern.trim_end_matches('/')
                )
            } else {
                String::new()
            };
            return Err(StorageError::NoMatch {
                pattern: pattern.clone(),
                hint,
            });
        }
    }
    let mut files: Vec<InputFile> = paths
        .into_iter()
        .map(|path| {
            let bytes = std::fs::metadata(&path)
                .map_err(|e| StorageError::io(&path, e))?
                .len();
            let version = local_version(&path)?;
            Ok(InputFile {
                path,
                bytes,
                version,
            })
        })
        .collect::<Result<_>>()?;
    remote.sort_by(|a, b| a.path.cmp(&b.path));
    remote.dedup_by(|a, b| a.path == b.path);
    files.extend(remote);
    Ok(files)
}

/// The objects a URL pattern names: the object itself, every input-looking object below a
/// prefix, or those whose key matches a glob (`s3://bucket/dir/*.parquet`). Sorted by key.
fn resolve_remote(pattern: &str) -> Result<Vec<InputFile>> {
    let glob_at = pattern.find(['*', '?', '[']);
    let listed_from = match glob_at {
        // List from the last `/` before the first glob character.
        Some(at) => &pattern[..pattern[..at].rfind('/').map_or(at, |s| s + 1)],
        None => pattern,
    };
    let location = ObjectLocation::parse(listed_from)?;
    let to_file = |meta: object_store::ObjectMeta| InputFile {
        path: PathBuf::from(location.url_of(&meta.location)),
        bytes: meta.size,
        version: meta
            .e_tag
            .clone()
            .unwrap_or_else(|| meta.last_modified.to_rfc3339()),
    };
    let files: Vec<InputFile> = match glob_at {
        None => {
            let is_prefix = location.key.as_ref().is_empty() || pattern.ends_with('/');
            match if is_prefix { None } else { location.head()? } {
                Some(meta) => vec![to_file(meta)],
                None => location
                    .list()?
                    .into_iter()
                    .map(to_file)
                    .filter(|f| is_visible_input(&f.path, false))
                    .collect(),
            }
        }
        Some(_) => {
            let matcher = glob::Pattern::new(pattern).map_err(|e| StorageError::BadPattern {
                pattern: pattern.to_string(),
                message: e.to_string(),
            })?;
            location
                .list()?
                .into_iter()
                .map(to_file)
                .filter(|f| {
                    is_visible_input(&f.path, true) && matcher.matches(&f.path.to_string_lossy())
                })
                .collect()
        }
    };
    if files.is_empty() {
        return Err(StorageError::NoMatch {
            pattern: pattern.to_string(),
            hint: String::new(),
        });
    }
    Ok(files)
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

/// `path:bytes:version` of every file the patterns resolve to (a cache key that changes
/// when a file is replaced).
pub fn file_identities(patterns: &[String]) -> Result<Vec<String>> {
    Ok(resolve_inputs(patterns)?
        .into_iter()
        .map(|f| format!("{}:{}:{}", f.path.display(), f.bytes, f.version))
        .collect())
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

    /// Plain `.json` files (JSON Lines as `datasets` writes them, or configs) are read when a
    /// file or glob pattern names them, and left out of directory walks, with a hint when a
    /// walked directory finds nothing else.
    #[test]
    fn plain_json_files_are_read_only_when_named() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        for name in ["data.json", "more.json", "stats.json.gz"] {
            std::fs::write(d.join(name), b"x").unwrap();
        }
        let names = |pattern: String| -> Vec<String> {
            resolve_inputs(&[pattern])
                .unwrap()
                .iter()
                .map(|f| f.path.file_name().unwrap().to_string_lossy().into_owned())
                .collect()
        };
        assert_eq!(names(d.to_string_lossy().into_owned()), ["stats.json.gz"]);
        assert_eq!(
            names(format!("{}/*.json", d.display())),
            ["data.json", "more.json"]
        );
        assert_eq!(names(format!("{}/data.json", d.display())), ["data.json"]);
        std::fs::remove_file(d.join("stats.json.gz")).unwrap();
        let err = resolve_inputs(&[d.to_string_lossy().into_owned()]).unwrap_err();
        assert!(err.to_string().contains("/*.json`"), "{err}");
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
