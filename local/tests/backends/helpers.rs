//! Spawning the reference backends on 127.0.0.1:0 and talking to them over real gRPC.
//!
//! Every wait here is bounded: a test that would hang fails instead, naming what it waited for.
//! Waits poll the server's own state (`GetBook`'s sequence) rather than sleeping for a guessed
//! time, so a loaded machine makes a test slower, never wrong.

use std::future::Future;
use std::time::Duration;

use session_local::auth::{AuthHandle, AuthServer, AuthSettings};
use session_local::simulator::{Replica, SimulatorHandle, SimulatorServer, SimulatorSettings};
use session_proto::auth::v1 as auth_pb;
use session_proto::auth::v1::validate_token_response::Result as Verdict;
use session_proto::simulator::v1 as pb;
use session_proto::simulator::v1::market_data_client::MarketDataClient;
use session_proto::simulator::v1::market_event::Kind;
use tonic::transport::Endpoint;
use tonic::{Code, Streaming};

/// Longest wait for one event of a stream that should be producing.
pub(crate) const EVENT_TIMEOUT: Duration = Duration::from_secs(10);

/// Longest wait for a condition on the server's state (a sequence reached).
pub(crate) const WAIT_TIMEOUT: Duration = Duration::from_secs(60);

/// Runs `future` to completion or panics after `limit`, naming `what`.
pub(crate) async fn within<T>(limit: Duration, what: &str, future: impl Future<Output = T>) -> T {
    tokio::time::timeout(limit, future)
        .await
        .unwrap_or_else(|_| panic!("{what} did not happen within {limit:?}"))
}

/// A simulator server with default settings.
pub(crate) async fn spawn_simulator() -> SimulatorHandle {
    spawn_simulator_with(SimulatorSettings::default()).await
}

/// A simulator server with `settings`.
pub(crate) async fn spawn_simulator_with(settings: SimulatorSettings) -> SimulatorHandle {
    SimulatorServer::spawn(settings)
        .await
        .expect("the simulator server starts")
}

/// The request to start an instance.
pub(crate) fn start_request(
    symbols: &[&str],
    seed: u64,
    events_per_second: u32,
) -> pb::StartRequest {
    pb::StartRequest {
        symbols: symbols.iter().map(|s| (*s).to_owned()).collect(),
        seed,
        events_per_second,
        client_token: String::new(),
    }
}

/// Starts an instance over gRPC.
pub(crate) async fn start(
    simulator: &SimulatorHandle,
    symbols: &[&str],
    seed: u64,
    events_per_second: u32,
) -> pb::SimulatorInfo {
    simulator
        .control_client()
        .start(start_request(symbols, seed, events_per_second))
        .await
        .expect("start succeeds")
        .into_inner()
}

/// Subscribes on a connection of its own.
pub(crate) async fn subscribe(
    simulator: &SimulatorHandle,
    simulator_id: &str,
    resume_from: Option<pb::StreamPosition>,
) -> Streaming<pb::MarketEvent> {
    simulator
        .market_data_client()
        .subscribe(pb::SubscribeRequest {
            simulator_id: simulator_id.to_owned(),
            resume_from,
        })
        .await
        .expect("subscribe succeeds")
        .into_inner()
}

/// HTTP/2 flow-control window of [`subscribe_with_small_window`]: small, so that a subscriber
/// that stops reading holds only a few hundred events in flight.
pub(crate) const SMALL_WINDOW: u32 = 64 * 1024;

/// Subscribes on a connection of its own whose flow-control windows are [`SMALL_WINDOW`].
pub(crate) async fn subscribe_with_small_window(
    simulator: &SimulatorHandle,
    simulator_id: &str,
) -> Streaming<pb::MarketEvent> {
    let channel = Endpoint::from_shared(simulator.endpoint())
        .expect("a valid endpoint")
        .initial_stream_window_size(SMALL_WINDOW)
        .initial_connection_window_size(SMALL_WINDOW)
        .connect()
        .await
        .expect("the simulator accepts connections");
    MarketDataClient::new(channel)
        .subscribe(pb::SubscribeRequest {
            simulator_id: simulator_id.to_owned(),
            resume_from: None,
        })
        .await
        .expect("subscribe succeeds")
        .into_inner()
}

/// The next event; panics if the stream ends, fails or is silent for [`EVENT_TIMEOUT`].
pub(crate) async fn next_event(stream: &mut Streaming<pb::MarketEvent>) -> pb::MarketEvent {
    match tokio::time::timeout(EVENT_TIMEOUT, stream.message()).await {
        Ok(Ok(Some(event))) => event,
        Ok(Ok(None)) => panic!("the stream ended"),
        Ok(Err(status)) => panic!("the stream failed: {status}"),
        Err(elapsed) => panic!("no event within {EVENT_TIMEOUT:?}: {elapsed}"),
    }
}

/// How a stream ended.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum End {
    /// Cleanly, without an error.
    Clean,
    /// With this status code.
    Status(Code),
}

/// Reads events into `replica` until the stream ends; returns how it ended and how many
/// events it delivered.
pub(crate) async fn drain(
    stream: &mut Streaming<pb::MarketEvent>,
    replica: &mut Replica,
) -> (End, u64) {
    let mut count = 0;
    loop {
        match tokio::time::timeout(EVENT_TIMEOUT, stream.message()).await {
            Ok(Ok(Some(event))) => {
                replica.apply(&event).expect("the stream keeps its rules");
                count += 1;
            }
            Ok(Ok(None)) => return (End::Clean, count),
            Ok(Err(status)) => return (End::Status(status.code()), count),
            Err(elapsed) => {
                panic!("the stream neither ended nor sent within {EVENT_TIMEOUT:?}: {elapsed}")
            }
        }
    }
}

/// Reads `count` events into `replica`.
pub(crate) async fn read_into(
    stream: &mut Streaming<pb::MarketEvent>,
    replica: &mut Replica,
    count: usize,
) {
    for _ in 0..count {
        let event = next_event(stream).await;
        replica.apply(&event).expect("the stream keeps its rules");
    }
}

/// Reads events into `replica` until it holds `sequence` of its epoch.
pub(crate) async fn read_until(
    stream: &mut Streaming<pb::MarketEvent>,
    replica: &mut Replica,
    sequence: u64,
) {
    while replica.sequence() < Some(sequence) {
        let event = next_event(stream).await;
        replica.apply(&event).expect("the stream keeps its rules");
    }
    assert_eq!(replica.sequence(), Some(sequence), "overshot {sequence}");
}

/// The authoritative book of `symbol`.
pub(crate) async fn get_book(
    simulator: &SimulatorHandle,
    simulator_id: &str,
    symbol: &str,
) -> pb::GetBookResponse {
    simulator
        .control_client()
        .get_book(pb::GetBookRequest {
            simulator_id: simulator_id.to_owned(),
            symbol: symbol.to_owned(),
            depth: 0,
        })
        .await
        .expect("get_book succeeds")
        .into_inner()
}

/// Polls the instance until it has emitted `sequence`; returns its state then. Panics after
/// [`WAIT_TIMEOUT`].
pub(crate) async fn wait_for_sequence(
    simulator: &SimulatorHandle,
    simulator_id: &str,
    sequence: u64,
) -> pb::SimulatorInfo {
    let what = format!("instance {simulator_id} reaching sequence {sequence}");
    within(WAIT_TIMEOUT, &what, async {
        loop {
            let info = simulator
                .simulators()
                .get(simulator_id)
                .expect("the instance exists");
            if info.sequence >= sequence {
                return info;
            }
            // Pacing of the poll, not an assertion: the loop ends on the sequence, whenever.
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
}

/// Whether `event` is a snapshot, and whether it is flagged reset.
pub(crate) fn snapshot_reset(event: &pb::MarketEvent) -> Option<bool> {
    match &event.kind {
        Some(Kind::Snapshot(snapshot)) => Some(snapshot.reset),
        _ => None,
    }
}

/// The event without what differs between two instances of the same seed (id, epoch, time).
pub(crate) fn content(event: &pb::MarketEvent) -> (u64, Option<Kind>) {
    (event.sequence, event.kind.clone())
}

/// An auth server with default settings.
pub(crate) async fn spawn_auth() -> AuthHandle {
    spawn_auth_with(AuthSettings::default()).await
}

/// An auth server with `settings`.
pub(crate) async fn spawn_auth_with(settings: AuthSettings) -> AuthHandle {
    AuthServer::spawn(settings)
        .await
        .expect("the auth server starts")
}

/// Asks the auth server over gRPC to validate `token` for `audience` (empty: its default).
pub(crate) async fn validate(
    auth: &AuthHandle,
    token: &str,
    audience: &str,
) -> Result<auth_pb::ValidToken, auth_pb::Rejection> {
    let response = auth
        .client()
        .validate_token(auth_pb::ValidateTokenRequest {
            token: token.to_owned(),
            audience: audience.to_owned(),
        })
        .await
        .expect("a rejected token is an answer, not a gRPC error")
        .into_inner();
    match response.result.expect("exactly one of valid or rejected") {
        Verdict::Valid(valid) => Ok(valid),
        Verdict::Rejected(rejection) => Err(rejection),
    }
}
