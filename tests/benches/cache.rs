//! DynamoDB reads per REST call (`GET /v1/sessions/{id}`) and per WebSocket heartbeat, and
//! their latency, with the cache layer off and on, in one run on moto's DynamoDB server.
//!
//! `AWS_CALL_LOG=target/cache-calls.jsonl cargo bench -p session-tests --bench cache` (about
//! 20 s). Reads are counted from moto's call log (`scripts/moto_server.py` appends one line per
//! request, naming the calling component): `GetItem` and `Query` of the run's table, by
//! `rest-api` for the REST calls and by `ws-handler` for the heartbeats. Flags after `--`:
//! `--calls 300` (REST calls per setting), `--heartbeats 100` (per setting), `--every-ms 10`
//! (pace of both), `--out PATH` (default `target/cache.md`). Everything runs in this process
//! (the local stack on DynamoDB, one client) on loopback; the rate limits are lifted so the
//! pace is the bench's.

#![allow(clippy::print_stdout)]

use std::fmt::Write as _;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail, ensure};
use clap::Parser;
use hdrhistogram::Histogram;
use session_core::config::{RateQuota, StoreBackend};
use session_tests::test_api::{ConnectedSocket, TestApi};

#[derive(Debug, Parser)]
struct Args {
    /// `GET /v1/sessions/{id}` calls measured per setting.
    #[arg(long, default_value_t = 300)]
    calls: u32,
    /// Heartbeats measured per setting.
    #[arg(long, default_value_t = 100)]
    heartbeats: u32,
    /// Milliseconds between two requests.
    #[arg(long, default_value_t = 10)]
    every_ms: u64,
    /// Where to write the Markdown table (default: `target/cache.md` of the workspace).
    #[arg(long)]
    out: Option<String>,
    /// Passed by `cargo bench`.
    #[arg(long, hide = true)]
    bench: bool,
}

/// The reads `component` made on `table` so far, from moto's call log at `log`.
fn reads(log: &str, table: &str, component: &str) -> anyhow::Result<u64> {
    let text = std::fs::read_to_string(log).with_context(|| format!("reading {log}"))?;
    Ok(text
        .lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter(|call| {
            call["component"].as_str() == Some(component)
                && call["params"]["TableName"].as_str() == Some(table)
                && matches!(call["operation"].as_str(), Some("GetItem" | "Query"))
        })
        .count() as u64)
}

/// What one setting measured.
struct Measured {
    rest: Histogram<u64>,
    rest_reads: u64,
    heartbeat: Histogram<u64>,
    heartbeat_reads: u64,
}

async fn measure(args: &Args, log: &str, cache: bool) -> anyhow::Result<Measured> {
    let table = format!(
        "bench-cache-{}",
        ulid::Ulid::new().to_string().to_lowercase()
    );
    let api = TestApi::spawn_with(|s| {
        s.store.backend = StoreBackend::Dynamodb;
        s.store.endpoint = Some(session_tests::moto::Moto::shared().endpoint().to_owned());
        s.store.table_name.clone_from(&table);
        s.cache.enabled = cache;
        let lifted = RateQuota {
            per_second: 100_000,
            burst: 1_000_000,
        };
        s.rate_limits.reads = lifted;
        s.rate_limits.per_address = lifted;
        s.rate_limits.ws_messages = lifted;
    })
    .await;
    let mut connected = ConnectedSocket::open(&api, "alice").await;
    let path = format!("/v1/sessions/{}", connected.session);
    let pace = Duration::from_millis(args.every_ms);

    // Warm-up (unmeasured): the first read of each item fills the cache.
    for _ in 0..10 {
        ensure!(connected.user.get(&path).await.status.is_success());
    }
    let before = reads(log, &table, "rest-api")?;
    let mut rest = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)?;
    for _ in 0..args.calls {
        let started = Instant::now();
        let answer = connected.user.get(&path).await;
        rest.record(started.elapsed().as_micros().max(1) as u64)?;
        ensure!(answer.status.is_success(), "{answer:?}");
        tokio::time::sleep(pace).await;
    }
    let rest_reads = reads(log, &table, "rest-api")? - before;

    let mut heartbeat = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)?;
    let mut heartbeat_reads = 0;
    for seq in 1..=u64::from(10 + args.heartbeats) {
        if seq == 11 {
            heartbeat_reads = reads(log, &table, "ws-handler")?;
        }
        let frame =
            serde_json::json!({"action": "heartbeat", "seq": seq, "client_time": 1_000 * seq});
        let started = Instant::now();
        session_tests::ws::send(&mut connected.socket, &frame).await;
        // The acknowledgement (other frames, such as market events, are skipped).
        loop {
            let Some(message) =
                session_tests::ws::next_message(&mut connected.socket, Duration::from_secs(5))
                    .await
            else {
                bail!("the socket closed before heartbeat {seq} was acknowledged");
            };
            if message.to_string().contains("\"heartbeat_ack\"") {
                break;
            }
        }
        if seq > 10 {
            heartbeat.record(started.elapsed().as_micros().max(1) as u64)?;
        }
        tokio::time::sleep(pace).await;
    }
    heartbeat_reads = reads(log, &table, "ws-handler")? - heartbeat_reads;
    api.stack.shutdown().await?;
    Ok(Measured {
        rest,
        rest_reads,
        heartbeat,
        heartbeat_reads,
    })
}

fn ms(micros: u64) -> String {
    format!("{:.2} ms", micros as f64 / 1000.0)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let Ok(log) = std::env::var("AWS_CALL_LOG") else {
        bail!("set AWS_CALL_LOG to a file: the reads are counted from moto's call log");
    };
    let mut table = String::from(
        "| cache | reads per GET /v1/sessions/{id} | its median | p99 | reads per heartbeat | its median | p99 |\n\
         | --- | ---: | ---: | ---: | ---: | ---: | ---: |\n",
    );
    for cache in [false, true] {
        let m = measure(&args, &log, cache).await?;
        writeln!(
            table,
            "| {} | {:.2} | {} | {} | {:.2} | {} | {} |",
            if cache { "on (in process)" } else { "off" },
            m.rest_reads as f64 / f64::from(args.calls),
            ms(m.rest.value_at_quantile(0.5)),
            ms(m.rest.value_at_quantile(0.99)),
            m.heartbeat_reads as f64 / f64::from(args.heartbeats),
            ms(m.heartbeat.value_at_quantile(0.5)),
            ms(m.heartbeat.value_at_quantile(0.99)),
        )?;
    }
    println!("{table}");
    let out = args
        .out
        .clone()
        .unwrap_or_else(|| format!("{}/../target/cache.md", env!("CARGO_MANIFEST_DIR")));
    std::fs::write(&out, &table).with_context(|| format!("writing {out}"))?;
    println!("written to {out}");
    Ok(())
}
