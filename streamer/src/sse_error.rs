//! Why a stream request was refused, and every refusal's answer, mapped in one table
//! ([`SseError::into_api`]) onto the service's problem documents (`core/src/http/problem.rs`).
//!
//! Causes stay attached (`#[source]`) for the log; clients get the opaque problem only.

use axum::response::{IntoResponse, Response};
use session_core::auth::{AuthError, InsufficientScope};
use session_core::domain::ValidationError;
use session_core::http::{ApiError, OriginRefused};
use session_core::ratelimit::RateLimited;
use session_core::service::ServiceError;

/// Why `GET /v1/sessions/{session_id}/stream` was refused.
#[derive(Debug, thiserror::Error)]
pub(crate) enum SseError {
    /// The streamer is shutting down.
    #[error("the streamer is draining")]
    Draining,
    /// A path, query or header value is malformed; names which.
    #[error(transparent)]
    Invalid(#[from] ValidationError),
    /// A browser on a page of another site asked.
    #[error(transparent)]
    OriginRefused(#[from] OriginRefused),
    /// Neither a ticket nor a bearer token.
    #[error("no ticket and no bearer token")]
    NoCredential,
    /// The bearer token is not valid.
    #[error("bearer token refused")]
    TokenRejected(#[source] AuthError),
    /// The auth service could not check the bearer token.
    #[error("bearer token could not be checked")]
    AuthUnavailable(#[source] AuthError),
    /// The bearer token lacks `sessions:read`.
    #[error(transparent)]
    InsufficientScope(#[from] InsufficientScope),
    /// An address's or a user's rate of stream opens is exceeded.
    #[error(transparent)]
    RateLimited(#[from] RateLimited),
    /// A cap of this pod (connections, streams per address or per user) is reached.
    #[error("stream cap reached")]
    Capped(#[source] ApiError),
    /// Admission refused (ticket, session, simulator) or failed.
    #[error(transparent)]
    Service(#[from] ServiceError),
}

impl From<AuthError> for SseError {
    fn from(error: AuthError) -> Self {
        match error {
            AuthError::Rejected { .. } => Self::TokenRejected(error),
            AuthError::Unavailable(_) => Self::AuthUnavailable(error),
        }
    }
}

impl SseError {
    /// The table: each refusal's problem.
    pub(crate) fn into_api(self) -> ApiError {
        match self {
            Self::Draining => ApiError::Draining,
            Self::Invalid(e) => e.into(),
            Self::OriginRefused(e) => e.into(),
            Self::NoCredential | Self::TokenRejected(_) => ApiError::Unauthorized,
            Self::AuthUnavailable(_) => ApiError::AuthUnavailable,
            Self::InsufficientScope(e) => e.into(),
            Self::RateLimited(e) => e.into(),
            Self::Capped(e) => e,
            Self::Service(e) => e.into(),
        }
    }
}

impl IntoResponse for SseError {
    fn into_response(self) -> Response {
        // The auth service's failure is ours to look into; the client only learns to retry.
        if let Self::AuthUnavailable(cause) = &self {
            tracing::warn!(error = %cause, "stream refused: the token could not be checked");
        }
        self.into_api().into_response()
    }
}

#[cfg(test)]
mod tests {
    use axum::http::StatusCode;

    use super::*;

    fn status(error: SseError) -> StatusCode {
        error.into_response().status()
    }

    #[test]
    fn each_refusal_maps_to_its_status() {
        let rejected = AuthError::Rejected { reason: "expired" };
        let unavailable = AuthError::Unavailable("down".to_owned());

        assert_eq!(status(SseError::Draining), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(status(SseError::NoCredential), StatusCode::UNAUTHORIZED);
        assert_eq!(status(rejected.into()), StatusCode::UNAUTHORIZED);
        assert_eq!(status(unavailable.into()), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(
            status(SseError::Capped(ApiError::Full)),
            StatusCode::SERVICE_UNAVAILABLE
        );
    }

    #[test]
    fn a_refused_token_keeps_its_cause_for_the_log() {
        let error = SseError::from(AuthError::Rejected { reason: "expired" });

        let cause = std::error::Error::source(&error).map(ToString::to_string);

        assert_eq!(cause.as_deref(), Some("token rejected: expired"));
    }
}
