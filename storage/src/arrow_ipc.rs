//! Arrow IPC input: the `.arrow` files Hugging Face `datasets` writes with `save_to_disk`
//! and keeps in its cache (the IPC stream format), and `.feather` / `.arrow` files in the
//! IPC file format (pandas' and pyarrow's Feather v2, lz4- or zstd-compressed buffers
//! included). The IPC file format is the stream format behind an 8-byte magic and before a
//! footer, so both are read as a stream.
//!
//! When the corpus is opened, a file's message headers are read (the bodies are skipped) to
//! find its schema, the byte range and row count of each record batch, and so its work
//! units: runs of consecutive record batches of about [`UNIT_BYTES`]. A unit is read as a
//! stream of its own: the file's schema (and dictionary) messages, then its batches. A file
//! whose dictionaries change after its first record batch is one unit, read from its start.

use crate::error::{Result, StorageError};
use crate::object::is_remote_path;
use crate::source::open_bytes;
use arrow::datatypes::{Schema, SchemaRef};
use arrow::ipc::reader::StreamReader;
use arrow::ipc::MessageHeader;
use arrow::record_batch::RecordBatch;
use std::io::{BufRead, BufReader, Cursor, Read, Seek, SeekFrom};
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The magic that starts an IPC file-format file, padded to 8 bytes.
const FILE_MAGIC: &[u8; 8] = b"ARROW1\0\0";

/// The marker that ends an IPC stream: a continuation and a zero length.
const END_OF_STREAM: [u8; 8] = [0xFF, 0xFF, 0xFF, 0xFF, 0, 0, 0, 0];

/// Bytes of record batches a work unit gathers (the last batch may take it over).
pub const UNIT_BYTES: u64 = 32 * 1024 * 1024;

/// Whether `path` names an Arrow IPC file (`.arrow`, `.feather`).
pub fn is_arrow_ipc(path: &Path) -> bool {
    path.file_name()
        .and_then(|n| n.to_str())
        .is_some_and(|n| n.ends_with(".arrow") || n.ends_with(".feather"))
}

/// One work unit of an IPC file: consecutive record batches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IpcUnit {
    /// The batches' messages, in bytes of the file.
    pub bytes: Range<u64>,
    /// Index within the file of the unit's first row.
    pub first_row: u64,
    /// Rows in the unit.
    pub rows: u64,
}

/// Where an IPC file's messages lie.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IpcLayout {
    /// The schema message and the dictionary batches before the first record batch: every
    /// unit's stream starts with these bytes.
    pub prefix: Range<u64>,
    /// The work units, in file order.
    pub units: Vec<IpcUnit>,
}

/// A file's bytes read front to back, skipping over what is not needed: by seeking in a
/// local file, by reading past it in an object's stream.
struct Scanner {
    reader: BufReader<Box<dyn ReadSeekSkip>>,
    position: u64,
    path: PathBuf,
}

/// A byte source that can skip ahead.
trait ReadSeekSkip: Read + Send {
    fn skip(&mut self, bytes: u64) -> std::io::Result<()>;
}

impl ReadSeekSkip for std::fs::File {
    fn skip(&mut self, bytes: u64) -> std::io::Result<()> {
        self.seek(SeekFrom::Current(bytes as i64)).map(|_| ())
    }
}

/// Skips longer than this over an object's body start a new ranged request instead of
/// reading the bytes in between.
const REQUEST_AGAIN_BYTES: u64 = 4 * 1024 * 1024;

/// An object's streamed body: short skips read past the bytes, long ones ask the store for
/// the body from the new position.
struct Streamed {
    body: Box<dyn Read + Send>,
    path: PathBuf,
    position: u64,
    size: u64,
}

impl Read for Streamed {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.body.read(buf)?;
        self.position += n as u64;
        Ok(n)
    }
}

impl ReadSeekSkip for Streamed {
    fn skip(&mut self, bytes: u64) -> std::io::Result<()> {
        if bytes > REQUEST_AGAIN_BYTES {
            self.position += bytes;
            self.body = match self.position.cmp(&self.size) {
                std::cmp::Ordering::Less => open_bytes(&self.path, self.position, None)
                    .map_err(|e| std::io::Error::other(e.to_string()))?,
                std::cmp::Ordering::Equal => Box::new(std::io::empty()),
                std::cmp::Ordering::Greater => return Err(std::io::ErrorKind::UnexpectedEof.into()),
            };
            return Ok(());
        }
        let skipped = std::io::copy(&mut (&mut self.body).take(bytes), &mut std::io::sink())?;
        self.position += skipped;
        if skipped < bytes {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        Ok(())
    }
}

impl Scanner {
    fn open(path: &Path, size: u64) -> Result<Self> {
        let source: Box<dyn ReadSeekSkip> = if is_remote_path(path) {
            Box::new(Streamed {
                body: open_bytes(path, 0, None)?,
                path: path.to_path_buf(),
                position: 0,
                size,
            })
        } else {
            Box::new(std::fs::File::open(path).map_err(|e| StorageError::io(path, e))?)
        };
        Ok(Scanner {
            reader: BufReader::with_capacity(1 << 16, source),
            position: 0,
            path: path.to_path_buf(),
        })
    }

    /// The next little-endian 32-bit word, or `None` at the end of the file.
    fn read_u32(&mut self) -> Result<Option<u32>> {
        let mut word = [0u8; 4];
        Ok(self
            .read_exact_or_end(&mut word)?
            .then(|| u32::from_le_bytes(word)))
    }

    /// Fills `buf`, or returns false at the end of the file before its first byte.
    fn read_exact_or_end(&mut self, buf: &mut [u8]) -> Result<bool> {
        let mut filled = 0;
        while filled < buf.len() {
            match self.reader.read(&mut buf[filled..]) {
                Ok(0) if filled == 0 => return Ok(false),
                Ok(0) => return Err(self.truncated()),
                Ok(n) => filled += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(StorageError::io(&self.path, e)),
            }
        }
        self.position += buf.len() as u64;
        Ok(true)
    }

    fn skip(&mut self, bytes: u64) -> Result<()> {
        let buffered = (self.reader.buffer().len() as u64).min(bytes);
        self.reader.consume(buffered as usize);
        let rest = bytes - buffered;
        if rest > 0 {
            self.reader
                .get_mut()
                .skip(rest)
                .map_err(|_| self.truncated())?;
        }
        self.position += bytes;
        Ok(())
    }

    fn truncated(&self) -> StorageError {
        corrupt(
            &self.path,
            format!(
                "the file ends inside a message (after byte {})",
                self.position
            ),
        )
    }
}

/// The stream's first byte: 8 in the IPC file format (after its magic), 0 in a stream.
fn stream_start(path: &Path) -> Result<u64> {
    let mut head = Vec::with_capacity(FILE_MAGIC.len());
    open_bytes(path, 0, None)?
        .take(FILE_MAGIC.len() as u64)
        .read_to_end(&mut head)
        .map_err(|e| StorageError::io(path, e))?;
    Ok(if head == FILE_MAGIC {
        FILE_MAGIC.len() as u64
    } else {
        0
    })
}

/// The schema and message layout of an IPC file of `size` bytes, its record batches
/// gathered into units of about `unit_bytes`. Only message headers are read; a file cut short is an error.
pub fn index_file(path: &Path, size: u64, unit_bytes: u64) -> Result<(SchemaRef, IpcLayout)> {
    if size == 0 {
        return Err(corrupt(path, "the file is empty".into()));
    }
    let stream_start = stream_start(path)?;
    let mut scan = Scanner::open(path, size)?;
    scan.skip(stream_start)?;
    let mut schema: Option<Schema> = None;
    let (mut prefix_start, mut prefix_end) = (stream_start, stream_start);
    // (bytes, rows) of each record batch.
    let mut batches: Vec<(Range<u64>, u64)> = Vec::new();
    let mut late_dictionaries = false;
    loop {
        let message_start = scan.position;
        // A stream may end without its end marker.
        let Some(word) = scan.read_u32()? else {
            break;
        };
        // A continuation marker, then the metadata length; or (before Arrow 0.15) the length.
        let length = match word {
            0xFFFF_FFFF => scan.read_u32()?.ok_or_else(|| scan.truncated())?,
            length => length,
        };
        if length == 0 && schema.is_none() && stream_start > 0 {
            // The file format pads its magic with zeros (arrow-rs to 64 bytes).
            prefix_start = scan.position;
            continue;
        }
        if length == 0 {
            break;
        }
        let mut metadata = vec![0u8; length as usize];
        if !scan.read_exact_or_end(&mut metadata)? {
            return Err(scan.truncated());
        }
        let bad = |what: String| corrupt(path, format!("message at byte {message_start}: {what}"));
        let message = arrow::ipc::root_as_message(&metadata).map_err(|e| bad(e.to_string()))?;
        let body = u64::try_from(message.bodyLength())
            .map_err(|_| bad("a negative body length".into()))?;
        let message_end = scan.position + body;
        if message_end > size {
            return Err(scan.truncated());
        }
        match message.header_type() {
            MessageHeader::Schema => {
                let fb = message
                    .header_as_schema()
                    .ok_or_else(|| bad("a schema message without a schema".into()))?;
                let parsed =
                    arrow::ipc::convert::try_fb_to_schema(fb).map_err(|e| bad(e.to_string()))?;
                schema = Some(parsed);
                prefix_end = message_end;
            }
            MessageHeader::DictionaryBatch if batches.is_empty() => prefix_end = message_end,
            MessageHeader::DictionaryBatch => late_dictionaries = true,
            MessageHeader::RecordBatch => {
                let rows = message
                    .header_as_record_batch()
                    .and_then(|b| u64::try_from(b.length()).ok())
                    .ok_or_else(|| bad("a record batch without a row count".into()))?;
                batches.push((message_start..message_end, rows));
            }
            _ => {}
        }
        scan.skip(body)?;
    }
    let schema = schema.ok_or_else(|| corrupt(path, "no schema message".into()))?;
    let units = match (late_dictionaries, batches.first(), batches.last()) {
        // Dictionaries sent between batches (replaced, or resent as arrow-rs does): the
        // batches are read in one stream, the dictionary messages among them.
        (true, Some(first), Some(last)) => vec![IpcUnit {
            bytes: first.0.start..last.0.end,
            first_row: 0,
            rows: batches.iter().map(|(_, rows)| rows).sum(),
        }],
        _ => gather_units(&batches, unit_bytes),
    };
    Ok((
        Arc::new(schema),
        IpcLayout {
            prefix: prefix_start..prefix_end,
            units,
        },
    ))
}

/// Consecutive batches gathered into units of at least `unit_bytes` (the last may be
/// smaller); batches without rows are left out.
fn gather_units(batches: &[(Range<u64>, u64)], unit_bytes: u64) -> Vec<IpcUnit> {
    let mut units: Vec<IpcUnit> = Vec::new();
    let mut first_row = 0;
    for (bytes, rows) in batches {
        let open = units
            .last_mut()
            .filter(|u| u.bytes.end == bytes.start && u.bytes.end - u.bytes.start < unit_bytes);
        match open {
            Some(unit) if *rows > 0 => {
                unit.bytes.end = bytes.end;
                unit.rows += rows;
            }
            None if *rows > 0 => units.push(IpcUnit {
                bytes: bytes.clone(),
                first_row,
                rows: *rows,
            }),
            _ => {}
        }
        first_row += rows;
    }
    units
}

/// The record batches of one unit of an IPC file, with only the `projection` columns
/// decoded (all when `None`), cut to at most `max_rows` rows each.
pub struct IpcBatches {
    inner: StreamReader<BufReader<Box<dyn Read + Send>>>,
    path: PathBuf,
    max_rows: usize,
    /// The batch being handed out in slices, and the next slice's first row.
    pending: Option<(RecordBatch, usize)>,
}

impl IpcBatches {
    /// Opens `unit` of the file `path` laid out as `layout`.
    pub fn open(
        path: &Path,
        layout: &IpcLayout,
        unit: &IpcUnit,
        projection: Option<Vec<usize>>,
        max_rows: usize,
    ) -> Result<Self> {
        let mut prefix = Vec::new();
        open_bytes(path, layout.prefix.start, Some(layout.prefix.end))?
            .take(layout.prefix.end - layout.prefix.start)
            .read_to_end(&mut prefix)
            .map_err(|e| StorageError::io(path, e))?;
        let batches = open_bytes(path, unit.bytes.start, Some(unit.bytes.end))?
            .take(unit.bytes.end - unit.bytes.start);
        let stream: Box<dyn Read + Send> = Box::new(
            Cursor::new(prefix)
                .chain(batches)
                .chain(Cursor::new(END_OF_STREAM)),
        );
        let inner = StreamReader::try_new(BufReader::with_capacity(1 << 20, stream), projection)
            .map_err(|e| corrupt(path, e.to_string()))?;
        Ok(IpcBatches {
            inner,
            path: path.to_path_buf(),
            max_rows: max_rows.max(1),
            pending: None,
        })
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
                Err(e) => return Some(Err(corrupt(&self.path, e.to_string()))),
            }
        }
    }
}

fn corrupt(path: &Path, message: String) -> StorageError {
    StorageError::Corrupt {
        path: path.to_path_buf(),
        message: format!("Arrow IPC: {message}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{ArrayRef, AsArray, DictionaryArray, Int64Array, StringArray};
    use arrow::datatypes::{DataType, Field, Int32Type};
    use arrow::ipc::writer::{FileWriter, IpcWriteOptions, StreamWriter};
    use arrow::ipc::MetadataVersion;

    /// `n` batches of 100 rows: row ids, a text and a dictionary-encoded label whose
    /// dictionary is the same array in every batch.
    fn batches(n: usize) -> Vec<RecordBatch> {
        let schema = Arc::new(Schema::new(vec![
            Field::new("id", DataType::Int64, false),
            Field::new("text", DataType::Utf8, true),
            Field::new(
                "label",
                DataType::Dictionary(Box::new(DataType::Int32), Box::new(DataType::Utf8)),
                true,
            ),
        ]));
        // One dictionary for every batch: writers send it once, before the first batch.
        let values: ArrayRef = Arc::new(StringArray::from(vec!["a", "b", "c"]));
        (0..n)
            .map(|b| {
                let rows = (b * 100) as i64..(b * 100 + 100) as i64;
                let ids = Int64Array::from_iter_values(rows.clone());
                let texts: StringArray = rows.clone().map(|i| Some(format!("doc {i}"))).collect();
                let keys = rows.map(|i| (i % 3) as i32).collect();
                let labels = DictionaryArray::<Int32Type>::try_new(keys, values.clone()).unwrap();
                let columns: Vec<ArrayRef> = vec![Arc::new(ids), Arc::new(texts), Arc::new(labels)];
                RecordBatch::try_new(schema.clone(), columns).unwrap()
            })
            .collect()
    }

    fn size_of(path: &Path) -> u64 {
        std::fs::metadata(path).unwrap().len()
    }

    fn write_stream(path: &Path, batches: &[RecordBatch], options: IpcWriteOptions) {
        let file = std::fs::File::create(path).unwrap();
        let mut w =
            StreamWriter::try_new_with_options(file, &batches[0].schema(), options).unwrap();
        for b in batches {
            w.write(b).unwrap();
        }
        w.finish().unwrap();
    }

    fn write_file_format(path: &Path, batches: &[RecordBatch]) {
        let file = std::fs::File::create(path).unwrap();
        let mut w = FileWriter::try_new(file, &batches[0].schema()).unwrap();
        for b in batches {
            w.write(b).unwrap();
        }
        w.finish().unwrap();
    }

    /// Every unit read on its own, in order: the ids and labels of each, with its first row.
    fn read_units(path: &Path, layout: &IpcLayout) -> Vec<(u64, Vec<i64>, Vec<String>)> {
        layout
            .units
            .iter()
            .map(|unit| {
                let mut ids = Vec::new();
                let mut labels = Vec::new();
                for batch in IpcBatches::open(path, layout, unit, None, 64).unwrap() {
                    let batch = batch.unwrap();
                    assert!(batch.num_rows() <= 64);
                    ids.extend(
                        batch
                            .column(0)
                            .as_primitive::<arrow::datatypes::Int64Type>()
                            .values(),
                    );
                    let label = arrow::compute::cast(batch.column(2), &DataType::Utf8).unwrap();
                    labels.extend(
                        label
                            .as_string::<i32>()
                            .iter()
                            .map(|l| l.unwrap().to_string()),
                    );
                }
                assert_eq!(ids.len() as u64, unit.rows);
                (unit.first_row, ids, labels)
            })
            .collect()
    }

    /// Splits `path` into units of `per_unit` batches (by the size of its own batch
    /// messages), expects `expected_units` of them and reads each alone.
    fn check_split(path: &Path, batch_count: usize, per_unit: u64, expected_units: usize) {
        let (_, single) = index_file(path, size_of(path), 1).unwrap();
        assert_eq!(single.units.len(), batch_count, "one unit per batch");
        let batch_bytes = single.units[0].bytes.end - single.units[0].bytes.start;
        let unit_bytes = per_unit * batch_bytes - batch_bytes / 2;
        let (schema, layout) = index_file(path, size_of(path), unit_bytes).unwrap();
        assert_eq!(schema.fields().len(), 3);
        assert_eq!(layout.units.len(), expected_units, "{layout:?}");
        let read = read_units(path, &layout);
        let mut next = 0i64;
        for (first_row, ids, labels) in read {
            assert_eq!(first_row, next as u64);
            let want: Vec<i64> = (next..next + ids.len() as i64).collect();
            assert_eq!(ids, want);
            let want: Vec<String> = want
                .iter()
                .map(|i| ["a", "b", "c"][*i as usize % 3].to_string())
                .collect();
            assert_eq!(labels, want);
            next += ids.len() as i64;
        }
        assert_eq!(next as usize, batch_count * 100);
    }

    #[test]
    fn stream_file_and_legacy_files_split_into_units_that_read_alone() {
        let dir = tempfile::tempdir().unwrap();
        let data = batches(10);
        let stream = dir.path().join("stream.arrow");
        write_stream(&stream, &data, IpcWriteOptions::default());
        // Units of three batches: 3 + 3 + 3 + 1.
        check_split(&stream, 10, 3, 4);
        check_split(&stream, 10, 20, 1);
        check_split(&stream, 10, 1, 10);

        let file = dir.path().join("file.feather");
        write_file_format(&file, &data);
        check_split(&file, 10, 3, 4);

        // Before Arrow 0.15 messages had no continuation marker.
        let legacy = dir.path().join("legacy.arrow");
        let options = IpcWriteOptions::try_new(8, true, MetadataVersion::V4).unwrap();
        write_stream(&legacy, &data, options);
        check_split(&legacy, 10, 3, 4);
    }

    #[test]
    fn dictionaries_replaced_between_batches_keep_the_file_one_unit() {
        let dir = tempfile::tempdir().unwrap();
        let mut data = batches(4);
        // The third batch's labels use another dictionary: the writer sends it between
        // batches, replacing the first.
        let other: DictionaryArray<Int32Type> = (0..100).map(|i| ["x", "y"][i % 2]).collect();
        let mut columns = data[2].columns().to_vec();
        columns[2] = Arc::new(other);
        data[2] = RecordBatch::try_new(data[2].schema(), columns).unwrap();
        let path = dir.path().join("replaced.arrow");
        write_stream(&path, &data, IpcWriteOptions::default());
        let (_, layout) = index_file(&path, size_of(&path), 1).unwrap();
        assert_eq!(layout.units.len(), 1);
        let read = read_units(&path, &layout);
        assert_eq!(read[0].1, (0..400).collect::<Vec<i64>>());
        assert_eq!(&read[0].2[200..202], ["x", "y"]);
    }

    #[test]
    fn a_cut_file_is_an_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cut.arrow");
        write_stream(&path, &batches(3), IpcWriteOptions::default());
        let bytes = std::fs::read(&path).unwrap();
        for keep in [bytes.len() - 20, bytes.len() / 2, 6] {
            std::fs::write(&path, &bytes[..keep]).unwrap();
            let e = index_file(&path, size_of(&path), UNIT_BYTES)
                .unwrap_err()
                .to_string();
            assert!(
                e.contains("cut.arrow") && e.contains("Arrow IPC"),
                "{keep}: {e}"
            );
        }
        std::fs::write(&path, b"").unwrap();
        let e = index_file(&path, size_of(&path), UNIT_BYTES)
            .unwrap_err()
            .to_string();
        assert!(e.contains("empty"), "{e}");
    }
}
