//! `epitome merge`: joins the outputs of `predict --shard K/N` into one output in input order,
//! checking them against the input: every input id exactly once, nothing else.
//!
//! Each shard's output is in input order, so the merge walks the input once and takes each
//! row from the shard whose next row has that id: memory holds one row per shard and the set
//! of ids seen (to tell a doubled id from a missing one).

use super::working::{Leftover, RunIdentity, WorkingFile, WorkingFileError};
use super::OutputFormat;
use crate::data::{DataError, PairReader};
use crate::progress::{Progress, Unit};
use crate::Error;
use std::collections::HashSet;
use std::io::{BufRead, BufReader};

use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum MergeError {
    #[error("id {id} of {} is in none of the shard outputs (a shard is missing or incomplete)", input.display())]
    Missing { input: PathBuf, id: String },
    #[error("id {id} is in the shard outputs twice (second time in {}, line {line})", part.display())]
    Doubled {
        id: String,
        part: PathBuf,
        line: u64,
    },
    #[error("{}, line {line}: id {id} is not in {}, or not in its order (an output of another input?)", part.display(), input.display())]
    Unknown {
        id: String,
        part: PathBuf,
        line: u64,
        input: PathBuf,
    },
    #[error("{}: {} output, but --output {} is {}; give shard outputs and --output in one format", part.display(), name(*found), output.display(), name(*wanted))]
    Format {
        part: PathBuf,
        found: OutputFormat,
        output: PathBuf,
        wanted: OutputFormat,
    },
    #[error("{}, line {line}: {message}", part.display())]
    BadRow {
        part: PathBuf,
        line: u64,
        message: String,
    },
    #[error("{}: its columns differ from {}'s", part.display(), first.display())]
    Header { part: PathBuf, first: PathBuf },
    #[error("{}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Output(#[from] WorkingFileError),
}

fn name(f: OutputFormat) -> &'static str {
    match f {
        OutputFormat::Csv => "a CSV",
        OutputFormat::Jsonl => "a JSON lines",
        OutputFormat::Parquet => "a Parquet",
    }
}

/// One shard output, read a row at a time: the row's id and its bytes as written.
struct Part {
    path: PathBuf,
    rows: Rows,
    line: u64,
    head: Option<(String, Vec<u8>)>,
}

enum Rows {
    Jsonl(std::io::Lines<BufReader<std::fs::File>>),
    /// A CSV record may span lines (a rationale with a line break is quoted).
    Csv(csv::Reader<std::fs::File>),
    /// Rows come back as JSON lines, the form a Parquet output is staged in.
    Parquet(super::PredictionRows),
}

impl Part {
    /// Opens a shard output; a CSV's header row comes back as written, a Parquet file's
    /// mechanisms as their codes.
    fn open(path: &Path, format: OutputFormat) -> Result<(Self, Option<Vec<u8>>), MergeError> {
        let read = |source| MergeError::Read {
            path: path.to_path_buf(),
            source,
        };
        let open = || std::fs::File::open(path).map_err(read);
        let (rows, header) = match format {
            OutputFormat::Jsonl => (Rows::Jsonl(BufReader::new(open()?).lines()), None),
            OutputFormat::Csv => {
                let mut r = csv::ReaderBuilder::new()
                    .has_headers(true)
                    .from_reader(open()?);
                let header = r.byte_headers().map_err(|e| MergeError::BadRow {
                    part: path.to_path_buf(),
                    line: 1,
                    message: e.to_string(),
                })?;
                let header = csv_bytes(header).map_err(read)?;
                (Rows::Csv(r), Some(header))
            }
            OutputFormat::Parquet => {
                let rows = super::PredictionRows::open(path).map_err(read)?;
                let codes: Vec<&str> = rows.mechanisms().iter().map(|m| m.code()).collect();
                let header = codes.join(",").into_bytes();
                (Rows::Parquet(rows), Some(header))
            }
        };
        let mut part = Self {
            path: path.to_path_buf(),
            rows,
            line: 0,
            head: None,
        };
        part.advance()?;
        Ok((part, header))
    }

    fn advance(&mut self) -> Result<(), MergeError> {
        let bad = |line: u64, message: String| MergeError::BadRow {
            part: self.path.clone(),
            line,
            message,
        };
        self.head = match &mut self.rows {
            Rows::Jsonl(lines) => loop {
                let Some(line) = lines.next() else {
                    break None;
                };
                self.line += 1;
                let line = line.map_err(|source| MergeError::Read {
                    path: self.path.clone(),
                    source,
                })?;
                if line.trim().is_empty() {
                    continue;
                }
                let v: serde_json::Value = serde_json::from_str(&line)
                    .map_err(|e| bad(self.line, format!("not JSON: {e}")))?;
                let id = match v.get("id") {
                    Some(serde_json::Value::String(s)) => s.clone(),
                    Some(other) if !other.is_null() => other.to_string(),
                    _ => return Err(bad(self.line, "no id".into())),
                };
                let mut bytes = line.into_bytes();
                bytes.push(b'\n');
                break Some((id, bytes));
            },
            Rows::Parquet(rows) => match rows.next() {
                None => None,
                Some(row) => {
                    self.line += 1;
                    let p = row.map_err(|e| bad(self.line, e.to_string()))?;
                    let mut bytes = p.to_json().to_string().into_bytes();
                    bytes.push(b'\n');
                    Some((p.id, bytes))
                }
            },
            Rows::Csv(reader) => {
                let mut record = csv::ByteRecord::new();
                let more = reader.read_byte_record(&mut record).map_err(|e| {
                    let line = e.position().map_or(0, |p| p.line());
                    bad(line, e.to_string())
                })?;
                self.line = record.position().map_or(self.line + 1, |p| p.line());
                if more {
                    let id =
                        String::from_utf8_lossy(record.get(0).unwrap_or_default()).into_owned();
                    let bytes = csv_bytes(&record).map_err(|source| MergeError::Read {
                        path: self.path.clone(),
                        source,
                    })?;
                    Some((id, bytes))
                } else {
                    None
                }
            }
        };
        Ok(())
    }
}

/// A record as predict writes it (same quoting), with its line ending.
fn csv_bytes(record: &csv::ByteRecord) -> std::io::Result<Vec<u8>> {
    let mut w = csv::WriterBuilder::new().from_writer(Vec::new());
    w.write_byte_record(record)?;
    w.into_inner().map_err(|e| e.into_error())
}

/// Merges `parts` (outputs of `predict --shard`) into `output`, in the order of `input`.
/// Returns the rows written.
pub fn merge(
    input: &Path,
    parts: &[PathBuf],
    output: &Path,
    progress: &dyn Progress,
) -> Result<u64, Error> {
    let format = OutputFormat::from_path(Some(output));
    let mut readers = Vec::with_capacity(parts.len());
    let mut header: Option<Vec<u8>> = None;
    for part in parts {
        let found = OutputFormat::from_path(Some(part));
        if found != format {
            return Err(MergeError::Format {
                part: part.clone(),
                found,
                output: output.to_path_buf(),
                wanted: format,
            }
            .into());
        }
        let (reader, h) = Part::open(part, format)?;
        match (&header, h) {
            (None, h) => header = h,
            (Some(first), Some(h)) if *first != h => {
                return Err(MergeError::Header {
                    part: part.clone(),
                    first: parts[0].clone(),
                }
                .into())
            }
            _ => {}
        }
        readers.push(reader);
    }
    let identity = RunIdentity {
        model: String::new(),
        input: super::input_identity(input)?,
        options: "merge".into(),
    };
    let mut out =
        WorkingFile::open(output, identity, Leftover::Replace).map_err(MergeError::from)?;
    let mechanisms = match &readers.first().map(|r| &r.rows) {
        Some(Rows::Parquet(rows)) => rows.mechanisms().to_vec(),
        _ => Vec::new(),
    };
    let mut buf: Vec<u8> = match format {
        OutputFormat::Csv => header.clone().unwrap_or_default(),
        OutputFormat::Jsonl | OutputFormat::Parquet => Vec::new(),
    };
    let mut seen: HashSet<String> = HashSet::new();
    let mut written = 0u64;
    progress.begin("merging", None, Unit::Pairs);
    let pairs = PairReader::open(input)?;
    let result = (|| {
        for pair in pairs {
            let id = pair.map_err(|e: DataError| Error::from(e))?.id;
            let Some(k) = readers
                .iter()
                .position(|r| r.head.as_ref().is_some_and(|(h, _)| *h == id))
            else {
                if let Some(r) = readers
                    .iter()
                    .find(|r| r.head.as_ref().is_some_and(|(h, _)| seen.contains(h)))
                {
                    let (h, _) = r.head.as_ref().expect("found by its head");
                    return Err(MergeError::Doubled {
                        id: h.clone(),
                        part: r.path.clone(),
                        line: r.line,
                    }
                    .into());
                }
                return Err(MergeError::Missing {
                    input: input.to_path_buf(),
                    id,
                }
                .into());
            };
            let (_, line) = readers[k].head.take().expect("matched by its head");
            buf.extend_from_slice(&line);
            readers[k].advance()?;
            seen.insert(id);
            written += 1;
            if buf.len() > 1 << 20 {
                out.append(&buf, 0, 0, &[]).map_err(MergeError::from)?;
                buf.clear();
            }
            progress.advance(1);
        }
        if let Some(r) = readers.iter().find(|r| r.head.is_some()) {
            let (id, _) = r.head.clone().expect("found by its head");
            return Err(if seen.contains(&id) {
                MergeError::Doubled {
                    id,
                    part: r.path.clone(),
                    line: r.line,
                }
            } else {
                MergeError::Unknown {
                    id,
                    part: r.path.clone(),
                    line: r.line,
                    input: input.to_path_buf(),
                }
            }
            .into());
        }
        out.append(&buf, 0, 0, &[]).map_err(MergeError::from)?;
        Ok::<(), Error>(())
    })();
    progress.end();
    match result {
        Ok(()) => {
            match format {
                OutputFormat::Parquet => out.finish_converted(|staged, file| {
                    super::convert_staged(staged, file, &mechanisms)
                }),
                OutputFormat::Csv | OutputFormat::Jsonl => out.finish(),
            }
            .map_err(MergeError::from)?;
            Ok(written)
        }
        Err(e) => {
            out.remove();
            Err(e)
        }
    }
}
