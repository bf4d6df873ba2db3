//! The DynamoDB client's connection pool (`store.pool_max_idle_per_host`), sized: REST and
//! heartbeat latency p50/p99 and the DynamoDB connections opened under a steady concurrent
//! load, for a few pool sizes, in one run on moto's DynamoDB server.
//!
//! `cargo bench -p session-tests --bench pools` (about three minutes). Connections are counted
//! by an HTTP proxy in front of moto that keeps connections alive as DynamoDB does (moto closes
//! each after its answer) and counts those it accepts. Per pool size: `--clients 8` REST
//! clients, each making `--calls 100` `GET /v1/sessions/{id}` calls `--every-ms 20` apart, while
//! one WebSocket client heartbeats at the same pace; the cache layer is off (every call reads
//! DynamoDB) and the rate limits lifted. Flags after `--`: `--pools 1,8,32`, `--out PATH`
//! (default `target/pools.md`). Medians of `--runs 3` runs per size.

#![allow(clippy::print_stdout)]

use std::fmt::Write as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail, ensure};
use axum::body::Bytes;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::IntoResponse as _;
use clap::Parser;
use hdrhistogram::Histogram;
use session_core::config::{RateQuota, StoreBackend};
use session_tests::test_api::{ConnectedSocket, TestApi};

#[derive(Debug, Parser)]
struct Args {
    /// `store.pool_max_idle_per_host` values to measure.
    #[arg(long, value_delimiter = ',', default_values_t = [1_u32, 8, 32])]
    pools: Vec<u32>,
    /// Concurrent REST clients.
    #[arg(long, default_value_t = 8)]
    clients: u32,
    /// Calls per REST client (and heartbeats of the WebSocket client).
    #[arg(long, default_value_t = 100)]
    calls: u32,
    /// Milliseconds between two calls of one client.
    #[arg(long, default_value_t = 20)]
    every_ms: u64,
    /// Runs per pool size (medians are reported).
    #[arg(long, default_value_t = 3)]
    runs: usize,
    /// Where to write the Markdown table (default: `target/pools.md` of the workspace).
    #[arg(long)]
    out: Option<String>,
    /// Passed by `cargo bench`.
    #[arg(long, hide = true)]
    bench: bool,
}

/// An HTTP/1.1 proxy on loopback in front of `upstream` (moto's URL) that counts the
/// connections the client opens to it; its URL. moto closes its connection after every answer,
/// so connections to it cannot show a pool; this proxy keeps the client's connections open as
/// DynamoDB does, and makes its own calls to moto.
async fn counting_proxy(upstream: String, accepted: Arc<AtomicU64>) -> anyhow::Result<String> {
    use axum::serve::ListenerExt as _;
    let http = reqwest::Client::new();
    let router = axum::Router::new().fallback(
        move |method: Method, uri: Uri, mut headers: HeaderMap, body: Bytes| {
            let (http, upstream) = (http.clone(), upstream.clone());
            async move {
                let path = uri.path_and_query().map_or("/", |p| p.as_str());
                headers.remove("host");
                headers.remove("content-length");
                let Ok(answer) = http
                    .request(method, format!("{upstream}{path}"))
                    .headers(headers)
                    .body(body)
                    .send()
                    .await
                else {
                    return StatusCode::BAD_GATEWAY.into_response();
                };
                let status = answer.status();
                let mut headers = answer.headers().clone();
                for hop in ["content-length", "transfer-encoding", "connection"] {
                    headers.remove(hop);
                }
                let body = answer.bytes().await.unwrap_or_default();
                (status, headers, body).into_response()
            }
        },
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let listener = listener.tap_io(move |_| {
        accepted.fetch_add(1, Ordering::Relaxed);
    });
    tokio::spawn(async move { axum::serve(listener, router).await });
    Ok(format!("http://{addr}"))
}

/// What one run measured.
struct Measured {
    rest: Histogram<u64>,
    heartbeat: Histogram<u64>,
    /// Connections to DynamoDB opened during the measured load (not at start-up).
    opened: u64,
}

async fn measure(args: &Args, pool: u32) -> anyhow::Result<Measured> {
    let moto = session_tests::moto::Moto::shared().endpoint();
    let upstream = moto.trim_end_matches('/').to_owned();
    let accepted = Arc::new(AtomicU64::new(0));
    let endpoint = counting_proxy(upstream, Arc::clone(&accepted)).await?;
    let table = format!(
        "bench-pools-{}",
        ulid::Ulid::new().to_string().to_lowercase()
    );
    let api = TestApi::spawn_with(|s| {
        s.store.backend = StoreBackend::Dynamodb;
        s.store.endpoint = Some(endpoint);
        s.store.table_name.clone_from(&table);
        s.store.pool_max_idle_per_host = pool;
        s.cache.enabled = false;
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
    // Warm-up (unmeasured): every component has made its first calls.
    for _ in 0..5 {
        ensure!(connected.user.get(&path).await.status.is_success());
    }
    let before = accepted.load(Ordering::Relaxed);

    let rest_clients = (0..args.clients).map(|_| {
        let (user, path) = (api.user("alice"), path.clone());
        async move {
            let mut latency = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)?;
            for _ in 0..args.calls {
                let started = Instant::now();
                let answer = user.get(&path).await;
                latency.record(started.elapsed().as_micros().max(1) as u64)?;
                ensure!(answer.status.is_success(), "{answer:?}");
                tokio::time::sleep(pace).await;
            }
            anyhow::Ok(latency)
        }
    });
    let socket = &mut connected.socket;
    let heartbeats = async move {
        let mut latency = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)?;
        for seq in 1..=u64::from(args.calls) {
            let frame =
                serde_json::json!({"action": "heartbeat", "seq": seq, "client_time": 1_000 * seq});
            let started = Instant::now();
            session_tests::ws::send(socket, &frame).await;
            loop {
                let Some(message) =
                    session_tests::ws::next_message(socket, Duration::from_secs(10)).await
                else {
                    bail!("the socket closed before heartbeat {seq} was acknowledged");
                };
                if message.to_string().contains("\"heartbeat_ack\"") {
                    break;
                }
            }
            latency.record(started.elapsed().as_micros().max(1) as u64)?;
            tokio::time::sleep(pace).await;
        }
        anyhow::Ok(latency)
    };
    let (rests, heartbeat) = tokio::join!(futures_util::future::join_all(rest_clients), heartbeats);
    let opened = accepted.load(Ordering::Relaxed) - before;
    let mut rest = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)?;
    for one in rests {
        rest.add(one?)?;
    }
    let heartbeat = heartbeat?;
    api.stack.shutdown().await?;
    Ok(Measured {
        rest,
        heartbeat,
        opened,
    })
}

fn ms(micros: u64) -> String {
    format!("{:.1}", micros as f64 / 1000.0)
}

/// The median of `values`.
fn median(mut values: Vec<u64>) -> u64 {
    values.sort_unstable();
    values[values.len() / 2]
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let mut table = format!(
        "```sh\ncargo bench -p session-tests --bench pools -- --pools {} --clients {} --calls {} --every-ms {} --runs {}\n```\n\n\
         | `store.pool_max_idle_per_host` | REST p50 / p99 (ms) | heartbeat p50 / p99 (ms) | DynamoDB connections opened |\n\
         | ---: | ---: | ---: | ---: |\n",
        args.pools
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(","),
        args.clients,
        args.calls,
        args.every_ms,
        args.runs,
    );
    for &pool in &args.pools {
        let mut runs = Vec::new();
        for _ in 0..args.runs {
            runs.push(measure(&args, pool).await?);
        }
        let of = |f: &dyn Fn(&Measured) -> u64| median(runs.iter().map(f).collect());
        let row = format!(
            "| {pool} | {} / {} | {} / {} | {} |",
            ms(of(&|m| m.rest.value_at_quantile(0.5))),
            ms(of(&|m| m.rest.value_at_quantile(0.99))),
            ms(of(&|m| m.heartbeat.value_at_quantile(0.5))),
            ms(of(&|m| m.heartbeat.value_at_quantile(0.99))),
            of(&|m| m.opened),
        );
        println!("{row}");
        writeln!(table, "{row}")?;
    }
    println!("\n{table}");
    let out = args
        .out
        .clone()
        .unwrap_or_else(|| format!("{}/../target/pools.md", env!("CARGO_MANIFEST_DIR")));
    std::fs::write(&out, &table).with_context(|| format!("writing {out}"))?;
    println!("written to {out}");
    Ok(())
}
