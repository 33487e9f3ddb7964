//! `epitome experiment`: the paper's comparison table on this project's split, each row the
//! mean ± standard deviation over seeds. A seed draws the split (grouped by seeker post) and
//! everything a row's training draws, so the rows of one seed share their dev pairs.
//!
//! Bi-encoder runs are bundles under `OUT/<recipe>/seed-<seed>/`: a run whose bundle is
//! already there with the same training options is read back instead of trained again, so an
//! interrupted experiment resumes where it stopped.

mod baselines;
pub mod dev;
pub mod ensemble;
pub mod offsets;
mod table;

pub use baselines::{majority, tfidf_logistic, BaselineError, TextOf};
pub use table::markdown;

use crate::bundle::{self, BUNDLE_FILE};
use crate::data::{load_epitome, split_dev, split_fold, Fold};
use crate::encoder::PretrainedEncoder;
use crate::evaluate::EvalReport;
use crate::mechanism::Mechanism;
use crate::progress::Progress;
use crate::train::{train, LevelLossWeights, LevelWeighting, TrainOptions};
use crate::{Error, OptionError};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// One mechanism's figures of one run, on the dev pairs of its seed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Scores {
    pub accuracy: f64,
    pub macro_f1: f64,
    pub t_f1: f64,
    pub iou_f1: f64,
}

impl Scores {
    fn from_report(report: &EvalReport, m: Mechanism) -> Option<Self> {
        let r = report.mechanisms.iter().find(|r| r.mechanism == m)?;
        Some(Self {
            accuracy: r.level.accuracy,
            macro_f1: r.level.macro_f1,
            t_f1: r.rationale.t_f1,
            iou_f1: r.rationale.iou_f1,
        })
    }

    fn fields(&self) -> [f64; 4] {
        [self.accuracy, self.macro_f1, self.t_f1, self.iou_f1]
    }

    fn from_fields(f: [f64; 4]) -> Self {
        Self {
            accuracy: f[0],
            macro_f1: f[1],
            t_f1: f[2],
            iou_f1: f[3],
        }
    }
}

/// A named bi-encoder training recipe: `default`, or `NAME:field=value,...` over the default
/// options (`len128:max_len=128`, `inv:class_weights=inverse,epochs=8`; per-mechanism values
/// separated by `;`, as `w:level_loss_weights=IP=2;EX=0.5`).
#[derive(Clone, Debug, PartialEq)]
pub struct Recipe {
    pub name: String,
    pub options: TrainOptions,
}

impl std::str::FromStr for Recipe {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (name, settings) = s.split_once(':').unwrap_or((s, ""));
        if name.is_empty()
            || !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            return Err(format!(
                "recipe name '{name}': use letters, digits, '-' and '_' (it names a directory)"
            ));
        }
        let mut options =
            serde_json::to_value(TrainOptions::default_for_minilm()).map_err(|e| e.to_string())?;
        for setting in settings.split(',').filter(|p| !p.is_empty()) {
            let (field, value) = setting
                .split_once('=')
                .ok_or_else(|| format!("'{setting}': expected FIELD=VALUE"))?;
            let slot = options
                .get_mut(field)
                // The split is the experiment's: every row of a seed scores the same dev pairs.
                .filter(|_| !matches!(field, "seed" | "split_seed" | "fold" | "dev_fraction"))
                .ok_or_else(|| {
                    format!("'{field}' is not a training option a recipe can set (the split comes from --seeds and --folds)")
                })?;
            *slot = if field == "class_weights" {
                let w: LevelWeighting = value.parse()?;
                serde_json::to_value(w).map_err(|e| e.to_string())?
            } else if field == "level_loss_weights" {
                let w: LevelLossWeights = value.parse()?;
                serde_json::to_value(w).map_err(|e| e.to_string())?
            } else {
                serde_json::from_str(value)
                    .unwrap_or_else(|_| serde_json::Value::String(value.into()))
            };
        }
        let options: TrainOptions =
            serde_json::from_value(options).map_err(|e| format!("recipe '{name}': {e}"))?;
        options.validate().map_err(|e| e.to_string())?;
        Ok(Recipe {
            name: name.into(),
            options,
        })
    }
}

pub struct ExperimentOptions {
    pub seeds: Vec<u64>,
    pub recipes: Vec<Recipe>,
    /// Also the majority-class and TF-IDF rows.
    pub baselines: bool,
    /// Grouped k-fold: each seed runs every fold as dev, instead of one dev split.
    pub folds: Option<usize>,
}

impl ExperimentOptions {
    pub fn validate(&self) -> Result<(), OptionError> {
        OptionError::check(!self.seeds.is_empty(), "--seeds", "at least 1")?;
        OptionError::check(self.folds.is_none_or(|k| k >= 2), "--folds", "at least 2")?;
        let mut names: Vec<&str> = self.recipes.iter().map(|r| r.name.as_str()).collect();
        names.sort_unstable();
        OptionError::check(
            names.windows(2).all(|w| w[0] != w[1]),
            "--recipe",
            "a distinct name for each recipe",
        )
    }
}

/// One seed of one row.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Run {
    pub seed: u64,
    /// The dev fold, under `--folds`.
    pub fold: Option<usize>,
    /// Dev pairs scored (fewer than the split's when a recipe sets `limit`).
    pub dev_pairs: usize,
    /// ER, IP, EX.
    pub scores: [Scores; 3],
    /// Training time (bi-encoder rows), as the bundle recorded it.
    pub train_seconds: Option<f64>,
    pub bundle: Option<PathBuf>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Row {
    pub name: String,
    /// How to reproduce the row (the `epitome train` command of a recipe).
    pub how: String,
    pub runs: Vec<Run>,
    pub mean: [Scores; 3],
    /// Sample standard deviation over seeds (0 with one seed).
    pub sd: [Scores; 3],
}

impl Row {
    fn new(name: String, how: String, runs: Vec<Run>) -> Self {
        let n = runs.len().max(1) as f64;
        let mut mean = [Scores::default(); 3];
        let mut sd = [Scores::default(); 3];
        for k in 0..3 {
            let mut m = [0.0; 4];
            for r in &runs {
                for (acc, v) in m.iter_mut().zip(r.scores[k].fields()) {
                    *acc += v / n;
                }
            }
            let mut var = [0.0; 4];
            if runs.len() > 1 {
                for r in &runs {
                    for ((acc, v), mu) in var.iter_mut().zip(r.scores[k].fields()).zip(m) {
                        *acc += (v - mu).powi(2) / (n - 1.0);
                    }
                }
            }
            mean[k] = Scores::from_fields(m);
            sd[k] = Scores::from_fields(var.map(f64::sqrt));
        }
        Self {
            name,
            how,
            runs,
            mean,
            sd,
        }
    }

    /// Mean over seeds of the mean macro-F1 of the three mechanisms.
    pub fn mean_macro_f1(&self) -> f64 {
        self.mean.iter().map(|s| s.macro_f1).sum::<f64>() / 3.0
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ExperimentReport {
    pub data: PathBuf,
    pub seeds: Vec<u64>,
    pub dev_fraction: f64,
    /// Grouped folds per seed, when the experiment used k-fold.
    pub folds: Option<usize>,
    /// Dev pairs of each (seed, fold) of the whole data, in the order of the runs.
    pub dev_pairs: Vec<usize>,
    pub rows: Vec<Row>,
}

/// Why an experiment stopped.
#[derive(Debug, thiserror::Error)]
pub enum ExperimentError {
    #[error(transparent)]
    Baseline(#[from] BaselineError),
    #[error("{} holds a bundle trained with other options than recipe '{recipe}' (seed {seed}); remove it or choose another --out", dir.display())]
    StaleRun {
        dir: PathBuf,
        recipe: String,
        seed: u64,
    },
    #[error("{} records no dev metrics", .0.display())]
    NoDevMetrics(PathBuf),
}

/// Runs every row for every seed; bi-encoder bundles go to `out/<recipe>/seed-<seed>`.
pub fn run(
    data: &Path,
    encoder: &PretrainedEncoder,
    encoder_source: &str,
    options: &ExperimentOptions,
    out: &Path,
    progress: &dyn Progress,
) -> Result<ExperimentReport, Error> {
    options.validate()?;
    let dataset = load_epitome(data)?;
    let dev_fraction = TrainOptions::default_for_minilm().dev_fraction;
    // Each (seed, fold) is one run of every row; without --folds the fold is None.
    let sides: Vec<(u64, Option<Fold>)> = options
        .seeds
        .iter()
        .flat_map(|&seed| match options.folds {
            Some(count) => (0..count)
                .map(|index| (seed, Some(Fold { index, count })))
                .collect::<Vec<_>>(),
            None => vec![(seed, None)],
        })
        .collect();
    let mut rows = Vec::new();
    let mut dev_pairs = Vec::new();
    let (mut majority_runs, mut response_runs, mut pair_runs) = (vec![], vec![], vec![]);
    for &(seed, fold) in &sides {
        let split = match fold {
            Some(f) => split_fold(&dataset.examples, f, seed),
            None => split_dev(&dataset.examples, dev_fraction, seed),
        };
        let (train_set, dev_set) = split.partition(&dataset.examples);
        dev_pairs.push(dev_set.len());
        if options.baselines {
            let run = |scores| Run {
                seed,
                fold: fold.map(|f| f.index),
                dev_pairs: dev_set.len(),
                scores,
                train_seconds: None,
                bundle: None,
            };
            majority_runs.push(run(majority(&train_set, &dev_set)));
            response_runs.push(run(tfidf_logistic(&train_set, &dev_set, TextOf::Response)
                .map_err(ExperimentError::from)?));
            pair_runs.push(run(tfidf_logistic(
                &train_set,
                &dev_set,
                TextOf::SeekerAndResponse,
            )
            .map_err(ExperimentError::from)?));
        }
    }
    if options.baselines {
        rows.push(Row::new(
            "Majority class".into(),
            "the most frequent training level of each mechanism".into(),
            majority_runs,
        ));
        rows.push(Row::new(
            "TF-IDF + logistic regression (response)".into(),
            "linfa-logistic, L2-normalised TF-IDF of the 5,000 most frequent words".into(),
            response_runs,
        ));
        rows.push(Row::new(
            "TF-IDF + logistic regression (seeker + response)".into(),
            "as above, on the seeker post and the response as one document".into(),
            pair_runs,
        ));
    }
    for recipe in &options.recipes {
        let mut runs = Vec::new();
        for &(seed, fold) in &sides {
            let options = TrainOptions {
                seed,
                fold,
                ..recipe.options.clone()
            };
            let name = match fold {
                Some(f) => format!("seed-{seed}-fold-{}", f.index),
                None => format!("seed-{seed}"),
            };
            let dir = out.join(&recipe.name).join(name);
            runs.push(reuse_or_train(
                data,
                encoder,
                encoder_source,
                &options,
                &recipe.name,
                &dir,
                progress,
            )?);
        }
        rows.push(Row::new(
            format!("Bi-encoder, {}", recipe.name),
            recipe
                .options
                .command_line()
                .replace(&format!("--seed {}", recipe.options.seed), "--seed SEED"),
            runs,
        ));
    }
    Ok(ExperimentReport {
        data: data.to_path_buf(),
        seeds: options.seeds.clone(),
        dev_fraction,
        folds: options.folds,
        dev_pairs,
        rows,
    })
}

fn reuse_or_train(
    data: &Path,
    encoder: &PretrainedEncoder,
    encoder_source: &str,
    options: &TrainOptions,
    recipe: &str,
    dir: &Path,
    progress: &dyn Progress,
) -> Result<Run, Error> {
    if !dir.join(BUNDLE_FILE).is_file() {
        tracing::info!(recipe, seed = options.seed, "training");
        train(data, encoder, encoder_source, options, dir, progress)?;
    }
    let info = bundle::read_info(dir)?;
    let recorded = info
        .training
        .get("options")
        .cloned()
        .and_then(|o| serde_json::from_value::<TrainOptions>(o).ok());
    if recorded.as_ref() != Some(options) {
        return Err(ExperimentError::StaleRun {
            dir: dir.to_path_buf(),
            recipe: recipe.into(),
            seed: options.seed,
        }
        .into());
    }
    let dev: EvalReport = info
        .dev_metrics
        .clone()
        .and_then(|d| serde_json::from_value(d).ok())
        .ok_or_else(|| ExperimentError::NoDevMetrics(dir.to_path_buf()))?;
    let scores = Mechanism::ALL.map(|m| Scores::from_report(&dev, m).unwrap_or_default());
    Ok(Run {
        seed: options.seed,
        fold: options.fold.map(|f| f.index),
        dev_pairs: dev.pairs,
        scores,
        train_seconds: info.training.get("seconds").and_then(|s| s.as_f64()),
        bundle: Some(dir.to_path_buf()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_recipe_overrides_named_options_and_refuses_unknown_ones() {
        let r: Recipe = "len128:max_len=128,class_weights=inverse".parse().unwrap();
        assert_eq!(r.name, "len128");
        assert_eq!(r.options.max_len, 128);
        assert_eq!(
            r.options.class_weights,
            LevelWeighting::all(crate::train::ClassWeighting::Inverse)
        );
        assert_eq!(r.options.lr, TrainOptions::default_for_minilm().lr);
        let plain: Recipe = "default".parse().unwrap();
        assert_eq!(plain.options, TrainOptions::default_for_minilm());
        assert!("x:seed=3".parse::<Recipe>().is_err());
        assert!("x:dev_fraction=0.2".parse::<Recipe>().is_err());
        assert!("x:split_seed=3".parse::<Recipe>().is_err());
        let weighted: Recipe = "w:level_loss_weights=IP=2;EX=0.5,epochs=7".parse().unwrap();
        let w = weighted.options.level_loss_weights;
        assert_eq!(
            (w.er, w.ip, w.ex, weighted.options.epochs),
            (1.0, 2.0, 0.5, 7)
        );
        assert!("w:level_loss_weights=IP=-2".parse::<Recipe>().is_err());
        let ordinal: Recipe = "ord:level_head=ordinal".parse().unwrap();
        assert_eq!(ordinal.options.level_head, crate::model::LevelHead::Ordinal);
        assert!("x:level_head=cubic".parse::<Recipe>().is_err());
        let mean: Recipe = "mean:level_pooling=mean,head_lr=0.00024".parse().unwrap();
        assert_eq!(mean.options.level_pooling, crate::model::LevelPooling::Mean);
        assert_eq!(mean.options.head_lr, Some(0.00024));
        assert!("x:head_lr=0".parse::<Recipe>().is_err());
        assert!("x:colour=blue".parse::<Recipe>().is_err());
        assert!("x:epochs=0".parse::<Recipe>().is_err());
        assert!("../up".parse::<Recipe>().is_err());
    }

    #[test]
    fn rows_average_over_seeds_with_the_sample_deviation() {
        let run = |seed, f1| Run {
            seed,
            fold: None,
            dev_pairs: 1,
            scores: [Scores {
                macro_f1: f1,
                ..Default::default()
            }; 3],
            train_seconds: None,
            bundle: None,
        };
        let row = Row::new("r".into(), "h".into(), vec![run(1, 0.6), run(2, 0.8)]);
        assert!((row.mean[0].macro_f1 - 0.7).abs() < 1e-12);
        assert!((row.sd[1].macro_f1 - 0.02f64.sqrt()).abs() < 1e-12);
        assert!((row.mean_macro_f1() - 0.7).abs() < 1e-12);
    }
}
