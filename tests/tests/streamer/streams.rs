//! Opening streams: credentials, headers, the first snapshot and the events after it.

use session_tests::book_replica::Replica;
use session_tests::sse;
use session_tests::stream_fixture::{Fixture, PATIENCE, read_events};

#[tokio::test]
async fn a_ticket_opens_a_stream_that_starts_with_a_snapshot_and_continues_gaplessly() {
    let fixture = Fixture::start(&["BTC-USD", "ETH-USD"], 500, |_| {}).await;

    let mut stream = fixture.open().await;
    let first = stream.next(PATIENCE).await.unwrap();
    let mut replica = Replica::default();
    replica.apply(&first);
    read_events(&mut stream, &mut replica, 200).await;

    assert_eq!(first.event, "snapshot");
    assert_eq!(first.data["cause"], "initial");
    assert_eq!(first.data["books"].as_array().unwrap().len(), 2);
    assert_eq!(
        replica.events, 200,
        "200 events in order after the snapshot"
    );
    assert_eq!(stream.retry_ms, Some(1000), "retry: is set");
    let header = |name: &str| {
        stream
            .headers
            .get(name)
            .unwrap()
            .to_str()
            .unwrap()
            .to_owned()
    };
    assert!(header("content-type").starts_with("text/event-stream"));
    assert!(header("cache-control").contains("no-cache"));
    assert!(header("cache-control").contains("no-transform"));
    assert_eq!(header("x-accel-buffering"), "no");
}

#[tokio::test]
async fn a_bearer_token_opens_a_stream_and_nothing_else_does() {
    let fixture = Fixture::start(&["BTC-USD"], 200, |_| {}).await;
    let url = fixture.stream_url();
    let bearer = format!("Bearer {}", fixture.token);

    let mut stream = sse::connect(&url, &[("authorization", &bearer)])
        .await
        .unwrap();
    let anonymous = sse::connect(&url, &[]).await.unwrap_err();
    let forged = sse::connect(&url, &[("authorization", "Bearer not-a-token")])
        .await
        .unwrap_err();
    let mallory = format!("Bearer {}", fixture.api.stack.token("mallory"));
    let other_user = sse::connect(&url, &[("authorization", &mallory)])
        .await
        .unwrap_err();

    assert_eq!(stream.next(PATIENCE).await.unwrap().event, "snapshot");
    assert_eq!(anonymous.status, 401);
    assert_eq!(anonymous.problem(), "unauthorized");
    assert_eq!(forged.status, 401);
    assert_eq!(
        other_user.status, 404,
        "another user's session is not found"
    );
    assert_eq!(other_user.problem(), "not-found");
}

#[tokio::test]
async fn tickets_are_single_use_and_bound_to_their_session_and_transport() {
    let fixture = Fixture::start(&["BTC-USD"], 200, |_| {}).await;
    let url = fixture.ticket_url().await;
    let other_session = fixture.user.create_session().await;

    let _open = sse::connect(&url, &[]).await.unwrap();
    let replayed = sse::connect(&url, &[]).await.unwrap_err();
    let (_, ws_url) = fixture.user.ws_ticket(&fixture.session).await;
    let ws_ticket = ws_url
        .split("ticket=")
        .nth(1)
        .unwrap()
        .split('&')
        .next()
        .unwrap();
    let wrong_transport =
        sse::connect(&format!("{}?ticket={ws_ticket}", fixture.stream_url()), &[])
            .await
            .unwrap_err();
    let fresh = fixture.ticket_url().await;
    let elsewhere = fresh.replace(&fixture.session, &other_session);
    let wrong_session = sse::connect(&elsewhere, &[]).await.unwrap_err();
    let garbage = sse::connect(&format!("{}?ticket=garbage", fixture.stream_url()), &[])
        .await
        .unwrap_err();

    for (name, refused, why) in [
        ("replayed", &replayed, "already_used"),
        ("ws ticket", &wrong_transport, "wrong_transport"),
        ("other session", &wrong_session, "invalid"),
        ("garbage", &garbage, "invalid"),
    ] {
        assert_eq!(refused.status, 403, "{name}: {refused:?}");
        assert_eq!(refused.problem(), "ticket-refused", "{name}");
        assert!(
            refused.body["detail"].as_str().unwrap().contains(why),
            "{name}: {refused:?}"
        );
    }
}

#[tokio::test]
async fn bad_input_is_refused_with_a_problem_naming_it() {
    let fixture = Fixture::start(&["BTC-USD"], 200, |_| {}).await;
    let bearer = format!("Bearer {}", fixture.token);
    let url = fixture.stream_url();

    let bad_header = sse::connect(
        &url,
        &[("authorization", &bearer), ("last-event-id", "x-1")],
    )
    .await
    .unwrap_err();
    let bad_query = sse::connect(
        &format!("{url}?last_event_id=7"),
        &[("authorization", &bearer)],
    )
    .await
    .unwrap_err();
    let bad_session = sse::connect(
        &url.replace(&fixture.session, "ses_nope"),
        &[("authorization", &bearer)],
    )
    .await
    .unwrap_err();
    let unknown_simulator = sse::connect(
        &format!("{url}?simulator_id=sim_01ARZ3NDEKTSV4RRFFQ69G5FAV"),
        &[("authorization", &bearer)],
    )
    .await
    .unwrap_err();

    assert_eq!(bad_header.status, 400);
    assert_eq!(bad_header.body["field"], "Last-Event-ID");
    assert_eq!(bad_query.body["field"], "last_event_id");
    assert_eq!(bad_session.status, 400);
    assert_eq!(bad_session.body["field"], "session_id");
    assert_eq!(unknown_simulator.status, 404);
}

#[tokio::test]
async fn a_stopped_simulator_ends_the_stream_with_its_status_and_cannot_be_opened_again() {
    let fixture = Fixture::start(&["BTC-USD"], 200, |_| {}).await;
    let mut stream = fixture.open().await;
    let mut replica = Replica::default();
    replica.apply(&stream.next(PATIENCE).await.unwrap());

    fixture.stop_simulator().await;
    while replica.last_status.as_deref() != Some("stopped") {
        let event = stream
            .next(PATIENCE)
            .await
            .expect("the stream goes on until the stop");
        replica.apply(&event);
    }
    let ended = stream.next(PATIENCE).await.unwrap();
    fixture
        .user
        .wait_for_simulator(&fixture.session, &fixture.simulator, "stopped")
        .await;
    let url = fixture.ticket_url().await;
    let refused = sse::connect(&url, &[]).await.unwrap_err();

    assert_eq!(ended.event, "status");
    assert_eq!(
        ended.data["state"], "ended",
        "the stream says it is over: {ended:?}"
    );
    assert_eq!(refused.status, 404, "{refused:?}");
}

#[tokio::test]
async fn the_frontend_origin_may_open_streams_and_others_may_not() {
    let fixture = Fixture::start_stack(&["BTC-USD"], 200, |s| {
        s.streamer.cors_origins = vec!["https://app.example.com".to_owned()];
    })
    .await;
    let client = reqwest::Client::new();
    let preflight = |origin: &'static str| {
        client
            .request(reqwest::Method::OPTIONS, fixture.stream_url())
            .header("origin", origin)
            .header("access-control-request-method", "GET")
            .header("access-control-request-headers", "last-event-id")
            .send()
    };

    let allowed = preflight("https://app.example.com").await.unwrap();
    let denied = preflight("https://evil.example.com").await.unwrap();

    assert_eq!(
        allowed.headers()["access-control-allow-origin"],
        "https://app.example.com"
    );
    assert!(
        denied
            .headers()
            .get("access-control-allow-origin")
            .is_none()
    );
}

/// A fixture whose frontend is `https://app.example.com`.
async fn fixture_with_frontend() -> Fixture {
    Fixture::start_stack(&["BTC-USD"], 200, |s| {
        s.streamer.cors_origins = vec!["https://app.example.com".to_owned()];
    })
    .await
}

#[tokio::test]
async fn a_stream_from_a_foreign_origin_is_refused_with_403_naming_it_and_spends_no_ticket() {
    let fixture = fixture_with_frontend().await;
    let url = fixture.ticket_url().await;

    let refused = sse::connect(&url, &[("origin", "https://evil.example")])
        .await
        .unwrap_err();
    // A spent ticket opens again only as a continuation (with `Last-Event-ID`): this one is not.
    let mut opened = sse::connect(&url, &[("origin", "https://app.example.com")])
        .await
        .expect("the ticket is unspent and the frontend's origin allowed");
    let first = opened.next(PATIENCE).await.unwrap();

    assert_eq!(refused.status, 403, "{refused:?}");
    assert_eq!(refused.problem(), "origin-refused");
    assert!(
        refused.body["detail"]
            .as_str()
            .unwrap()
            .contains("https://evil.example"),
        "{refused:?}"
    );
    assert_eq!(first.event, "snapshot");
}

#[tokio::test]
async fn a_stream_without_origin_is_not_a_browsers_and_opens_with_the_ticket_a_foreign_origin_could_not_use()
 {
    let fixture = fixture_with_frontend().await;
    let url = fixture.ticket_url().await;

    let refused = sse::connect(&url, &[("origin", "https://app.example.com.evil.example")])
        .await
        .unwrap_err();
    let mut opened = sse::connect(&url, &[])
        .await
        .expect("no Origin: not a browser, so the ticket decides");
    let first = opened.next(PATIENCE).await.unwrap();

    assert_eq!(refused.status, 403, "{refused:?}");
    assert_eq!(refused.problem(), "origin-refused");
    assert_eq!(first.event, "snapshot");
}
