//! Cold start and size of each Lambda binary (`rest-api`, `authorizer`).
//!
//! For every run: a fresh local Lambda Runtime API (the four endpoints the runtime client
//! calls) on a free loopback port, the release binary spawned with the environment Lambda
//! gives a function, and one event (a sample of `events/`). Measured: process start to the
//! first response received (cold start), and process start to the first poll of
//! `invocation/next` (init). The auth service the authorizer calls runs in this process.
//! `rest-api` runs twice: on the in-memory store, and configured for DynamoDB as in production
//! (the SDK client built at init; its first request needs no table).
//!
//! `cargo bench -p session-tests --bench cold_start` builds the release binaries first (with
//! `cargo build --release -p session-functions --bins`). `COLD_START_RUNS` sets the number of
//! measured runs per binary (default 50).

use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context as _, bail, ensure};
use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use session_local::auth::{AuthServer, AuthSettings};
use tokio::sync::{oneshot, watch};

/// Stands for a bearer token in `events/authorizer.json`.
const TOKEN_PLACEHOLDER: &str = "REPLACE_WITH_A_TOKEN";
/// Unmeasured runs first, so the binary is in the page cache as on a warm Lambda host.
const WARM_UP_RUNS: usize = 2;
/// A run that takes longer has hung.
const RUN_TIMEOUT: Duration = Duration::from_secs(20);
/// The Runtime API's base path.
const RUNTIME: &str = "/2018-06-01/runtime";

fn main() -> anyhow::Result<()> {
    // `cargo test --benches` runs bench targets without `--bench`: do nothing then.
    if !std::env::args().any(|a| a == "--bench") {
        return Ok(());
    }
    let runs = match std::env::var("COLD_START_RUNS") {
        Ok(n) => n.parse().context("COLD_START_RUNS must be a number")?,
        Err(_) => 50,
    };
    ensure!(runs > 0, "COLD_START_RUNS must be at least 1");
    let binaries = build_release_binaries()?;
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(bench(&binaries, runs))
}

async fn bench(binaries: &HashMap<String, PathBuf>, runs: usize) -> anyhow::Result<()> {
    let auth = AuthServer::spawn(AuthSettings::default())
        .await
        .context("spawning the auth service")?;
    let token = auth
        .auth()
        .issue("alice", &["sessions:read"], Duration::from_secs(3600))?;
    let events = session_tests::moto::repo_root().join("events");
    let rest_event = std::fs::read_to_string(events.join("sessions-list.json"))?;
    let authorizer_event =
        std::fs::read_to_string(events.join("authorizer.json"))?.replace(TOKEN_PLACEHOLDER, &token);

    let openapi_event = std::fs::read_to_string(events.join("openapi-get.json"))?;

    let functions = [
        Function {
            binary: "rest-api",
            label: "rest-api",
            event: rest_event,
            env: vec![],
            first_request: "GET /v1/sessions (events/sessions-list.json), in-memory store",
            accept: |r| r["statusCode"] == 200,
        },
        Function {
            binary: "rest-api",
            label: "rest-api (DynamoDB store)",
            event: openapi_event,
            // The production configuration: the SDK client is built at init. The first request
            // needs no table, so nothing listens at the endpoint.
            env: vec![
                ("SESSION_STORE__BACKEND", "dynamodb".to_owned()),
                ("SESSION_STORE__ENDPOINT", "http://127.0.0.1:9".to_owned()),
                ("AWS_REGION", "eu-west-1".to_owned()),
                ("AWS_ACCESS_KEY_ID", "bench".to_owned()),
                ("AWS_SECRET_ACCESS_KEY", "bench".to_owned()),
            ],
            first_request: "GET /v1/openapi.json (events/openapi-get.json), DynamoDB client built, not called",
            accept: |r| r["statusCode"] == 200,
        },
        Function {
            binary: "authorizer",
            label: "authorizer",
            event: authorizer_event,
            env: vec![("SESSION_BACKENDS__AUTH_URL", auth.endpoint())],
            first_request: "events/authorizer.json with a fresh token, auth service on loopback",
            accept: |r| r["isAuthorized"] == true,
        },
    ];
    let mut rows = Vec::new();
    for function in &functions {
        let binary = binaries
            .get(function.binary)
            .with_context(|| format!("cargo built no {} binary", function.binary))?;
        for _ in 0..WARM_UP_RUNS {
            run_once(binary, function).await?;
        }
        let mut samples = Vec::with_capacity(runs);
        for _ in 0..runs {
            samples.push(run_once(binary, function).await?);
        }
        let size = std::fs::metadata(binary)?.len();
        rows.push(Row::new(function, size, &samples));
    }
    report(&rows, runs);
    Ok(())
}

/// One Lambda function to start.
struct Function {
    /// Its binary in `functions/src/bin`.
    binary: &'static str,
    /// Its row in the report.
    label: &'static str,
    /// The event of its first (and only) invocation.
    event: String,
    /// Settings on top of the defaults (the in-memory store).
    env: Vec<(&'static str, String)>,
    first_request: &'static str,
    /// Whether the function's response is the success it should be.
    accept: fn(&serde_json::Value) -> bool,
}

/// The timings of one cold start.
#[derive(Debug, Clone, Copy)]
struct Sample {
    /// Process start to the first `invocation/next` poll.
    init: Duration,
    /// Process start to the first response received.
    first_response: Duration,
}

/// What the runtime client sent back for the invocation.
#[derive(Debug)]
enum Outcome {
    Response(String),
    Error(String),
    InitError(String),
}

/// The local Runtime API's state for one run: one event to hand out, and where to report.
struct RuntimeApi {
    event: Mutex<Option<String>>,
    polled: Mutex<Option<oneshot::Sender<Instant>>>,
    done: Mutex<Option<oneshot::Sender<(Instant, Outcome)>>>,
    /// Set when the run is over: a poll after the one event waits for it, then ends.
    stop: watch::Receiver<bool>,
}

fn take<T>(slot: &Mutex<Option<T>>) -> Option<T> {
    slot.lock().unwrap_or_else(PoisonError::into_inner).take()
}

impl RuntimeApi {
    fn finish(&self, outcome: Outcome) -> StatusCode {
        if let Some(done) = take(&self.done) {
            let _ = done.send((Instant::now(), outcome));
        }
        StatusCode::ACCEPTED
    }
}

async fn next(State(api): State<Arc<RuntimeApi>>) -> Response {
    if let Some(polled) = take(&api.polled) {
        let _ = polled.send(Instant::now());
    }
    let Some(event) = take(&api.event) else {
        // The one event is out: hold the poll (as Lambda does between invocations) until the
        // run ends and the process is gone.
        let mut stop = api.stop.clone();
        let _ = stop.wait_for(|stopped| *stopped).await;
        return StatusCode::GONE.into_response();
    };
    let now_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis());
    let headers = [
        (
            "lambda-runtime-aws-request-id",
            "8476a536-e9f4-11e8-9739-2dfe598c3fcd".to_owned(),
        ),
        ("lambda-runtime-deadline-ms", (now_ms + 30_000).to_string()),
        (
            "lambda-runtime-invoked-function-arn",
            "arn:aws:lambda:eu-west-1:123456789012:function:bench".to_owned(),
        ),
        (
            "lambda-runtime-trace-id",
            "Root=1-5bef4de7-ad49b0e87f6ef6c87fc2e700;Parent=9a9197af755a6419;Sampled=1".to_owned(),
        ),
        ("content-type", "application/json".to_owned()),
    ];
    let mut map = HeaderMap::new();
    for (name, value) in headers {
        map.insert(name, value.parse().expect("a valid header value"));
    }
    (map, event).into_response()
}

async fn response(State(api): State<Arc<RuntimeApi>>, body: String) -> StatusCode {
    api.finish(Outcome::Response(body))
}

async fn error(State(api): State<Arc<RuntimeApi>>, body: String) -> StatusCode {
    api.finish(Outcome::Error(body))
}

async fn init_error(State(api): State<Arc<RuntimeApi>>, body: String) -> StatusCode {
    api.finish(Outcome::InitError(body))
}

/// Starts the function once against a fresh Runtime API and times its first invocation.
async fn run_once(binary: &Path, function: &Function) -> anyhow::Result<Sample> {
    let (polled_tx, polled_rx) = oneshot::channel();
    let (done_tx, done_rx) = oneshot::channel();
    let (stop_tx, stop_rx) = watch::channel(false);
    let api = Arc::new(RuntimeApi {
        event: Mutex::new(Some(function.event.clone())),
        polled: Mutex::new(Some(polled_tx)),
        done: Mutex::new(Some(done_tx)),
        stop: stop_rx,
    });
    let router = Router::new()
        .route(&format!("{RUNTIME}/invocation/next"), get(next))
        .route(
            &format!("{RUNTIME}/invocation/{{id}}/response"),
            post(response),
        )
        .route(&format!("{RUNTIME}/invocation/{{id}}/error"), post(error))
        .route(&format!("{RUNTIME}/init/error"), post(init_error))
        .with_state(api);
    let listener = tokio::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await?;
    let addr = listener.local_addr()?;
    let mut stopped = stop_tx.subscribe();
    let server = tokio::spawn(
        axum::serve(listener, router)
            .with_graceful_shutdown(async move {
                let _ = stopped.wait_for(|s| *s).await;
            })
            .into_future(),
    );

    let mut command = Command::new(binary);
    command
        .env_clear()
        .env("AWS_LAMBDA_RUNTIME_API", addr.to_string())
        .env("AWS_LAMBDA_FUNCTION_NAME", function.binary)
        .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "128")
        .env("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
        .env("AWS_LAMBDA_LOG_STREAM_NAME", "2025/11/27/[$LATEST]bench")
        .env(
            "AWS_LAMBDA_LOG_GROUP_NAME",
            format!("/aws/lambda/{}", function.binary),
        )
        .envs(function.env.iter().map(|(k, v)| (*k, v.as_str())))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let started = Instant::now();
    let mut child = command
        .spawn()
        .with_context(|| format!("spawning {}", binary.display()))?;
    let finished = tokio::time::timeout(RUN_TIMEOUT, async {
        let polled = polled_rx.await;
        let done = done_rx.await;
        (polled, done)
    })
    .await;
    let _ = child.kill();
    let _ = child.wait();
    let _ = stop_tx.send(true);
    let _ = server.await;

    let Ok((Ok(polled), Ok((responded, outcome)))) = finished else {
        bail!("{} did not answer within {RUN_TIMEOUT:?}", function.label);
    };
    match outcome {
        Outcome::Response(body) => {
            let value: serde_json::Value = serde_json::from_str(&body)
                .with_context(|| format!("{} answered non-JSON: {body}", function.label))?;
            ensure!(
                (function.accept)(&value),
                "{} answered, but not with success: {body}",
                function.label
            );
        }
        Outcome::Error(body) => bail!("{} reported an invocation error: {body}", function.label),
        Outcome::InitError(body) => bail!("{} reported an init error: {body}", function.label),
    }
    Ok(Sample {
        init: polled - started,
        first_response: responded - started,
    })
}

/// Builds the release binaries and returns them by name, as cargo reports them.
fn build_release_binaries() -> anyhow::Result<HashMap<String, PathBuf>> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let root = session_tests::moto::repo_root();
    let output = Command::new(cargo)
        .current_dir(&root)
        .args([
            "build",
            "--release",
            "-p",
            "session-functions",
            "--bins",
            "--message-format=json-render-diagnostics",
        ])
        .stderr(Stdio::inherit())
        .output()
        .context("running cargo build --release")?;
    ensure!(
        output.status.success(),
        "cargo build --release -p session-functions --bins failed"
    );
    let mut binaries = HashMap::new();
    for line in String::from_utf8_lossy(&output.stdout).lines() {
        let Ok(message) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        if message["reason"] == "compiler-artifact"
            && let (Some(name), Some(path)) = (
                message["target"]["name"].as_str(),
                message["executable"].as_str(),
            )
        {
            binaries.insert(name.to_owned(), PathBuf::from(path));
        }
    }
    Ok(binaries)
}

/// One function's figures.
struct Row {
    label: &'static str,
    first_request: &'static str,
    size: u64,
    init_median: Duration,
    median: Duration,
    p90: Duration,
    min: Duration,
    max: Duration,
}

impl Row {
    fn new(function: &Function, size: u64, samples: &[Sample]) -> Self {
        let mut cold: Vec<Duration> = samples.iter().map(|s| s.first_response).collect();
        let mut init: Vec<Duration> = samples.iter().map(|s| s.init).collect();
        cold.sort_unstable();
        init.sort_unstable();
        Self {
            label: function.label,
            first_request: function.first_request,
            size,
            init_median: percentile(&init, 50),
            median: percentile(&cold, 50),
            p90: percentile(&cold, 90),
            min: cold[0],
            max: cold[cold.len() - 1],
        }
    }
}

/// The nearest-rank percentile of sorted, non-empty samples.
fn percentile(sorted: &[Duration], p: usize) -> Duration {
    let rank = (p * sorted.len()).div_ceil(100).max(1);
    sorted[rank - 1]
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
}

#[allow(clippy::print_stdout)] // The report is the benchmark's output.
fn report(rows: &[Row], runs: usize) {
    println!(
        "\nLambda cold start: {runs} runs per binary after {WARM_UP_RUNS} warm-up runs, {} CPUs\n",
        std::thread::available_parallelism().map_or(0, usize::from)
    );
    println!(
        "| binary | size (stripped) | init median | cold start median | p90 | min | max | first request |"
    );
    println!("| --- | --- | --- | --- | --- | --- | --- | --- |");
    for row in rows {
        println!(
            "| `{}` | {:.2} MB ({} bytes) | {} | {} | {} | {} | {} | {} |",
            row.label,
            row.size as f64 / 1_000_000.0,
            row.size,
            ms(row.init_median),
            ms(row.median),
            ms(row.p90),
            ms(row.min),
            ms(row.max),
            row.first_request,
        );
    }
}
