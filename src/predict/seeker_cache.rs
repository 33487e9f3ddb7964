//! A bounded cache of seeker encodings. On a platform a seeker post is answered many times (a
//! thread with many replies), and the seeker encoder is frozen: the same tokens always give
//! the same states, so a post is encoded again only when it is not in the cache.
//!
//! A post is kept once it has shown that it recurs: seen before, or used by several pairs of
//! the chunk that encoded it. A file of posts that each have one reply (the shared data's
//! files, 2,626 pairs of nearly as many posts) otherwise filled the whole budget with states
//! never asked for again: `predict` peaked at 576 MB there instead of 412 MB. A post that
//! recurs far apart is encoded twice, at its first sighting and its second, and then kept.

use candle_core::{Result, Tensor};
use std::collections::hash_map::DefaultHasher;
use std::collections::{HashMap, HashSet, VecDeque};
use std::hash::{Hash, Hasher};

/// Posts seen once whose sighting is remembered, the oldest forgotten first: 8 bytes of hash
/// each in the set and again in its order, a few MB.
const SEEN_MAX: usize = 1 << 18;

/// Encoded seeker posts by their token ids, the oldest evicted first once over `budget`
/// bytes of states.
pub struct SeekerCache {
    states: HashMap<Vec<u32>, Tensor>,
    order: VecDeque<Vec<u32>>,
    bytes: usize,
    budget: usize,
    /// Hashes of the token ids of posts seen once and not kept.
    seen: HashSet<u64>,
    seen_order: VecDeque<u64>,
    pub hits: u64,
    pub misses: u64,
}

/// The default budget: about 2,700 posts of 64 tokens of MiniLM (98 KB each), 4,100 of the
/// shared data's mean length (42 tokens). Posts recur far apart when a file is not sorted by
/// thread, and a miss costs a seeker encoding, as much as the pair's own scoring: with 64 MB,
/// a 100k-pair file of 2,752 distinct posts spread evenly re-encoded two posts in three.
/// Only recurring posts are kept, so a file of one reply per post stays far below it;
/// `--seeker-cache-mb` sets it per run (docs/PERFORMANCE.md).
pub const DEFAULT_BUDGET_BYTES: usize = 256 << 20;

impl SeekerCache {
    pub fn new(budget: usize) -> Self {
        Self {
            states: HashMap::new(),
            order: VecDeque::new(),
            bytes: 0,
            budget,
            seen: HashSet::new(),
            seen_order: VecDeque::new(),
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

    /// Offers the states of a post just encoded for `uses` pairs: kept if the post recurs
    /// (`uses` > 1, or seen before), else only its sighting is remembered.
    pub fn insert(&mut self, ids: Vec<u32>, states: Tensor, uses: usize) -> Result<()> {
        let size = states.elem_count() * states.dtype().size_in_bytes();
        if size > self.budget || self.states.contains_key(&ids) {
            return Ok(());
        }
        let key = {
            let mut h = DefaultHasher::new();
            ids.hash(&mut h);
            h.finish()
        };
        if uses < 2 && !self.seen.remove(&key) {
            if self.seen.len() == SEEN_MAX {
                if let Some(old) = self.seen_order.pop_front() {
                    self.seen.remove(&old);
                }
            }
            self.seen.insert(key);
            self.seen_order.push_back(key);
            return Ok(());
        }
        // A row of an encoded batch is a view of the whole batch's storage, which it would
        // keep alive; copied out element by element (candle's `copy` of a view clones the
        // whole storage beneath it).
        let states = Tensor::from_vec(
            states.flatten_all()?.to_vec1::<f32>()?,
            states.shape(),
            states.device(),
        )?;
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
        Ok(())
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
        c.insert(vec![1], t(), 2).unwrap();
        c.insert(vec![2], t(), 2).unwrap();
        c.insert(vec![3], t(), 2).unwrap();
        assert!(c.get(&[1]).is_none());
        assert!(c.get(&[2]).is_some() && c.get(&[3]).is_some());
        assert_eq!((c.hits, c.misses, c.bytes()), (2, 1, 256));
    }

    #[test]
    fn a_post_is_kept_from_its_second_sighting_or_when_its_chunk_uses_it_twice() {
        let t = || Tensor::zeros((4, 8), candle_core::DType::F32, &Device::Cpu).unwrap();
        let mut c = SeekerCache::new(1 << 20);
        c.insert(vec![1], t(), 1).unwrap();
        assert!(c.get(&[1]).is_none());
        assert_eq!(c.bytes(), 0);
        c.insert(vec![1], t(), 1).unwrap();
        assert!(c.get(&[1]).is_some());
        c.insert(vec![2], t(), 3).unwrap();
        assert!(c.get(&[2]).is_some());
        // A post seen once is not kept, however much room there is.
        for i in 3..100 {
            c.insert(vec![i], t(), 1).unwrap();
        }
        assert_eq!(c.bytes(), 256);
    }
}
