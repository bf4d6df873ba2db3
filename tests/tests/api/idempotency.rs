//! `Idempotency-Key` on POSTs: a retry gets the first answer; the key with another body is 409.

use futures_util::future::join_all;
use reqwest::StatusCode;
use serde_json::json;
use session_tests::test_api::TestApi;

#[tokio::test]
async fn a_retried_create_with_the_same_key_returns_the_first_answer() {
    let api = TestApi::spawn().await;
    let alice = api.user("alice");
    let key = [("idempotency-key", "create-1")];

    let first = alice
        .post_with("/v1/sessions", &json!({"name": "a"}), &key)
        .await;
    let retry = alice
        .post_with("/v1/sessions", &json!({"name": "a"}), &key)
        .await;

    assert_eq!(first.status, StatusCode::CREATED, "{first:?}");
    assert_eq!(retry.status, StatusCode::CREATED, "{retry:?}");
    assert_eq!(retry.body, first.body);
    assert_eq!(retry.header("location"), first.header("location"));
    assert_eq!(retry.header("idempotent-replayed"), Some("true"));
    assert_eq!(first.header("idempotent-replayed"), None);
    let listed = alice.get("/v1/sessions").await;
    assert_eq!(
        listed.body["items"].as_array().unwrap().len(),
        1,
        "one session, not two"
    );
}

#[tokio::test]
async fn the_same_key_with_another_body_is_a_409() {
    let api = TestApi::spawn().await;
    let alice = api.user("alice");
    let key = [("idempotency-key", "create-2")];
    alice
        .post_with("/v1/sessions", &json!({"name": "a"}), &key)
        .await;

    let other = alice
        .post_with("/v1/sessions", &json!({"name": "b"}), &key)
        .await;

    assert_eq!(other.status, StatusCode::CONFLICT, "{other:?}");
    assert_eq!(other.problem(), "idempotency-key-reused");
}

#[tokio::test]
async fn keys_are_per_user_and_concurrent_retries_create_once() {
    let api = TestApi::spawn().await;
    let alice = api.user("alice");
    let bob = api.user("bob");
    let key = [("idempotency-key", "shared-key")];

    let body = json!({});
    let answers = join_all((0..6).map(|_| alice.post_with("/v1/sessions", &body, &key))).await;
    let bobs = bob.post_with("/v1/sessions", &json!({}), &key).await;

    let ids: std::collections::BTreeSet<_> = answers
        .iter()
        .filter(|a| a.status == StatusCode::CREATED)
        .map(|a| a.body["session_id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(ids.len(), 1, "{answers:?}");
    for other in answers.iter().filter(|a| a.status != StatusCode::CREATED) {
        assert_eq!(other.status, StatusCode::CONFLICT, "{other:?}");
        assert_eq!(other.problem(), "idempotency-in-progress");
    }
    assert_eq!(bobs.status, StatusCode::CREATED);
    assert!(!ids.contains(bobs.body["session_id"].as_str().unwrap()));
}
