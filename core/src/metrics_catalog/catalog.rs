//! The declarations: every metric of the streamer (Prometheus and CloudWatch) and of the
//! Lambdas (EMF), in the order `docs/metrics.md` lists them.

use super::Kind::{Counter, Gauge, Histogram};
use super::Unit::{Bytes, Count, Seconds};
use super::{CLIENT_QUEUE, DELIVERY_LAG, Emitter, Label, MetricSpec, WS_POST_DURATION, label};

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
        "streamer_sse_compressed_responses_total",
        Counter,
        Count,
        "SSE responses sent gzip-compressed (the client accepted gzip and `streamer.sse_compression` is on).",
        "grows with browser traffic; 0 when compression is off",
    ),
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
    // The cache layer (`session_core::cache`). Counted wherever a `metrics` recorder is
    // installed.
    MetricSpec::streamer(
        "cache_requests_total",
        Counter,
        Count,
        "Calls of the cache layer's tiers by outcome: reads that hit or missed, and shared-tier \
         calls skipped while it is paused after a failure.",
        "`hit` most of `local` and `redis` in steady traffic; `skipped` 0",
    )
    .labels(&[
        label("tier", "`local`, `redis`"),
        label("result", "`hit`, `miss`, `skipped`"),
    ]),
    MetricSpec::streamer(
        "cache_errors_total",
        Counter,
        Count,
        "Shared-tier (Redis/Valkey) calls that failed or timed out; the read went to the store.",
        "0",
    )
    .labels(&[
        label("tier", "`redis`"),
        label("operation", "`get`, `put`, `remove`, `decode`, `encode`"),
    ])
    .on_failure(),
    // Service discovery (`session_core::discovery`), with `discovery.mode` other than
    // `static`. Counted wherever a `metrics` recorder is installed.
    MetricSpec::streamer(
        "discovery_healthy_instances",
        Gauge,
        Count,
        "Healthy servers of a backend at the last successful discovery refresh.",
        "the backend's replica count; 0 means no start can be placed",
    )
    .labels(&[label("backend", "`simulator`, `auth`")])
    .on_failure(),
    MetricSpec::streamer(
        "discovery_refresh_failures_total",
        Counter,
        Count,
        "Discovery refreshes that failed (Cloud Map or DNS unreachable); the last good list \
         was kept.",
        "0",
    )
    .labels(&[label("backend", "`simulator`, `auth`")])
    .on_failure(),
    // Feature flags (AppConfig). Counted wherever a `metrics` recorder is installed.
    MetricSpec::streamer(
        "feature_flag_evaluations_total",
        Counter,
        Count,
        "Feature-flag evaluations for a request's user, by flag and answer.",
        "`on` only while a flag is being used (`maintenance_mode`: during maintenance)",
    )
    .labels(&[
        label("flag", "`maintenance_mode`"),
        label("result", "`on`, `off`"),
    ])
    .on_failure(),
    MetricSpec::streamer(
        "appconfig_refresh_failures_total",
        Counter,
        Count,
        "Polls of the AppConfig agent that kept the previous document: unreachable, or \
         refused as invalid (the warning logged names the setting at fault).",
        "0; any `invalid` means a bad document was deployed",
    )
    .labels(&[
        label("profile", "`flags`, `settings`"),
        label("reason", "`unreachable`, `invalid`"),
    ])
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
        "`list_sessions`, `take_lease`, `lease_lost`, `read_connections`, `read_session`, \
         `hand_over`, `record_position`, `push`",
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
        "`ok`, `rate_limited`, `revoked`, `denied`, `client_error`, `maintenance` (REST writes \
         `maintenance_mode` paused), `error`; the authorizers' `allow`, `deny`, `error`",
    ),
];
