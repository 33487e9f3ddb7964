//! What a mechanism's level head outputs, and how its outputs become the three levels' scores.
//!
//! The paper's head is a softmax over three unordered classes. But the levels are ordered:
//! level 1 (weak) sits between none and strong, and it is the rare one (IP: 97 of 2,626
//! pairs), so a softmax head learns it from its own few pairs alone. An ordinal head asks two
//! questions every pair answers: is there any of the mechanism (level ≥ 1), and, if so, is it
//! strong (level 2)? Every pair of level 1 or 2 teaches the first, and every pair of level 1
//! is a negative for the second.

use candle_core::{Result, Tensor, D};
use serde::{Deserialize, Serialize};

/// The kind of level head of every mechanism of a model.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LevelHead {
    /// Three logits, one per level, as in the paper.
    #[default]
    Softmax,
    /// Two logits, s₁ and s₂ (a continuation-ratio model): P(level ≥ 1) = σ(s₁) and
    /// P(level = 2 | level ≥ 1) = σ(s₂), so that P(level ≥ 2) = σ(s₁)·σ(s₂) never exceeds
    /// P(level ≥ 1), whatever the weights.
    Ordinal,
}

impl LevelHead {
    pub fn is_softmax(&self) -> bool {
        *self == Self::Softmax
    }

    /// How many numbers the head's last layer outputs.
    pub fn outputs(self) -> usize {
        match self {
            Self::Softmax => 3,
            Self::Ordinal => 2,
        }
    }

    /// The levels' scores, (batch, 3), from the head's outputs, (batch, outputs): logits whose
    /// softmax is the levels' probabilities. The ordinal head's are its log-probabilities,
    /// which are their own log-softmax: the level loss's cross-entropy on them is the sum of
    /// the two binary cross-entropies of the questions the pair answers.
    pub fn level_scores(self, outputs: &Tensor) -> Result<Tensor> {
        match self {
            Self::Softmax => Ok(outputs.clone()),
            Self::Ordinal => {
                let s1 = outputs.narrow(D::Minus1, 0, 1)?;
                let s2 = outputs.narrow(D::Minus1, 1, 1)?;
                let any = log_sigmoid(&s1)?;
                let none = log_sigmoid(&s1.neg()?)?;
                let strong = (&any + log_sigmoid(&s2)?)?;
                let weak = (&any + log_sigmoid(&s2.neg()?)?)?;
                Tensor::cat(&[none, weak, strong], D::Minus1)
            }
        }
    }
}

/// log σ(x) = −(max(−x, 0) + log(1 + e^−|x|)), which neither overflows nor loses the small
/// values, built from ops that all have a backward pass.
fn log_sigmoid(x: &Tensor) -> Result<Tensor> {
    let tail = ((x.abs()?.neg()?.exp()? + 1.0)?).log()?;
    (x.neg()?.relu()? + tail)?.neg()
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    fn sigmoid(x: f32) -> f32 {
        1.0 / (1.0 + (-x).exp())
    }

    #[test]
    fn ordinal_scores_are_the_log_probabilities_of_the_two_questions() {
        let dev = Device::Cpu;
        let outputs = Tensor::new(&[[0.7f32, -1.3], [-30.0, 4.0], [50.0, 50.0]], &dev).unwrap();
        let scores: Vec<Vec<f32>> = LevelHead::Ordinal
            .level_scores(&outputs)
            .unwrap()
            .to_vec2()
            .unwrap();
        let (a, b) = (sigmoid(0.7), sigmoid(-1.3));
        let want = [1.0 - a, a * (1.0 - b), a * b];
        for (got, want) in scores[0].iter().zip(want) {
            assert!((got.exp() - want).abs() < 1e-6, "{got} {want}");
        }
        // Far from 0 the logarithms stay finite and exact: no exp overflows.
        assert!(scores[1][0].abs() < 1e-6);
        assert!((scores[1][1] - (-34.0 - (-4.0f32).exp().ln_1p())).abs() < 1e-4);
        assert!(scores[2].iter().all(|s| s.is_finite()));
        for row in &scores {
            let total: f32 = row.iter().map(|s| s.exp()).sum();
            assert!((total - 1.0).abs() < 1e-5, "{row:?}");
        }
    }

    #[test]
    fn the_softmax_head_passes_its_logits_through() {
        let dev = Device::Cpu;
        let outputs = Tensor::new(&[[0.1f32, 0.2, 0.3]], &dev).unwrap();
        let scores = LevelHead::Softmax.level_scores(&outputs).unwrap();
        assert_eq!(scores.to_vec2::<f32>().unwrap(), vec![vec![0.1, 0.2, 0.3]]);
        assert_eq!(LevelHead::Softmax.outputs(), 3);
        assert_eq!(LevelHead::Ordinal.outputs(), 2);
    }
}
