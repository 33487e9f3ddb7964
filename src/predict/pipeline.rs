//! The one streaming prediction pipeline: pairs are read, scored and written a chunk at a
//! time, so memory stays bounded for any input. `epitome predict`, `analyze --model` and batch
//! scoring all go through [`Pipeline`].

use super::{predict_pairs, PairPrediction, PredictionWriter, Scorer};
use crate::data::{DataError, Pair, PairReader};
use crate::progress::{Progress, Unit};
use crate::Error;
use std::path::{Path, PathBuf};

/// Pairs read and scored per round: bounds memory for any input size.
pub const CHUNK: usize = 256;

/// Scores pairs and writes their predictions as they come.
pub struct Pipeline<'a> {
    scorer: Scorer<'a>,
    writer: PredictionWriter,
    /// Where the writer writes, as messages name it ("stdout" for standard output).
    destination: PathBuf,
    progress: &'a dyn Progress,
    scored: u64,
}

impl<'a> Pipeline<'a> {
    /// Starts writing to `output` (stdout when `None`; `.csv` for CSV, JSON lines otherwise).
    pub fn create(
        scorer: Scorer<'a>,
        output: Option<&Path>,
        progress: &'a dyn Progress,
    ) -> Result<Self, Error> {
        let mechanisms = scorer.model.config().mechanisms.clone();
        let destination = output.map_or_else(|| PathBuf::from("stdout"), Path::to_path_buf);
        let writer = match PredictionWriter::create(output, &mechanisms) {
            Ok(writer) => writer,
            Err(source) => {
                return Err(Error::Write {
                    path: destination,
                    source,
                })
            }
        };
        Ok(Self {
            scorer,
            writer,
            destination,
            progress,
            scored: 0,
        })
    }

    /// Scores one chunk, writes it, and returns its predictions in input order.
    pub fn score(&mut self, pairs: &[Pair]) -> Result<Vec<PairPrediction>, Error> {
        let predictions = predict_pairs(&self.scorer, self.scorer.text, pairs)?;
        self.writer
            .write(&predictions)
            .map_err(|source| Error::Write {
                path: self.destination.clone(),
                source,
            })?;
        self.scored += pairs.len() as u64;
        Ok(predictions)
    }

    /// Scores every pair of `pairs` in chunks of [`CHUNK`], then completes the output.
    /// On any error the output is abandoned: no partial file is left that looks complete.
    pub fn run(
        mut self,
        pairs: impl Iterator<Item = Result<Pair, DataError>>,
    ) -> Result<u64, Error> {
        self.progress.begin("scoring", None, Unit::Pairs);
        let result = (|| {
            let mut pairs = pairs.peekable();
            let mut chunk: Vec<Pair> = Vec::with_capacity(CHUNK);
            while pairs.peek().is_some() {
                chunk.clear();
                for pair in pairs.by_ref().take(CHUNK) {
                    chunk.push(pair?);
                }
                self.score(&chunk)?;
                self.progress.advance(chunk.len() as u64);
            }
            Ok::<(), Error>(())
        })();
        self.progress.end();
        match result {
            Ok(()) => self.finish(),
            Err(e) => {
                self.writer.abandon();
                Err(e)
            }
        }
    }

    /// Completes the output (renames the working file into place); returns the pairs scored.
    pub fn finish(self) -> Result<u64, Error> {
        let (scored, destination) = (self.scored, self.destination);
        self.writer.finish().map_err(|source| Error::Write {
            path: destination,
            source,
        })?;
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
}

/// `epitome predict --input FILE [--output OUT]`: scores every pair of `input`.
pub fn predict_file(
    scorer: Scorer<'_>,
    input: &Path,
    output: Option<&Path>,
    progress: &dyn Progress,
) -> Result<u64, Error> {
    if let Some(out) = output.filter(|out| same_file(input, out)) {
        return Err(PredictError::OutputIsInput(out.to_path_buf()).into());
    }
    let reader = PairReader::open(input)?;
    Pipeline::create(scorer, output, progress)?.run(reader)
}
