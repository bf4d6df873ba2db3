//! The local stack with two regions (`session-local --regions 2`, in process): `local-a` (the
//! primary) and `local-b`, each with its own APIs, over a replicating in-memory store
//! (`docs/multi-region.md`, "The local stack, multi-region").

use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use session_local::regions::Regions;

/// Long enough that a read sent right after a write is surely early, even on a busy machine.
const LAG: Duration = Duration::from_millis(1_000);

/// How long a replicated write may take to show before the test gives up.
const PATIENCE: Duration = Duration::from_secs(15);

async fn two_regions(endpoints_file: Option<std::path::PathBuf>) -> Regions {
    session_tests::regions::two_local_regions(LAG, endpoints_file).await
}

/// One answer: status, the `X-Session-Home` and `X-Replica-Lag-Ms` headers, the body as JSON.
#[derive(Debug)]
struct Answer {
    status: StatusCode,
    home: Option<String>,
    lag_ms: Option<u64>,
    body: Value,
}

/// `alice` in region `index`, with a token of the regions' one identity provider.
struct Alice {
    http: reqwest::Client,
    base: String,
    token: String,
}

impl Alice {
    fn in_region(regions: &Regions, index: usize) -> Self {
        Self {
            http: reqwest::Client::new(),
            base: regions.endpoints()[index].http_api.clone(),
            token: regions.token("alice"),
        }
    }

    async fn send(&self, method: Method, path: &str, body: Option<Value>) -> Answer {
        let mut request = self
            .http
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(&self.token)
            .timeout(Duration::from_secs(30));
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.expect("the HTTP API answers");
        let status = response.status();
        let home = response
            .headers()
            .get("x-session-home")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let lag_ms = response.headers().get("x-replica-lag-ms").map(|v| {
            v.to_str()
                .ok()
                .and_then(|v| v.parse().ok())
                .expect("milliseconds")
        });
        let body = response.json().await.unwrap_or(Value::Null);
        Answer {
            status,
            home,
            lag_ms,
            body,
        }
    }

    async fn create_session(&self) -> String {
        let created = self
            .send(Method::POST, "/v1/sessions", Some(json!({})))
            .await;
        assert_eq!(created.status, StatusCode::CREATED, "{created:?}");
        created.body["session_id"]
            .as_str()
            .expect("an id")
            .to_owned()
    }

    /// Reads `session` until `done` holds of the answer, within [`PATIENCE`].
    async fn read_until(&self, session: &str, done: impl Fn(&Answer) -> bool) -> Answer {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let read = self
                .send(Method::GET, &format!("/v1/sessions/{session}"), None)
                .await;
            if done(&read) {
                return read;
            }
            assert!(Instant::now() < deadline, "never replicated: {read:?}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_born_in_local_a_is_read_in_local_b_after_the_lag_and_written_only_in_local_a() {
    let file = std::env::temp_dir().join(format!("regions-{}.json", ulid::Ulid::new()));
    let regions = two_regions(Some(file.clone())).await;
    let a = Alice::in_region(&regions, 0);
    let b = Alice::in_region(&regions, 1);

    let session = a.create_session().await;
    assert!(session.ends_with("-local-a"), "{session}");
    let path = format!("/v1/sessions/{session}");
    let early = b.send(Method::GET, &path, None).await;
    assert_eq!(
        early.status,
        StatusCode::NOT_FOUND,
        "before the lag: {early:?}"
    );
    let read = b.read_until(&session, |r| r.status == StatusCode::OK).await;
    assert_eq!(read.home.as_deref(), Some("local-a; epoch=1"));
    assert_eq!(read.body["status"], "active");
    // How far behind local-a local-b's replica is: the lag, plus at most a beat period (and
    // this machine's scheduling); local-a, the home, is not behind itself.
    let lag = read
        .lag_ms
        .expect("local-b says how far behind local-a it is");
    assert!(
        (lag_ms(LAG)..lag_ms(LAG) + 2_000).contains(&lag),
        "lag {lag} ms"
    );
    let at_home = a.send(Method::GET, &path, None).await;
    assert_eq!(at_home.lag_ms, Some(0));

    let close_in_b = b.send(Method::DELETE, &path, None).await;
    assert_eq!(
        close_in_b.status,
        StatusCode::MISDIRECTED_REQUEST,
        "{close_in_b:?}"
    );
    assert_eq!(close_in_b.body["home_region"], "local-a");
    assert_eq!(close_in_b.body["home_api"], a.base.as_str());

    let close_in_a = a.send(Method::DELETE, &path, None).await;
    assert_eq!(close_in_a.status, StatusCode::OK, "{close_in_a:?}");
    // A closed session reads as deleted, in B too once the close has replicated.
    let closed = |r: &Answer| r.body["type"] == "urn:session-service:problem:deleted";
    assert!(closed(&a.send(Method::GET, &path, None).await));
    let replicated = b.read_until(&session, closed).await;
    assert_eq!(replicated.status, StatusCode::NOT_FOUND);
    assert_eq!(regions.replication().diverged(), 0);

    let written: Value = serde_json::from_slice(&std::fs::read(&file).unwrap()).unwrap();
    let listed: Vec<&str> = written["regions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["name"].as_str().unwrap())
        .collect();
    assert_eq!(listed, ["local-a", "local-b"]);
    assert_eq!(written["http_api"], written["regions"][0]["http_api"]);
    assert_eq!(written["regions"][1]["http_api"], b.base.as_str());
    let _ = std::fs::remove_file(&file);
    regions.shutdown().await.expect("a clean stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_at_the_sessions_quota_in_local_a_can_still_create_in_local_b() {
    let regions = two_regions(None).await;
    let (a, b) = (Alice::in_region(&regions, 0), Alice::in_region(&regions, 1));
    // Arrange: alice's quota (10 open sessions, the default) filled in local-a, and replicated.
    let mut last = String::new();
    for _ in 0..10 {
        last = a.create_session().await;
    }
    b.read_until(&last, |r| r.status == StatusCode::OK).await;
    let refused = a.send(Method::POST, "/v1/sessions", Some(json!({}))).await;
    assert_eq!(
        refused.body["type"], "urn:session-service:problem:quota-exceeded",
        "{refused:?}"
    );

    // Act: local-b counts the sessions homed in local-b only (its store is fenced to its region,
    // as a deployment's is).
    let created = b.send(Method::POST, "/v1/sessions", Some(json!({}))).await;

    // Assert
    assert_eq!(created.status, StatusCode::CREATED, "{created:?}");
    regions.shutdown().await.expect("a clean stop");
}

fn lag_ms(lag: Duration) -> u64 {
    u64::try_from(lag.as_millis()).expect("a short lag")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_acknowledged_in_local_a_during_a_partition_reaches_local_b_once_it_heals() {
    let regions = two_regions(None).await;
    let a = Alice::in_region(&regions, 0);
    let b = Alice::in_region(&regions, 1);
    let before = a.create_session().await;
    b.read_until(&before, |r| r.status == StatusCode::OK).await;
    // The switch, on any region's API: local-a is cut off from local-b and serves on.
    let switch = |action: &str| {
        let url = format!("{}/_local/regions/local-a/{action}", b.base);
        let action = action.to_owned();
        async move {
            let answer = reqwest::Client::new().post(url).send().await.unwrap();
            assert_eq!(answer.status(), StatusCode::OK, "{action}");
        }
    };
    switch("partition").await;

    let session = a.create_session().await;
    tokio::time::sleep(LAG * 2).await;
    let held = b
        .send(Method::GET, &format!("/v1/sessions/{session}"), None)
        .await;
    assert_eq!(held.status, StatusCode::NOT_FOUND, "{held:?}");
    assert_eq!(regions.replication().pending(), 1);
    // local-b says so: its replica is behind local-a by the partition's length and more.
    let behind = b
        .send(Method::GET, &format!("/v1/sessions/{before}"), None)
        .await;
    let lag = behind.lag_ms.expect("a lag");
    assert!(lag >= lag_ms(LAG * 2), "lag {lag} ms during the partition");

    switch("heal").await;
    let healed = b.read_until(&session, |r| r.status == StatusCode::OK).await;
    assert_eq!(healed.home.as_deref(), Some("local-a; epoch=1"));
    assert_eq!(regions.replication().pending(), 0);
    let caught_up = b
        .read_until(&before, |r| {
            r.lag_ms.is_some_and(|l| l < lag_ms(LAG) + 2_000)
        })
        .await;
    assert!(caught_up.lag_ms.is_some());
    regions.shutdown().await.expect("a clean stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_region_refuses_connections_and_once_restored_has_every_write_made_meanwhile() {
    let regions = two_regions(None).await;
    let a = Alice::in_region(&regions, 0);
    let outage = |region: &str, action: &str| {
        let url = format!("{}/_local/regions/{region}/{action}", a.base);
        let http = a.http.clone();
        async move {
            http.post(url)
                .send()
                .await
                .expect("local-a answers")
                .status()
        }
    };

    assert_eq!(outage("local-b", "fail").await, StatusCode::OK);
    let refused = reqwest::get(format!("{}/v1/sessions", regions.endpoints()[1].http_api)).await;
    assert!(
        refused.is_err_and(|e| e.is_connect()),
        "local-b still listens"
    );
    let session = a.create_session().await;
    tokio::time::sleep(LAG * 2).await;
    assert_eq!(
        regions.replication().pending(),
        1,
        "held while local-b is down"
    );

    assert_eq!(outage("local-b", "restore").await, StatusCode::OK);
    // Tokens outlive an outage: one identity provider serves every region.
    let b = Alice::in_region(&regions, 1);
    let read = b.read_until(&session, |r| r.status == StatusCode::OK).await;
    assert_eq!(read.home.as_deref(), Some("local-a; epoch=1"));

    assert_eq!(outage("local-z", "fail").await, StatusCode::BAD_REQUEST);
    assert_eq!(outage("local-b", "explode").await, StatusCode::BAD_REQUEST);
    assert_eq!(outage("local-b", "failover").await, StatusCode::BAD_REQUEST);
    // Its outage is a region's fence: a running region is not failed over.
    assert_eq!(
        outage("local-b", "failover?to=local-a").await,
        StatusCode::CONFLICT
    );
    // A region fails itself too: it answers first, then stops.
    assert_eq!(outage("local-a", "fail").await, StatusCode::ACCEPTED);
    let deadline = Instant::now() + PATIENCE;
    while reqwest::get(format!("{}/v1/sessions", a.base))
        .await
        .is_ok()
    {
        assert!(Instant::now() < deadline, "local-a still listens");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    regions.shutdown().await.expect("a clean stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_minted_by_local_as_token_url_is_accepted_by_local_bs_api() {
    let regions = two_regions(None).await;
    let http = reqwest::Client::new();
    let minted: Value = http
        .post(&regions.endpoints()[0].token_url)
        .json(&json!({ "sub": "alice" }))
        .send()
        .await
        .expect("local-a mints")
        .json()
        .await
        .expect("a token response");
    let token = minted["token"].as_str().expect("a token");

    let listed = http
        .get(format!("{}/v1/sessions", regions.endpoints()[1].http_api))
        .bearer_auth(token)
        .send()
        .await
        .expect("local-b answers");

    assert_eq!(listed.status(), StatusCode::OK);
    regions.shutdown().await.expect("a clean stop");
}

/// Two regions and alice in each, with a session homed in `local-a` whose simulator runs
/// there: the session's id and the URL of its stream from `local-a`'s streamer.
async fn simulating_in_local_a() -> (Regions, Alice, Alice, String, String) {
    let regions = two_regions(None).await;
    let (alice_a, alice_b) = (Alice::in_region(&regions, 0), Alice::in_region(&regions, 1));
    let session = alice_a.create_session().await;
    let started = alice_a
        .send(
            Method::POST,
            &format!("/v1/sessions/{session}/simulators"),
            Some(json!({ "symbols": ["BTC-USD"] })),
        )
        .await;
    assert!(started.status.is_success(), "{started:?}");
    let simulator = started.body["simulator_id"].as_str().expect("an id");
    let stream_a = format!(
        "{}/v1/sessions/{session}/stream?simulator_id={simulator}",
        regions.endpoints()[0].sse
    );
    (regions, alice_a, alice_b, session, stream_a)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_b_streams_a_session_homed_in_local_a_from_local_as_simulator() {
    let (regions, _, alice_b, _, stream_a) = simulating_in_local_a().await;
    let stream_b = stream_a.replacen(&regions.endpoints()[0].sse, &regions.endpoints()[1].sse, 1);
    let bearer = format!("Bearer {}", alice_b.token);

    // b's streamer admits it once the simulator's record has replicated there.
    let deadline = Instant::now() + PATIENCE;
    let mut in_b = loop {
        match session_tests::sse::connect(&stream_b, &[("authorization", &bearer)]).await {
            Ok(stream) => break stream,
            Err(refused) => assert!(
                Instant::now() < deadline,
                "never admitted in local-b: {refused:?}"
            ),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let mut in_a = session_tests::sse::connect(&stream_a, &[("authorization", &bearer)])
        .await
        .expect("local-a streams its own session");

    // Both follow the one simulator in local-a: the same epoch, events in order.
    let epoch_of = |event: &session_tests::sse::Event| {
        let id = event.id.as_deref().expect("an id");
        id.split_once('-').expect("<epoch>-<sequence>").0.to_owned()
    };
    let snapshot_b = next_where(&mut in_b, |e| e.event == "snapshot").await;
    let snapshot_a = next_where(&mut in_a, |e| e.event == "snapshot").await;
    assert_eq!(epoch_of(&snapshot_b), epoch_of(&snapshot_a));
    let delta_b = next_where(&mut in_b, |e| e.event == "delta").await;
    assert_eq!(epoch_of(&delta_b), epoch_of(&snapshot_a));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_websocket_client_of_local_b_streams_a_session_homed_in_local_a() {
    let (regions, alice_a, alice_b, session, stream_a) = simulating_in_local_a().await;
    let bearer = format!("Bearer {}", alice_a.token);
    let mut in_a = session_tests::sse::connect(&stream_a, &[("authorization", &bearer)])
        .await
        .expect("local-a streams its own session");

    // Act: a ticket of local-b (once the session has replicated there) opens a WebSocket on
    // local-b's API, which admits it though the session is homed in local-a.
    let tickets = format!("/v1/sessions/{session}/tickets");
    let deadline = Instant::now() + PATIENCE;
    let url = loop {
        let ticket = alice_b
            .send(Method::POST, &tickets, Some(json!({ "transport": "ws" })))
            .await;
        if ticket.status.is_success() {
            break ticket.body["url"].as_str().expect("a URL").to_owned();
        }
        assert!(
            ticket.status == StatusCode::NOT_FOUND && Instant::now() < deadline,
            "no ticket from local-b: {ticket:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(
        url.starts_with(&regions.endpoints()[1].ws_api),
        "a ticket of local-b is for local-b's API: {url}"
    );
    let (mut socket, _) = tokio_tungstenite::connect_async(url.as_str())
        .await
        .expect("local-b admits the connection");

    // Assert: local-b's streamer pushes the simulator of local-a to it: the epoch local-a's
    // own client sees, a snapshot then deltas.
    let snapshot_a = next_where(&mut in_a, |e| e.event == "snapshot").await;
    let epoch_a = snapshot_a.id.as_deref().and_then(|id| id.split_once('-'));
    let mut seen = Vec::new();
    while seen.len() < 2 {
        let message = session_tests::ws::next_message(&mut socket, PATIENCE)
            .await
            .expect("local-b pushes events");
        let tokio_tungstenite::tungstenite::Message::Text(text) = message else {
            continue;
        };
        let message: Value = serde_json::from_str(&text).expect("JSON messages");
        for event in message["events"].as_array().into_iter().flatten() {
            let kind = event["event"].as_str().unwrap_or_default().to_owned();
            let id = event["id"].as_str().unwrap_or_default().to_owned();
            seen.push((kind, id));
        }
    }
    assert_eq!(seen[0].0, "snapshot", "{seen:?}");
    for (_, id) in &seen {
        assert_eq!(
            id.split_once('-').map(|(epoch, _)| epoch),
            epoch_a.map(|(epoch, _)| epoch),
            "local-b pushes local-a's simulator: {seen:?}"
        );
    }
}

/// The next event of `stream` that `wanted` holds of, within [`PATIENCE`].
async fn next_where(
    stream: &mut session_tests::sse::SseStream,
    wanted: impl Fn(&session_tests::sse::Event) -> bool,
) -> session_tests::sse::Event {
    loop {
        let event = stream.next(PATIENCE).await.expect("the stream goes on");
        if event.id.is_some() && wanted(&event) {
            return event;
        }
        assert_ne!(event.event, "reset", "{event:?}");
    }
}
