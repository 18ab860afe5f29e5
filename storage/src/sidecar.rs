//! Score sidecars: per-work-unit parquet files holding values computed for a corpus's
//! documents (embeddings, LM losses) next to, not inside, the corpus. Each file covers one
//! row group of one input file and holds `row` (row within the input file), `id` and `value`;
//! its name is derived from the input file's path, size and modification time plus the row
//! group, so an edited input never meets stale values. Files are committed atomically, so a
//! killed job leaves either a whole sidecar or none.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, RecordBatch, StringArray, UInt64Array};
use arrow::datatypes::{DataType, Field, Schema, UInt64Type};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use sha2::{Digest, Sha256};

use crate::atomic::hex;
use crate::error::{Result, StorageError};
use crate::reader::{FileInfo, WorkUnit};
use crate::writer::write_parquet_file;

/// A folder of sidecars for one computed column.
#[derive(Debug, Clone)]
pub struct SidecarStore {
    dir: PathBuf,
}

impl SidecarStore {
    /// A store in `dir` (created on first write).
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self { dir: dir.into() }
    }

    /// The folder.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The sidecar file of a work unit.
    pub fn path(&self, file: &FileInfo, unit: &WorkUnit) -> PathBuf {
        let absolute = std::fs::canonicalize(&file.path).unwrap_or_else(|_| file.path.clone());
        let mut hasher = Sha256::new();
        hasher.update(absolute.to_string_lossy().as_bytes());
        hasher.update(file.bytes.to_le_bytes());
        hasher.update(file.version.as_bytes());
        let stem = file
            .path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        self.dir.join(format!(
            "{stem}-{}-rg{:05}.parquet",
            &hex(&hasher.finalize())[..16],
            unit.row_group
        ))
    }

    /// Whether the unit's sidecar exists.
    pub fn has(&self, file: &FileInfo, unit: &WorkUnit) -> bool {
        self.path(file, unit).is_file()
    }

    /// Writes the unit's values: one per row of the unit, in row order.
    pub fn write(
        &self,
        file: &FileInfo,
        unit: &WorkUnit,
        ids: Vec<String>,
        values: ArrayRef,
    ) -> Result<()> {
        assert_eq!(ids.len(), values.len(), "one value per document");
        assert_eq!(ids.len() as u64, unit.rows, "one value per row of the unit");
        std::fs::create_dir_all(&self.dir).map_err(|e| StorageError::io(&self.dir, e))?;
        let rows: UInt64Array = (unit.first_row..unit.first_row + unit.rows).collect();
        let schema = Arc::new(Schema::new(vec![
            Field::new("row", DataType::UInt64, false),
            Field::new("id", DataType::Utf8, false),
            Field::new("value", values.data_type().clone(), true),
        ]));
        let batch = RecordBatch::try_new(
            schema.clone(),
            vec![Arc::new(rows), Arc::new(StringArray::from(ids)), values],
        )
        .expect("columns match the schema");
        write_parquet_file(&self.path(file, unit), schema, &[batch])
    }

    /// The unit's values, one per row in row order; an error names the sidecar when it is
    /// missing, unreadable or does not cover the unit's rows.
    pub fn read(&self, file: &FileInfo, unit: &WorkUnit) -> Result<ArrayRef> {
        let path = self.path(file, unit);
        let corrupt = |message: String| StorageError::Corrupt {
            path: path.clone(),
            message,
        };
        let handle = File::open(&path).map_err(|e| StorageError::io(&path, e))?;
        let reader = ParquetRecordBatchReaderBuilder::try_new(handle)
            .and_then(|b| b.build())
            .map_err(|e| corrupt(e.to_string()))?;
        let mut rows = Vec::new();
        let mut values = Vec::new();
        for batch in reader {
            let batch = batch.map_err(|e| corrupt(e.to_string()))?;
            let (Some(row), Some(value)) =
                (batch.column_by_name("row"), batch.column_by_name("value"))
            else {
                return Err(corrupt(
                    "not a sidecar: needs `row` and `value` columns".into(),
                ));
            };
            let row = row
                .as_primitive_opt::<UInt64Type>()
                .ok_or_else(|| corrupt("column `row` is not uint64".into()))?;
            rows.extend(row.values().iter().copied());
            values.push(value.clone());
        }
        let expected: Vec<u64> = (unit.first_row..unit.first_row + unit.rows).collect();
        if rows != expected {
            return Err(corrupt(format!(
                "covers {} rows, the unit (row group {}) has rows {}..{}",
                rows.len(),
                unit.row_group,
                unit.first_row,
                unit.first_row + unit.rows
            )));
        }
        let parts: Vec<&dyn Array> = values.iter().map(|a| a.as_ref()).collect();
        arrow::compute::concat(&parts).map_err(|e| corrupt(e.to_string()))
    }
}
