//! `docs/openapi.json` is the document the code generates (`session_functions::http::openapi`),
//! it is OpenAPI 3.1, and it names exactly the router's routes and methods.
//!
//! Regenerate the file after changing the API:
//! `UPDATE_OPENAPI=1 cargo test -p session-functions --test openapi`.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::Arc;

use axum::body::Body;
use http::{Method, Request, StatusCode};
use session_core::clock::{Clock, SystemClock};
use session_core::config::Settings;
use session_core::store::InMemoryStore;
use session_functions::http::openapi;
use tower::ServiceExt as _;

const REGENERATE: &str = "UPDATE_OPENAPI=1 cargo test -p session-functions --test openapi";

/// Methods probed on every path: those a REST route could plausibly add.
const METHODS: [Method; 5] = [
    Method::GET,
    Method::POST,
    Method::PUT,
    Method::PATCH,
    Method::DELETE,
];

fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("functions/ has a parent")
        .to_path_buf()
}

fn document() -> serde_json::Value {
    serde_json::from_str(openapi::json()).expect("the generated document is JSON")
}

#[test]
fn docs_openapi_json_is_the_document_the_code_generates() {
    session_tests::golden::assert_generated(
        "docs/openapi.json",
        openapi::json(),
        "UPDATE_OPENAPI",
        REGENERATE,
    );
}

#[test]
fn the_document_is_openapi_3_1() {
    let doc = document();
    let version = doc["openapi"].as_str().unwrap_or_default();
    assert!(
        version.starts_with("3.1."),
        "openapi is {version:?}, not 3.1.x"
    );
    assert!(doc["info"]["title"].is_string(), "info.title is missing");
    assert!(
        doc["components"]["securitySchemes"]["bearer"].is_object(),
        "the bearer security scheme is missing"
    );
}

/// The router's paths, read from its source: axum cannot list a router's routes, and a route
/// missing from the document must fail this test even when nothing else names its path.
fn router_paths() -> BTreeSet<String> {
    let path = repo_root().join("functions/src/http/mod.rs");
    let source = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    let mut paths = BTreeSet::new();
    let mut rest = source.as_str();
    while let Some(at) = rest.find(".route(") {
        rest = &rest[at + ".route(".len()..];
        let literal = rest.trim_start();
        let literal = literal
            .strip_prefix('"')
            .expect("every .route( call starts with a string literal path");
        let end = literal.find('"').expect("the path literal is closed");
        paths.insert(literal[..end].to_owned());
    }
    assert!(
        !paths.is_empty(),
        "no .route(\"...\") found in {}",
        path.display()
    );
    paths
}

fn documented() -> BTreeSet<(String, Method)> {
    let doc = document();
    let paths = doc["paths"].as_object().expect("paths is an object");
    let mut operations = BTreeSet::new();
    for (path, item) in paths {
        for method in METHODS {
            if item.get(method.as_str().to_lowercase()).is_some() {
                operations.insert((path.clone(), method));
            }
        }
    }
    operations
}

/// The router over the in-memory store and a backend nobody listens on: the probes below only
/// need routing, and the one handler that calls the backend (health) is bounded in time.
fn router() -> axum::Router {
    let mut settings = Settings::default();
    // Port 9 (discard): refused at once, so health answers `degraded` quickly.
    "http://127.0.0.1:9".clone_into(&mut settings.backends.simulator_url);
    settings.backends.deadline_ms = std::time::Duration::from_millis(50);
    settings.backends.max_retries = 0;
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let store = Arc::new(InMemoryStore::new(clock.clone()));
    let backend = session_functions::wiring::simulator_backend(&settings)
        .expect("the probe backend URL is valid");
    session_functions::http::router(session_functions::wiring::app(
        &settings, store, backend, clock,
    ))
}

/// A concrete path for a template: valid ids, so a route's own validation cannot answer 404.
fn concrete(template: &str) -> String {
    template
        .replace("{session_id}", "ses_01JG7Q3ZKXW4T9M2R8V6C5N1HA")
        .replace("{simulator_id}", "sim_01JG7Q4B6P9D2F8H3K5M7N9Q1R")
}

#[test]
fn the_document_has_every_path_of_the_router_and_no_other() {
    let in_router = router_paths();
    let in_document: BTreeSet<String> = documented().into_iter().map(|(p, _)| p).collect();
    let missing: Vec<_> = in_router.difference(&in_document).collect();
    let extra: Vec<_> = in_document.difference(&in_router).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "routes missing from the document: {missing:?}; documented but not routed: {extra:?} \
         (annotate the handler with #[utoipa::path] and list it in openapi.rs `paths(...)`, \
         then {REGENERATE})"
    );
}

#[tokio::test]
async fn every_method_the_router_serves_is_documented_and_every_documented_one_is_served() {
    let documented = documented();
    let router = router();
    for path in router_paths() {
        for method in METHODS {
            let request = Request::builder()
                .method(method.clone())
                .uri(concrete(&path))
                .header("content-type", "application/json")
                .body(Body::from("{}"))
                .expect("a valid request");
            let response = router
                .clone()
                .oneshot(request)
                .await
                .expect("the router is infallible");
            let served = response.status() != StatusCode::METHOD_NOT_ALLOWED;
            let is_documented = documented.contains(&(path.clone(), method.clone()));
            assert_eq!(
                served,
                is_documented,
                "{method} {path}: the router {} it but the document {} it ({REGENERATE})",
                if served { "serves" } else { "does not serve" },
                if is_documented {
                    "lists"
                } else {
                    "does not list"
                },
            );
        }
    }
}
