//! Arrow IPC input: the `.arrow` files Hugging Face `datasets` writes with `save_to_disk`
//! and keeps in its cache (the IPC stream format), and `.feather` / `.arrow` files in the
//! IPC file format (pandas' and pyarrow's Feather v2, lz4- or zstd-compressed buffers
//! included).
//!
//! A file is one work unit, read from its start (a stream cannot be entered in the middle).
//! When the corpus is opened its record batches are read once, with only their first
//! column decoded, to count its documents. The IPC file format is the stream format
//! behind an 8-byte magic and before a footer, so both are read as a stream.

use crate::error::{Result, StorageError};
use crate::source::open_bytes;
use arrow::datatypes::SchemaRef;
use arrow::ipc::reader::StreamReader;
use arrow::record_batch::RecordBatch;
use std::io::{BufReader, Read};
use std::path::Path;

/// The magic that starts an IPC file-format file, padded to 8 bytes.
const FILE_MAGIC: &[u8; 8] = b"ARROW1\0\0";

/// Whether `path` names an Arrow IPC file (`.arrow`, `.feather`).
pub fn is_arrow_ipc(path: &Path) -> bool {
    path.file_name()
        .and_then(|n| n.to_str())
        .is_some_and(|n| n.ends_with(".arrow") || n.ends_with(".feather"))
}

/// The record batches of an IPC file, with only the `projection` columns decoded (all when
/// `None`), cut to at most `max_rows` rows each.
pub struct IpcBatches {
    inner: StreamReader<BufReader<Box<dyn Read + Send>>>,
    path: std::path::PathBuf,
    max_rows: usize,
    /// The batch being handed out in slices, and the next slice's first row.
    pending: Option<(RecordBatch, usize)>,
}

impl IpcBatches {
    /// Opens `path` (stream or file format) for reading from its first batch.
    pub fn open(path: &Path, projection: Option<Vec<usize>>, max_rows: usize) -> Result<Self> {
        let mut head = Vec::with_capacity(FILE_MAGIC.len());
        open_bytes(path, 0, None)?
            .take(FILE_MAGIC.len() as u64)
            .read_to_end(&mut head)
            .map_err(|e| StorageError::io(path, e))?;
        let start = if head == FILE_MAGIC {
            FILE_MAGIC.len() as u64
        } else {
            0
        };
        let source = open_bytes(path, start, None)?;
        let inner = StreamReader::try_new(BufReader::with_capacity(1 << 20, source), projection)
            .map_err(|e| corrupt(path, e))?;
        Ok(IpcBatches {
            inner,
            path: path.to_path_buf(),
            max_rows: max_rows.max(1),
            pending: None,
        })
    }

    /// The file's schema (before any projection).
    pub fn schema(&self) -> SchemaRef {
        self.inner.schema()
    }
}

impl Iterator for IpcBatches {
    type Item = Result<RecordBatch>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if let Some((batch, offset)) = &mut self.pending {
                if *offset < batch.num_rows() {
                    let rows = self.max_rows.min(batch.num_rows() - *offset);
                    let slice = batch.slice(*offset, rows);
                    *offset += rows;
                    return Some(Ok(slice));
                }
            }
            match self.inner.next()? {
                Ok(batch) => self.pending = Some((batch, 0)),
                Err(e) => return Some(Err(corrupt(&self.path, e))),
            }
        }
    }
}

/// The schema and the number of rows of an IPC file (its batches read once, with only the
/// first column decoded).
pub fn schema_and_rows(path: &Path) -> Result<(SchemaRef, u64)> {
    let schema = IpcBatches::open(path, None, usize::MAX)?.schema();
    let first_column = Some(vec![0]).filter(|_| !schema.fields().is_empty());
    let counting = IpcBatches::open(path, first_column, usize::MAX)?;
    let mut rows = 0;
    for batch in counting {
        rows += batch?.num_rows() as u64;
    }
    Ok((schema, rows))
}

fn corrupt(path: &Path, e: arrow::error::ArrowError) -> StorageError {
    StorageError::Corrupt {
        path: path.to_path_buf(),
        message: format!("Arrow IPC: {e}"),
    }
}
