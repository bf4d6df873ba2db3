//! Target B: nginx with the nchan module, configured and started by the bench, and the bridge
//! that publishes the simulator's events to it.
//!
//! The bridge subscribes to the simulator's `MarketData` stream over gRPC, as the streamer
//! does, encodes every event with the streamer's own encoder (`session_streamer::wire`, so the
//! `data:` JSON is byte for byte what the streamer sends), and publishes it with one HTTP `POST`
//! per event, in order, on one keep-alive connection, with `X-EventSource-Event` naming the
//! SSE event type. It runs on a thread and runtime of its own, away from the load client.

use std::fs::File;
use std::net::{Ipv4Addr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail, ensure};
use session_proto::simulator::v1 as pb;
use session_proto::simulator::v1::market_data_client::MarketDataClient;
use session_proto::simulator::v1::market_event::Kind;
use session_proto::simulator::v1::simulator_control_client::SimulatorControlClient;
use session_streamer::book::Books;
use session_streamer::wire::{self, SnapshotCause};
use tokio::sync::oneshot;
use tonic::transport::Endpoint;

use crate::stack::{SEED, SYMBOLS, Simulator};

/// The bridge thread's name (its CPU time is told apart from the load client's).
pub(crate) const BRIDGE_THREAD: &str = "nchan-bridge";
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

    /// Where the bridge publishes to `channel`.
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
/// subscriber location, the channel id taken from the URL.
fn config(module: &Path, dir: &Path, port: u16, worker_connections: u64, nofile: u64) -> String {
    let dir = dir.display();
    let module = module.display();
    format!(
        r"# Written by the fan-out benchmark (tests/benches/fanout).
load_module {module};
daemon off;
master_process on;
worker_processes auto;
worker_rlimit_nofile {nofile};
pid {dir}/nginx.pid;
error_log {dir}/error.log warn;

events {{
    worker_connections {worker_connections};
}}

http {{
    access_log off;
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
        listen 127.0.0.1:{port} backlog=4096;

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

/// The simulator instance behind a service simulator: `Start` again with the service's id as
/// the idempotency token (as the service itself sends it) returns the running instance.
pub(crate) async fn instance_id(
    simulator_grpc: &str,
    simulator: &Simulator,
) -> anyhow::Result<String> {
    let channel = Endpoint::from_shared(simulator_grpc.to_owned())?
        .connect()
        .await
        .context("connecting to the simulator's gRPC endpoint")?;
    let info = SimulatorControlClient::new(channel)
        .start(pb::StartRequest {
            symbols: SYMBOLS.iter().map(|s| (*s).to_owned()).collect(),
            seed: SEED,
            events_per_second: simulator.events_per_second,
            client_token: simulator.id.clone(),
        })
        .await
        .context("finding the simulator instance")?
        .into_inner();
    Ok(info.simulator_id)
}

/// What the bridge did.
#[derive(Debug, Clone, Default)]
pub(crate) struct BridgeReport {
    /// Events published.
    pub(crate) published: u64,
    /// Mean time nchan took to answer a publish.
    pub(crate) mean_publish: Duration,
    /// The longest.
    pub(crate) max_publish: Duration,
    /// Why it stopped before it was told to.
    pub(crate) error: Option<String>,
}

/// A running bridge, stopped by [`Bridge::stop`] or when dropped.
#[derive(Debug)]
pub(crate) struct Bridge {
    stop: Option<oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<Option<String>>>,
    counters: Arc<Counters>,
}

/// What the bridge counts as it goes.
#[derive(Debug, Default)]
struct Counters {
    published: AtomicU64,
    /// Sum and maximum of publish round trips, in nanoseconds.
    publish_nanos: AtomicU64,
    max_publish_nanos: AtomicU64,
}

impl Bridge {
    /// Publishes the events of simulator instance `instance` to `publish_url`.
    pub(crate) fn start(
        simulator_grpc: String,
        instance: String,
        publish_url: String,
    ) -> anyhow::Result<Self> {
        let (stop, stopped) = oneshot::channel::<()>();
        let counters = Arc::new(Counters::default());
        let count = Arc::clone(&counters);
        let thread = std::thread::Builder::new()
            .name(BRIDGE_THREAD.to_owned())
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
                        result = publish(&simulator_grpc, instance, &publish_url, &count) => {
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
        })
    }

    /// Stops publishing and says what was published.
    pub(crate) async fn stop(mut self) -> BridgeReport {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let error = match self.thread.take() {
            Some(thread) => tokio::task::spawn_blocking(move || thread.join())
                .await
                .map_or_else(
                    |e| Some(format!("the bridge thread failed: {e}")),
                    |joined| joined.unwrap_or_else(|_| Some("the bridge panicked".to_owned())),
                ),
            None => None,
        };
        let published = self.counters.published.load(Ordering::Acquire);
        let total = self.counters.publish_nanos.load(Ordering::Acquire);
        BridgeReport {
            published,
            mean_publish: Duration::from_nanos(total / published.max(1)),
            max_publish: Duration::from_nanos(
                self.counters.max_publish_nanos.load(Ordering::Acquire),
            ),
            error,
        }
    }
}

impl Drop for Bridge {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

async fn publish(
    simulator_grpc: &str,
    instance: String,
    publish_url: &str,
    counters: &Counters,
) -> anyhow::Result<()> {
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .pool_max_idle_per_host(1)
        .tcp_nodelay(true)
        .build()?;
    let channel = Endpoint::from_shared(simulator_grpc.to_owned())?
        .tcp_nodelay(true)
        .connect()
        .await
        .context("connecting to the simulator")?;
    let mut events = MarketDataClient::new(channel)
        .subscribe(pb::SubscribeRequest {
            simulator_id: instance,
            resume_from: None,
        })
        .await
        .context("subscribing to the simulator")?
        .into_inner();
    let mut books = Books::default();
    while let Some(event) = events.message().await.context("reading the simulator")? {
        let Some(kind) = event.kind.as_ref() else {
            continue;
        };
        books.apply(event.epoch, event.sequence, kind);
        let frame = match kind {
            Kind::Snapshot(snapshot) => {
                let cause = if snapshot.reset {
                    SnapshotCause::Reset
                } else {
                    SnapshotCause::Initial
                };
                wire::snapshot(&books, event.emit_time_unix_nanos, cause)
            }
            _ => match wire::event(&event, &books) {
                Some(frame) => frame,
                None => continue,
            },
        };
        let sent = Instant::now();
        let response = http
            .post(publish_url)
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
        counters.publish_nanos.fetch_add(took, Ordering::Release);
        counters
            .max_publish_nanos
            .fetch_max(took, Ordering::Release);
        counters.published.fetch_add(1, Ordering::Release);
    }
    bail!("the simulator ended the stream")
}
