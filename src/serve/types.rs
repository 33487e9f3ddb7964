//! The JSON the API takes and gives. The handlers parse requests into these types and answer
//! with them, and the OpenAPI document is derived from the same types, so the two cannot drift.

use super::error::ApiError;
use super::ServeConfig;
use crate::data::Pair;
use crate::mechanism::Mechanism;
use crate::predict::{MechanismPrediction, PairPrediction};
use serde::de::IgnoredAny;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use utoipa::openapi::schema::{ObjectBuilder, OneOfBuilder, Schema, Type};
use utoipa::openapi::RefOr;
use utoipa::{PartialSchema, ToSchema};

/// One (seeker post, response post) pair.
#[derive(Debug, Deserialize, ToSchema)]
#[schema(as = Pair)]
pub struct PairRequest {
    /// Echoed in the answer; a number is kept exactly as written, beyond 64 bits too.
    /// Default: the pair's position, from 1.
    #[schema(schema_with = id_schema)]
    #[serde(default)]
    pub id: Option<Box<RawValue>>,
    pub seeker_post: String,
    /// The text that is scored; must not be empty.
    #[schema(min_length = 1)]
    pub response_post: String,
}

/// Several pairs in one request, scored together.
#[derive(Debug, Deserialize, ToSchema)]
#[schema(as = Batch)]
pub struct BatchRequest {
    #[schema(min_items = 1)]
    pub pairs: Vec<PairRequest>,
}

/// The body of `POST /v1/score`: one pair, or a batch.
pub enum ScoreRequest {
    Single(PairRequest),
    Batch(BatchRequest),
}

impl ScoreRequest {
    /// Tells the two forms apart by a `pairs` field and parses the one it is; serde's untagged
    /// enums would lose the failing field's name and cannot keep a number id as written.
    fn parse(text: &str) -> Result<Self, ApiError> {
        // Syntax first, so that broken JSON is 400 and only JSON of the wrong shape 422.
        check_syntax(text)?;
        require_object(text)?;
        let batch = matches!(
            serde_json::from_str::<Shape>(text),
            Ok(Shape { pairs: Some(_) })
        );
        Ok(if batch {
            ScoreRequest::Batch(typed(text)?)
        } else {
            ScoreRequest::Single(typed(text)?)
        })
    }
}

// Written out because the schema derive reads untaggedness only from serde's attribute; the
// two forms' own schemas are derived.
impl PartialSchema for ScoreRequest {
    fn schema() -> RefOr<Schema> {
        OneOfBuilder::new()
            .item(RefOr::Ref(utoipa::openapi::Ref::from_schema_name(
                PairRequest::name(),
            )))
            .item(RefOr::Ref(utoipa::openapi::Ref::from_schema_name(
                BatchRequest::name(),
            )))
            .description(Some("One pair, or a batch of pairs."))
            .into()
    }
}

impl ToSchema for ScoreRequest {
    fn schemas(schemas: &mut Vec<(String, RefOr<Schema>)>) {
        for (name, schema) in [
            (PairRequest::name(), PairRequest::schema()),
            (BatchRequest::name(), BatchRequest::schema()),
        ] {
            schemas.push((name.into_owned(), schema));
        }
        PairRequest::schemas(schemas);
        BatchRequest::schemas(schemas);
    }
}

fn id_schema() -> impl Into<RefOr<Schema>> {
    OneOfBuilder::new()
        .item(ObjectBuilder::new().schema_type(Type::String))
        .item(ObjectBuilder::new().schema_type(Type::Number))
}

/// Levels, probabilities and rationales of the bundle's mechanisms for one pair.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = Prediction)]
pub struct ScoredPair {
    pub id: String,
    #[serde(rename = "ER", skip_serializing_if = "Option::is_none")]
    pub er: Option<MechanismPrediction>,
    #[serde(rename = "IP", skip_serializing_if = "Option::is_none")]
    pub ip: Option<MechanismPrediction>,
    #[serde(rename = "EX", skip_serializing_if = "Option::is_none")]
    pub ex: Option<MechanismPrediction>,
    /// A post was cut at the model's maximum length.
    pub truncated: bool,
}

impl From<PairPrediction> for ScoredPair {
    fn from(p: PairPrediction) -> Self {
        let mut scored = ScoredPair {
            id: p.id,
            er: None,
            ip: None,
            ex: None,
            truncated: p.truncated,
        };
        for (m, prediction) in p.mechanisms {
            let slot = match m {
                Mechanism::EmotionalReactions => &mut scored.er,
                Mechanism::Interpretations => &mut scored.ip,
                Mechanism::Explorations => &mut scored.ex,
            };
            *slot = Some(prediction);
        }
        scored
    }
}

/// The answer to a batch.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = Predictions)]
pub struct ScoredBatch {
    pub predictions: Vec<ScoredPair>,
}

/// A Prediction for a single pair, Predictions for a batch.
#[derive(Debug, Serialize, ToSchema)]
#[serde(untagged)]
pub enum ScoreResponse {
    Single(ScoredPair),
    Batch(ScoredBatch),
}

/// `GET /healthz` and `GET /readyz` when all is well.
#[derive(Debug, Serialize, ToSchema)]
pub struct Status {
    /// "ok" or "ready".
    pub status: &'static str,
}

/// Which form a body has, read without building either.
#[derive(Deserialize)]
struct Shape {
    pairs: Option<IgnoredAny>,
}

/// The body as text: 400 unless it is UTF-8.
fn body_text(body: &[u8]) -> Result<&str, ApiError> {
    std::str::from_utf8(body).map_err(|_| {
        ApiError::named(
            super::error::ErrorKind::BadRequest,
            "invalid_utf8",
            "the body is not valid UTF-8",
        )
    })
}

/// 400 for a body that is not JSON at all, so that only JSON of the wrong shape is 422.
fn check_syntax(text: &str) -> Result<(), ApiError> {
    match serde_json::from_str::<IgnoredAny>(text) {
        Err(e) if !e.is_data() => Err(ApiError::named(
            super::error::ErrorKind::BadRequest,
            "invalid_json",
            format!("the body is not valid JSON: {e}"),
        )),
        _ => Ok(()),
    }
}

/// 422 for JSON that is not an object: serde would read an array field by field and name a
/// position instead of the problem.
fn require_object(text: &str) -> Result<(), ApiError> {
    let kind = match text.trim_start().as_bytes().first() {
        Some(b'{') => return Ok(()),
        Some(b'[') => "an array",
        Some(b'"') => "a string",
        Some(b't' | b'f') => "a boolean",
        Some(b'n') => "null",
        _ => "a number",
    };
    Err(ApiError::validation(format!(
        "the body must be a JSON object with seeker_post and response_post, found {kind}"
    )))
}

/// The body of `POST /v1/suggest`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SuggestRequest {
    pub seeker_post: String,
    /// The response to improve; must not be empty.
    #[schema(min_length = 1)]
    pub response_post: String,
    /// Mechanisms to suggest for (default: all of the model's).
    #[schema(value_type = Option<Vec<String>>, example = json!(["IP"]))]
    #[serde(default)]
    pub mechanisms: Option<Vec<Mechanism>>,
    /// Suggestions per mechanism (default 3, at most 10).
    #[schema(minimum = 1, maximum = 10)]
    #[serde(default)]
    pub max_per_mechanism: Option<usize>,
}

/// The pair and options of a suggestion request, checked as `/v1/score` checks a pair.
pub fn parse_suggest_request(
    body: &[u8],
    config: &ServeConfig,
) -> Result<(Pair, crate::suggest::SuggestOptions), ApiError> {
    let text = body_text(body)?;
    check_syntax(text)?;
    require_object(text)?;
    let request: SuggestRequest = typed(text)?;
    let defaults = crate::suggest::SuggestOptions::default();
    let max_per_mechanism = match request.max_per_mechanism {
        None => defaults.max_per_mechanism,
        Some(n @ 1..=crate::suggest::MAX_PER_MECHANISM) => n,
        Some(n) => {
            return Err(ApiError::validation(format!(
                "max_per_mechanism: {n} is outside 1..={}",
                crate::suggest::MAX_PER_MECHANISM
            )))
        }
    };
    let mechanisms = match request.mechanisms {
        None => defaults.mechanisms,
        Some(m) if m.is_empty() => {
            return Err(ApiError::validation("mechanisms: is empty"));
        }
        Some(m) => m,
    };
    let pair = PairRequest {
        id: None,
        seeker_post: request.seeker_post,
        response_post: request.response_post,
    }
    .into_pair("body", 0, config)?;
    Ok((
        pair,
        crate::suggest::SuggestOptions {
            mechanisms,
            max_per_mechanism,
        },
    ))
}

/// The request's pairs, and whether it was the single-pair form.
pub fn parse_score_request(
    body: &[u8],
    config: &ServeConfig,
) -> Result<(Vec<Pair>, bool), ApiError> {
    let text = body_text(body)?;
    match ScoreRequest::parse(text)? {
        ScoreRequest::Batch(batch) => {
            if batch.pairs.is_empty() {
                return Err(ApiError::validation("pairs: is empty"));
            }
            if batch.pairs.len() > config.max_pairs_per_request {
                return Err(ApiError::too_large(format!(
                    "pairs: {} pairs, more than the limit of {} per request (max_pairs_per_request)",
                    batch.pairs.len(),
                    config.max_pairs_per_request
                )));
            }
            let pairs = batch
                .pairs
                .into_iter()
                .enumerate()
                .map(|(i, p)| p.into_pair(&format!("pairs[{i}]"), i, config))
                .collect::<Result<Vec<_>, _>>()?;
            Ok((pairs, false))
        }
        ScoreRequest::Single(pair) => Ok((vec![pair.into_pair("body", 0, config)?], true)),
    }
}

/// Parses `text` as `T`, naming the failing field by its path.
fn typed<'de, T: Deserialize<'de>>(text: &'de str) -> Result<T, ApiError> {
    let mut de = serde_json::Deserializer::from_str(text);
    serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let path = e.path().to_string();
        let message = describe(e.inner());
        ApiError::validation(if path == "." {
            message
        } else {
            format!("{path}: {message}")
        })
    })
}

/// serde's message without the value itself (a post's text must not come back in an error,
/// nor reach a log), and in this API's words: "expected a string, found a number".
fn describe(e: &serde_json::Error) -> String {
    let full = e.to_string();
    let message = full.rsplit_once(" at line ").map_or(&*full, |(m, _)| m);
    let words = |s: &str| {
        s.replace('`', "")
            .replace("a sequence", "an array")
            .replace(
                "struct PairRequest",
                "an object with seeker_post and response_post",
            )
            .replace("struct BatchRequest", "an object with pairs")
            .replace(
                "struct SuggestRequest",
                "an object with seeker_post and response_post",
            )
    };
    match message.strip_prefix("invalid type: ") {
        Some(rest) => {
            let (found, expected) = rest.split_once(", expected ").unwrap_or((rest, "?"));
            // `found` is "string \"...\"", "integer `5`", "map", ...: keep only the kind.
            let kind = match found.split(' ').next().unwrap_or(found) {
                "string" => "a string",
                "integer" | "floating" => "a number",
                "boolean" => "a boolean",
                "null" | "unit" => "null",
                "sequence" => "an array",
                "map" => "an object",
                other => other,
            };
            format!("expected {}, found {kind}", words(expected))
        }
        None => words(message),
    }
}

impl PairRequest {
    /// The pair to score, checked against the limits; `at` names it in messages.
    fn into_pair(self, at: &str, index: usize, config: &ServeConfig) -> Result<Pair, ApiError> {
        for (field, text) in [
            ("seeker_post", &self.seeker_post),
            ("response_post", &self.response_post),
        ] {
            if text.chars().count() > config.max_text_chars {
                return Err(ApiError::too_large(format!(
                    "{at}.{field}: longer than the limit of {} characters (max_text_chars)",
                    config.max_text_chars
                )));
            }
        }
        if self.response_post.trim().is_empty() {
            return Err(ApiError::validation(format!(
                "{at}.response_post: is empty; there is nothing to score"
            )));
        }
        let id = match self.id.as_deref().map(RawValue::get) {
            None | Some("null") => (index + 1).to_string(),
            Some(raw) if raw.starts_with('"') => serde_json::from_str(raw)
                .map_err(|_| ApiError::validation(format!("{at}.id: is not a valid string")))?,
            Some(raw) if raw.starts_with(|c: char| c == '-' || c.is_ascii_digit()) => {
                raw.to_owned()
            }
            Some(raw) => {
                let kind = match raw.as_bytes().first() {
                    Some(b'[') => "an array",
                    Some(b'{') => "an object",
                    _ => "a boolean",
                };
                return Err(ApiError::validation(format!(
                    "{at}.id: expected a string or a number, found {kind}"
                )));
            }
        };
        Ok(Pair {
            id,
            seeker_post: self.seeker_post,
            response_post: self.response_post,
        })
    }
}
