//! `@connections` fairness: one connection whose posts fail slowly does not hold up the others.
//!
//! The streamer posts through a real HTTP server on loopback that passes every call on to the
//! local WebSocket API emulator, except those of one connection (the first one posted to): it
//! answers them with 500 after a delay and counts how many are under way at once. The pod has
//! ONE post permit, so a slow connection that kept its permit across its retries (~8 s of them)
//! would stall every other connection until it gave up.

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, Method, Response, StatusCode, Uri};
use session_tests::stream_fixture::{Fixture, PATIENCE};

use crate::ws::{WsClient, ws_url};

/// How long the slow connection's endpoint takes to refuse each post.
const SLOW: Duration = Duration::from_millis(300);
/// Connections beside the slow one.
const OTHERS: usize = 3;
/// `events` messages each other connection must get while the slow one is still retried.
const MESSAGES: usize = 3;

/// The `@connections` endpoint the streamer posts to.
#[derive(Default)]
struct Endpoint {
    /// The emulator's origin (`http://127.0.0.1:port`), known once the stack runs.
    upstream: OnceLock<String>,
    /// The slow connection's id (as the request path spells it): the first one posted to.
    slow: OnceLock<String>,
    /// Posts to the slow connection under way now, and the most ever at once.
    in_flight: AtomicUsize,
    most_in_flight: AtomicUsize,
    /// Posts to the slow connection so far.
    attempts: AtomicU32,
    /// Whether the streamer gave up on the slow connection (its `DeleteConnection`).
    slow_deleted: AtomicBool,
    http: reqwest::Client,
}

impl Endpoint {
    /// Serves on a free port; its `@connections` URL (with the emulator's stage) and itself.
    async fn serve() -> (String, Arc<Self>) {
        let endpoint = Arc::new(Self::default());
        let router = axum::Router::new()
            .fallback(
                |State(endpoint): State<Arc<Self>>,
                 method: Method,
                 uri: Uri,
                 headers: HeaderMap,
                 body: Bytes| async move {
                    endpoint.answer(method, uri, headers, body).await
                },
            )
            .with_state(Arc::clone(&endpoint));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, router).await });
        (
            format!("http://{addr}/{}", session_local::ws_api::STAGE),
            endpoint,
        )
    }

    async fn answer(
        &self,
        method: Method,
        uri: Uri,
        headers: HeaderMap,
        body: Bytes,
    ) -> Response<Body> {
        let id = uri.path().rsplit('/').next().unwrap_or_default().to_owned();
        let slow = self.slow.get_or_init(|| id.clone());
        if *slow == id && method == Method::POST {
            self.attempts.fetch_add(1, Ordering::SeqCst);
            let now = self.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
            self.most_in_flight.fetch_max(now, Ordering::SeqCst);
            tokio::time::sleep(SLOW).await;
            self.in_flight.fetch_sub(1, Ordering::SeqCst);
            return Response::builder()
                .status(StatusCode::INTERNAL_SERVER_ERROR)
                .body(Body::from(r#"{"message":"slow"}"#))
                .unwrap();
        }
        if *slow == id && method == Method::DELETE {
            self.slow_deleted.store(true, Ordering::SeqCst);
        }
        self.forward(method, &uri, headers, body).await
    }

    /// Passes the call on to the emulator as it came.
    async fn forward(
        &self,
        method: Method,
        uri: &Uri,
        mut headers: HeaderMap,
        body: Bytes,
    ) -> Response<Body> {
        let upstream = self.upstream.get().expect("the stack runs before any post");
        let path = uri.path_and_query().map_or("/", |p| p.as_str());
        headers.remove("host");
        headers.remove("content-length");
        let answer = self
            .http
            .request(method, format!("{upstream}{path}"))
            .headers(headers)
            .body(body)
            .send()
            .await
            .expect("the emulator answers");
        let mut response = Response::builder().status(answer.status());
        for (name, value) in answer.headers() {
            response = response.header(name, value);
        }
        response
            .body(Body::from(answer.bytes().await.unwrap()))
            .unwrap()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_whose_posts_fail_slowly_does_not_delay_pushes_to_the_others() {
    // Arrange: one post permit for the pod, posts through the endpoint.
    let (url, endpoint) = Endpoint::serve().await;
    let fixture = Fixture::start_stack(&["BTC-USD"], 200, |s| {
        s.streamer.push_poll_ms = Duration::from_millis(100);
        s.streamer.push_max_concurrent_posts = 1;
        s.streamer.connections_url = Some(url);
    })
    .await;
    let emulator = &fixture.api.stack.endpoints().connections_url;
    let origin = emulator
        .strip_suffix(&format!("/{}", session_local::ws_api::STAGE))
        .expect("the emulator's URL ends with its stage");
    endpoint.upstream.set(origin.to_owned()).unwrap();
    // The slow connection is the first one open: its first post is being refused.
    let _slow = WsClient::open(&ws_url(&fixture, None).await).await;
    tokio::time::timeout(PATIENCE, async {
        while endpoint.attempts.load(Ordering::SeqCst) == 0 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("the streamer posts to the first connection");

    // Act: the others open and read while the slow one is retried.
    let mut others = Vec::new();
    for _ in 0..OTHERS {
        others.push(WsClient::open(&ws_url(&fixture, None).await).await);
    }
    let reads = others.iter_mut().map(|client| async move {
        while client.messages < MESSAGES {
            client.next().await;
        }
    });
    tokio::time::timeout(PATIENCE, futures_util::future::join_all(reads))
        .await
        .expect("every other connection gets its messages");

    // Assert
    assert!(
        !endpoint.slow_deleted.load(Ordering::SeqCst),
        "the others were served while the slow connection was still retried, not after it was given up"
    );
    // Its retries go on; however many, never two at once.
    tokio::time::timeout(PATIENCE, async {
        while endpoint.attempts.load(Ordering::SeqCst) < 3 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("the slow connection is retried");
    assert_eq!(
        endpoint.most_in_flight.load(Ordering::SeqCst),
        1,
        "one post at a time to the slow connection: it held at most one permit"
    );
}
