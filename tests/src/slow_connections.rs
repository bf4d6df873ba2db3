//! An `@connections` endpoint for the streamer to post to (`streamer.connections_url`): it
//! passes every call on to the local WebSocket API emulator as it came, except, when `slow` is
//! set, the posts to one connection (the first one posted to), which it answers `500` after
//! that delay. It counts them and how many are under way at once, and notes when the streamer
//! gives that connection up (its `DELETE`). Shared by the fairness test and bench.

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, Method, Response, StatusCode, Uri};

use crate::stream_fixture::Fixture;

/// The endpoint; [`SlowConnections::serve`] starts it.
#[derive(Debug)]
pub struct SlowConnections {
    /// The emulator's origin (`http://127.0.0.1:port`), known once the stack runs.
    upstream: OnceLock<String>,
    /// How long the slow connection's posts take to fail; `None`: no slow connection.
    slow: Option<Duration>,
    /// The slow connection's id, as the request path spells it.
    slow_id: OnceLock<String>,
    in_flight: AtomicUsize,
    most_in_flight: AtomicUsize,
    attempts: AtomicU32,
    gave_up: AtomicBool,
    http: reqwest::Client,
}

impl SlowConnections {
    /// Serves on a free loopback port: its `@connections` URL (with the emulator's stage), and
    /// itself. Panics if no port can be bound.
    pub async fn serve(slow: Option<Duration>) -> (String, Arc<Self>) {
        let endpoint = Arc::new(Self {
            upstream: OnceLock::new(),
            slow,
            slow_id: OnceLock::new(),
            in_flight: AtomicUsize::new(0),
            most_in_flight: AtomicUsize::new(0),
            attempts: AtomicU32::new(0),
            gave_up: AtomicBool::new(false),
            http: reqwest::Client::new(),
        });
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
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("a free loopback port");
        let addr = listener.local_addr().expect("a bound address");
        tokio::spawn(async move { axum::serve(listener, router).await });
        (
            format!("http://{addr}/{}", session_local::ws_api::STAGE),
            endpoint,
        )
    }

    /// Passes calls on to `fixture`'s emulator from now on.
    pub fn forward_to(&self, fixture: &Fixture) {
        let emulator = &fixture.api.stack.endpoints().connections_url;
        let origin = emulator
            .strip_suffix(&format!("/{}", session_local::ws_api::STAGE))
            .expect("the emulator's URL ends with its stage");
        let _ = self.upstream.set(origin.to_owned());
    }

    /// Posts to the slow connection so far.
    pub fn attempts(&self) -> u32 {
        self.attempts.load(Ordering::SeqCst)
    }

    /// The most posts to the slow connection ever under way at once.
    pub fn most_in_flight(&self) -> usize {
        self.most_in_flight.load(Ordering::SeqCst)
    }

    /// Whether the streamer gave the slow connection up (its `DeleteConnection`).
    pub fn gave_up(&self) -> bool {
        self.gave_up.load(Ordering::SeqCst)
    }

    async fn answer(
        &self,
        method: Method,
        uri: Uri,
        headers: HeaderMap,
        body: Bytes,
    ) -> Response<Body> {
        let id = uri.path().rsplit('/').next().unwrap_or_default().to_owned();
        if let Some(delay) = self.slow {
            let slow = self.slow_id.get_or_init(|| id.clone());
            if *slow == id && method == Method::POST {
                self.attempts.fetch_add(1, Ordering::SeqCst);
                let now = self.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
                self.most_in_flight.fetch_max(now, Ordering::SeqCst);
                tokio::time::sleep(delay).await;
                self.in_flight.fetch_sub(1, Ordering::SeqCst);
                return status(StatusCode::INTERNAL_SERVER_ERROR);
            }
            if *slow == id && method == Method::DELETE {
                self.gave_up.store(true, Ordering::SeqCst);
            }
        }
        self.forward(method, &uri, headers, body).await
    }

    /// Passes the call on to the emulator as it came (`503` before [`Self::forward_to`]).
    async fn forward(
        &self,
        method: Method,
        uri: &Uri,
        mut headers: HeaderMap,
        body: Bytes,
    ) -> Response<Body> {
        let Some(upstream) = self.upstream.get() else {
            return status(StatusCode::SERVICE_UNAVAILABLE);
        };
        let path = uri.path_and_query().map_or("/", |p| p.as_str());
        headers.remove("host");
        headers.remove("content-length");
        let sent = self
            .http
            .request(method, format!("{upstream}{path}"))
            .headers(headers)
            .body(body)
            .send()
            .await;
        let Ok(answer) = sent else {
            return status(StatusCode::BAD_GATEWAY);
        };
        let mut response = Response::builder().status(answer.status());
        for (name, value) in answer.headers() {
            response = response.header(name, value);
        }
        let body = answer.bytes().await.unwrap_or_default();
        response
            .body(Body::from(body))
            .unwrap_or_else(|_| status(StatusCode::BAD_GATEWAY))
    }
}

/// An answer of `status` with an API Gateway-like body.
fn status(status: StatusCode) -> Response<Body> {
    let mut response = Response::new(Body::from(r#"{"message":"slow connections endpoint"}"#));
    *response.status_mut() = status;
    response
}
