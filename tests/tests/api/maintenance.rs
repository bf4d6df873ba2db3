//! `maintenance_mode`, flipped in the folder the local stack serves as the AppConfig Agent's API:
//! REST writes answer `503` `maintenance` with `Retry-After` within the poll interval, reads go
//! on, and writes succeed again once it is flipped back.

use std::path::Path;
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::json;
use session_tests::test_api::{Answer, TestApi, User};

/// How often the REST function polls the agent in these tests.
const POLL: Duration = Duration::from_millis(200);

fn write_flags(dir: &Path, maintenance: &serde_json::Value) {
    let document = json!({ "maintenance_mode": maintenance });
    // Written beside, then renamed: the server never reads a half-written file.
    let staged = dir.join("flags.json.new");
    std::fs::write(&staged, document.to_string()).unwrap();
    std::fs::rename(staged, dir.join("flags.json")).unwrap();
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

#[tokio::test]
async fn maintenance_mode_pauses_writes_within_the_poll_interval_and_reads_go_on() {
    let dir = std::env::temp_dir().join(format!("appconfig-{}", ulid::Ulid::new()));
    std::fs::create_dir_all(&dir).unwrap();
    write_flags(&dir, &json!({"enabled": false}));
    let api = TestApi::spawn_stack(|stack| {
        stack.appconfig_dir = Some(dir.clone());
        stack.service.appconfig.poll_interval_ms = POLL;
        // Room for the sessions created until the flip is seen.
        stack.service.rate_limits.writes.burst = 1_000;
        stack.service.limits.sessions_per_user = 1_000;
    })
    .await;
    let alice = api.user("alice");
    let session = alice.create_session().await;

    write_flags(&dir, &json!({"enabled": true}));
    let (refused, after) = create_until_not(&alice, StatusCode::CREATED).await;
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

    write_flags(&dir, &json!({"enabled": false}));
    let (created, _) = create_until_not(&alice, StatusCode::SERVICE_UNAVAILABLE).await;
    assert_eq!(created.status, StatusCode::CREATED, "{created:?}");
    std::fs::remove_dir_all(&dir).ok();
}

#[tokio::test]
async fn maintenance_mode_for_an_allowed_user_pauses_only_their_writes_and_a_bad_document_keeps_it()
{
    let dir = std::env::temp_dir().join(format!("appconfig-{}", ulid::Ulid::new()));
    std::fs::create_dir_all(&dir).unwrap();
    write_flags(
        &dir,
        &json!({"enabled": true, "rollout_percent": 0, "allow_users": ["alice"]}),
    );
    let api = TestApi::spawn_stack(|stack| {
        stack.appconfig_dir = Some(dir.clone());
        stack.service.appconfig.poll_interval_ms = POLL;
    })
    .await;
    let (alice, bob) = (api.user("alice"), api.user("bob"));
    let (refused, _) = create_until_not(&alice, StatusCode::CREATED).await;
    assert_eq!(refused.problem(), "maintenance");

    // A document the flags cannot be read from: the last good one stays in force.
    std::fs::write(
        dir.join("flags.json"),
        "{\"maintenance_mode\": {\"enabled\": \"yes\"}}",
    )
    .unwrap();
    tokio::time::sleep(POLL * 3).await;
    let still = alice.post("/v1/sessions", &json!({})).await;
    assert_eq!(still.status, StatusCode::SERVICE_UNAVAILABLE, "{still:?}");
    assert_eq!(
        bob.post("/v1/sessions", &json!({})).await.status,
        StatusCode::CREATED
    );
    std::fs::remove_dir_all(&dir).ok();
}
