//! The paper's metrics, computed over a whole evaluated set (never averaged per batch).
//!
//! Levels: accuracy, macro-F1 (over the levels present in gold or predictions, as
//! scikit-learn), per-class precision/recall/F1 and the confusion matrix.
//! Rationales: token F1 (T-F1) and span IOU-F1 at IOU ≥ 0.5, each per response and then
//! averaged over responses. A response with neither gold nor predicted rationale tokens
//! scores 1.0 on both (it is right to mark nothing), and how many did so is reported.

use crate::mechanism::NUM_LEVELS;
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ClassScores {
    pub precision: f64,
    pub recall: f64,
    pub f1: f64,
    pub support: usize,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct LevelMetrics {
    pub accuracy: f64,
    pub macro_f1: f64,
    pub per_class: Vec<ClassScores>,
    /// `confusion[gold][predicted]`.
    pub confusion: Vec<Vec<usize>>,
}

pub fn level_metrics(gold: &[u8], predicted: &[u8]) -> LevelMetrics {
    let mut confusion = vec![vec![0usize; NUM_LEVELS]; NUM_LEVELS];
    for (&g, &p) in gold.iter().zip(predicted) {
        confusion[g as usize][p as usize] += 1;
    }
    let total = gold.len();
    let correct: usize = (0..NUM_LEVELS).map(|c| confusion[c][c]).sum();
    let ratio = |a: usize, b: usize| if b == 0 { 0.0 } else { a as f64 / b as f64 };
    let mut per_class = Vec::new();
    let mut f1_sum = 0.0;
    let mut present = 0;
    for (c, row) in confusion.iter().enumerate() {
        let tp = row[c];
        let support: usize = row.iter().sum();
        let predicted_c: usize = (0..NUM_LEVELS).map(|g| confusion[g][c]).sum();
        let precision = ratio(tp, predicted_c);
        let recall = ratio(tp, support);
        let f1 = if precision + recall == 0.0 {
            0.0
        } else {
            2.0 * precision * recall / (precision + recall)
        };
        if support > 0 || predicted_c > 0 {
            f1_sum += f1;
            present += 1;
        }
        per_class.push(ClassScores {
            precision,
            recall,
            f1,
            support,
        });
    }
    LevelMetrics {
        accuracy: ratio(correct, total),
        macro_f1: if present == 0 {
            0.0
        } else {
            f1_sum / present as f64
        },
        per_class,
        confusion,
    }
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct RationaleMetrics {
    pub t_f1: f64,
    pub iou_f1: f64,
    pub responses: usize,
    /// Responses with neither gold nor predicted rationale tokens (each scored 1.0).
    pub both_empty: usize,
}

/// Binary F1 of predicted vs gold rationale tokens of one response.
pub fn token_f1(gold: &[bool], predicted: &[bool]) -> f64 {
    let (mut tp, mut fp, mut fn_) = (0usize, 0usize, 0usize);
    for (&g, &p) in gold.iter().zip(predicted) {
        match (g, p) {
            (true, true) => tp += 1,
            (false, true) => fp += 1,
            (true, false) => fn_ += 1,
            _ => {}
        }
    }
    if tp + fp + fn_ == 0 {
        return 1.0;
    }
    2.0 * tp as f64 / (2 * tp + fp + fn_) as f64
}

/// Maximal runs of flagged tokens, as half-open token ranges.
pub fn token_runs(flags: &[bool]) -> Vec<(usize, usize)> {
    let mut runs = Vec::new();
    let mut start = None;
    for (i, &f) in flags.iter().enumerate() {
        match (f, start) {
            (true, None) => start = Some(i),
            (false, Some(s)) => {
                runs.push((s, i));
                start = None;
            }
            _ => {}
        }
    }
    if let Some(s) = start {
        runs.push((s, flags.len()));
    }
    runs
}

fn iou(a: (usize, usize), b: (usize, usize)) -> f64 {
    let inter = a.1.min(b.1).saturating_sub(a.0.max(b.0));
    let union = (a.1 - a.0) + (b.1 - b.0) - inter;
    if union == 0 {
        0.0
    } else {
        inter as f64 / union as f64
    }
}

/// Span F1 of one response: a predicted span is correct when its IOU with some gold span is at
/// least `threshold`; a gold span is found when some predicted span reaches it.
pub fn iou_f1(gold: &[bool], predicted: &[bool], threshold: f64) -> f64 {
    let g = token_runs(gold);
    let p = token_runs(predicted);
    if g.is_empty() && p.is_empty() {
        return 1.0;
    }
    if g.is_empty() || p.is_empty() {
        return 0.0;
    }
    let matched_p = p
        .iter()
        .filter(|&&ps| g.iter().any(|&gs| iou(ps, gs) >= threshold))
        .count();
    let matched_g = g
        .iter()
        .filter(|&&gs| p.iter().any(|&ps| iou(ps, gs) >= threshold))
        .count();
    let precision = matched_p as f64 / p.len() as f64;
    let recall = matched_g as f64 / g.len() as f64;
    if precision + recall == 0.0 {
        0.0
    } else {
        2.0 * precision * recall / (precision + recall)
    }
}

pub const IOU_THRESHOLD: f64 = 0.5;

/// Mean T-F1 and IOU-F1 over responses; each item is (gold, predicted) flags over a response's
/// real tokens.
pub fn rationale_metrics<'a, I>(responses: I) -> RationaleMetrics
where
    I: IntoIterator<Item = (&'a [bool], &'a [bool])>,
{
    let mut m = RationaleMetrics::default();
    let (mut t, mut s) = (0.0, 0.0);
    for (gold, predicted) in responses {
        m.responses += 1;
        if !gold.iter().any(|&x| x) && !predicted.iter().any(|&x| x) {
            m.both_empty += 1;
        }
        t += token_f1(gold, predicted);
        s += iou_f1(gold, predicted, IOU_THRESHOLD);
    }
    if m.responses > 0 {
        m.t_f1 = t / m.responses as f64;
        m.iou_f1 = s / m.responses as f64;
    }
    m
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flags(s: &str) -> Vec<bool> {
        s.chars().map(|c| c == '1').collect()
    }

    #[test]
    fn level_metrics_by_hand() {
        // gold:      0 0 0 1 1 2
        // predicted: 0 0 1 1 2 2
        let m = level_metrics(&[0, 0, 0, 1, 1, 2], &[0, 0, 1, 1, 2, 2]);
        assert!((m.accuracy - 4.0 / 6.0).abs() < 1e-12);
        // class 0: p=2/2 r=2/3 f1=0.8; class 1: p=1/2 r=1/2 f1=0.5; class 2: p=1/2 r=1 f1=2/3
        let expected = (0.8 + 0.5 + 2.0 / 3.0) / 3.0;
        assert!((m.macro_f1 - expected).abs() < 1e-12, "{}", m.macro_f1);
        assert_eq!(
            m.confusion,
            vec![vec![2, 1, 0], vec![0, 1, 1], vec![0, 0, 1]]
        );
        assert_eq!(m.per_class[0].support, 3);
        assert!((m.per_class[2].precision - 0.5).abs() < 1e-12);
    }

    #[test]
    fn macro_f1_ignores_a_level_absent_from_gold_and_predictions() {
        let m = level_metrics(&[0, 2, 2], &[0, 2, 0]);
        // class 0: p=1/2 r=1 f1=2/3; class 2: p=1 r=1/2 f1=2/3; class 1 absent.
        assert!((m.macro_f1 - 2.0 / 3.0).abs() < 1e-12);
    }

    #[test]
    fn token_f1_by_hand_and_empty_convention() {
        assert!((token_f1(&flags("0110"), &flags("0011")) - 0.5).abs() < 1e-12);
        assert_eq!(token_f1(&flags("0000"), &flags("0000")), 1.0);
        assert_eq!(token_f1(&flags("0000"), &flags("0100")), 0.0);
        assert_eq!(token_f1(&flags("0110"), &flags("0000")), 0.0);
    }

    #[test]
    fn iou_f1_by_hand() {
        // gold spans [1,4) and [6,8); predicted [1,3) (IOU 2/3, match) and [7,10) (IOU 1/4, no).
        let gold = flags("0111001100");
        let pred = flags("0110000111");
        assert!((iou_f1(&gold, &pred, 0.5) - 0.5).abs() < 1e-12);
        assert_eq!(iou_f1(&flags("000"), &flags("000"), 0.5), 1.0);
        assert_eq!(iou_f1(&flags("010"), &flags("000"), 0.5), 0.0);
        // IOU exactly 0.5 counts as a match.
        assert_eq!(iou_f1(&flags("1100"), &flags("1000"), 0.5), 1.0);
    }

    #[test]
    fn rationale_means_over_responses_and_counts_empty_pairs() {
        let g1 = flags("0110");
        let p1 = flags("0011");
        let g2 = flags("000");
        let p2 = flags("000");
        let m = rationale_metrics([(&g1[..], &p1[..]), (&g2[..], &p2[..])]);
        assert_eq!(m.responses, 2);
        assert_eq!(m.both_empty, 1);
        assert!((m.t_f1 - 0.75).abs() < 1e-12);
        // response 1: gold [1,3), predicted [2,4): IOU 1/3, no match → 0.
        assert!((m.iou_f1 - 0.5).abs() < 1e-12);
    }
}
