//! The library of exemplar phrasings that suggestions come from.
//!
//! Built from the rationales of level-1 and level-2 responses in the annotations: each span is
//! split into sentences, normalised ([`normalize`]) and counted by the distinct responses that
//! use it. A phrasing is kept only when at least `min_responses` (default 3) different
//! responses use it, so that no single person's words or details are ever suggested, and only
//! when it is not a first-person experience claim ("I went through the same", "me too"): a
//! suggestion is written in the supporter's name, and claiming an experience the supporter may
//! not have had is not empathy. Each exemplar keeps the unit-length mean of the embeddings of
//! the seeker posts its responses answered (never those posts), so that candidates can be
//! retrieved by how similar the seeker post at hand is to them. Phrasings that only fit a
//! particular message ("Please don't.", "Happy birthday.") or ask for identifying details are
//! left out too ([`needs_context`]).
//!
//! A curated file (shipped with epitome; a platform may edit or replace it) adds phrasings in
//! the platform's own voice. They have no source seeker posts and are tried after the
//! retrieved ones, in file order.

use super::sentences::{normalize, sentences, slice};
use crate::data::{char_slice, Example};
use crate::mechanism::Mechanism;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};

pub const FORMAT_VERSION: u32 = 1;
/// Responses that must use a phrasing before it may be suggested.
pub const DEFAULT_MIN_RESPONSES: usize = 3;

/// The library built from the shared annotations' training split with the shipped model.
pub const SHIPPED_LIBRARY: &str = include_str!("../../models/default/exemplars.json");
pub const SHIPPED_LIBRARY_NAME: &str = "models/default/exemplars.json";
/// The curated phrasings shipped with epitome.
pub const SHIPPED_CURATED: &str = include_str!("../../models/default/curated-exemplars.json");
pub const SHIPPED_CURATED_NAME: &str = "models/default/curated-exemplars.json";

/// One phrasing that may be suggested.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Exemplar {
    pub mechanism: Mechanism,
    /// As inserted: the most common way its responses wrote it, capitalised and punctuated.
    pub text: String,
    /// Distinct responses whose rationales use it; 0 for a curated phrasing.
    #[serde(default)]
    pub responses: usize,
    /// Of those, how many were annotated level 1 and level 2.
    #[serde(default)]
    pub levels: [usize; 2],
    /// Unit-length mean embedding of the seeker posts those responses answered; empty for a
    /// curated phrasing.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub seeker_centroid: Vec<f32>,
}

impl Exemplar {
    pub fn curated(&self) -> bool {
        self.seeker_centroid.is_empty()
    }
}

/// An exemplar library as stored (`epitome exemplars build` writes it).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Library {
    pub format_version: u32,
    pub min_responses: usize,
    /// SHA-256 of the encoder that embedded the seeker posts: retrieval compares embeddings
    /// of one encoder only.
    pub encoder_sha256: String,
    /// Where the phrasings came from (files and their hashes, pairs used, the split).
    #[serde(default)]
    pub built_from: serde_json::Value,
    pub exemplars: Vec<Exemplar>,
}

/// The curated file: `{"exemplars": [{"mechanism": "ER", "text": "..."}, ...]}`.
#[derive(Debug, Deserialize)]
struct CuratedFile {
    exemplars: Vec<CuratedEntry>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CuratedEntry {
    mechanism: Mechanism,
    text: String,
}

#[derive(Debug, thiserror::Error)]
pub enum ExemplarError {
    #[error("cannot read {}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{}: not an exemplar file ({message})", path.display())]
    Format { path: PathBuf, message: String },
    #[error("{}, exemplar {index}: {message}", path.display())]
    Entry {
        path: PathBuf,
        index: usize,
        message: String,
    },
    #[error("{}: its seeker embeddings come from another encoder (sha256 {found}) than the model's ({expected}); build it again with this model: epitome exemplars build --model ...", path.display())]
    OtherEncoder {
        path: PathBuf,
        found: String,
        expected: String,
    },
}

impl Library {
    /// Parses a library file; `path` names it in messages.
    pub fn parse(text: &str, path: &Path) -> Result<Self, ExemplarError> {
        let library: Library = serde_json::from_str(text).map_err(|e| ExemplarError::Format {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
        if library.format_version != FORMAT_VERSION {
            return Err(ExemplarError::Format {
                path: path.to_path_buf(),
                message: format!(
                    "format_version {} (this epitome reads {FORMAT_VERSION})",
                    library.format_version
                ),
            });
        }
        for (index, e) in library.exemplars.iter().enumerate() {
            let entry = |message: String| ExemplarError::Entry {
                path: path.to_path_buf(),
                index,
                message,
            };
            check_text(&e.text).map_err(entry)?;
            if !e.curated() && e.responses < library.min_responses {
                return Err(entry(format!(
                    "used by {} responses, fewer than the library's min_responses {}",
                    e.responses, library.min_responses
                )));
            }
        }
        Ok(library)
    }

    pub fn load(path: &Path) -> Result<Self, ExemplarError> {
        let text = read(path)?;
        Self::parse(&text, path)
    }

    /// Refuses a library whose embeddings another encoder made.
    pub fn check_encoder(&self, encoder_sha256: &str, path: &Path) -> Result<(), ExemplarError> {
        if self.encoder_sha256 != encoder_sha256 {
            return Err(ExemplarError::OtherEncoder {
                path: path.to_path_buf(),
                found: self.encoder_sha256.clone(),
                expected: encoder_sha256.to_owned(),
            });
        }
        Ok(())
    }

    /// Adds the phrasings of a curated file after the built ones.
    pub fn add_curated(&mut self, text: &str, path: &Path) -> Result<(), ExemplarError> {
        let file: CuratedFile = serde_json::from_str(text).map_err(|e| ExemplarError::Format {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
        let known: HashSet<(Mechanism, String)> = self
            .exemplars
            .iter()
            .map(|e| (e.mechanism, normalize(&e.text)))
            .collect();
        for (index, entry) in file.exemplars.into_iter().enumerate() {
            check_text(&entry.text).map_err(|message| ExemplarError::Entry {
                path: path.to_path_buf(),
                index,
                message,
            })?;
            if is_experience_claim(&normalize(&entry.text)) {
                // (A curated phrasing may need context: the platform chose it.)
                return Err(ExemplarError::Entry {
                    path: path.to_path_buf(),
                    index,
                    message: "a first-person experience claim; suggestions speak in the supporter's name and must not claim an experience for them".into(),
                });
            }
            if known.contains(&(entry.mechanism, normalize(&entry.text))) {
                continue;
            }
            self.exemplars.push(Exemplar {
                mechanism: entry.mechanism,
                text: entry.text.trim().to_owned(),
                responses: 0,
                levels: [0, 0],
                seeker_centroid: Vec::new(),
            });
        }
        Ok(())
    }

    pub fn of(&self, mechanism: Mechanism) -> impl Iterator<Item = &Exemplar> {
        self.exemplars
            .iter()
            .filter(move |e| e.mechanism == mechanism)
    }
}

fn read(path: &Path) -> Result<String, ExemplarError> {
    std::fs::read_to_string(path).map_err(|source| ExemplarError::Read {
        path: path.to_path_buf(),
        source,
    })
}

/// Reads a curated file from disk.
pub fn read_curated(path: &Path) -> Result<String, ExemplarError> {
    read(path)
}

/// A phrasing fit to insert: one sentence, two words or more, not over 200 chars.
fn check_text(text: &str) -> Result<(), String> {
    let t = text.trim();
    if normalize(t).split(' ').count() < 2 {
        return Err("text must have two words or more".into());
    }
    if t.chars().count() > 200 {
        return Err("text is over 200 characters".into());
    }
    if t.contains('\n') {
        return Err("text must be one line".into());
    }
    Ok(())
}

/// Whether a normalised phrasing claims an experience for the writer ("me too", "I've been
/// there", "I went through the same"). Such phrasings are never suggested.
pub fn is_experience_claim(normalized: &str) -> bool {
    const STARTS: [&str; 6] = [
        "same",
        "me too",
        "me as well",
        "me neither",
        "ditto",
        "this is me",
    ];
    const CONTAINS: [&str; 30] = [
        "been there",
        "been through",
        "went through",
        "gone through",
        "going through the same",
        "feel the same",
        "felt the same",
        "feel exactly the same",
        "feeling the same",
        "know the feeling",
        "know that feeling",
        "can relate",
        "relate to this",
        "relate to that",
        "happened to me",
        "had the same",
        "i've had",
        "i have had",
        "i had a",
        "i used to",
        "i've felt",
        "i have felt",
        "i've experienced",
        "i experienced",
        "my experience",
        "i also",
        "i too",
        "same here",
        "same boat",
        "same situation",
    ];
    let words = format!(" {normalized} ");
    STARTS.iter().any(|s| normalized.starts_with(s))
        || CONTAINS.iter().any(|c| words.contains(&format!(" {c} ")))
        || words.contains(" i'm the same ")
        || words.contains(" i am the same ")
        || words.contains(" i do too ")
}

/// Whether a normalised phrasing only fits a particular message ("Please don't.", "Happy
/// birthday.", "I do.") or asks for identifying details ("How old are you?"): retrieval by
/// seeker post cannot tell when it fits, so such phrasings are never suggested.
pub fn needs_context(normalized: &str) -> bool {
    const EXACT: [&str; 8] = [
        "i do", "i did", "i am", "yes", "no", "it is", "it does", "you are",
    ];
    const STARTS: [&str; 10] = [
        "don't",
        "do not",
        "please don't",
        "please do not",
        "happy birthday",
        "happy new year",
        "how old are you",
        "where are you from",
        "where do you live",
        "what's your name",
    ];
    EXACT.contains(&normalized) || STARTS.iter().any(|s| normalized.starts_with(s))
}

/// As a suggestion shows it: capitalised, ending in `?` for a question and `.` otherwise
/// unless it already ends in punctuation.
fn presentable(surface: &str) -> String {
    let t = surface
        .trim()
        .trim_matches(|c: char| c == '"' || c == '\'' || c == ',');
    let mut chars = t.chars();
    let mut out: String = match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => String::new(),
    };
    if out.ends_with(|c: char| c.is_alphanumeric() || c == ')') {
        const QUESTION: [&str; 16] = [
            "what", "how", "why", "when", "where", "who", "which", "do", "does", "did", "are",
            "is", "have", "has", "can", "would",
        ];
        let first = normalize(&out);
        let first = first.split(' ').next().unwrap_or_default();
        out.push(if QUESTION.contains(&first) { '?' } else { '.' });
    }
    out
}

/// One use of a phrasing by a response, while counting.
struct Use {
    response: String,
    level: u8,
    surface: String,
    seeker: usize,
}

/// Phrasings of the rationales of `examples` used by at least `min_responses` distinct
/// responses, with the seeker posts (indexes into the returned list) their responses answered.
pub struct Counted {
    pub exemplars: Vec<Exemplar>,
    /// For each exemplar, the seeker posts of its responses (indexes into `seekers`).
    pub sources: Vec<Vec<usize>>,
    pub seekers: Vec<String>,
}

/// Counts the phrasings of the annotated rationales. The embedding of seeker posts is the
/// caller's ([`Counted::seekers`]), so that this step needs no model.
pub fn count_phrasings(examples: &[&Example], min_responses: usize) -> Counted {
    let mut seekers: Vec<String> = Vec::new();
    let mut seeker_index: HashMap<&str, usize> = HashMap::new();
    let mut uses: BTreeMap<(Mechanism, String), Vec<Use>> = BTreeMap::new();
    for ex in examples {
        let seeker = *seeker_index
            .entry(ex.seeker_post.as_str())
            .or_insert_with(|| {
                seekers.push(ex.seeker_post.clone());
                seekers.len() - 1
            });
        for m in Mechanism::ALL {
            let label = ex.label(m);
            if label.level == 0 {
                continue;
            }
            for span in &label.spans {
                let text = char_slice(&ex.response_post, *span);
                for s in sentences(&text) {
                    let surface = slice(&text, s.start, s.end);
                    let normal = normalize(&surface);
                    if normal.is_empty() {
                        continue;
                    }
                    uses.entry((m, normal)).or_default().push(Use {
                        response: ex.rp_id.clone(),
                        level: label.level,
                        surface,
                        seeker,
                    });
                }
            }
        }
    }
    let mut exemplars = Vec::new();
    let mut sources = Vec::new();
    for ((mechanism, normal), uses) in uses {
        let mut by_response: BTreeMap<&str, &Use> = BTreeMap::new();
        for u in &uses {
            by_response.entry(u.response.as_str()).or_insert(u);
        }
        if by_response.len() < min_responses
            || is_experience_claim(&normal)
            || needs_context(&normal)
        {
            continue;
        }
        let mut surfaces: BTreeMap<&str, usize> = BTreeMap::new();
        for u in by_response.values() {
            *surfaces.entry(u.surface.as_str()).or_default() += 1;
        }
        let surface = surfaces
            .iter()
            .max_by_key(|(s, n)| (**n, std::cmp::Reverse(*s)))
            .map(|(s, _)| *s)
            .unwrap_or_default();
        let text = presentable(surface);
        if check_text(&text).is_err() {
            continue;
        }
        let mut levels = [0usize; 2];
        for u in by_response.values() {
            levels[usize::from(u.level.clamp(1, 2)) - 1] += 1;
        }
        let mut seeker_ids: Vec<usize> = by_response.values().map(|u| u.seeker).collect();
        seeker_ids.sort_unstable();
        seeker_ids.dedup();
        exemplars.push(Exemplar {
            mechanism,
            text,
            responses: by_response.len(),
            levels,
            seeker_centroid: Vec::new(),
        });
        sources.push(seeker_ids);
    }
    Counted {
        exemplars,
        sources,
        seekers,
    }
}

/// The unit-length mean of unit-length vectors.
pub fn centroid<'a>(vectors: impl Iterator<Item = &'a [f32]>) -> Vec<f32> {
    let mut sum: Vec<f32> = Vec::new();
    for v in vectors {
        if sum.is_empty() {
            sum = vec![0.0; v.len()];
        }
        for (s, x) in sum.iter_mut().zip(v) {
            *s += x;
        }
    }
    crate::predict::unit_length(sum)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn experience_claims_are_recognised_and_reflections_are_not() {
        for claim in [
            "same",
            "me too",
            "i've been there",
            "i went through the same thing",
            "i feel the same way",
            "i know the feeling",
            "i can relate",
            "this happened to me too",
        ] {
            assert!(is_experience_claim(claim), "{claim}");
        }
        for reflection in [
            "that sounds really hard",
            "it sounds like you feel alone",
            "i'm so sorry",
            "what happened",
            "i know how you feel",
        ] {
            assert!(!is_experience_claim(reflection), "{reflection}");
        }
    }

    #[test]
    fn phrasings_are_shown_capitalised_and_punctuated() {
        assert_eq!(presentable("what happened"), "What happened?");
        assert_eq!(presentable("i'm sorry"), "I'm sorry.");
        assert_eq!(presentable("Hang in there!"), "Hang in there!");
    }
}
