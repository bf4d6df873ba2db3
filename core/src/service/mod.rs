//! The use cases of the control plane: what a caller may do with sessions, simulators and
//! connect tickets, independent of how the request arrived (HTTP via API Gateway, tests).
//!
//! [`SessionService`] owns the rules (ownership, quotas, state machines, reconciliation with the
//! simulator backend); the store and the backend are ports. Every method takes the calling
//! [`Principal`], and a resource of another user is indistinguishable from a missing one.

mod connect;
mod connections;
mod error;
mod health;
mod revocations;
mod sessions;
mod simulators;
mod streams;

use std::sync::Arc;
use std::time::Duration;

pub use connect::{IssuedTicket, Reconnect, Resume, SnapshotReason};
pub use connections::{Admission, HeartbeatAck, TicketRefusal};
pub use error::ServiceError;
pub use health::{Dependency, DependencyState, HEALTH_CACHE_TTL, Health, HealthStatus};
pub use sessions::SessionDetail;
pub use streams::{StreamAdmission, StreamCredential};

use crate::auth::{Principal, RevocationCheck, TicketSigner, TicketVerifier};
use crate::backend::SimulatorBackend;
use crate::clock::Clock;
use crate::config::{Limits, StreamingSettings, WebSocketSettings};
use crate::domain::{Session, SessionId};
use crate::store::SharedStore;

/// The control plane's use cases over a store and a simulator backend.
#[derive(Debug, Clone)]
pub struct SessionService {
    store: SharedStore,
    backend: Arc<dyn SimulatorBackend>,
    ticket_signer: Option<TicketSigner>,
    ticket_verifier: Option<TicketVerifier>,
    clock: Arc<dyn Clock>,
    limits: Limits,
    streaming: StreamingSettings,
    websocket: WebSocketSettings,
    /// After this long a simulator still `starting` (or `stopping`) without a backend id is
    /// taken as abandoned by a crashed request, and its start is completed or undone.
    settle_after: Duration,
    /// The revocation list, checked at every door.
    revocations: RevocationCheck,
    /// The longest a revocation lasts (`auth.max_token_life_secs`).
    max_token_life: Duration,
    /// The last health answer (shared by clones: one per process).
    health_cache: Arc<health::HealthCache>,
}

/// What [`SessionService`] is built from.
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

impl SessionService {
    /// A service over `parts`.
    pub fn new(parts: ServiceParts) -> Self {
        Self {
            store: parts.store,
            backend: parts.backend,
            ticket_signer: parts.ticket_signer,
            ticket_verifier: parts.ticket_verifier,
            clock: parts.clock,
            limits: parts.limits,
            streaming: parts.streaming,
            websocket: parts.websocket,
            settle_after: parts.backend_patience.saturating_mul(2),
            revocations: parts.revocations,
            max_token_life: parts.max_token_life,
            health_cache: Arc::default(),
        }
    }

    /// A service configured by `settings`, over `store` and `backend`.
    pub fn from_settings(
        settings: &crate::config::Settings,
        store: SharedStore,
        backend: Arc<dyn SimulatorBackend>,
        clock: Arc<dyn Clock>,
    ) -> Self {
        let ticket_signer = settings.auth.ticket_signing_key().map(|key| {
            TicketSigner::new(
                key.clone(),
                Duration::from_secs(settings.auth.ticket_ttl_secs),
            )
        });
        let ticket_verifier = settings
            .auth
            .ticket_verify_keys()
            .map(|keys| TicketVerifier::new(keys.clone()));
        let backends = &settings.backends;
        let patience = backends
            .deadline()
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
            Duration::from_millis(settings.auth.revocation_cache_ms),
            settings.auth.revocation_cache_entries,
        );
        Self::new(ServiceParts {
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
            max_token_life: Duration::from_secs(settings.auth.max_token_life_secs),
        })
    }

    /// The browser origins allowed to open WebSocket connections (`websocket.allowed_origins`).
    pub fn websocket_origins(&self) -> &[String] {
        &self.websocket.allowed_origins
    }

    /// The caller's session, or `NotFound` whether it is missing, expired or someone else's.
    async fn owned_session(
        &self,
        caller: &Principal,
        id: &SessionId,
    ) -> Result<Session, ServiceError> {
        match self.store.get_session(id).await? {
            Some(session) if session.owner == caller.user => Ok(session),
            _ => Err(ServiceError::not_found("session", id)),
        }
    }
}
