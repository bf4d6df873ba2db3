//! The JSON shapes of the REST API (snake_case), and their translation from the domain.
//! Requests reject unknown fields; timestamps are RFC 3339; prices and quantities are exact
//! decimal strings.

use serde::{Deserialize, Serialize};
use session_core::domain::{self, BookView, Compression, Session, Simulator, Timestamp, Transport};
use session_core::service::{Dependency, Health, IssuedTicket, Reconnect, Resume, SessionDetail};
use utoipa::ToSchema;

/// `POST /v1/sessions`.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateSession {
    /// Display name: 1 to 64 characters, no control character, not starting or ending with
    /// white space.
    #[schema(min_length = 1, max_length = 64)]
    pub name: Option<String>,
    /// Any JSON object the client wants kept with the session, up to 4 KiB serialised.
    #[schema(value_type = Option<Object>)]
    pub metadata: Option<serde_json::Value>,
}

/// A session.
#[derive(Debug, Serialize, ToSchema)]
pub struct SessionBody {
    /// Its id (`ses_` and a ULID).
    pub session_id: String,
    /// `active` or `closed`.
    #[schema(example = "active")]
    pub status: String,
    /// Display name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Client metadata.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub metadata: Option<serde_json::Value>,
    /// When it was created.
    #[schema(format = DateTime)]
    pub created_at: String,
    /// When it ends on its own.
    #[schema(format = DateTime)]
    pub expires_at: String,
    /// When it was closed.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(format = DateTime)]
    pub closed_at: Option<String>,
}

impl From<&Session> for SessionBody {
    fn from(s: &Session) -> Self {
        Self {
            session_id: s.id.to_string(),
            status: s.status.as_str().to_owned(),
            name: s.name.as_ref().map(|n| n.as_str().to_owned()),
            metadata: s.metadata.clone().map(serde_json::Value::from),
            created_at: s.created_at.to_rfc3339(),
            expires_at: s.expires_at.to_rfc3339(),
            closed_at: s.closed_at.map(Timestamp::to_rfc3339),
        }
    }
}

/// A session with its simulators and live connection count.
#[derive(Debug, Serialize, ToSchema)]
pub struct SessionDetailBody {
    /// The session.
    #[serde(flatten)]
    pub session: SessionBody,
    /// Its simulators, oldest first.
    pub simulators: Vec<SimulatorBody>,
    /// Its live WebSocket connections.
    pub connections: u32,
}

impl From<&SessionDetail> for SessionDetailBody {
    fn from(d: &SessionDetail) -> Self {
        Self {
            session: SessionBody::from(&d.session),
            simulators: d.simulators.iter().map(SimulatorBody::from).collect(),
            connections: u32::try_from(d.connections).unwrap_or(u32::MAX),
        }
    }
}

/// A page of sessions.
#[derive(Debug, Serialize, ToSchema)]
pub struct SessionList {
    /// The sessions, newest first.
    pub items: Vec<SessionBody>,
    /// Pass as `cursor` for the next page; `null` on the last page.
    pub next_cursor: Option<String>,
}

/// `POST /v1/sessions/{session_id}/simulators`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StartSimulator {
    /// 1 to 16 distinct symbols, each 1 to 12 of `A-Z 0-9`, optionally `-` and 1 to 12 more
    /// (`BTC-USD`).
    #[schema(min_items = 1, max_items = 16, example = json!(["BTC-USD", "ETH-USD"]))]
    pub symbols: Vec<String>,
    /// Seed of the simulator's generator; random when absent.
    #[serde(default, deserialize_with = "whole_number")]
    pub seed: Option<u64>,
    /// Target events per second, 1 to 200000; 20 when absent.
    #[schema(minimum = 1, maximum = 200_000)]
    #[serde(default, deserialize_with = "whole_number")]
    pub events_per_second: Option<u32>,
}

/// An optional whole number, written as JSON Schema counts integers: `627` or `627.0` (a number
/// whose fraction is zero is an integer there, so the document allows it).
fn whole_number<'de, D, T>(deserializer: D) -> Result<Option<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: TryFrom<u64>,
{
    /// 2^64: every smaller whole `f64` converts to a `u64` exactly.
    const LIMIT: f64 = 18_446_744_073_709_551_616.0;
    let Some(number) = Option::<serde_json::Number>::deserialize(deserializer)? else {
        return Ok(None);
    };
    let whole = number.as_u64().or_else(|| {
        number
            .as_f64()
            .filter(|f| f.fract() == 0.0 && (0.0..LIMIT).contains(f))
            .map(|f| f as u64)
    });
    whole
        .and_then(|w| T::try_from(w).ok())
        .map(Some)
        .ok_or_else(|| serde::de::Error::custom(format!("{number} is not a whole number in range")))
}

/// A simulator.
#[derive(Debug, Serialize, ToSchema)]
pub struct SimulatorBody {
    /// Its id (`sim_` and a ULID).
    pub simulator_id: String,
    /// Its session.
    pub session_id: String,
    /// `starting`, `running`, `stopping`, `stopped` or `failed`.
    #[schema(example = "running")]
    pub status: String,
    /// Its symbols.
    pub symbols: Vec<String>,
    /// Its seed.
    pub seed: u64,
    /// Its target event rate.
    pub events_per_second: u32,
    /// Why it failed or stopped.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// When it was requested.
    #[schema(format = DateTime)]
    pub created_at: String,
    /// When its state last changed.
    #[schema(format = DateTime)]
    pub updated_at: String,
}

impl From<&Simulator> for SimulatorBody {
    fn from(s: &Simulator) -> Self {
        Self {
            simulator_id: s.id.to_string(),
            session_id: s.session_id.to_string(),
            status: s.status.as_str().to_owned(),
            symbols: s.symbols.iter().map(|x| x.as_str().to_owned()).collect(),
            seed: s.seed,
            events_per_second: s.events_per_second,
            reason: s.reason.clone(),
            created_at: s.created_at.to_rfc3339(),
            updated_at: s.updated_at.to_rfc3339(),
        }
    }
}

/// One price level, as exact decimals.
#[derive(Debug, Serialize, ToSchema)]
pub struct LevelBody {
    /// Price.
    #[schema(example = "101.25")]
    pub price: String,
    /// Quantity resting at the price.
    #[schema(example = "3.500")]
    pub quantity: String,
}

/// The authoritative book of one symbol.
#[derive(Debug, Serialize, ToSchema)]
pub struct BookBody {
    /// The symbol.
    pub symbol: String,
    /// The stream position (`<epoch>-<sequence>`) the book reflects: compare with the event ids
    /// of the stream.
    #[schema(example = "8123456789-4031")]
    pub event_id: String,
    /// Bids, best first.
    pub bids: Vec<LevelBody>,
    /// Asks, best first.
    pub asks: Vec<LevelBody>,
}

impl From<&BookView> for BookBody {
    fn from(b: &BookView) -> Self {
        let levels = |levels: &[domain::Level]| {
            levels
                .iter()
                .map(|l| LevelBody {
                    price: domain::decimal(l.price, b.price_scale),
                    quantity: domain::decimal(l.quantity, b.quantity_scale),
                })
                .collect()
        };
        Self {
            symbol: b.symbol.clone(),
            event_id: b.at.to_string(),
            bids: levels(&b.bids),
            asks: levels(&b.asks),
        }
    }
}

/// Which transport a ticket opens.
#[derive(Debug, Clone, Copy, Deserialize, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum TransportBody {
    /// Server-sent events (`EventSource`).
    Sse,
    /// WebSocket.
    Ws,
}

impl From<TransportBody> for Transport {
    fn from(t: TransportBody) -> Self {
        match t {
            TransportBody::Sse => Transport::Sse,
            TransportBody::Ws => Transport::Ws,
        }
    }
}

/// How a WebSocket connection's pushes are to be encoded.
#[derive(Debug, Clone, Copy, Deserialize, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum CompressionBody {
    /// JSON text frames.
    None,
    /// Binary frames holding the raw deflate (RFC 1951) of the JSON message: inflate with
    /// `new DecompressionStream('deflate-raw')`. Granted while the `ws_compression` flag is on.
    Deflate,
}

impl From<CompressionBody> for Compression {
    fn from(c: CompressionBody) -> Self {
        match c {
            CompressionBody::None => Compression::None,
            CompressionBody::Deflate => Compression::Deflate,
        }
    }
}

/// `POST /v1/sessions/{session_id}/tickets`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateTicket {
    /// The transport to open.
    pub transport: TransportBody,
    /// The simulator whose stream to follow; default: the session's newest live simulator.
    pub simulator_id: Option<String>,
    /// The push encoding asked for (default `none`); `ws` only, ignored on an `sse` ticket
    /// (an SSE stream is gzip when the client's `Accept-Encoding` takes it). The answer's
    /// `compression` says what was granted.
    pub compression: Option<CompressionBody>,
}

/// A connect ticket.
#[derive(Debug, Serialize, ToSchema)]
pub struct TicketBody {
    /// The single-use ticket (also in `url`).
    pub ticket: String,
    /// The URL to open with `EventSource` or `WebSocket`.
    pub url: String,
    /// `sse` or `ws`.
    pub transport: String,
    /// After this the ticket is refused.
    #[schema(format = DateTime)]
    pub expires_at: String,
    /// The simulator whose stream the URL follows.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub simulator_id: Option<String>,
    /// `ws` only: how the pushes are encoded, as granted: `deflate` (binary frames) or
    /// `none` (JSON text frames, also when `deflate` was asked for but is not enabled).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(example = "deflate")]
    pub compression: Option<String>,
}

impl From<&IssuedTicket> for TicketBody {
    fn from(t: &IssuedTicket) -> Self {
        Self {
            ticket: t.token.clone(),
            url: t.url.clone(),
            transport: t.transport.as_str().to_owned(),
            expires_at: t.expires_at.to_rfc3339(),
            simulator_id: t.simulator_id.as_ref().map(ToString::to_string),
            compression: (t.transport == Transport::Ws).then(|| t.compression.as_str().to_owned()),
        }
    }
}

/// `POST /v1/sessions/{session_id}/reconnect`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReconnectRequest {
    /// The transport to reopen.
    pub transport: TransportBody,
    /// The id of the last event the client processed (`<epoch>-<sequence>`).
    #[schema(example = "8123456789-4031")]
    pub last_event_id: Option<String>,
    /// The simulator whose stream to follow; default: the session's newest live simulator.
    pub simulator_id: Option<String>,
    /// The push encoding asked for (default `none`), as on a ticket: `ws` only, ignored on
    /// `sse`.
    pub compression: Option<CompressionBody>,
}

/// How the stream will resume.
#[derive(Debug, Serialize, ToSchema)]
pub struct ResumeBody {
    /// `replay`: every event after `from`, no gap, no duplicate. `snapshot`: a fresh snapshot
    /// first (flagged `reset`), see `reason`.
    #[schema(example = "replay")]
    pub mode: String,
    /// The event id the replay continues after.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
    /// Why a snapshot: `no_last_event_id`, `no_running_simulator`, `epoch_changed`,
    /// `unknown_position`, `outside_window`, `position_unverified`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// A reconnect answer: a fresh ticket and how the stream will resume.
#[derive(Debug, Serialize, ToSchema)]
pub struct ReconnectBody {
    /// The fresh ticket.
    #[serde(flatten)]
    pub ticket: TicketBody,
    /// How the stream will resume.
    pub resume: ResumeBody,
}

impl From<&Reconnect> for ReconnectBody {
    fn from(r: &Reconnect) -> Self {
        let resume = match &r.resume {
            Resume::Replay { from } => ResumeBody {
                mode: "replay".to_owned(),
                from: Some(from.to_string()),
                reason: None,
            },
            Resume::Snapshot { reason } => ResumeBody {
                mode: "snapshot".to_owned(),
                from: None,
                reason: Some(reason.as_str().to_owned()),
            },
        };
        Self {
            ticket: TicketBody::from(&r.ticket),
            resume,
        }
    }
}

/// One dependency's health.
#[derive(Debug, Serialize, ToSchema)]
pub struct DependencyBody {
    /// `store` or `simulator_service`.
    pub name: String,
    /// `ok` or `failing`.
    pub state: String,
    /// Why it is failing.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

/// The service's health.
#[derive(Debug, Serialize, ToSchema)]
pub struct HealthBody {
    /// `ok`, `degraded` or `down`.
    #[schema(example = "ok")]
    pub status: String,
    /// Each dependency.
    pub dependencies: Vec<DependencyBody>,
}

impl From<&Health> for HealthBody {
    fn from(h: &Health) -> Self {
        let dependency = |d: &Dependency| DependencyBody {
            name: d.name.to_owned(),
            state: match d.state {
                session_core::service::DependencyState::Ok => "ok",
                session_core::service::DependencyState::Failing => "failing",
            }
            .to_owned(),
            detail: d.detail.map(str::to_owned),
        };
        Self {
            status: h.status.as_str().to_owned(),
            dependencies: h.dependencies.iter().map(dependency).collect(),
        }
    }
}

/// API Gateway's own answer when it refuses a request before the function (401, 403, 404,
/// 429).
#[derive(Debug, Serialize, ToSchema)]
pub struct GatewayMessage {
    /// `Unauthorized`, `Forbidden`, `Not Found`, `Too Many Requests`.
    pub message: String,
}

/// `POST /v1/admin/revocations`: exactly one of `token_id` and `subject`.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateRevocation {
    /// The id (`jti`) of the token to revoke: 1 to 256 printable ASCII characters.
    #[schema(min_length = 1, max_length = 256)]
    pub token_id: Option<String>,
    /// With `token_id`: the token's expiry, when its revocation may lapse (default: the longest
    /// token life from now). In the future, at most the longest token life ahead.
    #[schema(format = DateTime)]
    pub expires_at: Option<String>,
    /// The subject (user) whose every token to revoke.
    pub subject: Option<String>,
    /// With `subject`: until when its tokens are refused (default: the longest token life from
    /// now, by when every token it holds now has expired). In the future, at most the longest
    /// token life ahead.
    #[schema(format = DateTime)]
    pub until: Option<String>,
}

/// A revocation in force.
#[derive(Debug, Serialize, ToSchema)]
pub struct RevocationBody {
    /// The token revoked, for a token's revocation.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token_id: Option<String>,
    /// The subject revoked, for a subject's revocation.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    /// Until when it is refused.
    #[schema(format = DateTime)]
    pub until: String,
}

impl From<&domain::Revocation> for RevocationBody {
    fn from(r: &domain::Revocation) -> Self {
        let (token_id, subject) = match &r.target {
            domain::RevocationTarget::Token(id) => (Some(id.to_string()), None),
            domain::RevocationTarget::Subject(user) => (None, Some(user.to_string())),
        };
        Self {
            token_id,
            subject,
            until: r.until.to_rfc3339(),
        }
    }
}
