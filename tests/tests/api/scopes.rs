//! Scopes enforced per route, as the OpenAPI document names them: `sessions:read` for reads,
//! `sessions:write` for every write, `sessions:admin` for revoking tokens; a token without the
//! route's scope gets `403` `insufficient-scope` naming it, and nothing changes.

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::json;
use session_tests::test_api::{Answer, TestApi, User};

/// A client for `user` whose token carries exactly `scopes`.
pub fn user_with_scopes(api: &TestApi, user: &str, scopes: &[&str]) -> User {
    let token = api
        .stack
        .auth()
        .issue(user, scopes, Duration::from_secs(3600))
        .expect("the local auth service signs tokens");
    api.with_authorization(&format!("Bearer {token}"))
}

fn assert_insufficient_scope(answer: &Answer, needed: &str, what: &str) {
    assert_eq!(answer.status, StatusCode::FORBIDDEN, "{what}: {answer:?}");
    assert_eq!(answer.problem(), "insufficient-scope", "{what}");
    assert_eq!(
        answer.body["scope"], needed,
        "{what}: names the scope needed"
    );
    assert_eq!(
        answer.header("www-authenticate"),
        Some(format!(r#"Bearer error="insufficient_scope", scope="{needed}""#).as_str()),
        "{what}: RFC 6750's challenge"
    );
}

#[tokio::test]
async fn a_read_only_token_gets_403_insufficient_scope_on_every_write_route_and_200_on_reads() {
    let api = Box::pin(TestApi::spawn()).await;
    let alice = api.user("alice");
    let session = alice.create_session().await;
    let simulator = alice.start_simulator(&session, &["BTC-USD"]).await;
    let reader = user_with_scopes(&api, "alice", &["sessions:read"]);

    let reads = [
        "/v1/sessions".to_owned(),
        format!("/v1/sessions/{session}"),
        format!("/v1/sessions/{session}/simulators/{simulator}"),
        format!("/v1/sessions/{session}/simulators/{simulator}/book?symbol=BTC-USD"),
    ];
    for path in &reads {
        let answer = reader.get(path).await;
        assert_eq!(answer.status, StatusCode::OK, "GET {path}: {answer:?}");
    }

    let body =
        |value: serde_json::Value| Some(("application/json", value.to_string().into_bytes()));
    let writes = [
        (Method::POST, "/v1/sessions".to_owned(), json!({})),
        (
            Method::DELETE,
            format!("/v1/sessions/{session}"),
            json!(null),
        ),
        (
            Method::POST,
            format!("/v1/sessions/{session}/simulators"),
            json!({"symbols": ["ETH-USD"]}),
        ),
        (
            Method::DELETE,
            format!("/v1/sessions/{session}/simulators/{simulator}"),
            json!(null),
        ),
        (
            Method::POST,
            format!("/v1/sessions/{session}/tickets"),
            json!({"transport": "sse"}),
        ),
        (
            Method::POST,
            format!("/v1/sessions/{session}/reconnect"),
            json!({"transport": "ws"}),
        ),
    ];
    for (method, path, payload) in writes {
        let payload = (!payload.is_null()).then_some(payload).and_then(body);
        let answer = reader.send(method.clone(), &path, payload, &[]).await;
        assert_insufficient_scope(&answer, "sessions:write", &format!("{method} {path}"));
    }

    // Nothing was changed by the refused writes.
    let detail = alice.get(&format!("/v1/sessions/{session}")).await;
    assert_eq!(detail.body["status"], "active", "{detail:?}");
    assert_eq!(detail.body["simulators"].as_array().map(Vec::len), Some(1));
    let listed = alice.get("/v1/sessions").await;
    assert_eq!(listed.body["items"].as_array().map(Vec::len), Some(1));
}

#[tokio::test]
async fn a_write_only_token_cannot_read() {
    let api = Box::pin(TestApi::spawn()).await;
    let writer = user_with_scopes(&api, "alice", &["sessions:write"]);

    let session = writer.create_session().await;
    let answer = writer.get(&format!("/v1/sessions/{session}")).await;

    assert_insufficient_scope(&answer, "sessions:read", "GET a session");
}

#[tokio::test]
async fn a_token_without_sessions_admin_cannot_revoke_and_one_with_it_can() {
    let api = Box::pin(TestApi::spawn()).await;
    let alice = api.user("alice");
    let admin = user_with_scopes(&api, "ops", &["sessions:admin"]);
    let request = json!({"subject": "mallory"});

    let refused = alice.post("/v1/admin/revocations", &request).await;
    let revoked = admin.post("/v1/admin/revocations", &request).await;

    assert_insufficient_scope(&refused, "sessions:admin", "revoking as alice");
    assert_eq!(revoked.status, StatusCode::CREATED, "{revoked:?}");
    assert_eq!(revoked.body["subject"], "mallory");
    // An admin token is not a user token: it cannot act on sessions.
    let sessions = admin.get("/v1/sessions").await;
    assert_insufficient_scope(&sessions, "sessions:read", "listing as the admin");
}

#[tokio::test]
async fn a_revocation_request_names_the_field_at_fault() {
    let api = Box::pin(TestApi::spawn()).await;
    // One admin per request: the per-user write rate limit is not what this test is about.
    let admin = |i: usize| user_with_scopes(&api, &format!("ops-{i}"), &["sessions:admin"]);
    let soon = |secs: i64| {
        let at = time::OffsetDateTime::now_utc() + time::Duration::seconds(secs);
        at.format(&time::format_description::well_known::Rfc3339)
            .unwrap()
    };
    let cases = [
        (json!({}), "token_id"),
        (json!({"token_id": "a", "subject": "mallory"}), "subject"),
        (json!({"token_id": "a b"}), "token_id"),
        (
            json!({"token_id": "a", "expires_at": "tomorrow"}),
            "expires_at",
        ),
        (
            json!({"token_id": "a", "expires_at": soon(-60)}),
            "expires_at",
        ),
        (
            json!({"token_id": "a", "expires_at": soon(40 * 86_400)}),
            "expires_at",
        ),
        (json!({"token_id": "a", "until": soon(60)}), "until"),
        (
            json!({"subject": "mallory", "expires_at": soon(60)}),
            "expires_at",
        ),
        (json!({"subject": "a#b"}), "subject"),
        (json!({"subject": "mallory", "until": soon(-1)}), "until"),
        (json!({"subject": "mallory", "reason": "x"}), "reason"),
    ];
    for (i, (request, field)) in cases.into_iter().enumerate() {
        let answer = admin(i).post("/v1/admin/revocations", &request).await;
        assert_eq!(
            answer.status,
            StatusCode::BAD_REQUEST,
            "{request}: {answer:?}"
        );
        assert_eq!(answer.body["field"], field, "{request}: {answer:?}");
    }

    let in_an_hour = soon(3600);
    let answer = admin(usize::MAX)
        .post(
            "/v1/admin/revocations",
            &json!({"token_id": "jti-1", "expires_at": in_an_hour}),
        )
        .await;
    assert_eq!(answer.status, StatusCode::CREATED, "{answer:?}");
    assert_eq!(answer.body["token_id"], "jti-1");
}
