//! Connect tickets and reconnect advice.

use reqwest::StatusCode;
use serde_json::json;
use session_tests::test_api::TestApi;

#[tokio::test]
async fn a_ticket_comes_with_the_url_of_its_transport() {
    let api = TestApi::spawn().await;
    let alice = api.user("alice");
    let session = alice.create_session().await;
    let simulator = alice.start_simulator(&session, &["BTC-USD"]).await;
    let path = format!("/v1/sessions/{session}/tickets");

    let sse = alice.post(&path, &json!({"transport": "sse"})).await;
    let ws = alice.post(&path, &json!({"transport": "ws"})).await;

    assert_eq!(sse.status, StatusCode::CREATED, "{sse:?}");
    let ticket = sse.body["ticket"].as_str().unwrap();
    let url = sse.body["url"].as_str().unwrap();
    assert!(
        url.starts_with("http://") && url.contains(&format!("/v1/sessions/{session}/stream?")),
        "{url}"
    );
    assert!(url.contains(&format!("ticket={ticket}")), "{url}");
    assert!(url.contains(&format!("simulator_id={simulator}")), "{url}");
    assert_eq!(sse.body["simulator_id"], simulator.as_str());
    assert!(sse.body["expires_at"].is_string());
    assert_eq!(ws.status, StatusCode::CREATED, "{ws:?}");
    assert!(ws.body["url"].as_str().unwrap().starts_with("ws://"));
    assert_ne!(
        ws.body["ticket"], sse.body["ticket"],
        "tickets are single-use, so each is new"
    );
}

#[tokio::test]
async fn reconnect_without_a_last_event_id_restarts_from_a_snapshot() {
    let api = TestApi::spawn().await;
    let alice = api.user("alice");
    let session = alice.create_session().await;
    alice.start_simulator(&session, &["BTC-USD"]).await;

    let answer = alice
        .post(
            &format!("/v1/sessions/{session}/reconnect"),
            &json!({"transport": "sse"}),
        )
        .await;

    assert_eq!(answer.status, StatusCode::OK, "{answer:?}");
    assert!(answer.body["ticket"].is_string() && answer.body["url"].is_string());
    assert_eq!(answer.body["resume"]["mode"], "snapshot");
    assert_eq!(answer.body["resume"]["reason"], "no_last_event_id");
}

#[tokio::test]
async fn reconnect_from_a_recent_event_replays_and_from_another_epoch_resets() {
    let api = TestApi::spawn().await;
    let alice = api.user("alice");
    let session = alice.create_session().await;
    let simulator = alice.start_simulator(&session, &["BTC-USD"]).await;
    let book = alice
        .get(&format!(
            "/v1/sessions/{session}/simulators/{simulator}/book?symbol=BTC-USD"
        ))
        .await;
    let event_id = book.body["event_id"].as_str().unwrap().to_owned();
    let (epoch, _) = event_id.split_once('-').unwrap();
    let path = format!("/v1/sessions/{session}/reconnect");

    let recent = alice
        .post(
            &path,
            &json!({"transport": "ws", "last_event_id": event_id}),
        )
        .await;
    let other_epoch = format!("{}-5", epoch.parse::<u64>().unwrap().wrapping_add(1).max(1));
    let stale = alice
        .post(
            &path,
            &json!({"transport": "ws", "last_event_id": other_epoch}),
        )
        .await;

    assert_eq!(recent.status, StatusCode::OK, "{recent:?}");
    assert_eq!(recent.body["resume"]["mode"], "replay", "{recent:?}");
    assert_eq!(recent.body["resume"]["from"], event_id.as_str());
    assert!(recent.body["url"].as_str().unwrap().starts_with("ws://"));
    assert_eq!(stale.body["resume"]["mode"], "snapshot", "{stale:?}");
    assert_eq!(stale.body["resume"]["reason"], "epoch_changed");
}

#[tokio::test]
async fn a_malformed_last_event_id_is_a_400_naming_the_field() {
    let api = TestApi::spawn().await;
    let alice = api.user("alice");
    let session = alice.create_session().await;

    let answer = alice
        .post(
            &format!("/v1/sessions/{session}/reconnect"),
            &json!({"transport": "sse", "last_event_id": "yesterday"}),
        )
        .await;

    assert_eq!(answer.status, StatusCode::BAD_REQUEST, "{answer:?}");
    assert_eq!(answer.problem(), "validation-error");
    assert_eq!(answer.body["field"], "last_event_id");
}
