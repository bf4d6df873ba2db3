//! Slow clients: one client reads nothing while others read at full speed; the fast clients'
//! latency stays flat and the streamer's memory stays bounded, and the slow client is conflated
//! to a snapshot (or told to reconnect), never sent a gap.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::Value;
use session_tests::sse::{self, Event, SseStream};
use session_tests::stream_fixture::{Fixture, PATIENCE};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

use crate::chaos::Seen;

const SYMBOLS: [&str; 3] = ["BTC-USD", "ETH-USD", "AAPL"];
/// The smallest queue a client may have.
const QUEUE_BYTES: u64 = 64 * 1024;
const WINDOW_BYTES: u64 = 4 * 1024 * 1024;
/// The rate beside a client that reads nothing: as high as a loaded two-core machine running
/// the whole test binary serves to three fast clients in a debug build.
const RATE: u32 = 5_000;
/// The fast clients' queue there: the default, about a second of that stream (a quarter of a
/// second was seen exceeded, once in five runs, by a loaded machine's scheduling alone), and
/// still a small part of what the silent client falls behind (the 4 MiB window).
const FAST_QUEUE_BYTES: u64 = 1024 * 1024;

/// An SSE client on a bare TCP connection: it sends its request, then reads only when asked,
/// so that until then the streamer's writes fill the socket and stop.
pub struct RawClient {
    tcp: TcpStream,
    /// Bytes read and not yet decoded from the chunked body.
    raw: Vec<u8>,
    /// Decoded body bytes not yet parsed into events.
    body: Vec<u8>,
    head_read: bool,
    ended: bool,
}

impl RawClient {
    /// Sends `GET url` with `token` as its bearer, and reads nothing.
    pub async fn open(url: &str, token: &str) -> Self {
        let rest = url.strip_prefix("http://").unwrap();
        let (host, path) = rest.split_at(rest.find('/').unwrap());
        let mut tcp = TcpStream::connect(host).await.unwrap();
        let request = format!(
            "GET {path} HTTP/1.1\r\nHost: {host}\r\nAccept: text/event-stream\r\n\
             Authorization: Bearer {token}\r\n\r\n"
        );
        tcp.write_all(request.as_bytes()).await.unwrap();
        Self {
            tcp,
            raw: Vec::new(),
            body: Vec::new(),
            head_read: false,
            ended: false,
        }
    }

    /// The next event (comments and `retry:` skipped), or `None` once the response ended.
    pub async fn next(&mut self) -> Option<Event> {
        loop {
            if let Some(end) = self.body.windows(2).position(|w| w == b"\n\n") {
                let frame: Vec<u8> = self.body.drain(..end + 2).collect();
                if let Some(event) = parse(&frame[..end]) {
                    return Some(event);
                }
                continue;
            }
            if self.ended {
                return None;
            }
            if !self.decode() {
                let mut buffer = vec![0; 64 * 1024];
                let read = tokio::time::timeout(PATIENCE, self.tcp.read(&mut buffer))
                    .await
                    .expect("the streamer writes")
                    .unwrap();
                if read == 0 {
                    self.ended = true;
                }
                self.raw.extend_from_slice(&buffer[..read]);
            }
        }
    }

    /// Moves what it can from `raw` to `body` (the head, then whole chunks); `false` if it
    /// needs more bytes.
    fn decode(&mut self) -> bool {
        if !self.head_read {
            let Some(end) = self.raw.windows(4).position(|w| w == b"\r\n\r\n") else {
                return false;
            };
            let head = String::from_utf8(self.raw.drain(..end + 4).collect()).unwrap();
            assert!(head.starts_with("HTTP/1.1 200"), "{head}");
            assert!(
                head.to_ascii_lowercase()
                    .contains("transfer-encoding: chunked"),
                "{head}"
            );
            self.head_read = true;
            return true;
        }
        let Some(line) = self.raw.windows(2).position(|w| w == b"\r\n") else {
            return false;
        };
        let size = std::str::from_utf8(&self.raw[..line]).unwrap();
        let size = usize::from_str_radix(size.split(';').next().unwrap().trim(), 16).unwrap();
        if self.raw.len() < line + 2 + size + 2 {
            return false;
        }
        self.body
            .extend_from_slice(&self.raw[line + 2..line + 2 + size]);
        self.raw.drain(..line + 2 + size + 2);
        if size == 0 {
            self.ended = true;
        }
        true
    }
}

/// One SSE frame as an event; `None` for comments and `retry:`.
fn parse(frame: &[u8]) -> Option<Event> {
    let text = std::str::from_utf8(frame).unwrap();
    let (mut id, mut event, mut data) = (None, "message".to_owned(), None);
    for line in text.lines() {
        if let Some(value) = line.strip_prefix("id: ") {
            id = Some(value.to_owned());
        } else if let Some(value) = line.strip_prefix("event: ") {
            value.clone_into(&mut event);
        } else if let Some(value) = line.strip_prefix("data: ") {
            data = Some(serde_json::from_str(value).unwrap());
        }
    }
    Some(Event {
        id,
        event,
        data: data?,
    })
}

fn now_ns() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos() as i64
}

/// What a fast client saw, and each event's latency (since the simulator emitted it) by when
/// it arrived.
struct Fast {
    seen: Seen,
    latencies: Vec<(Duration, Duration)>,
}

/// Reads `stream` at full speed for `run`.
async fn read_fast(mut stream: SseStream, started: Instant, run: Duration) -> Fast {
    let mut fast = Fast {
        seen: Seen::default(),
        latencies: Vec::new(),
    };
    while started.elapsed() < run {
        let event = stream.next(PATIENCE).await.expect("the stream goes on");
        let emitted = event.data["emit_ns"].as_i64();
        if let (Some(emitted), "delta" | "trade") = (emitted, event.event.as_str()) {
            let latency = Duration::from_nanos((now_ns() - emitted).max(0) as u64);
            fast.latencies.push((started.elapsed(), latency));
        }
        fast.seen.take(event);
    }
    fast
}

/// The 99th percentile of `latencies`.
fn p99(mut latencies: Vec<Duration>) -> Duration {
    assert!(!latencies.is_empty());
    latencies.sort_unstable();
    latencies[(latencies.len() - 1) * 99 / 100]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_reads_nothing_slows_no_one_and_is_conflated_when_it_reads_again() {
    let fixture = Fixture::start_stack(&SYMBOLS, RATE, |s| {
        s.streamer.client_queue_bytes = FAST_QUEUE_BYTES;
        s.streamer.window_bytes = WINDOW_BYTES;
        // The window is bounded by its bytes here, not by its events.
        s.service.streaming.replay_window_events = 10_000_000;
    })
    .await;
    let key = fixture.backend_id().await;
    let bearer = format!("Bearer {}", fixture.token);
    let mut slow = RawClient::open(&fixture.stream_url(), &fixture.token).await;
    let run = Duration::from_secs(6);
    let started = Instant::now();
    let mut fast = Vec::new();
    for _ in 0..3 {
        let stream = sse::connect(&fixture.stream_url(), &[("authorization", &bearer)])
            .await
            .unwrap();
        fast.push(tokio::spawn(read_fast(stream, started, run)));
    }

    let (mut window_bytes, mut attached) = (Vec::new(), Vec::new());
    while started.elapsed() < run {
        attached.push(fixture.api.stack.streamer_hub().streams()[0].clients());
        let streams = fixture.api.stack.streamer_hub().streams();
        if let Some(stream) = streams.iter().find(|s| s.key == key) {
            window_bytes.push(stream.window_size().1 as f64);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let mut fast_clients = Vec::new();
    for client in fast {
        fast_clients.push(client.await.expect("a fast client read without a gap"));
    }
    // The slow client reads again: everything the socket held, then whatever the streamer
    // sends it for the backlog it could not take.
    let mut slow_seen = Seen::default();
    let verdict = tokio::time::timeout(Duration::from_secs(60), async {
        loop {
            let event = slow
                .next()
                .await
                .expect("the response goes on to a verdict");
            slow_seen.take(event.clone());
            let conflated = event.event == "snapshot" && event.data["cause"] == "conflated";
            if conflated || event.event == "reconnect" {
                return event;
            }
        }
    })
    .await
    .expect("the slow client is caught up within a minute");

    let biggest_window = window_bytes.iter().copied().fold(0.0, f64::max);
    assert!(!window_bytes.is_empty(), "the window is reported");
    assert!(
        biggest_window <= WINDOW_BYTES as f64,
        "the window stays within its bound: {biggest_window} bytes"
    );
    assert!(
        biggest_window > (WINDOW_BYTES / 4) as f64,
        "the window filled up toward its bound: {biggest_window} bytes"
    );
    assert!(
        attached.iter().all(|&n| n == 4),
        "every client stays attached: {attached:?}"
    );
    for (i, client) in fast_clients.iter().enumerate() {
        let half = run / 2;
        let (first, second): (Vec<_>, Vec<_>) =
            client.latencies.iter().partition(|(at, _)| *at < half);
        let first = p99(first.into_iter().map(|(_, l)| l).collect());
        let second = p99(second.into_iter().map(|(_, l)| l).collect());
        assert_eq!(
            client.seen.replica.conflations, 0,
            "fast client {i} kept up"
        );
        assert_eq!(client.seen.replica.resets, 0, "fast client {i}");
        assert!(
            second < first * 2 + Duration::from_millis(100),
            "fast client {i}: p99 latency {first:?} in the first half, {second:?} in the second"
        );
    }
    match verdict.event.as_str() {
        "snapshot" => assert_eq!(slow_seen.replica.conflations, 1),
        _ => assert_eq!(verdict.data["reason"], "slow_consumer", "{verdict:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_keeps_falling_behind_is_told_to_reconnect_and_its_response_ends() {
    let fixture = Fixture::start_stack(&SYMBOLS, 20_000, |s| {
        s.streamer.client_queue_bytes = QUEUE_BYTES;
        s.streamer.window_bytes = WINDOW_BYTES;
        s.streamer.max_conflations = 1;
    })
    .await;
    let mut stream = fixture.open().await;
    let mut seen = Seen::default();

    // Bursts of 200 events, each followed by a 100 ms pause: at most 2,000 events a second,
    // a tenth of the stream's rate whatever the machine's speed. (Bursts bounded by time, 100 ms
    // of reading per 500 ms, kept up on a fast machine: a reader that parses 100,000 events a
    // second while it reads averages the stream's 20,000, and was never advised.)
    let advice = tokio::time::timeout(Duration::from_secs(120), async {
        loop {
            for _ in 0..200 {
                let event = stream.next(PATIENCE).await.expect("the response goes on");
                seen.take(event.clone());
                if event.event == "reconnect" {
                    return event;
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await
    .expect("the slow client is told to reconnect within two minutes");
    let after = stream.next(PATIENCE).await;

    assert_eq!(advice.data["reason"], "slow_consumer", "{advice:?}");
    assert_eq!(advice.data["retry_ms"], Value::from(1_000));
    assert!(
        seen.replica.conflations >= 1,
        "conflated before being closed"
    );
    assert!(
        after.is_none(),
        "the response ends after the advice: {after:?}"
    );
}
