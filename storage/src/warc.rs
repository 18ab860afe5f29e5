//! Web archives: WARC files (`*.warc`, `*.warc.gz`) as crawlers such as Common Crawl write
//! them, and Common Crawl's WET files (`*.warc.wet.gz`) of extracted text.
//!
//! Which records are documents is decided as datatrove's `WarcReader` decides it:
//! - `response` records whose payload is HTML (`text/html` or `application/xhtml+xml`), and
//!   `conversion` records (WET text); every other record type is skipped;
//! - the payload type is the record's `WARC-Identified-Payload-Type`. When a record has none,
//!   datatrove asks libmagic; here a response's HTTP `Content-Type` decides, and when that is
//!   missing too, whether the payload starts (after white space) with an HTML tag or doctype.
//!   A conversion record without it is taken as text;
//! - an HTTP response's headers are taken off, and a chunked transfer encoding and a gzip,
//!   deflate or brotli content encoding are undone (a payload that does not decode is taken
//!   as it is, as warcio does);
//! - the payload is decoded as UTF-8, or else in the charset a detector guesses (Mozilla's
//!   chardetng where datatrove uses cchardet); a page that decodes in neither is skipped.
//!
//! Each document has the columns `id` (WARC-Record-ID), `text` (the HTML, or the WET text),
//! `url` (WARC-Target-URI), `date` (WARC-Date) and `content_language`
//! (WARC-Identified-Content-Language, null when absent). HTML becomes text in the
//! `html_extract` stage. Its documents are counted when the corpus is opened ([`index_file`]),
//! which also cuts the file into work units of about [`UNIT_BYTES`] at record starts: in a
//! gzip file only where a gzip member starts with a record (crawlers write one member per
//! record, as the WARC standard advises), so a unit is a byte range that inflates on its own.

use crate::error::{Result, StorageError};
use crate::source::open_bytes;
use arrow::array::{ArrayRef, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// Target size of one work unit of a web archive, in bytes of the file.
pub const UNIT_BYTES: u64 = 32 * 1024 * 1024;

/// One work unit of a web archive: whole records, from a byte range of the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WarcUnit {
    /// First byte of the unit in the file (a record start; in a gzip file, a member start).
    pub start: u64,
    /// One past its last byte (`u64::MAX`: to the end of the file).
    pub end: u64,
    /// Records of every type before the unit, for messages.
    pub first_record: u64,
    /// Documents before the unit.
    pub first_row: u64,
    /// Documents in the unit.
    pub rows: u64,
}

fn is_gzip(path: &Path) -> bool {
    path.to_string_lossy().ends_with(".gz")
}

/// Whether `path` names a web archive: a WARC file (`.warc`, `.warc.gz`) or a WET file
/// (`.wet`, `.wet.gz`, as in `*.warc.wet.gz`).
pub fn is_warc(path: &Path) -> bool {
    path.file_name().and_then(|n| n.to_str()).is_some_and(|n| {
        let n = n.strip_suffix(".gz").unwrap_or(n);
        n.ends_with(".warc") || n.ends_with(".wet")
    })
}

/// The columns of a web-archive document.
pub fn schema() -> SchemaRef {
    let field = |name: &str, nullable: bool| Field::new(name, DataType::Utf8, nullable);
    Arc::new(Schema::new(vec![
        field("id", false),
        field("text", false),
        field("url", true),
        field("date", true),
        field("content_language", true),
    ]))
}

/// One document of a web archive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WarcDocument {
    /// WARC-Record-ID.
    pub id: String,
    /// The page's HTML (a response record) or its extracted text (a conversion record).
    pub text: String,
    /// WARC-Target-URI.
    pub url: Option<String>,
    /// WARC-Date.
    pub date: Option<String>,
    /// WARC-Identified-Content-Language.
    pub content_language: Option<String>,
}

/// The documents of a web archive, in order.
pub struct WarcRecords {
    stream: Box<dyn BufRead + Send>,
    path: PathBuf,
    /// The number of the record being read (1-based, all types, in the file), for messages.
    records: u64,
    /// Bytes of the (inflated) stream read so far.
    offset: u64,
}

impl WarcRecords {
    /// Opens `path` (gzip when its name ends in `.gz`, local or in object storage) at the
    /// start of `unit`, reading to its end.
    pub fn open(path: &Path, unit: &WarcUnit) -> Result<Self> {
        let end = (unit.end != u64::MAX).then_some(unit.end);
        // A local file is opened to its end: the unit's bytes are taken from it.
        let file = open_bytes(path, unit.start, end)?.take(unit.end - unit.start);
        let stream: Box<dyn BufRead + Send> = if is_gzip(path) {
            Box::new(BufReader::with_capacity(
                1 << 20,
                flate2::read::MultiGzDecoder::new(BufReader::with_capacity(1 << 16, file)),
            ))
        } else {
            Box::new(BufReader::with_capacity(1 << 20, file))
        };
        Ok(Self::over(stream, path, unit.first_record))
    }

    fn over(stream: Box<dyn BufRead + Send>, path: &Path, records_before: u64) -> Self {
        WarcRecords {
            stream,
            path: path.to_path_buf(),
            records: records_before,
            offset: 0,
        }
    }

    fn bad(&self, message: impl std::fmt::Display) -> StorageError {
        StorageError::Corrupt {
            path: self.path.clone(),
            message: format!("WARC record {}: {message}", self.records),
        }
    }

    /// The next record's start in the (inflated) stream and its headers (name in lower case,
    /// value), or `None` at the end of the stream.
    fn headers(&mut self) -> Result<Option<(u64, Headers)>> {
        let mut line = String::new();
        // Blank lines between records.
        let start = loop {
            let start = self.offset;
            line.clear();
            let n = self.stream.read_line(&mut line).map_err(|e| self.bad(e))?;
            self.offset += n as u64;
            if n == 0 {
                return Ok(None);
            }
            if !line.trim().is_empty() {
                break start;
            }
        };
        if !line.starts_with("WARC/") {
            return Err(self.bad(format!(
                "expected a `WARC/` version line, found {:?}",
                line.trim_end()
            )));
        }
        let mut headers = Vec::new();
        loop {
            line.clear();
            let n = self.stream.read_line(&mut line).map_err(|e| self.bad(e))?;
            self.offset += n as u64;
            let header = line.trim_end_matches(['\r', '\n']);
            if n == 0 {
                return Err(self.bad("the file ends inside the record's headers"));
            }
            if header.is_empty() {
                return Ok(Some((start, headers)));
            }
            headers.extend(header_line(header));
        }
    }

    /// The next record: its start in the (inflated) stream, and the document it is, if it is
    /// one; `None` at the end of the stream.
    fn next_record(&mut self) -> Result<Option<(u64, Option<WarcDocument>)>> {
        self.records += 1;
        let Some((start, headers)) = self.headers()? else {
            return Ok(None);
        };
        let length = match header(&headers, "content-length").map(str::parse::<u64>) {
            Some(Ok(n)) => n,
            _ => return Err(self.bad("no valid Content-Length header")),
        };
        let mut block = Vec::new();
        match (&mut self.stream).take(length).read_to_end(&mut block) {
            Ok(n) if n as u64 == length => self.offset += length,
            Ok(_) => return Err(self.bad("the file ends inside the record's content")),
            Err(e) => return Err(self.bad(e)),
        }
        let warc_type = header(&headers, "warc-type").unwrap_or_default();
        let Some(text) = document_text(warc_type, &headers, block) else {
            return Ok(Some((start, None)));
        };
        let Some(id) = header(&headers, "warc-record-id") else {
            return Err(self.bad("no WARC-Record-ID header"));
        };
        let owned = |name: &str| header(&headers, name).map(String::from);
        Ok(Some((
            start,
            Some(WarcDocument {
                id: id.to_string(),
                text,
                url: owned("warc-target-uri"),
                date: owned("warc-date"),
                content_language: owned("warc-identified-content-language"),
            }),
        )))
    }
}

/// Header lines as (lower-case name, trimmed value), in order.
type Headers = Vec<(String, String)>;

/// A `Name: value` header line as (lower-case name, trimmed value).
fn header_line(line: &str) -> Option<(String, String)> {
    let (name, value) = line.split_once(':')?;
    Some((name.trim().to_ascii_lowercase(), value.trim().to_string()))
}

/// The value of header `name` (lower case) in `headers`.
fn header<'h>(headers: &'h [(String, String)], name: &str) -> Option<&'h str> {
    headers
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.as_str())
}

/// A content type's media type, in lower case and without its parameters.
fn media_type(content_type: &str) -> String {
    let end = content_type.find(';').unwrap_or(content_type.len());
    content_type[..end].trim().to_ascii_lowercase()
}

fn is_html_type(media_type: &str) -> bool {
    media_type == "text/html" || media_type == "application/xhtml+xml"
}

/// Whether a payload without a declared type looks like HTML: one of the markers libmagic
/// looks for in its first 4 KB (a doctype or an `html`, `head`, `title`, `body`, `script`,
/// `style` or `table` tag, or a link), in any case.
fn sniffs_as_html(payload: &[u8]) -> bool {
    const MARKERS: [&[u8]; 11] = [
        b"<!doctype html",
        b"<html>",
        b"<html ",
        b"<head>",
        b"<head ",
        b"<title>",
        b"<body",
        b"<script",
        b"<style",
        b"<table",
        b"<a href=",
    ];
    let start = payload[..payload.len().min(4096)].to_ascii_lowercase();
    MARKERS
        .iter()
        .any(|m| memchr::memmem::find(&start, m).is_some())
}

/// An HTTP message's header lines and its body: `None` when `block` does not start with an
/// HTTP status line followed by headers.
fn split_http(block: &[u8]) -> Option<(Headers, &[u8])> {
    if !block.starts_with(b"HTTP/") {
        return None;
    }
    let (head_end, body_start) = match memchr::memmem::find(block, b"\r\n\r\n") {
        Some(p) => (p, p + 4),
        None => {
            let p = memchr::memmem::find(block, b"\n\n")?;
            (p, p + 2)
        }
    };
    let head = String::from_utf8_lossy(&block[..head_end]);
    let headers = head.lines().skip(1).filter_map(header_line).collect();
    Some((headers, &block[body_start..]))
}

/// `body` with a chunked transfer encoding undone; `None` when it is not well formed.
fn dechunk(mut body: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(body.len());
    loop {
        let line_end = memchr::memchr(b'\n', body)?;
        let size_field = std::str::from_utf8(&body[..line_end]).ok()?;
        let size_field = size_field.split(';').next()?.trim();
        let size = usize::from_str_radix(size_field, 16).ok()?;
        body = &body[line_end + 1..];
        if size == 0 {
            return Some(out);
        }
        out.extend_from_slice(body.get(..size)?);
        body = &body[size..];
        body = body
            .strip_prefix(b"\r\n")
            .or_else(|| body.strip_prefix(b"\n"))?;
    }
}

/// `body` decoded from `encoding` (gzip, deflate or brotli); `None` for another encoding or
/// a body that does not decode.
fn decode_content(body: &[u8], encoding: &str) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    let read = match encoding {
        "gzip" | "x-gzip" => flate2::read::MultiGzDecoder::new(body).read_to_end(&mut out),
        // "deflate" is zlib-wrapped by the standard, raw in some servers' hands.
        "deflate" => flate2::read::ZlibDecoder::new(body)
            .read_to_end(&mut out)
            .or_else(|_| {
                out.clear();
                flate2::read::DeflateDecoder::new(body).read_to_end(&mut out)
            }),
        "br" => brotli_decompressor::Decompressor::new(body, 1 << 16).read_to_end(&mut out),
        _ => return None,
    };
    read.ok().map(|_| out)
}

/// The payload of an HTTP response block with its transfer and content encodings undone (a
/// payload that does not decode is taken as it is), and its declared media type.
fn http_payload(block: &[u8]) -> Option<(Vec<u8>, Option<String>)> {
    let (headers, body) = split_http(block)?;
    let mut payload = body.to_vec();
    let chunked = header(&headers, "transfer-encoding")
        .is_some_and(|t| t.to_ascii_lowercase().contains("chunked"));
    if chunked {
        if let Some(joined) = dechunk(&payload) {
            payload = joined;
        }
    }
    if let Some(encoding) = header(&headers, "content-encoding") {
        if let Some(decoded) = decode_content(&payload, &encoding.trim().to_ascii_lowercase()) {
            payload = decoded;
        }
    }
    Some((payload, header(&headers, "content-type").map(media_type)))
}

/// `bytes` as text: UTF-8, or else the charset chardetng guesses; `None` when neither decodes.
fn decode_text(bytes: Vec<u8>) -> Option<String> {
    match String::from_utf8(bytes) {
        Ok(text) => Some(text),
        Err(e) => {
            let bytes = e.into_bytes();
            let mut detector = chardetng::EncodingDetector::new();
            detector.feed(&bytes, true);
            let encoding = detector.guess(None, false);
            if encoding == encoding_rs::UTF_8 {
                return None;
            }
            encoding
                .decode_without_bom_handling_and_without_replacement(&bytes)
                .map(|text| text.into_owned())
        }
    }
}

/// The text of a record of type `warc_type` with headers `headers` and block `block`, when
/// the record is a document.
fn document_text(warc_type: &str, headers: &[(String, String)], block: Vec<u8>) -> Option<String> {
    let conversion = match warc_type {
        "response" => false,
        "conversion" => true,
        _ => return None,
    };
    let declared = header(headers, "warc-identified-payload-type").map(media_type);
    if let Some(t) = &declared {
        if !(is_html_type(t) || (conversion && t == "text/plain")) {
            return None;
        }
    }
    let is_http =
        header(headers, "content-type").is_some_and(|t| media_type(t) == "application/http");
    let (payload, http_type) = if !conversion && is_http {
        http_payload(&block)?
    } else {
        (block, None)
    };
    if declared.is_none() && !conversion {
        let html = match &http_type {
            Some(t) => is_html_type(t),
            None => sniffs_as_html(&payload),
        };
        if !html {
            return None;
        }
    }
    decode_text(payload)
}

impl Iterator for WarcRecords {
    type Item = Result<WarcDocument>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            match self.next_record() {
                Ok(Some((_, Some(document)))) => return Some(Ok(document)),
                Ok(Some((_, None))) => continue,
                Ok(None) => return None,
                Err(e) => return Some(Err(e)),
            }
        }
    }
}

/// The documents of a web archive in record batches of at most `max_rows` rows ([`schema`]).
pub struct WarcBatches {
    records: WarcRecords,
    max_rows: usize,
    schema: SchemaRef,
}

impl WarcBatches {
    /// Opens unit `unit` of `path`.
    pub fn open(path: &Path, unit: &WarcUnit, max_rows: usize) -> Result<Self> {
        Ok(WarcBatches {
            records: WarcRecords::open(path, unit)?,
            max_rows: max_rows.max(1),
            schema: schema(),
        })
    }
}

impl Iterator for WarcBatches {
    type Item = Result<RecordBatch>;

    fn next(&mut self) -> Option<Self::Item> {
        let mut rows = Vec::new();
        for record in self.records.by_ref() {
            match record {
                Ok(r) => rows.push(r),
                Err(e) => return Some(Err(e)),
            }
            if rows.len() == self.max_rows {
                break;
            }
        }
        if rows.is_empty() {
            return None;
        }
        let column = |values: Vec<Option<&str>>| Arc::new(StringArray::from(values)) as ArrayRef;
        let columns = vec![
            column(rows.iter().map(|r| Some(r.id.as_str())).collect()),
            column(rows.iter().map(|r| Some(r.text.as_str())).collect()),
            column(rows.iter().map(|r| r.url.as_deref()).collect()),
            column(rows.iter().map(|r| r.date.as_deref()).collect()),
            column(rows.iter().map(|r| r.content_language.as_deref()).collect()),
        ];
        Some(RecordBatch::try_new(self.schema.clone(), columns).map_err(|e| self.records.bad(e)))
    }
}

/// A byte stream that counts the bytes consumed from it.
struct Counted<R> {
    inner: R,
    consumed: u64,
}

impl<R: BufRead> Read for Counted<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.consumed += n as u64;
        Ok(n)
    }
}

impl<R: BufRead> BufRead for Counted<R> {
    fn fill_buf(&mut self) -> std::io::Result<&[u8]> {
        self.inner.fill_buf()
    }

    fn consume(&mut self, amount: usize) {
        self.consumed += amount as u64;
        self.inner.consume(amount);
    }
}

/// Where a gzip member ends: in the file, and in the inflated stream.
type MemberEnd = (u64, u64);

/// A gzip stream of one or more members inflated member by member, noting where each ends.
struct Members<R> {
    /// The file between members, or the member being inflated (`None` only while switching).
    state: Option<Member<R>>,
    inflated: u64,
    ends: Arc<Mutex<Vec<MemberEnd>>>,
}

enum Member<R> {
    Between(Counted<R>),
    Inside(Box<flate2::bufread::GzDecoder<Counted<R>>>),
}

impl<R: BufRead> Read for Members<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        loop {
            match self.state.take().expect("a member state") {
                Member::Inside(mut member) => {
                    let read = member.read(buf);
                    match read {
                        Ok(0) if !buf.is_empty() => {
                            let file = member.into_inner();
                            let end = (file.consumed, self.inflated);
                            self.ends.lock().expect("member ends lock").push(end);
                            self.state = Some(Member::Between(file));
                        }
                        _ => {
                            self.state = Some(Member::Inside(member));
                            let n = read?;
                            self.inflated += n as u64;
                            return Ok(n);
                        }
                    }
                }
                Member::Between(mut file) => {
                    let more = file.fill_buf().map(|b| !b.is_empty());
                    self.state = Some(match more {
                        Ok(true) => Member::Inside(Box::new(flate2::bufread::GzDecoder::new(file))),
                        _ => Member::Between(file),
                    });
                    if !more? {
                        return Ok(0);
                    }
                }
            }
        }
    }
}

/// Counts the documents of a web archive (read once, start to end) and cuts it into work
/// units of about `unit_bytes` bytes of the file, at record starts (in a gzip file, at record
/// starts that start a gzip member).
pub fn index_file(path: &Path, unit_bytes: u64) -> Result<Vec<WarcUnit>> {
    let file = BufReader::with_capacity(1 << 16, open_bytes(path, 0, None)?);
    let ends = Arc::new(Mutex::new(Vec::new()));
    let gzip = is_gzip(path);
    let stream: Box<dyn BufRead + Send> = if gzip {
        let members = Members {
            state: Some(Member::Between(Counted {
                inner: file,
                consumed: 0,
            })),
            inflated: 0,
            ends: ends.clone(),
        };
        Box::new(BufReader::with_capacity(1 << 20, members))
    } else {
        Box::new(file)
    };
    let mut records = WarcRecords::over(stream, path, 0);
    let mut units = Vec::new();
    let mut unit = WarcUnit {
        start: 0,
        end: u64::MAX,
        first_record: 0,
        first_row: 0,
        rows: 0,
    };
    let mut rows = 0;
    // The first member end not behind the record being read.
    let mut next_end = 0;
    while let Some((start, document)) = records.next_record()? {
        // Where in the file this record starts, when a unit may start there.
        let cut = if gzip {
            let ends = ends.lock().expect("member ends lock");
            while ends
                .get(next_end)
                .is_some_and(|&(_, inflated)| inflated < start)
            {
                next_end += 1;
            }
            ends.get(next_end)
                .filter(|&&(_, inflated)| inflated == start)
                .map(|&(in_file, _)| in_file)
        } else {
            Some(start)
        };
        if let Some(at) = cut.filter(|&at| at - unit.start >= unit_bytes && unit.rows > 0) {
            let next = WarcUnit {
                start: at,
                end: u64::MAX,
                first_record: records.records - 1,
                first_row: rows,
                rows: 0,
            };
            unit.end = at;
            units.push(std::mem::replace(&mut unit, next));
        }
        if document.is_some() {
            rows += 1;
            unit.rows += 1;
        }
    }
    // Records after the last document join the unit before them.
    match units.last_mut() {
        Some(last) if unit.rows == 0 => last.end = u64::MAX,
        _ => units.push(unit),
    }
    Ok(units)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn whole_file() -> WarcUnit {
        WarcUnit {
            start: 0,
            end: u64::MAX,
            first_record: 0,
            first_row: 0,
            rows: 0,
        }
    }

    /// A WARC record with `headers` and `content`, as WET files frame them.
    fn record(headers: &[(&str, &str)], content: &str) -> String {
        let mut s = String::from("WARC/1.0\r\n");
        for (name, value) in headers {
            s.push_str(&format!("{name}: {value}\r\n"));
        }
        s.push_str(&format!(
            "Content-Length: {}\r\n\r\n{content}\r\n\r\n",
            content.len()
        ));
        s
    }

    fn read(text: &str) -> Result<Vec<WarcDocument>> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.warc");
        std::fs::write(&path, text).unwrap();
        WarcRecords::open(&path, &whole_file())?.collect()
    }

    #[test]
    fn conversion_records_are_documents_and_others_are_skipped() {
        let text = record(
            &[("WARC-Type", "warcinfo"), ("WARC-Record-ID", "<i>")],
            "a: b\r\n",
        ) + &record(
            &[
                ("WARC-Type", "conversion"),
                ("WARC-Target-URI", "https://x.example/"),
                ("WARC-Date", "2024-01-02T03:04:05Z"),
                ("WARC-Record-ID", "<urn:uuid:1>"),
                ("WARC-Identified-Content-Language", "eng"),
            ],
            // Content may hold blank lines and what looks like a record start.
            "Line one.\n\nWARC/1.0\nlast",
        ) + &record(&[("WARC-Type", "metadata"), ("WARC-Record-ID", "<m>")], "x")
            + &record(
                &[
                    ("warc-type", "conversion"),
                    ("WARC-Record-ID", "<urn:uuid:2>"),
                ],
                "",
            );
        let records = read(&text).unwrap();
        assert_eq!(
            records,
            vec![
                WarcDocument {
                    id: "<urn:uuid:1>".into(),
                    text: "Line one.\n\nWARC/1.0\nlast".into(),
                    url: Some("https://x.example/".into()),
                    date: Some("2024-01-02T03:04:05Z".into()),
                    content_language: Some("eng".into()),
                },
                WarcDocument {
                    id: "<urn:uuid:2>".into(),
                    text: String::new(),
                    url: None,
                    date: None,
                    content_language: None,
                },
            ]
        );
    }

    /// A response record of `payload` behind the HTTP `http_headers`, with `warc_headers`.
    fn response(warc_headers: &[(&str, &str)], http_headers: &str, payload: &[u8]) -> Vec<u8> {
        let mut block = format!("HTTP/1.1 200 OK\r\n{http_headers}\r\n").into_bytes();
        block.extend_from_slice(payload);
        let mut s = b"WARC/1.0\r\nWARC-Type: response\r\n".to_vec();
        for (name, value) in warc_headers {
            s.extend_from_slice(format!("{name}: {value}\r\n").as_bytes());
        }
        s.extend_from_slice(
            format!(
                "Content-Type: application/http; msgtype=response\r\nContent-Length: {}\r\n\r\n",
                block.len()
            )
            .as_bytes(),
        );
        s.extend_from_slice(&block);
        s.extend_from_slice(b"\r\n\r\n");
        s
    }

    fn read_bytes(bytes: &[u8]) -> Vec<WarcDocument> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.warc");
        std::fs::write(&path, bytes).unwrap();
        WarcRecords::open(&path, &whole_file())
            .unwrap()
            .map(Result::unwrap)
            .collect()
    }

    #[test]
    fn html_responses_are_documents_with_their_http_framing_undone() {
        let page = "<html><body><p>Caf\u{e9} cr\u{e8}me</p></body></html>";
        let gzipped = {
            let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            std::io::Write::write_all(&mut e, page.as_bytes()).unwrap();
            e.finish().unwrap()
        };
        let mut chunked = b"10\r\n".to_vec();
        chunked.extend_from_slice(&page.as_bytes()[..16]);
        chunked.extend_from_slice(format!("\r\n{:x}\r\n", page.len() - 16).as_bytes());
        chunked.extend_from_slice(&page.as_bytes()[16..]);
        chunked.extend_from_slice(b"\r\n0\r\n\r\n");
        // The same page in windows-1252 (its accents are single bytes, not UTF-8).
        let latin: Vec<u8> = page.chars().map(|c| c as u32 as u8).collect();
        let html = ("WARC-Identified-Payload-Type", "text/html");
        let mut archive = Vec::new();
        for (id, warc_extra, http, payload) in [
            (
                "<1>",
                Some(html),
                "Content-Type: text/html\r\n",
                page.as_bytes().to_vec(),
            ),
            ("<2>", Some(html), "Content-Encoding: gzip\r\n", gzipped),
            (
                "<3>",
                None,
                "Transfer-Encoding: chunked\r\nContent-Type: text/html; charset=utf-8\r\n",
                chunked,
            ),
            ("<4>", None, "", latin),
            // Not HTML by its payload type, its HTTP type, or its first bytes.
            (
                "<5>",
                Some(("WARC-Identified-Payload-Type", "image/png")),
                "",
                b"<html>".to_vec(),
            ),
            (
                "<6>",
                None,
                "Content-Type: application/pdf\r\n",
                b"<html>".to_vec(),
            ),
            ("<7>", None, "", b"%PDF-1.7 no markup".to_vec()),
        ] {
            let mut headers = vec![
                ("WARC-Record-ID", id),
                ("WARC-Target-URI", "https://a.example/p"),
            ];
            headers.extend(warc_extra);
            archive.extend(response(&headers, http, &payload));
        }
        // A request record is skipped.
        archive.extend(
            record(
                &[("WARC-Type", "request"), ("WARC-Record-ID", "<r>")],
                "GET / HTTP/1.1\r\n",
            )
            .into_bytes(),
        );
        let documents = read_bytes(&archive);
        let ids: Vec<&str> = documents.iter().map(|d| d.id.as_str()).collect();
        assert_eq!(ids, ["<1>", "<2>", "<3>", "<4>"]);
        for d in &documents {
            assert_eq!(d.text, page, "{}", d.id);
            assert_eq!(d.url.as_deref(), Some("https://a.example/p"));
            assert_eq!(d.content_language, None);
        }
    }

    #[test]
    fn payloads_are_sniffed_as_libmagic_does_and_bad_encodings_kept_as_sent() {
        assert!(sniffs_as_html(b"  \n<!DOCTYPE HTML PUBLIC>"));
        assert!(sniffs_as_html(b"<?xml version='1.0'?>\n<HTML lang=en>"));
        assert!(sniffs_as_html(b"junk before <Title>x</title>"));
        assert!(!sniffs_as_html(b"{\"json\": \"<b>bold</b>\"}"));
        // A gzip header claimed on a plain body: the body is kept as sent.
        assert_eq!(
            http_payload(b"HTTP/1.0 200 OK\nContent-Encoding: gzip\n\n<p>plain</p>"),
            Some((b"<p>plain</p>".to_vec(), None))
        );
        assert_eq!(dechunk(b"3\r\nabc\r\n0\r\n\r\n"), Some(b"abc".to_vec()));
        assert_eq!(dechunk(b"9\r\nabc"), None);
        // Not UTF-8: decoded in the charset the detector guesses.
        assert_eq!(
            decode_text(b"Le caf\xe9 est cr\xe8me et na\xefve, d\xe9j\xe0 vu.".to_vec()),
            Some("Le caf\u{e9} est cr\u{e8}me et na\u{ef}ve, d\u{e9}j\u{e0} vu.".into())
        );
        assert_eq!(decode_text("ok \u{e9}".into()), Some("ok \u{e9}".into()));
    }

    fn gzip(bytes: &[u8]) -> Vec<u8> {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        std::io::Write::write_all(&mut e, bytes).unwrap();
        e.finish().unwrap()
    }

    /// Every unit of `path` read on its own, in order.
    fn read_units(path: &Path, units: &[WarcUnit]) -> Vec<WarcDocument> {
        let mut all = Vec::new();
        for unit in units {
            let docs: Vec<WarcDocument> = WarcRecords::open(path, unit)
                .unwrap()
                .map(Result::unwrap)
                .collect();
            assert_eq!(docs.len() as u64, unit.rows, "{unit:?}");
            assert_eq!(unit.first_row, all.len() as u64, "{unit:?}");
            all.extend(docs);
        }
        all
    }

    #[test]
    fn archives_are_cut_into_units_at_record_starts_that_start_a_gzip_member() {
        let dir = tempfile::tempdir().unwrap();
        // 30 conversion records, with a warcinfo record first and a metadata record after
        // every fifth, as text, one gzip member per record, and one member for all.
        let mut records = vec![record(
            &[("WARC-Type", "warcinfo"), ("WARC-Record-ID", "<i>")],
            "x",
        )];
        for i in 0..30 {
            let id = format!("<urn:{i}>");
            let text = format!("document {i} ").repeat(40);
            records.push(record(
                &[("WARC-Type", "conversion"), ("WARC-Record-ID", &id)],
                &text,
            ));
            if i % 5 == 4 {
                records.push(record(
                    &[("WARC-Type", "metadata"), ("WARC-Record-ID", "<m>")],
                    "y",
                ));
            }
        }
        let plain = records.concat();
        let members: Vec<u8> = records.iter().flat_map(|r| gzip(r.as_bytes())).collect();
        let expected = read_bytes(plain.as_bytes());
        assert_eq!(expected.len(), 30);
        for (name, bytes, unit_bytes, many) in [
            ("a.warc", plain.as_bytes().to_vec(), 2_000, true),
            ("b.warc.gz", members, 400, true),
            ("c.warc.gz", gzip(plain.as_bytes()), 400, false),
        ] {
            let path = dir.path().join(name);
            std::fs::write(&path, &bytes).unwrap();
            let units = index_file(&path, unit_bytes).unwrap();
            assert_eq!(units.len() > 3, many, "{name}: {units:?}");
            assert_eq!(units.last().unwrap().end, u64::MAX);
            for pair in units.windows(2) {
                assert_eq!(pair[0].end, pair[1].start, "{name}");
                assert!(pair[0].end - pair[0].start >= unit_bytes, "{name}");
            }
            assert_eq!(read_units(&path, &units), expected, "{name}");
            assert_eq!(units.iter().map(|u| u.rows).sum::<u64>(), 30);
        }
        // A unit's messages number records as the whole file does: cut the file's last
        // record short and read the last unit alone.
        let path = dir.path().join("b.warc.gz");
        let units = index_file(&path, 400).unwrap();
        let last = units.last().unwrap().clone();
        let mut bytes = std::fs::read(&path).unwrap();
        let tail = gzip(b"WARC/1.0\r\nWARC-Type: conversion\r\nContent-Length: 99\r\n\r\nshort");
        bytes.extend(tail);
        std::fs::write(&path, &bytes).unwrap();
        let e = WarcRecords::open(&path, &last)
            .unwrap()
            .find_map(Result::err)
            .unwrap()
            .to_string();
        assert!(
            e.contains(&format!("WARC record {}", records.len() + 1)),
            "{e}"
        );
    }

    #[test]
    fn bad_records_are_errors_naming_the_record() {
        let conversion = [("WARC-Type", "conversion"), ("WARC-Record-ID", "<a>")];
        let good = record(&conversion, "fine");
        for (text, expected) in [
            (
                good.clone() + "HTTP/1.1 200 OK\r\n\r\n",
                "record 2: expected a `WARC/` version line",
            ),
            (
                good.clone() + "WARC/1.0\r\nWARC-Type: conversion\r\n\r\n",
                "record 2: no valid Content-Length",
            ),
            (
                good.clone() + "WARC/1.0\r\nContent-Length: 50\r\n\r\nshort",
                "record 2: the file ends inside the record's content",
            ),
            (
                good.clone() + "WARC/1.0\r\nWARC-Type: conversion\r\n",
                "record 2: the file ends inside the record's headers",
            ),
            (
                record(&[("WARC-Type", "conversion")], "x"),
                "record 1: no WARC-Record-ID",
            ),
        ] {
            let e = read(&text).unwrap_err().to_string();
            assert!(
                e.contains("t.warc") && e.contains(expected),
                "{expected}: {e}"
            );
        }
    }
}
