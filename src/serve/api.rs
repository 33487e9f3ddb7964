//! HTTP routes, request validation and the error table.

use super::batcher::{Batcher, Overloaded};
use super::metrics::Metrics;
use super::ServeConfig;
use crate::data::Pair;
use crate::predict::{EncodedPair, PairPrediction};
use crate::text::TextEncoder;
use axum::body::Body;
use axum::extract::{MatchedPath, State};
use axum::http::{header, HeaderMap, Request, StatusCode};
use axum::middleware::Next;
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use serde_json::{json, Value};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

pub struct AppState {
    pub config: ServeConfig,
    pub batcher: Batcher,
    pub text: TextEncoder,
    pub metrics: Arc<Metrics>,
    pub info: Value,
    pub request_ids: AtomicU64,
}

/// An error answered as `{"error": "...", "type": "..."}`.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    kind: &'static str,
    message: String,
}

impl ApiError {
    fn new(status: StatusCode, kind: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            kind,
            message: message.into(),
        }
    }

    fn validation(message: impl Into<String>) -> Self {
        Self::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_error",
            message,
        )
    }

    fn too_large(message: impl Into<String>) -> Self {
        Self::new(StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large", message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (
            self.status,
            axum::Json(json!({"error": self.message, "type": self.kind})),
        )
            .into_response()
    }
}

pub fn router(state: Arc<AppState>) -> Router {
    let protected = Router::new()
        .route("/v1/score", post(score))
        .route("/info", get(info))
        .route("/metrics", get(metrics))
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            require_token,
        ));
    Router::new()
        .route("/", get(page))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/openapi.json", get(openapi))
        .merge(protected)
        .fallback(not_found)
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
                StatusCode::UNAUTHORIZED,
                "unauthorized",
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
    ApiError::new(
        StatusCode::NOT_FOUND,
        "not_found",
        "no such route; see GET /openapi.json",
    )
}

async fn healthz() -> axum::Json<Value> {
    axum::Json(json!({"status": "ok"}))
}

async fn readyz(State(state): State<Arc<AppState>>) -> Response {
    if state.batcher.is_ready() {
        axum::Json(json!({"status": "ready"})).into_response()
    } else {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "not_ready",
            "the model is not loaded yet",
        )
        .into_response()
    }
}

async fn metrics(State(state): State<Arc<AppState>>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        state.metrics.render(),
    )
}

async fn info(State(state): State<Arc<AppState>>) -> axum::Json<Value> {
    axum::Json(state.info.clone())
}

async fn openapi() -> axum::Json<Value> {
    axum::Json(super::openapi::document())
}

async fn page() -> Html<&'static str> {
    Html(include_str!("assets/feedback.html"))
}

/// Reads one pair object; `at` names it in messages (`pairs[3]`).
fn parse_pair(
    value: &Value,
    at: &str,
    index: usize,
    config: &ServeConfig,
) -> Result<Pair, ApiError> {
    let object = value.as_object().ok_or_else(|| {
        ApiError::validation(format!(
            "{at}: expected an object with seeker_post and response_post"
        ))
    })?;
    let text = |field: &str| -> Result<String, ApiError> {
        match object.get(field) {
            Some(Value::String(s)) => {
                if s.chars().count() > config.max_text_chars {
                    Err(ApiError::too_large(format!(
                        "{at}.{field}: longer than the limit of {} characters (max_text_chars)",
                        config.max_text_chars
                    )))
                } else {
                    Ok(s.clone())
                }
            }
            Some(other) => Err(ApiError::validation(format!(
                "{at}.{field}: expected a string, found {}",
                type_name(other)
            ))),
            None => Err(ApiError::validation(format!("{at}: missing field {field}"))),
        }
    };
    let seeker_post = text("seeker_post")?;
    let response_post = text("response_post")?;
    if response_post.trim().is_empty() {
        return Err(ApiError::validation(format!(
            "{at}.response_post: is empty; there is nothing to score"
        )));
    }
    let id = match object.get("id") {
        None | Some(Value::Null) => (index + 1).to_string(),
        Some(Value::String(s)) => s.clone(),
        Some(Value::Number(n)) => n.to_string(),
        Some(other) => {
            return Err(ApiError::validation(format!(
                "{at}.id: expected a string or a number, found {}",
                type_name(other)
            )))
        }
    };
    Ok(Pair {
        id,
        seeker_post,
        response_post,
    })
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// The request's pairs, and whether it was the single-pair form.
fn parse_request(body: &[u8], config: &ServeConfig) -> Result<(Vec<Pair>, bool), ApiError> {
    let text = std::str::from_utf8(body).map_err(|_| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_utf8",
            "the body is not valid UTF-8",
        )
    })?;
    let value: Value = serde_json::from_str(text).map_err(|e| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_json",
            format!("the body is not valid JSON: {e}"),
        )
    })?;
    match value.get("pairs") {
        Some(Value::Array(items)) => {
            if items.is_empty() {
                return Err(ApiError::validation("pairs: is empty"));
            }
            if items.len() > config.max_pairs_per_request {
                return Err(ApiError::too_large(format!(
                    "pairs: {} pairs, more than the limit of {} per request (max_pairs_per_request)",
                    items.len(),
                    config.max_pairs_per_request
                )));
            }
            let pairs = items
                .iter()
                .enumerate()
                .map(|(i, v)| parse_pair(v, &format!("pairs[{i}]"), i, config))
                .collect::<Result<Vec<_>, _>>()?;
            Ok((pairs, false))
        }
        Some(other) => Err(ApiError::validation(format!(
            "pairs: expected an array, found {}",
            type_name(other)
        ))),
        None => Ok((vec![parse_pair(&value, "body", 0, config)?], true)),
    }
}

async fn score(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let limit = state.config.max_body_bytes;
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    let too_large = || {
        ApiError::too_large(format!(
            "the body is larger than the limit of {limit} bytes (max_body_bytes)"
        ))
    };
    if declared.is_some_and(|n| n > limit) {
        return Err(too_large());
    }
    let bytes = axum::body::to_bytes(body, limit)
        .await
        .map_err(|_| too_large())?;
    let (pairs, single) = parse_request(&bytes, &state.config)?;
    let text = state.text.clone();
    let encoded = tokio::task::spawn_blocking(move || {
        pairs
            .into_iter()
            .map(|p| EncodedPair::new(&text, p))
            .collect::<Result<Vec<_>, _>>()
    })
    .await
    .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string()))?
    .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string()))?;
    let receiver = state.batcher.submit(encoded).map_err(|Overloaded| {
        ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "overloaded",
            format!(
                "the queue is full ({} requests, max_concurrent_requests); retry shortly",
                state.config.max_concurrent_requests
            ),
        )
    })?;
    let predictions = receiver
        .await
        .map_err(|_| {
            ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "shutting_down",
                "the model stopped",
            )
        })?
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", e))?;
    let body = if single {
        predictions
            .first()
            .map(PairPrediction::to_json)
            .unwrap_or(Value::Null)
    } else {
        json!({"predictions": predictions.iter().map(PairPrediction::to_json).collect::<Vec<_>>()})
    };
    Ok(axum::Json(body).into_response())
}
