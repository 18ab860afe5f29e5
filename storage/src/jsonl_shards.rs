//! JSONL shard writing, for pipelines that expect JSON Lines: one object per document
//! (nested metadata as nested objects, integer ids as numbers), plain, gzip or zstd,
//! rotated at the same uncompressed size as parquet shards and committed the same way
//! (`.part-NNNNN.jsonl.zst.tmp`, synced, renamed).

use crate::atomic::{commit, temp_path_for, HashingFile};
use crate::error::{Result, StorageError};
use crate::jsonl::JsonlCodec;
use crate::writer::{row_sizes, ShardInfo};
use arrow::array::RecordBatch;
use arrow::json::LineDelimitedWriter;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

/// The file name ending of a JSONL shard of this codec.
pub fn extension(codec: JsonlCodec) -> &'static str {
    match codec {
        JsonlCodec::Plain => "jsonl",
        JsonlCodec::Gzip => "jsonl.gz",
        JsonlCodec::Zstd => "jsonl.zst",
    }
}

enum Encoder {
    Plain(BufWriter<HashingFile>),
    Gzip(flate2::write::GzEncoder<BufWriter<HashingFile>>),
    Zstd(zstd::stream::write::Encoder<'static, BufWriter<HashingFile>>),
}

impl Encoder {
    fn new(file: File, codec: JsonlCodec, zstd_level: i32) -> std::io::Result<Self> {
        let out = BufWriter::with_capacity(1 << 20, HashingFile::new(file));
        Ok(match codec {
            JsonlCodec::Plain => Encoder::Plain(out),
            JsonlCodec::Gzip => Encoder::Gzip(flate2::write::GzEncoder::new(
                out,
                flate2::Compression::new(6),
            )),
            JsonlCodec::Zstd => Encoder::Zstd(zstd::stream::write::Encoder::new(out, zstd_level)?),
        })
    }

    fn writer(&mut self) -> &mut dyn Write {
        match self {
            Encoder::Plain(w) => w,
            Encoder::Gzip(w) => w,
            Encoder::Zstd(w) => w,
        }
    }

    /// The finished file, the hex sha256 of its bytes and their count.
    fn finish(self) -> std::io::Result<(File, String, u64)> {
        let out = match self {
            Encoder::Plain(w) => w,
            Encoder::Gzip(w) => w.finish()?,
            Encoder::Zstd(w) => w.finish()?,
        };
        Ok(out.into_inner().map_err(|e| e.into_error())?.finish())
    }
}

struct OpenShard {
    encoder: Encoder,
    tmp: PathBuf,
    path: PathBuf,
    rows: u64,
    bytes: u64,
}

/// Writes record batches into size-rotated JSONL shards in one folder.
pub struct JsonlShardWriter {
    dir: PathBuf,
    prefix: String,
    codec: JsonlCodec,
    zstd_level: i32,
    shard_bytes: u64,
    open: Option<OpenShard>,
    shards: Vec<ShardInfo>,
}

impl JsonlShardWriter {
    /// A writer into `dir` (created if missing).
    pub fn new(
        dir: &Path,
        prefix: &str,
        codec: JsonlCodec,
        zstd_level: i32,
        shard_bytes: u64,
    ) -> Result<Self> {
        std::fs::create_dir_all(dir).map_err(|e| StorageError::io(dir, e))?;
        Ok(Self {
            dir: dir.to_path_buf(),
            prefix: prefix.to_string(),
            codec,
            zstd_level,
            shard_bytes: shard_bytes.max(1),
            open: None,
            shards: Vec::new(),
        })
    }

    fn open_shard(&mut self) -> Result<&mut OpenShard> {
        if self.open.is_none() {
            let name = format!(
                "{}-{:05}.{}",
                self.prefix,
                self.shards.len(),
                extension(self.codec)
            );
            let path = self.dir.join(name);
            let tmp = temp_path_for(&path);
            let file = File::create(&tmp).map_err(|e| StorageError::io(&tmp, e))?;
            let encoder = Encoder::new(file, self.codec, self.zstd_level)
                .map_err(|e| StorageError::io(&tmp, e))?;
            self.open = Some(OpenShard {
                encoder,
                tmp,
                path,
                rows: 0,
                bytes: 0,
            });
        }
        Ok(self.open.as_mut().expect("just opened"))
    }

    /// Appends a batch; a shard closes once its uncompressed data reaches the rotation size
    /// (a batch crossing it is split at the row that reaches it).
    pub fn write(&mut self, batch: &RecordBatch) -> Result<()> {
        let sizes = row_sizes(batch);
        let target = self.shard_bytes;
        let mut start = 0;
        while start < batch.num_rows() {
            let shard = self.open_shard()?;
            let mut end = start;
            let mut bytes = shard.bytes;
            while end < batch.num_rows() && bytes < target {
                bytes += sizes[end];
                end += 1;
            }
            let mut json = LineDelimitedWriter::new(shard.encoder.writer());
            json.write(&batch.slice(start, end - start))
                .and_then(|_| json.finish())
                .map_err(|e| StorageError::Write {
                    path: shard.tmp.clone(),
                    message: e.to_string(),
                })?;
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
        let (file, sha256, bytes) = shard
            .encoder
            .finish()
            .map_err(|e| StorageError::io(&shard.tmp, e))?;
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

    /// Commits the last shard and returns every committed shard in order (an empty one when
    /// no row came).
    pub fn finish(mut self) -> Result<Vec<ShardInfo>> {
        if self.shards.is_empty() && self.open.is_none() {
            self.open_shard()?;
        }
        self.close_shard()?;
        Ok(std::mem::take(&mut self.shards))
    }
}

impl Drop for JsonlShardWriter {
    /// A writer dropped before [`JsonlShardWriter::finish`] removes its temporary file.
    fn drop(&mut self) {
        if let Some(shard) = self.open.take() {
            let _ = std::fs::remove_file(&shard.tmp);
        }
    }
}
