//! Every file in `events/` through its handler, as `cargo lambda invoke --data-file` would send
//! it: REST events through the router on the `lambda_http` event path
//! (`session_functions::invoke`) over the in-memory store and a real simulator service, and the
//! authorizer event through the authorizer with a real auth service.
//!
//! Each REST file runs twice: on an empty store (what a fresh `cargo lambda watch` answers) and
//! once the sample session and simulator the files name exist. A file with no case here fails
//! the test, so a new sample cannot be skipped silently. `events/README.md` lists the same
//! expectations for people.
//!
//! Layout: this file lists the samples and routes each to its family's runner: `rest` (the
//! HTTP API's routes), `http_authorizer` (the HTTP API's REQUEST authorizer), `websocket` (the
//! WebSocket API's authorizer and routes); `world` builds what they run against and
//! `consistency` checks that a sample states its request one way.

mod consistency;
mod http_authorizer;
mod rest;
mod websocket;
mod world;

use std::path::PathBuf;

use anyhow::Context as _;
use serde_json::Value;

use http_authorizer::{AUTHORIZER_FILES, run_authorizer};
use rest::{REST_CASES, RestCase, run_rest};
use websocket::{WS_AUTHORIZER_FILES, WS_ROUTE_FILES, run_ws_authorizer, run_ws_route};

/// The session the samples name (`pathParameters.session_id`).
pub(crate) const SESSION_ID: &str = "ses_01JG7Q3ZKXW4T9M2R8V6C5N1HA";
/// The simulator the samples name (`pathParameters.simulator_id`).
pub(crate) const SIMULATOR_ID: &str = "sim_01JG7Q4B6P9D2F8H3K5M7N9Q1R";
/// The caller in the samples' `requestContext.authorizer.lambda`.
pub(crate) const USER: &str = "alice";
/// Stands for a bearer token in the samples; the authorizer refuses it as it is.
pub(crate) const TOKEN_PLACEHOLDER: &str = "REPLACE_WITH_A_TOKEN";
/// Scopes of the token the authorizer test mints (the samples' context has the same).
pub(crate) const SCOPES: [&str; 2] = ["sessions:read", "sessions:write"];

/// Files in `events/` that are not events.
const NOT_EVENTS: &[&str] = &["README.md"];

pub(crate) enum Handler {
    RestApi(&'static RestCase),
    Authorizer,
    WsAuthorizer,
    WsRoute,
}

pub(crate) fn handler_of(file: &str) -> Option<Handler> {
    if let Some(case) = REST_CASES.iter().find(|c| c.file == file) {
        return Some(Handler::RestApi(case));
    }
    if WS_AUTHORIZER_FILES.contains(&file) {
        return Some(Handler::WsAuthorizer);
    }
    if WS_ROUTE_FILES.contains(&file) {
        return Some(Handler::WsRoute);
    }
    AUTHORIZER_FILES
        .contains(&file)
        .then_some(Handler::Authorizer)
}

pub(crate) fn events_dir() -> PathBuf {
    session_tests::moto::repo_root().join("events")
}

pub(crate) fn event_files() -> Vec<String> {
    let dir = events_dir();
    let mut files: Vec<String> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("cannot list {}: {e}", dir.display()))
        .map(|entry| {
            let entry = entry.expect("a readable directory entry");
            assert!(
                entry.file_type().is_ok_and(|t| t.is_file()),
                "events/{} is not a file: keep events/ flat",
                entry.file_name().to_string_lossy()
            );
            entry.file_name().to_string_lossy().into_owned()
        })
        .filter(|name| !NOT_EVENTS.contains(&name.as_str()))
        .collect();
    files.sort();
    files
}

pub(crate) fn load(file: &str) -> anyhow::Result<Value> {
    let path = events_dir().join(file);
    let text = std::fs::read_to_string(&path).with_context(|| format!("reading {file}"))?;
    serde_json::from_str(&text).with_context(|| format!("{file} is not JSON"))
}

#[tokio::test]
async fn every_file_in_events_runs_through_its_handler_and_answers_as_documented() {
    let files = event_files();
    assert!(!files.is_empty(), "events/ has no samples");
    let mut failures = Vec::new();
    for file in &files {
        let outcome = match handler_of(file) {
            None => Err(anyhow::anyhow!(
                "no handler is known for it: add a case to REST_CASES, AUTHORIZER_FILES, \
                 WS_AUTHORIZER_FILES or WS_ROUTE_FILES in tests/tests/events/ (and a line to \
                 events/README.md)"
            )),
            Some(Handler::RestApi(case)) => run_rest(case).await,
            Some(Handler::Authorizer) => run_authorizer(file).await,
            Some(Handler::WsAuthorizer) => run_ws_authorizer(file).await,
            Some(Handler::WsRoute) => run_ws_route(file).await,
        };
        if let Err(e) = outcome {
            failures.push(format!("events/{file}: {e:#}"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn every_case_has_its_file_in_events() {
    let files = event_files();
    let missing: Vec<&str> = REST_CASES
        .iter()
        .map(|c| c.file)
        .chain(AUTHORIZER_FILES.iter().copied())
        .filter(|f| !files.iter().any(|file| file == f))
        .collect();
    assert!(
        missing.is_empty(),
        "cases without a file in events/: {missing:?}"
    );
}
