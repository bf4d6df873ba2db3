//! The WebSocket routes' handler: `$connect` records the connection (the authorizer admitted
//! it), `heartbeat` measures and advises, `$disconnect` removes, `$default` explains.

use aws_lambda_events::apigw::{ApiGatewayProxyResponse, ApiGatewayWebsocketProxyRequest};
use aws_lambda_events::encodings::Body;
use serde::Serialize;
use std::sync::Arc;

use session_core::domain::{ConnectionId, Heartbeat, SessionId, UserId};
use session_core::ratelimit::{LimitClass, RateLimited, RateLimiter, Subject};
use session_core::service::{ServiceError, SessionService};
use tracing::{error, info, instrument, warn};

use super::authorizer::ConnectContext;
use super::frames::{ErrorFrame, HeartbeatAckFrame};

/// The largest heartbeat message read. Every field at its longest takes about 250 bytes; the
/// rest is room for whitespace. Anything larger is refused before it is parsed.
const MAX_HEARTBEAT_BYTES: usize = 4096;

/// What the routes run on: the use cases, and the rate limits of `$connect` (per user and per
/// source address) and of messages (per connection).
#[derive(Debug, Clone)]
pub struct Handler {
    /// The use cases.
    pub service: SessionService,
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
                info!(route, error = %refusal, "refused: rate limit");
                ws_metric(route, "rate_limited", started);
                return if route == "$connect" {
                    status(429, None)
                } else {
                    frame(&ErrorFrame::new("rate_limited", refusal.to_string()))
                };
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
    service: &SessionService,
    event: &ApiGatewayWebsocketProxyRequest,
) -> ApiGatewayProxyResponse {
    let context = &event.request_context;
    let route = context.route_key.as_deref().unwrap_or("$default");
    let Some((connection, session, caller)) = identify(event) else {
        error!(route, "event without a connection id or authorizer context");
        return status(500, None);
    };
    match route {
        "$connect" => connect(service, event, &connection, &session, &caller).await,
        "$disconnect" => match service.close_connection(&session, &connection).await {
            Ok(_) => status(200, None),
            Err(e) => {
                // Nothing is sent on a closed connection; the record expires on its own.
                warn!(error = %e, "disconnect cleanup failed");
                status(500, None)
            }
        },
        "heartbeat" => heartbeat(service, &connection, &session, event.body.as_deref()).await,
        _ => default_route(event.body.as_deref()),
    }
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
    let caller: ConnectContext = crate::caller::from_authorizer(&context.authorizer.fields)?;
    let session = SessionId::parse("session_id", &caller.session_id).ok()?;
    Some((connection, session, caller))
}

async fn connect(
    service: &SessionService,
    event: &ApiGatewayWebsocketProxyRequest,
    connection: &ConnectionId,
    session: &SessionId,
    caller: &ConnectContext,
) -> ApiGatewayProxyResponse {
    let (Ok(user), Ok(ticket_id)) = (
        session_core::domain::UserId::parse("user", &caller.user),
        session_core::domain::TicketId::parse("ticket_id", &caller.ticket_id),
    ) else {
        return status(403, None);
    };
    let admission = session_core::service::Admission {
        session_id: session.clone(),
        user,
        ticket_id,
    };
    // A reconnect's URL names where the client is; the push resumes after it.
    let resume_from = match event.query_string_parameters.first("last_event_id") {
        None => None,
        Some(text) => match session_core::domain::EventId::parse("last_event_id", text) {
            Ok(id) => Some(id),
            Err(e) => {
                info!(error = %e, "connect refused: malformed last_event_id");
                return status(400, None);
            }
        },
    };
    match service
        .open_connection(connection, &admission, resume_from)
        .await
    {
        Ok(_) => status(200, None),
        Err(ServiceError::QuotaExceeded { .. }) => {
            info!("connect refused: connection quota");
            status(429, None)
        }
        Err(ServiceError::SessionClosed { .. } | ServiceError::NotFound { .. }) => {
            status(403, None)
        }
        Err(e) => {
            error!(error = %e, "connect failed");
            status(500, None)
        }
    }
}

async fn heartbeat(
    service: &SessionService,
    connection: &ConnectionId,
    session: &SessionId,
    body: Option<&str>,
) -> ApiGatewayProxyResponse {
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
    let beat = match parsed {
        Ok(beat) => beat,
        Err(problem) => return frame(&ErrorFrame::new("invalid_heartbeat", problem)),
    };
    match service.heartbeat(session, connection, &beat).await {
        Ok(ack) => frame(&HeartbeatAckFrame::new(session.as_str(), &ack)),
        Err(ServiceError::Invalid(e)) => {
            frame(&ErrorFrame::new("invalid_heartbeat", e.to_string()))
        }
        Err(ServiceError::NotFound { .. }) => frame(&ErrorFrame::new(
            "connection_gone",
            "this connection is no longer recorded (no heartbeat in time); reconnect",
        )),
        Err(e) => {
            error!(error = %e, "heartbeat failed");
            frame(&ErrorFrame::new(
                "internal",
                "the heartbeat could not be recorded; retry",
            ))
        }
    }
}

fn default_route(body: Option<&str>) -> ApiGatewayProxyResponse {
    let parsed: Result<serde_json::Value, _> = serde_json::from_str(body.unwrap_or_default());
    let error = match parsed {
        Err(e) => ErrorFrame::new("malformed_json", format!("the message is not JSON: {e}")),
        Ok(message) => match message.get("action").and_then(|a| a.as_str()) {
            Some(action) => ErrorFrame::new(
                "unknown_action",
                format!("action: unknown action {action:?}; known: \"heartbeat\""),
            ),
            None => ErrorFrame::new("unknown_action", "action: missing; known: \"heartbeat\""),
        },
    };
    frame(&error)
}

fn status(code: i64, body: Option<String>) -> ApiGatewayProxyResponse {
    let mut response = ApiGatewayProxyResponse::default();
    response.status_code = code;
    response.body = body.map(Body::Text);
    response
}

fn frame<T: Serialize>(frame: &T) -> ApiGatewayProxyResponse {
    status(
        200,
        Some(serde_json::to_string(frame).unwrap_or_else(|_| unreachable!("frames serialise"))),
    )
}
