//! A well-behaved REST client's latency alone and during a flood by another user from another
//! address, side by side in one run, on the in-memory store and on DynamoDB (moto's server): what
//! the rate limits cost a caller who stays within them while someone else is refused.
//!
//! `cargo bench -p session-tests --bench rate_limits` (about 30 s). Flags after `--`:
//! `--secs 10` (per phase), `--flooders 16` (concurrent request loops of the flooding user),
//! `--flood-rates 1000,0` (requests a second the flood aims at; 0: as fast as the loops go, which
//! on a small machine measures the flood's own CPU more than the limits), `--every-ms 60` (the
//! well-behaved client's pace), `--stores memory,moto`, `--out PATH` (default
//! `target/rate_limits.md`). Everything runs in this process (the local stack, both
//! clients) on loopback: the flooder from 127.0.0.2, the well-behaved client from 127.0.0.3.

#![allow(clippy::print_stdout)]

use std::fmt::Write as _;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context as _, ensure};
use clap::Parser;
use hdrhistogram::Histogram;
use session_core::config::{Settings, StoreBackend};
use session_local::stack::{Stack, StackSettings};

#[derive(Debug, Parser)]
struct Args {
    /// Seconds measured per phase (alone, then during the flood).
    #[arg(long, default_value_t = 10)]
    secs: u64,
    /// Concurrent request loops of the flooding user.
    #[arg(long, default_value_t = 16)]
    flooders: usize,
    /// Milliseconds between the well-behaved client's requests.
    #[arg(long, default_value_t = 60)]
    every_ms: u64,
    /// Requests a second the flood aims at (0: unpaced).
    #[arg(long, value_delimiter = ',', default_values_t = [1_000_u64, 0])]
    flood_rates: Vec<u64>,
    /// Stores to measure on: `memory`, `moto`.
    #[arg(long, value_delimiter = ',', default_values_t = ["memory".to_owned(), "moto".to_owned()])]
    stores: Vec<String>,
    /// Where to write the Markdown table (default: `target/rate_limits.md` of the workspace).
    #[arg(long)]
    out: Option<String>,
    /// Passed by `cargo bench`.
    #[arg(long, hide = true)]
    bench: bool,
}

/// What the well-behaved client saw in one phase, and what the flood did meanwhile.
#[derive(Debug)]
struct Phase {
    latency: Histogram<u64>,
    failed: u64,
    flood_sent: u64,
    flood_refused: u64,
}

fn client(from: u8, token: &str) -> anyhow::Result<(reqwest::Client, String)> {
    let http = reqwest::Client::builder()
        .local_address(IpAddr::V4(Ipv4Addr::new(127, 0, 0, from)))
        .timeout(Duration::from_secs(30))
        .build()?;
    Ok((http, format!("Bearer {token}")))
}

/// The well-behaved client's requests for `secs`, with `flooders` loops of the flooding user
/// running meanwhile (none: alone), together aiming at `flood_rate` requests a second (0: as fast
/// as they go).
async fn phase(
    stack: &Stack,
    args: &Args,
    flooders: usize,
    flood_rate: u64,
) -> anyhow::Result<Phase> {
    let url = format!("{}/v1/sessions", stack.endpoints().http_api);
    let (steady, bob) = client(3, &stack.token("bob"))?;
    let (flood, alice) = client(2, &stack.token("alice"))?;
    let stop = Arc::new(AtomicBool::new(false));
    let (sent, refused) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let loops: Vec<_> = (0..flooders)
        .map(|_| {
            let (flood, alice, url) = (flood.clone(), alice.clone(), url.clone());
            let (stop, sent, refused) = (stop.clone(), sent.clone(), refused.clone());
            let pace = (flood_rate > 0)
                .then(|| Duration::from_secs_f64(flooders as f64 / flood_rate as f64));
            tokio::spawn(async move {
                let mut tick = pace.map(tokio::time::interval);
                while !stop.load(Ordering::Relaxed) {
                    if let Some(tick) = &mut tick {
                        tick.tick().await;
                    }
                    let Ok(answer) = flood.get(&url).header("authorization", &alice).send().await
                    else {
                        continue;
                    };
                    sent.fetch_add(1, Ordering::Relaxed);
                    if answer.status() == reqwest::StatusCode::TOO_MANY_REQUESTS {
                        refused.fetch_add(1, Ordering::Relaxed);
                    }
                    let _ = answer.bytes().await;
                }
            })
        })
        .collect();
    // Let the flood spend its burst first: what is measured is the steady state.
    if flooders > 0 {
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    let (sent_before, refused_before) = (
        sent.load(Ordering::Relaxed),
        refused.load(Ordering::Relaxed),
    );
    let mut latency = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)?;
    let mut failed = 0;
    let deadline = Instant::now() + Duration::from_secs(args.secs);
    let mut tick = tokio::time::interval(Duration::from_millis(args.every_ms));
    while Instant::now() < deadline {
        tick.tick().await;
        let started = Instant::now();
        let answer = steady
            .get(&url)
            .header("authorization", &bob)
            .send()
            .await?;
        let ok = answer.status().is_success();
        let _ = answer.bytes().await?;
        latency.record(started.elapsed().as_micros().max(1) as u64)?;
        if !ok {
            failed += 1;
        }
    }
    stop.store(true, Ordering::Relaxed);
    for one in loops {
        one.await?;
    }
    Ok(Phase {
        latency,
        failed,
        flood_sent: sent.load(Ordering::Relaxed) - sent_before,
        flood_refused: refused.load(Ordering::Relaxed) - refused_before,
    })
}

async fn stack_on(store: &str) -> anyhow::Result<Stack> {
    let mut service = Settings::default();
    match store {
        "memory" => {}
        "moto" => {
            service.store.backend = StoreBackend::Dynamodb;
            service.store.endpoint =
                Some(session_tests::moto::Moto::shared().endpoint().to_owned());
            service.store.table_name =
                format!("bench-{}", ulid::Ulid::new().to_string().to_lowercase());
        }
        other => anyhow::bail!("unknown store {other:?} (memory, moto)"),
    }
    Ok(Stack::start(StackSettings::ephemeral(service)).await?)
}

fn ms(micros: u64) -> String {
    format!("{:.2} ms", micros as f64 / 1000.0)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let mut table = String::from(
        "| store | phase | well-behaved median | p99 | max | its failures | flood requests/s | flood refused |\n\
         | --- | --- | --- | --- | --- | --- | --- | --- |\n",
    );
    for store in &args.stores {
        let stack = stack_on(store)
            .await
            .with_context(|| format!("a stack on {store}"))?;
        let mut phases = vec![("alone".to_owned(), phase(&stack, &args, 0, 0).await?)];
        for &rate in &args.flood_rates {
            let name = if rate == 0 {
                format!("during an unpaced flood ({} loops)", args.flooders)
            } else {
                format!("during a flood aiming at {rate}/s")
            };
            phases.push((name, phase(&stack, &args, args.flooders, rate).await?));
        }
        for (name, phase) in &phases {
            let secs = args.secs as f64;
            writeln!(
                table,
                "| {store} | {name} | {} | {} | {} | {} of {} | {:.0} | {:.1} % |",
                ms(phase.latency.value_at_quantile(0.5)),
                ms(phase.latency.value_at_quantile(0.99)),
                ms(phase.latency.max()),
                phase.failed,
                phase.latency.len(),
                phase.flood_sent as f64 / secs,
                100.0 * phase.flood_refused as f64 / (phase.flood_sent.max(1)) as f64,
            )?;
        }
        ensure!(
            phases.iter().all(|(_, p)| p.failed == 0),
            "the well-behaved client was refused during a flood"
        );
        stack.shutdown().await?;
    }
    println!("{table}");
    let out = args
        .out
        .clone()
        .unwrap_or_else(|| format!("{}/../target/rate_limits.md", env!("CARGO_MANIFEST_DIR")));
    std::fs::write(&out, &table).with_context(|| format!("writing {out}"))?;
    println!("written to {out}");
    Ok(())
}
