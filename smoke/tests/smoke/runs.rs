//! Whole runs of the `smoke` binary against the local stack, passing and failing.

use std::time::Duration;

use serde_json::json;
use tokio::io::{AsyncBufReadExt as _, BufReader};

use crate::helpers::{LocalStack, Run, closed_port, command, scratch, smoke, write_endpoints};

/// Every step, in order.
const STEPS: [&str; 14] = [
    "endpoints",
    "token",
    "create session",
    "start simulator",
    "SSE ticket",
    "open SSE stream",
    "SSE events",
    "WebSocket ticket",
    "open WebSocket",
    "WebSocket heartbeat",
    "WebSocket events",
    "stop simulator",
    "close session",
    "session reads closed",
];

/// The session id a run's `create session` line names.
fn session_of(line: &str) -> String {
    let at = line.find("ses_").expect("a session id");
    line[at..].split_whitespace().next().unwrap().to_owned()
}

/// The run's session reads deleted (closed), as `user` (its owner) reads it.
async fn assert_left_closed(local: &LocalStack, user: &str, run: &Run) {
    let session = local
        .session(user, &session_of(run.line("create session")))
        .await;
    assert_eq!(
        session["type"], "urn:session-service:problem:deleted",
        "{session}"
    );
    assert!(
        session["detail"].as_str().unwrap().contains("closed"),
        "{session}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_against_the_local_stack_passes_every_step_and_leaves_its_session_closed() {
    // Arrange
    let dir = scratch("pass");
    let local = LocalStack::start(&dir).await;

    // Act: as `scripts/smoke.sh /tmp/endpoints.json` runs it, a token minted at token_url.
    let run = smoke(&[local.endpoints_file.to_str().unwrap()], &[]).await;

    // Assert
    assert!(run.status.success(), "{run}");
    let lines: Vec<&str> = run.stdout.lines().collect();
    assert_eq!(lines.len(), STEPS.len() + 1, "{run}");
    for (line, step) in lines.iter().zip(STEPS) {
        assert!(line.starts_with(&format!("ok   {step} ")), "{step}: {run}");
        assert!(line.contains(" ms  "), "a duration: {line}");
    }
    assert!(run.last_line().starts_with("PASSED: 14 steps in "), "{run}");
    assert!(
        run.line("SSE events")
            .contains("then 20 events in sequence"),
        "{run}"
    );
    // The push batches events into messages, and the run reads whole messages: the last one
    // may carry events past the 20 asked for (all in sequence too).
    let pushed: usize = run
        .line("WebSocket events")
        .split_once("then ")
        .and_then(|(_, rest)| rest.split_once(" events in sequence"))
        .and_then(|(count, _)| count.parse().ok())
        .unwrap_or_else(|| panic!("an event count: {run}"));
    assert!(pushed >= 20, "{run}");
    assert!(
        run.line("WebSocket heartbeat")
            .contains("heartbeat_ack for seq 1"),
        "{run}"
    );
    // The session is closed and its simulator stopped, as its owner reads it.
    let token_line = run.line("token");
    let user = token_line[token_line.find("smoke-").expect("the subject")..].trim();
    assert_left_closed(&local, user, &run).await;
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_with_smoke_token_needs_only_http_api_and_ignores_unknown_keys() {
    // Arrange: neither token_url nor the cross-checked keys; a key the smoke test does not know.
    let dir = scratch("token");
    let local = LocalStack::start(&dir).await;
    let endpoints = json!({
        "http_api": local.endpoints()["http_api"],
        "dashboard": "https://example.com/what-the-smoke-test-does-not-read",
    });
    let file = write_endpoints(&dir, "minimal.json", &endpoints);
    let token = local.stack.token("alice");

    // Act
    let run = smoke(
        &[file.to_str().unwrap(), "--events", "3", "--symbols", "AAPL"],
        &[("SMOKE_TOKEN", &token)],
    )
    .await;

    // Assert
    assert!(run.status.success(), "{run}");
    assert!(run.line("token").ends_with("from SMOKE_TOKEN"), "{run}");
    assert!(
        run.line("start simulator").contains("(AAPL at 50/s)"),
        "{run}"
    );
    assert!(
        run.line("SSE events").contains("then 3 events in sequence"),
        "{run}"
    );
    assert!(
        !run.stdout.contains(&token),
        "the token is never printed: {run}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn a_run_fails_at_create_session_when_the_http_api_is_down() {
    // Arrange: nothing listens at http_api.
    let dir = scratch("http-down");
    let port = closed_port();
    let file = write_endpoints(
        &dir,
        "endpoints.json",
        &json!({ "http_api": format!("http://127.0.0.1:{port}") }),
    );

    // Act
    let run = smoke(&[file.to_str().unwrap()], &[("SMOKE_TOKEN", "any")]).await;

    // Assert: the step, the cause and the URL; no session, so nothing to clean up.
    run.assert_failed_at("create session", "refused");
    assert!(
        run.last_line()
            .contains(&format!("(POST http://127.0.0.1:{port}/v1/sessions)")),
        "{run}"
    );
    assert!(!run.stdout.contains("cleanup"), "{run}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn a_run_fails_at_the_step_that_outlasts_the_timeout_and_looks_for_a_session_it_may_have_made()
 {
    // Arrange: an HTTP API that accepts connections and never answers.
    let dir = scratch("silent");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let silent = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((connection, _)) = listener.accept().await {
            held.push(connection);
        }
    });
    let file = write_endpoints(
        &dir,
        "endpoints.json",
        &json!({ "http_api": format!("http://127.0.0.1:{port}") }),
    );

    // Act
    let started = std::time::Instant::now();
    let run = smoke(
        &[file.to_str().unwrap(), "--timeout", "1"],
        &[("SMOKE_TOKEN", "any")],
    )
    .await;

    // Assert: the create request may have been served: the clean-up asks again with its
    // Idempotency-Key, within the run's timeout too.
    run.assert_failed_at(
        "create session",
        "no result in time: the run may take 1 s (--timeout)",
    );
    assert!(
        run.line("cleanup: find session").starts_with("warn "),
        "{run}"
    );
    assert!(
        started.elapsed() < std::time::Duration::from_secs(10),
        "{run}"
    );
    silent.abort();
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn a_run_names_a_missing_key_and_a_missing_token_source() {
    // Arrange
    let dir = scratch("keys");
    let no_http_api = write_endpoints(&dir, "a.json", &json!({ "sse": "http://127.0.0.1:1" }));
    let no_token_url =
        write_endpoints(&dir, "b.json", &json!({ "http_api": "http://127.0.0.1:1" }));

    // Act
    let missing_key = smoke(&[no_http_api.to_str().unwrap()], &[]).await;
    let missing_token = smoke(&[no_token_url.to_str().unwrap()], &[]).await;
    let bad_flag = smoke(&[no_token_url.to_str().unwrap(), "--timeout", "soon"], &[]).await;

    // Assert
    missing_key.assert_failed_at(
        "endpoints",
        &format!("missing key \"http_api\" in {}", no_http_api.display()),
    );
    missing_token.assert_failed_at(
        "token",
        "SMOKE_TOKEN is not set and the endpoints file has no \"token_url\"",
    );
    assert_eq!(bad_flag.status.code(), Some(2), "{bad_flag}");
    assert!(bad_flag.stderr.contains("--timeout"), "{bad_flag}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_fails_at_the_sse_ticket_when_the_file_names_another_streamer_and_closes_its_session()
{
    // Arrange: the endpoints file's `sse` is a closed port; the service names its own streamer.
    let dir = scratch("sse-elsewhere");
    let local = LocalStack::start(&dir).await;
    let mut endpoints = local.endpoints();
    let elsewhere = format!("http://127.0.0.1:{}", closed_port());
    endpoints["sse"] = json!(elsewhere);
    let file = write_endpoints(&dir, "elsewhere.json", &endpoints);

    // Act
    let run = smoke(
        &[file.to_str().unwrap()],
        &[("SMOKE_TOKEN", &local.stack.token("bob"))],
    )
    .await;

    // Assert: the failure names the step and both places; the simulator and session are closed.
    run.assert_failed_at(
        "SSE ticket",
        &format!("is not under sse {elsewhere}/ of the endpoints file"),
    );
    assert!(
        run.line("cleanup: stop simulator").starts_with("ok "),
        "{run}"
    );
    assert!(
        run.line("cleanup: close session").starts_with("ok "),
        "{run}"
    );
    assert_left_closed(&local, "bob", &run).await;
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_fails_at_start_simulator_when_the_exchange_simulator_is_down() {
    // Arrange: the stack runs, its exchange simulator does not.
    let dir = scratch("simulator-down");
    let mut local = LocalStack::start(&dir).await;
    local
        .stack
        .stop_exchange_simulator()
        .await
        .expect("it stops");

    // Act
    let run = smoke(&[local.endpoints_file.to_str().unwrap()], &[]).await;

    // Assert: the simulator failed with the backend's reason; the session is closed.
    run.assert_failed_at(
        "start simulator",
        "failed: the simulator service was unavailable",
    );
    assert!(
        run.line("cleanup: close session").starts_with("ok "),
        "{run}"
    );
    assert!(!run.stdout.contains("open SSE stream"), "{run}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_interrupted_run_fails_the_step_under_way_and_still_closes_its_session() {
    // Arrange: more events than a slow simulator sends in a while, so the run waits for them.
    let dir = scratch("interrupted");
    let local = LocalStack::start(&dir).await;
    let file = local.endpoints_file.to_str().unwrap();
    let args = [file, "--events", "10000", "--events-per-second", "5"];
    let mut process = command(&args, &[]).spawn().expect("smoke runs");
    let mut lines = BufReader::new(process.stdout.take().unwrap()).lines();
    let mut stdout = String::new();
    let reading = async {
        while let Some(line) = lines.next_line().await.unwrap() {
            stdout.push_str(&line);
            stdout.push('\n');
            if line.starts_with("ok   open SSE stream ") {
                return;
            }
        }
        panic!("the run ended before its SSE stream opened:\n{stdout}");
    };
    tokio::time::timeout(Duration::from_secs(60), reading)
        .await
        .expect("the SSE stream opens");

    // Act: Ctrl-C, as an operator stops a run.
    let pid = process.id().expect("running").to_string();
    let signalled = tokio::process::Command::new("kill")
        .args(["-INT", &pid])
        .status()
        .await
        .unwrap();
    assert!(signalled.success());
    while let Some(line) = lines.next_line().await.unwrap() {
        stdout.push_str(&line);
        stdout.push('\n');
    }
    let status = tokio::time::timeout(Duration::from_secs(30), process.wait())
        .await
        .expect("the run ends")
        .unwrap();

    // Assert
    let run = Run {
        status,
        stdout,
        stderr: String::new(),
    };
    run.assert_failed_at("SSE events", "interrupted (SIGINT)");
    assert!(
        run.line("cleanup: stop simulator").starts_with("ok "),
        "{run}"
    );
    assert!(
        run.line("cleanup: close session").starts_with("ok "),
        "{run}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
