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
    /// The quota reached, for `quota-exceeded`; the cap reached, for `too-many-streams`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub quota: Option<String>,
    /// The quota's limit, for `quota-exceeded` and `too-many-streams`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub limit: Option<u32>,
    /// The scope the token lacks, for `insufficient-scope`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
    /// The session's home region, for `wrong-region`: send the write there.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub home_region: Option<String>,
    /// The home's epoch, for `wrong-region`: a higher one seen later means a newer home.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub home_epoch: Option<u64>,
    /// The home region's HTTP API base URL, for `wrong-region` (absent when not configured).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub home_api: Option<String>,
    /// The region a ticket was minted for, for `ticket-wrong-region`: connect there.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ticket_region: Option<String>,
}

/// Marks a response as a `maintenance_mode` refusal, so metrics count it as an outcome of its
/// own: a deliberate `503`, not an error to page anyone about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MaintenancePause;

/// The media type of problem documents.
pub const PROBLEM_JSON: &str = "application/problem+json";

/// The quota policy of a rate-limited answer (draft-ietf-httpapi-ratelimit-headers).
pub const RATELIMIT_POLICY: &str = "ratelimit-policy";

/// The remaining allowance of a rate-limited answer (draft-ietf-httpapi-ratelimit-headers).
pub const RATELIMIT: &str = "ratelimit";

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
    /// The resource was deleted (a session closed, a simulator stopped): it is no longer served
    /// as it was. A 404, as for a resource that never existed (what a client may expect after
    /// a `DELETE`), told apart by its type.
    #[error("{entity} {id} is {state}: deleted")]
    Deleted {
        /// The kind of resource.
        entity: &'static str,
        /// Its id.
        id: String,
        /// The state it was left in (`closed`, `stopping`, `stopped`).
        state: &'static str,
    },
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
    /// The request did not come through the edge (CloudFront) in front of this API: it lacks
    /// the edge's origin-verify header, or has a wrong value.
    #[error("this API is served through its edge only; use the published endpoint")]
    EdgeOnly,
    /// A browser on a page of another site asked (its `Origin` is not allowed).
    #[error(transparent)]
    OriginRefused(#[from] crate::http::OriginRefused),
    /// A rate limit refused the request (answered with `Retry-After` and the `RateLimit`
    /// header fields).
    #[error(transparent)]
    RateLimited(#[from] crate::ratelimit::RateLimited),
    /// The caller's token lacks the scope the route needs.
    #[error(transparent)]
    InsufficientScope(#[from] crate::auth::InsufficientScope),
    /// This instance holds all the connections it may; the load balancer sends the retry to
    /// another one.
    #[error("this instance is full; retry later")]
    Full,
    /// The `maintenance_mode` flag is on for the caller: writes wait until it is off (answered
    /// with `Retry-After`, the flags' poll interval).
    #[error("the service is under maintenance: writes are paused; reads go on. Retry later")]
    Maintenance {
        /// Seconds until the flag is next read.
        retry_after_secs: u64,
    },
    /// The caller holds as many concurrent streams as a cap of this instance allows (`quota`:
    /// `streams_per_user` or `streams_per_address`).
    #[error("the {quota} cap of {limit} concurrent streams is reached; close one or retry later")]
    TooManyStreams {
        /// Which cap.
        quota: &'static str,
        /// The cap.
        limit: u32,
    },
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
                S::TicketWrongRegion { .. } => kind(
                    C::FORBIDDEN,
                    "ticket-wrong-region",
                    "Ticket of another region",
                ),
                S::TokenRevoked => kind(C::UNAUTHORIZED, "token-revoked", "Token revoked"),
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
                S::WrongRegion { .. } => {
                    kind(C::MISDIRECTED_REQUEST, "wrong-region", "Wrong region")
                }
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
                S::Store(_) | S::Internal { .. } => {
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
            Self::InsufficientScope(_) => {
                kind(C::FORBIDDEN, "insufficient-scope", "Insufficient scope")
            }
            Self::NoRoute => kind(C::NOT_FOUND, "not-found", "Not found"),
            Self::MethodNotAllowed => kind(
                C::METHOD_NOT_ALLOWED,
                "method-not-allowed",
                "Method not allowed",
            ),
            Self::Deleted { .. } => kind(C::NOT_FOUND, "deleted", "Deleted"),
            // 409, not the 422 of draft-ietf-httpapi-idempotency-key-header: the request is
            // well formed, it conflicts with what the key already stands for (as a request in
            // progress does), and 422 stays the simulator service's refusal of a valid request.
            Self::IdempotencyKeyReused => kind(
                C::CONFLICT,
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
            Self::EdgeOnly => kind(C::FORBIDDEN, "edge-only", "Direct access refused"),
            Self::OriginRefused(_) => kind(C::FORBIDDEN, "origin-refused", "Origin refused"),
            Self::RateLimited(_) => kind(C::TOO_MANY_REQUESTS, "rate-limited", "Rate limited"),
            Self::Full => kind(C::SERVICE_UNAVAILABLE, "full", "Instance full"),
            Self::Maintenance { .. } => {
                kind(C::SERVICE_UNAVAILABLE, "maintenance", "Under maintenance")
            }
            Self::TooManyStreams { .. } => kind(
                C::TOO_MANY_REQUESTS,
                "too-many-streams",
                "Too many concurrent streams",
            ),
        }
    }

    /// The `Retry-After` (seconds) of an error that the same request may not meet again in a
    /// moment: the store was unavailable (a timeout, throttling, a conflict that outlasted its
    /// retries); a full instance (10 s: two readiness probes, after which the load balancer
    /// has taken it out of rotation); a stream cap (a slot frees when another of the caller's
    /// streams ends).
    pub fn retry_after(&self) -> Option<&'static str> {
        match self {
            Self::Service(ServiceError::Store(e)) if e.is_transient() => Some("1"),
            Self::Full => Some("10"),
            Self::TooManyStreams { .. } => Some("5"),
            _ => None,
        }
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
            scope: None,
            home_region: None,
            home_epoch: None,
            home_api: None,
            ticket_region: None,
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
            Self::Service(ServiceError::Store(_) | ServiceError::Internal { .. }) => {
                "the request could not be completed; retry later".clone_into(&mut problem.detail);
            }
            Self::Service(ServiceError::WrongRegion {
                home_region,
                home_epoch,
                home_api,
                ..
            }) => {
                problem.home_region = Some(home_region.to_string());
                problem.home_epoch = Some(*home_epoch);
                problem.home_api.clone_from(home_api);
            }
            Self::Service(ServiceError::TicketWrongRegion { region }) => {
                problem.ticket_region = Some(region.to_string());
            }
            Self::InsufficientScope(e) => problem.scope = Some(e.needed.clone()),
            Self::TooManyStreams { quota, limit } => {
                problem.quota = Some((*quota).to_owned());
                problem.limit = Some(*limit);
            }
            _ => {}
        }
        problem
    }
}

impl ApiError {
    /// The `WWW-Authenticate` challenge RFC 6750 asks for when a bearer token is refused for
    /// what it is (revoked) or what it lacks (a scope).
    fn bearer_challenge(&self) -> Option<HeaderValue> {
        match self {
            Self::Service(ServiceError::TokenRevoked) => Some(HeaderValue::from_static(
                r#"Bearer error="invalid_token", error_description="The token is revoked""#,
            )),
            // Scopes are `!`..`~` without `"` or `\` (RFC 6749), so they fit a quoted string.
            Self::InsufficientScope(e) => HeaderValue::from_str(&format!(
                r#"Bearer error="insufficient_scope", scope="{}""#,
                e.needed
            ))
            .ok(),
            _ => None,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let problem = self.problem();
        if problem.status >= 500 {
            error!(
                error = %crate::service::error_chain(&self),
                status = problem.status,
                "request failed"
            );
        }
        let status =
            StatusCode::from_u16(problem.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let mut response = (status, Json(problem)).into_response();
        response
            .headers_mut()
            .insert(header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON));
        if let Some(challenge) = self.bearer_challenge() {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, challenge);
        }
        if let Some(seconds) = self.retry_after() {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static(seconds));
        }
        if let Self::Maintenance { retry_after_secs } = &self {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, (*retry_after_secs).into());
            response.extensions_mut().insert(MaintenancePause);
        }
        if let Self::RateLimited(refusal) = &self {
            let headers = response.headers_mut();
            headers.insert(header::RETRY_AFTER, refusal.retry_after_secs().into());
            for (name, value) in [
                (RATELIMIT_POLICY, refusal.policy_header()),
                (RATELIMIT, refusal.limit_header()),
            ] {
                if let Ok(value) = HeaderValue::from_str(&value) {
                    headers.insert(name, value);
                }
            }
        }
        response
    }
}
