//! `/v1/sessions` and `/v1/sessions/{session_id}`.

use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::{AppendHeaders, IntoResponse as _, Response};
use session_core::domain::{
    Metadata, NewSession, PageRequest, SessionId, SessionName, SessionStatus,
};

use super::App;
use super::caller::Caller;
use super::dto::{CreateSession, SessionBody, SessionDetailBody, SessionList};
use super::home;
use super::idempotency::{self, Post, Reply};
use super::input;
use super::problem::{ApiError, Problem};

/// Creates a session for the caller.
#[utoipa::path(
    post, path = "/v1/sessions", operation_id = "createSession", tag = "sessions",
    request_body(content = Option<CreateSession>, content_type = "application/json",
        description = "Optional: without a body (or with `{}`) the session has no name and no metadata."),
    responses(
        (status = 201, description = "Created", body = SessionBody,
         headers(("Location" = String, description = "The session's URL"))),
        (status = 429, description = "Open-sessions quota reached", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = ["sessions:write"]))
)]
pub(super) async fn create(
    State(app): State<App>,
    Caller(caller): Caller,
    post: Post,
) -> Result<Response, ApiError> {
    idempotency::once(&app, &caller, &post, async {
        let request: CreateSession = input::json(&post.headers, &post.body)?;
        let new = NewSession {
            name: request
                .name
                .map(|n| SessionName::parse("name", &n))
                .transpose()?,
            metadata: request
                .metadata
                .map(|m| Metadata::parse("metadata", m))
                .transpose()?,
        };
        let session = app.service.create_session(&caller, new).await?;
        Ok(
            Reply::json(StatusCode::CREATED, &SessionBody::from(&session))?
                .at(format!("/v1/sessions/{}", session.id)),
        )
    })
    .await
}

/// The caller's sessions, newest first.
#[utoipa::path(
    get, path = "/v1/sessions", operation_id = "listSessions", tag = "sessions",
    params(
        ("limit" = Option<u32>, Query, minimum = 1, maximum = 100, description = "Page size, 1 to 100 (default 20)."),
        ("cursor" = Option<String>, Query, description = "`next_cursor` of the previous page: the id of its last session; the page holds the sessions created before it."),
    ),
    responses(
        (status = 200, description = "A page of sessions", body = SessionList),
    ),
    security(("bearer" = ["sessions:read"]))
)]
pub(super) async fn list(
    State(app): State<App>,
    Caller(caller): Caller,
    RawQuery(raw): RawQuery,
) -> Result<axum::Json<SessionList>, ApiError> {
    let params = input::query(raw.as_deref(), &["limit", "cursor"])?;
    let page = PageRequest::parse(
        input::query_u32(&params, "limit")?,
        params.get("cursor").map(String::as_str),
    )?;
    let page = app.service.list_sessions(&caller, &page).await?;
    Ok(axum::Json(SessionList {
        items: page.items.iter().map(SessionBody::from).collect(),
        next_cursor: page.next_cursor.map(|c| c.encode()),
    }))
}

/// One of the caller's sessions, with its simulators and live connection count. A closed
/// (`DELETE`d) session is gone: `404` `deleted` (the list still shows it, `closed`).
#[utoipa::path(
    get, path = "/v1/sessions/{session_id}", operation_id = "getSession", tag = "sessions",
    params(("session_id" = String, Path, description = "The session's id.")),
    responses(
        (status = 200, description = "The session", body = SessionDetailBody,
         headers(
             ("X-Session-Home" = String, description = "Multi-region deployments only: the session's home region and epoch (`eu-west-1; epoch=1`); writes go there"),
             ("X-Replica-Lag-Ms" = u64, description = "Multi-region deployments only: how far behind the session's home this region's replica may be, in milliseconds (0 at the home; elsewhere the age of the home's last heartbeat seen here: the replication lag plus at most 500 ms, growing while the home is cut off). Absent until a heartbeat of the home has arrived"),
         )),
    ),
    security(("bearer" = ["sessions:read"]))
)]
pub(super) async fn get(
    State(app): State<App>,
    Caller(caller): Caller,
    Path(session_id): Path<String>,
) -> Result<Response, ApiError> {
    let id = SessionId::parse("session_id", &session_id)?;
    let detail = app.service.session_detail(&caller, &id).await?;
    if detail.session.status == SessionStatus::Closed {
        return Err(ApiError::Deleted {
            entity: "session",
            id: id.to_string(),
            state: SessionStatus::Closed.as_str(),
        });
    }
    let home = home::headers(&app, &detail.session).await;
    Ok((
        AppendHeaders(home),
        axum::Json(SessionDetailBody::from(&detail)),
    )
        .into_response())
}

/// Closes one of the caller's sessions: stops its simulators, ends its tickets and streams.
/// Idempotent: closing a closed session answers it again. Afterwards the session is gone: `GET`
/// of it answers `404` `deleted`, as does `GET` of its simulators (stopped with it); it stays in
/// the list, `closed`, until it expires.
#[utoipa::path(
    delete, path = "/v1/sessions/{session_id}", operation_id = "closeSession", tag = "sessions",
    params(("session_id" = String, Path, description = "The session's id.")),
    responses(
        (status = 200, description = "The closed session", body = SessionBody),
        (status = 421, description = "The session is homed in another region (`wrong-region`): nothing was done; resend to `home_api`", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = ["sessions:write"]))
)]
pub(super) async fn close(
    State(app): State<App>,
    Caller(caller): Caller,
    Path(session_id): Path<String>,
) -> Result<axum::Json<SessionBody>, ApiError> {
    home::check_write(&app, &caller, &session_id).await?;
    let id = SessionId::parse("session_id", &session_id)?;
    let session = app.service.close_session(&caller, &id).await?;
    Ok(axum::Json(SessionBody::from(&session)))
}
