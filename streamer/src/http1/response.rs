//! Writing responses (whole or streamed in chunks), bodiless refusals, and closing without
//! losing the answer.

use std::io::{self, IoSlice};
use std::sync::OnceLock;
use std::time::Duration;

use axum::body::{Body, HttpBody};
use axum::http::{Response, StatusCode, Version};
use bytes::{Bytes, BytesMut};
use futures_util::StreamExt as _;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

use crate::socket::SharedStream;

/// After an error answer, how long the client's remaining bytes are read and discarded.
const LINGER: Duration = Duration::from_secs(1);
/// At most this many of them.
const LINGER_BYTES: usize = 64 * 1024;

/// Writes a response; `false` if it ended the connection's usefulness (a streaming body that
/// did not finish cleanly).
pub(super) async fn write_response(
    io: &mut SharedStream,
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
    io: &mut SharedStream,
    mut data: axum::body::BodyDataStream,
    chunked: bool,
    write_timeout: Duration,
) -> io::Result<bool> {
    loop {
        let mut probe = [0u8; 1];
        let chunk = tokio::select! {
            // The body first: a client being streamed to is woken for its data, and its socket
            // is looked at only while there is none (one readiness check fewer per chunk).
            biased;
            chunk = data.next() => chunk,
            // A client that closes its side (or sends anything) while it is being streamed to
            // is done; without this, an idle stream would notice only at its next heartbeat.
            _ = io.peek(&mut probe) => return Ok(false),
        };
        let Some(chunk) = chunk else {
            if chunked {
                write_parts(io, [b"0\r\n\r\n"], write_timeout).await?;
            }
            return Ok(chunked);
        };
        let chunk: Bytes = chunk.map_err(into_io)?;
        if chunk.is_empty() {
            continue;
        }
        if chunked {
            let (size, len) = size_line(chunk.len());
            let mut parts = [&size[..len], &chunk[..], b"\r\n"];
            let written = write_small_now(io, parts)?;
            advance(&mut parts, written);
            write_parts(io, parts, write_timeout).await?;
        } else {
            write_parts(io, [&chunk], write_timeout).await?;
        }
    }
}

/// The line that opens a chunk of `len` bytes (`{len:x}\r\n`), on the stack: the buffer and
/// its used length.
fn size_line(len: usize) -> ([u8; 20], usize) {
    let mut size = [0u8; 20];
    let mut cursor = io::Cursor::new(&mut size[..]);
    // 16 hex digits and CRLF fit in 20 bytes: cannot fail.
    let _ = std::io::Write::write_fmt(&mut cursor, format_args!("{len:x}\r\n"));
    let used = cursor.position() as usize;
    (size, used)
}

/// `data` framed as one chunk of a chunked response, for a stream writer that writes the same
/// chunk to many clients (framed once).
pub(crate) fn chunk(data: &[u8]) -> Bytes {
    let (size, len) = size_line(data.len());
    let mut framed = BytesMut::with_capacity(len + data.len() + 2);
    framed.extend_from_slice(&size[..len]);
    framed.extend_from_slice(data);
    framed.extend_from_slice(b"\r\n");
    framed.freeze()
}

/// A body's error as the I/O error it carries (a stream writer's unfinished write), so that its
/// kind (a write timeout) is counted as such.
fn into_io(error: axum::Error) -> io::Error {
    let mut error = error.into_inner();
    loop {
        error = match error.downcast::<io::Error>() {
            Ok(e) => return *e,
            // The body wraps a stream's error in its own.
            Err(e) => match e.downcast::<axum::Error>() {
                Ok(wrapped) => wrapped.into_inner(),
                Err(e) => return io::Error::other(e),
            },
        };
    }
}

/// Writes all of `bytes` to a streaming response's socket, outside its body (the rest of a
/// chunk a stream writer began), within `timeout` of no progress.
pub(crate) async fn write_all(
    io: &mut SharedStream,
    bytes: &[u8],
    timeout: Duration,
) -> io::Result<()> {
    write_parts(io, [bytes], timeout).await
}

/// Chunks up to this size are copied into one buffer on the stack and written with one `write`.
const SMALL_WRITE: usize = 1024;

/// Writes what the socket takes now of small `parts` (an event with its chunk framing) with one
/// `write` of their copy, and says how much it took; larger ones are left to [`write_parts`]'s
/// `writev`. A `writev` of three slices costs the kernel more than a `write` of one (it copies
/// and walks the vector), and a chunk of a client at the head is one event of ~200 bytes: the
/// copy is cheaper than the difference, at the 10,000-client fan-out's rate of writes. Not
/// async, so the buffer is never part of a connection's future (its idle memory).
fn write_small_now<const N: usize>(io: &TcpStream, parts: [&[u8]; N]) -> io::Result<usize> {
    let total: usize = parts.iter().map(|p| p.len()).sum();
    if total > SMALL_WRITE {
        return Ok(0);
    }
    let mut buffer = [0u8; SMALL_WRITE];
    let mut at = 0;
    for part in parts {
        buffer[at..at + part.len()].copy_from_slice(part);
        at += part.len();
    }
    match io.try_write(&buffer[..total]) {
        Ok(written) => Ok(written),
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(0),
        Err(e) => Err(e),
    }
}

/// Drops the first `written` bytes of `parts`.
fn advance<const N: usize>(parts: &mut [&[u8]; N], mut written: usize) {
    for part in parts {
        let taken = written.min(part.len());
        *part = &part[taken..];
        written -= taken;
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
        let written = tokio::time::timeout(timeout, writer.write_vectored(&slices))
            .await
            .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "the client stopped reading"))??;
        if written == 0 {
            return Err(io::ErrorKind::WriteZero.into());
        }
        advance(&mut parts, written);
    }
}

/// A bodiless answer to a request the streamer cannot take, then the connection closes.
pub(super) async fn write_simple(
    io: &mut SharedStream,
    status: StatusCode,
    timeout: Duration,
) -> io::Result<()> {
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
pub(super) fn full_answer() -> &'static [u8] {
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
pub(super) async fn refuse(
    mut io: SharedStream,
    answer: &[u8],
    timeout: Duration,
) -> io::Result<()> {
    write_parts(&mut io, [answer], timeout).await?;
    linger(&mut io).await;
    Ok(())
}

/// Closes after an error answer without losing it. Closing a socket that still holds unread
/// bytes (the rest of a head too large, a request not read at all) sends a reset, which can
/// destroy the answer before the client reads it; so the write side is shut and what the
/// client still sends is read and dropped, for a moment and a few bytes at most.
async fn linger(io: &mut SharedStream) {
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
