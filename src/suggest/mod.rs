//! Suggestions that the model has checked: sentences to insert into a response, or to put in
//! place of one of its sentences, that raise one mechanism's level, after HAILEY (Sharma et
//! al., 2023), whose insert/replace suggestions raised the empathy of supporters' replies.
//!
//! A suggestion is made in four steps, the scoring ones by the caller (the CLI scores
//! directly, the server through its batching model thread):
//! 1. the response is scored as it is, and the seeker post embedded ([`SeekerEmbedding`]);
//! 2. [`plan`] picks candidate edits for each asked mechanism below level 2: exemplar
//!    phrasings ([`exemplars`]) retrieved by how similar the seeker post is to the posts their
//!    responses answered, then the curated ones; none repeats a sentence of the response;
//! 3. every edited response is scored, in one batch;
//! 4. [`verify`] keeps an edit only when it raises its mechanism's level (or, at the same
//!    level, the probability of a higher one by at least [`MIN_PROBABILITY_GAIN`]) and lowers
//!    no other mechanism's level, and ranks the kept ones by that gain.

pub mod exemplars;
mod run;
pub mod sentences;

pub use run::{
    build_library, encoder_sha256, evaluate_suggestions, load_library, suggest_pair, SuggestionEval,
};

use crate::data::Pair;
use crate::mechanism::{Mechanism, NUM_LEVELS};
use crate::predict::{MechanismPrediction, PairPrediction};
use exemplars::{Exemplar, Library};
use sentences::{normalize, sentences};
use serde::Serialize;
use std::collections::BTreeMap;

/// Edits tried per mechanism as insertions, and as replacements of a weak sentence.
pub const INSERTS_PER_MECHANISM: usize = 6;
pub const REPLACES_PER_MECHANISM: usize = 2;
/// An edit that keeps its mechanism's level must raise the probability of a higher level by
/// this much to count.
pub const MIN_PROBABILITY_GAIN: f32 = 0.05;
/// Suggestions returned per mechanism unless asked otherwise, and at most.
pub const DEFAULT_PER_MECHANISM: usize = 3;
pub const MAX_PER_MECHANISM: usize = 10;

/// What to suggest for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SuggestOptions {
    pub mechanisms: Vec<Mechanism>,
    pub max_per_mechanism: usize,
}

impl Default for SuggestOptions {
    fn default() -> Self {
        Self {
            mechanisms: Mechanism::ALL.to_vec(),
            max_per_mechanism: DEFAULT_PER_MECHANISM,
        }
    }
}

/// A seeker post's embedding: the unit-length mean of the seeker encoder's token states.
pub type SeekerEmbedding = Vec<f32>;

/// Where an edit goes in the response, in chars (Unicode scalar values).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(tag = "op", rename_all = "lowercase")]
pub enum EditOp {
    /// `text` goes in at char offset `at`.
    Insert { at: usize },
    /// `text` takes the place of the chars `start..end`.
    Replace { start: usize, end: usize },
}

/// One change to a response.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Edit {
    #[serde(flatten)]
    pub op: EditOp,
    /// Inserted as it is (separating spaces included).
    pub text: String,
    /// The mechanism the edit is for.
    #[schema(value_type = String, example = "ER")]
    pub mechanism: Mechanism,
}

impl Edit {
    /// The response with the edit made.
    pub fn apply(&self, response: &str) -> String {
        let (start, end) = match self.op {
            EditOp::Insert { at } => (at, at),
            EditOp::Replace { start, end } => (start, end),
        };
        let chars: Vec<char> = response.chars().collect();
        let (start, end) = (start.min(chars.len()), end.min(chars.len()));
        let mut out: String = chars[..start].iter().collect();
        out.push_str(&self.text);
        out.extend(&chars[end..]);
        out
    }
}

/// A mechanism's level and probabilities.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, utoipa::ToSchema)]
pub struct LevelScore {
    #[schema(minimum = 0, maximum = 2)]
    pub level: u8,
    /// Probabilities of levels 0, 1 and 2.
    pub probs: [f32; NUM_LEVELS],
}

impl From<&MechanismPrediction> for LevelScore {
    fn from(p: &MechanismPrediction) -> Self {
        Self {
            level: p.level,
            probs: p.probs,
        }
    }
}

impl LevelScore {
    /// The probability of a level above `level`.
    pub fn above(&self, level: u8) -> f32 {
        self.probs[usize::from(level) + 1..].iter().sum()
    }
}

/// What an edit raises.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Raise {
    /// The mechanism's level.
    Level,
    /// The probability of a higher level, at the same level.
    Probability,
}

/// Where a suggested phrasing comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Source {
    /// The annotations: `responses` distinct responses use it.
    Exemplar { responses: usize },
    /// The curated file.
    Curated,
}

/// A candidate edit, before the model has checked it.
#[derive(Clone, Debug, PartialEq)]
pub struct Candidate {
    pub edit: Edit,
    pub source: Source,
}

/// An edit the model has checked, with its scores before and after.
#[derive(Clone, Debug, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Suggestion {
    #[serde(flatten)]
    pub edit: Edit,
    /// The edit's mechanism before it.
    pub before: LevelScore,
    /// And after it.
    pub after: LevelScore,
    /// The other mechanisms after it (none lower in level than before).
    #[schema(value_type = Object)]
    pub others_after: BTreeMap<Mechanism, LevelScore>,
    pub raises: Raise,
    /// Levels gained, plus the gain in probability of a level above the one before.
    pub gain: f32,
    pub source: Source,
}

/// Suggestions for one response.
#[derive(Clone, Debug, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Suggestions {
    /// Every mechanism of the response as it is.
    #[schema(value_type = Object)]
    pub before: BTreeMap<Mechanism, LevelScore>,
    /// Ranked by gain within each mechanism; mechanisms in the model's order.
    pub suggestions: Vec<Suggestion>,
}

fn score_of(p: &PairPrediction, m: Mechanism) -> Option<LevelScore> {
    p.mechanisms
        .iter()
        .find(|(k, _)| *k == m)
        .map(|(_, s)| LevelScore::from(s))
}

fn cosine(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

/// The exemplars of `mechanism` in the order they are tried: those with source seeker posts
/// by similarity to `seeker` (most similar first), then the curated ones in file order.
fn ranked<'a>(library: &'a Library, mechanism: Mechanism, seeker: &[f32]) -> Vec<&'a Exemplar> {
    let mut retrieved: Vec<(&Exemplar, f32)> = library
        .of(mechanism)
        .filter(|e| !e.curated())
        .map(|e| (e, cosine(seeker, &e.seeker_centroid)))
        .collect();
    retrieved.sort_by(|a, b| b.1.total_cmp(&a.1));
    retrieved
        .into_iter()
        .map(|(e, _)| e)
        .chain(library.of(mechanism).filter(|e| e.curated()))
        .collect()
}

fn source_of(e: &Exemplar) -> Source {
    if e.curated() {
        Source::Curated
    } else {
        Source::Exemplar {
            responses: e.responses,
        }
    }
}

/// Candidate edits of `response` for the asked mechanisms below level 2 in `before`.
/// Interpretations and emotional reactions open a reply, so they are inserted at its start;
/// explorations (questions) at its end. A mechanism at level 1 also gets replacements of
/// the sentence that holds its rationale, by phrasings annotated at level 2 (or curated).
pub fn plan(
    library: &Library,
    response: &str,
    before: &PairPrediction,
    seeker: &[f32],
    options: &SuggestOptions,
) -> Vec<Candidate> {
    let normal_response = normalize(response);
    let present: Vec<String> = sentences(response)
        .iter()
        .map(|s| normalize(&sentences::slice(response, s.start, s.end)))
        .collect();
    let repeats = |e: &Exemplar| {
        let n = normalize(&e.text);
        present.contains(&n) || normal_response.contains(&n)
    };
    let length = response.chars().count();
    let mut out = Vec::new();
    for (m, prediction) in &before.mechanisms {
        if !options.mechanisms.contains(m) || prediction.level >= 2 {
            continue;
        }
        let order: Vec<&Exemplar> = ranked(library, *m, seeker)
            .into_iter()
            .filter(|e| !repeats(e))
            .collect();
        for e in order.iter().take(INSERTS_PER_MECHANISM) {
            let (at, text) = match m {
                Mechanism::Explorations => {
                    let gap = if response.ends_with(char::is_whitespace) {
                        ""
                    } else {
                        " "
                    };
                    (length, format!("{gap}{}", e.text))
                }
                _ => (0, format!("{} ", e.text)),
            };
            out.push(Candidate {
                edit: Edit {
                    op: EditOp::Insert { at },
                    text,
                    mechanism: *m,
                },
                source: source_of(e),
            });
        }
        let weak = prediction.rationales.first().and_then(|r| {
            sentences(response)
                .into_iter()
                .find(|s| s.start <= r.start && r.start < s.end)
        });
        if let (1, Some(sentence)) = (prediction.level, weak) {
            let strong = order.iter().filter(|e| e.curated() || e.levels[1] > 0);
            for e in strong.take(REPLACES_PER_MECHANISM) {
                out.push(Candidate {
                    edit: Edit {
                        op: EditOp::Replace {
                            start: sentence.start,
                            end: sentence.end,
                        },
                        text: e.text.clone(),
                        mechanism: *m,
                    },
                    source: source_of(e),
                });
            }
        }
    }
    out
}

/// The pairs to score for `candidates`: the seeker post with each edited response.
pub fn candidate_pairs(seeker_post: &str, response: &str, candidates: &[Candidate]) -> Vec<Pair> {
    candidates
        .iter()
        .enumerate()
        .map(|(i, c)| Pair {
            id: format!("edit-{i}"),
            seeker_post: seeker_post.to_owned(),
            response_post: c.edit.apply(response),
        })
        .collect()
}

/// The candidates the model says raise their mechanism (and lower no other), with their
/// scores, ranked by gain within each mechanism and cut to `options.max_per_mechanism`.
pub fn verify(
    before: &PairPrediction,
    candidates: Vec<Candidate>,
    after: &[PairPrediction],
    options: &SuggestOptions,
) -> Suggestions {
    let before_scores: BTreeMap<Mechanism, LevelScore> = before
        .mechanisms
        .iter()
        .map(|(m, p)| (*m, LevelScore::from(p)))
        .collect();
    let mut kept: Vec<Suggestion> = Vec::new();
    for (candidate, scored) in candidates.into_iter().zip(after) {
        let m = candidate.edit.mechanism;
        let (Some(b), Some(a)) = (before_scores.get(&m).copied(), score_of(scored, m)) else {
            continue;
        };
        let others_after: BTreeMap<Mechanism, LevelScore> = scored
            .mechanisms
            .iter()
            .filter(|(k, _)| *k != m)
            .map(|(k, p)| (*k, LevelScore::from(p)))
            .collect();
        let lowers_another = others_after
            .iter()
            .any(|(k, s)| before_scores.get(k).is_some_and(|b| s.level < b.level));
        if lowers_another {
            continue;
        }
        let probability_gain = a.above(b.level) - b.above(b.level);
        let raises = if a.level > b.level {
            Raise::Level
        } else if a.level == b.level && probability_gain >= MIN_PROBABILITY_GAIN {
            Raise::Probability
        } else {
            continue;
        };
        kept.push(Suggestion {
            edit: candidate.edit,
            before: b,
            after: a,
            others_after,
            raises,
            gain: f32::from(a.level - b.level) + probability_gain,
            source: candidate.source,
        });
    }
    let order: Vec<Mechanism> = before.mechanisms.iter().map(|(m, _)| *m).collect();
    kept.sort_by(|x, y| {
        let rank = |m: Mechanism| order.iter().position(|k| *k == m);
        rank(x.edit.mechanism)
            .cmp(&rank(y.edit.mechanism))
            .then(y.gain.total_cmp(&x.gain))
    });
    let mut per: BTreeMap<Mechanism, usize> = BTreeMap::new();
    kept.retain(|s| {
        let n = per.entry(s.edit.mechanism).or_default();
        *n += 1;
        *n <= options.max_per_mechanism
    });
    Suggestions {
        before: before_scores,
        suggestions: kept,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::predict::Rationale;

    fn prediction(levels: [u8; 3], probs: [[f32; 3]; 3]) -> PairPrediction {
        PairPrediction {
            id: "1".into(),
            mechanisms: Mechanism::ALL
                .iter()
                .enumerate()
                .map(|(i, &m)| {
                    (
                        m,
                        MechanismPrediction {
                            level: levels[i],
                            probs: probs[i],
                            rationales: Vec::new(),
                        },
                    )
                })
                .collect(),
            truncated: false,
        }
    }

    fn exemplar(m: Mechanism, text: &str, centroid: Vec<f32>) -> Exemplar {
        Exemplar {
            mechanism: m,
            text: text.into(),
            responses: if centroid.is_empty() { 0 } else { 3 },
            levels: [1, 2],
            seeker_centroid: centroid,
        }
    }

    fn library(exemplars: Vec<Exemplar>) -> Library {
        Library {
            format_version: exemplars::FORMAT_VERSION,
            min_responses: 3,
            encoder_sha256: "x".into(),
            built_from: serde_json::Value::Null,
            exemplars,
        }
    }

    #[test]
    fn edits_apply_at_char_offsets() {
        let insert = Edit {
            op: EditOp::Insert { at: 2 },
            text: "é ".into(),
            mechanism: Mechanism::EmotionalReactions,
        };
        assert_eq!(insert.apply("ça va"), "çaé  va");
        let replace = Edit {
            op: EditOp::Replace { start: 0, end: 2 },
            text: "Oui".into(),
            mechanism: Mechanism::EmotionalReactions,
        };
        assert_eq!(replace.apply("ça va"), "Oui va");
    }

    #[test]
    fn retrieval_orders_by_seeker_similarity_then_curated_and_skips_what_is_there() {
        let lib = library(vec![
            exemplar(Mechanism::EmotionalReactions, "Far one.", vec![0.0, 1.0]),
            exemplar(Mechanism::EmotionalReactions, "Curated one.", vec![]),
            exemplar(Mechanism::EmotionalReactions, "Near one.", vec![1.0, 0.0]),
            exemplar(Mechanism::EmotionalReactions, "I'm sorry.", vec![1.0, 0.0]),
            exemplar(Mechanism::Explorations, "What happened?", vec![1.0, 0.0]),
        ]);
        let before = prediction(
            [0, 2, 0],
            [[0.9, 0.05, 0.05], [0.0, 0.0, 1.0], [1.0, 0.0, 0.0]],
        );
        let plan = plan(
            &lib,
            "i’m SORRY!",
            &before,
            &[1.0, 0.0],
            &SuggestOptions::default(),
        );
        let texts: Vec<&str> = plan.iter().map(|c| c.edit.text.as_str()).collect();
        assert_eq!(
            texts,
            [
                "Near one. ",
                "Far one. ",
                "Curated one. ",
                " What happened?"
            ]
        );
        assert_eq!(plan[3].edit.op, EditOp::Insert { at: 10 });
        assert_eq!(plan[2].source, Source::Curated);
    }

    #[test]
    fn a_level_1_mechanism_also_gets_its_weak_sentence_replaced() {
        let lib = library(vec![exemplar(
            Mechanism::EmotionalReactions,
            "I'm so sorry.",
            vec![1.0],
        )]);
        let mut before = prediction(
            [1, 2, 2],
            [[0.2, 0.7, 0.1], [0.0, 0.0, 1.0], [0.0, 0.0, 1.0]],
        );
        before.mechanisms[0].1.rationales = vec![Rationale {
            start: 10,
            end: 14,
            text: "oops".into(),
        }];
        let plan = plan(
            &lib,
            "Hi there. oops. Bye.",
            &before,
            &[1.0],
            &Default::default(),
        );
        assert_eq!(plan.len(), 2);
        assert_eq!(plan[1].edit.op, EditOp::Replace { start: 10, end: 15 });
    }

    #[test]
    fn only_edits_that_raise_their_mechanism_and_lower_no_other_are_kept_best_first() {
        let before = prediction(
            [0, 1, 0],
            [[0.8, 0.2, 0.0], [0.1, 0.8, 0.1], [0.9, 0.1, 0.0]],
        );
        let candidate = |text: &str| Candidate {
            edit: Edit {
                op: EditOp::Insert { at: 0 },
                text: text.into(),
                mechanism: Mechanism::EmotionalReactions,
            },
            source: Source::Curated,
        };
        let candidates = vec![
            candidate("raises by a level"),
            candidate("raises by two but lowers IP"),
            candidate("nudges"),
            candidate("no gain"),
            candidate("raises by two"),
        ];
        let after = vec![
            prediction(
                [1, 1, 0],
                [[0.2, 0.7, 0.1], [0.1, 0.8, 0.1], [0.9, 0.1, 0.0]],
            ),
            prediction(
                [2, 0, 0],
                [[0.0, 0.1, 0.9], [0.9, 0.1, 0.0], [0.9, 0.1, 0.0]],
            ),
            prediction(
                [0, 1, 0],
                [[0.7, 0.3, 0.0], [0.1, 0.8, 0.1], [0.9, 0.1, 0.0]],
            ),
            prediction(
                [0, 1, 0],
                [[0.78, 0.22, 0.0], [0.1, 0.8, 0.1], [0.9, 0.1, 0.0]],
            ),
            prediction(
                [2, 1, 0],
                [[0.0, 0.1, 0.9], [0.1, 0.8, 0.1], [0.9, 0.1, 0.0]],
            ),
        ];
        let out = verify(&before, candidates, &after, &SuggestOptions::default());
        let texts: Vec<&str> = out
            .suggestions
            .iter()
            .map(|s| s.edit.text.as_str())
            .collect();
        assert_eq!(texts, ["raises by two", "raises by a level", "nudges"]);
        assert_eq!(out.suggestions[2].raises, Raise::Probability);
        assert_eq!(out.suggestions[0].after.level, 2);
        let limited = verify(
            &before,
            vec![candidate("raises by a level")],
            &after[..1],
            &SuggestOptions {
                max_per_mechanism: 0,
                ..Default::default()
            },
        );
        assert!(limited.suggestions.is_empty());
    }
}
