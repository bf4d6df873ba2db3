//! Two streamer processes on one DynamoDB store (moto's server), as two pods of a rolling
//! update: the one serving the session is stopped mid-stream — SIGTERM (it hands the session
//! over) or SIGKILL (the other takes it over once its lease lapses) — and its SSE and
//! WebSocket clients go on with the other, with no gap, and end with the simulator's books.

use std::process::{ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use session_core::auth::keys::{SigningKey, VerifyKeys};
use session_core::clock::SystemClock;
use session_core::config::{StoreBackend, StoreSettings};
use session_core::store::{DynamoStore, LeaseStore as _};
use session_tests::book_replica::Replica;
use session_tests::moto::Moto;
use session_tests::sse::{self, SseStream};
use session_tests::stream_fixture::{Fixture, PATIENCE};
use tokio::io::{AsyncBufReadExt as _, BufReader};
use tokio::process::{Child, Command};

use crate::ws::{WsClient, ws_url};

const SYMBOLS: [&str; 2] = ["BTC-USD", "ETH-USD"];
/// Events between a WebSocket client's heartbeats: about one a second at the simulator's rate
/// (the page sends one every few seconds).
const HEARTBEAT_EVERY: usize = 500;
/// A lapsed lease is taken over after this long (a crashed holder's sessions).
const LEASE_TTL_SECS: u64 = 2;

/// A `streamer` process (the binary the Dockerfile ships), on a free port.
struct StreamerProcess {
    name: &'static str,
    child: Child,
    base: String,
}

impl StreamerProcess {
    /// Starts streamer `name` against the rig's store, simulator and WebSocket API.
    async fn start(name: &'static str, rig: &Rig) -> Self {
        let endpoints = rig.fixture.api.stack.endpoints();
        let mut child = Command::new(env!("CARGO_BIN_EXE_streamer-process"))
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("AWS_ACCESS_KEY_ID", "test")
            .env("AWS_SECRET_ACCESS_KEY", "test")
            .env("AWS_REGION", "us-east-1")
            .env("SESSION_STORE__BACKEND", "dynamodb")
            .env("SESSION_STORE__ENDPOINT", Moto::shared().endpoint())
            .env("SESSION_STORE__TABLE_NAME", &rig.table)
            .env(
                "SESSION_AUTH__TICKET_VERIFY_KEYS_FILE",
                &rig.verify_keys_file,
            )
            .env("SESSION_BACKENDS__SIMULATOR_URL", &endpoints.simulator_grpc)
            .env("SESSION_BACKENDS__AUTH_URL", &endpoints.auth_grpc)
            .env("SESSION_STREAMER__LISTEN", "127.0.0.1:0")
            .env("SESSION_STREAMER__INSTANCE_ID", name)
            .env(
                "SESSION_STREAMER__CONNECTIONS_URL",
                &endpoints.connections_url,
            )
            // Quick takeovers, yet light on moto, which serialises requests: at 100 ms the
            // streamers and heartbeats queued it seconds deep on a loaded machine.
            .env("SESSION_STREAMER__PUSH_POLL_MS", "250")
            .env(
                "SESSION_STREAMER__LEASE_TTL_SECS",
                LEASE_TTL_SECS.to_string(),
            )
            .env("SESSION_STREAMER__DRAIN_DEADLINE_SECS", "5")
            .env("SESSION_TELEMETRY__LOG_FORMAT", "json")
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("the streamer binary starts");
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let address = tokio::time::timeout(PATIENCE, async {
            while let Some(line) = lines.next_line().await.unwrap() {
                let Ok(log) = serde_json::from_str::<serde_json::Value>(&line) else {
                    continue;
                };
                if log["message"] == "streamer listening" {
                    return log["address"].as_str().unwrap().to_owned();
                }
            }
            panic!("streamer {name} exited before listening");
        })
        .await
        .expect("the streamer listens in time");
        // Keep reading its logs (a full pipe would block it); show them on failure.
        tokio::spawn(async move {
            while let Ok(Some(line)) = lines.next_line().await {
                eprintln!("[{name}] {line}");
            }
        });
        Self {
            name,
            child,
            base: format!("http://{address}"),
        }
    }

    /// Sends SIGTERM, as Kubernetes does to a pod it replaces.
    fn terminate(&self) {
        let pid = self.child.id().expect("running").to_string();
        let status = std::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .expect("kill runs");
        assert!(status.success(), "SIGTERM to {}", self.name);
    }

    /// Waits for the process to exit.
    async fn exit(&mut self, within: Duration) -> ExitStatus {
        tokio::time::timeout(within, self.child.wait())
            .await
            .unwrap_or_else(|_| panic!("{} exits within {within:?}", self.name))
            .unwrap()
    }
}

/// `url` (a ticket's, naming the configured SSE base) pointed at the streamer at `base`, as
/// the ingress would route it.
fn route(base: &str, url: &str) -> String {
    let path = &url[url.find("/v1/").expect("a stream URL")..];
    format!("{base}{path}")
}

/// The local stack on moto's server, its own streamer not pushing, and one running simulator.
struct Rig {
    fixture: Fixture,
    table: String,
    store: DynamoStore,
    /// The JWKS of the stack's ticket key, as Kubernetes mounts it into the streamers.
    verify_keys_file: std::path::PathBuf,
}

impl Rig {
    async fn start() -> Self {
        let table = format!("handover-{}", ulid::Ulid::new().to_string().to_lowercase());
        let key = SigningKey::generate(&table).unwrap();
        let keys = VerifyKeys::of(&[&key]).unwrap();
        let verify_keys_file = std::env::temp_dir().join(format!("{table}-jwks.json"));
        std::fs::write(&verify_keys_file, serde_json::to_vec(keys.jwks()).unwrap()).unwrap();
        let fixture = Fixture::start_stack(&SYMBOLS, 500, |stack| {
            stack.push = false;
            let service = &mut stack.service;
            service.store.backend = StoreBackend::Dynamodb;
            service.store.endpoint = Some(Moto::shared().endpoint().to_owned());
            service.store.table_name.clone_from(&table);
            service.auth.set_ticket_keys(Some(key), Some(keys)).unwrap();
            // Clients that reconnect leave `$disconnect`s behind them for a moment.
            service.limits.connections_per_session = 16;
        })
        .await;
        let client =
            DynamoStore::local_client(Moto::shared().endpoint(), &StoreSettings::default(), None);
        let store = DynamoStore::new(client, &table, Arc::new(SystemClock));
        Self {
            fixture,
            table,
            store,
            verify_keys_file,
        }
    }

    /// The streamer holding the session's lease, once one does.
    async fn holder(&self) -> String {
        let name = format!("session/{}", self.fixture.session);
        for _ in 0..100 {
            if let Some(lease) = self.store.get_lease(&name).await.unwrap() {
                return lease.owner;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("no streamer took the session's lease");
    }
}

/// How far every client has read, for the test to pace the story.
struct Progress {
    counts: Vec<AtomicUsize>,
}

impl Progress {
    fn new(clients: usize) -> Self {
        Self {
            counts: (0..clients).map(|_| AtomicUsize::new(0)).collect(),
        }
    }

    fn report(&self, client: usize, events: usize) {
        self.counts[client].store(events, Ordering::SeqCst);
    }

    /// Waits until every client has read at least `events` more than at `from`.
    async fn advance(&self, from: &[usize], events: usize) {
        for _ in 0..400 {
            if self
                .counts
                .iter()
                .zip(from)
                .all(|(c, f)| c.load(Ordering::SeqCst) >= f + events)
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!(
            "the clients did not advance by {events} events: {:?}",
            self.now()
        );
    }

    fn now(&self) -> Vec<usize> {
        self.counts
            .iter()
            .map(|c| c.load(Ordering::SeqCst))
            .collect()
    }
}

/// An SSE client, as `EventSource` and a page behave: on a `reconnect` or a broken stream it
/// reopens the same URL with `Last-Event-ID` (the ingress now routes it to the other streamer);
/// if that is refused (a crashed streamer never released its ticket), it asks the reconnect
/// endpoint for a new URL.
async fn sse_client(
    rig: &Rig,
    first: &str,
    next: &OnceLock<String>,
    progress: &Progress,
    me: usize,
) -> Replica {
    let mut url = route(first, &rig.fixture.ticket_url().await);
    let mut stream = sse::connect(&url, &[]).await.unwrap();
    let mut replica = Replica::default();
    loop {
        let Some(event) = stream.next(PATIENCE).await else {
            let next = next.get().expect("the other streamer runs");
            let last = replica.position().unwrap();
            (url, stream) = resume_sse(rig, next, &url, &last).await;
            continue;
        };
        replica.apply(&event);
        progress.report(me, replica.events);
        if replica.last_status.as_deref() == Some("stopped") {
            return replica;
        }
    }
}

/// Reopens `url` on the streamer at `base` from `last`; the URL it reads from now, and the
/// stream.
async fn resume_sse(rig: &Rig, base: &str, url: &str, last: &str) -> (String, SseStream) {
    let same = route(base, url);
    // The previous connection's release may take a moment to be recorded; a crashed streamer
    // never records it.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(2);
    while tokio::time::Instant::now() < deadline {
        match sse::connect(&same, &[("last-event-id", last)]).await {
            Ok(stream) => return (same, stream),
            Err(refused) if refused.status == 403 => {
                tokio::time::sleep(Duration::from_millis(25)).await;
            }
            Err(refused) => panic!("{refused:?}"),
        }
    }
    let (fresh, _) = rig.fixture.reconnect_url(Some(last)).await;
    let fresh = route(base, &fresh);
    let stream = sse::connect(&fresh, &[]).await.unwrap();
    (fresh, stream)
}

/// A WebSocket client. One that `follows_advice` reconnects through the reconnect endpoint
/// when told to; one that does not stays on its connection. Both report their position by
/// heartbeats, as the page does.
async fn ws_client(rig: &Rig, follows_advice: bool, progress: &Progress, me: usize) -> Replica {
    let mut replica = Replica::default();
    let mut client = WsClient::open(&ws_url(&rig.fixture, None).await).await;
    // No heartbeat before the 500th event: A is often killed before one, and B must still
    // resume the client from the snapshot's position, which A records itself.
    let mut since_heartbeat = 0;
    loop {
        let event = client.next().await;
        if event.event == "reconnect" && follows_advice {
            let last = replica.position().unwrap();
            client = WsClient::open(&ws_url(&rig.fixture, Some(&last)).await).await;
            continue;
        }
        replica.apply_once(&event);
        progress.report(me, replica.events);
        since_heartbeat += 1;
        if since_heartbeat == HEARTBEAT_EVERY {
            since_heartbeat = 0;
            client.heartbeat(replica.position().as_deref()).await;
        }
        if replica.last_status.as_deref() == Some("stopped") {
            return replica;
        }
    }
}

/// The story of both tests: streamer A serves the session (its SSE client and its two
/// WebSocket clients); B starts; A is stopped by `stop`; B serves every client on; the
/// simulator stops. Returns the clients' replicas, checked against the simulator's books.
async fn across(stop: impl AsyncFnOnce(&mut StreamerProcess)) -> Vec<Replica> {
    let rig = Rig::start().await;
    let mut a = StreamerProcess::start("streamer-a", &rig).await;
    let a_base = a.base.clone();
    let b_base = OnceLock::new();
    let progress = Progress::new(3);
    let clients = async {
        tokio::join!(
            sse_client(&rig, &a_base, &b_base, &progress, 0),
            ws_client(&rig, true, &progress, 1),
            ws_client(&rig, false, &progress, 2),
        )
    };
    let story = async {
        progress.advance(&[0, 0, 0], 300).await;
        assert_eq!(rig.holder().await, "streamer-a", "A serves the session");
        let b = StreamerProcess::start("streamer-b", &rig).await;
        b_base.set(b.base.clone()).unwrap();
        // B polls and finds the session taken.
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(rig.holder().await, "streamer-a");

        let before = progress.now();
        stop(&mut a).await;
        progress.advance(&before, 1_000).await;
        assert_eq!(rig.holder().await, "streamer-b", "B took the session over");
        rig.fixture.stop_simulator().await;
        b
    };
    let ((sse, follower, stayer), _b) = tokio::join!(clients, story);
    let replicas = vec![sse, follower, stayer];
    for (client, replica) in ["sse", "ws following advice", "ws staying"]
        .iter()
        .zip(&replicas)
    {
        for symbol in SYMBOLS {
            replica.assert_matches(symbol, &rig.fixture.get_book(symbol).await);
        }
        eprintln!(
            "{client}: {} events, {} resets, {} duplicates dropped",
            replica.events, replica.resets, replica.duplicates
        );
    }
    replicas
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_hands_the_session_over_and_every_client_resumes_exactly() {
    let replicas = Box::pin(across(async |a| {
        a.terminate();
        let status = a.exit(Duration::from_secs(10)).await;
        assert!(status.success(), "a drained streamer exits 0: {status}");
    }))
    .await;

    for replica in &replicas {
        assert_eq!(replica.resets, 0, "exact resume, no reset");
        assert_eq!(
            replica.duplicates, 0,
            "the handover recorded each position exactly"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_leaves_the_session_to_the_other_streamer_once_its_lease_lapses() {
    let replicas = Box::pin(across(async |a| {
        a.child.start_kill().unwrap();
        let status = a.exit(Duration::from_secs(5)).await;
        assert!(!status.success(), "killed: {status}");
    }))
    .await;

    for replica in &replicas {
        // The other streamer backfills from the simulator: no reset, only repeats of what a
        // WebSocket client received after its last heartbeat (dropped by id).
        assert_eq!(replica.resets, 0, "no reset");
    }
}
