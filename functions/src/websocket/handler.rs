//! The WebSocket routes' handler: `$connect` records the connection (the authorizer admitted
//! it), `heartbeat` measures and advises, `$disconnect` removes, `$default` explains.

use aws_lambda_events::apigw::{ApiGatewayProxyResponse, ApiGatewayWebsocketProxyRequest};
use std::sync::Arc;

use session_core::domain::{ConnectionId, Heartbeat, SessionId, UserId};
use session_core::ratelimit::{LimitClass, RateLimited, RateLimiter, Subject};
use session_core::service::ConnectionService;
use tracing::instrument;

use super::connect_authorizer::ConnectContext;
use super::frames::HeartbeatAckFrame;
use super::outcome::{WsError, frame, status};

/// The largest heartbeat message read. Every field at its longest takes about 250 bytes; the
/// rest is room for whitespace. Anything larger is refused before it is parsed.
const MAX_HEARTBEAT_BYTES: usize = 4096;

/// What the routes run on: the use cases, and the rate limits of `$connect` (per user and per
/// source address) and of messages (per connection).
#[derive(Debug, Clone)]
pub struct Handler {
    /// The use cases.
    pub service: ConnectionService,
    /// Rate limits, decided in the store the service uses.
    pub limiter: Arc<RateLimiter>,
}

impl Handler {
    /// Handles one WebSocket event within the rate limits: a `$connect` over its user's or its
    /// address's limit is refused (429, the handshake fails); a message over its connection's
    /// limit gets a `rate_limited` error frame, the connection kept and nothing written;
    /// `$disconnect` is never limited. Then [`handle`].
    #[instrument(skip_all, fields(
        request_id = event.request_context.request_id.as_deref().unwrap_or(""),
        connection_id = event.request_context.connection_id.as_deref().unwrap_or(""),
        session_id = tracing::field::Empty,
    ))]
    pub async fn handle(&self, event: &ApiGatewayWebsocketProxyRequest) -> ApiGatewayProxyResponse {
        let route = event
            .request_context
            .route_key
            .as_deref()
            .unwrap_or("$default");
        let started = std::time::Instant::now();
        if let Some((connection, session, caller)) = identify(event) {
            tracing::Span::current().record("session_id", tracing::field::display(&session));
            let limited = match route {
                "$disconnect" => Ok(()),
                "$connect" => self.limit_connect(event, &caller).await,
                _ => {
                    self.limiter
                        .check(
                            LimitClass::WsMessages,
                            Subject::Connection(connection.as_str()),
                        )
                        .await
                }
            };
            if let Err(refusal) = limited {
                ws_metric(route, "rate_limited", started);
                return if route == "$connect" {
                    WsError::ConnectLimited(refusal)
                } else {
                    WsError::RateLimited(refusal)
                }
                .response();
            }
        }
        let response = handle(&self.service, event).await;
        let outcome = match response.status_code {
            200..=299 => "ok",
            429 => "rate_limited",
            401 | 403 => "denied",
            400..=499 => "client_error",
            _ => "error",
        };
        ws_metric(route, outcome, started);
        response
    }

    /// Spends the `$connect` allowances of the user, then of the source address (a flooding
    /// user is refused by the pre-filter without a store call for its address).
    async fn limit_connect(
        &self,
        event: &ApiGatewayWebsocketProxyRequest,
        caller: &ConnectContext,
    ) -> Result<(), RateLimited> {
        if let Ok(user) = UserId::parse("user", &caller.user) {
            self.limiter
                .check(LimitClass::WsConnect, Subject::User(&user))
                .await?;
        }
        let address = event
            .request_context
            .identity
            .source_ip
            .as_deref()
            .and_then(|ip| ip.parse().ok());
        if let Some(address) = address {
            self.limiter
                .check(LimitClass::ConnectAddress, Subject::Address(address))
                .await?;
        }
        Ok(())
    }
}

/// Handles one WebSocket event, without rate limits ([`Handler::handle`] applies them). Never
/// fails: every outcome is a status (for `$connect`, a non-2xx refuses the handshake) or a frame
/// for the client.
pub async fn handle(
    service: &ConnectionService,
    event: &ApiGatewayWebsocketProxyRequest,
) -> ApiGatewayProxyResponse {
    let context = &event.request_context;
    let route = context.route_key.as_deref().unwrap_or("$default");
    let Some((connection, session, caller)) = identify(event) else {
        return WsError::NoContext.response();
    };
    let answer = match route {
        "$connect" => connect(service, event, &connection, &session, &caller).await,
        "$disconnect" => service
            .close_connection(&session, &connection)
            .await
            .map(|_| status(200, None))
            .map_err(WsError::DisconnectFailed),
        "heartbeat" => heartbeat(service, &connection, &session, event.body.as_deref()).await,
        _ => Err(default_route(event.body.as_deref())),
    };
    answer.unwrap_or_else(|e| e.response())
}

/// One EMF line ([`crate::metrics`]) for a WebSocket event: `Connect`, `Disconnect`,
/// `Heartbeat` or `Message`.
fn ws_metric(route: &str, outcome: &str, started: std::time::Instant) {
    let operation = match route {
        "$connect" => "Connect",
        "$disconnect" => "Disconnect",
        "heartbeat" => "Heartbeat",
        _ => "Message",
    };
    crate::metrics::Emf::stdout().record("ws-handler", operation, outcome, started.elapsed());
}

fn identify(
    event: &ApiGatewayWebsocketProxyRequest,
) -> Option<(ConnectionId, SessionId, ConnectContext)> {
    let context = &event.request_context;
    let connection =
        ConnectionId::parse("connection_id", context.connection_id.as_deref()?).ok()?;
    let caller: ConnectContext =
        crate::caller_context::from_authorizer(&context.authorizer.fields)?;
    let session = SessionId::parse("session_id", &caller.session_id).ok()?;
    Some((connection, session, caller))
}

async fn connect(
    service: &ConnectionService,
    event: &ApiGatewayWebsocketProxyRequest,
    connection: &ConnectionId,
    session: &SessionId,
    caller: &ConnectContext,
) -> Result<ApiGatewayProxyResponse, WsError> {
    let (Ok(user), Ok(ticket_id)) = (
        session_core::domain::UserId::parse("user", &caller.user),
        session_core::domain::TicketId::parse("ticket_id", &caller.ticket_id),
    ) else {
        return Err(WsError::ConnectDenied(
            "the ticket names no valid user or ticket",
        ));
    };
    let admission = session_core::service::Admission {
        session_id: session.clone(),
        user,
        ticket_id,
        compression: caller.compression,
    };
    // A reconnect's URL names where the client is; the push resumes after it.
    let resume_from = event
        .query_string_parameters
        .first("last_event_id")
        .map(|text| session_core::domain::EventId::parse("last_event_id", text))
        .transpose()
        .map_err(WsError::ConnectBadPosition)?;
    match service
        .open_connection(connection, &admission, resume_from)
        .await
    {
        Ok(_) => Ok(status(200, None)),
        Err(e) => Err(WsError::of_connect(e)),
    }
}

async fn heartbeat(
    service: &ConnectionService,
    connection: &ConnectionId,
    session: &SessionId,
    body: Option<&str>,
) -> Result<ApiGatewayProxyResponse, WsError> {
    // `action` routed the message here; the rest is the heartbeat (flatten would lose the
    // field paths that errors name). An oversized message is refused unread.
    let parsed = body
        .ok_or_else(|| "the message is empty".to_owned())
        .and_then(|b| {
            if b.len() > MAX_HEARTBEAT_BYTES {
                return Err(format!(
                    "message: {} bytes, over the {MAX_HEARTBEAT_BYTES} a heartbeat may have \
                     (last_event_id is at most 41 characters, each number at most 16 digits)",
                    b.len()
                ));
            }
            serde_json::from_str::<serde_json::Value>(b).map_err(|e| e.to_string())
        })
        .and_then(|mut message| {
            if let Some(fields) = message.as_object_mut() {
                fields.remove("action");
            }
            serde_path_to_error::deserialize::<_, Heartbeat>(message)
                .map_err(|e| format!("{}: {}", e.path(), e.inner()))
        });
    let beat = parsed.map_err(WsError::InvalidHeartbeat)?;
    match service.heartbeat(session, connection, &beat).await {
        Ok(ack) => Ok(frame(&HeartbeatAckFrame::new(session.as_str(), &ack))),
        Err(e) => Err(WsError::of_heartbeat(e)),
    }
}

/// A message no route took: not JSON, or an unknown `action`.
fn default_route(body: Option<&str>) -> WsError {
    match serde_json::from_str::<serde_json::Value>(body.unwrap_or_default()) {
        Err(e) => WsError::MalformedJson(e),
        Ok(message) => WsError::UnknownAction(
            message
                .get("action")
                .and_then(|a| a.as_str())
                .map(str::to_owned),
        ),
    }
}
