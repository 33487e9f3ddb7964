//! Averaging models (an ensemble), one of the levers of issue 10: the level probabilities of
//! models trained on one split (other recipes or seeds) averaged pair by pair, against what
//! each member scores alone on the same dev pairs. Its cost is one forward pass per member.

use super::dev::{decided_metrics, DevScores};
use crate::mechanism::{Mechanism, NUM_LEVELS};
use serde::Serialize;
use std::path::PathBuf;

/// Why models cannot be averaged.
#[derive(Debug, thiserror::Error)]
pub enum EnsembleError {
    #[error("an ensemble needs at least two models")]
    TooFew,
    #[error("{} was trained on another split than {} (other dev pairs); an ensemble is judged on the dev pairs its members share none of their training with", .other.display(), .first.display())]
    OtherSplit { first: PathBuf, other: PathBuf },
}

/// The mean of the members' probabilities, pair by pair, for the mechanisms all of them have.
pub fn average(members: &[DevScores]) -> Result<DevScores, EnsembleError> {
    let [first, rest @ ..] = members else {
        return Err(EnsembleError::TooFew);
    };
    if rest.is_empty() {
        return Err(EnsembleError::TooFew);
    }
    if let Some(other) = rest.iter().find(|m| m.ids != first.ids) {
        return Err(EnsembleError::OtherSplit {
            first: first.model.clone(),
            other: other.model.clone(),
        });
    }
    let mechanisms: Vec<Mechanism> = first
        .mechanisms
        .iter()
        .copied()
        .filter(|m| rest.iter().all(|r| r.mechanisms.contains(m)))
        .collect();
    let probs = (0..first.ids.len())
        .map(|i| {
            mechanisms
                .iter()
                .map(|&m| {
                    let mut mean = [0f32; NUM_LEVELS];
                    for member in members {
                        let k = member.mechanisms.iter().position(|&x| x == m).unwrap_or(0);
                        for (acc, p) in mean.iter_mut().zip(member.probs[i][k]) {
                            *acc += p / members.len() as f32;
                        }
                    }
                    mean
                })
                .collect()
        })
        .collect();
    Ok(DevScores {
        model: PathBuf::from("ensemble"),
        command: None,
        mechanisms,
        ids: first.ids.clone(),
        gold: first.gold.clone(),
        probs,
    })
}

/// Accuracy and macro-F1 of one mechanism, deciding by the most probable level.
#[derive(Clone, Copy, Debug, Serialize)]
pub struct LevelScores {
    pub accuracy: f64,
    pub macro_f1: f64,
}

pub fn level_scores(scores: &DevScores, m: Mechanism) -> Option<LevelScores> {
    let samples = scores.samples(m, |_| true);
    if samples.is_empty() {
        return None;
    }
    let l = decided_metrics(&samples, &[0.0; NUM_LEVELS]);
    Some(LevelScores {
        accuracy: l.accuracy,
        macro_f1: l.macro_f1,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member(name: &str, ids: &[&str], p: [f32; 3]) -> DevScores {
        DevScores {
            model: PathBuf::from(name),
            command: None,
            mechanisms: vec![Mechanism::Interpretations],
            ids: ids.iter().map(|s| s.to_string()).collect(),
            gold: ids.iter().map(|_| [0, 1, 0]).collect(),
            probs: ids.iter().map(|_| vec![p]).collect(),
        }
    }

    #[test]
    fn the_ensemble_averages_the_members_probabilities_pair_by_pair() {
        let a = member("a", &["x", "y"], [0.6, 0.3, 0.1]);
        let b = member("b", &["x", "y"], [0.2, 0.7, 0.1]);
        let e = average(&[a, b]).unwrap();
        for p in &e.probs {
            assert!(
                (p[0][0] - 0.4).abs() < 1e-6 && (p[0][1] - 0.5).abs() < 1e-6,
                "{p:?}"
            );
        }
        // Gold is level 1: a alone is never right, the average always is.
        assert_eq!(
            level_scores(&e, Mechanism::Interpretations)
                .unwrap()
                .accuracy,
            1.0
        );
        assert!(level_scores(&e, Mechanism::Explorations).is_none());
    }

    #[test]
    fn members_of_other_splits_or_a_lone_member_are_refused() {
        let a = member("a", &["x", "y"], [0.6, 0.3, 0.1]);
        let b = member("b", &["x", "z"], [0.2, 0.7, 0.1]);
        assert!(matches!(
            average(&[a, b]),
            Err(EnsembleError::OtherSplit { .. })
        ));
        let a = member("a", &["x"], [0.6, 0.3, 0.1]);
        assert!(matches!(average(&[a]), Err(EnsembleError::TooFew)));
    }
}
