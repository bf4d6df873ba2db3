//! `POST /_local/tokens` mints a bearer token for any subject; `GET /_local/jwks.json` publishes
//! the auth service's public keys, so any client can verify those tokens. Dev-only: both exist
//! only on the local stack's HTTP API, never in AWS.

use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};

use crate::auth::AuthService;

/// Where the route is mounted.
pub const PATH: &str = "/_local/tokens";

/// Where the public keys are published.
pub const JWKS_PATH: &str = "/_local/jwks.json";

/// Scopes a token gets when the request names none.
pub const DEFAULT_SCOPES: [&str; 2] = ["sessions:read", "sessions:write"];

const MAX_TTL_SECS: u64 = 24 * 3600;

/// What to mint.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenRequest {
    /// The subject (user id).
    pub sub: String,
    /// The scopes; [`DEFAULT_SCOPES`] if absent.
    pub scopes: Option<Vec<String>>,
    /// Lifetime in seconds (default 3600, at most a day).
    pub ttl_secs: Option<u64>,
}

/// The minted token.
#[derive(Debug, Serialize)]
pub struct TokenResponse {
    /// The JWT, for `Authorization: Bearer ...`.
    pub token: String,
    /// Always `Bearer`.
    pub token_type: &'static str,
    /// Lifetime in seconds.
    pub expires_in: u64,
}

/// Mints a token; bad input is a 400 naming the field. The body is read as JSON whatever its
/// content type, so a bare `curl -d '{"sub": "alice"}'` works.
pub async fn mint(State(auth): State<Arc<AuthService>>, body: Bytes) -> Response {
    let request: TokenRequest = match serde_json::from_slice(&body) {
        Ok(request) => request,
        Err(e) => return bad_request(&format!("the body is not a token request: {e}")),
    };
    let sub = request.sub.trim();
    if sub.is_empty() || sub.len() > 128 || sub.chars().any(char::is_control) {
        return bad_request("sub: must be 1 to 128 characters, no control characters");
    }
    let ttl = request.ttl_secs.unwrap_or(3600);
    if !(1..=MAX_TTL_SECS).contains(&ttl) {
        return bad_request("ttl_secs: must be between 1 and 86400");
    }
    let scopes = request
        .scopes
        .unwrap_or_else(|| DEFAULT_SCOPES.map(str::to_owned).to_vec());
    if scopes
        .iter()
        .any(|s| s.is_empty() || s.contains(char::is_whitespace))
    {
        return bad_request("scopes: each scope must be non-empty without whitespace");
    }
    match auth.issue(sub, &scopes, Duration::from_secs(ttl)) {
        Ok(token) => (
            StatusCode::CREATED,
            Json(TokenResponse {
                token,
                token_type: "Bearer",
                expires_in: ttl,
            }),
        )
            .into_response(),
        Err(e) => {
            tracing::error!(error = %e, "cannot mint a token");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                Json(serde_json::json!({ "message": "cannot mint a token" })),
            )
                .into_response()
        }
    }
}

/// The auth service's public keys as a JWKS document (RFC 7517).
pub async fn jwks(State(auth): State<Arc<AuthService>>) -> Response {
    Json(auth.jwks()).into_response()
}

/// A 400 whose `message` names what was wrong (shared by the `/_local/...` routes).
pub(crate) fn bad_request(message: &str) -> Response {
    (
        StatusCode::BAD_REQUEST,
        Json(serde_json::json!({ "message": message })),
    )
        .into_response()
}
