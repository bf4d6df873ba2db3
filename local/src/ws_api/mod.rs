//! An API Gateway WebSocket API on loopback. A handshake goes the way it goes in AWS: the
//! `$connect` REQUEST authorizer, invoked with its real event (identity source
//! `route.request.querystring.ticket`: missing → 401, Deny → 403, failure → 500); then the
//! `$connect` route (a non-2xx status refuses the handshake with it); then `101`. Each message
//! is routed on `$request.body.action` (`heartbeat`, else `$default`) and the handler's response
//! body goes back as a frame; handlers run beside the delivery of posted frames, as in AWS, so a
//! slow one never holds them up; every close, by either side, invokes `$disconnect`. Connections
//! are closed when idle (10 minutes) or old (2 hours), and on a frame over 32 KB or a message
//! over 128 KB (1009). The `@connections` management API shares the port.
//!
//! Layout: `event` builds the events, `connections` holds the open connections and the
//! management API, this module the handshake and each connection's task.
//!
//! Not emulated: subprotocol negotiation, API keys, route request validation, and throttling
//! beyond the cap on open connections and the queue of a client that reads nothing.

mod connections;
mod event;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use aws_lambda_events::apigw::{
    ApiGatewayCustomAuthorizerRequestTypeRequest, ApiGatewayWebsocketProxyRequest,
};
use axum::Router;
use axum::body::Body;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderValue, Response, StatusCode};
use axum::routing::get;
use futures_util::{SinkExt as _, StreamExt as _};
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use session_core::service::ConnectAuthorizer;
use session_functions::live::Rebuilt;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpListener;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, oneshot, watch};
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, Role, WebSocketConfig};
use tokio_tungstenite::tungstenite::{Error as WsError, Message};
use tracing::{Instrument as _, error, info, info_span, warn};

use connections::{Command, Registry};
use event::{ConnectionFacts, MessageBody};

use crate::http_api::{gateway_answer, internal_error};

/// API Gateway's WebSocket limits that the emulator enforces.
#[derive(Debug, Clone)]
pub struct WsApiSettings {
    /// A connection the client sends nothing on for this long is closed (AWS: 10 minutes).
    pub idle_timeout: Duration,
    /// A connection is closed this long after it opened (AWS: 2 hours).
    pub max_connection_duration: Duration,
    /// The largest frame a client may send (AWS: 32 KB); past it the connection closes (1009).
    pub max_frame_bytes: usize,
    /// The largest message a client may send, or be posted (AWS: 128 KB).
    pub max_message_bytes: usize,
    /// How long the authorizer and the handler may take (AWS: 29 s).
    pub integration_timeout: Duration,
    /// Connections open at once; more handshakes are refused (429). Bounds the emulator.
    pub max_connections: u32,
}

impl Default for WsApiSettings {
    fn default() -> Self {
        Self {
            idle_timeout: Duration::from_secs(10 * 60),
            max_connection_duration: Duration::from_secs(2 * 3600),
            max_frame_bytes: 32 * 1024,
            max_message_bytes: 128 * 1024,
            integration_timeout: Duration::from_secs(29),
            max_connections: 10_000,
        }
    }
}

/// The stage the emulated API is deployed to: the path of its URL (`ws://host/local`) and of
/// its management endpoint (`http://host/local`), as in AWS.
pub const STAGE: &str = "local";

/// The routes besides `$connect`, `$disconnect` and `$default` that `action` selects.
const ROUTES: [&str; 1] = ["heartbeat"];
/// Frames posted to one connection and not yet written; past it a post is throttled (429).
const COMMAND_QUEUE: usize = 256;
/// Messages of one connection whose handlers may run at once; past it the emulator stops
/// reading the client's frames until one finishes.
const MAX_IN_FLIGHT: usize = 16;
/// How long a closing connection waits for the client to close its side.
const CLOSE_GRACE: Duration = Duration::from_secs(2);

/// The emulated WebSocket API over the session service's handlers.
#[derive(Clone)]
pub struct WsApi {
    inner: Arc<Inner>,
}

struct Inner {
    /// The `$connect` authorizer's service (in AWS, the ws-authorizer function's).
    authorizer: ConnectAuthorizer,
    /// The routes' handler (in AWS, the ws-handler function), rebuilt from the runtime settings
    /// in force as the function's is.
    handler: Rebuilt<session_functions::websocket::Handler>,
    settings: WsApiSettings,
    registry: Registry,
    /// One permit per open connection; shutdown takes them all to know every task has ended.
    slots: Arc<Semaphore>,
    /// `true` once shutdown is asked for: every connection closes (1001) and disconnects.
    stopping: watch::Sender<bool>,
}

impl std::fmt::Debug for WsApi {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WsApi")
            .field("settings", &self.inner.settings)
            .field("open_connections", &self.inner.registry.len())
            .finish_non_exhaustive()
    }
}

impl WsApi {
    /// An API whose `$connect` authorizer runs on `authorizer` and whose routes run on
    /// `handler` (two functions in AWS, each with its own store client).
    pub fn new(
        authorizer: ConnectAuthorizer,
        handler: Rebuilt<session_functions::websocket::Handler>,
        settings: WsApiSettings,
    ) -> Self {
        let slots = Arc::new(Semaphore::new(settings.max_connections as usize));
        Self {
            inner: Arc::new(Inner {
                authorizer,
                handler,
                settings,
                registry: Registry::default(),
                slots,
                stopping: watch::Sender::new(false),
            }),
        }
    }

    /// The API as a router: `@connections` under the stage (as the SDK sends it when its
    /// endpoint names the stage, as AWS's does) or without it, and a WebSocket handshake on any
    /// other path.
    pub fn router(&self) -> Router {
        let management = get(connections::get)
            .post(connections::post)
            .delete(connections::delete);
        Router::new()
            .route("/@connections/{connection_id}", management.clone())
            .route("/{stage}/@connections/{connection_id}", management)
            .fallback(handshake)
            .with_state(self.clone())
    }

    /// How many connections are open.
    pub fn open_connections(&self) -> usize {
        self.inner.registry.len()
    }

    /// The open connections' ids (what a `$connect` handler would record, for tests and tools
    /// that post to `@connections`).
    pub fn connection_ids(&self) -> Vec<String> {
        self.inner.registry.ids()
    }

    /// Serves the API on `listener` until `shutdown` resolves; then closes every connection
    /// (1001, with `$disconnect`) and waits for them, at most [`crate::DRAIN_TIMEOUT`].
    ///
    /// # Errors
    /// The listener failed.
    pub async fn serve(
        self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let app = self
            .router()
            .into_make_service_with_connect_info::<SocketAddr>();
        let inner = Arc::clone(&self.inner);
        let signal = async move {
            shutdown.await;
            inner.stopping.send_replace(true);
        };
        axum::serve(listener, app)
            .with_graceful_shutdown(signal)
            .await?;
        // Upgraded connections are no longer the HTTP server's: their tasks hold the slots.
        let all = self.inner.settings.max_connections;
        let drained =
            tokio::time::timeout(crate::DRAIN_TIMEOUT, self.inner.slots.acquire_many(all)).await;
        if drained.is_err() {
            warn!(
                open = self.open_connections(),
                "connections still open after the drain timeout"
            );
        }
        Ok(())
    }

    /// Runs the `$connect` authorizer; its context (with `principalId`) on success.
    async fn authorize(
        &self,
        facts: &ConnectionFacts,
        request_id: &str,
    ) -> Result<Value, Response<Body>> {
        if facts.query_parameter("ticket").is_none_or(str::is_empty) {
            // The identity source is missing: API Gateway refuses without calling the authorizer.
            return Err(gateway_answer(StatusCode::UNAUTHORIZED, "Unauthorized"));
        }
        let event: ApiGatewayCustomAuthorizerRequestTypeRequest =
            serde_json::from_value(facts.authorizer_event(request_id)).map_err(|e| {
                error!(error = %e, "authorizer event does not decode");
                internal_error()
            })?;
        let call = session_functions::websocket::authorize_connect(&self.inner.authorizer, &event);
        let verdict =
            match tokio::time::timeout(self.inner.settings.integration_timeout, call).await {
                Ok(Ok(verdict)) => verdict,
                Ok(Err(e)) => {
                    error!(error = %e, "authorizer failed");
                    return Err(internal_error());
                }
                Err(_) => {
                    warn!("authorizer timed out");
                    return Err(internal_error());
                }
            };
        let verdict = serde_json::to_value(verdict).map_err(|_| internal_error())?;
        if !allows(&verdict) {
            return Err(gateway_answer(StatusCode::FORBIDDEN, "Forbidden"));
        }
        let mut context = verdict
            .get("context")
            .and_then(Value::as_object)
            .cloned()
            .unwrap_or_default();
        context.insert("principalId".to_owned(), verdict["principalId"].clone());
        Ok(Value::Object(context))
    }

    /// Invokes the routes' handler with `event`; its status and body.
    async fn invoke(&self, event: Value) -> Result<(i64, Option<String>), InvokeError> {
        let event: ApiGatewayWebsocketProxyRequest =
            serde_json::from_value(event).map_err(InvokeError::Event)?;
        let handler = self.inner.handler.get();
        let call = handler.handle(&event);
        let response = tokio::time::timeout(self.inner.settings.integration_timeout, call)
            .await
            .map_err(|_| InvokeError::Timeout)?;
        // Through JSON, as the response would travel from Lambda.
        let payload = serde_json::to_value(response).map_err(InvokeError::Response)?;
        let status = payload
            .get("statusCode")
            .and_then(Value::as_i64)
            .ok_or(InvokeError::Status)?;
        let body = payload
            .get("body")
            .and_then(Value::as_str)
            .filter(|b| !b.is_empty())
            .map(str::to_owned);
        Ok((status, body))
    }
}

/// Why the handler could not answer (API Gateway tells the client "Internal server error").
#[derive(Debug, thiserror::Error)]
enum InvokeError {
    #[error("the event does not decode: {0}")]
    Event(#[source] serde_json::Error),
    #[error("the response does not encode: {0}")]
    Response(#[source] serde_json::Error),
    #[error("the response has no statusCode")]
    Status,
    #[error("the integration timed out")]
    Timeout,
}

/// Whether an IAM policy allows the connection: some statement allows, none denies.
fn allows(verdict: &Value) -> bool {
    let statements = verdict["policyDocument"]["Statement"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default();
    let effect = |wanted: &str| statements.iter().any(|s| s["Effect"] == wanted);
    effect("Allow") && !effect("Deny")
}

/// A WebSocket handshake: authorize, `$connect`, then upgrade and hand over to the
/// connection's task.
async fn handshake(
    State(api): State<WsApi>,
    ConnectInfo(source): ConnectInfo<SocketAddr>,
    mut request: Request,
) -> Response<Body> {
    let accept = match accept_key(&request) {
        Ok(accept) => accept,
        Err(StatusCode::UPGRADE_REQUIRED) => {
            let mut refusal = gateway_answer(StatusCode::UPGRADE_REQUIRED, "Upgrade Required");
            refusal.headers_mut().insert(
                http::header::SEC_WEBSOCKET_VERSION,
                HeaderValue::from_static("13"),
            );
            return refusal;
        }
        Err(status) => {
            return gateway_answer(status, status.canonical_reason().unwrap_or("Error"));
        }
    };
    if *api.inner.stopping.borrow() {
        return gateway_answer(StatusCode::GONE, "Gone");
    }
    let Ok(slot) = Arc::clone(&api.inner.slots).try_acquire_owned() else {
        return gateway_answer(StatusCode::TOO_MANY_REQUESTS, "Too Many Requests");
    };
    let facts = ConnectionFacts::new(
        event::connection_id(),
        source,
        request.headers(),
        request.uri().query(),
    );
    let span = info_span!("connection", connection_id = %facts.connection_id);
    let request_id = ulid::Ulid::new().to_string();
    let authorizer = match api
        .authorize(&facts, &request_id)
        .instrument(span.clone())
        .await
    {
        Ok(context) => context,
        Err(refusal) => return refusal,
    };
    let connect = facts.connect_event(&authorizer, &request_id);
    match api.invoke(connect).instrument(span.clone()).await {
        Ok((status, _)) if (200..300).contains(&status) => {}
        Ok((status, _)) => {
            let status = u16::try_from(status)
                .ok()
                .and_then(|s| StatusCode::from_u16(s).ok())
                .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            span.in_scope(|| info!(status = status.as_u16(), "$connect refused the handshake"));
            return gateway_answer(status, status.canonical_reason().unwrap_or("Error"));
        }
        Err(e) => {
            span.in_scope(|| error!(error = %e, "$connect failed"));
            return internal_error();
        }
    }

    let upgrade = hyper::upgrade::on(&mut request);
    let (commands, queue) = mpsc::channel(COMMAND_QUEUE);
    // Registered before the 101 goes out: a post right after the client connects must find it.
    api.inner.registry.insert(
        &facts.connection_id,
        commands,
        facts.connected_at_ms,
        source.ip().to_string(),
        facts.user_agent.clone(),
        authorizer.get("compression").and_then(Value::as_str) == Some("deflate"),
    );
    let connection = Connection {
        api,
        facts,
        authorizer,
        commands: queue,
        opened: Instant::now(),
        _slot: slot,
    };
    tokio::spawn(
        async move {
            match upgrade.await {
                Ok(upgraded) => {
                    let settings = &connection.api.inner.settings;
                    let config = WebSocketConfig::default()
                        .max_frame_size(Some(settings.max_frame_bytes))
                        .max_message_size(Some(settings.max_message_bytes));
                    let ws = WebSocketStream::from_raw_socket(
                        TokioIo::new(upgraded),
                        Role::Server,
                        Some(config),
                    )
                    .await;
                    connection.run(ws).await;
                }
                Err(e) => {
                    warn!(error = %e, "the upgrade failed");
                    connection.end(Ending::Lost).await;
                }
            }
        }
        .instrument(span),
    );

    let mut response = Response::new(Body::empty());
    *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let headers = response.headers_mut();
    headers.insert(
        http::header::CONNECTION,
        HeaderValue::from_static("upgrade"),
    );
    headers.insert(http::header::UPGRADE, HeaderValue::from_static("websocket"));
    headers.insert(http::header::SEC_WEBSOCKET_ACCEPT, accept);
    response
}

/// The `Sec-WebSocket-Accept` of a valid WebSocket handshake request; the status to refuse an
/// invalid one with.
fn accept_key(request: &Request) -> Result<HeaderValue, StatusCode> {
    let headers = request.headers();
    let has_token = |name: http::header::HeaderName, token: &str| {
        headers
            .get_all(name)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .any(|t| t.trim().eq_ignore_ascii_case(token))
    };
    let upgrade = request.method() == http::Method::GET
        && has_token(http::header::CONNECTION, "upgrade")
        && has_token(http::header::UPGRADE, "websocket");
    let version = headers.get(http::header::SEC_WEBSOCKET_VERSION);
    if !upgrade || version.is_none_or(|v| v != "13") {
        return Err(StatusCode::UPGRADE_REQUIRED);
    }
    let key = headers
        .get(http::header::SEC_WEBSOCKET_KEY)
        .ok_or(StatusCode::BAD_REQUEST)?;
    let accept = tokio_tungstenite::tungstenite::handshake::derive_accept_key(key.as_bytes());
    HeaderValue::from_str(&accept).map_err(|_| StatusCode::INTERNAL_SERVER_ERROR)
}

type Socket = WebSocketStream<TokioIo<hyper::upgrade::Upgraded>>;

/// One accepted connection, owned by its task.
struct Connection {
    api: WsApi,
    facts: ConnectionFacts,
    /// The authorizer's context, `requestContext.authorizer` of every event.
    authorizer: Value,
    commands: mpsc::Receiver<Command>,
    opened: Instant,
    /// Released when the task ends.
    _slot: OwnedSemaphorePermit,
}

/// Why a connection ended.
#[derive(Debug)]
enum Ending {
    /// The client sent a close frame.
    ClientClosed(Option<CloseFrame>),
    /// The socket failed or ended without a close frame.
    Lost,
    /// A frame or message over the limits.
    TooBig,
    Idle,
    Expired,
    Stopping,
    /// `DELETE @connections`; answered once `$disconnect` ran.
    Deleted(oneshot::Sender<()>),
}

impl Ending {
    /// The close code and reason, as `$disconnect` reports them and the client gets them.
    fn close(&self) -> (CloseCode, &str) {
        match self {
            Self::ClientClosed(Some(frame)) => (frame.code, frame.reason.as_str()),
            Self::ClientClosed(None) => (CloseCode::Status, ""),
            Self::Lost => (CloseCode::Abnormal, "Connection lost"),
            Self::TooBig => (CloseCode::Size, "Message too big"),
            Self::Idle | Self::Expired | Self::Stopping => (CloseCode::Away, "Going away"),
            Self::Deleted(_) => (CloseCode::Normal, "Connection deleted"),
        }
    }
}

impl Connection {
    async fn run(mut self, mut ws: Socket) {
        let settings = self.api.inner.settings.clone();
        let idle = tokio::time::sleep(settings.idle_timeout);
        let expiry = tokio::time::sleep_until(self.opened + settings.max_connection_duration);
        tokio::pin!(idle, expiry);
        let mut stopping = self.api.inner.stopping.subscribe();
        // Integrations run beside delivery, as in AWS: a slow handler never holds up the
        // frames posted through `@connections`.
        let mut in_flight = JoinSet::new();
        let ending = loop {
            tokio::select! {
                incoming = ws.next(), if in_flight.len() < MAX_IN_FLIGHT => match incoming {
                    Some(Ok(Message::Text(text))) => {
                        idle.as_mut().reset(Instant::now() + settings.idle_timeout);
                        in_flight.spawn(self.on_message(MessageBody::Text(text.as_str())));
                    }
                    Some(Ok(Message::Binary(bytes))) => {
                        idle.as_mut().reset(Instant::now() + settings.idle_timeout);
                        in_flight.spawn(self.on_message(MessageBody::Binary(&bytes)));
                    }
                    Some(Ok(Message::Close(frame))) => break Ending::ClientClosed(frame),
                    // Pings are answered by tungstenite; control frames do not count as activity.
                    Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_))) => {}
                    Some(Err(WsError::Capacity(e))) => {
                        info!(error = %e, "frame or message over the limit");
                        break Ending::TooBig;
                    }
                    Some(Err(_)) | None => break Ending::Lost,
                },
                Some(reply) = in_flight.join_next(), if !in_flight.is_empty() => {
                    if let Ok(Some(reply)) = reply
                        && ws.send(Message::text(reply)).await.is_err()
                    {
                        break Ending::Lost;
                    }
                }
                command = self.commands.recv() => match command {
                    Some(Command::Send(message)) => {
                        if ws.send(message).await.is_err() {
                            break Ending::Lost;
                        }
                    }
                    Some(Command::Close(done)) => break Ending::Deleted(done),
                    None => break Ending::Lost,
                },
                () = &mut idle => break Ending::Idle,
                () = &mut expiry => break Ending::Expired,
                // The guard `wait_for` returns is not `Send`: dropped inside.
                () = async { drop(stopping.wait_for(|stopping| *stopping).await) } => {
                    break Ending::Stopping;
                }
            }
        };
        // `$disconnect` comes after the messages already routed, as their handlers finish.
        while in_flight.join_next().await.is_some() {}
        let (code, reason) = ending.close();
        let frame = CloseFrame {
            code,
            reason: reason.to_owned().into(),
        };
        let server_side = !matches!(ending, Ending::ClientClosed(_) | Ending::Lost);
        self.end(ending).await;
        if server_side {
            close(ws, frame).await;
        } else {
            // Sends the reply to the client's close frame, if there was one.
            let _ = tokio::time::timeout(CLOSE_GRACE, ws.close(None)).await;
        }
    }

    /// Routes one message; the future invokes the handler and yields the frame to send back.
    fn on_message(&self, body: MessageBody<'_>) -> impl Future<Output = Option<String>> + use<> {
        let connection_id = self.facts.connection_id.clone();
        self.api
            .inner
            .registry
            .touch(&connection_id, event::now_ms());
        let route = route_key(body);
        let request_id = ulid::Ulid::new().to_string();
        let event = self
            .facts
            .message_event(route, body, &self.authorizer, &request_id);
        let api = self.api.clone();
        async move {
            match api.invoke(event).await {
                Ok((_, reply)) => reply,
                Err(e) => {
                    error!(error = %e, route, "integration failed");
                    let message = if matches!(e, InvokeError::Timeout) {
                        "Endpoint request timed out"
                    } else {
                        "Internal server error"
                    };
                    Some(
                        json!({
                            "message": message,
                            "connectionId": connection_id,
                            "requestId": request_id,
                        })
                        .to_string(),
                    )
                }
            }
        }
        .in_current_span()
    }

    /// Forgets the connection and invokes `$disconnect`. Runs before the close frame goes out,
    /// so that a client that saw its connection close also sees its record gone.
    async fn end(self, ending: Ending) {
        let (code, reason) = ending.close();
        let code = u16::from(code);
        self.api.inner.registry.remove(&self.facts.connection_id);
        let request_id = ulid::Ulid::new().to_string();
        let event = self
            .facts
            .disconnect_event(code, reason, &self.authorizer, &request_id);
        match self.api.invoke(event).await {
            Ok((status, _)) if (200..300).contains(&status) => {}
            Ok((status, _)) => warn!(status, "$disconnect answered an error"),
            Err(e) => warn!(error = %e, "$disconnect failed"),
        }
        info!(
            code,
            reason,
            age_ms = self.opened.elapsed().as_millis() as u64,
            "disconnected"
        );
        if let Ending::Deleted(done) = ending {
            let _ = done.send(());
        }
    }
}

/// `$request.body.action`: a known route, else `$default` (also for binary and non-JSON).
fn route_key(body: MessageBody<'_>) -> &'static str {
    let MessageBody::Text(text) = body else {
        return "$default";
    };
    let action = serde_json::from_str::<Value>(text)
        .ok()
        .and_then(|m| m.get("action").and_then(Value::as_str).map(str::to_owned));
    ROUTES
        .into_iter()
        .find(|route| action.as_deref() == Some(*route))
        .unwrap_or("$default")
}

/// Closes from the server's side: the close frame, then our write half, then whatever the
/// client still sends (its close reply, the rest of an oversize frame) is read and dropped
/// until it closes too. Dropping a socket with unread data would reset it, and the client
/// could lose the close frame.
async fn close(mut ws: Socket, frame: CloseFrame) {
    let _ = tokio::time::timeout(CLOSE_GRACE, async {
        if ws.close(Some(frame)).await.is_err() {
            return;
        }
        let io = ws.get_mut();
        let _ = io.shutdown().await;
        let mut scratch = [0_u8; 8192];
        while let Ok(read) = io.read(&mut scratch).await {
            if read == 0 {
                break;
            }
        }
    })
    .await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_route_on_their_action_and_everything_else_is_default() {
        assert_eq!(
            route_key(MessageBody::Text(r#"{"action":"heartbeat"}"#)),
            "heartbeat"
        );
        assert_eq!(
            route_key(MessageBody::Text(r#"{"action":"dance"}"#)),
            "$default"
        );
        assert_eq!(route_key(MessageBody::Text(r#"{"action":1}"#)), "$default");
        assert_eq!(route_key(MessageBody::Text("{nope")), "$default");
        assert_eq!(
            route_key(MessageBody::Binary(b"{\"action\":\"heartbeat\"}")),
            "$default"
        );
    }

    #[test]
    fn a_policy_allows_when_some_statement_allows_and_none_denies() {
        let policy = |effects: &[&str]| json!({"policyDocument": {"Statement": effects.iter().map(|e| json!({"Effect": e})).collect::<Vec<_>>()}});
        assert!(allows(&policy(&["Allow"])));
        assert!(!allows(&policy(&["Deny"])));
        assert!(!allows(&policy(&["Allow", "Deny"])));
        assert!(!allows(&policy(&[])));
    }
}
