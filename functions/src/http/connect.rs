//! `/v1/sessions/{session_id}/tickets` and `/v1/sessions/{session_id}/reconnect`.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use session_core::appconfig::WS_COMPRESSION;
use session_core::auth::Principal;
use session_core::domain::{Compression, EventId, SessionId, SimulatorId, Transport};

use super::App;
use super::caller::Caller;
use super::dto::{CompressionBody, CreateTicket, ReconnectBody, ReconnectRequest, TicketBody};
use super::idempotency::{self, Post, Reply};
use super::input;
use super::problem::{ApiError, Problem};

/// A single-use connect ticket for `EventSource` (`sse`) or `WebSocket` (`ws`), with the URL to
/// open.
#[utoipa::path(
    post, path = "/v1/sessions/{session_id}/tickets", operation_id = "createTicket", tag = "streaming",
    params(("session_id" = String, Path, description = "The session's id.")),
    request_body(content = CreateTicket, content_type = "application/json"),
    responses(
        (status = 201, description = "A ticket", body = TicketBody),
        (status = 409, description = "The session is closed", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = ["sessions:write"]))
)]
pub(super) async fn ticket(
    State(app): State<App>,
    Caller(caller): Caller,
    Path(session_id): Path<String>,
    post: Post,
) -> Result<Response, ApiError> {
    idempotency::once(&app, &caller, &post, async {
        let session_id = SessionId::parse("session_id", &session_id)?;
        let request: CreateTicket = input::json(&post.headers, &post.body)?;
        let simulator = simulator_id(request.simulator_id.as_deref())?;
        let transport = request.transport.into();
        let compression = granted(&app, &caller, transport, request.compression);
        let ticket = app
            .service
            .issue_ticket_with(
                &caller,
                &session_id,
                transport,
                simulator.as_ref(),
                compression,
            )
            .await?;
        Reply::json(StatusCode::CREATED, &TicketBody::from(&ticket))
    })
    .await
}

/// After a dropped connection: a fresh ticket and URL, and whether the stream will replay from
/// the last event id seen or restart from a snapshot.
#[utoipa::path(
    post, path = "/v1/sessions/{session_id}/reconnect", operation_id = "reconnect", tag = "streaming",
    params(("session_id" = String, Path, description = "The session's id.")),
    request_body(content = ReconnectRequest, content_type = "application/json"),
    responses(
        (status = 200, description = "A ticket and how the stream resumes", body = ReconnectBody),
        (status = 409, description = "The session is closed", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = ["sessions:write"]))
)]
pub(super) async fn reconnect(
    State(app): State<App>,
    Caller(caller): Caller,
    Path(session_id): Path<String>,
    post: Post,
) -> Result<Response, ApiError> {
    idempotency::once(&app, &caller, &post, async {
        let session_id = SessionId::parse("session_id", &session_id)?;
        let request: ReconnectRequest = input::json(&post.headers, &post.body)?;
        let last = request
            .last_event_id
            .as_deref()
            .map(|id| EventId::parse("last_event_id", id))
            .transpose()?;
        let simulator = simulator_id(request.simulator_id.as_deref())?;
        let transport = request.transport.into();
        let compression = granted(&app, &caller, transport, request.compression);
        let reconnect = app
            .service
            .reconnect_with(
                &caller,
                &session_id,
                transport,
                last,
                simulator.as_ref(),
                compression,
            )
            .await?;
        Reply::json(StatusCode::OK, &ReconnectBody::from(&reconnect))
    })
    .await
}

/// The push encoding a ticket grants: what was asked for while the `ws_compression` flag is
/// on for the caller (evaluated per request), otherwise none. Only WebSocket pushes are
/// encoded so: on an SSE ticket the field is ignored, as the OpenAPI document allows it there
/// (an SSE client's stream is compressed by its `Accept-Encoding`).
fn granted(
    app: &App,
    caller: &Principal,
    transport: Transport,
    asked: Option<CompressionBody>,
) -> Compression {
    let asked = asked.map_or(Compression::None, Compression::from);
    if asked.is_none() || transport != Transport::Ws {
        return Compression::None;
    }
    if app.flags.is_on(WS_COMPRESSION, caller.user.as_str()) {
        asked
    } else {
        Compression::None
    }
}

fn simulator_id(id: Option<&str>) -> Result<Option<SimulatorId>, ApiError> {
    Ok(id
        .map(|id| SimulatorId::parse("simulator_id", id))
        .transpose()?)
}
