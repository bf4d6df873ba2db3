//! Resuming: `EventSource`'s own reconnects (the same URL, its spent ticket, `Last-Event-ID`),
//! the reconnect endpoint's URL, and what happens outside the window or the grace period.

use std::time::Duration;

use session_tests::book_replica::Replica;
use session_tests::sse::{self, Refused, SseStream};
use session_tests::stream_fixture::{Fixture, PATIENCE, read_events};

/// Reopens `url` as `EventSource` does after a drop; the previous connection's release may
/// take a moment to be recorded, as it would during the browser's `retry` delay.
pub async fn reopen(url: &str, last: &str) -> Result<SseStream, Refused> {
    let mut attempt = 0;
    loop {
        match sse::connect(url, &[("last-event-id", last)]).await {
            Err(refused) if refused.status == 403 && attempt < 40 => {
                attempt += 1;
                tokio::time::sleep(Duration::from_millis(25)).await;
            }
            other => return other,
        }
    }
}

/// Reads `count` events of a fresh stream into `replica`, drops it, waits `away`, and resumes
/// from its position with a bearer token: the client's view after a drop.
async fn drop_and_resume(
    fixture: &Fixture,
    replica: &mut Replica,
    count: usize,
    away: Duration,
) -> (String, SseStream) {
    let mut stream = fixture.open().await;
    read_events(&mut stream, replica, count).await;
    let last = replica.position().unwrap();
    drop(stream);
    tokio::time::sleep(away).await;
    let bearer = format!("Bearer {}", fixture.token);
    let stream = sse::connect(
        &fixture.stream_url(),
        &[("authorization", &bearer), ("last-event-id", &last)],
    )
    .await
    .unwrap();
    (last, stream)
}

#[tokio::test]
async fn eventsource_reconnects_with_its_spent_ticket_and_gets_exactly_the_missed_events() {
    let fixture = Fixture::start(&["BTC-USD", "ETH-USD"], 1_000, |_| {}).await;
    let url = fixture.ticket_url().await;
    let mut replica = Replica::default();

    for _ in 0..5 {
        let mut stream = match replica.position() {
            None => sse::connect(&url, &[]).await.unwrap(),
            Some(last) => reopen(&url, &last).await.unwrap(),
        };
        read_events(&mut stream, &mut replica, 100).await;
        drop(stream);
        // The simulator moves on while the client is away.
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    assert_eq!(replica.events, 500);
    assert_eq!(
        replica.resets, 0,
        "every resume inside the window is a replay"
    );
}

#[tokio::test]
async fn a_spent_ticket_never_opens_a_second_stream_beside_the_first() {
    let fixture = Fixture::start(&["BTC-USD"], 500, |_| {}).await;
    let url = fixture.ticket_url().await;
    let mut first = sse::connect(&url, &[]).await.unwrap();
    let mut replica = Replica::default();
    read_events(&mut first, &mut replica, 10).await;
    let last = replica.position().unwrap();

    let beside = sse::connect(&url, &[("last-event-id", &last)])
        .await
        .unwrap_err();
    drop(first);
    let after = reopen(&url, &last).await;
    let third = sse::connect(&url, &[("last-event-id", &last)])
        .await
        .unwrap_err();

    assert_eq!(beside.status, 403, "{beside:?}");
    assert!(
        beside.body["detail"]
            .as_str()
            .unwrap()
            .contains("already_used")
    );
    assert!(after.is_ok(), "the continuation is admitted: {after:?}");
    assert_eq!(third.status, 403, "one continuation per release: {third:?}");
}

#[tokio::test]
async fn a_resume_from_a_position_never_sent_on_the_ticket_is_refused() {
    let fixture = Fixture::start(&["BTC-USD"], 500, |_| {}).await;
    let url = fixture.ticket_url().await;
    let mut stream = sse::connect(&url, &[]).await.unwrap();
    let mut replica = Replica::default();
    read_events(&mut stream, &mut replica, 5).await;
    let epoch = replica.epoch.unwrap();
    drop(stream);
    tokio::time::sleep(Duration::from_millis(200)).await;

    let ahead = sse::connect(
        &url,
        &[("last-event-id", &format!("{epoch}-{}", replica.seq + 1000))],
    )
    .await
    .unwrap_err();
    let other_epoch = sse::connect(&url, &[("last-event-id", &format!("{}-1", epoch + 1))])
        .await
        .unwrap_err();
    let without_position = sse::connect(&url, &[]).await.unwrap_err();

    for refused in [ahead, other_epoch, without_position] {
        assert_eq!(refused.status, 403, "{refused:?}");
        assert_eq!(refused.problem(), "ticket-refused");
    }
}

#[tokio::test]
async fn the_reconnect_endpoints_url_replays_from_its_last_event_id() {
    let fixture = Fixture::start(&["BTC-USD"], 1_000, |_| {}).await;
    let mut replica = Replica::default();
    let mut stream = fixture.open().await;
    read_events(&mut stream, &mut replica, 50).await;
    drop(stream);
    tokio::time::sleep(Duration::from_millis(100)).await;

    let (url, resume) = fixture.reconnect_url(replica.position().as_deref()).await;
    let mut stream = sse::connect(&url, &[]).await.unwrap();
    let first = stream.next(PATIENCE).await.unwrap();
    replica.apply(&first);
    read_events(&mut stream, &mut replica, 50).await;

    assert_eq!(resume["mode"], "replay", "{resume}");
    assert_ne!(
        first.event, "snapshot",
        "a replay starts with the first missed event"
    );
    assert_eq!(replica.resets, 0);
}

#[tokio::test]
async fn a_resume_outside_the_window_gets_a_reset_then_a_snapshot() {
    let fixture = Fixture::start(&["BTC-USD"], 2_000, |s| {
        s.streaming.replay_window_events = 50;
    })
    .await;
    let mut replica = Replica::default();
    // Far more than 50 events go by.
    let (last, mut stream) =
        drop_and_resume(&fixture, &mut replica, 20, Duration::from_millis(500)).await;
    let reset = stream.next(PATIENCE).await.unwrap();
    replica.apply(&reset);
    let snapshot = stream.next(PATIENCE).await.unwrap();
    replica.apply(&snapshot);
    read_events(&mut stream, &mut replica, 50).await;

    assert_eq!(reset.event, "reset");
    assert_eq!(reset.data["reason"], "outside_window");
    assert_eq!(reset.data["last_event_id"], last.as_str());
    assert_eq!(snapshot.event, "snapshot");
    assert_eq!(snapshot.data["cause"], "reset");
}

#[tokio::test]
async fn a_spent_ticket_is_dead_once_its_grace_period_is_over() {
    let fixture = Fixture::start_stack(&["BTC-USD"], 500, |s| {
        s.streamer.resume_grace_secs = Duration::from_secs(1);
    })
    .await;
    let url = fixture.ticket_url().await;
    let mut stream = sse::connect(&url, &[]).await.unwrap();
    let mut replica = Replica::default();
    read_events(&mut stream, &mut replica, 5).await;
    drop(stream);

    tokio::time::sleep(Duration::from_millis(1_500)).await;
    let late = sse::connect(&url, &[("last-event-id", &replica.position().unwrap())])
        .await
        .unwrap_err();

    assert_eq!(late.status, 403, "{late:?}");
    assert_eq!(late.problem(), "ticket-refused");
}

#[tokio::test]
async fn an_expired_ticket_still_resumes_the_stream_it_opened() {
    let fixture = Fixture::start(&["BTC-USD"], 200, |s| {
        s.auth.ticket_ttl_secs = Duration::from_secs(5);
    })
    .await;
    let url = fixture.ticket_url().await;
    let mut stream = sse::connect(&url, &[]).await.unwrap();
    let mut replica = Replica::default();
    read_events(&mut stream, &mut replica, 5).await;

    tokio::time::sleep(Duration::from_secs(6)).await;
    drop(stream);
    let resumed = reopen(&url, &replica.position().unwrap()).await;
    let fresh_use = sse::connect(&fixture.ticket_url().await, &[]).await;

    assert!(resumed.is_ok(), "{resumed:?}");
    assert!(fresh_use.is_ok());
}

#[tokio::test]
async fn a_stream_url_is_not_resumed_once_its_chain_has_run_its_life() {
    let fixture = Fixture::start(&["BTC-USD"], 200, |s| {
        s.auth.ticket_ttl_secs = Duration::from_secs(1);
        s.streaming.resume_chain_secs = Duration::from_secs(1);
    })
    .await;
    let url = fixture.ticket_url().await;
    let mut stream = sse::connect(&url, &[]).await.unwrap();
    let mut replica = Replica::default();
    read_events(&mut stream, &mut replica, 5).await;

    // Connected past the ticket's expiry (its `exp` is rounded up to a whole second: up to 2 s
    // away) and the chain's second after it: the stream itself goes on; only its URL stops
    // opening new connections.
    tokio::time::sleep(Duration::from_millis(3_500)).await;
    read_events(&mut stream, &mut replica, 5).await;
    drop(stream);
    let ended = reopen(&url, &replica.position().unwrap())
        .await
        .unwrap_err();

    assert_eq!(ended.status, 403, "{ended:?}");
    assert_eq!(ended.problem(), "ticket-refused");
    assert!(ended.body.to_string().contains("chain_ended"), "{ended:?}");
}

#[tokio::test]
async fn a_resume_from_before_a_fresh_streams_window_is_backfilled_from_the_simulator() {
    // Without clients the stream goes at once: the next one starts at a new snapshot, ahead of
    // the client, as on a streamer that takes over another's clients.
    let fixture = Fixture::start_stack(&["BTC-USD", "ETH-USD"], 1_000, |s| {
        s.streamer.linger_secs = Duration::from_secs(0);
    })
    .await;
    let mut replica = Replica::default();
    let (last, mut stream) =
        drop_and_resume(&fixture, &mut replica, 50, Duration::from_millis(1_500)).await;
    let seen = read_events(&mut stream, &mut replica, 2_000).await;

    let (epoch, seq) = last.split_once('-').unwrap();
    let next = format!("{epoch}-{}", seq.parse::<u64>().unwrap() + 1);
    assert!(seen.len() >= 2_000, "the stream went on: {}", seen.len());
    assert_eq!(seen[0].id.as_deref(), Some(next.as_str()), "{:?}", seen[0]);
    assert!(
        seen.iter()
            .all(|e| e.event != "snapshot" && e.event != "reset"),
        "a replay, with no reset"
    );
    assert_eq!(replica.resets, 0);
    let metrics = fixture.metrics().await;
    assert!(
        metrics.contains(r#"streamer_backfills_total{outcome="filled"}"#),
        "the events came from a backfill:\n{metrics}"
    );
}
