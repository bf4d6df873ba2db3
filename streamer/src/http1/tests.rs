//! The server over real sockets: limits, timeouts, keep-alive, streaming and refusals.

use std::convert::Infallible;

use crate::settings::StreamerSettings;
use axum::body::Body;
use axum::routing::get;
use bytes::Bytes;
use futures_util::stream;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

use super::head::MAX_HEAD;
use super::*;

/// The production defaults, with a short header timeout.
fn limits() -> StreamerSettings {
    StreamerSettings {
        header_timeout_ms: Duration::from_millis(300),
        ..StreamerSettings::default()
    }
}

/// `serve` with the caps and timeouts of `settings`.
fn serve_with(
    listener: TcpListener,
    router: Router,
    draining: watch::Receiver<bool>,
    settings: &StreamerSettings,
) -> impl Future<Output = io::Result<()>> + use<> {
    serve(
        listener,
        router,
        draining,
        Admission::new(settings, 0),
        Timeouts::from_settings(settings),
    )
}

/// A server on a free port with a plain route and a streaming one.
async fn server() -> (std::net::SocketAddr, watch::Sender<bool>) {
    let router = Router::new()
        .route("/plain", get(|| async { "hello" }))
        .route(
            "/stream",
            get(|| async {
                let parts = ["one\n", "two\n"].map(|p| Ok::<_, Infallible>(Bytes::from(p)));
                Body::from_stream(stream::iter(parts))
            }),
        );
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let (draining, draining_rx) = watch::channel(false);
    tokio::spawn(serve_with(listener, router, draining_rx, &limits()));
    (address, draining)
}

/// Sends `request` and reads until the server closes the connection.
async fn exchange(address: std::net::SocketAddr, request: &str) -> String {
    let mut io = TcpStream::connect(address).await.unwrap();
    io.write_all(request.as_bytes()).await.unwrap();
    let mut answer = String::new();
    tokio::time::timeout(Duration::from_secs(5), io.read_to_string(&mut answer))
        .await
        .expect("the server closes the connection")
        .unwrap();
    answer
}

#[tokio::test]
async fn keep_alive_serves_requests_in_turn_and_close_ends_the_connection() {
    let (address, _draining) = server().await;

    let answer = exchange(
        address,
        "GET /plain HTTP/1.1\r\nhost: x\r\n\r\nGET /stream HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n",
    )
    .await;

    assert!(answer.starts_with("HTTP/1.1 200 OK\r\n"), "{answer}");
    assert!(
        answer.contains("content-length: 5\r\n\r\nhello"),
        "{answer}"
    );
    assert!(
        answer.ends_with("transfer-encoding: chunked\r\n\r\n4\r\none\n\r\n4\r\ntwo\n\r\n0\r\n\r\n"),
        "{answer}"
    );
    assert_eq!(answer.matches("HTTP/1.1 200 OK").count(), 2);
}

#[tokio::test]
async fn an_http_1_0_client_gets_a_stream_delimited_by_the_connection() {
    let (address, _draining) = server().await;

    let answer = exchange(address, "GET /stream HTTP/1.0\r\n\r\n").await;

    assert!(
        answer.contains("connection: close\r\n\r\none\ntwo\n"),
        "{answer}"
    );
    assert!(!answer.contains("chunked"), "{answer}");
}

#[tokio::test]
async fn requests_the_streamer_cannot_take_are_refused_and_closed() {
    let (address, _draining) = server().await;

    let with_body = exchange(
        address,
        "POST /plain HTTP/1.1\r\ncontent-length: 3\r\n\r\nabc",
    )
    .await;
    let garbage = exchange(address, "NOT HTTP\r\n\r\n").await;
    let unknown = exchange(address, "GET /nope HTTP/1.1\r\nconnection: close\r\n\r\n").await;

    assert!(with_body.starts_with("HTTP/1.1 413 "), "{with_body}");
    assert!(garbage.starts_with("HTTP/1.1 400 "), "{garbage}");
    assert!(unknown.starts_with("HTTP/1.1 404 "), "{unknown}");
}

#[tokio::test]
async fn a_head_larger_than_the_limit_is_answered_431_before_the_connection_closes() {
    let (address, _draining) = server().await;
    let padding = "a".repeat(MAX_HEAD);

    let answer = exchange(
        address,
        &format!("GET /plain HTTP/1.1\r\nx-padding: {padding}\r\n\r\n"),
    )
    .await;

    assert!(answer.starts_with("HTTP/1.1 431 "), "{answer}");
}

#[tokio::test]
async fn a_head_not_complete_within_the_header_timeout_is_answered_408_and_closed() {
    let (address, _draining) = server().await;
    let started = std::time::Instant::now();

    // Half a head, then nothing: the slowloris pattern.
    let answer = exchange(address, "GET /plain HTTP/1.1\r\nhost: x\r\n").await;

    assert!(answer.starts_with("HTTP/1.1 408 "), "{answer}");
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(300) && took < Duration::from_secs(3),
        "closed after {took:?}"
    );
}

#[tokio::test]
async fn a_connection_that_sends_nothing_is_closed_after_the_header_timeout() {
    let (address, _draining) = server().await;
    let mut silent = TcpStream::connect(address).await.unwrap();

    let mut rest = Vec::new();
    let closed = tokio::time::timeout(Duration::from_secs(3), silent.read_to_end(&mut rest)).await;

    assert!(
        closed.is_ok(),
        "closed well before the 60 s keep-alive idle"
    );
    assert!(rest.is_empty(), "without an answer");
}

#[tokio::test]
async fn past_the_cap_a_request_is_answered_503_full_and_probes_are_still_served() {
    let router = Router::new()
        .route("/plain", get(|| async { "hello" }))
        .route("/health/live", get(|| async { "ok" }));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let (_draining, draining_rx) = watch::channel(false);
    let settings = StreamerSettings {
        max_connections: 1,
        ..limits()
    };
    tokio::spawn(serve_with(listener, router, draining_rx, &settings));
    let _holder = TcpStream::connect(address).await.unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;

    let refused = exchange(address, "GET /plain HTTP/1.1\r\nhost: x\r\n\r\n").await;
    let probe = exchange(
        address,
        "GET /health/live HTTP/1.1\r\nconnection: close\r\n\r\n",
    )
    .await;

    assert!(
        refused.starts_with("HTTP/1.1 503 Service Unavailable\r\n"),
        "{refused}"
    );
    assert!(refused.contains("retry-after: 10\r\n"), "{refused}");
    assert!(
        refused.contains("\"type\":\"urn:session-service:problem:full\""),
        "{refused}"
    );
    assert!(probe.starts_with("HTTP/1.1 200 OK\r\n"), "{probe}");
}

/// Tells `ended` when it is dropped (the server let go of the response).
struct Ended(Option<tokio::sync::oneshot::Sender<()>>);

impl Drop for Ended {
    fn drop(&mut self) {
        if let Some(ended) = self.0.take() {
            let _ = ended.send(());
        }
    }
}

#[tokio::test]
async fn a_client_that_stops_reading_is_cut_after_the_write_timeout_of_no_progress() {
    let (ended, ended_rx) = tokio::sync::oneshot::channel();
    let guard = std::sync::Arc::new(std::sync::Mutex::new(Some(Ended(Some(ended)))));
    let router = Router::new().route(
        "/flood",
        get(move || {
            let guard = guard.lock().unwrap().take();
            async move {
                // An endless stream of 64 KiB chunks, holding the guard.
                let chunks = stream::unfold(guard, |guard| async move {
                    let chunk = Bytes::from(vec![b'x'; 64 * 1024]);
                    Some((Ok::<_, Infallible>(chunk), guard))
                });
                Body::from_stream(chunks)
            }
        }),
    );
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let (_draining, draining_rx) = watch::channel(false);
    let settings = StreamerSettings {
        write_timeout_ms: Duration::from_millis(300),
        ..limits()
    };
    tokio::spawn(serve_with(listener, router, draining_rx, &settings));
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let mut stalled = socket.connect(address).await.unwrap();

    stalled
        .write_all(b"GET /flood HTTP/1.1\r\nhost: x\r\n\r\n")
        .await
        .unwrap();
    let cut = tokio::time::timeout(Duration::from_secs(10), ended_rx).await;

    assert!(
        cut.is_ok(),
        "the response is dropped once writes stop progressing"
    );
}

/// A handler with a bug: it panics, inside the task of the connection that asked.
async fn panics() -> &'static str {
    panic!("a bug in one request's handler")
}

/// Reads from `io` until `count` more newlines came, or panics after 5 s.
async fn read_lines(io: &mut TcpStream, count: usize) {
    let mut seen = 0;
    let mut buffer = [0; 256];
    tokio::time::timeout(Duration::from_secs(5), async {
        while seen < count {
            let read = io.read(&mut buffer).await.unwrap();
            assert!(read > 0, "the stream goes on");
            for byte in &buffer[..read] {
                seen += usize::from(*byte == b'\n');
            }
        }
    })
    .await
    .expect("the stream keeps streaming");
}

/// Each connection is a task of the server's `JoinSet`: with `panic = "unwind"` (the
/// streamer's `release-streamer` profile) a panic ends that task only. Under the Lambdas'
/// `panic = "abort"` the same panic would end the process and every connection with it;
/// the test harness always unwinds, so this test shows what the streamer's profile buys.
#[tokio::test]
async fn a_panic_in_one_connection_leaves_the_others_streaming() {
    let router = Router::new()
        .route("/plain", get(|| async { "hello" }))
        .route("/panic", get(panics))
        .route(
            "/stream",
            get(|| async {
                let ticks = stream::unfold(0_u64, |n| async move {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    Some((Ok::<_, Infallible>(Bytes::from(format!("{n}\n"))), n + 1))
                });
                Body::from_stream(ticks)
            }),
        );
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let (_draining, draining_rx) = watch::channel(false);
    let server = tokio::spawn(serve_with(listener, router, draining_rx, &limits()));
    let mut streaming = TcpStream::connect(address).await.unwrap();
    streaming
        .write_all(b"GET /stream HTTP/1.1\r\nhost: x\r\n\r\n")
        .await
        .unwrap();
    read_lines(&mut streaming, 10).await;

    let panicked = exchange(address, "GET /panic HTTP/1.1\r\nhost: x\r\n\r\n").await;

    assert_eq!(
        panicked, "",
        "the panicking connection ends without an answer"
    );
    read_lines(&mut streaming, 10).await;
    let after = exchange(
        address,
        "GET /plain HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n",
    )
    .await;
    assert!(after.starts_with("HTTP/1.1 200 OK\r\n"), "{after}");
    assert!(!server.is_finished(), "the server goes on serving");
}

#[tokio::test]
async fn draining_closes_idle_connections_and_stops_accepting() {
    let (address, draining) = server().await;
    let mut idle = TcpStream::connect(address).await.unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;

    draining.send_replace(true);
    let mut rest = Vec::new();
    let closed = tokio::time::timeout(Duration::from_secs(5), idle.read_to_end(&mut rest)).await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    let refused = TcpStream::connect(address).await;

    assert!(closed.is_ok(), "the idle connection is closed");
    assert!(refused.is_err(), "no more connections are accepted");
}
