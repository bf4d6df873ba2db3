//! Connect tickets and reconnect advice for the streaming transports (SSE, WebSocket).
//!
//! A ticket authorises one connection to one session; the URL it comes with says where. A
//! reconnect answer predicts how the stream will resume from the client's last event id by
//! comparing it with the simulator's current position and the streamer's replay window. The
//! stream itself stays authoritative: if the prediction was `replay` but the events are gone by
//! the time the client connects, the stream sends an explicit `reset` and a snapshot — never a
//! silent gap.

use std::fmt::Write as _;

use tracing::instrument;

use super::{ServiceError, SessionService};
use crate::auth::Principal;
use crate::domain::{
    Compression, EventId, Session, SessionId, Simulator, SimulatorId, SimulatorStatus, Timestamp,
    Transport,
};
use crate::store::SimulatorStore;

/// A minted ticket and where to use it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IssuedTicket {
    /// The ticket (a compact JWT).
    pub token: String,
    /// The URL to open, ticket included.
    pub url: String,
    /// The transport it opens.
    pub transport: Transport,
    /// How the connection's pushes are encoded, as granted.
    pub compression: Compression,
    /// After this it is refused.
    pub expires_at: Timestamp,
    /// The simulator whose stream the URL opens, if the session has one.
    pub simulator_id: Option<SimulatorId>,
}

/// How a stream will resume.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resume {
    /// The stream replays every event after `from`: no gap, no duplicate.
    Replay {
        /// The client's last event id.
        from: EventId,
    },
    /// The stream starts with a snapshot (flagged `reset` for a resuming client).
    Snapshot {
        /// Why not a replay.
        reason: SnapshotReason,
    },
}

/// Why a reconnecting client gets a snapshot rather than a replay.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SnapshotReason {
    /// The client named no last event id.
    NoLastEventId,
    /// The session has no running simulator.
    NoRunningSimulator,
    /// The simulator restarted since: a new epoch.
    EpochChanged,
    /// The last event id is ahead of the stream: not an id of this stream.
    UnknownPosition,
    /// The client is further behind than the streamer keeps events.
    OutsideWindow,
    /// The simulator service could not be asked; the stream may still replay.
    PositionUnverified,
}

impl SnapshotReason {
    /// The stable wire name.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::NoLastEventId => "no_last_event_id",
            Self::NoRunningSimulator => "no_running_simulator",
            Self::EpochChanged => "epoch_changed",
            Self::UnknownPosition => "unknown_position",
            Self::OutsideWindow => "outside_window",
            Self::PositionUnverified => "position_unverified",
        }
    }
}

/// A reconnect answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reconnect {
    /// A fresh ticket; its URL carries the last event id.
    pub ticket: IssuedTicket,
    /// What the stream will do.
    pub resume: Resume,
}

impl SessionService {
    /// A single-use ticket for one connection of `transport` to one of the caller's active
    /// sessions, following `simulator` (default: the session's newest live simulator).
    #[instrument(skip_all, fields(user = %caller.user, session_id = %session_id, %transport))]
    pub async fn issue_ticket(
        &self,
        caller: &Principal,
        session_id: &SessionId,
        transport: Transport,
        simulator: Option<&SimulatorId>,
    ) -> Result<IssuedTicket, ServiceError> {
        self.issue_ticket_with(caller, session_id, transport, simulator, Compression::None)
            .await
    }

    /// [`Self::issue_ticket`], granting the connection `compression` (the caller decided the
    /// grant: a request and a feature flag).
    pub async fn issue_ticket_with(
        &self,
        caller: &Principal,
        session_id: &SessionId,
        transport: Transport,
        simulator: Option<&SimulatorId>,
        compression: Compression,
    ) -> Result<IssuedTicket, ServiceError> {
        let (session, simulator) = self.stream_target(caller, session_id, simulator).await?;
        let target = Target {
            transport,
            compression,
            simulator: simulator.as_ref(),
        };
        self.mint(caller, &session, &target, None)
    }

    /// A fresh ticket after a dropped connection, and how the stream will resume from
    /// `last_event_id`.
    #[instrument(skip_all, fields(user = %caller.user, session_id = %session_id, %transport))]
    pub async fn reconnect(
        &self,
        caller: &Principal,
        session_id: &SessionId,
        transport: Transport,
        last_event_id: Option<EventId>,
        simulator: Option<&SimulatorId>,
    ) -> Result<Reconnect, ServiceError> {
        self.reconnect_with(
            caller,
            session_id,
            transport,
            last_event_id,
            simulator,
            Compression::None,
        )
        .await
    }

    /// [`Self::reconnect`], granting the new connection `compression`.
    pub async fn reconnect_with(
        &self,
        caller: &Principal,
        session_id: &SessionId,
        transport: Transport,
        last_event_id: Option<EventId>,
        simulator: Option<&SimulatorId>,
        compression: Compression,
    ) -> Result<Reconnect, ServiceError> {
        let (session, simulator) = self.stream_target(caller, session_id, simulator).await?;
        let resume = match (&simulator, last_event_id) {
            (_, None) => Resume::Snapshot {
                reason: SnapshotReason::NoLastEventId,
            },
            (None, Some(_)) => Resume::Snapshot {
                reason: SnapshotReason::NoRunningSimulator,
            },
            (Some(simulator), Some(last)) => self.predict_resume(simulator, last).await,
        };
        let target = Target {
            transport,
            compression,
            simulator: simulator.as_ref(),
        };
        let ticket = self.mint(caller, &session, &target, last_event_id)?;
        Ok(Reconnect { ticket, resume })
    }

    /// The session (active, the caller's) and the simulator its stream follows.
    async fn stream_target(
        &self,
        caller: &Principal,
        session_id: &SessionId,
        simulator: Option<&SimulatorId>,
    ) -> Result<(Session, Option<Simulator>), ServiceError> {
        let session = self.owned_session(caller, session_id).await?;
        if !session.is_usable(self.clock.now()) {
            return Err(ServiceError::SessionClosed {
                id: session_id.to_string(),
            });
        }
        let simulator = followed_simulator(self.simulators.as_ref(), session_id, simulator).await?;
        Ok((session, simulator))
    }

    async fn predict_resume(&self, simulator: &Simulator, last: EventId) -> Resume {
        let snapshot = |reason| Resume::Snapshot { reason };
        let Some(backend_id) = simulator
            .backend_id
            .as_deref()
            .filter(|_| simulator.status == SimulatorStatus::Running)
        else {
            return snapshot(SnapshotReason::NoRunningSimulator);
        };
        let Ok(seen) = self
            .backend
            .get_on(simulator.host.as_ref(), backend_id)
            .await
        else {
            return snapshot(SnapshotReason::PositionUnverified);
        };
        let now = seen.position;
        if now.epoch != last.epoch {
            snapshot(SnapshotReason::EpochChanged)
        } else if last.sequence > now.sequence {
            snapshot(SnapshotReason::UnknownPosition)
        } else if now.sequence - last.sequence > self.streaming.replay_window_events {
            snapshot(SnapshotReason::OutsideWindow)
        } else {
            Resume::Replay { from: last }
        }
    }

    fn mint(
        &self,
        caller: &Principal,
        session: &Session,
        target: &Target<'_>,
        last_event_id: Option<EventId>,
    ) -> Result<IssuedTicket, ServiceError> {
        let Target {
            transport,
            compression,
            simulator,
        } = *target;
        let signer = self
            .ticket_signer
            .as_ref()
            .ok_or(ServiceError::NotConfigured {
                setting: "auth.ticket_signing_key_secret_arn",
            })?;
        let (token, ticket) = signer
            .issue_with(
                &session.id,
                caller,
                transport,
                compression,
                self.clock.now(),
            )
            .map_err(|e| ServiceError::internal("signing a connect ticket", e))?;
        // Tickets, ids and event ids are URL-safe (base64url, ULIDs, digits), so no escaping.
        let mut url = match transport {
            Transport::Sse => format!(
                "{}/v1/sessions/{}/stream?ticket={token}",
                self.streaming.sse_url.trim_end_matches('/'),
                session.id
            ),
            Transport::Ws => format!("{}?ticket={token}", self.streaming.ws_url),
        };
        if let Some(simulator) = simulator {
            let _ = write!(url, "&simulator_id={}", simulator.id);
        }
        if let Some(last) = last_event_id {
            let _ = write!(url, "&last_event_id={last}");
        }
        Ok(IssuedTicket {
            token,
            url,
            transport,
            compression,
            expires_at: ticket.expires_at,
            simulator_id: simulator.map(|s| s.id.clone()),
        })
    }
}

/// What a ticket opens: a transport, its push encoding, the simulator followed.
#[derive(Clone, Copy)]
struct Target<'a> {
    transport: Transport,
    compression: Compression,
    simulator: Option<&'a Simulator>,
}

/// The simulator a stream follows: the one named (`NotFound` if it is not the session's), or
/// else the session's newest one that is not stopped or failed, if any.
pub(super) async fn followed_simulator(
    simulators: &dyn SimulatorStore,
    session_id: &SessionId,
    simulator: Option<&SimulatorId>,
) -> Result<Option<Simulator>, ServiceError> {
    match simulator {
        Some(id) => Ok(Some(
            simulators
                .get_simulator(session_id, id)
                .await?
                .ok_or_else(|| ServiceError::not_found("simulator", id))?,
        )),
        None => Ok(simulators
            .list_simulators(session_id)
            .await?
            .into_iter()
            .rev()
            .find(|s| !s.status.is_terminal())),
    }
}
