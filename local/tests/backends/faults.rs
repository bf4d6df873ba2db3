//! Every fault of the reference simulator, through the `FaultInjection` service, the in-process
//! API and the start-up config.

use std::time::Duration;

use session_local::simulator::{FaultConfig, Replica, SimulatorSettings};
use session_proto::simulator::v1 as pb;
use tokio::time::Instant;
use tonic::{Code, Streaming};

use crate::helpers::{
    End, WAIT_TIMEOUT, content, drain, get_book, next_event, read_into, read_until, snapshot_reset,
    spawn_simulator, spawn_simulator_with, start, start_request, subscribe, within,
};

fn end_streams(
    id: &str,
    after_events: u64,
    open_streams: bool,
    next_streams: u32,
) -> pb::EndStreamsRequest {
    pb::EndStreamsRequest {
        simulator_id: id.to_owned(),
        after_events,
        open_streams,
        next_streams,
    }
}

/// Reads until the stream ends; panics if it does not end within [`WAIT_TIMEOUT`].
async fn events_until_end(stream: &mut Streaming<pb::MarketEvent>) -> (End, u64) {
    let mut replica = Replica::new();
    within(
        WAIT_TIMEOUT,
        "the end of the stream",
        drain(stream, &mut replica),
    )
    .await
}

#[tokio::test]
async fn end_streams_ends_open_streams_with_unavailable_after_the_given_number_of_events() {
    // Arrange
    let simulator = spawn_simulator().await;
    let info = start(&simulator, &["BTC-USD"], 1, 200).await;
    let id = info.simulator_id.as_str();
    let mut stream = subscribe(&simulator, id, None).await;
    next_event(&mut stream).await;

    // Act
    simulator
        .fault_client()
        .end_streams(end_streams(id, 10, true, 0))
        .await
        .unwrap();
    let ordered_by = simulator.simulators().get(id).unwrap().sequence;

    // Assert: UNAVAILABLE after ten events sent after the order; events sent before it may
    // still have been on their way. Every event beyond `ordered_by` was sent after the order:
    // ten of them, or eleven if one was leaving just as the order landed.
    let mut sequences = Vec::new();
    let end = within(WAIT_TIMEOUT, "the end of the stream", async {
        loop {
            match stream.message().await {
                Ok(Some(event)) => sequences.push(event.sequence),
                Ok(None) => return End::Clean,
                Err(status) => return End::Status(status.code()),
            }
        }
    })
    .await;
    assert_eq!(end, End::Status(Code::Unavailable));
    assert!(
        sequences.len() >= 10,
        "{} events after the order",
        sequences.len()
    );
    let after_order = sequences.iter().filter(|s| **s > ordered_by).count();
    assert!(
        after_order <= 11,
        "{after_order} events sent after the order"
    );
    // A stream opened after the order is not affected, even when the plan changes later.
    let mut later = subscribe(&simulator, id, None).await;
    simulator
        .fault_client()
        .stall_streams(pb::StallStreamsRequest {
            simulator_id: id.to_owned(),
            duration_millis: 1,
        })
        .await
        .unwrap();
    let mut replica = Replica::new();
    read_into(&mut later, &mut replica, 20).await;
}

#[tokio::test]
async fn end_streams_cuts_exactly_the_next_subscriptions_counting_their_snapshot() {
    let simulator = spawn_simulator().await;
    let info = start(&simulator, &["BTC-USD"], 1, 2_000).await;
    let mut open = subscribe(&simulator, &info.simulator_id, None).await;
    let mut open_replica = Replica::new();
    read_into(&mut open, &mut open_replica, 1).await;
    simulator
        .fault_client()
        .end_streams(end_streams(&info.simulator_id, 5, false, 2))
        .await
        .unwrap();

    for _ in 0..2 {
        let mut cut = subscribe(&simulator, &info.simulator_id, None).await;
        assert_eq!(
            events_until_end(&mut cut).await,
            (End::Status(Code::Unavailable), 5)
        );
    }
    let mut third = subscribe(&simulator, &info.simulator_id, None).await;
    let mut replica = Replica::new();
    read_into(&mut third, &mut replica, 200).await;
    // The open stream is not affected.
    read_into(&mut open, &mut open_replica, 200).await;
}

#[tokio::test]
async fn end_streams_after_zero_events_ends_a_new_stream_before_its_snapshot() {
    let simulator = spawn_simulator().await;
    let info = start(&simulator, &["BTC-USD"], 1, 100).await;
    simulator
        .fault_client()
        .end_streams(end_streams(&info.simulator_id, 0, false, 1))
        .await
        .unwrap();
    let mut stream = subscribe(&simulator, &info.simulator_id, None).await;
    assert_eq!(
        events_until_end(&mut stream).await,
        (End::Status(Code::Unavailable), 0)
    );
}

#[tokio::test]
async fn stall_streams_sends_nothing_for_the_duration_then_resumes_without_a_gap() {
    // Arrange
    let simulator = spawn_simulator().await;
    let info = start(&simulator, &["BTC-USD", "ETH-USD"], 1, 1_000).await;
    let id = info.simulator_id.as_str();
    let mut stream = subscribe(&simulator, id, None).await;
    let mut replica = Replica::new();
    read_into(&mut stream, &mut replica, 50).await;

    // Act
    let stall = Duration::from_millis(500);
    let stalled_at = Instant::now();
    simulator
        .fault_client()
        .stall_streams(pb::StallStreamsRequest {
            simulator_id: id.to_owned(),
            duration_millis: stall.as_millis() as u32,
        })
        .await
        .unwrap();
    let stalled_by = simulator.simulators().get(id).unwrap().sequence;
    // A stream opened now stalls too: not even its snapshot comes before the stall ends.
    let mut opened_during = subscribe(&simulator, id, None).await;

    // Assert: events sent before the order (up to `stalled_by`) may still arrive; a later one
    // only once the stall is over, whenever that is on a busy machine.
    loop {
        let event = next_event(&mut stream).await;
        replica.apply(&event).unwrap();
        if event.sequence > stalled_by {
            let elapsed = stalled_at.elapsed();
            assert!(
                elapsed >= stall,
                "event {} came {elapsed:?} into the stall",
                event.sequence
            );
            break;
        }
    }
    // The instance produced meanwhile; the stream goes on from where it was, no reset.
    let authoritative = get_book(&simulator, id, "ETH-USD").await;
    read_until(&mut stream, &mut replica, authoritative.sequence).await;
    assert_eq!(replica.book("ETH-USD"), authoritative.book);
    assert_eq!(replica.snapshot_counts(), (1, 0), "resumed, not reset");
    let first = next_event(&mut opened_during).await;
    assert_eq!(snapshot_reset(&first), Some(false));
    assert!(stalled_at.elapsed() >= stall);
}

#[tokio::test]
async fn restart_starts_a_new_epoch_ends_open_streams_and_resets_resuming_subscribers() {
    // Arrange
    let simulator = spawn_simulator().await;
    let info = start(&simulator, &["BTC-USD"], 4, 2_000).await;
    let mut stream = subscribe(&simulator, &info.simulator_id, None).await;
    let mut replica = Replica::new();
    read_into(&mut stream, &mut replica, 100).await;

    // Act
    let restarted = simulator
        .fault_client()
        .restart(pb::RestartRequest {
            simulator_id: info.simulator_id.clone(),
        })
        .await
        .unwrap()
        .into_inner();

    // Assert: a new epoch, the sequence from the start, the open stream ended UNAVAILABLE.
    assert_ne!(restarted.epoch, info.epoch);
    assert_eq!(restarted.state(), pb::SimulatorState::Running);
    assert_eq!(
        restarted.sequence, 1,
        "the sequence restarted with the RUNNING status"
    );
    let (end, _) = drain(&mut stream, &mut replica).await;
    assert_eq!(end, End::Status(Code::Unavailable));
    // Resuming from the old epoch: a snapshot of the new one, marked reset.
    let mut resumed = subscribe(&simulator, &info.simulator_id, replica.position()).await;
    let first = next_event(&mut resumed).await;
    assert_eq!(snapshot_reset(&first), Some(true));
    assert_eq!(first.epoch, restarted.epoch);
    replica.apply(&first).unwrap();
    let authoritative = get_book(&simulator, &info.simulator_id, "BTC-USD").await;
    assert_eq!(authoritative.epoch, restarted.epoch);
    read_until(&mut resumed, &mut replica, authoritative.sequence).await;
    assert_eq!(replica.book("BTC-USD"), authoritative.book);
    // The books were rebuilt from the seed: after its status event, the new epoch replays the
    // events of a fresh instance with the same seed.
    let twin = start(&simulator, &["BTC-USD"], 4, 2_000).await;
    let mut contents = Vec::new();
    for (id, epoch) in [
        (&info.simulator_id, restarted.epoch),
        (&twin.simulator_id, twin.epoch),
    ] {
        let from_start = pb::StreamPosition { epoch, sequence: 1 };
        let mut stream = subscribe(&simulator, id, Some(from_start)).await;
        let mut events = Vec::new();
        for _ in 0..200 {
            events.push(content(&next_event(&mut stream).await));
        }
        contents.push(events);
    }
    assert_eq!(contents[0], contents[1]);
}

#[tokio::test]
async fn restart_refuses_a_stopped_instance_and_an_unknown_one() {
    let simulator = spawn_simulator().await;
    let info = start(&simulator, &["BTC-USD"], 4, 10).await;
    simulator.simulators().stop(&info.simulator_id).unwrap();
    let mut faults = simulator.fault_client();
    let status = faults
        .restart(pb::RestartRequest {
            simulator_id: info.simulator_id,
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::FailedPrecondition);
    let status = faults
        .restart(pb::RestartRequest {
            simulator_id: "sim_nope".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::NotFound);
}

#[tokio::test]
async fn fail_starts_answers_unavailable_for_the_next_count_calls() {
    let simulator = spawn_simulator().await;
    simulator
        .fault_client()
        .fail_starts(pb::FailStartsRequest {
            count: 2,
            duration_millis: 0,
        })
        .await
        .unwrap();
    let mut control = simulator.control_client();
    let request = pb::StartRequest {
        symbols: vec!["BTC-USD".into()],
        seed: 1,
        events_per_second: 10,
        client_token: "t".into(),
    };
    for _ in 0..2 {
        let status = control.start(request.clone()).await.unwrap_err();
        assert_eq!(status.code(), Code::Unavailable);
    }
    control.start(request).await.unwrap();
}

#[tokio::test]
async fn fail_starts_answers_unavailable_for_the_duration_and_not_after() {
    // Arrange: the in-process API does the same as the gRPC call.
    let simulator = spawn_simulator().await;
    let duration = Duration::from_secs(1);
    let armed_at = Instant::now();
    simulator.simulators().fail_starts(0, duration);
    let armed_by = Instant::now();
    let mut control = simulator.control_client();
    let request = start_request(&["BTC-USD"], 1, 10);

    // Act: try until a start succeeds.
    let mut answers = Vec::new();
    within(WAIT_TIMEOUT, "a successful start", async {
        loop {
            let sent = Instant::now();
            let answer = control.start(request.clone()).await;
            let ok = answer.is_ok();
            answers.push((sent, Instant::now(), answer.map_err(|s| s.code())));
            if ok {
                break;
            }
            // Pacing of the retries, not an assertion.
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;

    // Assert, from what the client can know of the server's clock: a call refused was sent
    // before the fault ended; the call that succeeded returned after it ended; and a call that
    // returned while the fault surely lasted was refused.
    let fault_ends_by = armed_by + duration;
    for (sent, returned, answer) in &answers {
        match answer {
            Err(code) => {
                assert_eq!(*code, Code::Unavailable);
                assert!(*sent < fault_ends_by, "refused after the fault ended");
            }
            Ok(_) => assert!(
                *returned - armed_at >= duration,
                "started while the fault lasted"
            ),
        }
        if *returned < armed_at + duration {
            assert!(answer.is_err(), "a start succeeded while the fault lasted");
        }
    }
}

#[tokio::test]
async fn clear_faults_disarms_stalls_failing_starts_and_pending_cuts() {
    let simulator = spawn_simulator().await;
    let info = start(&simulator, &["BTC-USD"], 1, 1_000).await;
    let mut faults = simulator.fault_client();
    let mut stream = subscribe(&simulator, &info.simulator_id, None).await;
    let mut replica = Replica::new();
    read_into(&mut stream, &mut replica, 10).await;
    faults
        .stall_streams(pb::StallStreamsRequest {
            simulator_id: info.simulator_id.clone(),
            duration_millis: 600_000,
        })
        .await
        .unwrap();
    faults
        .fail_starts(pb::FailStartsRequest {
            count: 100,
            duration_millis: 600_000,
        })
        .await
        .unwrap();
    faults
        .end_streams(end_streams(&info.simulator_id, 0, false, 5))
        .await
        .unwrap();

    faults
        .clear_faults(pb::ClearFaultsRequest {})
        .await
        .unwrap();

    read_into(&mut stream, &mut replica, 100).await;
    start(&simulator, &["ETH-USD"], 1, 10).await;
    let mut fresh = subscribe(&simulator, &info.simulator_id, None).await;
    let mut fresh_replica = Replica::new();
    read_into(&mut fresh, &mut fresh_replica, 20).await;
}

#[tokio::test]
async fn faults_from_the_start_up_config_apply_until_cleared() {
    let simulator = spawn_simulator_with(SimulatorSettings {
        faults: FaultConfig {
            unavailable_starts: 1,
            end_streams_after: Some(3),
            ..FaultConfig::default()
        },
        ..SimulatorSettings::default()
    })
    .await;
    let mut control = simulator.control_client();
    let request = pb::StartRequest {
        symbols: vec!["BTC-USD".into()],
        seed: 1,
        events_per_second: 500,
        client_token: String::new(),
    };
    let status = control.start(request.clone()).await.unwrap_err();
    assert_eq!(status.code(), Code::Unavailable);
    let info = control.start(request).await.unwrap().into_inner();
    for _ in 0..2 {
        let mut stream = subscribe(&simulator, &info.simulator_id, None).await;
        assert_eq!(
            events_until_end(&mut stream).await,
            (End::Status(Code::Unavailable), 3)
        );
    }
    simulator.simulators().clear_faults();
    let mut stream = subscribe(&simulator, &info.simulator_id, None).await;
    let mut replica = Replica::new();
    read_into(&mut stream, &mut replica, 20).await;
}

#[tokio::test]
async fn fault_requests_for_unknown_instances_or_bad_durations_are_refused() {
    let simulator = spawn_simulator().await;
    let mut faults = simulator.fault_client();
    let status = faults
        .end_streams(end_streams("sim_nope", 1, true, 0))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::NotFound);
    let info = start(&simulator, &["BTC-USD"], 1, 10).await;
    for duration_millis in [0, 600_001] {
        let status = faults
            .stall_streams(pb::StallStreamsRequest {
                simulator_id: info.simulator_id.clone(),
                duration_millis,
            })
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument, "{duration_millis} ms");
    }
}
