//! Errors of the storage layer. Every variant names the file (and row or column) it concerns.

use std::path::PathBuf;

/// Result alias for storage operations.
pub type Result<T, E = StorageError> = std::result::Result<T, E>;

/// A storage failure, always naming the file it concerns.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// An input pattern matched no parquet, JSONL, Arrow IPC or WARC file.
    #[error("input `{pattern}` matched no parquet, JSONL, Arrow IPC or WARC file{hint}")]
    NoMatch { pattern: String, hint: String },
    /// A glob pattern could not be parsed.
    #[error("input pattern `{pattern}` is not a valid glob: {message}")]
    BadPattern { pattern: String, message: String },
    /// Inputs were found but they hold no rows at all.
    #[error("the corpus is empty: {files} file(s) matched {patterns:?} but hold no rows")]
    EmptyCorpus { patterns: Vec<String>, files: usize },
    /// A filesystem operation failed.
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The parquet footer or a page, or a compressed JSONL stream, could not be decoded.
    #[error("{path}: corrupt, truncated or not a parquet/JSONL/Arrow IPC/WARC file: {message}")]
    Corrupt { path: PathBuf, message: String },
    /// A column named in the config is absent from a file.
    #[error("{path}: column `{column}` not found (columns present: {available})")]
    MissingColumn {
        path: PathBuf,
        column: String,
        available: String,
    },
    /// A JSONL field named in the config whose values in the first lines no Arrow type fits
    /// (a list mixing numbers and objects, say).
    #[error(
        "{path}: field `{field}` cannot be read: no Arrow type fits its values in the first \
         {lines} lines ({message})"
    )]
    UntypedField {
        path: PathBuf,
        field: String,
        lines: usize,
        message: String,
    },
    /// A column has a type the reader cannot use for its role.
    #[error("{path}: column `{column}` has type {found}, expected {expected}")]
    WrongColumnType {
        path: PathBuf,
        column: String,
        expected: &'static str,
        found: String,
    },
    /// Two input files disagree on the type of a projected column.
    #[error("{path}: column `{column}` has type {found}, but {first_path} has {expected}")]
    SchemaMismatch {
        path: PathBuf,
        column: String,
        found: String,
        first_path: PathBuf,
        expected: String,
    },
    /// A row could not be decoded (for example text that is not valid UTF-8).
    #[error("{path}: row group {row_group} (rows {first_row}..): {message}")]
    BadRows {
        path: PathBuf,
        row_group: usize,
        first_row: u64,
        message: String,
    },
    /// A JSONL line could not be read as a document.
    #[error("{path}: line {line}: {message}")]
    BadRecord {
        path: PathBuf,
        line: u64,
        message: String,
    },
    /// An object-storage request failed (after its retries), or its URL is not usable.
    #[error("{url}: {message}")]
    Object { url: String, message: String },
    /// Writing a parquet file failed.
    #[error("{path}: writing parquet failed: {message}")]
    Write { path: PathBuf, message: String },
}

impl StorageError {
    /// Wraps an I/O error with the path it concerns.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        StorageError::Io {
            path: path.into(),
            source,
        }
    }
}
