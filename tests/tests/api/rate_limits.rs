//! Rate limits at the REST and WebSocket doors, on loopback with distinct source addresses
//! (127.0.0.2, 127.0.0.3… are distinct callers: the emulators pass the socket's address as
//! `sourceIp`): a flooding user or address gets `429`s with `Retry-After` and the `RateLimit`
//! header fields (an error frame, the connection kept, for WebSocket messages) while a
//! well-behaved caller at the same time sees every request succeed; and the limit is exact
//! across two REST functions sharing one DynamoDB table.

use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};

use futures_util::future::join_all;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use session_core::config::StoreBackend;
use session_tests::moto::Moto;
use session_tests::test_api::{Answer, TestApi};
use session_tests::ws::Socket;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest as _;

/// The longest any single wait may take; far above what each needs.
const WAIT: Duration = Duration::from_secs(20);

/// A loopback source address of its own (`127.0.0.<n>`).
fn address(n: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(127, 0, 0, n))
}

/// A caller: an HTTP client whose connections leave from `from`, with a token for `user` (none:
/// anonymous).
struct Caller {
    http: reqwest::Client,
    base: String,
    authorization: Option<String>,
}

impl Caller {
    fn new(api: &TestApi, user: Option<&str>, from: IpAddr) -> Self {
        Self {
            http: reqwest::Client::builder()
                .local_address(from)
                .timeout(WAIT)
                .build()
                .unwrap(),
            base: api.base.clone(),
            authorization: user.map(|user| format!("Bearer {}", api.stack.token(user))),
        }
    }

    async fn send(&self, method: Method, path: &str, body: Option<&Value>) -> Answer {
        let mut request = self.http.request(method, format!("{}{path}", self.base));
        if let Some(authorization) = &self.authorization {
            request = request.header("authorization", authorization);
        }
        if let Some(body) = body {
            request = request.json(body);
        }
        let response = request.send().await.expect("the HTTP API answers");
        let status = response.status();
        let headers = response.headers().clone();
        let bytes = response.bytes().await.unwrap();
        Answer {
            status,
            headers,
            body: serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        }
    }

    async fn get(&self, path: &str) -> Answer {
        self.send(Method::GET, path, None).await
    }

    async fn post(&self, path: &str, body: &Value) -> Answer {
        self.send(Method::POST, path, Some(body)).await
    }
}

/// Asserts that `answer` is a rate limit's refusal by the policy `class`, with its headers.
fn assert_limited(answer: &Answer, class: &str, quota: u32, window: u64) {
    assert_eq!(answer.status, StatusCode::TOO_MANY_REQUESTS, "{answer:?}");
    assert_eq!(answer.problem(), "rate-limited");
    let retry_after: u64 = answer.header("retry-after").unwrap().parse().unwrap();
    assert!((1..=window).contains(&retry_after), "{answer:?}");
    assert_eq!(
        answer.header("ratelimit-policy"),
        Some(format!("\"{class}\";q={quota};w={window}").as_str())
    );
    let state = answer.header("ratelimit").unwrap();
    assert!(
        state.starts_with(&format!("\"{class}\";r=0;t=")),
        "{answer:?}"
    );
}

/// Sends `count` requests of `caller` at once; their answers.
async fn flood(caller: &Caller, path: &str, count: usize) -> Vec<Answer> {
    join_all((0..count).map(|_| caller.get(path))).await
}

/// A `path` flooded by `flooder` while `steady` asks at a normal pace: the flood is refused past
/// the burst with the `class` policy's headers, admitted no more than the burst and what the
/// rate refilled meanwhile, and `steady` is served throughout.
async fn flood_beside_a_steady_caller(
    flooder: &Caller,
    steady: &Caller,
    path: &str,
    count: usize,
    (class, burst, per_second): (&str, u32, u32),
) {
    let started = Instant::now();
    let (answers, statuses) = tokio::join!(
        flood(flooder, path, count),
        steadily(steady, path, 10, Duration::from_millis(100)),
    );

    let elapsed = started.elapsed().as_secs_f64();
    let (admitted, refused): (Vec<&Answer>, Vec<&Answer>) =
        answers.iter().partition(|a| a.status == StatusCode::OK);
    assert!(!refused.is_empty(), "a flood past the burst is refused");
    assert!(
        admitted.len() as f64 <= f64::from(burst) + f64::from(per_second) * elapsed + 1.0,
        "{} admitted in {elapsed:.2} s",
        admitted.len()
    );
    for answer in refused {
        assert_limited(answer, class, burst, u64::from(burst / per_second));
    }
    assert!(
        statuses.iter().all(|s| *s == StatusCode::OK),
        "the well-behaved caller: {statuses:?}"
    );
}

/// `count` requests of `caller`, one every `every`: all their statuses.
async fn steadily(caller: &Caller, path: &str, count: usize, every: Duration) -> Vec<StatusCode> {
    let mut statuses = Vec::new();
    for _ in 0..count {
        statuses.push(caller.get(path).await.status);
        tokio::time::sleep(every).await;
    }
    statuses
}

#[tokio::test]
async fn a_user_flooding_reads_gets_429s_with_the_headers_while_another_user_is_served() {
    let api = TestApi::spawn().await;
    let flooder = Caller::new(&api, Some("alice"), address(2));
    let steady = Caller::new(&api, Some("bob"), address(3));

    // 90 reads at once (within the address's burst of 100): the user's burst is 40, 20 a second.
    flood_beside_a_steady_caller(&flooder, &steady, "/v1/sessions", 90, ("reads", 40, 20)).await;
}

#[tokio::test]
async fn an_address_flooding_the_anonymous_health_route_gets_429s_while_another_address_is_served()
{
    let api = TestApi::spawn().await;
    let flooder = Caller::new(&api, None, address(4));
    let steady = Caller::new(&api, None, address(5));

    flood_beside_a_steady_caller(&flooder, &steady, "/v1/health", 160, ("address", 100, 50)).await;
}

#[tokio::test]
async fn an_address_is_limited_across_users_on_authenticated_routes_too() {
    let api = TestApi::spawn().await;
    // Many users behind one address: each within its own limit, together over the address's.
    let callers: Vec<Caller> = (0..4)
        .map(|i| Caller::new(&api, Some(&format!("user-{i}")), address(6)))
        .collect();

    let answers = join_all(callers.iter().map(|c| flood(c, "/v1/sessions", 38))).await;

    let refused: Vec<&Answer> = answers
        .iter()
        .flatten()
        .filter(|a| a.status != StatusCode::OK)
        .collect();
    assert!(!refused.is_empty());
    for answer in refused {
        assert_limited(answer, "address", 100, 2);
    }
}

/// Two REST functions (two stacks: each its own DynamoDB clients and pre-filters) on one moto
/// table, with a slow rate (1 a second, burst 10) so that nothing refills during the test.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_requests_across_two_instances_get_exactly_the_burst() {
    let table = format!(
        "rate-limits-{}",
        ulid::Ulid::new().to_string().to_lowercase()
    );
    let spawn = || {
        let table = table.clone();
        TestApi::spawn_with(move |s| {
            s.store.backend = StoreBackend::Dynamodb;
            s.store.endpoint = Some(Moto::shared().endpoint().to_owned());
            s.store.table_name = table;
            s.rate_limits.reads.per_second = 1;
            s.rate_limits.reads.burst = 10;
        })
    };
    let one = spawn().await;
    let two = spawn().await;
    let callers = [
        Caller::new(&one, Some("alice"), address(7)),
        Caller::new(&two, Some("alice"), address(8)),
    ];

    let answers = join_all((0..30).map(|i| callers[i % 2].get("/v1/sessions"))).await;

    let admitted = answers
        .iter()
        .filter(|a| a.status == StatusCode::OK)
        .count();
    assert_eq!(admitted, 10, "{answers:?}");
    for refused in answers.iter().filter(|a| a.status != StatusCode::OK) {
        assert_limited(refused, "reads", 10, 10);
    }
}

/// Opens a WebSocket connection to `url` from `from`; the handshake's status if refused.
async fn connect_from(url: &str, from: IpAddr) -> Result<Socket, StatusCode> {
    let request = url.into_client_request().unwrap();
    let host = request.uri().authority().unwrap().as_str().to_owned();
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind((from, 0).into()).unwrap();
    let stream = socket
        .connect(tokio::net::lookup_host(host).await.unwrap().next().unwrap())
        .await
        .unwrap();
    let stream = tokio_tungstenite::MaybeTlsStream::Plain(stream);
    match tokio::time::timeout(WAIT, tokio_tungstenite::client_async(request, stream))
        .await
        .expect("the handshake is answered")
    {
        Ok((socket, _)) => Ok(socket),
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            Err(StatusCode::from_u16(response.status().as_u16()).unwrap())
        }
        Err(e) => panic!("the handshake failed: {e}"),
    }
}

/// A WebSocket ticket's URL for `session`.
async fn ws_url(caller: &Caller, session: &str) -> String {
    let answer = caller
        .post(
            &format!("/v1/sessions/{session}/tickets"),
            &json!({"transport": "ws"}),
        )
        .await;
    assert_eq!(answer.status, StatusCode::CREATED, "{answer:?}");
    answer.body["url"].as_str().unwrap().to_owned()
}

async fn create_session(caller: &Caller) -> String {
    let answer = caller.post("/v1/sessions", &json!({})).await;
    assert_eq!(answer.status, StatusCode::CREATED, "{answer:?}");
    answer.body["session_id"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn a_user_flooding_websocket_connects_is_refused_with_429_while_another_user_connects() {
    // Tickets and the per-session quota above the flood, so that `$connect`'s limit (burst 10
    // per user) is what refuses.
    let api = TestApi::spawn_with(|s| {
        s.rate_limits.tickets.burst = 100;
        s.limits.connections_per_session = 64;
    })
    .await;
    let alice = Caller::new(&api, Some("alice"), address(9));
    let bob = Caller::new(&api, Some("bob"), address(10));
    let (alices, bobs) = (create_session(&alice).await, create_session(&bob).await);
    let mut urls = Vec::new();
    for _ in 0..24 {
        urls.push(ws_url(&alice, &alices).await);
    }
    let steady = [ws_url(&bob, &bobs).await, ws_url(&bob, &bobs).await];

    let started = Instant::now();
    let (attempts, steady) = tokio::join!(
        join_all(urls.iter().map(|url| connect_from(url, address(9)))),
        join_all(steady.iter().map(|url| connect_from(url, address(10)))),
    );

    let accepted = attempts.iter().filter(|a| a.is_ok()).count();
    let refused: Vec<_> = attempts.iter().filter_map(|a| a.as_ref().err()).collect();
    // The burst, plus what the rate (2 a second) refilled while the flood ran.
    let most = 10 + (2.0 * started.elapsed().as_secs_f64()).ceil() as usize;
    assert!((10..=most).contains(&accepted), "{accepted} accepted");
    assert!(
        refused.iter().all(|s| **s == StatusCode::TOO_MANY_REQUESTS),
        "{refused:?}"
    );
    assert!(steady.iter().all(Result::is_ok), "the well-behaved user");
}

fn heartbeat(seq: u64) -> String {
    json!({"action": "heartbeat", "seq": seq, "client_time": 1_000 * seq}).to_string()
}

/// Sends a heartbeat and returns the frame that answers it (both checked against
/// docs/asyncapi.json).
async fn beat(socket: &mut Socket, seq: u64) -> Value {
    let beat: Value = serde_json::from_str(&heartbeat(seq)).unwrap();
    session_tests::ws::send(socket, &beat).await;
    match session_tests::ws::next_message(socket, WAIT).await {
        Some(Message::Text(text)) => serde_json::from_str(&text).unwrap(),
        other => panic!("no text frame: {other:?}"),
    }
}

#[tokio::test]
async fn a_connection_flooding_messages_gets_error_frames_and_stays_open_while_another_is_served() {
    let api = TestApi::spawn().await;
    let alice = Caller::new(&api, Some("alice"), address(11));
    let bob = Caller::new(&api, Some("bob"), address(12));
    let (alices, bobs) = (create_session(&alice).await, create_session(&bob).await);
    let mut flooder = connect_from(&ws_url(&alice, &alices).await, address(11))
        .await
        .unwrap();
    let mut steady = connect_from(&ws_url(&bob, &bobs).await, address(12))
        .await
        .unwrap();

    let flood = async {
        let mut frames = Vec::new();
        for seq in 1..=40 {
            frames.push(beat(&mut flooder, seq).await);
        }
        frames
    };
    let paced = async {
        let mut frames = Vec::new();
        for seq in 1..=5 {
            frames.push(beat(&mut steady, seq).await);
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        frames
    };
    let started = Instant::now();
    let (flooded, paced) = tokio::join!(flood, paced);
    let most = 20 + (5.0 * started.elapsed().as_secs_f64()).ceil() as usize;

    let acks = flooded
        .iter()
        .filter(|f| f["type"] == "heartbeat_ack")
        .count();
    let limited: Vec<&Value> = flooded
        .iter()
        .filter(|f| f["code"] == "rate_limited")
        .collect();
    // The burst, plus what the rate (5 a second) refilled while the flood ran.
    assert!(
        (20..=most).contains(&acks),
        "{acks} acknowledged: {flooded:?}"
    );
    assert_eq!(
        acks + limited.len(),
        40,
        "every other one is an error frame"
    );
    assert!(
        limited[0]["message"]
            .as_str()
            .unwrap()
            .contains("ws-messages")
    );
    assert!(
        paced.iter().all(|f| f["type"] == "heartbeat_ack"),
        "the well-behaved connection: {paced:?}"
    );
    // The flooder's connection is still open, and served again once its allowance refills.
    tokio::time::sleep(Duration::from_millis(1_200)).await;
    assert_eq!(beat(&mut flooder, 41).await["type"], "heartbeat_ack");
}
