//! Typed configuration, layered: built-in defaults, then an optional TOML file, then
//! `SESSION_*` environment variables (`SESSION_STORE__BACKEND=dynamodb`). Validated once at
//! start; every error names the setting.

use std::path::{Path, PathBuf};
use std::time::Duration;

mod ticket_keys;

use figment::Figment;
use figment::providers::{Env, Format as _, Toml};
use secrecy::{ExposeSecret as _, SecretString};
use serde::Deserialize;

/// Why the configuration was refused.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// A source could not be read or a value has the wrong type (figment names the key).
    #[error("configuration: {0}")]
    Load(#[from] Box<figment::Error>),
    /// A value is out of its allowed range.
    #[error("configuration: {setting}: {problem}")]
    Invalid {
        /// The setting, as a dotted path (`limits.sessions_per_user`).
        setting: &'static str,
        /// What is wrong.
        problem: String,
    },
}

/// `setting` is out of its allowed range for `problem`.
fn invalid<T>(setting: &'static str, problem: impl Into<String>) -> Result<T, ConfigError> {
    Err(ConfigError::Invalid {
        setting,
        problem: problem.into(),
    })
}

/// `arn`, if set, is a Secrets Manager secret's ARN.
fn validate_secret_arn(setting: &'static str, arn: Option<&str>) -> Result<(), ConfigError> {
    if arn.is_some_and(|arn| !arn.starts_with("arn:") || !arn.contains(":secretsmanager:")) {
        return invalid(
            setting,
            "must be a Secrets Manager secret's ARN (arn:aws:secretsmanager:...)",
        );
    }
    Ok(())
}

/// Every entry of `origins` is an origin (scheme and host, no path, no trailing slash).
fn validate_origins(setting: &'static str, origins: &[String]) -> Result<(), ConfigError> {
    match origins
        .iter()
        .find(|o| !(o.starts_with("http://") || o.starts_with("https://")) || o.ends_with('/'))
    {
        Some(origin) => invalid(
            setting,
            format!("{origin:?} is not an origin like https://app.example.com"),
        ),
        None => Ok(()),
    }
}

/// Where session state lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StoreBackend {
    /// This process's memory: the embedded default.
    Memory,
    /// A DynamoDB table (or a DynamoDB-API server such as moto's).
    Dynamodb,
}

/// Store settings.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StoreSettings {
    /// Which adapter.
    pub backend: StoreBackend,
    /// The DynamoDB table.
    pub table_name: String,
    /// A DynamoDB endpoint other than AWS's (e.g. `http://127.0.0.1:5000`).
    pub endpoint: Option<String>,
    /// One DynamoDB request that takes longer is abandoned and retried (a hung connection,
    /// not a slow table: DynamoDB answers in milliseconds).
    pub attempt_timeout_ms: u64,
    /// A store call, retries included, fails as unavailable after this long, well within the
    /// functions' timeouts.
    pub call_timeout_ms: u64,
}

impl StoreSettings {
    /// How long one request may take.
    pub fn attempt_timeout(&self) -> Duration {
        Duration::from_millis(self.attempt_timeout_ms)
    }

    /// How long a call may take, retries included.
    pub fn call_timeout(&self) -> Duration {
        Duration::from_millis(self.call_timeout_ms)
    }
}

/// Quotas and lifetimes.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Limits {
    /// Open sessions one user may have.
    pub sessions_per_user: u32,
    /// Simulators (not stopped or failed) one session may have.
    pub simulators_per_session: u32,
    /// WebSocket connections one session may have.
    pub connections_per_session: u32,
    /// Simulator events per second one user's simulators (not stopped or failed) may add up to:
    /// one simulator at the maximum rate, or many slower ones.
    pub events_per_second_per_user: u32,
    /// How long a session lives, in seconds.
    pub session_lifetime_secs: u64,
}

impl Limits {
    /// How long a session lives.
    pub fn session_lifetime(&self) -> Duration {
        Duration::from_secs(self.session_lifetime_secs)
    }
}

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LogFormat {
    /// One JSON object per line: for CloudWatch and log pipelines.
    Json,
    /// Human-readable lines: for a terminal.
    Pretty,
}

/// Telemetry settings.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TelemetrySettings {
    /// Log format.
    pub log_format: LogFormat,
    /// `tracing` filter directives (`info,session_core=debug`).
    pub log_filter: String,
}

/// Authentication settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuthSettings {
    /// JSON file of the ES256 key that signs connect tickets, `{"kid": ..., "private_key_pem":
    /// ...}` (PKCS#8 EC P-256): only the REST API has one. See `auth::keys` for the formats.
    pub ticket_signing_key_file: Option<PathBuf>,
    /// Instead of `ticket_signing_key_file`: the Secrets Manager secret holding that document,
    /// read once at start ([`crate::secrets::load_ticket_keys`]).
    pub ticket_signing_key_secret_arn: Option<String>,
    /// JWKS file of the public keys tickets are checked with (one or more, by `kid`): the
    /// WebSocket authorizer and the streamer have one.
    pub ticket_verify_keys_file: Option<PathBuf>,
    /// Instead of `ticket_verify_keys_file`: the Secrets Manager secret holding that JWKS.
    pub ticket_verify_keys_secret_arn: Option<String>,
    /// How long a connect ticket is valid, in seconds.
    pub ticket_ttl_secs: u64,
    /// The audience bearer tokens must be issued for.
    pub token_audience: String,
    /// How long a process keeps an answer of the revocation list (negative ones too), in
    /// milliseconds: the bound within which a revocation takes effect at every door. 0: ask
    /// the store every time.
    pub revocation_cache_ms: u64,
    /// How many tokens' answers a process keeps at most.
    pub revocation_cache_entries: usize,
    /// The longest life of a bearer token the auth service issues, in seconds: a revocation
    /// lasts at most this long, and by default a subject's lasts exactly this long (every token
    /// of the subject has expired by then).
    pub max_token_life_secs: u64,
    /// The ticket keys as read from the files or secrets above (or set by the local stack).
    /// Boxed, as `backends.tls` is: settings are held across awaits in many futures.
    #[serde(skip)]
    ticket_keys: Box<ticket_keys::TicketKeys>,
}

/// Where the gRPC backends are and how patiently to call them.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BackendSettings {
    /// The auth service (`auth.v1.AuthService`).
    pub auth_url: String,
    /// The exchange simulator service (`simulator.v1.SimulatorControl`, `MarketData`).
    pub simulator_url: String,
    /// Deadline of one call attempt, in milliseconds.
    pub deadline_ms: u64,
    /// Retries of a transient failure after the first attempt.
    pub max_retries: u32,
    /// Upper bound of the first retry delay, in milliseconds (full jitter, doubling).
    pub retry_base_ms: u64,
    /// Mutual TLS to both backends; unset, they are called in plaintext (the local stack).
    /// Boxed: `Settings` is held across awaits in many futures, and this is rarely set.
    pub tls: Box<BackendTlsSettings>,
}

/// Mutual TLS to the gRPC backends (`backends.tls`). Off by default; set `ca_file` and make both
/// backend URLs `https://` to turn it on.
///
/// The files are read once, when the settings are loaded: a missing or unreadable file stops the
/// process at start-up with the setting named, rather than at the first backend call, and the
/// clients are then built without I/O (a Lambda's cold start stays free of it). Rotating
/// certificates therefore means restarting the process (a new pod or Lambda instance).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BackendTlsSettings {
    /// PEM file of the CA (one or more certificates) that signs the backends' server
    /// certificates; the only roots trusted (no system roots). Required by `https://` backend
    /// URLs.
    pub ca_file: Option<PathBuf>,
    /// PEM file of this service's client certificate (its chain, leaf first), presented to the
    /// backends; needs `key_file`. Unset, no client certificate is sent (TLS without the "m").
    pub cert_file: Option<PathBuf>,
    /// PEM file of the private key of `cert_file` (PKCS#8, PKCS#1 or SEC1); needs `cert_file`.
    pub key_file: Option<PathBuf>,
    /// Instead of `key_file`: the ARN of a Secrets Manager secret whose `SecretString` is that
    /// PEM key, read once at start ([`crate::secrets::load_backend_tls_key`]). The Lambdas use
    /// it, so that the key never ships in a layer or an image.
    pub key_secret_arn: Option<String>,
    /// The name checked against the backends' server certificates (and sent as SNI), when it
    /// is not the URLs' host: e.g. the certificate names `simulator.internal` and the URL is an
    /// IP address. Default: each URL's host.
    pub domain: Option<String>,
    /// The files' contents, read by [`Settings::from_figment`].
    #[serde(skip)]
    pem: TlsPem,
}

/// Ends the first line of every PEM private key: `BEGIN PRIVATE KEY` (PKCS#8), `BEGIN RSA
/// PRIVATE KEY`, `BEGIN EC PRIVATE KEY`.
const PRIVATE_KEY_BLOCK: &str = "PRIVATE KEY-----";

/// What the `backends.tls` files hold, read at load.
#[derive(Debug, Clone, Default)]
struct TlsPem {
    ca: Option<String>,
    cert: Option<String>,
    key: Option<SecretString>,
}

// By hand: `SecretString` does not compare, on purpose; settings compare by their contents.
impl PartialEq for TlsPem {
    fn eq(&self, other: &Self) -> bool {
        self.ca == other.ca
            && self.cert == other.cert
            && self.key.as_ref().map(SecretString::expose_secret)
                == other.key.as_ref().map(SecretString::expose_secret)
    }
}

impl Eq for TlsPem {}

impl BackendTlsSettings {
    /// Whether any TLS setting is given.
    pub fn is_set(&self) -> bool {
        self.ca_file.is_some()
            || self.cert_file.is_some()
            || self.key_file.is_some()
            || self.key_secret_arn.is_some()
            || self.domain.is_some()
    }

    /// PEM of the trusted CA, as read at load.
    pub fn ca_pem(&self) -> Option<&str> {
        self.pem.ca.as_deref()
    }

    /// PEM of the client certificate and of its key, as read at load: both or neither.
    pub fn identity_pem(&self) -> Option<(&str, &SecretString)> {
        self.pem.cert.as_deref().zip(self.pem.key.as_ref())
    }

    fn validate(&self, urls: &[(&'static str, &str)]) -> Result<(), ConfigError> {
        if self.key_file.is_some() && self.key_secret_arn.is_some() {
            return invalid(
                "backends.tls.key_secret_arn",
                "must not be set with backends.tls.key_file (one place holds the key)",
            );
        }
        validate_secret_arn(
            "backends.tls.key_secret_arn",
            self.key_secret_arn.as_deref(),
        )?;
        let has_key = self.key_file.is_some() || self.key_secret_arn.is_some();
        match (&self.cert_file, has_key) {
            (Some(_), false) => {
                return invalid(
                    "backends.tls.key_file",
                    "must be set with backends.tls.cert_file, or backends.tls.key_secret_arn \
                     (a client identity is a certificate and its key)",
                );
            }
            (None, true) => {
                return invalid(
                    "backends.tls.cert_file",
                    "must be set with backends.tls.key_file (a client identity is a \
                     certificate and its key)",
                );
            }
            _ => {}
        }
        if self.domain.as_deref().is_some_and(|d| d.trim().is_empty()) {
            return invalid("backends.tls.domain", "must not be empty when set");
        }
        for (setting, url) in urls {
            let https = url.starts_with("https://");
            if self.is_set() && !https {
                return invalid(
                    setting,
                    "must be an https:// URL when backends.tls is set (TLS is never silently \
                     skipped)",
                );
            }
            // No system roots are bundled (lean TLS features): the CA must be named.
            if https && self.ca_file.is_none() {
                return invalid(
                    "backends.tls.ca_file",
                    "must be set when a backend URL is https:// (the CA of the backends' \
                     certificates)",
                );
            }
        }
        Ok(())
    }

    /// Reads the files, checking that each holds the PEM block expected.
    fn load(&mut self) -> Result<(), ConfigError> {
        fn read(
            setting: &'static str,
            path: Option<&Path>,
            block: &str,
        ) -> Result<Option<String>, ConfigError> {
            let Some(path) = path else { return Ok(None) };
            let text = match std::fs::read_to_string(path) {
                Ok(text) => text,
                Err(e) => return invalid(setting, format!("cannot read {}: {e}", path.display())),
            };
            if !text.contains(block) {
                return invalid(
                    setting,
                    format!("{} holds no PEM \"{block}\" block", path.display()),
                );
            }
            Ok(Some(text))
        }
        self.pem = TlsPem {
            ca: read(
                "backends.tls.ca_file",
                self.ca_file.as_deref(),
                "-----BEGIN CERTIFICATE-----",
            )?,
            cert: read(
                "backends.tls.cert_file",
                self.cert_file.as_deref(),
                "-----BEGIN CERTIFICATE-----",
            )?,
            key: read(
                "backends.tls.key_file",
                self.key_file.as_deref(),
                PRIVATE_KEY_BLOCK,
            )?
            .map(SecretString::from),
        };
        Ok(())
    }

    /// Whether the key is still to be read from Secrets Manager.
    pub fn key_secret_pending(&self) -> Option<&str> {
        self.key_secret_arn
            .as_deref()
            .filter(|_| self.pem.key.is_none())
    }

    /// Takes the client key read from `backends.tls.key_secret_arn`.
    ///
    /// # Errors
    /// The secret holds no PEM private key.
    pub fn set_key_from_secret(&mut self, pem: SecretString) -> Result<(), ConfigError> {
        if !pem.expose_secret().contains(PRIVATE_KEY_BLOCK) {
            return invalid(
                "backends.tls.key_secret_arn",
                format!("the secret holds no PEM \"{PRIVATE_KEY_BLOCK}\" block"),
            );
        }
        self.pem.key = Some(pem);
        Ok(())
    }
}

impl BackendSettings {
    /// Deadline of one call attempt.
    pub fn deadline(&self) -> Duration {
        Duration::from_millis(self.deadline_ms)
    }

    /// The retry policy of backend calls made while a client waits.
    pub fn retry_policy(&self) -> crate::resilience::RetryPolicy {
        let base = Duration::from_millis(self.retry_base_ms);
        crate::resilience::RetryPolicy {
            max_retries: self.max_retries,
            base,
            cap: base.saturating_mul(16),
        }
    }
}

/// The addresses clients are given to connect to, and what the streamer retains for them.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StreamingSettings {
    /// Base URL of the streamer's SSE endpoint (`https://stream.example.com`).
    pub sse_url: String,
    /// URL of the API Gateway WebSocket API (`wss://ws.example.com/prod`).
    pub ws_url: String,
    /// Events the streamer keeps per stream for resuming clients; a client further behind gets
    /// a snapshot.
    pub replay_window_events: u64,
    /// How long after its ticket's expiry an SSE stream URL may still be resumed (`EventSource`
    /// reconnects to the URL it was given): the longest a leaked stream URL can be continued.
    /// Past it, the browser's reconnect is refused (`chain_ended`) and the page asks the
    /// reconnect endpoint for a fresh ticket. The verifiers must keep a retired ticket key at
    /// least this long plus the ticket's life.
    pub resume_chain_secs: u64,
}

/// WebSocket connections: liveness and reconnect advice.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WebSocketSettings {
    /// A connection not heard from for this long is dead and its record expires.
    pub heartbeat_timeout_secs: u64,
    /// API Gateway's cap on a connection's life (2 hours); shorter in tests.
    pub max_connection_secs: u64,
    /// Advise reconnecting this long before the cap.
    pub reconnect_before_cap_secs: u64,
    /// A round-trip time above this is poor.
    pub poor_rtt_ms: u32,
    /// A jitter above this is poor.
    pub poor_jitter_ms: u32,
    /// This many heartbeats missed at once make the connection poor.
    pub max_missed_heartbeats: u64,
    /// Browser origins allowed to open connections: the frontends', the same list as the HTTP
    /// API's CORS. A handshake whose `Origin` is not listed is refused; one without `Origin`
    /// (not a browser) is not; empty refuses every `Origin`.
    pub allowed_origins: Vec<String>,
}

impl Default for WebSocketSettings {
    fn default() -> Self {
        Self {
            heartbeat_timeout_secs: 90,
            max_connection_secs: 2 * 3600,
            reconnect_before_cap_secs: 300,
            poor_rtt_ms: 2000,
            poor_jitter_ms: 500,
            max_missed_heartbeats: 3,
            allowed_origins: Vec::new(),
        }
    }
}

impl WebSocketSettings {
    /// How long a connection lives without a heartbeat.
    pub fn heartbeat_timeout(&self) -> Duration {
        Duration::from_secs(self.heartbeat_timeout_secs)
    }

    /// The thresholds of reconnect advice.
    pub fn advice_policy(&self) -> crate::domain::AdvicePolicy {
        let ms = |secs: u64| i64::try_from(secs.saturating_mul(1000)).unwrap_or(i64::MAX);
        crate::domain::AdvicePolicy {
            max_age_ms: ms(self.max_connection_secs),
            reconnect_before_cap_ms: ms(self.reconnect_before_cap_secs),
            poor_rtt_ms: self.poor_rtt_ms,
            poor_jitter_ms: self.poor_jitter_ms,
            max_missed_heartbeats: self.max_missed_heartbeats,
        }
    }
}

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
    pub conflation_period_secs: u64,
    /// Seconds between comment heartbeats on an idle SSE connection.
    pub heartbeat_secs: u64,
    /// What `EventSource` is told to wait before reconnecting (`retry:`), in milliseconds.
    pub retry_ms: u64,
    /// How long a stream without clients keeps its upstream and window.
    pub linger_secs: u64,
    /// An upstream silent for this long is taken as stalled and resumed.
    pub upstream_idle_timeout_ms: u64,
    /// Consecutive upstream failures that open the circuit.
    pub upstream_breaker_threshold: u32,
    /// How long the open circuit refuses, in seconds.
    pub upstream_breaker_cool_down_secs: u64,
    /// How long a dropped SSE connection's ticket may reopen it (`EventSource` reconnects).
    pub resume_grace_secs: u64,
    /// Events published within this many milliseconds reach clients in one write: the most
    /// latency a busy stream adds to save writes (a quiet stream adds none); 0 disables.
    pub coalesce_ms: u64,
    /// On SIGTERM, the longest the streamer waits for clients to leave before it exits.
    pub drain_deadline_secs: u64,
    /// The WebSocket API's `@connections` endpoint
    /// (`https://{api}.execute-api.{region}.amazonaws.com/{stage}`); unset, no WebSocket push.
    pub connections_url: Option<String>,
    /// How often the WebSocket push reads sessions and connection sets and renews its leases.
    pub push_poll_ms: u64,
    /// A session's lease lapses this long after its holder's last renewal.
    pub lease_ttl_secs: u64,
    /// After a first event, how long a WebSocket push waits for more before posting.
    pub push_batch_delay_ms: u64,
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
    pub header_timeout_ms: u64,
    /// A write to a client making no progress for this long (its socket stopped draining)
    /// closes the connection.
    pub write_timeout_ms: u64,
    /// The CloudWatch namespace the streamer publishes its key figures to (`PutMetricData`);
    /// unset, nothing is published.
    pub cloudwatch_namespace: Option<String>,
    /// CloudWatch's endpoint when not the region's (tests and the local stack).
    pub cloudwatch_endpoint: Option<String>,
    /// How often the figures are published, in milliseconds (CloudWatch's standard resolution
    /// is a minute).
    pub cloudwatch_interval_ms: u64,
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
            conflation_period_secs: 60,
            heartbeat_secs: 15,
            retry_ms: 1_000,
            linger_secs: 30,
            upstream_idle_timeout_ms: 5_000,
            upstream_breaker_threshold: 5,
            upstream_breaker_cool_down_secs: 10,
            resume_grace_secs: 60,
            coalesce_ms: 5,
            drain_deadline_secs: 20,
            connections_url: None,
            push_poll_ms: 1_000,
            lease_ttl_secs: 10,
            push_batch_delay_ms: 10,
            max_connections: 20_000,
            max_streams_per_user: 20,
            max_streams_per_address: 200,
            header_timeout_ms: 10_000,
            write_timeout_ms: 30_000,
            cloudwatch_namespace: None,
            cloudwatch_endpoint: None,
            cloudwatch_interval_ms: 60_000,
        }
    }
}

impl StreamerSettings {
    fn validate(&self) -> Result<(), ConfigError> {
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
        for (setting, value, range) in [
            ("streamer.heartbeat_secs", self.heartbeat_secs, 1..=300),
            ("streamer.retry_ms", self.retry_ms, 100..=60_000),
            ("streamer.linger_secs", self.linger_secs, 0..=3600),
            (
                "streamer.upstream_idle_timeout_ms",
                self.upstream_idle_timeout_ms,
                1_100..=600_000,
            ),
            (
                "streamer.resume_grace_secs",
                self.resume_grace_secs,
                1..=3600,
            ),
            (
                "streamer.drain_deadline_secs",
                self.drain_deadline_secs,
                0..=3600,
            ),
            (
                "streamer.conflation_period_secs",
                self.conflation_period_secs,
                1..=3600,
            ),
        ] {
            if !range.contains(&value) {
                return invalid(
                    setting,
                    format!("must be between {} and {}", range.start(), range.end()),
                );
            }
        }
        if let Some(url) = &self.connections_url
            && !(url.starts_with("http://") || url.starts_with("https://"))
        {
            return invalid(
                "streamer.connections_url",
                "must be an http:// or https:// URL",
            );
        }
        if self.lease_ttl_secs.saturating_mul(1000) <= self.push_poll_ms.saturating_mul(2) {
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
        if !(100..=3_600_000).contains(&self.cloudwatch_interval_ms) {
            return invalid(
                "streamer.cloudwatch_interval_ms",
                "must be between 100 and 3600000",
            );
        }
        Ok(())
    }

    fn validate_admission(&self) -> Result<(), ConfigError> {
        for (setting, value, range) in [
            (
                "streamer.max_connections",
                u64::from(self.max_connections),
                1..=1_000_000,
            ),
            (
                "streamer.max_streams_per_user",
                u64::from(self.max_streams_per_user),
                1..=1_000_000,
            ),
            (
                "streamer.max_streams_per_address",
                u64::from(self.max_streams_per_address),
                1..=1_000_000,
            ),
            (
                "streamer.header_timeout_ms",
                self.header_timeout_ms,
                100..=600_000,
            ),
            (
                "streamer.write_timeout_ms",
                self.write_timeout_ms,
                100..=3_600_000,
            ),
        ] {
            if !range.contains(&value) {
                return invalid(
                    setting,
                    format!("must be between {} and {}", range.start(), range.end()),
                );
            }
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

/// The edge (CloudFront and AWS WAF) in front of the HTTP API, when there is one: the REST API
/// then answers only requests that carry the edge's secret origin header, so the direct
/// `execute-api` endpoint cannot be used to go around the WAF.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EdgeSettings {
    /// The Secrets Manager secret whose `SecretString` CloudFront sends as `origin_header`;
    /// unset, no edge (every request is served).
    pub origin_secret_arn: Option<String>,
    /// The header CloudFront adds to every request it forwards to the API.
    pub origin_header: String,
}

impl Default for EdgeSettings {
    fn default() -> Self {
        Self {
            origin_secret_arn: None,
            origin_header: "x-origin-verify".to_owned(),
        }
    }
}

impl EdgeSettings {
    fn validate(&self) -> Result<(), ConfigError> {
        validate_secret_arn("edge.origin_secret_arn", self.origin_secret_arn.as_deref())?;
        let header = &self.origin_header;
        if header.is_empty()
            || !header
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        {
            return invalid(
                "edge.origin_header",
                "must be a lower-case HTTP header name like x-origin-verify",
            );
        }
        Ok(())
    }
}

/// One class's rate limit (GCRA, see `crate::ratelimit`): a sustained rate and the burst a full
/// allowance admits at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateQuota {
    /// Sustained requests per second.
    pub per_second: u32,
    /// Requests admitted at once from a full allowance.
    pub burst: u32,
}

impl RateQuota {
    const fn of(per_second: u32, burst: u32) -> Self {
        Self { per_second, burst }
    }
}

/// Rate limits per user and per source address at every door (`rate_limits`). The defaults are
/// far above what a frontend does and reached by a flood within a second or two (reasoning in
/// docs/architecture.md, "Rate limits").
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RateLimitSettings {
    /// REST reads (`GET`), per user.
    pub reads: RateQuota,
    /// REST writes (create or close a session), per user.
    pub writes: RateQuota,
    /// Ticket issuing (`POST …/tickets`, `POST …/reconnect`), per user.
    pub tickets: RateQuota,
    /// Simulator start and stop, per user.
    pub simulator_control: RateQuota,
    /// Every REST route (the anonymous ones too), per source address.
    pub per_address: RateQuota,
    /// WebSocket `$connect`, per user.
    pub ws_connect: RateQuota,
    /// WebSocket messages (heartbeats and any other), per connection.
    pub ws_messages: RateQuota,
    /// SSE stream opens, per user.
    pub sse_connect: RateQuota,
    /// WebSocket `$connect` and SSE opens, per source address.
    pub connect_per_address: RateQuota,
    /// Proxies in front of the streamer that append the client's address to `X-Forwarded-For`
    /// (the load balancer: 1); 0 takes the TCP peer as the client. Never more than really
    /// exist: a client can write anything into the header's earlier entries.
    pub trusted_proxy_hops: u8,
}

impl Default for RateLimitSettings {
    fn default() -> Self {
        Self {
            reads: RateQuota::of(20, 40),
            writes: RateQuota::of(5, 10),
            tickets: RateQuota::of(2, 10),
            simulator_control: RateQuota::of(1, 5),
            per_address: RateQuota::of(50, 100),
            ws_connect: RateQuota::of(2, 10),
            ws_messages: RateQuota::of(5, 20),
            sse_connect: RateQuota::of(2, 10),
            connect_per_address: RateQuota::of(10, 40),
            trusted_proxy_hops: 0,
        }
    }
}

impl RateLimitSettings {
    /// Every class's quota with its setting's name.
    pub fn quotas(&self) -> [(&'static str, RateQuota); 9] {
        [
            ("rate_limits.reads", self.reads),
            ("rate_limits.writes", self.writes),
            ("rate_limits.tickets", self.tickets),
            ("rate_limits.simulator_control", self.simulator_control),
            ("rate_limits.per_address", self.per_address),
            ("rate_limits.ws_connect", self.ws_connect),
            ("rate_limits.ws_messages", self.ws_messages),
            ("rate_limits.sse_connect", self.sse_connect),
            ("rate_limits.connect_per_address", self.connect_per_address),
        ]
    }

    fn validate(&self) -> Result<(), ConfigError> {
        for (setting, quota) in self.quotas() {
            if !(1..=100_000).contains(&quota.per_second) {
                return invalid(setting, "per_second must be between 1 and 100000");
            }
            if !(1..=1_000_000).contains(&quota.burst) {
                return invalid(setting, "burst must be between 1 and 1000000");
            }
        }
        if self.trusted_proxy_hops > 8 {
            return invalid("rate_limits.trusted_proxy_hops", "must be at most 8");
        }
        Ok(())
    }
}

/// Every setting shared by the service's processes.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Settings {
    /// Session state.
    pub store: StoreSettings,
    /// Quotas and lifetimes.
    pub limits: Limits,
    /// Logs.
    pub telemetry: TelemetrySettings,
    /// Tokens and tickets.
    pub auth: AuthSettings,
    /// gRPC backends.
    pub backends: BackendSettings,
    /// Streaming endpoints given to clients.
    pub streaming: StreamingSettings,
    /// WebSocket liveness and advice.
    pub websocket: WebSocketSettings,
    /// The streamer.
    pub streamer: StreamerSettings,
    /// The edge in front of the HTTP API.
    pub edge: EdgeSettings,
    /// Rate limits per user and per source address.
    pub rate_limits: RateLimitSettings,
}

impl Default for StoreSettings {
    fn default() -> Self {
        Self {
            backend: StoreBackend::Memory,
            table_name: "session-service".to_owned(),
            endpoint: None,
            attempt_timeout_ms: 3_000,
            call_timeout_ms: 8_000,
        }
    }
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            sessions_per_user: 10,
            simulators_per_session: 4,
            connections_per_session: 8,
            events_per_second_per_user: crate::domain::NewSimulator::MAX_EVENTS_PER_SECOND,
            session_lifetime_secs: 24 * 3600,
        }
    }
}

impl Default for TelemetrySettings {
    fn default() -> Self {
        Self {
            log_format: LogFormat::Json,
            log_filter: "info".to_owned(),
        }
    }
}

impl Default for AuthSettings {
    fn default() -> Self {
        Self {
            ticket_signing_key_file: None,
            ticket_signing_key_secret_arn: None,
            ticket_verify_keys_file: None,
            ticket_verify_keys_secret_arn: None,
            ticket_ttl_secs: 60,
            token_audience: "session-service".to_owned(),
            revocation_cache_ms: 5_000,
            revocation_cache_entries: 10_000,
            max_token_life_secs: 86_400,
            ticket_keys: Box::default(),
        }
    }
}

impl Default for BackendSettings {
    fn default() -> Self {
        Self {
            auth_url: "http://127.0.0.1:50052".to_owned(),
            simulator_url: "http://127.0.0.1:50051".to_owned(),
            deadline_ms: 2_000,
            max_retries: 3,
            retry_base_ms: 50,
            tls: Box::default(),
        }
    }
}

impl Default for StreamingSettings {
    fn default() -> Self {
        Self {
            sse_url: "http://127.0.0.1:8090".to_owned(),
            ws_url: "ws://127.0.0.1:8091".to_owned(),
            replay_window_events: 10_000,
            resume_chain_secs: 2 * 3600,
        }
    }
}

impl Settings {
    /// Prefix of the environment variables read; `__` separates levels.
    pub const ENV_PREFIX: &'static str = "SESSION_";

    /// Defaults, then `file` if given, then the environment; validated.
    ///
    /// # Errors
    /// A source is unreadable, a value has the wrong type or is out of range.
    pub fn load(file: Option<&Path>) -> Result<Self, ConfigError> {
        let mut figment = Figment::new();
        if let Some(file) = file {
            if !file.exists() {
                return invalid("config file", format!("{} does not exist", file.display()));
            }
            figment = figment.merge(Toml::file(file));
        }
        Self::from_figment(&figment.merge(Env::prefixed(Self::ENV_PREFIX).split("__")))
    }

    /// Extracts and validates settings from any figment (tests build their own), and reads the
    /// files they name (`backends.tls`, `auth.ticket_*_file`).
    ///
    /// # Errors
    /// A value has the wrong type or is out of range, or a named file cannot be read.
    pub fn from_figment(figment: &Figment) -> Result<Self, ConfigError> {
        let mut settings: Self = figment.extract().map_err(Box::new)?;
        settings.validate()?;
        settings.backends.tls.load()?;
        settings.auth.load_ticket_key_files()?;
        Ok(settings)
    }

    fn validate(&self) -> Result<(), ConfigError> {
        let table = &self.store.table_name;
        if !(3..=255).contains(&table.len())
            || !table
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b))
        {
            return invalid(
                "store.table_name",
                "must be 3 to 255 letters, digits, '_', '.' or '-'",
            );
        }
        if let Some(endpoint) = &self.store.endpoint
            && !(endpoint.starts_with("http://") || endpoint.starts_with("https://"))
        {
            return invalid("store.endpoint", "must be an http:// or https:// URL");
        }
        if !(100..=60_000).contains(&self.store.attempt_timeout_ms) {
            return invalid("store.attempt_timeout_ms", "must be between 100 and 60000");
        }
        if !(self.store.attempt_timeout_ms..=60_000).contains(&self.store.call_timeout_ms) {
            return invalid(
                "store.call_timeout_ms",
                "must be between store.attempt_timeout_ms and 60000",
            );
        }
        let limits = [
            ("limits.sessions_per_user", self.limits.sessions_per_user),
            (
                "limits.simulators_per_session",
                self.limits.simulators_per_session,
            ),
            (
                "limits.connections_per_session",
                self.limits.connections_per_session,
            ),
            (
                "limits.events_per_second_per_user",
                self.limits.events_per_second_per_user,
            ),
        ];
        for (setting, value) in limits {
            if value == 0 {
                return invalid(setting, "must be at least 1");
            }
        }
        if self.limits.session_lifetime_secs < 60 {
            return invalid("limits.session_lifetime_secs", "must be at least 60");
        }
        self.auth.validate_ticket_key_sources()?;
        if !(5..=600).contains(&self.auth.ticket_ttl_secs) {
            return invalid("auth.ticket_ttl_secs", "must be between 5 and 600");
        }
        if self.auth.revocation_cache_ms > 60_000 {
            return invalid(
                "auth.revocation_cache_ms",
                "must be at most 60000 (a minute)",
            );
        }
        if self.auth.revocation_cache_entries == 0 {
            return invalid("auth.revocation_cache_entries", "must be at least 1");
        }
        if !(60..=30 * 86_400).contains(&self.auth.max_token_life_secs) {
            return invalid(
                "auth.max_token_life_secs",
                "must be between 60 and 2592000 (30 days)",
            );
        }
        for (setting, url) in [
            ("backends.auth_url", &self.backends.auth_url),
            ("backends.simulator_url", &self.backends.simulator_url),
            ("streaming.sse_url", &self.streaming.sse_url),
        ] {
            if !(url.starts_with("http://") || url.starts_with("https://")) {
                return invalid(setting, "must be an http:// or https:// URL");
            }
        }
        if !(self.streaming.ws_url.starts_with("ws://")
            || self.streaming.ws_url.starts_with("wss://"))
        {
            return invalid("streaming.ws_url", "must be a ws:// or wss:// URL");
        }
        self.backends.tls.validate(&[
            ("backends.auth_url", &self.backends.auth_url),
            ("backends.simulator_url", &self.backends.simulator_url),
        ])?;
        if !(10..=60_000).contains(&self.backends.deadline_ms) {
            return invalid("backends.deadline_ms", "must be between 10 and 60000");
        }
        if self.backends.max_retries > 10 {
            return invalid("backends.max_retries", "must be at most 10");
        }
        if !(1..=10_000).contains(&self.backends.retry_base_ms) {
            return invalid("backends.retry_base_ms", "must be between 1 and 10000");
        }
        if !(10..=3600).contains(&self.websocket.heartbeat_timeout_secs) {
            return invalid(
                "websocket.heartbeat_timeout_secs",
                "must be between 10 and 3600",
            );
        }
        if !(60..=7200).contains(&self.websocket.max_connection_secs) {
            return invalid(
                "websocket.max_connection_secs",
                "must be between 60 and 7200",
            );
        }
        if self.websocket.reconnect_before_cap_secs >= self.websocket.max_connection_secs {
            return invalid(
                "websocket.reconnect_before_cap_secs",
                "must be below websocket.max_connection_secs",
            );
        }
        if !(1..=86_400).contains(&self.streaming.resume_chain_secs) {
            return invalid("streaming.resume_chain_secs", "must be between 1 and 86400");
        }
        if self.streaming.replay_window_events == 0 {
            return invalid("streaming.replay_window_events", "must be at least 1");
        }
        validate_origins("websocket.allowed_origins", &self.websocket.allowed_origins)?;
        self.streamer.validate()?;
        self.rate_limits.validate()?;
        self.edge.validate()?;
        if tracing_subscriber::EnvFilter::try_new(&self.telemetry.log_filter).is_err() {
            return invalid(
                "telemetry.log_filter",
                "is not a valid tracing filter (e.g. \"info,session_core=debug\")",
            );
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(toml: &str) -> Result<Settings, ConfigError> {
        Settings::from_figment(&Figment::new().merge(Toml::string(toml)))
    }

    #[test]
    fn defaults_are_valid_and_use_the_in_memory_store() {
        let settings = with("").unwrap();
        assert_eq!(settings.store.backend, StoreBackend::Memory);
    }

    #[test]
    fn a_file_overrides_defaults() {
        let settings =
            with("[store]\nbackend = \"dynamodb\"\nendpoint = \"http://127.0.0.1:1\"").unwrap();
        assert_eq!(settings.store.backend, StoreBackend::Dynamodb);
        assert_eq!(settings.limits, Limits::default());
    }

    #[test]
    fn the_event_budget_defaults_to_one_simulator_at_the_maximum_rate_and_must_be_positive() {
        let settings = with("").unwrap();
        assert_eq!(settings.limits.events_per_second_per_user, 200_000);
        let err = with("[limits]\nevents_per_second_per_user = 0").unwrap_err();
        assert_eq!(
            err.to_string(),
            "configuration: limits.events_per_second_per_user: must be at least 1"
        );
    }

    #[test]
    fn errors_name_the_setting() {
        let err = with("[limits]\nsessions_per_user = 0").unwrap_err();
        assert_eq!(
            err.to_string(),
            "configuration: limits.sessions_per_user: must be at least 1"
        );
        let err = with("[limits]\nsessions_per_user = \"ten\"").unwrap_err();
        assert!(err.to_string().contains("sessions_per_user"), "{err}");
        let err = with("[store]\nendpoint = \"localhost:8000\"").unwrap_err();
        assert!(err.to_string().contains("store.endpoint"), "{err}");
        let err = with("[store]\ntable = \"x\"").unwrap_err();
        assert!(err.to_string().contains("table"), "{err}");
        let err = with("[store]\nattempt_timeout_ms = 10").unwrap_err();
        assert_eq!(
            err.to_string(),
            "configuration: store.attempt_timeout_ms: must be between 100 and 60000"
        );
        let err = with("[store]\nattempt_timeout_ms = 3000\ncall_timeout_ms = 2000").unwrap_err();
        assert!(err.to_string().contains("store.call_timeout_ms"), "{err}");
        let err = with("[auth]\nticket_verify_keys_secret_arn = \"keys\"").unwrap_err();
        assert!(
            err.to_string()
                .contains("auth.ticket_verify_keys_secret_arn: must be a Secrets Manager"),
            "{err}"
        );
    }

    #[test]
    fn streamer_admission_settings_are_checked_and_name_the_setting() {
        let err = with("[streamer]\nmax_connections = 0").unwrap_err();
        assert_eq!(
            err.to_string(),
            "configuration: streamer.max_connections: must be between 1 and 1000000"
        );
        let err = with("[streamer]\nmax_streams_per_user = 30\nmax_streams_per_address = 10")
            .unwrap_err();
        assert!(
            err.to_string().contains("streamer.max_streams_per_address"),
            "{err}"
        );
        let err = with("[streamer]\nheader_timeout_ms = 5").unwrap_err();
        assert!(
            err.to_string().contains("streamer.header_timeout_ms"),
            "{err}"
        );
        let err = with("[streamer]\nwrite_timeout_ms = 0").unwrap_err();
        assert!(
            err.to_string().contains("streamer.write_timeout_ms"),
            "{err}"
        );
    }

    #[test]
    fn streamer_cloudwatch_settings_are_off_by_default_and_checked_naming_the_setting() {
        let defaults = with("").unwrap().streamer;
        assert_eq!(defaults.cloudwatch_namespace, None);
        assert_eq!(defaults.cloudwatch_interval_ms, 60_000);
        let set = with("[streamer]\ncloudwatch_namespace = \"SessionService\"").unwrap();
        assert_eq!(
            set.streamer.cloudwatch_namespace.as_deref(),
            Some("SessionService")
        );
        for (toml, setting) in [
            (
                "cloudwatch_namespace = \"AWS/Lambda\"",
                "streamer.cloudwatch_namespace",
            ),
            (
                "cloudwatch_namespace = \"\"",
                "streamer.cloudwatch_namespace",
            ),
            (
                "cloudwatch_endpoint = \"localhost:4566\"",
                "streamer.cloudwatch_endpoint",
            ),
            (
                "cloudwatch_interval_ms = 10",
                "streamer.cloudwatch_interval_ms",
            ),
        ] {
            let err = with(&format!("[streamer]\n{toml}")).unwrap_err();
            assert!(err.to_string().contains(setting), "{toml}: {err}");
        }
    }

    const CERT: &str = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n";
    const KEY: &str = "-----BEGIN PRIVATE KEY-----\nMIIB\n-----END PRIVATE KEY-----\n";

    #[test]
    #[allow(clippy::result_large_err)] // `Jail`'s closure returns figment's error
    fn backend_tls_loads_from_environment_variables_and_reads_its_files() {
        figment::Jail::expect_with(|jail| {
            // Arrange
            jail.create_file("ca.pem", CERT)?;
            jail.create_file("client.pem", CERT)?;
            jail.create_file("client.key", KEY)?;
            jail.set_env("SESSION_BACKENDS__AUTH_URL", "https://auth.internal:50052");
            jail.set_env("SESSION_BACKENDS__SIMULATOR_URL", "https://10.0.0.7:50051");
            jail.set_env("SESSION_BACKENDS__TLS__CA_FILE", "ca.pem");
            jail.set_env("SESSION_BACKENDS__TLS__CERT_FILE", "client.pem");
            jail.set_env("SESSION_BACKENDS__TLS__KEY_FILE", "client.key");
            jail.set_env("SESSION_BACKENDS__TLS__DOMAIN", "simulator.internal");

            // Act
            let settings = Settings::load(None).expect("valid settings");

            // Assert
            let tls = &settings.backends.tls;
            assert_eq!(tls.ca_file, Some(PathBuf::from("ca.pem")));
            assert_eq!(tls.domain.as_deref(), Some("simulator.internal"));
            assert_eq!(tls.ca_pem(), Some(CERT));
            let (cert, key) = tls.identity_pem().expect("an identity");
            assert_eq!(cert, CERT);
            assert_eq!(key.expose_secret(), KEY);
            assert!(!format!("{settings:?}").contains("MIIB\n-----END PRIVATE"));
            Ok(())
        });
    }

    #[test]
    #[allow(clippy::result_large_err)] // `Jail`'s closure returns figment's error
    fn websocket_allowed_origins_come_from_the_environment_as_a_list() {
        figment::Jail::expect_with(|jail| {
            jail.set_env(
                "SESSION_WEBSOCKET__ALLOWED_ORIGINS",
                "[https://app.example.com, http://localhost:8080]",
            );
            let settings = Settings::load(None).expect("valid settings");
            assert_eq!(
                settings.websocket.allowed_origins,
                ["https://app.example.com", "http://localhost:8080"]
            );
            Ok(())
        });
        assert!(with("").unwrap().websocket.allowed_origins.is_empty());
        let err =
            with("[websocket]\nallowed_origins = [\"https://app.example.com/\"]").unwrap_err();
        assert!(
            err.to_string()
                .starts_with("configuration: websocket.allowed_origins: "),
            "{err}"
        );
    }

    #[test]
    fn backend_tls_is_off_by_default() {
        let settings = with("").unwrap();
        assert!(!settings.backends.tls.is_set());
        assert!(settings.backends.tls.ca_pem().is_none());
    }

    #[test]
    fn backend_tls_errors_name_the_setting() {
        let https = "[backends]\nauth_url = \"https://a:1\"\nsimulator_url = \"https://s:1\"\n";
        let err = with(&format!(
            "{https}[backends.tls]\nca_file = \"ca.pem\"\nkey_file = \"k.pem\""
        ))
        .unwrap_err();
        assert!(
            err.to_string()
                .starts_with("configuration: backends.tls.cert_file: must be set with"),
            "{err}"
        );
        let err = with(&format!(
            "{https}[backends.tls]\ncert_file = \"c.pem\"\nca_file = \"ca.pem\""
        ))
        .unwrap_err();
        assert!(err.to_string().contains("backends.tls.key_file"), "{err}");
        let err = with(https).unwrap_err();
        assert!(err.to_string().contains("backends.tls.ca_file"), "{err}");
        let err = with("[backends.tls]\nca_file = \"ca.pem\"").unwrap_err();
        assert!(
            err.to_string()
                .contains("backends.auth_url: must be an https://"),
            "{err}"
        );
        let err = with(&format!(
            "{https}[backends.tls]\nca_file = \"/nonexistent/ca.pem\""
        ))
        .unwrap_err();
        assert!(
            err.to_string().starts_with(
                "configuration: backends.tls.ca_file: cannot read /nonexistent/ca.pem"
            ),
            "{err}"
        );
    }
}
