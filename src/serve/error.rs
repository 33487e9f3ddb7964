//! The server's errors: one closed set of kinds and one table from kind to HTTP status, as
//! text-embeddings-inference keeps its `ErrorType` → `StatusCode` table in one place. Call
//! sites say what went wrong; only this file says what status that is.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

/// What went wrong, as far as the client needs to know.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorKind {
    /// The body is not UTF-8, not JSON, or its transfer encoding is broken.
    BadRequest,
    /// Missing or wrong bearer token.
    Unauthorized,
    NotFound,
    MethodNotAllowed,
    /// The client stopped sending the body before the read timeout.
    RequestTimeout,
    /// Body, pair count or a text over its limit.
    PayloadTooLarge,
    /// The body is not declared as `application/json`.
    UnsupportedMediaType,
    /// Well-formed JSON that does not describe pairs to score (missing fields, wrong types,
    /// an empty response, text the tokenizer refuses).
    Validation,
    /// Too many requests waiting for the model, or one waited longer than the queue bound.
    Overloaded,
    /// The model failed on a batch.
    Backend,
    /// The model thread is gone (it panicked, or the server is stopping): nothing will be
    /// scored until the process restarts.
    Unavailable,
}

impl ErrorKind {
    /// The `type` field of the JSON error.
    pub fn name(self) -> &'static str {
        match self {
            ErrorKind::BadRequest => "bad_request",
            ErrorKind::Unauthorized => "unauthorized",
            ErrorKind::NotFound => "not_found",
            ErrorKind::MethodNotAllowed => "method_not_allowed",
            ErrorKind::RequestTimeout => "request_timeout",
            ErrorKind::PayloadTooLarge => "payload_too_large",
            ErrorKind::UnsupportedMediaType => "unsupported_media_type",
            ErrorKind::Validation => "validation_error",
            ErrorKind::Overloaded => "overloaded",
            ErrorKind::Backend => "backend_error",
            ErrorKind::Unavailable => "unavailable",
        }
    }
}

impl From<ErrorKind> for StatusCode {
    fn from(kind: ErrorKind) -> Self {
        match kind {
            ErrorKind::BadRequest => StatusCode::BAD_REQUEST,
            ErrorKind::Unauthorized => StatusCode::UNAUTHORIZED,
            ErrorKind::NotFound => StatusCode::NOT_FOUND,
            ErrorKind::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ErrorKind::RequestTimeout => StatusCode::REQUEST_TIMEOUT,
            ErrorKind::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ErrorKind::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ErrorKind::Validation => StatusCode::UNPROCESSABLE_ENTITY,
            ErrorKind::Overloaded => StatusCode::TOO_MANY_REQUESTS,
            ErrorKind::Backend => StatusCode::INTERNAL_SERVER_ERROR,
            ErrorKind::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        }
    }
}

/// The body of every error answer.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = Error)]
pub struct ErrorBody {
    /// What is wrong and, where there is one, how to fix it; never the posts' text.
    pub error: String,
    /// One of: bad_request, invalid_json, invalid_utf8, unauthorized, not_found,
    /// method_not_allowed, request_timeout, payload_too_large, unsupported_media_type,
    /// validation_error, overloaded, backend_error, unavailable, not_ready.
    #[serde(rename = "type")]
    pub kind: String,
}

/// An error answered as `{"error": "...", "type": "..."}` with the status of its kind.
#[derive(Debug)]
pub struct ApiError {
    pub kind: ErrorKind,
    /// A finer `type` than the kind's name where clients tell them apart (`invalid_json`).
    pub name: &'static str,
    pub message: String,
}

impl ApiError {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            name: kind.name(),
            message: message.into(),
        }
    }

    pub fn named(kind: ErrorKind, name: &'static str, message: impl Into<String>) -> Self {
        Self {
            kind,
            name,
            message: message.into(),
        }
    }

    pub fn validation(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Validation, message)
    }

    pub fn too_large(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::PayloadTooLarge, message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = StatusCode::from(self.kind);
        let body = ErrorBody {
            error: self.message,
            kind: self.name.to_owned(),
        };
        (status, axum::Json(body)).into_response()
    }
}
