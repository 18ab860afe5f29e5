//! Parquet shard writing: zstd, size rotation, deterministic names, atomic commit.
//!
//! Each shard is written as `.part-NNNNN.parquet.tmp` and renamed to `part-NNNNN.parquet`
//! only once complete and synced, so a reader (or a user) never sees a partial shard.
//!
//! Rows are cut into row groups at `row_group_rows` / `row_group_bytes` and at shard
//! boundaries; each row group is encoded and compressed on its own thread (up to
//! `encode_threads` at once) and appended to the file strictly in order, so the bytes
//! written depend only on the rows and the options, never on timing.

use crate::atomic::{commit, temp_path_for, HashingFile};
use crate::error::{Result, StorageError};
use crate::jsonl::JsonlCodec;
use crate::jsonl_shards::JsonlShardWriter;
use arrow::array::{Array, AsArray, RecordBatch};
use arrow::compute::concat_batches;
use arrow::datatypes::{DataType, SchemaRef};
use parquet::arrow::arrow_writer::{
    compute_leaves, ArrowColumnChunk, ArrowColumnWriter, ArrowRowGroupWriterFactory,
};
use parquet::arrow::ArrowWriter;
use parquet::basic::{BrotliLevel, Compression, GzipLevel, ZstdLevel};
use parquet::file::properties::{EnabledStatistics, WriterProperties};
use parquet::file::writer::SerializedFileWriter;
use parquet::schema::types::ColumnPath;
use std::collections::VecDeque;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::thread::JoinHandle;

/// Default shard rotation size: 256 MB of uncompressed column data.
pub const DEFAULT_SHARD_BYTES: u64 = 256 * 1024 * 1024;

/// Compression codec of written parquet files.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ShardCodec {
    /// zstd at a level in 1..=22 (the default, level 3).
    Zstd(i32),
    /// Snappy (pyarrow's default; fastest to decode, larger files).
    Snappy,
    /// gzip at a level in 0..=9.
    Gzip(u32),
    /// Brotli at a level in 0..=11.
    Brotli(u32),
    /// LZ4 in the raw block format (parquet's `LZ4_RAW`, what current writers mean by lz4).
    Lz4Raw,
    /// No compression.
    Uncompressed,
}

impl ShardCodec {
    /// The parquet compression setting, or an error naming the invalid level.
    pub fn compression(self) -> std::result::Result<Compression, String> {
        Ok(match self {
            ShardCodec::Zstd(level) => {
                Compression::ZSTD(ZstdLevel::try_new(level).map_err(|e| e.to_string())?)
            }
            ShardCodec::Snappy => Compression::SNAPPY,
            ShardCodec::Gzip(level) => {
                Compression::GZIP(GzipLevel::try_new(level).map_err(|e| e.to_string())?)
            }
            ShardCodec::Brotli(level) => {
                Compression::BROTLI(BrotliLevel::try_new(level).map_err(|e| e.to_string())?)
            }
            ShardCodec::Lz4Raw => Compression::LZ4_RAW,
            ShardCodec::Uncompressed => Compression::UNCOMPRESSED,
        })
    }
}

/// Options of a [`ShardWriter`].
#[derive(Debug, Clone)]
pub struct ShardWriterOptions {
    /// File name prefix (`part` gives `part-00000.parquet`).
    pub prefix: String,
    /// A shard is closed once its uncompressed data reaches this many bytes.
    pub shard_bytes: u64,
    /// Codec of the shards.
    pub codec: ShardCodec,
    /// Most rows per parquet row group.
    pub row_group_rows: usize,
    /// A row group is closed once its uncompressed data reaches this many bytes.
    pub row_group_bytes: u64,
    /// Long-text columns written plain: no dictionary attempt and no min/max statistics,
    /// which cost time and say nothing useful about free text.
    pub plain_columns: Vec<String>,
    /// Row groups encoded at once (0 = number of cores).
    pub encode_threads: usize,
    /// Parquet (the default) or JSON Lines.
    pub format: ShardFormat,
}

/// The file format of written shards.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ShardFormat {
    /// Parquet, compressed by [`ShardWriterOptions::codec`].
    #[default]
    Parquet,
    /// JSON Lines, compressed by the codec when it is zstd or gzip (else plain).
    Jsonl,
}

impl ShardCodec {
    /// The JSONL compression of this codec (zstd, gzip or none), or `None` for codecs that
    /// only exist inside parquet (snappy, brotli, lz4).
    pub fn jsonl_codec(self) -> Option<(JsonlCodec, i32)> {
        match self {
            ShardCodec::Zstd(level) => Some((JsonlCodec::Zstd, level)),
            ShardCodec::Gzip(_) => Some((JsonlCodec::Gzip, 0)),
            ShardCodec::Uncompressed => Some((JsonlCodec::Plain, 0)),
            ShardCodec::Snappy | ShardCodec::Brotli(_) | ShardCodec::Lz4Raw => None,
        }
    }
}

/// Writes record batches into size-rotated shards of one folder, parquet or JSONL.
pub enum ShardWriter {
    /// Parquet shards.
    Parquet(Box<ParquetShardWriter>),
    /// JSON Lines shards.
    Jsonl(Box<JsonlShardWriter>),
}

impl ShardWriter {
    /// A writer into `dir` (created if missing) for batches of `schema`, in the options'
    /// format.
    pub fn new(dir: &Path, schema: SchemaRef, options: ShardWriterOptions) -> Result<Self> {
        match options.format {
            ShardFormat::Parquet => Ok(ShardWriter::Parquet(Box::new(ParquetShardWriter::new(
                dir, schema, options,
            )?))),
            ShardFormat::Jsonl => {
                let (codec, level) =
                    options
                        .codec
                        .jsonl_codec()
                        .ok_or_else(|| StorageError::Write {
                            path: dir.to_path_buf(),
                            message: format!(
                                "{:?} is not a JSONL compression (use zstd, gzip or none)",
                                options.codec
                            ),
                        })?;
                Ok(ShardWriter::Jsonl(Box::new(JsonlShardWriter::new(
                    dir,
                    &options.prefix,
                    codec,
                    level,
                    options.shard_bytes,
                )?)))
            }
        }
    }

    /// Appends a batch (see [`ParquetShardWriter::write`]).
    pub fn write(&mut self, batch: &RecordBatch) -> Result<()> {
        match self {
            ShardWriter::Parquet(w) => w.write(batch),
            ShardWriter::Jsonl(w) => w.write(batch),
        }
    }

    /// Commits the last shard and returns every committed shard in order.
    pub fn finish(self) -> Result<Vec<ShardInfo>> {
        match self {
            ShardWriter::Parquet(w) => w.finish(),
            ShardWriter::Jsonl(w) => w.finish(),
        }
    }
}

impl Default for ShardWriterOptions {
    fn default() -> Self {
        ShardWriterOptions {
            prefix: "part".into(),
            shard_bytes: DEFAULT_SHARD_BYTES,
            codec: ShardCodec::Zstd(3),
            row_group_rows: 16 * 1024,
            row_group_bytes: 16 * 1024 * 1024,
            plain_columns: Vec::new(),
            encode_threads: 0,
            format: ShardFormat::Parquet,
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

impl ShardInfo {
    /// The record of a shard just committed at `path`, from the [`HashingFile`] it was
    /// written through (its size and hash as written).
    pub fn committed(
        path: &Path,
        rows: u64,
        uncompressed_bytes: u64,
        bytes: u64,
        sha256: String,
    ) -> Self {
        ShardInfo {
            file: path
                .file_name()
                .expect("shard paths have a file name")
                .to_string_lossy()
                .into_owned(),
            rows,
            uncompressed_bytes,
            bytes,
            sha256,
        }
    }
}

type EncodedRowGroup = JoinHandle<parquet::errors::Result<Vec<ArrowColumnChunk>>>;

struct OpenShard {
    file: SerializedFileWriter<HashingFile>,
    factory: ArrowRowGroupWriterFactory,
    tmp: PathBuf,
    path: PathBuf,
    rows: u64,
    bytes: u64,
    row_groups: usize,
    /// Row groups being encoded, oldest first.
    pending: VecDeque<EncodedRowGroup>,
}

/// Writes record batches into size-rotated parquet shards in one directory.
pub struct ParquetShardWriter {
    dir: PathBuf,
    schema: SchemaRef,
    options: ShardWriterOptions,
    props: WriterProperties,
    encode_threads: usize,
    open: Option<OpenShard>,
    /// Rows of the row group being gathered.
    buffer: Vec<RecordBatch>,
    buffer_rows: usize,
    buffer_bytes: u64,
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

impl ParquetShardWriter {
    /// Creates a writer into `dir` (created if missing) for batches of `schema`.
    pub fn new(dir: &Path, schema: SchemaRef, options: ShardWriterOptions) -> Result<Self> {
        std::fs::create_dir_all(dir).map_err(|e| StorageError::io(dir, e))?;
        let compression = options
            .codec
            .compression()
            .map_err(|message| StorageError::Write {
                path: dir.to_path_buf(),
                message,
            })?;
        let mut props = WriterProperties::builder()
            .set_compression(compression)
            .set_max_row_group_row_count(Some(options.row_group_rows.max(1)));
        for col in &options.plain_columns {
            let path = ColumnPath::from(col.as_str());
            props = props
                .set_column_dictionary_enabled(path.clone(), false)
                .set_column_statistics_enabled(path, EnabledStatistics::None);
        }
        let encode_threads = match options.encode_threads {
            0 => std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1),
            n => n,
        };
        Ok(ParquetShardWriter {
            dir: dir.to_path_buf(),
            schema,
            options,
            props: props.build(),
            encode_threads,
            open: None,
            buffer: Vec::new(),
            buffer_rows: 0,
            buffer_bytes: 0,
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
            let (file, factory) = ArrowWriter::try_new(
                HashingFile::new(file),
                self.schema.clone(),
                Some(self.props.clone()),
            )
            .and_then(|w| w.into_serialized_writer())
            .map_err(|e| Self::write_error(&tmp, e))?;
            self.open = Some(OpenShard {
                file,
                factory,
                tmp,
                path,
                rows: 0,
                bytes: 0,
                row_groups: 0,
                pending: VecDeque::new(),
            });
        }
        Ok(self.open.as_mut().expect("just opened"))
    }

    /// Appends a batch. Shards close as soon as their uncompressed data reaches the
    /// rotation size (a batch crossing it is split at the row that reaches it); row groups
    /// close at `row_group_rows` rows or `row_group_bytes` bytes.
    pub fn write(&mut self, batch: &RecordBatch) -> Result<()> {
        if batch.num_rows() == 0 {
            return Ok(());
        }
        let sizes = row_sizes(batch);
        let target = self.options.shard_bytes.max(1);
        let rg_rows = self.options.row_group_rows.max(1);
        let rg_bytes = self.options.row_group_bytes.max(1);
        let mut start = 0;
        while start < batch.num_rows() {
            let mut shard_bytes = self.open_shard()?.bytes;
            let mut end = start;
            while end < batch.num_rows()
                && shard_bytes < target
                && self.buffer_rows < rg_rows
                && self.buffer_bytes < rg_bytes
            {
                shard_bytes += sizes[end];
                self.buffer_bytes += sizes[end];
                self.buffer_rows += 1;
                end += 1;
            }
            self.buffer.push(batch.slice(start, end - start));
            let shard = self.open.as_mut().expect("opened above");
            shard.rows += (end - start) as u64;
            shard.bytes = shard_bytes;
            if shard_bytes >= target {
                self.close_shard()?;
            } else if self.buffer_rows >= rg_rows || self.buffer_bytes >= rg_bytes {
                self.flush_row_group()?;
            }
            start = end;
        }
        Ok(())
    }

    /// Hands the gathered rows to an encoding thread; appends finished row groups in order.
    fn flush_row_group(&mut self) -> Result<()> {
        let limit = self.encode_threads;
        let schema = self.schema.clone();
        let Some(shard) = self.open.as_mut() else {
            return Ok(());
        };
        if self.buffer_rows > 0 {
            let batches = std::mem::take(&mut self.buffer);
            self.buffer_rows = 0;
            self.buffer_bytes = 0;
            let writers = shard
                .factory
                .create_column_writers(shard.row_groups)
                .map_err(|e| Self::write_error(&shard.tmp, e))?;
            shard.row_groups += 1;
            shard.pending.push_back(std::thread::spawn(move || {
                encode_row_group(&schema, writers, &batches)
            }));
        }
        while shard.pending.len() > limit {
            Self::append_oldest(shard)?;
        }
        Ok(())
    }

    fn append_oldest(shard: &mut OpenShard) -> Result<()> {
        let Some(handle) = shard.pending.pop_front() else {
            return Ok(());
        };
        let chunks = handle
            .join()
            .map_err(|_| Self::write_error(&shard.tmp, "row group encoder panicked"))?
            .map_err(|e| Self::write_error(&shard.tmp, e))?;
        let mut rg = shard
            .file
            .next_row_group()
            .map_err(|e| Self::write_error(&shard.tmp, e))?;
        for chunk in chunks {
            chunk
                .append_to_row_group(&mut rg)
                .map_err(|e| Self::write_error(&shard.tmp, e))?;
        }
        rg.close().map_err(|e| Self::write_error(&shard.tmp, e))?;
        Ok(())
    }

    fn close_shard(&mut self) -> Result<()> {
        self.flush_row_group()?;
        let Some(mut shard) = self.open.take() else {
            return Ok(());
        };
        while !shard.pending.is_empty() {
            Self::append_oldest(&mut shard)?;
        }
        let (file, sha256, bytes) = shard
            .file
            .into_inner()
            .map_err(|e| Self::write_error(&shard.tmp, e))?
            .finish();
        commit(file, &shard.tmp, &shard.path)?;
        self.shards.push(ShardInfo::committed(
            &shard.path,
            shard.rows,
            shard.bytes,
            bytes,
            sha256,
        ));
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

/// Encodes and compresses one row group's columns. The rows are first made contiguous, so
/// page boundaries depend only on the rows, not on how the caller batched them.
fn encode_row_group(
    schema: &SchemaRef,
    mut writers: Vec<ArrowColumnWriter>,
    batches: &[RecordBatch],
) -> parquet::errors::Result<Vec<ArrowColumnChunk>> {
    let batch = concat_batches(schema, batches)?;
    let mut next = writers.iter_mut();
    for (field, column) in schema.fields().iter().zip(batch.columns()) {
        for leaf in compute_leaves(field, column)? {
            next.next().expect("one writer per leaf").write(&leaf)?;
        }
    }
    writers.into_iter().map(ArrowColumnWriter::close).collect()
}

impl Drop for ParquetShardWriter {
    /// A writer dropped before [`ParquetShardWriter::finish`] removes its temporary file.
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
        .map_err(|e| ParquetShardWriter::write_error(&tmp, e))?;
    for b in batches {
        writer
            .write(b)
            .map_err(|e| ParquetShardWriter::write_error(&tmp, e))?;
    }
    let file = writer
        .into_inner()
        .map_err(|e| ParquetShardWriter::write_error(&tmp, e))?;
    commit(file, &tmp, path)
}
