//! The SSE route's bearer-token door: the token needs `sessions:read`, and a revoked one is
//! refused (`401` `token-revoked`) while the user's other tokens still open streams.

use std::time::Duration;

use serde_json::json;
use session_tests::sse;
use session_tests::stream_fixture::{Fixture, PATIENCE};

fn token(fixture: &Fixture, user: &str, scopes: &[&str]) -> String {
    fixture
        .api
        .stack
        .auth()
        .issue(user, scopes, Duration::from_secs(600))
        .unwrap()
}

fn jti(token: &str) -> String {
    session_tests::jwt::claim(token, "jti")
}

#[tokio::test]
async fn a_bearer_token_without_sessions_read_is_refused_with_403_naming_the_scope() {
    let fixture = Fixture::start(&["BTC-USD"], 200, |_| {}).await;
    let writer = format!("Bearer {}", token(&fixture, "alice", &["sessions:write"]));
    let reader = format!("Bearer {}", token(&fixture, "alice", &["sessions:read"]));

    let refused = sse::connect(&fixture.stream_url(), &[("authorization", &writer)])
        .await
        .unwrap_err();
    let mut stream = sse::connect(&fixture.stream_url(), &[("authorization", &reader)])
        .await
        .unwrap();

    assert_eq!(refused.status, 403);
    assert_eq!(refused.problem(), "insufficient-scope");
    assert_eq!(refused.body["scope"], "sessions:read");
    assert_eq!(stream.next(PATIENCE).await.unwrap().event, "snapshot");
}

#[tokio::test]
async fn a_revoked_bearer_token_is_refused_with_401_and_the_users_other_tokens_are_not() {
    // No cache: the revocation is seen at once (the bound is tested in tests/tests/api).
    let fixture = Fixture::start(&["BTC-USD"], 200, |s| {
        s.auth.revocation_cache_ms = Duration::ZERO;
    })
    .await;
    let scopes = ["sessions:read", "sessions:write"];
    let stolen = token(&fixture, "alice", &scopes);
    let other = format!("Bearer {}", token(&fixture, "alice", &scopes));
    let admin = token(&fixture, "ops", &["sessions:admin"]);
    let revoked = fixture
        .api
        .with_authorization(&format!("Bearer {admin}"))
        .post(
            "/v1/admin/revocations",
            &json!({ "token_id": jti(&stolen) }),
        )
        .await;
    assert_eq!(revoked.status.as_u16(), 201, "{revoked:?}");

    let stolen = format!("Bearer {stolen}");
    let refused = sse::connect(&fixture.stream_url(), &[("authorization", &stolen)])
        .await
        .unwrap_err();
    let mut stream = sse::connect(&fixture.stream_url(), &[("authorization", &other)])
        .await
        .unwrap();

    assert_eq!(refused.status, 401);
    assert_eq!(refused.problem(), "token-revoked");
    assert_eq!(stream.next(PATIENCE).await.unwrap().event, "snapshot");
}
