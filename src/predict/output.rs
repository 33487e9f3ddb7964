//! Prediction output: JSON lines or CSV, to stdout or to a file that appears only when complete.

use super::PairPrediction;
use crate::mechanism::Mechanism;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OutputFormat {
    Jsonl,
    Csv,
}

impl OutputFormat {
    /// `.csv` is CSV; anything else (`.jsonl`, stdout) is JSON lines.
    pub fn from_path(path: Option<&Path>) -> Self {
        match path.and_then(|p| p.extension()).and_then(|e| e.to_str()) {
            Some(e) if e.eq_ignore_ascii_case("csv") => OutputFormat::Csv,
            _ => OutputFormat::Jsonl,
        }
    }
}

enum Sink {
    Stdout(std::io::Stdout),
    File {
        tmp: PathBuf,
        dest: PathBuf,
        file: BufWriter<File>,
    },
}

/// Writes predictions as they come. A file output is written under a temporary name beside
/// the destination and renamed by [`PredictionWriter::finish`], so an interrupted run never
/// leaves a truncated file that looks complete.
pub struct PredictionWriter {
    sink: Sink,
    format: OutputFormat,
    csv_header: Option<Vec<Mechanism>>,
}

impl PredictionWriter {
    pub fn create(path: Option<&Path>, mechanisms: &[Mechanism]) -> std::io::Result<Self> {
        let format = OutputFormat::from_path(path);
        let sink = match path {
            None => Sink::Stdout(std::io::stdout()),
            Some(dest) => {
                let name = dest
                    .file_name()
                    .and_then(|n| n.to_str())
                    .unwrap_or("predictions");
                let tmp = dest.with_file_name(format!(".{name}.partial"));
                let file = BufWriter::new(File::create(&tmp)?);
                Sink::File {
                    tmp,
                    dest: dest.to_path_buf(),
                    file,
                }
            }
        };
        Ok(Self {
            sink,
            format,
            csv_header: Some(mechanisms.to_vec()),
        })
    }

    fn out(&mut self) -> &mut dyn Write {
        match &mut self.sink {
            Sink::Stdout(s) => s,
            Sink::File { file, .. } => file,
        }
    }

    pub fn write(&mut self, predictions: &[PairPrediction]) -> std::io::Result<()> {
        let mut buf = Vec::new();
        match self.format {
            OutputFormat::Jsonl => {
                for p in predictions {
                    serde_json::to_writer(&mut buf, &p.to_json())?;
                    buf.push(b'\n');
                }
            }
            OutputFormat::Csv => {
                let mut w = csv::WriterBuilder::new()
                    .has_headers(false)
                    .from_writer(&mut buf);
                if let Some(mechanisms) = self.csv_header.take() {
                    let mut header = vec!["id".to_owned()];
                    for m in &mechanisms {
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
        self.out().write_all(&buf)
    }

    /// Flushes and, for a file, moves it into place.
    pub fn finish(mut self) -> std::io::Result<()> {
        if self.csv_header.is_some() && self.format == OutputFormat::Csv {
            self.write(&[])?;
        }
        match self.sink {
            Sink::Stdout(mut s) => s.flush(),
            Sink::File {
                tmp,
                dest,
                mut file,
            } => {
                file.flush()?;
                file.get_ref().sync_all()?;
                drop(file);
                std::fs::rename(&tmp, &dest)
            }
        }
    }

    /// Removes the temporary file of an abandoned run.
    pub fn abandon(self) {
        if let Sink::File { tmp, file, .. } = self.sink {
            drop(file);
            let _ = std::fs::remove_file(tmp);
        }
    }
}
