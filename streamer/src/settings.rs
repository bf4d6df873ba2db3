//! The streamer's settings (`streamer.*`): where it listens, what it keeps, how it treats slow
//! clients, pushes to WebSocket connections, publishes its figures and drains. Read from the
//! same sources as core's [`Settings`] (defaults, file, `SESSION_STREAMER__*`), which accepts
//! and ignores the `streamer` key.

use std::path::Path;
use std::time::Duration;

use figment::Figment;
use serde::Deserialize;
use session_core::config::duration::{check_range, whole_secs as secs};
use session_core::config::{ConfigError, Settings, invalid, validate_origins};

/// The streamer: where it listens, what it keeps, how it treats slow clients and drains.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StreamerSettings {
    /// Address of its HTTP server (SSE, health, metrics).
    pub listen: String,
    /// This instance's name (the pod's); default: `streamer-<pid>`.
    pub instance_id: Option<String>,
    /// Browser origins allowed to open streams (CORS, and the `Origin` check of the stream
    /// route: a listed or absent `Origin` passes); empty allows none.
    pub cors_origins: Vec<String>,
    /// Most bytes of events a stream keeps for resuming clients.
    pub window_bytes: u64,
    /// Most bytes a client may be behind before its backlog is conflated into a snapshot.
    pub client_queue_bytes: u64,
    /// A client conflated more than this many times within `conflation_period_secs` is told
    /// to reconnect and closed.
    pub max_conflations: u32,
    /// The period of `max_conflations`.
    #[serde(deserialize_with = "session_core::config::duration::secs")]
    pub conflation_period_secs: Duration,
    /// Seconds between comment heartbeats on an idle SSE connection.
    #[serde(deserialize_with = "session_core::config::duration::secs")]
    pub heartbeat_secs: Duration,
    /// What `EventSource` is told to wait before reconnecting (`retry:`), in milliseconds.
    /// An integer, not a `Duration`: it is written as is into the stream's `retry:` field,
    /// whose unit is the millisecond.
    pub retry_ms: u64,
    /// How long a stream without clients keeps its upstream and window.
    #[serde(deserialize_with = "session_core::config::duration::secs")]
    pub linger_secs: Duration,
    /// An upstream silent for this long is taken as stalled and resumed.
    #[serde(deserialize_with = "session_core::config::duration::millis")]
    pub upstream_idle_timeout_ms: Duration,
    /// Consecutive upstream failures that open the circuit.
    pub upstream_breaker_threshold: u32,
    /// How long the open circuit refuses, in seconds.
    #[serde(deserialize_with = "session_core::config::duration::secs")]
    pub upstream_breaker_cool_down_secs: Duration,
    /// How long a dropped SSE connection's ticket may reopen it (`EventSource` reconnects).
    #[serde(deserialize_with = "session_core::config::duration::secs")]
    pub resume_grace_secs: Duration,
    /// Events published within this many milliseconds reach clients in one write: the most
    /// latency a busy stream adds to save writes (a quiet stream adds none); 0 disables.
    #[serde(deserialize_with = "session_core::config::duration::millis")]
    pub coalesce_ms: Duration,
    /// SSE responses are gzip-compressed for clients that accept it (`Accept-Encoding`), each
    /// event compressed once for all of them; false sends every client plain frames.
    pub sse_compression: bool,
    /// On SIGTERM, the longest the streamer waits for clients to leave before it exits.
    #[serde(deserialize_with = "session_core::config::duration::secs")]
    pub drain_deadline_secs: Duration,
    /// The WebSocket API's `@connections` endpoint
    /// (`https://{api}.execute-api.{region}.amazonaws.com/{stage}`); unset, no WebSocket push.
    pub connections_url: Option<String>,
    /// How often the WebSocket push reads sessions and connection sets and renews its leases.
    #[serde(deserialize_with = "session_core::config::duration::millis")]
    pub push_poll_ms: Duration,
    /// A session's lease lapses this long after its holder's last renewal.
    #[serde(deserialize_with = "session_core::config::duration::secs")]
    pub lease_ttl_secs: Duration,
    /// After a first event, how long a WebSocket push waits for more before posting.
    #[serde(deserialize_with = "session_core::config::duration::millis")]
    pub push_batch_delay_ms: Duration,
    /// Most `PostToConnection` calls the pod has under way at once, across its connections; a
    /// connection holds one only while an attempt is under way, never across a retry's wait.
    pub push_max_concurrent_posts: u32,
    /// Most connections the pod holds; over it a connection gets a `503` (`full`), and
    /// `/health/ready` says `full` from 95 % of it until it falls to 90 %.
    pub max_connections: u32,
    /// Most streams one user holds open on the pod at once (over it: `429`, `too-many-streams`).
    pub max_streams_per_user: u32,
    /// Most streams one source address holds open on the pod at once (an office NAT shares an
    /// address, so well above `max_streams_per_user`).
    pub max_streams_per_address: u32,
    /// A request head not complete this long after the connection opened (or, between
    /// keep-alive requests, after its first byte) closes the connection (slowloris).
    #[serde(deserialize_with = "session_core::config::duration::millis")]
    pub header_timeout_ms: Duration,
    /// A write to a client making no progress for this long (its socket stopped draining)
    /// closes the connection.
    #[serde(deserialize_with = "session_core::config::duration::millis")]
    pub write_timeout_ms: Duration,
    /// The CloudWatch namespace the streamer publishes its key figures to (`PutMetricData`);
    /// unset, nothing is published.
    pub cloudwatch_namespace: Option<String>,
    /// CloudWatch's endpoint when not the region's (tests and the local stack).
    pub cloudwatch_endpoint: Option<String>,
    /// How often the figures are published, in milliseconds (CloudWatch's standard resolution
    /// is a minute).
    #[serde(deserialize_with = "session_core::config::duration::millis")]
    pub cloudwatch_interval_ms: Duration,
}

impl Default for StreamerSettings {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:8090".to_owned(),
            instance_id: None,
            cors_origins: Vec::new(),
            window_bytes: 32 * 1024 * 1024,
            client_queue_bytes: 1024 * 1024,
            max_conflations: 3,
            conflation_period_secs: Duration::from_secs(60),
            heartbeat_secs: Duration::from_secs(15),
            retry_ms: 1_000,
            linger_secs: Duration::from_secs(30),
            upstream_idle_timeout_ms: Duration::from_millis(5_000),
            upstream_breaker_threshold: 5,
            upstream_breaker_cool_down_secs: Duration::from_secs(10),
            resume_grace_secs: Duration::from_secs(60),
            coalesce_ms: Duration::from_millis(5),
            sse_compression: true,
            drain_deadline_secs: Duration::from_secs(20),
            connections_url: None,
            push_poll_ms: Duration::from_millis(1_000),
            lease_ttl_secs: Duration::from_secs(10),
            push_batch_delay_ms: Duration::from_millis(10),
            push_max_concurrent_posts: 64,
            max_connections: 20_000,
            max_streams_per_user: 20,
            max_streams_per_address: 200,
            header_timeout_ms: Duration::from_millis(10_000),
            write_timeout_ms: Duration::from_millis(30_000),
            cloudwatch_namespace: None,
            cloudwatch_endpoint: None,
            cloudwatch_interval_ms: Duration::from_millis(60_000),
        }
    }
}

impl StreamerSettings {
    /// Defaults, then `file` if given, then the environment (as [`Settings::load`]); validated.
    ///
    /// # Errors
    /// A source is unreadable, a value has the wrong type or is out of range.
    pub fn load(file: Option<&Path>) -> Result<Self, ConfigError> {
        Self::from_figment(&Settings::figment(file)?)
    }

    /// The `streamer` table of any figment (absent: the defaults), validated.
    ///
    /// # Errors
    /// A value has the wrong type or is out of range.
    pub fn from_figment(figment: &Figment) -> Result<Self, ConfigError> {
        /// The whole figment, other sections left to core: errors then name the full path
        /// (`streamer.push_poll_ms`), which `extract_inner` does not.
        #[derive(Deserialize)]
        struct Root {
            #[serde(default)]
            streamer: StreamerSettings,
        }
        let Root { streamer } = figment.extract().map_err(Box::new)?;
        streamer.validate()?;
        Ok(streamer)
    }

    pub(crate) fn validate(&self) -> Result<(), ConfigError> {
        if self.listen.parse::<std::net::SocketAddr>().is_err() {
            return invalid("streamer.listen", "must be an address like 127.0.0.1:8090");
        }
        validate_origins("streamer.cors_origins", &self.cors_origins)?;
        if self.client_queue_bytes < 64 * 1024 {
            return invalid("streamer.client_queue_bytes", "must be at least 65536");
        }
        if self.window_bytes < self.client_queue_bytes {
            return invalid(
                "streamer.window_bytes",
                "must be at least streamer.client_queue_bytes",
            );
        }
        // In each setting's unit, so that an error quotes the bounds as it is written.
        for (setting, value, range) in [
            (
                "streamer.heartbeat_secs",
                secs(self.heartbeat_secs),
                1..=300,
            ),
            ("streamer.retry_ms", u128::from(self.retry_ms), 100..=60_000),
            (
                "streamer.push_max_concurrent_posts",
                u128::from(self.push_max_concurrent_posts),
                1..=10_000,
            ),
            ("streamer.linger_secs", secs(self.linger_secs), 0..=3600),
            (
                "streamer.upstream_idle_timeout_ms",
                self.upstream_idle_timeout_ms.as_millis(),
                1_100..=600_000,
            ),
            (
                "streamer.resume_grace_secs",
                secs(self.resume_grace_secs),
                1..=3600,
            ),
            (
                "streamer.drain_deadline_secs",
                secs(self.drain_deadline_secs),
                0..=3600,
            ),
            (
                "streamer.conflation_period_secs",
                secs(self.conflation_period_secs),
                1..=3600,
            ),
        ] {
            check_range(setting, value, range)?;
        }
        if let Some(url) = &self.connections_url
            && !(url.starts_with("http://") || url.starts_with("https://"))
        {
            return invalid(
                "streamer.connections_url",
                "must be an http:// or https:// URL",
            );
        }
        if self.lease_ttl_secs <= self.push_poll_ms.saturating_mul(2) {
            return invalid(
                "streamer.lease_ttl_secs",
                "must outlast two streamer.push_poll_ms (a lease is renewed every poll)",
            );
        }
        if self.upstream_breaker_threshold == 0 {
            return invalid("streamer.upstream_breaker_threshold", "must be at least 1");
        }
        self.validate_cloudwatch()?;
        self.validate_admission()
    }

    fn validate_cloudwatch(&self) -> Result<(), ConfigError> {
        if let Some(namespace) = &self.cloudwatch_namespace
            && (namespace.is_empty()
                || namespace.len() > 255
                || namespace.starts_with(':')
                || namespace.starts_with("AWS/"))
        {
            return invalid(
                "streamer.cloudwatch_namespace",
                "must be 1 to 255 characters, not starting with `:` or `AWS/`",
            );
        }
        if let Some(url) = &self.cloudwatch_endpoint
            && !(url.starts_with("http://") || url.starts_with("https://"))
        {
            return invalid(
                "streamer.cloudwatch_endpoint",
                "must be an http:// or https:// URL",
            );
        }
        check_range(
            "streamer.cloudwatch_interval_ms",
            self.cloudwatch_interval_ms.as_millis(),
            100..=3_600_000,
        )
    }

    fn validate_admission(&self) -> Result<(), ConfigError> {
        for (setting, value, range) in [
            (
                "streamer.max_connections",
                u128::from(self.max_connections),
                1..=1_000_000,
            ),
            (
                "streamer.max_streams_per_user",
                u128::from(self.max_streams_per_user),
                1..=1_000_000,
            ),
            (
                "streamer.max_streams_per_address",
                u128::from(self.max_streams_per_address),
                1..=1_000_000,
            ),
            (
                "streamer.header_timeout_ms",
                self.header_timeout_ms.as_millis(),
                100..=600_000,
            ),
            (
                "streamer.write_timeout_ms",
                self.write_timeout_ms.as_millis(),
                100..=3_600_000,
            ),
        ] {
            check_range(setting, value, range)?;
        }
        if self.max_streams_per_address < self.max_streams_per_user {
            return invalid(
                "streamer.max_streams_per_address",
                "must be at least streamer.max_streams_per_user (an address holds a user's streams)",
            );
        }
        Ok(())
    }

    /// This instance's name.
    pub fn instance(&self) -> String {
        self.instance_id
            .clone()
            .unwrap_or_else(|| format!("streamer-{}", std::process::id()))
    }
}

#[cfg(test)]
mod tests;
