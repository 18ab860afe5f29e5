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
//! `html_extract` stage. A file is one work unit (a gzip stream is read from its start); its
//! documents are counted when the corpus is opened.

use crate::error::{Result, StorageError};
use crate::source::open_bytes;
use arrow::array::{ArrayRef, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::sync::Arc;

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
    /// The number of the record being read (1-based, all types), for messages.
    records: u64,
}

impl WarcRecords {
    /// Opens `path` (gzip when its name ends in `.gz`, local or in object storage).
    pub fn open(path: &Path) -> Result<Self> {
        let file = open_bytes(path, 0, None)?;
        let stream: Box<dyn BufRead + Send> = if path.to_string_lossy().ends_with(".gz") {
            Box::new(BufReader::with_capacity(
                1 << 20,
                flate2::read::MultiGzDecoder::new(BufReader::with_capacity(1 << 16, file)),
            ))
        } else {
            Box::new(BufReader::with_capacity(1 << 20, file))
        };
        Ok(WarcRecords {
            stream,
            path: path.to_path_buf(),
            records: 0,
        })
    }

    fn bad(&self, message: impl std::fmt::Display) -> StorageError {
        StorageError::Corrupt {
            path: self.path.clone(),
            message: format!("WARC record {}: {message}", self.records),
        }
    }

    /// The next record's headers (name in lower case, value), or `None` at the end of the
    /// file.
    fn headers(&mut self) -> Result<Option<Vec<(String, String)>>> {
        let mut line = String::new();
        // Blank lines between records.
        loop {
            line.clear();
            let n = self.stream.read_line(&mut line).map_err(|e| self.bad(e))?;
            if n == 0 {
                return Ok(None);
            }
            if !line.trim().is_empty() {
                break;
            }
        }
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
            let header = line.trim_end_matches(['\r', '\n']);
            if n == 0 {
                return Err(self.bad("the file ends inside the record's headers"));
            }
            if header.is_empty() {
                return Ok(Some(headers));
            }
            headers.extend(header_line(header));
        }
    }
}

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
fn split_http(block: &[u8]) -> Option<(Vec<(String, String)>, &[u8])> {
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
        if !is_html_type(t) && !(conversion && t == "text/plain") {
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
            self.records += 1;
            let headers = match self.headers() {
                Ok(Some(h)) => h,
                Ok(None) => return None,
                Err(e) => return Some(Err(e)),
            };
            let length = match header(&headers, "content-length").map(str::parse::<u64>) {
                Some(Ok(n)) => n,
                _ => return Some(Err(self.bad("no valid Content-Length header"))),
            };
            let mut block = Vec::new();
            match (&mut self.stream).take(length).read_to_end(&mut block) {
                Ok(n) if n as u64 == length => {}
                Ok(_) => return Some(Err(self.bad("the file ends inside the record's content"))),
                Err(e) => return Some(Err(self.bad(e))),
            }
            let warc_type = header(&headers, "warc-type").unwrap_or_default();
            let Some(text) = document_text(warc_type, &headers, block) else {
                continue;
            };
            let Some(id) = header(&headers, "warc-record-id") else {
                return Some(Err(self.bad("no WARC-Record-ID header")));
            };
            let owned = |name: &str| header(&headers, name).map(String::from);
            return Some(Ok(WarcDocument {
                id: id.to_string(),
                text,
                url: owned("warc-target-uri"),
                date: owned("warc-date"),
                content_language: owned("warc-identified-content-language"),
            }));
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
    /// Opens `path` for reading from its first record.
    pub fn open(path: &Path, max_rows: usize) -> Result<Self> {
        Ok(WarcBatches {
            records: WarcRecords::open(path)?,
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

/// The number of documents in a web archive (read once, start to end).
pub fn count_documents(path: &Path) -> Result<u64> {
    let mut documents = 0;
    for record in WarcRecords::open(path)? {
        record?;
        documents += 1;
    }
    Ok(documents)
}

#[cfg(test)]
mod tests {
    use super::*;

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
        WarcRecords::open(&path)?.collect()
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
        WarcRecords::open(&path)
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
