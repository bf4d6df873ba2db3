//! The frames the handlers send back on a connection (JSON, `type` first).

use serde::Serialize;
use session_core::domain::ConnectionQuality;
use session_core::service::HeartbeatAck;

/// The answer to a heartbeat.
#[derive(Debug, Clone, Serialize)]
pub struct HeartbeatAckFrame {
    /// Always `heartbeat_ack`.
    #[serde(rename = "type")]
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
    /// `true` if the heartbeat was a repeat or out of order and changed nothing.
    pub stale: bool,
}

/// Reconnect advice.
#[derive(Debug, Clone, Serialize)]
pub struct AdviceFrame {
    /// `connection_age`, `poor_quality`, `draining` or `session_moved`.
    pub reason: session_core::domain::ReconnectReason,
}

/// What a reconnect resumes from.
#[derive(Debug, Clone, Serialize)]
pub struct ResumeFrame {
    /// The session.
    pub session_id: String,
    /// The last event id the client reported, for `POST /v1/sessions/{id}/reconnect`.
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
            stale: ack.stale,
        }
    }
}

/// An error about one message; the connection stays open.
#[derive(Debug, Clone, Serialize)]
pub struct ErrorFrame {
    /// Always `error`.
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// Stable code: `malformed_json`, `unknown_action`, `invalid_heartbeat`, `connection_gone`,
    /// `internal`.
    pub code: &'static str,
    /// What was wrong, naming the field where there is one.
    pub message: String,
}

impl ErrorFrame {
    /// An error frame.
    pub fn new(code: &'static str, message: impl Into<String>) -> Self {
        Self {
            kind: "error",
            code,
            message: message.into(),
        }
    }
}
