//! `GET /v1/sessions/{session_id}/stream`: a session's market data as server-sent events.
//!
//! Authorised by a single-use ticket in the URL (browsers) or a bearer token (other clients).
//! Resumes from `Last-Event-ID` (the header `EventSource` sends on its own reconnects) or the
//! `last_event_id` query parameter (the reconnect endpoint's URL): exactly the missed events
//! while the window holds them, else a `reset` and a snapshot — never a silent gap.
//! A client that accepts gzip gets a gzip response built from units shared by every such
//! client (`compression.rs`), when `streamer.sse_compression` is on.

use std::io;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Extension, Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use futures_util::stream;
use serde::Deserialize;
use session_core::auth::Scope;
use session_core::backend::BackendError;
use session_core::domain::{EventId, SessionId, SimulatorId, TicketId, UserId};
use session_core::http::check_origin;
use session_core::service::{ServiceError, StreamCredential, StreamService};
use tokio::sync::watch;
use tokio::time::{Instant, Interval, MissedTickBehavior};
use tracing::{Instrument as _, debug, info, warn};

use crate::admission::StreamSlot;
use crate::compression::{self, Encoding};
use crate::drain::is_draining;
use crate::http1::{self, DirectSocket};
use crate::hub::{Delivery, Lane, Start, Subscription};
use crate::metrics;
use crate::peer::PeerAddr;
use crate::sse_error::SseError;
use crate::state::AppState;
use crate::wire;

/// The query of a stream request.
#[derive(Debug, Deserialize)]
pub(crate) struct StreamQuery {
    ticket: Option<String>,
    simulator_id: Option<String>,
    last_event_id: Option<String>,
}

/// The handler. Its span (request id generated here: no gateway names one) stays with the
/// connection, so the lines logged when the stream ends carry the same ids.
#[tracing::instrument(skip_all, fields(
    request_id = %ulid::Ulid::new(),
    session_id = %session_id,
))]
pub(crate) async fn stream(
    State(app): State<AppState>,
    Path(session_id): Path<String>,
    Query(query): Query<StreamQuery>,
    Extension(peer): Extension<PeerAddr>,
    direct: Option<Extension<DirectSocket>>,
    headers: HeaderMap,
) -> Result<Response, SseError> {
    if *app.draining.borrow() {
        return Err(SseError::Draining);
    }
    // Before anything costs: an address over its rate or at its cap spends no credential.
    let forwarded_for = headers.get("x-forwarded-for").and_then(|v| v.to_str().ok());
    app.limits.check_address(peer.0.ip(), forwarded_for).await?;
    let address_slot = app
        .admission
        .stream_from(peer.0.ip(), forwarded_for)
        .map_err(SseError::Capped)?;
    // A page of another site is refused before its credential is looked at (or spent).
    check_origin(&app.settings.cors_origins, &headers)?;
    let session_id = SessionId::parse("session_id", &session_id)?;
    let simulator = query
        .simulator_id
        .as_deref()
        .map(|id| SimulatorId::parse("simulator_id", id))
        .transpose()?;
    let header_position = match headers.get("last-event-id") {
        None => None,
        Some(value) => Some(EventId::parse(
            "Last-Event-ID",
            value.to_str().unwrap_or("(not text)"),
        )?),
    };
    let query_position = query
        .last_event_id
        .as_deref()
        .map(|id| EventId::parse("last_event_id", id))
        .transpose()?;
    let principal;
    let credential = if let Some(ticket) = query.ticket.as_deref() {
        StreamCredential::Ticket(ticket)
    } else {
        let token = bearer(&headers).ok_or(SseError::NoCredential)?;
        principal = app.tokens.validate(token).await?;
        // A ticket was minted under `sessions:write`; a bearer token reads the stream itself.
        principal.require([Scope::Read.as_str()])?;
        app.limits.check_user(&principal.user).await?;
        StreamCredential::Bearer(&principal)
    };
    let admission = app
        .service
        .admit_stream(credential, &session_id, simulator.as_ref(), header_position)
        .await?;
    // After admission, which names the user. A ticket refused here is spent, as by any other
    // refusal: `EventSource` never retries a non-200 answer, the page asks for a new ticket.
    // A ticket names its user only once verified (and spent); a bearer's was counted above.
    if query.ticket.is_some() {
        app.limits.check_user(&admission.user).await?;
    }
    let user_slot = app
        .admission
        .stream_of(&admission.user)
        .map_err(SseError::Capped)?;
    // The header is where the browser really is; the query is where it was when it asked.
    let start = header_position
        .or(query_position)
        .map_or(Start::Snapshot, Start::After);
    info!(
        simulator = %admission.simulator.id,
        user = %admission.user,
        ?start,
        "stream opened"
    );
    // Fed from the server hosting the simulator (discovery, or the home region's), or the
    // static one.
    let host = admission.source.as_deref();
    let mut subscription = app
        .hub
        .subscribe_on(host, &admission.backend_id, start)
        .map_err(|e| {
            ServiceError::Backend(BackendError::Unavailable(format!(
                "simulator server {host:?}: {e}"
            )))
        })?;
    let release = admission.ticket.map(|ticket| Release {
        service: app.service.clone(),
        ticket,
        grace: app.settings.resume_grace_secs,
    });
    // The runtime settings in force now: a change reaches the streams opened after it.
    let tunables = app.runtime.current();
    let encoding = if app.settings.sse_compression {
        Encoding::negotiate(
            headers
                .get(header::ACCEPT_ENCODING)
                .and_then(|v| v.to_str().ok()),
        )
    } else {
        Encoding::Identity
    };
    if encoding == Encoding::Gzip {
        subscription.use_gzip();
        crate::metrics::sse_compressed_response();
    }
    // A plain response is written by the stream's writers while its client is at the head.
    let direct = direct
        .filter(|_| encoding == Encoding::Identity)
        .map(|Extension(socket)| Direct {
            lane: Arc::default(),
            socket,
        });
    let connection = Connection {
        subscription,
        direct,
        heartbeat: heartbeat(tunables.streamer.heartbeat_secs),
        draining: app.draining.clone(),
        retry_ms: tunables.streamer.retry_ms,
        preamble: Some(wire::retry_preamble(tunables.streamer.retry_ms)),
        release,
        done: false,
        finished: false,
        _slots: (address_slot, user_slot),
        span: tracing::Span::current(),
    };
    Ok(response(connection, encoding, app.settings.sse_compression))
}

fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then_some(token.trim())
}

fn heartbeat(period: Duration) -> Interval {
    let mut interval = tokio::time::interval_at(Instant::now() + period, period);
    interval.set_missed_tick_behavior(MissedTickBehavior::Delay);
    interval
}

/// A streaming response with the headers proxies need to pass events through at once, in
/// `encoding`; `negotiated`: whether the coding depends on `Accept-Encoding` (caches must vary).
fn response(connection: Connection, encoding: Encoding, negotiated: bool) -> Response {
    // Boxed: `unfold` moves its state into each item's future and back out, and a connection
    // is a few hundred bytes, copied twice per delivery to each of thousands of clients.
    let body = Body::from_stream(stream::unfold(Box::new(connection), |mut c| async move {
        let bytes = c.next().await?;
        Some((bytes, c))
    }));
    let mut response = body.into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream; charset=utf-8"),
    );
    headers.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("no-cache, no-store, no-transform"),
    );
    // nginx (NGINX Gateway Fabric in front of the streamer) would otherwise buffer the stream.
    headers.insert("x-accel-buffering", HeaderValue::from_static("no"));
    if negotiated {
        headers.append(header::VARY, HeaderValue::from_static("accept-encoding"));
    }
    if encoding == Encoding::Gzip {
        headers.insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
    }
    response
}

/// Releases a ticket's resume chain when its connection ends.
#[derive(Debug)]
struct Release {
    service: StreamService,
    ticket: TicketId,
    grace: Duration,
}

/// A response's lane among the stream's writers, and the socket they write to.
#[derive(Debug)]
struct Direct {
    lane: Arc<Lane>,
    socket: DirectSocket,
}

/// One open SSE response.
#[derive(Debug)]
struct Connection {
    subscription: Subscription,
    /// `None`: every write is the connection's own (gzip, HTTP/1.0).
    direct: Option<Direct>,
    heartbeat: Interval,
    draining: watch::Receiver<bool>,
    retry_ms: u64,
    preamble: Option<Bytes>,
    release: Option<Release>,
    done: bool,
    /// A gzip response's trailer is sent (after `done`).
    finished: bool,
    /// Its places in the address's and the user's stream caps, given back when it ends.
    _slots: (StreamSlot<std::net::IpAddr>, StreamSlot<UserId>),
    /// The request's span, for the lines logged when the stream ends.
    span: tracing::Span,
}

impl Connection {
    /// The next chunk of the response in its coding; `None` ends it, an error ends the
    /// connection (the rest of a chunk a stream writer began could not be written).
    async fn next(&mut self) -> Option<io::Result<Bytes>> {
        if let Some(preamble) = self.preamble.take() {
            return Some(Ok(match self.subscription.gzip() {
                Some(gzip) => gzip.open(&preamble),
                None => preamble,
            }));
        }
        if self.done {
            if std::mem::replace(&mut self.finished, true) {
                return None;
            }
            return self.subscription.gzip().map(|gzip| Ok(gzip.trailer()));
        }
        loop {
            // The drain wakes every stream (`Hub::wake_all`) and gives every parked lane back,
            // so a client sees it on its next wake-up without a wait of its own.
            if is_draining(&self.draining) {
                return Some(Ok(self.drain_advice()));
            }
            let Some(direct) = &self.direct else {
                break;
            };
            if !self
                .subscription
                .park(&direct.lane, direct.socket.socket.socket())
            {
                break;
            }
            // Parked: the stream's writers deliver; this task wakes for its heartbeat, or when
            // a writer gives the lane back (a socket that did not take a whole chunk, a client
            // behind or stale, the drain).
            let heartbeat = tokio::select! {
                biased;
                () = direct.lane.given_back() => false,
                _ = self.heartbeat.tick() => true,
            };
            if let Some(rest) = self.subscription.take_back(&direct.lane) {
                let mut socket = direct.socket.socket.clone();
                let timeout = direct.socket.write_timeout;
                if let Err(e) = http1::write_all(&mut socket, &rest, timeout).await {
                    self.done = true;
                    self.finished = true;
                    return Some(Err(e));
                }
            }
            if heartbeat {
                return Some(Ok(Bytes::from_static(wire::HEARTBEAT)));
            }
        }
        let draining = &self.draining;
        Some(Ok(tokio::select! {
            biased;
            delivery = self.subscription.next_unless(|| is_draining(draining)) => {
                let Some(delivery) = delivery else {
                    return Some(Ok(self.drain_advice()));
                };
                // Handed to the connection's writer now: the delivery lag ends here.
                self.subscription.written(metrics::Transport::Sse);
                match delivery {
                    Delivery::Frames(bytes) => bytes,
                    Delivery::Last(bytes) => {
                        self.done = true;
                        bytes
                    }
                }
            }
            _ = self.heartbeat.tick() => match self.subscription.gzip() {
                Some(gzip) => {
                    let unit = compression::heartbeat();
                    gzip.sent(unit.crc);
                    unit.deflate.clone()
                }
                None => Bytes::from_static(wire::HEARTBEAT),
            },
        }))
    }
}

impl Connection {
    /// The last frames of a drained stream: reconnect (elsewhere).
    fn drain_advice(&mut self) -> Bytes {
        self.done = true;
        let advice = wire::reconnect("draining", self.retry_ms).sse;
        match self.subscription.gzip() {
            Some(gzip) => gzip.plain(&advice),
            None => advice,
        }
    }
}

impl Drop for Connection {
    fn drop(&mut self) {
        let _span = self.span.enter();
        if let Some(direct) = &self.direct {
            // Before its socket closes, and for the last event the writers wrote.
            self.subscription.take_back(&direct.lane);
        }
        let last = self.subscription.last_delivered();
        debug!(?last, "stream closed");
        let (Some(release), Some(last)) = (self.release.take(), last) else {
            return;
        };
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        runtime.spawn(
            async move {
            match release
                .service
                .release_stream(&release.ticket, last, release.grace)
                .await
            {
                Ok(()) | Err(ServiceError::NotFound { .. }) => {}
                Err(e) => warn!(error = %e, "could not release a stream ticket; its client will need a new one"),
            }
        }
            .instrument(self.span.clone()),
        );
    }
}
