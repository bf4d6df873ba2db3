//! The measurements: the servers of one target, one load step (a fresh simulator at a rate,
//! N clients, warm-up, window), the sweep of rates, and memory per idle connection.

use std::fmt;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use hdrhistogram::Histogram;

use crate::client::{Clients, Endpoint, Totals};
use crate::floor::{Floor, FloorStream};
use crate::nchan::{Install, Nginx, Publisher, PublisherReport};
use crate::otlp::Sink;
use crate::stack::{Simulator, Stack};
use crate::system::{self, CpuSample, CpuUse, Scratch};

/// A step is sustained when at least this share of `rate × subscribers × window` arrived…
const DELIVERED_SHARE: f64 = 0.99;
/// …with a p99 latency under this…
const P99_LIMIT_MS: f64 = 50.0;
/// …and no missing event (nor failed connection). A sweep ends after this many steps in a row
/// that lost events (a step that only misses the latency limit does not end it, so that the
/// highest lossless rate is found too).
pub(crate) const FAILURES_TO_STOP: usize = 2;
/// When no rate of the sweep is sustained, at most this many steps at half the rate before.
pub(crate) const STEPS_DOWN: usize = 3;
/// How long all clients may take to receive their first event.
const FIRST_EVENT_TIMEOUT: Duration = Duration::from_secs(30);
/// Quiet time between steps, so one step's closing connections do not load the next.
const SETTLE: Duration = Duration::from_secs(1);

/// Which server fans out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Target {
    /// The streamer, embedded in the local stack.
    Streamer,
    /// The same, exporting its traces over OTLP at the default sampling (every trace) to a
    /// receiver in this process.
    StreamerTraced,
    /// nginx with nchan, fed by the bench's publisher.
    Nchan,
    /// The floor: one write per socket per event from a thread per CPU ([`crate::floor`]).
    Floor,
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Streamer => "streamer",
            Self::StreamerTraced => "streamer, traced",
            Self::Nchan => "nginx + nchan",
            Self::Floor => "floor",
        })
    }
}

/// Timings shared by every step.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Timing {
    pub(crate) warmup: Duration,
    pub(crate) window: Duration,
    /// Connections opened at once.
    pub(crate) batch: usize,
}

/// The servers of one target, fresh: the local stack (the streamer and its simulator), nginx
/// (fed by the publisher), or the floor. Everything stops when dropped.
#[derive(Debug)]
pub(crate) struct Servers {
    target: Target,
    // Dropped in this order: nginx, the floor, the stack, then their directory.
    nginx: Option<Nginx>,
    /// Channels nchan's clients are spread over, one publisher connection each.
    nchan_channels: usize,
    floor: Option<Floor>,
    stack: Option<Stack>,
    /// The traced target's collector.
    otlp: Option<Sink>,
    _scratch: Scratch,
}

/// One stream under measurement: the streamer's simulator, nchan's publisher or the floor's
/// event source, and where clients connect (several URLs: nchan's channels).
#[derive(Debug)]
struct Stream {
    simulator: Option<Simulator>,
    urls: Vec<String>,
    publisher: Option<Publisher>,
    _floor: Option<FloorStream>,
}

impl Servers {
    pub(crate) async fn start(
        target: Target,
        binary: &Path,
        nginx: Option<&Install>,
        files: u64,
        nchan_channels: usize,
    ) -> anyhow::Result<Self> {
        let scratch = Scratch::new(match target {
            Target::Streamer => "streamer",
            Target::StreamerTraced => "streamer-traced",
            Target::Nchan => "nchan",
            Target::Floor => "floor",
        })?;
        let otlp = match target {
            Target::StreamerTraced => Some(Sink::start().await?),
            _ => None,
        };
        let tracing = otlp.as_ref().map(|sink| {
            vec![
                ("OTEL_EXPORTER_OTLP_ENDPOINT", sink.endpoint().to_owned()),
                ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc".to_owned()),
            ]
        });
        let (mut stack, mut floor) = (None, None);
        let nginx = match (target, nginx) {
            (Target::Nchan, Some(install)) => {
                Some(Nginx::start(install, scratch.path(), files).await?)
            }
            (Target::Nchan, None) => anyhow::bail!("nginx is not installed"),
            (Target::Floor, _) => {
                floor = Some(Floor::start()?);
                None
            }
            (Target::Streamer | Target::StreamerTraced, _) => {
                let started =
                    Stack::start(binary, scratch.path(), &tracing.unwrap_or_default()).await?;
                anyhow::ensure!(
                    started.endpoints().sse.is_some(),
                    "the local stack ({}) has no `sse` endpoint: this build does not embed \
                     the streamer yet. Rebuild it (`cargo build --release -p session-local`) \
                     once the streamer is in, or run `-- --target nchan`",
                    binary.display()
                );
                stack = Some(started);
                None
            }
        };
        Ok(Self {
            target,
            nginx,
            nchan_channels: nchan_channels.max(1),
            floor,
            stack,
            otlp,
            _scratch: scratch,
        })
    }

    /// Spans the traced target exported so far (`None` for the others).
    pub(crate) fn spans_exported(&self) -> Option<u64> {
        self.otlp.as_ref().map(Sink::spans)
    }

    pub(crate) fn nginx(&self) -> Option<&Nginx> {
        self.nginx.as_ref()
    }

    /// Fails if a server has exited.
    fn check_alive(&mut self) -> anyhow::Result<()> {
        if let Some(stack) = &mut self.stack {
            stack.check_alive()?;
        }
        if let Some(nginx) = &mut self.nginx {
            nginx.check_alive()?;
        }
        Ok(())
    }

    /// The server processes: nginx's master and workers, the stack with the streamer, or the
    /// floor's server.
    fn pids(&self) -> Vec<u32> {
        match (&self.nginx, &self.stack, &self.floor) {
            (Some(nginx), _, _) => {
                let mut pids = vec![nginx.pid()];
                pids.extend(system::children(nginx.pid()));
                pids
            }
            (None, Some(stack), _) => vec![stack.pid()],
            (None, None, Some(floor)) => vec![floor.pid()],
            (None, None, None) => Vec::new(),
        }
    }

    /// The server processes' resident memory, in bytes, and how many processes that is.
    fn rss(&self) -> anyhow::Result<(u64, usize)> {
        let pids = self.pids();
        let mut total = 0;
        for &pid in &pids {
            total += system::rss(pid)?;
        }
        Ok((total, pids.len()))
    }

    /// Starts a source of events at `rate` and says where its SSE clients connect.
    async fn open(&self, rate: u32) -> anyhow::Result<Stream> {
        if let Some(nginx) = &self.nginx {
            // A channel name per stream, so a step never sees the last one's messages.
            let stream = format!("s{}-{rate}", unix_millis());
            let channels: Vec<String> = (0..self.nchan_channels)
                .map(|n| format!("{stream}-{n}"))
                .collect();
            let publisher = Publisher::start(
                channels.iter().map(|c| nginx.publish_url(c)).collect(),
                rate,
            )?;
            return Ok(Stream {
                simulator: None,
                urls: channels.iter().map(|c| nginx.subscribe_url(c)).collect(),
                publisher: Some(publisher),
                _floor: None,
            });
        }
        if let Some(floor) = &self.floor {
            return Ok(Stream {
                simulator: None,
                urls: vec![floor.url()],
                publisher: None,
                _floor: Some(floor.stream(rate)?),
            });
        }
        let stack = self.stack.as_ref().context("no server to measure")?;
        let simulator = stack.start_simulator(rate).await?;
        let sse = stack.endpoints().sse.as_deref().unwrap_or_default();
        let url = format!(
            "{}/v1/sessions/{}/stream?simulator_id={}",
            sse.trim_end_matches('/'),
            stack.session_id(),
            simulator.id
        );
        Ok(Stream {
            simulator: Some(simulator),
            urls: vec![url],
            publisher: None,
            _floor: None,
        })
    }

    /// Stops the stream's source: the publisher, the simulator, or the floor's events.
    async fn close(&self, stream: Stream) -> Option<PublisherReport> {
        let report = match stream.publisher {
            Some(publisher) => Some(publisher.stop().await),
            None => None,
        };
        if let (Some(stack), Some(simulator)) = (&self.stack, &stream.simulator)
            && let Err(e) = stack.stop_simulator(simulator).await
        {
            eprintln!("  (could not stop the simulator: {e:#})");
        }
        report
    }

    async fn endpoints(&self, stream: &Stream) -> anyhow::Result<Vec<Endpoint>> {
        let bearer = self.stack.as_ref().map(|stack| stack.token().to_owned());
        let mut endpoints = Vec::with_capacity(stream.urls.len());
        for url in &stream.urls {
            endpoints.push(Endpoint::new(url, bearer.clone()).await?);
        }
        Ok(endpoints)
    }
}

/// One step's outcome.
#[derive(Debug)]
pub(crate) struct Step {
    pub(crate) target: Target,
    pub(crate) subscribers: usize,
    pub(crate) rate: u32,
    pub(crate) window: Duration,
    pub(crate) totals: Totals,
    /// CPU used during the window.
    pub(crate) cpu: CpuUse,
    pub(crate) failed_connects: usize,
    pub(crate) first_connect_error: Option<String>,
    pub(crate) publisher: Option<PublisherReport>,
    /// Spans the traced streamer exported during the step (`None` untraced).
    pub(crate) spans_exported: Option<u64>,
}

impl Step {
    pub(crate) fn delivered_per_sec(&self) -> f64 {
        self.totals.delivered as f64 / self.window.as_secs_f64()
    }

    pub(crate) fn expected_per_sec(&self) -> f64 {
        f64::from(self.rate) * self.subscribers as f64
    }

    /// p50, p99 and max latency in milliseconds.
    pub(crate) fn latency_ms(&self) -> (f64, f64, f64) {
        let ms = |us: u64| us as f64 / 1000.0;
        let h: &Histogram<u64> = &self.totals.latency;
        if h.is_empty() {
            return (f64::NAN, f64::NAN, f64::NAN);
        }
        (
            ms(h.value_at_quantile(0.50)),
            ms(h.value_at_quantile(0.99)),
            ms(h.max()),
        )
    }

    /// Why the step is not sustained (empty if it is).
    pub(crate) fn shortfalls(&self) -> Vec<String> {
        let mut why = self.losses();
        let (_, p99, _) = self.latency_ms();
        if p99.is_nan() || p99 >= P99_LIMIT_MS {
            why.insert(
                usize::from(why.first().is_some_and(|w| w.starts_with("delivered"))),
                format!("p99 ≥ {P99_LIMIT_MS} ms"),
            );
        }
        why
    }

    /// Why the step is not lossless: what [`Step::shortfalls`] says but for latency.
    fn losses(&self) -> Vec<String> {
        let mut why = Vec::new();
        let share = self.delivered_per_sec() / self.expected_per_sec();
        if share < DELIVERED_SHARE {
            why.push(format!("delivered {:.1}% of the rate", share * 100.0));
        }
        if self.totals.missing > 0 {
            why.push("missing events".to_owned());
        }
        if self.failed_connects > 0 {
            why.push(format!("{} connections refused", self.failed_connects));
        }
        if self.totals.failed > self.failed_connects {
            why.push(format!(
                "{} streams ended early",
                self.totals.failed - self.failed_connects
            ));
        }
        if self.totals.silent > self.failed_connects {
            why.push(format!(
                "{} clients got no event",
                self.totals.silent - self.failed_connects
            ));
        }
        if let Some(error) = self.publisher.as_ref().and_then(|b| b.error.as_ref()) {
            why.push(format!("publisher failed: {error}"));
        }
        why
    }

    /// CPU used in the window, in cores: the server (nginx and the publisher for nchan), the
    /// load client, and everything else on the machine.
    pub(crate) fn cpu_cell(&self) -> String {
        let cpu = &self.cpu;
        format!(
            "{:.2} / {:.2} / {:.2}",
            cpu.server + cpu.publisher,
            cpu.client,
            cpu.other
        )
    }

    pub(crate) fn sustained(&self) -> bool {
        self.shortfalls().is_empty()
    }

    /// Everything delivered, whatever the latency.
    pub(crate) fn lossless(&self) -> bool {
        self.losses().is_empty()
    }
}

/// One step: a fresh simulator at `rate`, `subscribers` clients, warm-up, measured window.
pub(crate) async fn step(
    servers: &mut Servers,
    subscribers: usize,
    rate: u32,
    timing: Timing,
) -> anyhow::Result<Step> {
    servers.check_alive()?;
    let spans_before = servers.spans_exported();
    let stream = servers.open(rate).await?;
    let measured = async {
        let mut clients = Clients::new(servers.endpoints(&stream).await?)?;
        let opened = clients.open(subscribers, timing.batch).await?;
        clients.wait_started(opened.ok, FIRST_EVENT_TIMEOUT).await;
        tokio::time::sleep(timing.warmup).await;
        let pids = servers.pids();
        clients.shared().measure();
        let started = Instant::now();
        let cpu_before = CpuSample::take(&pids);
        tokio::time::sleep(timing.window).await;
        clients.shared().finish();
        let window = started.elapsed();
        let cpu = cpu_before.cores_until(&CpuSample::take(&pids), window.as_secs_f64());
        anyhow::Ok((opened, window, cpu, clients.close().await?))
    }
    .await;
    let publisher = servers.close(stream).await;
    let (opened, window, cpu, totals) = measured.with_context(|| {
        format!(
            "{} with {subscribers} subscribers at {rate} ev/s",
            servers.target
        )
    })?;
    tokio::time::sleep(SETTLE).await;
    Ok(Step {
        target: servers.target,
        subscribers,
        rate,
        window,
        totals,
        cpu,
        failed_connects: opened.failed,
        first_connect_error: opened.first_error,
        publisher,
        spans_exported: servers
            .spans_exported()
            .zip(spans_before)
            .map(|(after, before)| after - before),
    })
}

/// One line about a step, for the progress log.
pub(crate) fn describe(step: &Step) -> String {
    let (p50, p99, max) = step.latency_ms();
    let why = step.shortfalls();
    format!(
        "{} × {} at {} ev/s: {:.0} ev/s delivered, p50 {p50:.1} / p99 {p99:.1} / max {max:.1} ms, \
         {} missing, {} duplicate, CPU {}: {}",
        step.target,
        step.subscribers,
        step.rate,
        step.delivered_per_sec(),
        step.totals.missing,
        step.totals.duplicates,
        step.cpu_cell(),
        if why.is_empty() {
            "sustained".to_owned()
        } else {
            why.join(", ")
        }
    ) + &step.publisher.as_ref().map_or_else(String::new, |p| {
        format!(
            " (publisher: {} events to {} channels, {} publishes, publish {:.2} ms mean, \
             {:.1} ms max, backlog ≤ {}; CPU {:.2})",
            p.events,
            p.channels,
            p.published,
            p.mean_publish.as_secs_f64() * 1e3,
            p.max_publish.as_secs_f64() * 1e3,
            p.max_backlog,
            step.cpu.publisher
        )
    })
}

/// Memory per idle connection of one target at one count.
#[derive(Debug)]
pub(crate) struct Memory {
    pub(crate) target: Target,
    /// Connections asked for.
    pub(crate) requested: usize,
    /// Connections open and streaming when measured.
    pub(crate) connections: usize,
    pub(crate) before: u64,
    pub(crate) after: u64,
    pub(crate) processes: usize,
}

impl Memory {
    /// Bytes per connection.
    pub(crate) fn per_connection(&self) -> f64 {
        self.after.saturating_sub(self.before) as f64 / self.connections.max(1) as f64
    }
}

/// RSS of the servers with one probe client on a stream of 1 event/s, then with `n` more
/// clients on it (all having received an event, then 2 s to settle).
pub(crate) async fn memory(
    servers: &mut Servers,
    n: usize,
    timing: Timing,
) -> anyhow::Result<Memory> {
    servers.check_alive()?;
    let stream = servers.open(1).await?;
    let measured = async {
        let endpoint = servers.endpoints(&stream).await?;
        // The probe brings up the stream's own state (the streamer's upstream, nchan's
        // channel), which is not per connection.
        let mut probe = Clients::new(endpoint.clone())?;
        probe.open(1, 1).await?;
        probe.wait_started(1, FIRST_EVENT_TIMEOUT).await;
        tokio::time::sleep(Duration::from_secs(1)).await;
        let (before, processes) = servers.rss()?;
        let mut clients = Clients::new(endpoint)?;
        let opened = clients.open(n, timing.batch).await?;
        let started = clients.wait_started(opened.ok, FIRST_EVENT_TIMEOUT).await;
        tokio::time::sleep(Duration::from_secs(2)).await;
        let (after, _) = servers.rss()?;
        clients.close().await?;
        probe.close().await?;
        anyhow::Ok(Memory {
            target: servers.target,
            requested: n,
            connections: opened.ok.min(started),
            before,
            after,
            processes,
        })
    }
    .await;
    servers.close(stream).await;
    let memory = measured.with_context(|| format!("{} memory with {n} clients", servers.target))?;
    tokio::time::sleep(SETTLE).await;
    Ok(memory)
}

fn unix_millis() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis())
}
