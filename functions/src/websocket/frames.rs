//! The frames the handlers send back on a connection (JSON, `type` first).

use schemars::JsonSchema;
use serde::Serialize;
use session_core::domain::ConnectionQuality;
use session_core::service::HeartbeatAck;

use super::outcome::ErrorCode;

/// The answer to a heartbeat.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct HeartbeatAckFrame {
    /// Always `heartbeat_ack`.
    #[serde(rename = "type")]
    #[schemars(extend("const" = "heartbeat_ack"))]
    pub kind: &'static str,
    /// The heartbeat's counter.
    pub seq: u64,
    /// The server's clock (Unix ms): echo it as `last_server_time` in the next heartbeat, with
    /// `seen_at` the client's clock when this frame arrived.
    pub server_time: i64,
    /// What the server measured (the latest heartbeat counter aside).
    pub quality: ConnectionQuality,
    /// `null`, or why and that the client should reconnect.
    pub reconnect: Option<AdviceFrame>,
    /// What to resume from after a reconnect: the session and the last event id reported.
    pub resume: ResumeFrame,
    /// The streamer instance serving the session (holding its lease), as last seen; `null`
    /// until one has been seen. Its change is what `session_moved` advises about.
    pub served_by: Option<String>,
    /// `true` if the heartbeat was a repeat or out of order and changed nothing.
    pub stale: bool,
}

/// Reconnect advice.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct AdviceFrame {
    /// `connection_age`, `poor_quality`, `draining` or `session_moved`.
    pub reason: session_core::domain::ReconnectReason,
}

/// What a reconnect resumes from.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct ResumeFrame {
    /// The session.
    pub session_id: String,
    /// The last event id the client reported, for `POST /v1/sessions/{id}/reconnect`.
    #[schemars(regex(pattern = session_core::domain::EventId::PATTERN))]
    pub last_event_id: Option<String>,
    /// When the connection counts as dead without another heartbeat (Unix ms).
    pub expires_at: i64,
}

impl HeartbeatAckFrame {
    /// The frame of `ack` for a connection of `session_id`.
    pub fn new(session_id: &str, ack: &HeartbeatAck) -> Self {
        Self {
            kind: "heartbeat_ack",
            seq: ack.seq,
            server_time: ack.server_time.unix_millis(),
            quality: ack.quality,
            reconnect: ack.advice.map(|reason| AdviceFrame { reason }),
            resume: ResumeFrame {
                session_id: session_id.to_owned(),
                last_event_id: ack.last_event_id.clone(),
                expires_at: ack.expires_at.unix_millis(),
            },
            served_by: ack.served_by.clone(),
            stale: ack.stale,
        }
    }
}

/// An error about one message; the connection stays open.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct ErrorFrame {
    /// Always `error`.
    #[serde(rename = "type")]
    #[schemars(extend("const" = "error"))]
    pub kind: &'static str,
    /// What went wrong; stable, so clients may branch on it.
    pub code: ErrorCode,
    /// What was wrong, naming the field where there is one.
    pub message: String,
}

impl ErrorFrame {
    /// An error frame.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            kind: "error",
            code,
            message: message.into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use session_core::domain::{ReconnectReason, Timestamp};

    use super::*;

    fn ack(served_by: Option<&str>, advice: Option<ReconnectReason>) -> HeartbeatAck {
        HeartbeatAck {
            seq: 3,
            server_time: Timestamp::from_unix_millis(10_000),
            quality: ConnectionQuality::default(),
            advice,
            last_event_id: Some("7-42".to_owned()),
            expires_at: Timestamp::from_unix_millis(70_000),
            served_by: served_by.map(str::to_owned),
            stale: false,
        }
    }

    fn json(ack: &HeartbeatAck) -> serde_json::Value {
        serde_json::to_value(HeartbeatAckFrame::new(
            "ses_01JDQ7Z8X9K3M4N5P6Q7R8S9T0",
            ack,
        ))
        .unwrap()
    }

    #[test]
    fn an_ack_names_the_streamer_serving_the_session_and_the_advice() {
        let frame = json(&ack(
            Some("streamer-b"),
            Some(ReconnectReason::SessionMoved),
        ));

        assert_eq!(frame["type"], "heartbeat_ack");
        assert_eq!(frame["served_by"], "streamer-b");
        assert_eq!(frame["reconnect"]["reason"], "session_moved");
        assert_eq!(frame["resume"]["last_event_id"], "7-42");
    }

    #[test]
    fn an_ack_before_any_streamer_was_seen_has_a_null_served_by() {
        let frame = json(&ack(None, None));

        assert!(frame["served_by"].is_null(), "{frame}");
        assert!(frame.as_object().unwrap().contains_key("served_by"));
        assert!(frame["reconnect"].is_null());
    }
}
