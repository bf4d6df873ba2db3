//! Region `local-a` fails mid-stream (`docs/multi-region.md`, "What a client does when its
//! region fails"): an SSE client and a WebSocket client streaming a session homed in
//! `local-a` follow the documented path to `local-b` once the operator has failed the region
//! over, and get an explicit `reset` (`epoch_changed`) then a snapshot; every write `local-a`
//! acknowledged before the failure is in `local-b`. The failover time (the `/fail` call to the
//! first event from `local-b`) is printed for each client; so is the RPO: which acknowledged
//! writes `local-b` lacks at the takeover, against the bound the failover reports.

use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use session_local::regions::{RegionEndpoints, Regions};
use session_tests::sse::{self, Event, SseStream};
use session_tests::ws::{Socket, next_message};
use tokio_tungstenite::tungstenite::Message;

/// The replication lag between the regions.
const LAG: Duration = Duration::from_millis(200);

/// How long any one step may take before the test gives up.
const PATIENCE: Duration = Duration::from_secs(30);

/// A stream of events, over SSE or a WebSocket.
enum Stream {
    Sse(Box<SseStream>),
    Ws {
        socket: Box<Socket>,
        pending: std::collections::VecDeque<Event>,
    },
}

impl Stream {
    /// Opens the stream at a ticket's `url`.
    async fn open(url: &str) -> Self {
        if url.starts_with("ws") {
            let (socket, _) = tokio_tungstenite::connect_async(url)
                .await
                .expect("the WebSocket handshake");
            Self::Ws {
                socket: Box::new(socket),
                pending: std::collections::VecDeque::new(),
            }
        } else {
            Self::Sse(Box::new(
                sse::connect(url, &[]).await.expect("the stream opens"),
            ))
        }
    }

    /// The next event, or `None` once the stream broke.
    async fn next(&mut self) -> Option<Event> {
        match self {
            Self::Sse(stream) => stream.next(PATIENCE).await,
            Self::Ws { socket, pending } => loop {
                if let Some(event) = pending.pop_front() {
                    return Some(event);
                }
                let Some(Message::Text(text)) = next_message(socket, PATIENCE).await else {
                    return None;
                };
                let message: Value = serde_json::from_str(&text).expect("JSON messages");
                for event in message["events"].as_array().into_iter().flatten() {
                    pending.push_back(Event {
                        id: event["id"].as_str().map(str::to_owned),
                        event: event["event"].as_str().unwrap_or_default().to_owned(),
                        data: event["data"].clone(),
                    });
                }
            },
        }
    }
}

/// A client of the service: the regions it knows (the endpoints file's `regions`) and a token
/// of their one identity provider.
#[derive(Clone)]
struct Client {
    http: reqwest::Client,
    regions: Vec<RegionEndpoints>,
    token: String,
}

/// One answer: status, `X-Session-Home`, the body.
#[derive(Debug)]
struct Answer {
    status: StatusCode,
    home: Option<String>,
    body: Value,
}

impl Client {
    async fn send(
        &self,
        region: usize,
        method: Method,
        path: &str,
        body: Option<Value>,
        idempotency_key: Option<&str>,
    ) -> Result<Answer, reqwest::Error> {
        let mut request = self
            .http
            .request(method, format!("{}{path}", self.regions[region].http_api))
            .bearer_auth(&self.token)
            .timeout(Duration::from_secs(10));
        if let Some(body) = body {
            request = request.json(&body);
        }
        if let Some(key) = idempotency_key {
            request = request.header("idempotency-key", key);
        }
        let response = request.send().await?;
        let status = response.status();
        let home = response
            .headers()
            .get("x-session-home")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let body = response.json().await.unwrap_or(Value::Null);
        Ok(Answer { status, home, body })
    }

    async fn ok(&self, region: usize, method: Method, path: &str, body: Option<Value>) -> Answer {
        let answer = self
            .send(region, method, path, body, None)
            .await
            .expect("the region answers");
        assert!(answer.status.is_success(), "{path}: {answer:?}");
        answer
    }

    /// A stream ticket's URL in `region`, resuming after `last_event_id` if given.
    async fn stream_url(
        &self,
        region: usize,
        session: &str,
        transport: &str,
        last: Option<&str>,
    ) -> String {
        let answer = match last {
            None => {
                let body = json!({ "transport": transport });
                let path = format!("/v1/sessions/{session}/tickets");
                self.ok(region, Method::POST, &path, Some(body)).await
            }
            Some(last) => {
                let body = json!({ "transport": transport, "last_event_id": last });
                let path = format!("/v1/sessions/{session}/reconnect");
                self.ok(region, Method::POST, &path, Some(body)).await
            }
        };
        answer.body["url"].as_str().expect("a URL").to_owned()
    }

    /// Polls `session`'s simulator in `region` until it is `running`.
    async fn until_running(&self, region: usize, session: &str, simulator: &str) {
        let path = format!("/v1/sessions/{session}/simulators/{simulator}");
        let deadline = Instant::now() + PATIENCE;
        loop {
            if let Ok(read) = self.send(region, Method::GET, &path, None, None).await
                && read.body["status"] == "running"
            {
                return;
            }
            assert!(Instant::now() < deadline, "{simulator} never ran");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The documented path (docs/multi-region.md, "What a client does when its region
    /// fails"), from the moment `stream` broke after `last`: the events received from the
    /// region that took over (the first ones) and the time the first arrived.
    async fn fail_over(
        &self,
        failed: usize,
        session: &str,
        spec: &Value,
        transport: &str,
        last: &str,
    ) -> (Vec<Event>, Instant) {
        let mut backoff = Duration::from_millis(50);
        let deadline = Instant::now() + PATIENCE;
        // The next region of the list, then the one after: here, `local-b`.
        let next = (failed + 1) % self.regions.len();
        let failed_name = self.regions[failed].name.as_str();
        let path = format!("/v1/sessions/{session}");
        // Its home must be a live region: the failed one's until the operator's failover.
        let detail = loop {
            if let Ok(read) = self.send(next, Method::GET, &path, None, None).await
                && read.status == StatusCode::OK
                && read
                    .home
                    .as_deref()
                    .is_some_and(|home| !home.starts_with(failed_name))
            {
                break read;
            }
            assert!(Instant::now() < deadline, "the session never moved home");
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_secs(1));
        };
        let simulators = detail.body["simulators"].as_array().expect("simulators");
        let failed_over = simulators
            .iter()
            .find(|s| s["status"] == "failed" && s["reason"] == "region_failover")
            .unwrap_or_else(|| panic!("the simulator failed by the failover: {detail:?}"));
        // The same key from every client of the session: one new simulator between them.
        let key = format!(
            "restart-{}",
            failed_over["simulator_id"].as_str().expect("an id")
        );
        let sims = format!("/v1/sessions/{session}/simulators");
        let started = loop {
            // `409` while another client's identical request is pending, or while this
            // region's read cache still holds the old home (up to its TTL).
            let answer = self
                .send(next, Method::POST, &sims, Some(spec.clone()), Some(&key))
                .await
                .expect("the region answers");
            if answer.status.is_success() {
                break answer;
            }
            assert!(
                matches!(
                    answer.status,
                    StatusCode::CONFLICT | StatusCode::MISDIRECTED_REQUEST
                ) && Instant::now() < deadline,
                "{answer:?}"
            );
            tokio::time::sleep(backoff).await;
        };
        let simulator = started.body["simulator_id"].as_str().expect("an id");
        self.until_running(next, session, simulator).await;
        let url = self.stream_url(next, session, transport, Some(last)).await;
        let mut stream = Stream::open(&url).await;
        let first = stream.next().await.expect("an event from the new region");
        let at = Instant::now();
        let second = stream.next().await.expect("a second event");
        (vec![first, second], at)
    }
}

async fn two_regions() -> Regions {
    session_tests::regions::two_local_regions(LAG, None).await
}

/// Reads `count` events from `stream`; returns the last event id.
async fn read(stream: &mut Stream, count: usize) -> String {
    let mut last = None;
    for _ in 0..count {
        let event = stream.next().await.expect("the stream is open");
        last = event.id.or(last);
    }
    last.expect("events with ids")
}

/// Reads until the stream breaks; returns the last event id seen.
async fn until_broken(mut stream: Stream, mut last: String) -> String {
    while let Some(event) = stream.next().await {
        if let Some(id) = event.id {
            last = id;
        }
    }
    last
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_of_a_failed_region_stream_from_the_next_after_an_explicit_reset_with_every_acknowledged_write()
 {
    let regions = two_regions().await;
    let client = Client {
        http: reqwest::Client::new(),
        regions: regions.endpoints().to_vec(),
        token: regions.token("alice"),
    };
    let spec = json!({ "symbols": ["BTC-USD"], "seed": 7, "events_per_second": 200 });
    let created = client
        .ok(0, Method::POST, "/v1/sessions", Some(json!({})))
        .await;
    let session = created.body["session_id"].as_str().unwrap().to_owned();
    let path = format!("/v1/sessions/{session}/simulators");
    let started = client.ok(0, Method::POST, &path, Some(spec.clone())).await;
    let simulator = started.body["simulator_id"].as_str().unwrap().to_owned();
    client.until_running(0, &session, &simulator).await;
    let mut sse_stream = Stream::open(&client.stream_url(0, &session, "sse", None).await).await;
    let mut ws_stream = Stream::open(&client.stream_url(0, &session, "ws", None).await).await;
    let sse_last = read(&mut sse_stream, 5).await;
    let ws_last = read(&mut ws_stream, 5).await;
    // Acknowledged in local-a, and given the lag to replicate before the failure.
    let second = client
        .ok(0, Method::POST, "/v1/sessions", Some(json!({})))
        .await;
    let second = second.body["session_id"].as_str().unwrap().to_owned();
    tokio::time::sleep(LAG * 3).await;

    let failed_at = Instant::now();
    let sse_client = {
        let client = client.clone();
        let (session, spec) = (session.clone(), spec.clone());
        tokio::spawn(async move {
            let last = until_broken(sse_stream, sse_last).await;
            client.fail_over(0, &session, &spec, "sse", &last).await
        })
    };
    let ws_client = {
        let client = client.clone();
        let (session, spec) = (session.clone(), spec.clone());
        tokio::spawn(async move {
            let last = until_broken(ws_stream, ws_last).await;
            client.fail_over(0, &session, &spec, "ws", &last).await
        })
    };
    // The operator: fail local-a (through local-b's API), then fail its sessions over.
    let operator = |action: &str| {
        let url = format!(
            "{}/_local/regions/local-a/{action}",
            regions.endpoints()[1].http_api
        );
        let http = client.http.clone();
        async move {
            let response = http.post(url).send().await.expect("local-b answers");
            let status = response.status();
            (
                status,
                response.json::<Value>().await.unwrap_or(Value::Null),
            )
        }
    };
    let (failed, _) = operator("fail").await;
    let down = failed_at.elapsed();
    let (moved, report) = operator("failover?to=local-b").await;
    let taken_over = failed_at.elapsed();
    let (sse_events, sse_at) = sse_client.await.expect("the SSE client");
    let (ws_events, ws_at) = ws_client.await.expect("the WebSocket client");

    assert_eq!(failed, StatusCode::OK);
    assert_eq!(moved, StatusCode::OK, "{report}");
    assert_eq!(report["summary"]["moved"], 2, "{report}");
    assert_eq!(report["summary"]["failed_simulators"], 1, "{report}");
    for (transport, events) in [("sse", &sse_events), ("ws", &ws_events)] {
        assert_eq!(events[0].event, "reset", "{transport}: {events:?}");
        assert_eq!(events[0].data["reason"], "epoch_changed", "{transport}");
        assert_eq!(events[1].event, "snapshot", "{transport}: {events:?}");
        assert_eq!(events[1].data["cause"], "reset", "{transport}");
    }
    let mut homes = Vec::new();
    for id in [&session, &second] {
        let path = format!("/v1/sessions/{id}");
        homes.push(client.ok(1, Method::GET, &path, None).await);
    }
    for home in &homes {
        assert_eq!(home.home.as_deref(), Some("local-b; epoch=2"), "{home:?}");
    }
    let simulators = homes[0].body["simulators"].as_array().unwrap();
    assert!(
        simulators
            .iter()
            .any(|s| s["simulator_id"] == simulator.as_str() && s["status"] == "failed"),
        "the simulator started in local-a is in local-b: {simulators:?}"
    );
    assert_eq!(
        simulators.len(),
        2,
        "one restart between both clients: {simulators:?}"
    );
    let moved_at = failed_at + taken_over;
    println!(
        "failover time (loopback, replication lag {} ms): region down after {} ms, sessions \
         moved after {} ms; first event from local-b: sse {} ms, websocket {} ms (after the \
         takeover: sse {} ms, websocket {} ms)",
        LAG.as_millis(),
        down.as_millis(),
        taken_over.as_millis(),
        (sse_at - failed_at).as_millis(),
        (ws_at - failed_at).as_millis(),
        (sse_at - moved_at).as_millis(),
        (ws_at - moved_at).as_millis()
    );
    regions.shutdown().await.expect("a clean stop");
}

/// The operator's `/_local/regions/local-a/{action}`, through local-b's API: its status and
/// answer.
async fn operate(regions: &Regions, action: &str) -> (StatusCode, Value) {
    let url = format!(
        "{}/_local/regions/local-a/{action}",
        regions.endpoints()[1].http_api
    );
    let response = reqwest::Client::new()
        .post(url)
        .send()
        .await
        .expect("local-b answers");
    let status = response.status();
    (
        status,
        response.json::<Value>().await.unwrap_or(Value::Null),
    )
}

/// Whether session `id` is in `region`'s replica: read as active, or as closed (`deleted`).
async fn is_in(http: &reqwest::Client, region: &RegionEndpoints, token: &str, id: &str) -> bool {
    let read = http
        .get(format!("{}/v1/sessions/{id}", region.http_api))
        .bearer_auth(token)
        .send()
        .await
        .expect("the region answers");
    let status = read.status();
    let body: Value = read.json().await.unwrap_or(Value::Null);
    status == StatusCode::OK || body["type"] == "urn:session-service:problem:deleted"
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_a_failed_region_acknowledged_last_is_missing_for_no_longer_than_its_last_beat_and_arrives_once_it_is_back()
 {
    let regions = two_regions().await;
    let http = reqwest::Client::new();
    // Writers: sessions created in local-a one every 40 ms, by 20 users in turn (each user's
    // write rate and session quota stay far from their limits), until local-a stops answering.
    let users: Vec<String> = (0..20)
        .map(|i| regions.token(&format!("writer-{i}")))
        .collect();
    let writer = {
        let (http, users) = (http.clone(), users.clone());
        let api = regions.endpoints()[0].http_api.clone();
        tokio::spawn(async move {
            let mut acknowledged = Vec::new();
            for turn in 0.. {
                let user = turn % users.len();
                let created = http
                    .post(format!("{api}/v1/sessions"))
                    .bearer_auth(&users[user])
                    .json(&json!({}))
                    .timeout(Duration::from_secs(5))
                    .send()
                    .await;
                let Ok(created) = created else { break };
                if created.status() != StatusCode::CREATED {
                    break;
                }
                let body: Value = created.json().await.expect("the created session");
                let id = body["session_id"].as_str().expect("an id").to_owned();
                acknowledged.push((user, id, Instant::now()));
                tokio::time::sleep(Duration::from_millis(40)).await;
            }
            acknowledged
        })
    };
    tokio::time::sleep(Duration::from_millis(1_200)).await;

    let (failed, _) = operate(&regions, "fail").await;
    let acknowledged = writer.await.expect("the writer");
    let before_takeover = Instant::now();
    let (moved, report) = operate(&regions, "failover?to=local-b").await;

    assert_eq!(failed, StatusCode::OK);
    assert_eq!(moved, StatusCode::OK, "{report}");
    assert!(acknowledged.len() >= 10, "{} writes", acknowledged.len());
    let bound = report["summary"]["old_home_beat_age_ms"]
        .as_u64()
        .unwrap_or_else(|| panic!("a beat of local-a was seen in local-b: {report}"));
    let b = &regions.endpoints()[1];
    let mut missing = Vec::new();
    for (user, id, at) in &acknowledged {
        if !is_in(&http, b, &users[*user], id).await {
            missing.push((*user, id.clone(), *at));
        }
    }
    // Replication is in order, so local-b lacks only writes made after local-a's last beat it
    // holds: each acknowledged within the bound before the takeover.
    for (_, id, at) in &missing {
        let age = before_takeover.duration_since(*at);
        assert!(
            age.as_millis() <= u128::from(bound) + 5,
            "{id}, acknowledged {} ms before the takeover, is missing: past the bound of {bound} ms",
            age.as_millis()
        );
    }
    let window = missing
        .iter()
        .map(|(_, _, at)| before_takeover.duration_since(*at).as_millis())
        .max()
        .unwrap_or(0);
    println!(
        "rpo (loopback, replication lag {} ms): {} of {} acknowledged writes missing in local-b \
         at the takeover, the oldest acknowledged {window} ms before it; the failover's bound \
         (local-a's last beat seen in local-b): {bound} ms",
        LAG.as_millis(),
        missing.len(),
        acknowledged.len(),
    );

    // local-a back: what it held arrives, nothing acknowledged is lost.
    let (restored, _) = operate(&regions, "restore").await;
    assert_eq!(restored, StatusCode::OK);
    let deadline = Instant::now() + PATIENCE;
    for (user, id, _) in &missing {
        while !is_in(&http, b, &users[*user], id).await {
            assert!(Instant::now() < deadline, "{id} never reached local-b");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    regions.shutdown().await.expect("a clean stop");
}
