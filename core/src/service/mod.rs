//! The use cases of the control plane: what a caller may do with sessions, simulators and
//! connect tickets, independent of how the request arrived (HTTP via API Gateway, tests).
//!
//! One type per entry point, each holding only the store ports and backends it calls (its
//! `PORTS`, which its IAM role grants exactly: `tests/tests/infra.rs`): [`SessionService`] for
//! the REST API, [`ConnectAuthorizer`] for the WebSocket `$connect` authorizer,
//! [`ConnectionService`] for the WebSocket routes, [`StreamService`] for the streamer. They own
//! the rules (ownership, quotas, state machines, reconciliation with the simulator backend);
//! every method takes the caller, and a resource of another user is indistinguishable from a
//! missing one. Composition roots build them from one [`ServiceParts`].

mod connect;
mod connect_authorizer;
mod connections;
mod error;
mod failover;
mod health;
mod home;
mod revocations;
mod sessions;
mod simulators;
mod streams;
#[cfg(test)]
mod tests;

use std::sync::Arc;
use std::time::Duration;

pub use connect::{IssuedTicket, Reconnect, Resume, SnapshotReason};
pub use connect_authorizer::ConnectAuthorizer;
pub use connections::{Admission, ConnectionService, HeartbeatAck, TicketRefusal};
pub use error::{ServiceError, error_chain};
pub use failover::{FailoverSummary, HomeFailover, HomeFailoverError};
pub use health::{Dependency, DependencyState, HEALTH_CACHE_TTL, Health, HealthStatus};
pub use sessions::SessionDetail;
pub use streams::{StreamAdmission, StreamCredential, StreamService};

use crate::auth::{Principal, RevocationCheck, TicketSigner, TicketVerifier};
use crate::backend::SimulatorBackend;
use crate::clock::Clock;
use crate::config::{Limits, StreamingSettings, WebSocketSettings};
use crate::domain::{Session, SessionId};
use crate::store::ports::{Port, PortUse};
use crate::store::{
    ConnectionStore, RegionBeatStore, RevocationStore, SessionStore, SharedStore, SimulatorStore,
};

/// The REST API's use cases: sessions, simulators, connect tickets, revocations, health.
#[derive(Debug, Clone)]
pub struct SessionService {
    sessions: Arc<dyn SessionStore>,
    simulators: Arc<dyn SimulatorStore>,
    /// Read only, to count a session's live connections.
    connections: Arc<dyn ConnectionStore>,
    /// Written by admins' revocations (reads go through `revocations`' cache).
    revocation_list: Arc<dyn RevocationStore>,
    /// Read only: how far behind a session's home this region's replica is.
    region_beats: Arc<dyn RegionBeatStore>,
    backend: Arc<dyn SimulatorBackend>,
    ticket_signer: Option<TicketSigner>,
    clock: Arc<dyn Clock>,
    limits: Limits,
    streaming: StreamingSettings,
    /// After this long a simulator still `starting` (or `stopping`) without a backend id is
    /// taken as abandoned by a crashed request, and its start is completed or undone.
    settle_after: Duration,
    /// The revocation list, checked at every door.
    revocations: RevocationCheck,
    /// The longest a revocation lasts (`auth.max_token_life_secs`).
    max_token_life: Duration,
    /// The store's and the simulator service's health, cached per process.
    health: health::HealthProbe,
    /// This region and the others (`home.rs`): where sessions are born, which writes are ours.
    regions: crate::config::RegionSettings,
}

/// What the use cases are built from: a composition root's whole store and backends, of which
/// each use-case type keeps only the ports it calls (its `PORTS`).
#[derive(Debug, Clone)]
pub struct ServiceParts {
    /// Where state lives.
    pub store: SharedStore,
    /// The simulator service.
    pub backend: Arc<dyn SimulatorBackend>,
    /// Mints connect tickets: the REST API's; `None` elsewhere (ticket routes then answer that
    /// the service is not configured for them).
    pub ticket_signer: Option<TicketSigner>,
    /// Checks connect tickets: the WebSocket authorizer's and the streamer's.
    pub ticket_verifier: Option<TicketVerifier>,
    /// The time.
    pub clock: Arc<dyn Clock>,
    /// Quotas and lifetimes.
    pub limits: Limits,
    /// Where clients connect for streams.
    pub streaming: StreamingSettings,
    /// WebSocket liveness and advice.
    pub websocket: WebSocketSettings,
    /// The longest a backend call may take, retries included.
    pub backend_patience: Duration,
    /// The revocation list, checked at every door.
    pub revocations: RevocationCheck,
    /// The longest life of a bearer token: the longest a revocation lasts.
    pub max_token_life: Duration,
}

impl ServiceParts {
    /// The parts `settings` configure, over `store` and `backend`.
    pub fn from_settings(
        settings: &crate::config::Settings,
        store: SharedStore,
        backend: Arc<dyn SimulatorBackend>,
        clock: Arc<dyn Clock>,
    ) -> Self {
        let ticket_signer = settings.auth.ticket_signing_key().map(|key| {
            TicketSigner::new(key.clone(), settings.auth.ticket_ttl_secs)
                .in_region(settings.regions.birth_region())
        });
        // Tickets are regional (`docs/multi-region.md`): minted and admitted in one region.
        let ticket_verifier = settings.auth.ticket_verify_keys().map(|keys| {
            TicketVerifier::new(keys.clone()).in_region(settings.regions.birth_region())
        });
        let backends = &settings.backends;
        let patience = backends
            .deadline_ms
            .saturating_mul(backends.max_retries + 1)
            .saturating_add(
                backends
                    .retry_policy()
                    .cap
                    .saturating_mul(backends.max_retries),
            );
        let revocations = RevocationCheck::new(
            store.clone(),
            clock.clone(),
            settings.auth.revocation_cache_ms,
            settings.auth.revocation_cache_entries,
        );
        Self {
            store,
            backend,
            ticket_signer,
            ticket_verifier,
            clock,
            limits: settings.limits.clone(),
            streaming: settings.streaming.clone(),
            websocket: settings.websocket.clone(),
            backend_patience: patience,
            revocations,
            max_token_life: settings.auth.max_token_life_secs,
        }
    }
}

impl SessionService {
    /// The store methods the REST API's use cases call (its IAM policy, with the HTTP layer's
    /// idempotency keys and rate limits).
    pub const PORTS: &[PortUse] = &[
        PortUse {
            port: Port::Sessions,
            methods: &[
                "create_session",
                "get_session",
                "list_sessions",
                "update_session",
            ],
        },
        PortUse {
            port: Port::Simulators,
            methods: &[
                "create_simulator",
                "get_simulator",
                "list_simulators",
                "update_simulator",
            ],
        },
        PortUse {
            port: Port::Connections,
            methods: &["list_connections"],
        },
        PortUse {
            port: Port::Revocations,
            methods: &["revoke", "revocation"],
        },
        PortUse {
            port: Port::RegionBeats,
            methods: &["last_beat"],
        },
    ];

    /// A service over `parts`.
    pub fn new(parts: ServiceParts) -> Self {
        Self {
            sessions: parts.store.clone(),
            simulators: parts.store.clone(),
            connections: parts.store.clone(),
            revocation_list: parts.store.clone(),
            region_beats: parts.store.clone(),
            health: health::HealthProbe::new(parts.store, parts.backend.clone()),
            backend: parts.backend,
            ticket_signer: parts.ticket_signer,
            clock: parts.clock,
            limits: parts.limits,
            streaming: parts.streaming,
            settle_after: parts.backend_patience.saturating_mul(2),
            revocations: parts.revocations,
            max_token_life: parts.max_token_life,
            regions: crate::config::RegionSettings::default(),
        }
    }

    /// The same, serving as `regions.this` among `regions` (the default: a single region).
    #[must_use]
    pub fn with_regions(mut self, regions: crate::config::RegionSettings) -> Self {
        self.regions = regions;
        self
    }

    /// A service configured by `settings`, over `store` and `backend`.
    pub fn from_settings(
        settings: &crate::config::Settings,
        store: SharedStore,
        backend: Arc<dyn SimulatorBackend>,
        clock: Arc<dyn Clock>,
    ) -> Self {
        Self::new(ServiceParts::from_settings(settings, store, backend, clock))
            .with_regions((*settings.regions).clone())
    }

    /// The health of the store and the simulator service, probed at most once per
    /// [`HEALTH_CACHE_TTL`] per process.
    pub async fn health(&self) -> Health {
        self.health.get().await
    }

    /// The caller's session, or `NotFound` whether it is missing, expired or someone else's.
    async fn owned_session(
        &self,
        caller: &Principal,
        id: &SessionId,
    ) -> Result<Session, ServiceError> {
        owned_session(self.sessions.as_ref(), caller, id).await
    }
}

/// `caller`'s session `id` in `sessions`, or `NotFound` whether it is missing, expired or
/// someone else's (the REST API's and the streamer's bearer door).
async fn owned_session(
    sessions: &dyn SessionStore,
    caller: &Principal,
    id: &SessionId,
) -> Result<Session, ServiceError> {
    match sessions.get_session(id).await? {
        Some(session) if session.owner == caller.user => Ok(session),
        _ => Err(ServiceError::not_found("session", id)),
    }
}
