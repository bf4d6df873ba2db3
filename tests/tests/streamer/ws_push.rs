//! The WebSocket push end to end: browsers connected through the local API Gateway WebSocket
//! emulator get the session's market data posted by the streamer that holds the session's
//! lease; a reconnect with the last event id resumes exactly.

use std::time::Duration;

use session_tests::book_replica::Replica;
use session_tests::stream_fixture::Fixture;

use crate::ws::{WsClient, ws_url};

fn quick_push(s: &mut session_local::stack::StackSettings) {
    s.streamer.push_poll_ms = Duration::from_millis(100);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_websocket_client_gets_the_stream_pushed_in_order_many_events_to_a_message() {
    let fixture = Fixture::start_stack(&["BTC-USD", "ETH-USD"], 1_000, quick_push).await;

    let mut client = WsClient::open(&ws_url(&fixture, None).await).await;
    let first = client.next().await;
    let mut replica = Replica::default();
    replica.apply(&first);
    client.read_into(&mut replica, 1_000).await;

    assert_eq!(first.event, "snapshot");
    assert_eq!(first.data["cause"], "initial");
    assert!(
        client.messages * 5 < 1_000,
        "{} messages for 1,000 events: batched",
        client.messages
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_fed_from_a_snapshot_has_its_position_recorded_before_any_heartbeat() {
    let fixture = Fixture::start_stack(&["BTC-USD"], 200, quick_push).await;

    let mut client = WsClient::open(&ws_url(&fixture, None).await).await;
    let snapshot = client.next().await;
    // The pusher records it beside the push; heartbeats that report no position show it.
    let mut recorded = None;
    for _ in 0..50 {
        let ack = client.heartbeat_ack(None).await;
        recorded = ack["resume"]["last_event_id"].as_str().map(str::to_owned);
        if recorded.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    assert_eq!(snapshot.event, "snapshot");
    let recorded = recorded.expect("a position recorded without a heartbeat reporting one");
    let (epoch, seq) = recorded.split_once('-').unwrap();
    assert_eq!(epoch, snapshot.data["epoch"].to_string());
    // The snapshot's position, or a later one posted by the time the record was written.
    assert!(
        seq.parse::<u64>().unwrap() >= snapshot.data["seq"].as_u64().unwrap(),
        "{recorded} vs {:?}",
        snapshot.id
    );
}

/// One client: reconnects `reconnects` times at random points through the reconnect endpoint
/// (its URL names the last event id), then reads until the simulator's final status.
async fn reconnecting_client(
    fixture: &Fixture,
    seed: u64,
    reconnects: usize,
    done: &std::sync::atomic::AtomicUsize,
) -> Replica {
    let mut dice = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut roll = |below: u64| {
        dice ^= dice >> 12;
        dice ^= dice << 25;
        dice ^= dice >> 27;
        dice.wrapping_mul(0x2545_F491_4F6C_DD1D) % below
    };
    let mut replica = Replica::default();
    let mut client = WsClient::open(&ws_url(fixture, None).await).await;
    for _ in 0..reconnects {
        client.read_into(&mut replica, 1 + roll(200) as usize).await;
        drop(client);
        let last = replica.position().unwrap();
        client = WsClient::open(&ws_url(fixture, Some(&last)).await).await;
    }
    // The last connection is served before the simulator stops.
    client.read_into(&mut replica, 10).await;
    done.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    while replica.last_status.as_deref() != Some("stopped") {
        let event = client.next().await;
        replica.apply(&event);
    }
    replica
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_clients_that_reconnect_hundreds_of_times_end_with_the_simulators_books() {
    const SYMBOLS: [&str; 2] = ["BTC-USD", "ETH-USD"];
    const CLIENTS: usize = 5;
    let fixture = Fixture::start_stack(&SYMBOLS, 1_000, |s| {
        quick_push(s);
        session_tests::stream_fixture::reconnect_without_limits(&mut s.service);
        // Five clients, each with a dropped connection whose `$disconnect` may still be running.
        s.service.limits.connections_per_session = 16;
    })
    .await;
    let done = std::sync::atomic::AtomicUsize::new(0);

    let clients = (0..CLIENTS as u64).map(|seed| reconnecting_client(&fixture, seed, 40, &done));
    let stopper = async {
        while done.load(std::sync::atomic::Ordering::SeqCst) < CLIENTS {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        fixture.stop_simulator().await;
    };
    let (replicas, ()) = tokio::join!(futures_util::future::join_all(clients), stopper);

    for (i, replica) in replicas.iter().enumerate() {
        assert_eq!(
            replica.resets, 0,
            "client {i}: every reconnect inside the window replays"
        );
        for symbol in SYMBOLS {
            replica.assert_matches(symbol, &fixture.get_book(symbol).await);
        }
    }
}
