//! `POST /_local/tokens`: mints a bearer token for any subject. Dev-only: it exists only on the
//! local stack's HTTP API, never in AWS.

use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::extract::rejection::JsonRejection;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};

use crate::auth::AuthService;

/// Where the route is mounted.
pub const PATH: &str = "/_local/tokens";

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

/// Mints a token; bad input is a 400 naming the field.
pub async fn mint(
    State(auth): State<Arc<AuthService>>,
    body: Result<Json<TokenRequest>, JsonRejection>,
) -> Response {
    let Json(request) = match body {
        Ok(body) => body,
        Err(rejection) => return bad_request(&rejection.body_text()),
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

fn bad_request(message: &str) -> Response {
    (
        StatusCode::BAD_REQUEST,
        Json(serde_json::json!({ "message": message })),
    )
        .into_response()
}
