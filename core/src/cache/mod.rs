//! A read-through cache of hot store reads behind the store's ports: [`CachedStore`] wraps any
//! store, and [`wrap`] puts it around the one a process builds (`cache.enabled` off: unwrapped).
//!
//! Layout: `value` (what is cached, its keys and version stamps), `tiers` (in process with
//! `moka`, then the shared Redis/Valkey of `cache.redis_url`), `shared` (that tier's client:
//! best effort, never an error to the caller), `metrics` (`cache_requests_total`,
//! `cache_errors_total`).
//!
//! Every write through this process replaces its entries with what it wrote (or drops them on
//! any error, a lost race included, so the caller's re-read goes to the store); what other
//! processes change is seen within `cache.ttl_ms`. A conditional decision never reads the
//! cache: the store's writes are conditional on the version they were made from, so a stale
//! read can cost a [`StoreError::Conflict`] and its re-read, never a lost update.
//!
//! | Port method | Cached? | Why |
//! |---|---|---|
//! | `get_session` | yes, write-through | every REST call and connect reads it; ownership never changes |
//! | `create_session`, `update_session` | write-through; error drops | the quota decision is the store's |
//! | `list_sessions` | no | paged by cursor; read once per listing |
//! | `get_simulator`, `list_simulators` | yes | every session read and stream start reads them |
//! | `create_simulator`, `update_simulator` | write-through item, drop list | quotas are the store's |
//! | `get_connection` | yes, in process only | read before each heartbeat's conditional write |
//! | `put_connection`, `update_connection`, `delete_connection` | write-through / drop | quota is the store's |
//! | `list_connections`, `sessions_with_connections` | no | who to push to: a new connection must not wait a TTL |
//! | `get_lease` | yes | heartbeats read the holder for advice only |
//! | `acquire_lease`, `renew_lease`, `mark_draining` | write-through the result; error drops | acquisition is the store's |
//! | `release_lease` | drops | |
//! | tickets, idempotency, revocations, rate limits | no | conditional or security decisions |
//!
//! Token validations are not a store read: the validator caches them itself
//! (`crate::auth::cache`, `auth.token_cache_*`).

mod metrics;
mod shared;
mod tiers;
mod value;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

use self::tiers::Tiers;
use self::value::{Cached, Value};
use crate::clock::Clock;
use crate::config::CacheSettings;
use crate::domain::{
    Connection, ConnectionId, EventId, IdempotencyClaim, IdempotencyKey, Lease, Page, PageRequest,
    RegionName, RequestFingerprint, Revocation, Session, SessionId, Simulator, SimulatorId,
    StoredResponse, TicketId, Timestamp, UserId,
};
use crate::store::{
    ConnectionStore, HomeMove, IdempotencyStore, LeaseStore, RateLimitStore, RegionBeatStore,
    RevocationStore, SessionStore, SharedStore, SimulatorQuotas, SimulatorStore, StoreError,
    Takeover, TicketStore,
};

/// `store` behind the cache `settings` describe, or `store` itself when `cache.enabled` is off.
pub fn wrap(store: SharedStore, settings: &CacheSettings, clock: Arc<dyn Clock>) -> SharedStore {
    if settings.enabled {
        Arc::new(CachedStore::new(store, settings, clock))
    } else {
        store
    }
}

/// A store whose hot reads are cached (the module's table says which).
#[derive(Debug)]
pub struct CachedStore {
    inner: SharedStore,
    tiers: Tiers,
    clock: Arc<dyn Clock>,
}

impl CachedStore {
    /// `inner` behind the tiers `settings` describe (a shared tier connects on first use).
    pub fn new(inner: SharedStore, settings: &CacheSettings, clock: Arc<dyn Clock>) -> Self {
        Self {
            inner,
            tiers: Tiers::new(settings),
            clock,
        }
    }

    /// The item under `key`, from the cache or else from `load` (then cached).
    async fn read<T: Cached>(
        &self,
        key: String,
        load: impl Future<Output = Result<Option<T>, StoreError>>,
    ) -> Result<Option<T>, StoreError> {
        if let Some(item) = self
            .tiers
            .get(&key, self.clock.now())
            .await
            .and_then(T::from_value)
        {
            return Ok(Some(item));
        }
        let mark = self.tiers.mark();
        let loaded = load.await?;
        if let Some(item) = &loaded {
            self.tiers.fill(&key, item.clone().into_value(), mark).await;
        }
        Ok(loaded)
    }

    /// Records the outcome of a write of `key`: on success `written` replaces the entry, on
    /// any error the entry is dropped.
    async fn wrote<R>(
        &self,
        key: &str,
        result: Result<R, StoreError>,
        written: impl FnOnce(&R) -> Option<Value>,
    ) -> Result<R, StoreError> {
        let value = result.as_ref().ok().and_then(written);
        self.tiers.wrote(key, value).await;
        result
    }
}

#[async_trait]
impl SessionStore for CachedStore {
    async fn create_session(&self, session: &Session, max_open: u32) -> Result<(), StoreError> {
        let result = self.inner.create_session(session, max_open).await;
        self.wrote(&value::session(&session.id), result, |()| {
            Some(Value::Session(session.clone()))
        })
        .await
    }

    async fn get_session(&self, id: &SessionId) -> Result<Option<Session>, StoreError> {
        self.read(value::session(id), self.inner.get_session(id))
            .await
    }

    async fn list_sessions(
        &self,
        owner: &UserId,
        page: &PageRequest,
    ) -> Result<Page<Session>, StoreError> {
        self.inner.list_sessions(owner, page).await
    }

    async fn update_session(&self, previous: &Session, next: &Session) -> Result<(), StoreError> {
        let result = self.inner.update_session(previous, next).await;
        self.wrote(&value::session(&next.id), result, |()| {
            Some(Value::Session(next.clone()))
        })
        .await
    }

    async fn sessions_homed_in(
        &self,
        region: &RegionName,
        primary: &RegionName,
        page: &PageRequest,
    ) -> Result<Page<Session>, StoreError> {
        self.inner.sessions_homed_in(region, primary, page).await
    }

    async fn take_over_home(
        &self,
        id: &SessionId,
        step: &HomeMove<'_>,
    ) -> Result<Takeover, StoreError> {
        let result = self.inner.take_over_home(id, step).await;
        // The home and the simulators changed (or may have): both entries are dropped.
        self.tiers.wrote(&value::simulators(id), None).await;
        self.wrote(&value::session(id), result, |_| None).await
    }
}

#[async_trait]
impl SimulatorStore for CachedStore {
    async fn create_simulator(
        &self,
        simulator: &Simulator,
        owner: &UserId,
        quotas: SimulatorQuotas,
    ) -> Result<(), StoreError> {
        let result = self.inner.create_simulator(simulator, owner, quotas).await;
        self.tiers
            .wrote(&value::simulators(&simulator.session_id), None)
            .await;
        let key = value::simulator(&simulator.session_id, &simulator.id);
        self.wrote(&key, result, |()| Some(Value::Simulator(simulator.clone())))
            .await
    }

    async fn get_simulator(
        &self,
        session: &SessionId,
        id: &SimulatorId,
    ) -> Result<Option<Simulator>, StoreError> {
        let key = value::simulator(session, id);
        self.read(key, self.inner.get_simulator(session, id)).await
    }

    async fn list_simulators(&self, session: &SessionId) -> Result<Vec<Simulator>, StoreError> {
        let key = value::simulators(session);
        let list = self
            .read(key, async {
                self.inner.list_simulators(session).await.map(Some)
            })
            .await?;
        Ok(list.unwrap_or_default())
    }

    async fn update_simulator(
        &self,
        previous: &Simulator,
        next: &Simulator,
    ) -> Result<(), StoreError> {
        let result = self.inner.update_simulator(previous, next).await;
        self.tiers
            .wrote(&value::simulators(&next.session_id), None)
            .await;
        let key = value::simulator(&next.session_id, &next.id);
        self.wrote(&key, result, |()| Some(Value::Simulator(next.clone())))
            .await
    }
}

#[async_trait]
impl ConnectionStore for CachedStore {
    async fn put_connection(
        &self,
        connection: &Connection,
        max_per_session: u32,
    ) -> Result<(), StoreError> {
        let result = self.inner.put_connection(connection, max_per_session).await;
        let key = value::connection(&connection.session_id, &connection.id);
        // Not cached as passed: the store records it as its region's (`Connection::region`),
        // so the next read fetches the record.
        self.wrote(&key, result, |()| None).await
    }

    async fn get_connection(
        &self,
        session: &SessionId,
        id: &ConnectionId,
    ) -> Result<Option<Connection>, StoreError> {
        let key = value::connection(session, id);
        self.read(key, self.inner.get_connection(session, id)).await
    }

    async fn list_connections(&self, session: &SessionId) -> Result<Vec<Connection>, StoreError> {
        self.inner.list_connections(session).await
    }

    async fn update_connection(
        &self,
        previous: &Connection,
        next: &Connection,
    ) -> Result<(), StoreError> {
        let result = self.inner.update_connection(previous, next).await;
        let key = value::connection(&next.session_id, &next.id);
        self.wrote(&key, result, |()| Some(Value::Connection(next.clone())))
            .await
    }

    async fn delete_connection(
        &self,
        session: &SessionId,
        id: &ConnectionId,
    ) -> Result<bool, StoreError> {
        let result = self.inner.delete_connection(session, id).await;
        self.wrote(&value::connection(session, id), result, |_| None)
            .await
    }

    async fn sessions_with_connections(&self) -> Result<Vec<SessionId>, StoreError> {
        self.inner.sessions_with_connections().await
    }
}

#[async_trait]
impl LeaseStore for CachedStore {
    async fn acquire_lease(
        &self,
        name: &str,
        owner: &str,
        ttl: Duration,
    ) -> Result<Lease, StoreError> {
        let result = self.inner.acquire_lease(name, owner, ttl).await;
        self.wrote(&value::lease(name), result, |l| {
            Some(Value::Lease(l.clone()))
        })
        .await
    }

    async fn renew_lease(&self, lease: &Lease, ttl: Duration) -> Result<Lease, StoreError> {
        let result = self.inner.renew_lease(lease, ttl).await;
        self.wrote(&value::lease(&lease.name), result, |l| {
            Some(Value::Lease(l.clone()))
        })
        .await
    }

    async fn mark_draining(&self, lease: &Lease) -> Result<Lease, StoreError> {
        let result = self.inner.mark_draining(lease).await;
        self.wrote(&value::lease(&lease.name), result, |l| {
            Some(Value::Lease(l.clone()))
        })
        .await
    }

    async fn release_lease(&self, lease: &Lease) -> Result<(), StoreError> {
        let result = self.inner.release_lease(lease).await;
        self.wrote(&value::lease(&lease.name), result, |()| None)
            .await
    }

    async fn get_lease(&self, name: &str) -> Result<Option<Lease>, StoreError> {
        self.read(value::lease(name), self.inner.get_lease(name))
            .await
    }
}

#[async_trait]
impl TicketStore for CachedStore {
    async fn consume_ticket(&self, id: &TicketId, expires_at: Timestamp) -> Result<(), StoreError> {
        self.inner.consume_ticket(id, expires_at).await
    }

    async fn release_ticket(
        &self,
        id: &TicketId,
        last_delivered: EventId,
        resumable_until: Timestamp,
    ) -> Result<(), StoreError> {
        self.inner
            .release_ticket(id, last_delivered, resumable_until)
            .await
    }

    async fn resume_ticket(&self, id: &TicketId, from: EventId) -> Result<(), StoreError> {
        self.inner.resume_ticket(id, from).await
    }
}

#[async_trait]
impl IdempotencyStore for CachedStore {
    async fn claim_idempotency(
        &self,
        owner: &UserId,
        key: &IdempotencyKey,
        fingerprint: &RequestFingerprint,
        ttl: Duration,
    ) -> Result<IdempotencyClaim, StoreError> {
        self.inner
            .claim_idempotency(owner, key, fingerprint, ttl)
            .await
    }

    async fn complete_idempotency(
        &self,
        owner: &UserId,
        key: &IdempotencyKey,
        fingerprint: &RequestFingerprint,
        response: &StoredResponse,
    ) -> Result<(), StoreError> {
        self.inner
            .complete_idempotency(owner, key, fingerprint, response)
            .await
    }

    async fn abandon_idempotency(
        &self,
        owner: &UserId,
        key: &IdempotencyKey,
        fingerprint: &RequestFingerprint,
    ) -> Result<(), StoreError> {
        self.inner
            .abandon_idempotency(owner, key, fingerprint)
            .await
    }
}

#[async_trait]
impl RevocationStore for CachedStore {
    async fn revoke(&self, revocation: &Revocation) -> Result<(), StoreError> {
        self.inner.revoke(revocation).await
    }

    async fn revocation(
        &self,
        token_id: &str,
        subject: &UserId,
    ) -> Result<Option<Revocation>, StoreError> {
        self.inner.revocation(token_id, subject).await
    }
}

/// Not cached: a beat read is how stale the replica is, now.
#[async_trait]
impl RegionBeatStore for CachedStore {
    async fn beat(&self, region: &RegionName, at: Timestamp) -> Result<(), StoreError> {
        self.inner.beat(region, at).await
    }

    async fn last_beat(&self, region: &RegionName) -> Result<Option<Timestamp>, StoreError> {
        self.inner.last_beat(region).await
    }
}

#[async_trait]
impl RateLimitStore for CachedStore {
    async fn acquire_rate(
        &self,
        key: &str,
        rate: crate::ratelimit::Rate,
    ) -> Result<crate::ratelimit::Decision, StoreError> {
        self.inner.acquire_rate(key, rate).await
    }
}
