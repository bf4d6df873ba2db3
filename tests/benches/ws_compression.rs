//! WebSocket compression, deflate vs plain, side by side in one run: two WebSocket clients of
//! the same session through the local API Gateway WebSocket emulator, one granted `deflate`
//! (the `ws_compression` flag on), one not; per event, the bytes and the messages each is
//! pushed, and the 32 KB units API Gateway meters those messages in; and the time to deflate a
//! message (the streamer does it once per message, whatever the number of connections).
//!
//! `cargo bench -p session-tests --bench ws_compression` (about 30 s). Flags after `--`:
//! `--rates 100,1000,5000` (events/s of the simulator), `--secs 8` (measured per rate).

#![allow(clippy::print_stdout)]

use std::io::Read as _;
use std::time::{Duration, Instant};

use clap::Parser;
use flate2::read::DeflateDecoder;
use futures_util::StreamExt as _;
use serde_json::{Value, json};
use session_streamer::push::deflate::deflate_raw;
use session_tests::appconfig_dir::AppConfigDir;
use session_tests::stream_fixture::Fixture;
use tokio_tungstenite::tungstenite::Message;

#[derive(Debug, Parser)]
struct Args {
    /// Simulator rates to measure, events/s.
    #[arg(long, value_delimiter = ',', default_values_t = [100_u32, 1_000, 5_000])]
    rates: Vec<u32>,
    /// Seconds measured per rate.
    #[arg(long, default_value_t = 8)]
    secs: u64,
    /// Passed by `cargo bench`.
    #[arg(long, hide = true)]
    bench: bool,
}

/// API Gateway meters messages in units of 32 KB.
const METERED_UNIT: usize = 32 * 1024;

#[derive(Debug, Default)]
struct Tally {
    events: u64,
    messages: u64,
    bytes: u64,
    units: u64,
    /// The JSON of each message (inflated when deflated), for the deflate timing.
    plain: Vec<Vec<u8>>,
}

async fn read(url: &str, window: Duration) -> Tally {
    let (mut socket, _) = tokio_tungstenite::connect_async(url)
        .await
        .expect("the handshake");
    let mut tally = Tally::default();
    let end = Instant::now() + window;
    while let Ok(Some(Ok(message))) =
        tokio::time::timeout(end.saturating_duration_since(Instant::now()), socket.next()).await
    {
        let (size, json) = match message {
            Message::Text(text) => (text.len(), text.as_bytes().to_vec()),
            Message::Binary(bytes) => {
                let mut json = Vec::new();
                DeflateDecoder::new(&bytes[..])
                    .read_to_end(&mut json)
                    .expect("raw deflate");
                (bytes.len(), json)
            }
            _ => continue,
        };
        let parsed: Value = serde_json::from_slice(&json).expect("JSON");
        if parsed["type"] != "events" {
            continue;
        }
        tally.events += parsed["events"].as_array().map_or(0, |e| e.len() as u64);
        tally.messages += 1;
        tally.bytes += size as u64;
        tally.units += size.div_ceil(METERED_UNIT) as u64;
        tally.plain.push(json);
    }
    tally
}

fn per_event(value: u64, events: u64) -> f64 {
    value as f64 / events.max(1) as f64
}

/// The median time to deflate one of `messages`, in microseconds.
fn deflate_median_us(messages: &[Vec<u8>]) -> f64 {
    let mut times: Vec<f64> = messages
        .iter()
        .map(|m| {
            let started = Instant::now();
            std::hint::black_box(deflate_raw(m));
            started.elapsed().as_secs_f64() * 1e6
        })
        .collect();
    times.sort_by(f64::total_cmp);
    times.get(times.len() / 2).copied().unwrap_or(0.0)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let args = Args::parse();
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!("load average at start: {}", load.trim());
    println!(
        "| events/s | client | events | messages/event | bytes/event | 32 KB units/message | deflate µs/message (median) |"
    );
    println!("| ---: | --- | ---: | ---: | ---: | ---: | ---: |");
    for rate in args.rates {
        let flags = AppConfigDir::new();
        flags.write("flags", r#"{"ws_compression": {"enabled": true}}"#);
        let fixture = Fixture::start_stack(&["BTC-USD", "ETH-USD"], rate, |stack| {
            stack.appconfig_dir = Some(flags.path().to_owned());
            stack.service.appconfig.poll_interval_ms = Duration::from_millis(200);
            stack.streamer.push_poll_ms = Duration::from_millis(100);
        })
        .await;
        let ticket = |compression: &'static str| {
            let fixture = &fixture;
            async move {
                loop {
                    let answer = fixture
                        .user
                        .post(
                            &format!("/v1/sessions/{}/tickets", fixture.session),
                            &json!({"transport": "ws", "compression": compression}),
                        )
                        .await;
                    if answer.body["compression"] == compression {
                        return answer.body["url"].as_str().expect("a url").to_owned();
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        };
        let (deflate_url, plain_url) = (ticket("deflate").await, ticket("none").await);
        let window = Duration::from_secs(args.secs);
        let (deflated, plain) = tokio::join!(read(&deflate_url, window), read(&plain_url, window));
        let cost = deflate_median_us(&plain.plain);
        for (name, tally, us) in [
            ("deflate", &deflated, format!("{cost:.1}")),
            ("plain", &plain, "-".to_owned()),
        ] {
            println!(
                "| {rate} | {name} | {} | {:.4} | {:.1} | {:.2} | {us} |",
                tally.events,
                per_event(tally.messages, tally.events),
                per_event(tally.bytes, tally.events),
                tally.units as f64 / tally.messages.max(1) as f64,
            );
        }
        drop(fixture);
    }
}
