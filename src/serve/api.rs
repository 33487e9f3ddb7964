//! HTTP routes. Every route is registered together with its OpenAPI description
//! (`utoipa_axum::routes!`), so that a route cannot be served undocumented.

use super::batcher::{BatchError, Batcher, Health};
use super::error::{ApiError, ErrorBody, ErrorKind};
use super::metrics::Metrics;
use super::types::{
    parse_score_request, parse_suggest_request, ScoreRequest, ScoreResponse, ScoredBatch, Status,
    SuggestRequest,
};
use super::ServeConfig;
use crate::data::Pair;
use crate::predict::{EncodedPair, PairPrediction};
use crate::suggest::{candidate_pairs, plan, verify, Suggestions};
use crate::text::TextEncoder;
use axum::body::Body;
use axum::extract::{MatchedPath, State};
use axum::http::{header, HeaderMap, Request};
use axum::middleware::Next;
use axum::response::{Html, IntoResponse, Response};
use axum::{Extension, Json, Router};
use serde_json::Value;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub struct AppState {
    pub config: ServeConfig,
    pub batcher: Batcher,
    /// Places for requests waiting for the model, taken before the body is read.
    pub waiting: Arc<Semaphore>,
    pub text: TextEncoder,
    pub metrics: Arc<Metrics>,
    pub info: Value,
    pub request_ids: AtomicU64,
    /// What `/v1/suggest` needs; `None` serves 503 there.
    pub suggesting: Option<Arc<super::Suggesting>>,
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "epitome",
        description = "Empathy in text-based mental health support: levels (0 none, 1 weak, 2 strong) and rationales of Emotional Reactions (ER), Interpretations (IP) and Explorations (EX), after Sharma et al., EMNLP 2020."
    ),
    components(schemas(ErrorBody)),
    modifiers(&BearerScheme)
)]
struct ApiDoc;

struct BearerScheme;

impl utoipa::Modify for BearerScheme {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

/// The routes and the OpenAPI document describing exactly them.
pub fn router(state: Arc<AppState>) -> Router {
    let protected = OpenApiRouter::new()
        .routes(routes!(score))
        .routes(routes!(suggest))
        .routes(routes!(info))
        .routes(routes!(metrics))
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            require_token,
        ));
    let (router, doc) = OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(page))
        .routes(routes!(healthz))
        .routes(routes!(readyz))
        .routes(routes!(openapi))
        .merge(protected)
        .split_for_parts();
    router
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(Extension(Arc::new(doc)))
        .layer(axum::middleware::from_fn_with_state(state.clone(), observe))
        .with_state(state)
}

/// Logs and counts every request: id, route, status, body size and time; never the body.
async fn observe(
    State(state): State<Arc<AppState>>,
    request: Request<Body>,
    next: Next,
) -> Response {
    let started = Instant::now();
    let id = state.request_ids.fetch_add(1, Ordering::Relaxed) + 1;
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or("unmatched", |p| p.as_str())
        .to_owned();
    let bytes = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap_or(0);
    let response = next.run(request).await;
    let seconds = started.elapsed().as_secs_f64();
    state
        .metrics
        .request(&route, response.status().as_u16(), seconds);
    tracing::info!(
        request_id = id,
        route,
        status = response.status().as_u16(),
        bytes,
        ms = format!("{:.1}", seconds * 1e3),
        "request"
    );
    response
}

async fn require_token(
    State(state): State<Arc<AppState>>,
    request: Request<Body>,
    next: Next,
) -> Result<Response, ApiError> {
    if let Some(expected) = &state.config.token {
        let given = request
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .unwrap_or("");
        if !constant_time_eq(given.as_bytes(), expected.as_bytes()) {
            return Err(ApiError::new(
                ErrorKind::Unauthorized,
                "missing or wrong bearer token: send 'Authorization: Bearer <token>'",
            ));
        }
    }
    Ok(next.run(request).await)
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

async fn not_found() -> ApiError {
    ApiError::new(ErrorKind::NotFound, "no such route; see GET /openapi.json")
}

async fn method_not_allowed() -> ApiError {
    ApiError::new(
        ErrorKind::MethodNotAllowed,
        "this route does not take that method; see GET /openapi.json",
    )
}

/// The process is up.
#[utoipa::path(get, path = "/healthz", responses((status = 200, body = Status)))]
async fn healthz() -> Json<Status> {
    Json(Status { status: "ok" })
}

/// The model thread is up and takes requests.
#[utoipa::path(get, path = "/readyz", responses(
    (status = 200, body = Status),
    (status = 503, body = ErrorBody, description = "The model is loading, or its thread has stopped")
))]
async fn readyz(State(state): State<Arc<AppState>>) -> Response {
    let not_ready = |message: &str| {
        ApiError::named(ErrorKind::Unavailable, "not_ready", message).into_response()
    };
    match state.batcher.health() {
        Health::Ready => Json(Status { status: "ready" }).into_response(),
        Health::Starting => not_ready("the model is not loaded yet"),
        Health::Dead => not_ready("the model thread has stopped; restart the server"),
    }
}

/// Prometheus metrics: counts and timings, never text.
#[utoipa::path(get, path = "/metrics", security(("bearer" = [])), responses(
    (status = 200, body = String, content_type = "text/plain", description = "Text exposition format"),
    (status = 401, body = ErrorBody)
))]
async fn metrics(State(state): State<Arc<AppState>>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        state.metrics.render(),
    )
}

/// Facts of the loaded model bundle.
#[utoipa::path(get, path = "/info", security(("bearer" = [])), responses(
    (status = 200, body = Object, description = "Model facts"),
    (status = 401, body = ErrorBody)
))]
async fn info(State(state): State<Arc<AppState>>) -> Json<Value> {
    Json(state.info.clone())
}

/// This document.
#[utoipa::path(get, path = "/openapi.json", responses((status = 200, body = Object, description = "OpenAPI 3")))]
async fn openapi(
    Extension(doc): Extension<Arc<utoipa::openapi::OpenApi>>,
) -> Json<utoipa::openapi::OpenApi> {
    Json(doc.as_ref().clone())
}

/// The feedback page for peer supporters.
#[utoipa::path(get, path = "/", responses((status = 200, body = String, content_type = "text/html")))]
async fn page() -> Html<&'static str> {
    Html(include_str!("assets/feedback.html"))
}

impl From<BatchError> for ApiError {
    fn from(e: BatchError) -> Self {
        let kind = match e {
            BatchError::Backend(_) => ErrorKind::Backend,
            BatchError::QueueTimeout { .. } | BatchError::Overloaded { .. } => {
                ErrorKind::Overloaded
            }
            BatchError::Dead => ErrorKind::Unavailable,
        };
        ApiError::new(kind, e.to_string())
    }
}

/// Whether the client says the body is JSON: a web page may post `text/plain` to a local
/// server without asking it first (no CORS preflight), `application/json` it may not.
fn declares_json(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("application/json"))
}

/// The body of a JSON request, with the request's place among those waiting for the model:
/// 415 unless it is declared JSON, 429 when too many wait (before the body is read), 413 over
/// the size limit, 408 when it does not arrive in time, 503 when the model thread is gone.
async fn read_json_body(
    state: &AppState,
    headers: &HeaderMap,
    body: Body,
) -> Result<(axum::body::Bytes, OwnedSemaphorePermit), ApiError> {
    if !declares_json(headers) {
        return Err(ApiError::new(
            ErrorKind::UnsupportedMediaType,
            "send the body with 'Content-Type: application/json'",
        ));
    }
    if state.batcher.health() == Health::Dead {
        return Err(BatchError::Dead.into());
    }
    // Before the body is read: a burst beyond the limit costs neither reading nor tokenizing.
    let waiting = state.waiting.clone().try_acquire_owned().map_err(|_| {
        ApiError::from(BatchError::Overloaded {
            requests: state.config.max_concurrent_requests,
        })
    })?;
    let limit = state.config.max_body_bytes;
    let too_large = || {
        ApiError::too_large(format!(
            "the body is larger than the limit of {limit} bytes (max_body_bytes)"
        ))
    };
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|n| n > limit) {
        return Err(too_large());
    }
    let read = tokio::time::timeout(state.config.body_timeout, axum::body::to_bytes(body, limit));
    let bytes = read
        .await
        .map_err(|_| {
            ApiError::new(
                ErrorKind::RequestTimeout,
                format!(
                    "the body did not arrive within {} ms (body_timeout)",
                    state.config.body_timeout.as_millis()
                ),
            )
        })?
        .map_err(|e| {
            let over_limit = std::error::Error::source(&e)
                .is_some_and(|s| s.is::<http_body_util::LengthLimitError>());
            if over_limit {
                too_large()
            } else {
                ApiError::new(
                    ErrorKind::BadRequest,
                    "the body could not be read (a broken chunked encoding?)",
                )
            }
        })?;
    Ok((bytes, waiting))
}

/// What the routes that read a JSON body and ask the model can answer besides 200: one table
/// for `/v1/score` and `/v1/suggest`, as they share their checks.
#[derive(utoipa::IntoResponses)]
#[allow(dead_code)] // only its OpenAPI description is used
enum ModelRouteErrors {
    /// The body is not UTF-8, not JSON, or its transfer encoding is broken
    #[response(status = 400)]
    BadRequest(ErrorBody),
    /// Missing or wrong bearer token
    #[response(status = 401)]
    Unauthorized(ErrorBody),
    /// The body did not arrive within the read timeout
    #[response(status = 408)]
    Timeout(ErrorBody),
    /// Body, text or pair count over its limit
    #[response(status = 413)]
    TooLarge(ErrorBody),
    /// The body is not declared as application/json
    #[response(status = 415)]
    NotJson(ErrorBody),
    /// Missing fields, wrong types, an empty response, an unknown mechanism, text the tokenizer refuses
    #[response(status = 422)]
    Invalid(ErrorBody),
    /// Too many requests wait for the model, or this one waited too long
    #[response(status = 429)]
    Overloaded(ErrorBody),
    /// The model failed on the batch
    #[response(status = 500)]
    Backend(ErrorBody),
    /// The model thread has stopped (or, for /v1/suggest, the server has no exemplar library)
    #[response(status = 503)]
    Unavailable(ErrorBody),
}

/// Tokenizes pairs off the async threads: 422 for a post the tokenizer refuses.
async fn tokenize(state: &AppState, pairs: Vec<Pair>) -> Result<Vec<EncodedPair>, ApiError> {
    let text = state.text.clone();
    tokio::task::spawn_blocking(move || {
        pairs
            .into_iter()
            .map(|p| EncodedPair::new(&text, p))
            .collect::<Result<Vec<_>, _>>()
    })
    .await
    .map_err(|_| ApiError::new(ErrorKind::Backend, "tokenizing the request failed"))?
    .map_err(|e| ApiError::validation(format!("the tokenizer refused a post: {e}")))
}

/// Scores tokenized pairs on the model thread; `waiting` is the request's place in the queue
/// until its batch starts.
async fn predict(
    state: &AppState,
    encoded: Vec<EncodedPair>,
    waiting: OwnedSemaphorePermit,
) -> Result<Vec<PairPrediction>, ApiError> {
    let receiver = state.batcher.submit(encoded, waiting)?;
    Ok(receiver.await.map_err(|_| BatchError::Dead)??)
}

/// Score one pair, or a batch of pairs.
#[utoipa::path(
    post,
    path = "/v1/score",
    security(("bearer" = [])),
    request_body(content = ScoreRequest, content_type = "application/json"),
    responses(
        (status = 200, body = ScoreResponse, description = "A Prediction for a single pair, Predictions for a batch"),
        ModelRouteErrors
    )
)]
async fn score(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<ScoreResponse>, ApiError> {
    let (bytes, waiting) = read_json_body(&state, &headers, body).await?;
    let (pairs, single) = parse_score_request(&bytes, &state.config)?;
    let encoded = tokenize(&state, pairs).await?;
    let mut predictions = predict(&state, encoded, waiting).await?;
    let answer = if single {
        let first = predictions
            .drain(..)
            .next()
            .ok_or_else(|| ApiError::new(ErrorKind::Backend, "the model returned no prediction"))?;
        ScoreResponse::Single(first.into())
    } else {
        ScoreResponse::Batch(ScoredBatch {
            predictions: predictions.into_iter().map(Into::into).collect(),
        })
    };
    Ok(Json(answer))
}

/// Edits that raise a response's empathy: sentences to insert or to put in place of one of
/// its sentences, each scored by the model with the edit made.
#[utoipa::path(
    post,
    path = "/v1/suggest",
    security(("bearer" = [])),
    request_body(content = SuggestRequest, content_type = "application/json"),
    responses(
        (status = 200, body = Suggestions, description = "The response's levels, and the verified edits ranked by gain within each mechanism"),
        ModelRouteErrors
    )
)]
async fn suggest(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<Suggestions>, ApiError> {
    let (bytes, waiting) = read_json_body(&state, &headers, body).await?;
    let (pair, options) = parse_suggest_request(&bytes, &state.config)?;
    let Some(suggesting) = state.suggesting.clone() else {
        return Err(ApiError::named(
            ErrorKind::Unavailable,
            "no_exemplars",
            "this server has no exemplar library to suggest from",
        ));
    };
    let encoded = tokenize(&state, vec![pair.clone()]).await?;
    let embedding = {
        let (seeker, embedder) = (encoded[0].seeker.clone(), suggesting.clone());
        tokio::task::spawn_blocking(move || embedder.embed(&seeker))
            .await
            .map_err(|_| ApiError::new(ErrorKind::Backend, "embedding the seeker post failed"))?
            .map_err(|e| ApiError::new(ErrorKind::Backend, e))?
    };
    let before = predict(&state, encoded, waiting)
        .await?
        .pop()
        .ok_or_else(|| ApiError::new(ErrorKind::Backend, "the model returned no prediction"))?;
    let candidates = plan(
        &suggesting.library,
        &pair.response_post,
        &before,
        &embedding,
        &options,
    );
    let after = if candidates.is_empty() {
        Vec::new()
    } else {
        let pairs = candidate_pairs(&pair.seeker_post, &pair.response_post, &candidates);
        let encoded = tokenize(&state, pairs).await?;
        // Admitted once already: this request waits for its second place rather than fail
        // half done.
        let waiting = state
            .waiting
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| BatchError::Dead)?;
        predict(&state, encoded, waiting).await?
    };
    Ok(Json(verify(&before, candidates, &after, &options)))
}
