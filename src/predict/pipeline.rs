//! The one streaming prediction pipeline: pairs are read, scored and written a chunk at a
//! time, so memory stays bounded for any input. `epitome predict`, `analyze --model` and batch
//! scoring all go through [`Pipeline`].

use super::shard::Shard;
use super::working::{Leftover, RunIdentity, WorkingFileError};
use super::{predict_pairs, OutputFormat, PairPrediction, PredictionWriter, Scorer};
use crate::data::{DataError, Pair, PairReader};
use crate::progress::{Progress, Unit};
use crate::Error;
use std::path::{Path, PathBuf};

/// Pairs read and scored per round: bounds memory for any input size.
pub const CHUNK: usize = 256;

/// How a run writes: what it is (for a resume to check), what to do with a working file an
/// earlier run left, and which shard of the input it scores.
#[derive(Clone, Debug)]
pub struct RunSpec {
    pub identity: RunIdentity,
    pub leftover: Leftover,
    pub shard: Option<Shard>,
}

/// Scores pairs and writes their predictions as they come.
pub struct Pipeline<'a> {
    scorer: Scorer<'a>,
    writer: PredictionWriter,
    shard: Option<Shard>,
    progress: &'a dyn Progress,
    scored: u64,
}

impl<'a> Pipeline<'a> {
    /// Starts writing to `output` (stdout when `None`; `.csv` for CSV, JSON lines otherwise).
    pub fn create(
        scorer: Scorer<'a>,
        output: Option<&Path>,
        spec: RunSpec,
        progress: &'a dyn Progress,
    ) -> Result<Self, Error> {
        let mechanisms = scorer.model.config().mechanisms.clone();
        let writer = PredictionWriter::create(output, &mechanisms, spec.identity, spec.leftover)
            .map_err(PredictError::from)?;
        Ok(Self {
            scorer,
            writer,
            shard: spec.shard,
            progress,
            scored: 0,
        })
    }

    /// Scores one chunk, writes it, and returns its predictions in input order.
    pub fn score(&mut self, pairs: &[Pair]) -> Result<Vec<PairPrediction>, Error> {
        let predictions = predict_pairs(&self.scorer, self.scorer.text, pairs)?;
        self.writer
            .write(&predictions, pairs.len() as u64)
            .map_err(PredictError::from)?;
        self.scored += pairs.len() as u64;
        Ok(predictions)
    }

    /// Scores every pair of `pairs` (of this run's shard) in chunks of [`CHUNK`], then
    /// completes the output; a resumed run first reads past the pairs already done. Returns
    /// the predictions in the output. On an error a file's working file is kept for
    /// `--resume`: what was written is not lost.
    pub fn run(
        mut self,
        pairs: impl Iterator<Item = Result<Pair, DataError>>,
    ) -> Result<u64, Error> {
        let (skip, already) = self.writer.done();
        if skip > 0 {
            tracing::info!(pairs_read = skip, predictions = already, "resuming");
        }
        self.progress.begin("scoring", None, Unit::Pairs);
        self.progress.advance(already);
        let result = (|| {
            let mut pairs = pairs.peekable();
            for pair in pairs.by_ref().take(skip as usize) {
                pair?;
            }
            let mut chunk: Vec<Pair> = Vec::with_capacity(CHUNK);
            while pairs.peek().is_some() {
                chunk.clear();
                let mut read = 0;
                for pair in pairs.by_ref().take(CHUNK) {
                    let pair = pair?;
                    read += 1;
                    if self.shard.is_none_or(|s| s.contains(&pair.id)) {
                        chunk.push(pair);
                    }
                }
                let predictions = predict_pairs(&self.scorer, self.scorer.text, &chunk)?;
                self.writer
                    .write(&predictions, read)
                    .map_err(PredictError::from)?;
                self.scored += chunk.len() as u64;
                self.progress.advance(chunk.len() as u64);
            }
            Ok::<(), Error>(())
        })();
        self.progress.end();
        match result {
            Ok(()) => {
                let scored = self.scored;
                self.finish()?;
                Ok(already + scored)
            }
            Err(e) => {
                if let Some(kept) = self.writer.suspend() {
                    tracing::warn!(
                        "the predictions written so far are kept in {}; run again with --resume to continue",
                        kept.display()
                    );
                }
                Err(e)
            }
        }
    }

    /// Completes the output (renames the working file into place); returns the pairs scored.
    pub fn finish(self) -> Result<u64, Error> {
        let scored = self.scored;
        self.writer.finish().map_err(PredictError::from)?;
        Ok(scored)
    }

    /// Drops the output without completing it.
    pub fn abandon(self) {
        self.writer.abandon();
    }
}

/// Whether `output` names the file `input` (through links or `..` too): writing there would
/// replace the pairs being read.
pub fn same_file(input: &Path, output: &Path) -> bool {
    let (Ok(input), Some(name)) = (std::fs::canonicalize(input), output.file_name()) else {
        return false;
    };
    let parent = match output.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    std::fs::canonicalize(parent).is_ok_and(|dir| dir.join(name) == input)
}

/// Why a prediction run cannot start.
#[derive(Debug, thiserror::Error)]
pub enum PredictError {
    #[error("--output {} is the input file; write the predictions elsewhere", .0.display())]
    OutputIsInput(PathBuf),
    #[error(transparent)]
    Output(#[from] WorkingFileError),
    #[error("cannot read {}: {source}", path.display())]
    Input {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// What identifies an input file for a resume: its path, size and modification time (a
/// digest would read the whole file before the first pair is scored).
pub fn input_identity(input: &Path) -> Result<String, PredictError> {
    let meta = std::fs::metadata(input).map_err(|source| PredictError::Input {
        path: input.to_path_buf(),
        source,
    })?;
    let modified = meta
        .modified()
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_nanos());
    let path = std::fs::canonicalize(input).unwrap_or_else(|_| input.to_path_buf());
    Ok(format!(
        "{} ({} bytes, modified {modified} ns after the epoch)",
        path.display(),
        meta.len()
    ))
}

/// Options of `predict --input` beyond the files.
#[derive(Clone, Copy, Debug, Default)]
pub struct FileRun {
    /// Continue an interrupted run's working file.
    pub resume: bool,
    pub shard: Option<Shard>,
}

/// `epitome predict --input FILE [--output OUT]`: scores every pair of `input` (of one
/// shard), resuming an interrupted run when asked. `model` identifies the bundle and
/// precision ([`crate::bundle::LoadedBundle::fingerprint`]).
pub fn predict_file(
    scorer: Scorer<'_>,
    model: String,
    input: &Path,
    output: Option<&Path>,
    run: FileRun,
    progress: &dyn Progress,
) -> Result<u64, Error> {
    if let Some(out) = output.filter(|out| same_file(input, out)) {
        return Err(PredictError::OutputIsInput(out.to_path_buf()).into());
    }
    let spec = RunSpec {
        identity: RunIdentity {
            model,
            input: input_identity(input)?,
            options: format!(
                "format {:?}, shard {}",
                OutputFormat::from_path(output),
                run.shard.map_or("all".to_owned(), |s| s.to_string())
            ),
        },
        leftover: if run.resume {
            Leftover::Resume
        } else {
            Leftover::Refuse
        },
        shard: run.shard,
    };
    let reader = PairReader::open(input)?;
    Pipeline::create(scorer, output, spec, progress)?.run(reader)
}
