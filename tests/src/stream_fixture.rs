//! A stack with one user, one session and one running simulator, and what tests ask of them.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::json;
use session_core::config::Settings;
use session_local::stack::StackSettings;
use session_proto::simulator::v1 as pb;
use session_proto::simulator::v1::simulator_control_client::SimulatorControlClient;

use crate::book_replica::Replica;
use crate::sse::{self, Event, SseStream};
use crate::test_api::{TestApi, User};

/// How long any single event may take to arrive.
pub const PATIENCE: Duration = Duration::from_secs(10);

/// Lifts the rate limits of reconnecting (tickets, stream opens, `$connect`s) for tests whose
/// clients reconnect hundreds of times a second on purpose: a flood by the limits' measure,
/// which is not what they are about.
pub fn reconnect_without_limits(settings: &mut Settings) {
    let unlimited = session_core::config::RateQuota {
        per_second: 100_000,
        burst: 100_000,
    };
    let limits = &mut settings.rate_limits;
    limits.tickets = unlimited;
    limits.sse_connect = unlimited;
    limits.ws_connect = unlimited;
    limits.connect_per_address = unlimited;
    limits.per_address = unlimited;
}

#[derive(Debug)]
pub struct Fixture {
    pub api: TestApi,
    pub user: User,
    pub token: String,
    pub session: String,
    pub simulator: String,
}

impl Fixture {
    /// A stack whose settings `configure` adjusts, and a simulator of `symbols` at `rate`.
    pub async fn start(symbols: &[&str], rate: u32, configure: impl FnOnce(&mut Settings)) -> Self {
        Self::start_stack(symbols, rate, |stack| configure(&mut stack.service)).await
    }

    /// The same, on a stack whose settings `configure` adjusts.
    pub async fn start_stack(
        symbols: &[&str],
        rate: u32,
        configure: impl FnOnce(&mut StackSettings),
    ) -> Self {
        // Boxed: the stack's start future is large, and every test awaits this one.
        let api = Box::pin(TestApi::spawn_stack(configure)).await;
        let token = api.stack.token("alice");
        let user = api.user("alice");
        let session = user.create_session().await;
        let answer = user
            .post(
                &format!("/v1/sessions/{session}/simulators"),
                &json!({ "symbols": symbols, "seed": 11, "events_per_second": rate }),
            )
            .await;
        assert_eq!(answer.status, StatusCode::ACCEPTED, "{answer:?}");
        let simulator = answer.body["simulator_id"]
            .as_str()
            .expect("a simulator id")
            .to_owned();
        let status = user
            .wait_for_simulator(&session, &simulator, "running")
            .await;
        assert_eq!(status, "running");
        Self {
            api,
            user,
            token,
            session,
            simulator,
        }
    }

    /// A fresh SSE ticket's URL (what `POST /tickets` answers).
    pub async fn ticket_url(&self) -> String {
        let answer = self
            .user
            .post(
                &format!("/v1/sessions/{}/tickets", self.session),
                &json!({ "transport": "sse" }),
            )
            .await;
        assert_eq!(answer.status, StatusCode::CREATED, "{answer:?}");
        answer.body["url"]
            .as_str()
            .expect("a ticket URL")
            .to_owned()
    }

    /// The reconnect endpoint's answer for `last_event_id`: the URL and the predicted resume.
    pub async fn reconnect_url(&self, last_event_id: Option<&str>) -> (String, serde_json::Value) {
        let mut body = json!({ "transport": "sse" });
        if let Some(last) = last_event_id {
            body["last_event_id"] = json!(last);
        }
        let answer = self
            .user
            .post(&format!("/v1/sessions/{}/reconnect", self.session), &body)
            .await;
        assert_eq!(answer.status, StatusCode::OK, "{answer:?}");
        let url = answer.body["url"]
            .as_str()
            .expect("a stream URL")
            .to_owned();
        (url, answer.body["resume"].clone())
    }

    /// The stream URL without a ticket (for bearer clients).
    pub fn stream_url(&self) -> String {
        format!(
            "{}/v1/sessions/{}/stream",
            self.api.stack.endpoints().sse,
            self.session
        )
    }

    /// The streamer's `/metrics` text.
    pub async fn metrics(&self) -> String {
        let url = format!("{}/metrics", self.api.stack.endpoints().sse);
        reqwest::get(url)
            .await
            .expect("the metrics endpoint answers")
            .text()
            .await
            .expect("a metrics body")
    }

    /// Opens a stream with a fresh ticket.
    pub async fn open(&self) -> SseStream {
        sse::connect(&self.ticket_url().await, &[])
            .await
            .expect("the stream opens")
    }

    /// Stops the simulator through the REST API.
    pub async fn stop_simulator(&self) {
        let answer = self
            .user
            .delete(&format!(
                "/v1/sessions/{}/simulators/{}",
                self.session, self.simulator
            ))
            .await;
        assert!(answer.status.is_success(), "{answer:?}");
    }

    /// The simulator service's client.
    pub async fn control(&self) -> SimulatorControlClient<tonic::transport::Channel> {
        let channel = tonic::transport::Endpoint::from_shared(
            self.api.stack.endpoints().simulator_grpc.clone(),
        )
        .expect("the simulator service's URL")
        .connect()
        .await
        .expect("the simulator service answers");
        SimulatorControlClient::new(channel)
    }

    /// The simulator's id at the backend (the only instance of this stack).
    pub async fn backend_id(&self) -> String {
        let list = self
            .control()
            .await
            .list(pb::ListRequest::default())
            .await
            .expect("the simulator service lists its simulators")
            .into_inner();
        assert_eq!(list.simulators.len(), 1);
        list.simulators[0].simulator_id.clone()
    }

    /// The authoritative book of `symbol`.
    pub async fn get_book(&self, symbol: &str) -> pb::GetBookResponse {
        self.control()
            .await
            .get_book(pb::GetBookRequest {
                simulator_id: self.backend_id().await,
                symbol: symbol.to_owned(),
                depth: 0,
            })
            .await
            .expect("the simulator service answers GetBook")
            .into_inner()
    }
}

/// Reads `stream` into `replica` until it holds `count` more events (or the stream ends).
pub async fn read_events(
    stream: &mut SseStream,
    replica: &mut Replica,
    count: usize,
) -> Vec<Event> {
    let mut seen = Vec::new();
    let target = replica.events + count;
    while replica.events < target {
        let Some(event) = stream.next(PATIENCE).await else {
            break;
        };
        replica.apply(&event);
        seen.push(event);
    }
    seen
}
