//! Prediction: levels, probabilities and rationale spans for (seeker, response) pairs.

mod merge;
mod output;
mod parquet;
mod pipeline;
mod scorer;
mod seeker_cache;
mod shard;
mod working;

pub use merge::{merge, MergeError};
pub use output::{OutputFormat, PredictionWriter};
pub use parquet::{convert_staged, prediction_from_json, ParquetWriter, PredictionRows};
pub use pipeline::{
    input_identity, predict_file, same_file, FileRun, Pipeline, PredictError, RunReport, RunSpec,
    CHUNK,
};
pub use scorer::{batch_of, unit_length, MechanismScore, Scorer};
pub use seeker_cache::{SeekerCache, DEFAULT_BUDGET_BYTES};
pub use shard::{shard_of, Shard};
pub use working::{Checkpoint, Leftover, RunIdentity, WorkingFile, WorkingFileError};

use crate::data::{char_slice, Pair};
use crate::mechanism::{Mechanism, NUM_LEVELS};
use crate::text::labels::spans_from_tokens;
use crate::text::{Encoded, TextEncoder};
use rayon::prelude::*;
use serde::Serialize;

/// A rationale span: `start`/`end` are char offsets into the response as given, so that the
/// response's chars `start..end` are exactly `text`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct Rationale {
    /// Offset in Unicode scalar values into response_post.
    pub start: usize,
    pub end: usize,
    pub text: String,
}

/// One mechanism's answer for one pair.
#[derive(Clone, Debug, PartialEq, Serialize, serde::Deserialize, utoipa::ToSchema)]
#[schema(as = Mechanism)]
pub struct MechanismPrediction {
    /// 0 none, 1 weak, 2 strong: the most probable level, or, for a model with decision
    /// offsets (bundle.json `model.level_offsets`), the level they pick from `probs`.
    #[schema(minimum = 0, maximum = 2)]
    pub level: u8,
    /// Probabilities of levels 0, 1 and 2.
    pub probs: [f32; NUM_LEVELS],
    pub rationales: Vec<Rationale>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct PairPrediction {
    pub id: String,
    pub mechanisms: Vec<(Mechanism, MechanismPrediction)>,
    /// Whether the seeker or the response post was cut at the model's maximum length.
    pub truncated: bool,
}

impl PairPrediction {
    /// The JSON object of the output format: `{"id": .., "ER": {..}, "IP": {..}, "EX": {..}}`.
    pub fn to_json(&self) -> serde_json::Value {
        let mut map = serde_json::Map::new();
        map.insert("id".into(), self.id.clone().into());
        for (m, p) in &self.mechanisms {
            map.insert(m.code().into(), serde_json::to_value(p).unwrap_or_default());
        }
        map.insert("truncated".into(), self.truncated.into());
        serde_json::Value::Object(map)
    }
}

/// Turns a score into a prediction with rationale spans in the response's char offsets.
pub fn to_prediction(
    response: &str,
    encoded: &Encoded,
    score: &MechanismScore,
) -> MechanismPrediction {
    let rationales = spans_from_tokens(encoded, &score.rationale_tokens)
        .into_iter()
        .map(|s| Rationale {
            start: s.start,
            end: s.end,
            text: char_slice(response, s),
        })
        .collect();
    MechanismPrediction {
        level: score.level,
        probs: score.probs,
        rationales,
    }
}

/// A pair with both posts tokenized.
#[derive(Clone, Debug)]
pub struct EncodedPair {
    pub pair: Pair,
    pub seeker: Encoded,
    pub response: Encoded,
}

impl EncodedPair {
    pub fn new(text: &TextEncoder, pair: Pair) -> Result<Self, crate::text::TextError> {
        Ok(Self {
            seeker: text.encode(&pair.seeker_post)?,
            response: text.encode(&pair.response_post)?,
            pair,
        })
    }

    /// Tokens the pair puts through the encoders.
    pub fn tokens(&self) -> usize {
        self.seeker.len() + self.response.len()
    }
}

/// Tokenizes and scores pairs, in input order.
pub fn predict_pairs(
    scorer: &Scorer,
    text: &TextEncoder,
    pairs: &[Pair],
) -> Result<Vec<PairPrediction>, crate::Error> {
    predict_pairs_cached(scorer, text, pairs, None)
}

/// [`predict_pairs`], with the seeker posts seen before taken from `cache`.
pub fn predict_pairs_cached(
    scorer: &Scorer,
    text: &TextEncoder,
    pairs: &[Pair],
    cache: Option<&mut SeekerCache>,
) -> Result<Vec<PairPrediction>, crate::Error> {
    // On both cores: tokenizing on one left the other idle between chunks. The results are
    // gathered in input order, so that an error is the first bad pair's.
    let encoded: Vec<_> = pairs
        .par_iter()
        .map(|p| EncodedPair::new(text, p.clone()))
        .collect();
    let encoded = encoded.into_iter().collect::<Result<Vec<_>, _>>()?;
    Ok(predict_encoded_cached(scorer, &encoded, cache)?)
}

/// Scores tokenized pairs, in input order.
pub fn predict_encoded(
    scorer: &Scorer,
    pairs: &[EncodedPair],
) -> Result<Vec<PairPrediction>, candle_core::Error> {
    predict_encoded_cached(scorer, pairs, None)
}

/// [`predict_encoded`], with the seeker posts seen before taken from `cache`.
pub fn predict_encoded_cached(
    scorer: &Scorer,
    pairs: &[EncodedPair],
    cache: Option<&mut SeekerCache>,
) -> Result<Vec<PairPrediction>, candle_core::Error> {
    // Scoring pads each batch to its longest text: order by length so that batches are even.
    let mut order: Vec<usize> = (0..pairs.len()).collect();
    order.sort_by_key(|&i| (pairs[i].response.len(), pairs[i].seeker.len()));
    let batches: Vec<&[usize]> = order.chunks(BATCH).collect();
    let seekers: Vec<&Encoded> = pairs.iter().map(|p| &p.seeker).collect();
    let responses: Vec<&Encoded> = pairs.iter().map(|p| &p.response).collect();
    let scores = scorer.score_batches(&seekers, &responses, &batches, cache)?;
    Ok(pairs
        .iter()
        .zip(scores)
        .map(|(p, pair_scores)| PairPrediction {
            id: p.pair.id.clone(),
            mechanisms: pair_scores
                .iter()
                .map(|sc| {
                    (
                        sc.mechanism,
                        to_prediction(&p.pair.response_post, &p.response, sc),
                    )
                })
                .collect(),
            truncated: p.seeker.truncated || p.response.truncated,
        })
        .collect())
}

/// Pairs scored together: large enough to keep the matrix kernels busy, small enough that
/// padding to the longest text wastes little.
pub const BATCH: usize = 32;
