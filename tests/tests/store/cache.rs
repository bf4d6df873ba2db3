//! The cache layer (`session_core::cache`) over DynamoDB on moto, in process alone and with a
//! real `redis-server` behind it: hits spare DynamoDB reads (counted at the SDK), writes through
//! this process replace their entries, a lost write race drops its entry, another process's
//! write is seen within the TTL, and killing Redis changes nothing a caller sees.

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use aws_sdk_dynamodb::config::interceptors::BeforeTransmitInterceptorContextRef;
use aws_sdk_dynamodb::config::{ConfigBag, Intercept, RuntimeComponents};
use session_core::cache::CachedStore;
use session_core::clock::ManualClock;
use session_core::config::{CacheSettings, StoreSettings};
use session_core::domain::{SessionStatus, SimulatorStatus};
use session_core::store::{DynamoStore, SharedStore, StoreError, create_table};
use session_tests::moto::Moto;

use crate::helpers::{Harness, quotas};

/// Counts the DynamoDB reads (`GetItem`, `Query`) a client sends, each attempt once.
#[derive(Debug, Clone, Default)]
struct Reads(Arc<AtomicU64>);

impl Reads {
    fn count(&self) -> u64 {
        self.0.load(Ordering::SeqCst)
    }
}

impl Intercept for Reads {
    fn name(&self) -> &'static str {
        "Reads"
    }

    fn read_before_transmit(
        &self,
        context: &BeforeTransmitInterceptorContextRef<'_>,
        _: &RuntimeComponents,
        _: &mut ConfigBag,
    ) -> Result<(), aws_sdk_dynamodb::error::BoxError> {
        let target = context
            .request()
            .headers()
            .get("x-amz-target")
            .unwrap_or_default();
        if target.ends_with(".GetItem") || target.ends_with(".Query") {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
        Ok(())
    }
}

/// One table on the shared moto server, and stores over it as separate processes would have.
struct Table {
    name: String,
    clock: ManualClock,
}

impl Table {
    async fn new() -> Self {
        let client =
            DynamoStore::local_client(Moto::shared().endpoint(), &StoreSettings::default(), None);
        let name = format!("cache-{}", ulid::Ulid::new());
        create_table(&client, &name).await.unwrap();
        Self {
            name,
            clock: ManualClock::at_system_time(),
        }
    }

    /// A DynamoDB store over the table on a client of its own, and its read counter.
    fn dynamodb(&self) -> (SharedStore, Reads) {
        let reads = Reads::default();
        let client =
            DynamoStore::local_client(Moto::shared().endpoint(), &StoreSettings::default(), None);
        let config = client
            .config()
            .to_builder()
            .interceptor(reads.clone())
            .build();
        let client = aws_sdk_dynamodb::Client::from_conf(config);
        let store = Arc::new(DynamoStore::new(
            client,
            &self.name,
            Arc::new(self.clock.clone()),
        ));
        (store, reads)
    }

    /// A process's store behind a cache of `settings`, and its DynamoDB read counter.
    fn cached(&self, settings: &CacheSettings) -> (Harness, Reads) {
        let (inner, reads) = self.dynamodb();
        let store = Arc::new(CachedStore::new(
            inner,
            settings,
            Arc::new(self.clock.clone()),
        ));
        let harness = Harness {
            store,
            clock: self.clock.clone(),
            in_region: None,
        };
        (harness, reads)
    }
}

/// In process only, entries served for `ttl`.
fn in_process(ttl: Duration) -> CacheSettings {
    CacheSettings {
        ttl_ms: ttl,
        ..CacheSettings::default()
    }
}

/// A `redis-server` of Debian's package on a free loopback port, without persistence; killed
/// when dropped.
struct Redis {
    child: Child,
    port: u16,
}

impl Redis {
    async fn start() -> Self {
        const SERVER: &str = "/usr/bin/redis-server";
        assert!(
            std::path::Path::new(SERVER).exists(),
            "{SERVER} is missing: the cache tests need a real Redis (apt-get install redis-server)"
        );
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new(SERVER)
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {SERVER}: {e}"));
        // Owned at once, so a server that never listens is killed when the panic drops it.
        let server = Self { child, port };
        for _ in 0..200 {
            if tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .is_ok()
            {
                return server;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("redis-server did not listen on 127.0.0.1:{port} within 2 s");
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Cache settings with this server as the shared tier, entries served for `ttl`.
    fn settings(&self, ttl: Duration) -> CacheSettings {
        CacheSettings {
            redis_url: Some(self.url()),
            ..in_process(ttl)
        }
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Counters of `metrics` recorded while it is the thread's recorder (the tests run on one
/// thread, so every cache call records here).
fn recorder() -> metrics_exporter_prometheus::PrometheusRecorder {
    metrics_exporter_prometheus::PrometheusBuilder::new().build_recorder()
}

/// The sum of `metric`'s series whose labels include `labels` in `rendered`.
fn sum(rendered: &str, metric: &str, labels: &str) -> u64 {
    rendered
        .lines()
        .filter(|line| line.starts_with(metric) && line.contains(labels))
        .filter_map(|line| line.rsplit(' ').next()?.parse::<u64>().ok())
        .sum()
}

#[tokio::test]
async fn repeated_reads_of_hot_items_are_served_in_process_without_dynamodb_reads() {
    let table = Table::new().await;
    let (writer, _) = table.dynamodb();
    let (h, reads) = table.cached(&in_process(Duration::from_secs(30)));
    let session = h.session("alice");
    writer.create_session(&session, 10).await.unwrap();
    let simulator = h.simulator(&session);
    writer
        .create_simulator(&simulator, &session.owner, quotas(5))
        .await
        .unwrap();
    let lease = writer
        .acquire_lease("session/hot", "streamer-1", Duration::from_secs(30))
        .await
        .unwrap();

    for _ in 0..5 {
        assert_eq!(
            h.store.get_session(&session.id).await.unwrap(),
            Some(session.clone())
        );
        assert_eq!(
            h.store
                .get_simulator(&session.id, &simulator.id)
                .await
                .unwrap(),
            Some(simulator.clone())
        );
        assert_eq!(
            h.store.list_simulators(&session.id).await.unwrap(),
            vec![simulator.clone()]
        );
        assert_eq!(
            h.store.get_lease("session/hot").await.unwrap(),
            Some(lease.clone())
        );
    }

    assert_eq!(
        reads.count(),
        4,
        "one DynamoDB read per item, the first time only"
    );
}

#[tokio::test]
async fn a_write_through_this_process_replaces_its_entry_without_a_read() {
    let table = Table::new().await;
    let (h, reads) = table.cached(&in_process(Duration::from_secs(30)));
    let session = h.session("alice");
    h.store.create_session(&session, 10).await.unwrap();
    let connection = h.connection(&session, "conn-1=", Duration::from_secs(60));
    h.store.put_connection(&connection, 5).await.unwrap();

    let closed = session.close(h.now()).unwrap();
    h.store.update_session(&session, &closed).await.unwrap();
    let beat = session_core::domain::Connection {
        version: connection.version + 1,
        served_by: Some("streamer-1".to_owned()),
        ..connection.clone()
    };
    h.store.update_connection(&connection, &beat).await.unwrap();

    let read = h.store.get_session(&session.id).await.unwrap().unwrap();
    assert_eq!(
        (read.status, read.version),
        (SessionStatus::Closed, closed.version)
    );
    let read = h
        .store
        .get_connection(&session.id, &connection.id)
        .await
        .unwrap();
    assert_eq!(read, Some(beat));
    assert_eq!(
        reads.count(),
        0,
        "what this process wrote is read back from the cache"
    );
}

#[tokio::test]
async fn a_lost_write_race_drops_the_entry_so_the_re_read_sees_the_store() {
    let table = Table::new().await;
    let (other, _) = table.dynamodb();
    let (h, _) = table.cached(&in_process(Duration::from_secs(30)));
    let session = h.session("alice");
    h.store.create_session(&session, 10).await.unwrap();
    let simulator = h.simulator(&session);
    h.store
        .create_simulator(&simulator, &session.owner, quotas(5))
        .await
        .unwrap();
    let cached = h
        .store
        .get_simulator(&session.id, &simulator.id)
        .await
        .unwrap()
        .unwrap();
    // Another process moves it on; this one's copy is now stale.
    let running = cached
        .transition(SimulatorStatus::Running, None, h.now())
        .unwrap();
    other.update_simulator(&cached, &running).await.unwrap();

    let stopping = cached
        .transition(SimulatorStatus::Stopping, None, h.now())
        .unwrap();
    let lost = h
        .store
        .update_simulator(&cached, &stopping)
        .await
        .unwrap_err();

    assert!(matches!(lost, StoreError::Conflict { .. }), "{lost:?}");
    let re_read = h
        .store
        .get_simulator(&session.id, &simulator.id)
        .await
        .unwrap();
    assert_eq!(re_read, Some(running.clone()));
    assert_eq!(
        h.store.list_simulators(&session.id).await.unwrap(),
        vec![running]
    );
}

#[tokio::test]
async fn a_write_by_another_process_is_seen_within_the_ttl() {
    let ttl = Duration::from_millis(300);
    let table = Table::new().await;
    let (a, _) = table.cached(&in_process(ttl));
    let (b, _) = table.cached(&in_process(ttl));
    let session = a.session("alice");
    a.store.create_session(&session, 10).await.unwrap();
    assert_eq!(
        b.store.get_session(&session.id).await.unwrap(),
        Some(session.clone())
    );

    let closed = session.close(a.now()).unwrap();
    a.store.update_session(&session, &closed).await.unwrap();
    let written = std::time::Instant::now();

    loop {
        let seen = b.store.get_session(&session.id).await.unwrap().unwrap();
        if seen.status == SessionStatus::Closed {
            break;
        }
        assert!(
            written.elapsed() < ttl + Duration::from_millis(200),
            "the close was not seen within the TTL ({ttl:?})"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn an_item_past_its_expiry_is_absent_though_cached() {
    let table = Table::new().await;
    let (h, _) = table.cached(&in_process(Duration::from_secs(30)));
    let session = h.session("alice");
    h.store.create_session(&session, 10).await.unwrap();

    h.clock
        .advance(crate::helpers::LIFETIME + Duration::from_secs(1));

    assert_eq!(h.store.get_session(&session.id).await.unwrap(), None);
}

#[tokio::test]
async fn with_redis_a_second_process_reads_what_the_first_cached_without_dynamodb() {
    let redis = Redis::start().await;
    let table = Table::new().await;
    let settings = redis.settings(Duration::from_secs(30));
    let (a, _) = table.cached(&settings);
    let (b, b_reads) = table.cached(&settings);
    let session = a.session("alice");
    a.store.create_session(&session, 10).await.unwrap();
    let closed = session.close(a.now()).unwrap();
    a.store.update_session(&session, &closed).await.unwrap();

    let read = b.store.get_session(&session.id).await.unwrap();

    assert_eq!(
        read,
        Some(closed),
        "the newest version, written through by the other process"
    );
    assert_eq!(b_reads.count(), 0, "served by the shared tier");
}

#[tokio::test]
async fn killing_redis_mid_test_changes_nothing_a_caller_sees_and_is_counted() {
    let recorder = recorder();
    let handle = recorder.handle();
    let _local = metrics::set_default_local_recorder(&recorder);
    let mut redis = Redis::start().await;
    let table = Table::new().await;
    let ttl = Duration::from_millis(300);
    let (a, _) = table.cached(&redis.settings(ttl));
    let (b, b_reads) = table.cached(&redis.settings(ttl));
    let session = a.session("alice");
    a.store.create_session(&session, 10).await.unwrap();
    assert_eq!(
        b.store.get_session(&session.id).await.unwrap(),
        Some(session.clone())
    );
    assert_eq!(b_reads.count(), 0);

    redis.kill();
    let closed = session.close(a.now()).unwrap();
    a.store.update_session(&session, &closed).await.unwrap();
    tokio::time::sleep(ttl + Duration::from_millis(50)).await;

    let started = std::time::Instant::now();
    assert_eq!(
        a.store.get_session(&session.id).await.unwrap(),
        Some(closed.clone())
    );
    assert_eq!(
        b.store.get_session(&session.id).await.unwrap(),
        Some(closed.clone())
    );
    let other = a.session("bob");
    a.store.create_session(&other, 10).await.unwrap();
    assert_eq!(b.store.get_session(&other.id).await.unwrap(), Some(other));
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "a dead Redis slowed the reads: {:?}",
        started.elapsed()
    );
    assert!(b_reads.count() >= 2, "the reads went to DynamoDB");
    let rendered = handle.render();
    assert!(
        sum(&rendered, "cache_errors_total", "tier=\"redis\"") >= 1,
        "no cache error counted:\n{rendered}"
    );
    assert!(
        sum(&rendered, "cache_requests_total", "result=\"hit\"") >= 1,
        "{rendered}"
    );
}

/// `h`'s store behind an in-process cache (entries served for a minute), for the contract
/// suite.
pub fn behind_the_cache(h: Harness) -> Harness {
    let store = Arc::new(CachedStore::new(
        h.store,
        &in_process(Duration::from_secs(60)),
        Arc::new(h.clock.clone()),
    ));
    // Each region's store sits behind its own cache, as each region's functions do.
    let clock = h.clock.clone();
    let in_region = h.in_region.map(|inner| -> crate::helpers::InRegion {
        Arc::new(move |fence| {
            Arc::new(CachedStore::new(
                inner(fence),
                &in_process(Duration::from_secs(60)),
                Arc::new(clock.clone()),
            ))
        })
    });
    Harness {
        store,
        clock: h.clock,
        in_region,
    }
}

#[tokio::test]
async fn with_the_cache_disabled_every_read_goes_to_dynamodb() {
    let table = Table::new().await;
    let (inner, reads) = table.dynamodb();
    let off = CacheSettings {
        enabled: false,
        ..CacheSettings::default()
    };
    let store = session_core::cache::wrap(inner, &off, Arc::new(table.clock.clone()));
    let h = Harness {
        store,
        clock: table.clock.clone(),
        in_region: None,
    };
    let session = h.session("alice");
    h.store.create_session(&session, 10).await.unwrap();

    for _ in 0..3 {
        assert_eq!(
            h.store.get_session(&session.id).await.unwrap(),
            Some(session.clone())
        );
    }

    assert_eq!(reads.count(), 3);
}
