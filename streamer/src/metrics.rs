//! The streamer's Prometheus metrics, recorded in one place.
//!
//! Every series is declared in `session_core::metrics_catalog` (name, type, unit, labels,
//! meaning), which `docs/metrics.md` is generated from; [`install`] describes each one from it,
//! so `/metrics` has `# HELP` and `# TYPE` for every series. Recorded through the `metrics`
//! facade; [`install`] sets the process's Prometheus recorder once (several streamers in one
//! test process share it), [`render`] answers `/metrics`, and [`upkeep`] runs its maintenance
//! while a streamer serves.
//!
//! No label takes a value per simulator, stream or client: every series is one of a fixed set,
//! so the recorder's memory does not grow with the simulators that come and go over a pod's
//! life (the recorder keeps a series until the process ends). Per-stream detail is in the logs
//! and in `/health/ready`.

use std::convert::Infallible;
use std::sync::OnceLock;
use std::time::Duration;

use metrics::{Counter, Histogram, counter, gauge, histogram};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use session_core::metrics_catalog::{self, Emitter, Kind};

/// Installs the Prometheus recorder, once per process; the handle renders `/metrics`.
pub fn install() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            // Buckets make histograms cheap and aggregatable (a summary is neither).
            let buckets = [
                (
                    metrics_catalog::CLIENT_QUEUE,
                    metrics_catalog::CLIENT_QUEUE_BUCKETS,
                ),
                (
                    metrics_catalog::DELIVERY_LAG,
                    metrics_catalog::DELIVERY_LAG_BUCKETS,
                ),
                (
                    metrics_catalog::WS_POST_DURATION,
                    metrics_catalog::WS_POST_DURATION_BUCKETS,
                ),
            ];
            let builder = buckets
                .iter()
                .try_fold(PrometheusBuilder::new(), |builder, (name, buckets)| {
                    builder.set_buckets_for_metric(Matcher::Full((*name).to_owned()), buckets)
                })
                .unwrap_or_else(|_| PrometheusBuilder::new());
            let recorder = builder.build_recorder();
            let handle = recorder.handle();
            // Another recorder may already be set (a host process of its own); then ours only
            // renders what it was given, which is nothing, and the host's wins.
            let _ = metrics::set_global_recorder(recorder);
            describe();
            PER_DELIVERY.get_or_init(PerDelivery::look_up);
            handle
        })
        .clone()
}

/// Gives every Prometheus series of the registry its `# HELP` and unit; the exporter writes
/// them, with `# TYPE`, for each series that has a sample.
fn describe() {
    for spec in metrics_catalog::METRICS {
        if spec.emitter != Emitter::Prometheus {
            continue;
        }
        let unit = match spec.unit {
            metrics_catalog::Unit::Count => metrics::Unit::Count,
            metrics_catalog::Unit::Seconds => metrics::Unit::Seconds,
            metrics_catalog::Unit::Bytes => metrics::Unit::Bytes,
        };
        match spec.kind {
            Kind::Counter => metrics::describe_counter!(spec.name, unit, spec.help),
            Kind::Gauge => metrics::describe_gauge!(spec.name, unit, spec.help),
            Kind::Histogram => metrics::describe_histogram!(spec.name, unit, spec.help),
        }
    }
}

/// The text `/metrics` answers: the process's figures (CPU, memory, file descriptors) are
/// read now, then everything is rendered.
pub(crate) fn render(handle: &PrometheusHandle) -> String {
    static PROCESS: OnceLock<metrics_process::Collector> = OnceLock::new();
    PROCESS
        .get_or_init(metrics_process::Collector::default)
        .collect();
    handle.render()
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

/// A stream answered with `Content-Encoding: gzip`.
pub(crate) fn sse_compressed_response() {
    counter!("streamer_sse_compressed_responses_total").increment(1);
}

pub(crate) fn client_detached() {
    gauge!("streamer_sse_clients").decrement(1.0);
}

/// The series recorded for every delivery to every client, looked up once. The macros look a
/// series up on each call (hash its key, lock a shard of the registry): four lookups per
/// delivery showed in the 10,000-client profile, at up to hundreds of thousands of deliveries a
/// second. Made by [`install`], after the recorder is set (a handle taken before would record
/// nowhere); before it, deliveries are not recorded, as with no recorder at all.
struct PerDelivery {
    events: Counter,
    bytes: Counter,
    client_queue: Histogram,
    lag_sse: Histogram,
    lag_websocket: Histogram,
}

static PER_DELIVERY: OnceLock<PerDelivery> = OnceLock::new();

impl PerDelivery {
    fn look_up() -> Self {
        Self {
            events: counter!("streamer_events_delivered_total"),
            bytes: counter!("streamer_delivered_bytes_total"),
            client_queue: histogram!(metrics_catalog::CLIENT_QUEUE),
            lag_sse: histogram!(metrics_catalog::DELIVERY_LAG, "transport" => "sse"),
            lag_websocket: histogram!(metrics_catalog::DELIVERY_LAG, "transport" => "websocket"),
        }
    }
}

pub(crate) fn delivered(events: u64, bytes: usize, backlog: u64) {
    let Some(series) = PER_DELIVERY.get() else {
        return;
    };
    series.events.increment(events);
    series.bytes.increment(bytes as u64);
    series.client_queue.record(backlog as f64);
}

/// The time from an event's emission by the simulator (`emit_ns`, its clock) to its write
/// to a client now (this host's clock): clock skew between the hosts is part of it, and a
/// negative difference counts as 0.
pub(crate) fn delivery_lag(transport: Transport, emit_ns: i64) {
    let Some(series) = PER_DELIVERY.get() else {
        return;
    };
    let now_ns = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX));
    let lag = now_ns.saturating_sub(emit_ns).max(0) as f64 / 1e9;
    match transport {
        Transport::Sse => series.lag_sse.record(lag),
        Transport::WebSocket => series.lag_websocket.record(lag),
    }
}

/// How a delivery reached its client (the `transport` label of the delivery lag).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// An SSE response.
    Sse,
    /// A WebSocket message posted through `@connections`.
    WebSocket,
}

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

/// What `/health/ready` answered: `state` is 1, every other state of
/// [`metrics_catalog::READINESS_STATES`] is 0 (a state set: one series per state, so a rule
/// selects the state it means rather than comparing magic values).
pub(crate) fn readiness(state: &'static str) {
    for each in metrics_catalog::READINESS_STATES {
        let value = if *each == state { 1.0 } else { 0.0 };
        gauge!("streamer_readiness", "state" => *each).set(value);
    }
}

/// One `@connections` post (each attempt of a retried one): `ok`, or its error's class, and
/// how long it took.
pub(crate) fn ws_post(outcome: &'static str, took: Duration) {
    counter!("streamer_ws_posts_total", "outcome" => outcome).increment(1);
    histogram!(metrics_catalog::WS_POST_DURATION).record(took.as_secs_f64());
}

/// A failed step of the WebSocket push (`list_sessions`, `take_lease`, `lease_lost`,
/// `read_connections`, `read_session`, `hand_over`, `record_position`, `push`); each is also logged.
pub(crate) fn pusher_error(step: &'static str) {
    counter!("streamer_pusher_errors_total", "step" => step).increment(1);
}

/// Sessions whose lease this streamer holds.
pub(crate) fn push_sessions(count: usize) {
    gauge!("streamer_push_sessions").set(count as f64);
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
