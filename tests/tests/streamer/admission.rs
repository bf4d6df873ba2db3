//! Admission control and load shedding in the streamer: the pod's connection cap and its
//! readiness, the per-user and per-address stream caps, the request head's time and size
//! limits, and the write timeout of a client whose socket stopped draining. Real TCP, real
//! HTTP clients; distinct callers are distinct loopback source addresses.

use std::net::IpAddr;
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::Value;
use session_tests::sse::{self, SseStream};
use session_tests::stream_fixture::{Fixture, PATIENCE};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpSocket, TcpStream};

const SYMBOLS: [&str; 2] = ["BTC-USD", "ETH-USD"];

/// What the streamer answered a stream request: the open response, or the refusal.
pub(super) enum Opened {
    Streaming(reqwest::Response),
    Refused {
        status: StatusCode,
        retry_after: Option<String>,
        body: Value,
    },
}

impl Opened {
    pub(super) fn streaming(self) -> reqwest::Response {
        match self {
            Self::Streaming(response) => response,
            Self::Refused { status, body, .. } => panic!("refused: {status} {body}"),
        }
    }

    /// The refusal's status, `Retry-After` and problem document.
    pub(super) fn refused(self) -> (StatusCode, Option<String>, Value) {
        match self {
            Self::Streaming(response) => panic!("streaming: {response:?}"),
            Self::Refused {
                status,
                retry_after,
                body,
            } => (status, retry_after, body),
        }
    }
}

/// `GET url` with `token` as its bearer, from the loopback address `from` (each call is a
/// connection of its own).
pub(super) async fn open(url: &str, token: &str, from: &str) -> Opened {
    let from: IpAddr = from.parse().unwrap();
    let client = reqwest::Client::builder()
        .local_address(from)
        .connect_timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    let response = client
        .get(url)
        .header("accept", "text/event-stream")
        .bearer_auth(token)
        .send()
        .await
        .expect("the streamer answers");
    if response.status() == StatusCode::OK {
        return Opened::Streaming(response);
    }
    let status = response.status();
    let retry_after = response
        .headers()
        .get("retry-after")
        .map(|v| v.to_str().unwrap().to_owned());
    let body = response.json().await.unwrap_or(Value::Null);
    Opened::Refused {
        status,
        retry_after,
        body,
    }
}

/// The streamer's `/health/ready`: status and body.
async fn readiness(fixture: &Fixture) -> (StatusCode, Value) {
    let url = format!("{}/health/ready", fixture.api.stack.endpoints().sse);
    let answer = reqwest::get(url).await.unwrap();
    (answer.status(), answer.json().await.unwrap())
}

/// Polls readiness until `check` holds; the last answer.
async fn readiness_until(fixture: &Fixture, check: impl Fn(&Value) -> bool) -> (StatusCode, Value) {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let answer = readiness(fixture).await;
        if check(&answer.1) || Instant::now() > deadline {
            return answer;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The `host:port` of the streamer.
fn streamer_host(fixture: &Fixture) -> String {
    let sse = &fixture.api.stack.endpoints().sse;
    sse.strip_prefix("http://").unwrap().to_owned()
}

#[tokio::test]
async fn past_the_pod_cap_a_connection_gets_503_full_and_readiness_says_full_until_clients_leave() {
    let fixture = Fixture::start_stack(&SYMBOLS, 50, |s| s.streamer.max_connections = 4).await;
    let url = fixture.stream_url();
    let mut streams = Vec::new();
    for _ in 0..4 {
        streams.push(open(&url, &fixture.token, "127.0.0.1").await.streaming());
    }

    let (ready_status, ready) = readiness(&fixture).await;
    let (status, retry_after, problem) = open(&url, &fixture.token, "127.0.0.1").await.refused();
    streams.pop();
    let (after_status, after) = readiness_until(&fixture, |r| r["status"] != "full").await;
    let reopened = open(&url, &fixture.token, "127.0.0.1").await;

    assert_eq!(ready_status, StatusCode::SERVICE_UNAVAILABLE, "{ready}");
    assert_eq!(ready["status"], "full", "{ready}");
    assert_eq!(ready["reasons"], serde_json::json!(["full"]), "{ready}");
    assert_eq!(
        ready["connections"], 4,
        "the probe's own connection is not counted"
    );
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{problem}");
    assert_eq!(retry_after.as_deref(), Some("10"));
    assert_eq!(problem["type"], "urn:session-service:problem:full");
    assert_eq!(after_status, StatusCode::OK, "{after}");
    assert_eq!(after["connections"], 3, "{after}");
    assert!(
        matches!(reopened, Opened::Streaming(_)),
        "a place came back"
    );
    let metrics = fixture.metrics().await;
    assert!(
        metrics.contains("streamer_admission_refusals_total{reason=\"full\"}"),
        "{metrics}"
    );
}

#[tokio::test]
async fn a_user_past_the_per_user_cap_gets_429_too_many_streams_and_a_place_frees_when_a_stream_ends()
 {
    let fixture = Fixture::start_stack(&SYMBOLS, 50, |s| s.streamer.max_streams_per_user = 2).await;
    let url = fixture.stream_url();
    let first = open(&url, &fixture.token, "127.0.0.2").await.streaming();
    let _second = open(&url, &fixture.token, "127.0.0.3").await.streaming();

    let (status, retry_after, problem) = open(&url, &fixture.token, "127.0.0.4").await.refused();
    drop(first);
    let mut reopened = None;
    for _ in 0..100 {
        if let Opened::Streaming(response) = open(&url, &fixture.token, "127.0.0.4").await {
            reopened = Some(response);
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{problem}");
    assert_eq!(
        problem["type"],
        "urn:session-service:problem:too-many-streams"
    );
    assert_eq!(problem["quota"], "streams_per_user", "{problem}");
    assert_eq!(problem["limit"], 2, "{problem}");
    assert_eq!(retry_after.as_deref(), Some("5"));
    assert!(reopened.is_some(), "the ended stream gave its place back");
}

#[tokio::test]
async fn an_address_past_the_per_address_cap_gets_429_while_another_address_still_opens_streams() {
    let fixture = Fixture::start_stack(&SYMBOLS, 50, |s| {
        s.streamer.max_streams_per_user = 2;
        s.streamer.max_streams_per_address = 3;
    })
    .await;
    let bob = fixture.api.user("bob");
    let bob_token = fixture.api.stack.token("bob");
    let bob_session = bob.create_session().await;
    bob.start_simulator(&bob_session, &SYMBOLS).await;
    let bob_url = format!(
        "{}/v1/sessions/{bob_session}/stream",
        fixture.api.stack.endpoints().sse
    );
    let url = fixture.stream_url();
    let mut streams = Vec::new();
    for _ in 0..2 {
        streams.push(open(&url, &fixture.token, "127.0.0.2").await.streaming());
    }
    streams.push(open(&bob_url, &bob_token, "127.0.0.2").await.streaming());

    let (status, retry_after, problem) = open(&bob_url, &bob_token, "127.0.0.2").await.refused();
    let elsewhere = open(&bob_url, &bob_token, "127.0.0.3").await;

    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{problem}");
    assert_eq!(
        problem["type"],
        "urn:session-service:problem:too-many-streams"
    );
    assert_eq!(problem["quota"], "streams_per_address", "{problem}");
    assert_eq!(problem["limit"], 3, "{problem}");
    assert_eq!(retry_after.as_deref(), Some("5"));
    assert!(
        matches!(elsewhere, Opened::Streaming(_)),
        "bob, under his own cap, opens from another address"
    );
}

#[tokio::test]
async fn a_connection_that_sends_half_a_head_is_closed_within_the_header_timeout() {
    let fixture = Fixture::start_stack(&SYMBOLS, 50, |s| {
        s.streamer.header_timeout_ms = Duration::from_millis(500);
    })
    .await;
    let mut slow = TcpStream::connect(streamer_host(&fixture)).await.unwrap();
    let started = Instant::now();

    slow.write_all(b"GET /health/live HTTP/1.1\r\nHost: streamer\r\n")
        .await
        .unwrap();
    let mut answer = String::new();
    let closed = tokio::time::timeout(Duration::from_secs(5), slow.read_to_string(&mut answer))
        .await
        .expect("the streamer closes the connection");
    let took = started.elapsed();

    closed.unwrap();
    assert!(answer.starts_with("HTTP/1.1 408 "), "{answer}");
    assert!(
        took >= Duration::from_millis(450) && took < Duration::from_secs(3),
        "closed after {took:?}"
    );
}

#[tokio::test]
async fn a_request_head_over_16_kib_is_refused_with_431() {
    let fixture = Fixture::start(&SYMBOLS, 50, |_| {}).await;
    let mut client = TcpStream::connect(streamer_host(&fixture)).await.unwrap();
    let padding = "a".repeat(20 * 1024);

    client
        .write_all(format!("GET /health/live HTTP/1.1\r\nX-Padding: {padding}\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut answer = String::new();
    tokio::time::timeout(Duration::from_secs(5), client.read_to_string(&mut answer))
        .await
        .expect("the streamer closes the connection")
        .unwrap();

    assert!(answer.starts_with("HTTP/1.1 431 "), "{answer}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_stops_reading_is_closed_within_the_write_timeout_while_another_keeps_streaming()
 {
    let fixture = Fixture::start_stack(&SYMBOLS, 20_000, |s| {
        s.streamer.write_timeout_ms = Duration::from_millis(1_000);
    })
    .await;
    let bearer = format!("Bearer {}", fixture.token);
    let mut reader = sse::connect(&fixture.stream_url(), &[("authorization", &bearer)])
        .await
        .unwrap();
    // A client with a tiny receive window that never reads: the streamer's writes stop.
    let socket = TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let mut stalled = socket
        .connect(streamer_host(&fixture).parse().unwrap())
        .await
        .unwrap();
    let path = fixture
        .stream_url()
        .split_once("//")
        .unwrap()
        .1
        .split_once('/')
        .map(|(_, path)| format!("/{path}"))
        .unwrap();
    stalled
        .write_all(
            format!(
                "GET {path} HTTP/1.1\r\nHost: streamer\r\nAccept: text/event-stream\r\n\
                 Authorization: {bearer}\r\n\r\n"
            )
            .as_bytes(),
        )
        .await
        .unwrap();
    let hub = fixture.api.stack.streamer_hub();
    let clients = || hub.streams().first().map_or(0, |s| s.clients());
    let attached = Instant::now();
    while clients() < 2 {
        assert!(attached.elapsed() < PATIENCE, "both clients attach");
        keep_reading(&mut reader, Duration::from_millis(20)).await;
    }

    // Its socket buffers fill first (under a second at this rate), then 1 s without progress.
    let started = Instant::now();
    while clients() > 1 && started.elapsed() < Duration::from_secs(10) {
        keep_reading(&mut reader, Duration::from_millis(50)).await;
    }
    let took = started.elapsed();
    let after = keep_reading(&mut reader, Duration::from_millis(500)).await;

    assert_eq!(
        clients(),
        1,
        "the stalled client is closed (after {took:?})"
    );
    assert!(after > 0, "the reading client keeps streaming");
    let metrics = fixture.metrics().await;
    assert!(
        metrics.contains("streamer_connection_timeouts_total{kind=\"write\"}"),
        "{metrics}"
    );
    drop(stalled);
}

/// Reads `stream` for `period`; the events read.
async fn keep_reading(stream: &mut SseStream, period: Duration) -> usize {
    let until = Instant::now() + period;
    let mut events = 0;
    while Instant::now() < until {
        assert!(stream.next(PATIENCE).await.is_some(), "the stream goes on");
        events += 1;
    }
    events
}
