//! A replicating store for the multi-region local stack (`docs/multi-region.md`): one in-memory
//! replica per region, and a replicator that copies each region's writes to the others after a
//! configurable lag, as a DynamoDB global table does.
//!
//! Each region's store ([`RegionalReplica`]) applies every call to its own replica; reads are
//! local. Once a write of a replicated item has succeeded there, the same write is queued for
//! every other region, one queue and one task per ordered pair of regions, so the writes of one
//! region reach another in the order they were made, each `lag` after it was made.
//!
//! What replicates follows the design's table: sessions, simulators, connections, idempotency
//! keys and revocations do. Tickets, leases and rate-limit cells do not: their keys name their
//! region in a global table, so no other region ever reads them, which is what keeping them on
//! the region's replica only amounts to. A replayed write skips the quotas (the owner's counters
//! are per region, and the home region checked them) but keeps its version condition.
//!
//! [`Replication::partition`] holds every queue (and [`Replication::isolate`] one region's,
//! in and out): nothing is dropped, and healing drains them in order, so no acknowledged write
//! is lost. A replay whose condition fails on the other replica means the replicas diverged: a
//! conflicting write was made there (during a partition, or by a region that was not the
//! item's home). It is counted ([`Replication::diverged`]) and logged, never retried: this is
//! the analogue of a global table's last-writer-wins, except that here the replica's own write
//! stays and the replayed one is dropped, so the two regions keep different values until one of
//! them writes the item again. The design's fencing (one home region per session, `home_epoch`)
//! is what keeps this from happening to sessions in the first place.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

use super::{
    ConnectionStore, HomeFence, HomeMove, IdempotencyStore, InMemoryStore, LeaseStore,
    RateLimitStore, RegionBeatStore, RevocationStore, SessionStore, SimulatorQuotas,
    SimulatorStore, StoreError, Takeover, TicketStore,
};
use crate::clock::Clock;
use crate::domain::{
    Connection, ConnectionId, EventId, IdempotencyClaim, IdempotencyKey, Lease, Page, PageRequest,
    RegionName, RequestFingerprint, Revocation, Session, SessionId, Simulator, SimulatorId,
    StoredResponse, TicketId, Timestamp, UserId,
};

/// A write made in one region, to replay on the others.
#[derive(Debug, Clone)]
enum Write {
    CreateSession(Session),
    UpdateSession(Session, Session),
    CreateSimulator(Simulator, UserId),
    UpdateSimulator(Simulator, Simulator),
    PutConnection(Connection),
    UpdateConnection(Connection, Connection),
    DeleteConnection(SessionId, ConnectionId),
    ClaimIdempotency(UserId, IdempotencyKey, RequestFingerprint, Duration),
    CompleteIdempotency(UserId, IdempotencyKey, RequestFingerprint, StoredResponse),
    AbandonIdempotency(UserId, IdempotencyKey, RequestFingerprint),
    Revoke(Revocation),
    /// A home takeover: the session, the home it left (region and epoch), its new home, the
    /// primary region.
    TakeOverHome(SessionId, RegionName, u64, RegionName, RegionName),
    /// A region's beat.
    Beat(RegionName, Timestamp),
}

/// Replication does not re-check quotas: the region that made the write did.
const NO_QUOTA: SimulatorQuotas = SimulatorQuotas {
    max_active: u32::MAX,
    max_events_per_second: u32::MAX,
};

impl Write {
    /// Whether it is data a client wrote (what [`Replication::pending`] counts), not a region's
    /// beat, which every region makes all the time.
    fn is_data(&self) -> bool {
        !matches!(self, Self::Beat(..))
    }

    /// Replays the write on `replica`, with the same conditions except quotas.
    async fn apply(self, replica: &InMemoryStore) -> Result<(), StoreError> {
        match self {
            Self::CreateSession(s) => replica.create_session(&s, u32::MAX).await,
            Self::UpdateSession(previous, next) => replica.update_session(&previous, &next).await,
            Self::CreateSimulator(sim, owner) => {
                replica.create_simulator(&sim, &owner, NO_QUOTA).await
            }
            Self::UpdateSimulator(previous, next) => {
                replica.update_simulator(&previous, &next).await
            }
            Self::PutConnection(c) => replica.put_connection(&c, u32::MAX).await,
            Self::UpdateConnection(previous, next) => {
                replica.update_connection(&previous, &next).await
            }
            Self::DeleteConnection(session, id) => {
                replica.delete_connection(&session, &id).await.map(drop)
            }
            Self::ClaimIdempotency(owner, key, fingerprint, ttl) => replica
                .claim_idempotency(&owner, &key, &fingerprint, ttl)
                .await
                .map(drop),
            Self::CompleteIdempotency(owner, key, fingerprint, response) => {
                replica
                    .complete_idempotency(&owner, &key, &fingerprint, &response)
                    .await
            }
            Self::AbandonIdempotency(owner, key, fingerprint) => {
                replica
                    .abandon_idempotency(&owner, &key, &fingerprint)
                    .await
            }
            Self::Revoke(r) => replica.revoke(&r).await,
            Self::Beat(region, at) => replica.beat(&region, at).await,
            Self::TakeOverHome(id, from, epoch, to, primary) => {
                let step = HomeMove {
                    from: &from,
                    epoch,
                    to: &to,
                    primary: &primary,
                };
                match replica.take_over_home(&id, &step).await? {
                    Takeover::Moved { .. } => Ok(()),
                    _ => Err(StoreError::Conflict {
                        entity: "session",
                        id: id.to_string(),
                    }),
                }
            }
        }
    }
}

/// What the regions' stores and the replication tasks share.
#[derive(Debug)]
struct Shared {
    /// Per region: whether it is cut off (its queues, in and out, are held).
    isolated: watch::Sender<Vec<bool>>,
    /// Replays whose condition failed on the other replica.
    diverged: AtomicU64,
    /// Writes queued and not yet replayed, over every pair.
    pending: AtomicU64,
}

/// N regional in-memory replicas and the replication between them.
#[derive(Debug, Clone)]
pub struct Replication {
    regions: Vec<RegionalReplica>,
    shared: Arc<Shared>,
}

impl Replication {
    /// `regions` empty replicas (at least one) reading time from `clock`, each region's writes
    /// reaching the others `lag` after they were made. Spawns one task per ordered pair of
    /// regions on the current Tokio runtime; they end when every region's store is dropped.
    pub fn new(regions: usize, lag: Duration, clock: &Arc<dyn Clock>) -> Self {
        let regions = regions.max(1);
        let shared = Arc::new(Shared {
            isolated: watch::Sender::new(vec![false; regions]),
            diverged: AtomicU64::new(0),
            pending: AtomicU64::new(0),
        });
        let replicas: Vec<InMemoryStore> = (0..regions)
            .map(|_| InMemoryStore::new(clock.clone()))
            .collect();
        let mut outgoing: Vec<Vec<mpsc::UnboundedSender<(Instant, Write)>>> =
            (0..regions).map(|_| Vec::new()).collect();
        for (from, links) in outgoing.iter_mut().enumerate() {
            for (to, replica) in replicas.iter().enumerate().filter(|(to, _)| *to != from) {
                let (tx, rx) = mpsc::unbounded_channel();
                links.push(tx);
                tokio::spawn(replay(from, to, rx, replica.clone(), Arc::clone(&shared)));
            }
        }
        let regions = replicas
            .into_iter()
            .zip(outgoing)
            .enumerate()
            .map(|(index, (replica, links))| RegionalReplica {
                index,
                replica,
                links: Arc::new(links),
                lag,
                shared: Arc::clone(&shared),
            })
            .collect();
        Self { regions, shared }
    }

    /// Region `index`'s store (0-based, in the order the regions were made).
    ///
    /// # Panics
    /// There is no such region.
    pub fn region(&self, index: usize) -> RegionalReplica {
        self.regions[index].clone()
    }

    /// How many regions there are.
    pub fn len(&self) -> usize {
        self.regions.len()
    }

    /// Always false: there is at least one region.
    pub fn is_empty(&self) -> bool {
        self.regions.is_empty()
    }

    /// Cuts every region off from the others (`true`: queues are held, nothing is dropped) or
    /// heals them all (`false`: the queues drain in order).
    pub fn partition(&self, partitioned: bool) {
        self.shared
            .isolated
            .send_modify(|isolated| isolated.fill(partitioned));
    }

    /// Cuts region `index` off from the others (its outage) or reconnects it.
    pub fn isolate(&self, index: usize, isolated: bool) {
        self.shared.isolated.send_modify(|all| {
            if let Some(region) = all.get_mut(index) {
                *region = isolated;
            }
        });
    }

    /// How many replayed writes failed their condition on another replica (divergence).
    pub fn diverged(&self) -> u64 {
        self.shared.diverged.load(Ordering::Relaxed)
    }

    /// How many writes are queued for another region and not yet replayed there (regions'
    /// beats aside).
    pub fn pending(&self) -> u64 {
        self.shared.pending.load(Ordering::Relaxed)
    }
}

/// Replays region `from`'s writes on region `to`'s replica, in order, each once its lag has
/// passed and while neither region is cut off.
async fn replay(
    from: usize,
    to: usize,
    mut queue: mpsc::UnboundedReceiver<(Instant, Write)>,
    replica: InMemoryStore,
    shared: Arc<Shared>,
) {
    let mut isolated = shared.isolated.subscribe();
    while let Some((due, write)) = queue.recv().await {
        tokio::time::sleep_until(due).await;
        // The sender lives in `shared`, so the channel cannot close while this task runs.
        let _ = isolated.wait_for(|all| !all[from] && !all[to]).await;
        let counted = u64::from(write.is_data());
        if let Err(error) = write.clone().apply(&replica).await {
            shared.diverged.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(from, to, ?write, %error, "a replicated write diverged; dropped");
        }
        shared.pending.fetch_sub(counted, Ordering::Relaxed);
    }
}

/// One region's store: its own replica, its writes replicated to the other regions.
#[derive(Debug, Clone)]
pub struct RegionalReplica {
    index: usize,
    replica: InMemoryStore,
    links: Arc<Vec<mpsc::UnboundedSender<(Instant, Write)>>>,
    lag: Duration,
    shared: Arc<Shared>,
}

impl RegionalReplica {
    /// This region's store fenced to the sessions homed in it ([`HomeFence`]), as a regional
    /// deployment's store is: its own writes to a session homed elsewhere are refused, and its
    /// quotas count only the sessions homed here. Replayed writes are never fenced: they were
    /// checked in the region that made them.
    #[must_use]
    pub fn fenced_by(mut self, fence: Option<HomeFence>) -> Self {
        self.replica = self.replica.clone().fenced_by(fence);
        self
    }

    /// Which region this is (0-based).
    pub fn index(&self) -> usize {
        self.index
    }

    /// Queues `write` (which succeeded here) for every other region.
    fn replicate(&self, write: &Write) {
        let due = Instant::now() + self.lag;
        let counted = u64::from(write.is_data());
        for link in self.links.iter() {
            self.shared.pending.fetch_add(counted, Ordering::Relaxed);
            if link.send((due, write.clone())).is_err() {
                // The runtime that ran the task is gone: nothing is left to replicate to.
                self.shared.pending.fetch_sub(counted, Ordering::Relaxed);
            }
        }
    }

    /// Passes `result` on, replicating the write `write` makes if it succeeded.
    fn then_replicate<T>(
        &self,
        result: Result<T, StoreError>,
        write: impl FnOnce() -> Write,
    ) -> Result<T, StoreError> {
        if result.is_ok() {
            self.replicate(&write());
        }
        result
    }
}

#[async_trait]
impl SessionStore for RegionalReplica {
    async fn create_session(&self, session: &Session, max_open: u32) -> Result<(), StoreError> {
        let result = self.replica.create_session(session, max_open).await;
        self.then_replicate(result, || Write::CreateSession(session.clone()))
    }

    async fn get_session(&self, id: &SessionId) -> Result<Option<Session>, StoreError> {
        self.replica.get_session(id).await
    }

    async fn list_sessions(
        &self,
        owner: &UserId,
        page: &PageRequest,
    ) -> Result<Page<Session>, StoreError> {
        self.replica.list_sessions(owner, page).await
    }

    async fn update_session(&self, previous: &Session, next: &Session) -> Result<(), StoreError> {
        let result = self.replica.update_session(previous, next).await;
        self.then_replicate(result, || {
            Write::UpdateSession(previous.clone(), next.clone())
        })
    }

    async fn sessions_homed_in(
        &self,
        region: &RegionName,
        primary: &RegionName,
        page: &PageRequest,
    ) -> Result<Page<Session>, StoreError> {
        self.replica.sessions_homed_in(region, primary, page).await
    }

    async fn take_over_home(
        &self,
        id: &SessionId,
        step: &HomeMove<'_>,
    ) -> Result<Takeover, StoreError> {
        let result = self.replica.take_over_home(id, step).await;
        // Only a move is a write; the other outcomes changed nothing.
        if matches!(result, Ok(Takeover::Moved { .. })) {
            self.replicate(&Write::TakeOverHome(
                id.clone(),
                step.from.clone(),
                step.epoch,
                step.to.clone(),
                step.primary.clone(),
            ));
        }
        result
    }
}

#[async_trait]
impl SimulatorStore for RegionalReplica {
    async fn create_simulator(
        &self,
        simulator: &Simulator,
        owner: &UserId,
        quotas: SimulatorQuotas,
    ) -> Result<(), StoreError> {
        let result = self
            .replica
            .create_simulator(simulator, owner, quotas)
            .await;
        self.then_replicate(result, || {
            Write::CreateSimulator(simulator.clone(), owner.clone())
        })
    }

    async fn get_simulator(
        &self,
        session: &SessionId,
        id: &SimulatorId,
    ) -> Result<Option<Simulator>, StoreError> {
        self.replica.get_simulator(session, id).await
    }

    async fn list_simulators(&self, session: &SessionId) -> Result<Vec<Simulator>, StoreError> {
        self.replica.list_simulators(session).await
    }

    async fn update_simulator(
        &self,
        previous: &Simulator,
        next: &Simulator,
    ) -> Result<(), StoreError> {
        let result = self.replica.update_simulator(previous, next).await;
        self.then_replicate(result, || {
            Write::UpdateSimulator(previous.clone(), next.clone())
        })
    }
}

#[async_trait]
impl ConnectionStore for RegionalReplica {
    async fn put_connection(
        &self,
        connection: &Connection,
        max_per_session: u32,
    ) -> Result<(), StoreError> {
        let result = self
            .replica
            .put_connection(connection, max_per_session)
            .await;
        // Replicated as recorded here: named as this region's.
        self.then_replicate(result, || {
            Write::PutConnection(self.replica.own_connection(connection))
        })
    }

    async fn get_connection(
        &self,
        session: &SessionId,
        id: &ConnectionId,
    ) -> Result<Option<Connection>, StoreError> {
        self.replica.get_connection(session, id).await
    }

    async fn list_connections(&self, session: &SessionId) -> Result<Vec<Connection>, StoreError> {
        self.replica.list_connections(session).await
    }

    async fn update_connection(
        &self,
        previous: &Connection,
        next: &Connection,
    ) -> Result<(), StoreError> {
        let result = self.replica.update_connection(previous, next).await;
        self.then_replicate(result, || {
            Write::UpdateConnection(previous.clone(), next.clone())
        })
    }

    async fn delete_connection(
        &self,
        session: &SessionId,
        id: &ConnectionId,
    ) -> Result<bool, StoreError> {
        let result = self.replica.delete_connection(session, id).await;
        // Replicated even when already gone here: it may not be gone there yet.
        self.then_replicate(result, || {
            Write::DeleteConnection(session.clone(), id.clone())
        })
    }

    async fn sessions_with_connections(&self) -> Result<Vec<SessionId>, StoreError> {
        self.replica.sessions_with_connections().await
    }
}

/// Regional: a ticket is consumed in its own region only.
#[async_trait]
impl TicketStore for RegionalReplica {
    async fn consume_ticket(&self, id: &TicketId, expires_at: Timestamp) -> Result<(), StoreError> {
        self.replica.consume_ticket(id, expires_at).await
    }

    async fn release_ticket(
        &self,
        id: &TicketId,
        last_delivered: EventId,
        resumable_until: Timestamp,
    ) -> Result<(), StoreError> {
        self.replica
            .release_ticket(id, last_delivered, resumable_until)
            .await
    }

    async fn resume_ticket(&self, id: &TicketId, from: EventId) -> Result<(), StoreError> {
        self.replica.resume_ticket(id, from).await
    }
}

#[async_trait]
impl IdempotencyStore for RegionalReplica {
    async fn claim_idempotency(
        &self,
        owner: &UserId,
        key: &IdempotencyKey,
        fingerprint: &RequestFingerprint,
        ttl: Duration,
    ) -> Result<IdempotencyClaim, StoreError> {
        let result = self
            .replica
            .claim_idempotency(owner, key, fingerprint, ttl)
            .await;
        // Only a new claim is a write; an answer about an earlier one changed nothing.
        if matches!(result, Ok(IdempotencyClaim::Claimed)) {
            self.replicate(&Write::ClaimIdempotency(
                owner.clone(),
                key.clone(),
                fingerprint.clone(),
                ttl,
            ));
        }
        result
    }

    async fn complete_idempotency(
        &self,
        owner: &UserId,
        key: &IdempotencyKey,
        fingerprint: &RequestFingerprint,
        response: &StoredResponse,
    ) -> Result<(), StoreError> {
        let result = self
            .replica
            .complete_idempotency(owner, key, fingerprint, response)
            .await;
        self.then_replicate(result, || {
            Write::CompleteIdempotency(
                owner.clone(),
                key.clone(),
                fingerprint.clone(),
                response.clone(),
            )
        })
    }

    async fn abandon_idempotency(
        &self,
        owner: &UserId,
        key: &IdempotencyKey,
        fingerprint: &RequestFingerprint,
    ) -> Result<(), StoreError> {
        let result = self
            .replica
            .abandon_idempotency(owner, key, fingerprint)
            .await;
        self.then_replicate(result, || {
            Write::AbandonIdempotency(owner.clone(), key.clone(), fingerprint.clone())
        })
    }
}

/// Regional: streamers are regional, and a lease never spans regions.
#[async_trait]
impl LeaseStore for RegionalReplica {
    async fn acquire_lease(
        &self,
        name: &str,
        owner: &str,
        ttl: Duration,
    ) -> Result<Lease, StoreError> {
        self.replica.acquire_lease(name, owner, ttl).await
    }

    async fn renew_lease(&self, lease: &Lease, ttl: Duration) -> Result<Lease, StoreError> {
        self.replica.renew_lease(lease, ttl).await
    }

    async fn mark_draining(&self, lease: &Lease) -> Result<Lease, StoreError> {
        self.replica.mark_draining(lease).await
    }

    async fn release_lease(&self, lease: &Lease) -> Result<(), StoreError> {
        self.replica.release_lease(lease).await
    }

    async fn get_lease(&self, name: &str) -> Result<Option<Lease>, StoreError> {
        self.replica.get_lease(name).await
    }
}

#[async_trait]
impl RevocationStore for RegionalReplica {
    async fn revoke(&self, revocation: &Revocation) -> Result<(), StoreError> {
        let result = self.replica.revoke(revocation).await;
        self.then_replicate(result, || Write::Revoke(revocation.clone()))
    }

    async fn revocation(
        &self,
        token_id: &str,
        subject: &UserId,
    ) -> Result<Option<Revocation>, StoreError> {
        self.replica.revocation(token_id, subject).await
    }
}

/// Regional: limits are per region.
#[async_trait]
impl RateLimitStore for RegionalReplica {
    async fn acquire_rate(
        &self,
        key: &str,
        rate: crate::ratelimit::Rate,
    ) -> Result<crate::ratelimit::Decision, StoreError> {
        self.replica.acquire_rate(key, rate).await
    }
}

/// Replicated: a region's beat is how the others tell how far behind its writes they are.
#[async_trait]
impl RegionBeatStore for RegionalReplica {
    async fn beat(&self, region: &RegionName, at: Timestamp) -> Result<(), StoreError> {
        let result = self.replica.beat(region, at).await;
        self.then_replicate(result, || Write::Beat(region.clone(), at))
    }

    async fn last_beat(&self, region: &RegionName) -> Result<Option<Timestamp>, StoreError> {
        self.replica.last_beat(region).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;
    use crate::domain::NewSession;

    const LAG: Duration = Duration::from_millis(200);

    fn replication() -> Replication {
        Replication::new(2, LAG, &clock())
    }

    fn clock() -> Arc<dyn Clock> {
        Arc::new(ManualClock::new(Timestamp::from_unix_millis(1_000)))
    }

    fn session() -> Session {
        Session::open(
            UserId::parse("sub", "alice").unwrap(),
            NewSession::default(),
            Timestamp::from_unix_millis(1_000),
            Duration::from_secs(3600),
        )
    }

    /// Lets the replication tasks run what is due now.
    async fn settle() {
        for _ in 0..10 {
            tokio::task::yield_now().await;
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_write_in_one_region_is_readable_in_another_only_after_the_lag() {
        let regions = replication();
        let (a, b) = (regions.region(0), regions.region(1));
        let s = session();
        a.create_session(&s, 10).await.unwrap();
        assert_eq!(a.get_session(&s.id).await.unwrap(), Some(s.clone()));
        tokio::time::sleep(Duration::from_millis(199)).await;
        settle().await;
        assert_eq!(b.get_session(&s.id).await.unwrap(), None);
        tokio::time::sleep(Duration::from_millis(1)).await;
        settle().await;
        assert_eq!(b.get_session(&s.id).await.unwrap(), Some(s));
        assert_eq!(regions.pending(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn a_partition_holds_writes_and_healing_delivers_them_all_in_order() {
        let regions = replication();
        let (a, b) = (regions.region(0), regions.region(1));
        regions.partition(true);
        let s = session();
        a.create_session(&s, 10).await.unwrap();
        let closed = s.close(Timestamp::from_unix_millis(2_000)).unwrap();
        // Applied out of order, the close would fail its version condition on B.
        a.update_session(&s, &closed).await.unwrap();
        tokio::time::sleep(LAG * 10).await;
        settle().await;
        assert_eq!(b.get_session(&s.id).await.unwrap(), None);
        assert_eq!(regions.pending(), 2);

        regions.partition(false);
        settle().await;
        assert_eq!(b.get_session(&s.id).await.unwrap(), Some(closed));
        assert_eq!((regions.pending(), regions.diverged()), (0, 0));
    }

    #[tokio::test(start_paused = true)]
    async fn a_conflicting_write_made_during_a_partition_is_counted_as_divergence_not_retried() {
        let regions = replication();
        let (a, b) = (regions.region(0), regions.region(1));
        let s = session();
        a.create_session(&s, 10).await.unwrap();
        tokio::time::sleep(LAG).await;
        settle().await;
        regions.partition(true);
        let closed_in_a = s.close(Timestamp::from_unix_millis(2_000)).unwrap();
        let closed_in_b = s.close(Timestamp::from_unix_millis(3_000)).unwrap();
        a.update_session(&s, &closed_in_a).await.unwrap();
        b.update_session(&s, &closed_in_b).await.unwrap();

        regions.partition(false);
        tokio::time::sleep(LAG).await;
        settle().await;
        assert_eq!(regions.diverged(), 2);
        assert_eq!(regions.pending(), 0);
        assert_eq!(a.get_session(&s.id).await.unwrap(), Some(closed_in_a));
        assert_eq!(b.get_session(&s.id).await.unwrap(), Some(closed_in_b));
    }

    fn region(name: &str) -> RegionName {
        RegionName::parse("region", name).unwrap()
    }

    /// Regions `a` (the primary) and `b`, each store fenced as its deployment's is.
    fn fenced_regions() -> (Replication, RegionalReplica, RegionalReplica) {
        let regions = replication();
        let fenced = |index: usize, this: &str| {
            let settings = crate::config::RegionSettings {
                this: region(this),
                primary: Some(region("a")),
                apis: ["a", "b"]
                    .map(|r| (region(r), format!("https://{r}.example")))
                    .into(),
                simulators: std::collections::BTreeMap::new(),
            };
            regions
                .region(index)
                .fenced_by(HomeFence::from_settings(&settings))
        };
        let (a, b) = (fenced(0, "a"), fenced(1, "b"));
        (regions, a, b)
    }

    fn homed_in(home: &str) -> Session {
        Session {
            home_region: Some(region(home)),
            ..session()
        }
    }

    #[tokio::test(start_paused = true)]
    async fn the_sessions_quota_is_per_region_so_a_user_at_the_quota_in_one_can_create_in_another()
    {
        let (_regions, a, b) = fenced_regions();
        a.create_session(&homed_in("a"), 1).await.unwrap();
        tokio::time::sleep(LAG).await;
        settle().await;

        // b reads a's session, and does not count it against the quota.
        let in_b = homed_in("b");
        b.create_session(&in_b, 1).await.unwrap();
        let full = a.create_session(&homed_in("a"), 1).await;
        assert!(
            matches!(full, Err(StoreError::QuotaExceeded { limit: 1, .. })),
            "{full:?}"
        );
        let full = b.create_session(&homed_in("b"), 1).await;
        assert!(
            matches!(full, Err(StoreError::QuotaExceeded { .. })),
            "{full:?}"
        );
        tokio::time::sleep(LAG).await;
        settle().await;
        let listed = a
            .list_sessions(
                &in_b.owner,
                &PageRequest {
                    limit: 10,
                    cursor: None,
                },
            )
            .await
            .unwrap();
        assert_eq!(
            listed.items.len(),
            2,
            "one per region: N regions hold N x the quota"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn an_idempotency_key_retried_in_another_region_is_new_within_the_lag_and_not_after() {
        let (regions, a, b) = fenced_regions();
        let owner = UserId::parse("sub", "alice").unwrap();
        let key = |k: &str| IdempotencyKey::parse("Idempotency-Key", k).unwrap();
        let body = RequestFingerprint::of(&[b"POST /v1/sessions", b"{}"]);
        let ttl = Duration::from_secs(86_400);
        let claim = async |store: &RegionalReplica, k: &str| {
            store
                .claim_idempotency(&owner, &key(k), &body, ttl)
                .await
                .unwrap()
        };
        let created = StoredResponse {
            status: 201,
            headers: vec![("Location".to_owned(), "/v1/sessions/ses_1".to_owned())],
            body: "{}".to_owned(),
        };

        // Within the lag: b has not seen a's claim, so the retry is a new request (the
        // documented duplicate).
        assert_eq!(claim(&a, "early").await, IdempotencyClaim::Claimed);
        assert_eq!(claim(&b, "early").await, IdempotencyClaim::Claimed);

        // After the lag: a finished request is replayed, a running one is in progress (409).
        assert_eq!(claim(&a, "done").await, IdempotencyClaim::Claimed);
        a.complete_idempotency(&owner, &key("done"), &body, &created)
            .await
            .unwrap();
        assert_eq!(claim(&a, "pending").await, IdempotencyClaim::Claimed);
        tokio::time::sleep(LAG).await;
        settle().await;
        assert_eq!(
            claim(&b, "done").await,
            IdempotencyClaim::Completed(created)
        );
        assert_eq!(claim(&b, "pending").await, IdempotencyClaim::InProgress);
        // The two claims of "early" met on each other's replica, each found held there: both
        // regions keep their own (the duplicate is a second session, not a lost write).
        assert_eq!(claim(&a, "early").await, IdempotencyClaim::InProgress);
        assert_eq!(claim(&b, "early").await, IdempotencyClaim::InProgress);
        assert_eq!(regions.diverged(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn an_isolated_region_neither_sends_nor_receives_until_it_is_back() {
        let regions = Replication::new(3, LAG, &clock());
        regions.isolate(0, true);
        let s = session();
        regions.region(0).create_session(&s, 10).await.unwrap();
        let t = session();
        regions.region(1).create_session(&t, 10).await.unwrap();
        tokio::time::sleep(LAG).await;
        settle().await;
        assert_eq!(regions.region(2).get_session(&s.id).await.unwrap(), None);
        assert_eq!(
            regions.region(2).get_session(&t.id).await.unwrap(),
            Some(t.clone())
        );
        assert_eq!(regions.region(0).get_session(&t.id).await.unwrap(), None);

        regions.isolate(0, false);
        settle().await;
        assert_eq!(regions.region(2).get_session(&s.id).await.unwrap(), Some(s));
        assert_eq!(regions.region(0).get_session(&t.id).await.unwrap(), Some(t));
    }
}
