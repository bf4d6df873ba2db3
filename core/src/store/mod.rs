//! The session store: narrow ports, one per capability, and their adapters.
//!
//! Each port is a trait so a Lambda can depend on only what it uses, and its IAM policy match
//! (`ports`: which methods each entry point calls and the DynamoDB actions behind them).
//! [`Store`] bundles them for the composition roots that hand them out. Both adapters honour the
//! same contract, proven by one test suite (`tests/tests/store`):
//! - every state change is conditional on the version it was made from ([`StoreError::Conflict`]);
//! - quotas are enforced atomically with the write they limit;
//! - an item past its expiry is absent, whether or not the backend has deleted it yet.

mod dynamodb;
mod error;
mod failover;
mod home_fence;
mod memory;
pub mod ports;
mod replicated;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

pub use dynamodb::{DynamoStore, Fence, Fenced, TableSpec, create_table, migrate};
pub use error::{Quota, StoreError};
pub use failover::{HomeMove, REGION_FAILOVER_REASON, Takeover};
pub use home_fence::HomeFence;
pub use memory::InMemoryStore;
pub use replicated::{RegionalReplica, Replication};

use crate::domain::{
    Connection, ConnectionId, EventId, IdempotencyClaim, IdempotencyKey, Lease, Page, PageRequest,
    RegionName, RequestFingerprint, Revocation, Session, SessionId, Simulator, SimulatorId,
    StoredResponse, TicketId, Timestamp, UserId,
};

/// Sessions: create under the owner's quota, read, list by owner, change.
#[async_trait]
pub trait SessionStore: Send + Sync + std::fmt::Debug {
    /// Stores a new session if its owner has fewer than `max_open` usable sessions.
    async fn create_session(&self, session: &Session, max_open: u32) -> Result<(), StoreError>;

    /// The session, unless it does not exist or has expired.
    async fn get_session(&self, id: &SessionId) -> Result<Option<Session>, StoreError>;

    /// The owner's unexpired sessions, newest first.
    async fn list_sessions(
        &self,
        owner: &UserId,
        page: &PageRequest,
    ) -> Result<Page<Session>, StoreError>;

    /// Replaces `previous` with `next` if the stored session is still at `previous.version`;
    /// closing releases the owner's quota slot in the same write.
    async fn update_session(&self, previous: &Session, next: &Session) -> Result<(), StoreError>;

    /// The unexpired sessions homed in `region` (items without `home_region` are homed in
    /// `primary`), for a failover of that region (`docs/multi-region.md`); pages in no
    /// particular order, resumed after the cursor's session.
    async fn sessions_homed_in(
        &self,
        region: &RegionName,
        primary: &RegionName,
        page: &PageRequest,
    ) -> Result<Page<Session>, StoreError>;

    /// Moves the session's home as `step` says, by one write conditional on the home (and
    /// epoch) it starts from, and fails its starting or running simulators
    /// ([`REGION_FAILOVER_REASON`]). Idempotent: a session already at `step.to` is
    /// [`Takeover::AlreadyMoved`]; one found elsewhere is [`Takeover::Conflict`], not an error.
    async fn take_over_home(
        &self,
        id: &SessionId,
        step: &HomeMove<'_>,
    ) -> Result<Takeover, StoreError>;
}

/// The limits a new simulator is admitted under.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SimulatorQuotas {
    /// Simulators (not stopped or failed) one session may have.
    pub max_active: u32,
    /// Sum of `events_per_second` of one user's simulators (not stopped or failed).
    pub max_events_per_second: u32,
}

impl SimulatorQuotas {
    /// The quotas `limits` set.
    pub fn of(limits: &crate::config::Limits) -> Self {
        Self {
            max_active: limits.simulators_per_session,
            max_events_per_second: limits.events_per_second_per_user,
        }
    }
}

/// Simulators of a session.
#[async_trait]
pub trait SimulatorStore: Send + Sync + std::fmt::Debug {
    /// Stores a new simulator if its session is usable, has fewer than `quotas.max_active`
    /// simulators that are not stopped or failed, and the rates of `owner`'s (the session's
    /// owner's) simulators that are not stopped or failed, in usable sessions, stay within
    /// `quotas.max_events_per_second` with it.
    async fn create_simulator(
        &self,
        simulator: &Simulator,
        owner: &UserId,
        quotas: SimulatorQuotas,
    ) -> Result<(), StoreError>;

    /// One simulator of a session.
    async fn get_simulator(
        &self,
        session: &SessionId,
        id: &SimulatorId,
    ) -> Result<Option<Simulator>, StoreError>;

    /// Every simulator of a session, oldest first.
    async fn list_simulators(&self, session: &SessionId) -> Result<Vec<Simulator>, StoreError>;

    /// Replaces `previous` with `next` if the stored simulator is still at `previous.version`;
    /// entering stopped or failed releases the session's quota slot and the owner's event
    /// budget in the same write.
    async fn update_simulator(
        &self,
        previous: &Simulator,
        next: &Simulator,
    ) -> Result<(), StoreError>;
}

/// WebSocket connections of a session.
#[async_trait]
pub trait ConnectionStore: Send + Sync + std::fmt::Debug {
    /// Records a connection if its session is usable and has fewer than `max_per_session`
    /// unexpired connections.
    async fn put_connection(
        &self,
        connection: &Connection,
        max_per_session: u32,
    ) -> Result<(), StoreError>;

    /// One connection, unless gone or expired.
    async fn get_connection(
        &self,
        session: &SessionId,
        id: &ConnectionId,
    ) -> Result<Option<Connection>, StoreError>;

    /// The session's unexpired connections.
    async fn list_connections(&self, session: &SessionId) -> Result<Vec<Connection>, StoreError>;

    /// Replaces `previous` with `next` (a heartbeat) if still at `previous.version`.
    async fn update_connection(
        &self,
        previous: &Connection,
        next: &Connection,
    ) -> Result<(), StoreError>;

    /// Removes a connection; `false` if it was already gone. Idempotent.
    async fn delete_connection(
        &self,
        session: &SessionId,
        id: &ConnectionId,
    ) -> Result<bool, StoreError>;

    /// The sessions that have at least one unexpired WebSocket connection, each once (in no
    /// particular order).
    ///
    /// For streamers polling for sessions to serve. Read from an index, so eventually
    /// consistent: a connection recorded or deleted a moment ago may be missed or still listed
    /// for a fraction of a second.
    async fn sessions_with_connections(&self) -> Result<Vec<SessionId>, StoreError>;
}

/// Single-use connect tickets, and the resume chain of the stream one opened: a consumed ticket
/// may reopen its stream only as a continuation of the connection it opened (released, then
/// resumed), never in parallel with it.
#[async_trait]
pub trait TicketStore: Send + Sync + std::fmt::Debug {
    /// Marks the ticket used; [`StoreError::TicketAlreadyUsed`] if it was, ever, before it
    /// expired.
    async fn consume_ticket(&self, id: &TicketId, expires_at: Timestamp) -> Result<(), StoreError>;

    /// Records that the connection a consumed ticket opened has ended, having delivered events
    /// up to `last_delivered`, so that the same ticket may reopen it from there once, until
    /// `resumable_until` (EventSource reconnects to the same URL); keeps the record at least
    /// until then. A later release overwrites an earlier one (the latest connection's position
    /// wins). [`StoreError::NotFound`] if the ticket was never consumed or its record expired.
    async fn release_ticket(
        &self,
        id: &TicketId,
        last_delivered: EventId,
        resumable_until: Timestamp,
    ) -> Result<(), StoreError>;

    /// Reopens a released ticket's stream from `from`: succeeds once per release, while the
    /// release has not lapsed (now < `resumable_until`) and `from` is in the released epoch at
    /// or before `last_delivered`; the ticket is then held again (not resumable until released
    /// again). [`StoreError::TicketAlreadyUsed`] otherwise (never consumed, held by a live
    /// connection, lapsed, another epoch, a position ahead).
    async fn resume_ticket(&self, id: &TicketId, from: EventId) -> Result<(), StoreError>;
}

/// How long an unfinished idempotency claim blocks retries before one may take it over (both
/// adapters).
const IDEMPOTENCY_LOCK: Duration = Duration::from_secs(60);

/// Idempotency keys of POST requests, per user.
#[async_trait]
pub trait IdempotencyStore: Send + Sync + std::fmt::Debug {
    /// Claims `key` for a request with `fingerprint`, or says what happened to it before.
    async fn claim_idempotency(
        &self,
        owner: &UserId,
        key: &IdempotencyKey,
        fingerprint: &RequestFingerprint,
        ttl: Duration,
    ) -> Result<IdempotencyClaim, StoreError>;

    /// Stores the response of a claimed request, for its retries.
    async fn complete_idempotency(
        &self,
        owner: &UserId,
        key: &IdempotencyKey,
        fingerprint: &RequestFingerprint,
        response: &StoredResponse,
    ) -> Result<(), StoreError>;

    /// Drops an unfinished claim (the request failed without effect), so a retry can run.
    async fn abandon_idempotency(
        &self,
        owner: &UserId,
        key: &IdempotencyKey,
        fingerprint: &RequestFingerprint,
    ) -> Result<(), StoreError>;
}

/// Leases that give one streamer a session.
#[async_trait]
pub trait LeaseStore: Send + Sync + std::fmt::Debug {
    /// Takes `name` for `owner` if it is free, lapsed or already `owner`'s;
    /// [`StoreError::LeaseHeld`] otherwise. The lease taken is not draining.
    async fn acquire_lease(
        &self,
        name: &str,
        owner: &str,
        ttl: Duration,
    ) -> Result<Lease, StoreError>;

    /// Extends a lease its holder still holds (a draining one stays draining);
    /// [`StoreError::LeaseLost`] otherwise.
    async fn renew_lease(&self, lease: &Lease, ttl: Duration) -> Result<Lease, StoreError>;

    /// Marks a lease draining (its holder is shutting down and will hand it over), if this
    /// holder still holds it (same owner and token) and it has not lapsed;
    /// [`StoreError::LeaseLost`] otherwise. The expiry is unchanged.
    async fn mark_draining(&self, lease: &Lease) -> Result<Lease, StoreError>;

    /// Gives a lease up if still held by this holder; a no-op otherwise.
    async fn release_lease(&self, lease: &Lease) -> Result<(), StoreError>;

    /// The current unexpired lease of `name`.
    async fn get_lease(&self, name: &str) -> Result<Option<Lease>, StoreError>;
}

/// Revoked bearer tokens, by token id and by subject (`REVOKED#jti#<id>`, `REVOKED#sub#<user>`),
/// each kept until its `until`.
#[async_trait]
pub trait RevocationStore: Send + Sync + std::fmt::Debug {
    /// Records a revocation. One already recorded for the same target that lasts longer is
    /// kept: a revocation is never shortened.
    async fn revoke(&self, revocation: &Revocation) -> Result<(), StoreError>;

    /// The revocation in force of the token `token_id` or of the subject `subject`, if any
    /// (the token's if both are). Eventually consistent: a revocation recorded a moment ago may
    /// be missed for a fraction of a second.
    async fn revocation(
        &self,
        token_id: &str,
        subject: &UserId,
    ) -> Result<Option<Revocation>, StoreError>;
}

/// Rate limits: one GCRA decision per request on the key's theoretical arrival time
/// (`RL#<key>`), exact across every process sharing the store (`crate::ratelimit`).
#[async_trait]
pub trait RateLimitStore: Send + Sync + std::fmt::Debug {
    /// Spends one request of `key`'s allowance at `rate` now, if the allowance has one; the
    /// decision either way (a refusal changes nothing).
    async fn acquire_rate(
        &self,
        key: &str,
        rate: crate::ratelimit::Rate,
    ) -> Result<crate::ratelimit::Decision, StoreError>;
}

/// Each region's heartbeat in the replicated table (`REGION#<name>` / `BEAT`), written by that
/// region and read by the others: how far behind the home region a replica is
/// (`docs/multi-region.md`, "How stale a replica is").
#[async_trait]
pub trait RegionBeatStore: Send + Sync + std::fmt::Debug {
    /// Records that `region` was alive at `at`. A beat never moves back: a later one already
    /// recorded (another process of the region) is kept.
    async fn beat(&self, region: &RegionName, at: Timestamp) -> Result<(), StoreError>;

    /// The latest beat of `region` this store holds (its replica's: as late as replication
    /// brought it), if any.
    async fn last_beat(&self, region: &RegionName) -> Result<Option<Timestamp>, StoreError>;
}

/// Every port at once, for processes that use them all (the local stack, tests).
pub trait Store:
    SessionStore
    + SimulatorStore
    + ConnectionStore
    + TicketStore
    + IdempotencyStore
    + LeaseStore
    + RevocationStore
    + RateLimitStore
    + RegionBeatStore
    + std::fmt::Debug
{
}

impl<T> Store for T where
    T: SessionStore
        + SimulatorStore
        + ConnectionStore
        + TicketStore
        + IdempotencyStore
        + LeaseStore
        + RevocationStore
        + RateLimitStore
        + RegionBeatStore
        + std::fmt::Debug
{
}

/// A shared handle to a whole store.
pub type SharedStore = Arc<dyn Store>;

/// The store `settings` name: in memory, or the DynamoDB table (at `settings.endpoint` if set,
/// else where the environment's AWS configuration points).
///
/// Its session-item writes are fenced to sessions homed in this region when `regions`
/// describe a multi-region deployment ([`HomeFence`]).
pub async fn from_settings(
    settings: &crate::config::StoreSettings,
    regions: &crate::config::RegionSettings,
    clock: Arc<dyn crate::clock::Clock>,
    component: crate::component::Component,
) -> SharedStore {
    let fence = HomeFence::from_settings(regions);
    match settings.backend {
        crate::config::StoreBackend::Memory => Arc::new(InMemoryStore::new(clock).fenced_by(fence)),
        crate::config::StoreBackend::Dynamodb => {
            let client = DynamoStore::client_from_env(settings, component).await;
            Arc::new(DynamoStore::new(client, &settings.table_name, clock).fenced_by(fence))
        }
    }
}
