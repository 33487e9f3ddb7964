//! Per-level decision offsets. A level head trained with cross-entropy picks the most probable
//! level, which is what accuracy rewards; macro-F1 weighs a rare level (IP level 1: 97 of
//! 2,626 pairs) as much as a common one, and the most probable level is almost never the rare
//! one. Adding an offset to each level's log-probability before the argmax moves the decision
//! towards the rare level without retraining; the probabilities reported stay the model's.

use crate::mechanism::{Mechanism, NUM_LEVELS};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Offsets added to the log-probabilities of levels 0, 1 and 2, per mechanism; a mechanism
/// without an entry decides by plain argmax.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct LevelOffsets(pub BTreeMap<Mechanism, [f32; NUM_LEVELS]>);

impl LevelOffsets {
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The offsets of `m` (zeros when it has none).
    pub fn of(&self, m: Mechanism) -> [f32; NUM_LEVELS] {
        self.0.get(&m).copied().unwrap_or([0.0; NUM_LEVELS])
    }

    /// The level decided for `m` from the probabilities of its levels.
    pub fn decide(&self, m: Mechanism, probs: &[f32; NUM_LEVELS]) -> u8 {
        decide(&self.of(m), probs)
    }

    /// How clearly `m`'s decision is taken: the decided level's log-probability plus offset,
    /// less the largest of the other levels'. A change of the log-probabilities by less than
    /// half of it cannot change the decision.
    pub fn margin(&self, m: Mechanism, probs: &[f32; NUM_LEVELS]) -> f32 {
        let mut scores = offset_log_probs(&self.of(m), probs);
        let best = usize::from(self.decide(m, probs));
        let top = scores[best];
        scores[best] = f32::NEG_INFINITY;
        let second = scores.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        // Two levels of probability 0 (ln = -inf) are no close call.
        if top == second {
            0.0
        } else {
            top - second
        }
    }
}

/// The level whose log-probability plus offset is largest; on a tie the lower level, as a
/// plain argmax would pick. Without offsets it is the argmax of the probabilities themselves
/// (two close probabilities can round to one logarithm).
pub fn decide(offsets: &[f32; NUM_LEVELS], probs: &[f32; NUM_LEVELS]) -> u8 {
    let scores = if offsets.iter().all(|&o| o == 0.0) {
        *probs
    } else {
        offset_log_probs(offsets, probs)
    };
    let mut best = 0;
    for level in 1..NUM_LEVELS {
        if scores[level] > scores[best] {
            best = level;
        }
    }
    best as u8
}

/// Each level's log-probability plus its offset: what a decision with offsets compares.
fn offset_log_probs(offsets: &[f32; NUM_LEVELS], probs: &[f32; NUM_LEVELS]) -> [f32; NUM_LEVELS] {
    std::array::from_fn(|l| probs[l].ln() + offsets[l])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_margin_is_the_decided_levels_lead_in_log_probability_plus_offset() {
        let offsets = LevelOffsets(
            [(Mechanism::EmotionalReactions, [0.0, 0.7, 0.0])]
                .into_iter()
                .collect(),
        );
        let p = [0.5, 0.3, 0.2];
        let lead = |a: f32, b: f32| a.ln() - b.ln();
        assert!((offsets.margin(Mechanism::Interpretations, &p) - lead(0.5, 0.3)).abs() < 1e-6);
        // ER decides level 1 (ln 0.3 + 0.7 > ln 0.5), by 0.7 - ln(0.5 / 0.3).
        assert_eq!(offsets.decide(Mechanism::EmotionalReactions, &p), 1);
        let er = offsets.margin(Mechanism::EmotionalReactions, &p);
        assert!((er - (0.7 - lead(0.5, 0.3))).abs() < 1e-6, "{er}");
        assert_eq!(
            offsets.margin(Mechanism::Interpretations, &[0.4, 0.4, 0.2]),
            0.0
        );
        assert!(offsets
            .margin(Mechanism::Interpretations, &[1.0, 0.0, 0.0])
            .is_infinite());
    }

    #[test]
    fn zero_offsets_are_the_argmax_and_an_offset_moves_the_decision() {
        let p = [0.5, 0.3, 0.2];
        assert_eq!(decide(&[0.0; 3], &p), 0);
        // ln(0.3) + 0.6 = -0.604 > ln(0.5) = -0.693
        assert_eq!(decide(&[0.0, 0.6, 0.0], &p), 1);
        assert_eq!(decide(&[0.0, 0.4, 0.0], &p), 0);
        assert_eq!(decide(&[0.0, 0.0, 1.0], &p), 2);
        // A level of probability 0 is never chosen, whatever its offset.
        assert_eq!(decide(&[0.0, 9.0, 0.0], &[0.5, 0.0, 0.5]), 0);
    }

    #[test]
    fn offsets_are_stored_by_mechanism_code() {
        let mut o = LevelOffsets::default();
        o.0.insert(Mechanism::Interpretations, [0.0, 1.5, 0.0]);
        let json = serde_json::to_string(&o).unwrap();
        assert_eq!(json, r#"{"IP":[0.0,1.5,0.0]}"#);
        let back: LevelOffsets = serde_json::from_str(&json).unwrap();
        assert_eq!(back, o);
        assert_eq!(back.of(Mechanism::Explorations), [0.0; 3]);
        assert_eq!(back.decide(Mechanism::Interpretations, &[0.5, 0.2, 0.3]), 1);
    }
}
