//! Storage layer of gleaner: streaming, projected parquet and JSONL reading in work units
//! (parquet row groups, JSONL byte ranges), from local files or object storage (`s3://`),
//! atomic zstd shard writing with size rotation, selection sidecars and run manifests.
//!
//! This crate knows nothing about selectors: it moves documents between parquet and Arrow.

pub mod arrow_ipc;
pub mod atomic;
pub mod error;
pub mod input;
pub mod inspect;
pub mod jsonl;
pub mod jsonl_shards;
pub mod manifest;
pub mod object;
pub mod partition;
pub mod reader;
pub mod sidecar;
pub mod source;
pub mod warc;
pub mod writer;

pub use error::{Result, StorageError};
pub use input::{resolve_inputs, InputFile};
pub use jsonl::OnBadRecord;
pub use reader::{
    ColumnSpec, CorpusReader, DocBatch, DocKey, InputFormat, OnBadFile, SkippedFile, WorkUnit,
};
pub use writer::{ShardCodec, ShardFormat, ShardInfo, ShardWriter, ShardWriterOptions};
