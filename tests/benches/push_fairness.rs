//! `@connections` fairness, measured: the push latency (simulator emit to WebSocket receipt) of
//! a session's connections with one more connection whose posts fail slowly, and without it,
//! at the default post permits and at one, in one run.
//!
//! `cargo bench -p session-tests --bench push_fairness` (about 40 s). The streamer posts through
//! an HTTP server on loopback that passes calls on to the local WebSocket API emulator, except
//! those of the slow connection (when present): each is answered 500 after `--slow-ms 300`, so
//! the streamer retries it for ~8 s, gives it up and closes it. Flags after `--`: `--clients 6`
//! (measured connections), `--rate 200` (events/s), `--secs 5` (measured, after a 1 s
//! warm-up), `--permits 64,1` (`streamer.push_max_concurrent_posts`), `--out PATH` (default
//! `target/push_fairness.md`). Everything runs in this process, on the in-memory store.

#![allow(clippy::print_stdout)]

use std::fmt::Write as _;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context as _, bail};
use clap::Parser;
use futures_util::StreamExt as _;
use hdrhistogram::Histogram;
use serde_json::{Value, json};
use session_tests::slow_connections::SlowConnections;
use session_tests::stream_fixture::Fixture;
use tokio_tungstenite::tungstenite::Message;

#[derive(Debug, Parser)]
struct Args {
    /// Measured WebSocket connections (the slow one comes beside them).
    #[arg(long, default_value_t = 6)]
    clients: usize,
    /// The simulator's events per second.
    #[arg(long, default_value_t = 200)]
    rate: u32,
    /// Seconds measured, after a 1 s warm-up.
    #[arg(long, default_value_t = 5)]
    secs: u64,
    /// How long the slow connection's posts take to fail, in milliseconds.
    #[arg(long, default_value_t = 300)]
    slow_ms: u64,
    /// `streamer.push_max_concurrent_posts` values to measure.
    #[arg(long, value_delimiter = ',', default_values_t = [64_u32, 1])]
    permits: Vec<u32>,
    /// Where to write the Markdown table (default: `target/push_fairness.md` of the workspace).
    #[arg(long)]
    out: Option<String>,
    /// Passed by `cargo bench`.
    #[arg(long, hide = true)]
    bench: bool,
}

/// A ticket's WebSocket URL for the fixture's session.
async fn ws_url(fixture: &Fixture) -> anyhow::Result<String> {
    let answer = fixture
        .user
        .post(
            &format!("/v1/sessions/{}/tickets", fixture.session),
            &json!({ "transport": "ws" }),
        )
        .await;
    Ok(answer.body["url"]
        .as_str()
        .context("a WebSocket URL")?
        .to_owned())
}

/// One run: the other connections' latency histogram (microseconds) and the slow connection's
/// post attempts.
async fn measure(args: &Args, permits: u32, slow: bool) -> anyhow::Result<(Histogram<u64>, u32)> {
    let (url, endpoint) =
        SlowConnections::serve(slow.then(|| Duration::from_millis(args.slow_ms))).await;
    let fixture = Fixture::start_stack(&["BTC-USD", "ETH-USD"], args.rate, |s| {
        s.streamer.push_poll_ms = Duration::from_millis(100);
        s.streamer.push_max_concurrent_posts = permits;
        s.streamer.connections_url = Some(url);
        s.service.limits.connections_per_session = u32::try_from(args.clients + 2).unwrap_or(8);
    })
    .await;
    endpoint.forward_to(&fixture);
    let mut slow_socket = None;
    if slow {
        let (socket, _) = tokio_tungstenite::connect_async(ws_url(&fixture).await?).await?;
        slow_socket = Some(socket);
        let waited = Instant::now();
        while endpoint.attempts() == 0 {
            if waited.elapsed() > Duration::from_secs(10) {
                bail!("the streamer never posted to the slow connection");
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
    let start = Instant::now() + Duration::from_secs(1);
    let end = start + Duration::from_secs(args.secs);
    let mut readers = Vec::new();
    for _ in 0..args.clients {
        let url = ws_url(&fixture).await?;
        readers.push(tokio::spawn(read(url, start, end)));
    }
    let mut latency = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)?;
    for reader in readers {
        latency.add(reader.await??)?;
    }
    drop(slow_socket);
    let attempts = endpoint.attempts();
    fixture.api.stack.shutdown().await?;
    if latency.is_empty() {
        bail!("no events measured (permits {permits}, slow {slow})");
    }
    Ok((latency, attempts))
}

/// Reads a WebSocket connection's events until `end`; the latency of those after `start`.
async fn read(url: String, start: Instant, end: Instant) -> anyhow::Result<Histogram<u64>> {
    let (mut socket, _) = tokio_tungstenite::connect_async(&url).await?;
    let mut latency = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)?;
    while let Ok(Some(frame)) = tokio::time::timeout_at(end.into(), socket.next()).await {
        let Message::Text(text) = frame? else {
            continue;
        };
        if Instant::now() < start {
            continue;
        }
        let message: Value = serde_json::from_str(&text)?;
        let now = SystemTime::now().duration_since(UNIX_EPOCH)?.as_nanos();
        for event in message["events"].as_array().into_iter().flatten() {
            if let Some(emit) = event["data"]["emit_ns"].as_u64() {
                let micros = (now.saturating_sub(u128::from(emit)) / 1_000).max(1);
                latency.record(u64::try_from(micros)?.min(60_000_000))?;
            }
        }
    }
    Ok(latency)
}

fn ms(micros: u64) -> String {
    format!("{:.1}", micros as f64 / 1000.0)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let mut table = format!(
        "```sh\ncargo bench -p session-tests --bench push_fairness -- --clients {} --rate {} --secs {} --slow-ms {} --permits {}\n```\n\n\
         | `push_max_concurrent_posts` | slow connection | others' p50 / p99 (ms) | p99 vs without | slow posts meanwhile |\n\
         | ---: | --- | ---: | ---: | ---: |\n",
        args.clients,
        args.rate,
        args.secs,
        args.slow_ms,
        args.permits
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(","),
    );
    for &permits in &args.permits {
        let (without, _) = measure(&args, permits, false).await?;
        let (with, attempts) = measure(&args, permits, true).await?;
        let p99 = |h: &Histogram<u64>| h.value_at_quantile(0.99);
        for (label, h, ratio, attempts) in [
            ("absent", &without, String::from("1.0×"), String::from("–")),
            (
                "present",
                &with,
                format!("{:.1}×", p99(&with) as f64 / p99(&without).max(1) as f64),
                attempts.to_string(),
            ),
        ] {
            let row = format!(
                "| {permits} | {label} | {} / {} | {ratio} | {attempts} |",
                ms(h.value_at_quantile(0.5)),
                ms(p99(h)),
            );
            println!("{row}");
            writeln!(table, "{row}")?;
        }
    }
    println!("\n{table}");
    let out = args
        .out
        .clone()
        .unwrap_or_else(|| format!("{}/../target/push_fairness.md", env!("CARGO_MANIFEST_DIR")));
    std::fs::write(&out, &table).with_context(|| format!("writing {out}"))?;
    println!("written to {out}");
    Ok(())
}
