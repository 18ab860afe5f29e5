//! Common Crawl WET files (`*.warc.wet.gz`): WARC records whose `conversion` records hold the
//! plain text Common Crawl extracted from each page. Each such record is a document with the
//! columns `id` (WARC-Record-ID), `text`, `url` (WARC-Target-URI), `date` (WARC-Date) and
//! `content_language` (WARC-Identified-Content-Language, null when absent); `warcinfo` and any
//! other record types are skipped. A file is one work unit (a gzip stream is read from its
//! start); its documents are counted when the corpus is opened. WARC files of HTML
//! (`response` records) need text extraction first and are not read.

use crate::error::{Result, StorageError};
use crate::source::open_bytes;
use arrow::array::{ArrayRef, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Whether `path` names a WET file (`.wet`, `.wet.gz`, as in `*.warc.wet.gz`).
pub fn is_wet(path: &Path) -> bool {
    path.file_name()
        .and_then(|n| n.to_str())
        .is_some_and(|n| n.ends_with(".wet") || n.ends_with(".wet.gz"))
}

/// The columns of a WET document.
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

/// One WET document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WetRecord {
    /// WARC-Record-ID.
    pub id: String,
    /// The extracted text.
    pub text: String,
    /// WARC-Target-URI.
    pub url: Option<String>,
    /// WARC-Date.
    pub date: Option<String>,
    /// WARC-Identified-Content-Language.
    pub content_language: Option<String>,
}

/// The documents of a WET file, in order.
pub struct WetRecords {
    stream: Box<dyn BufRead + Send>,
    path: PathBuf,
    /// The number of the record being read (1-based, all types), for messages.
    records: u64,
}

impl WetRecords {
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
        Ok(WetRecords {
            stream,
            path: path.to_path_buf(),
            records: 0,
        })
    }

    fn bad(&self, message: impl std::fmt::Display) -> StorageError {
        StorageError::Corrupt {
            path: self.path.clone(),
            message: format!("WET record {}: {message}", self.records),
        }
    }

    /// The next record's headers (name, value), or `None` at the end of the file.
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
            if let Some((name, value)) = header.split_once(':') {
                headers.push((name.trim().to_ascii_lowercase(), value.trim().to_string()));
            }
        }
    }
}

impl Iterator for WetRecords {
    type Item = Result<WetRecord>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            self.records += 1;
            let headers = match self.headers() {
                Ok(Some(h)) => h,
                Ok(None) => return None,
                Err(e) => return Some(Err(e)),
            };
            let get = |name: &str| {
                headers
                    .iter()
                    .find(|(n, _)| n == name)
                    .map(|(_, v)| v.clone())
            };
            let length = match get("content-length").map(|v| v.parse::<u64>()) {
                Some(Ok(n)) => n,
                _ => return Some(Err(self.bad("no valid Content-Length header"))),
            };
            let mut content = Vec::new();
            match (&mut self.stream).take(length).read_to_end(&mut content) {
                Ok(n) if n as u64 == length => {}
                Ok(_) => return Some(Err(self.bad("the file ends inside the record's content"))),
                Err(e) => return Some(Err(self.bad(e))),
            }
            if get("warc-type").as_deref() != Some("conversion") {
                continue;
            }
            let text = match String::from_utf8(content) {
                Ok(t) => t,
                Err(e) => {
                    let at = e.utf8_error().valid_up_to();
                    return Some(Err(
                        self.bad(format!("the text is not valid UTF-8 (byte {at})"))
                    ));
                }
            };
            let Some(id) = get("warc-record-id") else {
                return Some(Err(self.bad("no WARC-Record-ID header")));
            };
            return Some(Ok(WetRecord {
                id,
                text,
                url: get("warc-target-uri"),
                date: get("warc-date"),
                content_language: get("warc-identified-content-language"),
            }));
        }
    }
}

/// The documents of a WET file in record batches of at most `max_rows` rows ([`schema`]).
pub struct WetBatches {
    records: WetRecords,
    max_rows: usize,
    schema: SchemaRef,
}

impl WetBatches {
    /// Opens `path` for reading from its first record.
    pub fn open(path: &Path, max_rows: usize) -> Result<Self> {
        Ok(WetBatches {
            records: WetRecords::open(path)?,
            max_rows: max_rows.max(1),
            schema: schema(),
        })
    }
}

impl Iterator for WetBatches {
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

/// The number of documents in a WET file (read once, start to end).
pub fn count_documents(path: &Path) -> Result<u64> {
    let mut documents = 0;
    for record in WetRecords::open(path)? {
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

    fn read(text: &str) -> Result<Vec<WetRecord>> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.wet");
        std::fs::write(&path, text).unwrap();
        WetRecords::open(&path)?.collect()
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
                WetRecord {
                    id: "<urn:uuid:1>".into(),
                    text: "Line one.\n\nWARC/1.0\nlast".into(),
                    url: Some("https://x.example/".into()),
                    date: Some("2024-01-02T03:04:05Z".into()),
                    content_language: Some("eng".into()),
                },
                WetRecord {
                    id: "<urn:uuid:2>".into(),
                    text: String::new(),
                    url: None,
                    date: None,
                    content_language: None,
                },
            ]
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
                e.contains("t.wet") && e.contains(expected),
                "{expected}: {e}"
            );
        }
    }
}
