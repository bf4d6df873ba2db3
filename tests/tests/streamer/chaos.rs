//! Upstream chaos: the simulator ends streams, stalls, restarts (a new epoch) or becomes
//! unavailable; clients see resumes, resets or a degraded status, never a silent gap.

use std::future::Future;
use std::time::Duration;

use serde_json::{Value, json};
use session_proto::simulator::v1 as pb;
use session_streamer::hub::UpstreamState;
use session_tests::book_replica::Replica;
use session_tests::sse::{Event, SseStream};
use session_tests::stream_fixture::{Fixture, PATIENCE};
use tokio::task::JoinHandle;

const SYMBOLS: [&str; 2] = ["BTC-USD", "ETH-USD"];
const CLIENTS: usize = 3;

/// What one client saw: its books, and every event that was not a delta or a trade, in order.
#[derive(Debug, Default)]
pub struct Seen {
    pub replica: Replica,
    pub notices: Vec<Event>,
}

impl Seen {
    /// Applies `event` (panicking on any gap) and keeps it if it is a notice.
    pub fn take(&mut self, event: Event) {
        self.replica.apply(&event);
        if !matches!(event.event.as_str(), "delta" | "trade") {
            self.notices.push(event);
        }
    }

    /// The states of the stream's own `status` events (`degraded`, `live`, `ended`), in order.
    pub fn stream_states(&self) -> Vec<&str> {
        self.notices
            .iter()
            .filter(|e| e.event == "status" && e.data["stream"] == Value::Bool(true))
            .map(|e| e.data["state"].as_str().unwrap())
            .collect()
    }
}

/// Reads `stream` on a task of its own until the simulator's final status (`stopped`).
pub fn read_to_the_end(mut stream: SseStream) -> JoinHandle<Seen> {
    tokio::spawn(async move {
        let mut seen = Seen::default();
        while seen.replica.last_status.as_deref() != Some("stopped") {
            let event = stream
                .next(PATIENCE)
                .await
                .expect("the stream goes on until the simulator stops");
            seen.take(event);
        }
        seen
    })
}

/// Opens `CLIENTS` streams, each read on a task of its own until the simulator stops.
async fn clients(fixture: &Fixture) -> Vec<JoinHandle<Seen>> {
    let mut clients = Vec::new();
    for _ in 0..CLIENTS {
        clients.push(read_to_the_end(fixture.open().await));
    }
    clients
}

/// Stops the simulator, waits for every client to read its final status, and asserts each
/// holds exactly the simulator's books.
async fn stop_and_compare(fixture: &Fixture, clients: Vec<JoinHandle<Seen>>) -> Vec<Seen> {
    fixture.stop_simulator().await;
    let mut seen = Vec::new();
    for client in clients {
        seen.push(client.await.expect("the client read without a gap"));
    }
    for symbol in SYMBOLS {
        let book = fixture.get_book(symbol).await;
        for client in &seen {
            client.replica.assert_matches(symbol, &book);
        }
    }
    seen
}

/// The value of the first series of `/metrics` named `name` (for `simulator`, if given).
pub async fn metric(fixture: &Fixture, name: &str, simulator: Option<&str>) -> Option<f64> {
    let text = fixture.metrics().await;
    let label = simulator.map(|s| format!("simulator=\"{s}\""));
    text.lines()
        .filter(|line| !line.starts_with('#'))
        .filter_map(|line| line.rsplit_once(' '))
        .find(|(series, _)| {
            let named = *series == name || series.starts_with(&format!("{name}{{"));
            named && label.as_deref().is_none_or(|l| series.contains(l))
        })
        .map(|(_, value)| value.parse().expect("a number"))
}

/// Polls `check` every 50 ms until it holds; panics after `within`.
pub async fn eventually<F: Future<Output = bool>>(
    what: &str,
    within: Duration,
    mut check: impl FnMut() -> F,
) {
    tokio::time::timeout(within, async {
        while !check().await {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("not within {within:?}: {what}"));
}

/// The upstream state of the only stream of the fixture's streamer.
fn upstream(fixture: &Fixture) -> UpstreamState {
    let streams = fixture.api.stack.streamer_hub().streams();
    assert_eq!(streams.len(), 1, "one stream");
    streams[0].upstream()
}

/// Breaks of the upstream of the fixture's only stream so far (each followed by a
/// resubscription). Per stream, from the hub: the metric counts every stream of the process,
/// and the tests beside this one share the process.
fn upstream_breaks(fixture: &Fixture, simulator: &str) -> f64 {
    let streams = fixture.api.stack.streamer_hub().streams();
    let stream = streams.iter().find(|s| s.key == simulator);
    stream.map_or(0.0, |s| s.upstream_breaks() as f64)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_the_simulator_ends_are_resumed_without_a_reset_or_a_gap() {
    let fixture = Fixture::start(&SYMBOLS, 1_000, |_| {}).await;
    let key = fixture.backend_id().await;
    let clients = clients(&fixture).await;
    let mut faults = fixture.api.stack.simulator().fault_client();

    // The open stream ends after 100 events, and so does each of the next three.
    faults
        .end_streams(pb::EndStreamsRequest {
            simulator_id: key.clone(),
            after_events: 100,
            open_streams: true,
            next_streams: 3,
        })
        .await
        .unwrap();
    eventually("four upstream breaks", Duration::from_secs(60), || async {
        upstream_breaks(&fixture, &key) >= 4.0
    })
    .await;
    eventually(
        "the upstream is live again",
        Duration::from_secs(30),
        || async { upstream(&fixture) == UpstreamState::Live },
    )
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let seen = stop_and_compare(&fixture, clients).await;

    for (i, client) in seen.iter().enumerate() {
        let states = client.stream_states();
        assert_eq!(
            client.replica.resets, 0,
            "client {i}: every break was resumed"
        );
        assert_eq!(client.replica.conflations, 0, "client {i}");
        assert!(
            client.replica.events > 400,
            "client {i}: {} events",
            client.replica.events
        );
        assert!(
            states.contains(&"degraded"),
            "client {i} was told: {states:?}"
        );
        assert_eq!(
            states.last(),
            Some(&"live"),
            "client {i} was told: {states:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_upstream_is_taken_as_broken_and_resumed_without_a_gap() {
    let fixture = Fixture::start_stack(&SYMBOLS, 500, |s| {
        s.streamer.upstream_idle_timeout_ms = Duration::from_millis(1_100);
    })
    .await;
    let key = fixture.backend_id().await;
    let clients = clients(&fixture).await;
    let mut faults = fixture.api.stack.simulator().fault_client();
    eventually("the upstream is live", Duration::from_secs(10), || async {
        upstream(&fixture) == UpstreamState::Live
    })
    .await;

    faults
        .stall_streams(pb::StallStreamsRequest {
            simulator_id: key.clone(),
            duration_millis: 3_000,
        })
        .await
        .unwrap();
    eventually("the stall is noticed", Duration::from_secs(30), || async {
        matches!(upstream(&fixture), UpstreamState::Degraded(_))
    })
    .await;
    eventually(
        "the upstream is live again",
        Duration::from_secs(30),
        || async { upstream(&fixture) == UpstreamState::Live },
    )
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let breaks = upstream_breaks(&fixture, &key);
    let seen = stop_and_compare(&fixture, clients).await;

    assert!(breaks >= 1.0, "the stalled stream was replaced: {breaks}");
    for (i, client) in seen.iter().enumerate() {
        let states = client.stream_states();
        let stalled = client.notices.iter().position(|e| {
            e.data["state"] == "degraded" && e.data["reason"].as_str().unwrap().contains("stalled")
        });
        assert!(
            stalled.is_some(),
            "client {i} was told of the stall: {states:?}"
        );
        assert_eq!(
            states.last(),
            Some(&"live"),
            "client {i} was told: {states:?}"
        );
        assert_eq!(
            client.replica.resets, 0,
            "client {i}: the stall was resumed"
        );
        assert_eq!(client.replica.conflations, 0, "client {i}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_simulator_resets_every_client_to_a_snapshot_of_its_new_epoch() {
    let fixture = Fixture::start(&SYMBOLS, 500, |_| {}).await;
    let key = fixture.backend_id().await;
    let clients = clients(&fixture).await;
    let mut faults = fixture.api.stack.simulator().fault_client();
    let old_epoch = fixture.get_book(SYMBOLS[0]).await.epoch;
    tokio::time::sleep(Duration::from_millis(300)).await;

    let restarted = faults
        .restart(pb::RestartRequest {
            simulator_id: key.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    eventually(
        "the upstream follows the new epoch",
        Duration::from_secs(30),
        || async {
            let head = fixture.api.stack.streamer_hub().streams()[0].head();
            head.is_some_and(|h| h.epoch == restarted.epoch)
                && upstream(&fixture) == UpstreamState::Live
        },
    )
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let seen = stop_and_compare(&fixture, clients).await;

    assert_ne!(restarted.epoch, old_epoch);
    for (i, client) in seen.iter().enumerate() {
        let reset = client
            .notices
            .iter()
            .position(|e| e.event == "reset")
            .unwrap_or_else(|| panic!("client {i} got no reset: {:?}", client.notices));
        let (reset, snapshot) = (&client.notices[reset], &client.notices[reset + 1]);
        let last = reset.data["last_event_id"].as_str().unwrap();
        assert_eq!(client.replica.resets, 1, "client {i}: one reset");
        assert_eq!(
            reset.data["reason"], "epoch_changed",
            "client {i}: {reset:?}"
        );
        assert!(
            last.starts_with(&format!("{old_epoch}-")),
            "client {i}: {last}"
        );
        assert_eq!(snapshot.event, "snapshot", "client {i}: {snapshot:?}");
        assert_eq!(snapshot.data["cause"], "reset", "client {i}");
        assert_eq!(snapshot.data["epoch"], restarted.epoch, "client {i}");
        assert_eq!(client.replica.epoch, Some(restarted.epoch), "client {i}");
        assert_eq!(
            client.stream_states().last(),
            Some(&"live"),
            "client {i} is told the stream recovered: {:?}",
            client.stream_states()
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unavailable_simulator_service_makes_streams_degraded_not_silent() {
    let mut fixture = Fixture::start_stack(&SYMBOLS, 500, |s| {
        s.streamer.upstream_breaker_threshold = 2;
        s.streamer.upstream_breaker_cool_down_secs = Duration::from_secs(1);
    })
    .await;
    let key = fixture.backend_id().await;
    let mut stream = fixture.open().await;
    let mut seen = Seen::default();
    session_tests::stream_fixture::read_events(&mut stream, &mut seen.replica, 20).await;
    let ready_url = format!("{}/health/ready", fixture.api.stack.endpoints().sse);

    // The service fails every stream, open or new, as a crashing server does...
    let mut faults = fixture.api.stack.simulator().fault_client();
    faults
        .end_streams(pb::EndStreamsRequest {
            simulator_id: key.clone(),
            after_events: 0,
            open_streams: true,
            next_streams: u32::MAX,
        })
        .await
        .unwrap();
    let first_status = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            let event = stream.next(PATIENCE).await.expect("the stream stays open");
            seen.take(event.clone());
            if event.event == "status" && event.data["stream"] == Value::Bool(true) {
                return event;
            }
        }
    })
    .await
    .expect("a stream status within seconds, not silence");
    eventually("the circuit opens", Duration::from_secs(30), || async {
        let body: Value = reqwest::get(&ready_url)
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        body["reasons"]
            .as_array()
            .unwrap()
            .contains(&json!("upstream: circuit open"))
    })
    .await;
    // ...then it is gone (while the circuit is open: a server that shuts down cleanly stops its
    // instances, whose streams end with a final status), and every resubscription is refused.
    fixture.api.stack.stop_exchange_simulator().await.unwrap();
    let breaks = upstream_breaks(&fixture, &key);
    eventually(
        "a refused resubscription",
        Duration::from_secs(30),
        || async { upstream_breaks(&fixture, &key) > breaks },
    )
    .await;
    let ready = reqwest::get(&ready_url).await.unwrap();
    let code = ready.status();
    let body: Value = ready.json().await.unwrap();
    // What the client was told meanwhile (notices only: no event comes).
    while let Ok(event) =
        tokio::time::timeout(Duration::from_millis(500), stream.next(PATIENCE)).await
    {
        seen.take(event.expect("the stream stays open"));
    }

    assert_eq!(first_status.data["state"], "degraded", "{first_status:?}");
    let states = seen.stream_states();
    assert!(states.iter().all(|s| *s == "degraded"), "{states:?}");
    assert_eq!(seen.replica.resets, 0);
    assert_eq!(
        seen.replica.last_status, None,
        "the simulator never said it stopped"
    );
    assert_eq!(code, 200, "{body}");
    assert_eq!(body["status"], "degraded", "{body}");
    let reasons: Vec<&str> = body["reasons"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r.as_str().unwrap())
        .collect();
    assert!(
        reasons
            .iter()
            .any(|r| r.starts_with(&format!("upstream {key}:"))),
        "the degraded stream is named: {reasons:?}"
    );
    assert!(reasons.contains(&"upstream: circuit open"), "{reasons:?}");
}
