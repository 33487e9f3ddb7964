//! Percentile bootstrap over resampling units (interactions, or supporters when the data say
//! who wrote each response).
//!
//! Every statistic of the report is a function of a small table of sums (for example, per
//! combination of levels: interactions, likes, follows). Each unit contributes its own rows to
//! that table once, so a replicate is a weighted sum of the units' contributions: one pass
//! over the units, cheap enough for a million interactions and a thousand replicates. Weights
//! are Poisson(1) (the "Poisson bootstrap"): for large samples it matches the multinomial
//! bootstrap, and units can be weighted independently, in one sequential pass.

use crate::rng::SplitMix64;
use serde::Serialize;

/// Each unit's contributions to a table of `cells × width` sums.
#[derive(Clone, Debug)]
pub struct Units {
    cells: usize,
    width: usize,
    /// Start of each unit's entries; one more than there are units.
    offsets: Vec<usize>,
    cell_of: Vec<u16>,
    values: Vec<f64>,
}

impl Units {
    pub fn new(cells: usize, width: usize) -> Self {
        assert!(cells <= u16::MAX as usize);
        Self {
            cells,
            width,
            offsets: vec![0],
            cell_of: Vec::new(),
            values: Vec::new(),
        }
    }

    /// Adds a unit with its (cell, row of `width` sums) entries.
    pub fn push_unit<'a>(&mut self, entries: impl IntoIterator<Item = (usize, &'a [f64])>) {
        for (cell, row) in entries {
            debug_assert_eq!(row.len(), self.width);
            self.cell_of.push(cell as u16);
            self.values.extend_from_slice(row);
        }
        self.offsets.push(self.cell_of.len());
    }

    pub fn len(&self) -> usize {
        self.offsets.len() - 1
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The table of the sample itself.
    pub fn table(&self) -> Vec<f64> {
        let mut table = vec![0.0; self.cells * self.width];
        for (e, &cell) in self.cell_of.iter().enumerate() {
            add(
                &mut table,
                cell,
                self.width,
                &self.values[e * self.width..],
                1.0,
            );
        }
        table
    }

    /// `replicates` resampled tables. Replicate r draws from its own generator seeded by
    /// (seed, r), so the result does not depend on how many threads share the work.
    pub fn replicates(&self, replicates: usize, seed: u64) -> Vec<Vec<f64>> {
        let threads = std::thread::available_parallelism()
            .map_or(1, |n| n.get())
            .clamp(1, replicates.max(1));
        let per = replicates.div_ceil(threads);
        let mut out: Vec<Vec<f64>> = Vec::with_capacity(replicates);
        std::thread::scope(|scope| {
            let handles: Vec<_> = (0..threads)
                .map(|t| {
                    let range = (t * per).min(replicates)..((t + 1) * per).min(replicates);
                    scope.spawn(move || range.map(|r| self.replicate(seed, r)).collect::<Vec<_>>())
                })
                .collect();
            for h in handles {
                out.extend(h.join().expect("a bootstrap thread panicked"));
            }
        });
        out
    }

    fn replicate(&self, seed: u64, r: usize) -> Vec<f64> {
        let mut rng = SplitMix64::new(seed ^ (r as u64 + 1).wrapping_mul(0xA24B_AED4_963E_E407));
        let mut table = vec![0.0; self.cells * self.width];
        for u in 0..self.len() {
            let w = poisson1(&mut rng);
            if w == 0 {
                continue;
            }
            for e in self.offsets[u]..self.offsets[u + 1] {
                let row = &self.values[e * self.width..(e + 1) * self.width];
                add(&mut table, self.cell_of[e], self.width, row, w as f64);
            }
        }
        table
    }
}

#[inline]
fn add(table: &mut [f64], cell: u16, width: usize, row: &[f64], w: f64) {
    let dst = &mut table[cell as usize * width..(cell as usize + 1) * width];
    for (d, v) in dst.iter_mut().zip(row) {
        *d += w * v;
    }
}

/// P(X ≤ k) for X ~ Poisson(1), k = 0..; beyond the table the mass is below 1e-12.
const POISSON1_CDF: [f64; 14] = {
    let mut cdf = [0.0; 14];
    let mut p = 0.367_879_441_171_442_33; // e^-1
    let mut acc = 0.0;
    let mut k = 0;
    while k < 14 {
        acc += p;
        cdf[k] = acc;
        p /= (k + 1) as f64;
        k += 1;
    }
    cdf
};

fn poisson1(rng: &mut SplitMix64) -> u32 {
    let u = rng.next_f64();
    let mut k = 0;
    while k < POISSON1_CDF.len() - 1 && u >= POISSON1_CDF[k] {
        k += 1;
    }
    k as u32
}

/// A number of the report with its 95% percentile interval. The interval is absent when the
/// statistic is undefined in too many replicates (for example a rate of an empty group).
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct Estimate {
    #[serde(serialize_with = "finite_or_null")]
    pub value: f64,
    #[serde(serialize_with = "option_finite_or_null")]
    pub low: Option<f64>,
    #[serde(serialize_with = "option_finite_or_null")]
    pub high: Option<f64>,
}

impl Estimate {
    pub fn contains(&self, x: f64) -> bool {
        matches!((self.low, self.high), (Some(l), Some(h)) if l <= x && x <= h)
    }

    pub fn is_defined(&self) -> bool {
        self.value.is_finite()
    }
}

fn finite_or_null<S: serde::Serializer>(x: &f64, s: S) -> Result<S::Ok, S::Error> {
    if x.is_finite() {
        s.serialize_f64(round(*x))
    } else {
        s.serialize_none()
    }
}

fn option_finite_or_null<S: serde::Serializer>(x: &Option<f64>, s: S) -> Result<S::Ok, S::Error> {
    match x {
        Some(v) => finite_or_null(v, s),
        None => s.serialize_none(),
    }
}

/// Ten significant digits: enough for any reader, and stable text across platforms.
pub(crate) fn round(x: f64) -> f64 {
    if x == 0.0 {
        return 0.0;
    }
    format!("{x:.9e}").parse().unwrap_or(x)
}

/// Share of replicates in which a statistic may be undefined before its interval is dropped.
const MAX_UNDEFINED: f64 = 0.01;

/// Point estimates with percentile intervals: `point[i]` and the i-th statistic of each
/// replicate.
pub fn estimates(point: &[f64], replicates: &[Vec<f64>], confidence: f64) -> Vec<Estimate> {
    let alpha = (1.0 - confidence) / 2.0;
    let mut column = Vec::with_capacity(replicates.len());
    point
        .iter()
        .enumerate()
        .map(|(i, &value)| {
            column.clear();
            column.extend(replicates.iter().map(|r| r[i]).filter(|x| x.is_finite()));
            let undefined = replicates.len() - column.len();
            if !value.is_finite()
                || column.is_empty()
                || undefined as f64 > MAX_UNDEFINED * replicates.len() as f64
            {
                return Estimate {
                    value,
                    low: None,
                    high: None,
                };
            }
            column.sort_by(f64::total_cmp);
            Estimate {
                value,
                low: Some(quantile(&column, alpha)),
                high: Some(quantile(&column, 1.0 - alpha)),
            }
        })
        .collect()
}

/// Linear interpolation between order statistics (type 7, the default of R and numpy).
fn quantile(sorted: &[f64], q: f64) -> f64 {
    let h = (sorted.len() - 1) as f64 * q;
    let lo = h.floor() as usize;
    let hi = h.ceil() as usize;
    sorted[lo] + (h - lo as f64) * (sorted[hi] - sorted[lo])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn poisson_weights_have_mean_and_variance_one() {
        let mut rng = SplitMix64::new(3);
        let n = 200_000;
        let draws: Vec<f64> = (0..n).map(|_| poisson1(&mut rng) as f64).collect();
        let mean = draws.iter().sum::<f64>() / n as f64;
        let var = draws.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / n as f64;
        assert!(
            (mean - 1.0).abs() < 0.01 && (var - 1.0).abs() < 0.02,
            "{mean} {var}"
        );
        assert!((POISSON1_CDF[13] - 1.0).abs() < 1e-9);
    }

    #[test]
    fn interval_of_a_mean_matches_the_normal_theory_one() {
        // 2000 units with values 0..9 repeating: sd of the mean = sqrt(8.25 / 2000).
        let mut units = Units::new(1, 2);
        for i in 0..2000 {
            units.push_unit([(0, &[1.0, (i % 10) as f64][..])]);
        }
        let mean = |t: &[f64]| vec![t[1] / t[0]];
        let point = mean(&units.table());
        let reps: Vec<Vec<f64>> = units.replicates(2000, 7).iter().map(|t| mean(t)).collect();
        let e = estimates(&point, &reps, 0.95)[0];
        assert_eq!(e.value, 4.5);
        let half = 1.96 * (8.25f64 / 2000.0).sqrt();
        let (lo, hi) = (e.low.unwrap(), e.high.unwrap());
        assert!((4.5 - lo - half).abs() < 0.2 * half, "{lo}");
        assert!((hi - 4.5 - half).abs() < 0.2 * half, "{hi}");
        // Same seed, same replicates.
        assert_eq!(units.replicates(3, 7), units.replicates(3, 7));
        assert_ne!(units.replicates(3, 7), units.replicates(3, 8));
    }

    #[test]
    fn undefined_statistics_have_no_interval() {
        let point = [f64::NAN, 1.0];
        let reps = vec![vec![f64::NAN, 1.0]; 10];
        let e = estimates(&point, &reps, 0.95);
        assert_eq!((e[0].low, e[1].low), (None, Some(1.0)));
        assert_eq!(
            serde_json::to_string(&e[0]).unwrap(),
            r#"{"value":null,"low":null,"high":null}"#
        );
    }
}
