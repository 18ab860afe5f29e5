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
    // Dolma names its files `*.json.gz`, and Hugging Face `datasets` writes JSON Lines to
    // `*.json` (`Dataset.to_json`); [`is_plain_json`] keeps plain `.json` files out of
    // directory walks, where they are more often configs than corpora.
    let jsonl = stem.ends_with(".jsonl") || stem.ends_with(".ndjson") || stem.ends_with(".json");
    jsonl.then_some(codec)
}

/// Whether `path` is an uncompressed `.json` file: JSON Lines when a pattern names it (a
/// file or a glob), left out when a directory is walked.
pub fn is_plain_json(path: &Path) -> bool {
    path.file_name()
        .and_then(|n| n.to_str())
        .is_some_and(|n| n.ends_with(".json"))
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
        if byte == 0 && buf.starts_with(BYTE_ORDER_MARK) {
            start = BYTE_ORDER_MARK.len();
        }
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

/// What to say of a file that starts with `[`.
const JSON_ARRAY_HINT: &str = " (the file looks like one JSON array, not JSON Lines with one \
                               object per line: `jq -c '.[]' FILE` converts it)";

/// A JSONL file's schema, inferred from its first lines.
#[derive(Debug, Clone)]
pub struct InferredSchema {
    /// The typed fields, in the order they first appear (an object's keys by name).
    pub schema: Schema,
    /// Fields left out because no Arrow type fits their values (a list mixing numbers and
    /// objects, say), with arrow's reason.
    pub untyped: Vec<(String, String)>,
}

/// The UTF-8 byte order mark that some Windows tools write at the start of a text file.
const BYTE_ORDER_MARK: &[u8] = b"\xEF\xBB\xBF";

/// `line` without a leading byte order mark when it is the file's first line.
fn without_bom(line: &[u8], number: u64) -> &[u8] {
    match line.strip_prefix(BYTE_ORDER_MARK) {
        Some(rest) if number == 1 => rest,
        _ => line,
    }
}

/// Infers the schema of the top-level fields that `wanted` keeps from the first
/// [`SCHEMA_SAMPLE_LINES`] JSON objects of a JSONL file. Fields seen only as JSON `null` are
/// typed as strings.
///
/// Each field is typed on its own, so a field the run does not read never stops the file
/// from being read, whatever its values. Within a field, a value that cannot be typed, or
/// whose type conflicts with the values before it, is left out of the inference (the
/// decoding pass names or skips its line); a field none of whose values can be typed is
/// listed in [`InferredSchema::untyped`].
pub fn infer_schema(
    path: &Path,
    codec: JsonlCodec,
    wanted: &dyn Fn(&str) -> bool,
) -> Result<InferredSchema> {
    let stream = open_stream(path, codec)?;
    // Each wanted field's values, as one-field objects, in the order the fields appear.
    let mut fields: Vec<(String, Vec<serde_json::Value>)> = Vec::new();
    let mut objects = 0;
    // The first non-blank line that is not an object: its number and whether it opens an array.
    let mut first_non_object: Option<(u64, bool)> = None;
    for (n, line) in stream.split(b'\n').enumerate() {
        let line = line.map_err(|e| stream_error(path, n as u64 + 1, e))?;
        let line = without_bom(&line, n as u64 + 1);
        if is_blank(line) {
            continue;
        }
        // A line that is not an object is left to the decoding pass, which names it (or
        // skips it under `on_bad_record = "skip"`), unless no line is an object at all.
        let parsed = serde_json::from_slice(line);
        if !matches!(parsed, Ok(serde_json::Value::Object(_))) && first_non_object.is_none() {
            let array = line.trim_ascii_start().starts_with(b"[");
            first_non_object = Some((n as u64 + 1, array));
        }
        if let Ok(serde_json::Value::Object(object)) = parsed {
            for (key, value) in object {
                if !wanted(&key) {
                    continue;
                }
                let single =
                    serde_json::Value::Object([(key.clone(), value)].into_iter().collect());
                match fields.iter_mut().find(|(k, _)| *k == key) {
                    Some((_, values)) => values.push(single),
                    None => fields.push((key, vec![single])),
                }
            }
            objects += 1;
        }
        if objects >= SCHEMA_SAMPLE_LINES {
            break;
        }
    }
    if let (0, Some((line, array))) = (objects, first_non_object) {
        let hint = if array { JSON_ARRAY_HINT } else { "" };
        return Err(bad_line(
            path,
            line,
            format!("not a JSON object, and no line of the file's start is one{hint}"),
        ));
    }
    let mut typed = Vec::with_capacity(fields.len());
    let mut untyped = Vec::new();
    for (key, values) in fields {
        match infer_field(values) {
            Ok(field) => typed.push(null_as_string(&field)),
            Err(reason) => untyped.push((key, reason)),
        }
    }
    Ok(InferredSchema {
        schema: Schema::new(typed),
        untyped,
    })
}

/// The Arrow field of one JSON field's values (each a one-field object), or why none fits.
fn infer_field(values: Vec<serde_json::Value>) -> std::result::Result<Field, String> {
    let infer = |values: &[serde_json::Value]| {
        let schema =
            infer_json_schema_from_iterator(values.iter().map(Ok)).map_err(|e| e.to_string())?;
        match schema.fields().first() {
            Some(field) => Ok(field.as_ref().clone()),
            None => Err("no values".to_string()),
        }
    };
    let first_error = match infer(&values) {
        Ok(field) => return Ok(field),
        Err(e) => e,
    };
    // Values no type fits even alone go first (one pass); then values whose types conflict
    // with those accepted before them (rarer, and slower to find).
    let typable: Vec<serde_json::Value> = values
        .into_iter()
        .filter(|v| infer(std::slice::from_ref(v)).is_ok())
        .collect();
    if typable.is_empty() {
        return Err(first_error);
    }
    if let Ok(field) = infer(&typable) {
        return Ok(field);
    }
    let mut accepted: Vec<serde_json::Value> = Vec::with_capacity(typable.len());
    for v in typable {
        accepted.push(v);
        if infer(&accepted).is_err() {
            accepted.pop();
        }
    }
    infer(&accepted)
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
            let line = without_bom(&line, number);
            if is_blank(line) {
                continue;
            }
            self.rows_left -= 1;
            let start = self.buffer.len();
            self.buffer.extend_from_slice(line);
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
            Err(e) => {
                // serde_json's words for `\ud800` without its pair do not say what is wrong.
                let hint = if e.to_string().contains("surrogate")
                    || e.to_string().contains("end of hex escape")
                {
                    " (a \\u escape of half a UTF-16 surrogate pair, which is no character; \
                     Python's json.dumps writes them for strings holding lone surrogates)"
                } else {
                    ""
                };
                let hint = if self.lines[k].1 == 1 && line.trim_ascii_start().starts_with(b"[") {
                    JSON_ARRAY_HINT
                } else {
                    hint
                };
                return Some(format!("not valid JSON: {e}{hint}"));
            }
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
    use arrow::array::{Array, AsArray};
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
        assert_eq!(c("data.json"), Some(JsonlCodec::Plain));
        assert!(is_plain_json(Path::new("data.json")) && !is_plain_json(Path::new("a.json.gz")));
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
        let schema = Arc::new(
            infer_schema(&path, JsonlCodec::Plain, &|_| true)
                .unwrap()
                .schema,
        );
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

    /// Each field is typed on its own: a field that no Arrow type fits (a list mixing numbers
    /// and objects) is listed as untyped and does not hide the others; a field the run does
    /// not want is not looked at; a value conflicting with the ones before it is left out.
    #[test]
    fn fields_are_typed_one_by_one_and_unwanted_ones_are_not_typed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.jsonl");
        let mut f = File::create(&path).unwrap();
        for i in 0..5 {
            let n = if i == 3 { r#"{"odd": 1}"# } else { "7" };
            writeln!(
                f,
                r#"{{"id": {i}, "text": "t{i}", "mixed": [1, {{"c": null}}], "n": {n}}}"#
            )
            .unwrap();
        }
        drop(f);
        let all = infer_schema(&path, JsonlCodec::Plain, &|_| true).unwrap();
        let names: Vec<&str> = all
            .schema
            .fields()
            .iter()
            .map(|f| f.name().as_str())
            .collect();
        assert_eq!(names, ["id", "n", "text"]);
        assert_eq!(all.schema.field(1).data_type(), &DataType::Int64);
        assert_eq!(all.untyped.len(), 1);
        assert_eq!(all.untyped[0].0, "mixed");
        let wanted = infer_schema(&path, JsonlCodec::Plain, &|k| k == "text").unwrap();
        assert_eq!(wanted.schema.fields().len(), 1);
        assert!(wanted.untyped.is_empty());
    }

    /// A UTF-8 byte order mark before the first line (as Windows tools write) is not part of
    /// the first document; CRLF line ends are JSON whitespace.
    #[test]
    fn a_byte_order_mark_and_crlf_line_ends_are_read_through() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.jsonl");
        std::fs::write(
            &path,
            b"\xEF\xBB\xBF{\"text\": \"first\"}\r\n{\"text\": \"second\"}\r\n\r\n",
        )
        .unwrap();
        let chunks = index_file(&path, JsonlCodec::Plain, CHUNK_BYTES).unwrap();
        assert_eq!(chunks[0].rows, 2);
        let inferred = infer_schema(&path, JsonlCodec::Plain, &|_| true).unwrap();
        assert_eq!(inferred.schema.fields().len(), 1);
        let batches = JsonlBatches::open(
            &path,
            JsonlCodec::Plain,
            &chunks[0],
            Arc::new(inferred.schema),
            "text",
            16,
            OnBadRecord::Error,
        )
        .unwrap();
        let texts: Vec<String> = batches
            .flat_map(|b| {
                let (batch, bad) = b.unwrap();
                assert!(bad.is_empty());
                let texts = batch.column(0).as_string::<i32>().clone();
                (0..texts.len())
                    .map(|i| texts.value(i).to_string())
                    .collect::<Vec<_>>()
            })
            .collect();
        assert_eq!(texts, ["first", "second"]);
    }
}
