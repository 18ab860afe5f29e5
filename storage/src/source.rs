//! Where an input file's bytes come from: a local file or an object in object storage,
//! behind one parquet [`ChunkReader`] and one byte-stream opener (JSONL).
//!
//! A remote parquet file reads its footer with one request for its last
//! [`FOOTER_PREFETCH`] bytes, and a work unit fetches only the column chunks of its row group
//! that the projection needs ([`ParquetSource::prefetch`]), so a row-group unit reads only
//! its bytes. Anything else is fetched in windows on demand.

use crate::error::{Result, StorageError};
use crate::object::{is_remote_path, ObjectLocation};
use bytes::Bytes;
use parquet::file::reader::{ChunkReader, Length};
use std::fs::File;
use std::io::{BufReader, Read, Seek, SeekFrom};
use std::ops::Range;
use std::path::Path;
use std::sync::{Arc, RwLock};

/// Bytes read from the end of a remote parquet file to find its footer in one request.
pub const FOOTER_PREFETCH: u64 = 64 * 1024;
/// Bytes fetched at once by a reader outside every prefetched range.
const READ_WINDOW: u64 = 1024 * 1024;

/// The URL string of a path that holds an object URL.
fn url_of(path: &Path) -> &str {
    path.to_str().expect("object URLs are UTF-8")
}

/// An object being read by parquet, with the byte ranges already fetched.
pub struct RemoteFile {
    object: ObjectLocation,
    size: u64,
    fetched: RwLock<Vec<(u64, Bytes)>>,
}

impl RemoteFile {
    fn cached(&self, start: u64, len: u64) -> Option<Bytes> {
        let fetched = self.fetched.read().expect("prefetch cache");
        fetched.iter().find_map(|(at, bytes)| {
            let end = at + bytes.len() as u64;
            (start >= *at && start + len <= end)
                .then(|| bytes.slice((start - at) as usize..(start - at + len) as usize))
        })
    }

    fn bytes(&self, start: u64, len: u64) -> Result<Bytes> {
        if let Some(b) = self.cached(start, len) {
            return Ok(b);
        }
        self.object.get_range(start..start + len)
    }
}

/// The bytes of a parquet input file.
#[derive(Clone)]
pub enum ParquetSource {
    /// A local file.
    Local(Arc<File>),
    /// An object, read by ranges.
    Remote(Arc<RemoteFile>),
}

impl ParquetSource {
    /// Opens `path` (a local path or an object URL); a remote file's footer region is
    /// fetched at once.
    pub fn open(path: &Path, size: u64) -> Result<Self> {
        if !is_remote_path(path) {
            let file = File::open(path).map_err(|e| StorageError::io(path, e))?;
            return Ok(ParquetSource::Local(Arc::new(file)));
        }
        let object = ObjectLocation::parse(url_of(path))?;
        let tail = size.saturating_sub(FOOTER_PREFETCH);
        let footer = if size > 0 {
            object.get_range(tail..size)?
        } else {
            Bytes::new()
        };
        Ok(ParquetSource::Remote(Arc::new(RemoteFile {
            object,
            size,
            fetched: RwLock::new(vec![(tail, footer)]),
        })))
    }

    /// Fetches these byte ranges now (a row group's column chunks), in as few requests as
    /// the store coalesces them into. A local file needs nothing.
    pub fn prefetch(&self, ranges: &[Range<u64>]) -> Result<()> {
        let ParquetSource::Remote(remote) = self else {
            return Ok(());
        };
        let bytes = remote.object.get_ranges(ranges)?;
        let mut fetched = remote.fetched.write().expect("prefetch cache");
        fetched.extend(ranges.iter().map(|r| r.start).zip(bytes));
        Ok(())
    }
}

impl Length for ParquetSource {
    fn len(&self) -> u64 {
        match self {
            ParquetSource::Local(f) => f.metadata().map(|m| m.len()).unwrap_or(0),
            ParquetSource::Remote(r) => r.size,
        }
    }
}

/// A reader over a parquet source from some offset.
pub enum SourceRead {
    /// A local file's buffered reader.
    Local(BufReader<File>),
    /// A remote file read from `pos`.
    Remote { file: Arc<RemoteFile>, pos: u64 },
}

impl Read for SourceRead {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        match self {
            SourceRead::Local(r) => r.read(buf),
            SourceRead::Remote { file, pos } => {
                if *pos >= file.size || buf.is_empty() {
                    return Ok(0);
                }
                let want = (buf.len() as u64).min(file.size - *pos);
                let bytes = match file.cached(*pos, want) {
                    Some(b) => b,
                    None => {
                        let len = want.max(READ_WINDOW).min(file.size - *pos);
                        let window = file.bytes(*pos, len).map_err(std::io::Error::other)?;
                        file.fetched
                            .write()
                            .expect("prefetch cache")
                            .push((*pos, window.clone()));
                        window.slice(..want as usize)
                    }
                };
                buf[..bytes.len()].copy_from_slice(&bytes);
                *pos += bytes.len() as u64;
                Ok(bytes.len())
            }
        }
    }
}

impl ChunkReader for ParquetSource {
    type T = SourceRead;

    fn get_read(&self, start: u64) -> parquet::errors::Result<SourceRead> {
        match self {
            ParquetSource::Local(f) => {
                let mut file = f.try_clone()?;
                file.seek(SeekFrom::Start(start))?;
                Ok(SourceRead::Local(BufReader::new(file)))
            }
            ParquetSource::Remote(r) => Ok(SourceRead::Remote {
                file: r.clone(),
                pos: start,
            }),
        }
    }

    fn get_bytes(&self, start: u64, length: usize) -> parquet::errors::Result<Bytes> {
        match self {
            ParquetSource::Local(f) => f.get_bytes(start, length),
            ParquetSource::Remote(r) => r
                .bytes(start, length as u64)
                .map_err(|e| parquet::errors::ParquetError::External(Box::new(e))),
        }
    }
}

/// A reader of `path`'s bytes from `start` (to `end` when given): a local file or an
/// object's streamed body.
pub fn open_bytes(path: &Path, start: u64, end: Option<u64>) -> Result<Box<dyn Read + Send>> {
    if is_remote_path(path) {
        let object = ObjectLocation::parse(url_of(path))?;
        return Ok(Box::new(object.open_read(start, end)?));
    }
    let mut file = File::open(path).map_err(|e| StorageError::io(path, e))?;
    if start > 0 {
        file.seek(SeekFrom::Start(start))
            .map_err(|e| StorageError::io(path, e))?;
    }
    Ok(Box::new(file))
}

#[cfg(test)]
mod tests {
    use crate::object::register_store;
    use crate::reader::{ColumnSpec, CorpusReader, OnBadFile};
    use arrow::array::{RecordBatch, StringArray};
    use arrow::datatypes::{DataType, Field, Schema};
    use futures::stream::BoxStream;
    use object_store::memory::InMemory;
    use object_store::path::Path as ObjectPath;
    use object_store::{
        CopyOptions, GetOptions, GetRange, GetResult, ListResult, MultipartUpload, ObjectMeta,
        ObjectStore, ObjectStoreExt, PutMultipartOptions, PutOptions, PutPayload, PutResult,
    };
    use parquet::arrow::ArrowWriter;
    use parquet::file::properties::WriterProperties;
    use std::ops::Range;
    use std::sync::{Arc, Mutex};

    /// An in-memory store that records the byte range of every read.
    #[derive(Debug, Default)]
    struct RangeRecorder {
        inner: InMemory,
        reads: Mutex<Vec<Range<u64>>>,
    }

    impl std::fmt::Display for RangeRecorder {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            write!(f, "RangeRecorder")
        }
    }

    #[async_trait::async_trait]
    impl ObjectStore for RangeRecorder {
        async fn put_opts(
            &self,
            location: &ObjectPath,
            payload: PutPayload,
            opts: PutOptions,
        ) -> object_store::Result<PutResult> {
            self.inner.put_opts(location, payload, opts).await
        }
        async fn put_multipart_opts(
            &self,
            location: &ObjectPath,
            opts: PutMultipartOptions,
        ) -> object_store::Result<Box<dyn MultipartUpload>> {
            self.inner.put_multipart_opts(location, opts).await
        }
        async fn get_opts(
            &self,
            location: &ObjectPath,
            options: GetOptions,
        ) -> object_store::Result<GetResult> {
            let size = self.inner.head(location).await?.size;
            let range = match &options.range {
                Some(GetRange::Bounded(r)) => r.clone(),
                Some(GetRange::Offset(o)) => *o..size,
                Some(GetRange::Suffix(n)) => size - n..size,
                None => 0..size,
            };
            if !options.head {
                self.reads.lock().unwrap().push(range);
            }
            self.inner.get_opts(location, options).await
        }
        fn delete_stream(
            &self,
            locations: BoxStream<'static, object_store::Result<ObjectPath>>,
        ) -> BoxStream<'static, object_store::Result<ObjectPath>> {
            self.inner.delete_stream(locations)
        }
        fn list(
            &self,
            prefix: Option<&ObjectPath>,
        ) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
            self.inner.list(prefix)
        }
        async fn list_with_delimiter(
            &self,
            prefix: Option<&ObjectPath>,
        ) -> object_store::Result<ListResult> {
            self.inner.list_with_delimiter(prefix).await
        }
        async fn copy_opts(
            &self,
            from: &ObjectPath,
            to: &ObjectPath,
            options: CopyOptions,
        ) -> object_store::Result<()> {
            self.inner.copy_opts(from, to, options).await
        }
    }

    /// Four row groups of 50 rows: id, text, and a large column no spec projects.
    fn four_row_groups() -> Vec<u8> {
        let schema = Arc::new(Schema::new(vec![
            Field::new("id", DataType::Utf8, false),
            Field::new("text", DataType::Utf8, false),
            Field::new("blob", DataType::Utf8, false),
        ]));
        let n = 200;
        let batch = RecordBatch::try_new(
            schema.clone(),
            vec![
                Arc::new(StringArray::from_iter_values(
                    (0..n).map(|i| format!("d{i}")),
                )),
                Arc::new(StringArray::from_iter_values(
                    (0..n).map(|i| format!("document number {i} says hello")),
                )),
                Arc::new(StringArray::from_iter_values(
                    (0..n).map(|i| format!("{i:x}").repeat(400)),
                )),
            ],
        )
        .unwrap();
        let props = WriterProperties::builder()
            .set_max_row_group_row_count(Some(50))
            .build();
        let mut out = Vec::new();
        let mut w = ArrowWriter::try_new(&mut out, schema, Some(props)).unwrap();
        w.write(&batch).unwrap();
        w.close().unwrap();
        out
    }

    #[test]
    fn a_remote_row_group_unit_reads_only_its_projected_column_chunks() {
        let store = Arc::new(RangeRecorder::default());
        register_store("memory://recorded", store.clone());
        let bytes = four_row_groups();
        let size = bytes.len() as u64;
        super::super::object::ObjectLocation::parse("memory://recorded/corpus/a.parquet")
            .unwrap()
            .put(bytes::Bytes::from(bytes.clone()))
            .unwrap();
        let reader = CorpusReader::open(
            &["memory://recorded/corpus/".to_string()],
            ColumnSpec::default(),
            OnBadFile::Error,
            1024,
        )
        .unwrap();
        assert_eq!(reader.units().len(), 4);
        let opened: Vec<Range<u64>> = std::mem::take(&mut *store.reads.lock().unwrap());
        assert_eq!(
            opened,
            vec![size - super::FOOTER_PREFETCH.min(size)..size],
            "opening reads the footer region in one request"
        );

        let texts: Vec<String> = reader
            .read_unit(2)
            .unwrap()
            .flat_map(|b| {
                let b = b.unwrap();
                (0..b.len())
                    .map(|i| b.text(i).unwrap().to_string())
                    .collect::<Vec<_>>()
            })
            .collect();
        assert_eq!(texts.len(), 50);
        assert_eq!(texts[0], "document number 100 says hello");

        // The ranges the unit may read: row group 2's id and text chunks, and the footer.
        let meta = parquet::file::metadata::ParquetMetaDataReader::new()
            .parse_and_finish(&bytes::Bytes::from(bytes))
            .unwrap();
        let rg = meta.row_group(2);
        let chunk = |c: usize| {
            let (start, len) = rg.column(c).byte_range();
            start..start + len
        };
        // The store coalesces neighbouring ranges into one request: merge them likewise.
        let mut allowed = vec![
            chunk(0),
            chunk(1),
            size - super::FOOTER_PREFETCH.min(size)..size,
        ];
        allowed.sort_by_key(|r| r.start);
        allowed = allowed
            .into_iter()
            .fold(Vec::new(), |mut merged: Vec<Range<u64>>, r| {
                match merged.last_mut() {
                    Some(last) if r.start <= last.end => last.end = last.end.max(r.end),
                    _ => merged.push(r),
                }
                merged
            });
        let reads = store.reads.lock().unwrap().clone();
        assert!(!reads.is_empty());
        for r in &reads {
            assert!(
                allowed.iter().any(|a| a.start <= r.start && r.end <= a.end),
                "read {r:?} outside {allowed:?}"
            );
        }
        // Beyond the footer request, exactly the two projected chunks were fetched.
        let footer = size - super::FOOTER_PREFETCH.min(size)..size;
        let beyond_footer: u64 = reads
            .iter()
            .filter(|r| **r != footer)
            .map(|r| r.end - r.start)
            .sum();
        let (id_chunk, text_chunk) = (chunk(0), chunk(1));
        assert_eq!(
            beyond_footer,
            (id_chunk.end - id_chunk.start) + (text_chunk.end - text_chunk.start),
            "reads {reads:?}; blob chunk {:?} never fetched",
            chunk(2)
        );
    }

    /// An Arrow IPC stream in a bucket is laid out as on disk, its long bodies are skipped
    /// with new ranged requests instead of being downloaded when it is opened, and each of its
    /// units reads the same rows as the local file's.
    #[test]
    fn a_remote_arrow_ipc_file_has_the_local_layout_and_skips_its_bodies() {
        use crate::arrow_ipc::{index_file, IpcBatches};
        use arrow::array::{Array, AsArray};
        let store = Arc::new(RangeRecorder::default());
        register_store("memory://ipc", store.clone());
        let schema = Arc::new(Schema::new(vec![
            Field::new("id", DataType::Utf8, false),
            Field::new("text", DataType::Utf8, false),
        ]));
        let mut bytes = Vec::new();
        let mut w = arrow::ipc::writer::StreamWriter::try_new(&mut bytes, &schema).unwrap();
        let batches = 4;
        for b in 0..batches {
            let rows = b * 1000..(b + 1) * 1000;
            let batch = RecordBatch::try_new(
                schema.clone(),
                vec![
                    Arc::new(StringArray::from_iter_values(
                        rows.clone().map(|i| format!("d{i}")),
                    )),
                    Arc::new(StringArray::from_iter_values(
                        rows.map(|i| format!("{i:x} ").repeat(1200)),
                    )),
                ],
            )
            .unwrap();
            w.write(&batch).unwrap();
        }
        w.finish().unwrap();
        let size = bytes.len() as u64;
        let dir = tempfile::tempdir().unwrap();
        let local = dir.path().join("data.arrow");
        std::fs::write(&local, &bytes).unwrap();
        let remote = std::path::PathBuf::from("memory://ipc/data.arrow");
        super::super::object::ObjectLocation::parse("memory://ipc/data.arrow")
            .unwrap()
            .put(bytes::Bytes::from(bytes))
            .unwrap();
        let unit_bytes = size / 3;
        let (_, want) = index_file(&local, size, unit_bytes).unwrap();
        store.reads.lock().unwrap().clear();
        let (_, got) = index_file(&remote, size, unit_bytes).unwrap();
        assert_eq!(got, want);
        assert!(got.units.len() >= 2, "{got:?}");
        // The magic probe, the first request, and one more after each batch's body.
        let requests = store.reads.lock().unwrap().len();
        assert!(requests > batches, "{requests} requests");
        let ids = |path: &std::path::Path| -> Vec<String> {
            got.units
                .iter()
                .flat_map(|unit| IpcBatches::open(path, &got, unit, None, 512).unwrap())
                .flat_map(|batch| {
                    let batch = batch.unwrap();
                    let ids = batch.column(0).as_string::<i32>().clone();
                    (0..ids.len()).map(move |i| ids.value(i).to_string())
                })
                .collect()
        };
        let expected: Vec<String> = (0..batches * 1000).map(|i| format!("d{i}")).collect();
        assert_eq!(ids(&remote), expected);
        assert_eq!(ids(&local), expected);
    }
}
