//! File summaries for `gleaner inspect`: schema, rows, row groups and sizes, from the parquet
//! footer only; for a JSONL file, its line count and the schema of its first lines.

use crate::arrow_ipc::{index_file as index_ipc_file, is_arrow_ipc, UNIT_BYTES};
use crate::error::{Result, StorageError};
use crate::input::InputFile;
use crate::jsonl::{index_file, infer_schema, jsonl_codec, CHUNK_BYTES};
use crate::source::ParquetSource;
use crate::warc::{
    index_file as index_warc_file, is_warc, schema as warc_schema, UNIT_BYTES as WARC_UNIT_BYTES,
};
use arrow::datatypes::SchemaRef;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use std::path::PathBuf;

/// Sizes of one column over all row groups.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ColumnSummary {
    /// Column path.
    pub name: String,
    /// Compressed bytes.
    pub compressed_bytes: u64,
    /// Uncompressed bytes.
    pub uncompressed_bytes: u64,
    /// Compression codec of the first row group.
    pub compression: String,
}

/// What a parquet footer says about a file.
#[derive(Debug, Clone)]
pub struct FileSummary {
    /// The file.
    pub path: PathBuf,
    /// Size on disk.
    pub bytes: u64,
    /// Rows.
    pub rows: u64,
    /// Row groups.
    pub row_groups: usize,
    /// Arrow schema.
    pub schema: SchemaRef,
    /// Per leaf column sizes.
    pub columns: Vec<ColumnSummary>,
    /// JSONL fields no Arrow type fits (mixed JSON types in the first lines), with the reason.
    pub untyped: Vec<(String, String)>,
    /// Writer that produced the file.
    pub created_by: Option<String>,
    /// `parquet`, or `jsonl` with its compression.
    pub format: String,
}

/// Reads the footer of an input file (a JSONL file: counts its documents, infers its
/// schema); local or in object storage.
pub fn describe_file(input: &InputFile) -> Result<FileSummary> {
    let (path, bytes) = (input.path.as_path(), input.bytes);
    if let Some(codec) = jsonl_codec(path) {
        let chunks = index_file(path, codec, CHUNK_BYTES)?;
        let inferred = infer_schema(path, codec, &|_| true)?;
        return Ok(FileSummary {
            path: path.to_path_buf(),
            bytes,
            rows: chunks.iter().map(|c| c.rows).sum(),
            row_groups: chunks.len(),
            schema: std::sync::Arc::new(inferred.schema),
            untyped: inferred.untyped,
            columns: Vec::new(),
            created_by: None,
            format: format!("jsonl ({codec:?})").to_lowercase(),
        });
    }
    if is_warc(path) {
        let units = index_warc_file(path, WARC_UNIT_BYTES)?;
        return Ok(FileSummary {
            path: path.to_path_buf(),
            bytes,
            rows: units.iter().map(|u| u.rows).sum(),
            row_groups: units.len(),
            schema: warc_schema(),
            untyped: Vec::new(),
            columns: Vec::new(),
            created_by: None,
            format: "warc".into(),
        });
    }
    if is_arrow_ipc(path) {
        let (schema, layout) = index_ipc_file(path, bytes, UNIT_BYTES)?;
        return Ok(FileSummary {
            path: path.to_path_buf(),
            bytes,
            rows: layout.units.iter().map(|u| u.rows).sum(),
            row_groups: layout.units.len(),
            schema,
            untyped: Vec::new(),
            columns: Vec::new(),
            created_by: None,
            format: "arrow ipc".into(),
        });
    }
    let source = ParquetSource::open(path, bytes)?;
    let builder =
        ParquetRecordBatchReaderBuilder::try_new(source).map_err(|e| StorageError::Corrupt {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
    let meta = builder.metadata();
    let descr = meta.file_metadata().schema_descr();
    let mut columns: Vec<ColumnSummary> = (0..descr.num_columns())
        .map(|c| ColumnSummary {
            name: descr.column(c).path().string(),
            compressed_bytes: 0,
            uncompressed_bytes: 0,
            compression: String::new(),
        })
        .collect();
    for rg in meta.row_groups() {
        for (c, col) in rg.columns().iter().enumerate() {
            columns[c].compressed_bytes += col.compressed_size().max(0) as u64;
            columns[c].uncompressed_bytes += col.uncompressed_size().max(0) as u64;
            if columns[c].compression.is_empty() {
                columns[c].compression = col.compression().to_string();
            }
        }
    }
    Ok(FileSummary {
        path: path.to_path_buf(),
        bytes,
        rows: meta.file_metadata().num_rows().max(0) as u64,
        row_groups: meta.num_row_groups(),
        schema: builder.schema().clone(),
        columns,
        untyped: Vec::new(),
        created_by: meta.file_metadata().created_by().map(String::from),
        format: "parquet".into(),
    })
}
