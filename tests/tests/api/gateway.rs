//! What the HTTP API emulator itself answers, as API Gateway does, and the local-only routes.

use reqwest::{Method, StatusCode};
use serde_json::json;
use session_tests::test_api::TestApi;

#[tokio::test]
async fn secured_routes_without_a_token_are_401_and_with_a_bad_one_403() {
    let api = TestApi::spawn().await;

    let missing = api.anonymous().get("/v1/sessions").await;
    let garbage = api
        .with_authorization("Bearer not.a.jwt")
        .get("/v1/sessions")
        .await;
    let basic = api
        .with_authorization("Basic YWxpY2U6c2VjcmV0")
        .get("/v1/sessions")
        .await;

    assert_eq!(missing.status, StatusCode::UNAUTHORIZED, "{missing:?}");
    assert_eq!(missing.body, json!({"message": "Unauthorized"}));
    assert_eq!(garbage.status, StatusCode::FORBIDDEN, "{garbage:?}");
    assert_eq!(garbage.body, json!({"message": "Forbidden"}));
    assert_eq!(basic.status, StatusCode::FORBIDDEN, "{basic:?}");
}

/// What no documented route matches takes `$default` to the function (behind the authorizer),
/// which answers it as a problem: 404, or 405 for a documented path.
#[tokio::test]
async fn unknown_routes_and_methods_reach_the_function_through_default_with_a_request_id() {
    let api = TestApi::spawn().await;
    let alice = api.user("alice");

    let unknown = alice.get("/v2/sessions").await;
    let wrong_method = alice.send(Method::PUT, "/v1/sessions", None, &[]).await;
    let trailing = alice.get("/v1/sessions/").await;
    let anonymous = api.anonymous().get("/v2/sessions").await;

    for (answer, status, problem) in [
        (&unknown, StatusCode::NOT_FOUND, "not-found"),
        (
            &wrong_method,
            StatusCode::METHOD_NOT_ALLOWED,
            "method-not-allowed",
        ),
        (&trailing, StatusCode::NOT_FOUND, "not-found"),
    ] {
        assert_eq!(answer.status, status, "{answer:?}");
        assert_eq!(answer.problem(), problem);
        assert!(answer.header("apigw-requestid").is_some());
    }
    assert_eq!(anonymous.status, StatusCode::UNAUTHORIZED, "{anonymous:?}");
    assert_eq!(anonymous.body, json!({"message": "Unauthorized"}));
}

#[tokio::test]
async fn health_and_the_openapi_document_need_no_token() {
    let api = TestApi::spawn().await;
    let anyone = api.anonymous();

    let health = anyone.get("/v1/health").await;
    let openapi = anyone.get("/v1/openapi.json").await;

    assert_eq!(health.status, StatusCode::OK, "{health:?}");
    assert_eq!(health.body["status"], "ok");
    let names: Vec<_> = health.body["dependencies"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| (d["name"].as_str().unwrap(), d["state"].as_str().unwrap()))
        .collect();
    assert_eq!(names, [("store", "ok"), ("simulator_service", "ok")]);
    assert_eq!(openapi.status, StatusCode::OK);
    assert!(openapi.body["openapi"].as_str().unwrap().starts_with("3.1"));
    assert!(openapi.body["paths"]["/v1/sessions/{session_id}/reconnect"]["post"].is_object());
}

#[tokio::test]
async fn local_tokens_are_minted_for_any_subject_and_bad_requests_name_the_field() {
    let api = TestApi::spawn().await;
    let anyone = api.anonymous();

    let minted = anyone
        .post(
            "/_local/tokens",
            &json!({"sub": "carol", "scopes": ["sessions:read"]}),
        )
        .await;
    let empty = anyone.post("/_local/tokens", &json!({"sub": ""})).await;
    let unknown = anyone
        .post("/_local/tokens", &json!({"sub": "c", "admin": true}))
        .await;

    assert_eq!(minted.status, StatusCode::CREATED, "{minted:?}");
    assert_eq!(minted.body["token_type"], "Bearer");
    let token = minted.body["token"].as_str().unwrap();
    let carol = api.with_authorization(&format!("Bearer {token}"));
    assert_eq!(carol.get("/v1/sessions").await.status, StatusCode::OK);
    assert_eq!(empty.status, StatusCode::BAD_REQUEST, "{empty:?}");
    assert!(empty.body["message"].as_str().unwrap().starts_with("sub"));
    assert_eq!(unknown.status, StatusCode::BAD_REQUEST, "{unknown:?}");
    assert!(
        unknown.body["message"].as_str().unwrap().contains("admin"),
        "{unknown:?}"
    );
}

#[tokio::test]
async fn the_endpoints_file_is_written_once_the_stack_is_ready() {
    let dir = std::env::temp_dir().join(format!("session-local-{}", ulid::Ulid::new()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("endpoints.json");
    let mut settings =
        session_local::stack::StackSettings::ephemeral(session_core::config::Settings::default());
    settings.endpoints_file = Some(path.clone());

    let stack = session_local::stack::Stack::start(settings).await.unwrap();

    let written: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    assert_eq!(written["http_api"], stack.endpoints().http_api.as_str());
    assert_eq!(
        written["token_url"],
        format!("{}/_local/tokens", stack.endpoints().http_api)
    );
    let health = reqwest::get(format!(
        "{}/v1/health",
        written["http_api"].as_str().unwrap()
    ))
    .await
    .unwrap();
    assert_eq!(health.status(), StatusCode::OK);
    stack.shutdown().await.unwrap();
    std::fs::remove_dir_all(dir).unwrap();
}

#[tokio::test]
async fn the_local_jwks_publishes_the_key_that_signs_local_tokens() {
    let api = TestApi::spawn().await;
    let anyone = api.anonymous();

    let minted = anyone.post("/_local/tokens", &json!({"sub": "dave"})).await;
    let jwks = anyone.get("/_local/jwks.json").await;

    assert_eq!(jwks.status, StatusCode::OK, "{jwks:?}");
    let token = minted.body["token"].as_str().unwrap();
    let header: serde_json::Value = {
        use base64::Engine as _;
        let encoded = token.split('.').next().unwrap();
        serde_json::from_slice(
            &base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(encoded)
                .unwrap(),
        )
        .unwrap()
    };
    let keys = jwks.body["keys"].as_array().unwrap();
    let key = keys
        .iter()
        .find(|k| k["kid"] == header["kid"])
        .expect("the token's kid is published");
    assert_eq!(key["kty"], "EC");
    assert_eq!(header["alg"], "ES256");
}
