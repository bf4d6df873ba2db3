//! The WebSocket push: which sessions this streamer serves (their leases), and each of their
//! connections fed from the hub, in order, batched, through `@connections`.
//!
//! Every `poll`, the streamer lists the sessions that have connections and takes the lease of
//! any that nobody holds (or whose holder stopped renewing): exactly one streamer pushes to a
//! session's connections. While it holds the lease it renews it, reads the session's connection
//! set (new connections are served within a `poll`), and runs one pusher per connection: a hub
//! subscription like an SSE client's — same resume, conflation and reconnect rules — whose
//! deliveries are packed into messages and posted. A connection starts from the last event id
//! its record names (the URL's on a reconnect, then what its heartbeats report), so a new lease
//! holder resumes where the client is; a client drops the repeats it may get then by id.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures_util::future::join_all;
use session_core::domain::{
    Compression, Connection, ConnectionId, EventId, Lease, SessionId, session_lease_name,
};
use session_core::resilience::{RetryPolicy, retry};
use session_core::service::StreamService;
use session_core::store::ports::{Port, PortUse};
use session_core::store::{ConnectionStore, LeaseStore, StoreError};
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinHandle;
use tracing::{info, instrument, warn};

use super::connections_api::{ConnectionsApi, MAX_FRAME_BYTES, PostError};
use super::deflate::DeflateCache;
use super::messages::pack;
use crate::drain::drained;
use crate::hub::{Delivery, Hub, Start, Subscription};
use crate::metrics;
use crate::wire;

/// How the push behaves.
#[derive(Debug, Clone)]
pub struct PushSettings {
    /// This streamer's name, the owner of the leases it takes.
    pub instance: String,
    /// How often sessions and connection sets are read, and leases renewed.
    pub poll: Duration,
    /// A lease lapses this long after its last renewal (a crashed holder's sessions are taken
    /// over after it).
    pub lease_ttl: Duration,
    /// After a first event, how long a pusher waits for more before it posts (low rates batch).
    pub batch_delay: Duration,
    /// Most `PostToConnection` calls under way at once, across connections.
    pub max_concurrent_posts: usize,
    /// Retries of throttled or failed posts.
    pub retry: RetryPolicy,
    /// What clients are told to wait before reconnecting.
    pub retry_ms: u64,
}

impl PushSettings {
    /// The push settings of the streamer's configuration (`streamer.push_*`, `lease_ttl_secs`,
    /// `retry_ms`).
    pub fn from_settings(streamer: &crate::settings::StreamerSettings) -> Self {
        Self {
            instance: streamer.instance(),
            poll: streamer.push_poll_ms,
            lease_ttl: streamer.lease_ttl_secs,
            batch_delay: streamer.push_batch_delay_ms,
            max_concurrent_posts: usize::try_from(streamer.push_max_concurrent_posts)
                .unwrap_or(usize::MAX),
            // Throttling is API Gateway asking to slow down, and a client that reads slowly for
            // a few seconds is no reason to close it: up to ~8.5 s of retries before giving up
            // on a connection.
            retry: RetryPolicy {
                max_retries: 12,
                base: Duration::from_millis(50),
                cap: Duration::from_secs(1),
            },
            retry_ms: streamer.retry_ms,
        }
    }
}

/// Writes of a connection's position at handover before giving up (each loses only to a
/// concurrent heartbeat).
const RECORD_ATTEMPTS: usize = 10;

/// The pushers of a served session's connections, with how each connection's pushes are
/// encoded; each returns, when drained, the last event it posted.
type Pushers = HashMap<ConnectionId, (JoinHandle<Option<EventId>>, Compression)>;

/// What a served session's round ends in.
enum Round {
    /// Poll again.
    Continue,
    /// The streamer drains: hand the session over.
    Drain,
    /// The lease was lost, or released for want of connections.
    Over,
}

/// Serves the WebSocket connections of the sessions whose leases this streamer holds.
#[derive(Debug, Clone)]
pub struct Pusher {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    hub: Hub,
    /// The simulator a session's stream follows.
    service: StreamService,
    connections: Arc<dyn ConnectionStore>,
    leases: Arc<dyn LeaseStore>,
    api: ConnectionsApi,
    settings: PushSettings,
    /// `streamer.push_batch_delay_ms` in force, in microseconds (a runtime settings change
    /// sets it: [`Pusher::set_batch_delay`]).
    batch_delay_us: AtomicU64,
    posts: Semaphore,
}

impl Pusher {
    /// The store methods the pusher calls (with [`StreamService::PORTS`] and the rate limiter's:
    /// the streamer's IAM policy).
    pub const PORTS: &[PortUse] = &[
        PortUse {
            port: Port::Connections,
            methods: &[
                "sessions_with_connections",
                "list_connections",
                "get_connection",
                "update_connection",
                "delete_connection",
            ],
        },
        PortUse {
            port: Port::Leases,
            methods: &[
                "acquire_lease",
                "renew_lease",
                "mark_draining",
                "release_lease",
            ],
        },
    ];

    /// A pusher over these parts.
    pub fn new(
        hub: Hub,
        service: StreamService,
        connections: Arc<dyn ConnectionStore>,
        leases: Arc<dyn LeaseStore>,
        api: ConnectionsApi,
        settings: PushSettings,
    ) -> Self {
        let posts = Semaphore::new(settings.max_concurrent_posts.max(1));
        Self {
            inner: Arc::new(Inner {
                hub,
                service,
                connections,
                leases,
                api,
                batch_delay_us: AtomicU64::new(micros(settings.batch_delay)),
                settings,
                posts,
            }),
        }
    }

    /// Sets the batch delay of the posts gathered from now on.
    pub fn set_batch_delay(&self, delay: Duration) {
        self.inner
            .batch_delay_us
            .store(micros(delay), Ordering::Relaxed);
    }

    /// Takes and serves sessions until `draining`; then every session tells its clients to
    /// reconnect and hands its lease back.
    pub async fn run(self, mut draining: watch::Receiver<bool>) {
        let mut serving: HashMap<SessionId, JoinHandle<()>> = HashMap::new();
        let mut tick = tokio::time::interval(self.inner.settings.poll);
        loop {
            tokio::select! {
                biased;
                () = drained(&mut draining) => break,
                _ = tick.tick() => {}
            }
            serving.retain(|_, task| !task.is_finished());
            let sessions = match self.inner.connections.sessions_with_connections().await {
                Ok(sessions) => sessions,
                Err(e) => {
                    metrics::pusher_error("list_sessions");
                    warn!(error = %e, "cannot list sessions with connections");
                    continue;
                }
            };
            for session in sessions {
                if serving.contains_key(&session) {
                    continue;
                }
                let lease = self
                    .inner
                    .leases
                    .acquire_lease(
                        &session_lease_name(&session),
                        &self.inner.settings.instance,
                        self.inner.settings.lease_ttl,
                    )
                    .await;
                match lease {
                    Ok(lease) => {
                        info!(session_id = %session, token = lease.token, "session lease taken");
                        let task = tokio::spawn(Arc::clone(&self.inner).serve_session(
                            session.clone(),
                            lease,
                            draining.clone(),
                        ));
                        serving.insert(session, task);
                    }
                    Err(StoreError::LeaseHeld { .. }) => {}
                    Err(e) => {
                        metrics::pusher_error("take_lease");
                        warn!(session_id = %session, error = %e, "cannot take a session lease");
                    }
                }
            }
            metrics::push_sessions(serving.len());
        }
        for (_, task) in serving {
            let _ = task.await;
        }
        metrics::push_sessions(0);
    }
}

impl Inner {
    /// Serves one session while this streamer holds its lease.
    #[instrument(skip_all, fields(session_id = %session))]
    async fn serve_session(
        self: Arc<Self>,
        session: SessionId,
        mut lease: Lease,
        mut draining: watch::Receiver<bool>,
    ) {
        let mut pushers: Pushers = HashMap::new();
        // Shared by the session's pushers: a message is deflated once for all its connections.
        let deflate = Arc::new(DeflateCache::default());
        let mut tick = tokio::time::interval(self.settings.poll);
        let watch = draining.clone();
        loop {
            // A drain cuts a round short: on a slow store its reads could otherwise delay the
            // handover past the lease's expiry (a cut renewal keeps the token, so it is safe).
            let round = tokio::select! {
                biased;
                () = drained(&mut draining) => Round::Drain,
                round = async {
                    tick.tick().await;
                    Arc::clone(&self)
                        .round(&session, &mut lease, &mut pushers, &deflate, &watch)
                        .await
                } => round,
            };
            match round {
                Round::Continue => {}
                Round::Drain => {
                    self.hand_over(&session, &lease, pushers, &deflate).await;
                    return;
                }
                Round::Over => return,
            }
        }
    }

    /// One poll of a served session: renews its lease, reads its connection set, and feeds
    /// each connection that has no pusher.
    async fn round(
        self: Arc<Self>,
        session: &SessionId,
        lease: &mut Lease,
        pushers: &mut Pushers,
        deflate: &Arc<DeflateCache>,
        draining: &watch::Receiver<bool>,
    ) -> Round {
        match self
            .leases
            .renew_lease(lease, self.settings.lease_ttl)
            .await
        {
            Ok(renewed) => *lease = renewed,
            Err(e) => {
                metrics::pusher_error("lease_lost");
                warn!(session_id = %session, error = %e, "session lease lost; another streamer serves it");
                for (task, _) in pushers.values() {
                    task.abort();
                }
                return Round::Over;
            }
        }
        let connections = match self.connections.list_connections(session).await {
            Ok(connections) => connections,
            Err(e) => {
                metrics::pusher_error("read_connections");
                warn!(session_id = %session, error = %e, "cannot read the session's connections");
                return Round::Continue;
            }
        };
        // A connection that went has its pusher stopped; a pusher that ended stays until
        // replaced below (it may hold a drain's position).
        pushers.retain(|id, (task, _)| {
            let open = connections.iter().any(|c| c.id == *id);
            if !open {
                task.abort();
            }
            open
        });
        if connections.is_empty() {
            let _ = self.leases.release_lease(lease).await;
            info!(session_id = %session, "no connection left; session lease released");
            return Round::Over;
        }
        // No live simulator yet (or any more): nothing to push.
        let Ok((simulator, key)) = self.service.stream_source(session, None).await else {
            return Round::Continue;
        };
        // Fed from the server hosting the simulator (discovery), or the static one (of the
        // session's home region): found once some connection needs a pusher.
        let mut host: Option<Option<String>> = None;
        for connection in connections {
            if pushers
                .get(&connection.id)
                .is_some_and(|(task, _)| !task.is_finished())
            {
                continue;
            }
            // A pusher that ended for a drain (begun since the round began) holds the position
            // to hand over: never replace it then. One that ended on its own is replaced.
            if *draining.borrow() {
                return Round::Drain;
            }
            let start = connection
                .last_event_id
                .as_deref()
                .and_then(|id| EventId::parse("last_event_id", id).ok())
                .map_or(Start::Snapshot, Start::After);
            info!(connection_id = %connection.id, ?start, "feeding a connection");
            let from_snapshot = matches!(start, Start::Snapshot);
            if host.is_none() {
                match self.service.server_for(session, &simulator).await {
                    Ok(server) => host = Some(server),
                    Err(e) => {
                        metrics::pusher_error("read_session");
                        warn!(session_id = %session, error = %e, "cannot tell which server streams the session");
                        return Round::Continue;
                    }
                }
            }
            let host = host.as_ref().and_then(Option::as_deref);
            let subscription = match self.hub.subscribe_on(host, &key, start) {
                Ok(subscription) => subscription,
                Err(error) => {
                    warn!(%error, host = ?host, "the simulator's server is not a valid endpoint");
                    return Round::Continue;
                }
            };
            let encoding = (!connection.compression.is_none()).then(|| Arc::clone(deflate));
            let task = tokio::spawn(Arc::clone(&self).push(
                session.clone(),
                connection.id.clone(),
                subscription,
                from_snapshot,
                encoding,
                draining.clone(),
            ));
            pushers.insert(connection.id, (task, connection.compression));
        }
        Round::Continue
    }

    /// On drain: marks the lease draining (heartbeats advise `draining` meanwhile) and, at the
    /// same time, for every connection at once, lets its pusher finish the message under way,
    /// records in its record the last event it was sent (where the next holder starts), and
    /// advises it to reconnect; then releases the lease.
    async fn hand_over(
        &self,
        session: &SessionId,
        lease: &Lease,
        pushers: Pushers,
        deflate: &DeflateCache,
    ) {
        let advice = wire::reconnect("draining", self.settings.retry_ms);
        let messages = pack(&advice.sse, MAX_FRAME_BYTES).map_or_else(|_| Vec::new(), |(m, _)| m);
        let deflated: Vec<Bytes> = messages.iter().map(|m| deflate.deflate(m)).collect();
        let connections = pushers.into_iter().map(|(connection, (task, compression))| {
            let messages = if compression.is_none() {
                &messages
            } else {
                &deflated
            };
            async move {
                match task.await {
                    Ok(Some(last)) => self.record_position(session, &connection, last).await,
                    Ok(None) => info!(connection_id = %connection, "no position to record: its pusher had stopped"),
                    Err(e) => {
                        metrics::pusher_error("hand_over");
                        warn!(connection_id = %connection, error = %e, "its pusher failed");
                    }
                }
                for message in messages {
                    let _ = self.api.post(connection.as_str(), message.clone()).await;
                }
            }
        });
        let (marked, _) = tokio::join!(self.leases.mark_draining(lease), join_all(connections));
        if let Err(e) = marked {
            metrics::pusher_error("hand_over");
            warn!(session_id = %session, error = %e, "cannot mark the session lease draining");
        }
        // Same owner and token whether or not it was marked.
        let _ = self.leases.release_lease(lease).await;
        info!(session_id = %session, "session handed over");
    }

    /// Records `last` as the connection's last event id, unless the record is gone.
    async fn record_position(&self, session: &SessionId, connection: &ConnectionId, last: EventId) {
        // Heartbeats write the record too (every few seconds per client, and a slow store
        // widens the window): re-read and retry until this write wins.
        for _ in 0..RECORD_ATTEMPTS {
            let current = match self.connections.get_connection(session, connection).await {
                Ok(Some(current)) => current,
                Ok(None) => {
                    info!(connection_id = %connection, "no position to record: the connection is gone");
                    return;
                }
                Err(e) => {
                    metrics::pusher_error("record_position");
                    warn!(connection_id = %connection, error = %e, "cannot read the connection to record its position");
                    return;
                }
            };
            let next = Connection {
                last_event_id: current.position_after(Some(&last.to_string())),
                version: current.version + 1,
                ..current.clone()
            };
            match self.connections.update_connection(&current, &next).await {
                Ok(()) => {
                    info!(connection_id = %connection, %last, "position recorded");
                    return;
                }
                Err(StoreError::Conflict { .. }) => {}
                Err(e) => {
                    metrics::pusher_error("record_position");
                    warn!(connection_id = %connection, error = %e, "cannot record the connection's position");
                    return;
                }
            }
        }
        metrics::pusher_error("record_position");
        warn!(connection_id = %connection, "cannot record the connection's position: every write race lost");
    }

    /// Feeds one connection until it goes, is told to reconnect, or the streamer drains; then
    /// returns the last event it posted (`None` unless draining).
    #[instrument(skip_all, fields(
        request_id = %ulid::Ulid::new(),
        session_id = %session,
        connection_id = %connection,
        component = "streamer",
    ))]
    async fn push(
        self: Arc<Self>,
        session: SessionId,
        connection: ConnectionId,
        mut subscription: Subscription,
        from_snapshot: bool,
        deflate: Option<Arc<DeflateCache>>,
        mut draining: watch::Receiver<bool>,
    ) -> Option<EventId> {
        // A connection fed from a snapshot has no position in its record until its client's
        // first heartbeat; one is recorded once the snapshot is posted, so that a holder that
        // takes over after a crash resumes it rather than sending a snapshot it cannot mark as
        // a reset.
        let mut unrecorded = from_snapshot;
        loop {
            // Everything taken from the subscription so far has been posted.
            let delivery = tokio::select! {
                biased;
                () = drained(&mut draining) => return subscription.last_delivered(),
                delivery = subscription.next() => delivery,
            };
            let (pending, last) = gather(&mut subscription, delivery, self.batch_delay()).await;
            let messages = match pack(&pending, MAX_FRAME_BYTES) {
                Ok((messages, _)) => messages,
                Err(e) => {
                    metrics::pusher_error("push");
                    warn!(connection_id = %connection, error = %e, "an event cannot be sent; closing");
                    let _ = self.api.delete(connection.as_str()).await;
                    return None;
                }
            };
            for message in messages {
                // A connection granted `deflate` is posted the message's raw deflate (binary).
                let message = match &deflate {
                    Some(cache) => cache.deflate(&message),
                    None => message,
                };
                match self.post_fairly(&connection, message).await {
                    Ok(()) => {}
                    Err(PostError::Gone) => {
                        // The client is gone: its record goes too (idempotent with $disconnect).
                        let _ = self
                            .connections
                            .delete_connection(&session, &connection)
                            .await;
                        return None;
                    }
                    Err(e) => {
                        // Undeliverable in order: close it, so the client resumes cleanly.
                        metrics::pusher_error("push");
                        warn!(connection_id = %connection, error = %e, "push failed; closing the connection");
                        let _ = self.api.delete(connection.as_str()).await;
                        return None;
                    }
                }
            }
            // Every message of the batch is posted: the delivery lag ends here.
            subscription.written(metrics::Transport::WebSocket);
            if last {
                let _ = self.api.delete(connection.as_str()).await;
                return None;
            }
            if unrecorded && let Some(posted) = subscription.last_delivered() {
                unrecorded = false;
                let (inner, session, connection) =
                    (Arc::clone(&self), session.clone(), connection.clone());
                tokio::spawn(async move {
                    inner.record_position(&session, &connection, posted).await;
                });
            }
        }
    }
}

impl Inner {
    /// Posts one message to one connection, retrying as `settings.retry` allows, holding one of
    /// the pod's post permits per attempt only: a slow or throttled connection gives its permit
    /// back before each backoff sleep, so the others post meanwhile. The caller posts a
    /// connection's messages one after the other (one in flight per connection), which keeps
    /// their order.
    async fn post_fairly(
        &self,
        connection: &ConnectionId,
        message: Bytes,
    ) -> Result<(), PostError> {
        retry(self.settings.retry, || async {
            // The semaphore is never closed; FIFO, so a waiting connection is served in turn.
            let _permit = self.posts.acquire().await;
            self.api.post(connection.as_str(), message.clone()).await
        })
        .await
    }
}

/// After a first `delivery`, gathers what else the subscription delivers within `delay` (at low
/// rates a short wait puts more events into one call), up to a frame's size or a last
/// delivery; `true` with the bytes when the last delivery is among them.
impl Inner {
    /// The batch delay in force.
    fn batch_delay(&self) -> Duration {
        Duration::from_micros(self.batch_delay_us.load(Ordering::Relaxed))
    }
}

/// Whole microseconds of `delay`.
fn micros(delay: Duration) -> u64 {
    u64::try_from(delay.as_micros()).unwrap_or(u64::MAX)
}

async fn gather(
    subscription: &mut Subscription,
    delivery: Delivery,
    delay: Duration,
) -> (BytesMut, bool) {
    /// Adds a delivery's bytes; `true` if it was the last.
    fn add(pending: &mut BytesMut, delivery: Delivery) -> bool {
        let (bytes, last) = match delivery {
            Delivery::Frames(bytes) => (bytes, false),
            Delivery::Last(bytes) => (bytes, true),
        };
        pending.extend_from_slice(&bytes);
        last
    }
    let mut pending = BytesMut::new();
    let mut last = add(&mut pending, delivery);
    let deadline = tokio::time::Instant::now() + delay;
    while !last && pending.len() < MAX_FRAME_BYTES {
        match tokio::time::timeout_at(deadline, subscription.next()).await {
            Ok(delivery) => last = add(&mut pending, delivery),
            Err(_) => break,
        }
    }
    (pending, last)
}

#[cfg(test)]
mod tests;
