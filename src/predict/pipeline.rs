//! The one streaming prediction pipeline: pairs are read, scored and written a chunk at a
//! time, so memory stays bounded for any input. `epitome predict`, `analyze --model` and batch
//! scoring all go through [`Pipeline`].

use super::seeker_cache::{key_of, post_key, SeekerCache, DEFAULT_BUDGET_BYTES};
use super::shard::Shard;
use super::working::{Leftover, RunIdentity, WorkingFileError};
use super::{predict_pairs_cached, OutputFormat, PairPrediction, PredictionWriter, Scorer};
use crate::data::{DataError, OnError, Pair, PairReader};
use crate::progress::{Progress, Unit};
use crate::text::TextEncoder;
use crate::Error;
use std::collections::HashMap;
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
    pub on_error: OnError,
    /// Bytes of seeker states the run may keep ([`SeekerCache`]).
    pub seeker_cache_bytes: usize,
}

/// What a run did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RunReport {
    /// Predictions in the output (a resumed run's earlier ones included).
    pub predictions: u64,
    /// Bad rows left out under `--on-error skip`.
    pub skipped: u64,
    /// Why, row by row (the first [`super::working::MAX_SKIP_MESSAGES`]).
    pub skip_messages: Vec<String>,
    /// The sidecar file that lists them, beside a file output.
    pub skip_file: Option<PathBuf>,
}

/// Scores pairs and writes their predictions as they come.
pub struct Pipeline<'a> {
    scorer: Scorer<'a>,
    writer: PredictionWriter,
    shard: Option<Shard>,
    on_error: OnError,
    seekers: SeekerCache,
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
            on_error: spec.on_error,
            seekers: SeekerCache::new(spec.seeker_cache_bytes),
            progress,
            scored: 0,
        })
    }

    /// Tells the seeker cache how often each post will be used from now on
    /// ([`SeekerCache::expect`]): it then keeps exactly the posts with uses to come.
    pub fn expect_seekers(&mut self, uses: HashMap<u64, u32>) {
        self.seekers.expect(uses);
    }

    /// Scores one chunk, writes it, and returns its predictions in input order.
    pub fn score(&mut self, pairs: &[Pair]) -> Result<Vec<PairPrediction>, Error> {
        self.write_chunk(pairs, pairs.len() as u64, &[])
    }

    /// Scores `pairs`, the usable ones among `read` input pairs (`bad` the rows left out),
    /// and writes their predictions with that account of the input.
    fn write_chunk(
        &mut self,
        pairs: &[Pair],
        read: u64,
        bad: &[String],
    ) -> Result<Vec<PairPrediction>, Error> {
        let predictions = predict_pairs_cached(
            &self.scorer,
            self.scorer.text,
            pairs,
            Some(&mut self.seekers),
        )?;
        self.writer
            .write(&predictions, read, bad)
            .map_err(PredictError::from)?;
        self.scored += pairs.len() as u64;
        Ok(predictions)
    }

    /// Scores every pair of `pairs` (of this run's shard) in chunks of [`CHUNK`], then
    /// completes the output; a resumed run first reads past the pairs already done. A bad row
    /// stops the run (and removes the working file, which a resume could not continue past
    /// it), or is left out and reported under [`OnError::Skip`]. On any other error a file's
    /// working file is kept for `--resume`.
    pub fn run(
        mut self,
        pairs: impl Iterator<Item = Result<Pair, DataError>>,
    ) -> Result<RunReport, Error> {
        let done = self.writer.done().cloned();
        let (skip, mut report) = match &done {
            Some(c) => (
                c.pairs_read,
                RunReport {
                    predictions: c.pairs_written,
                    skipped: c.skipped,
                    skip_messages: c.skip_messages.clone(),
                    skip_file: None,
                },
            ),
            None => (0, RunReport::default()),
        };
        if skip > 0 {
            tracing::info!(
                pairs_read = skip,
                predictions = report.predictions,
                "resuming"
            );
        }
        self.progress.begin("scoring", None, Unit::Pairs);
        self.progress.advance(report.predictions);
        let on_error = self.on_error;
        let result = (|| {
            let mut pairs = pairs.peekable();
            // Read past what is done; its bad rows were counted when they were read.
            for _ in pairs.by_ref().take(skip as usize) {}
            let mut chunk: Vec<Pair> = Vec::with_capacity(CHUNK);
            let mut bad: Vec<String> = Vec::new();
            while pairs.peek().is_some() {
                chunk.clear();
                bad.clear();
                let mut read = 0;
                for pair in pairs.by_ref().take(CHUNK) {
                    read += 1;
                    match pair {
                        Ok(pair) => {
                            if self.shard.is_none_or(|s| s.contains(&pair.id)) {
                                chunk.push(pair);
                            }
                        }
                        Err(e) if on_error == OnError::Skip => bad.push(e.to_string()),
                        Err(e) => return Err(e.into()),
                    }
                }
                self.write_chunk(&chunk, read, &bad)?;
                report.skipped += bad.len() as u64;
                let room =
                    super::working::MAX_SKIP_MESSAGES.saturating_sub(report.skip_messages.len());
                report.skip_messages.extend(bad.drain(..).take(room));
                self.progress.advance(chunk.len() as u64);
            }
            Ok::<(), Error>(())
        })();
        self.progress.end();
        match result {
            Ok(()) => {
                tracing::debug!(
                    hits = self.seekers.hits,
                    misses = self.seekers.misses,
                    "seeker encodings reused"
                );
                report.predictions += self.scored;
                self.finish()?;
                Ok(report)
            }
            // A bad row would stop a resume of the same input at the same place, and fixing
            // the input makes it another input: nothing is left to continue.
            Err(e @ Error::Data(_)) => {
                self.writer.abandon();
                Err(e)
            }
            // Anything else (a full disk, a failed write) can be resumed once mended.
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

/// Uses of each seeker post among the pairs of `shard`, by the [`post_key`] of its tokens.
/// Each distinct text is tokenized once (two maps of 8-byte keys: about 50 MB for a million
/// distinct posts, against the hours such a file takes to score). Bad rows are skipped here:
/// the run reports them. A resumed run counts the pairs it reads past too, so their posts may
/// stay cached longer than needed, within the budget.
fn count_seeker_uses(
    pairs: PairReader,
    shard: Option<Shard>,
    text: &TextEncoder,
    progress: &dyn Progress,
) -> HashMap<u64, u32> {
    progress.begin("counting seeker posts", None, Unit::Pairs);
    let mut keys: HashMap<u64, u64> = HashMap::new();
    let mut uses: HashMap<u64, u32> = HashMap::new();
    for pair in pairs.flatten() {
        progress.advance(1);
        if shard.is_some_and(|s| !s.contains(&pair.id)) {
            continue;
        }
        let text_key = key_of(pair.seeker_post.as_str());
        let key = match keys.get(&text_key) {
            Some(&k) => k,
            None => {
                // A post the tokenizer refuses is refused again, with its line, by the run.
                let Ok(encoded) = text.encode(&pair.seeker_post) else {
                    continue;
                };
                let k = post_key(&encoded.ids);
                keys.insert(text_key, k);
                k
            }
        };
        *uses.entry(key).or_default() += 1;
    }
    progress.end();
    uses
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
    pub on_error: OnError,
    /// Megabytes of seeker states to keep; `None`: [`DEFAULT_BUDGET_BYTES`]. Results do not
    /// depend on it, only speed and memory.
    pub seeker_cache_mb: Option<usize>,
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
) -> Result<RunReport, Error> {
    if let Some(out) = output.filter(|out| same_file(input, out)) {
        return Err(PredictError::OutputIsInput(out.to_path_buf()).into());
    }
    let spec = RunSpec {
        identity: RunIdentity {
            model,
            input: input_identity(input)?,
            options: format!(
                "format {:?}, shard {}, on error {:?}",
                OutputFormat::from_path(output),
                run.shard.map_or("all".to_owned(), |s| s.to_string()),
                run.on_error
            ),
        },
        leftover: if run.resume {
            Leftover::Resume
        } else {
            Leftover::Refuse
        },
        shard: run.shard,
        on_error: run.on_error,
        seeker_cache_bytes: run
            .seeker_cache_mb
            .map_or(DEFAULT_BUDGET_BYTES, |mb| mb << 20),
    };
    // Both readers open before the pipeline makes its working file, so that an input that
    // cannot be read leaves nothing behind.
    let reader = PairReader::open(input)?;
    // A file can be read twice: counting its seeker posts first lets the cache keep exactly
    // the posts that come again (a stream gets the cache's rule of thumb instead).
    let counting = if std::fs::metadata(input).is_ok_and(|m| m.is_file()) {
        Some(PairReader::open(input)?)
    } else {
        None
    };
    let text = scorer.text;
    let mut pipeline = Pipeline::create(scorer, output, spec, progress)?;
    if let Some(pairs) = counting {
        pipeline.expect_seekers(count_seeker_uses(pairs, run.shard, text, progress));
    }
    let mut report = pipeline.run(reader)?;
    if let (Some(out), true) = (output, report.skipped > 0) {
        let name = out
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("predictions");
        let path = out.with_file_name(format!("{name}.skipped.txt"));
        let mut text = format!(
            "{} rows of {} were left out (--on-error skip){}:\n",
            report.skipped,
            input.display(),
            if report.skipped as usize > report.skip_messages.len() {
                format!("; the first {} are listed", report.skip_messages.len())
            } else {
                String::new()
            }
        );
        for m in &report.skip_messages {
            text.push_str(m);
            text.push('\n');
        }
        crate::atomic::write_atomically(&path, |w| w.write_all(text.as_bytes())).map_err(
            |source| Error::Write {
                path: path.clone(),
                source,
            },
        )?;
        report.skip_file = Some(path);
    }
    Ok(report)
}
