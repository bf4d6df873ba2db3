//! Admitting SSE stream connections, and the resume chain of their tickets.
//!
//! A browser's `EventSource` cannot set headers and, when its connection drops, reconnects on
//! its own to the same URL — whose single-use ticket the first connection already spent — with
//! a `Last-Event-ID` header. Such a reconnect is admitted as a continuation of the connection
//! the ticket opened, never beside it: when a connection ends, the streamer releases its ticket
//! with the last event it delivered ([`StreamService::release_stream`]); the same ticket may
//! then reopen the stream once, within `resume_grace`, from a position it was actually sent.
//! A leaked URL is therefore worthless while its connection is open (no parallel stream) and
//! after the grace period (dead for good), and a ticket that never delivered anything never
//! reopens. A streamer that crashed released nothing: the client gets a new ticket from the
//! reconnect endpoint.

use std::time::Duration;

use tracing::instrument;

use std::sync::Arc;

use super::connect::followed_simulator;
use super::connect_authorizer::ticket_session;
use super::health::HealthProbe;
use super::revocations::not_revoked;
use super::{Health, ServiceError, ServiceParts, TicketRefusal, owned_session};
use crate::auth::{Principal, RevocationCheck, TicketError, TicketVerifier};
use crate::clock::Clock;
use crate::config::StreamingSettings;
use crate::domain::{
    EventId, Session, SessionId, Simulator, SimulatorId, TicketId, Transport, UserId,
};
use crate::store::ports::{Port, PortUse};
use crate::store::{SessionStore, SimulatorStore, StoreError, TicketStore};

/// What authorises a stream connection.
#[derive(Debug, Clone, Copy)]
pub enum StreamCredential<'a> {
    /// A connect ticket from the URL (browsers).
    Ticket(&'a str),
    /// A validated bearer token (other clients).
    Bearer(&'a Principal),
}

/// An admitted stream connection.
#[derive(Debug, Clone)]
pub struct StreamAdmission {
    /// The session streamed.
    pub session: Session,
    /// The user it belongs to.
    pub user: UserId,
    /// The simulator whose market data is streamed.
    pub simulator: Simulator,
    /// The simulator's id at the backend (what the streamer subscribes to).
    pub backend_id: String,
    /// The simulator server to subscribe to (`host:port`): the one its record names (found by
    /// discovery), else, for a session homed in another region, that region's static server
    /// (`regions.simulators`); `None`: this region's static server.
    pub source: Option<String>,
    /// The ticket spent or resumed, to release when the connection ends.
    pub ticket: Option<TicketId>,
}

/// The streamer's use cases: admitting SSE connections (a ticket or a bearer token), the
/// simulator a session's stream follows, the tickets' resume chain, and health.
#[derive(Debug, Clone)]
pub struct StreamService {
    /// Read only: the session streamed.
    sessions: Arc<dyn SessionStore>,
    /// Read only: the simulator followed.
    simulators: Arc<dyn SimulatorStore>,
    /// Spent, released and resumed.
    tickets: Arc<dyn TicketStore>,
    revocations: RevocationCheck,
    ticket_verifier: Option<TicketVerifier>,
    clock: Arc<dyn Clock>,
    streaming: StreamingSettings,
    health: HealthProbe,
    /// This region and the others: where a session homed elsewhere streams from.
    regions: Arc<crate::config::RegionSettings>,
}

impl StreamService {
    /// The store methods the stream use cases call (with the pusher's and the rate limiter's:
    /// the streamer's IAM policy).
    pub const PORTS: &[PortUse] = &[
        PortUse {
            port: Port::Sessions,
            methods: &["get_session"],
        },
        PortUse {
            port: Port::Simulators,
            methods: &["get_simulator", "list_simulators"],
        },
        PortUse {
            port: Port::Tickets,
            methods: &["consume_ticket", "release_ticket", "resume_ticket"],
        },
        PortUse {
            port: Port::Revocations,
            methods: &["revocation"],
        },
    ];

    /// The stream use cases over `parts`.
    pub fn new(parts: &ServiceParts) -> Self {
        Self {
            sessions: parts.store.clone(),
            simulators: parts.store.clone(),
            tickets: parts.store.clone(),
            revocations: parts.revocations.clone(),
            ticket_verifier: parts.ticket_verifier.clone(),
            clock: parts.clock.clone(),
            streaming: parts.streaming.clone(),
            health: HealthProbe::new(parts.store.clone(), parts.backend.clone()),
            regions: Arc::default(),
        }
    }

    /// The same, serving as `regions.this` among `regions` (the default: a single region).
    #[must_use]
    pub fn with_regions(mut self, regions: Arc<crate::config::RegionSettings>) -> Self {
        self.regions = regions;
        self
    }

    /// The health of the store and the simulator service, probed at most once per
    /// [`super::HEALTH_CACHE_TTL`] per process.
    pub async fn health(&self) -> Health {
        self.health.get().await
    }

    /// Admits a stream connection to `session_id`, following `simulator` (default: the
    /// session's newest live simulator). `resume_from` is the client's `Last-Event-ID` header,
    /// which lets a ticket already spent reopen its stream (see the module's doc).
    ///
    /// # Errors
    /// `TicketRefused`, `TokenRevoked` (the bearer token, the ticket's token or its owner is
    /// revoked), `NotFound` (the session or simulator is missing or not the caller's),
    /// `SessionClosed`, `SimulatorNotRunning`, or the store failed.
    #[instrument(skip_all, fields(session_id = %session_id))]
    pub async fn admit_stream(
        &self,
        credential: StreamCredential<'_>,
        session_id: &SessionId,
        simulator: Option<&SimulatorId>,
        resume_from: Option<EventId>,
    ) -> Result<StreamAdmission, ServiceError> {
        let (session, ticket) = match credential {
            StreamCredential::Bearer(caller) => {
                not_revoked(&self.revocations, &caller.token_id, &caller.user).await?;
                (
                    owned_session(self.sessions.as_ref(), caller, session_id).await?,
                    None,
                )
            }
            StreamCredential::Ticket(token) => {
                let (session, ticket) = self
                    .spend_stream_ticket(token, session_id, resume_from)
                    .await?;
                (session, Some(ticket))
            }
        };
        if !session.is_usable(self.clock.now()) {
            return Err(ServiceError::SessionClosed {
                id: session.id.to_string(),
            });
        }
        let (simulator, backend_id) = self.stream_source(&session.id, simulator).await?;
        let source = self.server_of(&session, &simulator);
        Ok(StreamAdmission {
            user: session.owner.clone(),
            session,
            simulator,
            backend_id,
            source,
            ticket,
        })
    }

    /// The simulator server a stream of `session`'s `simulator` is fed from: the one its record
    /// names (discovery), else the home region's static server when that is another region;
    /// `None`: this region's static server.
    fn server_of(&self, session: &Session, simulator: &Simulator) -> Option<String> {
        match &simulator.host {
            Some(host) => Some(host.address.clone()),
            None => self.home_server(session),
        }
    }

    /// [`Self::server_of`] for the push to WebSocket connections, which knows only the session's
    /// id: its item is read only when the home decides (a multi-region deployment, a record
    /// without a server).
    ///
    /// # Errors
    /// `NotFound` if the session is gone, or the store failed.
    pub async fn server_for(
        &self,
        session_id: &SessionId,
        simulator: &Simulator,
    ) -> Result<Option<String>, ServiceError> {
        if simulator.host.is_some() || !self.regions.is_multi_region() {
            return Ok(simulator.host.as_ref().map(|h| h.address.clone()));
        }
        let session = self
            .sessions
            .get_session(session_id)
            .await?
            .ok_or_else(|| ServiceError::not_found("session", session_id))?;
        Ok(self.server_of(&session, simulator))
    }

    /// The static simulator server of `session`'s home, when that is another region: its
    /// simulators run there (`docs/multi-region.md`, "Streams and simulators are regional").
    fn home_server(&self, session: &Session) -> Option<String> {
        let home = self.regions.home_elsewhere(session.home_region.as_ref())?;
        self.regions.simulator_of(home)
    }

    /// The simulator a session's stream follows (`simulator`, or else its newest live one) and
    /// its id at the backend.
    ///
    /// # Errors
    /// `NotFound` (no such or no live simulator), `SimulatorNotRunning` (stopped or without a
    /// backend id yet), or the store failed.
    pub async fn stream_source(
        &self,
        session_id: &SessionId,
        simulator: Option<&SimulatorId>,
    ) -> Result<(Simulator, String), ServiceError> {
        let simulator = followed_simulator(self.simulators.as_ref(), session_id, simulator)
            .await?
            .ok_or_else(|| ServiceError::not_found("live simulator of session", session_id))?;
        let backend_id = simulator
            .backend_id
            .clone()
            .filter(|_| !simulator.status.is_terminal())
            .ok_or_else(|| ServiceError::SimulatorNotRunning {
                id: simulator.id.to_string(),
                status: simulator.status.as_str(),
            })?;
        Ok((simulator, backend_id))
    }

    /// Records that a stream connection admitted by `ticket` ended after delivering
    /// `last_delivered`, so that the ticket may reopen it within `grace`.
    ///
    /// # Errors
    /// The store failed, or the ticket's record is gone (its session expired).
    pub async fn release_stream(
        &self,
        ticket: &TicketId,
        last_delivered: EventId,
        grace: Duration,
    ) -> Result<(), ServiceError> {
        let until = self.clock.now().plus(grace);
        self.tickets
            .release_ticket(ticket, last_delivered, until)
            .await
            .map_err(ServiceError::from)
    }

    /// Checks an SSE ticket and spends it, or resumes its chain from `resume_from`.
    async fn spend_stream_ticket(
        &self,
        token: &str,
        session_id: &SessionId,
        resume_from: Option<EventId>,
    ) -> Result<(Session, TicketId), ServiceError> {
        let verifier = self
            .ticket_verifier
            .as_ref()
            .ok_or(ServiceError::NotConfigured {
                setting: "auth.ticket_verify_keys_file",
            })?;
        let refused = |why| ServiceError::TicketRefused(why);
        let ticket = verifier.decode(token).map_err(|e| match e {
            TicketError::Expired => refused(TicketRefusal::Expired),
            TicketError::Invalid | TicketError::UnknownKey | TicketError::Signing => {
                refused(TicketRefusal::Invalid)
            }
        })?;
        super::connect_authorizer::ours(verifier, &ticket)?;
        if ticket.transport != Transport::Sse {
            return Err(refused(TicketRefusal::WrongTransport));
        }
        if ticket.session_id != *session_id {
            return Err(refused(TicketRefusal::Invalid));
        }
        // The chain's whole life is bounded by the signed expiry alone, so a leaked URL stops
        // working at a known time without any state; how often it may reconnect within that
        // life is the SSE connect rate limit's business, not a count kept here.
        let chain_end = ticket.expires_at.plus(self.streaming.resume_chain_secs);
        if chain_end <= self.clock.now() {
            return Err(refused(TicketRefusal::ChainEnded));
        }
        let session = ticket_session(
            self.sessions.as_ref(),
            &self.revocations,
            self.clock.now(),
            &ticket,
        )
        .await?;
        let expired = ticket.expires_at <= self.clock.now();
        // The consumption record lives as long as the session, so that the chain can be
        // released and resumed for as long as the stream is usable.
        let spent = if expired {
            Err(StoreError::TicketAlreadyUsed)
        } else {
            let keep_until = ticket.expires_at.max(session.expires_at);
            self.tickets.consume_ticket(&ticket.id, keep_until).await
        };
        match (spent, resume_from) {
            (Ok(()), _) => {}
            (Err(StoreError::TicketAlreadyUsed), Some(from)) => {
                match self.tickets.resume_ticket(&ticket.id, from).await {
                    Ok(()) => {}
                    Err(StoreError::TicketAlreadyUsed) if expired => {
                        return Err(refused(TicketRefusal::Expired));
                    }
                    Err(StoreError::TicketAlreadyUsed) => {
                        return Err(refused(TicketRefusal::AlreadyUsed));
                    }
                    Err(e) => return Err(e.into()),
                }
            }
            (Err(StoreError::TicketAlreadyUsed), None) if expired => {
                return Err(refused(TicketRefusal::Expired));
            }
            (Err(StoreError::TicketAlreadyUsed), None) => {
                return Err(refused(TicketRefusal::AlreadyUsed));
            }
            (Err(e), _) => return Err(e.into()),
        }
        Ok((session, ticket.id))
    }
}
