//! The streamer's CloudWatch metrics: `PutMetricData` against an endpoint this test starts on
//! loopback, decoded as the Rust SDK sends it (Smithy RPC v2 CBOR, `POST
//! /service/GraniteServiceVersion20100801/operation/PutMetricData`; gzip past the SDK's size
//! threshold). moto cannot read that protocol.
//!
//! A binary of its own: the streamer's figures come from the process's Prometheus recorder,
//! so no other test's streamer may count into them.

#![allow(unreachable_pub, clippy::unwrap_used)]

use std::io::Read as _;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use serde_json::{Value, json};
use session_tests::stream_fixture::{Fixture, PATIENCE};

/// The namespace the streamer's role may publish to (what the permission check holds it to).
const NAMESPACE: &str = "SessionService";

/// Every `PutMetricData` request received (and accepted), decoded to JSON.
#[derive(Clone, Default)]
struct Received(Arc<Mutex<Vec<Value>>>);

/// An endpoint on 127.0.0.1 that answers `PutMetricData` as CloudWatch does.
async fn start_endpoint() -> (String, Received) {
    start_failing_endpoint(0).await
}

/// The same, answering its first `failures` requests with a `500`.
async fn start_failing_endpoint(failures: usize) -> (String, Received) {
    let received = Received::default();
    let state = received.clone();
    let failures = Arc::new(std::sync::atomic::AtomicUsize::new(failures));
    let app = axum::Router::new().route(
        "/service/GraniteServiceVersion20100801/operation/PutMetricData",
        axum::routing::post(move |headers: HeaderMap, body: Bytes| {
            let state = state.clone();
            let failures = failures.clone();
            async move {
                let fail = failures
                    .fetch_update(
                        std::sync::atomic::Ordering::SeqCst,
                        std::sync::atomic::Ordering::SeqCst,
                        |n| n.checked_sub(1),
                    )
                    .is_ok();
                if fail {
                    return StatusCode::INTERNAL_SERVER_ERROR.into_response();
                }
                assert_eq!(headers["smithy-protocol"], "rpc-v2-cbor");
                assert_eq!(headers["content-type"], "application/cbor");
                let mut raw = body.to_vec();
                if headers.get("content-encoding").is_some_and(|v| v == "gzip") {
                    let mut inflated = Vec::new();
                    flate2::read::GzDecoder::new(raw.as_slice())
                        .read_to_end(&mut inflated)
                        .unwrap();
                    raw = inflated;
                }
                let value = to_json(ciborium::from_reader(raw.as_slice()).unwrap());
                record_call(&headers, &value);
                state.0.lock().unwrap().push(value);
                // An empty output: an empty CBOR map.
                (
                    StatusCode::OK,
                    [
                        ("smithy-protocol", "rpc-v2-cbor"),
                        ("content-type", "application/cbor"),
                    ],
                    vec![0xa0_u8],
                )
                    .into_response()
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (format!("http://{address}"), received)
}

/// Appends the call to `AWS_CALL_LOG`, when set, as `scripts/moto_server.py` records its calls:
/// `scripts/permissions-check.sh` holds it against the caller's role (`cloudwatch:namespace`).
fn record_call(headers: &HeaderMap, request: &Value) {
    let Some(log) = std::env::var_os("AWS_CALL_LOG") else {
        return;
    };
    let agent = ["x-amz-user-agent", "user-agent"]
        .iter()
        .filter_map(|h| headers.get(*h)?.to_str().ok())
        .collect::<Vec<_>>()
        .join(" ");
    let component = agent
        .split_whitespace()
        .find_map(|token| token.strip_prefix("app/session-"));
    let line = json!({
        "component": component,
        "service": "cloudwatch",
        "operation": "PutMetricData",
        "params": { "Namespace": request["Namespace"] },
    });
    let mut out = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .unwrap();
    // One write per line: whole lines even across processes.
    std::io::Write::write_all(&mut out, format!("{line}\n").as_bytes()).unwrap();
}

/// CBOR to JSON: maps with text keys, arrays, numbers, text; a tag (timestamps: tag 1) as its
/// content.
fn to_json(value: ciborium::Value) -> Value {
    use ciborium::Value as C;
    match value {
        C::Map(entries) => Value::Object(
            entries
                .into_iter()
                .map(|(k, v)| (k.into_text().unwrap(), to_json(v)))
                .collect(),
        ),
        C::Array(items) => Value::Array(items.into_iter().map(to_json).collect()),
        C::Text(text) => json!(text),
        C::Integer(i) => json!(i128::from(i) as f64),
        C::Float(f) => json!(f),
        C::Bool(b) => json!(b),
        C::Tag(_, inner) => to_json(*inner),
        other => panic!("unexpected CBOR in PutMetricData: {other:?}"),
    }
}

impl Received {
    /// Every datum received so far.
    fn data(&self) -> Vec<Value> {
        self.0
            .lock()
            .unwrap()
            .iter()
            .flat_map(|request| {
                assert_eq!(request["Namespace"], NAMESPACE);
                request["MetricData"].as_array().unwrap().clone()
            })
            .collect()
    }

    /// The sum of every value received for `name`.
    fn sum(&self, name: &str) -> f64 {
        self.data()
            .iter()
            .filter(|d| d["MetricName"] == name)
            .map(|d| d["Value"].as_f64().unwrap())
            .sum()
    }
}

/// A series' value in `/metrics` text (summed over its labels).
fn prometheus(text: &str, series: &str) -> f64 {
    text.lines()
        .filter(|l| l.starts_with(series) && l[series.len()..].starts_with([' ', '{']))
        .filter_map(|l| l.rsplit_once(' ')?.1.parse::<f64>().ok())
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_streamer_publishes_what_it_delivered_to_cloudwatch() {
    // Arrange: a streamer publishing every 300 ms to the test's endpoint.
    let (endpoint, received) = start_endpoint().await;
    let fixture = Fixture::start_stack(&["BTC-USD"], 50, |stack| {
        stack.streamer.cloudwatch_namespace = Some(NAMESPACE.to_owned());
        stack.streamer.cloudwatch_endpoint = Some(endpoint.clone());
        stack.streamer.cloudwatch_interval_ms = Duration::from_millis(300);
    })
    .await;

    // Act: one client reads 50 events (a second at 50/s: several publishes), then the
    // simulator stops and the client leaves.
    let mut client = fixture.open().await;
    let mut read = 0;
    while read < 50 {
        let event = client.next(PATIENCE).await.expect("an event");
        if event.event != "heartbeat" {
            read += 1;
        }
    }
    fixture.stop_simulator().await;
    drop(client);
    tokio::time::sleep(Duration::from_secs(1)).await;
    let metrics = fixture.metrics().await;
    let delivered = prometheus(&metrics, "streamer_events_delivered_total");
    let bytes = prometheus(&metrics, "streamer_delivered_bytes_total");

    // Assert: what CloudWatch received adds up to what the streamer delivered.
    let deadline = Instant::now() + PATIENCE;
    while received.sum("EventsDelivered") < delivered && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(delivered >= 50.0, "{delivered} events delivered");
    // Whole numbers, exact in an f64.
    assert_eq!(received.sum("EventsDelivered") as u64, delivered as u64);
    assert_eq!(received.sum("BytesDelivered") as u64, bytes as u64);
    assert!(bytes > 0.0, "{bytes} bytes delivered");
    let data = received.data();
    for datum in &data {
        assert_eq!(
            datum["Dimensions"],
            json!([{ "Name": "Service", "Value": "streamer" }]),
            "{datum}"
        );
        let name = datum["MetricName"].as_str().unwrap();
        let published = session_streamer::cloudwatch::PUBLISHED
            .iter()
            .find(|p| p.name == name)
            .unwrap_or_else(|| panic!("{name} is not a published metric"));
        assert_eq!(datum["Unit"], published.unit, "{datum}");
        assert!(datum["Timestamp"].as_f64().unwrap() > 1.7e9, "{datum}");
    }
    let units = |name: &str| {
        data.iter()
            .find(|d| d["MetricName"] == name)
            .map(|d| d["Unit"].clone())
    };
    assert_eq!(units("BytesDelivered"), Some(json!("Bytes")));
    assert_eq!(units("EventsDelivered"), Some(json!("Count")));
    // A client's queue depth, as values and counts (CloudWatch computes percentiles from them).
    let queue: Vec<&Value> = data
        .iter()
        .filter(|d| d["MetricName"] == "ClientQueueBytes")
        .collect();
    assert!(!queue.is_empty());
    for datum in queue {
        assert_eq!(
            datum["Values"].as_array().unwrap().len(),
            datum["Counts"].as_array().unwrap().len()
        );
    }
    // While the client read, the gauge saw it.
    assert!(
        data.iter()
            .any(|d| d["MetricName"] == "SseClients" && d["Value"] == 1.0),
        "no publish saw the client"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_publish_is_counted_and_its_data_sent_with_the_next() {
    // Arrange: an endpoint that fails its first 3 requests (a publish and the SDK's 2 retries).
    let (endpoint, received) = start_failing_endpoint(3).await;
    let fixture = Fixture::start_stack(&["ETH-USD"], 10, |stack| {
        stack.streamer.cloudwatch_namespace = Some(NAMESPACE.to_owned());
        stack.streamer.cloudwatch_endpoint = Some(endpoint.clone());
        stack.streamer.cloudwatch_interval_ms = Duration::from_millis(200);
    })
    .await;

    // Act: wait for a request to be accepted.
    let deadline = Instant::now() + PATIENCE;
    while received.0.lock().unwrap().is_empty() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // Assert: the failure was counted, the streamer still serves, and the accepted request
    // carried the failed period too (two timestamps).
    let metrics = fixture.metrics().await;
    assert!(
        prometheus(&metrics, "streamer_cloudwatch_publish_failures_total") >= 1.0,
        "{metrics}"
    );
    let first = received.0.lock().unwrap()[0].clone();
    let mut stamps: Vec<u64> = first["MetricData"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| (d["Timestamp"].as_f64().unwrap() * 1000.0) as u64)
        .collect();
    stamps.sort_unstable();
    stamps.dedup();
    assert!(stamps.len() >= 2, "one period only: {first}");
    let live = reqwest::get(format!("{}/health/live", fixture.api.stack.endpoints().sse))
        .await
        .unwrap();
    assert!(live.status().is_success());
}
