//! The `smoke` binary's flags (clap): `smoke ENDPOINTS_JSON [--timeout SECS] ...`. A bad flag
//! exits with status 2 and names it.

use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use secrecy::SecretString;

use crate::run::Options;

/// What `smoke` was asked to do.
#[derive(Debug, Clone, PartialEq, Eq, Parser)]
#[command(
    name = "smoke",
    about = "Runs a frontend's whole path against a deployment of the session service: a token, \
             a session, a simulator, its market data over SSE and over WebSocket (every event \
             id in sequence), then stops and closes what it started.",
    after_help = "The endpoints file is what `session-local --endpoints-file` writes, or one built \
                  from a deployment's outputs: http_api (required), sse and ws_api (ticket URLs \
                  must be under them), token_url (to mint a token: POST {\"sub\": ...}); other \
                  keys are ignored.\n\
                  SMOKE_TOKEN: a bearer token to use instead of minting one at token_url.\n\
                  Trusted CAs: the system's (SSL_CERT_FILE and SSL_CERT_DIR are honoured) and \
                  --ca-file.\n\
                  Exit status: 0 when every step passed, 1 when one failed (the last line names \
                  it), 2 for bad flags."
)]
pub struct SmokeArgs {
    /// The endpoints file (JSON).
    #[arg(value_name = "ENDPOINTS_JSON")]
    pub endpoints: PathBuf,
    /// Seconds the whole run may take (clean-up after a failure aside).
    #[arg(long, value_name = "SECS", env = "SMOKE_TIMEOUT", default_value_t = 60,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub timeout: u64,
    /// Events to read after the snapshot, on each transport.
    #[arg(long, value_name = "N", env = "SMOKE_EVENTS", default_value_t = 20,
          value_parser = clap::value_parser!(u64).range(1..=10_000))]
    pub events: u64,
    /// The simulator's symbols (comma-separated).
    #[arg(
        long,
        value_name = "SYMBOLS",
        value_delimiter = ',',
        default_value = "BTC-USD,ETH-USD"
    )]
    pub symbols: Vec<String>,
    /// The simulator's events per second.
    #[arg(long, value_name = "N", default_value_t = 50,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub events_per_second: u32,
    /// CA certificates (PEM) to trust besides the system's, e.g. a staging deployment's.
    #[arg(long, value_name = "FILE", env = "SMOKE_CA_FILE")]
    pub ca_file: Option<PathBuf>,
}

impl SmokeArgs {
    /// The run's options, with the token from `SMOKE_TOKEN` if any.
    pub fn options(self, token: Option<SecretString>) -> Options {
        Options {
            endpoints: self.endpoints,
            token,
            timeout: Duration::from_secs(self.timeout),
            events: usize::try_from(self.events).unwrap_or(usize::MAX),
            symbols: self.symbols,
            events_per_second: self.events_per_second,
            ca_file: self.ca_file,
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::error::ErrorKind;

    use super::*;

    fn parse(text: &str) -> Result<SmokeArgs, clap::Error> {
        SmokeArgs::try_parse_from(std::iter::once("smoke").chain(text.split_whitespace()))
    }

    #[test]
    fn the_endpoints_file_is_required_and_the_rest_has_defaults() {
        let options = parse("/tmp/e.json").unwrap().options(None);
        assert_eq!(options.endpoints, PathBuf::from("/tmp/e.json"));
        assert_eq!(options.timeout, Duration::from_secs(60));
        assert_eq!(options.events, 20);
        assert_eq!(options.symbols, ["BTC-USD", "ETH-USD"]);
        assert_eq!(options.events_per_second, 50);
        assert_eq!(
            parse("").unwrap_err().kind(),
            ErrorKind::MissingRequiredArgument
        );
    }

    #[test]
    fn flags_set_the_timeout_the_events_and_the_simulator() {
        let args = parse("e.json --timeout 5 --events=3 --symbols AAPL,MSFT --events-per-second 9")
            .unwrap();
        let options = args.options(None);
        assert_eq!(options.timeout, Duration::from_secs(5));
        assert_eq!(options.events, 3);
        assert_eq!(options.symbols, ["AAPL", "MSFT"]);
        assert_eq!(options.events_per_second, 9);
        let zero = parse("e.json --timeout 0").unwrap_err();
        assert!(zero.to_string().contains("--timeout"), "{zero}");
        let unknown = parse("e.json --nope").unwrap_err();
        assert_eq!(unknown.kind(), ErrorKind::UnknownArgument);
    }
}
