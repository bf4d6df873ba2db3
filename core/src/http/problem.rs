//! Every error of the REST API as `application/problem+json` (RFC 9457), mapped in one place.
//!
//! `type` is a stable URN per problem (`urn:session-service:problem:quota-exceeded`) that
//! clients can switch on; `detail` is for people. Internal errors are logged in full and
//! answered with an opaque message.

use crate::backend::BackendError;
use crate::domain::ValidationError;
use crate::service::ServiceError;
use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use tracing::error;
use utoipa::ToSchema;

/// The problem document.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Problem {
    /// Stable identifier of the kind of problem.
    #[serde(rename = "type")]
    #[schema(example = "urn:session-service:problem:validation-error")]
    pub type_: String,
    /// Short summary of the kind of problem.
    pub title: String,
    /// The HTTP status code.
    pub status: u16,
    /// What went wrong in this request.
    pub detail: String,
    /// The input field at fault, for validation errors (`symbols[1]`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    /// The quota reached, for `quota-exceeded`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub quota: Option<String>,
    /// The quota's limit, for `quota-exceeded`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub limit: Option<u32>,
}

/// The media type of problem documents.
pub const PROBLEM_JSON: &str = "application/problem+json";

/// Why a request failed, at the HTTP edge.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// A use case failed.
    #[error(transparent)]
    Service(#[from] ServiceError),
    /// The body is not JSON of the expected shape.
    #[error("malformed JSON: {0}")]
    MalformedJson(String),
    /// The body is not `application/json`.
    #[error("unsupported media type")]
    UnsupportedMediaType,
    /// The body exceeds the limit.
    #[error("body larger than {0} bytes")]
    PayloadTooLarge(usize),
    /// No valid caller (the authorizer context is missing or expired).
    #[error("unauthorized")]
    Unauthorized,
    /// No such route.
    #[error("no such resource")]
    NoRoute,
    /// The route exists, the method does not.
    #[error("method not allowed")]
    MethodNotAllowed,
    /// The idempotency key was used with a different request.
    #[error("idempotency key reused with a different request")]
    IdempotencyKeyReused,
    /// A request with the same idempotency key is still running.
    #[error("a request with this idempotency key is in progress")]
    IdempotencyInProgress,
    /// The auth service could not check the token.
    #[error("the token could not be checked; retry later")]
    AuthUnavailable,
    /// This instance is shutting down; another one serves.
    #[error("this instance is draining; reconnect")]
    Draining,
    /// A browser on a page of another site asked (its `Origin` is not allowed).
    #[error(transparent)]
    OriginRefused(#[from] crate::http::OriginRefused),
}

impl From<ValidationError> for ApiError {
    fn from(e: ValidationError) -> Self {
        Self::Service(ServiceError::Invalid(e))
    }
}

struct Kind {
    status: StatusCode,
    code: &'static str,
    title: &'static str,
}

const fn kind(status: StatusCode, code: &'static str, title: &'static str) -> Kind {
    Kind {
        status,
        code,
        title,
    }
}

impl ApiError {
    fn kind(&self) -> Kind {
        use ServiceError as S;
        use StatusCode as C;
        match self {
            Self::Service(e) => match e {
                S::Invalid(_) => kind(C::BAD_REQUEST, "validation-error", "Invalid input"),
                S::NotFound { .. } => kind(C::NOT_FOUND, "not-found", "Not found"),
                S::QuotaExceeded { .. } => {
                    kind(C::TOO_MANY_REQUESTS, "quota-exceeded", "Quota exceeded")
                }
                S::SessionClosed { .. } => kind(C::CONFLICT, "session-closed", "Session closed"),
                S::InvalidState(_) => kind(C::CONFLICT, "invalid-state", "Invalid state"),
                S::TicketRefused(_) => kind(C::FORBIDDEN, "ticket-refused", "Ticket refused"),
                S::SimulatorNotRunning { .. } => kind(
                    C::CONFLICT,
                    "simulator-not-running",
                    "Simulator not running",
                ),
                S::Backend(BackendError::Refused(_) | BackendError::NotFound(_)) => kind(
                    C::UNPROCESSABLE_ENTITY,
                    "simulator-refused",
                    "The simulator service refused the request",
                ),
                S::Backend(BackendError::Unavailable(_) | BackendError::CircuitOpen(_)) => kind(
                    C::SERVICE_UNAVAILABLE,
                    "simulator-unavailable",
                    "The simulator service is unavailable",
                ),
                S::NotConfigured { .. } => kind(
                    C::SERVICE_UNAVAILABLE,
                    "not-configured",
                    "Not configured in this deployment",
                ),
                S::Store(e) if e.is_transient() => kind(
                    C::SERVICE_UNAVAILABLE,
                    "service-unavailable",
                    "Temporarily unavailable",
                ),
                S::Store(_) | S::Internal(_) => {
                    kind(C::INTERNAL_SERVER_ERROR, "internal-error", "Internal error")
                }
            },
            Self::MalformedJson(_) => kind(C::BAD_REQUEST, "malformed-json", "Malformed JSON"),
            Self::UnsupportedMediaType => kind(
                C::UNSUPPORTED_MEDIA_TYPE,
                "unsupported-media-type",
                "Unsupported media type",
            ),
            Self::PayloadTooLarge(_) => kind(
                C::PAYLOAD_TOO_LARGE,
                "payload-too-large",
                "Payload too large",
            ),
            Self::Unauthorized => kind(C::UNAUTHORIZED, "unauthorized", "Unauthorized"),
            Self::NoRoute => kind(C::NOT_FOUND, "not-found", "Not found"),
            Self::MethodNotAllowed => kind(
                C::METHOD_NOT_ALLOWED,
                "method-not-allowed",
                "Method not allowed",
            ),
            Self::IdempotencyKeyReused => kind(
                C::UNPROCESSABLE_ENTITY,
                "idempotency-key-reused",
                "Idempotency key reused",
            ),
            Self::IdempotencyInProgress => kind(
                C::CONFLICT,
                "idempotency-in-progress",
                "Request in progress",
            ),
            Self::AuthUnavailable => kind(
                C::SERVICE_UNAVAILABLE,
                "auth-unavailable",
                "The auth service is unavailable",
            ),
            Self::Draining => kind(C::SERVICE_UNAVAILABLE, "draining", "Draining"),
            Self::OriginRefused(_) => kind(C::FORBIDDEN, "origin-refused", "Origin refused"),
        }
    }

    /// Whether the same request is likely to succeed in a moment: the store was unavailable
    /// (a timeout, throttling, a conflict that outlasted its retries). Answered with
    /// `Retry-After: 1`.
    fn retry_soon(&self) -> bool {
        matches!(self, Self::Service(ServiceError::Store(e)) if e.is_transient())
    }

    /// The problem document of this error.
    pub fn problem(&self) -> Problem {
        let kind = self.kind();
        let mut problem = Problem {
            type_: format!("urn:session-service:problem:{}", kind.code),
            title: kind.title.to_owned(),
            status: kind.status.as_u16(),
            detail: self.to_string(),
            field: None,
            quota: None,
            limit: None,
        };
        match self {
            Self::Service(ServiceError::Invalid(e)) => problem.field = Some(e.field.clone()),
            Self::Service(ServiceError::QuotaExceeded { quota, limit }) => {
                problem.detail = format!("the {quota} quota of {limit} is reached");
                problem.quota = Some(quota.to_string());
                problem.limit = Some(*limit);
            }
            Self::Service(ServiceError::Backend(e)) => {
                problem.detail = match e {
                    // Refusals are meant for clients (an unknown symbol); transport errors not.
                    BackendError::Refused(m) | BackendError::NotFound(m) => m.clone(),
                    _ => "the simulator service could not be reached; retry later".to_owned(),
                };
            }
            Self::Service(ServiceError::Store(_) | ServiceError::Internal(_)) => {
                "the request could not be completed; retry later".clone_into(&mut problem.detail);
            }
            _ => {}
        }
        problem
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let problem = self.problem();
        if problem.status >= 500 {
            error!(error = ?self, status = problem.status, "request failed");
        }
        let status =
            StatusCode::from_u16(problem.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let mut response = (status, Json(problem)).into_response();
        response
            .headers_mut()
            .insert(header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON));
        if self.retry_soon() {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        response
    }
}
