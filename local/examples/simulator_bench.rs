//! How many events per second one simulator instance sustains to 1 and to 100 subscribers, over
//! real gRPC on loopback.
//!
//! ```sh
//! cargo run --release -p session-local --example simulator_bench            # defaults below
//! cargo run --release -p session-local --example simulator_bench -- --runs 3 --seconds 2 \
//!     --rates 10000,200000 --subscribers 1,100
//! ```
//!
//! For each run, every (subscribers, target rate) pair is measured once, in turn, so that the
//! pairs are compared side by side under the same conditions; the table gives the median over
//! the runs. One measurement: a fresh server on 127.0.0.1:0, one instance of three symbols at
//! the target rate, that many subscribers each on an HTTP/2 connection of its own decoding every
//! `MarketEvent`; after a warm-up, events counted over the window. Server and subscribers share
//! the process and the machine's cores, as they do in the local stack.
//!
//! "Sustained" means every subscriber received at least 97% of the events the instance produced
//! in the window (events arrive in HTTP/2 chunks of hundreds, so a window's count is never
//! exact) and none was reset (a reset means it fell further behind than the retained window):
//! the highest such target rate, in the majority of runs, is reported per subscriber count.
//! The load average of the machine is printed before and after: the figures are only as quiet
//! as the machine was.

#![allow(clippy::print_stdout)] // The report is the point of this program.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::{Context, bail};
use session_local::simulator::{SimulatorHandle, SimulatorServer, SimulatorSettings};
use session_proto::simulator::v1 as pb;
use session_proto::simulator::v1::market_data_client::MarketDataClient;
use session_proto::simulator::v1::market_event::Kind;
use tokio::task::JoinSet;
use tokio::time::Instant;
use tonic::transport::Endpoint;

const SYMBOLS: [&str; 3] = ["BTC-USD", "ETH-USD", "AAPL"];
/// Share of the produced events each subscriber must receive for a rate to count as sustained.
const SUSTAINED_SHARE: f64 = 0.97;

/// What to measure.
#[derive(Debug)]
struct Plan {
    runs: usize,
    warmup: Duration,
    window: Duration,
    rates: Vec<u32>,
    subscribers: Vec<usize>,
}

impl Plan {
    fn parse(args: impl IntoIterator<Item = String>) -> anyhow::Result<Self> {
        let mut plan = Self {
            runs: 5,
            warmup: Duration::from_secs(1),
            window: Duration::from_secs(4),
            rates: vec![5_000, 10_000, 25_000, 50_000, 100_000, 200_000],
            subscribers: vec![1, 100],
        };
        let mut args = args.into_iter();
        while let Some(flag) = args.next() {
            let value = args
                .next()
                .with_context(|| format!("{flag} needs a value"))?;
            let list = || -> anyhow::Result<Vec<u64>> {
                value
                    .split(',')
                    .map(|v| v.parse().with_context(|| format!("{flag}: {v:?}")))
                    .collect()
            };
            match flag.as_str() {
                "--runs" => plan.runs = value.parse().context("--runs")?,
                "--seconds" => {
                    plan.window = Duration::from_secs(value.parse().context("--seconds")?);
                }
                "--warmup-ms" => {
                    plan.warmup = Duration::from_millis(value.parse().context("--warmup-ms")?);
                }
                "--rates" => plan.rates = list()?.into_iter().map(|r| r as u32).collect(),
                "--subscribers" => {
                    plan.subscribers = list()?.into_iter().map(|n| n as usize).collect();
                }
                _ => bail!(
                    "unknown flag {flag}; flags: --runs N --seconds S --warmup-ms MS --rates R,R --subscribers N,N"
                ),
            }
        }
        if plan.runs == 0 || plan.rates.is_empty() || plan.subscribers.is_empty() {
            bail!("nothing to measure");
        }
        Ok(plan)
    }
}

/// What one subscriber has received so far.
#[derive(Debug, Default)]
struct Counters {
    /// Market events and status changes (not snapshots).
    events: AtomicU64,
    /// Snapshots after the first: the subscriber fell out of the retained window.
    resets: AtomicU64,
}

/// One measurement of one (subscribers, rate) pair.
#[derive(Debug, Clone, Copy)]
struct Sample {
    /// Events per second the instance produced in the window.
    produced: f64,
    /// Events per second the slowest subscriber received.
    slowest: f64,
    /// Events per second all subscribers received together.
    delivered: f64,
    /// Resets of any subscriber in the window.
    resets: u64,
}

impl Sample {
    fn sustained(&self) -> bool {
        self.resets == 0 && self.slowest >= SUSTAINED_SHARE * self.produced
    }
}

async fn subscriber(
    simulator: &SimulatorHandle,
    simulator_id: String,
    counters: Arc<Counters>,
) -> anyhow::Result<impl Future<Output = ()> + use<>> {
    let channel = Endpoint::from_shared(simulator.endpoint())?
        .tcp_nodelay(true)
        .connect()
        .await?;
    let mut stream = MarketDataClient::new(channel)
        .subscribe(pb::SubscribeRequest {
            simulator_id,
            resume_from: None,
        })
        .await?
        .into_inner();
    Ok(async move {
        let mut first = true;
        while let Ok(Some(event)) = stream.message().await {
            match event.kind {
                Some(Kind::Snapshot(_)) if first => first = false,
                Some(Kind::Snapshot(_)) => {
                    counters.resets.fetch_add(1, Ordering::Relaxed);
                }
                _ => {
                    counters.events.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
    })
}

async fn measure(plan: &Plan, subscribers: usize, rate: u32) -> anyhow::Result<Sample> {
    let simulator = SimulatorServer::spawn(SimulatorSettings::default()).await?;
    let info = simulator
        .control_client()
        .start(pb::StartRequest {
            symbols: SYMBOLS.iter().map(|s| (*s).to_owned()).collect(),
            seed: 1,
            events_per_second: rate,
            client_token: String::new(),
        })
        .await?
        .into_inner();
    let counters: Vec<Arc<Counters>> = (0..subscribers).map(|_| Arc::default()).collect();
    let mut tasks = JoinSet::new();
    for counters in &counters {
        let reading = subscriber(&simulator, info.simulator_id.clone(), Arc::clone(counters))
            .await
            .context("subscribing")?;
        tasks.spawn(reading);
    }
    tokio::time::sleep(plan.warmup).await;

    let snapshot = || {
        let sequence = simulator
            .simulators()
            .get(&info.simulator_id)
            .map(|i| i.sequence);
        let counts: Vec<(u64, u64)> = counters
            .iter()
            .map(|c| {
                (
                    c.events.load(Ordering::Relaxed),
                    c.resets.load(Ordering::Relaxed),
                )
            })
            .collect();
        (Instant::now(), sequence, counts)
    };
    let (t0, s0, c0) = snapshot();
    tokio::time::sleep(plan.window).await;
    let (t1, s1, c1) = snapshot();

    let seconds = (t1 - t0).as_secs_f64();
    let produced = (s1? - s0?) as f64 / seconds;
    let received: Vec<f64> = c0
        .iter()
        .zip(&c1)
        .map(|(a, b)| (b.0 - a.0) as f64 / seconds)
        .collect();
    let resets = c0.iter().zip(&c1).map(|(a, b)| b.1 - a.1).sum();
    tasks.abort_all();
    simulator.shutdown().await?;
    Ok(Sample {
        produced,
        slowest: received.iter().copied().fold(f64::INFINITY, f64::min),
        delivered: received.iter().sum(),
        resets,
    })
}

/// The machine's load averages (Linux), for the record.
fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg").map_or_else(
        |_| "unknown".to_owned(),
        |text| {
            text.split_whitespace()
                .take(3)
                .collect::<Vec<_>>()
                .join(" ")
        },
    )
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    let mid = values.len() / 2;
    if values.len().is_multiple_of(2) {
        f64::midpoint(values[mid - 1], values[mid])
    } else {
        values[mid]
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let plan = Plan::parse(std::env::args().skip(1))?;
    let cores = std::thread::available_parallelism().map_or(0, usize::from);
    println!(
        "simulator_bench: {} runs, {:?} warm-up, {:?} window, {cores} cores, load average {}",
        plan.runs,
        plan.warmup,
        plan.window,
        load_average()
    );
    let pairs: Vec<(usize, u32)> = plan
        .subscribers
        .iter()
        .flat_map(|n| plan.rates.iter().map(move |r| (*n, *r)))
        .collect();
    let mut samples: Vec<Vec<Sample>> = vec![Vec::new(); pairs.len()];
    for run in 1..=plan.runs {
        for (i, &(subscribers, rate)) in pairs.iter().enumerate() {
            let sample = measure(&plan, subscribers, rate).await?;
            println!(
                "run {run}: {subscribers:>3} subscribers at {rate:>6}/s: produced {:>8.0}/s, slowest {:>8.0}/s, all {:>10.0}/s, resets {}",
                sample.produced, sample.slowest, sample.delivered, sample.resets
            );
            samples[i].push(sample);
        }
    }

    println!();
    println!("load average after: {}", load_average());
    println!();
    println!(
        "| subscribers | target ev/s | produced ev/s | slowest subscriber ev/s | delivered ev/s (all) | runs sustained |"
    );
    println!("| ---: | ---: | ---: | ---: | ---: | ---: |");
    for (&(subscribers, rate), samples) in pairs.iter().zip(&samples) {
        let of = |f: fn(&Sample) -> f64| median(samples.iter().map(f).collect());
        println!(
            "| {subscribers} | {rate} | {:.0} | {:.0} | {:.0} | {}/{} |",
            of(|s| s.produced),
            of(|s| s.slowest),
            of(|s| s.delivered),
            samples.iter().filter(|s| s.sustained()).count(),
            samples.len()
        );
    }
    println!();
    for &subscribers in &plan.subscribers {
        // Sustained in the majority of runs.
        let best = pairs
            .iter()
            .zip(&samples)
            .filter(|((n, _), s)| {
                *n == subscribers && 2 * s.iter().filter(|s| s.sustained()).count() > s.len()
            })
            .map(|((_, rate), _)| *rate)
            .max();
        match best {
            Some(rate) => println!(
                "{subscribers} subscriber(s): sustained up to {rate} events/s (highest target rate measured that every subscriber kept up with)"
            ),
            None => println!("{subscribers} subscriber(s): no measured rate was sustained"),
        }
    }
    Ok(())
}
