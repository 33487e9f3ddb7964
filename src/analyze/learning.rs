//! Analysis 4: do supporters express more empathy as they gain experience?
//!
//! Experience is a supporter's n-th response (ordered by `created_at`) and the days since
//! their first. Two views, both resampled by supporter (a supporter's responses are not
//! independent of each other):
//! - binned means of the total score (bins double in width: 1, 2–3, 4–7, …);
//! - a within-supporter slope: the pooled least-squares slope of the total score on
//!   log2(experience) after removing each supporter's own mean, so that it compares a
//!   supporter with their earlier self and not prolific supporters with occasional ones. It
//!   reads as "change in total score per doubling of experience".

use super::bootstrap::Units;
use super::collect::{Interactions, NO_RESPONDER};
use crate::mechanism::Mechanism;

/// Bins of the n-th response: [lower, upper) with upper = None for the last.
pub const COUNT_BINS: [(u64, Option<u64>); 8] = [
    (1, Some(2)),
    (2, Some(4)),
    (4, Some(8)),
    (8, Some(16)),
    (16, Some(32)),
    (32, Some(64)),
    (64, Some(128)),
    (128, None),
];

/// Bins of the days since a supporter's first response.
pub const DAY_BINS: [(f64, Option<f64>); 6] = [
    (0.0, Some(1.0)),
    (1.0, Some(7.0)),
    (7.0, Some(30.0)),
    (30.0, Some(91.0)),
    (91.0, Some(365.0)),
    (365.0, None),
];

/// Measures of experience.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Experience {
    /// log2 of the n-th response.
    Responses,
    /// log2(1 + days since the first response).
    Days,
}

/// What the slope is of: the total score, or one mechanism's level.
pub const OUTCOMES: usize = 4;

/// Layout of a supporter's row of sums.
mod col {
    use super::{Experience, COUNT_BINS, DAY_BINS, OUTCOMES};
    pub const SUPPORTERS: usize = 0;
    pub const RESPONSES: usize = 1;
    pub fn sxx(x: Experience) -> usize {
        2 + x as usize
    }
    pub fn sxy(x: Experience, y: usize) -> usize {
        4 + x as usize * OUTCOMES + y
    }
    const BINS: usize = 4 + 2 * OUTCOMES;
    /// (responses, sum of totals, supporters) of a bin.
    pub fn bin(x: Experience, b: usize) -> usize {
        BINS + 3
            * (b + if x == Experience::Days {
                COUNT_BINS.len()
            } else {
                0
            })
    }
    pub const WIDTH: usize = BINS + 3 * (COUNT_BINS.len() + DAY_BINS.len());
}

/// Where each statistic sits in the vector [`statistics`] returns.
pub mod at {
    use super::{Experience, COUNT_BINS, OUTCOMES};
    pub fn slope(x: Experience, y: usize) -> usize {
        x as usize * OUTCOMES + y
    }
    pub fn bin_mean(x: Experience, b: usize) -> usize {
        2 * OUTCOMES
            + b
            + if x == Experience::Days {
                COUNT_BINS.len()
            } else {
                0
            }
    }
}

/// The supporters that qualify, and their rows of sums.
pub struct LearningData {
    pub units: Units,
    pub supporters: usize,
    pub responses: usize,
    /// Supporters with fewer dated responses than the minimum.
    pub excluded_supporters: usize,
}

/// Builds the per-supporter sums from supporters with at least `min_responses` dated
/// responses. Responses without a date are left out of this analysis only.
pub fn learning_data(data: &Interactions, min_responses: usize) -> LearningData {
    let mut order: Vec<usize> = (0..data.len())
        .filter(|&i| data.responder[i] != NO_RESPONDER && data.created_at[i].is_finite())
        .collect();
    // Ties in time keep file order.
    order.sort_by(|&a, &b| {
        (data.responder[a], data.created_at[a], a)
            .partial_cmp(&(data.responder[b], data.created_at[b], b))
            .expect("times are finite")
    });
    let mut units = Units::new(1, col::WIDTH);
    let (mut supporters, mut responses, mut excluded) = (0, 0, 0);
    let mut k = 0;
    while k < order.len() {
        let who = data.responder[order[k]];
        let mut end = k + 1;
        while end < order.len() && data.responder[order[end]] == who {
            end += 1;
        }
        let mine = &order[k..end];
        k = end;
        if mine.len() < min_responses.max(2) {
            excluded += 1;
            continue;
        }
        supporters += 1;
        responses += mine.len();
        units.push_unit([(0, &supporter_row(data, mine)[..])]);
    }
    LearningData {
        units,
        supporters,
        responses,
        excluded_supporters: excluded,
    }
}

fn supporter_row(data: &Interactions, mine: &[usize]) -> Vec<f64> {
    let first = data.created_at[mine[0]];
    let n = mine.len() as f64;
    let xs: [Vec<f64>; 2] = [
        (1..=mine.len()).map(|k| (k as f64).log2()).collect(),
        mine.iter()
            .map(|&i| (1.0 + (data.created_at[i] - first) / 86_400.0).log2())
            .collect(),
    ];
    let ys: Vec<[f64; OUTCOMES]> = mine
        .iter()
        .map(|&i| {
            let l = data.levels[i].map(f64::from);
            [l[0] + l[1] + l[2], l[0], l[1], l[2]]
        })
        .collect();
    let mut row = vec![0.0; col::WIDTH];
    row[col::SUPPORTERS] = 1.0;
    row[col::RESPONSES] = n;
    for x in [Experience::Responses, Experience::Days] {
        let xv = &xs[x as usize];
        let x_mean = xv.iter().sum::<f64>() / n;
        row[col::sxx(x)] = xv.iter().map(|v| (v - x_mean).powi(2)).sum();
        for y in 0..OUTCOMES {
            let y_mean = ys.iter().map(|v| v[y]).sum::<f64>() / n;
            row[col::sxy(x, y)] = xv
                .iter()
                .zip(&ys)
                .map(|(xi, yi)| (xi - x_mean) * (yi[y] - y_mean))
                .sum();
        }
    }
    let mut in_bin = [false; COUNT_BINS.len() + DAY_BINS.len()];
    for (k, &i) in mine.iter().enumerate() {
        let total = ys[k][0];
        let nth = k as u64 + 1;
        let days = (data.created_at[i] - first) / 86_400.0;
        let count_bin = COUNT_BINS
            .iter()
            .position(|&(lo, hi)| nth >= lo && hi.is_none_or(|h| nth < h));
        let day_bin = DAY_BINS
            .iter()
            .position(|&(lo, hi)| days >= lo && hi.is_none_or(|h| days < h));
        for (x, bin) in [
            (Experience::Responses, count_bin),
            (Experience::Days, day_bin),
        ] {
            if let Some(b) = bin {
                let c = col::bin(x, b);
                row[c] += 1.0;
                row[c + 1] += total;
                let flag = b + if x == Experience::Days {
                    COUNT_BINS.len()
                } else {
                    0
                };
                if !in_bin[flag] {
                    in_bin[flag] = true;
                    row[c + 2] += 1.0;
                }
            }
        }
    }
    row
}

/// Slopes per doubling and binned means (NaN where undefined).
pub fn statistics(table: &[f64]) -> Vec<f64> {
    let mut out = vec![f64::NAN; 2 * OUTCOMES + COUNT_BINS.len() + DAY_BINS.len()];
    for x in [Experience::Responses, Experience::Days] {
        for y in 0..OUTCOMES {
            out[at::slope(x, y)] = table[col::sxy(x, y)] / table[col::sxx(x)];
        }
        let bins = match x {
            Experience::Responses => COUNT_BINS.len(),
            Experience::Days => DAY_BINS.len(),
        };
        for b in 0..bins {
            let c = col::bin(x, b);
            out[at::bin_mean(x, b)] = table[c + 1] / table[c];
        }
    }
    out
}

/// (responses, supporters) in a bin of the sample's table.
pub fn bin_sizes(table: &[f64], x: Experience, b: usize) -> (u64, u64) {
    let c = col::bin(x, b);
    (table[c] as u64, table[c + 2] as u64)
}

/// Names of the slope outcomes, in order.
pub fn outcome_names() -> [&'static str; OUTCOMES] {
    [
        "total",
        Mechanism::ALL[0].code(),
        Mechanism::ALL[1].code(),
        Mechanism::ALL[2].code(),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slope_is_within_supporter() {
        // Supporter 0 always scores 6, supporter 1 always 0 and writes later: pooling the two
        // without centring would find a decline; within each there is no change.
        let mut data = Interactions::default();
        for (who, level) in [(0u32, 2u8), (1, 0)] {
            for k in 0..8 {
                data.levels.push([level; 3]);
                data.responder.push(who);
                data.created_at
                    .push((who as f64 * 100.0 + k as f64) * 86_400.0);
                data.likes.push(f64::NAN);
                data.replied.push(f64::NAN);
                data.followed.push(f64::NAN);
            }
        }
        let d = learning_data(&data, 5);
        assert_eq!(
            (d.supporters, d.responses, d.excluded_supporters),
            (2, 16, 0)
        );
        let s = statistics(&d.units.table());
        assert_eq!(s[at::slope(Experience::Responses, 0)], 0.0);
        assert_eq!(s[at::bin_mean(Experience::Responses, 0)], 3.0);
        assert_eq!(
            bin_sizes(&d.units.table(), Experience::Responses, 3),
            (2, 2)
        );
        assert_eq!(learning_data(&data, 9).supporters, 0);

        // One supporter whose total rises by 1 per doubling: 1st→0, 2nd→1, 4th→2.
        let mut data = Interactions::default();
        for (k, level) in [(1, 0u8), (2, 1), (4, 2)] {
            data.levels.push([level, 0, 0]);
            data.responder.push(0);
            data.created_at.push(k as f64);
            data.likes.push(f64::NAN);
            data.replied.push(f64::NAN);
            data.followed.push(f64::NAN);
        }
        // n-th response is 1, 2, 3 here (ranks, not the k above): slope on log2(1, 2, 3).
        let s = statistics(&learning_data(&data, 2).units.table());
        let x = [0.0f64, 1.0, 3f64.log2()];
        let xm = x.iter().sum::<f64>() / 3.0;
        let expected = x
            .iter()
            .zip([-1.0, 0.0, 1.0])
            .map(|(a, b)| (a - xm) * b)
            .sum::<f64>()
            / x.iter().map(|a| (a - xm).powi(2)).sum::<f64>();
        assert!((s[at::slope(Experience::Responses, 0)] - expected).abs() < 1e-12);
        assert_eq!(s[at::slope(Experience::Responses, 2)], 0.0);
    }
}
