//! Per-level decision offsets tuned for macro-F1 (`epitome tune-offsets`), one of the levers of
//! issue 10. A dev set of 262 pairs holds about 10 IP level-1 pairs, too few to tune on and
//! then report: offsets tuned on a model's own dev set would report their own fit. So a
//! model's offsets are tuned on the dev predictions of the *other* models given (other seeds,
//! which drew other grouped splits), leaving out every pair of the model's own dev set, and
//! only then scored on its own dev set. Over three seeds that pools about 20 IP level-1 pairs
//! for each tuning, none of them seen by the score that judges it.

use super::dev::{decided_metrics, DevScores};
use crate::evaluate::{evaluate_bundle, EvalReport, EvalSplit};
use crate::mechanism::Mechanism;
use crate::model::offsets::LevelOffsets;
use serde::Serialize;
use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};

/// Offsets of levels 1 and 2 are searched on this grid, from `-GRID_MAX` to `GRID_MAX`; level
/// 0's stays 0 (only differences between levels matter).
const GRID_STEP: f32 = 0.1;
const GRID_MAX: f32 = 2.0;

/// Macro-F1 of the decisions `offsets` make on `samples`.
fn macro_f1(samples: &[([f32; 3], u8)], offsets: &[f32; 3]) -> f64 {
    decided_metrics(samples, offsets).macro_f1
}

/// The offsets that maximise the mean, over `sets` (one per model), of macro-F1; of offsets
/// that score the same, the smallest (plain argmax when nothing beats it).
pub fn tune(sets: &[Vec<([f32; 3], u8)>]) -> [f32; 3] {
    let steps = (GRID_MAX / GRID_STEP).round() as i32;
    let mut grid: Vec<[f32; 3]> = (-steps..=steps)
        .flat_map(|a| {
            (-steps..=steps).map(move |b| [0.0, a as f32 * GRID_STEP, b as f32 * GRID_STEP])
        })
        .collect();
    grid.sort_by(|x, y| (x[1].abs() + x[2].abs()).total_cmp(&(y[1].abs() + y[2].abs())));
    let score =
        |o: &[f32; 3]| sets.iter().map(|s| macro_f1(s, o)).sum::<f64>() / sets.len().max(1) as f64;
    let mut best = [0.0; 3];
    let mut best_score = score(&best);
    for o in &grid {
        let s = score(o);
        if s > best_score + 1e-12 {
            best = *o;
            best_score = s;
        }
    }
    best
}

/// The mechanisms of `model` that `wanted` names (all of them when it names none).
pub fn chosen(model: &[Mechanism], wanted: &[Mechanism]) -> Vec<Mechanism> {
    model
        .iter()
        .copied()
        .filter(|m| wanted.is_empty() || wanted.contains(m))
        .collect()
}

/// Offsets for a model whose dev pairs are `own_dev`, tuned on the dev predictions of
/// `others` without those pairs; returns them with the number of pairs tuned on per mechanism.
pub fn tune_for(
    mechanisms: &[Mechanism],
    own_dev: &HashSet<String>,
    others: &[&DevScores],
) -> (LevelOffsets, Vec<(Mechanism, usize)>) {
    let mut offsets = LevelOffsets::default();
    let mut pairs = Vec::new();
    for &m in mechanisms {
        let sets: Vec<Vec<([f32; 3], u8)>> = others
            .iter()
            .map(|o| o.samples(m, |id| !own_dev.contains(id)))
            .filter(|s| !s.is_empty())
            .collect();
        pairs.push((m, sets.iter().map(Vec::len).sum()));
        let o = tune(&sets);
        if o != [0.0; 3] {
            offsets.0.insert(m, o);
        }
    }
    (offsets, pairs)
}

/// One mechanism of one model: its dev figures by plain argmax and with offsets tuned on the
/// other models.
#[derive(Clone, Debug, Serialize)]
pub struct HeldOutRow {
    pub model: PathBuf,
    pub mechanism: Mechanism,
    pub offsets: [f32; 3],
    /// Other models' dev pairs the offsets were tuned on.
    pub tuned_on: usize,
    pub dev_pairs: usize,
    pub macro_f1_before: f64,
    pub macro_f1_after: f64,
    pub accuracy_before: f64,
    pub accuracy_after: f64,
    /// F1 of levels 0, 1, 2.
    pub level_f1_before: [f64; 3],
    pub level_f1_after: [f64; 3],
}

/// Every model's dev figures with offsets of `mechanisms` (all of a model's when empty) tuned
/// on the other models (at least two models).
pub fn leave_one_out(all: &[DevScores], mechanisms: &[Mechanism]) -> Vec<HeldOutRow> {
    let mut rows = Vec::new();
    for (i, target) in all.iter().enumerate() {
        let others: Vec<&DevScores> = all
            .iter()
            .enumerate()
            .filter(|&(j, _)| j != i)
            .map(|(_, d)| d)
            .collect();
        let own: HashSet<String> = target.ids.iter().cloned().collect();
        let tuned_mechanisms = chosen(&target.mechanisms, mechanisms);
        let (offsets, tuned) = tune_for(&tuned_mechanisms, &own, &others);
        for &m in &tuned_mechanisms {
            let samples = target.samples(m, |_| true);
            let before = decided_metrics(&samples, &[0.0; 3]);
            let after = decided_metrics(&samples, &offsets.of(m));
            let per_level = |l: &crate::metrics::LevelMetrics| {
                std::array::from_fn(|c| l.per_class.get(c).map_or(0.0, |s| s.f1))
            };
            rows.push(HeldOutRow {
                model: target.model.clone(),
                mechanism: m,
                offsets: offsets.of(m),
                tuned_on: tuned.iter().find(|t| t.0 == m).map_or(0, |t| t.1),
                dev_pairs: samples.len(),
                macro_f1_before: before.macro_f1,
                macro_f1_after: after.macro_f1,
                accuracy_before: before.accuracy,
                accuracy_after: after.accuracy,
                level_f1_before: per_level(&before),
                level_f1_after: per_level(&after),
            });
        }
    }
    rows
}

/// `tune-offsets --apply-to`: writes to `out` a copy of the bundle at `target` (tensors stored
/// as `dtype`) that decides `mechanisms` with offsets tuned on the models of `all` other than
/// `target`, without `target`'s own dev pairs; its dev metrics are measured again and recorded,
/// with what the offsets were tuned on and `command`. Returns those dev metrics.
#[allow(clippy::too_many_arguments)]
pub fn apply(
    target: &Path,
    out: &Path,
    dtype: candle_core::DType,
    all: &[DevScores],
    mechanisms: &[Mechanism],
    data_dir: &Path,
    command: String,
    progress: &dyn crate::progress::Progress,
) -> Result<EvalReport, crate::Error> {
    let mut bundle = crate::bundle::load(target, &candle_core::Device::Cpu)?;
    let own: HashSet<String> = bundle
        .info
        .split
        .as_ref()
        .map(|s| s.dev.iter().cloned().collect())
        .unwrap_or_default();
    let same = |a: &Path| std::fs::canonicalize(a).ok() == std::fs::canonicalize(target).ok();
    let others: Vec<&DevScores> = all.iter().filter(|d| !same(&d.model)).collect();
    crate::OptionError::check(
        !others.is_empty(),
        "--models",
        "to hold a bundle other than --apply-to, to tune on",
    )?;
    let chosen = chosen(&bundle.model.config().mechanisms, mechanisms);
    let (offsets, tuned) = tune_for(&chosen, &own, &others);
    bundle.model.set_level_offsets(offsets.clone());
    let report = evaluate_bundle(&bundle, data_dir, EvalSplit::Dev, progress)?.report;
    let provenance = serde_json::json!({
        "tuned_on": others.iter().map(|d| d.model.display().to_string()).collect::<Vec<_>>(),
        "tuned_on_training": others.iter().map(|d| d.command.clone()).collect::<Vec<_>>(),
        "pairs": tuned.iter().map(|(m, n)| (m.code(), *n)).collect::<BTreeMap<_, _>>(),
        "command": command,
    });
    let dev_metrics = serde_json::to_value(&report).ok();
    crate::bundle::export(target, out, dtype, |info| {
        crate::train::record_command(info);
        info.model.level_offsets = offsets;
        info.dev_metrics = dev_metrics;
        if let serde_json::Value::Object(training) = &mut info.training {
            training.insert("level_offsets".into(), provenance);
        }
    })?;
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::offsets::decide;

    /// A model that gives the rare level 1 a probability just under level 0's.
    fn shy_of_level_1() -> Vec<([f32; 3], u8)> {
        let mut s = Vec::new();
        for _ in 0..20 {
            s.push(([0.8, 0.1, 0.1], 0));
            s.push(([0.1, 0.1, 0.8], 2));
        }
        for _ in 0..5 {
            s.push(([0.5, 0.4, 0.1], 1));
        }
        s
    }

    #[test]
    fn tuning_finds_the_rare_level_and_its_offsets_raise_macro_f1() {
        let sets = vec![shy_of_level_1(), shy_of_level_1()];
        let o = tune(&sets);
        assert!(
            macro_f1(&sets[0], &o) > macro_f1(&sets[0], &[0.0; 3]) + 0.2,
            "{o:?}"
        );
        assert_eq!(decide(&o, &[0.5, 0.4, 0.1]), 1);
        assert_eq!(decide(&o, &[0.8, 0.1, 0.1]), 0);
    }

    #[test]
    fn nothing_to_gain_keeps_plain_argmax() {
        let s: Vec<([f32; 3], u8)> = (0..30)
            .map(|i| {
                let l = (i % 3) as u8;
                let mut p = [0.1f32; 3];
                p[l as usize] = 0.8;
                (p, l)
            })
            .collect();
        assert_eq!(tune(&[s]), [0.0; 3]);
    }

    #[test]
    fn a_models_own_dev_pairs_are_left_out_of_its_tuning() {
        let scores = |ids: &[&str], level_1_shy: bool| DevScores {
            model: PathBuf::from("m"),
            command: None,
            mechanisms: vec![Mechanism::Interpretations],
            ids: ids.iter().map(|s| s.to_string()).collect(),
            gold: ids.iter().map(|_| [0, 1, 0]).collect(),
            probs: ids
                .iter()
                .map(|_| {
                    vec![if level_1_shy {
                        [0.5, 0.4, 0.1]
                    } else {
                        [0.1, 0.8, 0.1]
                    }]
                })
                .collect(),
        };
        // The other model's only pairs are the target's own: nothing is left to tune on.
        let other = scores(&["a", "b"], true);
        let own: HashSet<String> = ["a".to_owned(), "b".to_owned()].into();
        let (offsets, tuned) = tune_for(&[Mechanism::Interpretations], &own, &[&other]);
        assert!(offsets.is_empty());
        assert_eq!(tuned, vec![(Mechanism::Interpretations, 0)]);
        let (_, tuned) = tune_for(&[Mechanism::Interpretations], &HashSet::new(), &[&other]);
        assert_eq!(tuned, vec![(Mechanism::Interpretations, 2)]);
    }
}
