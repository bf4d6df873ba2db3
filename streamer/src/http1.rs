//! The streamer's HTTP/1.1 server: requests go to the axum router, responses go back on the
//! socket, streaming ones with chunked encoding.
//!
//! Why not hyper, which serves everything else here: an SSE connection lives for hours and is
//! idle most of the time, and hyper keeps an 8 KiB read buffer and an 8 KiB write buffer for
//! every connection for its whole life — most of what a streamer's idle connection costs (about
//! 31 KiB each against nginx + nchan's 14 KiB, measured by the fan-out benchmark). No HTTP crate
//! lets go of its buffers once a response streams. So the framing (a request head parsed by
//! `httparse`, a response head, chunked frames) is written here: a connection holds a buffer
//! only while it reads a request head, and a streaming response writes each chunk straight from
//! the hub's shared bytes. The streamer takes GET and OPTIONS only, so request bodies are
//! refused rather than parsed; everything else (routing, CORS, problems) stays axum's.
//!
//! Load shedding lives here too, below the router: the pod's connection cap (a connection
//! past it is answered a ready-made `503` without routing), the request head's size and time
//! limits (slowloris), and the write timeout of a client whose socket stopped draining.

use std::io::{self, IoSlice};
use std::net::SocketAddr;
use std::sync::OnceLock;
use std::time::Duration;

use axum::Router;
use axum::body::{Body, HttpBody};
use axum::http::{HeaderName, HeaderValue, Method, Request, Response, StatusCode, Version};
use bytes::Bytes;
use futures_util::StreamExt as _;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio::time::Instant;
use tower::ServiceExt as _;
use tracing::debug;

use crate::admission::{Admission, ConnectionSlot};
use crate::app::drained;
use crate::metrics;
use crate::peer::PeerAddr;

/// Longest request head accepted.
const MAX_HEAD: usize = 16 * 1024;
/// Most headers in a request.
const MAX_HEADERS: usize = 64;
/// An idle keep-alive connection (no request under way) is closed after this.
const IDLE: Duration = Duration::from_secs(60);
/// After an error answer, how long the client's remaining bytes are read and discarded.
const LINGER: Duration = Duration::from_secs(1);
/// At most this many of them.
const LINGER_BYTES: usize = 64 * 1024;

/// How long a connection may take over its request head and over a write.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Timeouts {
    /// A request head is complete within this of the accept (the first request) or of its
    /// first byte (later ones), or the connection is closed.
    pub header: Duration,
    /// A write that makes no progress for this long closes the connection.
    pub write: Duration,
}

/// Serves `router` on `listener` until `draining` turns true, then waits for every connection
/// to end (streams end on draining by themselves; idle keep-alive connections are closed).
pub(crate) async fn serve(
    listener: TcpListener,
    router: Router,
    mut draining: watch::Receiver<bool>,
    admission: Admission,
    timeouts: Timeouts,
) -> io::Result<()> {
    // Owned by this future: dropping it (the drain deadline passed) aborts every connection.
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let (io, peer) = match accepted {
                    Ok(accepted) => accepted,
                    // Out of descriptors and the like: back off briefly, keep serving.
                    Err(e) => {
                        debug!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(10)).await;
                        continue;
                    }
                };
                let Some(slot) = admission.accept() else {
                    // Past the cap and its probe places: the ready-made answer, no routing.
                    connections.spawn(async move {
                        let _ = refuse(io, full_answer(), timeouts.write).await;
                    });
                    continue;
                };
                let (router, draining) = (router.clone(), draining.clone());
                connections.spawn(async move {
                    let result = connection(io, peer, slot, router, draining, timeouts).await;
                    if let Err(e) = result {
                        if e.kind() == io::ErrorKind::TimedOut {
                            metrics::timed_out("write");
                        }
                        debug!(%peer, error = %e, "connection ended");
                    }
                });
            }
            // Reaps ended connections as they go.
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
            () = drained(&mut draining) => break,
        }
    }
    drop(listener);
    while connections.join_next().await.is_some() {}
    Ok(())
}

/// One connection: requests one after the other (keep-alive), until either side closes.
async fn connection(
    mut io: TcpStream,
    peer: SocketAddr,
    mut slot: ConnectionSlot,
    router: Router,
    mut draining: watch::Receiver<bool>,
    timeouts: Timeouts,
) -> io::Result<()> {
    io.set_nodelay(true)?;
    let mut pending = Vec::new();
    let mut first = true;
    loop {
        let head = tokio::select! {
            head = read_head(&mut io, &mut pending, first, timeouts.header) => head?,
            // Only an idle connection is closed here; a request under way finishes.
            () = drained(&mut draining), if pending.is_empty() => return Ok(()),
        };
        let head = match head {
            Head::Complete(head) => head,
            Head::Closed => return Ok(()),
            Head::Idle if !first => return Ok(()),
            // A connection that sends nothing is closed without an answer, one that sent part
            // of a head is told why.
            Head::Idle => {
                metrics::timed_out("header");
                return Ok(());
            }
            Head::Late => {
                metrics::timed_out("header");
                return write_simple(&mut io, StatusCode::REQUEST_TIMEOUT, timeouts.write).await;
            }
            Head::TooLarge => {
                metrics::refused("head_too_large");
                let status = StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE;
                return write_simple(&mut io, status, timeouts.write).await;
            }
        };
        first = false;
        let mut request = match parse(&head) {
            Ok(request) => request,
            Err(status) => return write_simple(&mut io, status, timeouts.write).await,
        };
        if !slot.admit(request.uri().path()) {
            return refuse(io, full_answer(), timeouts.write).await;
        }
        request.extensions_mut().insert(PeerAddr(peer));
        let keep_alive = wants_keep_alive(&request);
        let head_only = request.method() == Method::HEAD;
        let version = request.version();
        let response = router
            .clone()
            .oneshot(request)
            .await
            .unwrap_or_else(|never| match never {});
        let complete = write_response(
            &mut io,
            response,
            keep_alive,
            head_only,
            version,
            timeouts.write,
        )
        .await?;
        if !keep_alive || !complete {
            return Ok(());
        }
    }
}

/// How reading a request head ended.
enum Head {
    /// The head, ready to parse.
    Complete(Vec<u8>),
    /// The client closed the connection between requests.
    Closed,
    /// No byte of a request came in time.
    Idle,
    /// Part of a head came, not all of it in time.
    Late,
    /// The head grew past `MAX_HEAD`.
    TooLarge,
}

/// Reads bytes until a whole request head is in `pending`; returns it and keeps what follows.
/// The first request's head is due within `header` of now (the accept): a connection that
/// trickles bytes gains no time. A later one may start within `IDLE` and is then due within
/// `header` of its first byte.
async fn read_head(
    io: &mut TcpStream,
    pending: &mut Vec<u8>,
    first: bool,
    header: Duration,
) -> io::Result<Head> {
    let mut started = first || !pending.is_empty();
    let mut deadline = Instant::now() + if started { header } else { IDLE };
    loop {
        if let Some(end) = pending.windows(4).position(|w| w == b"\r\n\r\n") {
            let rest = pending.split_off(end + 4);
            let head = std::mem::replace(pending, rest);
            // The buffer lives only while a head is read: an idle streaming connection has none.
            pending.shrink_to_fit();
            return Ok(Head::Complete(head));
        }
        if pending.len() >= MAX_HEAD {
            return Ok(Head::TooLarge);
        }
        let mut chunk = [0u8; 2048];
        let Ok(read) = tokio::time::timeout_at(deadline, io.read(&mut chunk)).await else {
            return Ok(if pending.is_empty() {
                Head::Idle
            } else {
                Head::Late
            });
        };
        let n = read?;
        if n == 0 {
            return if pending.is_empty() {
                Ok(Head::Closed)
            } else {
                Err(io::ErrorKind::UnexpectedEof.into())
            };
        }
        if !started {
            started = true;
            deadline = Instant::now() + header;
        }
        pending.extend_from_slice(&chunk[..n]);
    }
}

/// The request a head describes; the status to answer if it is not one the streamer serves.
fn parse(head: &[u8]) -> Result<Request<Body>, StatusCode> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut parsed = httparse::Request::new(&mut headers);
    match parsed.parse(head) {
        Ok(httparse::Status::Complete(_)) => {}
        Err(httparse::Error::TooManyHeaders) => {
            return Err(StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE);
        }
        _ => return Err(StatusCode::BAD_REQUEST),
    }
    let method = Method::from_bytes(parsed.method.unwrap_or("").as_bytes())
        .map_err(|_| StatusCode::BAD_REQUEST)?;
    let mut request = Request::builder()
        .method(method)
        .uri(parsed.path.unwrap_or("/"))
        .version(if parsed.version == Some(0) {
            Version::HTTP_10
        } else {
            Version::HTTP_11
        });
    for header in parsed.headers.iter() {
        let name =
            HeaderName::from_bytes(header.name.as_bytes()).map_err(|_| StatusCode::BAD_REQUEST)?;
        let value = HeaderValue::from_bytes(header.value).map_err(|_| StatusCode::BAD_REQUEST)?;
        request = request.header(name, value);
    }
    let request = request
        .body(Body::empty())
        .map_err(|_| StatusCode::BAD_REQUEST)?;
    // No route of the streamer takes a body.
    let has_body = request.headers().contains_key("transfer-encoding")
        || request
            .headers()
            .get("content-length")
            .is_some_and(|v| v.as_bytes() != b"0");
    if has_body {
        return Err(StatusCode::PAYLOAD_TOO_LARGE);
    }
    Ok(request)
}

fn wants_keep_alive(request: &Request<Body>) -> bool {
    let connection = request
        .headers()
        .get("connection")
        .and_then(|v| v.to_str().ok())
        .map(str::to_ascii_lowercase);
    match request.version() {
        Version::HTTP_10 => connection.as_deref() == Some("keep-alive"),
        _ => connection.as_deref() != Some("close"),
    }
}

/// Writes a response; `false` if it ended the connection's usefulness (a streaming body that
/// did not finish cleanly).
async fn write_response(
    io: &mut TcpStream,
    response: Response<Body>,
    keep_alive: bool,
    head_only: bool,
    version: Version,
    write_timeout: Duration,
) -> io::Result<bool> {
    let (parts, body) = response.into_parts();
    let exact = body.size_hint().exact();
    let mut head = Vec::with_capacity(256);
    head.extend_from_slice(b"HTTP/1.1 ");
    head.extend_from_slice(parts.status.as_str().as_bytes());
    head.push(b' ');
    head.extend_from_slice(
        parts
            .status
            .canonical_reason()
            .unwrap_or("Unknown")
            .as_bytes(),
    );
    head.extend_from_slice(b"\r\n");
    for (name, value) in &parts.headers {
        if name == "content-length" || name == "transfer-encoding" || name == "connection" {
            continue;
        }
        head.extend_from_slice(name.as_str().as_bytes());
        head.extend_from_slice(b": ");
        head.extend_from_slice(value.as_bytes());
        head.extend_from_slice(b"\r\n");
    }
    if !keep_alive && (exact.is_some() || version == Version::HTTP_11) {
        head.extend_from_slice(b"connection: close\r\n");
    }
    let mut data = body.into_data_stream();
    if let Some(length) = exact {
        head.extend_from_slice(format!("content-length: {length}\r\n\r\n").as_bytes());
        let mut whole = Vec::with_capacity(length as usize);
        if !head_only {
            while let Some(chunk) = data.next().await {
                whole.extend_from_slice(&chunk.map_err(io::Error::other)?);
            }
        }
        write_parts(io, [&head, &whole], write_timeout).await?;
        return Ok(true);
    }
    let chunked = version == Version::HTTP_11;
    if chunked {
        head.extend_from_slice(b"transfer-encoding: chunked\r\n\r\n");
    } else {
        head.extend_from_slice(b"connection: close\r\n\r\n");
    }
    write_parts(io, [&head], write_timeout).await?;
    drop(head);
    if head_only {
        return Ok(chunked);
    }
    stream_body(io, data, chunked, write_timeout).await
}

/// Writes a streaming body until it ends (`true`) or the client goes (`false`): as chunks, or,
/// for an HTTP/1.0 client, as raw bytes delimited by the end of the connection.
async fn stream_body(
    io: &mut TcpStream,
    mut data: axum::body::BodyDataStream,
    chunked: bool,
    write_timeout: Duration,
) -> io::Result<bool> {
    let (mut reader, mut writer) = io.split();
    loop {
        let chunk = tokio::select! {
            chunk = data.next() => chunk,
            // A client that closes its side (or sends anything) while it is being streamed to
            // is done; without this, an idle stream would notice only at its next heartbeat.
            _ = reader.read_u8() => return Ok(false),
        };
        let Some(chunk) = chunk else {
            if chunked {
                write_parts(&mut writer, [b"0\r\n\r\n"], write_timeout).await?;
            }
            return Ok(chunked);
        };
        let chunk: Bytes = chunk.map_err(io::Error::other)?;
        if chunk.is_empty() {
            continue;
        }
        if chunked {
            let mut size = [0u8; 20];
            let len = {
                let mut cursor = io::Cursor::new(&mut size[..]);
                std::io::Write::write_fmt(&mut cursor, format_args!("{:x}\r\n", chunk.len()))?;
                cursor.position() as usize
            };
            write_parts(&mut writer, [&size[..len], &chunk, b"\r\n"], write_timeout).await?;
        } else {
            write_parts(&mut writer, [&chunk], write_timeout).await?;
        }
    }
}

/// Writes every byte of `parts` with as few syscalls as the socket allows (one `writev` when
/// the socket takes it all), without allocating. A write that takes nothing for `timeout` (the
/// client's socket stopped draining: its window is full) fails with `TimedOut`; any progress
/// starts the timeout over, so a slow but reading client is not cut.
async fn write_parts<W, const N: usize>(
    writer: &mut W,
    mut parts: [&[u8]; N],
    timeout: Duration,
) -> io::Result<()>
where
    W: tokio::io::AsyncWrite + Unpin,
{
    loop {
        let slices: [IoSlice<'_>; N] = std::array::from_fn(|i| IoSlice::new(parts[i]));
        if slices.iter().all(|s| s.is_empty()) {
            return Ok(());
        }
        let mut written = tokio::time::timeout(timeout, writer.write_vectored(&slices))
            .await
            .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "the client stopped reading"))??;
        if written == 0 {
            return Err(io::ErrorKind::WriteZero.into());
        }
        for part in &mut parts {
            let taken = written.min(part.len());
            *part = &part[taken..];
            written -= taken;
        }
    }
}

/// A bodiless answer to a request the streamer cannot take, then the connection closes.
async fn write_simple(io: &mut TcpStream, status: StatusCode, timeout: Duration) -> io::Result<()> {
    let head = format!(
        "HTTP/1.1 {} {}\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
        status.as_str(),
        status.canonical_reason().unwrap_or("Error")
    );
    write_parts(io, [head.as_bytes()], timeout).await?;
    linger(io).await;
    Ok(())
}

/// The answer to a connection past the pod's cap: the `full` problem with its `Retry-After`,
/// rendered once (a flood of refusals costs no routing, no serialising, no error log).
fn full_answer() -> &'static [u8] {
    static ANSWER: OnceLock<Vec<u8>> = OnceLock::new();
    ANSWER.get_or_init(|| {
        let error = session_core::http::ApiError::Full;
        let body = serde_json::to_vec(&error.problem()).unwrap_or_default();
        let status = StatusCode::SERVICE_UNAVAILABLE;
        let retry_after = error
            .retry_after()
            .map(|seconds| format!("retry-after: {seconds}\r\n"))
            .unwrap_or_default();
        let mut answer = format!(
            "HTTP/1.1 {} {}\r\ncontent-type: {}\r\ncontent-length: {}\r\n{retry_after}\
             connection: close\r\n\r\n",
            status.as_str(),
            status.canonical_reason().unwrap_or("Service Unavailable"),
            session_core::http::PROBLEM_JSON,
            body.len()
        )
        .into_bytes();
        answer.extend_from_slice(&body);
        answer
    })
}

/// Writes `answer` on a connection that is not served, then closes it.
async fn refuse(mut io: TcpStream, answer: &[u8], timeout: Duration) -> io::Result<()> {
    write_parts(&mut io, [answer], timeout).await?;
    linger(&mut io).await;
    Ok(())
}

/// Closes after an error answer without losing it. Closing a socket that still holds unread
/// bytes (the rest of a head too large, a request not read at all) sends a reset, which can
/// destroy the answer before the client reads it; so the write side is shut and what the
/// client still sends is read and dropped, for a moment and a few bytes at most.
async fn linger(io: &mut TcpStream) {
    let _ = io.shutdown().await;
    let mut sink = [0u8; 2048];
    let _ = tokio::time::timeout(LINGER, async {
        let mut drained = 0;
        while drained < LINGER_BYTES {
            match io.read(&mut sink).await {
                Ok(0) | Err(_) => break,
                Ok(n) => drained += n,
            }
        }
    })
    .await;
}

#[cfg(test)]
mod tests {
    use std::convert::Infallible;

    use axum::routing::get;
    use futures_util::stream;
    use session_core::config::StreamerSettings;
    use tokio::io::AsyncReadExt as _;

    use super::*;

    /// The production defaults, with a short header timeout.
    fn limits() -> StreamerSettings {
        StreamerSettings {
            header_timeout_ms: 300,
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
        let timeouts = Timeouts {
            header: Duration::from_millis(settings.header_timeout_ms),
            write: Duration::from_millis(settings.write_timeout_ms),
        };
        serve(
            listener,
            router,
            draining,
            Admission::new(settings, 0),
            timeouts,
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
            answer.ends_with(
                "transfer-encoding: chunked\r\n\r\n4\r\none\n\r\n4\r\ntwo\n\r\n0\r\n\r\n"
            ),
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
        let closed =
            tokio::time::timeout(Duration::from_secs(3), silent.read_to_end(&mut rest)).await;

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
            write_timeout_ms: 300,
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
        let closed =
            tokio::time::timeout(Duration::from_secs(5), idle.read_to_end(&mut rest)).await;
        tokio::time::sleep(Duration::from_millis(50)).await;
        let refused = TcpStream::connect(address).await;

        assert!(closed.is_ok(), "the idle connection is closed");
        assert!(refused.is_err(), "no more connections are accepted");
    }
}
