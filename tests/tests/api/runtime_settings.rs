//! The `settings` profile in the running REST function: a good document changes
//! `limits.sessions_per_user` at the function's next poll, without a restart; a bad document is
//! refused and counted, and the limit in force stays. Served by the local stack's agent API.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::json;
use session_tests::appconfig_dir::{AppConfigDir, counter, eventually};
use session_tests::stream_fixture::PATIENCE;
use session_tests::test_api::{Answer, ConnectedSocket, TestApi, User};
use session_tests::ws;
use tokio_tungstenite::tungstenite::Message;

/// How often the REST function polls the agent in these tests.
const POLL: Duration = Duration::from_millis(100);

const REFUSED: &str = r#"appconfig_refresh_failures_total{profile="settings",reason="invalid"}"#;

/// Creates sessions until one is refused; the refusal.
async fn create_until_refused(user: &User) -> Answer {
    eventually(PATIENCE, "a session refused", || async {
        let answer = user.post("/v1/sessions", &json!({})).await;
        (answer.status != StatusCode::CREATED).then_some(answer)
    })
    .await
}

/// The stack's process-wide Prometheus text (the streamer's `/metrics`).
async fn metrics(api: &TestApi) -> String {
    let url = format!("{}/metrics", api.stack.endpoints().sse);
    reqwest::get(url).await.unwrap().text().await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_settings_document_changes_the_sessions_per_user_limit_at_the_next_poll_and_a_bad_one_keeps_it()
 {
    let dir = AppConfigDir::new();
    let api = TestApi::spawn_stack(|stack| {
        stack.appconfig_dir = Some(dir.path().to_owned());
        stack.service.appconfig.poll_interval_ms = POLL;
        stack.service.rate_limits.writes.burst = 1_000;
    })
    .await;
    let alice = api.user("alice");
    alice.create_session().await;
    alice.create_session().await;

    dir.write("settings", r#"{"limits": {"sessions_per_user": 3}}"#);
    let refused = create_until_refused(&alice).await;
    assert_eq!(refused.status, StatusCode::TOO_MANY_REQUESTS, "{refused:?}");
    assert_eq!(refused.problem(), "quota-exceeded");
    assert_eq!(refused.body["limit"], 3, "{refused:?}");

    for bad in [
        r#"{"limits": {"sessions_per_user": 0}}"#,
        r#"{"limits": {"sessions_per_user": 50, "sesions": 1}}"#,
        r#"{"store": {"table": "other"}}"#,
        "{not json",
    ] {
        let before = counter(&metrics(&api).await, REFUSED);
        dir.write("settings", bad);
        eventually(PATIENCE, bad, || async {
            (counter(&metrics(&api).await, REFUSED) > before).then_some(())
        })
        .await;
        let still = alice.post("/v1/sessions", &json!({})).await;
        assert_eq!(
            still.status,
            StatusCode::TOO_MANY_REQUESTS,
            "{bad}: {still:?}"
        );
        assert_eq!(
            still.body["limit"], 3,
            "the previous limit stays after {bad}"
        );
    }

    // Sessions were created until the document was seen: one more place, one more session.
    let held = alice.get("/v1/sessions").await.body["items"]
        .as_array()
        .map_or(0, Vec::len);
    assert!(held >= 3, "{held} sessions held at a limit of 3");
    dir.write(
        "settings",
        &json!({"limits": {"sessions_per_user": held + 1}}).to_string(),
    );
    let created = eventually(PATIENCE, "a session created again", || async {
        let answer = alice.post("/v1/sessions", &json!({})).await;
        (answer.status == StatusCode::CREATED).then_some(answer)
    })
    .await;
    assert_eq!(created.status, StatusCode::CREATED);
    let full = alice.post("/v1/sessions", &json!({})).await;
    assert_eq!(full.body["limit"], held + 1, "{full:?}");
}

/// Sends heartbeat `seq` and reads the frame it is answered with.
async fn beat(socket: &mut ws::Socket, seq: u64) -> serde_json::Value {
    ws::send(
        socket,
        &json!({"action": "heartbeat", "seq": seq, "client_time": 1_000}),
    )
    .await;
    match ws::next_message(socket, PATIENCE).await {
        Some(Message::Text(text)) => serde_json::from_str(&text).unwrap(),
        other => panic!("no text frame: {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_settings_document_lowers_the_message_quota_of_the_running_websocket_handler() {
    let dir = AppConfigDir::new();
    let api = TestApi::spawn_stack(|stack| {
        stack.appconfig_dir = Some(dir.path().to_owned());
        stack.service.appconfig.poll_interval_ms = POLL;
    })
    .await;
    let mut connected = ConnectedSocket::open(&api, "alice").await;
    // Three heartbeats a second: within the start-up quota (5 a second, a burst of 20).
    let pace = Duration::from_millis(330);
    for seq in 1..=3 {
        let ack = beat(&mut connected.socket, seq).await;
        assert_eq!(ack["type"], "heartbeat_ack", "{ack}");
        tokio::time::sleep(pace).await;
    }

    dir.write(
        "settings",
        r#"{"rate_limits": {"ws_messages": {"per_second": 1, "burst": 1}}}"#,
    );
    let started = std::time::Instant::now();
    let mut seq = 3;
    let limited = loop {
        seq += 1;
        let frame = beat(&mut connected.socket, seq).await;
        if frame["type"] != "heartbeat_ack" || started.elapsed() > PATIENCE {
            break frame;
        }
        tokio::time::sleep(pace).await;
    };
    assert_eq!(
        limited["code"], "rate_limited",
        "the same pace is over the new quota of 1 a second: {limited}"
    );
}
