//! The streamer's `@connections` client (`session_streamer::push::ConnectionsApi`) against the
//! local stack's WebSocket API emulator, read by real WebSocket clients; and against a scripted
//! endpoint for the answers the emulator does not give (5xx) and to count attempts.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{Response, StatusCode};
use futures_util::StreamExt as _;
use session_core::resilience::{Classify as _, RetryPolicy};
use session_streamer::push::{ConnectionsApi, MAX_MESSAGE_BYTES, PostError};
use session_tests::test_api::{ConnectedSocket, TestApi};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

use session_tests::ws::Socket;

/// The longest any single wait in these tests may take; far above what each needs.
const WAIT: Duration = Duration::from_secs(20);

/// Retries quick enough for tests, and enough of them to tell retrying from not.
const QUICK: RetryPolicy = RetryPolicy {
    max_retries: 4,
    base: Duration::from_millis(1),
    cap: Duration::from_millis(5),
};

/// A stack with one open WebSocket connection: its client socket and its connection id.
async fn connected() -> (TestApi, Socket, String) {
    let api = TestApi::spawn().await;
    let ws = ConnectedSocket::open(&api, "alice").await;
    (api, ws.socket, ws.connection_id)
}

fn connections_api(api: &TestApi) -> ConnectionsApi {
    ConnectionsApi::local(&api.stack.endpoints().connections_url)
}

/// The next data or close message (pings and pongs skipped), `None` once the socket ended.
/// Unchecked against docs/asyncapi.json: these tests post arbitrary bytes through the
/// `@connections` transport.
async fn next(socket: &mut Socket) -> Option<Message> {
    session_tests::ws::next_raw_message(socket, WAIT).await
}

/// Waits for the client's socket to end and returns the code it was closed with.
async fn closed_with(socket: &mut Socket) -> CloseCode {
    session_tests::ws::closed_with(socket, WAIT).await
}

#[tokio::test]
async fn a_post_reaches_the_client_as_one_text_frame() {
    let (api, mut socket, id) = connected().await;
    let push = connections_api(&api);

    let posted = push
        .post(&id, Bytes::from_static(br#"{"type":"hello"}"#))
        .await;
    let received = next(&mut socket).await;

    assert!(posted.is_ok(), "{posted:?}");
    assert_eq!(received, Some(Message::text(r#"{"type":"hello"}"#)));
}

#[tokio::test]
#[should_panic(expected = "WebSocket frame received: no WebSocket message has type \"hello\"")]
async fn a_frame_the_contract_does_not_allow_fails_the_suites_websocket_reader() {
    let (api, mut socket, id) = connected().await;
    let posted = connections_api(&api)
        .post(&id, Bytes::from_static(br#"{"type":"hello"}"#))
        .await;
    assert!(posted.is_ok(), "{posted:?}");

    // The reader every suite uses (not this file's unchecked `next`).
    session_tests::ws::next_message(&mut socket, WAIT).await;
}

#[tokio::test]
async fn a_post_to_a_connection_the_client_closed_or_to_a_made_up_id_is_gone() {
    let (api, mut socket, id) = connected().await;
    let push = connections_api(&api);
    socket.close(None).await.unwrap();
    while next(&mut socket).await.is_some() {}

    let closed = push.post(&id, Bytes::from_static(b"late")).await;
    let made_up = push
        .post("AAAAAAAAAAAAAAA=", Bytes::from_static(b"hello"))
        .await;

    assert!(matches!(closed, Err(PostError::Gone)), "{closed:?}");
    assert!(matches!(made_up, Err(PostError::Gone)), "{made_up:?}");
    assert!(!closed.unwrap_err().is_transient());
}

#[tokio::test]
async fn a_post_of_128_kib_arrives_whole_and_one_byte_more_is_too_large() {
    let (api, mut socket, id) = connected().await;
    let push = connections_api(&api);
    let largest = Bytes::from(vec![b'x'; MAX_MESSAGE_BYTES]);
    let over = Bytes::from(vec![b'x'; MAX_MESSAGE_BYTES + 1]);

    let refused = push.post(&id, over).await;
    let accepted = push.post(&id, largest.clone()).await;
    let received = next(&mut socket).await;

    assert!(matches!(refused, Err(PostError::TooLarge)), "{refused:?}");
    assert!(accepted.is_ok(), "{accepted:?}");
    match received {
        Some(Message::Text(text)) => assert_eq!(text.as_bytes(), &largest[..]),
        other => panic!("no text message: {other:?}"),
    }
}

#[tokio::test]
async fn delete_closes_the_clients_socket_and_a_second_delete_is_ok() {
    let (api, mut socket, id) = connected().await;
    let push = connections_api(&api);

    let first = push.delete(&id).await;
    let code = closed_with(&mut socket).await;
    let second = push.delete(&id).await;
    let post = push.post(&id, Bytes::from_static(b"late")).await;

    assert!(first.is_ok(), "{first:?}");
    assert_eq!(code, CloseCode::Normal);
    assert!(second.is_ok(), "{second:?}");
    assert!(matches!(post, Err(PostError::Gone)), "{post:?}");
    assert_eq!(api.stack.ws_api().open_connections(), 0);
}

#[tokio::test]
async fn post_with_retry_returns_gone_at_once() {
    let (api, mut socket, id) = connected().await;
    let push = connections_api(&api);
    socket.close(None).await.unwrap();
    while next(&mut socket).await.is_some() {}
    // Any retry would sleep up to a second or two; none may happen.
    let patient = RetryPolicy {
        max_retries: 5,
        base: Duration::from_secs(2),
        cap: Duration::from_secs(2),
    };

    let started = Instant::now();
    let result = push
        .post_with_retry(&id, Bytes::from_static(b"late"), patient)
        .await;

    assert!(matches!(result, Err(PostError::Gone)), "{result:?}");
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn a_connection_whose_client_reads_nothing_is_throttled_until_it_reads() {
    let (api, socket, id) = connected().await;
    let push = connections_api(&api);
    let message = Bytes::from(vec![b'x'; 64 * 1024]);

    // The client reads nothing: the socket's buffers fill, then the connection's queue, and
    // API Gateway (here its emulator) answers 429.
    let mut throttled = None;
    for _ in 0..5_000 {
        match push.post(&id, message.clone()).await {
            Ok(()) => {}
            Err(e) => {
                throttled = Some(e);
                break;
            }
        }
    }
    let throttled = throttled.expect("a post is throttled");
    let still = push.post_with_retry(&id, message.clone(), QUICK).await;
    // Once the client reads again, the same post goes through with retries.
    let reader = tokio::spawn(async move {
        let mut socket = socket;
        let mut received = 0_usize;
        while let Some(Ok(_)) = socket.next().await {
            received += 1;
        }
        received
    });
    let patient = RetryPolicy {
        max_retries: 20,
        base: Duration::from_millis(20),
        cap: Duration::from_millis(500),
    };
    let after = push.post_with_retry(&id, message, patient).await;

    assert!(matches!(throttled, PostError::Throttled), "{throttled:?}");
    assert!(throttled.is_transient());
    assert!(matches!(still, Err(PostError::Throttled)), "{still:?}");
    assert!(after.is_ok(), "{after:?}");
    reader.abort();
}

#[tokio::test]
async fn an_unreachable_endpoint_is_unavailable_and_transient() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let push = ConnectionsApi::local(&format!("http://{addr}/local"));

    let result = push
        .post("AAAAAAAAAAAAAAA=", Bytes::from_static(b"x"))
        .await;

    assert!(
        matches!(result, Err(PostError::Unavailable(_))),
        "{result:?}"
    );
    assert!(result.unwrap_err().is_transient());
}

/// An `@connections` endpoint that answers each call with the next of `answers` (status and
/// `x-amzn-errortype`), then 200; it counts the calls.
struct Scripted {
    answers: Mutex<VecDeque<(u16, Option<&'static str>)>>,
    calls: AtomicU32,
}

impl Scripted {
    /// Serves the script on a free port; the endpoint URL (with a stage) and the script.
    async fn serve(answers: &[(u16, Option<&'static str>)]) -> (String, Arc<Self>) {
        let script = Arc::new(Self {
            answers: Mutex::new(answers.iter().copied().collect()),
            calls: AtomicU32::new(0),
        });
        let router = axum::Router::new()
            .fallback(|State(script): State<Arc<Self>>| async move { script.answer() })
            .with_state(Arc::clone(&script));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, router).await });
        (format!("http://{addr}/test"), script)
    }

    fn answer(&self) -> Response<Body> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        let next = self.answers.lock().unwrap().pop_front();
        let (status, kind) = next.unwrap_or((200, None));
        let mut response = Response::builder().status(StatusCode::from_u16(status).unwrap());
        if let Some(kind) = kind {
            response = response
                .header("x-amzn-errortype", kind)
                .header("content-type", "application/json");
        }
        let body = if status == 200 {
            Body::empty()
        } else {
            Body::from(r#"{"message":"scripted"}"#)
        };
        response.body(body).unwrap()
    }

    fn calls(&self) -> u32 {
        self.calls.load(Ordering::SeqCst)
    }
}

#[tokio::test]
async fn post_with_retry_retries_5xx_and_throttling_until_success() {
    let (endpoint, script) = Scripted::serve(&[
        (503, None),
        (429, Some("LimitExceededException")),
        (500, None),
    ])
    .await;
    let push = ConnectionsApi::local(&endpoint);

    let result = push
        .post_with_retry("AAAAAAAAAAAAAAA=", Bytes::from_static(b"x"), QUICK)
        .await;

    assert!(result.is_ok(), "{result:?}");
    assert_eq!(script.calls(), 4);
}

#[tokio::test]
async fn post_with_retry_gives_up_with_the_last_error_when_the_policy_is_spent() {
    let (endpoint, script) = Scripted::serve(&[(502, None); 10]).await;
    let push = ConnectionsApi::local(&endpoint);

    let result = push
        .post_with_retry("AAAAAAAAAAAAAAA=", Bytes::from_static(b"x"), QUICK)
        .await;

    assert!(
        matches!(result, Err(PostError::Unavailable(_))),
        "{result:?}"
    );
    assert_eq!(script.calls(), 1 + QUICK.max_retries);
}

#[tokio::test]
async fn post_with_retry_makes_one_attempt_for_gone_too_large_and_forbidden() {
    let cases = [
        (410, "GoneException"),
        (413, "PayloadTooLargeException"),
        (403, "ForbiddenException"),
    ];
    let mut outcomes = Vec::new();
    for (status, kind) in cases {
        let (endpoint, script) = Scripted::serve(&[(status, Some(kind)); 5]).await;
        let push = ConnectionsApi::local(&endpoint);
        let result = push
            .post_with_retry("AAAAAAAAAAAAAAA=", Bytes::from_static(b"x"), QUICK)
            .await;
        outcomes.push((result, script.calls()));
    }

    assert!(
        matches!(outcomes[0], (Err(PostError::Gone), 1)),
        "{outcomes:?}"
    );
    assert!(
        matches!(outcomes[1], (Err(PostError::TooLarge), 1)),
        "{outcomes:?}"
    );
    assert!(
        matches!(outcomes[2], (Err(PostError::Forbidden), 1)),
        "{outcomes:?}"
    );
}

#[tokio::test]
async fn errors_without_a_type_are_classed_by_their_status() {
    let (endpoint, _script) =
        Scripted::serve(&[(410, None), (429, None), (504, None), (400, None)]).await;
    let push = ConnectionsApi::local(&endpoint);
    let mut results = Vec::new();
    for _ in 0..4 {
        results.push(
            push.post("AAAAAAAAAAAAAAA=", Bytes::from_static(b"x"))
                .await,
        );
    }

    assert!(matches!(results[0], Err(PostError::Gone)), "{results:?}");
    assert!(
        matches!(results[1], Err(PostError::Throttled)),
        "{results:?}"
    );
    assert!(
        matches!(results[2], Err(PostError::Unavailable(_))),
        "{results:?}"
    );
    assert!(
        matches!(results[3], Err(PostError::Other(_))),
        "{results:?}"
    );
}
