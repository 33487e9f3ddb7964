//! The one reader of CSV, JSONL and Parquet files: every input (pairs, interactions,
//! predictions, the annotations) goes through [`Records`], so that they agree on line numbers
//! (exact through CRLF and quoted newlines; Parquet rows from 1), byte-order marks, empty
//! files, required columns, quotes left open, and errors that name the file, line and column
//! without quoting post text.

use super::error::{describe_headers, DataError};
use super::lines::{LineTracker, TrackingReader};
use super::pairs::InputFormat;
use super::parquet::ParquetRows;
use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};

const BOM: &[u8] = b"\xef\xbb\xbf";

/// One record and the line it starts on.
pub struct Record {
    pub line: u64,
    pub body: Body,
}

pub enum Body {
    Csv(csv::ByteRecord),
    /// One JSONL line, without its line ending or byte-order mark; never blank.
    Json(String),
}

enum Source {
    Csv {
        records: csv::ByteRecordsIntoIter<TrackingReader<BufReader<File>>>,
        headers: Vec<String>,
        lines: LineTracker,
    },
    Jsonl {
        reader: BufReader<File>,
        buf: Vec<u8>,
        line: u64,
        read: u64,
    },
    /// Rows come as CSV records would, with the column names as the header.
    Parquet(ParquetRows),
}

/// Records of a CSV (with a header row), JSONL or Parquet file, by extension (`.jsonl`,
/// `.json`, `.ndjson`: JSON lines; `.parquet`, `.pq`: Parquet; anything else CSV).
pub struct Records {
    path: PathBuf,
    source: Source,
    size: u64,
    /// The end was reached: an unclosed quote is reported once.
    ended: bool,
}

impl Records {
    /// Opens `path`; `expected` says what its records hold, for the message on an empty file.
    pub fn open(path: &Path, expected: &str) -> Result<Self, DataError> {
        let io = |source| DataError::Io {
            path: path.to_path_buf(),
            source,
        };
        let file = File::open(path).map_err(io)?;
        let size = file.metadata().map_err(io)?.len();
        let format = InputFormat::from_path(path);
        if size == 0 {
            return Err(DataError::Empty {
                path: path.to_path_buf(),
                expected: format.expected(expected),
            });
        }
        let source = match format {
            InputFormat::Parquet => Source::Parquet(ParquetRows::open(path, file)?),
            InputFormat::Jsonl => Source::Jsonl {
                reader: BufReader::new(file),
                buf: Vec::new(),
                line: 0,
                read: 0,
            },
            InputFormat::Csv => {
                let lines = LineTracker::default();
                // The csv crate drops a byte-order mark before the header itself.
                let mut reader = csv::ReaderBuilder::new()
                    .has_headers(true)
                    .from_reader(lines.reader(BufReader::new(file)));
                let headers = reader
                    .byte_headers()
                    .map_err(|e| from_csv(path, &[], &lines, e))?
                    .iter()
                    .map(|h| String::from_utf8_lossy(h).trim().to_owned())
                    .collect();
                Source::Csv {
                    records: reader.into_byte_records(),
                    headers,
                    lines,
                }
            }
        };
        Ok(Self {
            path: path.to_path_buf(),
            source,
            size,
            ended: false,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The CSV header names, trimmed; `None` for JSONL.
    pub fn headers(&self) -> Option<&[String]> {
        match &self.source {
            Source::Csv { headers, .. } => Some(headers),
            Source::Parquet(rows) => Some(rows.headers()),
            Source::Jsonl { .. } => None,
        }
    }

    /// The position of a CSV or Parquet column, if the header has it. A Parquet column of a
    /// type without a text form (a list, a struct) is not one: [`Records::require_column`]
    /// says why.
    pub fn column(&self, name: &str) -> Option<usize> {
        let index = self.headers()?.iter().position(|h| h == name)?;
        match &self.source {
            Source::Parquet(rows) if rows.unsupported(index).is_some() => None,
            _ => Some(index),
        }
    }

    /// The position of a column the file must have, or an error listing the columns it has
    /// (`describe` is how messages name it).
    pub fn require_column(&self, name: &str, describe: &str) -> Result<usize, DataError> {
        let index = self
            .headers()
            .and_then(|h| h.iter().position(|h| h == name));
        if let (Source::Parquet(rows), Some(i)) = (&self.source, index) {
            if let Some(found) = rows.unsupported(i) {
                return Err(DataError::Inconsistent {
                    path: self.path.clone(),
                    message: format!(
                        "column '{name}' is of type {found}; it must hold text or numbers"
                    ),
                });
            }
        }
        index.ok_or_else(|| DataError::MissingColumn {
            path: self.path.clone(),
            column: describe.to_owned(),
            found: describe_headers(self.headers().unwrap_or_default()),
        })
    }

    /// Bytes read so far, and the file's size.
    pub fn progress(&self) -> (u64, u64) {
        let read = match &self.source {
            Source::Csv { lines, .. } => lines.bytes_read(),
            Source::Jsonl { read, .. } => *read,
            // Row groups are compressed: the share of rows read stands for the bytes.
            Source::Parquet(rows) => match rows.progress() {
                (_, 0) => self.size,
                (read, total) => (read as f64 / total as f64 * self.size as f64) as u64,
            },
        };
        (read.min(self.size), self.size)
    }

    /// Decodes a CSV record's fields, naming the line and field that is not UTF-8.
    pub fn utf8_fields(
        &self,
        line: u64,
        record: &csv::ByteRecord,
    ) -> Result<Vec<String>, DataError> {
        utf8_record(&self.path, self.headers().unwrap_or_default(), line, record)
    }

    /// An error about the record on `line`.
    pub fn record_error(&self, line: u64, message: impl Into<String>) -> DataError {
        DataError::Record {
            path: self.path.clone(),
            line,
            message: message.into(),
        }
    }

    /// The next record. After an error the caller may go on (to skip bad rows) or stop.
    #[allow(clippy::should_implement_trait)] // `next` after an error goes on: not an Iterator
    pub fn next(&mut self) -> Option<Result<Record, DataError>> {
        let path = &self.path;
        match &mut self.source {
            Source::Parquet(rows) => rows.next_row().map(|row| {
                row.map(|(line, record)| Record {
                    line,
                    body: Body::Csv(record.into_byte_record()),
                })
            }),
            Source::Csv {
                records,
                headers,
                lines,
            } => match records.next() {
                Some(Ok(r)) => {
                    let line = r.position().map_or(0, |p| lines.line_of(p.byte()));
                    Some(Ok(Record {
                        line,
                        body: Body::Csv(r),
                    }))
                }
                Some(Err(e)) => Some(Err(from_csv(path, headers, lines, e))),
                None if std::mem::replace(&mut self.ended, true) => None,
                None => lines.open_quote().map(|line| {
                    Err(DataError::UnclosedQuote {
                        path: path.clone(),
                        line,
                    })
                }),
            },
            Source::Jsonl {
                reader,
                buf,
                line,
                read,
            } => loop {
                buf.clear();
                let n = match reader.read_until(b'\n', buf) {
                    Ok(0) => return None,
                    Ok(n) => n,
                    Err(source) => {
                        return Some(Err(DataError::Io {
                            path: path.clone(),
                            source,
                        }))
                    }
                };
                *read += n as u64;
                *line += 1;
                // A byte-order mark (Windows tools write one) is not part of the first record.
                let mut bytes = match (*line, buf.strip_prefix(BOM)) {
                    (1, Some(rest)) => rest,
                    _ => &buf[..],
                };
                while let [rest @ .., b'\n' | b'\r'] = bytes {
                    bytes = rest;
                }
                let Ok(text) = std::str::from_utf8(bytes) else {
                    return Some(Err(DataError::Record {
                        path: path.clone(),
                        line: *line,
                        message: "invalid UTF-8; save the file as UTF-8".into(),
                    }));
                };
                if text.trim().is_empty() {
                    continue;
                }
                return Some(Ok(Record {
                    line: *line,
                    body: Body::Json(text.to_owned()),
                }));
            },
        }
    }
}

/// Turns a csv error into one that names the file, the line and, where known, the field.
pub(crate) fn from_csv(
    path: &Path,
    headers: &[String],
    lines: &LineTracker,
    err: csv::Error,
) -> DataError {
    let path = path.to_path_buf();
    let at = |pos: Option<&csv::Position>| pos.map(|p| lines.line_of(p.byte())).unwrap_or(0);
    let line = at(err.position());
    match err.into_kind() {
        csv::ErrorKind::Io(source) => DataError::Io { path, source },
        csv::ErrorKind::Utf8 { pos, err } => DataError::Field {
            path,
            line: pos.as_ref().map_or(line, |p| at(Some(p))),
            field: headers
                .get(err.field())
                .cloned()
                .unwrap_or_else(|| format!("#{}", err.field() + 1)),
            message: "invalid UTF-8; save the file as UTF-8".into(),
        },
        csv::ErrorKind::UnequalLengths {
            pos,
            expected_len,
            len,
        } => DataError::Record {
            path,
            line: pos.as_ref().map_or(line, |p| at(Some(p))),
            message: format!(
                "expected {expected_len} fields, found {len} (an unclosed or stray quote, or a missing separator?)"
            ),
        },
        other => DataError::Record {
            path,
            line,
            message: format!("malformed CSV: {other:?}"),
        },
    }
}

/// Decodes a CSV record field by field, naming the line and field that is not UTF-8.
fn utf8_record(
    path: &Path,
    headers: &[String],
    line: u64,
    record: &csv::ByteRecord,
) -> Result<Vec<String>, DataError> {
    record
        .iter()
        .enumerate()
        .map(|(i, field)| {
            String::from_utf8(field.to_vec()).map_err(|_| DataError::Field {
                path: path.to_path_buf(),
                line,
                field: headers
                    .get(i)
                    .cloned()
                    .unwrap_or_else(|| format!("#{}", i + 1)),
                message: "invalid UTF-8; save the file as UTF-8".into(),
            })
        })
        .collect()
}
