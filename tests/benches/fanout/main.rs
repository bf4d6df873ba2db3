//! SSE fan-out: the streamer against nginx with the nchan module and against the floor (the
//! least a server can do), on this machine, in the same run, with the same load client,
//! subscriber counts and payloads.
//!
//! ```sh
//! apt-get install -y nginx libnginx-mod-nchan    # once; the bench installs nothing itself
//! cargo build --release -p session-local         # the local stack the bench runs
//! cargo bench -p session-tests --bench fanout    # all three targets, 1,000 and 10,000 clients
//! # a quick run, or one target:
//! cargo bench -p session-tests --bench fanout -- --target nchan --subscribers 1000 \
//!     --rates 100,300 --secs 5
//! # the cost of tracing: the streamer untraced and traced, each rate three times (medians)
//! cargo bench -p session-tests --bench fanout -- --target tracing --subscribers 1000 \
//!     --rates 200,200,200,400,400,400 --skip-memory
//! ```
//!
//! Flags (`-- --help`): `--target both|streamer|nchan|floor|tracing` (`both`: streamer, nchan
//! and the floor), `--nchan-channels` (4), `--subscribers 1000,10000`, `--rates`
//! (events/s per stream; by default 100…800 for 1,000 subscribers and 10…80 for 10,000),
//! `--secs` (measured window, 8), `--warmup-secs` (2), `--batch` (connections opened at once,
//! 500), `--out` (the Markdown report; default `target/fanout.md`, relative paths from the
//! workspace root), `--session-local` (another build of the stack), `--skip-memory`.
//!
//! Per target and subscriber count, on fresh servers: first memory per idle connection, then
//! the sweep: each rate a step (a fresh simulator, every client connected and streaming, a
//! warm-up, the measured window), upwards until two steps in a row are not lossless
//! (delivered ≥ 99% of rate × subscribers, no missing event, no failed connection); a step is
//! sustained if it is lossless with a p99 under 50 ms. If none was sustained, the lowest rate
//! is halved up to three times. The source of every stream is a simulator of the local stack
//! (`target/release/session-local`, a child process on free loopback ports), started through
//! the REST API at the step's rate for the streamer (embedded in the stack, its SSE route);
//! nchan's events come from a publisher in the bench that POSTs them to nginx (see [`nchan`]),
//! the floor's from its own event thread (see [`floor`]). One load client
//! ([`client`]) in this process opens the SSE connections for both. Children are stopped on
//! exit, on error, on Ctrl-C and on SIGTERM.
//!
//! Layout: [`measure`] (servers, steps, sweep, memory), [`client`] (the load client),
//! [`stack`] (the local stack and its REST API), [`nchan`] (nginx and the publisher),
//! [`floor`] (the floor server), [`report`]
//! (the tables), [`system`] (file limits, `/proc`, host facts, signals).

#![allow(clippy::print_stdout)] // The report is the point of this program.

mod client;
mod floor;
mod measure;
mod nchan;
mod otlp;
mod report;
mod stack;
mod system;

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context as _, bail};
use clap::{Parser, ValueEnum};
use time::OffsetDateTime;

use crate::measure::{Servers, Target, Timing};
use crate::report::Report;

/// Which servers to measure.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Which {
    /// The streamer, nginx + nchan and the floor.
    Both,
    Streamer,
    Nchan,
    Floor,
    /// The streamer without and with tracing, side by side.
    Tracing,
}

/// What to measure.
#[derive(Debug, Parser)]
#[command(
    name = "fanout",
    about = "SSE fan-out of the streamer and of nginx + nchan, with the same load client."
)]
struct Args {
    /// Which servers to measure.
    #[arg(long, value_enum, default_value_t = Which::Both)]
    target: Which,
    /// SSE clients per stream, one sweep each.
    #[arg(long, value_delimiter = ',', default_values_t = [1_000_usize, 10_000])]
    subscribers: Vec<usize>,
    /// Publish rates to sweep (events/s per stream), for every subscriber count; by default
    /// 100,200,300,400,600,800 scaled to 1,000 subscribers (10…80 for 10,000).
    #[arg(long, value_delimiter = ',')]
    rates: Option<Vec<u32>>,
    /// Measured window of each step, in seconds.
    #[arg(long, default_value_t = 8)]
    secs: u64,
    /// Warm-up of each step, in seconds (after every client received an event).
    #[arg(long, default_value_t = 2)]
    warmup_secs: u64,
    /// nchan channels the clients are spread over (each gets every event, from its own
    /// ordered publisher connection).
    #[arg(long, default_value_t = 4)]
    nchan_channels: usize,
    /// Connections opened at once.
    #[arg(long, default_value_t = 500)]
    batch: usize,
    /// Where to write the Markdown report (relative paths from the workspace root).
    #[arg(long, default_value = "target/fanout.md")]
    out: PathBuf,
    /// The session-local build to run (default: target/release/session-local).
    #[arg(long, value_name = "PATH")]
    session_local: Option<PathBuf>,
    /// Skip memory per idle connection.
    #[arg(long)]
    skip_memory: bool,
    /// Passed by `cargo bench`.
    #[arg(long, hide = true)]
    bench: bool,
}

fn main() -> anyhow::Result<()> {
    // `cargo test --benches` runs bench targets without `--bench`: do nothing then.
    if !std::env::args().any(|a| a == "--bench") {
        return Ok(());
    }
    // The floor's server, started by the bench as a child process of its own (its sockets
    // would otherwise share this process's open-file limit with the clients').
    if std::env::args().any(|a| a == floor::SERVE_FLAG) {
        system::raise_file_limit(512)?;
        return floor::serve();
    }
    let args = Args::parse();
    if args.subscribers.is_empty() || args.subscribers.contains(&0) {
        bail!("--subscribers needs counts of at least 1");
    }
    if args
        .rates
        .as_ref()
        .is_some_and(|r| r.is_empty() || r.contains(&0))
    {
        bail!("--rates needs rates of at least 1 event/s");
    }
    let targets = match args.target {
        Which::Both => vec![Target::Streamer, Target::Nchan, Target::Floor],
        Which::Streamer => vec![Target::Streamer],
        Which::Nchan => vec![Target::Nchan],
        Which::Floor => vec![Target::Floor],
        Which::Tracing => vec![Target::Streamer, Target::StreamerTraced],
    };
    let binary = args
        .session_local
        .clone()
        .unwrap_or_else(stack::default_binary);
    if targets
        .iter()
        .any(|t| matches!(t, Target::Streamer | Target::StreamerTraced))
    {
        stack::check_binary(&binary)?;
    }
    let install = if targets.contains(&Target::Nchan) {
        Some(nchan::find()?)
    } else {
        None
    };
    let most = args.subscribers.iter().copied().max().unwrap_or(0) as u64;
    let files = system::raise_file_limit(most + 512)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let bench = Bench {
        args,
        targets,
        binary,
        install,
        files,
    };
    runtime.block_on(async {
        tokio::select! {
            result = bench.run() => result,
            signal = system::interrupted() => bail!("interrupted by {signal}; servers stopped"),
        }
    })
}

/// One run of the benchmark.
#[derive(Debug)]
struct Bench {
    args: Args,
    targets: Vec<Target>,
    binary: PathBuf,
    install: Option<nchan::Install>,
    /// The open-file limit (this process's, and the servers').
    files: u64,
}

impl Bench {
    async fn run(&self) -> anyhow::Result<()> {
        let timing = Timing {
            warmup: Duration::from_secs(self.args.warmup_secs),
            window: Duration::from_secs(self.args.secs.max(1)),
            batch: self.args.batch.max(1),
        };
        let load_before = system::load_average();
        let mut report = Report::default();
        let mut nginx_facts = None;
        for &count in &self.args.subscribers {
            let rates = self
                .args
                .rates
                .clone()
                .unwrap_or_else(|| default_rates(count));
            for &target in &self.targets {
                eprintln!("{target}, {count} subscribers, rates {rates:?} ev/s:");
                let measured = self
                    .target(target, count, &rates, timing, &mut report, &mut nginx_facts)
                    .await;
                if let Err(e) = measured {
                    eprintln!("  failed: {e:#}");
                    report
                        .errors
                        .push(format!("{target} with {count} subscribers: {e:#}"));
                }
            }
        }
        report.context = self.context(timing, &load_before, nginx_facts.as_deref());
        let markdown = report.markdown(&self.args.subscribers, &self.targets);
        println!("\n{markdown}");
        let out = system::in_workspace(&self.args.out);
        if let Some(dir) = out.parent() {
            std::fs::create_dir_all(dir)?;
        }
        std::fs::write(&out, &markdown).with_context(|| format!("writing {}", out.display()))?;
        eprintln!("report written to {}", out.display());
        if !report.errors.is_empty() {
            bail!("{} measurement(s) failed (see above)", report.errors.len());
        }
        Ok(())
    }

    /// Memory, then the sweep, of one target at one subscriber count, on fresh servers.
    async fn target(
        &self,
        target: Target,
        count: usize,
        rates: &[u32],
        timing: Timing,
        report: &mut Report,
        nginx_facts: &mut Option<String>,
    ) -> anyhow::Result<()> {
        let mut servers = Servers::start(
            target,
            &self.binary,
            self.install.as_ref(),
            self.files,
            self.args.nchan_channels,
        )
        .await?;
        if let Some(nginx) = servers.nginx() {
            nginx_facts.get_or_insert_with(|| {
                format!(
                    "`worker_processes auto` ({} workers here), `worker_connections {}`, \
                     `worker_rlimit_nofile {}`",
                    system::children(nginx.pid()).len(),
                    nginx.worker_connections,
                    nginx.worker_rlimit_nofile
                )
            });
        }
        if !self.args.skip_memory && target != Target::Floor {
            let memory = measure::memory(&mut servers, count, timing).await?;
            eprintln!(
                "  memory: {:.1} KiB per idle connection ({} connections)",
                memory.per_connection() / 1024.0,
                memory.connections
            );
            report.memory.push(memory);
        }
        let mut failures = 0;
        let mut any_sustained = false;
        for &rate in rates {
            let step = measure::step(&mut servers, count, rate, timing).await?;
            eprintln!("  {}", measure::describe(&step));
            failures = if step.lossless() { 0 } else { failures + 1 };
            any_sustained |= step.sustained();
            report.steps.push(step);
            if failures >= measure::FAILURES_TO_STOP {
                break;
            }
        }
        // Nothing sustained: halve the lowest rate a few times, so the target has a figure.
        let mut rate = rates.iter().copied().min().unwrap_or(1);
        for _ in 0..measure::STEPS_DOWN {
            if any_sustained || rate <= 1 {
                break;
            }
            rate /= 2;
            let step = measure::step(&mut servers, count, rate, timing).await?;
            eprintln!("  {}", measure::describe(&step));
            any_sustained = step.sustained();
            report.steps.push(step);
        }
        Ok(())
    }

    /// The lines above the tables: command, host, versions, method.
    fn context(&self, timing: Timing, load_before: &str, nginx: Option<&str>) -> Vec<String> {
        let args: Vec<String> = std::env::args()
            .skip(1)
            .filter(|a| a != "--bench")
            .collect();
        let command = if args.is_empty() {
            "cargo bench -p session-tests --bench fanout".to_owned()
        } else {
            format!(
                "cargo bench -p session-tests --bench fanout -- {}",
                args.join(" ")
            )
        };
        let now = OffsetDateTime::now_utc();
        let built = std::fs::metadata(&self.binary)
            .and_then(|m| m.modified())
            .map_or_else(|_| "?".to_owned(), |t| date_time(OffsetDateTime::from(t)));
        let mut lines = vec![
            format!("```sh\n{command}\n```"),
            String::new(),
            format!(
                "Run {}: {}; load average {} before, {} after.",
                date_time(now),
                system::host(),
                load_before,
                system::load_average()
            ),
            format!(
                "Local stack: `{}` (built {built}); every step streams a fresh simulator \
                 ({} symbols, seed {}) started through the REST API at the step's rate.",
                self.binary.display(),
                stack::SYMBOLS.len(),
                stack::SEED
            ),
        ];
        if let Some(install) = &self.install {
            lines.push(format!(
                "nginx + nchan: {} with libnginx-mod-nchan {} (Debian packages), configured by \
                 the bench: {}, `reuseport`, `tcp_nodelay`, `sendfile`, \
                 `nchan_shared_memory_size 512M`; SSE location `nchan_subscriber eventsource`, \
                 new subscribers start at the newest message. The clients are spread over {} \
                 channels. A publisher thread in the bench generates the events (book updates \
                 encoded by the streamer's encoder, the same ~170-byte `data:` JSON, stamped \
                 with their creation time) and POSTs each to every channel's publisher \
                 location, in order on one keep-alive connection per channel; its CPU is in \
                 the server's.",
                install.nginx_version,
                install.nchan_version.as_deref().unwrap_or("?"),
                nginx.unwrap_or("not started"),
                self.args.nchan_channels
            ));
        }
        if self.targets.contains(&Target::Streamer) {
            lines.push(
                "Streamer: embedded in the local stack, its SSE route \
                 `/v1/sessions/{id}/stream?simulator_id=…` with a bearer token; it subscribes \
                 to the simulator over gRPC itself."
                    .to_owned(),
            );
        }
        if self.targets.contains(&Target::Floor) {
            lines.push(format!(
                "Floor: a server in the bench, one writer thread per CPU with its own epoll, \
                 the sockets dealt out in turn; per event one non-blocking `write` of a \
                 {}-byte SSE message per socket (the rest kept until writable), events \
                 stamped when generated on a 1 ms tick; a child process of the bench.",
                floor::MESSAGE_BYTES
            ));
        }
        if self.targets.contains(&Target::StreamerTraced) {
            lines.push(
                "Streamer, traced: the same build with `OTEL_EXPORTER_OTLP_ENDPOINT` set, \
                 exporting every trace (the default sampler) over OTLP/gRPC to a receiver in \
                 this process that counts the spans and drops them."
                    .to_owned(),
            );
        }
        lines.push(format!(
            "Load client: this process (tokio, {} worker threads), one HTTP/1.1 connection per \
             client on 127.0.0.1, opened {} at a time; every client had its first event before \
             a {} s warm-up, then {} s measured. Latency: the client's wall clock on receipt \
             minus the simulator's `emit_ns`. Missing: sequence numbers a client skipped; \
             duplicate: events not above the last sequence. CPU: cores used during the window \
             (from `/proc`) by the server (nginx and the publisher thread; the floor's process; the whole \
             local stack for the streamer, its simulator included), by the load client, and by \
             everything else on the machine. Rates go up until two steps in a row are not \
             lossless (p99 aside); if none is sustained, the lowest is halved up to {} times.",
            std::thread::available_parallelism().map_or(1, std::num::NonZero::get),
            timing.batch,
            timing.warmup.as_secs(),
            timing.window.as_secs(),
            measure::STEPS_DOWN
        ));
        lines
    }
}

/// 100…800 events/s per stream for 1,000 subscribers, scaled to other counts (10…80 for
/// 10,000): the same range of total deliveries.
fn default_rates(subscribers: usize) -> Vec<u32> {
    let mut rates: Vec<u32> = [100_u64, 200, 300, 400, 600, 800]
        .iter()
        .map(|rate| (rate * 1_000 / subscribers.max(1) as u64).max(1) as u32)
        .collect();
    rates.dedup();
    rates
}

fn date_time(t: OffsetDateTime) -> String {
    format!("{} {:02}:{:02} UTC", t.date(), t.hour(), t.minute())
}
