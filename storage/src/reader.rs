//! Streaming, projected corpus reading in work units.
//!
//! A corpus is a sorted list of parquet and JSONL files; each row group of a parquet file,
//! and each chunk of a JSONL file (see [`crate::jsonl`]), is one [`WorkUnit`]. Units are
//! read independently (and so in parallel) as a stream of [`DocBatch`]es of at most
//! `batch_size` rows, holding only the projected columns, so memory stays bounded by
//! `batch_size` x document size whatever the corpus size.
//!
//! Columns are named by path: `source` is a top-level column, `metadata.source` a field of
//! the struct column `metadata` (nested JSON objects, datatrove's and Dolma's metadata).

use crate::arrow_ipc;
use crate::error::{Result, StorageError};
use crate::input::{resolve_inputs, InputFile};
use crate::jsonl::{self, BadRecord, JsonlBatches, JsonlChunk, JsonlCodec, OnBadRecord};
use crate::partition::{self, PathColumn};
use crate::source::ParquetSource;
use crate::warc;
use arrow::array::{Array, ArrayRef, AsArray, BooleanArray, RecordBatch, StringArray};
use arrow::compute::{cast, filter_record_batch};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use parquet::arrow::arrow_reader::{ParquetRecordBatchReader, ParquetRecordBatchReaderBuilder};
use parquet::arrow::ProjectionMask;
use rayon::prelude::*;
use std::borrow::Cow;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Which columns play which role.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ColumnSpec {
    /// The document text (string column; required in every file).
    pub text: String,
    /// The document id. A file without this column gets derived ids `"<path>:<row>"`.
    pub id: String,
    /// Optional domain/source column (string); required in every file when named.
    pub source: Option<String>,
    /// Extra columns carried through to the output unchanged; required when named.
    pub metadata: Vec<String>,
    /// Vector columns (list or fixed-size list of float32: embeddings, loss trajectories),
    /// read for the stages that need them and not written to the output.
    pub vectors: Vec<String>,
    /// Numeric score columns (any integer or float type), read as f64 for score-based
    /// filters and selectors and not written to the output.
    pub scores: Vec<String>,
    /// String columns the stages read (a page's URL), not written to the output unless
    /// also named in `metadata`.
    pub strings: Vec<String>,
}

impl Default for ColumnSpec {
    fn default() -> Self {
        ColumnSpec {
            text: "text".into(),
            id: "id".into(),
            source: None,
            metadata: Vec::new(),
            vectors: Vec::new(),
            scores: Vec::new(),
            strings: Vec::new(),
        }
    }
}

/// What to do with a file whose footer, schema or pages are bad.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OnBadFile {
    /// Stop with an error naming the file.
    #[default]
    Error,
    /// Leave the file out and report it.
    Skip,
}

/// A file left out under [`OnBadFile::Skip`], with the reason.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SkippedFile {
    /// The file.
    pub path: PathBuf,
    /// Why it was left out.
    pub reason: String,
}

/// The layout of an input file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InputFormat {
    /// Parquet: units are row groups.
    Parquet,
    /// JSON Lines: units are the chunks of the index.
    Jsonl {
        /// Compression of the stream.
        codec: JsonlCodec,
        /// The file's work units.
        chunks: Vec<JsonlChunk>,
    },
    /// Arrow IPC (stream or file format): units are runs of record batches.
    ArrowIpc {
        /// Indices of the top-level columns the spec reads.
        projection: Vec<usize>,
        /// Where the file's messages and units lie.
        layout: arrow_ipc::IpcLayout,
    },
    /// A web archive (WARC or WET records, `crate::warc`), in units of whole records.
    Warc {
        /// Its units.
        units: Vec<warc::WarcUnit>,
    },
}

/// Facts about one readable input file.
#[derive(Debug, Clone)]
pub struct FileInfo {
    /// Path as resolved.
    pub path: PathBuf,
    /// Size on disk.
    pub bytes: u64,
    /// What changes when the file is replaced (see [`InputFile::version`]).
    pub version: String,
    /// Rows in the file.
    pub rows: u64,
    /// Number of row groups (JSONL: chunks).
    pub row_groups: usize,
    /// Whether the id column exists (otherwise ids are derived).
    pub has_id: bool,
    /// Parquet or JSONL.
    pub format: InputFormat,
    /// The columns the config reads that the file lacks, taken from its path's
    /// `name=value` directories (see [`crate::partition`]).
    pub path_columns: Vec<PathColumn>,
}

/// One unit of work: a row group of a file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkUnit {
    /// Index into [`CorpusReader::files`].
    pub file: usize,
    /// Row group index within the file (JSONL: chunk index).
    pub row_group: usize,
    /// Index within the file of the unit's first row.
    pub first_row: u64,
    /// Rows in the unit.
    pub rows: u64,
    /// Compressed bytes of the projected columns (JSONL: bytes of the chunk on disk).
    pub compressed_bytes: u64,
}

/// Stable global key of a document: file index, row group and row within the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct DocKey {
    /// Index of the file in the sorted input list.
    pub file: u32,
    /// Row group within the file.
    pub row_group: u32,
    /// Row within the file.
    pub row: u64,
}

/// A text column in any of Arrow's string layouts, read without copying.
#[derive(Debug, Clone)]
enum TextColumn {
    Utf8(arrow::array::StringArray),
    LargeUtf8(arrow::array::LargeStringArray),
    View(arrow::array::StringViewArray),
}

impl TextColumn {
    fn new(array: &ArrayRef) -> Self {
        match array.data_type() {
            DataType::Utf8 => TextColumn::Utf8(array.as_string::<i32>().clone()),
            DataType::LargeUtf8 => TextColumn::LargeUtf8(array.as_string::<i64>().clone()),
            DataType::Utf8View => TextColumn::View(array.as_string_view().clone()),
            other => unreachable!("text type {other} is rejected when the file is opened"),
        }
    }

    fn get(&self, i: usize) -> Option<&str> {
        match self {
            TextColumn::Utf8(a) => a.is_valid(i).then(|| a.value(i)),
            TextColumn::LargeUtf8(a) => a.is_valid(i).then(|| a.value(i)),
            TextColumn::View(a) => a.is_valid(i).then(|| a.value(i)),
        }
    }
}

/// A float32 list column, read without copying.
#[derive(Debug, Clone)]
struct VectorColumn {
    values: arrow::array::Float32Array,
    /// Start offsets per row (len rows + 1), relative to `values`.
    offsets: Vec<usize>,
    valid: Option<arrow::buffer::NullBuffer>,
}

impl VectorColumn {
    fn new(array: &ArrayRef) -> Self {
        let (values, offsets): (ArrayRef, Vec<usize>) = match array.data_type() {
            DataType::List(_) => {
                let a = array.as_list::<i32>();
                (
                    a.values().clone(),
                    a.value_offsets().iter().map(|&o| o as usize).collect(),
                )
            }
            DataType::LargeList(_) => {
                let a = array.as_list::<i64>();
                (
                    a.values().clone(),
                    a.value_offsets().iter().map(|&o| o as usize).collect(),
                )
            }
            DataType::FixedSizeList(_, size) => {
                let a = array.as_fixed_size_list();
                let size = *size as usize;
                let start = a.offset() * size;
                (
                    a.values().clone(),
                    (0..=a.len()).map(|i| start + i * size).collect(),
                )
            }
            other => unreachable!("vector type {other} is rejected when the file is opened"),
        };
        VectorColumn {
            values: values
                .as_primitive::<arrow::datatypes::Float32Type>()
                .clone(),
            offsets,
            valid: array.nulls().cloned(),
        }
    }

    fn get(&self, i: usize) -> Option<&[f32]> {
        if self.valid.as_ref().is_some_and(|n| n.is_null(i)) {
            return None;
        }
        Some(&self.values.values()[self.offsets[i]..self.offsets[i + 1]])
    }
}

/// A batch of documents from one work unit.
#[derive(Debug, Clone)]
pub struct DocBatch {
    /// Index of the unit this batch belongs to.
    pub unit: usize,
    /// Key of the batch's first document; row `i` has row `first.row + i`.
    pub first: DocKey,
    texts: TextColumn,
    ids: Option<StringArray>,
    sources: Option<StringArray>,
    vectors: Vec<VectorColumn>,
    scores: Vec<arrow::array::Float64Array>,
    strings: Vec<StringArray>,
    id_prefix: Arc<str>,
    /// JSONL lines left out under [`OnBadRecord::Skip`] (rows of all nulls), by row.
    bad_records: Vec<BadRecord>,
    /// Output columns: id, text, source and metadata, in that order.
    record: RecordBatch,
}

impl DocBatch {
    /// Number of documents.
    pub fn len(&self) -> usize {
        self.record.num_rows()
    }

    /// Whether the batch holds no document.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Appends a float32-list column computed outside the file (a sidecar), one entry per
    /// document; it is read back as vector `which` = the number of vectors before the call.
    pub fn attach_vector(&mut self, array: &ArrayRef) {
        assert_eq!(array.len(), self.len(), "one vector per document");
        self.vectors.push(VectorColumn::new(array));
    }

    /// Appends a numeric column computed outside the file (a sidecar), one value per
    /// document; it is read back as score `which` = the number of scores before the call.
    pub fn attach_score(&mut self, array: &ArrayRef) {
        assert_eq!(array.len(), self.len(), "one score per document");
        let values = cast(array, &DataType::Float64).expect("numeric sidecars cast to float64");
        self.scores.push(
            values
                .as_primitive::<arrow::datatypes::Float64Type>()
                .clone(),
        );
    }

    /// Why row `i` is not a document (a JSONL line skipped under [`OnBadRecord::Skip`]),
    /// with its line number.
    pub fn bad_record(&self, i: usize) -> Option<&BadRecord> {
        self.bad_records
            .binary_search_by_key(&i, |b| b.row)
            .ok()
            .map(|k| &self.bad_records[k])
    }

    /// Text of document `i` (`None` for a null).
    pub fn text(&self, i: usize) -> Option<&str> {
        self.texts.get(i)
    }

    /// Id of document `i`: the id column's value, or `"<path>:<row>"` when the file has none
    /// (or the value is null).
    pub fn id(&self, i: usize) -> Cow<'_, str> {
        match &self.ids {
            Some(ids) if ids.is_valid(i) => Cow::Borrowed(ids.value(i)),
            _ => Cow::Owned(format!("{}:{}", self.id_prefix, self.first.row + i as u64)),
        }
    }

    /// Source/domain of document `i`, when a source column is configured and not null.
    pub fn source(&self, i: usize) -> Option<&str> {
        self.sources
            .as_ref()
            .and_then(|s| s.is_valid(i).then(|| s.value(i)))
    }

    /// Vector column `which` (an index into [`ColumnSpec::vectors`]) of document `i`, unless null.
    pub fn vector(&self, which: usize, i: usize) -> Option<&[f32]> {
        self.vectors.get(which).and_then(|v| v.get(i))
    }

    /// Score column `which` (an index into [`ColumnSpec::scores`]) of document `i`, unless null.
    pub fn score(&self, which: usize, i: usize) -> Option<f64> {
        self.scores
            .get(which)
            .and_then(|s| s.is_valid(i).then(|| s.value(i)))
    }

    /// String column `which` (an index into [`ColumnSpec::strings`]) of document `i`, unless
    /// null.
    pub fn string(&self, which: usize, i: usize) -> Option<&str> {
        self.strings
            .get(which)
            .and_then(|s| s.is_valid(i).then(|| s.value(i)))
    }

    /// Global key of document `i`.
    pub fn key(&self, i: usize) -> DocKey {
        DocKey {
            row: self.first.row + i as u64,
            ..self.first
        }
    }

    /// Bytes the batch holds: its output columns and the vector and score columns the stages
    /// read (a buffer shared by both counts twice).
    pub fn memory_size(&self) -> usize {
        self.record.get_array_memory_size()
            + self
                .vectors
                .iter()
                .map(|v| {
                    v.values.get_array_memory_size() + std::mem::size_of_val(v.offsets.as_slice())
                })
                .sum::<usize>()
            + self
                .scores
                .iter()
                .map(|s| s.get_array_memory_size())
                .sum::<usize>()
            + self
                .strings
                .iter()
                .map(|s| s.get_array_memory_size())
                .sum::<usize>()
    }

    /// The documents as an output record batch (id, text, source, metadata).
    pub fn record(&self) -> &RecordBatch {
        &self.record
    }

    /// The rows where `keep` is true, as an output record batch.
    pub fn filtered_record(
        &self,
        keep: &BooleanArray,
    ) -> Result<RecordBatch, arrow::error::ArrowError> {
        filter_record_batch(&self.record, keep)
    }
}

/// A validated corpus: its files, work units and output schema.
#[derive(Debug, Clone)]
pub struct CorpusReader {
    files: Vec<FileInfo>,
    units: Vec<WorkUnit>,
    skipped: Vec<SkippedFile>,
    spec: ColumnSpec,
    output_schema: SchemaRef,
    batch_size: usize,
    /// The JSONL files' merged schema, projected to the columns the spec names.
    jsonl_schema: Option<SchemaRef>,
    on_bad_record: OnBadRecord,
    /// The type of each Hive partition column over every input path.
    partition_types: HashMap<String, DataType>,
}

/// The text column's place among the carried (output) columns: after the id.
const TEXT_SLOT: usize = 1;

fn type_name(t: &DataType) -> String {
    t.to_string()
}

fn is_string(t: &DataType) -> bool {
    matches!(t, DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View)
}

fn is_string_like(t: &DataType) -> bool {
    is_string(t) || matches!(t, DataType::Dictionary(_, v) if is_string(v))
}

/// The string type a text column is read as: string layouts as they are; binary ones (as
/// writers that leave out parquet's UTF8 annotation store text) as the matching string
/// layout, once every value is checked to be UTF-8; dictionary-typed text as its values.
fn text_type(t: &DataType) -> Option<DataType> {
    match t {
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => Some(t.clone()),
        DataType::Binary => Some(DataType::Utf8),
        DataType::LargeBinary => Some(DataType::LargeUtf8),
        DataType::BinaryView => Some(DataType::Utf8View),
        DataType::Dictionary(_, values) => text_type(values),
        _ => None,
    }
}

/// `text` (a column [`text_type`] accepts) as the string type `to`; a value that is not
/// UTF-8 is an error naming its row (`first_row` is the batch's first).
fn text_as_string(
    text: ArrayRef,
    to: &DataType,
    first_row: u64,
) -> std::result::Result<ArrayRef, String> {
    if text.data_type() == to {
        return Ok(text);
    }
    let text = match text.data_type() {
        DataType::Dictionary(_, values) => cast(&text, values).map_err(|e| e.to_string())?,
        _ => text,
    };
    let values: Box<dyn Iterator<Item = Option<&[u8]>>> = match text.data_type() {
        DataType::Binary => Box::new(text.as_binary::<i32>().iter()),
        DataType::LargeBinary => Box::new(text.as_binary::<i64>().iter()),
        DataType::BinaryView => Box::new(text.as_binary_view().iter()),
        _ => Box::new(std::iter::empty()),
    };
    for (i, value) in values.enumerate() {
        if let Some(Err(e)) = value.map(std::str::from_utf8) {
            return Err(format!(
                "row {}: the text is not valid UTF-8 (byte {} of a binary value)",
                first_row + i as u64,
                e.valid_up_to()
            ));
        }
    }
    let strict = arrow::compute::CastOptions {
        safe: false,
        ..Default::default()
    };
    arrow::compute::cast_with_options(&text, to, &strict).map_err(|e| e.to_string())
}

fn is_float_list(t: &DataType) -> bool {
    match t {
        DataType::List(f) | DataType::LargeList(f) | DataType::FixedSizeList(f, _) => {
            f.data_type() == &DataType::Float32
        }
        _ => false,
    }
}

fn is_id_like(t: &DataType) -> bool {
    is_string_like(t)
        || matches!(
            t,
            DataType::Int32 | DataType::Int64 | DataType::UInt32 | DataType::UInt64
        )
}

/// The top-level column a path starts at: `metadata` for `metadata.source`.
fn path_root<'a>(schema: &Schema, path: &'a str) -> Option<&'a str> {
    if schema.index_of(path).is_ok() {
        return Some(path);
    }
    path.split_once('.').map(|(root, _)| root)
}

/// The field a column path names: a top-level column, or a field inside struct columns.
pub fn field_at_path(schema: &Schema, path: &str) -> Option<Field> {
    if let Ok(f) = schema.field_with_name(path) {
        return Some(f.clone());
    }
    let mut parts = path.split('.');
    let mut field = schema.field_with_name(parts.next()?).ok()?.clone();
    for part in parts {
        let DataType::Struct(children) = field.data_type() else {
            return None;
        };
        field = children.iter().find(|c| c.name() == part)?.as_ref().clone();
    }
    Some(field)
}

/// The column a path names in a batch (see [`field_at_path`]); a field of a null struct
/// value is null.
pub fn column_at_path(batch: &RecordBatch, path: &str) -> Option<ArrayRef> {
    if let Some(c) = batch.column_by_name(path) {
        return Some(c.clone());
    }
    let mut parts = path.split('.');
    let mut column = batch.column_by_name(parts.next()?)?.clone();
    for part in parts {
        let s = column.as_struct_opt()?;
        let child = s.column_by_name(part)?.clone();
        column = match s.nulls() {
            Some(nulls) if s.null_count() > 0 => {
                let merged = arrow::buffer::NullBuffer::union(Some(nulls), child.nulls());
                arrow::array::make_array(child.to_data().into_builder().nulls(merged).build().ok()?)
            }
            _ => child,
        };
    }
    Some(column)
}

/// The type an id column has in the output: integers keep theirs, strings become utf8.
fn output_id_type(t: &DataType) -> DataType {
    if is_string_like(t) {
        DataType::Utf8
    } else {
        t.clone()
    }
}

/// The projected columns of one file as validated at open time.
struct OpenedFile {
    info: FileInfo,
    /// (name, type) of id, text, source and metadata columns, in output order.
    carried: Vec<(String, DataType)>,
    units: Vec<WorkUnit>,
}

/// The roots of the columns the spec names, in the spec's order, deduplicated.
fn spec_paths(spec: &ColumnSpec) -> Vec<&str> {
    let mut names: Vec<&str> = vec![spec.text.as_str(), spec.id.as_str()];
    names.extend(spec.source.as_deref());
    names.extend(spec.metadata.iter().map(String::as_str));
    names.extend(spec.vectors.iter().map(String::as_str));
    names.extend(spec.scores.iter().map(String::as_str));
    names.extend(spec.strings.iter().map(String::as_str));
    names
}

fn open_builder(path: &Path, size: u64) -> Result<ParquetRecordBatchReaderBuilder<ParquetSource>> {
    let source = ParquetSource::open(path, size)?;
    ParquetRecordBatchReaderBuilder::try_new(source).map_err(|e| StorageError::Corrupt {
        path: path.to_path_buf(),
        message: e.to_string(),
    })
}

/// Root column indices (in the file) of the columns the spec projects.
fn projection_indices(schema: &Schema, spec: &ColumnSpec) -> Vec<usize> {
    let mut idx: Vec<usize> = spec_paths(spec)
        .iter()
        .filter_map(|p| path_root(schema, p).and_then(|r| schema.index_of(r).ok()))
        .collect();
    idx.sort_unstable();
    idx.dedup();
    idx
}

/// The parquet leaf columns under the given root columns (a struct root has several).
fn leaf_columns(schema: &parquet::schema::types::SchemaDescriptor, roots: &[usize]) -> Vec<usize> {
    (0..schema.num_columns())
        .filter(|&leaf| roots.contains(&schema.get_column_root_idx(leaf)))
        .collect()
}

/// What an input file holds, before its columns are checked.
enum Layout {
    Parquet(ParquetRecordBatchReaderBuilder<ParquetSource>),
    Jsonl {
        codec: JsonlCodec,
        schema: SchemaRef,
    },
    ArrowIpc {
        schema: SchemaRef,
        layout: arrow_ipc::IpcLayout,
    },
    Warc {
        units: Vec<warc::WarcUnit>,
    },
}

fn open_file(
    input: &InputFile,
    file_index: usize,
    spec: &ColumnSpec,
    partition_types: &HashMap<String, DataType>,
    layout: Layout,
) -> Result<OpenedFile> {
    let path = &input.path;
    let schema = match &layout {
        Layout::Parquet(builder) => builder.schema().clone(),
        Layout::Jsonl { schema, .. } | Layout::ArrowIpc { schema, .. } => schema.clone(),
        Layout::Warc { .. } => warc::schema(),
    };
    let available = || {
        schema
            .fields()
            .iter()
            .map(|f| format!("{}: {}", f.name(), f.data_type()))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let missing = |name: &str| StorageError::MissingColumn {
        path: path.clone(),
        column: name.to_string(),
        available: available(),
    };
    let field =
        |name: &str| -> Result<Field> { field_at_path(&schema, name).ok_or_else(|| missing(name)) };
    // Source, metadata and score columns the file lacks come from its path's partition
    // directories, typed over every file's (`partition::column_types`).
    let partitions = partition::hive_partitions(path);
    let mut path_columns: Vec<PathColumn> = Vec::new();
    let mut field_or_path = |name: &str| -> Result<Field> {
        if let Some(f) = field_at_path(&schema, name) {
            return Ok(f);
        }
        let from_path = partition::find(&partitions, name).ok_or_else(|| missing(name))?;
        if !path_columns.contains(from_path) {
            path_columns.push(from_path.clone());
        }
        let data_type = partition_types.get(name).cloned().unwrap_or(DataType::Utf8);
        Ok(Field::new(name, data_type, true))
    };
    let check = |f: &Field, ok: fn(&DataType) -> bool, expected: &'static str| -> Result<()> {
        if ok(f.data_type()) {
            Ok(())
        } else {
            Err(StorageError::WrongColumnType {
                path: path.clone(),
                column: f.name().clone(),
                expected,
                found: type_name(f.data_type()),
            })
        }
    };
    let text = field(&spec.text)?;
    check(
        &text,
        |t| text_type(t).is_some(),
        "a string column (utf8, large_utf8 or utf8_view; binary or dictionary-typed text is \
         read as strings)",
    )?;
    let id_type = match field_at_path(&schema, &spec.id) {
        Some(f) => {
            check(&f, is_id_like, "a string or integer column")?;
            Some(output_id_type(f.data_type()))
        }
        None => None,
    };
    let has_id = id_type.is_some();
    // The id column leads: integer ids keep their type, string ids are written as utf8.
    let mut carried = vec![(spec.id.clone(), id_type.clone().unwrap_or(DataType::Utf8))];
    carried.push((
        spec.text.clone(),
        text_type(text.data_type()).expect("checked above"),
    ));
    if let Some(src) = &spec.source {
        let f = field_or_path(src)?;
        // A partition directory names a source whatever its values look like (integer ones
        // are written as text).
        if field_at_path(&schema, src).is_some() {
            check(&f, is_string_like, "a string column")?;
        }
        carried.push((src.clone(), DataType::Utf8));
    }
    for m in &spec.metadata {
        let f = field_or_path(m)?;
        carried.push((m.clone(), f.data_type().clone()));
    }
    for v in &spec.vectors {
        let f = field(v)?;
        check(&f, is_float_list, "a list or fixed-size list of float32")?;
    }
    for sc in &spec.scores {
        let f = field_or_path(sc)?;
        if f.data_type() == &DataType::Utf8 && field_at_path(&schema, sc).is_none() {
            let value = partition::find(&partitions, sc).and_then(|c| c.value.as_deref());
            if value.is_some_and(|v| v.parse::<f64>().is_err()) {
                return Err(StorageError::WrongColumnType {
                    path: path.clone(),
                    column: sc.clone(),
                    expected: "a number in the path's partition directory",
                    found: format!("`{sc}={}`", value.unwrap_or_default()),
                });
            }
            continue;
        }
        check(&f, |t| t.is_numeric(), "a numeric column")?;
    }
    for name in &spec.strings {
        let f = field_or_path(name)?;
        check(&f, is_string_like, "a string column")?;
    }

    let (units, row_groups, format) = match layout {
        Layout::Jsonl { codec, .. } => jsonl_units(input, file_index, codec)?,
        Layout::Parquet(builder) => {
            let projected =
                leaf_columns(builder.parquet_schema(), &projection_indices(&schema, spec));
            let units = parquet_units(builder.metadata(), &projected, file_index);
            (
                units,
                builder.metadata().num_row_groups(),
                InputFormat::Parquet,
            )
        }
        Layout::Warc { units } => {
            let work = pieces_as_units(
                file_index,
                units
                    .iter()
                    .map(|u| (u.first_row, u.rows, u.end.min(input.bytes) - u.start)),
            );
            let count = units.len();
            (work, count, InputFormat::Warc { units })
        }
        Layout::ArrowIpc { layout, .. } => {
            let units = pieces_as_units(
                file_index,
                layout
                    .units
                    .iter()
                    .map(|u| (u.first_row, u.rows, u.bytes.end - u.bytes.start)),
            );
            let row_groups = layout.units.len();
            let projection = projection_indices(&schema, spec);
            (
                units,
                row_groups,
                InputFormat::ArrowIpc { projection, layout },
            )
        }
    };
    Ok(OpenedFile {
        info: FileInfo {
            path: path.clone(),
            bytes: input.bytes,
            version: input.version.clone(),
            rows: units.iter().map(|u: &WorkUnit| u.rows).sum(),
            row_groups,
            has_id,
            format,
            path_columns,
        },
        carried,
        units,
    })
}

/// The work units of a parquet file: its row groups that hold rows, with the compressed
/// bytes of the `projected` leaf columns.
fn parquet_units(
    meta: &parquet::file::metadata::ParquetMetaData,
    projected: &[usize],
    file_index: usize,
) -> Vec<WorkUnit> {
    let mut units = Vec::with_capacity(meta.num_row_groups());
    let mut first_row = 0u64;
    for (rg_index, rg) in meta.row_groups().iter().enumerate() {
        let rows = rg.num_rows().max(0) as u64;
        let compressed_bytes = projected
            .iter()
            .filter(|&&c| c < rg.num_columns())
            .map(|&c| rg.column(c).compressed_size().max(0) as u64)
            .sum();
        if rows > 0 {
            units.push(WorkUnit {
                file: file_index,
                row_group: rg_index,
                first_row,
                rows,
                compressed_bytes,
            });
        }
        first_row += rows;
    }
    units
}

/// The work units of a file its index cut into pieces of `(first_row, rows, bytes)`: the
/// pieces that hold rows, each numbered by its place among all pieces.
fn pieces_as_units(
    file_index: usize,
    pieces: impl Iterator<Item = (u64, u64, u64)>,
) -> Vec<WorkUnit> {
    pieces
        .enumerate()
        .filter(|(_, (_, rows, _))| *rows > 0)
        .map(|(k, (first_row, rows, compressed_bytes))| WorkUnit {
            file: file_index,
            row_group: k,
            first_row,
            rows,
            compressed_bytes,
        })
        .collect()
}

/// The work units of a JSONL file (its index's chunks that hold documents), its chunk count
/// and its format.
fn jsonl_units(
    input: &InputFile,
    file_index: usize,
    codec: JsonlCodec,
) -> Result<(Vec<WorkUnit>, usize, InputFormat)> {
    let chunks = jsonl::index_file(&input.path, codec, jsonl::CHUNK_BYTES)?;
    let units = pieces_as_units(
        file_index,
        chunks.iter().map(|c| {
            let bytes = if codec == JsonlCodec::Plain {
                c.end_byte.min(input.bytes) - c.start_byte
            } else {
                input.bytes
            };
            (c.first_row, c.rows, bytes)
        }),
    );
    let row_groups = chunks.len();
    Ok((units, row_groups, InputFormat::Jsonl { codec, chunks }))
}

/// The JSONL files' schemas merged (a field missing from some lines or files is null
/// there), projected to the top-level columns the spec's paths start at; and, by input
/// index, the files whose schema could not be inferred or merged.
fn merged_jsonl_schema(
    inputs: &[InputFile],
    spec: &ColumnSpec,
) -> (Option<SchemaRef>, HashMap<usize, StorageError>) {
    let mut merged: Option<(Schema, PathBuf)> = None;
    let mut failed = HashMap::new();
    // Only the fields the spec's paths start at are typed: a field the run does not read
    // never stops a file from being read.
    let paths = spec_paths(spec);
    let wanted = |key: &str| {
        paths.iter().any(|p| {
            p.strip_prefix(key)
                .is_some_and(|rest| rest.is_empty() || rest.starts_with('.'))
        })
    };
    let inferred: Vec<Option<Result<Schema>>> = inputs
        .par_iter()
        .map(|input| {
            jsonl::jsonl_codec(&input.path).map(|codec| {
                let inferred = jsonl::infer_schema(&input.path, codec, &wanted)?;
                match inferred.untyped.into_iter().next() {
                    Some((field, message)) => Err(StorageError::UntypedField {
                        path: input.path.clone(),
                        field,
                        lines: jsonl::SCHEMA_SAMPLE_LINES,
                        message,
                    }),
                    None => Ok(inferred.schema),
                }
            })
        })
        .collect();
    for (k, (input, inferred)) in inputs.iter().zip(inferred).enumerate() {
        let Some(inferred) = inferred else {
            continue;
        };
        let schema = match inferred {
            Ok(schema) => schema,
            Err(e) => {
                failed.insert(k, e);
                continue;
            }
        };
        merged = Some(match merged {
            None => (schema, input.path.clone()),
            Some((before, first)) => match Schema::try_merge([before.clone(), schema]) {
                Ok(joined) => (joined, first),
                Err(e) => {
                    failed.insert(
                        k,
                        StorageError::SchemaMismatch {
                            path: input.path.clone(),
                            column: "(JSON fields)".into(),
                            found: e.to_string(),
                            first_path: first.clone(),
                            expected: "the same JSON types".into(),
                        },
                    );
                    (before, first)
                }
            },
        });
    }
    let schema = merged.map(|(schema, _)| {
        let roots: Vec<usize> = projection_indices(&schema, spec);
        Arc::new(
            schema
                .project(&roots)
                .expect("indices come from the schema"),
        )
    });
    (schema, failed)
}

impl CorpusReader {
    /// Resolves `patterns`, opens every file's footer and validates the projected columns.
    ///
    /// Errors name the file and the problem; under [`OnBadFile::Skip`] bad files are left
    /// out and listed in [`CorpusReader::skipped`]. A corpus with no rows is an error.
    pub fn open(
        patterns: &[String],
        spec: ColumnSpec,
        on_bad_file: OnBadFile,
        batch_size: usize,
    ) -> Result<Self> {
        let inputs = resolve_inputs(patterns)?;
        let partition_types = partition::column_types(inputs.iter().map(|i| i.path.as_path()));
        let (jsonl_schema, jsonl_failed) = merged_jsonl_schema(&inputs, &spec);
        // Files are opened in parallel (parquet footers; JSONL files are decoded once to count
        // their documents), then taken in input order; each file's units get its index below.
        let mut failed: Vec<Option<StorageError>> = (0..inputs.len()).map(|_| None).collect();
        for (k, e) in jsonl_failed {
            failed[k] = Some(e);
        }
        let opened_files: Vec<Result<OpenedFile>> = inputs
            .par_iter()
            .zip(failed.into_par_iter())
            .map(|(input, failed)| {
                let layout = match (jsonl::jsonl_codec(&input.path), failed) {
                    (Some(_), Some(e)) => Err(e),
                    (Some(codec), None) => Ok(Layout::Jsonl {
                        codec,
                        schema: jsonl_schema.clone().expect("inferred for a JSONL input"),
                    }),
                    (None, _) if warc::is_warc(&input.path) => {
                        warc::index_file(&input.path, warc::UNIT_BYTES)
                            .map(|units| Layout::Warc { units })
                    }
                    (None, _) if arrow_ipc::is_arrow_ipc(&input.path) => {
                        arrow_ipc::index_file(&input.path, input.bytes, arrow_ipc::UNIT_BYTES)
                            .map(|(schema, layout)| Layout::ArrowIpc { schema, layout })
                    }
                    (None, _) => open_builder(&input.path, input.bytes).map(Layout::Parquet),
                };
                layout.and_then(|layout| open_file(input, 0, &spec, &partition_types, layout))
            })
            .collect();
        let mut files = Vec::new();
        let mut units = Vec::new();
        let mut skipped = Vec::new();
        let mut carried_first: Option<(PathBuf, Vec<(String, DataType)>)> = None;
        // Whether the files store their text in different string layouts (pyarrow writes
        // utf8, polars large_utf8 or utf8_view): then every file's text is read as large_utf8.
        let mut text_layouts_differ = false;
        for (input, opened) in inputs.iter().zip(opened_files) {
            let opened = opened.map(|mut opened| {
                for unit in &mut opened.units {
                    unit.file = files.len();
                }
                opened
            });
            let opened = opened.and_then(|opened| {
                if let Some((first_path, first)) = &carried_first {
                    for (column, ((name, t), (_, t0))) in
                        opened.carried.iter().zip(first).enumerate()
                    {
                        if t != t0 && column == TEXT_SLOT && is_string(t) && is_string(t0) {
                            text_layouts_differ = true;
                        } else if t != t0 {
                            return Err(StorageError::SchemaMismatch {
                                path: opened.info.path.clone(),
                                column: name.clone(),
                                found: type_name(t),
                                first_path: first_path.clone(),
                                expected: type_name(t0),
                            });
                        }
                    }
                }
                Ok(opened)
            });
            match opened {
                Ok(opened) => {
                    if carried_first.is_none() {
                        carried_first = Some((opened.info.path.clone(), opened.carried.clone()));
                    }
                    units.extend(opened.units);
                    files.push(opened.info);
                }
                Err(err) if on_bad_file == OnBadFile::Skip => skipped.push(SkippedFile {
                    path: input.path.clone(),
                    reason: err.to_string(),
                }),
                Err(err) => return Err(err),
            }
        }
        if units.is_empty() {
            return Err(StorageError::EmptyCorpus {
                patterns: patterns.to_vec(),
                files: files.len(),
            });
        }
        let (_, mut carried) = carried_first.expect("a unit implies an opened file");
        if text_layouts_differ {
            carried[TEXT_SLOT].1 = DataType::LargeUtf8;
        }
        // String ids are never null (derived ids fill the gaps); integer ids are kept as
        // they are, nulls included.
        let fields: Vec<Field> = carried
            .iter()
            .enumerate()
            .map(|(i, (n, t))| Field::new(n, t.clone(), i > 0 || t != &DataType::Utf8))
            .collect();
        Ok(CorpusReader {
            files,
            units,
            skipped,
            spec,
            output_schema: Arc::new(Schema::new(fields)),
            batch_size: batch_size.max(1),
            jsonl_schema,
            on_bad_record: OnBadRecord::Error,
            partition_types,
        })
    }

    /// Sets what happens to a JSONL line that cannot be read (default: an error).
    pub fn set_on_bad_record(&mut self, on_bad_record: OnBadRecord) {
        self.on_bad_record = on_bad_record;
    }

    /// The readable input files, in corpus order.
    pub fn files(&self) -> &[FileInfo] {
        &self.files
    }

    /// All work units, in corpus order (file, then row group).
    pub fn units(&self) -> &[WorkUnit] {
        &self.units
    }

    /// Files left out under [`OnBadFile::Skip`].
    pub fn skipped(&self) -> &[SkippedFile] {
        &self.skipped
    }

    /// Schema of [`DocBatch::record`]: id (utf8), text, source (utf8), metadata.
    pub fn output_schema(&self) -> &SchemaRef {
        &self.output_schema
    }

    /// Total rows over all readable files.
    pub fn total_rows(&self) -> u64 {
        self.files.iter().map(|f| f.rows).sum()
    }

    /// Streams the documents of unit `unit` as batches of at most `batch_size` rows.
    pub fn read_unit(&self, unit: usize) -> Result<UnitBatches<'_>> {
        let work = &self.units[unit];
        let info = &self.files[work.file];
        let id_prefix: Arc<str> = Arc::from(info.path.to_string_lossy().as_ref());
        let inner = match &info.format {
            InputFormat::Jsonl { codec, chunks } => {
                RawBatches::Jsonl(Box::new(JsonlBatches::open(
                    &info.path,
                    *codec,
                    &chunks[work.row_group],
                    self.jsonl_schema
                        .clone()
                        .expect("a JSONL file implies its schema"),
                    &self.spec.text,
                    self.batch_size,
                    self.on_bad_record,
                )?))
            }
            InputFormat::ArrowIpc { projection, layout } => {
                RawBatches::ArrowIpc(Box::new(arrow_ipc::IpcBatches::open(
                    &info.path,
                    layout,
                    &layout.units[work.row_group],
                    Some(projection.clone()),
                    self.batch_size,
                )?))
            }
            InputFormat::Warc { units } => RawBatches::Warc(Box::new(warc::WarcBatches::open(
                &info.path,
                &units[work.row_group],
                self.batch_size,
            )?)),
            InputFormat::Parquet => RawBatches::Parquet(self.parquet_batches(work)?),
        };
        Ok(UnitBatches {
            reader: self,
            unit,
            inner,
            next_row: work.first_row,
            id_prefix,
        })
    }

    /// The projected columns of a parquet unit's row group, in batches of `batch_size` rows.
    fn parquet_batches(&self, work: &WorkUnit) -> Result<ParquetRecordBatchReader> {
        let info = &self.files[work.file];
        let source = ParquetSource::open(&info.path, info.bytes)?;
        let builder = ParquetRecordBatchReaderBuilder::try_new(source.clone()).map_err(|e| {
            StorageError::Corrupt {
                path: info.path.clone(),
                message: e.to_string(),
            }
        })?;
        let schema = builder.schema().clone();
        let projected = projection_indices(&schema, &self.spec);
        // A remote unit fetches the projected column chunks of its row group, and no more.
        let row_group = builder.metadata().row_group(work.row_group);
        let ranges: Vec<std::ops::Range<u64>> = leaf_columns(builder.parquet_schema(), &projected)
            .into_iter()
            .filter(|&c| c < row_group.num_columns())
            .map(|c| {
                let (start, len) = row_group.column(c).byte_range();
                start..start + len
            })
            .collect();
        source.prefetch(&ranges)?;
        let mask = ProjectionMask::roots(builder.parquet_schema(), projected);
        builder
            .with_projection(mask)
            .with_row_groups(vec![work.row_group])
            .with_batch_size(self.batch_size)
            .build()
            .map_err(|e| self.bad_rows(work, work.first_row, e.to_string()))
    }

    fn bad_rows(&self, work: &WorkUnit, first_row: u64, message: String) -> StorageError {
        StorageError::BadRows {
            path: self.files[work.file].path.clone(),
            row_group: work.row_group,
            first_row,
            message,
        }
    }

    fn make_batch(
        &self,
        unit: usize,
        first_row: u64,
        raw: RecordBatch,
        bad_records: Vec<BadRecord>,
        id_prefix: &Arc<str>,
    ) -> Result<DocBatch> {
        let work = &self.units[unit];
        let spec = &self.spec;
        let fail = |m: String| self.bad_rows(work, first_row, m);
        let n = raw.num_rows();
        let path_columns = &self.files[work.file].path_columns;
        let column = |name: &str| -> Result<ArrayRef> {
            if let Some(c) = column_at_path(&raw, name) {
                return Ok(c);
            }
            match partition::find(path_columns, name) {
                Some(from_path) => Ok(partition::constant_column(
                    from_path.value.as_deref(),
                    self.partition_types.get(name).unwrap_or(&DataType::Utf8),
                    n,
                )),
                None => Err(fail(format!(
                    "column `{name}` missing from a decoded batch"
                ))),
            }
        };
        let to_utf8 = |a: ArrayRef| -> Result<StringArray> {
            let a = if a.data_type() == &DataType::Utf8 {
                a
            } else {
                cast(&a, &DataType::Utf8).map_err(|e| fail(e.to_string()))?
            };
            Ok(a.as_string::<i32>().clone())
        };
        let text = text_as_string(
            column(&spec.text)?,
            self.output_schema.field(TEXT_SLOT).data_type(),
            first_row,
        )
        .map_err(fail)?;
        let ids = match column_at_path(&raw, &spec.id) {
            Some(a) => Some(to_utf8(a)?),
            None => None,
        };
        let vectors = spec
            .vectors
            .iter()
            .map(|v| Ok(VectorColumn::new(&column(v)?)))
            .collect::<Result<Vec<_>>>()?;
        let scores = spec
            .scores
            .iter()
            .map(|sc| {
                let a = cast(&column(sc)?, &DataType::Float64).map_err(|e| fail(e.to_string()))?;
                Ok(a.as_primitive::<arrow::datatypes::Float64Type>().clone())
            })
            .collect::<Result<Vec<_>>>()?;
        let strings = spec
            .strings
            .iter()
            .map(|name| to_utf8(column(name)?))
            .collect::<Result<Vec<_>>>()?;
        let sources = match &spec.source {
            Some(s) => Some(to_utf8(column(s)?)?),
            None => None,
        };
        let first = DocKey {
            file: work.file as u32,
            row_group: work.row_group as u32,
            row: first_row,
        };
        let id_type = self.output_schema.field(0).data_type();
        let id_col: ArrayRef = if id_type != &DataType::Utf8 {
            // Integer ids: the file's values, unchanged.
            column(&spec.id)?
        } else {
            Arc::new(match &ids {
                Some(ids) if ids.null_count() == 0 => ids.clone(),
                _ => (0..n)
                    .map(|i| match &ids {
                        Some(ids) if ids.is_valid(i) => ids.value(i).to_string(),
                        _ => format!("{}:{}", id_prefix, first_row + i as u64),
                    })
                    .map(Some)
                    .collect::<StringArray>(),
            })
        };
        let mut columns: Vec<ArrayRef> = vec![id_col, text.clone()];
        if let Some(s) = &sources {
            columns.push(Arc::new(s.clone()));
        }
        for m in &spec.metadata {
            columns.push(column(m)?);
        }
        let record = RecordBatch::try_new(self.output_schema.clone(), columns)
            .map_err(|e| fail(e.to_string()))?;
        Ok(DocBatch {
            unit,
            first,
            texts: TextColumn::new(&text),
            ids,
            sources,
            vectors,
            scores,
            strings,
            id_prefix: id_prefix.clone(),
            bad_records,
            record,
        })
    }
}

/// The decoded batches of one unit, before the spec's columns are picked.
enum RawBatches {
    Parquet(ParquetRecordBatchReader),
    Jsonl(Box<JsonlBatches>),
    ArrowIpc(Box<arrow_ipc::IpcBatches>),
    Warc(Box<warc::WarcBatches>),
}

/// Iterator over the batches of one work unit.
pub struct UnitBatches<'a> {
    reader: &'a CorpusReader,
    unit: usize,
    inner: RawBatches,
    next_row: u64,
    id_prefix: Arc<str>,
}

impl Iterator for UnitBatches<'_> {
    type Item = Result<DocBatch>;

    fn next(&mut self) -> Option<Self::Item> {
        let first_row = self.next_row;
        let (raw, bad) = match &mut self.inner {
            RawBatches::Parquet(inner) => match inner.next()? {
                Ok(raw) => (raw, Vec::new()),
                Err(e) => {
                    let work = &self.reader.units[self.unit];
                    return Some(Err(self.reader.bad_rows(work, first_row, e.to_string())));
                }
            },
            RawBatches::Jsonl(inner) => match inner.next()? {
                Ok(decoded) => decoded,
                Err(e) => return Some(Err(e)),
            },
            RawBatches::Warc(inner) => match inner.next()? {
                Ok(raw) => (raw, Vec::new()),
                Err(e) => return Some(Err(e)),
            },
            RawBatches::ArrowIpc(inner) => match inner.next()? {
                Ok(raw) => (raw, Vec::new()),
                Err(e) => return Some(Err(e)),
            },
        };
        self.next_row += raw.num_rows() as u64;
        Some(
            self.reader
                .make_batch(self.unit, first_row, raw, bad, &self.id_prefix),
        )
    }
}

/// Visits the texts in `column` of the parquet files `paths` resolve to, in file and row
/// order, until `visit` returns false (a null text reads as empty).
pub fn for_each_text(
    paths: &[String],
    column: &str,
    mut visit: impl FnMut(&str) -> bool,
) -> Result<()> {
    let spec = ColumnSpec {
        text: column.to_string(),
        ..Default::default()
    };
    let reader = CorpusReader::open(paths, spec, OnBadFile::Error, 1024)?;
    for unit in 0..reader.units().len() {
        for batch in reader.read_unit(unit)? {
            let batch = batch?;
            for i in 0..batch.len() {
                if !visit(batch.text(i).unwrap_or("")) {
                    return Ok(());
                }
            }
        }
    }
    Ok(())
}
