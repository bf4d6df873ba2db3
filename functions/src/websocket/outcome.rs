//! Every way a WebSocket event can fail, and what the client gets for each: one table, mapped
//! once at the edge (as `session_core::http::problem` is for REST).
//!
//! A `$connect` refusal is a status (a non-2xx refuses the handshake). An error about a message
//! is an `error` frame on the open connection, its `code` one of [`ErrorCode`] (the `error`
//! message of docs/asyncapi.json lists them). The cause chain goes to the log, never to the client.

use aws_lambda_events::apigw::ApiGatewayProxyResponse;
use aws_lambda_events::encodings::Body;
use schemars::JsonSchema;
use serde::Serialize;
use session_core::domain::ValidationError;
use session_core::ratelimit::RateLimited;
use session_core::service::{ServiceError, error_chain};
use tracing::{error, info, warn};

use super::frames::ErrorFrame;

/// The stable `code` of an `error` frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// The message is not JSON.
    MalformedJson,
    /// The message's `action` is missing or names no route.
    UnknownAction,
    /// A heartbeat is empty, too large, or has a field missing, of the wrong type or out of range.
    InvalidHeartbeat,
    /// The connection is no longer recorded (no heartbeat in time): reconnect.
    ConnectionGone,
    /// Over the connection's message rate; the message says when to send again.
    RateLimited,
    /// The service failed; retry.
    Internal,
}

impl ErrorCode {
    /// Every code (the `error` message of docs/asyncapi.json lists them).
    pub const ALL: [Self; 6] = [
        Self::MalformedJson,
        Self::UnknownAction,
        Self::InvalidHeartbeat,
        Self::ConnectionGone,
        Self::RateLimited,
        Self::Internal,
    ];
}

/// What went wrong with one WebSocket event.
#[derive(Debug, thiserror::Error)]
pub enum WsError {
    /// The event lacks a connection id or the authorizer's context: a wiring fault.
    #[error("event without a connection id or authorizer context")]
    NoContext,
    /// `$connect` of a ticket whose context names no valid user or ticket, or whose session is
    /// closed or gone.
    #[error("connect refused: {0}")]
    ConnectDenied(&'static str),
    /// `$connect` with a malformed `last_event_id`.
    #[error("connect refused: malformed last_event_id")]
    ConnectBadPosition(#[source] ValidationError),
    /// `$connect` over the user's connection quota.
    #[error("connect refused: connection quota")]
    ConnectQuota,
    /// `$connect` over the user's or the address's rate.
    #[error("connect refused: rate limit")]
    ConnectLimited(#[source] RateLimited),
    /// `$connect` could not be recorded.
    #[error("connect failed")]
    ConnectFailed(#[source] ServiceError),
    /// `$disconnect` could not remove the record (it expires on its own).
    #[error("disconnect cleanup failed")]
    DisconnectFailed(#[source] ServiceError),
    /// A message that is not JSON.
    #[error("the message is not JSON: {0}")]
    MalformedJson(#[source] serde_json::Error),
    /// A message without a known `action` (the unknown one, if any).
    #[error("action: {}; known: \"heartbeat\"", .0.as_ref().map_or_else(|| "missing".to_owned(), |a| format!("unknown action {a:?}")))]
    UnknownAction(Option<String>),
    /// A heartbeat that does not parse or validate: the problem, naming the field.
    #[error("{0}")]
    InvalidHeartbeat(String),
    /// A heartbeat of a connection no longer recorded.
    #[error("this connection is no longer recorded (no heartbeat in time); reconnect")]
    ConnectionGone,
    /// A message over the connection's rate.
    #[error("{0}")]
    RateLimited(#[source] RateLimited),
    /// A heartbeat that could not be recorded.
    #[error("the heartbeat could not be recorded")]
    HeartbeatFailed(#[source] ServiceError),
}

/// What the client gets for an error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// A status for API Gateway: on `$connect`, a non-2xx refuses the handshake.
    Status(u16),
    /// An `error` frame of this code and message; the connection stays open.
    Frame(ErrorCode, String),
}

impl WsError {
    /// The error of a `$connect` whose connection the service did not record.
    pub fn of_connect(error: ServiceError) -> Self {
        match error {
            ServiceError::QuotaExceeded { .. } => Self::ConnectQuota,
            ServiceError::SessionClosed { .. } => Self::ConnectDenied("session closed"),
            ServiceError::NotFound { .. } => Self::ConnectDenied("session gone"),
            // Counted on the session item, a connection is recorded by the session's home only.
            ServiceError::WrongRegion { .. } => {
                Self::ConnectDenied("session homed in another region")
            }
            e => Self::ConnectFailed(e),
        }
    }

    /// The error of a heartbeat the service did not record.
    pub fn of_heartbeat(error: ServiceError) -> Self {
        match error {
            ServiceError::Invalid(e) => Self::InvalidHeartbeat(e.to_string()),
            ServiceError::NotFound { .. } => Self::ConnectionGone,
            e => Self::HeartbeatFailed(e),
        }
    }

    /// The table: what the client gets for this error.
    pub fn answer(&self) -> Answer {
        let frame = |code| Answer::Frame(code, self.to_string());
        match self {
            Self::NoContext | Self::ConnectFailed(_) | Self::DisconnectFailed(_) => {
                Answer::Status(500)
            }
            Self::ConnectDenied(_) => Answer::Status(403),
            Self::ConnectBadPosition(_) => Answer::Status(400),
            Self::ConnectQuota | Self::ConnectLimited(_) => Answer::Status(429),
            Self::MalformedJson(_) => frame(ErrorCode::MalformedJson),
            Self::UnknownAction(_) => frame(ErrorCode::UnknownAction),
            Self::InvalidHeartbeat(_) => frame(ErrorCode::InvalidHeartbeat),
            Self::ConnectionGone => frame(ErrorCode::ConnectionGone),
            Self::RateLimited(_) => frame(ErrorCode::RateLimited),
            // The cause stays in the log.
            Self::HeartbeatFailed(_) => Answer::Frame(
                ErrorCode::Internal,
                "the heartbeat could not be recorded; retry".to_owned(),
            ),
        }
    }

    /// Logs the error with its cause chain (faults as errors, refusals as information) and
    /// answers it.
    pub fn response(&self) -> ApiGatewayProxyResponse {
        let chain = error_chain(self);
        match self {
            Self::NoContext | Self::ConnectFailed(_) | Self::HeartbeatFailed(_) => {
                error!(error = %chain, "websocket event failed");
            }
            Self::DisconnectFailed(_) => warn!(error = %chain, "websocket event failed"),
            _ => info!(error = %chain, "websocket event refused"),
        }
        match self.answer() {
            Answer::Status(code) => status(code, None),
            Answer::Frame(code, message) => frame(&ErrorFrame::new(code, message)),
        }
    }
}

/// A response of `code`, with `body` as the frame sent back.
pub(super) fn status(code: u16, body: Option<String>) -> ApiGatewayProxyResponse {
    let mut response = ApiGatewayProxyResponse::default();
    response.status_code = i64::from(code);
    response.body = body.map(Body::Text);
    response
}

/// A 200 whose body, `frame` as JSON, is sent to the client.
pub(super) fn frame<T: Serialize>(frame: &T) -> ApiGatewayProxyResponse {
    status(
        200,
        Some(serde_json::to_string(frame).unwrap_or_else(|_| unreachable!("frames serialise"))),
    )
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use session_core::domain::EventId;
    use session_core::ratelimit::{LimitClass, Rate};

    use super::*;

    fn service_error() -> ServiceError {
        ServiceError::NotFound {
            entity: "connection",
            id: "c1".to_owned(),
        }
    }

    fn limited() -> RateLimited {
        RateLimited {
            class: LimitClass::WsMessages,
            rate: Rate::new(5, 10),
            retry_after: Duration::from_secs(2),
            reset: Duration::from_secs(2),
        }
    }

    fn frame_code(error: &WsError) -> Option<ErrorCode> {
        match error.answer() {
            Answer::Frame(code, _) => Some(code),
            Answer::Status(_) => None,
        }
    }

    #[test]
    fn an_event_without_its_context_is_a_500() {
        assert_eq!(WsError::NoContext.answer(), Answer::Status(500));
    }

    #[test]
    fn a_denied_connect_is_a_403() {
        assert_eq!(
            WsError::ConnectDenied("session closed").answer(),
            Answer::Status(403)
        );
    }

    #[test]
    fn a_connect_with_a_malformed_position_is_a_400() {
        let problem = EventId::parse("last_event_id", "x").unwrap_err();

        assert_eq!(
            WsError::ConnectBadPosition(problem).answer(),
            Answer::Status(400)
        );
    }

    #[test]
    fn a_connect_over_the_quota_or_the_rate_is_a_429() {
        let limited = limited();

        assert_eq!(WsError::ConnectQuota.answer(), Answer::Status(429));
        assert_eq!(
            WsError::ConnectLimited(limited).answer(),
            Answer::Status(429)
        );
    }

    #[test]
    fn a_connect_or_disconnect_the_store_failed_is_a_500() {
        assert_eq!(
            WsError::ConnectFailed(service_error()).answer(),
            Answer::Status(500)
        );
        assert_eq!(
            WsError::DisconnectFailed(service_error()).answer(),
            Answer::Status(500)
        );
    }

    #[test]
    fn a_message_that_is_not_json_is_a_malformed_json_frame_naming_the_parse_error() {
        let parse = serde_json::from_str::<serde_json::Value>("{").unwrap_err();

        let answer = WsError::MalformedJson(parse).answer();

        let Answer::Frame(ErrorCode::MalformedJson, message) = answer else {
            panic!("{answer:?}");
        };
        assert!(
            message.starts_with("the message is not JSON: EOF"),
            "{message}"
        );
    }

    #[test]
    fn an_unknown_or_missing_action_is_an_unknown_action_frame_naming_it() {
        assert_eq!(
            WsError::UnknownAction(Some("subscribe".to_owned())).answer(),
            Answer::Frame(
                ErrorCode::UnknownAction,
                "action: unknown action \"subscribe\"; known: \"heartbeat\"".to_owned()
            )
        );
        assert_eq!(
            WsError::UnknownAction(None).answer(),
            Answer::Frame(
                ErrorCode::UnknownAction,
                "action: missing; known: \"heartbeat\"".to_owned()
            )
        );
    }

    #[test]
    fn an_invalid_heartbeat_is_an_invalid_heartbeat_frame_with_the_problem() {
        assert_eq!(
            WsError::InvalidHeartbeat("seq: must be between 1 and 9".to_owned()).answer(),
            Answer::Frame(
                ErrorCode::InvalidHeartbeat,
                "seq: must be between 1 and 9".to_owned()
            )
        );
    }

    #[test]
    fn a_heartbeat_of_a_forgotten_connection_is_a_connection_gone_frame() {
        assert_eq!(
            frame_code(&WsError::ConnectionGone),
            Some(ErrorCode::ConnectionGone)
        );
    }

    #[test]
    fn a_message_over_the_rate_is_a_rate_limited_frame_saying_when_to_retry() {
        let limited = limited();
        let expected = limited.to_string();

        assert_eq!(
            WsError::RateLimited(limited).answer(),
            Answer::Frame(ErrorCode::RateLimited, expected)
        );
    }

    #[test]
    fn a_failed_heartbeat_is_an_internal_frame_that_keeps_the_cause_out() {
        let answer = WsError::HeartbeatFailed(service_error()).answer();

        assert_eq!(
            answer,
            Answer::Frame(
                ErrorCode::Internal,
                "the heartbeat could not be recorded; retry".to_owned()
            )
        );
    }

    #[test]
    fn service_errors_of_a_connect_are_refusals_or_a_failure() {
        let cases = [
            (
                ServiceError::QuotaExceeded {
                    quota: session_core::store::Quota::ConnectionsPerSession,
                    limit: 2,
                },
                429,
            ),
            (
                ServiceError::SessionClosed {
                    id: "ses".to_owned(),
                },
                403,
            ),
            (service_error(), 403),
            (ServiceError::TokenRevoked, 500),
        ];
        for (error, status) in cases {
            let text = error.to_string();

            assert_eq!(
                WsError::of_connect(error).answer(),
                Answer::Status(status),
                "{text}"
            );
        }
    }

    #[test]
    fn service_errors_of_a_heartbeat_are_frames_of_their_code() {
        let invalid = ValidationError::new("seq", "must be at least 1");
        let cases = [
            (ServiceError::Invalid(invalid), ErrorCode::InvalidHeartbeat),
            (service_error(), ErrorCode::ConnectionGone),
            (ServiceError::TokenRevoked, ErrorCode::Internal),
        ];
        for (error, code) in cases {
            let text = error.to_string();

            assert_eq!(
                frame_code(&WsError::of_heartbeat(error)),
                Some(code),
                "{text}"
            );
        }
    }

    #[test]
    fn the_log_line_keeps_the_cause_chain() {
        let chain = error_chain(&WsError::HeartbeatFailed(service_error()));

        assert!(
            chain.starts_with("the heartbeat could not be recorded: "),
            "{chain}"
        );
        assert!(chain.contains("c1"), "{chain}");
    }
}
