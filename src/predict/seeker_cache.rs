//! A bounded cache of seeker encodings. On a platform a seeker post is answered many times (a
//! thread with many replies), and the seeker encoder is frozen: the same tokens always give
//! the same states, so a post is encoded again only when it is not in the cache.
//!
//! A post is kept only while it has uses to come. A file of posts that each have one reply
//! (the shared data's files, 2,626 pairs of nearly as many posts) otherwise filled the whole
//! budget with states never asked for again: `predict` peaked at 576 MB there instead of
//! 412 MB. When the whole input was counted beforehand ([`SeekerCache::expect`], `predict` on
//! a file), that is known exactly, and a post leaves the cache after its last use. Without a
//! count (a stream), a post is kept once it has shown that it recurs: seen before, or used by
//! several pairs of the chunk that encoded it; a post that recurs far apart is then encoded
//! twice, at its first sighting and its second (on an input that spreads 2,752 posts evenly
//! over 10,000 pairs, scoring took 23% longer that way).

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
    /// Uses still to come of each post, by [`post_key`], when the input was counted.
    ahead: Option<HashMap<u64, u32>>,
    /// Without a count: posts seen once and not kept, by [`post_key`].
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
            ahead: None,
            seen: HashSet::new(),
            seen_order: VecDeque::new(),
            hits: 0,
            misses: 0,
        }
    }

    /// From now on, keep exactly the posts with uses to come: `uses` counts every pair still
    /// to be scored by the [`post_key`] of its seeker post's token ids, and each [`Self::get`]
    /// is one use.
    pub fn expect(&mut self, uses: HashMap<u64, u32>) {
        self.ahead = Some(uses);
    }

    /// The states (tokens, hidden) of a post with these token ids, if cached; one use of the
    /// post. A post used for the last time leaves the cache.
    pub fn get(&mut self, ids: &[u32]) -> Option<Tensor> {
        let found = self.states.get(ids).cloned();
        match found {
            Some(_) => self.hits += 1,
            None => self.misses += 1,
        }
        if let Some(ahead) = &mut self.ahead {
            let left = ahead.get_mut(&post_key(ids)).map(|n| {
                *n = n.saturating_sub(1);
                *n
            });
            if left.unwrap_or(0) == 0 {
                self.remove(ids);
            }
        }
        found
    }

    fn remove(&mut self, ids: &[u32]) {
        if let Some(t) = self.states.remove(ids) {
            self.bytes -= t.elem_count() * t.dtype().size_in_bytes();
            self.order.retain(|o| o.as_slice() != ids);
        }
    }

    /// Offers the states of a post just encoded for `uses` pairs of its chunk. With counted
    /// uses, kept if uses are still to come; without, kept if the post recurs (`uses` > 1, or
    /// seen before), else only its sighting is remembered.
    pub fn insert(&mut self, ids: Vec<u32>, states: Tensor, uses: usize) -> Result<()> {
        let size = states.elem_count() * states.dtype().size_in_bytes();
        if size > self.budget || self.states.contains_key(&ids) {
            return Ok(());
        }
        let key = post_key(&ids);
        if let Some(ahead) = &self.ahead {
            if ahead.get(&key).is_none_or(|&n| n == 0) {
                return Ok(());
            }
        } else if uses < 2 && !self.seen.remove(&key) {
            // The order also holds posts kept since (removed from the set): bounding it
            // bounds both.
            if self.seen_order.len() >= SEEN_MAX {
                if let Some(old) = self.seen_order.pop_front() {
                    self.seen.remove(&old);
                }
            }
            self.seen.insert(key);
            self.seen_order.push_back(key);
            return Ok(());
        }
        // A row of an encoded batch is a view of the whole batch's storage, which it would
        // keep alive.
        let states = crate::kernels::own_storage(&states)?;
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

/// What the cache's counts know a post by: a hash of its token ids. A collision can only keep
/// a post that is not needed, or encode one again; the states are looked up by the ids.
pub fn post_key(ids: &[u32]) -> u64 {
    key_of(ids)
}

/// A 64-bit hash of `value`, the same in every run (std's hasher with its fixed keys).
pub(crate) fn key_of<T: Hash + ?Sized>(value: &T) -> u64 {
    let mut h = DefaultHasher::new();
    value.hash(&mut h);
    h.finish()
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

    #[test]
    fn with_counted_uses_a_post_is_kept_exactly_while_uses_remain() {
        let t = || Tensor::zeros((4, 8), candle_core::DType::F32, &Device::Cpu).unwrap();
        let mut c = SeekerCache::new(1 << 20);
        // Post 1 is used by three pairs (one chunk, then two later); post 2 by one.
        c.expect(HashMap::from([(post_key(&[1]), 3), (post_key(&[2]), 1)]));
        assert!(c.get(&[1]).is_none());
        assert!(c.get(&[2]).is_none());
        c.insert(vec![1], t(), 1).unwrap();
        c.insert(vec![2], t(), 1).unwrap();
        // Kept at its first sighting, since more uses come; post 2 has none left.
        assert_eq!(c.bytes(), 128);
        assert!(c.get(&[1]).is_some());
        assert_eq!(c.bytes(), 128);
        // The last use hands the states out and frees them.
        assert!(c.get(&[1]).is_some());
        assert_eq!(c.bytes(), 0);
        assert!(c.get(&[1]).is_none());
    }
}
