//! The two workflows over a loaded model: building an exemplar library from annotations, and
//! suggesting for one pair with the model scored directly (the CLI; the server goes through
//! its batching thread instead, with the same [`super::plan`] and [`super::verify`]).

use super::exemplars::{
    centroid, count_phrasings, read_curated, Library, FORMAT_VERSION, SHIPPED_CURATED,
    SHIPPED_CURATED_NAME, SHIPPED_LIBRARY, SHIPPED_LIBRARY_NAME,
};
use super::{candidate_pairs, plan, verify, SuggestOptions, Suggestions};
use crate::bundle::LoadedBundle;
use crate::data::{load_epitome, Pair};
use crate::predict::{predict_pairs, EncodedPair};
use crate::Error;
use std::path::{Path, PathBuf};

/// The weights file that holds the frozen seeker encoder, whose hash a library records.
const ENCODER_WEIGHTS: &str = "encoder/model.safetensors";

/// The SHA-256 of the seeker encoder that `bundle` embeds with.
pub fn encoder_sha256(bundle: &LoadedBundle) -> String {
    bundle
        .info
        .files
        .get(ENCODER_WEIGHTS)
        .cloned()
        .unwrap_or_default()
}

/// Builds a library from the annotations in `data`: from the model's training split only
/// when the bundle records one, so that its dev pairs stay unseen for evaluation.
pub fn build_library(
    bundle: &LoadedBundle,
    data: &Path,
    min_responses: usize,
) -> Result<Library, Error> {
    let dataset = load_epitome(data)?;
    let train: Vec<_> = match &bundle.info.split {
        Some(split) => split.partition(&dataset.examples).0,
        None => dataset.examples.iter().collect(),
    };
    let counted = count_phrasings(&train, min_responses);
    let scorer = bundle.scorer();
    let mut embeddings: Vec<Option<Vec<f32>>> = vec![None; counted.seekers.len()];
    for ids in &counted.sources {
        for &i in ids {
            if embeddings[i].is_none() {
                let encoded = bundle.text.encode(&counted.seekers[i])?;
                embeddings[i] = scorer.seeker_embeddings(&[&encoded])?.pop();
            }
        }
    }
    let mut exemplars = counted.exemplars;
    for (e, ids) in exemplars.iter_mut().zip(&counted.sources) {
        e.seeker_centroid = centroid(ids.iter().filter_map(|&i| embeddings[i].as_deref()));
    }
    Ok(Library {
        format_version: FORMAT_VERSION,
        min_responses,
        encoder_sha256: encoder_sha256(bundle),
        built_from: serde_json::json!({
            "files": dataset.report.file_sha256,
            "pairs": train.len(),
            "split": if bundle.info.split.is_some() { "the model's training split" } else { "all pairs" },
        }),
        exemplars,
    })
}

/// The library `exemplars` names (the shipped one when `None`), with the curated phrasings
/// of `curated` (the shipped ones when `None`) after it; refused when its seeker embeddings
/// come from another encoder than `bundle`'s.
pub fn load_library(
    bundle: &LoadedBundle,
    exemplars: Option<&Path>,
    curated: Option<&Path>,
) -> Result<Library, Error> {
    let (mut library, path) = match exemplars {
        Some(path) => (Library::load(path)?, path.to_path_buf()),
        None => (
            Library::parse(SHIPPED_LIBRARY, Path::new(SHIPPED_LIBRARY_NAME))?,
            PathBuf::from(SHIPPED_LIBRARY_NAME),
        ),
    };
    library.check_encoder(&encoder_sha256(bundle), &path)?;
    match curated {
        Some(path) => library.add_curated(&read_curated(path)?, path)?,
        None => library.add_curated(SHIPPED_CURATED, Path::new(SHIPPED_CURATED_NAME))?,
    }
    Ok(library)
}

/// Suggestions for one pair, scoring with `bundle` directly.
pub fn suggest_pair(
    bundle: &LoadedBundle,
    library: &Library,
    pair: &Pair,
    options: &SuggestOptions,
) -> Result<Suggestions, Error> {
    let scorer = bundle.scorer();
    let before = predict_pairs(&scorer, &bundle.text, std::slice::from_ref(pair))?
        .pop()
        .ok_or_else(|| candle_core::Error::Msg("no prediction for the pair".into()))?;
    let seeker = EncodedPair::new(&bundle.text, pair.clone())?.seeker;
    let embedding = scorer
        .seeker_embeddings(&[&seeker])?
        .pop()
        .unwrap_or_default();
    let candidates = plan(library, &pair.response_post, &before, &embedding, options);
    let pairs = candidate_pairs(&pair.seeker_post, &pair.response_post, &candidates);
    let after = predict_pairs(&scorer, &bundle.text, &pairs)?;
    Ok(verify(&before, candidates, &after, options))
}

/// How suggestions fare on one mechanism's dev responses annotated at level 0.
#[derive(Clone, Debug, serde::Serialize)]
pub struct SuggestionEval {
    pub mechanism: crate::mechanism::Mechanism,
    /// Dev responses annotated at level 0 for it.
    pub responses: usize,
    /// How the model scores them before any edit (levels 0, 1, 2).
    pub model_levels_before: [usize; 3],
    /// Responses with at least one verified suggestion for the mechanism.
    pub with_suggestion: usize,
    /// Of those, the top suggestion raises the level (rather than only its probability).
    pub top_raises_level: usize,
    /// Mean level gain from applying the top suggestion, over the responses that got one.
    pub mean_gain_with: f64,
    /// The same over every response (those without a suggestion gain 0).
    pub mean_gain_all: f64,
    /// Where the top suggestions came from: the annotations' phrasings, the curated file.
    pub top_from_exemplars: usize,
    pub top_from_curated: usize,
}

/// For each mechanism: the dev pairs (of the bundle's own split) whose response is annotated
/// at level 0, suggested for that mechanism alone; whether a verified suggestion exists and
/// what applying the top one gains, in the model's levels.
pub fn evaluate_suggestions(
    bundle: &LoadedBundle,
    library: &Library,
    data: &Path,
    progress: &dyn crate::progress::Progress,
) -> Result<Vec<SuggestionEval>, Error> {
    let dataset = load_epitome(data)?;
    let Some(split) = &bundle.info.split else {
        return Err(crate::error::OptionError {
            flag: "--model",
            requirement: "a bundle that records its train/dev split (its dev pairs are evaluated)",
        }
        .into());
    };
    let (_, dev) = split.partition(&dataset.examples);
    let mut rows = Vec::new();
    let total: usize = bundle
        .model
        .config()
        .mechanisms
        .iter()
        .map(|&m| dev.iter().filter(|e| e.label(m).level == 0).count())
        .sum();
    progress.begin(
        "suggesting",
        Some(total as u64),
        crate::progress::Unit::Pairs,
    );
    for &m in &bundle.model.config().mechanisms {
        let options = SuggestOptions {
            mechanisms: vec![m],
            max_per_mechanism: 1,
        };
        let mut row = SuggestionEval {
            mechanism: m,
            responses: 0,
            model_levels_before: [0; 3],
            with_suggestion: 0,
            top_raises_level: 0,
            mean_gain_with: 0.0,
            mean_gain_all: 0.0,
            top_from_exemplars: 0,
            top_from_curated: 0,
        };
        let mut gain = 0.0;
        for ex in dev.iter().filter(|e| e.label(m).level == 0) {
            let pair = Pair {
                id: ex.id(),
                seeker_post: ex.seeker_post.clone(),
                response_post: ex.response_post.clone(),
            };
            let out = suggest_pair(bundle, library, &pair, &options)?;
            row.responses += 1;
            if let Some(b) = out.before.get(&m) {
                row.model_levels_before[usize::from(b.level)] += 1;
            }
            if let Some(top) = out.suggestions.first() {
                row.with_suggestion += 1;
                let levels = f64::from(top.after.level) - f64::from(top.before.level);
                gain += levels;
                if levels > 0.0 {
                    row.top_raises_level += 1;
                }
                match top.source {
                    super::Source::Exemplar { .. } => row.top_from_exemplars += 1,
                    super::Source::Curated => row.top_from_curated += 1,
                }
            }
            progress.advance(1);
        }
        row.mean_gain_with = gain / row.with_suggestion.max(1) as f64;
        row.mean_gain_all = gain / row.responses.max(1) as f64;
        rows.push(row);
    }
    progress.end();
    Ok(rows)
}
