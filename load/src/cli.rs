//! The `session-load` binary's flags (clap). Every run is bounded: a duration, and caps on
//! clients, sessions and rates. A bad flag exits with status 2 and names it.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, ValueEnum};

/// What to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Mode {
    /// Steady load for `--duration`: control operations, stream clients, optional storms.
    Steady,
    /// The memory-under-churn soak: waves that create sessions, stream from them and close
    /// them, resident memory read between waves.
    Churn,
}

/// What `session-load` was asked to do.
#[derive(Debug, Clone, PartialEq, Parser)]
#[command(
    name = "session-load",
    about = "Loads a deployment of the session service: REST control operations at a target \
             rate, SSE and WebSocket clients (with heartbeats) on streaming sessions, optional \
             reconnect storms; then a markdown table and an SVG plot.",
    after_help = "The endpoints file is what `session-local --endpoints-file` writes, or one \
                  written by hand for a deployment: http_api (required), sse and ws_api, \
                  token_url (the local stack's dev-only token route). Without token_url, give \
                  a bearer token with --token or SESSION_LOAD_TOKEN: every session and client \
                  then belongs to that one user, under its rate limits.\n\
                  Exit status: 0 when the run finished (errors are in the table), 1 when it \
                  could not start, 2 for bad flags."
)]
pub struct LoadArgs {
    /// The endpoints file (JSON).
    #[arg(long, value_name = "FILE")]
    pub endpoints: PathBuf,
    /// A bearer token for every call, instead of minting tokens at `token_url`.
    #[arg(
        long,
        value_name = "TOKEN",
        env = "SESSION_LOAD_TOKEN",
        hide_env_values = true
    )]
    pub token: Option<String>,
    /// Steady load, or the churn soak.
    #[arg(long, value_enum, default_value = "steady")]
    pub mode: Mode,
    /// How long the run takes (`30s`, `5m`, `1h`); at most 24 h.
    #[arg(long, value_name = "DURATION", default_value = "60s", value_parser = duration)]
    pub duration: Duration,
    /// REST control operations per second (create, start simulator, status, stop, delete), in
    /// cycles of five; 0: none.
    #[arg(long, value_name = "N", default_value_t = 5.0, value_parser = ops_rate)]
    pub ops_rate: f64,
    /// Users the control operations are spread over (each its own token when minted): the
    /// service limits simulator starts and stops per user (1/s).
    #[arg(long, value_name = "N", default_value_t = 4,
          value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub control_users: u32,
    /// Streaming sessions (each with a running simulator and its own user) the clients share.
    #[arg(long, value_name = "N", default_value_t = 1,
          value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub sessions: u32,
    /// SSE clients.
    #[arg(long, value_name = "N", default_value_t = 10,
          value_parser = clap::value_parser!(u32).range(0..=20_000))]
    pub sse: u32,
    /// WebSocket clients.
    #[arg(long, value_name = "N", default_value_t = 10,
          value_parser = clap::value_parser!(u32).range(0..=20_000))]
    pub ws: u32,
    /// The streaming sessions' simulator rate (events per second).
    #[arg(long, value_name = "N", default_value_t = 50,
          value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub events_per_second: u32,
    /// The simulators' symbols (comma-separated).
    #[arg(
        long,
        value_name = "SYMBOLS",
        value_delimiter = ',',
        default_value = "BTC-USD,ETH-USD"
    )]
    pub symbols: Vec<String>,
    /// New connections per second while clients start (tickets and connects are rate limited
    /// per user and per address).
    #[arg(long, value_name = "N", default_value_t = 8.0, value_parser = connect_rate)]
    pub connect_rate: f64,
    /// How often a WebSocket client heartbeats (the page's production interval is about 30 s;
    /// a connection without one for `websocket.heartbeat_timeout_secs`, 90 s, expires).
    #[arg(long, value_name = "DURATION", default_value = "30s", value_parser = duration)]
    pub heartbeat_every: Duration,
    /// A reconnect storm this often: `--storm-fraction` of the clients drop and reconnect with
    /// resume at once.
    #[arg(long, value_name = "DURATION", value_parser = duration)]
    pub storm_every: Option<Duration>,
    /// The fraction of clients in each storm (0 to 1).
    #[arg(long, value_name = "F", default_value_t = 0.1, value_parser = fraction)]
    pub storm_fraction: f64,
    /// Churn soak: how long each wave streams before its sessions close.
    #[arg(long, value_name = "DURATION", default_value = "20s", value_parser = duration)]
    pub wave: Duration,
    /// Churn soak: how long to wait after a wave before reading resident memory.
    #[arg(long, value_name = "DURATION", default_value = "5s", value_parser = duration)]
    pub settle: Duration,
    /// Churn soak: read resident memory from /proc/PID/status instead of the streamer's
    /// `/metrics` (`process_resident_memory_bytes`).
    #[arg(long, value_name = "PID")]
    pub memory_pid: Option<u32>,
    /// Where to write the markdown table.
    #[arg(long, value_name = "FILE", default_value = "session-load.md")]
    pub report: PathBuf,
    /// Where to write the SVG plot.
    #[arg(long, value_name = "FILE", default_value = "session-load.svg")]
    pub plot: PathBuf,
    /// CA certificates (PEM) to trust besides the system's.
    #[arg(long, value_name = "FILE")]
    pub ca_file: Option<PathBuf>,
}

/// The longest run.
const MAX_DURATION: Duration = Duration::from_secs(24 * 3600);

/// `250ms`, `30s`, `5m`, `2h`: a duration up to 24 h.
fn duration(text: &str) -> Result<Duration, String> {
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .ok_or_else(|| format!("{text:?} has no unit: write 30s, 5m, 1h or 250ms"))?;
    let (number, unit) = text.split_at(split);
    let number: u64 = number
        .parse()
        .map_err(|_| format!("{text:?} does not start with a whole number"))?;
    let duration = match unit {
        "ms" => Duration::from_millis(number),
        "s" => Duration::from_secs(number),
        "m" => Duration::from_secs(number.saturating_mul(60)),
        "h" => Duration::from_secs(number.saturating_mul(3600)),
        _ => return Err(format!("{text:?}: the unit must be ms, s, m or h")),
    };
    if duration.is_zero() || duration > MAX_DURATION {
        return Err(format!("{text:?} must be above zero and at most 24h"));
    }
    Ok(duration)
}

fn bounded(text: &str, low: f64, high: f64) -> Result<f64, String> {
    let value: f64 = text
        .parse()
        .map_err(|_| format!("{text:?} is not a number"))?;
    if !(low..=high).contains(&value) {
        return Err(format!("{text:?} is not between {low} and {high}"));
    }
    Ok(value)
}

fn ops_rate(text: &str) -> Result<f64, String> {
    bounded(text, 0.0, 1000.0)
}

fn connect_rate(text: &str) -> Result<f64, String> {
    bounded(text, 0.1, 10_000.0)
}

fn fraction(text: &str) -> Result<f64, String> {
    bounded(text, 0.0, 1.0)
}

#[cfg(test)]
mod tests {
    use clap::error::ErrorKind;

    use super::*;

    fn parse(text: &str) -> Result<LoadArgs, clap::Error> {
        LoadArgs::try_parse_from(std::iter::once("session-load").chain(text.split_whitespace()))
    }

    #[test]
    fn the_endpoints_file_is_required_and_the_rest_has_bounded_defaults() {
        let args = parse("--endpoints e.json").unwrap();
        assert_eq!(args.duration, Duration::from_secs(60));
        assert_eq!((args.sse, args.ws, args.sessions), (10, 10, 1));
        assert_eq!(args.heartbeat_every, Duration::from_secs(30));
        assert_eq!(args.storm_every, None);
        assert_eq!(
            parse("").unwrap_err().kind(),
            ErrorKind::MissingRequiredArgument
        );
    }

    #[test]
    fn a_bad_flag_value_is_refused_naming_the_flag_and_the_reason() {
        let cases = [
            ("--duration 10", "no unit"),
            ("--duration 0s", "above zero"),
            ("--duration 25h", "at most 24h"),
            ("--duration 5d", "the unit must be"),
            ("--storm-fraction 1.5", "between 0 and 1"),
            ("--ops-rate x", "not a number"),
            ("--sse 20001", "20001"),
        ];
        for (flag, reason) in cases {
            let error = parse(&format!("--endpoints e.json {flag}")).unwrap_err();
            let text = error.to_string();
            let name = flag.split(' ').next().unwrap();
            assert!(
                text.contains(name) && text.contains(reason),
                "{flag}: {text}"
            );
        }
    }
}
