//! Batched inference: tokenized pairs in, levels, probabilities and rationale tokens out.

use super::seeker_cache::SeekerCache;
use super::BATCH;
use crate::encoder::layers::Mode;
use crate::encoder::TokenBatch;
use crate::kernels::{self, Precision};
use crate::mechanism::{Mechanism, NUM_LEVELS};
use crate::model::{BiEncoder, SeekerSide};
use crate::text::{Encoded, TextEncoder};
use candle_core::{Device, Result, Tensor};
use std::sync::atomic::{AtomicUsize, Ordering};

/// Batches up to this many pairs encode seeker and response posts concurrently.
const PARALLEL_ENCODERS_MAX_PAIRS: usize = 4;

/// What the model says about one response for one mechanism.
#[derive(Clone, Debug, PartialEq)]
pub struct MechanismScore {
    pub mechanism: Mechanism,
    pub level: u8,
    pub probs: [f32; NUM_LEVELS],
    /// One flag per response token. Tokens are flagged only when the predicted level is above 0:
    /// rationales are the evidence for a level, and level 0 has none (as in the annotations).
    pub rationale_tokens: Vec<bool>,
}

/// A model with the tokenizer it was trained with.
pub struct Scorer<'a> {
    pub model: &'a BiEncoder,
    pub text: &'a TextEncoder,
    pub pad_id: u32,
    pub device: &'a Device,
}

impl Scorer<'_> {
    /// Scores pairs already tokenized, as one batch; returns, per pair, one score per model
    /// mechanism.
    pub fn score_encoded(
        &self,
        seekers: &[&Encoded],
        responses: &[&Encoded],
    ) -> Result<Vec<Vec<MechanismScore>>> {
        if seekers.is_empty() {
            return Ok(Vec::new());
        }
        let seeker_batch = padded_batch_of(seekers, self.pad_id, self.pad_to(), self.device)?;
        let response_batch = padded_batch_of(responses, self.pad_id, self.pad_to(), self.device)?;
        // The seeker and responder encoders are independent. A small batch leaves a core idle
        // inside each matrix product, so the two run side by side, each single-threaded; a
        // large batch keeps both cores busy already.
        // Each side carries on into its part of the heads, which needs nothing of the other.
        let seeker_side = || {
            let states = self.model.encode_seekers(&seeker_batch)?;
            self.model.seeker_side(&states, &seeker_batch.mask)
        };
        let response_side = || {
            let precision = self.model.precision();
            let states = self.model.encode_responses_at(&response_batch, precision)?;
            self.model.response_side(states, &response_batch.mask)
        };
        let (seeker, response) = if seekers.len() <= PARALLEL_ENCODERS_MAX_PAIRS {
            kernels::join_single_threaded(seeker_side, response_side)
        } else {
            (seeker_side(), response_side())
        };
        let seeker = seeker?;
        let logits = self.model.heads_of(&seeker, &response?, Mode::Infer)?;
        let scores = self.scores(&logits, responses)?;
        // The seeker encoder runs in f32 at every precision, so close calls reuse its side
        // of the heads: only their responses are encoded again.
        self.settle_close_calls(scores, |close| {
            let r: Vec<&Encoded> = close.iter().map(|&i| responses[i]).collect();
            self.score_responses(&seeker.rows(close)?, &r, Precision::F32)
        })
    }

    /// Scores `responses` against their pairs' seeker side of the heads, the responder's
    /// products at `precision`.
    fn score_responses(
        &self,
        seeker: &SeekerSide,
        responses: &[&Encoded],
        precision: Precision,
    ) -> Result<Vec<Vec<MechanismScore>>> {
        let batch = padded_batch_of(responses, self.pad_id, self.pad_to(), self.device)?;
        let states = self.model.encode_responses_at(&batch, precision)?;
        let response = self.model.response_side(states, &batch.mask)?;
        let logits = self.model.heads_of(seeker, &response, Mode::Infer)?;
        self.scores(&logits, responses)
    }

    /// The length every post is padded to: the maximum for imported models that need it
    /// (see `ModelConfig::pad_to_max_len`), else none beyond the batch's longest.
    fn pad_to(&self) -> Option<usize> {
        self.model
            .config()
            .pad_to_max_len
            .then_some(self.text.max_len())
    }

    /// Sentence embeddings of seeker posts: the unit-length mean of the frozen seeker
    /// encoder's token states (specials included), as sentence-transformers pools
    /// all-MiniLM-L6-v2. Each post is encoded alone, unpadded, so that its embedding does not
    /// depend on the others.
    pub fn seeker_embeddings(&self, seekers: &[&Encoded]) -> Result<Vec<Vec<f32>>> {
        seekers
            .iter()
            .map(|s| {
                let batch = padded_batch_of(&[*s], self.pad_id, None, self.device)?;
                let states = self.model.encode_seekers(&batch)?;
                let mean: Vec<f32> = states.get(0)?.mean(0)?.to_vec1()?;
                Ok(unit_length(mean))
            })
            .collect()
    }

    /// Whether seeker states may be cached: only for models whose responses never attend to
    /// seeker padding, since cached states are padded with zeros, not with the encoder's
    /// states of padding tokens.
    fn caches_seekers(&self) -> bool {
        let config = self.model.config();
        config.mask_seeker_padding && !config.pad_to_max_len
    }

    /// Scores many batches of pairs: `batches` holds indices into `seekers` and `responses`,
    /// and the result holds one entry per pair, in input order. The seeker states come from
    /// `cache` where it has them. Batches run on two threads, each batch on one thread where
    /// every product is single-threaded: on a 2-core host that keeps both cores busy through
    /// the serial parts between products, which a product split across the cores leaves idle
    /// (a fifth of the time).
    pub fn score_batches(
        &self,
        seekers: &[&Encoded],
        responses: &[&Encoded],
        batches: &[&[usize]],
        cache: Option<&mut SeekerCache>,
    ) -> Result<Vec<Vec<MechanismScore>>> {
        let rows = match cache.filter(|_| self.caches_seekers()) {
            Some(cache) => Some(self.seeker_rows(seekers, cache)?),
            None => None,
        };
        let score = |batch: &[usize]| {
            let s: Vec<&Encoded> = batch.iter().map(|&i| seekers[i]).collect();
            let r: Vec<&Encoded> = batch.iter().map(|&i| responses[i]).collect();
            match &rows {
                Some(rows) => {
                    let rows: Vec<Tensor> = batch.iter().map(|&i| rows[i].clone()).collect();
                    let precision = self.model.precision();
                    let scores = self.score_with_seeker_rows(&rows, &s, &r, precision)?;
                    // Close calls reuse the cached seeker states: only their responses are
                    // encoded again.
                    self.settle_close_calls(scores, |close| {
                        let rows: Vec<Tensor> = close.iter().map(|&i| rows[i].clone()).collect();
                        let s: Vec<&Encoded> = close.iter().map(|&i| s[i]).collect();
                        let r: Vec<&Encoded> = close.iter().map(|&i| r[i]).collect();
                        self.score_with_seeker_rows(&rows, &s, &r, Precision::F32)
                    })
                }
                None => self.score_encoded(&s, &r),
            }
        };
        let mut out: Vec<Vec<MechanismScore>> = vec![Vec::new(); seekers.len()];
        let mut place = |batch: &[usize], scores: Vec<Vec<MechanismScore>>| {
            for (&i, s) in batch.iter().zip(scores) {
                out[i] = s;
            }
        };
        // Batches this small encode their seeker and response posts side by side already
        // (`score_encoded`), on the same two threads.
        let (large, small): (Vec<&[usize]>, Vec<&[usize]>) = batches
            .iter()
            .partition(|b| b.len() > PARALLEL_ENCODERS_MAX_PAIRS);
        // Each thread takes the next batch when it is done with one: batches differ in
        // length and in how many close calls they hold, and two threads that waited for each
        // other after every pair of batches left a sixth of the cores' time idle. The longest
        // go first, so that what one thread is left with at the end, while the other waits, is
        // short.
        let mut by_length: Vec<usize> = (0..large.len()).collect();
        by_length.sort_by_key(|&i| std::cmp::Reverse(longest_response(responses, large[i])));
        let next = AtomicUsize::new(0);
        let worker = || -> Result<Vec<(usize, Vec<Vec<MechanismScore>>)>> {
            let mut done = Vec::new();
            loop {
                let k = next.fetch_add(1, Ordering::Relaxed);
                let Some(&i) = by_length.get(k) else {
                    return Ok(done);
                };
                done.push((i, score(large[i])?));
            }
        };
        let (a, b) = kernels::join_single_threaded(worker, worker);
        for (i, scores) in a?.into_iter().chain(b?) {
            place(large[i], scores);
        }
        for batch in small {
            place(batch, score(batch)?);
        }
        Ok(out)
    }

    /// Scores one batch whose seeker states (tokens, hidden), one per pair, are given, with
    /// the responder's products at `precision`.
    fn score_with_seeker_rows(
        &self,
        rows: &[Tensor],
        seekers: &[&Encoded],
        responses: &[&Encoded],
        precision: Precision,
    ) -> Result<Vec<Vec<MechanismScore>>> {
        let seeker_batch = padded_batch_of(seekers, self.pad_id, None, self.device)?;
        let width = seeker_batch.lengths.iter().copied().max().unwrap_or(0);
        let padded = rows
            .iter()
            .map(|r| r.pad_with_zeros(0, 0, width - r.dim(0)?))
            .collect::<Result<Vec<_>>>()?;
        let states = Tensor::stack(&padded, 0)?;
        let seeker = self.model.seeker_side(&states, &seeker_batch.mask)?;
        self.score_responses(&seeker, responses, precision)
    }

    /// Under int8 products, the pairs whose decision for some mechanism is a close call (its
    /// margin is under [`Precision::close_call_margin`]) are scored again in f32 by
    /// `in_f32` (given their indices): their levels, probabilities and rationales become
    /// f32's. The rest keep int8's: their margins are larger than any change int8 was measured
    /// to make to one, so their levels are f32's too.
    fn settle_close_calls(
        &self,
        mut scores: Vec<Vec<MechanismScore>>,
        in_f32: impl FnOnce(&[usize]) -> Result<Vec<Vec<MechanismScore>>>,
    ) -> Result<Vec<Vec<MechanismScore>>> {
        let Some(limit) = self.model.precision().close_call_margin() else {
            return Ok(scores);
        };
        let offsets = &self.model.config().level_offsets;
        let close: Vec<usize> = (0..scores.len())
            .filter(|&i| {
                scores[i]
                    .iter()
                    .any(|s| offsets.margin(s.mechanism, &s.probs) < limit)
            })
            .collect();
        if close.is_empty() {
            return Ok(scores);
        }
        let again = in_f32(&close)?;
        for (i, again) in close.into_iter().zip(again) {
            scores[i] = again;
        }
        Ok(scores)
    }

    /// Seeker states (tokens, hidden), one per post of `seekers`, encoding only the posts
    /// `cache` lacks (and leaving them there).
    fn seeker_rows(&self, seekers: &[&Encoded], cache: &mut SeekerCache) -> Result<Vec<Tensor>> {
        let mut rows: Vec<Option<Tensor>> = seekers.iter().map(|s| cache.get(&s.ids)).collect();
        // Posts are encoded in batches of one length, without padding, so that a post's
        // states do not depend on which posts it was batched with: a cached state is the one
        // any later run computes (a resumed run's rows equal an uninterrupted run's).
        let mut by_len: std::collections::BTreeMap<usize, Vec<&Encoded>> = Default::default();
        for (i, s) in seekers.iter().enumerate() {
            if rows[i].is_none() {
                let group = by_len.entry(s.ids.len()).or_default();
                if !group.iter().any(|g| g.ids == s.ids) {
                    group.push(s);
                }
            }
        }
        let groups: Vec<Vec<&Encoded>> = by_len.into_values().collect();
        let encode = |groups: &[Vec<&Encoded>]| -> Result<Vec<(Vec<u32>, Tensor)>> {
            let mut states = Vec::new();
            // At most a batch's rows at a time, so that one encoding's memory is bounded
            // whatever the chunk holds: its truncated posts all have the maximum length, and a
            // group of a hundred of them is 60 MB in each feed-forward product.
            for rows in groups.iter().flat_map(|g| g.chunks(BATCH)) {
                let batch = padded_batch_of(rows, self.pad_id, None, self.device)?;
                let encoded = self.model.encode_seekers(&batch)?;
                for (k, s) in rows.iter().enumerate() {
                    states.push((s.ids.clone(), encoded.get(k)?.contiguous()?));
                }
            }
            Ok(states)
        };
        // The groups are split in two halves of about the same number of tokens, each
        // encoded on a thread of its own (see `score_batches`).
        let tokens: usize = groups.iter().map(|g| g.len() * g[0].len()).sum();
        let mut split = 0;
        let mut first_half = 0;
        while split < groups.len() && 2 * first_half < tokens {
            first_half += groups[split].len() * groups[split][0].len();
            split += 1;
        }
        let fresh = if split > 0 && split < groups.len() {
            let (a, b) = kernels::join_single_threaded(
                || encode(&groups[..split]),
                || encode(&groups[split..]),
            );
            let mut a = a?;
            a.extend(b?);
            a
        } else {
            encode(&groups)?
        };
        let by_ids: std::collections::HashMap<&[u32], &Tensor> = fresh
            .iter()
            .map(|(ids, state)| (ids.as_slice(), state))
            .collect();
        for (i, row) in rows.iter_mut().enumerate() {
            if row.is_none() {
                *row = by_ids.get(seekers[i].ids.as_slice()).map(|&t| t.clone());
            }
        }
        // In encoding order, so that which posts the cache evicts first, and so which later
        // lookups hit, is the same in every run.
        let mut uses: std::collections::HashMap<&[u32], usize> = Default::default();
        for s in seekers {
            *uses.entry(s.ids.as_slice()).or_default() += 1;
        }
        for (ids, state) in fresh {
            let n = uses.get(ids.as_slice()).copied().unwrap_or(1);
            cache.insert(ids, state, n)?;
        }
        rows.into_iter()
            .map(|r| {
                r.ok_or_else(|| {
                    candle_core::Error::Msg("a seeker post was neither cached nor encoded".into())
                })
            })
            .collect()
    }

    fn scores(
        &self,
        logits: &[crate::model::MechanismLogits],
        responses: &[&Encoded],
    ) -> Result<Vec<Vec<MechanismScore>>> {
        let offsets = &self.model.config().level_offsets;
        let mut out: Vec<Vec<MechanismScore>> = vec![Vec::new(); responses.len()];
        for mech in logits {
            let level_logits: Vec<Vec<f32>> = mech.level.to_vec2()?;
            let rationale = mech.rationale.argmax(2)?.to_vec2::<u32>()?;
            for (i, row) in level_logits.iter().enumerate() {
                let probs = softmax3(row);
                let level = offsets.decide(mech.mechanism, &probs);
                let response = responses[i];
                let rationale_tokens = (0..response.len())
                    .map(|t| level > 0 && !response.special[t] && rationale[i][t] == 1)
                    .collect();
                out[i].push(MechanismScore {
                    mechanism: mech.mechanism,
                    level,
                    probs,
                    rationale_tokens,
                });
            }
        }
        Ok(out)
    }
}

/// The token count of the longest response of `batch`, what its products' sizes follow.
fn longest_response(responses: &[&Encoded], batch: &[usize]) -> usize {
    batch.iter().map(|&i| responses[i].len()).max().unwrap_or(0)
}

fn softmax3(row: &[f32]) -> [f32; NUM_LEVELS] {
    let max = row.iter().cloned().fold(f32::NEG_INFINITY, f32::max);
    let exp: Vec<f32> = row.iter().map(|x| (x - max).exp()).collect();
    let sum: f32 = exp.iter().sum();
    std::array::from_fn(|i| exp[i] / sum)
}

/// `v` scaled to length 1 (zero stays zero).
pub fn unit_length(mut v: Vec<f32>) -> Vec<f32> {
    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    if norm > 0.0 {
        for x in &mut v {
            *x /= norm;
        }
    }
    v
}

/// A batch of tokenized texts padded to its longest text.
pub fn batch_of(items: &[&Encoded], pad_id: u32, device: &Device) -> Result<TokenBatch> {
    padded_batch_of(items, pad_id, None, device)
}

/// A batch of tokenized texts padded to its longest text, or to `pad_to` when longer.
pub fn padded_batch_of(
    items: &[&Encoded],
    pad_id: u32,
    pad_to: Option<usize>,
    device: &Device,
) -> Result<TokenBatch> {
    let rows: Vec<(&[u32], &[u32])> = items
        .iter()
        .map(|e| (e.ids.as_slice(), e.type_ids.as_slice()))
        .collect();
    TokenBatch::new(&rows, pad_id, pad_to, device)
}
