//! The load client, the same for every target: N SSE connections to one stream, each reading
//! its frames as they arrive and checking its sequence, with latencies in shared histograms.
//!
//! A connection is one tokio task: TCP connect, an HTTP/1.1 `GET`, then the answer read as it
//! arrives into its worker thread's scratch buffer (no buffer per connection), the chunked
//! framing undone in place. Lines are cut with byte scans, and only `"epoch":`, `"seq":` and
//! `"emit_ns":` are read from a `data:` line: no JSON parsing.

use std::cell::RefCell;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context as _, bail, ensure};
use hdrhistogram::Histogram;
use tokio::io::AsyncWriteExt as _;
use tokio::net::TcpStream;
use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;
use tokio::time::{Instant, timeout, timeout_at};

use self::http::{Http, Progress};

mod http;

/// A connection that takes longer to answer with headers has failed.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);
/// Latencies a client keeps before adding them to a shared histogram.
const LATENCY_BATCH: usize = 256;
/// Histograms the clients share (a client always uses the same one), so locks rarely contend.
const SHARDS: usize = 16;
/// Highest latency recorded exactly, in microseconds (a minute); higher ones count as this.
const MAX_LATENCY_US: u64 = 60_000_000;
/// A line longer than this is not SSE from either server.
const MAX_LINE: usize = 1 << 20;
/// Nor is an answer head longer than this.
const MAX_HEAD: usize = 64 << 10;
/// Each worker thread's read buffer.
const READ_BUFFER: usize = 64 << 10;
/// Reads of one socket before its task yields to others.
const READS_PER_WAKE: usize = 4;

const WARMUP: u8 = 0;
const MEASURE: u8 = 1;
const DONE: u8 = 2;

/// Where the clients connect, and how.
#[derive(Debug, Clone)]
pub(crate) struct Endpoint {
    addr: SocketAddr,
    host: String,
    path: String,
    bearer: Option<String>,
}

impl Endpoint {
    /// The SSE stream at `url` (plain `http://`), with a bearer token if the server needs one.
    pub(crate) async fn new(url: &str, bearer: Option<String>) -> anyhow::Result<Self> {
        let parsed = reqwest::Url::parse(url).with_context(|| format!("bad SSE URL {url}"))?;
        ensure!(
            parsed.scheme() == "http",
            "the SSE URL {url} is not http://"
        );
        let host = parsed.host_str().context("the SSE URL has no host")?;
        let port = parsed.port_or_known_default().unwrap_or(80);
        let addr = tokio::net::lookup_host((host, port))
            .await?
            .next()
            .with_context(|| format!("{host} has no address"))?;
        let mut path = parsed.path().to_owned();
        if let Some(query) = parsed.query() {
            path.push('?');
            path.push_str(query);
        }
        Ok(Self {
            addr,
            host: format!("{host}:{port}"),
            path,
            bearer,
        })
    }
}

/// What every client of one measurement shares: the phase, how many got their first event,
/// and the latency histograms.
#[derive(Debug)]
pub(crate) struct Shared {
    phase: AtomicU8,
    started: AtomicUsize,
    latencies: Vec<Mutex<Histogram<u64>>>,
}

impl Shared {
    fn new() -> anyhow::Result<Self> {
        let latencies = (0..SHARDS)
            .map(|_| Histogram::new_with_bounds(1, MAX_LATENCY_US, 3).map(Mutex::new))
            .collect::<Result<_, _>>()?;
        Ok(Self {
            phase: AtomicU8::new(WARMUP),
            started: AtomicUsize::new(0),
            latencies,
        })
    }

    /// From now on, clients count deliveries and latencies.
    pub(crate) fn measure(&self) {
        self.phase.store(MEASURE, Ordering::Release);
    }

    /// From now on, clients count nothing.
    pub(crate) fn finish(&self) {
        self.phase.store(DONE, Ordering::Release);
    }

    /// Clients that received their first event.
    pub(crate) fn started(&self) -> usize {
        self.started.load(Ordering::Acquire)
    }

    fn record(&self, shard: usize, batch: &mut Vec<u64>) {
        let mut histogram = self.latencies[shard % SHARDS]
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        for &latency in batch.iter() {
            histogram.saturating_record(latency);
        }
        batch.clear();
    }

    /// Every latency recorded while measuring, in microseconds.
    fn histogram(&self) -> anyhow::Result<Histogram<u64>> {
        let mut all = Histogram::new_with_bounds(1, MAX_LATENCY_US, 3)?;
        for shard in &self.latencies {
            all.add(&*shard.lock().unwrap_or_else(PoisonError::into_inner))?;
        }
        Ok(all)
    }
}

/// What one client saw.
#[derive(Debug, Clone, Default)]
pub(crate) struct ClientStats {
    /// Sequenced events received while measuring.
    pub(crate) delivered: u64,
    /// Sequence numbers skipped (after the first event, until the end of the measurement).
    pub(crate) missing: u64,
    /// Events whose sequence was not above the last one.
    pub(crate) duplicates: u64,
    /// Snapshots or epoch changes after the first event (the client's state was replaced).
    pub(crate) resyncs: u64,
    /// Events without a sequence (`reset`, `reconnect`, a stream status).
    pub(crate) notices: u64,
    /// The first of them (its type and data, shortened).
    pub(crate) first_notice: Option<String>,
    /// Whether it received any sequenced event.
    pub(crate) started: bool,
    /// Why it could not connect, or why its stream ended before the measurement did.
    pub(crate) failure: Option<String>,
}

/// The clients of one measurement.
#[derive(Debug)]
pub(crate) struct Clients {
    /// Where clients connect: client `i` to `endpoints[i % len]` (nchan's channels).
    endpoints: Vec<Arc<Endpoint>>,
    shared: Arc<Shared>,
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<ClientStats>>,
}

/// How opening connections went.
#[derive(Debug, Clone, Default)]
pub(crate) struct Opened {
    /// Connections that answered `200 text/event-stream`.
    pub(crate) ok: usize,
    /// Connections that did not.
    pub(crate) failed: usize,
    /// The first failure.
    pub(crate) first_error: Option<String>,
}

/// Everything the clients of one measurement saw, added up.
#[derive(Debug)]
pub(crate) struct Totals {
    pub(crate) delivered: u64,
    pub(crate) missing: u64,
    pub(crate) duplicates: u64,
    pub(crate) resyncs: u64,
    pub(crate) notices: u64,
    pub(crate) first_notice: Option<String>,
    /// Clients that never received an event.
    pub(crate) silent: usize,
    /// Clients whose connection failed or ended early.
    pub(crate) failed: usize,
    pub(crate) first_failure: Option<String>,
    /// Latencies in microseconds.
    pub(crate) latency: Histogram<u64>,
}

impl Clients {
    /// No connections yet; clients spread over `endpoints` in turn.
    pub(crate) fn new(endpoints: Vec<Endpoint>) -> anyhow::Result<Self> {
        ensure!(!endpoints.is_empty(), "no SSE endpoint to connect to");
        Ok(Self {
            endpoints: endpoints.into_iter().map(Arc::new).collect(),
            shared: Arc::new(Shared::new()?),
            stop: watch::channel(false).0,
            tasks: Vec::new(),
        })
    }

    /// The phase switch and counters.
    pub(crate) fn shared(&self) -> &Shared {
        &self.shared
    }

    /// Opens `n` more connections, `batch` at a time: each batch is answered (or has failed)
    /// before the next one starts.
    ///
    /// # Errors
    /// Every connection of the first batch failed: the server refuses them.
    pub(crate) async fn open(&mut self, n: usize, batch: usize) -> anyhow::Result<Opened> {
        let mut opened = Opened::default();
        let mut left = n;
        while left > 0 {
            let size = left.min(batch.max(1));
            left -= size;
            let mut answers = Vec::with_capacity(size);
            for _ in 0..size {
                let (ready, answer) = oneshot::channel();
                let shard = self.tasks.len();
                let task = client(
                    Arc::clone(&self.endpoints[shard % self.endpoints.len()]),
                    Arc::clone(&self.shared),
                    shard,
                    ready,
                    self.stop.subscribe(),
                );
                self.tasks.push(tokio::spawn(task));
                answers.push(answer);
            }
            let deadline = Instant::now() + CONNECT_TIMEOUT;
            for answer in answers {
                let error = match timeout_at(deadline, answer).await {
                    Ok(Ok(Ok(()))) => {
                        opened.ok += 1;
                        continue;
                    }
                    Ok(Ok(Err(e))) => e,
                    Ok(Err(_)) => "the client task ended".to_owned(),
                    Err(_) => format!("no answer within {CONNECT_TIMEOUT:?}"),
                };
                opened.failed += 1;
                opened.first_error.get_or_insert(error);
            }
            if opened.ok == 0 {
                bail!(
                    "no SSE connection to http://{}{} succeeded: {}",
                    self.endpoints[0].host,
                    self.endpoints[0].path,
                    opened.first_error.as_deref().unwrap_or("?")
                );
            }
        }
        Ok(opened)
    }

    /// Waits until `n` clients received an event, or `limit` passed; returns how many did.
    pub(crate) async fn wait_started(&self, n: usize, limit: Duration) -> usize {
        let deadline = Instant::now() + limit;
        while self.shared.started() < n && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        self.shared.started()
    }

    /// Closes every connection and adds up what the clients saw.
    pub(crate) async fn close(self) -> anyhow::Result<Totals> {
        self.shared.finish();
        let _ = self.stop.send(true);
        let mut totals = Totals {
            delivered: 0,
            missing: 0,
            duplicates: 0,
            resyncs: 0,
            notices: 0,
            first_notice: None,
            silent: 0,
            failed: 0,
            first_failure: None,
            latency: Histogram::new(3)?,
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        for task in self.tasks {
            let abort = task.abort_handle();
            let stats = match timeout_at(deadline, task).await {
                Ok(Ok(stats)) => stats,
                Ok(Err(e)) => ClientStats {
                    failure: Some(format!("the client task failed: {e}")),
                    ..ClientStats::default()
                },
                Err(_) => {
                    abort.abort();
                    ClientStats {
                        failure: Some("the client did not stop".to_owned()),
                        ..ClientStats::default()
                    }
                }
            };
            totals.delivered += stats.delivered;
            totals.missing += stats.missing;
            totals.duplicates += stats.duplicates;
            totals.resyncs += stats.resyncs;
            totals.notices += stats.notices;
            if let Some(notice) = stats.first_notice {
                totals.first_notice.get_or_insert(notice);
            }
            totals.silent += usize::from(!stats.started);
            if let Some(failure) = stats.failure {
                totals.failed += 1;
                totals.first_failure.get_or_insert(failure);
            }
        }
        totals.latency = self.shared.histogram()?;
        Ok(totals)
    }
}

thread_local! {
    /// Where a worker thread reads sockets into: no client owns a read buffer.
    static SCRATCH: RefCell<Vec<u8>> = RefCell::new(vec![0; READ_BUFFER]);
}

/// What one non-blocking read gave.
enum Read<R> {
    Data(R),
    Again,
    Closed,
}

/// Reads what `stream` has into this thread's scratch buffer and hands it to `f`.
fn read_with<R>(stream: &TcpStream, f: impl FnOnce(&[u8]) -> R) -> std::io::Result<Read<R>> {
    SCRATCH.with_borrow_mut(|buf| match stream.try_read(buf) {
        Ok(0) => Ok(Read::Closed),
        Ok(n) => Ok(Read::Data(f(&buf[..n]))),
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => Ok(Read::Again),
        Err(e) => Err(e),
    })
}

/// One client: connects, says whether it is streaming, then reads until told to stop.
async fn client(
    endpoint: Arc<Endpoint>,
    shared: Arc<Shared>,
    shard: usize,
    ready: oneshot::Sender<Result<(), String>>,
    mut stop: watch::Receiver<bool>,
) -> ClientStats {
    let mut reader = Reader::new(shared, shard);
    let stream = match timeout(CONNECT_TIMEOUT, connect(&endpoint)).await {
        Ok(Ok(stream)) => stream,
        Ok(Err(e)) => return reader.failed(ready, format!("{e:#}")),
        Err(_) => return reader.failed(ready, "timed out connecting".to_owned()),
    };
    let mut http = Http::Head(Vec::new());
    let mut ready = Some(ready);
    let failure = 'stream: loop {
        tokio::select! {
            biased;
            _ = stop.changed() => break None,
            readable = stream.readable() => {
                if let Err(e) = readable {
                    break Some(format!("waiting for the socket: {e}"));
                }
            }
        }
        // A few reads, then back to the scheduler (readiness stays set if data is left).
        for _ in 0..READS_PER_WAKE {
            let read = read_with(&stream, |data| http.feed(data, &mut reader, &mut ready));
            match read {
                Ok(Read::Data(Ok(Progress::More))) => {}
                Ok(Read::Data(Ok(Progress::Ended))) => {
                    break 'stream Some("the server ended the stream".to_owned());
                }
                Ok(Read::Data(Err(e))) => break 'stream Some(e),
                Ok(Read::Again) => break,
                Ok(Read::Closed) => {
                    break 'stream Some("the server closed the connection".to_owned());
                }
                Err(e) => break 'stream Some(format!("reading the stream: {e}")),
            }
        }
    };
    if let Some(ready) = ready.take() {
        // Stopped or failed before the answer's head was complete.
        let error = failure
            .clone()
            .unwrap_or_else(|| "stopped before an answer".to_owned());
        let _ = ready.send(Err(error));
    }
    // A stream that ends after the measurement is not a failure of the server.
    if reader.shared.phase.load(Ordering::Acquire) != DONE {
        reader.stats.failure = failure;
    }
    reader.finish()
}

/// Connects and sends the request.
async fn connect(endpoint: &Endpoint) -> anyhow::Result<TcpStream> {
    let mut stream = TcpStream::connect(endpoint.addr)
        .await
        .with_context(|| format!("connecting to {}", endpoint.addr))?;
    stream.set_nodelay(true)?;
    let mut request = format!(
        "GET {} HTTP/1.1\r\nHost: {}\r\nAccept: text/event-stream\r\nCache-Control: no-cache\r\n",
        endpoint.path, endpoint.host
    );
    if let Some(token) = &endpoint.bearer {
        let _ = write!(request, "Authorization: Bearer {token}\r\n");
    }
    request.push_str("\r\n");
    stream.write_all(request.as_bytes()).await?;
    Ok(stream)
}

/// One client's parsing state and counts.
struct Reader {
    shared: Arc<Shared>,
    shard: usize,
    /// The start of a line whose end has not arrived yet.
    partial: Vec<u8>,
    /// The current event's type.
    kind: Vec<u8>,
    /// `(epoch, seq)` of the last sequenced event.
    last: Option<(u64, u64)>,
    /// Latencies not yet added to the shared histogram (µs).
    latencies: Vec<u64>,
    stats: ClientStats,
}

impl Reader {
    fn new(shared: Arc<Shared>, shard: usize) -> Self {
        Self {
            shared,
            shard,
            partial: Vec::new(),
            kind: Vec::new(),
            last: None,
            latencies: Vec::with_capacity(LATENCY_BATCH),
            stats: ClientStats::default(),
        }
    }

    fn failed(mut self, ready: oneshot::Sender<Result<(), String>>, error: String) -> ClientStats {
        let _ = ready.send(Err(error.clone()));
        self.stats.failure = Some(error);
        self.finish()
    }

    fn finish(mut self) -> ClientStats {
        if !self.latencies.is_empty() {
            self.shared.record(self.shard, &mut self.latencies);
        }
        self.stats
    }

    /// The phase and the time of receipt for the bytes of one read.
    fn begin(&self) -> (u8, i64) {
        (self.shared.phase.load(Ordering::Acquire), unix_nanos())
    }

    /// Reads body bytes that arrived in one read.
    fn chunk(&mut self, data: &[u8]) -> Result<(), String> {
        let phase = self.begin();
        self.lines(data, phase)
    }

    /// Reads SSE bytes: every line they complete.
    fn lines(&mut self, mut data: &[u8], (phase, now): (u8, i64)) -> Result<(), String> {
        if phase == DONE {
            return Ok(());
        }
        while let Some(end) = data.iter().position(|&b| b == b'\n') {
            let (line, rest) = data.split_at(end);
            if self.partial.is_empty() {
                self.line(line, phase, now);
            } else {
                let mut joined = std::mem::take(&mut self.partial);
                joined.extend_from_slice(line);
                self.line(&joined, phase, now);
                joined.clear();
                self.partial = joined;
            }
            data = &rest[1..];
        }
        self.partial.extend_from_slice(data);
        if self.partial.len() > MAX_LINE {
            return Err(format!("a line longer than {MAX_LINE} bytes"));
        }
        Ok(())
    }

    fn line(&mut self, line: &[u8], phase: u8, now: i64) {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.is_empty() {
            self.kind.clear();
        } else if let Some(kind) = line.strip_prefix(b"event:") {
            self.kind.clear();
            self.kind.extend_from_slice(kind.trim_ascii());
        } else if let Some(data) = line.strip_prefix(b"data:") {
            let position = (
                number_after(data, b"\"epoch\":"),
                number_after(data, b"\"seq\":"),
                number_after(data, b"\"emit_ns\":"),
            );
            if let (Some(epoch), Some(seq), Some(emit_ns)) = position {
                self.event(epoch, seq, emit_ns as i64, phase, now);
            } else {
                self.stats.notices += 1;
                if self.stats.first_notice.is_none() {
                    let data = String::from_utf8_lossy(&data[..data.len().min(160)]);
                    let kind = String::from_utf8_lossy(&self.kind);
                    self.stats.first_notice = Some(format!("{kind}: {}", data.trim()));
                }
            }
        }
        // `id:`, `retry:` and `:` comments (heartbeats) carry nothing to check.
    }

    fn event(&mut self, epoch: u64, seq: u64, emit_ns: i64, phase: u8, now: i64) {
        match self.last {
            None => {
                self.stats.started = true;
                self.shared.started.fetch_add(1, Ordering::AcqRel);
                self.last = Some((epoch, seq));
            }
            Some((last_epoch, _)) if last_epoch != epoch => {
                self.stats.resyncs += 1;
                self.last = Some((epoch, seq));
            }
            Some((_, last)) if self.kind == b"snapshot" => {
                // A snapshot replaces the client's state as of `seq`: the events it skipped
                // were never delivered one by one.
                self.stats.resyncs += 1;
                self.stats.missing += seq.saturating_sub(last);
                self.last = Some((epoch, seq));
            }
            Some((_, last)) if seq > last => {
                self.stats.missing += seq - last - 1;
                self.last = Some((epoch, seq));
            }
            Some(_) => self.stats.duplicates += 1,
        }
        if phase == MEASURE {
            self.stats.delivered += 1;
            let latency_us = (now - emit_ns).max(0) as u64 / 1000;
            self.latencies.push(latency_us.max(1));
            if self.latencies.len() >= LATENCY_BATCH {
                self.shared.record(self.shard, &mut self.latencies);
            }
        }
    }
}

/// The decimal number right after `key` in `hay`.
fn number_after(hay: &[u8], key: &[u8]) -> Option<u64> {
    let start = hay.windows(key.len()).position(|w| w == key)? + key.len();
    let digits = hay[start..]
        .iter()
        .take_while(|b| b.is_ascii_digit())
        .take(20);
    let mut value: u64 = 0;
    let mut any = false;
    for &digit in digits {
        value = value
            .checked_mul(10)?
            .checked_add(u64::from(digit - b'0'))?;
        any = true;
    }
    any.then_some(value)
}

fn unix_nanos() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as i64)
}
