//! JSON Lines input: `.jsonl` / `.ndjson`, plain or compressed (`.gz`, `.zst`), and Dolma's
//! `.json.gz` / `.json.zst`.
//!
//! A file is indexed once when the corpus is opened: its non-blank lines are counted (one
//! document each; blank lines are not documents) and a plain file is cut at line boundaries
//! into chunks of about [`CHUNK_BYTES`], each a work unit read on its own, like a parquet row
//! group. A compressed file is one unit (its stream cannot be entered in the middle). The
//! schema is inferred from the first [`SCHEMA_SAMPLE_LINES`] lines of each file and merged
//! over the files; lines are then decoded into Arrow batches of at most `batch_size` rows by
//! `arrow-json`, so memory stays bounded by the batch, whatever the file size.
//!
//! A line that is not a JSON object, is not valid UTF-8, lacks the text field or does not fit
//! the schema is a bad record: an error naming the file and line, or (with
//! [`OnBadRecord::Skip`]) a row whose fields are all null, flagged so the pipeline drops and
//! counts it. Row numbering therefore never depends on which lines were bad.

use crate::error::{Result, StorageError};
use crate::source::open_bytes;
use arrow::array::RecordBatch;
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use arrow::json::reader::{infer_json_schema_from_iterator, Decoder, ReaderBuilder};
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Target size of one work unit of a plain (uncompressed) JSONL file.
pub const CHUNK_BYTES: u64 = 32 * 1024 * 1024;

/// Lines of each file read to infer its schema.
pub const SCHEMA_SAMPLE_LINES: usize = 1000;

/// Compression of a JSONL file, from its name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JsonlCodec {
    /// Plain text.
    Plain,
    /// gzip (one or more members).
    Gzip,
    /// zstd (one or more frames).
    Zstd,
}

/// The JSONL codec of `path` by its name, or `None` when it is not a JSONL file.
pub fn jsonl_codec(path: &Path) -> Option<JsonlCodec> {
    let name = path.file_name()?.to_str()?;
    let (stem, codec) = if let Some(stem) = name.strip_suffix(".gz") {
        (stem, JsonlCodec::Gzip)
    } else if let Some(stem) = name.strip_suffix(".zst") {
        (stem, JsonlCodec::Zstd)
    } else {
        (name, JsonlCodec::Plain)
    };
    let jsonl = stem.ends_with(".jsonl") || stem.ends_with(".ndjson");
    // Dolma names its files `*.json.gz`; a plain `.json` file is usually not line-delimited.
    let dolma = stem.ends_with(".json") && codec != JsonlCodec::Plain;
    (jsonl || dolma).then_some(codec)
}

/// What to do with a line that cannot be read as a document.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OnBadRecord {
    /// Stop with an error naming the file and line.
    #[default]
    Error,
    /// Keep going; the line becomes a flagged row that the pipeline drops as `bad_record`.
    Skip,
}

/// One work unit of a JSONL file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JsonlChunk {
    /// First byte of the unit in the (decompressed, for compressed files: whole) stream.
    pub start_byte: u64,
    /// One past the last byte of the unit (`u64::MAX`: to the end of the stream).
    pub end_byte: u64,
    /// 1-based line number of the unit's first line.
    pub first_line: u64,
    /// Documents (non-blank lines) before the unit in the file.
    pub first_row: u64,
    /// Documents in the unit.
    pub rows: u64,
}

fn open_stream(path: &Path, codec: JsonlCodec) -> Result<Box<dyn BufRead + Send>> {
    let file = open_bytes(path, 0, None)?;
    Ok(match codec {
        JsonlCodec::Plain => Box::new(BufReader::with_capacity(1 << 20, file)),
        JsonlCodec::Gzip => Box::new(BufReader::with_capacity(
            1 << 20,
            flate2::read::MultiGzDecoder::new(BufReader::with_capacity(1 << 16, file)),
        )),
        JsonlCodec::Zstd => Box::new(BufReader::with_capacity(
            1 << 20,
            zstd::stream::read::Decoder::new(file).map_err(|e| StorageError::io(path, e))?,
        )),
    })
}

fn is_blank(line: &[u8]) -> bool {
    line.iter().all(u8::is_ascii_whitespace)
}

/// A read error of a (possibly compressed) stream, naming the file and where it stopped.
fn stream_error(path: &Path, line: u64, e: std::io::Error) -> StorageError {
    StorageError::Corrupt {
        path: path.to_path_buf(),
        message: format!("reading stopped at line {line}: {e} (a truncated or corrupt file?)"),
    }
}

/// Counts the documents of a JSONL file and cuts it into work units: a plain file at the
/// first line end after every `chunk_bytes` bytes ([`CHUNK_BYTES`] in a corpus), a
/// compressed one not at all.
pub fn index_file(path: &Path, codec: JsonlCodec, chunk_bytes: u64) -> Result<Vec<JsonlChunk>> {
    let mut stream = open_stream(path, codec)?;
    let mut chunks = Vec::new();
    let mut current = JsonlChunk {
        start_byte: 0,
        end_byte: u64::MAX,
        first_line: 1,
        first_row: 0,
        rows: 0,
    };
    let (mut byte, mut line, mut row) = (0u64, 1u64, 0u64);
    // Whether the line being scanned has shown a non-blank byte yet.
    let mut line_has_content = false;
    loop {
        let buf = match stream.fill_buf() {
            Ok([]) => break,
            Ok(buf) => buf,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(stream_error(path, line, e)),
        };
        let len = buf.len();
        let mut start = 0;
        while start < len {
            let end = memchr::memchr(b'\n', &buf[start..]).map(|p| start + p);
            let piece = &buf[start..end.unwrap_or(len)];
            line_has_content = line_has_content || !is_blank(piece);
            let Some(end) = end else {
                break;
            };
            if line_has_content {
                row += 1;
                current.rows += 1;
            }
            line_has_content = false;
            line += 1;
            start = end + 1;
            let at = byte + start as u64;
            if codec == JsonlCodec::Plain && at - current.start_byte >= chunk_bytes {
                current.end_byte = at;
                let next = JsonlChunk {
                    start_byte: at,
                    end_byte: u64::MAX,
                    first_line: line,
                    first_row: row,
                    rows: 0,
                };
                chunks.push(std::mem::replace(&mut current, next));
            }
        }
        byte += len as u64;
        stream.consume(len);
    }
    if line_has_content {
        current.rows += 1;
    }
    if current.rows > 0 || chunks.is_empty() {
        chunks.push(current);
    }
    Ok(chunks)
}

/// Infers the schema of the first [`SCHEMA_SAMPLE_LINES`] JSON objects of a JSONL file.
/// Fields seen only as JSON `null` are typed as strings.
pub fn infer_schema(path: &Path, codec: JsonlCodec) -> Result<Schema> {
    let stream = open_stream(path, codec)?;
    let mut values = Vec::new();
    for (n, line) in stream.split(b'\n').enumerate() {
        let line = line.map_err(|e| stream_error(path, n as u64 + 1, e))?;
        if is_blank(&line) {
            continue;
        }
        // A line that is not an object is left to the decoding pass, which names it (or
        // skips it under `on_bad_record = "skip"`).
        if let Ok(v @ serde_json::Value::Object(_)) = serde_json::from_slice(&line) {
            values.push(v);
        }
        if values.len() >= SCHEMA_SAMPLE_LINES {
            break;
        }
    }
    let infer =
        |values: &[serde_json::Value]| infer_json_schema_from_iterator(values.iter().map(Ok));
    let schema = match infer(&values) {
        Ok(schema) => schema,
        // Lines whose types conflict with the lines before them are left out of the schema
        // (the decoding pass names or skips them).
        Err(_) => {
            let mut accepted: Vec<serde_json::Value> = Vec::with_capacity(values.len());
            for v in values {
                accepted.push(v);
                if infer(&accepted).is_err() {
                    accepted.pop();
                }
            }
            infer(&accepted).map_err(|e| StorageError::Corrupt {
                path: path.to_path_buf(),
                message: format!("cannot infer a schema from its first lines: {e}"),
            })?
        }
    };
    Ok(Schema::new(
        schema
            .fields()
            .iter()
            .map(|f| null_as_string(f))
            .collect::<Vec<_>>(),
    ))
}

fn null_as_string(f: &Field) -> Field {
    match f.data_type() {
        DataType::Null => f.clone().with_data_type(DataType::Utf8),
        DataType::Struct(children) => f.clone().with_data_type(DataType::Struct(
            children.iter().map(|c| null_as_string(c)).collect(),
        )),
        DataType::List(child) => f
            .clone()
            .with_data_type(DataType::List(Arc::new(null_as_string(child)))),
        _ => f.clone(),
    }
}

fn bad_line(path: &Path, line: u64, message: String) -> StorageError {
    StorageError::BadRecord {
        path: path.to_path_buf(),
        line,
        message,
    }
}

/// A line left out under [`OnBadRecord::Skip`]: its row in the batch and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadRecord {
    /// Row within the batch.
    pub row: usize,
    /// 1-based line number in the file.
    pub line: u64,
    /// What was wrong with it.
    pub message: String,
}

/// Streams the documents of one JSONL work unit as Arrow batches of the decode schema.
pub struct JsonlBatches {
    path: PathBuf,
    stream: Box<dyn BufRead + Send>,
    /// Bytes of the unit not read yet.
    remaining: u64,
    rows_left: u64,
    next_line: u64,
    batch_size: usize,
    builder: ReaderBuilder,
    decoder: Decoder,
    /// Dotted path of the text field: a line without it is a bad record.
    text_path: Vec<String>,
    on_bad_record: OnBadRecord,
    /// Lines of the batch being built, each followed by `\n`, and their line numbers.
    buffer: Vec<u8>,
    lines: Vec<(usize, u64)>,
}

impl JsonlBatches {
    /// Opens unit `chunk` of `path` for decoding into `schema` (the projected fields).
    pub fn open(
        path: &Path,
        codec: JsonlCodec,
        chunk: &JsonlChunk,
        schema: SchemaRef,
        text_path: &str,
        batch_size: usize,
        on_bad_record: OnBadRecord,
    ) -> Result<Self> {
        let stream: Box<dyn BufRead + Send> = if codec == JsonlCodec::Plain {
            let end = (chunk.end_byte != u64::MAX).then_some(chunk.end_byte);
            let file = open_bytes(path, chunk.start_byte, end)?;
            Box::new(BufReader::with_capacity(1 << 20, file))
        } else {
            open_stream(path, codec)?
        };
        let builder = ReaderBuilder::new(schema)
            .with_batch_size(batch_size)
            .with_coerce_primitive(true);
        let decoder = builder
            .clone()
            .build_decoder()
            .map_err(|e| bad_line(path, chunk.first_line, e.to_string()))?;
        Ok(JsonlBatches {
            path: path.to_path_buf(),
            stream,
            remaining: chunk.end_byte.saturating_sub(chunk.start_byte),
            rows_left: chunk.rows,
            next_line: chunk.first_line,
            batch_size,
            builder,
            decoder,
            text_path: text_path.split('.').map(String::from).collect(),
            on_bad_record,
            buffer: Vec::new(),
            lines: Vec::new(),
        })
    }

    /// Reads the next batch's lines into `buffer` (blank lines skipped).
    fn fill(&mut self) -> Result<()> {
        self.buffer.clear();
        self.lines.clear();
        let mut line = Vec::new();
        while self.lines.len() < self.batch_size && self.rows_left > 0 && self.remaining > 0 {
            line.clear();
            let read = (&mut self.stream)
                .take(self.remaining)
                .read_until(b'\n', &mut line)
                .map_err(|e| stream_error(&self.path, self.next_line, e))?;
            if read == 0 {
                return Err(stream_error(
                    &self.path,
                    self.next_line,
                    std::io::Error::new(
                        std::io::ErrorKind::UnexpectedEof,
                        format!("the file ended {} documents early", self.rows_left),
                    ),
                ));
            }
            self.remaining -= read as u64;
            let number = self.next_line;
            self.next_line += 1;
            if is_blank(&line) {
                continue;
            }
            self.rows_left -= 1;
            let start = self.buffer.len();
            self.buffer.extend_from_slice(&line);
            if line.last() != Some(&b'\n') {
                self.buffer.push(b'\n');
            }
            self.lines.push((start, number));
        }
        Ok(())
    }

    fn line(&self, k: usize) -> &[u8] {
        let start = self.lines[k].0;
        let end = self.lines.get(k + 1).map_or(self.buffer.len(), |l| l.0);
        &self.buffer[start..end]
    }

    /// Decodes the whole buffer at once; `None` when any line fails.
    fn decode_all(&mut self) -> Option<RecordBatch> {
        if simdutf8::basic::from_utf8(&self.buffer).is_err() {
            return None;
        }
        let mut offset = 0;
        while offset < self.buffer.len() {
            match self.decoder.decode(&self.buffer[offset..]) {
                Ok(0) => return None,
                Ok(n) => offset += n,
                Err(_) => return None,
            }
        }
        match self.decoder.flush() {
            Ok(Some(batch)) if batch.num_rows() == self.lines.len() => Some(batch),
            _ => None,
        }
    }

    /// Why line `k` alone cannot be decoded, if it cannot.
    fn line_problem(&self, k: usize) -> Option<String> {
        let line = self.line(k);
        if let Err(e) = std::str::from_utf8(line) {
            return Some(format!("invalid UTF-8 at byte {}", e.valid_up_to()));
        }
        let value: serde_json::Value = match serde_json::from_slice(line) {
            Ok(v) => v,
            Err(e) => return Some(format!("not valid JSON: {e}")),
        };
        if !value.is_object() {
            return Some("not a JSON object".into());
        }
        let mut decoder = self.builder.clone().build_decoder().ok()?;
        if let Err(e) = decoder.decode(line).and_then(|_| decoder.flush()) {
            return Some(format!(
                "does not fit the schema inferred from the first lines: {e}"
            ));
        }
        None
    }

    /// Whether line `k` has the text field (present, possibly null).
    fn has_text_field(&self, k: usize) -> bool {
        let Ok(value) = serde_json::from_slice::<serde_json::Value>(self.line(k)) else {
            return false;
        };
        let mut at = &value;
        for key in &self.text_path {
            match at.get(key) {
                Some(v) => at = v,
                None => return false,
            }
        }
        true
    }

    /// Finds the bad lines of the batch, replaces them by `{}` and decodes again.
    fn decode_line_by_line(&mut self) -> Result<(RecordBatch, Vec<BadRecord>)> {
        let mut bad = Vec::new();
        for k in 0..self.lines.len() {
            if let Some(message) = self.line_problem(k) {
                bad.push(BadRecord {
                    row: k,
                    line: self.lines[k].1,
                    message,
                });
            }
        }
        self.replace_bad_lines(&bad)?;
        self.decoder = self
            .builder
            .clone()
            .build_decoder()
            .map_err(|e| bad_line(&self.path, self.lines[0].1, e.to_string()))?;
        let batch = self.decode_all().ok_or_else(|| {
            bad_line(
                &self.path,
                self.lines[0].1,
                "a batch could not be decoded although each line could".into(),
            )
        })?;
        Ok((batch, bad))
    }

    /// Stops at the first bad line, or (skipping) rewrites each as an empty object.
    fn replace_bad_lines(&mut self, bad: &[BadRecord]) -> Result<()> {
        if bad.is_empty() {
            return Ok(());
        }
        if self.on_bad_record == OnBadRecord::Error {
            let b = &bad[0];
            return Err(bad_line(&self.path, b.line, b.message.clone()));
        }
        let mut rebuilt = Vec::with_capacity(self.buffer.len());
        let mut lines = Vec::with_capacity(self.lines.len());
        let mut bad_rows = bad.iter().map(|b| b.row).peekable();
        for k in 0..self.lines.len() {
            let start = rebuilt.len();
            if bad_rows.peek() == Some(&k) {
                bad_rows.next();
                rebuilt.extend_from_slice(b"{}\n");
            } else {
                rebuilt.extend_from_slice(self.line(k));
            }
            lines.push((start, self.lines[k].1));
        }
        self.buffer = rebuilt;
        self.lines = lines;
        Ok(())
    }

    /// Flags the rows whose text is null because the line has no text field at all.
    fn missing_text(
        &mut self,
        batch: &RecordBatch,
        mut bad: Vec<BadRecord>,
    ) -> Result<Vec<BadRecord>> {
        let Some(text) = crate::reader::column_at_path(batch, &self.text_path.join(".")) else {
            return Ok(bad);
        };
        if text.null_count() == 0 {
            return Ok(bad);
        }
        let mut missing = Vec::new();
        for k in 0..batch.num_rows() {
            let flagged = bad.iter().any(|b| b.row == k);
            if !flagged && text.is_null(k) && !self.has_text_field(k) {
                missing.push(BadRecord {
                    row: k,
                    line: self.lines[k].1,
                    message: format!("no `{}` field", self.text_path.join(".")),
                });
            }
        }
        if let (Some(first), OnBadRecord::Error) = (missing.first(), self.on_bad_record) {
            return Err(bad_line(&self.path, first.line, first.message.clone()));
        }
        bad.extend(missing);
        bad.sort_by_key(|b| b.row);
        Ok(bad)
    }
}

impl Iterator for JsonlBatches {
    type Item = Result<(RecordBatch, Vec<BadRecord>)>;

    fn next(&mut self) -> Option<Self::Item> {
        if let Err(e) = self.fill() {
            return Some(Err(e));
        }
        if self.lines.is_empty() {
            return None;
        }
        let decoded = match self.decode_all() {
            Some(batch) => Ok((batch, Vec::new())),
            None => self.decode_line_by_line(),
        };
        Some(decoded.and_then(|(batch, bad)| {
            let bad = self.missing_text(&batch, bad)?;
            Ok((batch, bad))
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::AsArray;
    use std::fs::File;
    use std::io::Write;

    #[test]
    fn names_decide_the_codec() {
        let c = |n: &str| jsonl_codec(Path::new(n));
        assert_eq!(c("a.jsonl"), Some(JsonlCodec::Plain));
        assert_eq!(c("a.ndjson"), Some(JsonlCodec::Plain));
        assert_eq!(c("a.jsonl.gz"), Some(JsonlCodec::Gzip));
        assert_eq!(c("a.json.gz"), Some(JsonlCodec::Gzip));
        assert_eq!(c("a.jsonl.zst"), Some(JsonlCodec::Zstd));
        assert_eq!(c("stats.json"), None);
        assert_eq!(c("a.parquet"), None);
        assert_eq!(c("a.txt.gz"), None);
    }

    #[test]
    fn index_counts_non_blank_lines_and_cuts_plain_files_at_line_ends() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.jsonl");
        let mut f = File::create(&path).unwrap();
        write!(
            f,
            "{{\"text\":\"a\"}}\n\n  \n{{\"text\":\"b\"}}\n{{\"text\":\"c\"}}"
        )
        .unwrap();
        drop(f);
        let chunks = index_file(&path, JsonlCodec::Plain, CHUNK_BYTES).unwrap();
        assert_eq!(chunks.len(), 1);
        assert_eq!(
            chunks[0].rows, 3,
            "blank lines are not documents; no final newline"
        );
        assert_eq!(chunks[0].first_line, 1);
    }

    #[test]
    fn chunks_of_a_plain_file_read_back_every_line_once_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.jsonl");
        let mut f = File::create(&path).unwrap();
        let mut expected = Vec::new();
        for i in 0..500 {
            if i % 37 == 0 {
                writeln!(f).unwrap();
            }
            let text = "w".repeat(i % 23);
            writeln!(f, "{{\"id\": {i}, \"text\": \"{text}\"}}").unwrap();
            expected.push((i as i64, text));
        }
        drop(f);
        let chunks = index_file(&path, JsonlCodec::Plain, 700).unwrap();
        assert!(chunks.len() > 10, "{}", chunks.len());
        let schema = Arc::new(infer_schema(&path, JsonlCodec::Plain).unwrap());
        let mut got = Vec::new();
        let mut next_row = 0;
        for chunk in &chunks {
            assert_eq!(chunk.first_row, next_row, "chunks are contiguous");
            next_row += chunk.rows;
            let batches = JsonlBatches::open(
                &path,
                JsonlCodec::Plain,
                chunk,
                schema.clone(),
                "text",
                16,
                OnBadRecord::Error,
            )
            .unwrap();
            for batch in batches {
                let (batch, bad) = batch.unwrap();
                assert!(bad.is_empty());
                let ids = batch.column_by_name("id").unwrap();
                let ids = ids.as_primitive::<arrow::datatypes::Int64Type>();
                let texts = batch.column_by_name("text").unwrap();
                let texts = texts.as_string::<i32>();
                for r in 0..batch.num_rows() {
                    got.push((ids.value(r), texts.value(r).to_string()));
                }
            }
        }
        assert_eq!(got, expected);
    }
}
