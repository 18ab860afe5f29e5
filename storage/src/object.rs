//! Object storage: `s3://bucket/key` (and `gs://`, `az://`/`abfs://`) paths for inputs,
//! outputs and caches, through the `object_store` crate.
//!
//! Every call blocks on one shared Tokio runtime, so the rest of gleaner stays synchronous.
//! Credentials, region and endpoint come from the usual environment variables of each
//! service (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_REGION`, `AWS_ENDPOINT_URL`,
//! `AWS_ALLOW_HTTP`, `GOOGLE_SERVICE_ACCOUNT`, `AZURE_STORAGE_ACCOUNT_NAME`, ...). Failed
//! requests are retried with exponential backoff (`GLEANER_OBJECT_STORE_RETRIES`, default 10;
//! `GLEANER_OBJECT_STORE_TIMEOUT_S`, default 180 s for one request and its retries).
//!
//! Writes keep the local commit rule: an object appears whole or not at all. A small file is
//! one PUT; a large one is a multipart upload completed only after its last part, and aborted
//! on any error.

use crate::error::{Result, StorageError};
use bytes::Bytes;
use futures::StreamExt;
use object_store::path::Path as ObjectPath;
use object_store::{
    BackoffConfig, GetOptions, GetRange, ObjectMeta, ObjectStore, ObjectStoreExt,
    ObjectStoreScheme, PutPayload, RetryConfig, WriteMultipart,
};
use std::collections::HashMap;
use std::io::Read;
use std::ops::Range;
use std::path::Path;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

/// Files at least this large are uploaded in parts.
const MULTIPART_BYTES: u64 = 16 * 1024 * 1024;
/// Size of one uploaded part.
const PART_BYTES: usize = 8 * 1024 * 1024;

/// Whether `path` names an object (`scheme://...` other than `file://`) rather than a local
/// path.
pub fn is_remote(path: &str) -> bool {
    match path.split_once("://") {
        Some((scheme, _)) => {
            !scheme.is_empty()
                && scheme != "file"
                && scheme
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '+' || c == '-' || c == '.')
        }
        None => false,
    }
}

/// Whether a local `Path` holds an object URL (input files keep their URL as their path).
pub fn is_remote_path(path: &Path) -> bool {
    path.to_str().is_some_and(is_remote)
}

fn runtime() -> &'static tokio::runtime::Runtime {
    static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("gleaner-object-store")
            .enable_all()
            .build()
            .expect("a Tokio runtime for object storage")
    })
}

fn env_number(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(default)
}

fn retry_config() -> RetryConfig {
    RetryConfig {
        backoff: BackoffConfig {
            init_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(15),
            base: 2.0,
        },
        max_retries: env_number("GLEANER_OBJECT_STORE_RETRIES", 10) as usize,
        retry_timeout: Duration::from_secs(env_number("GLEANER_OBJECT_STORE_TIMEOUT_S", 180)),
    }
}

/// An object's store and its key within it.
#[derive(Clone)]
pub struct ObjectLocation {
    store: Arc<dyn ObjectStore>,
    /// Key within the store (no leading slash).
    pub key: ObjectPath,
    /// `scheme://bucket` of the store, to rebuild URLs.
    base: String,
}

fn error(url: &str, e: impl std::fmt::Display) -> StorageError {
    StorageError::Object {
        url: url.to_string(),
        message: e.to_string(),
    }
}

fn not_found(e: &object_store::Error) -> bool {
    matches!(e, object_store::Error::NotFound { .. })
}

/// The characters of an object key that are percent-encoded in its URL: those the URL path
/// grammar gives a meaning or does not allow (the WHATWG path percent-encode set) and `%`.
const URL_PATH_ESCAPES: &percent_encoding::AsciiSet = &percent_encoding::CONTROLS
    .add(b' ')
    .add(b'"')
    .add(b'#')
    .add(b'%')
    .add(b'<')
    .add(b'>')
    .add(b'?')
    .add(b'`')
    .add(b'{')
    .add(b'}');

/// The stores built so far, by `scheme://bucket`.
fn stores() -> &'static Mutex<HashMap<String, Arc<dyn ObjectStore>>> {
    static STORES: OnceLock<Mutex<HashMap<String, Arc<dyn ObjectStore>>>> = OnceLock::new();
    STORES.get_or_init(Default::default)
}

/// Serves `scheme://bucket` URLs from `store` (tests: an instrumented in-memory store).
#[cfg(test)]
pub(crate) fn register_store(base: &str, store: Arc<dyn ObjectStore>) {
    stores()
        .lock()
        .expect("store registry")
        .insert(base.to_string(), store);
}

/// The store of `url`, built once per bucket from the environment.
fn store_for(url: &str) -> Result<(Arc<dyn ObjectStore>, ObjectPath, String)> {
    let parsed = url::Url::parse(url).map_err(|e| error(url, format!("not a URL: {e}")))?;
    let base = format!("{}://{}", parsed.scheme(), parsed.host_str().unwrap_or(""));
    let mut stores = stores().lock().expect("store registry");
    if let Some(store) = stores.get(&base) {
        let key = ObjectPath::from_url_path(parsed.path()).map_err(|e| error(url, e))?;
        return Ok((store.clone(), key, base));
    }
    let (scheme, key) = ObjectStoreScheme::parse(&parsed).map_err(|e| error(url, e))?;
    let key = ObjectPath::parse(key).map_err(|e| error(url, e))?;
    let store: Arc<dyn ObjectStore> = match scheme {
        ObjectStoreScheme::AmazonS3 => Arc::new(
            object_store::aws::AmazonS3Builder::from_env()
                .with_url(url)
                .with_retry(retry_config())
                .build()
                .map_err(|e| error(url, e))?,
        ),
        ObjectStoreScheme::GoogleCloudStorage => Arc::new(
            object_store::gcp::GoogleCloudStorageBuilder::from_env()
                .with_url(url)
                .with_retry(retry_config())
                .build()
                .map_err(|e| error(url, e))?,
        ),
        ObjectStoreScheme::MicrosoftAzure => Arc::new(
            object_store::azure::MicrosoftAzureBuilder::from_env()
                .with_url(url)
                .with_retry(retry_config())
                .build()
                .map_err(|e| error(url, e))?,
        ),
        other => {
            return Err(error(
                url,
                format!(
                "the scheme {other:?} is not supported (use s3://, gs://, az:// or a local path)"
            ),
            ))
        }
    };
    stores.insert(base.clone(), store.clone());
    Ok((store, key, base))
}

impl ObjectLocation {
    /// The object (or prefix) a URL names.
    pub fn parse(url: &str) -> Result<Self> {
        let (store, key, base) = store_for(url)?;
        Ok(Self { store, key, base })
    }

    /// The URL of this location.
    pub fn url(&self) -> String {
        self.url_of(&self.key)
    }

    /// The location `name` below this one (`a/b` joined with `c/d` is `a/b/c/d`).
    pub fn join(&self, name: &str) -> Self {
        let mut key = self.key.to_string();
        for part in name.split('/').filter(|p| !p.is_empty()) {
            if !key.is_empty() {
                key.push('/');
            }
            key.push_str(part);
        }
        Self {
            store: self.store.clone(),
            key: ObjectPath::from(key),
            base: self.base.clone(),
        }
    }

    /// Size, modification time and entity tag, or `None` when there is no such object.
    pub fn head(&self) -> Result<Option<ObjectMeta>> {
        match runtime().block_on(self.store.head(&self.key)) {
            Ok(meta) => Ok(Some(meta)),
            Err(e) if not_found(&e) => Ok(None),
            Err(e) => Err(error(&self.url(), e)),
        }
    }

    /// Every object below this prefix, sorted by key. A prefix that is not there (or a
    /// bucket that does not exist or denies access) is an error naming the URL.
    pub fn list(&self) -> Result<Vec<ObjectMeta>> {
        let prefix = (!self.key.as_ref().is_empty()).then_some(&self.key);
        let mut objects: Vec<ObjectMeta> = runtime().block_on(async {
            let mut stream = self.store.list(prefix);
            let mut found = Vec::new();
            while let Some(item) = stream.next().await {
                found.push(item.map_err(|e| error(&self.url(), e))?);
            }
            Ok::<_, StorageError>(found)
        })?;
        objects.sort_by(|a, b| a.location.cmp(&b.location));
        Ok(objects)
    }

    /// The key of a listed object relative to this prefix (`a/b` below `a` is `b`).
    pub fn relative_key(&self, key: &ObjectPath) -> String {
        let key = key.to_string();
        let root = self.key.to_string();
        match key.strip_prefix(&root) {
            Some(rel) => rel.trim_start_matches('/').to_string(),
            None => key,
        }
    }

    /// The URL of an object the store listed. Characters a URL path cannot hold as they are
    /// (`%`, `?`, `#`, spaces: Hive partition directories written by pyarrow or Spark have
    /// `%` in their keys) are percent-encoded, so that parsing the URL gives the key back.
    pub fn url_of(&self, key: &ObjectPath) -> String {
        let key = percent_encoding::utf8_percent_encode(key.as_ref(), URL_PATH_ESCAPES);
        format!("{}/{}", self.base, key)
    }

    /// Bytes `range` of the object.
    pub fn get_range(&self, range: Range<u64>) -> Result<Bytes> {
        runtime()
            .block_on(self.store.get_range(&self.key, range))
            .map_err(|e| error(&self.url(), e))
    }

    /// Several byte ranges in as few requests as the store's coalescing allows.
    pub fn get_ranges(&self, ranges: &[Range<u64>]) -> Result<Vec<Bytes>> {
        runtime()
            .block_on(self.store.get_ranges(&self.key, ranges))
            .map_err(|e| error(&self.url(), e))
    }

    /// The whole object.
    pub fn get(&self) -> Result<Bytes> {
        runtime()
            .block_on(async { self.store.get(&self.key).await?.bytes().await })
            .map_err(|e| error(&self.url(), e))
    }

    /// A streaming reader of the object from byte `start` (to `end` when given).
    pub fn open_read(&self, start: u64, end: Option<u64>) -> Result<ObjectRead> {
        let range = match end {
            Some(end) => GetRange::Bounded(start..end),
            None => GetRange::Offset(start),
        };
        let options = GetOptions::new().with_range(Some(range));
        let result = runtime()
            .block_on(self.store.get_opts(&self.key, options))
            .map_err(|e| error(&self.url(), e))?;
        Ok(ObjectRead {
            stream: result.into_stream(),
            current: Bytes::new(),
        })
    }

    /// Writes `bytes` as the object, whole (one PUT).
    pub fn put(&self, bytes: Bytes) -> Result<()> {
        runtime()
            .block_on(self.store.put(&self.key, PutPayload::from_bytes(bytes)))
            .map(|_| ())
            .map_err(|e| error(&self.url(), e))
    }

    /// Uploads a local file as the object: one PUT when small, else a multipart upload that
    /// is completed after its last part and aborted on any failure, so the object is never
    /// seen half-written.
    pub fn upload_file(&self, local: &Path) -> Result<()> {
        let size = std::fs::metadata(local)
            .map_err(|e| StorageError::io(local, e))?
            .len();
        if size < MULTIPART_BYTES {
            let bytes = std::fs::read(local).map_err(|e| StorageError::io(local, e))?;
            return self.put(Bytes::from(bytes));
        }
        let url = self.url();
        runtime().block_on(async {
            let upload = self
                .store
                .put_multipart(&self.key)
                .await
                .map_err(|e| error(&url, e))?;
            let mut writer = WriteMultipart::new_with_chunk_size(upload, PART_BYTES);
            let mut file = std::fs::File::open(local).map_err(|e| StorageError::io(local, e))?;
            let mut buf = vec![0u8; PART_BYTES];
            loop {
                let n = match file.read(&mut buf) {
                    Ok(n) => n,
                    Err(e) => {
                        let _ = writer.abort().await;
                        return Err(StorageError::io(local, e));
                    }
                };
                if n == 0 {
                    break;
                }
                if let Err(e) = writer.wait_for_capacity(4).await {
                    let _ = writer.abort().await;
                    return Err(error(&url, e));
                }
                writer.write(&buf[..n]);
            }
            writer
                .finish()
                .await
                .map(|_| ())
                .map_err(|e| error(&url, e))
        })
    }

    /// Deletes the object; one that is not there is no error.
    pub fn delete(&self) -> Result<()> {
        match runtime().block_on(self.store.delete(&self.key)) {
            Ok(()) => Ok(()),
            Err(e) if not_found(&e) => Ok(()),
            Err(e) => Err(error(&self.url(), e)),
        }
    }
}

/// A blocking reader over an object's streamed body.
pub struct ObjectRead {
    stream: futures::stream::BoxStream<'static, object_store::Result<Bytes>>,
    current: Bytes,
}

impl Read for ObjectRead {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.current.is_empty() {
            match runtime().block_on(self.stream.next()) {
                Some(Ok(bytes)) => self.current = bytes,
                Some(Err(e)) => return Err(std::io::Error::other(e)),
                None => return Ok(0),
            }
        }
        let n = buf.len().min(self.current.len());
        buf[..n].copy_from_slice(&self.current[..n]);
        self.current = self.current.slice(n..);
        Ok(n)
    }
}

/// The local folder's files as `(relative path, absolute path)`, sorted, skipping hidden
/// entries (temporary files of an interrupted write).
pub fn local_files(dir: &Path) -> Result<Vec<(String, std::path::PathBuf)>> {
    fn walk(dir: &Path, rel: &str, out: &mut Vec<(String, std::path::PathBuf)>) -> Result<()> {
        let entries = std::fs::read_dir(dir).map_err(|e| StorageError::io(dir, e))?;
        for entry in entries {
            let entry = entry.map_err(|e| StorageError::io(dir, e))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with('.') {
                continue;
            }
            let path = entry.path();
            let child = if rel.is_empty() {
                name
            } else {
                format!("{rel}/{name}")
            };
            if path.is_dir() {
                walk(&path, &child, out)?;
            } else {
                out.push((child, path));
            }
        }
        Ok(())
    }
    let mut out = Vec::new();
    if dir.is_dir() {
        walk(dir, "", &mut out)?;
    }
    out.sort();
    Ok(out)
}

/// Publishes a completed local run folder under `prefix`: the completion marker `last`
/// (manifest.json) is deleted first, every other file uploaded (each whole), objects of an
/// earlier run that this one did not write are deleted, and `last` is uploaded at the end,
/// so the prefix never looks complete while it is half-published.
pub fn publish_dir(local: &Path, prefix: &ObjectLocation, last: &str) -> Result<usize> {
    let files = local_files(local)?;
    prefix.join(last).delete()?;
    let written: std::collections::BTreeSet<String> =
        files.iter().map(|(rel, _)| rel.clone()).collect();
    for (rel, path) in files.iter().filter(|(rel, _)| rel != last) {
        prefix.join(rel).upload_file(path)?;
    }
    for old in prefix.list()? {
        let rel = prefix.relative_key(&old.location);
        if !written.contains(&rel) {
            prefix.join(&rel).delete()?;
        }
    }
    if let Some((_, path)) = files.iter().find(|(rel, _)| rel == last) {
        prefix.join(last).upload_file(path)?;
    }
    Ok(files.len())
}

/// Copies the objects below `prefix` into `local` that are missing there or differ in size
/// (a cache mirror); returns how many were downloaded.
pub fn mirror_down(prefix: &ObjectLocation, local: &Path) -> Result<usize> {
    let mut fetched = 0;
    for object in prefix.list()? {
        let rel = prefix.relative_key(&object.location);
        let target = local.join(&rel);
        if std::fs::metadata(&target).is_ok_and(|m| m.len() == object.size) {
            continue;
        }
        if let Some(dir) = target.parent() {
            std::fs::create_dir_all(dir).map_err(|e| StorageError::io(dir, e))?;
        }
        let bytes = prefix.join(&rel).get()?;
        crate::atomic::write_bytes(&target, &bytes)?;
        fetched += 1;
    }
    Ok(fetched)
}

/// Uploads the files of `local` that are not below `prefix` yet (cache entries never change
/// once written, so one already there is kept); returns how many were uploaded.
pub fn mirror_up(local: &Path, prefix: &ObjectLocation, skip_dirs: &[&str]) -> Result<usize> {
    let present: std::collections::HashMap<String, u64> = prefix
        .list()?
        .into_iter()
        .map(|o| (prefix.relative_key(&o.location), o.size))
        .collect();
    let mut uploaded = 0;
    for (rel, path) in local_files(local)? {
        if skip_dirs.iter().any(|d| rel.starts_with(&format!("{d}/"))) {
            continue;
        }
        let size = std::fs::metadata(&path)
            .map_err(|e| StorageError::io(&path, e))?
            .len();
        if present.get(&rel) == Some(&size) {
            continue;
        }
        prefix.join(&rel).upload_file(&path)?;
        uploaded += 1;
    }
    Ok(uploaded)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_with_a_scheme_are_remote_and_local_paths_are_not() {
        assert!(is_remote("s3://bucket/prefix/"));
        assert!(is_remote("gs://bucket/a.parquet"));
        assert!(is_remote("abfs://container@account.dfs.core.windows.net/x"));
        assert!(!is_remote("file:///tmp/x"));
        assert!(!is_remote("data/quickstart"));
        assert!(!is_remote("/abs/path/with://inside"));
        assert!(!is_remote("C:\\data"));
    }

    #[test]
    fn an_unsupported_scheme_is_an_error_naming_the_url() {
        let err = ObjectLocation::parse("ftp://host/a.parquet")
            .err()
            .expect("ftp is no object store");
        assert!(err.to_string().contains("ftp://host/a.parquet"), "{err}");
    }

    #[test]
    fn join_appends_path_segments() {
        let loc = ObjectLocation::parse("s3://bucket/runs/one").unwrap();
        assert_eq!(
            loc.join("selected/part-00000.parquet").url(),
            "s3://bucket/runs/one/selected/part-00000.parquet"
        );
        let root = ObjectLocation::parse("s3://bucket").unwrap();
        assert_eq!(root.join("a").url(), "s3://bucket/a");
    }
}
