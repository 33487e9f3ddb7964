//! A model's level probabilities on the dev pairs of its own split: what the decision-offset
//! and ensemble levers of issue 10 are measured on, without scoring the models again for each
//! variant.

use crate::bundle::LoadedBundle;
use crate::data::Example;
use crate::features::featurize;
use crate::mechanism::{Mechanism, NUM_LEVELS};
use crate::text::Encoded;
use std::path::PathBuf;

/// One model's predictions on its own dev pairs.
pub struct DevScores {
    pub model: PathBuf,
    /// How the model was trained (`training.command` of its bundle), to record what a
    /// measurement used.
    pub command: Option<String>,
    pub mechanisms: Vec<Mechanism>,
    pub ids: Vec<String>,
    /// Gold levels per pair, indexed by [`Mechanism::index`].
    pub gold: Vec<[u8; 3]>,
    /// Probabilities per pair, one entry per model mechanism (in `mechanisms` order).
    pub probs: Vec<Vec<[f32; NUM_LEVELS]>>,
}

impl DevScores {
    /// (probabilities, gold level) of `m` for the pairs whose ids `keep` accepts.
    pub(crate) fn samples(&self, m: Mechanism, keep: impl Fn(&str) -> bool) -> Vec<([f32; 3], u8)> {
        let Some(k) = self.mechanisms.iter().position(|&x| x == m) else {
            return Vec::new();
        };
        self.ids
            .iter()
            .zip(&self.probs)
            .zip(&self.gold)
            .filter(|((id, _), _)| keep(id))
            .map(|((_, p), g)| (p[k], g[m.index()]))
            .collect()
    }
}

/// Scores `bundle` on the dev pairs of its recorded split.
pub fn dev_scores(bundle: &LoadedBundle, examples: &[Example]) -> Result<DevScores, crate::Error> {
    let split = bundle
        .info
        .split
        .as_ref()
        .ok_or_else(|| crate::evaluate::EvalError::NoSplit(bundle.dir.clone()))?;
    let (_, dev) = split.partition(examples);
    let features = featurize(&bundle.text, &dev)?;
    let seekers: Vec<&Encoded> = features.iter().map(|f| &f.seeker).collect();
    let responses: Vec<&Encoded> = features.iter().map(|f| &f.response).collect();
    let mut order: Vec<usize> = (0..features.len()).collect();
    order.sort_by_key(|&i| (responses[i].len(), seekers[i].len()));
    let batches: Vec<&[usize]> = order.chunks(crate::predict::BATCH).collect();
    let scores = bundle
        .scorer()
        .score_batches(&seekers, &responses, &batches, None)?;
    let mut info = bundle.info.clone();
    crate::train::record_command(&mut info);
    Ok(DevScores {
        model: bundle.dir.clone(),
        command: info
            .training
            .get("command")
            .and_then(|c| c.as_str())
            .map(str::to_owned),
        mechanisms: bundle.model.config().mechanisms.clone(),
        ids: dev.iter().map(|e| e.id()).collect(),
        gold: features.iter().map(|f| f.levels).collect(),
        probs: scores
            .into_iter()
            .map(|s| s.iter().map(|m| m.probs).collect())
            .collect(),
    })
}

/// Loads each bundle of `models` and scores it on its own dev pairs of `examples`.
pub fn dev_scores_of(
    models: &[PathBuf],
    examples: &[Example],
) -> Result<Vec<DevScores>, crate::Error> {
    models
        .iter()
        .map(|dir| {
            let bundle = crate::bundle::load(dir, &candle_core::Device::Cpu)?;
            tracing::info!("scoring the dev pairs of {}", dir.display());
            dev_scores(&bundle, examples)
        })
        .collect()
}

/// Level metrics of the decisions `offsets` make on (probabilities, gold level) samples.
pub fn decided_metrics(
    samples: &[([f32; NUM_LEVELS], u8)],
    offsets: &[f32; NUM_LEVELS],
) -> crate::metrics::LevelMetrics {
    let gold: Vec<u8> = samples.iter().map(|s| s.1).collect();
    let predicted: Vec<u8> = samples
        .iter()
        .map(|s| crate::model::offsets::decide(offsets, &s.0))
        .collect();
    crate::metrics::level_metrics(&gold, &predicted)
}
