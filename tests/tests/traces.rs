//! Distributed traces through the local stack: an OTLP receiver started here (a tonic server of
//! the collector's `TraceService`) gets the spans of every hop of one user action, all in the
//! trace the client started with its `traceparent`, each hop parented in that trace, and the
//! streamer's subscription to the simulator linked to it; a WebSocket push's `@connections`
//! posts carry the push's trace. The web page, in headless Chromium, starts a trace with each
//! API call, which the authorizer and the function continue.
//!
//! One test in its own binary: it installs the process-wide subscriber (the exporter is passed
//! as an argument, not through environment variables).

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use opentelemetry_proto::tonic::trace::v1::Span;
use session_core::config::{LogFormat, Settings, TelemetrySettings};
use session_core::telemetry::{self, TraceExport};
use session_local::stack::{Stack, StackSettings};
use tokio::net::TcpListener;
use tonic::transport::Server;
use tonic::transport::server::TcpIncoming;

/// Every span exported to it, as sent.
#[derive(Debug, Clone, Default)]
struct Receiver {
    spans: Arc<Mutex<Vec<Span>>>,
}

#[tonic::async_trait]
impl TraceService for Receiver {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        let spans = request
            .into_inner()
            .resource_spans
            .into_iter()
            .flat_map(|r| r.scope_spans)
            .flat_map(|s| s.spans);
        self.spans.lock().expect("not poisoned").extend(spans);
        Ok(tonic::Response::new(ExportTraceServiceResponse::default()))
    }
}

impl Receiver {
    /// Serves on a free loopback port; returns the collector's URL.
    async fn spawn(&self) -> String {
        let listener = TcpListener::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)))
            .await
            .expect("a free port");
        let addr = listener.local_addr().expect("an address");
        let service = TraceServiceServer::new(self.clone());
        tokio::spawn(
            Server::builder()
                .add_service(service)
                .serve_with_incoming(TcpIncoming::from(listener)),
        );
        format!("http://{addr}")
    }

    /// Every span received so far.
    fn all(&self) -> Vec<Span> {
        self.spans.lock().expect("not poisoned").clone()
    }

    /// The spans of `trace_id` received so far.
    fn trace(&self, trace_id: &[u8]) -> Vec<Span> {
        let spans = self.spans.lock().expect("not poisoned");
        spans
            .iter()
            .filter(|s| s.trace_id == trace_id)
            .cloned()
            .collect()
    }
}

/// The span's `component` attribute: the part that made it.
fn component(span: &Span) -> Option<&str> {
    span.attributes
        .iter()
        .find(|a| a.key == "component")
        .and_then(|a| match a.value.as_ref()?.value.as_ref()? {
            Value::StringValue(s) => Some(s.as_str()),
            _ => None,
        })
}

fn hex(text: &str) -> Vec<u8> {
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).expect("hex"))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_user_action_is_one_trace_across_every_hop_the_subscription_links_to_it_and_posts_carry_the_push()
 {
    // Arrange: a collector, this process's spans exported to it, a stack.
    let receiver = Receiver::default();
    let collector = receiver.spawn().await;
    telemetry::init_with(
        &TelemetrySettings {
            log_format: LogFormat::Json,
            log_filter: "info".to_owned(),
        },
        &TraceExport {
            endpoint: Some(collector),
            service_name: "session-local".to_owned(),
        },
    )
    .expect("telemetry set up");
    let stack = Stack::start(StackSettings::ephemeral(Settings::default()))
        .await
        .expect("the local stack starts");
    let base = &stack.endpoints().http_api;
    let trace_id = "4bf92f3577b34da6a3ce929d0e0e4736";
    let client_span = "00f067aa0ba902b7";
    let traceparent = format!("00-{trace_id}-{client_span}-01");
    let http = reqwest::Client::new();
    let authorization = format!("Bearer {}", stack.token("alice"));

    // A POST of the page's, in its trace or (`None`) in none.
    let post = |path: String, body: serde_json::Value, traceparent: Option<&str>| {
        let mut request = http
            .post(format!("{base}{path}"))
            .header("authorization", &authorization)
            .json(&body);
        if let Some(traceparent) = traceparent {
            request = request.header("traceparent", traceparent);
        }
        async move { request.send().await.expect("the API answers") }
    };

    // Act: create a session and start a simulator, as the page does, in the page's trace.
    let created: serde_json::Value = post(
        "/v1/sessions".to_owned(),
        serde_json::json!({}),
        Some(&traceparent),
    )
    .await
    .json()
    .await
    .expect("JSON");
    let session = created["session_id"].as_str().expect("a session id");
    let started = post(
        format!("/v1/sessions/{session}/simulators"),
        serde_json::json!({"symbols": ["BTC-USD"]}),
        Some(&traceparent),
    )
    .await;
    assert_eq!(started.status(), 202);
    // Then an SSE stream (in a trace of its own), read to its first event: the streamer
    // subscribes to the simulator. Stopping the stack ends the subscription and its span.
    let ticket: serde_json::Value = post(
        format!("/v1/sessions/{session}/tickets"),
        serde_json::json!({"transport": "sse"}),
        None,
    )
    .await
    .json()
    .await
    .expect("JSON");
    let url = ticket["url"].as_str().expect("a stream URL");
    tokio::time::timeout(Duration::from_secs(10), async {
        let mut response = http.get(url).send().await.expect("the streamer answers");
        let mut text = String::new();
        while !text.lines().any(|l| l.starts_with("id: ")) {
            let chunk = response.chunk().await.expect("a chunk").expect("more");
            text.push_str(&String::from_utf8_lossy(&chunk));
        }
    })
    .await
    .expect("an event within 10 s");
    // And a WebSocket connection, to its first pushed message: the streamer's push of the
    // connection posts it through `@connections` with its `traceparent`, which the API's
    // stand-in continues.
    let ws_ticket: serde_json::Value = post(
        format!("/v1/sessions/{session}/tickets"),
        serde_json::json!({"transport": "ws"}),
        None,
    )
    .await
    .json()
    .await
    .expect("JSON");
    let ws_url = ws_ticket["url"]
        .as_str()
        .expect("a WebSocket URL")
        .to_owned();
    tokio::time::timeout(Duration::from_secs(10), async {
        use futures_util::StreamExt as _;
        let (mut socket, _) = tokio_tungstenite::connect_async(ws_url)
            .await
            .expect("the WebSocket API answers");
        loop {
            match socket.next().await {
                Some(Ok(tokio_tungstenite::tungstenite::Message::Text(_))) => break,
                Some(Ok(_)) => {}
                other => panic!("the connection ended: {other:?}"),
            }
        }
    })
    .await
    .expect("a pushed message within 10 s");
    // And the web page, in a browser: its "Create session" is a trace of the page's own.
    let page_trace = page_creates_a_session(&stack)
        .await
        .expect("the page creates a session");
    drop(stack);

    // Assert: within 10 s, the trace has a span of every hop, and a subscription links to it.
    let wanted = [
        "rest-api",
        "authorizer",
        "auth-service",
        "exchange-simulator",
    ];
    let linked = |s: &Span| {
        component(s) == Some("streamer") && s.links.iter().any(|l| l.trace_id == hex(trace_id))
    };
    // A post of the API's stand-in whose parent is a streamer's span of the same trace.
    let pushed = |all: &[Span]| {
        all.iter().any(|post| {
            component(post) == Some("ws-api")
                && all.iter().any(|push| {
                    component(push) == Some("streamer")
                        && push.span_id == post.parent_span_id
                        && push.trace_id == post.trace_id
                })
        })
    };
    let mut spans = Vec::new();
    let mut subscription = None;
    let mut posted = false;
    for _ in 0..100 {
        telemetry::flush().await;
        spans = receiver.trace(&hex(trace_id));
        let all = receiver.all();
        subscription = all.iter().find(|s| linked(s)).cloned();
        posted = pushed(&all);
        let from_page = receiver.trace(&hex(&page_trace));
        if subscription.is_some()
            && posted
            && ["rest-api", "authorizer"]
                .iter()
                .all(|w| from_page.iter().any(|s| component(s) == Some(w)))
            && wanted
                .iter()
                .all(|w| spans.iter().any(|s| component(s) == Some(w)))
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        posted,
        "an @connections post in the trace of the streamer's push of the connection"
    );
    let from_page = receiver.trace(&hex(&page_trace));
    let page_span = |part: &str| {
        from_page
            .iter()
            .find(|s| component(s) == Some(part))
            .unwrap_or_else(|| panic!("no span of {part} in the page's trace: {from_page:#?}"))
            .parent_span_id
            .clone()
    };
    assert_eq!(
        page_span("rest-api"),
        page_span("authorizer"),
        "the function and the authorizer both continue the page's span"
    );
    assert!(
        !from_page.iter().any(|s| s.span_id == page_span("rest-api")),
        "the page's span is the client's, not one of the service's"
    );
    let subscription = subscription.expect("a streamer subscription span linked to the trace");
    assert_ne!(subscription.trace_id, hex(trace_id), "a root of its own");
    assert!(subscription.parent_span_id.is_empty(), "a root of its own");
    let link = &subscription.links[0];
    assert!(
        spans.iter().any(|s| s.span_id == link.span_id),
        "linked to a span of the trace (the simulator's start)"
    );
    let by_id: HashMap<&[u8], &Span> = spans.iter().map(|s| (&s.span_id[..], s)).collect();
    // The chain of parts from a span up to the client's span.
    let ancestry = |span: &Span| {
        let mut parts = Vec::new();
        let mut parent = span.parent_span_id.clone();
        while let Some(next) = by_id.get(&parent[..]) {
            parts.extend(component(next).map(str::to_owned));
            parent = next.parent_span_id.clone();
        }
        assert_eq!(
            parent,
            hex(client_span),
            "every chain ends at the client's span"
        );
        parts
    };
    for part in wanted {
        let span = spans
            .iter()
            .find(|s| component(s) == Some(part))
            .unwrap_or_else(|| panic!("no span of {part} in the trace: {spans:#?}"));
        let above = ancestry(span);
        match part {
            "auth-service" => assert!(above.contains(&"authorizer".to_owned()), "{above:?}"),
            "exchange-simulator" => assert!(above.contains(&"rest-api".to_owned()), "{above:?}"),
            // The entry points continue the client's span directly.
            _ => assert_eq!(span.parent_span_id, hex(client_span), "{part}"),
        }
    }
}

/// Opens the stack's web page in headless Chromium, gets a token and creates a session as a
/// person would; returns the trace id the page shows for that call.
async fn page_creates_a_session(stack: &Stack) -> anyhow::Result<String> {
    use session_tests::browser::{Chromedriver, click, until};

    let driver = Chromedriver::start().await?;
    let page = driver.browser().await?;
    page.goto(&stack.endpoints().web).await?;
    until(&page, "the endpoints read from /config.json", |now| {
        now.value["ready"] == true
    })
    .await?;
    click(&page, "get-token").await?;
    until(&page, "a token", |now| {
        now.text("token").starts_with("for ")
    })
    .await?;
    click(&page, "create-session").await?;
    let shown = until(&page, "a session", |now| {
        now.text("session").starts_with("ses_")
    })
    .await?;
    page.close().await?;
    let trace = shown.text("trace").to_owned();
    anyhow::ensure!(
        trace.len() == 32 && trace.bytes().all(|b| b.is_ascii_hexdigit()),
        "the page shows a trace id, not {trace:?}"
    );
    Ok(trace)
}
