//! The local stack as a child process (`target/release/session-local`), the event source of
//! both targets and the home of the streamer, and the REST calls that start its simulators.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail, ensure};
use serde_json::{Value, json};

/// Symbols of every simulator: the payloads of both targets come from the same generator.
pub(crate) const SYMBOLS: [&str; 3] = ["BTC-USD", "ETH-USD", "AAPL"];
/// Seed of every simulator: every step of every target streams the same events.
pub(crate) const SEED: u64 = 42;
/// How long the stack may take to write its endpoints.
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// The `session-local` build the bench runs: `target/release/session-local` of this workspace.
pub(crate) fn default_binary() -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .unwrap_or_else(|| Path::new("target"))
        .join("release")
        .join("session-local")
}

/// Fails unless `binary` exists, saying how to build it.
pub(crate) fn check_binary(binary: &Path) -> anyhow::Result<()> {
    ensure!(
        binary.is_file(),
        "{} does not exist: build the local stack first with \
         `cargo build --release -p session-local` (the same CARGO_TARGET_DIR as this bench), \
         or name another build with --session-local PATH",
        binary.display()
    );
    Ok(())
}

/// The stack's endpoints (`--endpoints-file`).
#[derive(Debug, Clone)]
pub(crate) struct Endpoints {
    pub(crate) http_api: String,
    pub(crate) token_url: String,
    /// The streamer's base URL, once the streamer is part of the stack.
    pub(crate) sse: Option<String>,
}

/// A running `session-local`, with a dev token and one session; killed when dropped.
#[derive(Debug)]
pub(crate) struct Stack {
    child: Child,
    endpoints: Endpoints,
    http: reqwest::Client,
    token: String,
    session_id: String,
    log: PathBuf,
}

/// A simulator started through the REST API.
#[derive(Debug, Clone)]
pub(crate) struct Simulator {
    /// The service's id (`sim_...`), which the streamer's URL names.
    pub(crate) id: String,
}

impl Stack {
    /// Starts `binary` with every address on a free loopback port and waits for its endpoints;
    /// then mints a token and creates a session. `env`: more variables for the process.
    pub(crate) async fn start(
        binary: &Path,
        dir: &Path,
        env: &[(&str, String)],
    ) -> anyhow::Result<Self> {
        let endpoints_file = dir.join("endpoints.json");
        let log = dir.join("session-local.log");
        let out = File::create(&log)?;
        let mut command = Command::new(binary);
        // Every address flag (`--http-api <ADDR>`, `--sse <ADDR>`, ...) gets a free port.
        for flag in address_flags(binary)? {
            command.arg(flag).arg("127.0.0.1:0");
        }
        let child = command
            .arg("--endpoints-file")
            .arg(&endpoints_file)
            .env("RUST_LOG", "warn")
            // One user on one address opens every client: the bench measures the fan-out, not
            // the streamer's per-caller stream caps (docs/architecture.md, Admission control).
            .env("SESSION_STREAMER__MAX_STREAMS_PER_USER", "1000000")
            .env("SESSION_STREAMER__MAX_STREAMS_PER_ADDRESS", "1000000")
            .env("SESSION_STREAMER__MAX_CONNECTIONS", "1000000")
            // Nor the rate of SSE opens per user and per address: every client opens at once.
            .env("SESSION_RATE_LIMITS__SSE_CONNECT__PER_SECOND", "100000")
            .env("SESSION_RATE_LIMITS__SSE_CONNECT__BURST", "1000000")
            .env(
                "SESSION_RATE_LIMITS__CONNECT_PER_ADDRESS__PER_SECOND",
                "100000",
            )
            .env("SESSION_RATE_LIMITS__CONNECT_PER_ADDRESS__BURST", "1000000")
            .envs(env.iter().map(|(name, value)| (name, value)))
            .stdin(Stdio::null())
            .stdout(out.try_clone()?)
            .stderr(out)
            .spawn()
            .with_context(|| format!("starting {}", binary.display()))?;
        let mut stack = Self {
            child,
            endpoints: Endpoints {
                http_api: String::new(),
                token_url: String::new(),
                sse: None,
            },
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(30))
                .build()?,
            token: String::new(),
            session_id: String::new(),
            log,
        };
        stack.endpoints = stack.wait_for_endpoints(&endpoints_file).await?;
        stack.token = stack.mint_token().await?;
        stack.session_id = stack.create_session().await?;
        Ok(stack)
    }

    async fn wait_for_endpoints(&mut self, file: &Path) -> anyhow::Result<Endpoints> {
        let started = Instant::now();
        while !file.exists() {
            if let Some(status) = self.child.try_wait()? {
                bail!(
                    "session-local exited ({status}) before it was ready:\n{}",
                    self.log_tail()
                );
            }
            ensure!(
                started.elapsed() < START_TIMEOUT,
                "session-local wrote no endpoints within {START_TIMEOUT:?}:\n{}",
                self.log_tail()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let json: Value = serde_json::from_slice(&std::fs::read(file)?)
            .with_context(|| format!("reading {}", file.display()))?;
        let field = |name: &str| -> anyhow::Result<String> {
            json[name]
                .as_str()
                .map(str::to_owned)
                .with_context(|| format!("the endpoints file has no {name:?}"))
        };
        Ok(Endpoints {
            http_api: field("http_api")?,
            token_url: field("token_url")?,
            sse: json["sse"].as_str().map(str::to_owned),
        })
    }

    /// The last lines of the stack's log.
    pub(crate) fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }

    pub(crate) fn endpoints(&self) -> &Endpoints {
        &self.endpoints
    }

    /// The process id (the streamer's, since the stack embeds it).
    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The dev token every client presents.
    pub(crate) fn token(&self) -> &str {
        &self.token
    }

    pub(crate) fn session_id(&self) -> &str {
        &self.session_id
    }

    /// Fails if the stack has exited.
    pub(crate) fn check_alive(&mut self) -> anyhow::Result<()> {
        if let Some(status) = self.child.try_wait()? {
            bail!("session-local exited ({status}):\n{}", self.log_tail());
        }
        Ok(())
    }

    async fn mint_token(&self) -> anyhow::Result<String> {
        let answer: Value = self
            .call(
                self.http
                    .post(&self.endpoints.token_url)
                    .json(&json!({ "sub": "fanout-bench" })),
            )
            .await
            .context("minting a dev token")?;
        answer["token"]
            .as_str()
            .map(str::to_owned)
            .context("the token answer has no token")
    }

    async fn create_session(&self) -> anyhow::Result<String> {
        let answer = self
            .call(
                self.http
                    .post(format!("{}/v1/sessions", self.endpoints.http_api))
                    .bearer_auth(&self.token)
                    .json(&json!({ "name": "fanout benchmark" })),
            )
            .await
            .context("creating a session")?;
        answer["session_id"]
            .as_str()
            .map(str::to_owned)
            .context("the session has no session_id")
    }

    /// Starts a simulator of [`SYMBOLS`] at `events_per_second` in the session.
    pub(crate) async fn start_simulator(
        &self,
        events_per_second: u32,
    ) -> anyhow::Result<Simulator> {
        let answer = self
            .call(
                self.http
                    .post(format!(
                        "{}/v1/sessions/{}/simulators",
                        self.endpoints.http_api, self.session_id
                    ))
                    .bearer_auth(&self.token)
                    .json(&json!({
                        "symbols": SYMBOLS,
                        "events_per_second": events_per_second,
                        "seed": SEED,
                    })),
            )
            .await
            .context("starting a simulator")?;
        let status = answer["status"].as_str().unwrap_or_default();
        ensure!(
            status == "running" || status == "starting",
            "the simulator is {status}: {}",
            answer["reason"]
        );
        Ok(Simulator {
            id: answer["simulator_id"]
                .as_str()
                .context("the simulator has no simulator_id")?
                .to_owned(),
        })
    }

    /// Stops a simulator (its slot in the session's quota is free again).
    pub(crate) async fn stop_simulator(&self, simulator: &Simulator) -> anyhow::Result<()> {
        self.call(
            self.http
                .delete(format!(
                    "{}/v1/sessions/{}/simulators/{}",
                    self.endpoints.http_api, self.session_id, simulator.id
                ))
                .bearer_auth(&self.token),
        )
        .await
        .map(drop)
        .with_context(|| format!("stopping simulator {}", simulator.id))
    }

    async fn call(&self, request: reqwest::RequestBuilder) -> anyhow::Result<Value> {
        let response = request.send().await?;
        let status = response.status();
        let body = response.text().await?;
        ensure!(status.is_success(), "answered {status}: {body}");
        Ok(serde_json::from_str(&body).unwrap_or(Value::Null))
    }
}

impl Drop for Stack {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The flags of `binary --help` that take an address (`--http-api <ADDR>`).
fn address_flags(binary: &Path) -> anyhow::Result<Vec<String>> {
    let help = Command::new(binary)
        .arg("--help")
        .output()
        .with_context(|| format!("running {} --help", binary.display()))?;
    let text = String::from_utf8_lossy(&help.stdout);
    let flags: Vec<String> = text
        .lines()
        .filter(|line| line.contains("<ADDR>"))
        .filter_map(|line| {
            line.split_whitespace()
                .find(|word| word.starts_with("--"))
                .map(|flag| flag.trim_end_matches(',').to_owned())
        })
        .collect();
    ensure!(
        flags.iter().any(|f| f == "--http-api"),
        "{} --help lists no --http-api <ADDR>: is it session-local?",
        binary.display()
    );
    Ok(flags)
}
