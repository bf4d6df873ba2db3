//! SSE gzip against plain, side by side in one run: body bytes per delivered event and CPU per
//! delivered event, medians of alternating rounds.
//!
//! `cargo bench -p session-tests --bench sse_compression [-- CLIENTS RATE SECONDS ROUNDS]`
//!
//! The local stack runs in this process (simulator, streamer, clients), so the CPU figure is the
//! whole process's (`/proc/self/stat`) over the streamer's delivered events: the clients only
//! count the bytes they receive (no decoding, no parsing), so the difference between the two
//! columns is the streamer's (compressing once per entry, sending fewer bytes).

#![allow(clippy::print_stdout)]

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use session_core::config::RateQuota;
use session_tests::stream_fixture::Fixture;

/// Process CPU time so far (user + system), in seconds.
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").expect("/proc/self/stat");
    // Fields after the command's closing parenthesis; utime and stime are the 12th and 13th.
    let fields: Vec<&str> = stat[stat.rfind(')').expect("a stat line") + 2..]
        .split(' ')
        .collect();
    let ticks = |i: usize| fields[i].parse::<f64>().expect("CPU ticks");
    let ticks = ticks(11) + ticks(12);
    ticks / 100.0
}

async fn delivered(fixture: &Fixture) -> f64 {
    fixture
        .metrics()
        .await
        .lines()
        .find_map(|l| l.strip_prefix("streamer_events_delivered_total "))
        .map_or(0.0, |v| v.trim().parse().expect("a count"))
}

/// One round: `clients` streams with `accept`, measured for `seconds`; (bytes/event, µs/event).
async fn round(fixture: &Fixture, accept: &str, clients: usize, seconds: u64) -> (f64, f64) {
    let bytes = Arc::new(AtomicU64::new(0));
    let http = reqwest::Client::new();
    let bearer = format!("Bearer {}", fixture.token);
    let mut tasks = Vec::new();
    for _ in 0..clients {
        let mut response = http
            .get(fixture.stream_url())
            .header("authorization", &bearer)
            .header("accept-encoding", accept)
            .send()
            .await
            .expect("the stream opens");
        assert_eq!(
            response.headers().contains_key("content-encoding"),
            accept == "gzip",
            "{accept}: {:?}",
            response.headers()
        );
        let bytes = Arc::clone(&bytes);
        tasks.push(tokio::spawn(async move {
            while let Ok(Some(chunk)) = response.chunk().await {
                bytes.fetch_add(chunk.len() as u64, Ordering::Relaxed);
            }
        }));
    }
    // Past the snapshots every client starts with.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let (b0, d0, c0) = (
        bytes.load(Ordering::Relaxed),
        delivered(fixture).await,
        cpu_seconds(),
    );
    tokio::time::sleep(Duration::from_secs(seconds)).await;
    let (b1, d1, c1) = (
        bytes.load(Ordering::Relaxed),
        delivered(fixture).await,
        cpu_seconds(),
    );
    for task in tasks {
        task.abort();
    }
    let events = d1 - d0;
    ((b1 - b0) as f64 / events, (c1 - c0) * 1e6 / events)
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let args: Vec<u64> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let arg = |i: usize, default: u64| args.get(i).copied().unwrap_or(default);
    let (clients, rate, seconds, rounds) = (arg(0, 200), arg(1, 500), arg(2, 5), arg(3, 3));
    let fixture = Fixture::start_stack(&["BTC-USD", "ETH-USD"], rate as u32, |stack| {
        // Every client is the same user on one address, opening at once.
        let plenty = RateQuota {
            per_second: 100_000,
            burst: 100_000,
        };
        let limits = &mut stack.service.rate_limits;
        (
            limits.sse_connect,
            limits.connect_per_address,
            limits.per_address,
        ) = (plenty, plenty, plenty);
        stack.streamer.max_streams_per_user = 100_000;
        stack.streamer.max_streams_per_address = 100_000;
    })
    .await;
    let mut figures = [(Vec::new(), Vec::new()), (Vec::new(), Vec::new())];
    for _ in 0..rounds {
        for (i, accept) in ["identity", "gzip"].into_iter().enumerate() {
            let (bytes, cpu) = round(&fixture, accept, clients as usize, seconds).await;
            figures[i].0.push(bytes);
            figures[i].1.push(cpu);
        }
    }
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!(
        "{clients} clients, {rate} events/s, {rounds} rounds of {seconds} s, load {}",
        load.split(' ').take(3).collect::<Vec<_>>().join(" ")
    );
    println!("| coding | body bytes / event | process CPU µs / delivered event |");
    println!("| --- | ---: | ---: |");
    for (name, (bytes, cpu)) in ["plain", "gzip"].into_iter().zip(figures) {
        println!("| {name} | {:.1} | {:.2} |", median(bytes), median(cpu));
    }
}
