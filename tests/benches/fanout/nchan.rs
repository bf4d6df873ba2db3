//! Target B: nginx with the nchan module, configured and started by the bench, and the
//! publisher that feeds it.
//!
//! The publisher generates the events itself (no simulator, no gRPC hop, no bridge in the
//! measured path): at the step's rate, each a book update encoded by the streamer's own encoder
//! (`session_streamer::wire`, the same ~170-byte `data:` JSON the streamer sends) stamped with
//! its creation time in `emit_ns`, then one HTTP `POST` per event and channel, in order on one
//! keep-alive connection per channel, with `X-EventSource-Event` naming the SSE event type. The
//! clients may be spread over several channels (each gets every event) so that publishing,
//! which nchan answers only after the channel's fan-out, is parallel. It runs on a thread and
//! runtime of its own, away from the load client.

use std::fs::File;
use std::net::{Ipv4Addr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context as _, bail, ensure};
use session_proto::simulator::v1 as pb;
use session_proto::simulator::v1::market_event::Kind;
use session_streamer::book::Books;
use session_streamer::wire;
use tokio::sync::{mpsc, oneshot};

use crate::stack::SYMBOLS;

/// The publisher thread's name (its CPU time is the server's, not the load client's).
const PUBLISHER_THREAD: &str = "srv-publisher";
/// What to install when nginx or nchan is missing.
pub(crate) const INSTALL: &str = "apt-get install -y nginx libnginx-mod-nchan";
/// Where Debian's package puts the module.
const MODULE: &str = "/usr/lib/nginx/modules/ngx_nchan_module.so";
/// The files that load it, in `modules-available` (their `load_module` path may be relative
/// to nginx's compiled prefix).
const MODULE_CONFS: [&str; 2] = [
    "/usr/share/nginx/modules-available/mod-http-nchan.conf",
    "/usr/share/nginx/modules-available/mod-nchan.conf",
];
const NGINX_PREFIX: &str = "/usr/share/nginx";
/// Cap on nginx's `worker_connections` (per worker).
const MAX_WORKER_CONNECTIONS: u64 = 32_768;

/// nginx and its nchan module, as installed.
#[derive(Debug, Clone)]
pub(crate) struct Install {
    module: PathBuf,
    /// `nginx -v`, e.g. `nginx/1.22.1`.
    pub(crate) nginx_version: String,
    /// The Debian package's version, if dpkg knows it.
    pub(crate) nchan_version: Option<String>,
}

/// Finds nginx and the nchan module, or fails with the command that installs them.
pub(crate) fn find() -> anyhow::Result<Install> {
    let version = Command::new("nginx").arg("-v").output();
    let Ok(version) = version else {
        bail!("nginx is not installed; install it and the nchan module with `{INSTALL}`");
    };
    let nginx_version = String::from_utf8_lossy(&version.stderr)
        .trim()
        .trim_start_matches("nginx version: ")
        .to_owned();
    let module = if Path::new(MODULE).is_file() {
        PathBuf::from(MODULE)
    } else {
        MODULE_CONFS
            .iter()
            .filter_map(|conf| std::fs::read_to_string(conf).ok())
            .find_map(|text| module_path(&text))
            .filter(|path| path.is_file())
            .with_context(|| {
                format!("the nginx nchan module is not installed (no {MODULE}); run `{INSTALL}`")
            })?
    };
    let nchan_version = Command::new("dpkg-query")
        .args(["-W", "-f=${Version}", "libnginx-mod-nchan"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned());
    Ok(Install {
        module,
        nginx_version,
        nchan_version,
    })
}

/// The path of `load_module <path>;` in a modules-available file.
fn module_path(conf: &str) -> Option<PathBuf> {
    let line = conf
        .lines()
        .find(|l| l.trim_start().starts_with("load_module"))?;
    let path = line
        .trim()
        .trim_start_matches("load_module")
        .trim()
        .trim_end_matches(';')
        .trim();
    let path = Path::new(path);
    Some(if path.is_absolute() {
        path.to_owned()
    } else {
        Path::new(NGINX_PREFIX).join(path)
    })
}

/// A running nginx (master and workers), stopped when dropped.
#[derive(Debug)]
pub(crate) struct Nginx {
    child: Child,
    dir: PathBuf,
    conf: PathBuf,
    port: u16,
    /// `worker_connections` as configured.
    pub(crate) worker_connections: u64,
    /// `worker_rlimit_nofile` as configured.
    pub(crate) worker_rlimit_nofile: u64,
}

impl Nginx {
    /// Writes a configuration into `dir` and starts nginx with it; returns once it accepts
    /// connections. `nofile` is the file-descriptor limit the workers may have.
    pub(crate) async fn start(install: &Install, dir: &Path, nofile: u64) -> anyhow::Result<Self> {
        let port = free_port()?;
        let worker_connections = MAX_WORKER_CONNECTIONS.min(nofile);
        let conf = dir.join("nginx.conf");
        std::fs::write(
            &conf,
            config(&install.module, dir, port, worker_connections, nofile),
        )?;
        let log = File::create(dir.join("nginx.out"))?;
        let mut prefix = dir.as_os_str().to_owned();
        prefix.push("/");
        let child = Command::new("nginx")
            .arg("-c")
            .arg(&conf)
            .arg("-p")
            .arg(&prefix)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .context("starting nginx")?;
        let mut nginx = Self {
            child,
            dir: dir.to_owned(),
            conf,
            port,
            worker_connections,
            worker_rlimit_nofile: nofile,
        };
        let started = Instant::now();
        while std::net::TcpStream::connect((Ipv4Addr::LOCALHOST, port)).is_err() {
            nginx.check_alive()?;
            ensure!(
                started.elapsed() < Duration::from_secs(10),
                "nginx did not listen on 127.0.0.1:{port} within 10 s:\n{}",
                nginx.log_tail()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        // The master listens before it forks the workers (`auto`: one per CPU).
        let cpus = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
        while crate::system::children(nginx.pid()).len() < cpus
            && started.elapsed() < Duration::from_secs(10)
        {
            nginx.check_alive()?;
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Ok(nginx)
    }

    /// Fails if nginx has exited.
    pub(crate) fn check_alive(&mut self) -> anyhow::Result<()> {
        if let Some(status) = self.child.try_wait()? {
            bail!("nginx exited ({status}):\n{}", self.log_tail());
        }
        Ok(())
    }

    fn log_tail(&self) -> String {
        let mut text = String::new();
        for file in ["nginx.out", "error.log"] {
            let content = std::fs::read_to_string(self.dir.join(file)).unwrap_or_default();
            let lines: Vec<&str> = content.lines().collect();
            text.push_str(&lines[lines.len().saturating_sub(10)..].join("\n"));
            text.push('\n');
        }
        text
    }

    /// The master process's id.
    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Where subscribers of `channel` connect.
    pub(crate) fn subscribe_url(&self, channel: &str) -> String {
        format!("http://127.0.0.1:{}/sub/{channel}", self.port)
    }

    /// Where the publisher publishes to `channel`.
    pub(crate) fn publish_url(&self, channel: &str) -> String {
        format!("http://127.0.0.1:{}/pub/{channel}", self.port)
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(Some(_))) {
            return;
        }
        // `nginx -s stop` signals the master (TERM), which stops its workers.
        let mut prefix = self.dir.as_os_str().to_owned();
        prefix.push("/");
        let _ = Command::new("nginx")
            .arg("-c")
            .arg(&self.conf)
            .arg("-p")
            .arg(&prefix)
            .args(["-s", "stop"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        let started = Instant::now();
        while started.elapsed() < Duration::from_secs(5) {
            if matches!(self.child.try_wait(), Ok(Some(_))) {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let workers = crate::system::children(self.child.id());
        let _ = self.child.kill();
        let _ = self.child.wait();
        for worker in workers {
            let _ = Command::new("kill")
                .args(["-KILL", &worker.to_string()])
                .status();
        }
    }
}

/// nginx's configuration: everything in `dir`, nchan loaded, one publisher and one SSE
/// subscriber location, the channel id taken from the URL; tuned as nchan's and nginx's
/// documentation advise for many long-lived subscribers: a worker per CPU each with its own
/// `reuseport` listening socket (without it one worker takes most connections and fans out
/// alone), `tcp_nodelay`, `sendfile`, and room in shared memory for every message in flight.
fn config(module: &Path, dir: &Path, port: u16, worker_connections: u64, nofile: u64) -> String {
    let dir = dir.display();
    let module = module.display();
    format!(
        r"# Written by the fan-out benchmark (tests/benches/fanout).
load_module {module};
daemon off;
master_process on;
worker_processes auto;
worker_cpu_affinity auto;
worker_rlimit_nofile {nofile};
pid {dir}/nginx.pid;
error_log {dir}/error.log warn;

events {{
    worker_connections {worker_connections};
    use epoll;
    multi_accept on;
}}

http {{
    access_log off;
    sendfile on;
    tcp_nodelay on;
    tcp_nopush off;
    # Shared memory for nchan's messages and channels (default 128 MiB).
    nchan_shared_memory_size 512M;
    default_type application/octet-stream;
    client_body_temp_path {dir}/client_body;
    proxy_temp_path {dir}/proxy;
    fastcgi_temp_path {dir}/fastcgi;
    uwsgi_temp_path {dir}/uwsgi;
    scgi_temp_path {dir}/scgi;
    # Snapshots and events stay in memory, on one keep-alive publisher connection.
    client_body_buffer_size 1m;
    client_max_body_size 4m;
    keepalive_requests 100000000;
    keepalive_timeout 600s;

    server {{
        listen 127.0.0.1:{port} reuseport backlog=4096;

        location ~ ^/pub/([A-Za-z0-9_-]+)$ {{
            nchan_publisher;
            nchan_channel_id $1;
            nchan_message_buffer_length 1000;
            nchan_message_timeout 60s;
        }}

        location ~ ^/sub/([A-Za-z0-9_-]+)$ {{
            nchan_subscriber eventsource;
            nchan_channel_id $1;
            # Like a streamer client, a new subscriber gets what happens from now on.
            nchan_subscriber_first_message newest;
        }}
    }}
}}
"
    )
}

fn free_port() -> anyhow::Result<u16> {
    Ok(TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?
        .local_addr()?
        .port())
}

/// What the publisher did.
#[derive(Debug, Clone, Default)]
pub(crate) struct PublisherReport {
    /// Channels published to (each with its own ordered connection).
    pub(crate) channels: usize,
    /// Events generated (each published to every channel).
    pub(crate) events: u64,
    /// Publish requests answered.
    pub(crate) published: u64,
    /// Mean time nchan took to answer a publish.
    pub(crate) mean_publish: Duration,
    /// The longest.
    pub(crate) max_publish: Duration,
    /// The most publishes generated but not yet answered, on one channel.
    pub(crate) max_backlog: u64,
    /// Why it stopped before it was told to.
    pub(crate) error: Option<String>,
}

/// A running publisher, stopped by [`Publisher::stop`] or when dropped.
#[derive(Debug)]
pub(crate) struct Publisher {
    stop: Option<oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<Option<String>>>,
    counters: Arc<Counters>,
    channels: usize,
}

/// What the publisher counts as it goes.
#[derive(Debug, Default)]
struct Counters {
    events: AtomicU64,
    published: AtomicU64,
    /// Sum and maximum of publish round trips, in nanoseconds.
    publish_nanos: AtomicU64,
    max_publish_nanos: AtomicU64,
    max_backlog: AtomicU64,
}

impl Publisher {
    /// Generates `rate` events a second and publishes each to every URL of `publish_urls`.
    pub(crate) fn start(publish_urls: Vec<String>, rate: u32) -> anyhow::Result<Self> {
        let (stop, stopped) = oneshot::channel::<()>();
        let counters = Arc::new(Counters::default());
        let count = Arc::clone(&counters);
        let channels = publish_urls.len();
        let thread = std::thread::Builder::new()
            .name(PUBLISHER_THREAD.to_owned())
            .spawn(move || {
                let runtime = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(runtime) => runtime,
                    Err(e) => return Some(format!("no runtime: {e}")),
                };
                runtime.block_on(async move {
                    tokio::select! {
                        result = generate(publish_urls, rate, count) => {
                            result.err().map(|e| format!("{e:#}"))
                        }
                        _ = stopped => None,
                    }
                })
            })?;
        Ok(Self {
            stop: Some(stop),
            thread: Some(thread),
            counters,
            channels,
        })
    }

    /// Stops publishing and says what was published.
    pub(crate) async fn stop(mut self) -> PublisherReport {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let error = match self.thread.take() {
            Some(thread) => tokio::task::spawn_blocking(move || thread.join())
                .await
                .map_or_else(
                    |e| Some(format!("the publisher thread failed: {e}")),
                    |joined| joined.unwrap_or_else(|_| Some("the publisher panicked".to_owned())),
                ),
            None => None,
        };
        let c = &self.counters;
        let published = c.published.load(Ordering::Acquire);
        PublisherReport {
            channels: self.channels,
            events: c.events.load(Ordering::Acquire),
            published,
            mean_publish: Duration::from_nanos(
                c.publish_nanos.load(Ordering::Acquire) / published.max(1),
            ),
            max_publish: Duration::from_nanos(c.max_publish_nanos.load(Ordering::Acquire)),
            max_backlog: c.max_backlog.load(Ordering::Acquire),
            error,
        }
    }
}

impl Drop for Publisher {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// One event as the streamer would send it: a book update of two levels, encoded by the
/// streamer's encoder, stamped with its creation time.
fn event(sequence: u64) -> wire::Frame {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as i64);
    let level = |side: pb::Side, price| pb::LevelUpdate {
        side: side as i32,
        price,
        quantity: 1_250 + (sequence % 97) as i64,
    };
    let update = pb::MarketEvent {
        simulator_id: String::new(),
        epoch: 1,
        sequence,
        emit_time_unix_nanos: now,
        kind: Some(Kind::Update(pb::BookUpdate {
            symbol: SYMBOLS[(sequence % SYMBOLS.len() as u64) as usize].to_owned(),
            levels: vec![
                level(pb::Side::Bid, 4_321_050 - (sequence % 13) as i64),
                level(pb::Side::Ask, 4_321_150 + (sequence % 11) as i64),
            ],
        })),
    };
    wire::event(&update, &Books::default()).unwrap_or_else(|| unreachable!("an update encodes"))
}

/// Generates the events on a 1 ms tick, each stamped when generated, and hands each to every
/// channel's publishing task; ends when a channel fails.
async fn generate(urls: Vec<String>, rate: u32, counters: Arc<Counters>) -> anyhow::Result<()> {
    let mut channels = tokio::task::JoinSet::new();
    let mut queues = Vec::with_capacity(urls.len());
    for url in urls {
        let (queue, events) = mpsc::unbounded_channel::<wire::Frame>();
        let backlog = Arc::new(AtomicU64::new(0));
        queues.push((queue, Arc::clone(&backlog)));
        channels.spawn(publish(url, events, backlog, Arc::clone(&counters)));
    }
    let started = Instant::now();
    let mut tick = tokio::time::interval(Duration::from_millis(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut sequence = 0_u64;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            ended = channels.join_next() => {
                return match ended {
                    Some(Ok(Err(e))) => Err(e),
                    Some(Err(e)) => Err(e.into()),
                    _ => bail!("a publishing task ended"),
                };
            }
        }
        let due = (started.elapsed().as_secs_f64() * f64::from(rate)) as u64;
        while sequence < due {
            sequence += 1;
            let frame = event(sequence);
            counters.events.fetch_add(1, Ordering::Release);
            for (queue, backlog) in &queues {
                let waiting = backlog.fetch_add(1, Ordering::AcqRel) + 1;
                counters.max_backlog.fetch_max(waiting, Ordering::AcqRel);
                queue.send(frame.clone())?;
            }
        }
    }
}

/// Publishes one channel's events in order, one `POST` each on one keep-alive connection.
async fn publish(
    url: String,
    mut events: mpsc::UnboundedReceiver<wire::Frame>,
    backlog: Arc<AtomicU64>,
    counters: Arc<Counters>,
) -> anyhow::Result<()> {
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .pool_max_idle_per_host(1)
        .tcp_nodelay(true)
        .build()?;
    while let Some(frame) = events.recv().await {
        let sent = Instant::now();
        let response = http
            .post(&url)
            .header("X-EventSource-Event", frame.kind.as_str())
            .header("Content-Type", "application/json")
            .body(frame.data)
            .send()
            .await
            .context("publishing to nchan")?;
        let status = response.status();
        // Read the answer so the connection is reused.
        let answer = response.bytes().await?;
        ensure!(
            status.is_success(),
            "nchan answered {status} to a publish: {}",
            String::from_utf8_lossy(&answer)
        );
        let took = sent.elapsed().as_nanos() as u64;
        backlog.fetch_sub(1, Ordering::AcqRel);
        counters.publish_nanos.fetch_add(took, Ordering::Release);
        counters
            .max_publish_nanos
            .fetch_max(took, Ordering::Release);
        counters.published.fetch_add(1, Ordering::Release);
    }
    Ok(())
}
