//! Behind CloudFront and AWS WAF (`edge.origin_secret_arn`), the REST API answers only the
//! requests that carry the edge's secret header: the real event payload of a request that went
//! to the `execute-api` endpoint directly is refused, and a rotation of the secret is picked up
//! by a warm function. The secret lives in moto's Secrets Manager and is read as the REST API
//! reads it in Lambda.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use serde_json::{Value, json};
use session_core::clock::SystemClock;
use session_core::component::Component;
use session_core::config::{EdgeSettings, Settings};
use session_core::secrets::{local_client, read_secret_string};
use session_core::store::InMemoryStore;
use session_functions::http::edge::{self, EdgeGuard, FetchSecret};
use session_functions::invoke::invoke;
use session_tests::moto::Moto;

/// A new edge secret holding `value`; its name says what it is (the permission check maps it to
/// the template's EdgeOriginSecret).
async fn edge_secret(value: &str) -> String {
    Moto::shared().create_secret("edge-origin", value).await
}

/// The REST router, as the Lambda serves it behind the edge `guard`.
fn router(guard: Arc<EdgeGuard>) -> axum::Router {
    let settings = Settings::default();
    let clock = Arc::new(SystemClock);
    let app = session_functions::wiring::app(
        &settings,
        Arc::new(InMemoryStore::new(clock.clone())),
        session_functions::wiring::simulator_backend(&settings).unwrap(),
        clock,
    );
    edge::behind_edge(session_functions::http::router(app), guard)
}

/// The status and body API Gateway gets for `GET /v1/openapi.json` carrying `headers`.
async fn get(router: &axum::Router, headers: &[(&str, &str)]) -> (u16, Value) {
    let file = session_tests::moto::repo_root().join("events/openapi-get.json");
    let mut event: Value = serde_json::from_slice(&std::fs::read(file).unwrap()).unwrap();
    for (name, value) in headers {
        event["headers"][*name] = json!(value);
    }
    let response = invoke(router.clone(), event).await.unwrap();
    let body = response["body"].as_str().unwrap_or("null");
    (
        u16::try_from(response["statusCode"].as_u64().unwrap()).unwrap(),
        serde_json::from_str(body).unwrap_or(Value::Null),
    )
}

#[tokio::test]
async fn behind_the_edge_only_requests_carrying_its_secret_header_are_answered() {
    let arn = edge_secret("s3cr3t-from-cloudfront").await;
    let settings = EdgeSettings {
        origin_secret_arn: Some(arn),
        ..EdgeSettings::default()
    };
    let client = local_client(Moto::shared().endpoint(), Component::RestApi);
    let guard = edge::guard(&settings, client).await.unwrap().unwrap();
    let router = router(guard);

    let direct = get(&router, &[]).await;
    let forged = get(&router, &[("x-origin-verify", "guess")]).await;
    let through_edge = get(&router, &[("x-origin-verify", "s3cr3t-from-cloudfront")]).await;

    assert_eq!(direct.0, 403, "{direct:?}");
    assert_eq!(
        direct.1["type"], "urn:session-service:problem:edge-only",
        "{direct:?}"
    );
    assert_eq!(forged.0, 403, "{forged:?}");
    assert_eq!(through_edge.0, 200, "{through_edge:?}");
    assert!(through_edge.1["openapi"].is_string());
}

#[tokio::test]
async fn without_an_edge_no_guard_is_built_and_nothing_is_read() {
    // An unreachable endpoint: any read would fail the call.
    let client = local_client("http://127.0.0.1:9", Component::RestApi);

    let guard = edge::guard(&EdgeSettings::default(), client).await.unwrap();

    assert!(guard.is_none());
}

#[tokio::test]
async fn a_rotation_refuses_nothing_and_a_probing_client_cannot_make_the_function_read_at_will() {
    let arn = edge_secret(r#"{"current": "generation-1", "previous": ""}"#).await;
    let client = local_client(Moto::shared().endpoint(), Component::RestApi);
    let reads = Arc::new(AtomicU32::new(0));
    let fetch: FetchSecret = {
        let (arn, reads) = (arn.clone(), reads.clone());
        Arc::new(move || {
            let (client, arn, reads) = (client.clone(), arn.clone(), reads.clone());
            Box::pin(async move {
                reads.fetch_add(1, Ordering::SeqCst);
                read_secret_string(&client, &arn).await
            })
        })
    };
    let refresh = Duration::from_millis(300);
    let guard = EdgeGuard::new("x-origin-verify", fetch, refresh)
        .await
        .unwrap();
    let router = router(Arc::new(guard));
    assert_eq!(
        get(&router, &[("x-origin-verify", "generation-1")]).await.0,
        200
    );

    // Step one of a rotation: the new value becomes current, the old one previous; CloudFront
    // still sends the old one, and a cold function reads both.
    Moto::shared()
        .secrets_admin()
        .put_secret_value()
        .secret_id(&arn)
        .secret_string(r#"{"current": "generation-2", "previous": "generation-1"}"#)
        .send()
        .await
        .unwrap();
    let old_still = get(&router, &[("x-origin-verify", "generation-1")]).await;
    let shared = &router;
    let probes: Vec<u16> = futures_util::future::join_all((0..20).map(|i| async move {
        get(shared, &[("x-origin-verify", &format!("guess-{i}"))])
            .await
            .0
    }))
    .await;
    let reads_after_probes = reads.load(Ordering::SeqCst);
    // Step two: CloudFront sends the new value; the warm function reads the secret again at
    // its first mismatch past the refresh interval.
    tokio::time::sleep(refresh).await;
    let new_value = get(&router, &[("x-origin-verify", "generation-2")]).await;

    assert_eq!(old_still.0, 200, "{old_still:?}");
    assert!(probes.iter().all(|status| *status == 403), "{probes:?}");
    assert!(
        reads_after_probes <= 2,
        "20 wrong values within one interval read the secret {reads_after_probes} times"
    );
    assert_eq!(new_value.0, 200, "{new_value:?}");
}

#[tokio::test]
async fn behind_the_edge_per_address_limits_count_the_viewer_not_cloudfront() {
    let arn = edge_secret("through-cloudfront").await;
    let settings = EdgeSettings {
        origin_secret_arn: Some(arn),
        ..EdgeSettings::default()
    };
    let client = local_client(Moto::shared().endpoint(), Component::RestApi);
    let router = router(edge::guard(&settings, client).await.unwrap().unwrap());
    let burst = Settings::default().rate_limits.per_address.burst;
    // Every event has the same sourceIp (CloudFront's, as API Gateway sees it behind the edge).
    let from = |viewer: &'static str| {
        let router = router.clone();
        async move {
            let headers = [
                ("x-origin-verify", "through-cloudfront"),
                ("cloudfront-viewer-address", viewer),
            ];
            get(&router, &headers).await.0
        }
    };

    // The burst, then as fast as one caller goes: refills (50 a second) cannot keep up.
    let mut flooder = Vec::new();
    while flooder.len() < 1_000 && flooder.last() != Some(&429) {
        flooder.push(from("198.51.100.10:40000").await);
    }
    let neighbour = from("198.51.100.11:40000").await;

    let burst = usize::try_from(burst).unwrap();
    assert!(flooder[..burst].iter().all(|s| *s == 200), "{flooder:?}");
    assert_eq!(flooder.last(), Some(&429), "{} requests", flooder.len());
    assert_eq!(
        neighbour, 200,
        "another viewer behind the same CloudFront address"
    );
}
