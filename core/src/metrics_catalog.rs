//! Every metric the service emits, declared once: name, kind, unit, labels, meaning, healthy
//! range, the alert that uses it and who emits it.
//!
//! `docs/metrics.md` is rendered from [`METRICS`] ([`render_markdown`]) and checked against the
//! checked-in file by a test; the streamer describes its Prometheus series from it
//! (`# HELP`/`# TYPE`), and a drift test fails when `/metrics` shows a series that is not
//! declared here or a declared one that never appears. Add a metric here first, then emit it.

use std::fmt::Write as _;

use Kind::{Counter, Gauge, Histogram};
use Unit::{Bytes, Count, Seconds};

/// What a metric is, in Prometheus' terms (CloudWatch's are all values with a unit).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Only goes up (restarts from 0 when the process does); named `…_total`.
    Counter,
    /// A value that goes up and down.
    Gauge,
    /// Observations in buckets (`…_bucket`, `…_sum`, `…_count`).
    Histogram,
}

impl Kind {
    /// The word Prometheus' `# TYPE` line uses.
    pub const fn name(self) -> &'static str {
        match self {
            Self::Counter => "counter",
            Self::Gauge => "gauge",
            Self::Histogram => "histogram",
        }
    }
}

/// A metric's unit: base units only (seconds, bytes), so names and dashboards never convert.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    /// A count of things, or a 0/1 state.
    Count,
    /// Seconds.
    Seconds,
    /// Bytes.
    Bytes,
}

impl Unit {
    /// How the document names it (CloudWatch's `StandardUnit` spelling).
    pub const fn name(self) -> &'static str {
        match self {
            Self::Count => "Count",
            Self::Seconds => "Seconds",
            Self::Bytes => "Bytes",
        }
    }
}

/// Who emits a metric, and so where it can be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Emitter {
    /// The streamer's `/metrics` (scraped by Prometheus).
    Prometheus,
    /// `PutMetricData` from a long-lived process.
    CloudWatch,
    /// The Embedded Metric Format in a Lambda's log lines.
    Emf,
}

impl Emitter {
    /// How the document names it.
    pub const fn name(self) -> &'static str {
        match self {
            Self::Prometheus => "Prometheus",
            Self::CloudWatch => "CloudWatch",
            Self::Emf => "EMF",
        }
    }
}

/// A label (Prometheus) or dimension (CloudWatch), with its bounded set of values.
#[derive(Debug, Clone, Copy)]
pub struct Label {
    /// The label's name.
    pub name: &'static str,
    /// Every value it takes (or, for a set fixed elsewhere, what bounds it).
    pub values: &'static str,
}

/// One metric.
#[derive(Debug, Clone, Copy)]
pub struct MetricSpec {
    /// Its name as emitted (for a histogram, without `_bucket`/`_sum`/`_count`).
    pub name: &'static str,
    /// Counter, gauge or histogram.
    pub kind: Kind,
    /// Its unit, also the suffix of a Prometheus name (`_seconds`, `_bytes`).
    pub unit: Unit,
    /// Labels or dimensions; each has a bounded set of values.
    pub labels: &'static [Label],
    /// What it means; the `# HELP` text.
    pub help: &'static str,
    /// What it reads when all is well.
    pub healthy: &'static str,
    /// The alerts (PrometheusRule rules or CloudWatch alarms) that use it.
    pub alerts: &'static [&'static str],
    /// Who emits it.
    pub emitter: Emitter,
    /// Seen only once something fails (or an edge case happens): a test of the happy path
    /// checks only that it is described, not that it has a sample.
    pub only_on_failure: bool,
}

impl MetricSpec {
    /// A Prometheus series of the streamer, seen on the happy path.
    const fn streamer(
        name: &'static str,
        kind: Kind,
        unit: Unit,
        help: &'static str,
        healthy: &'static str,
    ) -> Self {
        Self {
            name,
            kind,
            unit,
            labels: &[],
            help,
            healthy,
            alerts: &[],
            emitter: Emitter::Prometheus,
            only_on_failure: false,
        }
    }

    const fn labels(mut self, labels: &'static [Label]) -> Self {
        self.labels = labels;
        self
    }

    const fn alerts(mut self, alerts: &'static [&'static str]) -> Self {
        self.alerts = alerts;
        self
    }

    const fn on_failure(mut self) -> Self {
        self.only_on_failure = true;
        self
    }

    /// The same metric, emitted by `emitter` instead.
    const fn emitted_by(mut self, emitter: Emitter) -> Self {
        self.emitter = emitter;
        self
    }
}

const fn label(name: &'static str, values: &'static str) -> Label {
    Label { name, values }
}

/// The buckets of [`DELIVERY_LAG`], in seconds: a page's budget is about 100 ms, so the
/// buckets are finest below it, and reach 10 s for a client that reconnects and replays.
pub const DELIVERY_LAG_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// The buckets of [`WS_POST_DURATION`], in seconds (one `@connections` call).
pub const WS_POST_DURATION_BUCKETS: &[f64] = &[
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// The buckets of [`CLIENT_QUEUE`], in bytes.
pub const CLIENT_QUEUE_BUCKETS: &[f64] = &[0.0, 1e3, 1e4, 6.4e4, 2.56e5, 1.048_576e6, 4.194_304e6];

/// Event creation (the simulator's `emit_time_unix_nanos`) to written to a client.
pub const DELIVERY_LAG: &str = "streamer_delivery_lag_seconds";
/// One `@connections` post.
pub const WS_POST_DURATION: &str = "streamer_ws_post_duration_seconds";
/// A client's queue depth when it reads.
pub const CLIENT_QUEUE: &str = "streamer_client_queue_bytes";

/// The states of `streamer_readiness`, one 0/1 series each.
pub const READINESS_STATES: &[&str] = &["ok", "degraded", "down", "draining", "full"];

/// Every metric the service emits.
pub static METRICS: &[MetricSpec] = &[
    // Clients and delivery.
    MetricSpec::streamer(
        "streamer_sse_clients",
        Gauge,
        Count,
        "Clients attached to a stream now: SSE responses, and WebSocket connections this pod \
         pushes to (the name predates the push).",
        "up to streamer.max_connections; the HPA scales on its average",
    ),
    MetricSpec::streamer(
        "streamer_sse_connections_total",
        Counter,
        Count,
        "Clients attached to a stream since the process started (SSE and WebSocket).",
        "grows with traffic",
    )
    .alerts(&["SessionStreamerHighErrorRate"]),
    MetricSpec::streamer(
        "streamer_connections",
        Gauge,
        Count,
        "Connections holding a place in the pod's cap (streamer.max_connections).",
        "below 95 % of streamer.max_connections",
    ),
    MetricSpec::streamer(
        "streamer_events_delivered_total",
        Counter,
        Count,
        "Events taken for clients (SSE and WebSocket), snapshots not counted.",
        "grows while clients are attached",
    ),
    MetricSpec::streamer(
        "streamer_delivered_bytes_total",
        Counter,
        Bytes,
        "Bytes of events taken for clients (SSE and WebSocket), snapshots not counted.",
        "grows while clients are attached",
    ),
    MetricSpec::streamer(
        DELIVERY_LAG,
        Histogram,
        Seconds,
        "Event creation (the simulator's emit time) to written to a client, SSE or WebSocket; \
         one observation per write, for its oldest event.",
        "p99 under 0.25 s (WebSocket: plus `streamer.push_batch_delay_ms`)",
    )
    .labels(&[label("transport", "`sse`, `websocket`")])
    .alerts(&["SessionStreamerDeliveryLagHigh"]),
    MetricSpec::streamer(
        CLIENT_QUEUE,
        Histogram,
        Bytes,
        "How far behind the head a client is when it reads: its queue depth.",
        "mostly in the 0 bucket",
    ),
    MetricSpec::streamer(
        "streamer_conflations_total",
        Counter,
        Count,
        "Clients too far behind that were sent a snapshot instead of the events they missed.",
        "near 0",
    )
    .alerts(&["SessionStreamerConflationsHigh"])
    .on_failure(),
    MetricSpec::streamer(
        "streamer_slow_clients_closed_total",
        Counter,
        Count,
        "Clients closed for being too slow even after a conflation (`slow_consumer`).",
        "0",
    )
    .on_failure(),
    // Streams and upstream.
    MetricSpec::streamer(
        "streamer_streams",
        Gauge,
        Count,
        "Upstream streams (one per simulator followed) open now.",
        "the simulators with clients on this pod",
    ),
    MetricSpec::streamer(
        "streamer_upstream_events_total",
        Counter,
        Count,
        "Events received from the simulators.",
        "grows while streams are open",
    ),
    MetricSpec::streamer(
        "streamer_upstream_reconnects_total",
        Counter,
        Count,
        "Upstream streams that broke and were resubscribed.",
        "near 0",
    )
    .on_failure(),
    MetricSpec::streamer(
        "streamer_upstream_circuit_open",
        Gauge,
        Count,
        "1 while the breaker in front of the simulator service is open, else 0.",
        "0",
    )
    .alerts(&["SessionStreamerUpstreamCircuitOpen"]),
    MetricSpec::streamer(
        "streamer_window_events",
        Gauge,
        Count,
        "Events held in the replay windows of all the pod's streams.",
        "up to streamer.window_events per stream",
    ),
    MetricSpec::streamer(
        "streamer_window_bytes",
        Gauge,
        Bytes,
        "Bytes held in the replay windows of all the pod's streams.",
        "up to streamer.window_bytes per stream",
    ),
    MetricSpec::streamer(
        "streamer_backfills_total",
        Counter,
        Count,
        "Backfills of a window from the simulator, by outcome.",
        "`unavailable` near 0",
    )
    .labels(&[label("outcome", "`filled`, `unavailable`")])
    .on_failure(),
    // Health and admission.
    MetricSpec::streamer(
        "streamer_readiness",
        Gauge,
        Count,
        "1 for the state /health/ready last answered, 0 for the others.",
        "`state=\"ok\"` 1",
    )
    .labels(&[label(
        "state",
        "`ok`, `degraded`, `down`, `draining`, `full`",
    )])
    .alerts(&[
        "SessionStreamerNotReady",
        "SessionStreamerReadinessDegraded",
    ]),
    MetricSpec::streamer(
        "streamer_http_errors_total",
        Counter,
        Count,
        "HTTP answers with a 4xx or 5xx status, by status.",
        "5xx near 0",
    )
    .labels(&[label(
        "status",
        "the statuses the streamer answers (400–504)",
    )])
    .alerts(&["SessionStreamerHighErrorRate"])
    .on_failure(),
    MetricSpec::streamer(
        "streamer_admission_refusals_total",
        Counter,
        Count,
        "Connections or streams refused by admission control, by reason.",
        "near 0",
    )
    .labels(&[label(
        "reason",
        "`full`, `streams_per_user`, `streams_per_address`, `head_too_large`",
    )])
    .on_failure(),
    MetricSpec::streamer(
        "streamer_connection_timeouts_total",
        Counter,
        Count,
        "Connections closed for a timeout: their request head came too late, or their socket \
         stopped draining.",
        "near 0",
    )
    .labels(&[label("kind", "`header`, `write`")])
    .on_failure(),
    MetricSpec::streamer(
        "rate_limit_refusals_total",
        Counter,
        Count,
        "Requests refused by a rate limit, by class and by what decided it.",
        "near 0",
    )
    .labels(&[
        label(
            "class",
            "`reads`, `writes`, `tickets`, `simulator-control`, `address`, `ws-connect`, \
             `ws-messages`, `sse-connect`, `connect-address`",
        ),
        label("by", "`remembered`, `local`, `store`"),
    ])
    .on_failure(),
    MetricSpec::streamer(
        "rate_limit_store_failures_total",
        Counter,
        Count,
        "Rate-limit decisions the store could not make (the request was admitted).",
        "0",
    )
    .labels(&[label("class", "as `rate_limit_refusals_total`")])
    .on_failure(),
    // WebSocket push.
    MetricSpec::streamer(
        "streamer_ws_posts_total",
        Counter,
        Count,
        "`@connections` posts (each attempt of a retried one), by outcome.",
        "`ok` only, `gone` as clients leave",
    )
    .labels(&[label(
        "outcome",
        "`ok`, `gone`, `throttled`, `too_large`, `forbidden`, `unavailable`, `other`",
    )])
    .alerts(&["SessionStreamerPushFailing"]),
    MetricSpec::streamer(
        WS_POST_DURATION,
        Histogram,
        Seconds,
        "Duration of one `@connections` post, whatever its outcome.",
        "p99 under 0.1 s",
    ),
    MetricSpec::streamer(
        "streamer_pusher_errors_total",
        Counter,
        Count,
        "Failed steps of the WebSocket push (the pusher logs each at warn), by step.",
        "0",
    )
    .labels(&[label(
        "step",
        "`list_sessions`, `take_lease`, `lease_lost`, `read_connections`, `hand_over`, \
         `record_position`, `push`",
    )])
    .alerts(&["SessionStreamerPusherErrors"])
    .on_failure(),
    MetricSpec::streamer(
        "streamer_push_sessions",
        Gauge,
        Count,
        "Sessions whose lease this streamer holds (it pushes to their WebSocket connections).",
        "spread across pods",
    ),
    // The process (`metrics-process`).
    MetricSpec::streamer(
        "process_cpu_seconds_total",
        Counter,
        Seconds,
        "CPU time (user and system) the process used, in whole seconds.",
        "rate under the pod's CPU limit (2)",
    ),
    MetricSpec::streamer(
        "process_resident_memory_bytes",
        Gauge,
        Bytes,
        "Resident memory of the process.",
        "under the pod's memory limit (1 GiB)",
    ),
    MetricSpec::streamer(
        "process_virtual_memory_bytes",
        Gauge,
        Bytes,
        "Virtual memory of the process.",
        "no limit applies",
    ),
    MetricSpec::streamer(
        "process_virtual_memory_max_bytes",
        Gauge,
        Bytes,
        "The process's limit of virtual memory (0: unlimited).",
        "0",
    ),
    MetricSpec::streamer(
        "process_open_fds",
        Gauge,
        Count,
        "Open file descriptors (each connection holds one).",
        "well under process_max_fds",
    ),
    MetricSpec::streamer(
        "process_max_fds",
        Gauge,
        Count,
        "The process's limit of open file descriptors.",
        "above streamer.max_connections plus the probe slots",
    ),
    MetricSpec::streamer(
        "process_start_time_seconds",
        Gauge,
        Seconds,
        "When the process started, in seconds since the Unix epoch.",
        "changes only on a restart",
    ),
    MetricSpec::streamer(
        "process_threads",
        Gauge,
        Count,
        "Threads of the process.",
        "the runtime's workers plus a few",
    ),
    MetricSpec::streamer(
        "streamer_cloudwatch_publish_failures_total",
        Counter,
        Count,
        "`PutMetricData` requests that failed (logged at warn; their data is sent with the next).",
        "0",
    )
    .on_failure(),
    // The streamer's PutMetricData (streamer/src/cloudwatch.rs), namespace `SessionService`,
    // one datum per metric per period (60 s) and pod; CloudWatch sums the pods.
    MetricSpec::streamer(
        "SseClients",
        Gauge,
        Count,
        "SSE clients attached when the period ended (`streamer_sse_clients`).",
        "follows use",
    )
    .labels(CW_STREAMER)
    .emitted_by(Emitter::CloudWatch),
    MetricSpec::streamer(
        "Connections",
        Gauge,
        Count,
        "Connections holding a place in the pod's cap (`streamer_connections`).",
        "under 95 % of streamer.max_connections",
    )
    .labels(CW_STREAMER)
    .emitted_by(Emitter::CloudWatch),
    MetricSpec::streamer(
        "Streams",
        Gauge,
        Count,
        "Simulator streams the pod holds (`streamer_streams`).",
        "follows use",
    )
    .labels(CW_STREAMER)
    .emitted_by(Emitter::CloudWatch),
    MetricSpec::streamer(
        "EventsDelivered",
        Counter,
        Count,
        "Events written to SSE clients in the period (`streamer_events_delivered_total`).",
        "follows use",
    )
    .labels(CW_STREAMER)
    .emitted_by(Emitter::CloudWatch),
    MetricSpec::streamer(
        "BytesDelivered",
        Counter,
        Bytes,
        "Bytes written to SSE clients in the period (`streamer_delivered_bytes_total`).",
        "follows use",
    )
    .labels(CW_STREAMER)
    .emitted_by(Emitter::CloudWatch),
    MetricSpec::streamer(
        "ClientQueueBytes",
        Histogram,
        Bytes,
        "Clients' queue depth when they read, as values and counts (`streamer_client_queue_bytes`).",
        "p99 well under streamer.client_queue_bytes",
    )
    .labels(CW_STREAMER)
    .emitted_by(Emitter::CloudWatch),
    MetricSpec::streamer(
        "DeliveryLag",
        Histogram,
        Seconds,
        "Event creation to written to a client, as values and counts (`streamer_delivery_lag_seconds`).",
        "p99 under 1 s",
    )
    .labels(CW_STREAMER)
    .alerts(&["StreamerDeliveryLagAlarm"])
    .emitted_by(Emitter::CloudWatch),
    MetricSpec::streamer(
        "Conflations",
        Counter,
        Count,
        "Slow clients' backlogs conflated into a snapshot in the period.",
        "near 0",
    )
    .labels(CW_STREAMER)
    .emitted_by(Emitter::CloudWatch),
    MetricSpec::streamer(
        "SlowClientsClosed",
        Counter,
        Count,
        "Clients closed for being too slow in the period.",
        "near 0",
    )
    .labels(CW_STREAMER)
    .emitted_by(Emitter::CloudWatch),
    MetricSpec::streamer(
        "PushPostsOk",
        Counter,
        Count,
        "`@connections` posts that succeeded in the period.",
        "follows use",
    )
    .labels(CW_STREAMER)
    .alerts(&["StreamerPushFailuresAlarm"])
    .emitted_by(Emitter::CloudWatch),
    MetricSpec::streamer(
        "PushPostsFailed",
        Counter,
        Count,
        "`@connections` posts that failed in the period, whatever the error.",
        "under 5 % of posts (`gone` as clients leave)",
    )
    .labels(CW_STREAMER)
    .alerts(&["StreamerPushFailuresAlarm"])
    .emitted_by(Emitter::CloudWatch),
    MetricSpec::streamer(
        "PusherErrors",
        Counter,
        Count,
        "Failed steps of the WebSocket push in the period (`streamer_pusher_errors_total`).",
        "0",
    )
    .labels(CW_STREAMER)
    .emitted_by(Emitter::CloudWatch),
    MetricSpec::streamer(
        "LeasesHeld",
        Gauge,
        Count,
        "Session leases the pod holds for the WebSocket push (`streamer_push_sessions`).",
        "follows use",
    )
    .labels(CW_STREAMER)
    .emitted_by(Emitter::CloudWatch),
    MetricSpec::streamer(
        "AdmissionRefusals",
        Counter,
        Count,
        "Connections and streams refused by admission control in the period.",
        "near 0",
    )
    .labels(CW_STREAMER)
    .emitted_by(Emitter::CloudWatch),
    MetricSpec::streamer(
        "UpstreamReconnects",
        Counter,
        Count,
        "Breaks of upstream streams followed by a resubscription in the period.",
        "near 0",
    )
    .labels(CW_STREAMER)
    .emitted_by(Emitter::CloudWatch),
    // The Lambdas' EMF lines (functions/src/metrics.rs), namespace `SessionService`.
    MetricSpec::streamer(
        "Requests",
        Counter,
        Count,
        "One per REST request, authorizer decision or WebSocket event.",
        "`rate_limited`, `denied`, `revoked` and `deny` rare",
    )
    .labels(EMF_DIMENSIONS)
    .alerts(&["RateLimitedRequestsAlarm", "AuthorizerDeniedAlarm"])
    .emitted_by(Emitter::Emf),
    MetricSpec::streamer(
        "Latency",
        Histogram,
        Seconds,
        "Time the function spent on the operation.",
        "p99 under 0.5 s",
    )
    .labels(EMF_DIMENSIONS)
    .emitted_by(Emitter::Emf),
];

/// The streamer's CloudWatch dimension: one, the same on every pod.
const CW_STREAMER: &[Label] = &[label("Service", "`streamer`")];

/// The dimensions of the Lambdas' EMF lines (sets: `Service, Operation, Outcome` and
/// `Service, Outcome`).
const EMF_DIMENSIONS: &[Label] = &[
    label(
        "Service",
        "`rest-api`, `authorizer`, `ws-authorizer`, `ws-handler`",
    ),
    label(
        "Operation",
        "REST: `CreateSession`, `ListSessions`, `GetSession`, `CloseSession`, `StartSimulator`, \
         `GetSimulator`, `StopSimulator`, `GetBook`, `IssueTicket`, `Reconnect`, `Revoke`, \
         `Other`, `NoRoute`; `Authorize`; `AuthorizeConnect` (the WebSocket `$connect` \
         authorizer); WebSocket: `Connect`, `Disconnect`, `Heartbeat`, `Message`",
    ),
    label(
        "Outcome",
        "`ok`, `rate_limited`, `revoked`, `denied`, `client_error`, `error`; the authorizers' \
         `allow`, `deny`, `error`",
    ),
];

/// The declared metric called `name`, if any.
pub fn find(name: &str) -> Option<&'static MetricSpec> {
    METRICS.iter().find(|m| m.name == name)
}

/// `docs/metrics.md`, rendered from [`METRICS`].
pub fn render_markdown() -> String {
    let mut doc = String::from(
        "# Metrics\n\n\
         Every metric the service emits. Generated from `core/src/metrics_catalog.rs` \
         (`METRICS`): do not edit by hand; change the registry and run \
         `UPDATE_METRICS_DOC=1 cargo test -p session-tests --test metrics_doc`.\n\n\
         Conventions: base units (seconds, bytes) named in the suffix (`_seconds`, `_bytes`), \
         counters end in `_total`, every label takes one of a fixed set of values (none per \
         session, simulator, connection or client), and every Prometheus series has `# HELP` \
         and `# TYPE`. Histograms are exported as `_bucket`, `_sum` and `_count`. A metric \
         marked *on failure* has no sample until the thing it counts happens.\n",
    );
    for emitter in [Emitter::Prometheus, Emitter::CloudWatch, Emitter::Emf] {
        let metrics: Vec<&MetricSpec> = METRICS.iter().filter(|m| m.emitter == emitter).collect();
        if metrics.is_empty() {
            continue;
        }
        let _ = write!(doc, "\n## {}\n\n", emitter.name());
        doc.push_str("| name | type | unit | labels | meaning | healthy | alert |\n");
        doc.push_str("| --- | --- | --- | --- | --- | --- | --- |\n");
        for m in metrics {
            let labels = if m.labels.is_empty() {
                "none".to_owned()
            } else {
                m.labels
                    .iter()
                    .map(|l| format!("`{}`: {}", l.name, l.values))
                    .collect::<Vec<_>>()
                    .join("; ")
            };
            let meaning = if m.only_on_failure {
                format!("{} *On failure.*", m.help)
            } else {
                m.help.to_owned()
            };
            let alert = if m.alerts.is_empty() {
                "none".to_owned()
            } else {
                m.alerts
                    .iter()
                    .map(|a| match m.emitter {
                        // A PrometheusRule rule's runbook section is named after it.
                        Emitter::Prometheus => {
                            format!("[`{a}`](deploy.md#alert-{})", a.to_lowercase())
                        }
                        Emitter::CloudWatch | Emitter::Emf => format!("`{a}`"),
                    })
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            let _ = writeln!(
                doc,
                "| `{}` | {} | {} | {} | {} | {} | {} |",
                m.name,
                m.kind.name(),
                m.unit.name(),
                labels,
                meaning,
                m.healthy,
                alert,
            );
        }
    }
    doc
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_metric_is_named_by_the_prometheus_conventions() {
        let mut seen = std::collections::HashSet::new();
        for m in METRICS {
            assert!(seen.insert(m.name), "{} is declared twice", m.name);
            if m.emitter != Emitter::Prometheus {
                continue;
            }
            assert_eq!(
                m.kind == Kind::Counter,
                m.name.ends_with("_total"),
                "{}: counters, and only counters, end in _total",
                m.name
            );
            let base = m.name.trim_end_matches("_total");
            match m.unit {
                Unit::Seconds => assert!(base.ends_with("_seconds"), "{}", m.name),
                Unit::Bytes => assert!(base.ends_with("_bytes"), "{}", m.name),
                Unit::Count => assert!(
                    !base.ends_with("_seconds") && !base.ends_with("_bytes"),
                    "{}",
                    m.name
                ),
            }
            assert!(!m.help.is_empty() && !m.healthy.is_empty(), "{}", m.name);
        }
    }
}
