//! Prediction output: JSON lines, CSV or Parquet, to stdout or to a file that appears only
//! when complete.

use super::working::{Checkpoint, Leftover, RunIdentity, WorkingFile, WorkingFileError};
use super::PairPrediction;
use crate::mechanism::Mechanism;
use std::io::Write;
use std::path::{Path, PathBuf};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OutputFormat {
    Jsonl,
    Csv,
    /// Staged as JSON lines in the working file, written as Parquet when complete.
    Parquet,
}

impl OutputFormat {
    /// `.csv` is CSV, `.parquet` (or `.pq`) Parquet; anything else (`.jsonl`, stdout) is
    /// JSON lines.
    pub fn from_path(path: Option<&Path>) -> Self {
        match path.and_then(|p| p.extension()).and_then(|e| e.to_str()) {
            Some(e) if e.eq_ignore_ascii_case("csv") => OutputFormat::Csv,
            Some(e) if e.eq_ignore_ascii_case("parquet") || e.eq_ignore_ascii_case("pq") => {
                OutputFormat::Parquet
            }
            _ => OutputFormat::Jsonl,
        }
    }
}

enum Sink {
    Stdout(std::io::Stdout),
    File(WorkingFile),
}

/// Writes predictions as they come. A file output goes through a [`WorkingFile`]: it appears
/// under its name only when complete, and an interrupted run can be resumed.
pub struct PredictionWriter {
    sink: Sink,
    format: OutputFormat,
    mechanisms: Vec<Mechanism>,
    /// The CSV header is still to be written (a fresh file, or stdout).
    header_due: bool,
}

fn stdout_error(source: std::io::Error) -> WorkingFileError {
    WorkingFileError::Io {
        path: PathBuf::from("stdout"),
        source,
    }
}

impl PredictionWriter {
    /// Writes to `path` (stdout when `None`). A file's working file is opened as `leftover`
    /// says; [`PredictionWriter::done`] tells how much of an earlier run it already holds.
    pub fn create(
        path: Option<&Path>,
        mechanisms: &[Mechanism],
        identity: RunIdentity,
        leftover: Leftover,
    ) -> Result<Self, WorkingFileError> {
        let format = OutputFormat::from_path(path);
        let sink = match path {
            None => Sink::Stdout(std::io::stdout()),
            Some(dest) => Sink::File(WorkingFile::open(dest, identity, leftover)?),
        };
        let fresh = match &sink {
            Sink::File(w) => w.checkpoint().bytes == 0,
            Sink::Stdout(_) => true,
        };
        Ok(Self {
            sink,
            format,
            mechanisms: mechanisms.to_vec(),
            header_due: fresh,
        })
    }

    /// What an earlier, interrupted run already did (zero for a fresh one).
    pub fn done(&self) -> Option<&Checkpoint> {
        match &self.sink {
            Sink::File(w) => Some(w.checkpoint()),
            Sink::Stdout(_) => None,
        }
    }

    /// Writes the predictions of a chunk that consumed `pairs_read` input pairs, `skipped`
    /// of them bad rows left out.
    pub fn write(
        &mut self,
        predictions: &[PairPrediction],
        pairs_read: u64,
        skipped: &[String],
    ) -> Result<(), WorkingFileError> {
        let buf = self.encode(predictions).map_err(stdout_error)?;
        match &mut self.sink {
            Sink::Stdout(s) => s.write_all(&buf).map_err(stdout_error),
            Sink::File(w) => w.append(&buf, pairs_read, predictions.len() as u64, skipped),
        }
    }

    fn encode(&mut self, predictions: &[PairPrediction]) -> std::io::Result<Vec<u8>> {
        let mut buf = Vec::new();
        match self.format {
            OutputFormat::Jsonl | OutputFormat::Parquet => {
                for p in predictions {
                    serde_json::to_writer(&mut buf, &p.to_json())?;
                    buf.push(b'\n');
                }
            }
            OutputFormat::Csv => {
                let mut w = csv::WriterBuilder::new()
                    .has_headers(false)
                    .from_writer(&mut buf);
                if std::mem::take(&mut self.header_due) {
                    let mut header = vec!["id".to_owned()];
                    for m in &self.mechanisms {
                        for field in [
                            "level",
                            "prob_0",
                            "prob_1",
                            "prob_2",
                            "rationales",
                            "rationale_offsets",
                        ] {
                            header.push(format!("{}_{field}", m.code()));
                        }
                    }
                    header.push("truncated".into());
                    w.write_record(&header)?;
                }
                for p in predictions {
                    let mut row = vec![p.id.clone()];
                    for (_, m) in &p.mechanisms {
                        row.push(m.level.to_string());
                        row.extend(m.probs.iter().map(|x| format!("{x:.6}")));
                        // EPITOME's own convention: spans separated by '|'.
                        row.push(
                            m.rationales
                                .iter()
                                .map(|r| r.text.as_str())
                                .collect::<Vec<_>>()
                                .join("|"),
                        );
                        row.push(
                            m.rationales
                                .iter()
                                .map(|r| format!("{}-{}", r.start, r.end))
                                .collect::<Vec<_>>()
                                .join(";"),
                        );
                    }
                    row.push(p.truncated.to_string());
                    w.write_record(&row)?;
                }
                w.flush()?;
                drop(w);
            }
        }
        Ok(buf)
    }

    /// Flushes and, for a file, moves it into place.
    pub fn finish(mut self) -> Result<(), WorkingFileError> {
        if self.header_due && self.format == OutputFormat::Csv {
            self.write(&[], 0, &[])?;
        }
        match self.sink {
            Sink::Stdout(mut s) => s.flush().map_err(stdout_error),
            Sink::File(w) if self.format == OutputFormat::Parquet => {
                let mechanisms = self.mechanisms;
                w.finish_converted(|staged, out| super::convert_staged(staged, out, &mechanisms))
            }
            Sink::File(w) => w.finish(),
        }
    }

    /// Removes the working file of a run that will not be resumed.
    pub fn abandon(self) {
        if let Sink::File(w) = self.sink {
            w.remove();
        }
    }

    /// Keeps the working file of a stopped run for `--resume`; returns where it is.
    pub fn suspend(self) -> Option<PathBuf> {
        match self.sink {
            Sink::File(w) => Some(w.path().to_path_buf()),
            Sink::Stdout(_) => None,
        }
    }
}
