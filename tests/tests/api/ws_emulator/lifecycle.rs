//! A connection's life: the idle timeout, the duration cap, the client's close, the stack's
//! shutdown, and the quality and reconnect advice heartbeats carry.

use std::time::Duration;

use futures_util::SinkExt as _;
use serde_json::json;
use session_tests::test_api::{ConnectedSocket, TestApi};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

use super::{WAIT, closed_with, connections, exchange, heartbeat, next, now};

#[tokio::test]
async fn an_idle_connection_is_closed_with_1001_and_its_record_removed() {
    let api = TestApi::spawn_stack(|s| s.ws.idle_timeout = Duration::from_millis(300)).await;
    let mut ws = ConnectedSocket::open(&api, "alice").await;

    let code = closed_with(&mut ws.socket).await;

    assert_eq!(code, CloseCode::Away);
    assert_eq!(connections(&ws.user, &ws.session).await, 0);
    assert_eq!(api.stack.ws_api().open_connections(), 0);
}

#[tokio::test]
async fn a_connection_is_closed_with_1001_at_the_cap_and_its_record_removed() {
    let api =
        TestApi::spawn_stack(|s| s.ws.max_connection_duration = Duration::from_millis(300)).await;
    let mut ws = ConnectedSocket::open(&api, "alice").await;

    let code = closed_with(&mut ws.socket).await;

    assert_eq!(code, CloseCode::Away);
    assert_eq!(connections(&ws.user, &ws.session).await, 0);
}

#[tokio::test]
async fn closing_the_client_disconnects_and_removes_the_record() {
    let api = TestApi::spawn().await;
    let mut ws = ConnectedSocket::open(&api, "alice").await;
    let before = connections(&ws.user, &ws.session).await;

    ws.socket.close(None).await.unwrap();
    // The server answers the close frame after `$disconnect` ran; then the socket ends.
    while next(&mut ws.socket).await.is_some() {}

    assert_eq!(before, 1);
    assert_eq!(connections(&ws.user, &ws.session).await, 0);
}

#[tokio::test]
async fn stopping_the_stack_closes_open_connections_with_1001() {
    let api = TestApi::spawn().await;
    let mut ws = ConnectedSocket::open(&api, "alice").await;
    let TestApi { stack, .. } = api;

    let stopping = tokio::spawn(stack.shutdown());
    let code = closed_with(&mut ws.socket).await;
    while next(&mut ws.socket).await.is_some() {}
    let stopped = tokio::time::timeout(WAIT, stopping).await;

    assert_eq!(code, CloseCode::Away);
    assert!(matches!(stopped, Ok(Ok(Ok(())))), "{stopped:?}");
}

/// Milliseconds since the Unix epoch on this machine's clock (the client's clock here).
fn client_clock() -> i64 {
    now().unix_millis()
}

#[tokio::test]
async fn a_delay_on_the_path_raises_rtt_and_jitter_and_poor_quality_is_advised() {
    let api = TestApi::spawn_with(|s| s.websocket.poor_rtt_ms = 200).await;
    let mut ws = ConnectedSocket::open(&api, "alice").await;
    let delay = Duration::from_millis(300);

    // Two prompt rounds, then one whose acknowledgement is held back on its way to the client
    // (read late, as a slow network would deliver it).
    let mut last = exchange(&mut ws.socket, &heartbeat(1)).await;
    let mut seen_at = client_clock();
    let mut quality = Vec::new();
    for seq in 2..=4 {
        let beat = json!({"action": "heartbeat", "seq": seq, "client_time": client_clock(),
            "last_server_time": last["server_time"], "seen_at": seen_at});
        ws.socket
            .send(Message::text(beat.to_string()))
            .await
            .unwrap();
        if seq == 3 {
            tokio::time::sleep(delay).await;
        }
        last = match next(&mut ws.socket).await {
            Some(Message::Text(text)) => serde_json::from_str(&text).unwrap(),
            other => panic!("no text frame: {other:?}"),
        };
        seen_at = client_clock();
        quality.push(last.clone());
    }

    // Heartbeat 4 measures the round that carried the delayed acknowledgement.
    let delayed = &quality[2];
    assert!(
        delayed["quality"]["rtt_ms"].as_u64().unwrap() >= 300,
        "{delayed}"
    );
    assert!(
        delayed["quality"]["jitter_ms"].as_u64().unwrap() > 0,
        "{delayed}"
    );
    assert_eq!(delayed["reconnect"]["reason"], "poor_quality", "{delayed}");
    assert_eq!(quality[0]["quality"]["missed_heartbeats"], 0);
}

#[tokio::test]
async fn near_the_shortened_cap_heartbeats_advise_reconnecting_for_connection_age() {
    let api = TestApi::spawn_with(|s| {
        s.websocket.max_connection_secs = Duration::from_secs(60);
        s.websocket.reconnect_before_cap_secs = Duration::from_secs(59);
    })
    .await;
    let mut ws = ConnectedSocket::open(&api, "alice").await;

    let young = exchange(&mut ws.socket, &heartbeat(1)).await;
    // Past one second of age the connection is within 59 s of its 60 s cap.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let old = exchange(&mut ws.socket, &heartbeat(2)).await;

    assert!(
        young["reconnect"].is_null() || young["reconnect"]["reason"] == "connection_age",
        "{young}"
    );
    assert_eq!(old["reconnect"]["reason"], "connection_age", "{old}");
    assert_eq!(old["resume"]["session_id"], ws.session.as_str());
}
