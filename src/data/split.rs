//! Deterministic train/dev split, grouped by seeker post and stratified by level.

use super::epitome::{Dataset, Example};
use crate::mechanism::{Mechanism, NUM_LEVELS};
use crate::rng::SplitMix64;
use crate::OptionError;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};

/// The ids (see [`Example::id`]) on each side of a split; written into every bundle so that a
/// published model comes with its published split.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Split {
    pub seed: u64,
    pub dev_fraction: f64,
    pub train: Vec<String>,
    pub dev: Vec<String>,
}

impl Split {
    /// The examples of each side, in dataset order.
    pub fn partition<'a>(&self, examples: &'a [Example]) -> (Vec<&'a Example>, Vec<&'a Example>) {
        let dev: std::collections::HashSet<&str> = self.dev.iter().map(String::as_str).collect();
        examples
            .iter()
            .partition(|e| !dev.contains(e.id().as_str()))
    }
}

fn find(parent: &mut [usize], mut i: usize) -> usize {
    while parent[i] != i {
        parent[i] = parent[parent[i]];
        i = parent[i];
    }
    i
}

fn normalized(text: &str) -> String {
    text.split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .to_lowercase()
}

/// Groups of examples that must stay on one side (same sp_id or same seeker text up to
/// whitespace and case), by stratum: a group's rarest (mechanism, level) class, so that the
/// rare classes that dominate macro-F1 (level 1 of IP and EX) are spread over the sides.
fn strata(examples: &[Example]) -> BTreeMap<(usize, usize, usize), Vec<Vec<usize>>> {
    let n = examples.len();
    let mut parent: Vec<usize> = (0..n).collect();
    let mut first_by_key: HashMap<String, usize> = HashMap::new();
    for (i, e) in examples.iter().enumerate() {
        for key in [
            format!("id:{}", e.sp_id),
            format!("text:{}", normalized(&e.seeker_post)),
        ] {
            match first_by_key.get(&key) {
                Some(&j) => {
                    let (a, b) = (find(&mut parent, i), find(&mut parent, j));
                    parent[a] = b;
                }
                None => {
                    first_by_key.insert(key, i);
                }
            }
        }
    }
    let mut groups: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
    for i in 0..n {
        let root = find(&mut parent, i);
        groups.entry(root).or_default().push(i);
    }

    let mut class_count = [[0usize; NUM_LEVELS]; 3];
    for e in examples {
        for m in Mechanism::ALL {
            class_count[m.index()][e.label(m).level as usize] += 1;
        }
    }
    let mut strata: BTreeMap<(usize, usize, usize), Vec<Vec<usize>>> = BTreeMap::new();
    for members in groups.into_values() {
        let rarest = members
            .iter()
            .flat_map(|&i| {
                Mechanism::ALL.map(|m| {
                    let level = examples[i].label(m).level as usize;
                    (class_count[m.index()][level], m.index(), level)
                })
            })
            .min()
            .unwrap_or((0, 0, 0));
        strata.entry(rarest).or_default().push(members);
    }
    strata
}

fn split_of(examples: &[Example], is_dev: &[bool], seed: u64, dev_fraction: f64) -> Split {
    let (mut train, mut dev) = (Vec::new(), Vec::new());
    for (e, &d) in examples.iter().zip(is_dev) {
        if d {
            dev.push(e.id())
        } else {
            train.push(e.id())
        }
    }
    Split {
        seed,
        dev_fraction,
        train,
        dev,
    }
}

/// Splits `examples` so that no seeker post is on both sides, and each stratum keeps its share
/// on the dev side.
pub fn split_dev(examples: &[Example], dev_fraction: f64, seed: u64) -> Split {
    let mut rng = SplitMix64::new(seed);
    let mut is_dev = vec![false; examples.len()];
    for groups in strata(examples).values_mut() {
        rng.shuffle(groups);
        let total: usize = groups.iter().map(Vec::len).sum();
        let target = (total as f64 * dev_fraction).round() as usize;
        let mut taken = 0;
        for g in groups.iter() {
            if taken >= target {
                break;
            }
            taken += g.len();
            for &i in g {
                is_dev[i] = true;
            }
        }
    }
    split_of(examples, &is_dev, seed, dev_fraction)
}

/// The split a training run with these settings draws: fold `fold` of grouped k-fold when
/// given, else a `dev_fraction` dev side. `epitome pretrain` reads the same training side as
/// the `epitome train` it prepares, so that no dev text is seen before fine-tuning.
pub fn split_for(examples: &[Example], fold: Option<Fold>, dev_fraction: f64, seed: u64) -> Split {
    match fold {
        Some(fold) => split_fold(examples, fold, seed),
        None => split_dev(examples, dev_fraction, seed),
    }
}

impl Dataset {
    /// The first `limit` pairs (all when `None`), the report counting them, and the split a
    /// run with these settings draws from them ([`split_for`]): `epitome train` and the
    /// `epitome pretrain` that prepares it read their sides through this one path.
    pub fn for_run(
        mut self,
        limit: Option<usize>,
        fold: Option<Fold>,
        dev_fraction: f64,
        seed: u64,
    ) -> (Self, Split) {
        if let Some(limit) = limit {
            self.examples.truncate(limit);
        }
        self.report.pairs = self.examples.len();
        let split = split_for(&self.examples, fold, dev_fraction, seed);
        (self, split)
    }
}

/// Checks the split settings a command takes (`--dev-fraction`, `--fold`), naming the flag.
pub fn check_split_options(dev_fraction: f64, fold: Option<Fold>) -> Result<(), OptionError> {
    OptionError::check(
        fold.is_none_or(|f| f.count >= 2 && f.index < f.count),
        "--fold",
        "INDEX/COUNT with COUNT at least 2 and INDEX below COUNT",
    )?;
    OptionError::check(
        (0.0..1.0).contains(&dev_fraction),
        "--dev-fraction",
        "in [0, 1)",
    )
}

/// Which of `count` grouped folds is the dev side; written `INDEX/COUNT` (0-based index).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Fold {
    pub index: usize,
    pub count: usize,
}

impl std::str::FromStr for Fold {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (index, count) = s
            .split_once('/')
            .ok_or_else(|| format!("'{s}': expected INDEX/COUNT, e.g. 0/5"))?;
        let number = |v: &str| {
            v.trim()
                .parse::<usize>()
                .map_err(|_| format!("'{s}': expected INDEX/COUNT, e.g. 0/5"))
        };
        Ok(Fold {
            index: number(index)?,
            count: number(count)?,
        })
    }
}

/// Grouped, stratified k-fold: the groups of each stratum are dealt, in a seeded order, to the
/// fold that holds the fewest pairs of that stratum so far; fold `fold.index` is dev. Over the
/// `count` folds every pair is in dev exactly once.
pub fn split_fold(examples: &[Example], fold: Fold, seed: u64) -> Split {
    let count = fold.count.max(1);
    let mut rng = SplitMix64::new(seed);
    let mut fold_of = vec![0usize; examples.len()];
    for groups in strata(examples).values_mut() {
        rng.shuffle(groups);
        let mut sizes = vec![0usize; count];
        for g in groups.iter() {
            let k = (0..count).min_by_key(|&k| (sizes[k], k)).unwrap_or(0);
            sizes[k] += g.len();
            for &i in g {
                fold_of[i] = k;
            }
        }
    }
    let is_dev: Vec<bool> = fold_of.iter().map(|&k| k == fold.index).collect();
    split_of(examples, &is_dev, seed, 1.0 / count as f64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::MechanismLabel;

    fn example(sp: usize, rp: usize, seeker: &str, levels: [u8; 3]) -> Example {
        Example {
            occurrence: 1,
            sp_id: sp.to_string(),
            rp_id: rp.to_string(),
            seeker_post: seeker.into(),
            response_post: "r".into(),
            labels: levels.map(|level| MechanismLabel {
                level,
                spans: vec![],
            }),
        }
    }

    #[test]
    fn grouped_by_seeker_deterministic_and_stratified() {
        let mut examples = Vec::new();
        for i in 0..200 {
            let rare = if i % 10 == 0 { 1 } else { 0 };
            examples.push(example(i, 2 * i, &format!("seeker {i}"), [0, rare, 2]));
            // A second response to the same seeker post, and one whose text differs only in case.
            examples.push(example(i, 2 * i + 1, &format!("Seeker  {i}"), [1, 0, 0]));
        }
        let a = split_dev(&examples, 0.2, 12);
        let b = split_dev(&examples, 0.2, 12);
        assert_eq!(a, b);
        assert_ne!(a.dev, split_dev(&examples, 0.2, 13).dev);
        assert_eq!(a.train.len() + a.dev.len(), examples.len());
        let (train, dev) = a.partition(&examples);
        let dev_seekers: std::collections::HashSet<_> = dev.iter().map(|e| &e.sp_id).collect();
        assert!(train.iter().all(|e| !dev_seekers.contains(&e.sp_id)));
        assert!((dev.len() as f64 - 80.0).abs() <= 4.0, "{}", dev.len());
        let rare_in_dev = dev.iter().filter(|e| e.labels[1].level == 1).count();
        assert_eq!(rare_in_dev, 4, "the rare class keeps its share");
    }

    #[test]
    fn folds_put_every_pair_in_dev_once_and_keep_seekers_together() {
        let mut examples = Vec::new();
        for i in 0..150 {
            let rare = if i % 10 == 0 { 1 } else { 0 };
            examples.push(example(i, 2 * i, &format!("seeker {i}"), [0, rare, 2]));
            examples.push(example(i, 2 * i + 1, &format!("Seeker  {i}"), [1, 0, 0]));
        }
        let mut times_in_dev = std::collections::HashMap::new();
        for index in 0..5 {
            let split = split_fold(&examples, Fold { index, count: 5 }, 12);
            assert_eq!(split.train.len() + split.dev.len(), examples.len());
            let (train, dev) = split.partition(&examples);
            let dev_seekers: std::collections::HashSet<_> = dev.iter().map(|e| &e.sp_id).collect();
            assert!(train.iter().all(|e| !dev_seekers.contains(&e.sp_id)));
            assert_eq!(dev.len(), 60);
            assert_eq!(dev.iter().filter(|e| e.labels[1].level == 1).count(), 3);
            for id in split.dev {
                *times_in_dev.entry(id).or_insert(0) += 1;
            }
        }
        assert_eq!(times_in_dev.len(), examples.len());
        assert!(times_in_dev.values().all(|&n| n == 1));
    }
}
