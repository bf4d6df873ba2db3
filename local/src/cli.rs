//! Command-line flags of the `session-local`, `exchange-simulator` and `auth-service` binaries
//! (clap), so that the mains stay thin and the parsing is tested. `--help` prints the usage;
//! a bad flag or value exits with status 2 and names it.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;

use crate::auth::AuthSettings;
use crate::server::{ServerError, ServerTls};
use crate::simulator::SimulatorSettings;

/// TLS flags of the reference servers (both take the same); none given, they serve plaintext.
#[derive(Debug, Clone, Default, PartialEq, Eq, clap::Args)]
pub struct TlsArgs {
    /// Serve TLS with this certificate (PEM, chain leaf first); needs --tls-key.
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// The private key of --tls-cert (PEM).
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Require client certificates signed by this CA (PEM): mutual TLS; needs --tls-cert.
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    pub client_ca: Option<PathBuf>,
}

impl TlsArgs {
    /// The server's TLS, when asked for.
    ///
    /// # Errors
    /// A file cannot be read.
    pub fn server_tls(&self) -> Result<Option<ServerTls>, ServerError> {
        match (&self.tls_cert, &self.tls_key) {
            (Some(cert), Some(key)) => {
                ServerTls::from_files(cert, key, self.client_ca.as_deref()).map(Some)
            }
            // clap's `requires` makes the flags come together.
            _ => Ok(None),
        }
    }
}

/// What `session-local` was asked to do.
#[derive(Debug, Clone, PartialEq, Eq, Parser)]
#[command(
    name = "session-local",
    about = "The session service on this machine, on the in-memory store by default: the API \
             Gateway HTTP and WebSocket API emulators with the REST, authorizer and WebSocket \
             functions, the streamer, the auth service, the exchange simulator and a web page \
             that uses them.",
    after_help = "Ports 0 pick free ones. Ctrl-C or SIGTERM stops everything.\n\
                  Logs go to stdout; RUST_LOG sets the filter (default info).",
    args_conflicts_with_subcommands = true
)]
pub struct StackArgs {
    /// Something other than running the stack.
    #[command(subcommand)]
    pub command: Option<StackCommand>,
    /// HTTP API emulator address.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:8080")]
    pub http_api: SocketAddr,
    /// WebSocket API emulator and @connections API address.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:8081")]
    pub ws_api: SocketAddr,
    /// Streamer (SSE, health, metrics) address.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:8090")]
    pub sse: SocketAddr,
    /// Exchange simulator gRPC address.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:50051")]
    pub simulator: SocketAddr,
    /// Run N exchange simulator servers (simulator-server-1 on --simulator, the others on free
    /// ports), registered in Cloud Map; with more than one, the service discovers them there.
    #[arg(long, value_name = "N", default_value_t = 1, value_parser = at_least_one)]
    pub simulator_servers: usize,
    /// Embedded Cloud Map registry API address (where the servers are registered).
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:8060")]
    pub cloudmap: SocketAddr,
    /// Register in and discover from this Cloud Map API (e.g. moto's) instead of the embedded
    /// registry.
    #[arg(long, value_name = "URL", value_parser = http_url)]
    pub cloudmap_endpoint: Option<String>,
    /// Auth service gRPC address.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:50052")]
    pub auth: SocketAddr,
    /// Web page address (the APIs allow its origin).
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:8070")]
    pub web: SocketAddr,
    /// Keep sessions in a DynamoDB-API endpoint (moto, DynamoDB Local, AWS) instead of memory;
    /// the table is created if missing.
    #[arg(long, value_name = "URL", value_parser = http_url)]
    pub dynamodb_endpoint: Option<String>,
    /// The DynamoDB table (default: the settings' `store.table_name`, session-service).
    #[arg(long, value_name = "NAME")]
    pub table: Option<String>,
    /// Write the endpoints as JSON to this file once everything is ready.
    #[arg(long, value_name = "PATH")]
    pub endpoints_file: Option<PathBuf>,
    /// Service settings (TOML); SESSION_* variables apply on top.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// AppConfig Agent API address (the REST function reads its feature flags there).
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:2772")]
    pub appconfig: SocketAddr,
    /// Serve this folder's `<profile>.json` (e.g. flags.json) as the AppConfig documents of any
    /// application and environment, re-read on each request (default: built-in, every flag off).
    #[arg(long, value_name = "DIR")]
    pub appconfig_dir: Option<PathBuf>,
    /// Run N regional stacks (local-a, local-b, …) over a replicating in-memory store; region i
    /// listens on each port plus 100 × i, and the endpoints file lists them under `regions`.
    #[arg(long, value_name = "N", default_value_t = 1, value_parser = at_least_one,
          conflicts_with = "dynamodb_endpoint")]
    pub regions: usize,
    /// How long a write made in one region takes to reach the others (with --regions).
    #[arg(long, value_name = "MS", default_value_t = 200)]
    pub replication_lag_ms: u64,
}

impl StackArgs {
    /// The replication lag `--replication-lag-ms` sets.
    pub fn replication_lag(&self) -> Duration {
        Duration::from_millis(self.replication_lag_ms)
    }
}

/// What `session-local` does instead of running the stack.
#[derive(Debug, Clone, PartialEq, Eq, clap::Subcommand)]
pub enum StackCommand {
    /// Print a new connect-ticket key pair as JSON: `signing_key` (the REST API's secret) and
    /// `verify_keys` (a JWKS for the WebSocket authorizer and the streamer).
    TicketKeys {
        /// The key's id, put in every ticket's header (e.g. the month it starts signing:
        /// 2026-12).
        #[arg(long, value_name = "ID")]
        kid: String,
    },
}

/// What `exchange-simulator` was asked to do.
#[derive(Debug, Clone, PartialEq, Eq, Parser)]
#[command(
    name = "exchange-simulator",
    about = "The reference exchange simulator (SimulatorControl, MarketData, FaultInjection, health).",
    after_help = "Logs go to stdout; RUST_LOG sets the filter (default info)."
)]
pub struct SimulatorArgs {
    /// Address to serve gRPC on.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:50051")]
    pub listen: SocketAddr,
    /// Events kept per instance for resuming subscribers.
    #[arg(long, value_name = "N", default_value_t = SimulatorSettings::default().instance.retained_events)]
    pub retained_events: usize,
    /// Instances running at once.
    #[arg(long, value_name = "N", default_value_t = SimulatorSettings::default().max_instances,
          value_parser = at_least_one)]
    pub max_instances: usize,
    /// Fault: the first N Start calls answer UNAVAILABLE.
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub fail_starts: u32,
    /// Fault: every Start call answers UNAVAILABLE for MS after start-up.
    #[arg(long, value_name = "MS", default_value_t = 0)]
    pub fail_starts_for_ms: u64,
    /// Fault: every stream ends with UNAVAILABLE after N events.
    #[arg(long, value_name = "N")]
    pub end_streams_after: Option<u64>,
    /// TLS.
    #[command(flatten)]
    pub tls: TlsArgs,
}

impl SimulatorArgs {
    /// The server's settings, faults included.
    pub fn settings(&self) -> SimulatorSettings {
        let mut settings = SimulatorSettings::default();
        settings.instance.retained_events = self.retained_events;
        settings.max_instances = self.max_instances;
        settings.faults.unavailable_starts = self.fail_starts;
        settings.faults.unavailable_for = Duration::from_millis(self.fail_starts_for_ms);
        settings.faults.end_streams_after = self.end_streams_after;
        settings
    }
}

/// A token `auth-service` prints at start-up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenRequest {
    /// Its subject.
    pub subject: String,
    /// Its scopes.
    pub scopes: Vec<String>,
}

/// What `auth-service` was asked to do.
#[derive(Debug, Clone, PartialEq, Eq, Parser)]
#[command(
    name = "auth-service",
    about = "The reference auth service (auth.v1.AuthService, health); issues ES256 JWTs.",
    after_help = "The signing key is generated at start-up: tokens do not survive a restart.\n\
                  Logs go to stderr; RUST_LOG sets the filter (default info)."
)]
pub struct AuthArgs {
    /// Address to serve gRPC on.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:50052")]
    pub listen: SocketAddr,
    /// `iss` of issued tokens, the only one accepted.
    #[arg(long, value_name = "ISS", default_value_t = AuthSettings::default().issuer)]
    pub issuer: String,
    /// `aud` of issued tokens, and the audience expected when a request names none.
    #[arg(long, value_name = "AUD", default_value_t = AuthSettings::default().audience)]
    pub audience: String,
    /// Clock skew tolerated on `exp` and `nbf`, in seconds.
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub leeway_secs: u64,
    /// Print a token for SUBJECT with comma-separated SCOPES at start-up (repeatable), e.g.
    /// `--token alice:sessions:read,sessions:write`.
    #[arg(long = "token", value_name = "SUBJECT[:SCOPES]", value_parser = token_request)]
    pub tokens: Vec<TokenRequest>,
    /// Lifetime of the printed tokens, in seconds.
    #[arg(long, value_name = "N", default_value_t = 3600)]
    pub token_ttl_secs: u64,
    /// Print the public keys as a JWKS document at start-up.
    #[arg(long)]
    pub print_jwks: bool,
    /// TLS.
    #[command(flatten)]
    pub tls: TlsArgs,
}

impl AuthArgs {
    /// Issuer, audience, leeway.
    pub fn settings(&self) -> AuthSettings {
        AuthSettings {
            issuer: self.issuer.clone(),
            audience: self.audience.clone(),
            leeway: Duration::from_secs(self.leeway_secs),
        }
    }

    /// Lifetime of the printed tokens.
    pub fn token_ttl(&self) -> Duration {
        Duration::from_secs(self.token_ttl_secs)
    }
}

fn http_url(url: &str) -> Result<String, String> {
    if url.starts_with("http://") || url.starts_with("https://") {
        Ok(url.to_owned())
    } else {
        Err("must be an http:// or https:// URL".to_owned())
    }
}

fn at_least_one(text: &str) -> Result<usize, String> {
    match text.parse::<usize>() {
        Ok(0) => Err("must be at least 1".to_owned()),
        Ok(n) => Ok(n),
        Err(e) => Err(e.to_string()),
    }
}

fn token_request(spec: &str) -> Result<TokenRequest, String> {
    let (subject, scopes) = spec.split_once(':').unwrap_or((spec, ""));
    if subject.is_empty() {
        return Err("the subject must not be empty".to_owned());
    }
    Ok(TokenRequest {
        subject: subject.to_owned(),
        scopes: scopes
            .split(',')
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect(),
    })
}

#[cfg(test)]
mod tests {
    use clap::error::ErrorKind;

    use super::*;

    fn parse<T: Parser>(name: &str, text: &str) -> Result<T, clap::Error> {
        T::try_parse_from(std::iter::once(name).chain(text.split_whitespace()))
    }

    #[test]
    fn simulator_flags_set_the_address_and_the_faults() {
        let parsed: SimulatorArgs = parse(
            "exchange-simulator",
            "--listen 127.0.0.1:6000 --fail-starts 2 --end-streams-after=50 --fail-starts-for-ms 1500",
        )
        .unwrap();
        let settings = parsed.settings();
        assert_eq!(parsed.listen, SocketAddr::from(([127, 0, 0, 1], 6000)));
        assert_eq!(settings.faults.unavailable_starts, 2);
        assert_eq!(settings.faults.end_streams_after, Some(50));
        assert_eq!(settings.faults.unavailable_for, Duration::from_millis(1500));
        assert_eq!(
            parse::<SimulatorArgs>("exchange-simulator", "")
                .unwrap()
                .settings(),
            SimulatorSettings::default(),
            "no flags, default settings"
        );
    }

    #[test]
    fn unknown_flags_missing_values_and_bad_values_are_refused_with_the_flag_named() {
        let unknown = parse::<SimulatorArgs>("exchange-simulator", "--nope 1").unwrap_err();
        assert_eq!(unknown.kind(), ErrorKind::UnknownArgument);
        assert!(unknown.to_string().contains("--nope"));
        let missing = parse::<SimulatorArgs>("exchange-simulator", "--listen").unwrap_err();
        assert!(missing.to_string().contains("--listen"));
        let bad = parse::<SimulatorArgs>("exchange-simulator", "--fail-starts many").unwrap_err();
        assert_eq!(bad.kind(), ErrorKind::ValueValidation);
        assert!(bad.to_string().contains("--fail-starts"));
        let zero = parse::<SimulatorArgs>("exchange-simulator", "--max-instances 0").unwrap_err();
        assert!(zero.to_string().contains("at least 1"));
        let help = parse::<SimulatorArgs>("exchange-simulator", "--help").unwrap_err();
        assert_eq!(help.kind(), ErrorKind::DisplayHelp);
    }

    #[test]
    fn stack_flags_set_addresses_the_store_and_the_endpoints_file() {
        let parsed: StackArgs = parse(
            "session-local",
            "--http-api 127.0.0.1:0 --ws-api=127.0.0.1:9081 --dynamodb-endpoint http://127.0.0.1:5000 --endpoints-file /tmp/e.json",
        )
        .unwrap();
        assert_eq!(parsed.http_api, SocketAddr::from(([127, 0, 0, 1], 0)));
        assert_eq!(parsed.ws_api, SocketAddr::from(([127, 0, 0, 1], 9081)));
        assert_eq!(
            parsed.web,
            SocketAddr::from(([127, 0, 0, 1], 8070)),
            "the default"
        );
        let web: StackArgs = parse("session-local", "--web 127.0.0.1:0").unwrap();
        assert_eq!(web.web, SocketAddr::from(([127, 0, 0, 1], 0)));
        assert_eq!(
            parsed.dynamodb_endpoint.as_deref(),
            Some("http://127.0.0.1:5000")
        );
        assert_eq!(parsed.endpoints_file, Some(PathBuf::from("/tmp/e.json")));
        let bad =
            parse::<StackArgs>("session-local", "--dynamodb-endpoint localhost:5000").unwrap_err();
        assert!(bad.to_string().contains("--dynamodb-endpoint"));
    }

    #[test]
    fn one_region_unless_told_otherwise_and_several_only_in_memory() {
        let default: StackArgs = parse("session-local", "").unwrap();
        assert_eq!(default.regions, 1);
        assert_eq!(default.replication_lag(), Duration::from_millis(200));
        let two: StackArgs = parse("session-local", "--regions 2 --replication-lag-ms 50").unwrap();
        assert_eq!((two.regions, two.replication_lag_ms), (2, 50));
        let zero = parse::<StackArgs>("session-local", "--regions 0").unwrap_err();
        assert!(zero.to_string().contains("--regions"), "{zero}");
        let moto = parse::<StackArgs>(
            "session-local",
            "--regions 2 --dynamodb-endpoint http://127.0.0.1:5000",
        )
        .unwrap_err();
        assert!(moto.to_string().contains("--regions"), "{moto}");
    }

    #[test]
    fn one_simulator_server_on_the_embedded_registry_unless_told_otherwise() {
        let default: StackArgs = parse("session-local", "").unwrap();
        assert_eq!(default.simulator_servers, 1);
        assert_eq!(default.cloudmap.port(), 8060);
        assert_eq!(default.cloudmap_endpoint, None);
        let given: StackArgs = parse(
            "session-local",
            "--simulator-servers 3 --cloudmap-endpoint http://127.0.0.1:5000",
        )
        .unwrap();
        assert_eq!(given.simulator_servers, 3);
        assert_eq!(
            given.cloudmap_endpoint.as_deref(),
            Some("http://127.0.0.1:5000")
        );
        let zero = parse::<StackArgs>("session-local", "--simulator-servers 0").unwrap_err();
        assert!(zero.to_string().contains("--simulator-servers"), "{zero}");
        let bad =
            parse::<StackArgs>("session-local", "--cloudmap-endpoint 127.0.0.1:5000").unwrap_err();
        assert!(bad.to_string().contains("--cloudmap-endpoint"), "{bad}");
    }

    #[test]
    fn the_appconfig_folder_is_built_in_unless_given() {
        let default: StackArgs = parse("session-local", "").unwrap();
        assert_eq!(default.appconfig_dir, None);
        assert_eq!(default.appconfig.port(), 2772);
        let given: StackArgs = parse("session-local", "--appconfig-dir /tmp/flags").unwrap();
        assert_eq!(given.appconfig_dir, Some(PathBuf::from("/tmp/flags")));
    }

    #[test]
    fn ticket_keys_is_a_subcommand_that_needs_a_kid_and_no_stack_flags() {
        let parsed: StackArgs = parse("session-local", "ticket-keys --kid 2026-12").unwrap();
        let missing = parse::<StackArgs>("session-local", "ticket-keys").unwrap_err();
        let mixed = parse::<StackArgs>(
            "session-local",
            "--http-api 127.0.0.1:0 ticket-keys --kid k",
        )
        .unwrap_err();

        assert_eq!(
            parsed.command,
            Some(StackCommand::TicketKeys {
                kid: "2026-12".to_owned()
            })
        );
        assert!(missing.to_string().contains("--kid"), "{missing}");
        assert_eq!(mixed.kind(), ErrorKind::ArgumentConflict);
        assert_eq!(
            parse::<StackArgs>("session-local", "").unwrap().command,
            None
        );
    }

    #[test]
    fn tls_flags_come_together_and_default_to_plaintext() {
        let parsed: SimulatorArgs = parse(
            "exchange-simulator",
            "--tls-cert s.pem --tls-key s.key --client-ca ca.pem",
        )
        .unwrap();
        assert_eq!(parsed.tls.tls_cert, Some(PathBuf::from("s.pem")));
        assert_eq!(parsed.tls.client_ca, Some(PathBuf::from("ca.pem")));
        let plain: AuthArgs = parse("auth-service", "").unwrap();
        assert_eq!(plain.tls, TlsArgs::default());
        assert!(plain.tls.server_tls().unwrap().is_none());
        let alone = parse::<AuthArgs>("auth-service", "--tls-cert s.pem").unwrap_err();
        assert!(alone.to_string().contains("--tls-key"), "{alone}");
        let ca_alone =
            parse::<SimulatorArgs>("exchange-simulator", "--client-ca ca.pem").unwrap_err();
        assert!(ca_alone.to_string().contains("--tls-cert"), "{ca_alone}");
    }

    #[test]
    fn auth_tokens_take_a_subject_and_optional_scopes() {
        let parsed: AuthArgs = parse(
            "auth-service",
            "--token alice:sessions:read,sessions:write --token bob --print-jwks --issuer me",
        )
        .unwrap();
        assert_eq!(
            parsed.tokens,
            vec![
                TokenRequest {
                    subject: "alice".into(),
                    scopes: vec!["sessions:read".into(), "sessions:write".into()],
                },
                TokenRequest {
                    subject: "bob".into(),
                    scopes: vec![],
                },
            ]
        );
        assert!(parsed.print_jwks);
        assert_eq!(parsed.settings().issuer, "me");
        assert_eq!(
            parse::<AuthArgs>("auth-service", "").unwrap().settings(),
            AuthSettings::default()
        );
        assert!(parse::<AuthArgs>("auth-service", "--token :x").is_err());
    }
}
