//! Storage layer of gleaner: streaming, projected parquet reading in row-group work units,
//! atomic zstd shard writing with size rotation, selection sidecars and run manifests.
//!
//! This crate knows nothing about selectors: it moves documents between parquet and Arrow.

pub mod atomic;
pub mod error;
pub mod input;
pub mod inspect;
pub mod manifest;
pub mod reader;
pub mod sidecar;
pub mod writer;

pub use error::{Result, StorageError};
pub use input::{resolve_inputs, InputFile};
pub use reader::{ColumnSpec, CorpusReader, DocBatch, DocKey, OnBadFile, SkippedFile, WorkUnit};
pub use writer::{ShardInfo, ShardWriter, ShardWriterOptions};
