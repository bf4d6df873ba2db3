//! WebSocket compression end to end through the local API Gateway WebSocket emulator: a ticket
//! that asks for `deflate` while the `ws_compression` flag is on opens a connection pushed
//! binary frames holding the raw deflate of the JSON message an uncompressed client gets; with
//! the flag off the ticket answer says `none` and the frames are JSON text; a bad value is a
//! problem naming the field.

use std::collections::HashMap;
use std::io::Read as _;
use std::time::{Duration, Instant};

use flate2::read::DeflateDecoder;
use reqwest::StatusCode;
use serde_json::{Value, json};
use session_tests::appconfig_dir::AppConfigDir;
use session_tests::stream_fixture::{Fixture, PATIENCE};
use session_tests::test_api::Answer;
use session_tests::ws::{Socket, next_message};
use tokio_tungstenite::tungstenite::Message;

/// How often the REST function polls the flags in these tests.
const POLL: Duration = Duration::from_millis(200);

/// A stack whose flags document turns `ws_compression` on or off.
async fn stack(compression_on: bool) -> (Fixture, AppConfigDir) {
    let dir = AppConfigDir::new();
    dir.write(
        "flags",
        &json!({ "ws_compression": { "enabled": compression_on } }).to_string(),
    );
    let fixture = Fixture::start_stack(&["BTC-USD", "ETH-USD"], 500, |stack| {
        stack.appconfig_dir = Some(dir.path().to_owned());
        stack.service.appconfig.poll_interval_ms = POLL;
        stack.streamer.push_poll_ms = Duration::from_millis(100);
    })
    .await;
    (fixture, dir)
}

async fn ticket(fixture: &Fixture, body: &Value) -> Answer {
    fixture
        .user
        .post(&format!("/v1/sessions/{}/tickets", fixture.session), body)
        .await
}

/// A `ws` ticket asking for `deflate`, once the flags document is read (the first poll).
async fn deflate_ticket(fixture: &Fixture, expected: &str) -> Answer {
    let started = Instant::now();
    loop {
        let answer = ticket(
            fixture,
            &json!({"transport": "ws", "compression": "deflate"}),
        )
        .await;
        assert_eq!(answer.status, StatusCode::CREATED, "{answer:?}");
        if answer.body["compression"] == expected || started.elapsed() > POLL * 20 {
            return answer;
        }
        tokio::time::sleep(POLL / 4).await;
    }
}

async fn open(answer: &Answer) -> Socket {
    let url = answer.body["url"].as_str().expect("a url");
    tokio_tungstenite::connect_async(url)
        .await
        .expect("the handshake")
        .0
}

/// One pushed message as JSON, and whether it came as a binary frame (then inflated).
async fn next_json(socket: &mut Socket) -> (Value, bool, usize) {
    match next_message(socket, PATIENCE).await.expect("open") {
        Message::Text(text) => (serde_json::from_str(&text).unwrap(), false, text.len()),
        Message::Binary(bytes) => {
            let mut json = Vec::new();
            DeflateDecoder::new(&bytes[..])
                .read_to_end(&mut json)
                .expect("raw deflate");
            // The inflated message is held to the document as a text frame would be.
            session_tests::contract::assert_ws_received(std::str::from_utf8(&json).unwrap());
            (serde_json::from_slice(&json).unwrap(), true, bytes.len())
        }
        other => panic!("not a data frame: {other:?}"),
    }
}

/// Reads `events` events' messages: every event by id, which frames were binary, the bytes.
async fn read(socket: &mut Socket, events: usize) -> (HashMap<String, Value>, Vec<bool>, usize) {
    let (mut by_id, mut binary, mut bytes) = (HashMap::new(), Vec::new(), 0);
    let mut seen = 0;
    while seen < events {
        let (message, was_binary, size) = next_json(socket).await;
        assert_eq!(message["type"], "events", "{message}");
        binary.push(was_binary);
        bytes += size;
        for event in message["events"].as_array().unwrap() {
            seen += 1;
            if let Some(id) = event["id"].as_str()
                && event["event"] != "snapshot"
            {
                by_id.insert(id.to_owned(), event.clone());
            }
        }
    }
    (by_id, binary, bytes)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_granted_deflate_gets_binary_frames_that_inflate_to_the_json_a_plain_client_gets()
{
    let (fixture, _dir) = stack(true).await;
    let granted = deflate_ticket(&fixture, "deflate").await;
    let plain = ticket(&fixture, &json!({"transport": "ws"})).await;

    let (mut deflated, mut uncompressed) = (open(&granted).await, open(&plain).await);
    let (
        (compressed_events, compressed_frames, compressed_bytes),
        (plain_events, plain_frames, plain_bytes),
    ) = tokio::join!(read(&mut deflated, 600), read(&mut uncompressed, 600));

    assert_eq!(granted.body["compression"], "deflate", "{granted:?}");
    assert_eq!(plain.body["compression"], "none", "{plain:?}");
    assert!(compressed_frames.iter().all(|&b| b), "every push binary");
    assert!(plain_frames.iter().all(|&b| !b), "every push text");
    let common: Vec<&String> = compressed_events
        .keys()
        .filter(|id| plain_events.contains_key(*id))
        .collect();
    assert!(common.len() > 300, "{} events seen by both", common.len());
    for id in common {
        assert_eq!(compressed_events[id], plain_events[id], "event {id}");
    }
    assert!(
        compressed_bytes * 2 < plain_bytes,
        "{compressed_bytes} deflated bytes vs {plain_bytes} plain"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_flag_off_a_ticket_asking_for_deflate_is_told_none_and_pushed_json_text() {
    let (fixture, _dir) = stack(false).await;
    // Past a few polls: the document (flag off) has been read.
    tokio::time::sleep(POLL * 3).await;
    let answer = deflate_ticket(&fixture, "none").await;

    let mut socket = open(&answer).await;
    let (_, binary, _) = read(&mut socket, 50).await;

    assert_eq!(answer.body["compression"], "none", "{answer:?}");
    assert!(binary.iter().all(|&b| !b), "JSON text frames");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_compression_is_a_problem_naming_the_field_and_one_on_an_sse_ticket_is_ignored()
{
    let (fixture, _dir) = stack(true).await;

    let unknown = ticket(&fixture, &json!({"transport": "ws", "compression": "gzip"})).await;
    let on_sse = ticket(
        &fixture,
        &json!({"transport": "sse", "compression": "deflate"}),
    )
    .await;
    let sse_none = ticket(
        &fixture,
        &json!({"transport": "sse", "compression": "none"}),
    )
    .await;

    assert_eq!(unknown.status, StatusCode::BAD_REQUEST, "{unknown:?}");
    assert_eq!(unknown.body["field"], "compression", "{unknown:?}");
    assert!(
        unknown.body["detail"].to_string().contains("deflate"),
        "the values allowed are named: {unknown:?}"
    );
    // The OpenAPI document allows the field on any ticket, so an SSE ticket takes it and
    // grants nothing: its stream is gzip by `Accept-Encoding`.
    assert_eq!(on_sse.status, StatusCode::CREATED, "{on_sse:?}");
    assert!(on_sse.body.get("compression").is_none(), "{on_sse:?}");
    assert_eq!(sse_none.status, StatusCode::CREATED, "{sse_none:?}");
    assert!(sse_none.body.get("compression").is_none(), "{sse_none:?}");
}
