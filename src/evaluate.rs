//! Scoring an annotated set and computing the paper's metrics per mechanism.

use crate::features::Features;
use crate::mechanism::Mechanism;
use crate::metrics::{level_metrics, rationale_metrics, LevelMetrics, RationaleMetrics};
use crate::predict::Scorer;
use crate::text::Encoded;
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MechanismMetrics {
    pub mechanism: Mechanism,
    pub level: LevelMetrics,
    pub rationale: RationaleMetrics,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EvalReport {
    pub pairs: usize,
    pub mechanisms: Vec<MechanismMetrics>,
}

impl EvalReport {
    /// Mean of the mechanisms' macro-F1: the figure that picks the best epoch.
    pub fn mean_macro_f1(&self) -> f64 {
        if self.mechanisms.is_empty() {
            return 0.0;
        }
        self.mechanisms
            .iter()
            .map(|m| m.level.macro_f1)
            .sum::<f64>()
            / self.mechanisms.len() as f64
    }

    /// The per-mechanism table printed by `epitome eval` and the training log.
    pub fn table(&self) -> String {
        let mut s = format!(
            "{:<4} {:>8} {:>9} {:>7} {:>7}   per-level F1 (0/1/2)   {} pairs\n",
            "", "accuracy", "macro-F1", "T-F1", "IOU-F1", self.pairs
        );
        for m in &self.mechanisms {
            let f1: Vec<String> = m
                .level
                .per_class
                .iter()
                .map(|c| format!("{:.3}", c.f1))
                .collect();
            s.push_str(&format!(
                "{:<4} {:>8.4} {:>9.4} {:>7.4} {:>7.4}   {}\n",
                m.mechanism.code(),
                m.level.accuracy,
                m.level.macro_f1,
                m.rationale.t_f1,
                m.rationale.iou_f1,
                f1.join(" / ")
            ));
        }
        s
    }
}

/// Scores `features` in length-sorted batches and computes the metrics over the whole set.
pub fn evaluate(
    scorer: &Scorer,
    features: &[Features],
    batch_size: usize,
    mut on_batch: impl FnMut(usize),
) -> Result<EvalReport, candle_core::Error> {
    let mechanisms = scorer.model.config().mechanisms.clone();
    let mut order: Vec<usize> = (0..features.len()).collect();
    order.sort_by_key(|&i| (features[i].response.len(), features[i].seeker.len()));
    let mut predicted: Vec<Vec<(u8, Vec<bool>)>> = vec![Vec::new(); features.len()];
    for chunk in order.chunks(batch_size.max(1)) {
        let s: Vec<&Encoded> = chunk.iter().map(|&i| &features[i].seeker).collect();
        let r: Vec<&Encoded> = chunk.iter().map(|&i| &features[i].response).collect();
        for (&i, scores) in chunk.iter().zip(scorer.score_encoded(&s, &r)?) {
            predicted[i] = scores
                .into_iter()
                .map(|s| (s.level, s.rationale_tokens))
                .collect();
        }
        on_batch(chunk.len());
    }
    let per_mechanism = mechanisms
        .iter()
        .enumerate()
        .map(|(k, &m)| {
            let gold: Vec<u8> = features.iter().map(|f| f.levels[m.index()]).collect();
            let pred: Vec<u8> = predicted.iter().map(|p| p[k].0).collect();
            let rationale = rationale_metrics(
                features
                    .iter()
                    .zip(&predicted)
                    .map(|(f, p)| (f.rationale[m.index()].as_slice(), p[k].1.as_slice())),
            );
            MechanismMetrics {
                mechanism: m,
                level: level_metrics(&gold, &pred),
                rationale,
            }
        })
        .collect();
    Ok(EvalReport {
        pairs: features.len(),
        mechanisms: per_mechanism,
    })
}

/// Which annotated pairs `epitome eval` scores.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum EvalSplit {
    /// Every pair in the data.
    All,
    /// The dev pairs of the split recorded in the bundle.
    Dev,
    /// The training pairs of the split recorded in the bundle.
    Train,
}

/// Why an evaluation cannot run.
#[derive(Debug, thiserror::Error)]
pub enum EvalError {
    #[error("{} records no split; use --split all", .0.display())]
    NoSplit(std::path::PathBuf),
    #[error("no pairs to evaluate in {}", .0.display())]
    NoPairs(std::path::PathBuf),
}

/// An evaluation of a bundle on annotations, with what loading the annotations found.
pub struct BundleEvaluation {
    pub report: EvalReport,
    pub data: crate::data::LoadReport,
}

/// `epitome eval`: scores the chosen pairs of the annotations in `data_dir` with `bundle`.
pub fn evaluate_bundle(
    bundle: &crate::bundle::LoadedBundle,
    data_dir: &std::path::Path,
    split: EvalSplit,
    progress: &dyn crate::progress::Progress,
) -> Result<BundleEvaluation, crate::Error> {
    let dataset = crate::data::load_epitome(data_dir)?;
    let examples: Vec<_> = match split {
        EvalSplit::All => dataset.examples.iter().collect(),
        choice => {
            let recorded = bundle
                .info
                .split
                .as_ref()
                .ok_or_else(|| EvalError::NoSplit(bundle.dir.clone()))?;
            let (train, dev) = recorded.partition(&dataset.examples);
            if choice == EvalSplit::Dev {
                dev
            } else {
                train
            }
        }
    };
    if examples.is_empty() {
        return Err(EvalError::NoPairs(data_dir.to_path_buf()).into());
    }
    let features = crate::features::featurize(&bundle.text, &examples)?;
    progress.begin(
        "scoring",
        Some(features.len() as u64),
        crate::progress::Unit::Pairs,
    );
    let report = evaluate(&bundle.scorer(), &features, 32, |n| {
        progress.advance(n as u64)
    });
    progress.end();
    Ok(BundleEvaluation {
        report: report?,
        data: dataset.report,
    })
}
