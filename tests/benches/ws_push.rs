//! The streamer's WebSocket push through the local API Gateway WebSocket emulator, at high and
//! low event rates: events per `PostToConnection` call, the latency it adds over SSE (the same
//! events, read in the same run from the same streamer), and the calls per second it makes.
//!
//! `cargo bench -p session-tests --bench ws_push` (about a minute). Flags after `--`:
//! `--rates 100,1000,5000` (events/s of the simulator), `--clients 10` (WebSocket clients, and as
//! many SSE clients), `--secs 8` (measured), `--out PATH` (default `target/ws_push.md`).
//! Everything runs in this process: the local stack (on the in-memory store), the clients.

#![allow(clippy::print_stdout)]

use std::fmt::Write as _;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context as _, bail};
use clap::Parser;
use futures_util::StreamExt as _;
use hdrhistogram::Histogram;
use serde_json::{Value, json};
use session_core::config::Settings;
use session_local::stack::{Stack, StackSettings};
use tokio_tungstenite::tungstenite::Message;

#[derive(Debug, Parser)]
struct Args {
    /// Simulator rates to measure, events/s.
    #[arg(long, value_delimiter = ',', default_values_t = [100_u32, 1_000, 5_000])]
    rates: Vec<u32>,
    /// WebSocket clients (and as many SSE clients) per rate.
    #[arg(long, default_value_t = 10)]
    clients: usize,
    /// Seconds measured per rate, after a 2 s warm-up.
    #[arg(long, default_value_t = 8)]
    secs: u64,
    /// Where to write the Markdown table (default: `target/ws_push.md` of the workspace).
    #[arg(long)]
    out: Option<String>,
    /// Passed by `cargo bench`.
    #[arg(long, hide = true)]
    bench: bool,
}

/// What the clients of one transport saw during the window.
#[derive(Debug)]
struct Seen {
    events: u64,
    messages: u64,
    latency: Histogram<u64>,
}

impl Seen {
    fn new() -> Self {
        Self {
            events: 0,
            messages: 0,
            latency: Histogram::new_with_bounds(1, 60_000_000, 3).expect("histogram bounds"),
        }
    }

    fn record(&mut self, data: &Value) {
        let Some(emit) = data["emit_ns"].as_i64() else {
            return;
        };
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as i64);
        self.events += 1;
        let micros = ((now - emit) / 1_000).max(1) as u64;
        let _ = self.latency.record(micros.min(60_000_000));
    }

    fn ms(&self, quantile: f64) -> f64 {
        self.latency.value_at_quantile(quantile) as f64 / 1_000.0
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let mut service = Settings::default();
    service.limits.connections_per_session = u32::try_from(args.clients * 2 + 4)?;
    let stack = Stack::start(StackSettings::ephemeral(service))
        .await
        .context("starting the local stack")?;
    let mut rows = Vec::new();
    for &rate in &args.rates {
        let (ws, sse) = measure(&stack, rate, &args).await?;
        println!(
            "rate {rate}: ws {} events in {} calls, p50 {:.1} p99 {:.1} ms; sse p50 {:.1} p99 {:.1} ms",
            ws.events,
            ws.messages,
            ws.ms(0.5),
            ws.ms(0.99),
            sse.ms(0.5),
            sse.ms(0.99)
        );
        rows.push((rate, ws, sse));
    }
    let secs = args.secs as f64;
    let mut table = format!(
        "```sh\ncargo bench -p session-tests --bench ws_push -- --rates {} --clients {} --secs {}\n```\n\n\
         | events/s per session | events per call | calls/s (all {} connections) | WebSocket p50 / p99 (ms) | SSE p50 / p99 (ms) | added p50 / p99 (ms) |\n\
         | ---: | ---: | ---: | ---: | ---: | ---: |\n",
        args.rates
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(","),
        args.clients,
        args.secs,
        args.clients
    );
    for (rate, ws, sse) in &rows {
        let _ = writeln!(
            table,
            "| {rate} | {:.1} | {:.0} | {:.1} / {:.1} | {:.1} / {:.1} | {:.1} / {:.1} |",
            ws.events as f64 / ws.messages.max(1) as f64,
            ws.messages as f64 / secs,
            ws.ms(0.5),
            ws.ms(0.99),
            sse.ms(0.5),
            sse.ms(0.99),
            ws.ms(0.5) - sse.ms(0.5),
            ws.ms(0.99) - sse.ms(0.99),
        );
    }
    let out = args
        .out
        .clone()
        .unwrap_or_else(|| format!("{}/../target/ws_push.md", env!("CARGO_MANIFEST_DIR")));
    std::fs::write(&out, &table).with_context(|| format!("writing {out}"))?;
    println!("\n{table}");
    stack.shutdown().await?;
    Ok(())
}

/// One rate: a fresh session and simulator, `clients` WebSocket and `clients` SSE clients.
async fn measure(stack: &Stack, rate: u32, args: &Args) -> anyhow::Result<(Seen, Seen)> {
    let http = reqwest::Client::new();
    let base = &stack.endpoints().http_api;
    let auth = format!("Bearer {}", stack.token("bench"));
    let post = |path: String, body: Value| {
        let request = http
            .post(format!("{base}{path}"))
            .header("authorization", &auth)
            .json(&body);
        async move {
            let answer: Value = request.send().await?.json().await?;
            anyhow::Ok(answer)
        }
    };
    let session = post("/v1/sessions".into(), json!({})).await?["session_id"]
        .as_str()
        .context("a session id")?
        .to_owned();
    post(
        format!("/v1/sessions/{session}/simulators"),
        json!({ "symbols": ["BTC-USD", "ETH-USD"], "seed": 3, "events_per_second": rate }),
    )
    .await?;
    tokio::time::sleep(Duration::from_millis(500)).await;

    let start = Instant::now() + Duration::from_secs(2);
    let end = start + Duration::from_secs(args.secs);
    let mut tasks = Vec::new();
    for _ in 0..args.clients {
        let ws = post(
            format!("/v1/sessions/{session}/tickets"),
            json!({ "transport": "ws" }),
        )
        .await?["url"]
            .as_str()
            .context("a WebSocket URL")?
            .to_owned();
        tasks.push(tokio::spawn(read_ws(ws, start, end)));
        let sse = post(
            format!("/v1/sessions/{session}/tickets"),
            json!({ "transport": "sse" }),
        )
        .await?["url"]
            .as_str()
            .context("an SSE URL")?
            .to_owned();
        tasks.push(tokio::spawn(read_sse(sse, start, end)));
    }
    let (mut ws, mut sse) = (Seen::new(), Seen::new());
    for (i, task) in tasks.into_iter().enumerate() {
        let seen = task.await??;
        let into = if i % 2 == 0 { &mut ws } else { &mut sse };
        into.events += seen.events;
        into.messages += seen.messages;
        into.latency.add(&seen.latency)?;
    }
    if ws.events == 0 || sse.events == 0 {
        bail!(
            "no events at {rate} events/s (ws {}, sse {})",
            ws.events,
            sse.events
        );
    }
    Ok((ws, sse))
}

async fn read_ws(url: String, start: Instant, end: Instant) -> anyhow::Result<Seen> {
    let (mut socket, _) = tokio_tungstenite::connect_async(&url).await?;
    let mut seen = Seen::new();
    while Instant::now() < end {
        let Ok(Some(frame)) = tokio::time::timeout_at(end.into(), socket.next()).await else {
            break;
        };
        let Message::Text(text) = frame? else {
            continue;
        };
        if Instant::now() < start {
            continue;
        }
        let message: Value = serde_json::from_str(&text)?;
        if message["type"] != "events" {
            continue;
        }
        seen.messages += 1;
        for event in message["events"].as_array().into_iter().flatten() {
            seen.record(&event["data"]);
        }
    }
    Ok(seen)
}

async fn read_sse(url: String, start: Instant, end: Instant) -> anyhow::Result<Seen> {
    let mut response = reqwest::get(&url).await?;
    let mut seen = Seen::new();
    let mut buffer = Vec::new();
    while let Ok(Ok(Some(chunk))) = tokio::time::timeout_at(end.into(), response.chunk()).await {
        buffer.extend_from_slice(&chunk);
        while let Some(at) = buffer.windows(2).position(|w| w == b"\n\n") {
            let frame: Vec<u8> = buffer.drain(..at + 2).collect();
            if Instant::now() < start {
                continue;
            }
            let text = String::from_utf8_lossy(&frame);
            if let Some(data) = text.lines().find_map(|l| l.strip_prefix("data: ")) {
                seen.record(&serde_json::from_str(data)?);
            }
        }
    }
    Ok(seen)
}
