//! `/v1/admin/revocations`: revoking a bearer token by its id, or every token of a subject.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use session_core::domain::{RevocationTarget, Timestamp, TokenId, UserId, ValidationError};

use super::App;
use super::caller::Caller;
use super::dto::{CreateRevocation, RevocationBody};
use super::idempotency::{self, Post, Reply};
use super::input;
use super::problem::ApiError;

/// Revokes one token (`token_id`, until its `expires_at`) or every token of a subject
/// (`subject`, until `until`); either time defaults to the longest token life from now. Every
/// door (REST, WebSocket `$connect`, SSE) refuses it within the revocation cache's bound
/// (`auth.revocation_cache_ms`, 5 s). A revocation is never shortened by a later one.
#[utoipa::path(
    post, path = "/v1/admin/revocations", operation_id = "revokeTokens", tag = "admin",
    request_body(content = CreateRevocation, content_type = "application/json"),
    responses(
        (status = 201, description = "Revoked", body = RevocationBody),
    ),
    security(("bearer" = ["sessions:admin"]))
)]
pub(super) async fn revoke(
    State(app): State<App>,
    Caller(caller): Caller,
    post: Post,
) -> Result<Response, ApiError> {
    idempotency::once(&app, &caller, &post, async {
        let request: CreateRevocation = input::json(&post.headers, &post.body)?;
        let (target, until, until_field) = target(&request)?;
        let revocation = app
            .service
            .revoke(&caller, target, until, until_field)
            .await?;
        Reply::json(StatusCode::CREATED, &RevocationBody::from(&revocation))
    })
    .await
}

/// What to revoke and until when (and the field that says so), from exactly one of
/// `token_id` (with `expires_at`) and `subject` (with `until`).
fn target(
    request: &CreateRevocation,
) -> Result<(RevocationTarget, Option<Timestamp>, &'static str), ValidationError> {
    let time = |field: &'static str, text: Option<&String>| {
        text.map(|t| {
            Timestamp::parse_rfc3339(t)
                .ok_or_else(|| ValidationError::new(field, "must be an RFC 3339 date-time"))
        })
        .transpose()
    };
    match (&request.token_id, &request.subject) {
        (Some(token_id), None) => {
            if request.until.is_some() {
                return Err(ValidationError::new(
                    "until",
                    "goes with subject; a token's revocation lasts until its expires_at",
                ));
            }
            let target = RevocationTarget::Token(TokenId::parse("token_id", token_id)?);
            Ok((
                target,
                time("expires_at", request.expires_at.as_ref())?,
                "expires_at",
            ))
        }
        (None, Some(subject)) => {
            if request.expires_at.is_some() {
                return Err(ValidationError::new(
                    "expires_at",
                    "goes with token_id; a subject's revocation lasts until its until",
                ));
            }
            let target = RevocationTarget::Subject(UserId::parse("subject", subject)?);
            Ok((target, time("until", request.until.as_ref())?, "until"))
        }
        (Some(_), Some(_)) => Err(ValidationError::new(
            "subject",
            "give either token_id or subject, not both",
        )),
        (None, None) => Err(ValidationError::new(
            "token_id",
            "required (or subject): what to revoke",
        )),
    }
}
