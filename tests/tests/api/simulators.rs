//! Simulators: start, status reconciled with the backend, book, stop; start failures and
//! retries through the simulator's fault injection.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::json;
use session_tests::test_api::TestApi;

#[tokio::test]
async fn start_simulator_returns_202_and_the_simulator_runs() {
    let api = TestApi::spawn().await;
    let alice = api.user("alice");
    let session = alice.create_session().await;

    let answer = alice
        .post(
            &format!("/v1/sessions/{session}/simulators"),
            &json!({"symbols": ["BTC-USD", "ETH-USD"], "seed": 42, "events_per_second": 100}),
        )
        .await;

    assert_eq!(answer.status, StatusCode::ACCEPTED, "{answer:?}");
    assert_eq!(answer.body["symbols"], json!(["BTC-USD", "ETH-USD"]));
    assert_eq!(answer.body["seed"], 42);
    let id = answer.body["simulator_id"].as_str().unwrap();
    assert!(id.starts_with("sim_"));
    assert_eq!(
        alice.wait_for_simulator(&session, id, "running").await,
        "running"
    );
}

#[tokio::test]
async fn book_returns_the_authoritative_levels_and_event_id_of_a_symbol() {
    let api = TestApi::spawn().await;
    let alice = api.user("alice");
    let session = alice.create_session().await;
    let simulator = alice.start_simulator(&session, &["BTC-USD"]).await;

    let answer = alice
        .get(&format!(
            "/v1/sessions/{session}/simulators/{simulator}/book?symbol=BTC-USD"
        ))
        .await;

    assert_eq!(answer.status, StatusCode::OK, "{answer:?}");
    assert_eq!(answer.body["symbol"], "BTC-USD");
    let event_id = answer.body["event_id"].as_str().unwrap();
    let (epoch, sequence) = event_id.split_once('-').unwrap();
    assert!(
        epoch.parse::<u64>().is_ok() && sequence.parse::<u64>().is_ok(),
        "{event_id}"
    );
    let bids = answer.body["bids"].as_array().unwrap();
    let asks = answer.body["asks"].as_array().unwrap();
    assert!(!bids.is_empty() && !asks.is_empty(), "{answer:?}");
    let best_bid: f64 = bids[0]["price"].as_str().unwrap().parse().unwrap();
    let best_ask: f64 = asks[0]["price"].as_str().unwrap().parse().unwrap();
    assert!(best_bid < best_ask, "the book is not crossed");

    let other = alice
        .get(&format!(
            "/v1/sessions/{session}/simulators/{simulator}/book?symbol=ETH-USD"
        ))
        .await;
    assert_eq!(other.status, StatusCode::NOT_FOUND, "{other:?}");
    assert_eq!(other.problem(), "not-found");
}

#[tokio::test]
async fn stop_simulator_is_idempotent_and_the_book_is_then_a_conflict() {
    let api = TestApi::spawn().await;
    let alice = api.user("alice");
    let session = alice.create_session().await;
    let simulator = alice.start_simulator(&session, &["BTC-USD"]).await;
    let path = format!("/v1/sessions/{session}/simulators/{simulator}");

    let first = alice.delete(&path).await;
    let second = alice.delete(&path).await;

    assert_eq!(first.status, StatusCode::OK, "{first:?}");
    assert_eq!(second.status, StatusCode::OK, "{second:?}");
    assert_eq!(second.body["status"], "stopped");
    let book = alice.get(&format!("{path}/book?symbol=BTC-USD")).await;
    assert_eq!(book.status, StatusCode::CONFLICT, "{book:?}");
    assert_eq!(book.problem(), "simulator-not-running");
}

#[tokio::test]
async fn transient_start_failures_are_retried_and_the_simulator_runs() {
    let api = TestApi::spawn().await;
    let alice = api.user("alice");
    let session = alice.create_session().await;
    // Two UNAVAILABLE answers; the default policy makes up to 4 attempts.
    api.stack
        .simulator()
        .simulators()
        .fail_starts(2, Duration::ZERO);

    let answer = alice
        .post(
            &format!("/v1/sessions/{session}/simulators"),
            &json!({"symbols": ["BTC-USD"]}),
        )
        .await;

    assert_eq!(answer.status, StatusCode::ACCEPTED, "{answer:?}");
    let id = answer.body["simulator_id"].as_str().unwrap();
    assert_eq!(
        alice.wait_for_simulator(&session, id, "running").await,
        "running"
    );
}

#[tokio::test]
async fn a_start_that_keeps_failing_ends_failed_with_a_reason_never_stuck_starting() {
    let api = TestApi::spawn().await;
    let alice = api.user("alice");
    let session = alice.create_session().await;
    api.stack
        .simulator()
        .simulators()
        .fail_starts(1000, Duration::ZERO);

    let answer = alice
        .post(
            &format!("/v1/sessions/{session}/simulators"),
            &json!({"symbols": ["BTC-USD"]}),
        )
        .await;

    let id = answer.body["simulator_id"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let status = if answer.status == StatusCode::ACCEPTED {
        alice.wait_for_simulator(&session, &id, "failed").await
    } else {
        panic!("a failed start is still a recorded simulator: {answer:?}");
    };
    assert_eq!(status, "failed");
    let detail = alice
        .get(&format!("/v1/sessions/{session}/simulators/{id}"))
        .await;
    let reason = detail.body["reason"].as_str().unwrap();
    assert!(!reason.is_empty());
    assert!(
        !reason.contains("tonic") && !reason.contains("127.0.0.1"),
        "no internals: {reason}"
    );
    // A failed simulator does not count against the quota: a new start works once the fault
    // is gone.
    api.stack.simulator().simulators().clear_faults();
    let again = alice.start_simulator(&session, &["BTC-USD"]).await;
    assert_ne!(again, id);
}
