//! Sessions: create, list with pagination, detail, close; isolation between users.

use reqwest::StatusCode;
use serde_json::json;
use session_tests::test_api::TestApi;

#[tokio::test]
async fn create_session_returns_201_with_location_and_the_session() {
    let api = TestApi::spawn().await;
    let alice = api.user("alice");

    let answer = alice
        .post(
            "/v1/sessions",
            &json!({"name": "desk 1", "metadata": {"desk": "fx"}}),
        )
        .await;

    assert_eq!(answer.status, StatusCode::CREATED, "{answer:?}");
    let id = answer.body["session_id"].as_str().unwrap();
    assert!(id.starts_with("ses_"));
    assert_eq!(
        answer.header("location"),
        Some(format!("/v1/sessions/{id}").as_str())
    );
    assert_eq!(answer.body["status"], "active");
    assert_eq!(answer.body["name"], "desk 1");
    assert!(
        answer.body["created_at"].as_str().unwrap() < answer.body["expires_at"].as_str().unwrap()
    );
}

#[tokio::test]
async fn list_sessions_pages_with_an_opaque_cursor_until_next_cursor_is_null() {
    let api = TestApi::spawn().await;
    let alice = api.user("alice");
    let mut created = Vec::new();
    for _ in 0..5 {
        created.push(alice.create_session().await);
    }

    let mut seen = Vec::new();
    let mut path = "/v1/sessions?limit=2".to_owned();
    for _ in 0..5 {
        let page = alice.get(&path).await;
        assert_eq!(page.status, StatusCode::OK, "{page:?}");
        let items = page.body["items"].as_array().unwrap();
        assert!(items.len() <= 2);
        seen.extend(
            items
                .iter()
                .map(|s| s["session_id"].as_str().unwrap().to_owned()),
        );
        if let Some(cursor) = page.body["next_cursor"].as_str() {
            path = format!("/v1/sessions?limit=2&cursor={cursor}");
        } else {
            assert!(
                page.body["next_cursor"].is_null(),
                "next_cursor is present and null"
            );
            break;
        }
    }

    seen.sort();
    created.sort();
    assert_eq!(seen, created, "every session exactly once across the pages");
}

#[tokio::test]
async fn session_detail_has_its_simulators_and_connection_count() {
    let api = TestApi::spawn().await;
    let alice = api.user("alice");
    let session = alice.create_session().await;
    let simulator = alice.start_simulator(&session, &["BTC-USD"]).await;

    let answer = alice.get(&format!("/v1/sessions/{session}")).await;

    assert_eq!(answer.status, StatusCode::OK, "{answer:?}");
    assert_eq!(answer.body["session_id"], session.as_str());
    assert_eq!(answer.body["connections"], 0);
    let simulators = answer.body["simulators"].as_array().unwrap();
    assert_eq!(simulators.len(), 1);
    assert_eq!(simulators[0]["simulator_id"], simulator.as_str());
    assert_eq!(simulators[0]["status"], "running");
}

#[tokio::test]
async fn close_session_stops_its_simulators_and_is_idempotent() {
    let api = TestApi::spawn().await;
    let alice = api.user("alice");
    let session = alice.create_session().await;
    let simulator = alice.start_simulator(&session, &["ETH-USD"]).await;

    let first = alice.delete(&format!("/v1/sessions/{session}")).await;
    let second = alice.delete(&format!("/v1/sessions/{session}")).await;

    assert_eq!(first.status, StatusCode::OK, "{first:?}");
    assert_eq!(first.body["status"], "closed");
    assert_eq!(second.status, StatusCode::OK, "{second:?}");
    assert_eq!(second.body["status"], "closed");
    let status = alice
        .wait_for_simulator(&session, &simulator, "stopped")
        .await;
    assert_eq!(status, "stopped");
    let after = alice
        .post(
            &format!("/v1/sessions/{session}/tickets"),
            &json!({"transport": "sse"}),
        )
        .await;
    assert_eq!(after.status, StatusCode::CONFLICT, "{after:?}");
    assert_eq!(after.problem(), "session-closed");
}

#[tokio::test]
async fn another_users_session_is_404_on_every_route_never_403() {
    let api = TestApi::spawn().await;
    let alice = api.user("alice");
    let bob = api.user("bob");
    let session = alice.create_session().await;
    let simulator = alice.start_simulator(&session, &["BTC-USD"]).await;

    let attempts = [
        bob.get(&format!("/v1/sessions/{session}")).await,
        bob.delete(&format!("/v1/sessions/{session}")).await,
        bob.post(
            &format!("/v1/sessions/{session}/simulators"),
            &json!({"symbols": ["BTC-USD"]}),
        )
        .await,
        bob.get(&format!("/v1/sessions/{session}/simulators/{simulator}"))
            .await,
        bob.get(&format!(
            "/v1/sessions/{session}/simulators/{simulator}/book?symbol=BTC-USD"
        ))
        .await,
        bob.delete(&format!("/v1/sessions/{session}/simulators/{simulator}"))
            .await,
        bob.post(
            &format!("/v1/sessions/{session}/tickets"),
            &json!({"transport": "ws"}),
        )
        .await,
        bob.post(
            &format!("/v1/sessions/{session}/reconnect"),
            &json!({"transport": "sse"}),
        )
        .await,
    ];

    for answer in &attempts {
        assert_eq!(answer.status, StatusCode::NOT_FOUND, "{answer:?}");
        assert_eq!(answer.problem(), "not-found");
    }
    let listed = bob.get("/v1/sessions").await;
    assert_eq!(listed.body["items"], json!([]));
    // Alice's session is untouched by Bob's attempts.
    let mine = alice.get(&format!("/v1/sessions/{session}")).await;
    assert_eq!(mine.body["status"], "active");
    assert_eq!(mine.body["simulators"][0]["status"], "running");
}
