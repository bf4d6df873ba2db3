//! The `settings` profile in a running streamer: a good document lowers a stream cap without a
//! restart (streams open before stay, a new one past the cap is refused), and bad documents
//! (out of range, an unknown key, not JSON) are refused, counted, and leave the previous
//! settings in force. The document is served by the local stack's agent API from a folder.

use std::time::Duration;

use reqwest::StatusCode;
use session_tests::appconfig_dir::{AppConfigDir, counter, eventually};
use session_tests::stream_fixture::{Fixture, PATIENCE};

use super::admission::{Opened, open};

/// How often the streamer polls the agent in these tests.
const POLL: Duration = Duration::from_millis(100);

const REFUSED: &str = r#"appconfig_refresh_failures_total{profile="settings",reason="invalid"}"#;

/// Opens a stream from `from` until it is refused; the refusal's status and problem.
async fn refused(fixture: &Fixture, from: &str) -> (StatusCode, serde_json::Value) {
    let url = fixture.stream_url();
    eventually(PATIENCE, "a stream refused", || async {
        match open(&url, &fixture.token, from).await {
            Opened::Streaming(_) => None,
            refusal @ Opened::Refused { .. } => {
                let (status, _, problem) = refusal.refused();
                Some((status, problem))
            }
        }
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_settings_document_lowers_the_per_user_stream_cap_of_a_running_streamer_and_bad_ones_keep_it()
 {
    let dir = AppConfigDir::new();
    dir.write("settings", "{}");
    let fixture = Fixture::start_stack(&["BTC-USD"], 50, |stack| {
        stack.appconfig_dir = Some(dir.path().to_owned());
        stack.service.appconfig.poll_interval_ms = POLL;
    })
    .await;
    let url = fixture.stream_url();
    let first = open(&url, &fixture.token, "127.0.0.2").await.streaming();
    let second = open(&url, &fixture.token, "127.0.0.3").await.streaming();
    drop(second);

    dir.write("settings", r#"{"streamer": {"max_streams_per_user": 1}}"#);
    let (status, problem) = refused(&fixture, "127.0.0.3").await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{problem}");
    assert_eq!(
        problem["type"],
        "urn:session-service:problem:too-many-streams"
    );
    assert_eq!(problem["quota"], "streams_per_user", "{problem}");
    assert_eq!(problem["limit"], 1, "{problem}");

    for bad in [
        r#"{"streamer": {"max_streams_per_user": 0}}"#,
        r#"{"streamer": {"max_streams_per_usr": 5}}"#,
        "max_streams_per_user = 5",
    ] {
        let before = counter(&fixture.metrics().await, REFUSED);
        dir.write("settings", bad);
        eventually(PATIENCE, bad, || async {
            (counter(&fixture.metrics().await, REFUSED) > before).then_some(())
        })
        .await;
        let (status, problem) = refused(&fixture, "127.0.0.4").await;
        assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{bad}: {problem}");
        assert_eq!(
            problem["limit"], 1,
            "the previous settings stay after {bad}"
        );
    }

    // The stream opened under the old cap was never cut; a raised cap admits again.
    drop(first);
    dir.write("settings", r#"{"streamer": {"max_streams_per_user": 3}}"#);
    let reopened = eventually(PATIENCE, "a stream admitted again", || async {
        match open(&url, &fixture.token, "127.0.0.5").await {
            Opened::Streaming(response) => Some(response),
            Opened::Refused { .. } => None,
        }
    })
    .await;
    assert_eq!(reopened.status(), StatusCode::OK);
}
