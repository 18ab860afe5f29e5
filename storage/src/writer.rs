//! Parquet shard writing: zstd, size rotation, deterministic names, atomic commit.
//!
//! Each shard is written as `.part-NNNNN.parquet.tmp` and renamed to `part-NNNNN.parquet`
//! only once complete and synced, so a reader (or a user) never sees a partial shard.

use crate::atomic::{commit, sha256_file, temp_path_for};
use crate::error::{Result, StorageError};
use arrow::array::{Array, AsArray, RecordBatch};
use arrow::datatypes::{DataType, SchemaRef};
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::WriterProperties;
use std::fs::File;
use std::path::{Path, PathBuf};

/// Default shard rotation size: 256 MB of uncompressed column data.
pub const DEFAULT_SHARD_BYTES: u64 = 256 * 1024 * 1024;

/// Options of a [`ShardWriter`].
#[derive(Debug, Clone)]
pub struct ShardWriterOptions {
    /// File name prefix (`part` gives `part-00000.parquet`).
    pub prefix: String,
    /// A shard is closed once its uncompressed data reaches this many bytes.
    pub shard_bytes: u64,
    /// zstd level (1..=22).
    pub zstd_level: i32,
    /// Rows per parquet row group.
    pub row_group_rows: usize,
}

impl Default for ShardWriterOptions {
    fn default() -> Self {
        ShardWriterOptions {
            prefix: "part".into(),
            shard_bytes: DEFAULT_SHARD_BYTES,
            zstd_level: 3,
            row_group_rows: 16 * 1024,
        }
    }
}

/// A committed shard.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ShardInfo {
    /// File name within the output directory.
    pub file: String,
    /// Rows written.
    pub rows: u64,
    /// Uncompressed bytes of column data written.
    pub uncompressed_bytes: u64,
    /// Size of the parquet file.
    pub bytes: u64,
    /// Hex sha256 of the file.
    pub sha256: String,
}

struct OpenShard {
    writer: ArrowWriter<File>,
    tmp: PathBuf,
    path: PathBuf,
    rows: u64,
    bytes: u64,
}

/// Writes record batches into size-rotated parquet shards in one directory.
pub struct ShardWriter {
    dir: PathBuf,
    schema: SchemaRef,
    options: ShardWriterOptions,
    props: WriterProperties,
    open: Option<OpenShard>,
    shards: Vec<ShardInfo>,
}

/// Uncompressed size of each row: value bytes of variable-width columns plus fixed widths.
pub fn row_sizes(batch: &RecordBatch) -> Vec<u64> {
    let n = batch.num_rows();
    let mut sizes = vec![0u64; n];
    for col in batch.columns() {
        match col.data_type() {
            DataType::Utf8 => {
                let offsets = col.as_string::<i32>().value_offsets();
                for (i, s) in sizes.iter_mut().enumerate() {
                    *s += (offsets[i + 1] - offsets[i]) as u64 + 4;
                }
            }
            DataType::LargeUtf8 => {
                let offsets = col.as_string::<i64>().value_offsets();
                for (i, s) in sizes.iter_mut().enumerate() {
                    *s += (offsets[i + 1] - offsets[i]) as u64 + 8;
                }
            }
            DataType::Utf8View => {
                let a = col.as_string_view();
                for (i, s) in sizes.iter_mut().enumerate() {
                    *s += a.value(i).len() as u64 + 16;
                }
            }
            t => {
                let width = t.primitive_width().map(|w| w as u64).unwrap_or_else(|| {
                    let total = col.to_data().get_slice_memory_size().unwrap_or(0) as u64;
                    total / n.max(1) as u64
                });
                sizes.iter_mut().for_each(|s| *s += width);
            }
        }
    }
    sizes
}

impl ShardWriter {
    /// Creates a writer into `dir` (created if missing) for batches of `schema`.
    pub fn new(dir: &Path, schema: SchemaRef, options: ShardWriterOptions) -> Result<Self> {
        std::fs::create_dir_all(dir).map_err(|e| StorageError::io(dir, e))?;
        let level = ZstdLevel::try_new(options.zstd_level).map_err(|e| StorageError::Write {
            path: dir.to_path_buf(),
            message: e.to_string(),
        })?;
        let props = WriterProperties::builder()
            .set_compression(Compression::ZSTD(level))
            .set_max_row_group_row_count(Some(options.row_group_rows.max(1)))
            .build();
        Ok(ShardWriter {
            dir: dir.to_path_buf(),
            schema,
            options,
            props,
            open: None,
            shards: Vec::new(),
        })
    }

    fn shard_path(&self, index: usize) -> PathBuf {
        self.dir
            .join(format!("{}-{index:05}.parquet", self.options.prefix))
    }

    fn write_error(path: &Path, e: impl ToString) -> StorageError {
        StorageError::Write {
            path: path.to_path_buf(),
            message: e.to_string(),
        }
    }

    fn open_shard(&mut self) -> Result<&mut OpenShard> {
        if self.open.is_none() {
            let path = self.shard_path(self.shards.len());
            let tmp = temp_path_for(&path);
            let file = File::create(&tmp).map_err(|e| StorageError::io(&tmp, e))?;
            let writer = ArrowWriter::try_new(file, self.schema.clone(), Some(self.props.clone()))
                .map_err(|e| Self::write_error(&tmp, e))?;
            self.open = Some(OpenShard {
                writer,
                tmp,
                path,
                rows: 0,
                bytes: 0,
            });
        }
        Ok(self.open.as_mut().expect("just opened"))
    }

    /// Appends a batch, closing shards as they reach the rotation size. A batch that
    /// crosses the boundary is split at the row that reaches it.
    pub fn write(&mut self, batch: &RecordBatch) -> Result<()> {
        if batch.num_rows() == 0 {
            return Ok(());
        }
        let sizes = row_sizes(batch);
        let target = self.options.shard_bytes.max(1);
        let mut start = 0;
        while start < batch.num_rows() {
            let shard = self.open_shard()?;
            let mut end = start;
            let mut bytes = shard.bytes;
            while end < batch.num_rows() && bytes < target {
                bytes += sizes[end];
                end += 1;
            }
            let part = batch.slice(start, end - start);
            shard
                .writer
                .write(&part)
                .map_err(|e| Self::write_error(&shard.tmp, e))?;
            shard.rows += (end - start) as u64;
            shard.bytes = bytes;
            if bytes >= target {
                self.close_shard()?;
            }
            start = end;
        }
        Ok(())
    }

    fn close_shard(&mut self) -> Result<()> {
        let Some(shard) = self.open.take() else {
            return Ok(());
        };
        let file = shard
            .writer
            .into_inner()
            .map_err(|e| Self::write_error(&shard.tmp, e))?;
        commit(file, &shard.tmp, &shard.path)?;
        let bytes = std::fs::metadata(&shard.path)
            .map_err(|e| StorageError::io(&shard.path, e))?
            .len();
        self.shards.push(ShardInfo {
            file: shard
                .path
                .file_name()
                .expect("shard paths have a file name")
                .to_string_lossy()
                .into_owned(),
            rows: shard.rows,
            uncompressed_bytes: shard.bytes,
            bytes,
            sha256: sha256_file(&shard.path)?,
        });
        Ok(())
    }

    /// Commits the last shard and returns every committed shard in order. A writer that
    /// received no row still commits one empty shard, so the output has a schema.
    pub fn finish(mut self) -> Result<Vec<ShardInfo>> {
        if self.shards.is_empty() && self.open.is_none() {
            self.open_shard()?;
        }
        self.close_shard()?;
        Ok(std::mem::take(&mut self.shards))
    }
}

impl Drop for ShardWriter {
    /// A writer dropped before [`ShardWriter::finish`] removes its temporary file.
    fn drop(&mut self) {
        if let Some(shard) = self.open.take() {
            let _ = std::fs::remove_file(&shard.tmp);
        }
    }
}

/// Writes `batches` as one parquet file at `path`, atomically (zstd).
pub fn write_parquet_file(path: &Path, schema: SchemaRef, batches: &[RecordBatch]) -> Result<()> {
    let tmp = temp_path_for(path);
    let file = File::create(&tmp).map_err(|e| StorageError::io(&tmp, e))?;
    let props = WriterProperties::builder()
        .set_compression(Compression::ZSTD(ZstdLevel::default()))
        .build();
    let mut writer = ArrowWriter::try_new(file, schema, Some(props))
        .map_err(|e| ShardWriter::write_error(&tmp, e))?;
    for b in batches {
        writer
            .write(b)
            .map_err(|e| ShardWriter::write_error(&tmp, e))?;
    }
    let file = writer
        .into_inner()
        .map_err(|e| ShardWriter::write_error(&tmp, e))?;
    commit(file, &tmp, path)
}
