//! Command-line flags of the `exchange-simulator` and `auth-service` binaries, parsed here so
//! that the mains stay thin and the parsing is tested.
//!
//! Flags are `--name value` (or `--name=value`); `--help` prints the usage.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use crate::auth::AuthSettings;
use crate::simulator::SimulatorSettings;

/// Why the command line was not accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CliError {
    /// `--help` was asked for; the usage text.
    #[error("{0}")]
    Help(&'static str),
    /// A flag this binary does not have.
    #[error("unknown flag {0:?} (try --help)")]
    Unknown(String),
    /// A flag without its value.
    #[error("{0} needs a value")]
    MissingValue(String),
    /// A value that does not parse.
    #[error("{flag}: {problem}")]
    Invalid {
        /// The flag.
        flag: String,
        /// What is wrong with its value.
        problem: String,
    },
}

/// Usage of `exchange-simulator`.
pub const SIMULATOR_USAGE: &str = "\
exchange-simulator: the reference exchange simulator (SimulatorControl, MarketData, FaultInjection, health)

usage: exchange-simulator [flags]
  --listen ADDR              address to serve gRPC on (default 127.0.0.1:50051)
  --retained-events N        events kept per instance for resuming subscribers (default 100000)
  --max-instances N          instances running at once (default 256)
  --fail-starts N            the first N Start calls answer UNAVAILABLE (fault)
  --fail-starts-for-ms MS    every Start call answers UNAVAILABLE for MS after start-up (fault)
  --end-streams-after N      every stream ends with UNAVAILABLE after N events (fault)

Logs go to stdout; RUST_LOG sets the filter (default info).";

/// Usage of `auth-service`.
pub const AUTH_USAGE: &str = "\
auth-service: the reference auth service (auth.v1.AuthService, health); issues ES256 JWTs

usage: auth-service [flags]
  --listen ADDR              address to serve gRPC on (default 127.0.0.1:50052)
  --issuer ISS               iss of issued tokens, the only one accepted (default session-local-auth)
  --audience AUD             aud of issued tokens and the default expected (default session-service)
  --leeway-secs N            clock skew tolerated on exp and nbf (default 0)
  --token SUBJECT[:SCOPES]   print a token for SUBJECT with comma-separated SCOPES at start-up
                             (repeatable), e.g. --token alice:sessions:read,sessions:write
  --token-ttl-secs N         lifetime of the printed tokens (default 3600)
  --print-jwks               print the public keys as a JWKS document at start-up

The signing key is generated at start-up: tokens do not survive a restart.
Logs go to stderr; RUST_LOG sets the filter (default info).";

/// Usage of `session-local`.
pub const STACK_USAGE: &str = "\
session-local: the session service on this machine, on the in-memory store by default: the
API Gateway HTTP API emulator with the REST and authorizer functions, the WebSocket API emulator
(and its @connections API) with the WebSocket functions, the auth service and the exchange
simulator

usage: session-local [flags]
  --http-api ADDR            HTTP API emulator (default 127.0.0.1:8080)
  --ws-api ADDR              WebSocket API emulator and @connections API (default 127.0.0.1:8081)
  --simulator ADDR           exchange simulator gRPC (default 127.0.0.1:50051)
  --auth ADDR                auth service gRPC (default 127.0.0.1:50052)
  --dynamodb-endpoint URL    keep sessions in a DynamoDB-API endpoint (moto, DynamoDB Local, AWS)
                             instead of memory; the table is created if missing
  --table NAME               the DynamoDB table (default session-service)
  --endpoints-file PATH      write the endpoints as JSON once everything is ready
  --config FILE              service settings (TOML); SESSION_* variables apply on top

Ports 0 pick free ones. Ctrl-C or SIGTERM stops everything.
Logs go to stdout; RUST_LOG sets the filter (default info).";

/// What `session-local` was asked to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StackArgs {
    /// HTTP API emulator address.
    pub http_api: SocketAddr,
    /// WebSocket API emulator address (the `@connections` API shares it).
    pub ws_api: SocketAddr,
    /// Exchange simulator address.
    pub simulator: SocketAddr,
    /// Auth service address.
    pub auth: SocketAddr,
    /// A DynamoDB-API endpoint, if not in memory.
    pub dynamodb_endpoint: Option<String>,
    /// The DynamoDB table, if not the settings' one.
    pub table: Option<String>,
    /// Where to write the endpoints.
    pub endpoints_file: Option<PathBuf>,
    /// A settings file.
    pub config: Option<PathBuf>,
}

impl StackArgs {
    /// Parses the flags (without the program name).
    ///
    /// # Errors
    /// `--help`, an unknown flag or a bad value.
    pub fn parse(args: impl IntoIterator<Item = String>) -> Result<Self, CliError> {
        let at = |port| SocketAddr::from(([127, 0, 0, 1], port));
        let mut parsed = Self {
            http_api: at(8080),
            ws_api: at(8081),
            simulator: at(50051),
            auth: at(50052),
            dynamodb_endpoint: None,
            table: None,
            endpoints_file: None,
            config: None,
        };
        for (flag, given) in pairs(args)? {
            match flag.as_str() {
                "--help" | "-h" => return Err(CliError::Help(STACK_USAGE)),
                "--http-api" => parsed.http_api = value(&flag, given)?,
                "--ws-api" => parsed.ws_api = value(&flag, given)?,
                "--simulator" => parsed.simulator = value(&flag, given)?,
                "--auth" => parsed.auth = value(&flag, given)?,
                "--dynamodb-endpoint" => {
                    let url: String = value(&flag, given)?;
                    if !(url.starts_with("http://") || url.starts_with("https://")) {
                        return Err(CliError::Invalid {
                            flag,
                            problem: format!("{url:?}: must be an http:// or https:// URL"),
                        });
                    }
                    parsed.dynamodb_endpoint = Some(url);
                }
                "--table" => parsed.table = Some(value(&flag, given)?),
                "--endpoints-file" => parsed.endpoints_file = Some(value(&flag, given)?),
                "--config" => parsed.config = Some(value(&flag, given)?),
                _ => return Err(CliError::Unknown(flag)),
            }
        }
        Ok(parsed)
    }
}

/// What `exchange-simulator` was asked to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SimulatorArgs {
    /// Where to listen.
    pub listen: SocketAddr,
    /// The server's settings, faults included.
    pub settings: SimulatorSettings,
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
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthArgs {
    /// Where to listen.
    pub listen: SocketAddr,
    /// Issuer, audience, leeway.
    pub settings: AuthSettings,
    /// Tokens to print at start-up.
    pub tokens: Vec<TokenRequest>,
    /// Lifetime of those tokens.
    pub token_ttl: Duration,
    /// Whether to print the JWKS at start-up.
    pub print_jwks: bool,
}

/// Splits `--name value` and `--name=value` into pairs; `value` is `None` for a bare flag at the
/// end or before another flag.
fn pairs(
    args: impl IntoIterator<Item = String>,
) -> Result<Vec<(String, Option<String>)>, CliError> {
    let mut out = Vec::new();
    let mut args = args.into_iter().peekable();
    while let Some(arg) = args.next() {
        if !arg.starts_with("--") {
            return Err(CliError::Unknown(arg));
        }
        if let Some((name, value)) = arg.split_once('=') {
            out.push((name.to_owned(), Some(value.to_owned())));
        } else {
            let value = args.next_if(|next| !next.starts_with("--"));
            out.push((arg, value));
        }
    }
    Ok(out)
}

fn value<T: FromStr>(flag: &str, value: Option<String>) -> Result<T, CliError>
where
    T::Err: std::fmt::Display,
{
    let value = value.ok_or_else(|| CliError::MissingValue(flag.to_owned()))?;
    value.parse().map_err(|e: T::Err| CliError::Invalid {
        flag: flag.to_owned(),
        problem: format!("{value:?}: {e}"),
    })
}

impl SimulatorArgs {
    /// Parses the flags (without the program name).
    ///
    /// # Errors
    /// `--help`, an unknown flag or a bad value.
    pub fn parse(args: impl IntoIterator<Item = String>) -> Result<Self, CliError> {
        let mut parsed = Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 50051)),
            settings: SimulatorSettings::default(),
        };
        for (flag, given) in pairs(args)? {
            let settings = &mut parsed.settings;
            match flag.as_str() {
                "--help" | "-h" => return Err(CliError::Help(SIMULATOR_USAGE)),
                "--listen" => parsed.listen = value(&flag, given)?,
                "--retained-events" => {
                    settings.instance.retained_events = value(&flag, given)?;
                }
                "--max-instances" => settings.max_instances = value(&flag, given)?,
                "--fail-starts" => settings.faults.unavailable_starts = value(&flag, given)?,
                "--fail-starts-for-ms" => {
                    settings.faults.unavailable_for = Duration::from_millis(value(&flag, given)?);
                }
                "--end-streams-after" => {
                    settings.faults.end_streams_after = Some(value(&flag, given)?);
                }
                _ => return Err(CliError::Unknown(flag)),
            }
        }
        if parsed.settings.max_instances == 0 {
            return Err(CliError::Invalid {
                flag: "--max-instances".to_owned(),
                problem: "must be at least 1".to_owned(),
            });
        }
        Ok(parsed)
    }
}

impl AuthArgs {
    /// Parses the flags (without the program name).
    ///
    /// # Errors
    /// `--help`, an unknown flag or a bad value.
    pub fn parse(args: impl IntoIterator<Item = String>) -> Result<Self, CliError> {
        let mut parsed = Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 50052)),
            settings: AuthSettings::default(),
            tokens: Vec::new(),
            token_ttl: Duration::from_secs(3600),
            print_jwks: false,
        };
        for (flag, given) in pairs(args)? {
            match flag.as_str() {
                "--help" | "-h" => return Err(CliError::Help(AUTH_USAGE)),
                "--listen" => parsed.listen = value(&flag, given)?,
                "--issuer" => parsed.settings.issuer = value(&flag, given)?,
                "--audience" => parsed.settings.audience = value(&flag, given)?,
                "--leeway-secs" => {
                    parsed.settings.leeway = Duration::from_secs(value(&flag, given)?);
                }
                "--token" => {
                    let spec: String = value(&flag, given)?;
                    let (subject, scopes) = spec.split_once(':').unwrap_or((&spec, ""));
                    if subject.is_empty() {
                        return Err(CliError::Invalid {
                            flag,
                            problem: "the subject must not be empty".to_owned(),
                        });
                    }
                    parsed.tokens.push(TokenRequest {
                        subject: subject.to_owned(),
                        scopes: scopes
                            .split(',')
                            .filter(|s| !s.is_empty())
                            .map(str::to_owned)
                            .collect(),
                    });
                }
                "--token-ttl-secs" => {
                    parsed.token_ttl = Duration::from_secs(value(&flag, given)?);
                }
                "--print-jwks" => {
                    if given.is_some() {
                        return Err(CliError::Invalid {
                            flag,
                            problem: "takes no value".to_owned(),
                        });
                    }
                    parsed.print_jwks = true;
                }
                _ => return Err(CliError::Unknown(flag)),
            }
        }
        Ok(parsed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(text: &str) -> Vec<String> {
        text.split_whitespace().map(str::to_owned).collect()
    }

    #[test]
    fn simulator_flags_set_the_address_and_the_faults() {
        let parsed = SimulatorArgs::parse(args(
            "--listen 127.0.0.1:6000 --fail-starts 2 --end-streams-after=50 --fail-starts-for-ms 1500",
        ))
        .unwrap();
        assert_eq!(parsed.listen, SocketAddr::from(([127, 0, 0, 1], 6000)));
        assert_eq!(parsed.settings.faults.unavailable_starts, 2);
        assert_eq!(parsed.settings.faults.end_streams_after, Some(50));
        assert_eq!(
            parsed.settings.faults.unavailable_for,
            Duration::from_millis(1500)
        );
    }

    #[test]
    fn unknown_flags_missing_values_and_bad_values_are_refused_with_the_flag_named() {
        assert_eq!(
            SimulatorArgs::parse(args("--nope 1")),
            Err(CliError::Unknown("--nope".into()))
        );
        assert_eq!(
            SimulatorArgs::parse(args("--listen")),
            Err(CliError::MissingValue("--listen".into()))
        );
        assert!(matches!(
            SimulatorArgs::parse(args("--fail-starts many")),
            Err(CliError::Invalid { flag, .. }) if flag == "--fail-starts"
        ));
        assert!(matches!(
            SimulatorArgs::parse(args("--help")),
            Err(CliError::Help(_))
        ));
    }

    #[test]
    fn stack_flags_set_addresses_the_store_and_the_endpoints_file() {
        let parsed = StackArgs::parse(args(
            "--http-api 127.0.0.1:0 --ws-api=127.0.0.1:9081 --dynamodb-endpoint http://127.0.0.1:5000 --endpoints-file /tmp/e.json",
        ))
        .unwrap();
        assert_eq!(parsed.http_api, SocketAddr::from(([127, 0, 0, 1], 0)));
        assert_eq!(parsed.ws_api, SocketAddr::from(([127, 0, 0, 1], 9081)));
        assert_eq!(
            parsed.dynamodb_endpoint.as_deref(),
            Some("http://127.0.0.1:5000")
        );
        assert_eq!(parsed.endpoints_file, Some(PathBuf::from("/tmp/e.json")));
        assert!(matches!(
            StackArgs::parse(args("--dynamodb-endpoint localhost:5000")),
            Err(CliError::Invalid { flag, .. }) if flag == "--dynamodb-endpoint"
        ));
    }

    #[test]
    fn auth_tokens_take_a_subject_and_optional_scopes() {
        let parsed = AuthArgs::parse(args(
            "--token alice:sessions:read,sessions:write --token bob --print-jwks --issuer me",
        ))
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
        assert_eq!(parsed.settings.issuer, "me");
    }
}
