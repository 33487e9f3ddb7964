//! `epitome analyze` as one call: read the interactions, attach levels (from a predictions
//! file, or by scoring with a model through the predict pipeline), analyze, write the reports.

use super::{
    analyze, collect, levels_of, report, AnalyzeError, AnalyzeOptions, ColumnMap, Insights,
    InteractionReader, Interactions, LevelSource, Levels, OnError, PredictionIndex, Provenance,
};
use crate::bundle::LoadedBundle;
use crate::data::Pair;
use crate::predict::{Leftover, Pipeline, RunIdentity, RunSpec};
use crate::progress::{Progress, Unit};
use crate::{Error, OptionError};
use std::path::{Path, PathBuf};

/// Where the levels come from.
pub enum LevelsFrom<'a> {
    /// A file written by `epitome predict`.
    Predictions(&'a Path),
    /// Score with the model bundle in this directory (loaded once the input is known to be
    /// readable); the predictions are saved to `predictions.jsonl` in the output directory,
    /// to be passed as `--predictions` next time.
    Model(&'a Path),
}

pub struct AnalyzeJob<'a> {
    pub input: &'a Path,
    pub levels: LevelsFrom<'a>,
    pub columns: ColumnMap,
    pub out: &'a Path,
    pub options: AnalyzeOptions,
}

/// What a job produced.
pub struct AnalyzeOutcome {
    pub insights: Insights,
    /// The predictions a model wrote, when one scored.
    pub saved_predictions: Option<PathBuf>,
}

impl AnalyzeOptions {
    /// Refuses settings no analysis can use, naming the flag.
    pub fn validate(&self) -> Result<(), OptionError> {
        OptionError::check(
            self.replicates >= 100,
            "--bootstrap",
            "at least 100 for 95% intervals",
        )?;
        let t = self.thresholds;
        OptionError::check(
            t.high_min <= 6 && t.low_max < t.high_min,
            "--low-empathy",
            "below --high-empathy, and both within 0–6",
        )
    }
}

/// Analysis needs every mechanism's level.
pub fn require_all_mechanisms(bundle: &LoadedBundle) -> Result<(), AnalyzeError> {
    let found = bundle.info.model.mechanisms.len();
    if found == 3 {
        Ok(())
    } else {
        Err(AnalyzeError::NeedsAllMechanisms {
            model: bundle.dir.display().to_string(),
            found,
        })
    }
}

pub fn run(job: AnalyzeJob<'_>, progress: &dyn Progress) -> Result<AnalyzeOutcome, Error> {
    job.options.validate()?;
    let mappings = job.columns.mappings();
    let want_posts = matches!(job.levels, LevelsFrom::Model(_));
    let reader = InteractionReader::open(job.input, job.columns, want_posts)?;
    std::fs::create_dir_all(job.out).map_err(|source| Error::Write {
        path: job.out.to_path_buf(),
        source,
    })?;
    let on_error = job.options.on_error;
    let mut bytes = |read, size| progress.set(read, size);
    let (data, levels_from, levels_source, saved) = match job.levels {
        LevelsFrom::Predictions(path) => {
            let index = PredictionIndex::read(path, on_error == OnError::Skip)?;
            progress.begin("reading", None, Unit::Bytes);
            let data = collect(
                reader,
                LevelSource::Predictions(index),
                on_error,
                &mut bytes,
            );
            progress.end();
            (data?, "predictions", path.display().to_string(), None)
        }
        LevelsFrom::Model(dir) => {
            let bundle = crate::bundle::load(dir, &candle_core::Device::Cpu)?;
            require_all_mechanisms(&bundle)?;
            let saved = job.out.join("predictions.jsonl");
            let data = score_with_model(reader, &bundle, &saved, on_error, progress)?;
            (data, "model", bundle.dir.display().to_string(), Some(saved))
        }
    };
    let provenance = Provenance {
        file: job.input.display().to_string(),
        sha256: crate::digest::sha256_file(job.input).map_err(|source| {
            crate::data::DataError::Io {
                path: job.input.to_path_buf(),
                source,
            }
        })?,
        levels_from: levels_from.into(),
        levels_source,
        column_mappings: mappings,
    };
    let insights = analyze(&data, &job.options, provenance)?;
    report::write_reports(&insights, job.out).map_err(|source| Error::Write {
        path: job.out.to_path_buf(),
        source,
    })?;
    Ok(AnalyzeOutcome {
        insights,
        saved_predictions: saved,
    })
}

/// Scores the interactions through the predict pipeline, saving its output to `saved`.
fn score_with_model(
    reader: InteractionReader,
    bundle: &LoadedBundle,
    saved: &Path,
    on_error: OnError,
    progress: &dyn Progress,
) -> Result<Interactions, Error> {
    // The saved levels are rewritten on every run: a working file left by an interrupted
    // one is replaced, not resumed.
    let spec = RunSpec {
        identity: RunIdentity {
            model: bundle.fingerprint(),
            input: String::new(),
            options: String::new(),
        },
        leftover: Leftover::Replace,
        shard: None,
        on_error: OnError::Fail,
        seeker_cache_bytes: crate::predict::DEFAULT_BUDGET_BYTES,
    };
    let mut pipeline = Pipeline::create(bundle.scorer(), Some(saved), spec, progress)?;
    let mut score = |pairs: &[Pair]| -> Result<Vec<Levels>, Error> {
        Ok(pipeline.score(pairs)?.iter().map(levels_of).collect())
    };
    progress.begin("scoring", None, Unit::Bytes);
    let data = collect(
        reader,
        LevelSource::Model(&mut score),
        on_error,
        &mut |read, size| progress.set(read, size),
    );
    progress.end();
    match data {
        Ok(data) => {
            pipeline.finish()?;
            Ok(data)
        }
        Err(e) => {
            pipeline.abandon();
            Err(e)
        }
    }
}
