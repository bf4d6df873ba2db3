//! Simulators: exchange simulator instances a session runs, and their lifecycle.

use std::collections::HashSet;
use std::fmt;

use serde::{Deserialize, Serialize};

use super::validation::{self, ValidationError};
use super::{Session, SessionId, SimulatorId, Timestamp, TransitionError};

/// Lifecycle of a simulator: starting → running → stopping → stopped, or failed from any
/// non-terminal state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SimulatorStatus {
    /// Asked of the backend, not confirmed running yet.
    Starting,
    /// Producing market data.
    Running,
    /// Asked to stop, not confirmed stopped yet.
    Stopping,
    /// Stopped for good.
    Stopped,
    /// Ended by a failure; the simulator's `reason` says which.
    Failed,
}

impl SimulatorStatus {
    /// Every status, in lifecycle order.
    pub const ALL: [Self; 5] = [
        Self::Starting,
        Self::Running,
        Self::Stopping,
        Self::Stopped,
        Self::Failed,
    ];

    /// The wire and store name.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Starting => "starting",
            Self::Running => "running",
            Self::Stopping => "stopping",
            Self::Stopped => "stopped",
            Self::Failed => "failed",
        }
    }

    /// Parses the wire and store name.
    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.as_str() == text)
    }

    /// Whether no transition leaves this status.
    pub const fn is_terminal(self) -> bool {
        matches!(self, Self::Stopped | Self::Failed)
    }

    /// Whether the state machine has the edge `self → to`.
    pub const fn can_become(self, to: Self) -> bool {
        use SimulatorStatus::{Failed, Running, Starting, Stopped, Stopping};
        matches!(
            (self, to),
            (Starting, Running | Stopping | Failed)
                | (Running, Stopping | Failed)
                | (Stopping, Stopped | Failed)
        )
    }
}

impl fmt::Display for SimulatorStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An instrument symbol: 1 to 12 upper-case letters or digits, optionally `-` and 1 to 12 more
/// (`AAPL`, `BTC-USD`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Symbol(String);

impl Symbol {
    /// The symbols `parse` accepts, as an ECMA-262 regular expression (the OpenAPI `pattern`).
    pub const PATTERN: &'static str = "^[A-Z0-9]{1,12}(-[A-Z0-9]{1,12})?$";

    /// Validates a symbol; `field` names it in the error.
    pub fn parse(field: &str, text: &str) -> Result<Self, ValidationError> {
        let part_ok = |p: &str| {
            (1..=12).contains(&p.len())
                && p.bytes()
                    .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit())
        };
        let ok = match text.split_once('-') {
            Some((base, quote)) => part_ok(base) && part_ok(quote),
            None => part_ok(text),
        };
        if !ok {
            return Err(ValidationError::new(
                field,
                format!(
                    "{text:?} is not a symbol: 1-12 upper-case letters or digits, optionally '-' and 1-12 more (e.g. BTC-USD)"
                ),
            ));
        }
        Ok(Self(text.to_owned()))
    }

    /// The symbol as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for Symbol {
    type Error = ValidationError;
    fn try_from(text: String) -> Result<Self, Self::Error> {
        Self::parse("symbol", &text)
    }
}

impl From<Symbol> for String {
    fn from(symbol: Symbol) -> String {
        symbol.0
    }
}

/// A validated request to start a simulator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewSimulator {
    /// 1 to 16 distinct symbols.
    pub symbols: Vec<Symbol>,
    /// Seed of the simulator's random generator.
    pub seed: u64,
    /// Target market events per second.
    pub events_per_second: u32,
}

impl NewSimulator {
    /// Most symbols one simulator may have.
    pub const MAX_SYMBOLS: usize = 16;
    /// Highest event rate a simulator may be asked for.
    pub const MAX_EVENTS_PER_SECOND: u32 = 200_000;
    /// Event rate when the client names none.
    pub const DEFAULT_EVENTS_PER_SECOND: u32 = 20;

    /// Validates a start request; errors name the field (`symbols[1]`).
    pub fn parse(
        symbols: &[String],
        seed: Option<u64>,
        events_per_second: Option<u32>,
    ) -> Result<Self, ValidationError> {
        if symbols.is_empty() || symbols.len() > Self::MAX_SYMBOLS {
            return Err(ValidationError::new(
                "symbols",
                format!(
                    "must list 1 to {} symbols, got {}",
                    Self::MAX_SYMBOLS,
                    symbols.len()
                ),
            ));
        }
        let mut seen = HashSet::new();
        let mut parsed = Vec::with_capacity(symbols.len());
        for (i, text) in symbols.iter().enumerate() {
            let field = format!("symbols[{i}]");
            let symbol = Symbol::parse(&field, text)?;
            if !seen.insert(symbol.clone()) {
                return Err(ValidationError::new(
                    field,
                    format!("{text:?} is listed twice"),
                ));
            }
            parsed.push(symbol);
        }
        let events_per_second = events_per_second.unwrap_or(Self::DEFAULT_EVENTS_PER_SECOND);
        validation::range(
            "events_per_second",
            events_per_second,
            1,
            Self::MAX_EVENTS_PER_SECOND,
        )?;
        Ok(Self {
            symbols: parsed,
            seed: seed.unwrap_or_else(rand::random),
            events_per_second,
        })
    }
}

/// The simulator server an instance lives on, as discovery named it when the instance started.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct SimulatorHost {
    /// The server's instance id in the registry (Cloud Map's, or the address for DNS).
    pub id: String,
    /// Its gRPC address, `host:port`.
    pub address: String,
}

impl fmt::Display for SimulatorHost {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.id, self.address)
    }
}

/// A simulator of a session (serialisable for the shared cache tier, `crate::cache`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Simulator {
    /// Its id in this service.
    pub id: SimulatorId,
    /// The session it belongs to.
    pub session_id: SessionId,
    /// Its symbols.
    pub symbols: Vec<Symbol>,
    /// Its seed.
    pub seed: u64,
    /// Its target event rate.
    pub events_per_second: u32,
    /// Its lifecycle state.
    pub status: SimulatorStatus,
    /// The backend instance's id, once the backend accepted the start.
    pub backend_id: Option<String>,
    /// The simulator server hosting it, when servers are discovered (`discovery.mode`): its
    /// control calls and market data go there. `None`: the one static server
    /// (`backends.simulator_url`), as for every record written before discovery existed.
    #[serde(default)]
    pub host: Option<SimulatorHost>,
    /// Why it failed or stopped, when it did.
    pub reason: Option<String>,
    /// When it was requested.
    pub created_at: Timestamp,
    /// When its state last changed.
    pub updated_at: Timestamp,
    /// Its session's expiry: a simulator does not outlive its session.
    pub expires_at: Timestamp,
    /// Bumped by every change; stores write a change only over the version it was made from.
    pub version: u64,
}

impl Simulator {
    /// A simulator of `session` about to be started.
    pub fn starting(session: &Session, request: NewSimulator, now: Timestamp) -> Self {
        Self {
            id: SimulatorId::generate(),
            session_id: session.id.clone(),
            expires_at: session.expires_at,
            symbols: request.symbols,
            seed: request.seed,
            events_per_second: request.events_per_second,
            status: SimulatorStatus::Starting,
            backend_id: None,
            host: None,
            reason: None,
            created_at: now,
            updated_at: now,
            version: 1,
        }
    }

    /// This simulator in state `to`, with `reason` recorded if given.
    ///
    /// # Errors
    /// The state machine has no edge from the current state to `to`.
    pub fn transition(
        &self,
        to: SimulatorStatus,
        reason: Option<String>,
        now: Timestamp,
    ) -> Result<Self, TransitionError> {
        if !self.status.can_become(to) {
            return Err(TransitionError {
                entity: "simulator",
                from: self.status.as_str(),
                to: to.as_str(),
            });
        }
        Ok(Self {
            status: to,
            reason: reason.or_else(|| self.reason.clone()),
            updated_at: now,
            version: self.version + 1,
            ..self.clone()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn only_the_lifecycle_edges_are_allowed() {
        use SimulatorStatus::*;
        let allowed = [
            (Starting, Running),
            (Starting, Stopping),
            (Starting, Failed),
            (Running, Stopping),
            (Running, Failed),
            (Stopping, Stopped),
            (Stopping, Failed),
        ];
        for from in SimulatorStatus::ALL {
            for to in SimulatorStatus::ALL {
                assert_eq!(
                    from.can_become(to),
                    allowed.contains(&(from, to)),
                    "{from} -> {to}"
                );
            }
        }
    }

    #[test]
    fn a_transition_records_reason_and_bumps_version() {
        let request = NewSimulator::parse(&strings(&["BTC-USD"]), Some(7), None).unwrap();
        let now = Timestamp::from_unix_millis(5);
        let owner = super::super::UserId::parse("sub", "alice").unwrap();
        let session = Session::open(
            owner,
            super::super::NewSession::default(),
            now,
            std::time::Duration::from_secs(60),
        );
        let sim = Simulator::starting(&session, request, now);
        let failed = sim
            .transition(SimulatorStatus::Failed, Some("backend down".into()), now)
            .unwrap();
        assert_eq!(failed.version, 2);
        assert_eq!(failed.reason.as_deref(), Some("backend down"));
        let err = failed
            .transition(SimulatorStatus::Running, None, now)
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "a simulator cannot go from failed to running"
        );
    }

    #[test]
    fn start_requests_are_validated_field_by_field() {
        let err = NewSimulator::parse(&[], None, None).unwrap_err();
        assert_eq!(err.field, "symbols");
        let err = NewSimulator::parse(&strings(&["BTC-USD", "btc"]), None, None).unwrap_err();
        assert_eq!(err.field, "symbols[1]");
        let err = NewSimulator::parse(&strings(&["AAPL", "AAPL"]), None, None).unwrap_err();
        assert_eq!(err.to_string(), "symbols[1]: \"AAPL\" is listed twice");
        let err = NewSimulator::parse(&strings(&["AAPL"]), None, Some(0)).unwrap_err();
        assert_eq!(err.field, "events_per_second");
        let ok = NewSimulator::parse(&strings(&["AAPL", "ETH-BTC"]), Some(1), None).unwrap();
        assert_eq!(
            ok.events_per_second,
            NewSimulator::DEFAULT_EVENTS_PER_SECOND
        );
    }

    #[test]
    fn symbols_follow_the_documented_format() {
        for good in ["A", "AAPL", "BTC-USD", "X1-Y2"] {
            assert!(Symbol::parse("s", good).is_ok(), "{good}");
        }
        for bad in ["", "-", "BTC-", "-USD", "A-B-C", "btc", "TOOLONGSYMBOL1"] {
            assert!(Symbol::parse("s", bad).is_err(), "{bad}");
        }
    }
}
