//! The open connections, and the `@connections` management API over them
//! (`POST`, `GET`, `DELETE /@connections/{connection_id}`, also under a stage prefix), answering
//! in API Gateway's restJson shapes so that `aws-sdk-apigatewaymanagement` works unchanged.

use std::collections::HashMap;
use std::sync::Mutex;

use axum::body::{Body, Bytes};
use axum::extract::{FromRequestParts, Path, State};
use axum::http::request::Parts;
use axum::http::{HeaderValue, Response, StatusCode};
use axum::response::IntoResponse;
use session_core::domain::Timestamp;
use tokio::sync::{mpsc, oneshot};
use tokio_tungstenite::tungstenite::Message;
use tracing::{Instrument as _, info, instrument};

use super::WsApi;

/// What the management API asks of a connection's task.
#[derive(Debug)]
pub(super) enum Command {
    /// Send this as one frame.
    Send(Message),
    /// Close the connection; answer once `$disconnect` has run.
    Close(oneshot::Sender<()>),
}

/// One open connection as the management API sees it.
#[derive(Debug, Clone)]
struct Entry {
    commands: mpsc::Sender<Command>,
    connected_at_ms: i64,
    last_active_at_ms: i64,
    source_ip: String,
    user_agent: Option<String>,
    /// Granted `deflate` on its ticket: every post is its pushes' raw deflate, sent binary.
    binary: bool,
}

/// Every open connection by id. A connection is in it from its accepted handshake until it
/// closes, so a post to a closing connection is answered 410 as in AWS.
#[derive(Debug, Default)]
pub(super) struct Registry {
    entries: Mutex<HashMap<String, Entry>>,
}

impl Registry {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Entry>> {
        // A panic while holding the lock leaves a map that is still consistent.
        self.entries
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    pub(super) fn insert(
        &self,
        id: &str,
        commands: mpsc::Sender<Command>,
        connected_at_ms: i64,
        source_ip: String,
        user_agent: Option<String>,
        binary: bool,
    ) {
        self.lock().insert(
            id.to_owned(),
            Entry {
                commands,
                connected_at_ms,
                last_active_at_ms: connected_at_ms,
                source_ip,
                user_agent,
                binary,
            },
        );
    }

    /// Records a message from the client.
    pub(super) fn touch(&self, id: &str, now_ms: i64) {
        if let Some(entry) = self.lock().get_mut(id) {
            entry.last_active_at_ms = now_ms;
        }
    }

    pub(super) fn remove(&self, id: &str) -> bool {
        self.lock().remove(id).is_some()
    }

    fn get(&self, id: &str) -> Option<Entry> {
        self.lock().get(id).cloned()
    }

    /// The open connections' ids.
    pub(super) fn ids(&self) -> Vec<String> {
        self.lock().keys().cloned().collect()
    }

    /// How many connections are open.
    pub(super) fn len(&self) -> usize {
        self.lock().len()
    }
}

/// What every management call addresses: a live connection, named in a signed request.
/// Rejected as AWS does: 403 unsigned, 410 gone.
#[derive(Debug)]
pub(super) struct Target {
    entry: Entry,
}

impl FromRequestParts<WsApi> for Target {
    type Rejection = Response<Body>;

    async fn from_request_parts(parts: &mut Parts, api: &WsApi) -> Result<Self, Self::Rejection> {
        let Path(params) = Path::<HashMap<String, String>>::from_request_parts(parts, api)
            .await
            .map_err(IntoResponse::into_response)?;
        let id = params.get("connection_id").map_or("", String::as_str);
        tracing::Span::current().record("connection_id", id);
        if !signed(&parts.headers) {
            return Err(unsigned());
        }
        // Authorised (in AWS) before the connection is looked up: a call to a gone one counts.
        crate::call_log::record(
            &parts.headers,
            "execute-api",
            "ManageConnections",
            &serde_json::json!({
                "method": parts.method.as_str(),
                "stage": params.get("stage").map_or(super::STAGE, String::as_str),
                "connection_id": id,
            }),
        );
        let entry = api.inner.registry.get(id).ok_or_else(gone)?;
        Ok(Self { entry })
    }
}

/// `POST /@connections/{id}`: the body goes to the client as one frame (binary to a connection
/// granted `deflate`, else text if it is UTF-8),
/// in the trace of the post's `traceparent` (the streamer's push of the connection) when it has
/// one.
pub(super) async fn post(
    State(api): State<WsApi>,
    headers: axum::http::HeaderMap,
    target: Target,
    body: Body,
) -> Response<Body> {
    let span = tracing::info_span!(
        "@connections post",
        component = "ws-api",
        trace_id = tracing::field::Empty,
        span_id = tracing::field::Empty,
    );
    session_core::telemetry::continue_trace(&span, &headers);
    deliver(&api, target, body).instrument(span).await
}

async fn deliver(api: &WsApi, target: Target, body: Body) -> Response<Body> {
    let limit = api.inner.settings.max_message_bytes;
    let Ok(data) = axum::body::to_bytes(body, limit).await else {
        return error(
            StatusCode::PAYLOAD_TOO_LARGE,
            "PayloadTooLargeException",
            &format!("Message too long. Max message size is {limit} bytes."),
        );
    };
    // AWS documents no frame type for posts: a connection granted `deflate` gets binary
    // frames (its pushes are all deflated), others a text frame when the bytes are UTF-8.
    let message = if target.entry.binary {
        Message::binary(data)
    } else {
        match String::from_utf8(data.to_vec()) {
            Ok(text) => Message::text(text),
            Err(_) => Message::binary(data),
        }
    };
    match target.entry.commands.try_send(Command::Send(message)) {
        Ok(()) => empty(StatusCode::OK),
        Err(mpsc::error::TrySendError::Closed(_)) => gone(),
        Err(mpsc::error::TrySendError::Full(_)) => error(
            StatusCode::TOO_MANY_REQUESTS,
            "LimitExceededException",
            "Too many messages queued for this connection",
        ),
    }
}

/// `GET /@connections/{id}`: when it connected, when the client last sent, and from where.
#[instrument(skip_all, fields(connection_id))]
pub(super) async fn get(target: Target) -> Response<Body> {
    let entry = target.entry;
    let mut identity = serde_json::json!({ "sourceIp": entry.source_ip });
    if let Some(agent) = entry.user_agent {
        identity["userAgent"] = serde_json::json!(agent);
    }
    json(
        StatusCode::OK,
        &serde_json::json!({
            "connectedAt": Timestamp::from_unix_millis(entry.connected_at_ms).to_rfc3339(),
            "identity": identity,
            "lastActiveAt": Timestamp::from_unix_millis(entry.last_active_at_ms).to_rfc3339(),
        }),
        None,
    )
}

/// `DELETE /@connections/{id}`: closes the connection; answers once `$disconnect` has run (or
/// after the integration timeout).
#[instrument(skip_all, fields(connection_id))]
pub(super) async fn delete(State(api): State<WsApi>, target: Target) -> Response<Body> {
    let (done, closed) = oneshot::channel();
    if target
        .entry
        .commands
        .send(Command::Close(done))
        .await
        .is_err()
    {
        return gone();
    }
    let _ = tokio::time::timeout(api.inner.settings.integration_timeout, closed).await;
    info!("connection deleted");
    empty(StatusCode::NO_CONTENT)
}

/// The management API takes SigV4-signed requests only; the signature itself is not checked
/// (the credentials are dummies locally), but an unsigned request is refused as in AWS.
fn signed(headers: &http::HeaderMap) -> bool {
    headers
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("AWS4-HMAC-SHA256 "))
}

fn unsigned() -> Response<Body> {
    error(
        StatusCode::FORBIDDEN,
        "ForbiddenException",
        "Missing Authentication Token",
    )
}

fn gone() -> Response<Body> {
    error(StatusCode::GONE, "GoneException", "The connection is gone")
}

/// An error as API Gateway's management API sends it: the type in `x-amzn-ErrorType`, the
/// message in the body.
fn error(status: StatusCode, kind: &'static str, message: &str) -> Response<Body> {
    json(
        status,
        &serde_json::json!({ "message": message }),
        Some(kind),
    )
}

fn json(
    status: StatusCode,
    body: &serde_json::Value,
    kind: Option<&'static str>,
) -> Response<Body> {
    let mut response = Response::new(Body::from(Bytes::from(body.to_string())));
    *response.status_mut() = status;
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    if let Some(kind) = kind {
        response
            .headers_mut()
            .insert("x-amzn-errortype", HeaderValue::from_static(kind));
    }
    with_request_id(response)
}

fn empty(status: StatusCode) -> Response<Body> {
    let mut response = Response::new(Body::empty());
    *response.status_mut() = status;
    with_request_id(response)
}

fn with_request_id(mut response: Response<Body>) -> Response<Body> {
    if let Ok(id) = HeaderValue::from_str(&ulid::Ulid::new().to_string()) {
        response.headers_mut().insert("x-amzn-requestid", id);
    }
    response
}
