//! The pusher's batching and lease timing, on paused time and the in-memory store.

use std::sync::Arc;

use session_core::clock::{Clock, ManualClock};
use session_core::domain::{ConnectionQuality, NewSession, Session, Timestamp, UserId};
use session_core::store::{InMemoryStore, SharedStore};

use super::*;
use crate::hub::testing::{snapshot, stream, updates};

const DELAY: Duration = Duration::from_millis(50);

#[test]
fn push_settings_are_the_streamers_durations_and_instance() {
    let streamer = crate::settings::StreamerSettings {
        instance_id: Some("streamer-b".to_owned()),
        push_poll_ms: Duration::from_millis(250),
        lease_ttl_secs: Duration::from_secs(3),
        push_batch_delay_ms: Duration::from_millis(7),
        retry_ms: 1_500,
        push_max_concurrent_posts: 3,
        ..Default::default()
    };

    let push = PushSettings::from_settings(&streamer);

    assert_eq!(push.instance, "streamer-b");
    assert_eq!(push.poll, Duration::from_millis(250));
    assert_eq!(push.lease_ttl, Duration::from_secs(3));
    assert_eq!(push.batch_delay, Duration::from_millis(7));
    assert_eq!(push.retry_ms, 1_500);
    assert_eq!(push.max_concurrent_posts, 3);
}

#[tokio::test(start_paused = true)]
async fn a_batch_gathers_what_comes_within_the_delay_and_no_more() {
    let stream = stream("sim");
    stream.publish(&[snapshot(1, 10)]);
    let mut client = Subscription::new(
        Arc::clone(&stream),
        Start::After(EventId {
            epoch: 1,
            sequence: 10,
        }),
    );
    stream.publish(&updates(1, 11, 11));
    let first = client.next().await;
    let publisher = tokio::spawn({
        let stream = Arc::clone(&stream);
        async move {
            tokio::time::sleep(DELAY / 2).await;
            stream.publish(&updates(1, 12, 12));
            stream.wake();
            tokio::time::sleep(DELAY).await;
            stream.publish(&updates(1, 13, 13));
            stream.wake();
        }
    });
    let started = tokio::time::Instant::now();

    let (pending, last) = gather(&mut client, first, DELAY).await;

    assert_eq!(started.elapsed(), DELAY, "posted when the delay is over");
    assert!(!last);
    let text = String::from_utf8(pending.to_vec()).unwrap();
    assert_eq!(text.matches("event: delta").count(), 2, "{text}");
    assert_eq!(
        client.last_delivered(),
        Some(EventId {
            epoch: 1,
            sequence: 12
        })
    );
    publisher.await.unwrap();
}

/// A session with one WebSocket connection in an in-memory store whose clock is `clock`.
async fn served_session(clock: &ManualClock) -> (SharedStore, SessionId) {
    let store: SharedStore = Arc::new(InMemoryStore::new(Arc::new(clock.clone())));
    let owner = UserId::parse("owner", "alice").unwrap();
    let now = clock.now();
    let session = Session::open(
        owner.clone(),
        NewSession::default(),
        now,
        Duration::from_secs(3_600),
    );
    store.create_session(&session, 10).await.unwrap();
    let connection = Connection {
        id: ConnectionId::parse("id", "L0SM9cOFvHcCIhw=").unwrap(),
        session_id: session.id.clone(),
        owner,
        connected_at: now,
        last_seen_at: now,
        expires_at: now.plus(Duration::from_secs(3_600)),
        last_event_id: None,
        quality: ConnectionQuality::default(),
        served_by: None,
        compression: session_core::domain::Compression::None,
        region: None,
        version: 1,
    };
    store.put_connection(&connection, 10).await.unwrap();
    (store, session.id)
}

#[tokio::test(start_paused = true)]
async fn a_served_session_renews_its_lease_every_poll_and_hands_it_back_on_drain() {
    const POLL: Duration = Duration::from_secs(1);
    const TTL: Duration = Duration::from_secs(5);
    let clock = ManualClock::new(Timestamp::from_unix_millis(1_000_000));
    let (store, session) = served_session(&clock).await;
    let settings = session_core::config::Settings::default();
    let backend =
        Arc::new(session_core::backend::GrpcSimulatorBackend::from_settings(&settings).unwrap());
    let service = StreamService::new(&session_core::service::ServiceParts::from_settings(
        &settings,
        store.clone(),
        backend,
        Arc::new(clock.clone()),
    ));
    let inner = Arc::new(Inner {
        hub: Hub::new(
            crate::hub::testing::unused_upstream(),
            crate::hub::testing::settings(),
        ),
        service,
        connections: store.clone(),
        leases: store.clone(),
        api: ConnectionsApi::local("http://127.0.0.1:9/local"),
        settings: PushSettings {
            instance: "streamer-a".to_owned(),
            poll: POLL,
            lease_ttl: TTL,
            batch_delay: DELAY,
            max_concurrent_posts: 1,
            retry: RetryPolicy {
                max_retries: 0,
                base: Duration::from_millis(10),
                cap: Duration::from_millis(10),
            },
            retry_ms: 1_000,
        },
        batch_delay_us: AtomicU64::new(micros(DELAY)),
        posts: Semaphore::new(1),
    });
    let name = session_lease_name(&session);
    let lease = store.acquire_lease(&name, "streamer-a", TTL).await.unwrap();
    let expiry = || async { store.get_lease(&name).await.unwrap().map(|l| l.expires_at) };
    let start = clock.now();
    let (drain, draining) = watch::channel(false);
    let serving = tokio::spawn(Arc::clone(&inner).serve_session(session, lease, draining));

    // The first round renews at once; the next ones one poll apart.
    tokio::task::yield_now().await;
    assert_eq!(expiry().await, Some(start.plus(TTL)));
    clock.advance(POLL);
    tokio::time::sleep(POLL.saturating_sub(Duration::from_millis(1))).await;
    assert_eq!(expiry().await, Some(start.plus(TTL)), "not before the poll");
    tokio::time::sleep(Duration::from_millis(1)).await;
    tokio::task::yield_now().await;
    assert_eq!(
        expiry().await,
        Some(start.plus(POLL).plus(TTL)),
        "renewed at the poll"
    );

    drain.send_replace(true);
    serving.await.unwrap();
    let released = store.get_lease(&name).await.unwrap();
    assert!(
        released.as_ref().is_none_or(|l| l.is_expired(clock.now())),
        "handed back: {released:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn a_last_delivery_is_posted_without_waiting_for_the_delay() {
    let stream = stream("sim");
    stream.publish(&[snapshot(1, 10)]);
    let mut client = Subscription::new(Arc::clone(&stream), Start::Snapshot);
    let started = tokio::time::Instant::now();

    let (pending, last) = gather(
        &mut client,
        Delivery::Last(bytes::Bytes::from_static(b"event: reconnect\n\n")),
        DELAY,
    )
    .await;

    assert!(last);
    assert_eq!(started.elapsed(), Duration::ZERO);
    assert_eq!(&pending[..], b"event: reconnect\n\n");
}
