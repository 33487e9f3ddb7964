//! A bounded cache of seeker encodings. On a platform a seeker post is answered many times (a
//! thread with many replies), and the seeker encoder is frozen: the same tokens always give
//! the same states, so each distinct post is encoded once while it stays in the cache.

use candle_core::Tensor;
use std::collections::{HashMap, VecDeque};

/// Encoded seeker posts by their token ids, the oldest evicted first once over `budget`
/// bytes of states.
pub struct SeekerCache {
    states: HashMap<Vec<u32>, Tensor>,
    order: VecDeque<Vec<u32>>,
    bytes: usize,
    budget: usize,
    pub hits: u64,
    pub misses: u64,
}

/// The default budget: about 2,700 posts of 64 tokens of MiniLM (98 KB each), 4,100 of the
/// shared data's mean length (42 tokens). Posts recur far apart when a file is not sorted by
/// thread, and a miss costs a seeker encoding, as much as the pair's own scoring: with 64 MB,
/// a 100k-pair file of 2,752 distinct posts spread evenly re-encoded two posts in three.
/// `predict` stays under 1 GB with it; `--seeker-cache-mb` sets it per run (with 0,
/// `predict` on the 2,626 pairs of the ER file peaks at 448 MB instead of 577 MB;
/// docs/PERFORMANCE.md).
pub const DEFAULT_BUDGET_BYTES: usize = 256 << 20;

impl SeekerCache {
    pub fn new(budget: usize) -> Self {
        Self {
            states: HashMap::new(),
            order: VecDeque::new(),
            bytes: 0,
            budget,
            hits: 0,
            misses: 0,
        }
    }

    /// The states (tokens, hidden) of a post with these token ids, if cached.
    pub fn get(&mut self, ids: &[u32]) -> Option<Tensor> {
        let found = self.states.get(ids).cloned();
        match found {
            Some(_) => self.hits += 1,
            None => self.misses += 1,
        }
        found
    }

    pub fn insert(&mut self, ids: Vec<u32>, states: Tensor) {
        let size = states.elem_count() * states.dtype().size_in_bytes();
        if size > self.budget || self.states.contains_key(&ids) {
            return;
        }
        while self.bytes + size > self.budget {
            let Some(old) = self.order.pop_front() else {
                break;
            };
            if let Some(t) = self.states.remove(&old) {
                self.bytes -= t.elem_count() * t.dtype().size_in_bytes();
            }
        }
        self.bytes += size;
        self.order.push_back(ids.clone());
        self.states.insert(ids, states);
    }

    /// Bytes of states held.
    pub fn bytes(&self) -> usize {
        self.bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn the_oldest_posts_leave_first_once_over_budget() {
        let t = || Tensor::zeros((4, 8), candle_core::DType::F32, &Device::Cpu).unwrap();
        // 128 bytes each; room for two.
        let mut c = SeekerCache::new(300);
        c.insert(vec![1], t());
        c.insert(vec![2], t());
        c.insert(vec![3], t());
        assert!(c.get(&[1]).is_none());
        assert!(c.get(&[2]).is_some() && c.get(&[3]).is_some());
        assert_eq!((c.hits, c.misses, c.bytes()), (2, 1, 256));
    }
}
