//! Quotas hold under concurrent requests: exactly the quota succeeds, the rest are 429s that
//! name the quota.

use futures_util::future::join_all;
use reqwest::StatusCode;
use serde_json::json;
use session_tests::test_api::TestApi;

#[tokio::test]
async fn concurrent_session_creates_stop_exactly_at_the_quota() {
    let api = TestApi::spawn_with(|s| {
        s.limits.sessions_per_user = 3;
        // The burst of writes above the flood, so that only the quota refuses.
        s.rate_limits.writes.burst = 100;
    })
    .await;
    let alice = api.user("alice");

    let body = json!({});
    let answers = join_all((0..12).map(|_| alice.post("/v1/sessions", &body))).await;

    let created = answers
        .iter()
        .filter(|a| a.status == StatusCode::CREATED)
        .count();
    assert_eq!(created, 3, "{answers:?}");
    for refused in answers.iter().filter(|a| a.status != StatusCode::CREATED) {
        assert_eq!(refused.status, StatusCode::TOO_MANY_REQUESTS, "{refused:?}");
        assert_eq!(refused.problem(), "quota-exceeded");
        assert_eq!(refused.body["quota"], "sessions-per-user");
        assert_eq!(refused.body["limit"], 3);
    }
    // Another user has a quota of their own; closing a session frees a place.
    api.user("bob").create_session().await;
    let first = answers
        .iter()
        .find(|a| a.status == StatusCode::CREATED)
        .unwrap();
    let id = first.body["session_id"].as_str().unwrap();
    assert_eq!(
        alice.delete(&format!("/v1/sessions/{id}")).await.status,
        StatusCode::OK
    );
    alice.create_session().await;
}

#[tokio::test]
async fn concurrent_simulator_starts_stop_exactly_at_the_quota() {
    let api = TestApi::spawn_with(|s| {
        s.limits.simulators_per_session = 2;
        // The burst of starts above the flood, so that only the quota refuses.
        s.rate_limits.simulator_control.burst = 100;
    })
    .await;
    let alice = api.user("alice");
    let session = alice.create_session().await;
    let path = format!("/v1/sessions/{session}/simulators");

    let body = json!({"symbols": ["BTC-USD"]});
    let answers = join_all((0..8).map(|_| alice.post(&path, &body))).await;

    let started = answers
        .iter()
        .filter(|a| a.status == StatusCode::ACCEPTED)
        .count();
    assert_eq!(started, 2, "{answers:?}");
    for refused in answers.iter().filter(|a| a.status != StatusCode::ACCEPTED) {
        assert_eq!(refused.status, StatusCode::TOO_MANY_REQUESTS, "{refused:?}");
        assert_eq!(refused.body["quota"], "simulators-per-session");
    }
    let detail = alice.get(&format!("/v1/sessions/{session}")).await;
    assert_eq!(
        detail.body["simulators"].as_array().unwrap().len(),
        2,
        "no partial records"
    );
}

#[tokio::test]
async fn a_user_over_the_event_budget_gets_the_quota_problem() {
    let api = TestApi::spawn_with(|s| s.limits.events_per_second_per_user = 100).await;
    let alice = api.user("alice");
    let first = alice.create_session().await;
    let second = alice.create_session().await;
    let start = |session: &str, rate: u32| {
        let body = json!({"symbols": ["BTC-USD"], "events_per_second": rate});
        (format!("/v1/sessions/{session}/simulators"), body)
    };

    let (path, body) = start(&first, 60);
    let within = alice.post(&path, &body).await;
    let (path, body) = start(&second, 60);
    let over = alice.post(&path, &body).await;
    let (path, body) = start(&second, 40);
    let rest = alice.post(&path, &body).await;

    assert_eq!(within.status, StatusCode::ACCEPTED, "{within:?}");
    assert_eq!(over.status, StatusCode::TOO_MANY_REQUESTS, "{over:?}");
    assert_eq!(over.problem(), "quota-exceeded");
    assert_eq!(over.body["quota"], "events-per-second-per-user");
    assert_eq!(over.body["limit"], 100);
    assert_eq!(
        rest.status,
        StatusCode::ACCEPTED,
        "the budget is the user's, across sessions: {rest:?}"
    );
}
