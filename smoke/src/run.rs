//! A run: the steps of a frontend's path, each printed on its own line with its duration as it
//! ends, then one line that says whether the deployment passed or at which step it failed and
//! why. A failure after the session was created (an interruption too) still closes it (best
//! effort, printed too), so a run leaves no simulator running.
//!
//! ```text
//! ok   create session                 42 ms  ses_01JG7Q3ZKXW4T9M2R8V6C5N1HA
//! FAIL open SSE stream                 1 ms  Connection refused (os error 111) (GET http://...)
//! ok   cleanup: close session          6 ms  ses_01JG7Q3ZKXW4T9M2R8V6C5N1HA closed
//! FAILED at step "open SSE stream": Connection refused (os error 111) (GET http://...)
//! ```

use std::future::Future;
use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use secrecy::SecretString;
use session_core::domain::{SessionStatus, SimulatorStatus, Transport};
use tokio::time::Instant;
use ulid::Ulid;
use url::Url;

use crate::api::{self, Api};
use crate::client::Clients;
use crate::endpoints::{Endpoints, is_under};
use crate::error::{StepError, shown};
use crate::sequence::{Repeats, Sequence};
use crate::{sse, ws};

/// How long each clean-up call may take, whatever time the run had left (at most the run's
/// whole `timeout`).
pub const CLEANUP_TIMEOUT: Duration = Duration::from_secs(10);

/// How often a starting simulator's status is read.
const POLL: Duration = Duration::from_millis(100);

/// What to run against what.
#[derive(Debug, Clone)]
pub struct Options {
    /// The endpoints file.
    pub endpoints: PathBuf,
    /// A bearer token to use (`SMOKE_TOKEN`); without one, a token is minted at `token_url`.
    pub token: Option<SecretString>,
    /// The whole run's time, clean-up aside: each step gets what is left.
    pub timeout: Duration,
    /// Events to read after the snapshot, on each transport.
    pub events: usize,
    /// The simulator's symbols.
    pub symbols: Vec<String>,
    /// The simulator's event rate.
    pub events_per_second: u32,
    /// A PEM file of CA certificates to trust besides the system's.
    pub ca_file: Option<PathBuf>,
}

/// How a run ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// Steps that passed.
    pub passed: usize,
    /// The step that failed and why; `None` when every step passed.
    pub failure: Option<Failure>,
}

/// The step that failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// Its name (`open SSE stream`).
    pub step: &'static str,
    /// Why, as printed.
    pub reason: String,
    /// Whether the run's time ran out during the step (what it asked may have been done).
    pub timed_out: bool,
}

/// Runs every step against the deployment of `options`, printing to `out`. When `interrupt`
/// completes first (Ctrl-C), the step under way fails and the clean-up runs as after any
/// failure.
pub async fn run(
    options: &Options,
    out: &mut impl Write,
    interrupt: impl Future<Output = ()>,
) -> Outcome {
    let started = Instant::now();
    let mut report = Report {
        out,
        deadline: started + options.timeout,
        timeout: options.timeout,
        passed: 0,
        current: None,
    };
    let mut state = State::default();
    let finished = {
        // Boxed: the WebSocket handshake's future alone is some 20 KB.
        let steps = Box::pin(steps(options, &mut report, &mut state));
        tokio::select! {
            result = steps => Some(result),
            () = interrupt => None,
        }
    };
    let result = finished.unwrap_or_else(|| Err(report.interrupted()));
    if let Err(failure) = &result {
        clean_up(&mut report, &state, failure).await;
    }
    let outcome = Outcome {
        passed: report.passed,
        failure: result.err(),
    };
    match &outcome.failure {
        None => report.say(&format!(
            "PASSED: {} steps in {} ms against {}",
            outcome.passed,
            started.elapsed().as_millis(),
            state
                .http_api
                .as_ref()
                .map_or_else(String::new, Url::to_string)
        )),
        Some(Failure { step, reason, .. }) => {
            report.say(&format!("FAILED at step \"{step}\": {reason}"));
        }
    }
    outcome
}

/// What clean-up needs to know.
#[derive(Debug, Default)]
struct State {
    http_api: Option<Url>,
    api: Option<Api>,
    /// The create request's key: retried with it, a request whose answer came too late tells
    /// the session's id.
    idempotency_key: Option<String>,
    session: Option<String>,
    simulator: Option<String>,
    simulator_stopped: bool,
    session_closed: bool,
}

async fn steps(
    options: &Options,
    report: &mut Report<'_, impl Write>,
    state: &mut State,
) -> Result<(), Failure> {
    let (endpoints, clients) = report
        .step("endpoints", async {
            let endpoints = Endpoints::load(&options.endpoints)?;
            let clients = Clients::new(options.ca_file.as_deref())?;
            let detail = format!(
                "{}: http_api {}; {} trusted roots",
                options.endpoints.display(),
                endpoints.http_api,
                clients.roots
            );
            Ok(((endpoints, clients), detail))
        })
        .await?;
    state.http_api = Some(endpoints.http_api.clone());

    let token = report
        .step("token", async {
            if let Some(token) = &options.token {
                return Ok((token.clone(), "from SMOKE_TOKEN".to_owned()));
            }
            let Some(token_url) = &endpoints.token_url else {
                return Err(StepError::Check(
                    "SMOKE_TOKEN is not set and the endpoints file has no \"token_url\"".to_owned(),
                ));
            };
            let subject = format!("smoke-{}", Ulid::new().to_string().to_lowercase());
            let token = api::mint_token(&clients.http, token_url, &subject).await?;
            Ok((token, format!("from {token_url} for {subject}")))
        })
        .await?;
    let api = Api::new(clients.http.clone(), &endpoints.http_api, token);
    state.api = Some(api.clone());

    let key = format!("smoke-{}", Ulid::new());
    state.idempotency_key = Some(key.clone());
    let session = report
        .step("create session", async {
            let created = api.create_session(&key).await?;
            if created.status != SessionStatus::Active {
                return Err(StepError::Check(format!(
                    "the new session {} is {}, not active",
                    created.session_id,
                    created.status.as_str()
                )));
            }
            Ok((created.session_id.clone(), created.session_id))
        })
        .await?;
    state.session = Some(session.clone());

    let slot = &mut state.simulator;
    let simulator = report
        .step("start simulator", async {
            let mut simulator = api
                .start_simulator(&session, &options.symbols, options.events_per_second)
                .await?;
            let id = simulator.simulator_id.clone();
            *slot = Some(id.clone());
            while simulator.status == SimulatorStatus::Starting {
                tokio::time::sleep(POLL).await;
                simulator = api.simulator(&session, &id).await?;
            }
            if simulator.status != SimulatorStatus::Running {
                return Err(StepError::Check(format!(
                    "simulator {id} {}: {}",
                    simulator.status,
                    simulator.reason.as_deref().unwrap_or("no reason given")
                )));
            }
            let detail = format!(
                "{id} running ({} at {}/s)",
                options.symbols.join(", "),
                options.events_per_second
            );
            Ok((id, detail))
        })
        .await?;

    let sse_url = report
        .step("SSE ticket", async {
            let url = api.ticket(&session, Transport::Sse).await?;
            cross_check(&url, endpoints.sse.as_ref(), "sse", "streaming.sse_url")?;
            let shown = shown(&url);
            Ok((url, shown))
        })
        .await?;
    let mut events = report
        .step("open SSE stream", sse::open(&clients.http, &sse_url))
        .await?;
    let mut sequence = Sequence::new(Repeats::Refuse);
    report
        .step("SSE events", async {
            sse::read(&mut events, &mut sequence, options.events).await?;
            Ok(((), sequence.to_string()))
        })
        .await?;
    drop(events);

    let ws_url = report
        .step("WebSocket ticket", async {
            let url = api.ticket(&session, Transport::Ws).await?;
            cross_check(
                &url,
                endpoints.ws_api.as_ref(),
                "ws_api",
                "streaming.ws_url",
            )?;
            let shown = shown(&url);
            Ok((url, shown))
        })
        .await?;
    let mut socket = report
        .step(
            "open WebSocket",
            Box::pin(ws::connect(&clients.tls, &ws_url)),
        )
        .await?;
    let mut sequence = Sequence::new(Repeats::Drop);
    report
        .step("WebSocket heartbeat", async {
            let millis = socket.heartbeat(1, &mut sequence).await?;
            Ok(((), format!("heartbeat_ack for seq 1 in {millis} ms")))
        })
        .await?;
    report
        .step("WebSocket events", async {
            socket.events(&mut sequence, options.events).await?;
            Ok(((), sequence.to_string()))
        })
        .await?;
    socket.close().await;

    report
        .step("stop simulator", async {
            let stopped = api.stop_simulator(&session, &simulator).await?;
            match stopped.status {
                SimulatorStatus::Stopped | SimulatorStatus::Stopping => {
                    Ok(((), format!("{simulator} {}", stopped.status)))
                }
                status => Err(StepError::Check(format!(
                    "simulator {simulator} is {status}"
                ))),
            }
        })
        .await?;
    state.simulator_stopped = true;

    report
        .step("close session", async {
            let closed = api.close_session(&session).await?;
            match closed.status {
                SessionStatus::Closed => Ok(((), format!("{session} closed"))),
                SessionStatus::Active => Err(StepError::Check(format!(
                    "session {session} is still active"
                ))),
            }
        })
        .await?;
    state.session_closed = true;

    report
        .step("session reads closed", async {
            // A closed session is deleted: 404, told apart from an unknown one by its type.
            let read = api.closed_session(&session).await?;
            if read.type_ != "urn:session-service:problem:deleted" {
                return Err(StepError::Check(format!(
                    "session {session} reads {}, not deleted",
                    read.type_
                )));
            }
            Ok(((), format!("{session} deleted")))
        })
        .await
}

/// A ticket's URL must be under the endpoints file's `key`, when it has one: otherwise the
/// service's `setting` and the file describe different deployments.
fn cross_check(url: &Url, base: Option<&Url>, key: &str, setting: &str) -> Result<(), StepError> {
    match base {
        Some(base) if !is_under(url, base) => Err(StepError::Check(format!(
            "the ticket's URL {} is not under {key} {base} of the endpoints file (the service's \
             {setting} or the file is wrong)",
            shown(url)
        ))),
        _ => Ok(()),
    }
}

/// Best effort after a failure: stop the simulator and close the session.
async fn clean_up(report: &mut Report<'_, impl Write>, state: &State, failure: &Failure) {
    let Some(api) = &state.api else { return };
    if state.session_closed {
        return;
    }
    let session = match (&state.session, &state.idempotency_key) {
        (Some(session), _) => session.clone(),
        (None, Some(key)) if failure.timed_out => {
            // The create request may have been served with its answer late: the same key
            // returns that session (or creates one, closed right after).
            let found = report
                .clean_up("cleanup: find session", async {
                    let session = api.create_session(key).await?.session_id;
                    Ok((session.clone(), session))
                })
                .await;
            let Some(session) = found else { return };
            session
        }
        (None, _) => return,
    };
    if let (Some(simulator), false) = (&state.simulator, state.simulator_stopped) {
        report
            .clean_up("cleanup: stop simulator", async {
                let stopped = api.stop_simulator(&session, simulator).await?;
                Ok(((), format!("{simulator} {}", stopped.status)))
            })
            .await;
    }
    report
        .clean_up("cleanup: close session", async {
            let closed = api.close_session(&session).await?;
            Ok(((), format!("{session} {}", closed.status.as_str())))
        })
        .await;
}

/// Prints steps as they end.
struct Report<'o, W> {
    out: &'o mut W,
    deadline: Instant,
    timeout: Duration,
    passed: usize,
    /// The step under way and when it started.
    current: Option<(&'static str, Instant)>,
}

impl<W: Write> Report<'_, W> {
    /// Runs a step within the run's deadline and prints its line.
    async fn step<T>(
        &mut self,
        name: &'static str,
        work: impl Future<Output = Result<(T, String), StepError>>,
    ) -> Result<T, Failure> {
        let started = Instant::now();
        self.current = Some((name, started));
        let result = tokio::time::timeout_at(self.deadline, work)
            .await
            .unwrap_or(Err(StepError::Timeout(self.timeout)));
        self.current = None;
        let elapsed = started.elapsed();
        match result {
            Ok((value, detail)) => {
                self.passed += 1;
                self.line("ok", name, elapsed, &detail);
                Ok(value)
            }
            Err(e) => {
                let reason = e.to_string();
                self.line("FAIL", name, elapsed, &reason);
                Err(Failure {
                    step: name,
                    reason,
                    timed_out: matches!(e, StepError::Timeout(_)),
                })
            }
        }
    }

    /// The step under way fails: the run was interrupted.
    fn interrupted(&mut self) -> Failure {
        let (step, started) = self.current.take().unwrap_or(("start", Instant::now()));
        let reason = "interrupted (SIGINT)".to_owned();
        self.line("FAIL", step, started.elapsed(), &reason);
        Failure {
            step,
            reason,
            timed_out: false,
        }
    }

    /// Runs a clean-up call within [`CLEANUP_TIMEOUT`] (or the run's timeout, if shorter) and
    /// prints its line; `None` if it failed.
    async fn clean_up<T>(
        &mut self,
        name: &'static str,
        work: impl Future<Output = Result<(T, String), StepError>>,
    ) -> Option<T> {
        let started = Instant::now();
        let timeout = CLEANUP_TIMEOUT.min(self.timeout);
        let result = tokio::time::timeout(timeout, work)
            .await
            .unwrap_or(Err(StepError::Timeout(timeout)));
        match result {
            Ok((value, detail)) => {
                self.line("ok", name, started.elapsed(), &detail);
                Some(value)
            }
            Err(e) => {
                self.line("warn", name, started.elapsed(), &e.to_string());
                None
            }
        }
    }

    fn line(&mut self, status: &str, name: &str, elapsed: Duration, detail: &str) {
        let millis = elapsed.as_millis();
        self.say(&format!("{status:<4} {name:<24} {millis:>6} ms  {detail}"));
    }

    /// Prints a line. A closed stdout does not stop the run: its clean-up matters more.
    fn say(&mut self, line: &str) {
        let _ = writeln!(self.out, "{line}");
        let _ = self.out.flush();
    }
}
