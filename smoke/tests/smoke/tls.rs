//! The TLS path of a deployment, where API Gateway and the SSE ingress terminate TLS: a proxy
//! with a certificate of a test CA in front of the local stack's parts.

use serde_json::{Value, json};
use session_smoke::client::Clients;
use session_smoke::sequence::{Repeats, Sequence};
use session_smoke::{sse, ws};
use url::Url;

use crate::helpers::{LocalStack, TlsProxy, address, pki, scratch, smoke, write_endpoints};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_over_https_passes_when_its_ca_is_trusted_and_names_the_certificate_otherwise() {
    // Arrange: the HTTP API (and the token route) only over https://.
    let dir = scratch("https");
    let local = LocalStack::start(&dir).await;
    let (ca_file, server) = pki(&dir);
    let http = &local.stack.endpoints().http_api;
    let proxy = TlsProxy::start(address(http), server).await;
    let https = format!("https://localhost:{}", proxy.port);
    let endpoints = json!({
        "http_api": https,
        "token_url": format!("{https}/_local/tokens"),
        "sse": local.endpoints()["sse"],
        "ws_api": local.endpoints()["ws_api"],
    });
    let file = write_endpoints(&dir, "https.json", &endpoints);
    let file = file.to_str().unwrap();

    // Act
    let trusted = smoke(
        &[
            file,
            "--events",
            "3",
            "--ca-file",
            ca_file.to_str().unwrap(),
        ],
        &[],
    )
    .await;
    let by_env = smoke(
        &[file, "--events", "3"],
        &[("SMOKE_CA_FILE", ca_file.to_str().unwrap())],
    )
    .await;
    let untrusted = smoke(&[file, "--events", "3"], &[]).await;

    // Assert
    assert!(trusted.status.success(), "{trusted}");
    assert!(
        trusted.line("create session").starts_with("ok "),
        "{trusted}"
    );
    assert!(by_env.status.success(), "{by_env}");
    untrusted.assert_failed_at("token", "invalid peer certificate: UnknownIssuer");
    let _ = std::fs::remove_dir_all(&dir);
}

/// `url` with its scheme, host and port replaced: the same path and ticket through the proxy.
fn through(url: &Url, scheme: &str, port: u16) -> Url {
    Url::parse(&format!(
        "{scheme}://localhost:{port}{}?{}",
        url.path(),
        url.query().unwrap_or_default()
    ))
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sse_and_websocket_clients_read_a_stream_over_tls() {
    // Arrange: a session, a simulator and a ticket for each transport; the ticket URLs name the
    // stack's plain ports, so each is opened through a TLS proxy in front of that port.
    let dir = scratch("tls-streams");
    let local = LocalStack::start(&dir).await;
    let (ca_file, server) = pki(&dir);
    let endpoints = local.stack.endpoints().clone();
    let sse_proxy = TlsProxy::start(address(&endpoints.sse), server.clone()).await;
    let ws_proxy = TlsProxy::start(address(&endpoints.ws_api), server).await;
    let http = reqwest::Client::new();
    let token = local.stack.token("carol");
    let post = |path: String, body: Value| {
        http.post(format!("{}{path}", endpoints.http_api))
            .bearer_auth(&token)
            .json(&body)
            .send()
    };
    let session: Value = post("/v1/sessions".into(), json!({}))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let session = session["session_id"].as_str().unwrap().to_owned();
    let started = post(
        format!("/v1/sessions/{session}/simulators"),
        json!({"symbols": ["BTC-USD"], "events_per_second": 100}),
    )
    .await
    .unwrap();
    assert_eq!(started.status(), 202);
    let ticket = |transport: &'static str| {
        let post = &post;
        let session = &session;
        async move {
            let ticket: Value = post(
                format!("/v1/sessions/{session}/tickets"),
                json!({"transport": transport}),
            )
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
            Url::parse(ticket["url"].as_str().unwrap()).unwrap()
        }
    };
    let sse_url = through(&ticket("sse").await, "https", sse_proxy.port);
    let ws_url = through(&ticket("ws").await, "wss", ws_proxy.port);
    let clients = Clients::new(Some(&ca_file)).expect("the clients");

    // Act
    let (mut events, status) = sse::open(&clients.http, &sse_url)
        .await
        .expect("SSE over https");
    let mut over_sse = Sequence::new(Repeats::Refuse);
    sse::read(&mut events, &mut over_sse, 5)
        .await
        .expect("events over https");
    let (mut socket, handshake) = ws::connect(&clients.tls, &ws_url).await.expect("wss");
    let mut over_ws = Sequence::new(Repeats::Drop);
    socket
        .heartbeat(1, &mut over_ws)
        .await
        .expect("a heartbeat_ack over wss");
    socket
        .events(&mut over_ws, 5)
        .await
        .expect("events over wss");
    socket.close().await;

    // Assert
    assert!(status.starts_with("200 text/event-stream"), "{status}");
    assert_eq!(over_sse.counts().events(), 5, "{over_sse}");
    assert!(handshake.starts_with("101"), "{handshake}");
    assert!(over_ws.snapshot().is_some(), "{over_ws}");
    assert!(over_ws.counts().events() >= 5, "{over_ws}");
    let _ = std::fs::remove_dir_all(&dir);
}
