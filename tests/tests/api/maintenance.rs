//! `maintenance_mode`, flipped in the folder the local stack serves as the AppConfig Agent's API:
//! REST writes answer `503` `maintenance` with `Retry-After` within the poll interval, reads,
//! open and new streams and WebSockets go on, and writes succeed again once it is flipped back.

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::json;
use session_tests::appconfig_dir::AppConfigDir;
use session_tests::stream_fixture::{Fixture, PATIENCE};
use session_tests::test_api::{Answer, TestApi, User};

/// How often the REST function polls the agent in these tests.
const POLL: Duration = Duration::from_millis(200);

/// Writes the flags document with `maintenance` as the `maintenance_mode` flag.
fn write_flags(dir: &AppConfigDir, maintenance: &serde_json::Value) {
    dir.write(
        "flags",
        &json!({ "maintenance_mode": maintenance }).to_string(),
    );
}

/// Creates sessions until one answers other than `unlike`, for at most a few poll intervals.
async fn create_until_not(user: &User, unlike: StatusCode) -> (Answer, Duration) {
    let started = Instant::now();
    loop {
        let answer = user.post("/v1/sessions", &json!({})).await;
        if answer.status != unlike || started.elapsed() > POLL * 10 {
            return (answer, started.elapsed());
        }
        tokio::time::sleep(POLL / 10).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn maintenance_mode_pauses_writes_within_the_poll_interval_and_reads_and_streams_go_on() {
    let dir = AppConfigDir::new();
    write_flags(&dir, &json!({"enabled": false}));
    let fixture = Fixture::start_stack(&["BTC-USD"], 50, |stack| {
        stack.appconfig_dir = Some(dir.path().to_owned());
        stack.service.appconfig.poll_interval_ms = POLL;
        // Room for the sessions created until the flip is seen.
        stack.service.rate_limits.writes.burst = 1_000;
        stack.service.limits.sessions_per_user = 1_000;
    })
    .await;
    let alice = &fixture.user;
    let session = &fixture.session;
    let mut open_stream = fixture.open().await;
    assert!(
        open_stream.next(PATIENCE).await.is_some(),
        "the stream delivers"
    );

    write_flags(&dir, &json!({"enabled": true}));
    let (refused, after) = create_until_not(alice, StatusCode::CREATED).await;
    assert_eq!(
        refused.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "{refused:?}"
    );
    assert_eq!(refused.problem(), "maintenance");
    assert_eq!(refused.header("retry-after"), Some("1"));
    assert!(after <= POLL * 3, "seen after {after:?}");
    let close = alice.delete(&format!("/v1/sessions/{session}")).await;
    assert_eq!(close.status, StatusCode::SERVICE_UNAVAILABLE, "{close:?}");
    assert_eq!(alice.get("/v1/sessions").await.status, StatusCode::OK);
    assert_eq!(
        alice.get(&format!("/v1/sessions/{session}")).await.status,
        StatusCode::OK
    );
    // Streams go on: the open one keeps delivering, a new ticket opens another, and a
    // WebSocket connects.
    for _ in 0..5 {
        assert!(
            open_stream.next(PATIENCE).await.is_some(),
            "the open stream delivers during maintenance"
        );
    }
    let mut new_stream = fixture.open().await;
    assert!(
        new_stream.next(PATIENCE).await.is_some(),
        "a new stream delivers"
    );
    let ws_url = alice.ws_ticket(session).await.1;
    let handshake = tokio_tungstenite::connect_async(ws_url);
    tokio::time::timeout(PATIENCE, handshake)
        .await
        .expect("the handshake is answered")
        .expect("a WebSocket connects during maintenance");

    write_flags(&dir, &json!({"enabled": false}));
    let (created, _) = create_until_not(alice, StatusCode::SERVICE_UNAVAILABLE).await;
    assert_eq!(created.status, StatusCode::CREATED, "{created:?}");
}

#[tokio::test]
async fn maintenance_mode_for_an_allowed_user_pauses_only_their_writes_and_a_bad_document_keeps_it()
{
    let dir = AppConfigDir::new();
    write_flags(
        &dir,
        &json!({"enabled": true, "rollout_percent": 0, "allow_users": ["alice"]}),
    );
    let api = TestApi::spawn_stack(|stack| {
        stack.appconfig_dir = Some(dir.path().to_owned());
        stack.service.appconfig.poll_interval_ms = POLL;
    })
    .await;
    let (alice, bob) = (api.user("alice"), api.user("bob"));
    let (refused, _) = create_until_not(&alice, StatusCode::CREATED).await;
    assert_eq!(refused.problem(), "maintenance");

    // A document the flags cannot be read from: the last good one stays in force.
    dir.write("flags", r#"{"maintenance_mode": {"enabled": "yes"}}"#);
    tokio::time::sleep(POLL * 3).await;
    let still = alice.post("/v1/sessions", &json!({})).await;
    assert_eq!(still.status, StatusCode::SERVICE_UNAVAILABLE, "{still:?}");
    assert_eq!(
        bob.post("/v1/sessions", &json!({})).await.status,
        StatusCode::CREATED
    );
}
