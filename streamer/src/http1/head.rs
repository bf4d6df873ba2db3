//! Reading a request head off the socket within its size and time limits, and parsing it.

use std::io;
use std::time::Duration;

use axum::body::Body;
use axum::http::{HeaderName, HeaderValue, Method, Request, StatusCode, Version};
use tokio::io::AsyncReadExt as _;

use crate::socket::SharedStream;
use tokio::time::Instant;

/// Longest request head accepted.
pub(super) const MAX_HEAD: usize = 16 * 1024;
/// Most headers in a request.
pub(super) const MAX_HEADERS: usize = 64;
/// An idle keep-alive connection (no request under way) is closed after this.
pub(super) const IDLE: Duration = Duration::from_secs(60);

/// How reading a request head ended.
pub(super) enum Head {
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
pub(super) async fn read_head(
    io: &mut SharedStream,
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
pub(super) fn parse(head: &[u8]) -> Result<Request<Body>, StatusCode> {
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

pub(super) fn wants_keep_alive(request: &Request<Body>) -> bool {
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
