//! Interactions with their levels attached: the input joined with a predictions file on id,
//! or scored by a model on the way. Only numbers are kept: post text is dropped once scored.

use super::input::{InteractionReader, RawInteraction, RowError};
use super::predictions::{JoinError, Levels, PredictionIndex};
use crate::data::{DataError, Pair};
use serde::Serialize;
use std::collections::{BTreeMap, HashMap, HashSet};

pub use crate::data::OnError;

/// Scores a chunk of pairs (ids and posts), returning levels in the same order.
pub type ScoreFn<'a> = dyn FnMut(&[Pair]) -> Result<Vec<Levels>, crate::Error> + 'a;

/// Where levels come from.
pub enum LevelSource<'a> {
    Predictions(PredictionIndex),
    Model(&'a mut ScoreFn<'a>),
}

/// Marks a missing responder.
pub const NO_RESPONDER: u32 = u32::MAX;

/// Which optional columns have at least one value.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Present {
    pub responder_id: bool,
    pub seeker_id: bool,
    pub created_at: bool,
    pub likes: bool,
    pub seeker_replied: bool,
    pub seeker_followed: bool,
    /// `seeker_replied` holds counts, not only 0/1.
    pub reply_counts: bool,
}

/// Rows left out under `--on-error skip`.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct SkipSummary {
    pub rows: u64,
    /// Rows by reason, e.g. "likes: not a number".
    pub reasons: BTreeMap<String, u64>,
    /// The first errors in full (file, line, column; never post text).
    pub first_errors: Vec<String>,
    /// Lines of the predictions file that could not be read.
    pub prediction_lines: u64,
    /// Predictions whose id matches no interaction.
    pub unmatched_predictions: u64,
}

impl SkipSummary {
    fn add(&mut self, e: RowError) {
        self.rows += 1;
        *self.reasons.entry(e.reason).or_default() += 1;
        if self.first_errors.len() < 10 {
            self.first_errors.push(e.error.to_string());
        }
    }
}

/// The interactions, column by column (missing numbers are NaN).
#[derive(Clone, Debug, Default)]
pub struct Interactions {
    pub levels: Vec<Levels>,
    /// Dense supporter index, or [`NO_RESPONDER`].
    pub responder: Vec<u32>,
    /// Unix seconds.
    pub created_at: Vec<f64>,
    pub likes: Vec<f64>,
    pub replied: Vec<f64>,
    /// 0 or 1.
    pub followed: Vec<f64>,
    pub supporters: usize,
    pub seekers: usize,
    pub present: Present,
    pub skipped: SkipSummary,
}

impl Interactions {
    pub fn len(&self) -> usize {
        self.levels.len()
    }

    pub fn is_empty(&self) -> bool {
        self.levels.is_empty()
    }

    fn push(&mut self, row: &RawInteraction, levels: Levels, ids: &mut Ids) {
        let nan = f64::NAN;
        self.levels.push(levels);
        self.responder.push(match &row.responder {
            Some(r) => {
                self.present.responder_id = true;
                ids.responder(r)
            }
            None => NO_RESPONDER,
        });
        if let Some(s) = &row.seeker {
            self.present.seeker_id = true;
            ids.seeker(s);
        }
        self.present.created_at |= row.created_at.is_some();
        self.present.likes |= row.likes.is_some();
        self.present.seeker_replied |= row.replied.is_some();
        self.present.seeker_followed |= row.followed.is_some();
        self.present.reply_counts |= row.replied.is_some_and(|r| r > 1.0);
        self.created_at.push(row.created_at.unwrap_or(nan));
        self.likes.push(row.likes.unwrap_or(nan));
        self.replied.push(row.replied.unwrap_or(nan));
        self.followed
            .push(row.followed.map_or(nan, |f| f64::from(u8::from(f))));
    }
}

#[derive(Default)]
struct Ids {
    responders: HashMap<String, u32>,
    seekers: HashSet<String>,
}

impl Ids {
    fn responder(&mut self, id: &str) -> u32 {
        let next = self.responders.len() as u32;
        *self.responders.entry(id.to_owned()).or_insert(next)
    }

    fn seeker(&mut self, id: &str) {
        if !self.seekers.contains(id) {
            self.seekers.insert(id.to_owned());
        }
    }
}

/// Pairs scored together when a model computes the levels.
const SCORE_CHUNK: usize = 256;

/// Reads every interaction and attaches its levels. `progress` gets (bytes read, file size).
pub fn collect(
    mut reader: InteractionReader,
    mut source: LevelSource<'_>,
    on_error: OnError,
    progress: &mut dyn FnMut(u64, u64),
) -> Result<Interactions, crate::Error> {
    let input = reader.path().to_path_buf();
    let mut out = Interactions::default();
    let mut ids = Ids::default();
    // Ids seen so far, when a model scores (a predictions join tracks them itself).
    let mut seen: HashMap<String, u64> = HashMap::new();
    // Rows waiting for the model: their places in `out`, and their pairs.
    let mut pending = Pending::default();
    let fail_or_skip = |out: &mut Interactions, e: RowError| match on_error {
        OnError::Fail => Err(crate::Error::Data(e.error)),
        OnError::Skip => {
            out.skipped.add(e);
            Ok(())
        }
    };
    let mut rows = 0u64;
    while let Some(result) = reader.next() {
        rows += 1;
        if rows.is_multiple_of(4096) {
            let (read, size) = reader.progress();
            progress(read, size);
        }
        let mut row = match result {
            Ok(row) => row,
            Err(e) => {
                fail_or_skip(&mut out, e)?;
                continue;
            }
        };
        let id = row.join_id();
        let id_field = || match &row.id {
            Some(_) => "id".to_owned(),
            None => "(row number; the file has no id column)".to_owned(),
        };
        let duplicate = |first: u64| RowError {
            reason: "id: duplicated".into(),
            error: DataError::Field {
                path: input.clone(),
                line: row.line,
                field: id_field(),
                message: format!(
                    "duplicated id '{id}' (first on line {first}); ids must be unique"
                ),
            },
        };
        match &mut source {
            LevelSource::Predictions(index) => match index.join(&id, row.line) {
                Ok(levels) => out.push(&row, levels, &mut ids),
                Err(JoinError::Duplicate(first)) => fail_or_skip(&mut out, duplicate(first))?,
                Err(JoinError::Missing) => {
                    let e = RowError {
                        reason: "id: no prediction".into(),
                        error: DataError::Field {
                            path: input.clone(),
                            line: row.line,
                            field: id_field(),
                            message: format!(
                                "no prediction has the id '{id}' in {}; were the predictions made from this file?",
                                index.path().display()
                            ),
                        },
                    };
                    fail_or_skip(&mut out, e)?;
                }
            },
            LevelSource::Model(score) => {
                if row.id.is_some() {
                    if let Some(&first) = seen.get(&id) {
                        fail_or_skip(&mut out, duplicate(first))?;
                        continue;
                    }
                    seen.insert(id.clone(), row.line);
                }
                let (seeker_post, response_post) = row.posts.take().unwrap_or_default();
                pending.rows.push(out.len());
                pending.pairs.push(Pair {
                    id,
                    seeker_post,
                    response_post,
                });
                out.push(&row, [0; 3], &mut ids);
                if pending.rows.len() == SCORE_CHUNK {
                    pending.score(&mut out, score)?;
                }
            }
        }
    }
    if let LevelSource::Model(score) = &mut source {
        pending.score(&mut out, score)?;
    }
    if let LevelSource::Predictions(index) = &source {
        out.skipped.prediction_lines = index.skipped_count;
        if let Some(first) = index.skipped.first() {
            // Under skip the index already kept going; a failing run never gets here.
            out.skipped
                .first_errors
                .push(format!("(predictions) {first}"));
        }
        let (unused, first) = index.unused();
        if let (Some((line, id)), OnError::Fail) = (first, on_error) {
            return Err(crate::Error::Data(DataError::Field {
                path: index.path().to_path_buf(),
                line,
                field: "id".into(),
                message: format!(
                    "the id '{id}' matches no interaction in {} ({unused} predictions in all do not); were the predictions made from this file?",
                    input.display()
                ),
            }));
        }
        out.skipped.unmatched_predictions = unused;
    }
    let (read, size) = reader.progress();
    progress(read, size);
    out.supporters = ids.responders.len();
    out.seekers = ids.seekers.len();
    Ok(out)
}

#[derive(Default)]
struct Pending {
    rows: Vec<usize>,
    pairs: Vec<Pair>,
}

impl Pending {
    /// Scores the waiting pairs, writes their levels into `out`, and forgets their text.
    fn score(
        &mut self,
        out: &mut Interactions,
        score: &mut ScoreFn<'_>,
    ) -> Result<(), crate::Error> {
        if self.rows.is_empty() {
            return Ok(());
        }
        let levels = score(&self.pairs)?;
        if levels.len() != self.pairs.len() {
            return Err(super::AnalyzeError::LevelCount {
                returned: levels.len(),
                pairs: self.pairs.len(),
            }
            .into());
        }
        for (&i, l) in self.rows.iter().zip(levels) {
            out.levels[i] = l;
        }
        self.rows.clear();
        self.pairs.clear();
        Ok(())
    }
}
