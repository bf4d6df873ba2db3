//! The exchange simulator's control API and market-data stream.

use std::time::Duration;

use session_local::simulator::{
    InstanceSettings, MAX_BACKLOG_EVENTS, Replica, STOPPED_RETAINED_EVENTS, SimulatorSettings,
    Simulators,
};
use session_proto::simulator::v1 as pb;
use session_proto::simulator::v1::market_event::Kind;
use tonic::Code;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

use crate::helpers::{
    End, WAIT_TIMEOUT, content, drain, get_book, next_event, read_into, read_until, snapshot_reset,
    spawn_simulator, spawn_simulator_with, start, start_request, subscribe,
    subscribe_with_small_window, wait_for_sequence, within,
};

const SYMBOLS: [&str; 3] = ["BTC-USD", "ETH-USD", "AAPL"];

#[tokio::test]
async fn a_snapshot_and_the_updates_after_it_rebuild_exactly_the_book_get_book_returns() {
    // Arrange
    let simulator = spawn_simulator().await;
    let info = start(&simulator, &SYMBOLS, 42, 5_000).await;
    let mut stream = subscribe(&simulator, &info.simulator_id, None).await;
    let mut replica = Replica::new();
    let first = next_event(&mut stream).await;
    assert_eq!(
        snapshot_reset(&first),
        Some(false),
        "a stream starts with a snapshot"
    );
    replica.apply(&first).unwrap();

    // Act and Assert: at several points of the stream, every symbol
    for round in 0..5 {
        for symbol in SYMBOLS {
            let authoritative = get_book(&simulator, &info.simulator_id, symbol).await;
            assert_eq!(Some(authoritative.epoch), replica.epoch());
            read_until(&mut stream, &mut replica, authoritative.sequence).await;
            let book = authoritative.book.unwrap();
            assert_eq!(
                replica.book(symbol).unwrap(),
                book,
                "round {round}, {symbol}"
            );
            assert!(!book.bids.is_empty() && !book.asks.is_empty());
            assert!(book.bids[0].price < book.asks[0].price, "never crossed");
            replica.raw_book(symbol).unwrap().check().unwrap();
        }
        // The next round compares at a later point of the stream.
        let sequence = replica.sequence().unwrap();
        wait_for_sequence(&simulator, &info.simulator_id, sequence + 500).await;
    }

    // After the stop, the final status and exactly the final books.
    let stopped = simulator
        .control_client()
        .stop(pb::StopRequest {
            simulator_id: info.simulator_id.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    let (end, _) = drain(&mut stream, &mut replica).await;
    assert_eq!(end, End::Clean);
    assert_eq!(replica.sequence(), Some(stopped.sequence));
    for symbol in SYMBOLS {
        let authoritative = get_book(&simulator, &info.simulator_id, symbol).await;
        assert_eq!(authoritative.sequence, stopped.sequence);
        assert_eq!(replica.book(symbol), authoritative.book);
    }
}

#[tokio::test]
async fn every_event_carries_the_instance_id_and_epoch_and_a_gapless_sequence() {
    let simulator = spawn_simulator().await;
    let info = start(&simulator, &["BTC-USD"], 1, 2_000).await;
    let mut stream = subscribe(&simulator, &info.simulator_id, None).await;
    let snapshot = next_event(&mut stream).await;
    let mut sequence = snapshot.sequence;
    let mut kinds = (0, 0);
    for _ in 0..500 {
        let event = next_event(&mut stream).await;
        assert_eq!(event.simulator_id, info.simulator_id);
        assert_eq!(event.epoch, info.epoch);
        assert_eq!(event.sequence, sequence + 1);
        assert!(event.emit_time_unix_nanos > 0);
        sequence = event.sequence;
        match event.kind.unwrap() {
            Kind::Update(update) => {
                kinds.0 += 1;
                assert!(update.levels.iter().all(|l| l.quantity >= 0));
            }
            Kind::Trade(trade) => {
                kinds.1 += 1;
                assert!(trade.quantity > 0 && trade.price > 0);
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    assert!(kinds.0 > 0 && kinds.1 > 0, "updates and trades: {kinds:?}");
}

#[tokio::test]
async fn two_instances_with_the_same_seed_emit_the_same_events_whatever_their_rate() {
    let simulator = spawn_simulator().await;
    let a = start(&simulator, &SYMBOLS, 99, 5_000).await;
    // The same seed at another rate: events depend on the seed and their count only.
    let b = start(&simulator, &SYMBOLS, 99, 20_000).await;
    let c = start(&simulator, &SYMBOLS, 100, 5_000).await;
    assert_ne!(a.epoch, b.epoch, "each instance has its own epoch");
    let mut events = Vec::new();
    for info in [&a, &b, &c] {
        // From sequence 0: every event of the epoch, from the retained window.
        let position = pb::StreamPosition {
            epoch: info.epoch,
            sequence: 0,
        };
        let mut stream = subscribe(&simulator, &info.simulator_id, Some(position)).await;
        let mut contents = Vec::new();
        for _ in 0..1_000 {
            contents.push(content(&next_event(&mut stream).await));
        }
        events.push(contents);
    }
    assert_eq!(events[0], events[1]);
    assert_ne!(events[0], events[2]);
}

#[tokio::test]
async fn resuming_inside_the_window_gets_exactly_the_missed_events() {
    // Arrange: a subscriber that read some events, then dropped.
    let simulator = spawn_simulator().await;
    let info = start(&simulator, &SYMBOLS, 5, 5_000).await;
    let mut replica = Replica::new();
    let mut stream = subscribe(&simulator, &info.simulator_id, None).await;
    read_into(&mut stream, &mut replica, 200).await;
    drop(stream);
    let position = replica.position().unwrap();
    // Thousands of events happen while it is away: more than it is sent from the window at
    // once, far fewer than the window keeps (100 000).
    let missed = 3 * MAX_BACKLOG_EVENTS as u64;
    wait_for_sequence(&simulator, &info.simulator_id, position.sequence + missed).await;

    // Act
    let mut stream = subscribe(&simulator, &info.simulator_id, Some(position)).await;

    // Assert: the next event is the one after the position, no snapshot; every missed event
    // comes once, in order (the replica refuses a gap or a duplicate), and the books agree.
    let first = next_event(&mut stream).await;
    assert_eq!(
        snapshot_reset(&first),
        None,
        "no snapshot inside the window"
    );
    assert_eq!(first.sequence, position.sequence + 1);
    replica.apply(&first).unwrap();
    let authoritative = get_book(&simulator, &info.simulator_id, "ETH-USD").await;
    read_until(&mut stream, &mut replica, authoritative.sequence).await;
    assert_eq!(replica.book("ETH-USD"), authoritative.book);
    assert_eq!(
        replica.snapshot_counts(),
        (1, 0),
        "never a snapshot after the first"
    );
}

#[tokio::test]
async fn resuming_at_the_latest_event_gets_only_new_events() {
    let simulator = spawn_simulator().await;
    let info = start(&simulator, &["BTC-USD"], 5, 1_000).await;
    let sequence = get_book(&simulator, &info.simulator_id, "BTC-USD")
        .await
        .sequence;
    let position = pb::StreamPosition {
        epoch: info.epoch,
        sequence,
    };
    let mut stream = subscribe(&simulator, &info.simulator_id, Some(position)).await;
    assert_eq!(next_event(&mut stream).await.sequence, sequence + 1);
}

#[tokio::test]
async fn resuming_outside_the_window_gets_a_fresh_snapshot_marked_reset() {
    // Arrange: a window of 100 events; 500 events later the position is gone.
    let simulator = spawn_simulator_with(SimulatorSettings {
        instance: InstanceSettings {
            retained_events: 100,
            ..InstanceSettings::default()
        },
        ..SimulatorSettings::default()
    })
    .await;
    let info = start(&simulator, &SYMBOLS, 8, 5_000).await;
    let mut replica = Replica::new();
    let mut stream = subscribe(&simulator, &info.simulator_id, None).await;
    read_into(&mut stream, &mut replica, 10).await;
    drop(stream);
    let position = replica.position().unwrap();
    wait_for_sequence(&simulator, &info.simulator_id, position.sequence + 500).await;

    // Act
    let mut stream = subscribe(&simulator, &info.simulator_id, Some(position)).await;

    // Assert
    let first = next_event(&mut stream).await;
    assert_eq!(snapshot_reset(&first), Some(true));
    assert_eq!(first.epoch, position.epoch);
    assert!(first.sequence >= position.sequence + 500);
    replica.apply(&first).unwrap();
    let authoritative = get_book(&simulator, &info.simulator_id, "AAPL").await;
    read_until(&mut stream, &mut replica, authoritative.sequence).await;
    assert_eq!(replica.book("AAPL"), authoritative.book);
}

#[tokio::test]
async fn resuming_from_another_epoch_or_a_future_sequence_gets_a_snapshot_marked_reset() {
    let simulator = spawn_simulator().await;
    let info = start(&simulator, &["BTC-USD"], 8, 1_000).await;
    for position in [
        pb::StreamPosition {
            epoch: info.epoch.wrapping_add(1),
            sequence: 1,
        },
        pb::StreamPosition {
            epoch: info.epoch,
            sequence: 1_000_000_000,
        },
    ] {
        let mut stream = subscribe(&simulator, &info.simulator_id, Some(position)).await;
        let first = next_event(&mut stream).await;
        assert_eq!(snapshot_reset(&first), Some(true), "{position:?}");
        assert_eq!(first.epoch, info.epoch);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_subscriber_neither_grows_the_instances_memory_nor_slows_a_fast_one() {
    // Arrange: a window of 20 000 events and a broadcast of 16 ticks. The slow subscriber has
    // a 64 KiB flow-control window: once it stops reading, a few hundred events are in flight
    // and nothing else is queued for it anywhere.
    const RETAINED: usize = 20_000;
    const BATCHES: usize = 16;
    // Far more than any event of three symbols encodes to.
    const MAX_EVENT_BYTES: usize = 512;
    let simulator = spawn_simulator_with(SimulatorSettings {
        instance: InstanceSettings {
            retained_events: RETAINED,
            broadcast_batches: BATCHES,
            ..InstanceSettings::default()
        },
        ..SimulatorSettings::default()
    })
    .await;
    let info = start(&simulator, &SYMBOLS, 3, 10_000).await;
    let id = info.simulator_id.as_str();
    let mut slow = subscribe_with_small_window(&simulator, id).await;
    let mut slow_replica = Replica::new();
    read_into(&mut slow, &mut slow_replica, 1).await;
    let stuck_at = slow_replica.sequence().unwrap();
    let mut fast = subscribe(&simulator, id, None).await;
    let mut fast_replica = Replica::new();
    read_into(&mut fast, &mut fast_replica, 1).await;

    // Act: the fast one reads on while the slow one reads nothing, until the instance is one
    // and a half windows past the slow one.
    let far_ahead = stuck_at + (RETAINED + RETAINED / 2) as u64;
    let mut largest_window_bytes = 0;
    while fast_replica.sequence() < Some(far_ahead) {
        read_into(&mut fast, &mut fast_replica, 1_000).await;
        // Assert (all along): what the instance holds stays within its bounds.
        let stats = simulator.simulators().stats(id).unwrap();
        assert!(stats.retained_events <= RETAINED, "{stats:?}");
        assert!(stats.broadcast_batches <= BATCHES, "{stats:?}");
        assert!(
            stats.subscribers <= 2,
            "one receiver each, no queue: {stats:?}"
        );
        largest_window_bytes = largest_window_bytes.max(stats.retained_bytes);
    }

    // Assert: the window's bytes stayed bounded, as did the broadcast (at most BATCHES
    // batches of MAX_BATCH_EVENTS events, checked above); the fast one got far past anything
    // the slow one could hold back, and its books are exactly the simulator's.
    assert!(largest_window_bytes <= RETAINED * MAX_EVENT_BYTES);
    simulator.simulators().stop(id).unwrap();
    let (end, _) = drain(&mut fast, &mut fast_replica).await;
    assert_eq!(end, End::Clean);
    for symbol in SYMBOLS {
        let authoritative = get_book(&simulator, id, symbol).await;
        assert_eq!(fast_replica.sequence(), Some(authoritative.sequence));
        assert_eq!(fast_replica.book(symbol), authoritative.book, "{symbol}");
    }
    // The slow one, reading again, gets what was in flight, then (its missed events being
    // gone from the window) a snapshot marked reset, then the rest: never a silent gap.
    let (end, _) = drain(&mut slow, &mut slow_replica).await;
    assert_eq!(end, End::Clean);
    assert!(
        slow_replica.snapshot_counts().1 >= 1,
        "the slow one was reset"
    );
    for symbol in SYMBOLS {
        let authoritative = get_book(&simulator, id, symbol).await;
        assert_eq!(slow_replica.book(symbol), authoritative.book, "{symbol}");
    }
}

#[tokio::test]
async fn a_stopped_instance_keeps_only_the_tail_of_its_window_and_resumes_before_it_reset() {
    // Arrange: an instance well past the tail a stopped one keeps, and a position before it.
    let simulator = spawn_simulator().await;
    let info = start(&simulator, &SYMBOLS, 8, 10_000).await;
    let id = info.simulator_id.as_str();
    let mut replica = Replica::new();
    let mut stream = subscribe(&simulator, id, None).await;
    read_into(&mut stream, &mut replica, 10).await;
    drop(stream);
    let position = replica.position().unwrap();
    let far = position.sequence + 4 * STOPPED_RETAINED_EVENTS as u64;
    wait_for_sequence(&simulator, id, far).await;
    let running = simulator.simulators().stats(id).unwrap();

    // Act
    simulator.simulators().stop(id).unwrap();

    // Assert: the window shrank to its tail (the memory a closed session leaves behind is
    // bounded), and a resume from before the tail starts over from a snapshot, never a gap.
    let stopped = simulator.simulators().stats(id).unwrap();
    assert!(
        running.retained_events > STOPPED_RETAINED_EVENTS,
        "{running:?}"
    );
    assert_eq!(
        stopped.retained_events, STOPPED_RETAINED_EVENTS,
        "{stopped:?}"
    );
    assert!(
        stopped.retained_bytes < running.retained_bytes,
        "{stopped:?}"
    );
    let mut stream = subscribe(&simulator, id, Some(position)).await;
    let first = next_event(&mut stream).await;
    assert_eq!(snapshot_reset(&first), Some(true));
    replica.apply(&first).unwrap();
    let (end, _) = drain(&mut stream, &mut replica).await;
    assert_eq!(end, End::Clean);
}

#[tokio::test]
async fn stop_sends_a_final_stopped_status_and_ends_every_stream() {
    let simulator = spawn_simulator().await;
    let info = start(&simulator, &["BTC-USD"], 1, 1_000).await;
    let mut stream = subscribe(&simulator, &info.simulator_id, None).await;
    next_event(&mut stream).await;
    let request = pb::StopRequest {
        simulator_id: info.simulator_id.clone(),
    };
    let stopped = simulator
        .control_client()
        .stop(request.clone())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(stopped.state(), pb::SimulatorState::Stopped);
    let mut last = None;
    while let Some(event) = stream.message().await.unwrap() {
        last = Some(event);
    }
    let last = last.unwrap();
    assert_eq!(last.sequence, stopped.sequence);
    assert!(matches!(
        last.kind,
        Some(Kind::Status(pb::StatusChange { state, .. })) if state == pb::SimulatorState::Stopped as i32
    ));
    let again = simulator
        .control_client()
        .stop(request)
        .await
        .unwrap()
        .into_inner();
    assert_eq!(again, stopped, "stop is idempotent");
}

#[tokio::test]
async fn start_with_the_same_client_token_returns_the_same_instance() {
    let simulator = spawn_simulator().await;
    let request = pb::StartRequest {
        symbols: vec!["BTC-USD".into()],
        seed: 1,
        events_per_second: 10,
        client_token: "retry-me".into(),
    };
    let mut control = simulator.control_client();
    let first = control.start(request.clone()).await.unwrap().into_inner();
    let second = control.start(request.clone()).await.unwrap().into_inner();
    assert_eq!(first.simulator_id, second.simulator_id);
    let other = pb::StartRequest { seed: 2, ..request };
    let status = control.start(other).await.unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    let list = control
        .list(pb::ListRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(list.simulators.len(), 1);
}

#[tokio::test]
async fn start_refuses_bad_symbols_and_rates_with_invalid_argument() {
    let simulator = spawn_simulator().await;
    let mut control = simulator.control_client();
    for (symbols, rate) in [
        (vec![], 10),
        (vec!["btc-usd".to_owned()], 10),
        (vec!["BTC-USD".to_owned(), "BTC-USD".to_owned()], 10),
        (vec!["BTC-USD".to_owned()], 0),
        (vec!["BTC-USD".to_owned()], 200_001),
        ((0..17).map(|i| format!("S{i}")).collect(), 10),
    ] {
        let status = control
            .start(pb::StartRequest {
                symbols: symbols.clone(),
                seed: 1,
                events_per_second: rate,
                client_token: String::new(),
            })
            .await
            .unwrap_err();
        assert_eq!(
            status.code(),
            Code::InvalidArgument,
            "{symbols:?} at {rate}/s"
        );
    }
}

#[tokio::test]
async fn unknown_instances_are_not_found_everywhere() {
    let simulator = spawn_simulator().await;
    let id = "sim_unknown".to_owned();
    let status = simulator
        .control_client()
        .get(pb::GetRequest {
            simulator_id: id.clone(),
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::NotFound);
    let status = simulator
        .market_data_client()
        .subscribe(pb::SubscribeRequest {
            simulator_id: id.clone(),
            resume_from: None,
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::NotFound);
    let status = simulator
        .control_client()
        .get_book(pb::GetBookRequest {
            simulator_id: id,
            symbol: "BTC-USD".into(),
            depth: 0,
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::NotFound);
}

#[tokio::test]
async fn list_pages_through_every_instance_oldest_first() {
    let simulator = spawn_simulator().await;
    let mut started = Vec::new();
    for seed in 0..5 {
        started.push(start(&simulator, &["BTC-USD"], seed, 1).await.simulator_id);
    }
    let mut control = simulator.control_client();
    let mut listed = Vec::new();
    let mut page_token = String::new();
    loop {
        let page = control
            .list(pb::ListRequest {
                page_size: 2,
                page_token,
            })
            .await
            .unwrap()
            .into_inner();
        assert!(page.simulators.len() <= 2);
        listed.extend(page.simulators.into_iter().map(|s| s.simulator_id));
        if page.next_page_token.is_empty() {
            break;
        }
        page_token = page.next_page_token;
    }
    assert_eq!(listed, started);
}

#[tokio::test]
async fn get_book_honours_depth_and_refuses_a_symbol_the_instance_does_not_have() {
    let simulator = spawn_simulator().await;
    let info = start(&simulator, &["BTC-USD"], 1, 10).await;
    let mut control = simulator.control_client();
    let book = control
        .get_book(pb::GetBookRequest {
            simulator_id: info.simulator_id.clone(),
            symbol: "BTC-USD".into(),
            depth: 3,
        })
        .await
        .unwrap()
        .into_inner()
        .book
        .unwrap();
    assert_eq!((book.bids.len(), book.asks.len()), (3, 3));
    assert_eq!((book.price_scale, book.quantity_scale), (2, 4));
    let status = control
        .get_book(pb::GetBookRequest {
            simulator_id: info.simulator_id,
            symbol: "ETH-USD".into(),
            depth: 0,
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
}

#[tokio::test(start_paused = true)]
async fn an_instance_paces_its_events_at_any_rate_from_1_to_200_000_per_second() {
    // The producer paces itself on tokio's clock, paused here: the count is checked exactly,
    // whatever else the machine is doing. (The benchmark measures real rates over gRPC.)
    let simulators = Simulators::new(SimulatorSettings::default());
    for (rate, millis) in [
        (1_u32, 30_000_u64),
        (7, 10_000),
        (1_000, 2_000),
        (50_000, 1_000),
        (200_000, 500),
    ] {
        let info = simulators
            .start(&start_request(&["BTC-USD"], 1, rate))
            .unwrap();

        tokio::time::sleep(Duration::from_millis(millis)).await;

        // Sequence 1 is the RUNNING status; the rest are market events. The tick due at the
        // very end may run just before or just after this read.
        let produced = simulators.get(&info.simulator_id).unwrap().sequence - 1;
        let expected = u64::from(rate) * millis / 1_000;
        let per_tick = (u64::from(rate) / 1_000).max(1);
        assert!(
            (expected - per_tick..=expected).contains(&produced),
            "{produced} events in {millis} ms at {rate}/s"
        );
        simulators.stop(&info.simulator_id).unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_instance_at_200_000_events_per_second_streams_them_gaplessly_to_a_subscriber() {
    // Arrange
    let simulator = spawn_simulator().await;
    let info = start(&simulator, &SYMBOLS, 21, 200_000).await;
    let id = info.simulator_id.as_str();
    let mut stream = subscribe(&simulator, id, None).await;
    let mut replica = Replica::new();
    read_into(&mut stream, &mut replica, 1).await;

    // Act: 100 000 events, then stop.
    wait_for_sequence(&simulator, id, replica.sequence().unwrap() + 100_000).await;
    let stopped = simulator.simulators().stop(id).unwrap();

    // Assert: every rule of the stream held (the replica checks each event) up to the final
    // status, and the books are exactly the simulator's. A debug-built client may fall behind
    // this rate: then it resumes from the window or is reset, never silently.
    let (end, delivered) = drain(&mut stream, &mut replica).await;
    assert_eq!(end, End::Clean);
    assert_eq!(replica.sequence(), Some(stopped.sequence));
    assert!(delivered > 0);
    for symbol in SYMBOLS {
        assert_eq!(
            replica.book(symbol),
            get_book(&simulator, id, symbol).await.book
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_books_a_subscriber_rebuilds_keep_every_invariant_after_every_event_for_many_seeds() {
    let simulator = spawn_simulator().await;
    for seed in [0, 1, 99, 123_456_789] {
        let info = start(&simulator, &SYMBOLS, seed, 50_000).await;
        let mut stream = subscribe(&simulator, &info.simulator_id, None).await;
        let mut replica = Replica::new();
        for n in 0..20_000 {
            let event = next_event(&mut stream).await;
            replica.apply(&event).expect("the stream keeps its rules");
            let symbols: Vec<&str> = match event.kind.as_ref().unwrap() {
                Kind::Update(update) => vec![update.symbol.as_str()],
                Kind::Trade(trade) => {
                    assert!(
                        trade.price > 0 && trade.quantity > 0,
                        "seed {seed}, event {n}"
                    );
                    vec![trade.symbol.as_str()]
                }
                _ => SYMBOLS.to_vec(),
            };
            for symbol in symbols {
                let book = replica.raw_book(symbol).unwrap();
                book.check()
                    .unwrap_or_else(|e| panic!("seed {seed}, event {n}, {symbol}: {e}"));
                assert!(
                    book.best_bid().is_some() && book.best_ask().is_some(),
                    "seed {seed}, event {n}, {symbol}: a side ran empty"
                );
            }
        }
        simulator.simulators().stop(&info.simulator_id).unwrap();
    }
}

#[tokio::test]
async fn the_simulator_reports_serving_on_grpc_health_for_each_of_its_services() {
    let simulator = spawn_simulator().await;
    let mut health = HealthClient::new(simulator.channel());
    for service in [
        "",
        "simulator.v1.SimulatorControl",
        "simulator.v1.MarketData",
        "simulator.v1.FaultInjection",
    ] {
        let response = health
            .check(tonic_health::pb::HealthCheckRequest {
                service: service.into(),
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(response.status(), ServingStatus::Serving, "{service:?}");
    }
}

#[tokio::test]
async fn shutdown_ends_open_streams_with_the_final_status() {
    let simulator = spawn_simulator().await;
    let info = start(&simulator, &["BTC-USD"], 1, 1_000).await;
    let mut stream = subscribe(&simulator, &info.simulator_id, None).await;
    next_event(&mut stream).await;
    within(WAIT_TIMEOUT, "shutdown", simulator.shutdown())
        .await
        .unwrap();
    let mut last = None;
    while let Some(event) = stream.message().await.unwrap() {
        last = Some(event);
    }
    assert!(matches!(
        last.unwrap().kind,
        Some(Kind::Status(pb::StatusChange { state, .. })) if state == pb::SimulatorState::Stopped as i32
    ));
}

#[tokio::test]
async fn a_server_whose_instances_come_and_go_keeps_only_the_newest_stopped_ones() {
    // Arrange: at most two stopped instances kept.
    let simulator = spawn_simulator_with(SimulatorSettings {
        max_stopped_instances: 2,
        ..SimulatorSettings::default()
    })
    .await;
    let mut client = simulator.control_client();
    let running = start(&simulator, &["BTC-USD"], 1, 100).await;

    // Act: five sessions' simulators started and stopped, one after the other.
    let mut stopped = Vec::new();
    for seed in 0..5 {
        let info = start(&simulator, &["BTC-USD"], seed, 100).await;
        client
            .stop(pb::StopRequest {
                simulator_id: info.simulator_id.clone(),
            })
            .await
            .unwrap();
        stopped.push(info.simulator_id);
    }

    // Assert: the running one and the two newest stopped ones are kept, the older ones gone.
    assert_eq!(simulator.simulators().counts(), (3, 2));
    for (i, id) in stopped.iter().enumerate() {
        let got = client
            .get(pb::GetRequest {
                simulator_id: id.clone(),
            })
            .await;
        match got {
            Ok(info) => assert!(i >= 3, "{id} kept: {:?}", info.into_inner()),
            Err(status) => {
                assert_eq!(status.code(), Code::NotFound, "{id}");
                assert!(i < 3, "{id} forgotten too early");
            }
        }
    }
    let info = client
        .get(pb::GetRequest {
            simulator_id: running.simulator_id.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(info.state, i32::from(pb::SimulatorState::Running));
}
