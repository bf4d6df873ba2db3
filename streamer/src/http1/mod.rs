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
//!
//! Layout: this file accepts connections and runs each one's request loop; `head` reads and
//! parses a request head within its limits; `response` writes responses, refusals and the close.

mod head;
mod response;

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use axum::Router;
use axum::http::{Method, StatusCode};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinSet;
use tower::ServiceExt as _;
use tracing::debug;

use crate::admission::{Admission, ConnectionSlot};
use crate::drain::drained;
use crate::metrics;
use crate::peer::PeerAddr;
use crate::socket::SharedStream;
use head::{Head, parse, read_head, wants_keep_alive};
pub(crate) use response::{chunk, write_all};
use response::{full_answer, refuse, write_response, write_simple};

/// A streaming response's socket, lent to the handler (a request extension): the stream
/// writers of the hub write its chunks to it while its client is at the head. Present on
/// HTTP/1.1 requests other than `HEAD` (their bodies are chunked, as the writers frame them).
#[derive(Debug, Clone)]
pub(crate) struct DirectSocket {
    /// The connection's socket.
    pub socket: SharedStream,
    /// How long a write may make no progress (`streamer.write_timeout_ms`).
    pub write_timeout: Duration,
}

/// How long a connection may take over its request head and over a write.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Timeouts {
    /// A request head is complete within this of the accept (the first request) or of its
    /// first byte (later ones), or the connection is closed.
    pub header: Duration,
    /// A write that makes no progress for this long closes the connection.
    pub write: Duration,
}

impl Timeouts {
    /// `streamer.header_timeout_ms` and `streamer.write_timeout_ms`.
    pub(crate) fn from_settings(settings: &crate::settings::StreamerSettings) -> Self {
        Self {
            header: settings.header_timeout_ms,
            write: settings.write_timeout_ms,
        }
    }
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
                        let io = SharedStream::new(io);
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
    io: TcpStream,
    peer: SocketAddr,
    mut slot: ConnectionSlot,
    router: Router,
    mut draining: watch::Receiver<bool>,
    timeouts: Timeouts,
) -> io::Result<()> {
    io.set_nodelay(true)?;
    let mut io = SharedStream::new(io);
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
        if version == axum::http::Version::HTTP_11 && !head_only {
            request.extensions_mut().insert(DirectSocket {
                socket: io.clone(),
                write_timeout: timeouts.write,
            });
        }
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

#[cfg(test)]
mod tests;
