//! A run: streaming sessions (each with a running simulator) and their SSE and WebSocket
//! clients, control cycles at a target rate, reconnect storms, and a progress bar; or, in the
//! churn soak, waves of sessions and clients opened and closed with resident memory read
//! between them. Every task stops at the run's end; what the run created is closed.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use http::Method;
use indicatif::{ProgressBar, ProgressStyle};
use secrecy::SecretString;
use serde_json::Value;
use session_core::domain::{SimulatorStatus, Transport};
use session_smoke::api::{self, Api};
use session_smoke::client::{Clients, TlsError};
use session_smoke::endpoints::{Endpoints, EndpointsError};
use session_smoke::{StepError, sse, ws};
use tokio::sync::{Mutex, watch};
use tokio::task::JoinHandle;
use tokio::time::{Interval, MissedTickBehavior};
use url::Url;

use crate::cli::{LoadArgs, Mode};
use crate::stats::{Figures, Kind, Recorder, StreamerHeld, Tracker, class};

/// How long a failed connect waits before the next try.
const RETRY: Duration = Duration::from_secs(1);
/// The control cycles' simulators: slow, they are there to be started and stopped.
const CONTROL_EVENTS_PER_SECOND: u32 = 5;
/// How long a streaming session's simulator may take to run.
const START_PATIENCE: Duration = Duration::from_secs(30);

/// Why a run could not start or report.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The endpoints file cannot be used.
    #[error(transparent)]
    Endpoints(#[from] EndpointsError),
    /// The TLS client cannot be built.
    #[error(transparent)]
    Tls(#[from] TlsError),
    /// Neither a token nor a place to mint one.
    #[error("no token: give --token (or SESSION_LOAD_TOKEN), or a \"token_url\" in {0}")]
    NoToken(PathBuf),
    /// The churn soak reads memory from the streamer's `/metrics` and there is no `sse` key.
    #[error(
        "--mode churn reads memory from the streamer's /metrics: give --memory-pid or an \"sse\" key in {0}"
    )]
    NoMemorySource(PathBuf),
    /// A streaming session could not be set up.
    #[error("cannot set up streaming session {index}: {source}")]
    Setup {
        /// Which session (from 0).
        index: u32,
        /// Why.
        source: StepError,
    },
    /// Resident memory could not be read.
    #[error("cannot read resident memory: {0}")]
    Memory(String),
    /// The table or the plot could not be written.
    #[error("cannot write {path}: {source}")]
    Write {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
}

/// Where tokens come from.
#[derive(Debug, Clone)]
enum Tokens {
    /// One token for every user.
    Given(SecretString),
    /// Minted per user at the local stack's token route.
    Minted(Url),
}

/// What every task of a run shares.
#[derive(Debug, Clone)]
struct Context {
    endpoints: Endpoints,
    clients: Clients,
    tokens: Tokens,
    recorder: Recorder,
    /// A word of this run in subjects and idempotency keys.
    run: String,
}

impl Context {
    async fn api(&self, subject: &str) -> Result<Api, StepError> {
        let token = match &self.tokens {
            Tokens::Given(token) => token.clone(),
            Tokens::Minted(url) => {
                let subject = format!("load-{}-{subject}", self.run);
                api::mint_token(&self.clients.http, url, &subject).await?
            }
        };
        Ok(Api::new(
            self.clients.http.clone(),
            &self.endpoints.http_api,
            token,
        ))
    }
}

/// Times `call` and records it as `kind`.
async fn timed<T>(
    recorder: &Recorder,
    kind: Kind,
    call: impl Future<Output = Result<T, StepError>>,
) -> Result<T, StepError> {
    let started = Instant::now();
    let result = call.await;
    match &result {
        Ok(_) => recorder.success(kind, started.elapsed()),
        Err(e) => recorder.error(kind, &class(e)),
    }
    result
}

/// A steady rate shared by tasks: each `tick` takes the next slot (first come, first served).
#[derive(Debug, Clone)]
struct Pacer(Arc<Mutex<Interval>>);

impl Pacer {
    fn new(per_second: f64) -> Self {
        let mut interval = tokio::time::interval(Duration::from_secs_f64(1.0 / per_second));
        // A slow server lowers the rate achieved (the table shows it); no burst to catch up.
        interval.set_missed_tick_behavior(MissedTickBehavior::Skip);
        Self(Arc::new(Mutex::new(interval)))
    }

    /// Waits for the next slot; `false` if the run stopped first.
    async fn tick(&self, stop: &mut watch::Receiver<bool>) -> bool {
        let ticked = tokio::select! {
            _ = async { self.0.lock().await.tick().await } => true,
            _ = stop.wait_for(|s| *s) => false,
        };
        ticked && !*stop.borrow()
    }
}

/// Runs what `args` asks until its duration ends or `interrupt` completes, then writes the
/// table and the plot. Returns the figures and the table.
///
/// # Errors
/// The endpoints file, the token or a streaming session cannot be set up, or a file cannot be
/// written.
pub async fn run(
    args: &LoadArgs,
    command: &str,
    interrupt: impl Future<Output = ()>,
) -> Result<(Figures, String), LoadError> {
    let endpoints = Endpoints::load(&args.endpoints)?;
    let tokens = match (&args.token, &endpoints.token_url) {
        (Some(token), _) => Tokens::Given(SecretString::from(token.trim().to_owned())),
        (None, Some(url)) => Tokens::Minted(url.clone()),
        (None, None) => return Err(LoadError::NoToken(args.endpoints.clone())),
    };
    if args.mode == Mode::Churn && args.memory_pid.is_none() && endpoints.sse.is_none() {
        return Err(LoadError::NoMemorySource(args.endpoints.clone()));
    }
    let context = Context {
        clients: Clients::new(args.ca_file.as_deref())?,
        endpoints,
        tokens,
        recorder: Recorder::new(),
        run: ulid::Ulid::new().to_string().to_lowercase()[20..].to_owned(),
    };
    let connected = Arc::new(AtomicUsize::new(0));
    let progress = progress(args.duration, &context.recorder, &connected);
    let work = async {
        match args.mode {
            Mode::Steady => steady(args, &context, &connected).await,
            Mode::Churn => churn(args, &context, &connected).await,
        }
    };
    let result = tokio::select! {
        result = work => result,
        () = interrupt => Ok(()),
    };
    progress.abort();
    result?;
    let figures = context.recorder.figures();
    let table = crate::report::table(&figures, command);
    write(&args.report, &table)?;
    write(&args.plot, &crate::report::svg(&figures))?;
    Ok((figures, table))
}

fn write(path: &Path, text: &str) -> Result<(), LoadError> {
    std::fs::write(path, text).map_err(|source| LoadError::Write {
        path: path.to_owned(),
        source,
    })
}

/// The progress bar (hidden when stderr is not a terminal), updated every second.
fn progress(
    duration: Duration,
    recorder: &Recorder,
    connected: &Arc<AtomicUsize>,
) -> JoinHandle<()> {
    let bar = ProgressBar::new(duration.as_secs());
    bar.set_style(
        ProgressStyle::with_template("{elapsed_precise} [{bar:30}] {pos}/{len} s  {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let (recorder, connected) = (recorder.clone(), Arc::clone(connected));
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        let mut last = 0;
        loop {
            tick.tick().await;
            let (events, errors) = recorder.totals();
            bar.set_position(recorder.elapsed().as_secs());
            bar.set_message(format!(
                "{} clients, {} events/s, {errors} errors",
                connected.load(Ordering::Relaxed),
                events - last
            ));
            last = events;
        }
    })
}

async fn steady(
    args: &LoadArgs,
    context: &Context,
    connected: &Arc<AtomicUsize>,
) -> Result<(), LoadError> {
    let (stop, stopped) = watch::channel(false);
    let mut controls = Vec::new();
    if args.ops_rate > 0.0 {
        let pacer = Pacer::new(args.ops_rate);
        for user in 0..args.control_users {
            let api =
                context
                    .api(&format!("ctl{user}"))
                    .await
                    .map_err(|source| LoadError::Setup {
                        index: user,
                        source,
                    })?;
            controls.push(tokio::spawn(control(
                api,
                context.clone(),
                pacer.clone(),
                stopped.clone(),
                args.symbols.clone(),
            )));
        }
    }
    let streams = Streams::open(args, context, connected).await;
    let streams = match streams {
        Ok(streams) => streams,
        Err(e) => {
            let _ = stop.send(true);
            for task in controls {
                let _ = task.await;
            }
            return Err(e);
        }
    };
    let storms = args.storm_every.map(|every| {
        let storm = streams.storm.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
            loop {
                tick.tick().await;
                storm.send_modify(|n| *n += 1);
            }
        })
    });
    tokio::time::sleep(args.duration.saturating_sub(context.recorder.elapsed())).await;
    if let Some(storms) = storms {
        storms.abort();
    }
    let _ = stop.send(true);
    streams.close(context).await;
    for task in controls {
        let _ = task.await;
    }
    Ok(())
}

/// The churn soak: waves of sessions and clients, resident memory (and what the streamer
/// still holds) read before the first and after each (once it settled), until the duration
/// leaves no room for another wave.
async fn churn(
    args: &LoadArgs,
    context: &Context,
    connected: &Arc<AtomicUsize>,
) -> Result<(), LoadError> {
    record_memory(args, context, 0).await?;
    let mut wave = 1;
    loop {
        let streams = Streams::open(args, context, connected).await?;
        tokio::time::sleep(args.wave).await;
        streams.close(context).await;
        tokio::time::sleep(args.settle).await;
        record_memory(args, context, wave).await?;
        wave += 1;
        let next = context.recorder.elapsed() + args.wave + args.settle;
        if next > args.duration {
            return Ok(());
        }
    }
}

/// Records the resident memory after `wave`, with the streamer's streams and window bytes
/// when its `/metrics` answers (they tell live state from memory the allocator keeps).
async fn record_memory(args: &LoadArgs, context: &Context, wave: usize) -> Result<(), LoadError> {
    let metrics = match &context.endpoints.sse {
        Some(_) => Some(streamer_metrics(context).await),
        None => None,
    };
    let resident = match args.memory_pid {
        Some(pid) => vm_rss(pid)?,
        None => match &metrics {
            Some(Ok(text)) => gauge(text, "process_resident_memory_bytes").ok_or_else(|| {
                LoadError::Memory("no process_resident_memory_bytes in /metrics".to_owned())
            })?,
            Some(Err(e)) => return Err(LoadError::Memory(e.clone())),
            None => return Err(LoadError::Memory("no sse endpoint".to_owned())),
        },
    };
    let held = metrics.and_then(Result::ok).and_then(|text| {
        Some(StreamerHeld {
            streams: gauge(&text, "streamer_streams")?,
            window_bytes: gauge(&text, "streamer_window_bytes")?,
        })
    });
    context.recorder.memory(wave, resident, held);
    Ok(())
}

/// `VmRSS` of process `pid`, in bytes, from `/proc/<pid>/status`.
fn vm_rss(pid: u32) -> Result<u64, LoadError> {
    let path = format!("/proc/{pid}/status");
    let text =
        std::fs::read_to_string(&path).map_err(|e| LoadError::Memory(format!("{path}: {e}")))?;
    text.lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| {
            rest.trim()
                .trim_end_matches("kB")
                .trim()
                .parse::<u64>()
                .ok()
        })
        .map(|kib| kib * 1024)
        .ok_or_else(|| LoadError::Memory(format!("no VmRSS line in {path}")))
}

/// The streamer's `/metrics` text.
async fn streamer_metrics(context: &Context) -> Result<String, String> {
    let base = context.endpoints.sse.as_ref().ok_or("no sse endpoint")?;
    let url = base.join("metrics").map_err(|e| e.to_string())?;
    let response = api::send(&context.clients.http, &Method::GET, &url, &[], None)
        .await
        .map_err(|e| e.to_string())?;
    let body = api::body(response, &Method::GET, &url)
        .await
        .map_err(|e| e.to_string())?;
    Ok(String::from_utf8_lossy(&body).into_owned())
}

/// The value of an unlabelled gauge in a Prometheus text exposition.
fn gauge(text: &str, name: &str) -> Option<u64> {
    text.lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(' '))
        .and_then(|value| value.trim().parse::<f64>().ok())
        .map(|value| value as u64)
}

/// One control cycle after another, each operation on its slot of the shared rate: create a
/// session, start a simulator, read its status, stop it, close the session. A cycle cut by
/// the run's end still closes its session.
async fn control(
    api: Api,
    context: Context,
    pacer: Pacer,
    mut stop: watch::Receiver<bool>,
    symbols: Vec<String>,
) {
    let recorder = &context.recorder;
    let mut cycle = 0_u64;
    while pacer.tick(&mut stop).await {
        cycle += 1;
        let key = format!("load-{}-{}", context.run, ulid::Ulid::new());
        let Ok(session) = timed(recorder, Kind::CreateSession, api.create_session(&key)).await
        else {
            continue;
        };
        let session = session.session_id;
        if pacer.tick(&mut stop).await {
            let start = api.start_simulator(&session, &symbols, CONTROL_EVENTS_PER_SECOND);
            if let Ok(simulator) = timed(recorder, Kind::StartSimulator, start).await {
                let id = simulator.simulator_id;
                if pacer.tick(&mut stop).await {
                    let _ = timed(
                        recorder,
                        Kind::SimulatorStatus,
                        api.simulator(&session, &id),
                    )
                    .await;
                }
                pacer.tick(&mut stop).await;
                let _ = timed(
                    recorder,
                    Kind::StopSimulator,
                    api.stop_simulator(&session, &id),
                )
                .await;
            }
        }
        pacer.tick(&mut stop).await;
        let _ = timed(recorder, Kind::DeleteSession, api.close_session(&session)).await;
    }
    let _ = cycle;
}

/// Streaming sessions and their clients.
#[derive(Debug)]
struct Streams {
    sessions: Vec<(Api, String, String)>,
    clients: Vec<JoinHandle<()>>,
    stop: watch::Sender<bool>,
    storm: watch::Sender<u64>,
}

/// What a stream client needs.
#[derive(Debug, Clone)]
struct Client {
    index: usize,
    total: usize,
    api: Api,
    session: String,
    context: Context,
    pacer: Pacer,
    stop: watch::Receiver<bool>,
    storm: watch::Receiver<u64>,
    storm_fraction: f64,
    heartbeat_every: Duration,
    connected: Arc<AtomicUsize>,
}

impl Streams {
    /// Sets up `--sessions` sessions with a running simulator each (a user each), then starts
    /// the clients on them, at most `--connect-rate` new connections a second.
    async fn open(
        args: &LoadArgs,
        context: &Context,
        connected: &Arc<AtomicUsize>,
    ) -> Result<Self, LoadError> {
        let recorder = &context.recorder;
        let mut streams = Self {
            sessions: Vec::new(),
            clients: Vec::new(),
            stop: watch::channel(false).0,
            storm: watch::channel(0).0,
        };
        for index in 0..args.sessions {
            let set_up = async {
                let api = context.api(&format!("s{index}")).await?;
                let key = format!("load-{}-{}", context.run, ulid::Ulid::new());
                let session = timed(recorder, Kind::CreateSession, api.create_session(&key))
                    .await?
                    .session_id;
                let start = api.start_simulator(&session, &args.symbols, args.events_per_second);
                let simulator = timed(recorder, Kind::StartSimulator, start).await;
                let simulator = match simulator {
                    Ok(simulator) => simulator,
                    Err(e) => {
                        let _ = api.close_session(&session).await;
                        return Err(e);
                    }
                };
                streams.sessions.push((
                    api.clone(),
                    session.clone(),
                    simulator.simulator_id.clone(),
                ));
                let deadline = Instant::now() + START_PATIENCE;
                let mut status = simulator.status;
                while status == SimulatorStatus::Starting && Instant::now() < deadline {
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    let read = api.simulator(&session, &simulator.simulator_id);
                    status = timed(recorder, Kind::SimulatorStatus, read).await?.status;
                }
                if status != SimulatorStatus::Running {
                    return Err(StepError::Check(format!(
                        "simulator {} is {status}, not running",
                        simulator.simulator_id
                    )));
                }
                Ok(())
            };
            if let Err(source) = set_up.await {
                streams.close(context).await;
                return Err(LoadError::Setup { index, source });
            }
        }
        let pacer = Pacer::new(args.connect_rate);
        let total = (args.sse + args.ws) as usize;
        for index in 0..total {
            let (api, session, _) = &streams.sessions[index % streams.sessions.len()];
            let client = Client {
                index,
                total,
                api: api.clone(),
                session: session.clone(),
                context: context.clone(),
                pacer: pacer.clone(),
                stop: streams.stop.subscribe(),
                storm: streams.storm.subscribe(),
                storm_fraction: args.storm_fraction,
                heartbeat_every: args.heartbeat_every,
                connected: Arc::clone(connected),
            };
            let task = if index < args.sse as usize {
                tokio::spawn(sse_client(client))
            } else {
                tokio::spawn(ws_client(client))
            };
            streams.clients.push(task);
        }
        Ok(streams)
    }

    /// Stops the clients, then stops each simulator and closes each session.
    async fn close(self, context: &Context) {
        let _ = self.stop.send(true);
        for task in self.clients {
            let _ = task.await;
        }
        let recorder = &context.recorder;
        for (api, session, simulator) in &self.sessions {
            let _ = timed(
                recorder,
                Kind::StopSimulator,
                api.stop_simulator(session, simulator),
            )
            .await;
            let _ = timed(recorder, Kind::DeleteSession, api.close_session(session)).await;
        }
    }
}

impl Client {
    /// Whether this client drops in storm `n`: a share of the clients that moves round. The
    /// clients are spread (multiplying by a stride coprime to the total, near its golden
    /// section, is a permutation), so a storm takes SSE and WebSocket clients alike.
    fn in_storm(&self, n: u64) -> bool {
        let total = self.total.max(1);
        let share = (self.storm_fraction * total as f64).ceil() as usize;
        let mut stride = (total as f64 * 0.618) as usize | 1;
        while gcd(stride, total) != 1 {
            stride += 1;
        }
        let place = self.index.wrapping_mul(stride) % total;
        (place + (n as usize).wrapping_mul(share)) % total < share
    }

    /// A URL to open: a ticket the first time, then a reconnect ticket resuming after the
    /// last event seen.
    async fn url(
        &self,
        transport: Transport,
        tracker: &Tracker,
        first: bool,
    ) -> Result<Url, StepError> {
        if first {
            self.api.ticket(&self.session, transport).await
        } else {
            let last = tracker.last_event_id();
            self.api
                .reconnect(&self.session, transport, last.as_deref())
                .await
        }
    }

    /// Waits before a new connection: the shared connect rate, except right after a storm
    /// (the storm is every chosen client reconnecting at once). `false` if the run stopped.
    async fn wait_turn(&mut self, storm: bool, failed: bool) -> bool {
        if failed {
            tokio::select! {
                () = tokio::time::sleep(RETRY) => {}
                _ = self.stop.wait_for(|s| *s) => return false,
            }
        }
        if storm {
            return !*self.stop.borrow();
        }
        self.pacer.tick(&mut self.stop).await
    }

    /// Records an event: new ones with a simulator timestamp count with their latency.
    fn event(
        &self,
        kind: Kind,
        tracker: &mut Tracker,
        event: &str,
        id: Option<&str>,
        data: &Value,
    ) {
        if !tracker.apply(event, id) {
            return;
        }
        if let Some(emitted) = data["emit_ns"].as_i64() {
            let now = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos() as i64);
            let latency = Duration::from_nanos(now.saturating_sub(emitted).max(0) as u64);
            self.context.recorder.success(kind, latency);
        }
    }
}

fn gcd(a: usize, b: usize) -> usize {
    if b == 0 { a } else { gcd(b, a % b) }
}

/// What ended a wait on a stream.
enum Step<T> {
    Read(T),
    Heartbeat,
    Storm(u64),
    Stop,
}

async fn sse_client(mut client: Client) {
    let recorder = client.context.recorder.clone();
    let mut tracker = Tracker::default();
    let (mut first, mut storm, mut failed) = (true, false, false);
    client.storm.mark_unchanged();
    while client.wait_turn(storm, failed).await {
        let started = Instant::now();
        let opened = async {
            let url = client.url(Transport::Sse, &tracker, first).await?;
            sse::open(&client.context.clients.http, &url).await
        }
        .await;
        let mut events = match opened {
            Ok((events, _)) => {
                recorder.success(Kind::SseConnect, started.elapsed());
                events
            }
            Err(e) => {
                recorder.error(Kind::SseConnect, &class(&e));
                (storm, failed) = (false, true);
                continue;
            }
        };
        (first, storm, failed) = (false, false, false);
        client.connected.fetch_add(1, Ordering::Relaxed);
        loop {
            let step = tokio::select! {
                event = events.next() => Step::Read(event),
                _ = client.storm.changed() => Step::Storm(*client.storm.borrow_and_update()),
                _ = client.stop.wait_for(|s| *s) => Step::Stop,
            };
            match step {
                Step::Read(Ok(Some(event))) if event.kind == "reconnect" => {
                    recorder.error(Kind::SseEvents, "reconnect-advised");
                    break;
                }
                Step::Read(Ok(Some(event))) => client.event(
                    Kind::SseEvents,
                    &mut tracker,
                    &event.kind,
                    event.id.as_deref(),
                    &event.data,
                ),
                Step::Read(Ok(None)) => {
                    recorder.error(Kind::SseEvents, "stream-ended");
                    failed = true;
                    break;
                }
                Step::Read(Err(e)) => {
                    recorder.error(Kind::SseEvents, &class(&e));
                    failed = true;
                    break;
                }
                Step::Storm(n) if client.in_storm(n) => {
                    storm = true;
                    break;
                }
                Step::Storm(_) | Step::Heartbeat => {}
                Step::Stop => break,
            }
        }
        client.connected.fetch_sub(1, Ordering::Relaxed);
    }
    recorder.sequence(Kind::SseEvents, tracker.gaps, tracker.duplicates);
}

async fn ws_client(mut client: Client) {
    let recorder = client.context.recorder.clone();
    let mut tracker = Tracker::default();
    let (mut first, mut storm, mut failed) = (true, false, false);
    let mut seq = 0_u64;
    client.storm.mark_unchanged();
    while client.wait_turn(storm, failed).await {
        let started = Instant::now();
        let opened = async {
            let url = client.url(Transport::Ws, &tracker, first).await?;
            ws::connect(&client.context.clients.tls, &url).await
        }
        .await;
        let mut socket = match opened {
            Ok((socket, _)) => {
                recorder.success(Kind::WsConnect, started.elapsed());
                socket
            }
            Err(e) => {
                recorder.error(Kind::WsConnect, &class(&e));
                (storm, failed) = (false, true);
                continue;
            }
        };
        (first, storm, failed) = (false, false, false);
        client.connected.fetch_add(1, Ordering::Relaxed);
        let every = client.heartbeat_every;
        let mut heartbeat = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
        heartbeat.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let mut sent: Option<(u64, Instant)> = None;
        loop {
            let step = tokio::select! {
                frame = socket.next_frame() => Step::Read(frame),
                _ = heartbeat.tick() => Step::Heartbeat,
                _ = client.storm.changed() => Step::Storm(*client.storm.borrow_and_update()),
                _ = client.stop.wait_for(|s| *s) => Step::Stop,
            };
            match step {
                Step::Read(Ok(frame)) => match frame["type"].as_str() {
                    Some("events") => {
                        let events = frame["events"].as_array().map(Vec::as_slice);
                        for event in events.unwrap_or_default() {
                            client.event(
                                Kind::WsEvents,
                                &mut tracker,
                                event["event"].as_str().unwrap_or("message"),
                                event["id"].as_str(),
                                &event["data"],
                            );
                        }
                    }
                    Some("heartbeat_ack") => {
                        if let Some((n, at)) = sent
                            && frame["seq"].as_u64() == Some(n)
                        {
                            recorder.success(Kind::WsHeartbeat, at.elapsed());
                            sent = None;
                        }
                    }
                    _ => {
                        let code = frame["code"].as_str().unwrap_or("unexpected-message");
                        recorder.error(Kind::WsEvents, &format!("ws-{code}"));
                    }
                },
                Step::Read(Err(e)) => {
                    recorder.error(Kind::WsEvents, &class(&e));
                    failed = true;
                    break;
                }
                Step::Heartbeat => {
                    if sent.is_some() {
                        recorder.error(Kind::WsHeartbeat, "no-ack");
                    }
                    seq += 1;
                    match socket.send_heartbeat(seq).await {
                        Ok(()) => sent = Some((seq, Instant::now())),
                        Err(e) => {
                            recorder.error(Kind::WsHeartbeat, &class(&e));
                            failed = true;
                            break;
                        }
                    }
                }
                Step::Storm(n) if client.in_storm(n) => {
                    storm = true;
                    break;
                }
                Step::Storm(_) => {}
                Step::Stop => break,
            }
        }
        client.connected.fetch_sub(1, Ordering::Relaxed);
        if !failed {
            socket.close().await;
        }
    }
    recorder.sequence(Kind::WsEvents, tracker.gaps, tracker.duplicates);
}

#[cfg(test)]
mod tests {
    use super::gauge;

    #[test]
    fn a_gauge_is_read_by_its_exact_name_not_a_longer_one() {
        let text = "# TYPE streamer_streams gauge\nstreamer_streams_total 9\nstreamer_streams 4\nstreamer_window_bytes 1.5e6\n";

        assert_eq!(gauge(text, "streamer_streams"), Some(4));
        assert_eq!(gauge(text, "streamer_window_bytes"), Some(1_500_000));
        assert_eq!(gauge(text, "streamer_connections"), None);
    }
}
