//! The streamer's Prometheus metrics, named in one place.
//!
//! Recorded through the `metrics` facade; [`install`] sets the process's Prometheus recorder
//! once (several streamers in one test process share it), `/metrics` renders it, and [`upkeep`]
//! runs its maintenance while a streamer serves.
//!
//! No label takes a value per simulator, stream or client: every series is one of a fixed set,
//! so the recorder's memory does not grow with the simulators that come and go over a pod's
//! life (the recorder keeps a series until the process ends). Per-stream detail is in the logs
//! and in `/health/ready`.

use std::convert::Infallible;
use std::sync::OnceLock;
use std::time::Duration;

use metrics::{counter, gauge, histogram};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

/// Installs the Prometheus recorder, once per process; the handle renders `/metrics`.
pub fn install() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            // Buckets make the queue depth a cheap histogram instead of a summary.
            let recorder = PrometheusBuilder::new()
                .set_buckets_for_metric(
                    metrics_exporter_prometheus::Matcher::Full(QUEUE_DEPTH.to_owned()),
                    &[0.0, 1e3, 1e4, 6.4e4, 2.56e5, 1.048_576e6, 4.194_304e6],
                )
                .unwrap_or_else(|_| PrometheusBuilder::new())
                .build_recorder();
            let handle = recorder.handle();
            // Another recorder may already be set (a host process of its own); then ours only
            // renders what it was given, which is nothing, and the host's wins.
            let _ = metrics::set_global_recorder(recorder);
            handle
        })
        .clone()
}

/// How often [`upkeep`] runs.
const UPKEEP_EVERY: Duration = Duration::from_secs(5);

/// Runs the recorder's upkeep every few seconds, forever: it drains the histogram samples
/// recorded since the last time into their buckets. A render does that too, but scrapes may
/// stop (no Prometheus in a cluster, a failing scrape) while every delivery keeps recording a
/// sample; a task of its own bounds them whether or not anyone scrapes. Runs as part of
/// [`crate::Streamer::run`], so it lives exactly as long as the streamer serves.
pub(crate) async fn upkeep(handle: PrometheusHandle) -> Infallible {
    let mut every = tokio::time::interval(UPKEEP_EVERY);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        every.tick().await;
        handle.run_upkeep();
    }
}

pub(crate) fn client_attached() {
    gauge!("streamer_sse_clients").increment(1.0);
    counter!("streamer_sse_connections_total").increment(1);
}

pub(crate) fn client_detached() {
    gauge!("streamer_sse_clients").decrement(1.0);
}

pub(crate) fn delivered(events: u64, bytes: usize, backlog: u64) {
    counter!("streamer_events_delivered_total").increment(events);
    counter!("streamer_bytes_delivered_total").increment(bytes as u64);
    histogram!(QUEUE_DEPTH).record(backlog as f64);
}

/// How far behind the head clients are when they read: their queue depth, in bytes.
const QUEUE_DEPTH: &str = "streamer_client_queue_bytes";

pub(crate) fn conflated() {
    counter!("streamer_conflations_total").increment(1);
}

pub(crate) fn slow_client_closed() {
    counter!("streamer_slow_clients_closed_total").increment(1);
}

pub(crate) fn upstream_events(events: usize) {
    counter!("streamer_upstream_events_total").increment(events as u64);
}

/// A break of an upstream stream, followed by a resubscription (all streams of the pod).
pub(crate) fn upstream_reconnect() {
    counter!("streamer_upstream_reconnects_total").increment(1);
}

/// The breaker in front of the simulator service: one per streamer, shared by every stream.
pub(crate) fn circuit_open(open: bool) {
    gauge!("streamer_upstream_circuit_open").set(if open { 1.0 } else { 0.0 });
}

/// The replay windows of all the pod's streams, together.
pub(crate) fn window(events: u64, bytes: u64) {
    gauge!("streamer_window_events").set(events as f64);
    gauge!("streamer_window_bytes").set(bytes as f64);
}

pub(crate) fn streams(count: usize) {
    gauge!("streamer_streams").set(count as f64);
}

pub(crate) fn http_error(status: u16) {
    counter!("streamer_http_errors_total", "status" => status.to_string()).increment(1);
}

pub(crate) fn ready(value: f64) {
    gauge!("streamer_ready").set(value);
}

/// One `@connections` post (each attempt of a retried one): `ok`, or its error's class.
pub(crate) fn ws_post(outcome: &'static str) {
    counter!("streamer_ws_posts_total", "outcome" => outcome).increment(1);
}

/// One backfill of a window from the simulator: `filled`, or `unavailable`.
pub(crate) fn backfill(outcome: &'static str) {
    counter!("streamer_backfills_total", "outcome" => outcome).increment(1);
}

/// Connections holding a place in the pod's cap (`streamer.max_connections`).
pub(crate) fn connections(change: f64) {
    gauge!("streamer_connections").increment(change);
}

/// A connection or a stream refused by admission control: `full`, `streams_per_user`,
/// `streams_per_address` or `head_too_large`.
pub(crate) fn refused(reason: &'static str) {
    counter!("streamer_admission_refusals_total", "reason" => reason).increment(1);
}

/// A connection closed for a timeout: `header` (its request head did not come in time) or
/// `write` (its socket stopped draining).
pub(crate) fn timed_out(kind: &'static str) {
    counter!("streamer_connection_timeouts_total", "kind" => kind).increment(1);
}
