//! A stream's feed: the task that follows the upstream for one stream, from its first client
//! until it has lingered without any, resuming from the stream's head whenever the upstream
//! breaks.
//!
//! Breaks are retried with exponential backoff and full jitter; a simulator service that keeps
//! failing trips the upstream's breaker (shared by every stream of that endpoint), and clients
//! are told the stream is degraded instead of being left waiting in silence. A stall (no
//! message for `idle_timeout`) counts as a break: the simulator emits at least one event per
//! second while it runs.

use std::sync::Arc;
use std::time::Duration;

use futures_util::FutureExt as _;
use session_core::domain::EventId;
use session_core::resilience::{FullJitter, Permit};
use tonic::Code;
use tracing::{Instrument as _, info, warn};

use super::coalesce::Coalescer;
use super::linger::{IDLE_CHECK_EVERY, IdleSince, linger_out, wait_or_idle};
use super::registry::Registry;
use super::stream::{Stream, UpstreamState};
use crate::metrics;
use crate::upstream::{Upstream, check_continuity, position};
use crate::wire;

/// Most events published to the stream as one batch.
const MAX_BATCH: usize = 1024;

/// Why a subscription ended.
enum End {
    /// Broken: resume after a backoff.
    Broken(String),
    /// The simulator's stream is over for good.
    Over(String),
    /// No client for the linger time.
    Idle,
}

/// Feeds `stream` from `upstream` until it has had no client for its linger time, then
/// removes it from `registry`.
pub(crate) async fn run(upstream: Upstream, registry: Arc<Registry>, stream: Arc<Stream>) {
    let mut backoff = upstream.backoff();
    loop {
        let permit = match upstream.breaker().permit() {
            Ok(permit) => permit,
            Err(open) => {
                metrics::circuit_open(true);
                degrade(&stream, format!("simulator service unavailable: {open}"));
                let delay = open.retry_after.max(Duration::from_millis(50));
                if wait_or_idle(&registry, &stream, delay).await {
                    return;
                }
                continue;
            }
        };
        metrics::circuit_open(false);
        // A root span per subscription (one feeds every client of the stream, so no client's
        // request is its parent), linked to the simulator's start when the simulator says
        // which trace that was. Not per event.
        let span = tracing::info_span!(
            parent: None,
            "upstream subscription",
            component = "streamer",
            simulator_id = %stream.key,
        );
        let end = follow(&upstream, &registry, &stream, &mut backoff, &permit)
            .instrument(span)
            .await;
        // Whatever was published and not yet announced goes out now.
        stream.wake();
        match end {
            // An idle stream says nothing of the simulator service: the permit, dropped
            // without an outcome, frees the breaker's probe slot if it held it.
            End::Idle => return,
            End::Over(reason) => {
                // The simulator's stream ended normally: its service answered.
                permit.record_success();
                drop(permit);
                info!(simulator = %stream.key, %reason, "upstream over");
                stream.set_upstream(
                    UpstreamState::Ended(reason.clone()),
                    Some(wire::stream_status("ended", &reason)),
                );
                linger_out(&registry, &stream).await;
                return;
            }
            End::Broken(reason) => {
                permit.record_failure();
                drop(permit);
                metrics::upstream_reconnect();
                stream.count_break();
                warn!(simulator = %stream.key, %reason, "upstream broken; resuming");
                degrade(&stream, reason);
                let delay = backoff.next().unwrap_or(Duration::from_secs(5));
                if wait_or_idle(&registry, &stream, delay).await {
                    return;
                }
            }
        }
    }
}

/// One subscription, from the stream's head, until it ends; its first events (or a "not
/// found") are recorded as a success on `permit`, the caller records how it ended.
async fn follow(
    upstream: &Upstream,
    registry: &Registry,
    stream: &Arc<Stream>,
    backoff: &mut FullJitter,
    permit: &Permit<'_>,
) -> End {
    let head = stream.resume_position();
    let mut events = match upstream.subscribe(&stream.key, head).await {
        Ok(events) => events,
        Err(status) if status.code() == Code::NotFound => {
            permit.record_success();
            return End::Over(format!("simulator not found: {}", status.message()));
        }
        Err(status) => return End::Broken(format!("subscribe failed: {status}")),
    };
    let settings = upstream.settings();
    let mut head: Option<EventId> = head;
    let mut wake = Coalescer::new(settings.coalesce);
    let mut idle_check = tokio::time::interval(IDLE_CHECK_EVERY);
    let mut idle = IdleSince::default();
    let mut batch = Vec::with_capacity(64);
    // Moved on by every message only: the idle checks in between must not restart it.
    let mut deadline = tokio::time::Instant::now() + settings.idle_timeout;
    // The end of the stream, when it came right behind a batch: handled after the batch.
    let mut held = None;
    loop {
        let message = if let Some(end) = held.take() {
            Ok(end)
        } else {
            tokio::select! {
                message = tokio::time::timeout_at(deadline, events.message()) => message,
                () = wake.due(), if wake.pending() => {
                    wake.fire(stream);
                    continue;
                }
                _ = idle_check.tick() => {
                    if idle.check(registry, stream) {
                        return End::Idle;
                    }
                    continue;
                }
            }
        };
        let first = match message {
            Err(_) => {
                return End::Broken(format!("no event for {:?}: stalled", settings.idle_timeout));
            }
            Ok(Err(status)) => return End::Broken(format!("stream failed: {status}")),
            Ok(Ok(None)) => return End::Over("the simulator stopped".to_owned()),
            Ok(Ok(Some(event))) => event,
        };
        deadline = tokio::time::Instant::now() + settings.idle_timeout;
        // Whatever else has already arrived goes out in the same batch.
        batch.push(first);
        while batch.len() < MAX_BATCH {
            match events.message().now_or_never() {
                Some(Ok(Some(event))) => batch.push(event),
                // The stream's error or end is only reported once: keep it.
                Some(end) => {
                    held = Some(end);
                    break;
                }
                None => break,
            }
        }
        if let Err(gap) = check_continuity(head, &batch) {
            // Never publish a gap: start over from a fresh snapshot (clients get a reset).
            stream.forget_position();
            batch.clear();
            return End::Broken(gap.to_string());
        }
        head = batch.last().map(position);
        metrics::upstream_events(batch.len());
        stream.publish(&batch);
        batch.clear();
        wake.published(stream);
        if !matches!(stream.upstream(), UpstreamState::Live) {
            permit.record_success();
            *backoff = upstream.backoff();
            stream.set_upstream(
                UpstreamState::Live,
                Some(wire::stream_status("live", "receiving events")),
            );
        }
    }
}

fn degrade(stream: &Stream, reason: String) {
    let notice = wire::stream_status("degraded", &reason);
    stream.set_upstream(UpstreamState::Degraded(reason), Some(notice));
}
